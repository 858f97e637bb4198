"""Object names of a backup run in the bucket, and the names of runs.

A run is named after its scheduled day, ``backup-YYYYMMDD`` (UTC), so every
delivery of one day's trigger names the same objects::

    api-keys/backup-20250301.json        tenant_api_keys, one file
    credentials/backup-20250301-000000000000.json
    credentials/backup-20250301-000000000001.json   ... or shards
    users/backup-20250301.json
    tenants/backup-20250301.json
    audit-logs/backup-20250301.json      only when audit logs are included
    manifests/backup-20250301.json       written last: the run is complete
    claims/backup-20250301.json          the attempt that works on the run

Shards are numbered from 0 with 12 digits, as BigQuery's extract names the
files of a wildcard URI.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

# Table name to the folder operators already use for it.
TABLE_FOLDERS: dict[str, str] = {
    "tenant_api_keys": "api-keys",
    "tenant_credentials": "credentials",
    "users": "users",
    "tenants": "tenants",
    "tenant_audit_logs": "audit-logs",
}
DEFAULT_TABLES = ("tenants", "users", "tenant_api_keys", "tenant_credentials")
AUDIT_TABLE = "tenant_audit_logs"
MANIFEST_FOLDER = "manifests"
CLAIM_FOLDER = "claims"
SHARD_DIGITS = 12

_RUN_NAME = re.compile(r"^backup-(\d{8})$")
_OBJECT_RUN = re.compile(r"^[a-z-]+/(backup-\d{8})(?:-\d{12})?\.json$")


def run_name(slot: date) -> str:
    return f"backup-{slot:%Y%m%d}"


def slot_of(run: str) -> date:
    """Return the day a run name stands for; ValueError if it is not one."""
    match = _RUN_NAME.match(run)
    if match is None:
        raise ValueError(f"invalid run name {run!r}: expected backup-YYYYMMDD")
    return datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).date()


def table_file(table: str, run: str, shard: int | None = None) -> str:
    """Return the object name of a table's single file, or of one of its shards."""
    base = f"{TABLE_FOLDERS[table]}/{run}"
    if shard is None:
        return f"{base}.json"
    return f"{base}-{shard:0{SHARD_DIGITS}d}.json"


def table_prefix(table: str, run: str) -> str:
    """Return the prefix that every file of ``table`` in ``run`` starts with."""
    return f"{TABLE_FOLDERS[table]}/{run}"


def manifest_object(run: str) -> str:
    return f"{MANIFEST_FOLDER}/{run}.json"


def claim_object(run: str) -> str:
    return f"{CLAIM_FOLDER}/{run}.json"


def run_of_object(name: str) -> str | None:
    """Return the run an object belongs to, or None for an unrelated object."""
    match = _OBJECT_RUN.match(name)
    return match.group(1) if match else None


def parse_slot(value: str) -> date:
    """Read a slot given as YYYY-MM-DD or as an RFC 3339 timestamp (UTC day)."""
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"invalid slot {value!r}: expected YYYY-MM-DD or an RFC 3339 timestamp"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date()
