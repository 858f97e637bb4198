"""Issuing, listing, rotating, revoking and verifying tenant API keys.

``KeyService`` is what the issue-key function and the operator command line
both call. The tenant a call acts on always comes from the authenticated
``Principal``, never from a request body.

Verification keeps repeated checks of one key off the store: results are cached
per key hash for ``verify_cache_ttl_seconds`` (5 s by default, 60 s at most),
so a revocation takes effect on every instance within that bound. Expiry is
checked against the clock on every call, cached or not. Successful checks are
counted in memory and appended to ``tenant_usage`` as one row per key at most
every ``usage_flush_seconds``, so a busy key costs no write per request.
"""

from __future__ import annotations

import atexit
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from cachetools import TTLCache

from shared import apikeys
from shared.crypto import EnvelopeCipher, RecordContext
from shared.crypto.managers import API_KEY_KIND
from shared.events import AuditSink, new_event
from shared.store import ApiKeyRecord, Store, Tenant, UsageBatch, User

__all__ = [
    "SCOPES",
    "AuthenticationError",
    "IssuedKey",
    "KeyPolicy",
    "KeyService",
    "NotFoundError",
    "Principal",
    "RequestInfo",
    "UsageRecorder",
]

_log = logging.getLogger(__name__)

SCOPES = ("admin", "api", "credentials:read")
# Scopes that only the operator may grant: a key with credentials:read returns
# stored cloud credentials in plaintext, so a tenant admin cannot mint one.
OPERATOR_SCOPES = ("credentials:read",)
OPERATOR_ID = "operator"


class AuthenticationError(Exception):
    """The presented key is unknown, malformed, revoked or expired.

    All four cases raise this one error, so callers cannot tell them apart.
    """

    def __init__(self) -> None:
        super().__init__("invalid or expired API key")


class NotFoundError(LookupError):
    """No such key in the caller's tenant."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The actor of a call: a tenant key (with its scopes) or the operator."""

    actor_id: str
    tenant_id: str | None
    user_id: str | None
    scopes: tuple[str, ...]

    @property
    def is_operator(self) -> bool:
        return self.actor_id == OPERATOR_ID

    @classmethod
    def operator(cls) -> Principal:
        return cls(OPERATOR_ID, None, None, ("operator",))


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The client IP and user agent of a request, for the audit log."""

    ip_address: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly issued key. ``api_key`` is shown once and never stored."""

    api_key: str
    record: ApiKeyRecord


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    default_ttl: timedelta = timedelta(days=90)
    max_ttl: timedelta = timedelta(days=365)
    max_rotation_grace: timedelta = timedelta(hours=168)
    verify_cache_seconds: float = 5.0
    usage_flush_seconds: float = 30.0


