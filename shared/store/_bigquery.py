"""The production store: the tenant tables in one BigQuery dataset.

Every call runs parameterised GoogleSQL as query jobs: each value is a named,
typed query parameter and timestamps are sent as UTC. docs/bigquery.md explains
each choice; in short:

- Rows are written with DML only. Rows streamed with ``tabledata.insertAll``
  reject UPDATE for about 30 minutes, so a key revoked seconds after it was
  issued would stay active.
- BigQuery enforces no primary key, so each INSERT skips rows whose id already
  exists (``NOT IN`` on the id columns). Two racing inserts of one audit event
  can still both land, so audit reads keep one row per ``event_id``.
- Key verification, the hot path, runs no DML: it reads the key row, and
  usage is appended in batches. The audit writer runs one INSERT per event.
  UPDATE, DELETE and MERGE, which BigQuery runs two at a time per table, serve
  admin actions only: revocation, rotation and credential changes.
- A job that failed with a transient error changed nothing, so it is run again
  with backoff; when the time budget runs out, ``TransientStoreError``.

This module imports ``google.cloud.bigquery`` at the top. ``build_store``
imports the module only when ``STORE_BACKEND=bigquery``.
"""

# SQL here is assembled from module constants and schema column names only;
# every value is a bound query parameter.
# ruff: noqa: S608

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import random
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from shared.events import AuditEvent
from shared.store import AlreadyExistsError, StoreError, TransientStoreError
from shared.store._bursts import (
    bucket_start,
    check_group_columns,
    window_microseconds,
)
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
from shared.store.schema import (
    TABLES,
    Table,
    bigquery_schema,
    bigquery_table_options,
)

if TYPE_CHECKING:
    from shared.config import Settings

__all__ = ["BigQueryStore"]

_log = logging.getLogger(__name__)

_DATASET_ID = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_EMULATOR_PROJECT = "local-project"

# Rows per INSERT statement: keeps the request under BigQuery's 10 MB limit
# with 8 KiB of audit details per row.
_BATCH_ROWS = 500

# A Pub/Sub subscription keeps an unacknowledged message for at most 7 days,
# so a redelivered audit event finds its first copy within this window. A
# replay by seek can reach further back, and reads deduplicate that too.
# Checking only recent partitions keeps each audit INSERT from scanning the
# whole table.
_AUDIT_DEDUP_WINDOW = timedelta(days=8)

_TRANSIENT_REASONS = frozenset(
    {
        "backendError",
        "badGateway",
        "internalError",
        "jobBackendError",
        "jobInternalError",
        "jobRateLimitExceeded",
        "rateLimitExceeded",
    }
)
# Job failures BigQuery reports without a retryable reason. A later run of
# the same statement can succeed.
_TRANSIENT_MESSAGES = (
    "could not serialize access",
    "due to concurrent update",
    "too many dml statements outstanding",
)
_TRANSIENT_TYPES = (
    api_exceptions.TooManyRequests,
    api_exceptions.InternalServerError,
    api_exceptions.BadGateway,
    api_exceptions.ServiceUnavailable,
    api_exceptions.GatewayTimeout,
)

_API_KEYS = TABLES["tenant_api_keys"]
_AUDIT_LOGS = TABLES["tenant_audit_logs"]
_CREDENTIALS = TABLES["tenant_credentials"]
_TENANTS = TABLES["tenants"]
_USAGE = TABLES["tenant_usage"]
_USERS = TABLES["users"]
_NOTIFICATIONS = TABLES["alert_notifications"]

# Alert queries read audit rows by occurred_at; the partition filter on
# created_at reaches back this much further, for clock skew between the
# publisher and the audit writer.
_AUDIT_WRITE_SKEW = timedelta(hours=1)

_KEY_SELECT = (
    "SELECT "
    + ", ".join(f"k.{name}" for name in _API_KEYS.column_names)
    + ", u.last_used_at FROM tenant_api_keys AS k LEFT JOIN ("
    "SELECT tenant_id, api_key_id, MAX(last_used_at) AS last_used_at "
    "FROM tenant_usage {usage_filter}GROUP BY tenant_id, api_key_id) AS u "
    "ON u.tenant_id = k.tenant_id AND u.api_key_id = k.api_key_id "
)


@dataclass(frozen=True, slots=True)
class _Result:
    rows: list[Mapping[str, Any]]
    affected: int


