"""The operator command line, ``convergence``.

It reads the same settings as the functions, builds the same ``KeyService`` and
acts as the operator, with direct access to the store. Audit events go where
``AUDIT_DELIVERY`` sends them, with ``operator`` as the actor. A new API key is
printed once, by the command that issues it; no command prints a stored key,
its hash or its ciphertext.

Expected failures end with one ``Error:`` line on stderr and an exit code from
``EXIT_*`` below; ``convergence --help`` lists them.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from shared import apikeys
from shared.backup import (
    BackupError,
    BigQueryTarget,
    DuckDBTarget,
    ExportError,
    ManifestError,
    RestoreError,
    RestoreResult,
    RunInfo,
    RunInProgressError,
    StorageError,
    Target,
    TransientStorageError,
    bigquery_client,
    build_bucket,
    list_runs,
    load_manifest,
    manifest_object,
    restore_run,
    run_backup,
    run_name,
    slot_of,
)
from shared.config import ConfigError, Settings, load_settings
from shared.crypto import KmsError, LocalKeyring, build_kms
from shared.events import AuditEvent, AuditSink, is_valid_event_type, new_event
from shared.keyservice import (
    OPERATOR_ID,
    SCOPES,
    IssuedKey,
    KeyService,
    NotFoundError,
    Principal,
)
from shared.runtime import build_audit_sink, build_key_service
from shared.scheduler import (
    current_slot,
    emulator_publisher,
    format_slot,
    next_slot,
    publish_slot,
)
from shared.store import (
    AlreadyExistsError,
    ApiKeyRecord,
    Store,
    StoreError,
    TransientStoreError,
    build_store,
)
from shared.topology import (
    DEFAULT_TOPOLOGY_PATH,
    Schedule,
    Topology,
    TopologyError,
    load_topology,
)

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "audit_event_schema",
    "cli",
    "main",
    "render_audit_event_schema",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # click's own code for usage errors
EXIT_CONFIG = 3
EXIT_UNAVAILABLE = 4

_MAX_TEXT = 200  # the limit the HTTP API puts on names and e-mail addresses
_KEY_WARNING = "This key will not be shown again: store it in a secret manager now."
_JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class CommandError(click.ClickException):
    """An expected failure, printed as one line on stderr."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        # One line, and nothing shaped like an API key, whatever the source.
        super().__init__(apikeys.redact_api_keys(" ".join(message.split())))


class ConfigurationError(CommandError):
    """Error for a setting, or the data folder it names, that cannot be used."""

    exit_code = EXIT_CONFIG


class UnavailableError(CommandError):
    """Error for a store or KMS that did not serve the request."""

    exit_code = EXIT_UNAVAILABLE


@dataclass
class _State:
    """Per-invocation state: the output mode and lazily built services."""

    as_json: bool
    _settings: Settings | None = None
    _store: Store | None = None
    _service: KeyService | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = build_store(self.settings)
        return self._store

    @property
    def service(self) -> KeyService:
        if self._service is None:
            self._service = build_key_service(self.settings, self.store)
        return self._service


