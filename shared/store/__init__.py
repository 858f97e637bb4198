"""One interface over the tenant tables, with DuckDB and BigQuery backends.

Every tenant-scoped method takes ``tenant_id`` first and filters on it in the
query, so a caller holding tenant A's id cannot read or change tenant B's rows.
The one lookup across tenants is ``find_api_key_by_hash``, which serves key
verification; callers compare the row's tenant with the key's own prefix.

Writes are append-mostly: rows are inserted once, and only revocation and
rotation change a key row. Usage is appended in batches, never updated.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from shared.store.models import ApiKeyRecord, Tenant, UsageBatch, User

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.events import AuditEvent

__all__ = [
    "AlreadyExistsError",
    "ApiKeyRecord",
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
    """Return the store backend the settings select."""
    if settings.store_backend == "bigquery":
        raise NotImplementedError("STORE_BACKEND=bigquery is not available yet")
    from shared.store._duckdb import DuckDBStore

    return DuckDBStore(settings.data_dir / f"{settings.tenants_dataset_id}.duckdb")
