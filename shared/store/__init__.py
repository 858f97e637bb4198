"""One interface over the tenant tables, with DuckDB and BigQuery backends.

Every tenant-scoped method takes ``tenant_id`` first and filters on it in the
query, so a caller holding tenant A's id cannot read or change tenant B's rows.
The one lookup across tenants is ``find_api_key_by_hash``, which serves key
verification; callers compare the row's tenant with the key's own prefix.

Writes are append-mostly: rows are inserted once, and only revocation and
rotation change a key row. Usage is appended in batches, never updated.
Credential rows change on deletion and restore, and are erased (removed)
only once their recovery window has passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from shared.store.models import (
    ApiKeyRecord,
    CredentialRecord,
    Tenant,
    UsageBatch,
    User,
)

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.events import AuditEvent

__all__ = [
    "AlreadyExistsError",
    "ApiKeyRecord",
    "CredentialRecord",
    "Store",
    "StoreError",
    "Tenant",
    "TransientStoreError",
    "UsageBatch",
    "User",
    "build_store",
]


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

    def find_api_key_by_hash(self, api_key_hash: str) -> ApiKeyRecord | None: ...

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

    def list_audit_events(
        self,
        tenant_id: str | None,
        *,
        event_type: str | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Return the newest events first; ``tenant_id=None`` means platform-wide."""


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