class BigQueryStore:
    """Store backend on the tables of one BigQuery dataset."""

    def __init__(
        self,
        client: bigquery.Client,
        dataset_id: str,
        *,
        create_tables: bool = False,
        location: str | None = None,
        timeout_seconds: float = 30.0,
    ) -> None:
        if not _DATASET_ID.match(dataset_id):
            raise ValueError(
                f"invalid BigQuery dataset id {dataset_id!r}: use letters, digits "
                "and underscores only (TENANTS_DATASET_ID)"
            )
        self._client = client
        self._dataset = bigquery.DatasetReference(client.project, dataset_id)
        self._create_tables = create_tables
        self._location = location
        self._timeout = timeout_seconds
        self._schema_ready = not create_tables
        self._schema_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> BigQueryStore:
        """Build the client from the settings: an emulator endpoint or Google's API."""
        if settings.bigquery_api_endpoint:
            client = bigquery.Client(
                project=settings.bigquery_project_id or _EMULATOR_PROJECT,
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options=ClientOptions(
                    api_endpoint=settings.bigquery_api_endpoint
                ),
                location=settings.bigquery_location,
            )
        else:
            client = bigquery.Client(
                project=settings.bigquery_project_id,
                location=settings.bigquery_location,
            )
        return cls(
            client,
            settings.tenants_dataset_id,
            create_tables=settings.bigquery_create_tables,
            location=settings.bigquery_location,
        )

    @property
    def dataset(self) -> str:
        """The dataset as ``project.dataset``."""
        return f"{self._dataset.project}.{self._dataset.dataset_id}"

    # Tenants and users

    def create_tenant(self, tenant: Tenant, admin: User) -> None:
        # No multi-statement transaction: the user row goes first, guarded by
        # both ids, and is removed again if the tenant row loses a race. A
        # leftover user row without its tenant is harmless.
        user = self._insert(
            _USERS,
            [_values(_USERS, admin)],
            unique=("user_id",),
            where="@tenant_id NOT IN (SELECT tenant_id FROM tenants)",
            parameters=[_scalar("tenant_id", "STRING", tenant.tenant_id)],
        )
        if user.affected == 0:
            raise AlreadyExistsError(
                f"tenant {tenant.tenant_id} or user {admin.user_id} already exists"
            )
        created = self._insert(
            _TENANTS, [_values(_TENANTS, tenant)], unique=("tenant_id",)
        )
        if created.affected == 0:
            self._query(
                "DELETE FROM users WHERE user_id = @user_id",
                [_scalar("user_id", "STRING", admin.user_id)],
            )
            raise AlreadyExistsError(f"tenant {tenant.tenant_id} already exists")

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        result = self._query(
            f"SELECT {', '.join(_TENANTS.column_names)} FROM tenants "
            "WHERE tenant_id = @tenant_id",
            [_scalar("tenant_id", "STRING", tenant_id)],
        )
        return Tenant(**_fields(_TENANTS, result.rows[0])) if result.rows else None

    # API keys

    def insert_api_key(self, record: ApiKeyRecord) -> None:
        result = self._insert(
            _API_KEYS,
            [_key_values(record)],
            unique=("api_key_id", "api_key_hash"),
        )
        if result.affected == 0:
            raise AlreadyExistsError("API key id or hash already exists")

    def get_api_key(self, tenant_id: str, api_key_id: str) -> ApiKeyRecord | None:
        keys = self._select_keys(
            "WHERE k.tenant_id = @tenant_id AND k.api_key_id = @api_key_id",
            [
                _scalar("tenant_id", "STRING", tenant_id),
                _scalar("api_key_id", "STRING", api_key_id),
            ],
            tenant_id=tenant_id,
        )
        return keys[0] if keys else None

    def find_api_key_by_hash(self, api_key_hash: str) -> ApiKeyRecord | None:
        # One query job per cache miss in KeyService; BigQuery bills each job
        # for at least 10 MB per table it reads.
        keys = self._select_keys(
            "WHERE k.api_key_hash = @api_key_hash",
            [_scalar("api_key_hash", "STRING", api_key_hash)],
        )
        return keys[0] if keys else None

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        return self._select_keys(
            "WHERE k.tenant_id = @tenant_id ORDER BY k.created_at, k.api_key_id",
            [_scalar("tenant_id", "STRING", tenant_id)],
            tenant_id=tenant_id,
        )

    def revoke_api_key(
        self, tenant_id: str, api_key_id: str, revoked_at: datetime, revoked_by: str
    ) -> bool:
        result = self._query(
            "UPDATE tenant_api_keys SET is_active = FALSE, "
            "revoked_at = @revoked_at, revoked_by = @revoked_by "
            "WHERE tenant_id = @tenant_id AND api_key_id = @api_key_id "
            "AND is_active",
            [
                _scalar("revoked_at", "TIMESTAMP", revoked_at),
                _scalar("revoked_by", "STRING", revoked_by),
                _scalar("tenant_id", "STRING", tenant_id),
                _scalar("api_key_id", "STRING", api_key_id),
            ],
        )
        return result.affected > 0

    def rotate_api_key(
        self,
        tenant_id: str,
        old_key_id: str,
        new_key: ApiKeyRecord,
        old_expires_at: datetime,
    ) -> bool:
        if new_key.tenant_id != tenant_id:
            raise ValueError("new_key must belong to the same tenant")
        result = self._query(
            _ROTATE_SQL,
            [
                _scalar("tenant_id", "STRING", tenant_id),
                _scalar("old_key_id", "STRING", old_key_id),
                _scalar("old_expires_at", "TIMESTAMP", old_expires_at),
                *_row_parameters(_API_KEYS, _key_values(new_key), prefix="new_"),
            ],
        )
        if result.affected > 0:
            return True
        old = self.get_api_key(tenant_id, old_key_id)
        if old is None or not old.is_active:
            return False
        raise AlreadyExistsError("API key id or hash already exists")

    # Cloud credentials

    def insert_credential(self, record: CredentialRecord) -> None:
        result = self._insert(
            _CREDENTIALS, [_credential_values(record)], unique=("credential_id",)
        )
        if result.affected == 0:
            raise AlreadyExistsError("credential id already exists")

    def get_credential(
        self, tenant_id: str, credential_id: str
    ) -> CredentialRecord | None:
        rows = self._select_credentials(
            "AND credential_id = @credential_id",
            tenant_id,
            [_scalar("credential_id", "STRING", credential_id)],
        )
        return rows[0] if rows else None

    def list_credentials(self, tenant_id: str) -> list[CredentialRecord]:
        return self._select_credentials(
            "ORDER BY created_at, credential_id", tenant_id, []
        )

    def delete_credential(
        self,
        tenant_id: str,
        credential_id: str,
        deleted_at: datetime,
        deleted_by: str,
        erase_after: datetime,
    ) -> bool:
        result = self._query(
            "UPDATE tenant_credentials SET is_active = FALSE, "
            "deleted_at = @deleted_at, deleted_by = @deleted_by, "
            "erase_after = @erase_after "
            "WHERE tenant_id = @tenant_id AND credential_id = @credential_id "
            "AND is_active",
            [
                _scalar("deleted_at", "TIMESTAMP", deleted_at),
                _scalar("deleted_by", "STRING", deleted_by),
                _scalar("erase_after", "TIMESTAMP", erase_after),
                _scalar("tenant_id", "STRING", tenant_id),
                _scalar("credential_id", "STRING", credential_id),
            ],
        )
        return result.affected > 0

    def restore_credential(
        self, tenant_id: str, credential_id: str, now: datetime
    ) -> bool:
        result = self._query(
            "UPDATE tenant_credentials SET is_active = TRUE, deleted_at = NULL, "
            "deleted_by = NULL, erase_after = NULL "
            "WHERE tenant_id = @tenant_id AND credential_id = @credential_id "
            "AND NOT is_active AND erase_after > @now",
            [
                _scalar("tenant_id", "STRING", tenant_id),
                _scalar("credential_id", "STRING", credential_id),
                _scalar("now", "TIMESTAMP", now),
            ],
        )
        return result.affected > 0

    def erase_credentials(self, tenant_id: str, now: datetime) -> list[str]:
        # DML has no RETURNING. So find the ids, delete those still due, then
        # report the ones that are gone, since a restore may have won a race.
        due = " AND NOT is_active AND erase_after <= @now"
        parameters = [
            _scalar("tenant_id", "STRING", tenant_id),
            _scalar("now", "TIMESTAMP", now),
        ]
        found = self._query(
            "SELECT credential_id FROM tenant_credentials "
            "WHERE tenant_id = @tenant_id" + due,
            parameters,
        )
        ids = sorted({row["credential_id"] for row in found.rows})
        if not ids:
            return []

        in_ids = " AND credential_id IN UNNEST(@ids)"
        id_list = bigquery.ArrayQueryParameter("ids", "STRING", ids)
        deleted = self._query(
            "DELETE FROM tenant_credentials WHERE tenant_id = @tenant_id"
            + in_ids
            + due,
            [*parameters, id_list],
        )
        if deleted.affected >= len(ids):
            return ids

        left = self._query(
            "SELECT credential_id FROM tenant_credentials "
            "WHERE tenant_id = @tenant_id" + in_ids,
            [parameters[0], id_list],
        )
        return sorted(set(ids) - {row["credential_id"] for row in left.rows})

    # Usage and audit

    def append_usage(self, batches: Sequence[UsageBatch]) -> None:
        rows = [_values(_USAGE, batch) for batch in batches]
        for start in range(0, len(rows), _BATCH_ROWS):
            self._insert(_USAGE, rows[start : start + _BATCH_ROWS])

    def insert_audit_events(self, events: Sequence[AuditEvent]) -> int:
        written, _, _ = self._insert_audit_rows(events)
        return written

    def insert_new_audit_events(self, events: Sequence[AuditEvent]) -> frozenset[str]:
        written, event_ids, created_at = self._insert_audit_rows(events)
        if written == 0:
            return frozenset()
        if written >= len(event_ids):
            return frozenset(event_ids)
        # Some were redeliveries. The rows this call wrote carry its created_at,
        # which also limits the query to one partition.
        result = self._query(
            "SELECT DISTINCT event_id FROM tenant_audit_logs "
            "WHERE created_at = @created_at AND event_id IN UNNEST(@event_ids)",
            [
                _scalar("created_at", "TIMESTAMP", created_at),
                bigquery.ArrayQueryParameter("event_ids", "STRING", event_ids),
            ],
        )
        return frozenset(row["event_id"] for row in result.rows)

    def _insert_audit_rows(
        self, events: Sequence[AuditEvent]
    ) -> tuple[int, list[str], datetime]:
        """INSERT the new events; return rows written, distinct ids and created_at."""
        # TODO: past 1,500 INSERT statements a day a table runs 10 at a time
        # and queues 100; a busier audit writer needs the Storage Write API.
        # Reads already deduplicate, so only this method would change.
        now = datetime.now(UTC)
        first_copies: dict[str, AuditEvent] = {}
        for event in events:
            first_copies.setdefault(str(event.event_id), event)
        rows = [_audit_values(event, now) for event in first_copies.values()]
        since = _scalar("dedup_since", "TIMESTAMP", now - _AUDIT_DEDUP_WINDOW)
        written = 0
        for start in range(0, len(rows), _BATCH_ROWS):
            result = self._insert(
                _AUDIT_LOGS,
                rows[start : start + _BATCH_ROWS],
                unique=("event_id",),
                existing="created_at >= @dedup_since",
                parameters=[since],
            )
            written += result.affected
        return written, list(first_copies), now

    def list_audit_events(
        self,
        tenant_id: str | None,
        *,
        event_type: str | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        # Filters go in WHERE (before the window function) so BigQuery can
        # prune by the clustering column; QUALIFY keeps one row per event.
        query = f"SELECT {', '.join(_AUDIT_LOGS.column_names)} "
        query += "FROM tenant_audit_logs WHERE TRUE"
        parameters = [_scalar("limit", "INT64", int(limit))]
        if tenant_id is not None:
            query += " AND tenant_id = @tenant_id"
            parameters.append(_scalar("tenant_id", "STRING", tenant_id))
        if event_type is not None:
            query += " AND event_type = @event_type"
            parameters.append(_scalar("event_type", "STRING", event_type))
        query += (
            " QUALIFY ROW_NUMBER() OVER "
            "(PARTITION BY event_id ORDER BY created_at) = 1"
            " ORDER BY occurred_at DESC, event_id LIMIT @limit"
        )
        result = self._query(query, parameters)
        return [_audit_from_row(row) for row in result.rows]

    # Alerts

    def list_expiring(self, now: datetime, until: datetime) -> list[ExpiringItem]:
        result = self._query(
            _EXPIRING_SQL,
            [
                _scalar("now", "TIMESTAMP", now),
                _scalar("until", "TIMESTAMP", until),
            ],
        )
        return [_expiring_from_row(row) for row in result.rows]

    def list_used_after_expiry(
        self, since: datetime, until: datetime
    ) -> list[ExpiringItem]:
        result = self._query(
            _USED_AFTER_EXPIRY_SQL,
            [
                _scalar("since", "TIMESTAMP", since),
                _scalar("until", "TIMESTAMP", until),
                _scalar("created_since", "TIMESTAMP", since - _AUDIT_WRITE_SKEW),
            ],
        )
        return [_expiring_from_row(row) for row in result.rows]

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
        context_since = since - window
        result = self._query(
            _burst_sql(columns),
            [
                _scalar("event_type", "STRING", event_type),
                _scalar("context_since", "TIMESTAMP", context_since),
                _scalar("since", "TIMESTAMP", since),
                _scalar("until", "TIMESTAMP", until),
                _scalar("threshold", "INT64", int(threshold)),
                _scalar("window_us", "INT64", window_us),
                _scalar(
                    "created_since", "TIMESTAMP", context_since - _AUDIT_WRITE_SKEW
                ),
            ],
        )
        return [
            EventBurst(
                group=tuple((column, row[column]) for column in columns),
                bucket_start=bucket_start(int(row["bucket"]), window_us),
                first_at=row["first_at"],
                last_at=row["last_at"],
                count=int(row["event_count"]),
            )
            for row in result.rows
        ]

    def record_notification(self, record: NotificationRecord) -> bool:
        where = None
        parameters: list[bigquery.ScalarQueryParameter] = []
        if record.status == "claimed":
            where = (
                "NOT EXISTS (SELECT 1 FROM alert_notifications "
                "WHERE alert_key = @alert_key AND channel = @channel "
                "AND status = 'sent')"
            )
            parameters = [
                _scalar("alert_key", "STRING", record.alert_key),
                _scalar("channel", "STRING", record.channel),
            ]
        result = self._insert(
            _NOTIFICATIONS,
            [_values(_NOTIFICATIONS, record)],
            unique=("notification_id",),
            where=where,
            parameters=parameters,
        )
        return result.affected > 0

    def notification_states(self, alert_keys: Sequence[str]) -> list[NotificationState]:
        if not alert_keys:
            return []
        result = self._query(
            _STATE_SQL.format(where="alert_key IN UNNEST(@keys)", having="TRUE"),
            [bigquery.ArrayQueryParameter("keys", "STRING", list(alert_keys))],
        )
        return [_state_from_row(row) for row in result.rows]

    def unsent_notifications(self, claimed_since: datetime) -> list[NotificationState]:
        having = (
            "LOGICAL_OR(status = 'sent') IS NOT TRUE "
            "AND MAX(IF(status = 'claimed', recorded_at, NULL)) >= @since"
        )
        result = self._query(
            _STATE_SQL.format(where="TRUE", having=having),
            [_scalar("since", "TIMESTAMP", claimed_since)],
        )
        return [_state_from_row(row) for row in result.rows]

    # Statements

    def _insert(
        self,
        table: Table,
        rows: Sequence[Mapping[str, Any]],
        *,
        unique: Sequence[str] = (),
        existing: str | None = None,
        where: str | None = None,
        parameters: Sequence[bigquery.query._AbstractQueryParameter] = (),
    ) -> _Result:
        """INSERT ``rows`` but none whose ``unique`` values are already in ``table``.

        ``existing`` narrows the rows checked for duplicates (a partition filter);
        ``where`` adds a condition of its own. Both may use ``parameters``.
        """
        if not rows:
            return _Result([], 0)
        columns = table.column_names
        select = ", ".join(
            _from_parameter(table, name, f"r.{name}") for name in columns
        )
        conditions = [
            f"r.{name} NOT IN (SELECT {name} FROM {table.name}"
            + (f" WHERE {existing})" if existing else ")")
            for name in unique
        ]
        if where:
            conditions.append(where)
        sql = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {select} "
            "FROM UNNEST(@rows) AS r"
        )
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        structs = [
            bigquery.StructQueryParameter(None, *_row_parameters(table, row))
            for row in rows
        ]
        array = bigquery.ArrayQueryParameter("rows", "STRUCT", structs)
        return self._query(sql, [array, *parameters])

    def _select_keys(
        self,
        clause: str,
        parameters: list[bigquery.ScalarQueryParameter],
        *,
        tenant_id: str | None = None,
    ) -> list[ApiKeyRecord]:
        usage_filter = "WHERE tenant_id = @tenant_id " if tenant_id else ""
        result = self._query(
            _KEY_SELECT.format(usage_filter=usage_filter) + clause, parameters
        )
        return [_key_from_row(row) for row in result.rows]

    def _select_credentials(
        self,
        clause: str,
        tenant_id: str,
        parameters: list[bigquery.ScalarQueryParameter],
    ) -> list[CredentialRecord]:
        result = self._query(
            f"SELECT {', '.join(_CREDENTIALS.column_names)} FROM tenant_credentials "
            "WHERE tenant_id = @tenant_id " + clause,
            [_scalar("tenant_id", "STRING", tenant_id), *parameters],
        )
        return [_credential_from_row(row) for row in result.rows]

    def _query(
        self,
        sql: str,
        parameters: Sequence[bigquery.query._AbstractQueryParameter] = (),
    ) -> _Result:
        """Run one statement, running it again while it fails transiently."""
        self._ensure_schema()
        config = bigquery.QueryJobConfig(
            default_dataset=self._dataset,
            query_parameters=list(parameters),
            use_legacy_sql=False,
        )
        deadline = time.monotonic() + self._timeout
        delay = 0.2
        attempt = 1
        while True:
            try:
                return self._run(sql, config, deadline)
            except api_exceptions.GoogleAPICallError as exc:
                if not _is_transient(exc):
                    raise StoreError(f"BigQuery query failed: {exc.message}") from exc
                pause = delay * (1 + random.random())  # noqa: S311 - jitter
                if time.monotonic() + pause > deadline:
                    raise TransientStoreError(
                        f"BigQuery is busy after {attempt} attempts: {exc.message}"
                    ) from exc
                _log.warning(
                    "BigQuery job failed transiently (%s); retrying in %.2f s",
                    _reason(exc),
                    pause,
                    extra={"labels": {"attempt": str(attempt)}},
                )
                time.sleep(pause)
                delay = min(delay * 2, 5.0)
                attempt += 1

    def _run(
        self,
        sql: str,
        config: bigquery.QueryJobConfig,
        deadline: float,
    ) -> _Result:
        remaining = max(deadline - time.monotonic(), 1.0)
        # The client's own retry repeats HTTP calls only; a call that creates
        # a job reuses its job id, so it never starts the statement twice.
        rpc_retry = bigquery.DEFAULT_RETRY.with_deadline(remaining)
        try:
            job = self._client.query(
                sql,
                job_config=config,
                location=self._location,
                retry=rpc_retry,
                job_retry=None,
            )
            rows = job.result(retry=rpc_retry, timeout=remaining, job_retry=None)
            return _Result(
                [dict(row.items()) for row in rows],
                job.num_dml_affected_rows or 0,
            )
        except (
            api_exceptions.RetryError,
            concurrent.futures.TimeoutError,
            requests.exceptions.RequestException,
        ) as exc:
            raise TransientStoreError(
                f"BigQuery request failed or timed out ({type(exc).__name__}); "
                "retry later"
            ) from exc

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            dataset = bigquery.Dataset(self._dataset)
            dataset.location = self._location or "US"
            try:
                self._client.create_dataset(dataset, exists_ok=True)
                for table in TABLES.values():
                    self._client.create_table(
                        _bigquery_table(self._dataset, table), exists_ok=True
                    )
            except api_exceptions.GoogleAPICallError as exc:
                error = TransientStoreError if _is_transient(exc) else StoreError
                raise error(
                    f"creating the tables of {self.dataset} failed: {exc.message}"
                ) from exc
            self._schema_ready = True


