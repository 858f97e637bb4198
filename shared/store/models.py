"""Rows of the store's tables as typed records. Timestamps are aware UTC."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant_id: str
    name: str
    contact_email: str | None
    status: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    tenant_id: str
    email: str | None
    role: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A ``tenant_api_keys`` row; ``last_used_at`` is derived from ``tenant_usage``."""

    api_key_id: str
    tenant_id: str
    user_id: str | None
    api_key_hash: str
    encrypted_api_key: bytes
    key_prefix: str
    name: str | None
    scopes: tuple[str, ...]
    is_active: bool
    expires_at: datetime
    created_at: datetime
    created_by_user_id: str | None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    rotated_from_key_id: str | None = None
    last_used_at: datetime | None = None

    def status(self, now: datetime) -> str:
        if not self.is_active:
            return "revoked"
        if self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """A ``tenant_credentials`` row; only ``encrypted_credentials`` contains a secret.

    ``details`` maps names to non-secret provider facts (account id, ARN,
    client email). A deleted row keeps its ciphertext until ``erase_after``.
    """

    credential_id: str
    tenant_id: str
    provider: str
    name: str | None
    encrypted_credentials: bytes = field(repr=False)
    kms_key_name: str
    account_hint: str | None
    fingerprint: str | None
    validation_status: str
    validated_at: datetime | None
    expires_at: datetime | None
    details: dict[str, str]
    is_active: bool
    created_at: datetime
    created_by_user_id: str | None
    deleted_at: datetime | None = None
    deleted_by: str | None = None
    erase_after: datetime | None = None

    def status(self, now: datetime) -> str:
        """Return active, expired or deleted (restorable until ``erase_after``)."""
        if not self.is_active:
            return "deleted"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class UsageBatch:
    """Verifications of one key, counted in memory and written as one row."""

    tenant_id: str
    api_key_id: str
    request_count: int
    first_used_at: datetime
    last_used_at: datetime
    recorded_at: datetime


# Alerts: rows the alerter's queries return, and its notification ledger.


@dataclass(frozen=True, slots=True)
class ExpiringItem:
    """An API key or stored credential with an expiry, as the alert rules read it.

    ``label`` is the key's display prefix or the credential's account hint.
    ``last_used_at`` is set by ``list_used_after_expiry`` only: the latest use,
    or attempted use, at or after ``expires_at``.
    """

    kind: str  # "api_key" or "credential"
    tenant_id: str
    item_id: str
    label: str | None
    name: str | None
    provider: str | None  # credentials only
    expires_at: datetime
    contact_email: str | None
    last_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EventBurst:
    """Events of one type over a threshold within a window, for one group.

    ``group`` maps the grouping columns to their values (None for a NULL).
    ``bucket_start`` is the start of the window-length interval, counted from
    the Unix epoch in UTC, that contains the events that crossed the
    threshold. ``count`` events happened from ``first_at`` to ``last_at``.
    """

    group: tuple[tuple[str, str | None], ...]
    bucket_start: datetime
    first_at: datetime
    last_at: datetime
    count: int


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """An ``alert_notifications`` row: one step of one notification on one channel."""

    notification_id: str
    alert_key: str
    channel: str
    attempt: int
    status: str  # "claimed", "sent" or "failed"
    rule: str
    tenant_id: str | None
    alert: str | None
    error: str | None
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class NotificationState:
    """The ledger's rows for one alert on one channel, summed up.

    ``attempts`` counts claims. ``open_claim`` is true when the latest claim
    has no sent or failed row yet: a run is sending it, or died while it did.
    ``alert`` is the JSON stored with the claims.
    """

    alert_key: str
    channel: str
    attempts: int
    open_claim: bool
    sent: bool
    last_claimed_at: datetime | None
    alert: str | None