class KeyService:
    """Tenant and key operations over a store, a cipher and an audit sink."""

    def __init__(
        self,
        store: Store,
        cipher: EnvelopeCipher,
        audit: AuditSink,
        policy: KeyPolicy | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._audit = audit
        self._policy = policy or KeyPolicy()
        self._clock = clock
        # The cache ages entries on the injected clock, as expiry checks do.
        self._cache: TTLCache[str, ApiKeyRecord | None] = TTLCache(
            maxsize=100_000,
            ttl=max(self._policy.verify_cache_seconds, 1e-6),
            timer=lambda: self._clock().timestamp(),
        )
        self._cache_lock = threading.Lock()
        self.usage = UsageRecorder(store, self._policy.usage_flush_seconds, clock)

    @property
    def policy(self) -> KeyPolicy:
        return self._policy

    # Tenants

    def create_tenant(
        self,
        principal: Principal,
        tenant_id: str,
        *,
        name: str,
        contact_email: str | None,
        request: RequestInfo = RequestInfo(),
    ) -> tuple[Tenant, IssuedKey]:
        """Create a tenant, its admin user and its first admin key (operator only)."""
        _require_operator(principal)
        apikeys.validate_tenant_id(tenant_id)
        # The tenant.created event rejects key-shaped text in the name. Checked
        # before the store call, so a bad name cannot leave a tenant behind
        # that has no admin key.
        if apikeys.redact_api_keys(name) != name:
            raise ValueError("name must not contain an API key; choose another name")
        now = self._clock()
        tenant = Tenant(tenant_id, name, contact_email, "active", now)
        admin = User(f"usr_{uuid.uuid4().hex}", tenant_id, contact_email, "admin", now)
        self._store.create_tenant(tenant, admin)
        self._emit(
            "tenant.created",
            principal,
            request,
            tenant_id=tenant_id,
            user_id=admin.user_id,
            details={"name": name},
        )
        issued = self._issue(
            principal,
            tenant_id,
            admin.user_id,
            name="initial admin key",
            scopes=("admin", "api"),
            ttl=self._policy.default_ttl,
            request=request,
        )
        return tenant, issued

    # Keys

    def issue_key(
        self,
        principal: Principal,
        *,
        tenant_id: str | None = None,
        name: str | None = None,
        scopes: tuple[str, ...] = ("api",),
        ttl: timedelta | None = None,
        request: RequestInfo = RequestInfo(),
    ) -> IssuedKey:
        """Issue a key in the principal's tenant (an operator names the tenant)."""
        tenant = self._tenant_for(principal, tenant_id)
        _check_scopes(scopes, principal)
        ttl = self._check_ttl(ttl)
        return self._issue(
            principal,
            tenant,
            principal.user_id,
            name=name,
            scopes=scopes,
            ttl=ttl,
            request=request,
        )

    def list_keys(
        self, principal: Principal, *, tenant_id: str | None = None
    ) -> list[ApiKeyRecord]:
        self.usage.flush()
        return self._store.list_api_keys(self._tenant_for(principal, tenant_id))

    def revoke_key(
        self,
        principal: Principal,
        api_key_id: str,
        *,
        tenant_id: str | None = None,
        request: RequestInfo = RequestInfo(),
    ) -> ApiKeyRecord:
        tenant = self._tenant_for(principal, tenant_id)
        now = self._clock()
        if not self._store.revoke_api_key(tenant, api_key_id, now, principal.actor_id):
            raise NotFoundError(api_key_id)
        record = self._store.get_api_key(tenant, api_key_id)
        assert record is not None
        self._forget(record.api_key_hash)
        self._emit(
            "api_key.revoked",
            principal,
            request,
            tenant_id=tenant,
            user_id=record.user_id,
            details=_key_details(record),
        )
        return record

    def rotate_key(
        self,
        principal: Principal,
        api_key_id: str,
        *,
        grace: timedelta = timedelta(hours=24),
        tenant_id: str | None = None,
        request: RequestInfo = RequestInfo(),
    ) -> tuple[IssuedKey, ApiKeyRecord]:
        """Issue a replacement key; the old one stays valid for ``grace`` only."""
        tenant = self._tenant_for(principal, tenant_id)
        if not timedelta(0) <= grace <= self._policy.max_rotation_grace:
            hours = self._policy.max_rotation_grace.total_seconds() / 3600
            raise ValueError(f"grace_period_hours must be between 0 and {hours:g}")
        old = self._store.get_api_key(tenant, api_key_id)
        now = self._clock()
        if old is None or old.status(now) != "active":
            raise NotFoundError(api_key_id)
        _check_scopes(old.scopes, principal)
        ttl = max(old.expires_at - old.created_at, timedelta(seconds=1))
        new_key, record = self._new_record(
            tenant,
            old.user_id,
            principal.actor_id,
            name=old.name,
            scopes=old.scopes,
            ttl=min(ttl, self._policy.max_ttl),
            rotated_from=old.api_key_id,
        )
        if not self._store.rotate_api_key(tenant, old.api_key_id, record, now + grace):
            raise NotFoundError(api_key_id)
        self._forget(old.api_key_hash)
        old_after = self._store.get_api_key(tenant, old.api_key_id)
        assert old_after is not None
        details = _key_details(record) | {
            "old_api_key_id": old.api_key_id,
            "old_expires_at": old_after.expires_at.isoformat(),
        }
        self._emit(
            "api_key.rotated",
            principal,
            request,
            tenant_id=tenant,
            user_id=old.user_id,
            details=details,
        )
        return IssuedKey(new_key, record), old_after

    def verify(
        self, presented: str | None, request: RequestInfo = RequestInfo()
    ) -> Principal:
        """Return the principal of a valid key or raise AuthenticationError.

        Every failure is audited as ``authentication.failed`` with the tenant
        when the key's prefix names one, and raises the same error.
        """
        now = self._clock()
        try:
            parsed = apikeys.parse_api_key(presented)
        except apikeys.InvalidAPIKey:
            self._fail("malformed", None, request)
        record = self._lookup(apikeys.hash_api_key(parsed.key))
        if record is None or record.tenant_id != parsed.tenant_id:
            self._fail("unknown", parsed.tenant_id, request)
        status = record.status(now)
        if status != "active":
            self._fail(status, record.tenant_id, request, record)
        self.usage.record(record.tenant_id, record.api_key_id, now)
        return Principal(
            record.api_key_id, record.tenant_id, record.user_id, record.scopes
        )

    def decrypt_key(self, record: ApiKeyRecord) -> str:
        """Recover a stored key's plaintext; only for operators' recovery tools."""
        context = RecordContext(record.tenant_id, API_KEY_KIND, record.api_key_id)
        return self._cipher.decrypt(record.encrypted_api_key, context).decode("ascii")

    # Helpers

    def _issue(
        self,
        principal: Principal,
        tenant_id: str,
        user_id: str | None,
        *,
        name: str | None,
        scopes: tuple[str, ...],
        ttl: timedelta,
        request: RequestInfo,
    ) -> IssuedKey:
        key, record = self._new_record(
            tenant_id, user_id, principal.actor_id, name=name, scopes=scopes, ttl=ttl
        )
        self._store.insert_api_key(record)
        self._emit(
            "api_key.created",
            principal,
            request,
            tenant_id=tenant_id,
            user_id=user_id,
            details=_key_details(record),
        )
        return IssuedKey(key, record)

    def _new_record(
        self,
        tenant_id: str,
        user_id: str | None,
        created_by: str,
        *,
        name: str | None,
        scopes: tuple[str, ...],
        ttl: timedelta,
        rotated_from: str | None = None,
    ) -> tuple[str, ApiKeyRecord]:
        now = self._clock()
        key = apikeys.generate_api_key(tenant_id)
        api_key_id = f"key_{uuid.uuid4().hex}"
        context = RecordContext(tenant_id, API_KEY_KIND, api_key_id)
        record = ApiKeyRecord(
            api_key_id=api_key_id,
            tenant_id=tenant_id,
            user_id=user_id,
            api_key_hash=apikeys.hash_api_key(key),
            encrypted_api_key=self._cipher.encrypt(key.encode("ascii"), context),
            key_prefix=apikeys.display_prefix(key),
            name=name,
            scopes=tuple(sorted(set(scopes))),
            is_active=True,
            expires_at=now + ttl,
            created_at=now,
            created_by_user_id=created_by,
            rotated_from_key_id=rotated_from,
        )
        return key, record

    def _lookup(self, api_key_hash: str) -> ApiKeyRecord | None:
        with self._cache_lock:
            if api_key_hash in self._cache:
                return self._cache[api_key_hash]
        record = self._store.find_api_key_by_hash(api_key_hash)
        if record is not None:
            record = replace(record, encrypted_api_key=b"")
        if self._policy.verify_cache_seconds > 0:
            with self._cache_lock:
                self._cache[api_key_hash] = record
        return record

    def _forget(self, api_key_hash: str) -> None:
        with self._cache_lock:
            self._cache.pop(api_key_hash, None)

    def _fail(
        self,
        reason: str,
        tenant_id: str | None,
        request: RequestInfo,
        record: ApiKeyRecord | None = None,
    ) -> NoReturn:
        details: dict[str, str] = {"reason": reason}
        if record is not None:
            details["api_key_id"] = record.api_key_id
        self._audit.emit(
            new_event(
                "authentication.failed",
                tenant_id=tenant_id,
                user_id=record.user_id if record else None,
                ip_address=request.ip_address,
                user_agent=request.user_agent,
                details=details,
                now=self._clock(),
            )
        )
        raise AuthenticationError()

    def _tenant_for(self, principal: Principal, tenant_id: str | None) -> str:
        if principal.is_operator:
            if tenant_id is None:
                raise ValueError("tenant_id is required when acting as the operator")
            apikeys.validate_tenant_id(tenant_id)
            if self._store.get_tenant(tenant_id) is None:
                raise NotFoundError(tenant_id)
            return tenant_id
        if "admin" not in principal.scopes or principal.tenant_id is None:
            raise PermissionError("this API key lacks the admin scope")
        return principal.tenant_id

    def _check_ttl(self, ttl: timedelta | None) -> timedelta:
        if ttl is None:
            return self._policy.default_ttl
        if not timedelta(minutes=1) <= ttl <= self._policy.max_ttl:
            raise ValueError(
                "expires_in_days must be between 1 minute and "
                f"{self._policy.max_ttl.days} days"
            )
        return ttl

    def _emit(
        self,
        event_type: str,
        principal: Principal,
        request: RequestInfo,
        *,
        tenant_id: str,
        user_id: str | None,
        details: dict[str, object],
    ) -> None:
        self._audit.emit(
            new_event(
                event_type,
                tenant_id=tenant_id,
                user_id=user_id,
                actor_id=principal.actor_id,
                ip_address=request.ip_address,
                user_agent=request.user_agent,
                details=details,
                now=self._clock(),
            )
        )


@dataclass(slots=True)
class _PendingUsage:
    count: int
    first_used_at: datetime
    last_used_at: datetime


class UsageRecorder:
    """Counts successful verifications in memory and appends them in batches."""

    def __init__(
        self, store: Store, flush_seconds: float, clock: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._interval = timedelta(seconds=flush_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], _PendingUsage] = {}
        self._last_flush = clock()
        atexit.register(self.flush)

    def record(self, tenant_id: str, api_key_id: str, at: datetime) -> None:
        with self._lock:
            entry = self._pending.get((tenant_id, api_key_id))
            if entry is None:
                self._pending[(tenant_id, api_key_id)] = _PendingUsage(1, at, at)
            else:
                entry.count += 1
                entry.last_used_at = max(entry.last_used_at, at)
            due = at - self._last_flush >= self._interval
        if due:
            self.flush()

    def flush(self) -> None:
        """Append every pending count to the store; on failure keep them for later."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = self._clock()
        if not pending:
            return
        now = self._clock()
        batches = [
            UsageBatch(
                tenant,
                key_id,
                usage.count,
                usage.first_used_at,
                usage.last_used_at,
                now,
            )
            for (tenant, key_id), usage in pending.items()
        ]
        try:
            self._store.append_usage(batches)
        except Exception:  # noqa: BLE001 - usage counts must not fail a request
            _log.exception("writing %d usage batches failed; counts kept", len(batches))
            with self._lock:
                for key, usage in pending.items():
                    current = self._pending.setdefault(key, usage)
                    if current is not usage:
                        current.count += usage.count
                        current.first_used_at = usage.first_used_at


def _require_operator(principal: Principal) -> None:
    if not principal.is_operator:
        raise PermissionError("only the operator may create tenants")


def _check_scopes(scopes: tuple[str, ...], principal: Principal) -> None:
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise ValueError(f"scopes must be a non-empty list drawn from {list(SCOPES)}")
    if not principal.is_operator and set(scopes) & set(OPERATOR_SCOPES):
        raise PermissionError(
            f"only the operator may issue or rotate keys with {list(OPERATOR_SCOPES)}"
        )


def _key_details(record: ApiKeyRecord) -> dict[str, object]:
    return {
        "api_key_id": record.api_key_id,
        "key_prefix": record.key_prefix,
        "scopes": list(record.scopes),
        "expires_at": record.expires_at.isoformat(),
    }