class _Cli(click.Group):
    """The root group: turns expected exceptions into exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise ConfigurationError(
                f"{exc}; fix it in the environment or in .env"
            ) from None
        except AlreadyExistsError as exc:
            raise CommandError(str(exc)) from None
        except TransientStoreError as exc:
            raise UnavailableError(f"{exc}; retry in a moment") from None
        except StoreError as exc:
            raise UnavailableError(
                f"{exc}; check DATA_DIR and the store settings"
            ) from None
        except KmsError as exc:
            raise UnavailableError(f"KMS request failed ({exc.kind}): {exc}") from None
        except ValueError as exc:
            raise CommandError(f"invalid value: {exc}") from None
        except OSError as exc:
            raise _os_error(exc) from None


def _os_error(exc: OSError) -> CommandError:
    if exc.filename is None:
        return CommandError(str(exc))
    return ConfigurationError(
        f"cannot use {exc.filename}: {exc.strerror}; check DATA_DIR and its permissions"
    )


@click.group(cls=_Cli)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document on stdout instead of text.",
)
@click.pass_context
def cli(ctx: click.Context, as_json: bool) -> None:
    """Manage tenants, API keys, local KMS keys, the audit log, backups and schedules.

    Reads the same settings as the functions (environment variables and .env
    in the working directory) and acts as the operator, with direct access to
    the store. Every change is audited with the actor "operator".

    \b
    Exit codes:
      0  success
      1  the operation failed: not found, already exists or an invalid value
      2  usage error: unknown command or option, missing argument
      3  configuration error: a setting is missing or invalid
      4  a dependency was unavailable: the store is busy or the KMS failed
    """
    ctx.obj = _State(as_json=as_json)


pass_state = click.make_pass_decorator(_State)


# Tenants


@cli.group()
def tenant() -> None:
    """Create tenants."""


@tenant.command("create")
@click.argument("tenant_id")
@click.option("--name", help="Display name. Default: the tenant id.")
@click.option("--contact-email", help="Address that receives key expiry warnings.")
@pass_state
def tenant_create(
    state: _State, tenant_id: str, name: str | None, contact_email: str | None
) -> None:
    """Create tenant TENANT_ID and its first admin key.

    TENANT_ID is 3 to 50 characters: a lower-case letter, then lower-case
    letters, digits or '_'. The admin key is printed once.
    """
    _check_text("--name", name)
    _check_text("--contact-email", contact_email)
    try:
        created, issued = state.service.create_tenant(
            Principal.operator(),
            tenant_id,
            name=name or tenant_id,
            contact_email=contact_email,
        )
    except AlreadyExistsError:
        raise CommandError(
            f"tenant {tenant_id} already exists; to give it another key, run "
            f"'convergence key issue --tenant {tenant_id} --scope admin'"
        ) from None
    document = {"tenant_id": created.tenant_id, "admin_key": _issued_json(issued)}
    lines = [f"Created tenant {created.tenant_id} ({created.name})."]
    _emit(state, document, lines + _issued_lines("Admin key", issued))
    _warn_once(state)


# API keys


@cli.group()
def key() -> None:
    """Issue, list, rotate and revoke a tenant's API keys."""


tenant_option = click.option(
    "--tenant", "tenant_id", required=True, help="Tenant whose keys to act on."
)


@key.command("issue")
@tenant_option
@click.option("--name", help="Label shown in key listings.")
@click.option(
    "--scope",
    "scopes",
    type=click.Choice(SCOPES),
    multiple=True,
    help="Scope to grant; repeat for more than one. Default: api.",
)
@click.option(
    "--expires-in-days",
    type=int,
    help="Days until the key expires. Default: API_KEY_DEFAULT_TTL_DAYS.",
)
@pass_state
def key_issue(
    state: _State,
    tenant_id: str,
    name: str | None,
    scopes: tuple[str, ...],
    expires_in_days: int | None,
) -> None:
    """Issue a key in a tenant and print it once."""
    _check_text("--name", name)
    ttl = None
    if expires_in_days is not None:
        maximum = state.settings.api_key_max_ttl_days
        if not 1 <= expires_in_days <= maximum:
            raise CommandError(f"--expires-in-days must be between 1 and {maximum}")
        ttl = timedelta(days=expires_in_days)
    with _lookup(tenant_id):
        issued = state.service.issue_key(
            Principal.operator(),
            tenant_id=tenant_id,
            name=name,
            scopes=scopes or ("api",),
            ttl=ttl,
        )
    _emit(state, _issued_json(issued), _issued_lines("Issued key", issued))
    _warn_once(state)


