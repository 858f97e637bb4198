"""The table schemas, written once for every backend.

Types are BigQuery's standard SQL names; ``duckdb_type`` maps them for the
embedded store. Timestamps are UTC. DuckDB enforces ``primary_key`` and
``unique``. BigQuery enforces neither, so its store checks them in each INSERT
and reads audit rows deduplicated by ``event_id``. The keys are not declared to
BigQuery either: its optimizer may trust a declared key, and a duplicate let in
by a race would then change query results. ``cluster_by`` and
``partition_by`` (a TIMESTAMP column, daily partitions) apply to BigQuery only.

``bigquery_schema`` and ``bigquery_table_options`` give a table in the JSON
form of BigQuery's REST API, which the client library and Terraform's
``google_bigquery_table`` both accept.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "TABLES",
    "Column",
    "Table",
    "bigquery_schema",
    "bigquery_table_options",
    "duckdb_type",
    "export_bigquery_schemas",
]

_DUCKDB_TYPES = {
    "STRING": "VARCHAR",
    "BYTES": "BLOB",
    "BOOL": "BOOLEAN",
    "INT64": "BIGINT",
    "TIMESTAMP": "TIMESTAMPTZ",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: str | None = None
    cluster_by: tuple[str, ...] = ()
    partition_by: str | None = None
    unique: tuple[str, ...] = field(default=())

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


def duckdb_type(bigquery_type: str) -> str:
    return _DUCKDB_TYPES[bigquery_type]


def bigquery_schema(table: Table) -> list[dict[str, str]]:
    """Return the columns as BigQuery ``TableFieldSchema`` objects (REST JSON)."""
    return [
        {
            "name": column.name,
            "type": column.type,
            "mode": "REQUIRED" if column.required else "NULLABLE",
            "description": column.description,
        }
        for column in table.columns
    ]


def bigquery_table_options(table: Table) -> dict[str, Any]:
    """Return the ``timePartitioning`` and ``clustering`` of a BigQuery table."""
    options: dict[str, Any] = {}
    if table.partition_by is not None:
        options["timePartitioning"] = {"type": "DAY", "field": table.partition_by}
    if table.cluster_by:
        options["clustering"] = {"fields": list(table.cluster_by)}
    return options


def _c(name: str, type_: str, description: str, *, required: bool = False) -> Column:
    return Column(name, type_, required, description)


TENANTS = Table(
    "tenants",
    (
        _c("tenant_id", "STRING", "Tenant id, also the key prefix", required=True),
        _c("name", "STRING", "Display name"),
        _c("contact_email", "STRING", "Where expiry warnings go"),
        _c("status", "STRING", "active or suspended", required=True),
        _c("created_at", "TIMESTAMP", "Creation time", required=True),
    ),
    primary_key="tenant_id",
)

USERS = Table(
    "users",
    (
        _c("user_id", "STRING", "User id", required=True),
        _c("tenant_id", "STRING", "Owning tenant", required=True),
        _c("email", "STRING", "Login email"),
        _c("role", "STRING", "admin or member", required=True),
        _c("created_at", "TIMESTAMP", "Creation time", required=True),
    ),
    primary_key="user_id",
    cluster_by=("tenant_id",),
)

TENANT_API_KEYS = Table(
    "tenant_api_keys",
    (
        _c("api_key_id", "STRING", "Key id", required=True),
        _c("tenant_id", "STRING", "Owning tenant", required=True),
        _c("user_id", "STRING", "User the key acts for"),
        _c("api_key_hash", "STRING", "SHA-256 hex of the key", required=True),
        _c("encrypted_api_key", "BYTES", "Envelope ciphertext", required=True),
        _c("key_prefix", "STRING", "Non-secret display prefix", required=True),
        _c("name", "STRING", "Caller's label for the key"),
        _c("scopes", "STRING", "Space-separated scopes", required=True),
        _c("is_active", "BOOL", "False once revoked", required=True),
        _c("expires_at", "TIMESTAMP", "Expiry", required=True),
        _c("created_at", "TIMESTAMP", "Creation time", required=True),
        _c("created_by_user_id", "STRING", "Actor that issued the key"),
        _c("revoked_at", "TIMESTAMP", "Revocation time"),
        _c("revoked_by", "STRING", "Actor that revoked the key"),
        _c("rotated_from_key_id", "STRING", "Key this one replaced"),
    ),
    primary_key="api_key_id",
    cluster_by=("tenant_id",),
    unique=("api_key_hash",),
)

TENANT_CREDENTIALS = Table(
    "tenant_credentials",
    (
        _c("credential_id", "STRING", "Credential id", required=True),
        _c("tenant_id", "STRING", "Owning tenant", required=True),
        _c("provider", "STRING", "gcp, aws, azure or openai", required=True),
        _c("name", "STRING", "Caller's label for the credential"),
        _c("encrypted_credentials", "BYTES", "Envelope ciphertext", required=True),
        _c("kms_key_name", "STRING", "KMS key that wraps the data key", required=True),
        _c("account_hint", "STRING", "Non-secret account or key id suffix"),
        _c("fingerprint", "STRING", "Keyed digest that spots duplicates"),
        _c("validation_status", "STRING", "valid, invalid or indeterminate"),
        _c("validated_at", "TIMESTAMP", "Last live check"),
        _c("expires_at", "TIMESTAMP", "Provider-reported expiry"),
        _c("details", "STRING", "JSON object of non-secret provider facts"),
        _c("is_active", "BOOL", "False once deleted", required=True),
        _c("created_at", "TIMESTAMP", "Creation time", required=True),
        _c("created_by_user_id", "STRING", "Actor that stored it"),
        _c("deleted_at", "TIMESTAMP", "When deletion was requested"),
        _c("deleted_by", "STRING", "Actor that deleted it"),
        _c("erase_after", "TIMESTAMP", "When the deleted row may be erased"),
    ),
    primary_key="credential_id",
    cluster_by=("tenant_id",),
)

TENANT_USAGE = Table(
    "tenant_usage",
    (
        _c("tenant_id", "STRING", "Tenant", required=True),
        _c("api_key_id", "STRING", "Key used", required=True),
        _c("request_count", "INT64", "Verifications in the batch", required=True),
        _c("first_used_at", "TIMESTAMP", "First use in the batch", required=True),
        _c("last_used_at", "TIMESTAMP", "Last use in the batch", required=True),
        _c("recorded_at", "TIMESTAMP", "When the batch was written", required=True),
    ),
    cluster_by=("tenant_id",),
    partition_by="recorded_at",
)

TENANT_AUDIT_LOGS = Table(
    "tenant_audit_logs",
    (
        _c("event_id", "STRING", "UUID, unique per event", required=True),
        _c("event_type", "STRING", "Dotted type, e.g. api_key.created", required=True),
        _c("tenant_id", "STRING", "Tenant, when known"),
        _c("user_id", "STRING", "User concerned"),
        _c("actor_id", "STRING", "Who acted: key id, operator or function"),
        _c("ip_address", "STRING", "Client IP"),
        _c("user_agent", "STRING", "Client user agent"),
        _c("occurred_at", "TIMESTAMP", "When it happened", required=True),
        _c("created_at", "TIMESTAMP", "When the row was written", required=True),
        _c("details", "STRING", "JSON object, never a secret"),
    ),
    primary_key="event_id",
    cluster_by=("tenant_id",),
    partition_by="created_at",
)

# The alerter's ledger, one row per step of one notification on one channel:
# a claim before the send, then its outcome. Rows are only ever inserted, each
# at most once: notification_id is derived from the other key columns.
ALERT_NOTIFICATIONS = Table(
    "alert_notifications",
    (
        _c(
            "notification_id",
            "STRING",
            "SHA-256 hex of alert_key, channel, attempt and status",
            required=True,
        ),
        _c(
            "alert_key",
            "STRING",
            "Rule, subject and threshold, e.g. api_key.expiring:key_1:7d",
            required=True,
        ),
        _c("channel", "STRING", "email, slack or pubsub", required=True),
        _c("attempt", "INT64", "Attempt on the channel, from 0", required=True),
        _c("status", "STRING", "claimed, sent or failed", required=True),
        _c("rule", "STRING", "Alert rule, e.g. api_key.expiring", required=True),
        _c("tenant_id", "STRING", "Tenant concerned; NULL for platform-wide rules"),
        _c("alert", "STRING", "The alert as JSON (claimed rows), never a secret"),
        _c("error", "STRING", "Why a failed attempt failed"),
        _c("recorded_at", "TIMESTAMP", "When the row was written", required=True),
    ),
    primary_key="notification_id",
    cluster_by=("alert_key",),
    partition_by="recorded_at",
)

TABLES: dict[str, Table] = {
    table.name: table
    for table in (
        TENANTS,
        USERS,
        TENANT_API_KEYS,
        TENANT_CREDENTIALS,
        TENANT_USAGE,
        TENANT_AUDIT_LOGS,
        ALERT_NOTIFICATIONS,
    )
}


# Terraform's copy of the schemas: infra/terraform/schemas, written by
# ``python -m shared.store.schema --export infra/terraform/schemas``.
TABLE_OPTIONS_FILE = "tables.json"


def export_bigquery_schemas(directory: Path) -> list[Path]:
    """Write ``<table>.json`` (the columns) per table and ``tables.json``.

    ``tables.json`` maps each table name to its ``bigquery_table_options``.
    Returns the paths written; the output depends only on ``TABLES``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for table in TABLES.values():
        written.append(
            _write_json(directory / f"{table.name}.json", bigquery_schema(table))
        )
    options = {name: bigquery_table_options(table) for name, table in TABLES.items()}
    written.append(_write_json(directory / TABLE_OPTIONS_FILE, options))
    return written


def _write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    return path


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.store.schema",
        description="Write the BigQuery table schemas as JSON files.",
    )
    parser.add_argument(
        "--export",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder to write <table>.json and tables.json into",
    )
    args = parser.parse_args(argv)
    for path in export_bigquery_schemas(args.export):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
