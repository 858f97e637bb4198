"""Backups of the tenant tables to Cloud Storage, and restoring them.

A run exports ``tenants``, ``users``, ``tenant_api_keys`` and
``tenant_credentials`` as newline-delimited JSON to ``BACKUP_BUCKET``, and
``tenant_audit_logs`` too with ``BACKUP_INCLUDE_AUDIT_LOGS``. It then writes a
manifest that lists every file with its size and SHA-256, the row counts and
the KMS key versions the ciphertext depends on. Encrypted columns
stay encrypted: BYTES are written as base64, as BigQuery exports them.

``run_backup`` runs the backup of one day (the function and ``convergence
backup run``), ``list_runs`` finds runs in the bucket, and ``restore_run``
verifies, loads and proves one. docs/backup.md is the operator's guide.

Errors: ``BackupError`` (``DamagedRunError``) for a run that cannot complete,
``StorageError`` (``TransientStorageError``, ``RunInProgressError``) for the
bucket, ``ManifestError`` for an unreadable manifest, ``RestoreError`` for a
run that cannot be restored, ``ExportError`` for a store that cannot be read.
"""

from __future__ import annotations

from shared.backup._export import ExportError
from shared.backup._layout import manifest_object, parse_slot, run_name, slot_of
from shared.backup._manifest import Manifest, ManifestError
from shared.backup._restore import (
    BigQueryTarget,
    DuckDBTarget,
    Progress,
    Proof,
    RestoreError,
    RestoreResult,
    Target,
    restore_run,
)
from shared.backup._runs import (
    BackupError,
    BackupRunner,
    DamagedRunError,
    RetentionResult,
    RunInfo,
    RunInProgressError,
    RunResult,
    apply_retention,
    list_runs,
    load_manifest,
)
from shared.backup._service import (
    bigquery_client,
    build_bucket,
    build_runner,
    key_check,
    run_backup,
)
from shared.backup._storage import Bucket, StorageError, TransientStorageError

__all__ = [
    "BackupError",
    "BackupRunner",
    "BigQueryTarget",
    "Bucket",
    "DamagedRunError",
    "DuckDBTarget",
    "ExportError",
    "Manifest",
    "ManifestError",
    "Progress",
    "Proof",
    "RestoreError",
    "RestoreResult",
    "RetentionResult",
    "RunInProgressError",
    "RunInfo",
    "RunResult",
    "StorageError",
    "Target",
    "TransientStorageError",
    "apply_retention",
    "bigquery_client",
    "build_bucket",
    "build_runner",
    "key_check",
    "list_runs",
    "load_manifest",
    "manifest_object",
    "parse_slot",
    "restore_run",
    "run_name",
    "run_backup",
    "slot_of",
]
