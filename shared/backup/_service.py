"""Builds the backup objects from settings, and runs a backup with its audit trail.

``run_backup`` is the one code path of the backup_exporter function and of
``convergence backup run``: it runs the slot's backup, audits the outcome as
``backup.completed`` or ``backup.failed``, then applies retention and audits
deleted runs as ``backup.deleted``. Event details carry the run name, object
names, counts and KMS key names, never a row value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from shared import apikeys
from shared.backup._export import BigQueryExporter, Exporter, LocalExporter
from shared.backup._layout import AUDIT_TABLE, DEFAULT_TABLES, manifest_object
from shared.backup._manifest import KmsKeyEntry, Manifest
from shared.backup._runs import (
    BackupRunner,
    KeyCheck,
    RetentionResult,
    RunInProgressError,
    RunResult,
    apply_retention,
)
from shared.backup._storage import Bucket, StorageError
from shared.crypto import LocalKeyring
from shared.events import AuditSink, new_event

if TYPE_CHECKING:
    from shared.config import Settings

_log = logging.getLogger(__name__)
_MAX_ERROR_CHARS = 500


def backup_tables(settings: Settings) -> tuple[str, ...]:
    if settings.backup_include_audit_logs:
        return (*DEFAULT_TABLES, AUDIT_TABLE)
    return DEFAULT_TABLES


def build_bucket(settings: Settings) -> Bucket:
    bucket = Bucket.from_settings(settings)
    if settings.storage_endpoint:
        # The emulator starts empty; Terraform creates the real bucket.
        bucket.create_if_missing()
    return bucket


def build_runner(settings: Settings, bucket: Bucket | None = None) -> BackupRunner:
    """Return the runner for the configured store, KMS backend and bucket."""
    local_keys = settings.kms_backend == "local"
    return BackupRunner(
        bucket or build_bucket(settings),
        _build_exporter(settings),
        tables=backup_tables(settings),
        read_key_versions=local_keys,
        primary_version=_primary_version(settings),
        claim_seconds=settings.backup_claim_seconds,
    )


def bigquery_client(settings: Settings) -> Any:
    """Return a BigQuery client as the store builds it (emulator or Google)."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    if settings.bigquery_api_endpoint:
        return bigquery.Client(
            project=settings.bigquery_project_id or "local-project",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=settings.bigquery_api_endpoint),
            location=settings.bigquery_location,
        )
    return bigquery.Client(
        project=settings.bigquery_project_id, location=settings.bigquery_location
    )


def _build_exporter(settings: Settings) -> Exporter:
    if settings.store_backend == "bigquery":
        return BigQueryExporter(
            bigquery_client(settings),
            settings.tenants_dataset_id,
            api_key_kms_path=settings.api_key_kms_path,
            credentials_kms_path=settings.credentials_kms_path,
            shard_max_bytes=settings.backup_shard_max_bytes,
            location=settings.bigquery_location,
        )
    return LocalExporter(
        settings.data_dir / f"{settings.tenants_dataset_id}.duckdb",
        api_key_kms_path=settings.api_key_kms_path,
        shard_max_bytes=settings.backup_shard_max_bytes,
    )


def _primary_version(settings: Settings) -> Callable[[str], int | None]:
    if settings.kms_backend != "local":
        return _cloud_primary_version
    keyring = LocalKeyring(settings.data_dir / "keyring.json")

    def primary(key_name: str) -> int | None:
        # primary_version would create a missing key, so look first.
        if not keyring.versions(key_name):
            return None
        return keyring.primary_version(key_name)

    return primary


def _cloud_primary_version(key_name: str) -> int | None:
    """Return a Cloud KMS key's primary version, or None without cloudkms.viewer."""
    from google.api_core import exceptions
    from google.cloud import kms

    try:
        key = kms.KeyManagementServiceClient().get_crypto_key(name=key_name)
    except exceptions.GoogleAPICallError:
        return None
    name = key.primary.name if key.primary else ""
    number = name.rsplit("/", 1)[-1]
    return int(number) if number.isdigit() else None


def key_check(settings: Settings) -> KeyCheck:
    """Return whether the current keys hold every version a manifest entry lists.

    Only the local keyring can tell. Cloud KMS ciphertext names no version,
    so its entries count as available.
    """
    if settings.kms_backend != "local":
        return lambda entry: True
    keyring = LocalKeyring(settings.data_dir / "keyring.json")

    def available(entry: KmsKeyEntry) -> bool:
        if entry.versions is None:
            return True
        return set(entry.versions) <= set(keyring.versions(entry.key_name))

    return available


def run_backup(
    settings: Settings,
    slot: date,
    audit: AuditSink,
    *,
    actor_id: str,
    runner: BackupRunner | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[RunResult, RetentionResult | None]:
    """Run the backup of ``slot``, audit it and apply retention after a new run."""
    runner = runner or build_runner(settings)
    labels = {"run": f"backup-{slot:%Y%m%d}"}
    try:
        result = runner.run(slot)
    except RunInProgressError:
        raise
    except Exception as exc:
        _audit_failure(audit, actor_id, labels["run"], runner.bucket.name, exc)
        raise
    if result.status == "already_complete":
        _log.info(
            "backup run already complete; nothing to do", extra={"labels": labels}
        )
        return result, None

    audit.emit(
        new_event(
            "backup.completed",
            actor_id=actor_id,
            details=completed_details(result.manifest),
            now=clock(),
        )
    )
    _log.info("backup run completed", extra={"labels": labels})
    try:
        retention = apply_retention(
            runner.bucket,
            clock(),
            settings.backup_retention_days,
            key_check(settings),
        )
    except StorageError as exc:
        # The run itself is complete; the next run applies retention again.
        _log.error(
            "applying backup retention failed: %s", exc, extra={"labels": labels}
        )
        return result, None
    if retention.deleted:
        audit.emit(
            new_event(
                "backup.deleted",
                actor_id=actor_id,
                details={
                    "bucket": runner.bucket.name,
                    "runs": list(retention.deleted),
                    "retention_days": settings.backup_retention_days,
                },
                now=clock(),
            )
        )
    return result, retention


def completed_details(manifest: Manifest) -> dict[str, object]:
    return {
        "run": manifest.run,
        "bucket": manifest.bucket,
        "manifest": manifest_object(manifest.run),
        "snapshot_at": manifest.snapshot_at.isoformat(),
        "rows": {entry.table: entry.rows for entry in manifest.tables},
        "files": sum(len(entry.files) for entry in manifest.tables),
        "bytes": manifest.total_bytes,
        "kms_keys": [
            {"key_name": key.key_name, "versions": list(key.versions or [])}
            for key in manifest.kms_keys
        ],
    }


def _audit_failure(
    audit: AuditSink, actor_id: str, run: str, bucket: str, exc: Exception
) -> None:
    message = apikeys.redact_api_keys(str(exc))[:_MAX_ERROR_CHARS]
    audit.emit(
        new_event(
            "backup.failed",
            actor_id=actor_id,
            details={
                "run": run,
                "bucket": bucket,
                "error_type": type(exc).__name__,
                "error": message,
            },
        )
    )