@key.command("list")
@tenant_option
@pass_state
def key_list(state: _State, tenant_id: str) -> None:
    """List a tenant's keys, without the keys themselves."""
    with _lookup(tenant_id):
        records = state.service.list_keys(Principal.operator(), tenant_id=tenant_id)
    now = datetime.now(UTC)
    document = {"keys": [_key_json(record, now) for record in records]}
    if not records:
        _emit(state, document, [f"Tenant {tenant_id} has no API keys."])
        return
    headers = ("ID", "PREFIX", "NAME", "SCOPES", "STATUS", "EXPIRES", "LAST USED")
    rows = [
        (
            record.api_key_id,
            record.key_prefix,
            record.name or "-",
            ",".join(record.scopes),
            record.status(now),
            _when(record.expires_at),
            _when(record.last_used_at),
        )
        for record in records
    ]
    _emit(state, document, _table(headers, rows))


@key.command("revoke")
@tenant_option
@click.argument("key_id")
@pass_state
def key_revoke(state: _State, tenant_id: str, key_id: str) -> None:
    """Revoke key KEY_ID now."""
    with _lookup(tenant_id, key_id):
        record = state.service.revoke_key(
            Principal.operator(), key_id, tenant_id=tenant_id
        )
    line = (
        f"Revoked key {record.api_key_id} ({record.key_prefix}) of tenant {tenant_id}."
    )
    _emit(state, _key_json(record, datetime.now(UTC)), [line])


@key.command("rotate")
@tenant_option
@click.argument("key_id")
@click.option(
    "--grace-hours",
    type=float,
    default=24.0,
    show_default=True,
    help="Hours the old key stays valid (at most ROTATION_MAX_GRACE_HOURS).",
)
@pass_state
def key_rotate(state: _State, tenant_id: str, key_id: str, grace_hours: float) -> None:
    """Replace active key KEY_ID with a new key and print the new key once.

    The new key keeps the old key's name, scopes and lifetime. The old key
    stays valid for the grace period, so clients can switch over.
    """
    maximum = state.settings.rotation_max_grace_hours
    if not 0 <= grace_hours <= maximum:
        raise CommandError(f"--grace-hours must be between 0 and {maximum}")
    with _lookup(tenant_id, key_id):
        issued, old = state.service.rotate_key(
            Principal.operator(),
            key_id,
            grace=timedelta(hours=grace_hours),
            tenant_id=tenant_id,
        )
    now = datetime.now(UTC)
    document = {"new_key": _issued_json(issued), "old_key": _key_json(old, now)}
    lines = [f"Rotated key {old.api_key_id}: it expires {_when(old.expires_at)}."]
    _emit(state, document, lines + _issued_lines("New key", issued))
    _warn_once(state)


# KMS keys


_KMS_KEYS = ("api", "credentials")


@cli.group()
def kms() -> None:
    """Rotate the local keyring's KMS keys."""


@kms.command("rotate")
@click.option(
    "--key",
    "key_choice",
    type=click.Choice((*_KMS_KEYS, "all")),
    default="all",
    show_default=True,
    help="KMS key to rotate: the one for API keys, for credentials, or both.",
)
@pass_state
def kms_rotate(state: _State, key_choice: str) -> None:
    """Add a new primary version to local KMS keys (KMS_BACKEND=local only).

    Older versions are kept, so everything encrypted before still decrypts.
    Cloud KMS keys rotate on their own schedule; with KMS_BACKEND=gcp this
    command prints the gcloud command that rotates a key by hand.
    """
    names = _KMS_KEYS if key_choice == "all" else (key_choice,)
    paths = {name: _kms_path(state.settings, name) for name in names}
    keyring = build_kms(state.settings)
    if not isinstance(keyring, LocalKeyring):
        raise click.ClickException(_gcp_rotation_help(state.settings, names))
    rotated: list[dict[str, Any]] = []
    lines: list[str] = []
    for name, path in paths.items():
        primary = keyring.rotate(path)
        versions = keyring.versions(path)
        rotated.append(
            {"key": name, "key_name": path, "primary": primary, "versions": versions}
        )
        if len(versions) == 1:
            lines.append(f"Created {path} with version {primary}.")
        else:
            lines.append(
                f"Rotated {path}: version {primary} is primary, and versions "
                f"{_numbers(versions)} still decrypt."
            )
    lines.append(
        "Running functions switch to the new version as their cached data keys "
        "expire (DATA_KEY_CACHE_SECONDS)."
    )
    _emit(state, {"rotated": rotated}, lines)


