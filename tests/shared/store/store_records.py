"""Builders for the rows the store tests write."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from shared.events import AuditEvent
from shared.store import ApiKeyRecord, CredentialRecord, Tenant, UsageBatch, User

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def tenant(tenant_id: str = "acme") -> Tenant:
    return Tenant(tenant_id, f"{tenant_id} Ltd", f"ops@{tenant_id}.test", "active", NOW)


def admin(tenant_id: str = "acme", user_id: str | None = None) -> User:
    user_id = user_id or f"usr_{uuid.uuid4().hex}"
    return User(user_id, tenant_id, f"admin@{tenant_id}.test", "admin", NOW)


def api_key(tenant_id: str = "acme", **overrides: object) -> ApiKeyRecord:
    key_id = f"key_{uuid.uuid4().hex}"
    values: dict[str, object] = {
        "api_key_id": key_id,
        "tenant_id": tenant_id,
        "user_id": "usr_1",
        "api_key_hash": hashlib.sha256(key_id.encode()).hexdigest(),
        "encrypted_api_key": b"\x01ciphertext-" + key_id.encode(),
        "key_prefix": f"{tenant_id}_abcd",
        "name": "ci",
        "scopes": ("admin", "api"),
        "is_active": True,
        "expires_at": NOW + timedelta(days=90),
        "created_at": NOW,
        "created_by_user_id": "operator",
    }
    values.update(overrides)
    return ApiKeyRecord(**values)  # type: ignore[arg-type]


def credential(tenant_id: str = "acme", **overrides: object) -> CredentialRecord:
    values: dict[str, object] = {
        "credential_id": f"cred_{uuid.uuid4().hex}",
        "tenant_id": tenant_id,
        "provider": "aws",
        "name": "prod",
        "encrypted_credentials": b"\x02sealed",
        "kms_key_name": "projects/p/locations/l/keyRings/r/cryptoKeys/c",
        "account_hint": "...WXYZ",
        "fingerprint": "f" * 64,
        "validation_status": "valid",
        "validated_at": NOW,
        "expires_at": None,
        "details": {"account_id": "123456789012"},
        "is_active": True,
        "created_at": NOW,
        "created_by_user_id": "key_1",
    }
    values.update(overrides)
    return CredentialRecord(**values)  # type: ignore[arg-type]


def usage(record: ApiKeyRecord, last_used_at: datetime, count: int = 1) -> UsageBatch:
    return UsageBatch(
        record.tenant_id, record.api_key_id, count, last_used_at, last_used_at, NOW
    )


def event(
    tenant_id: str | None = "acme",
    event_type: str = "api_key.created",
    occurred_at: datetime = NOW,
    **details: object,
) -> AuditEvent:
    return AuditEvent(
        event_id=uuid.uuid4(),
        event_type=event_type,
        tenant_id=tenant_id,
        actor_id="operator",
        occurred_at=occurred_at,
        details=details,
    )
