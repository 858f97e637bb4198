"""The embedded store: one DuckDB file in the data folder.

DuckDB lets one process at a time open a file for writing, and the local stack
runs each function, and the command line, in a process of its own on the same
file. Opening the file costs about 10 ms with DuckDB 2.0.1, some 20 times a
point lookup, so a process keeps its connection for a burst of operations and
then lets the file go (``shared/store/_lease.py``):

- Each operation is one transaction. Threads of a process take turns on its
  one connection, and every store on the same file in the process shares it.
- The file is released once the process has run no operation for 50 ms, by
  a daemon thread, whether or not another operation follows.
- Under sustained load the first operation after 0.5 s of holding closes
  the file, waits 5 ms and reopens it. Meanwhile a waiting process, which
  tries every 1 to 2 ms, gets its turn.
- An operation that finds the file held by another process waits, for up to
  ``lock_timeout_seconds`` (15 s by default), then raises
  ``TransientStoreError``.

So a process waits while the processes ahead of it keep the file: about
0.5 s each under sustained load, plus the operation that is running when that
time ends. The turn goes to whichever waiting process tries first, not to the
one that has waited longest. Under sustained load from several processes a
wait is therefore not bounded, only likely to be short. A process that opens
the file with plain ``duckdb.connect`` (a test, a script) takes no turn. The
store then retries DuckDB's own lock every 2 to 20 ms and gets the file when
that process closes it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from shared.events import AuditEvent
from shared.store import AlreadyExistsError
from shared.store._bursts import (
    bucket_start,
    check_group_columns,
    window_microseconds,
)
from shared.store._lease import lease_for
from shared.store.models import (
    ApiKeyRecord,
    CredentialRecord,
    EventBurst,
    ExpiringItem,
    NotificationRecord,
    NotificationState,
    Tenant,
    UsageBatch,
    User,
)
from shared.store.schema import TABLES, Table, duckdb_type

_log = logging.getLogger(__name__)

_KEY_COLUMNS = (
    "api_key_id, tenant_id, user_id, api_key_hash, encrypted_api_key, key_prefix, "
    "name, scopes, is_active, expires_at, created_at, created_by_user_id, "
    "revoked_at, revoked_by, rotated_from_key_id"
)
_CREDENTIAL_COLUMNS = (
    "credential_id, tenant_id, provider, name, encrypted_credentials, kms_key_name, "
    "account_hint, fingerprint, validation_status, validated_at, expires_at, "
    "details, is_active, created_at, created_by_user_id, deleted_at, deleted_by, "
    "erase_after"
)
_AUDIT_COLUMNS = (
    "event_id, event_type, tenant_id, user_id, actor_id, ip_address, user_agent, "
    "occurred_at, created_at, details"
)
_AUDIT_TYPES = {
    column.name: duckdb_type(column.type)
    for column in TABLES["tenant_audit_logs"].columns
}
# RETURNING lists the rows written, so redelivered event ids are not counted.
_INSERT_AUDIT = (
    f"INSERT INTO tenant_audit_logs ({_AUDIT_COLUMNS}) SELECT "
    + ", ".join(
        f"unnest(?::{_AUDIT_TYPES[name]}[])" for name in _AUDIT_COLUMNS.split(", ")
    )
    + " ON CONFLICT DO NOTHING RETURNING event_id"
)
_LAST_USED = (
    "(SELECT max(u.last_used_at) FROM tenant_usage u "
    "WHERE u.tenant_id = k.tenant_id AND u.api_key_id = k.api_key_id)"
)


def create_table_sql(table: Table) -> str:
    """Return the DuckDB ``CREATE TABLE IF NOT EXISTS`` statement for ``table``."""
    columns = []
    for column in table.columns:
        definition = f"{column.name} {duckdb_type(column.type)}"
        if column.required:
            definition += " NOT NULL"
        if column.name == table.primary_key:
            definition += " PRIMARY KEY"
        if column.name in table.unique:
            definition += " UNIQUE"
        columns.append(definition)
    return f"CREATE TABLE IF NOT EXISTS {table.name} ({', '.join(columns)})"


@contextmanager
def held_connection(
    path: Path, lock_timeout_seconds: float = 15.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Yield this process's connection to the store file ``path``.

    The process's store operations on the file wait until the block ends, and
    other processes wait as they do for an operation. The caller must leave
    the connection open, with no transaction, attached database or changed
    setting left over. If the block raises, the connection is closed, and
    whatever the block left behind goes with it.
    """
    lease = lease_for(Path(path))
    with lease.connection(lock_timeout_seconds) as con:
        try:
            yield con
        except BaseException:
            lease.discard()
            raise