def _kms_path(settings: Settings, name: str) -> str:
    if name == "api":
        return settings.api_key_kms_path
    return settings.credentials_kms_path


def _gcp_rotation_help(settings: Settings, names: Sequence[str]) -> str:
    key_names = {
        "api": settings.kms_api_key_name,
        "credentials": settings.kms_credentials_key_name,
    }
    commands = [
        f"  gcloud kms keys versions create --project={settings.kms_project_id} "
        f"--location={settings.kms_location} --keyring={settings.kms_keyring} "
        f"--key={key_names[name]} --primary"
        for name in names
    ]
    return "\n".join(
        [
            "KMS_BACKEND=gcp: Cloud KMS rotates these keys on their rotation "
            "schedule, so this command does nothing. To rotate now, run:",
            *commands,
        ]
    )


# Audit log


@cli.group()
def audit() -> None:
    """Read the audit log and print its event schema."""


@audit.command("list")
@click.option("--tenant", "tenant_id", help="Only this tenant's events.")
@click.option("--type", "event_type", help="Only events of this type.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="Number of events, newest first.",
)
@pass_state
def audit_list(
    state: _State, tenant_id: str | None, event_type: str | None, limit: int
) -> None:
    """List audit events, newest first."""
    if tenant_id is not None:
        apikeys.validate_tenant_id(tenant_id)
    if event_type is not None and not is_valid_event_type(event_type):
        raise CommandError(
            "--type must be a dotted lower-case event type such as api_key.created"
        )
    events = state.store.list_audit_events(
        tenant_id, event_type=event_type, limit=limit
    )
    document = {"events": [event.model_dump(mode="json") for event in events]}
    if not events:
        _emit(state, document, ["No audit events match."])
        return
    headers = ("OCCURRED", "EVENT TYPE", "TENANT", "ACTOR", "DETAILS")
    rows = [
        (
            _when(event.occurred_at, seconds=True),
            event.event_type,
            event.tenant_id or "-",
            event.actor_id or "-",
            json.dumps(event.details, sort_keys=True, separators=(",", ":")),
        )
        for event in events
    ]
    _emit(state, document, _table(headers, rows))


@audit.command("schema")
def audit_schema() -> None:
    """Print the JSON Schema of an audit event.

    docs/audit-event.schema.json is this output.
    """
    click.echo(render_audit_event_schema(), nl=False)


