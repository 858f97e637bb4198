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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from shared import apikeys
from shared.config import ConfigError, Settings, load_settings
from shared.crypto import KmsError, LocalKeyring, build_kms
from shared.events import AuditEvent, is_valid_event_type
from shared.keyservice import SCOPES, IssuedKey, KeyService, NotFoundError, Principal
from shared.runtime import build_key_service
from shared.store import (
    AlreadyExistsError,
    ApiKeyRecord,
    Store,
    StoreError,
    TransientStoreError,
    build_store,
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
            try:
                self._store = build_store(self.settings)
            except NotImplementedError as exc:
                raise ConfigurationError(f"{exc}; set STORE_BACKEND=duckdb") from None
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
    """Manage tenants, API keys, local KMS keys and the audit log.

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
