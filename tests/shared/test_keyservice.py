from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shared import apikeys
from shared.crypto import EnvelopeCipher, LocalKeyring
from shared.events import AuditEvent, DirectAuditSink
from shared.keyservice import (
    AuthenticationError,
    IssuedKey,
    KeyPolicy,
    KeyService,
    NotFoundError,
    Principal,
    RequestInfo,
)
from shared.store import AlreadyExistsError, ApiKeyRecord, UsageBatch
from shared.store._duckdb import DuckDBStore

KEY_NAME = "projects/test-project/locations/local/keyRings/test-ring/cryptoKeys/api"
OPERATOR = Principal.operator()
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CACHE_SECONDS = 5.0
FLUSH_SECONDS = 30.0


class ManualClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class RecordingAuditSink:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)

    def of_type(self, event_type: str) -> list[AuditEvent]:
        return [event for event in self.events if event.event_type == event_type]


class CountingStore:
    """Passes calls to a real store and counts key lookups and usage writes."""

    def __init__(self, inner: DuckDBStore) -> None:
        self.inner = inner
        self.lookups = 0
        self.usage_writes = 0

    def find_api_key_by_hash(self, api_key_hash: str) -> ApiKeyRecord | None:
        self.lookups += 1
        return self.inner.find_api_key_by_hash(api_key_hash)

    def append_usage(self, batches: Sequence[UsageBatch]) -> None:
        self.usage_writes += 1
        self.inner.append_usage(batches)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(DuckDBStore(tmp_path / "tenants.duckdb"))


@pytest.fixture
def cipher(tmp_path: Path) -> EnvelopeCipher:
    return EnvelopeCipher(LocalKeyring(tmp_path / "keyring.json"), KEY_NAME)


@pytest.fixture
def audit() -> RecordingAuditSink:
    return RecordingAuditSink()


def _service(
    store: CountingStore,
    cipher: EnvelopeCipher,
    audit: Any,
    clock: ManualClock,
    **policy: Any,
) -> KeyService:
    settings = {
        "verify_cache_seconds": CACHE_SECONDS,
        "usage_flush_seconds": FLUSH_SECONDS,
    } | policy
    return KeyService(
        store,  # type: ignore[arg-type]
        cipher,
        audit,
        KeyPolicy(**settings),
        clock=clock,
    )


@pytest.fixture
def service(
    store: CountingStore,
    cipher: EnvelopeCipher,
    audit: RecordingAuditSink,
    clock: ManualClock,
) -> KeyService:
    return _service(store, cipher, audit, clock)


def _tenant(service: KeyService, tenant_id: str) -> tuple[Principal, IssuedKey]:
    """Create a tenant; return its admin principal and admin key."""
    _, issued = service.create_tenant(
        OPERATOR, tenant_id, name=tenant_id.title(), contact_email=None
    )
    return service.verify(issued.api_key), issued


@pytest.fixture
def acme(service: KeyService) -> tuple[Principal, IssuedKey]:
    return _tenant(service, "acme")


@pytest.fixture
def globex(service: KeyService) -> tuple[Principal, IssuedKey]:
    return _tenant(service, "globex")


def _usage_rows(store: CountingStore) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(store.inner.path)) as con:
        return con.execute(
            "SELECT tenant_id, api_key_id, request_count, first_used_at, "
            "last_used_at FROM tenant_usage ORDER BY api_key_id"
        ).fetchall()


# Tenants