# Parameters and rows


def _scalar(name: str, type_: str, value: Any) -> bigquery.ScalarQueryParameter:
    """Return a typed parameter; a None value is a NULL of that type."""
    if type_ == "TIMESTAMP":
        value = _utc(value, name)
    return bigquery.ScalarQueryParameter(name, type_, value)


def _utc(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _row_parameters(
    table: Table, row: Mapping[str, Any], *, prefix: str = ""
) -> list[bigquery.ScalarQueryParameter]:
    """Return one typed parameter per column; BYTES travel as base64 STRING."""
    parameters = []
    for column in table.columns:
        value = row[column.name]
        if column.type == "BYTES":
            encoded = None if value is None else base64.b64encode(value).decode()
            parameters.append(_scalar(prefix + column.name, "STRING", encoded))
        else:
            parameters.append(_scalar(prefix + column.name, column.type, value))
    return parameters


def _from_parameter(table: Table, name: str, reference: str) -> str:
    # A BYTES query parameter is base64 in the REST body and the client
    # encodes it; bqemulator 1.4.0 stores that base64 text instead of the
    # bytes. A STRING parameter decoded by FROM_BASE64 is right on both.
    column = next(column for column in table.columns if column.name == name)
    return f"FROM_BASE64({reference})" if column.type == "BYTES" else reference


def _values(table: Table, record: object) -> dict[str, Any]:
    return {name: getattr(record, name) for name in table.column_names}


def _fields(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in table.column_names}


def _key_values(record: ApiKeyRecord) -> dict[str, Any]:
    return _values(_API_KEYS, record) | {"scopes": " ".join(record.scopes)}


def _key_from_row(row: Mapping[str, Any]) -> ApiKeyRecord:
    values = _fields(_API_KEYS, row)
    values["encrypted_api_key"] = bytes(values["encrypted_api_key"])
    values["scopes"] = tuple(values["scopes"].split())
    return ApiKeyRecord(**values, last_used_at=row["last_used_at"])


def _credential_values(record: CredentialRecord) -> dict[str, Any]:
    details = json.dumps(record.details, sort_keys=True)
    return _values(_CREDENTIALS, record) | {"details": details}


def _credential_from_row(row: Mapping[str, Any]) -> CredentialRecord:
    values = _fields(_CREDENTIALS, row)
    values["encrypted_credentials"] = bytes(values["encrypted_credentials"])
    values["details"] = json.loads(values["details"]) if values["details"] else {}
    return CredentialRecord(**values)


def _audit_values(event: AuditEvent, created_at: datetime) -> dict[str, Any]:
    return {
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "tenant_id": event.tenant_id,
        "user_id": event.user_id,
        "actor_id": event.actor_id,
        "ip_address": event.ip_address,
        "user_agent": event.user_agent,
        "occurred_at": event.occurred_at,
        "created_at": created_at,
        "details": json.dumps(event.details, sort_keys=True, default=str),
    }


def _audit_from_row(row: Mapping[str, Any]) -> AuditEvent:
    values = _fields(_AUDIT_LOGS, row)
    del values["created_at"]
    details = values.pop("details")
    return AuditEvent(**values, details=json.loads(details) if details else {})


def _rotate_sql() -> str:
    # One MERGE is atomic: it shortens the old key's expiry and inserts the
    # new key, or does neither. Its source has a row for each action, and
    # both exist only while the old key is active and the new ids are unused.
    old_is_active = (
        "k.tenant_id = @tenant_id AND k.api_key_id = @old_key_id AND k.is_active "
        "AND @new_api_key_id NOT IN (SELECT api_key_id FROM tenant_api_keys) "
        "AND @new_api_key_hash NOT IN (SELECT api_key_hash FROM tenant_api_keys)"
    )
    columns = _API_KEYS.column_names
    values = [_from_parameter(_API_KEYS, name, f"@new_{name}") for name in columns]
    return (
        "MERGE tenant_api_keys AS t USING ("
        "SELECT k.api_key_id AS match_id, FALSE AS is_new "
        f"FROM tenant_api_keys AS k WHERE {old_is_active} UNION ALL "
        "SELECT CAST(NULL AS STRING), TRUE "
        f"FROM tenant_api_keys AS k WHERE {old_is_active}"
        ") AS s ON NOT s.is_new AND t.tenant_id = @tenant_id "
        "AND t.api_key_id = s.match_id "
        "WHEN MATCHED THEN UPDATE SET "
        "expires_at = LEAST(t.expires_at, @old_expires_at) "
        "WHEN NOT MATCHED BY TARGET AND s.is_new THEN "
        f"INSERT ({', '.join(columns)}) VALUES ({', '.join(values)})"
    )


_ROTATE_SQL = _rotate_sql()


# Alert queries

# Audit rows of the last ``@created_since`` partitions, one per event_id.
_AUDIT_EVENTS = (
    "SELECT * FROM tenant_audit_logs "
    "WHERE created_at >= @created_since AND {where} "
    "QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY created_at) = 1"
)

_EXPIRING_SQL = """
SELECT 'api_key' AS kind, k.tenant_id, k.api_key_id AS item_id,
       k.key_prefix AS label, k.name, CAST(NULL AS STRING) AS provider,
       k.expires_at, t.contact_email, CAST(NULL AS TIMESTAMP) AS last_used_at
FROM tenant_api_keys AS k LEFT JOIN tenants AS t ON t.tenant_id = k.tenant_id
WHERE k.is_active AND k.expires_at > @now AND k.expires_at <= @until
  AND NOT EXISTS (SELECT 1 FROM tenant_api_keys AS n
                  WHERE n.tenant_id = k.tenant_id
                    AND n.rotated_from_key_id = k.api_key_id)
UNION ALL
SELECT 'credential', c.tenant_id, c.credential_id, c.account_hint, c.name,
       c.provider, c.expires_at, t.contact_email, CAST(NULL AS TIMESTAMP)
FROM tenant_credentials AS c LEFT JOIN tenants AS t ON t.tenant_id = c.tenant_id
WHERE c.is_active AND c.expires_at > @now AND c.expires_at <= @until
ORDER BY expires_at, kind, item_id
"""

_EXPIRED_FAILURES = _AUDIT_EVENTS.format(
    where="event_type = 'authentication.failed' "
    "AND JSON_VALUE(details, '$.reason') = 'expired' "
    "AND occurred_at >= @since AND occurred_at < @until"
)
_ACCESSES = _AUDIT_EVENTS.format(
    where="event_type = 'credentials.accessed' "
    "AND occurred_at >= @since AND occurred_at < @until"
)

_USED_AFTER_EXPIRY_SQL = f"""
WITH expired_failures AS ({_EXPIRED_FAILURES}),
accesses AS ({_ACCESSES}), key_uses AS (
  SELECT tenant_id, JSON_VALUE(details, '$.api_key_id') AS item_id,
         occurred_at AS used_at
  FROM expired_failures
  UNION ALL
  SELECT tenant_id, api_key_id, last_used_at FROM tenant_usage
  WHERE recorded_at >= @since AND last_used_at < @until
), credential_uses AS (
  SELECT tenant_id, JSON_VALUE(details, '$.credential_id') AS item_id,
         occurred_at AS used_at
  FROM accesses
)
SELECT 'api_key' AS kind, k.tenant_id, k.api_key_id AS item_id,
       k.key_prefix AS label, k.name, CAST(NULL AS STRING) AS provider,
       k.expires_at, t.contact_email, MAX(u.used_at) AS last_used_at
FROM tenant_api_keys AS k
JOIN key_uses AS u ON u.tenant_id = k.tenant_id AND u.item_id = k.api_key_id
LEFT JOIN tenants AS t ON t.tenant_id = k.tenant_id
WHERE u.used_at >= k.expires_at
GROUP BY k.tenant_id, k.api_key_id, k.key_prefix, k.name, k.expires_at,
         t.contact_email
UNION ALL
SELECT 'credential', c.tenant_id, c.credential_id, c.account_hint, c.name,
       c.provider, c.expires_at, t.contact_email, MAX(u.used_at)
FROM tenant_credentials AS c
JOIN credential_uses AS u
  ON u.tenant_id = c.tenant_id AND u.item_id = c.credential_id
LEFT JOIN tenants AS t ON t.tenant_id = c.tenant_id
WHERE u.used_at >= c.expires_at
GROUP BY c.tenant_id, c.credential_id, c.account_hint, c.name, c.provider,
         c.expires_at, t.contact_email
ORDER BY kind, item_id
"""

_STATE_SQL = """
SELECT alert_key, channel,
       COUNTIF(status = 'claimed') AS attempts,
       COALESCE(MAX(IF(status = 'claimed', attempt, NULL)), -1)
         > COALESCE(MAX(IF(status != 'claimed', attempt, NULL)), -1)
         AS open_claim,
       LOGICAL_OR(status = 'sent') IS TRUE AS sent,
       MAX(IF(status = 'claimed', recorded_at, NULL)) AS last_claimed_at,
       MAX(alert) AS alert
FROM alert_notifications WHERE {where}
GROUP BY alert_key, channel HAVING {having}
ORDER BY alert_key, channel
"""


def _burst_sql(columns: Sequence[str]) -> str:
    """Return the bursts query; ``DuckDBStore`` documents the method."""
    group = "".join(f"{column}, " for column in columns)
    partition = f"PARTITION BY {', '.join(columns)} " if columns else ""
    same_group = "".join(
        f" AND f.{column} IS NOT DISTINCT FROM e.{column}" for column in columns
    )
    selected = "".join(f"e.{column}, " for column in columns)
    events = _AUDIT_EVENTS.format(
        where="event_type = @event_type "
        "AND occurred_at > @context_since AND occurred_at < @until"
    )
    return f"""
WITH events AS ({events}),
ranked AS (
  SELECT {group}occurred_at,
         ROW_NUMBER() OVER ({partition}ORDER BY occurred_at, event_id) AS position
  FROM events
)
SELECT {selected}DIV(UNIX_MICROS(e.occurred_at), @window_us) AS bucket,
       MIN(f.occurred_at) AS first_at, MAX(e.occurred_at) AS last_at,
       MAX(e.position) - MIN(f.position) + 1 AS event_count
FROM ranked AS e
JOIN ranked AS f ON f.position = e.position - @threshold{same_group}
WHERE UNIX_MICROS(f.occurred_at) > UNIX_MICROS(e.occurred_at) - @window_us
  AND e.occurred_at >= @since
GROUP BY {selected}bucket
ORDER BY bucket
"""


def _expiring_from_row(row: Mapping[str, Any]) -> ExpiringItem:
    return ExpiringItem(
        kind=row["kind"],
        tenant_id=row["tenant_id"],
        item_id=row["item_id"],
        label=row["label"],
        name=row["name"],
        provider=row["provider"],
        expires_at=row["expires_at"],
        contact_email=row["contact_email"],
        last_used_at=row["last_used_at"],
    )


def _state_from_row(row: Mapping[str, Any]) -> NotificationState:
    return NotificationState(
        alert_key=row["alert_key"],
        channel=row["channel"],
        attempts=int(row["attempts"]),
        open_claim=bool(row["open_claim"]),
        sent=bool(row["sent"]),
        last_claimed_at=row["last_claimed_at"],
        alert=row["alert"],
    )


# Errors and tables


def _is_transient(exc: api_exceptions.GoogleAPICallError) -> bool:
    """Tell whether running the failed statement again may succeed."""
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    errors = [error for error in exc.errors or [] if isinstance(error, dict)]
    if any(error.get("reason") in _TRANSIENT_REASONS for error in errors):
        return True
    texts = [exc.message or ""] + [str(error.get("message", "")) for error in errors]
    return any(
        marker in text.lower() for text in texts for marker in _TRANSIENT_MESSAGES
    )


def _reason(exc: api_exceptions.GoogleAPICallError) -> str:
    for error in exc.errors or []:
        if isinstance(error, dict) and error.get("reason"):
            return str(error["reason"])
    return type(exc).__name__


def _bigquery_table(dataset: bigquery.DatasetReference, table: Table) -> bigquery.Table:
    resource = {
        "tableReference": {
            "projectId": dataset.project,
            "datasetId": dataset.dataset_id,
            "tableId": table.name,
        },
        "schema": {"fields": bigquery_schema(table)},
        **bigquery_table_options(table),
    }
    return bigquery.Table.from_api_repr(resource)
