"""Builders for the rows the alert rules read, and the tests' clock and zone."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.events import AuditEvent, new_event
from shared.store import ApiKeyRecord, CredentialRecord, Store, Tenant, User

# Monday 2 March 2026, 09:00 UTC, is 23:00 on Monday in Kiritimati (UTC+14)
# and 22:00 on Sunday in Pago Pago (UTC-11).
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def use_time_zone(monkeypatch: pytest.MonkeyPatch, zone: str) -> Iterator[str]:
    """Set the process time zone to ``zone`` until the test ends."""
    with monkeypatch.context() as patch:
        patch.setenv("TZ", zone)
        time.tzset()
        yield zone
    time.tzset()


def tenant(
    store: Store, tenant_id: str, contact: str | None, created_at: datetime
) -> None:
    store.create_tenant(
        Tenant(tenant_id, f"{tenant_id} Ltd", contact, "active", created_at),
        User(f"usr_{uuid.uuid4().hex}", tenant_id, contact, "admin", created_at),
    )


def api_key(
    tenant_id: str, expires_at: datetime, created_at: datetime, **overrides: object
) -> ApiKeyRecord:
    key_id = f"key_{uuid.uuid4().hex}"
    values: dict[str, object] = {
        "api_key_id": key_id,
        "tenant_id": tenant_id,
        "user_id": "usr_1",
        "api_key_hash": hashlib.sha256(key_id.encode()).hexdigest(),
        "encrypted_api_key": b"\x01sealed",
        "key_prefix": f"{tenant_id}_Ab12",
        "name": "nightly export",
        "scopes": ("api",),
        "is_active": True,
        "expires_at": expires_at,
        "created_at": created_at,
        "created_by_user_id": "operator",
    }
    values.update(overrides)
    return ApiKeyRecord(**values)  # type: ignore[arg-type]


def credential(
    tenant_id: str, expires_at: datetime | None, created_at: datetime
) -> CredentialRecord:
    return CredentialRecord(
        credential_id=f"cred_{uuid.uuid4().hex}",
        tenant_id=tenant_id,
        provider="aws",
        name="warehouse loader",
        encrypted_credentials=b"\x02sealed",
        kms_key_name="projects/p/locations/l/keyRings/r/cryptoKeys/c",
        account_hint="...WXYZ",
        fingerprint="f" * 64,
        validation_status="valid",
        validated_at=created_at,
        expires_at=expires_at,
        details={},
        is_active=True,
        created_at=created_at,
        created_by_user_id="key_1",
    )


def auth_failures(
    count: int,
    start: datetime,
    spacing: timedelta,
    *,
    tenant_id: str | None = "acme",
    ip: str = "198.51.100.7",
    user_id: str | None = "usr_1",
    reason: str = "unknown",
    api_key_id: str | None = None,
) -> list[AuditEvent]:
    details = {"reason": reason}
    if api_key_id is not None:
        details["api_key_id"] = api_key_id
    return [
        new_event(
            "authentication.failed",
            tenant_id=tenant_id,
            user_id=user_id,
            ip_address=ip,
            details=details,
            now=start + i * spacing,
        )
        for i in range(count)
    ]


def kms_failures(count: int, start: datetime, spacing: timedelta) -> list[AuditEvent]:
    return [
        new_event(
            "kms.operation_failed",
            details={
                "operation": "decrypt",
                "key_name": "projects/p/locations/l/keyRings/r/cryptoKeys/api",
                "kind": "unavailable",
            },
            now=start + i * spacing,
        )
        for i in range(count)
    ]