def test_create_tenant_issues_admin_key(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, issued = acme

    assert admin.tenant_id == "acme"
    assert admin.scopes == ("admin", "api")
    assert issued.record.expires_at == START + timedelta(days=90)


def test_create_tenant_audited(
    audit: RecordingAuditSink, acme: tuple[Principal, IssuedKey]
) -> None:
    types = [event.event_type for event in audit.events]

    assert types == ["tenant.created", "api_key.created"]
    assert {event.actor_id for event in audit.events} == {"operator"}


def test_create_tenant_twice_raises(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    with pytest.raises(AlreadyExistsError):
        service.create_tenant(OPERATOR, "acme", name="Again", contact_email=None)


def test_create_tenant_invalid_id_raises(service: KeyService) -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        service.create_tenant(OPERATOR, "Acme-Corp", name="x", contact_email=None)


def test_create_tenant_by_tenant_admin_raises(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme

    with pytest.raises(PermissionError):
        service.create_tenant(admin, "globex", name="Globex", contact_email=None)


# Issuing


def test_issue_key_defaults(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme

    issued = service.issue_key(admin, name="ci")

    assert issued.record.tenant_id == "acme"
    assert issued.record.scopes == ("api",)
    assert issued.record.expires_at == START + timedelta(days=90)
    assert issued.record.created_by_user_id == admin.actor_id


def test_issue_key_stores_hash_not_key(
    service: KeyService, store: CountingStore, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    issued = service.issue_key(admin, name="ci")

    record = store.get_api_key("acme", issued.record.api_key_id)

    assert record is not None
    assert record.api_key_hash == apikeys.hash_api_key(issued.api_key)
    assert record.key_prefix == apikeys.display_prefix(issued.api_key)
    assert issued.api_key.encode() not in record.encrypted_api_key


def test_issue_key_plaintext_not_in_database_file(
    service: KeyService, store: CountingStore, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, first = acme
    issued = service.issue_key(admin, name="ci")

    files = store.inner.path.parent.glob(store.inner.path.name + "*")
    content = b"".join(path.read_bytes() for path in files)

    assert issued.api_key.encode() not in content
    assert first.api_key.encode() not in content


def test_decrypt_key_recovers_issued_key(
    service: KeyService, store: CountingStore, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    issued = service.issue_key(admin)
    record = store.get_api_key("acme", issued.record.api_key_id)
    assert record is not None

    assert service.decrypt_key(record) == issued.api_key


def test_issue_key_sorts_scopes(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme

    issued = service.issue_key(admin, scopes=("api", "admin", "api"))

    assert issued.record.scopes == ("admin", "api")


@pytest.mark.parametrize("scopes", [(), ("root",), ("api", "superuser")])
def test_issue_key_bad_scopes_raise(
    service: KeyService, acme: tuple[Principal, IssuedKey], scopes: tuple[str, ...]
) -> None:
    admin, _ = acme

    with pytest.raises(ValueError, match="scopes must be a non-empty list"):
        service.issue_key(admin, scopes=scopes)


@pytest.mark.parametrize(
    "ttl",
    [timedelta(seconds=59), timedelta(0), timedelta(days=-1), timedelta(days=366)],
)
def test_issue_key_ttl_out_of_bounds_raises(
    service: KeyService, acme: tuple[Principal, IssuedKey], ttl: timedelta
) -> None:
    admin, _ = acme

    with pytest.raises(ValueError, match="expires_in_days must be between"):
        service.issue_key(admin, ttl=ttl)


@pytest.mark.parametrize("ttl", [timedelta(minutes=1), timedelta(days=365)])
def test_issue_key_ttl_at_bounds_accepted(
    service: KeyService, acme: tuple[Principal, IssuedKey], ttl: timedelta
) -> None:
    admin, _ = acme

    issued = service.issue_key(admin, ttl=ttl)

    assert issued.record.expires_at == START + ttl


def test_issue_key_by_api_scope_raises(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    member = service.verify(service.issue_key(admin, scopes=("api",)).api_key)

    with pytest.raises(PermissionError, match="admin scope"):
        service.issue_key(member)


def test_issue_key_audited_without_key(
    service: KeyService, audit: RecordingAuditSink, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    issued = service.issue_key(admin, request=RequestInfo("203.0.113.7", "cli/1"))

    event = audit.of_type("api_key.created")[-1]

    assert event.details["api_key_id"] == issued.record.api_key_id
    assert event.ip_address == "203.0.113.7"
    assert issued.api_key not in event.model_dump_json()


# Operator


def test_operator_must_name_tenant(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    with pytest.raises(ValueError, match="tenant_id is required"):
        service.list_keys(OPERATOR)


def test_operator_unknown_tenant_raises(service: KeyService) -> None:
    with pytest.raises(NotFoundError):
        service.issue_key(OPERATOR, tenant_id="nobody_here")


def test_operator_invalid_tenant_raises(service: KeyService) -> None:
    with pytest.raises(ValueError, match="tenant_id must be"):
        service.list_keys(OPERATOR, tenant_id="Bad'; --")


def test_operator_issues_in_named_tenant(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    issued = service.issue_key(OPERATOR, tenant_id="acme")

    assert issued.record.tenant_id == "acme"


# Listing, revoking, rotating


def test_list_keys_returns_own_tenant_only(
    service: KeyService,
    acme: tuple[Principal, IssuedKey],
    globex: tuple[Principal, IssuedKey],
) -> None:
    acme_admin, acme_key = acme
    globex_admin, globex_key = globex
    service.issue_key(acme_admin, name="ci")

    listed = service.list_keys(globex_admin, tenant_id="acme")

    assert [record.api_key_id for record in listed] == [globex_key.record.api_key_id]
    assert len(service.list_keys(acme_admin)) == 2


def test_revoke_key_rejects_it_at_once(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    issued = service.issue_key(admin)
    service.verify(issued.api_key)

    record = service.revoke_key(admin, issued.record.api_key_id)

    assert record.revoked_at == START
    assert record.revoked_by == admin.actor_id
    with pytest.raises(AuthenticationError):
        service.verify(issued.api_key)


def test_revoke_key_twice_raises(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    issued = service.issue_key(admin)
    service.revoke_key(admin, issued.record.api_key_id)

    with pytest.raises(NotFoundError):
        service.revoke_key(admin, issued.record.api_key_id)


def test_revoke_unknown_key_raises(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme

    with pytest.raises(NotFoundError):
        service.revoke_key(admin, "key_does_not_exist")


def test_revoke_audited_in_store(
    store: CountingStore,
    cipher: EnvelopeCipher,
    clock: ManualClock,
) -> None:
    service = _service(store, cipher, DirectAuditSink(store.inner), clock)
    admin, _ = _tenant(service, "acme")
    issued = service.issue_key(admin)

    service.revoke_key(admin, issued.record.api_key_id)

    events = store.list_audit_events("acme", event_type="api_key.revoked")
    assert len(events) == 1
    assert events[0].details["api_key_id"] == issued.record.api_key_id


def test_rotate_key_issues_replacement(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    old = service.issue_key(admin, name="ci", ttl=timedelta(days=30))

    new, old_after = service.rotate_key(
        admin, old.record.api_key_id, grace=timedelta(hours=2)
    )

    assert new.record.rotated_from_key_id == old.record.api_key_id
    assert new.record.name == "ci"
    assert new.record.expires_at == START + timedelta(days=30)
    assert old_after.expires_at == START + timedelta(hours=2)
    assert service.verify(new.api_key).tenant_id == "acme"


def test_rotate_old_key_valid_during_grace(
    service: KeyService, clock: ManualClock, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    old = service.issue_key(admin)
    service.rotate_key(admin, old.record.api_key_id, grace=timedelta(hours=2))

    clock.advance(hours=1, minutes=59)

    assert service.verify(old.api_key).actor_id == old.record.api_key_id


def test_rotate_old_key_expires_after_grace(
    service: KeyService,
    clock: ManualClock,
    audit: RecordingAuditSink,
    acme: tuple[Principal, IssuedKey],
) -> None:
    admin, _ = acme
    old = service.issue_key(admin)
    service.rotate_key(admin, old.record.api_key_id, grace=timedelta(hours=2))

    clock.advance(hours=2)

    with pytest.raises(AuthenticationError):
        service.verify(old.api_key)
    assert audit.of_type("authentication.failed")[-1].details["reason"] == "expired"


def test_rotate_zero_grace_expires_at_once(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    old = service.issue_key(admin)

    service.rotate_key(admin, old.record.api_key_id, grace=timedelta(0))

    with pytest.raises(AuthenticationError):
        service.verify(old.api_key)


@pytest.mark.parametrize(
    "grace", [timedelta(hours=-1), timedelta(hours=168, seconds=1)]
)
def test_rotate_grace_out_of_bounds_raises(
    service: KeyService, acme: tuple[Principal, IssuedKey], grace: timedelta
) -> None:
    admin, _ = acme
    old = service.issue_key(admin)

    with pytest.raises(
        ValueError, match="grace_period_hours must be between 0 and 168"
    ):
        service.rotate_key(admin, old.record.api_key_id, grace=grace)


def test_rotate_grace_at_max_accepted(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    old = service.issue_key(admin)

    _, old_after = service.rotate_key(
        admin, old.record.api_key_id, grace=timedelta(hours=168)
    )

    assert old_after.expires_at == START + timedelta(hours=168)


def test_rotate_revoked_key_raises(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    old = service.issue_key(admin)
    service.revoke_key(admin, old.record.api_key_id)

    with pytest.raises(NotFoundError):
        service.rotate_key(admin, old.record.api_key_id)


# Tenant isolation


def test_other_tenant_cannot_revoke(
    service: KeyService,
    acme: tuple[Principal, IssuedKey],
    globex: tuple[Principal, IssuedKey],
) -> None:
    _, acme_key = acme
    globex_admin, _ = globex

    with pytest.raises(NotFoundError):
        service.revoke_key(globex_admin, acme_key.record.api_key_id, tenant_id="acme")

    assert service.verify(acme_key.api_key).tenant_id == "acme"


def test_other_tenant_cannot_rotate(
    service: KeyService,
    store: CountingStore,
    acme: tuple[Principal, IssuedKey],
    globex: tuple[Principal, IssuedKey],
) -> None:
    _, acme_key = acme
    globex_admin, _ = globex

    with pytest.raises(NotFoundError):
        service.rotate_key(globex_admin, acme_key.record.api_key_id)

    assert len(store.list_api_keys("acme")) == 1
    assert len(store.list_api_keys("globex")) == 1


def test_other_tenant_key_id_unlisted(
    service: KeyService,
    acme: tuple[Principal, IssuedKey],
    globex: tuple[Principal, IssuedKey],
) -> None:
    _, acme_key = acme
    globex_admin, _ = globex

    listed = {record.api_key_id for record in service.list_keys(globex_admin)}

    assert acme_key.record.api_key_id not in listed


# Verification


def test_verify_returns_principal(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    issued = service.issue_key(admin, scopes=("api",))

    principal = service.verify(issued.api_key)

    assert principal.actor_id == issued.record.api_key_id
    assert principal.tenant_id == "acme"
    assert principal.user_id == admin.user_id
    assert principal.scopes == ("api",)
    assert not principal.is_operator


@pytest.mark.parametrize(
    ("presented", "reason", "tenant_id"),
    [
        (None, "malformed", None),
        ("", "malformed", None),
        ("not-a-key", "malformed", None),
        ("ключ", "malformed", None),
        ("x" * 100_000, "malformed", None),
        (apikeys.generate_api_key("acme"), "unknown", "acme"),
        (apikeys.generate_api_key("nobody_here"), "unknown", "nobody_here"),
    ],
    ids=["none", "empty", "garbage", "non-ascii", "huge", "unknown", "no-tenant"],
)
def test_verify_failure_audited(
    service: KeyService,
    audit: RecordingAuditSink,
    acme: tuple[Principal, IssuedKey],
    presented: str | None,
    reason: str,
    tenant_id: str | None,
) -> None:
    with pytest.raises(AuthenticationError) as excinfo:
        service.verify(presented, RequestInfo("203.0.113.7", "curl/8"))

    event = audit.of_type("authentication.failed")[-1]
    assert str(excinfo.value) == "invalid or expired API key"
    assert event.details == {"reason": reason}
    assert event.tenant_id == tenant_id
    assert event.ip_address == "203.0.113.7"


def test_verify_revoked_audited_with_key_id(
    service: KeyService, audit: RecordingAuditSink, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    issued = service.issue_key(admin)
    service.revoke_key(admin, issued.record.api_key_id)

    with pytest.raises(AuthenticationError):
        service.verify(issued.api_key)

    event = audit.of_type("authentication.failed")[-1]
    assert event.details == {
        "reason": "revoked",
        "api_key_id": issued.record.api_key_id,
    }
    assert event.tenant_id == "acme"


def test_verify_cache_spares_store(
    service: KeyService, store: CountingStore, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    issued = service.issue_key(admin)
    before = store.lookups

    for _ in range(10):
        service.verify(issued.api_key)

    assert store.lookups - before == 1


def test_verify_cache_entry_ages_on_clock(
    service: KeyService,
    store: CountingStore,
    clock: ManualClock,
    acme: tuple[Principal, IssuedKey],
) -> None:
    admin, _ = acme
    issued = service.issue_key(admin)
    service.verify(issued.api_key)
    before = store.lookups

    clock.advance(seconds=CACHE_SECONDS + 0.1)
    service.verify(issued.api_key)

    assert store.lookups - before == 1


def test_revocation_elsewhere_applies_after_cache_ttl(
    store: CountingStore,
    cipher: EnvelopeCipher,
    audit: RecordingAuditSink,
    clock: ManualClock,
) -> None:
    first = _service(store, cipher, audit, clock)
    second = _service(store, cipher, audit, clock)  # another function instance
    admin, _ = _tenant(first, "acme")
    issued = first.issue_key(admin)
    second.verify(issued.api_key)

    first.revoke_key(admin, issued.record.api_key_id)
    clock.advance(seconds=CACHE_SECONDS + 0.1)

    with pytest.raises(AuthenticationError):
        second.verify(issued.api_key)


def test_cached_key_checked_for_expiry(
    store: CountingStore,
    cipher: EnvelopeCipher,
    audit: RecordingAuditSink,
    clock: ManualClock,
) -> None:
    service = _service(store, cipher, audit, clock, verify_cache_seconds=3600)
    admin, _ = _tenant(service, "acme")
    issued = service.issue_key(admin, ttl=timedelta(minutes=1))
    service.verify(issued.api_key)
    lookups = store.lookups

    clock.advance(minutes=2)

    with pytest.raises(AuthenticationError):
        service.verify(issued.api_key)
    assert store.lookups == lookups


def test_zero_cache_ttl_reads_store_each_time(
    store: CountingStore,
    cipher: EnvelopeCipher,
    audit: RecordingAuditSink,
    clock: ManualClock,
) -> None:
    service = _service(store, cipher, audit, clock, verify_cache_seconds=0)
    admin, issued = _tenant(service, "acme")
    before = store.lookups

    for _ in range(3):
        service.verify(issued.api_key)

    assert store.lookups - before == 3


# Usage


def test_usage_not_written_before_interval(
    service: KeyService,
    store: CountingStore,
    clock: ManualClock,
    acme: tuple[Principal, IssuedKey],
) -> None:
    _, issued = acme

    for _ in range(20):
        clock.advance(seconds=1)
        service.verify(issued.api_key)

    assert store.usage_writes == 0
    assert _usage_rows(store) == []


def test_usage_written_as_one_row_per_key(
    service: KeyService,
    store: CountingStore,
    clock: ManualClock,
    acme: tuple[Principal, IssuedKey],
) -> None:
    admin, first = acme  # verified once by the fixture
    second = service.issue_key(admin)
    for _ in range(5):
        clock.advance(seconds=1)
        service.verify(second.api_key)
    for _ in range(9):
        service.verify(first.api_key)

    clock.advance(seconds=FLUSH_SECONDS)
    service.verify(second.api_key)

    rows = {row[1]: row for row in _usage_rows(store)}
    assert store.usage_writes == 1
    assert len(rows) == 2
    assert rows[first.record.api_key_id][2] == 10
    assert rows[second.record.api_key_id][2] == 6
    assert rows[second.record.api_key_id][3] == START + timedelta(seconds=1)
    assert rows[second.record.api_key_id][4] == clock.now


def test_list_keys_shows_last_used_at(
    service: KeyService,
    clock: ManualClock,
    acme: tuple[Principal, IssuedKey],
) -> None:
    admin, _ = acme
    issued = service.issue_key(admin)
    clock.advance(seconds=3)
    service.verify(issued.api_key)
    clock.advance(seconds=3)

    listed = {record.api_key_id: record for record in service.list_keys(admin)}

    assert listed[issued.record.api_key_id].last_used_at == START + timedelta(seconds=3)


def test_unused_key_has_no_last_used_at(
    service: KeyService, acme: tuple[Principal, IssuedKey]
) -> None:
    admin, _ = acme
    issued = service.issue_key(admin)

    listed = {record.api_key_id: record for record in service.list_keys(admin)}

    assert listed[issued.record.api_key_id].last_used_at is None


def test_usage_kept_when_store_write_fails(
    service: KeyService,
    store: CountingStore,
    acme: tuple[Principal, IssuedKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, issued = acme

    def fail(batches: Sequence[UsageBatch]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "append_usage", fail)
    service.usage.flush()
    monkeypatch.undo()
    service.verify(issued.api_key)
    service.usage.flush()

    assert [row[2] for row in _usage_rows(store)] == [2]