def audit_event_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of ``AuditEvent``."""
    return {"$schema": _JSON_SCHEMA_DIALECT, **AuditEvent.model_json_schema()}


def render_audit_event_schema() -> str:
    """Return the schema as written to docs/audit-event.schema.json."""
    return json.dumps(audit_event_schema(), indent=2) + "\n"


# Backups


@cli.group()
def backup() -> None:
    """Back up the tables to Cloud Storage, list runs and restore one.

    Reads BACKUP_BUCKET and, for the emulator, STORAGE_API_ENDPOINT or
    STORAGE_EMULATOR_HOST. docs/backup.md describes runs and manifests.
    """


@backup.command("run")
@click.option(
    "--slot",
    help="Day the run is for, as YYYY-MM-DD (UTC). Default: today.",
)
@pass_state
def backup_run(state: _State, slot: str | None) -> None:
    """Back up the tables now, as the backup_exporter function does.

    A run is named after its day; if that day's run is already complete,
    nothing is written. After a new run, runs older than
    BACKUP_RETENTION_DAYS are deleted (docs/backup.md gives the rule).
    """
    day = _slot(slot)
    with _backup_errors():
        result, retention = run_backup(
            state.settings, day, _audit_sink(state), actor_id=OPERATOR_ID
        )
    manifest = result.manifest
    deleted = list(retention.deleted) if retention else []
    document = {
        "run": result.run,
        "status": result.status,
        "manifest": manifest.model_dump(mode="json"),
        "deleted_runs": deleted,
    }
    if result.status == "already_complete":
        lines = [f"Run {result.run} is already complete; nothing was written."]
    else:
        lines = [f"Backed up run {result.run} to gs://{manifest.bucket}:"]
        lines += [
            f"  {entry.table}: {entry.rows} rows in {len(entry.files)} file(s)"
            for entry in manifest.tables
        ]
        lines.append(f"Manifest: {manifest_object(result.run)}")
    if deleted:
        lines.append(f"Deleted expired runs: {', '.join(deleted)}")
    if retention and retention.kept_for_keys:
        lines.append(
            f"Kept expired run {retention.kept_for_keys}: it is the newest run "
            "that the current KMS keys can open."
        )
    _emit(state, document, lines)


@backup.command("list")
@pass_state
def backup_list(state: _State) -> None:
    """List the runs in the bucket, complete or not, newest first."""
    with _backup_errors():
        bucket = build_bucket(state.settings)
        runs = list_runs(bucket, datetime.now(UTC))
    document = {"bucket": bucket.name, "runs": [_run_json(run) for run in runs]}
    if not runs:
        _emit(state, document, [f"No backup runs in gs://{bucket.name}."])
        return
    headers = ("RUN", "STATUS", "ROWS", "SIZE", "SNAPSHOT")
    rows = [
        (
            run.run,
            run.status,
            _rows_text(run),
            _size(run.size),
            _when(run.manifest.snapshot_at, seconds=True) if run.manifest else "-",
        )
        for run in runs
    ]
    lines = _table(headers, rows)
    for run in runs:
        lines += [f"{run.run}: {problem}" for problem in run.problems]
    _emit(state, document, lines)


@backup.command("restore")
@click.argument("run")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Verify the files and decrypt the keys from them; load nothing.",
)
@click.option(
    "--target-data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Load into the DuckDB store in this folder. Default: the configured store.",
)
@click.option(
    "--target-dataset",
    help="Load into this BigQuery dataset of BIGQUERY_PROJECT_ID.",
)
@click.option(
    "--allow-non-empty",
    is_flag=True,
    help="Load into a DuckDB target that has rows; rows whose id exists are kept.",
)
@click.option(
    "--credential-sample",
    type=click.IntRange(0, 10_000),
    default=25,
    show_default=True,
    help="Number of credentials to decrypt as proof.",
)
@pass_state
def backup_restore(
    state: _State,
    run: str,
    dry_run: bool,
    target_data_dir: Path | None,
    target_dataset: str | None,
    allow_non_empty: bool,
    credential_sample: int,
) -> None:
    """Verify run RUN, load its tables and prove that its keys still decrypt.

    RUN is a run name (backup-YYYYMMDD) or its day (YYYY-MM-DD). Every file is
    checked against the manifest before anything is written. Then every
    restored API key is decrypted with the current KMS keys and its SHA-256
    compared with the stored hash, and a sample of credentials is decrypted.
    """
    if target_data_dir is not None and target_dataset is not None:
        raise click.UsageError("give --target-data-dir or --target-dataset, not both")
    name = _run_argument(run)
    settings = state.settings
    with _backup_errors():
        bucket = build_bucket(settings)
        manifest = load_manifest(bucket, name)
        if manifest is None:
            raise CommandError(
                f"{manifest_object(name)} not found: run {name} is missing or "
                "incomplete; see 'convergence backup list'"
            )
        target = _restore_target(settings, target_data_dir, target_dataset)
        result = restore_run(
            bucket,
            manifest,
            target,
            build_kms(settings),
            settings.api_key_kms_path,
            dry_run=dry_run,
            allow_non_empty=allow_non_empty,
            credential_sample=credential_sample,
            progress=_progress_bar,
        )
    if not dry_run:
        _audit_sink(state).emit(
            new_event(
                "backup.restored",
                actor_id=OPERATOR_ID,
                details={"run": name, "target": result.target, "rows": result.rows},
            )
        )
    _emit(state, _restore_json(result), _restore_lines(result))
    proof = result.proof
    if not proof.ok:
        failed = proof.keys_failed + proof.credentials_failed
        raise CommandError(
            f"{len(failed)} restored records do not decrypt with the current KMS "
            f"keys: {', '.join(failed[:10])}; check KMS_KEYRING and the key versions "
            "in the manifest"
        )


def _slot(value: str | None) -> date:
    if value is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"--slot must be a day as YYYY-MM-DD, not {value!r}"
        ) from None


def _run_argument(value: str) -> str:
    try:
        return run_name(date.fromisoformat(value))
    except ValueError:
        pass
    try:
        slot_of(value)
    except ValueError:
        raise CommandError(
            f"RUN must be backup-YYYYMMDD or YYYY-MM-DD, not {value!r}; see "
            "'convergence backup list'"
        ) from None
    return value


def _restore_target(
    settings: Settings, data_dir: Path | None, dataset: str | None
) -> Target:
    if dataset is not None:
        return BigQueryTarget(
            bigquery_client(settings), dataset, location=settings.bigquery_location
        )
    if data_dir is None and settings.store_backend == "bigquery":
        return BigQueryTarget(
            bigquery_client(settings),
            settings.tenants_dataset_id,
            location=settings.bigquery_location,
        )
    folder = data_dir if data_dir is not None else settings.data_dir
    return DuckDBTarget(folder / f"{settings.tenants_dataset_id}.duckdb")


def _audit_sink(state: _State) -> AuditSink:
    return build_audit_sink(state.settings, state.store)


@contextmanager
def _backup_errors() -> Iterator[None]:
    """Turn backup failures into one-line errors with the CLI's exit codes."""
    try:
        yield
    except RunInProgressError as exc:
        raise UnavailableError(str(exc)) from None
    except TransientStorageError as exc:
        raise UnavailableError(
            f"{exc}; check STORAGE_API_ENDPOINT or the network"
        ) from None
    except (BackupError, ExportError, ManifestError, RestoreError) as exc:
        raise CommandError(str(exc)) from None
    except StorageError as exc:
        raise CommandError(f"{exc}; check BACKUP_BUCKET and its permissions") from None