class DuckDBStore:
    """Store backend on a local DuckDB file."""

    def __init__(self, path: Path, *, lock_timeout_seconds: float = 15.0) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_timeout = lock_timeout_seconds
        self._schema_ready = False
        self._thread_lock = threading.Lock()
        # Threads of one process take turns, as processes do through the file
        # lock: concurrent DuckDB transactions inserting one key conflict. Every
        # store on the same file shares the lease, because two threads at a
        # cold start can each build a store.
        self._lease = lease_for(self._path)

    @property
    def path(self) -> Path:
        return self._path

    # Tenants and users

    def create_tenant(self, tenant: Tenant, admin: User) -> None:
        with self._transaction() as con:
            exists = con.execute(
                "SELECT 1 FROM tenants WHERE tenant_id = ?", [tenant.tenant_id]
            ).fetchone()
            if exists:
                raise AlreadyExistsError(f"tenant {tenant.tenant_id} already exists")
            con.execute(
                "INSERT INTO tenants VALUES (?, ?, ?, ?, ?)",
                [
                    tenant.tenant_id,
                    tenant.name,
                    tenant.contact_email,
                    tenant.status,
                    tenant.created_at,
                ],
            )
            try:
                con.execute(
                    "INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                    [
                        admin.user_id,
                        admin.tenant_id,
                        admin.email,
                        admin.role,
                        admin.created_at,
                    ],
                )
            except duckdb.ConstraintException:
                message = f"user {admin.user_id} already exists"
                raise AlreadyExistsError(message) from None

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        with self._transaction() as con:
            row = con.execute(
                "SELECT tenant_id, name, contact_email, status, created_at "
                "FROM tenants WHERE tenant_id = ?",
                [tenant_id],
            ).fetchone()
        return Tenant(*row) if row else None

    # API keys

    def insert_api_key(self, record: ApiKeyRecord) -> None:
        with self._transaction() as con:
            self._insert_key(con, record)

    def get_api_key(self, tenant_id: str, api_key_id: str) -> ApiKeyRecord | None:
        return self._one_key(
            "k.tenant_id = ? AND k.api_key_id = ?", [tenant_id, api_key_id]
        )

    def find_api_key_by_hash(self, api_key_hash: str) -> ApiKeyRecord | None:
        # Verification does not need last_used_at, and its subquery scans
        # tenant_usage, which has no index, so here it stays None.
        return self._one_key("k.api_key_hash = ?", [api_key_hash], last_used=False)

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        with self._transaction() as con:
            rows = con.execute(
                f"SELECT {_KEY_COLUMNS}, {_LAST_USED} FROM tenant_api_keys k "
                "WHERE k.tenant_id = ? ORDER BY k.created_at, k.api_key_id",
                [tenant_id],
            ).fetchall()
        return [_key_from_row(row) for row in rows]

    def revoke_api_key(
        self, tenant_id: str, api_key_id: str, revoked_at: datetime, revoked_by: str
    ) -> bool:
        with self._transaction() as con:
            updated = con.execute(
                "UPDATE tenant_api_keys SET is_active = false, revoked_at = ?, "
                "revoked_by = ? WHERE tenant_id = ? AND api_key_id = ? AND is_active "
                "RETURNING api_key_id",
                [revoked_at, revoked_by, tenant_id, api_key_id],
            ).fetchall()
        return bool(updated)

    def rotate_api_key(
        self,
        tenant_id: str,
        old_key_id: str,
        new_key: ApiKeyRecord,
        old_expires_at: datetime,
    ) -> bool:
        if new_key.tenant_id != tenant_id:
            raise ValueError("new_key must belong to the same tenant")
        with self._transaction() as con:
            updated = con.execute(
                "UPDATE tenant_api_keys SET expires_at = least(expires_at, ?) "
                "WHERE tenant_id = ? AND api_key_id = ? AND is_active "
                "RETURNING api_key_id",
                [old_expires_at, tenant_id, old_key_id],
            ).fetchall()
            if not updated:
                return False
            self._insert_key(con, new_key)
        return True

    # Cloud credentials

    def insert_credential(self, record: CredentialRecord) -> None:
        with self._transaction() as con:
            try:
                con.execute(
                    f"INSERT INTO tenant_credentials ({_CREDENTIAL_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _credential_row(record),
                )
            except duckdb.ConstraintException:
                raise AlreadyExistsError("credential id already exists") from None

    def get_credential(
        self, tenant_id: str, credential_id: str
    ) -> CredentialRecord | None:
        with self._transaction() as con:
            row = con.execute(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM tenant_credentials "
                "WHERE tenant_id = ? AND credential_id = ?",
                [tenant_id, credential_id],
            ).fetchone()
        return _credential_from_row(row) if row else None

    def list_credentials(self, tenant_id: str) -> list[CredentialRecord]:
        with self._transaction() as con:
            rows = con.execute(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM tenant_credentials "
                "WHERE tenant_id = ? ORDER BY created_at, credential_id",
                [tenant_id],
            ).fetchall()
        return [_credential_from_row(row) for row in rows]

    def delete_credential(
        self,
        tenant_id: str,
        credential_id: str,
        deleted_at: datetime,
        deleted_by: str,
        erase_after: datetime,
    ) -> bool:
        with self._transaction() as con:
            updated = con.execute(
                "UPDATE tenant_credentials SET is_active = false, deleted_at = ?, "
                "deleted_by = ?, erase_after = ? "
                "WHERE tenant_id = ? AND credential_id = ? AND is_active "
                "RETURNING credential_id",
                [deleted_at, deleted_by, erase_after, tenant_id, credential_id],
            ).fetchall()
        return bool(updated)

    def restore_credential(
        self, tenant_id: str, credential_id: str, now: datetime
    ) -> bool:
        with self._transaction() as con:
            updated = con.execute(
                "UPDATE tenant_credentials SET is_active = true, deleted_at = NULL, "
                "deleted_by = NULL, erase_after = NULL "
                "WHERE tenant_id = ? AND credential_id = ? AND NOT is_active "
                "AND erase_after > ? RETURNING credential_id",
                [tenant_id, credential_id, now],
            ).fetchall()
        return bool(updated)

    def erase_credentials(self, tenant_id: str, now: datetime) -> list[str]:
        with self._transaction() as con:
            erased = con.execute(
                "DELETE FROM tenant_credentials WHERE tenant_id = ? AND NOT is_active "
                "AND erase_after <= ? RETURNING credential_id",
                [tenant_id, now],
            ).fetchall()
        return sorted(row[0] for row in erased)

    # Usage and audit

    def append_usage(self, batches: Sequence[UsageBatch]) -> None:
        if not batches:
            return
        with self._transaction() as con:
            con.executemany(
                "INSERT INTO tenant_usage VALUES (?, ?, ?, ?, ?, ?)",
                [
                    [
                        batch.tenant_id,
                        batch.api_key_id,
                        batch.request_count,
                        batch.first_used_at,
                        batch.last_used_at,
                        batch.recorded_at,
                    ]
                    for batch in batches
                ],
            )

    def insert_audit_events(self, events: Sequence[AuditEvent]) -> int:
        return len(self.insert_new_audit_events(events))

    def insert_new_audit_events(self, events: Sequence[AuditEvent]) -> frozenset[str]:
        if not events:
            return frozenset()
        now = datetime.now(UTC)
        rows = [_audit_row(event, now) for event in events]
        # One statement per batch, with one list parameter per column,
        # because executemany would run one INSERT per event.
        columns = [list(column) for column in zip(*rows, strict=True)]
        with self._transaction() as con:
            written = con.execute(_INSERT_AUDIT, columns).fetchall()
        return frozenset(row[0] for row in written)

    def list_audit_events(
        self,
        tenant_id: str | None,
        *,
        event_type: str | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        query = f"SELECT {_AUDIT_COLUMNS} FROM tenant_audit_logs WHERE true"
        parameters: list[Any] = []
        if tenant_id is not None:
            query += " AND tenant_id = ?"
            parameters.append(tenant_id)
        if event_type is not None:
            query += " AND event_type = ?"
            parameters.append(event_type)
        query += " ORDER BY occurred_at DESC, event_id LIMIT ?"
        parameters.append(int(limit))
        with self._transaction() as con:
            rows = con.execute(query, parameters).fetchall()
        return [_audit_from_row(row) for row in rows]

    # Alerts

    def list_expiring(self, now: datetime, until: datetime) -> list[ExpiringItem]:
        with self._transaction() as con:
            rows = con.execute(_EXPIRING_SQL, {"now": now, "until": until}).fetchall()
        return [ExpiringItem(*row) for row in rows]

    def list_used_after_expiry(
        self, since: datetime, until: datetime
    ) -> list[ExpiringItem]:
        with self._transaction() as con:
            rows = con.execute(
                _USED_AFTER_EXPIRY_SQL, {"since": since, "until": until}
            ).fetchall()
        return [ExpiringItem(*row) for row in rows]

    def find_event_bursts(
        self,
        event_type: str,
        *,
        group_by: Sequence[str],
        threshold: int,
        window: timedelta,
        since: datetime,
        until: datetime,
    ) -> list[EventBurst]:
        columns = check_group_columns(group_by)
        window_us = window_microseconds(window)
        parameters = {
            "event_type": event_type,
            "context_since": since - window,
            "since": since,
            "until": until,
            "threshold": int(threshold),
            "window_us": window_us,
        }
        with self._transaction() as con:
            rows = con.execute(_burst_sql(columns), parameters).fetchall()
        return [_burst_from_row(columns, row, window_us) for row in rows]

    def record_notification(self, record: NotificationRecord) -> bool:
        with self._transaction() as con:
            if record.status == "claimed":
                sent = con.execute(
                    "SELECT 1 FROM alert_notifications WHERE alert_key = ? "
                    "AND channel = ? AND status = 'sent' LIMIT 1",
                    [record.alert_key, record.channel],
                ).fetchone()
                if sent:
                    return False
            written = con.execute(
                f"INSERT INTO alert_notifications ({_NOTIFICATION_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING "
                "RETURNING notification_id",
                [getattr(record, name) for name in _NOTIFICATIONS.column_names],
            ).fetchall()
        return bool(written)

    def notification_states(self, alert_keys: Sequence[str]) -> list[NotificationState]:
        if not alert_keys:
            return []
        query = _STATE_SQL.format(
            where="alert_key IN (SELECT unnest($keys::VARCHAR[]))", having="TRUE"
        )
        with self._transaction() as con:
            rows = con.execute(query, {"keys": list(alert_keys)}).fetchall()
        return [NotificationState(*row) for row in rows]

    def unsent_notifications(self, claimed_since: datetime) -> list[NotificationState]:
        query = _STATE_SQL.format(
            where="TRUE", having="sent = false AND last_claimed_at >= $since"
        )
        with self._transaction() as con:
            rows = con.execute(query, {"since": claimed_since}).fetchall()
        return [NotificationState(*row) for row in rows]

    # Connection handling

    @contextmanager
    def _statement(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Yield the connection for one statement, which runs in its own transaction.

        Saves the BEGIN and COMMIT statements of ``_transaction``, each about
        as costly as a small query, on the key lookups of verification.
        """
        with self._lease.connection(self._lock_timeout) as con:
            self._ensure_schema(con)
            yield con

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lease.connection(self._lock_timeout) as con:
            self._ensure_schema(con)
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                self._lease.rollback(con)
                raise

    def _ensure_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        if self._schema_ready:
            return
        with self._thread_lock:
            for table in TABLES.values():
                con.execute(create_table_sql(table))
            # The file contains hashes and ciphertexts only, but no one else
            # needs to read it.
            os.chmod(self._path, 0o600)
            self._schema_ready = True

    def _insert_key(self, con: duckdb.DuckDBPyConnection, record: ApiKeyRecord) -> None:
        try:
            con.execute(
                f"INSERT INTO tenant_api_keys ({_KEY_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _key_row(record),
            )
        except duckdb.ConstraintException:
            raise AlreadyExistsError("API key id or hash already exists") from None

    def _one_key(
        self, where: str, parameters: list[Any], *, last_used: bool = True
    ) -> ApiKeyRecord | None:
        columns = f"{_KEY_COLUMNS}, {_LAST_USED}" if last_used else _KEY_COLUMNS
        with self._statement() as con:
            row = con.execute(
                f"SELECT {columns} FROM tenant_api_keys k WHERE {where}",
                parameters,
            ).fetchone()
        return _key_from_row(row) if row else None


# Alert queries. Named parameters ($name) because some values appear twice.

_NOTIFICATIONS = TABLES["alert_notifications"]
_NOTIFICATION_COLUMNS = ", ".join(_NOTIFICATIONS.column_names)

# Column order of ExpiringItem.
_EXPIRING_SQL = """
SELECT 'api_key', k.tenant_id, k.api_key_id, k.key_prefix, k.name, NULL,
       k.expires_at, t.contact_email, NULL
FROM tenant_api_keys k LEFT JOIN tenants t ON t.tenant_id = k.tenant_id
WHERE k.is_active AND k.expires_at > $now AND k.expires_at <= $until
  AND NOT EXISTS (SELECT 1 FROM tenant_api_keys n
                  WHERE n.tenant_id = k.tenant_id
                    AND n.rotated_from_key_id = k.api_key_id)
UNION ALL
SELECT 'credential', c.tenant_id, c.credential_id, c.account_hint, c.name,
       c.provider, c.expires_at, t.contact_email, NULL
FROM tenant_credentials c LEFT JOIN tenants t ON t.tenant_id = c.tenant_id
WHERE c.is_active AND c.expires_at > $now AND c.expires_at <= $until
ORDER BY 7, 1, 3
"""

_USED_AFTER_EXPIRY_SQL = """
WITH key_uses AS (
  SELECT tenant_id, json_extract_string(details, '$.api_key_id') AS item_id,
         occurred_at AS used_at
  FROM tenant_audit_logs
  WHERE event_type = 'authentication.failed'
    AND json_extract_string(details, '$.reason') = 'expired'
    AND occurred_at >= $since AND occurred_at < $until
  UNION ALL
  SELECT tenant_id, api_key_id, last_used_at FROM tenant_usage
  WHERE recorded_at >= $since AND last_used_at < $until
), credential_uses AS (
  SELECT tenant_id, json_extract_string(details, '$.credential_id') AS item_id,
         occurred_at AS used_at
  FROM tenant_audit_logs
  WHERE event_type = 'credentials.accessed'
    AND occurred_at >= $since AND occurred_at < $until
)
SELECT 'api_key', k.tenant_id, k.api_key_id, k.key_prefix, k.name, NULL,
       k.expires_at, t.contact_email, max(u.used_at)
FROM tenant_api_keys k
JOIN key_uses u ON u.tenant_id = k.tenant_id AND u.item_id = k.api_key_id
LEFT JOIN tenants t ON t.tenant_id = k.tenant_id
WHERE u.used_at >= k.expires_at
GROUP BY k.tenant_id, k.api_key_id, k.key_prefix, k.name, k.expires_at,
         t.contact_email
UNION ALL
SELECT 'credential', c.tenant_id, c.credential_id, c.account_hint, c.name,
       c.provider, c.expires_at, t.contact_email, max(u.used_at)
FROM tenant_credentials c
JOIN credential_uses u ON u.tenant_id = c.tenant_id AND u.item_id = c.credential_id
LEFT JOIN tenants t ON t.tenant_id = c.tenant_id
WHERE u.used_at >= c.expires_at
GROUP BY c.tenant_id, c.credential_id, c.account_hint, c.name, c.provider,
         c.expires_at, t.contact_email
ORDER BY 1, 3
"""

# Column order of NotificationState.
_STATE_SQL = """
SELECT alert_key, channel,
       sum(CASE WHEN status = 'claimed' THEN 1 ELSE 0 END) AS attempts,
       coalesce(max(CASE WHEN status = 'claimed' THEN attempt END), -1)
         > coalesce(max(CASE WHEN status <> 'claimed' THEN attempt END), -1)
         AS open_claim,
       max(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) = 1 AS sent,
       max(CASE WHEN status = 'claimed' THEN recorded_at END) AS last_claimed_at,
       max(alert) AS alert
FROM alert_notifications WHERE {where}
GROUP BY alert_key, channel HAVING {having}
ORDER BY alert_key, channel
"""


def _burst_sql(columns: Sequence[str]) -> str:
    """Return the bursts query for ``find_event_bursts``, grouped by ``columns``.

    Events are numbered per group in time order. Event e crosses the threshold
    when the event ``threshold`` places before it, f, is within the window:
    then more than ``threshold`` events fall in (e - window, e]. This is an
    equi-join on the number, so it costs no more than the numbering.
    """
    group = "".join(f"{column}, " for column in columns)
    partition = f"PARTITION BY {', '.join(columns)} " if columns else ""
    same_group = "".join(
        f" AND f.{column} IS NOT DISTINCT FROM e.{column}" for column in columns
    )
    selected = "".join(f"e.{column}, " for column in columns)
    return f"""
WITH ranked AS (
  SELECT {group}occurred_at,
         ROW_NUMBER() OVER ({partition}ORDER BY occurred_at, event_id) AS position
  FROM tenant_audit_logs
  WHERE event_type = $event_type
    AND occurred_at > $context_since AND occurred_at < $until
)
SELECT {selected}epoch_us(e.occurred_at) // $window_us AS bucket,
       min(f.occurred_at), max(e.occurred_at),
       max(e.position) - min(f.position) + 1
FROM ranked e
JOIN ranked f ON f.position = e.position - $threshold{same_group}
WHERE epoch_us(f.occurred_at) > epoch_us(e.occurred_at) - $window_us
  AND e.occurred_at >= $since
GROUP BY {selected}bucket
ORDER BY bucket
"""


def _burst_from_row(
    columns: Sequence[str], row: Sequence[Any], window_us: int
) -> EventBurst:
    values = list(row)
    group = tuple(zip(columns, values[: len(columns)], strict=True))
    bucket, first_at, last_at, count = values[len(columns) :]
    return EventBurst(
        group=group,
        bucket_start=bucket_start(int(bucket), window_us),
        first_at=first_at,
        last_at=last_at,
        count=int(count),
    )


def _key_row(record: ApiKeyRecord) -> list[Any]:
    return [
        record.api_key_id,
        record.tenant_id,
        record.user_id,
        record.api_key_hash,
        record.encrypted_api_key,
        record.key_prefix,
        record.name,
        " ".join(record.scopes),
        record.is_active,
        record.expires_at,
        record.created_at,
        record.created_by_user_id,
        record.revoked_at,
        record.revoked_by,
        record.rotated_from_key_id,
    ]


def _key_from_row(row: Sequence[Any]) -> ApiKeyRecord:
    values = list(row)
    values[4] = bytes(values[4])
    values[7] = tuple(values[7].split())
    return ApiKeyRecord(*values)


def _credential_row(record: CredentialRecord) -> list[Any]:
    return [
        record.credential_id,
        record.tenant_id,
        record.provider,
        record.name,
        record.encrypted_credentials,
        record.kms_key_name,
        record.account_hint,
        record.fingerprint,
        record.validation_status,
        record.validated_at,
        record.expires_at,
        json.dumps(record.details, sort_keys=True),
        record.is_active,
        record.created_at,
        record.created_by_user_id,
        record.deleted_at,
        record.deleted_by,
        record.erase_after,
    ]


def _credential_from_row(row: Sequence[Any]) -> CredentialRecord:
    values = list(row)
    values[4] = bytes(values[4])
    values[11] = json.loads(values[11]) if values[11] else {}
    return CredentialRecord(*values)


def _audit_row(event: AuditEvent, created_at: datetime) -> list[Any]:
    return [
        str(event.event_id),
        event.event_type,
        event.tenant_id,
        event.user_id,
        event.actor_id,
        event.ip_address,
        event.user_agent,
        event.occurred_at,
        created_at,
        json.dumps(event.details, sort_keys=True, default=str),
    ]


def _audit_from_row(row: Sequence[Any]) -> AuditEvent:
    (
        event_id,
        event_type,
        tenant_id,
        user_id,
        actor_id,
        ip,
        agent,
        occurred,
        _,
        details,
    ) = row
    return AuditEvent(
        event_id=event_id,
        event_type=event_type,
        tenant_id=tenant_id,
        user_id=user_id,
        actor_id=actor_id,
        ip_address=ip,
        user_agent=agent,
        occurred_at=occurred,
        details=json.loads(details) if details else {},
    )
