"""One interface over the tenant tables, with DuckDB and BigQuery backends.

Every tenant-scoped method takes ``tenant_id`` first and filters on it in the
query, so a caller holding tenant A's id cannot read or change tenant B's rows.
The one lookup across tenants is ``find_api_key_by_hash``, which serves key
verification; callers compare the row's tenant with the key's own prefix.

Writes are append-mostly: rows are inserted once, and only revocation and
rotation change a key row. Usage is appended in batches, never updated.
Credential rows change on deletion and restore, and are erased (removed)
only once their recovery window has passed.

The alert queries (``list_expiring``, ``list_used_after_expiry``,
``find_event_bursts``) read across tenants: they serve the expiry alerter, an
operator job, and each row they return names its tenant. They aggregate in
SQL, and on BigQuery count each audit ``event_id`` once. The notification
ledger (``alert_notifications``) is append-only: ``record_notification``
inserts a row only if its id is new.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

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

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.events import AuditEvent

__all__ = [
    "BURST_GROUP_COLUMNS",
    "AlreadyExistsError",
    "ApiKeyRecord",
    "CredentialRecord",
    "EventBurst",
    "ExpiringItem",
    "NotificationRecord",
    "NotificationState",
    "Store",
    "StoreError",
    "Tenant",
    "TransientStoreError",
    "UsageBatch",
    "User",
    "build_store",
]


# Audit columns that ``find_event_bursts`` may group by.
BURST_GROUP_COLUMNS = ("tenant_id", "user_id", "ip_address")


class StoreError(Exception):
    """A store operation failed."""


class AlreadyExistsError(StoreError):
    """A row with this id already exists."""


class TransientStoreError(StoreError):
    """The store is busy or unavailable; the same call may succeed later."""


class Store(Protocol):
    def create_tenant(self, tenant: Tenant, admin: User) -> None:
        """Insert a tenant and its first user; AlreadyExistsError if either exists."""

    def get_tenant(self, tenant_id: str) -> Tenant | None: ...

    def insert_api_key(self, record: ApiKeyRecord) -> None: ...

    def get_api_key(self, tenant_id: str, api_key_id: str) -> ApiKeyRecord | None: ...

    def find_api_key_by_hash(self, api_key_hash: str) -> ApiKeyRecord | None:
        """Return the key with this hash in any tenant; last_used_at may be None."""

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]: ...

    def revoke_api_key(
        self, tenant_id: str, api_key_id: str, revoked_at: datetime, revoked_by: str
    ) -> bool:
        """Mark an active key revoked; False if the tenant has no such active key."""

    def rotate_api_key(
        self,
        tenant_id: str,
        old_key_id: str,
        new_key: ApiKeyRecord,
        old_expires_at: datetime,
    ) -> bool:
        """Insert ``new_key`` and move the old key's expiry earlier, atomically.

        False, with nothing written, if the tenant has no such active key.
        """

    def insert_credential(self, record: CredentialRecord) -> None:
        """Insert a ``tenant_credentials`` row; AlreadyExistsError if the id exists."""

    def get_credential(
        self, tenant_id: str, credential_id: str
    ) -> CredentialRecord | None:
        """Return the tenant's row with this id, deleted or not; None if absent."""

    def list_credentials(self, tenant_id: str) -> list[CredentialRecord]:
        """Return the tenant's rows, deleted ones included, oldest first."""

    def delete_credential(
        self,
        tenant_id: str,
        credential_id: str,
        deleted_at: datetime,
        deleted_by: str,
        erase_after: datetime,
    ) -> bool:
        """Set is_active false and the three deletion columns on an active row.

        False, with nothing written, if the tenant has no such active row.
        """

    def restore_credential(
        self, tenant_id: str, credential_id: str, now: datetime
    ) -> bool:
        """Make a deleted row active again while ``now`` is before its erase_after.

        Sets is_active true and deleted_at, deleted_by and erase_after to NULL.
        False, with nothing written, if there is no such deleted row or its
        recovery window has passed.
        """

    def erase_credentials(self, tenant_id: str, now: datetime) -> list[str]:
        """Remove the tenant's deleted rows whose erase_after is at or before ``now``.

        Returns the credential ids of the removed rows.
        """

    def append_usage(self, batches: Sequence[UsageBatch]) -> None: ...

    def insert_audit_events(self, events: Sequence[AuditEvent]) -> int:
        """Write events whose event_id is new; return how many were written."""

    def insert_new_audit_events(self, events: Sequence[AuditEvent]) -> frozenset[str]:
        """Write events whose event_id is new; return the event ids written.

        The same write as ``insert_audit_events``, for a caller that reports
        each event: a batch can mix new events with redelivered ones.
        """

    def list_audit_events(
        self,
        tenant_id: str | None,
        *,
        event_type: str | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Return the newest events first; ``tenant_id=None`` means platform-wide."""

    # Alerts

    def list_expiring(self, now: datetime, until: datetime) -> list[ExpiringItem]:
        """Return active keys and credentials that expire after ``now``, by ``until``.

        Keys that were rotated (another key names them in rotated_from_key_id)
        are left out: their expiry ends a grace period someone chose.
        """

    def list_used_after_expiry(
        self, since: datetime, until: datetime
    ) -> list[ExpiringItem]:
        """Return keys and credentials used, or tried, at or after their expiry.

        A key counts when an ``authentication.failed`` event with reason
        ``expired`` names it, or a ``tenant_usage`` batch recorded since
        ``since`` shows a use at or after its expiry. A credential counts when
        a ``credentials.accessed`` event names it. Only events and uses from
        ``since`` until before ``until`` are read.
        """

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
        """Find where more than ``threshold`` events fell within ``window``.

        Events are grouped by the ``group_by`` columns (a subset of
        ``BURST_GROUP_COLUMNS``). An event at time t crosses the threshold when
        more than ``threshold`` events of its group happened in (t - window, t].
        Crossing events from ``since`` until before ``until`` are reported,
        one ``EventBurst`` per group and window-length bucket; events from
        ``since - window`` on are counted.
        """

    def record_notification(self, record: NotificationRecord) -> bool:
        """Insert a ledger row unless its id exists; return whether it was written.

        A ``claimed`` row is also not written once the alert has a ``sent``
        row on the same channel.
        """

    def notification_states(self, alert_keys: Sequence[str]) -> list[NotificationState]:
        """Return the ledger state of these alerts, per alert and channel."""

    def unsent_notifications(self, claimed_since: datetime) -> list[NotificationState]:
        """Return states without a sent row whose last claim is at or after the time."""


def build_store(settings: Settings) -> Store:
    """Return the store backend the settings select.

    Each backend module is imported here, on first use, so a process on DuckDB
    never loads the BigQuery client library.
    """
    if settings.store_backend == "bigquery":
        from shared.store._bigquery import BigQueryStore

        return BigQueryStore.from_settings(settings)
    from shared.store._duckdb import DuckDBStore

    return DuckDBStore(settings.data_dir / f"{settings.tenants_dataset_id}.duckdb")