@contextmanager
def _progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    # On stderr, so that stdout carries only the result (or the --json document).
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def _run_json(run: RunInfo) -> dict[str, Any]:
    manifest = run.manifest
    return {
        "run": run.run,
        "slot": run.slot.isoformat(),
        "status": run.status,
        "bytes": run.size,
        "objects": len(run.objects),
        "snapshot_at": _iso(manifest.snapshot_at) if manifest else None,
        "rows": {e.table: e.rows for e in manifest.tables} if manifest else None,
        "kms_keys": [k.model_dump(mode="json") for k in manifest.kms_keys]
        if manifest
        else [],
        "claimed_until": _iso(run.claimed_until),
        "problems": run.problems,
    }


def _rows_text(run: RunInfo) -> str:
    if run.manifest is None:
        return "-"
    return str(sum(entry.rows for entry in run.manifest.tables))


def _size(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _restore_json(result: RestoreResult) -> dict[str, Any]:
    proof = result.proof
    return {
        "run": result.run,
        "target": result.target,
        "dry_run": result.dry_run,
        "rows": result.rows,
        "api_keys_checked": proof.keys_checked,
        "api_keys_failed": proof.keys_failed,
        "credentials_checked": proof.credentials_checked,
        "credentials_failed": proof.credentials_failed,
    }


def _restore_lines(result: RestoreResult) -> list[str]:
    proof = result.proof
    action = "Verified" if result.dry_run else f"Restored into {result.target}"
    lines = [f"{action}: run {result.run}"]
    lines += [f"  {table}: {rows} rows" for table, rows in result.rows.items()]
    lines.append(
        f"API keys: {proof.keys_checked - len(proof.keys_failed)} of "
        f"{proof.keys_checked} decrypt and match their hash."
    )
    lines.append(
        f"Credentials: {proof.credentials_checked - len(proof.credentials_failed)} "
        f"of {proof.credentials_checked} sampled decrypt."
    )
    return lines


# Schedules


topology_option = click.option(
    "--topology",
    "topology_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Topology file that declares the schedules. Default: infra/topology.yaml.",
)


@cli.group()
def schedule() -> None:
    """List the topology's schedules, or publish one now to the Pub/Sub emulator."""


@schedule.command("list")
@topology_option
@pass_state
def schedule_list(state: _State, topology_path: Path | None) -> None:
    """List each schedule with its topic, cron, time zone and slots (UTC).

    The current slot is the latest at or before now, the one that
    'convergence schedule run' publishes; the next slot is the first after now.
    """
    topology = _topology(topology_path)
    now = datetime.now(UTC)
    entries = [
        {
            "name": entry.name,
            "topic": entry.topic,
            "schedule": entry.schedule,
            "time_zone": entry.time_zone,
            "current_slot": format_slot(current_slot(entry, now)),
            "next_slot": format_slot(next_slot(entry, now)),
        }
        for entry in topology.schedules
    ]
    if not entries:
        _emit(state, {"schedules": []}, ["The topology declares no schedules."])
        return
    headers = ("NAME", "TOPIC", "SCHEDULE", "TIME ZONE", "CURRENT SLOT", "NEXT SLOT")
    rows = [
        (
            entry["name"],
            entry["topic"],
            entry["schedule"],
            entry["time_zone"],
            entry["current_slot"],
            entry["next_slot"],
        )
        for entry in entries
    ]
    _emit(state, {"schedules": entries}, _table(headers, rows))


@schedule.command("run")
@click.argument("name")
@topology_option
@pass_state
def schedule_run(state: _State, name: str, topology_path: Path | None) -> None:
    """Publish schedule NAME's message now, for its current slot.

    The message goes to the Pub/Sub emulator at PUBSUB_EMULATOR_HOST (the
    local stack prints the value), in project PUBSUB_PROJECT_ID. Its
    scheduled_for attribute is the latest slot at or before now, so the
    consumer does that slot's work, and does it once however often the slot
    is published. On Google Cloud, run the job itself with 'gcloud scheduler
    jobs run NAME --location=REGION'.
    """
    host = state.settings.pubsub_emulator_host
    if not host:
        raise ConfigurationError(
            "PUBSUB_EMULATOR_HOST is not set: this command publishes to the "
            "Pub/Sub emulator of 'make run', whose banner prints the value. On "
            "Google Cloud use 'gcloud scheduler jobs run NAME --location=REGION'"
        )
    topology = _topology(topology_path)
    try:
        entry = topology.schedule(name)
    except KeyError:
        raise CommandError(
            f"no schedule named {name} in the topology; see 'convergence schedule list'"
        ) from None
    slot = current_slot(entry, datetime.now(UTC))
    project = state.settings.pubsub_project_id
    message_id = _publish_now(host, project, entry, slot)
    document = {
        "schedule": entry.name,
        "topic": entry.topic,
        "scheduled_for": format_slot(slot),
        "message_id": message_id,
    }
    line = (
        f"Published {entry.name} for slot {format_slot(slot)} to {entry.topic} "
        f"on the emulator at {host} (message {message_id})."
    )
    _emit(state, document, [line])


def _topology(path: Path | None) -> Topology:
    try:
        return load_topology(path or DEFAULT_TOPOLOGY_PATH)
    except TopologyError as exc:
        raise ConfigurationError(str(exc)) from None


def _publish_now(host: str, project: str, entry: Schedule, slot: datetime) -> str:
    from google.api_core.exceptions import GoogleAPIError

    publisher = emulator_publisher(host)
    try:
        return publish_slot(publisher, project, entry, slot, timeout_seconds=15)
    except (GoogleAPIError, TimeoutError) as exc:
        raise UnavailableError(
            f"publishing to topic {entry.topic} of project {project} on the "
            f"emulator at {host} failed ({type(exc).__name__}); check that "
            "'make run' is up and PUBSUB_EMULATOR_HOST matches its banner"
        ) from None
    finally:
        publisher.stop()


# Output


def _emit(state: _State, document: dict[str, Any], lines: Sequence[str]) -> None:
    if state.as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo("\n".join(lines))


def _warn_once(state: _State) -> None:
    # With --json, stdout carries only the document, so the warning goes to stderr.
    if state.as_json:
        click.echo(_KEY_WARNING, err=True)
    else:
        click.echo(f"\n{_KEY_WARNING}")


def _issued_lines(title: str, issued: IssuedKey) -> list[str]:
    record = issued.record
    return [
        f"{title} {record.api_key_id} for tenant {record.tenant_id}",
        f"  name:    {record.name or '-'}",
        f"  scopes:  {', '.join(record.scopes)}",
        f"  expires: {_when(record.expires_at)}",
        "",
        f"  {issued.api_key}",
    ]


def _issued_json(issued: IssuedKey) -> dict[str, Any]:
    return {"api_key": issued.api_key, **_key_json(issued.record, datetime.now(UTC))}


def _key_json(record: ApiKeyRecord, now: datetime) -> dict[str, Any]:
    """The fields the HTTP API returns for a key; never its hash or ciphertext."""
    return {
        "api_key_id": record.api_key_id,
        "tenant_id": record.tenant_id,
        "user_id": record.user_id,
        "key_prefix": record.key_prefix,
        "name": record.name,
        "scopes": list(record.scopes),
        "status": record.status(now),
        "expires_at": record.expires_at.isoformat(),
        "created_at": record.created_at.isoformat(),
        "revoked_at": _iso(record.revoked_at),
        "rotated_from_key_id": record.rotated_from_key_id,
        "last_used_at": _iso(record.last_used_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _when(value: datetime | None, *, seconds: bool = False) -> str:
    if value is None:
        return "-"
    pattern = "%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC"
    return value.astimezone(UTC).strftime(pattern)


def _numbers(values: Sequence[int]) -> str:
    return ", ".join(str(value) for value in values)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    return [
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in (headers, *rows)
    ]


# Input checks


def _check_text(option: str, value: str | None) -> None:
    if value is not None and not 0 < len(value) <= _MAX_TEXT:
        raise CommandError(f"{option} must be 1 to {_MAX_TEXT} characters")


@contextmanager
def _lookup(tenant_id: str, key_id: str | None = None) -> Iterator[None]:
    """Turn ``NotFoundError`` into a message naming the missing tenant or key."""
    try:
        yield
    except NotFoundError as exc:
        missing = exc.args[0] if exc.args else None
        if key_id is None or (missing == tenant_id and missing != key_id):
            message = (
                f"tenant {tenant_id} not found; create it with "
                f"'convergence tenant create {tenant_id}'"
            )
        else:
            message = (
                f"no active key {key_id} in tenant {tenant_id} (it may be revoked "
                f"or expired); see 'convergence key list --tenant {tenant_id}'"
            )
        raise CommandError(message) from None


# Entry point


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return apikeys.redact_api_keys(super().format(record))


def main() -> None:
    """Run the ``convergence`` console script; exits with the codes in --help."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    cli(prog_name="convergence")
