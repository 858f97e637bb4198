"""The contract of ``Store``, run against every backend.

Each test takes the ``store`` fixture, so it runs on DuckDB and on BigQuery
(bqemulator). A behaviour only one backend can show lives in that backend's
own test file.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta, timezone

import pytest
import store_records as records
from store_records import NOW

from shared.store import AlreadyExistsError, Store

# Tenants


def test_tenant_round_trip(store: Store) -> None:
    tenant = records.tenant()
    store.create_tenant(tenant, records.admin())

    assert store.get_tenant("acme") == tenant


def test_tenant_unknown_is_none(store: Store) -> None:
    assert store.get_tenant("nobody") is None


def test_tenant_duplicate_id_rejected(store: Store) -> None:
    store.create_tenant(records.tenant(), records.admin())

    with pytest.raises(AlreadyExistsError):
        store.create_tenant(records.tenant(), records.admin())


def test_tenant_duplicate_admin_rejected(store: Store) -> None:
    admin = records.admin("acme")
    store.create_tenant(records.tenant("acme"), admin)

    with pytest.raises(AlreadyExistsError):
        store.create_tenant(
            records.tenant("globex"), replace(admin, tenant_id="globex")
        )
    assert store.get_tenant("globex") is None


# API keys


def test_key_round_trip(store: Store) -> None:
    key = records.api_key()
    store.insert_api_key(key)

    assert store.get_api_key("acme", key.api_key_id) == key


def test_key_find_by_hash(store: Store) -> None:
    key = records.api_key()
    store.insert_api_key(key)

    assert store.find_api_key_by_hash(key.api_key_hash) == key


def test_key_unknown_hash_is_none(store: Store) -> None:
    store.insert_api_key(records.api_key())

    assert store.find_api_key_by_hash("0" * 64) is None


def test_key_duplicate_id_rejected(store: Store) -> None:
    key = records.api_key()
    store.insert_api_key(key)

    with pytest.raises(AlreadyExistsError):
        store.insert_api_key(replace(key, api_key_hash="1" * 64))


def test_key_duplicate_hash_rejected(store: Store) -> None:
    key = records.api_key()
    store.insert_api_key(key)

    with pytest.raises(AlreadyExistsError):
        store.insert_api_key(replace(key, api_key_id="key_other"))
    assert store.get_api_key("acme", "key_other") is None


def test_key_null_columns_round_trip(store: Store) -> None:
    # Typed NULL parameters: each nullable column is written and read as None.
    key = records.api_key(user_id=None, name=None, created_by_user_id=None)
    store.insert_api_key(key)

    stored = store.get_api_key("acme", key.api_key_id)

    assert stored is not None
    assert stored.user_id is None
    assert stored.name is None
    assert stored.created_by_user_id is None
    assert stored.revoked_at is None
    assert stored.last_used_at is None


def test_key_bytes_round_trip(store: Store) -> None:
    ciphertext = bytes(range(256)) * 4
    key = records.api_key(encrypted_api_key=ciphertext)
    store.insert_api_key(key)

    stored = store.get_api_key("acme", key.api_key_id)

    assert stored is not None
    assert stored.encrypted_api_key == ciphertext


def test_key_timestamps_read_as_utc(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    key = records.api_key(expires_at=(NOW + timedelta(days=1)).astimezone(plus_two))
    store.insert_api_key(key)

    stored = store.get_api_key("acme", key.api_key_id)

    assert stored is not None
    assert stored.expires_at == NOW + timedelta(days=1)
    assert stored.expires_at.utcoffset() == timedelta(0)


def test_key_list_is_oldest_first(store: Store) -> None:
    newer = records.api_key(created_at=NOW + timedelta(minutes=1))
    older = records.api_key(created_at=NOW)
    for key in (newer, older):
        store.insert_api_key(key)

    listed = store.list_api_keys("acme")

    assert [key.api_key_id for key in listed] == [older.api_key_id, newer.api_key_id]


def test_key_last_used_from_usage(store: Store) -> None:
    key, idle = records.api_key(), records.api_key()
    for record in (key, idle):
        store.insert_api_key(record)
    later = NOW + timedelta(hours=3)
    store.append_usage([records.usage(key, later), records.usage(key, NOW)])

    by_id = {record.api_key_id: record for record in store.list_api_keys("acme")}

    assert by_id[key.api_key_id].last_used_at == later
    assert by_id[idle.api_key_id].last_used_at is None
    stored = store.get_api_key("acme", key.api_key_id)
    assert stored is not None
    assert stored.last_used_at == later


def test_usage_empty_batch_is_noop(store: Store) -> None:
    key = records.api_key()
    store.insert_api_key(key)

    store.append_usage([])

    stored = store.get_api_key("acme", key.api_key_id)
    assert stored is not None
    assert stored.last_used_at is None


def test_revoke_marks_key(store: Store) -> None:
    key = records.api_key()
    store.insert_api_key(key)

    assert store.revoke_api_key("acme", key.api_key_id, NOW, "operator")

    stored = store.get_api_key("acme", key.api_key_id)
    assert stored is not None
    assert stored.is_active is False
    assert stored.revoked_at == NOW
    assert stored.revoked_by == "operator"


def test_revoke_right_after_issue(store: Store) -> None:
    # On BigQuery a streamed row could not be updated for ~30 minutes.
    key = records.api_key()
    store.insert_api_key(key)
    store.revoke_api_key("acme", key.api_key_id, NOW, "operator")

    found = store.find_api_key_by_hash(key.api_key_hash)

    assert found is not None
    assert found.is_active is False


def test_revoke_twice_is_false(store: Store) -> None:
    key = records.api_key()
    store.insert_api_key(key)
    store.revoke_api_key("acme", key.api_key_id, NOW, "operator")

    assert not store.revoke_api_key(
        "acme", key.api_key_id, NOW + timedelta(hours=1), "someone"
    )
    stored = store.get_api_key("acme", key.api_key_id)
    assert stored is not None
    assert stored.revoked_by == "operator"


def test_revoke_unknown_is_false(store: Store) -> None:
    assert not store.revoke_api_key("acme", "key_missing", NOW, "operator")


def test_rotate_inserts_and_shortens(store: Store) -> None:
    old = records.api_key()
    store.insert_api_key(old)
    new = records.api_key(rotated_from_key_id=old.api_key_id)
    grace_end = NOW + timedelta(hours=24)

    assert store.rotate_api_key("acme", old.api_key_id, new, grace_end)

    stored_old = store.get_api_key("acme", old.api_key_id)
    assert stored_old is not None
    assert stored_old.expires_at == grace_end
    assert stored_old.is_active is True
    assert store.get_api_key("acme", new.api_key_id) == new


def test_rotate_never_extends_expiry(store: Store) -> None:
    old = records.api_key(expires_at=NOW + timedelta(hours=1))
    store.insert_api_key(old)

    store.rotate_api_key(
        "acme", old.api_key_id, records.api_key(), NOW + timedelta(days=7)
    )

    stored = store.get_api_key("acme", old.api_key_id)
    assert stored is not None
    assert stored.expires_at == NOW + timedelta(hours=1)


def test_rotate_revoked_key_writes_nothing(store: Store) -> None:
    old = records.api_key()
    store.insert_api_key(old)
    store.revoke_api_key("acme", old.api_key_id, NOW, "operator")
    new = records.api_key()

    assert not store.rotate_api_key("acme", old.api_key_id, new, NOW)
    assert store.get_api_key("acme", new.api_key_id) is None
    stored = store.get_api_key("acme", old.api_key_id)
    assert stored is not None
    assert stored.expires_at == old.expires_at


def test_rotate_unknown_key_is_false(store: Store) -> None:
    new = records.api_key()

    assert not store.rotate_api_key("acme", "key_missing", new, NOW)
    assert store.list_api_keys("acme") == []


def test_rotate_hash_clash_writes_nothing(store: Store) -> None:
    old, other = records.api_key(), records.api_key()
    store.insert_api_key(old)
    store.insert_api_key(other)
    clash = records.api_key(api_key_hash=other.api_key_hash)

    with pytest.raises(AlreadyExistsError):
        store.rotate_api_key("acme", old.api_key_id, clash, NOW)
    stored = store.get_api_key("acme", old.api_key_id)
    assert stored is not None
    assert stored.expires_at == old.expires_at


def test_rotate_other_tenant_key_rejected(store: Store) -> None:
    old = records.api_key()
    store.insert_api_key(old)

    with pytest.raises(ValueError, match="same tenant"):
        store.rotate_api_key("acme", old.api_key_id, records.api_key("globex"), NOW)


# Tenant isolation


def test_isolation_get_and_list(store: Store) -> None:
    theirs = records.api_key("globex")
    store.insert_api_key(theirs)
    store.insert_api_key(records.api_key("acme"))

    assert store.get_api_key("acme", theirs.api_key_id) is None
    assert theirs.api_key_id not in {k.api_key_id for k in store.list_api_keys("acme")}


def test_isolation_revoke(store: Store) -> None:
    theirs = records.api_key("globex")
    store.insert_api_key(theirs)

    assert not store.revoke_api_key("acme", theirs.api_key_id, NOW, "acme-admin")
    assert store.get_api_key("globex", theirs.api_key_id) == theirs


def test_isolation_rotate(store: Store) -> None:
    theirs = records.api_key("globex")
    store.insert_api_key(theirs)
    new = records.api_key("acme")

    assert not store.rotate_api_key("acme", theirs.api_key_id, new, NOW)
    assert store.get_api_key("globex", theirs.api_key_id) == theirs
    assert store.get_api_key("acme", new.api_key_id) is None


def test_isolation_usage(store: Store) -> None:
    theirs = records.api_key("globex")
    store.insert_api_key(theirs)
    store.append_usage([records.usage(replace(theirs, tenant_id="acme"), NOW)])

    stored = store.get_api_key("globex", theirs.api_key_id)
    assert stored is not None
    assert stored.last_used_at is None


def test_isolation_audit(store: Store) -> None:
    store.insert_audit_events([records.event("acme"), records.event("globex")])

    listed = store.list_audit_events("acme")

    assert {event.tenant_id for event in listed} == {"acme"}


def test_isolation_credentials(store: Store) -> None:
    theirs = records.credential("globex")
    store.insert_credential(theirs)

    assert store.get_credential("acme", theirs.credential_id) is None
    assert store.list_credentials("acme") == []
    assert not store.delete_credential(
        "acme", theirs.credential_id, NOW, "acme-admin", NOW
    )
    assert store.get_credential("globex", theirs.credential_id) == theirs


# Audit events


def test_audit_insert_counts_new(store: Store) -> None:
    first, second = records.event(), records.event()

    assert store.insert_audit_events([first, second]) == 2
    assert store.insert_audit_events([first]) == 0


def test_audit_insert_new_returns_new_ids(store: Store) -> None:
    stored, new = records.event(), records.event()
    store.insert_audit_events([stored])

    written = store.insert_new_audit_events([stored, new, new])

    assert written == {str(new.event_id)}
    assert len(store.list_audit_events("acme")) == 2


def test_audit_insert_new_all_new(store: Store) -> None:
    first, second = records.event(), records.event()

    written = store.insert_new_audit_events([first, second])

    assert written == {str(first.event_id), str(second.event_id)}
    assert store.insert_new_audit_events([first, second]) == frozenset()


def test_audit_duplicate_in_batch(store: Store) -> None:
    event = records.event()

    assert store.insert_audit_events([event, event]) == 1
    assert len(store.list_audit_events("acme")) == 1


def test_audit_redelivery_one_row(store: Store) -> None:
    event = records.event()
    store.insert_audit_events([event])

    store.insert_audit_events([event])
    store.insert_audit_events([records.event(), event])

    listed = [e.event_id for e in store.list_audit_events("acme")]
    assert listed.count(event.event_id) == 1


def test_audit_round_trip(store: Store) -> None:
    event = records.event(api_key_id="key_1", scopes=["api"], count=3)
    store.insert_audit_events([event])

    assert store.list_audit_events("acme") == [event]


def test_audit_empty_batch(store: Store) -> None:
    assert store.insert_audit_events([]) == 0


def test_audit_newest_first(store: Store) -> None:
    events = [records.event(occurred_at=NOW + timedelta(minutes=i)) for i in range(3)]
    store.insert_audit_events(events)

    listed = store.list_audit_events("acme")

    assert [e.event_id for e in listed] == [e.event_id for e in reversed(events)]


def test_audit_filter_type_and_limit(store: Store) -> None:
    store.insert_audit_events(
        [records.event(event_type="api_key.revoked") for _ in range(3)]
        + [records.event(event_type="api_key.created")]
    )

    listed = store.list_audit_events("acme", event_type="api_key.revoked", limit=2)

    assert len(listed) == 2
    assert {e.event_type for e in listed} == {"api_key.revoked"}


def test_audit_null_tenant(store: Store) -> None:
    # tenant_id None lists platform-wide and never matches through "= NULL".
    platform = records.event(None, "authentication.failed")
    tenant = records.event("acme")
    store.insert_audit_events([platform, tenant])

    everything = {e.event_id for e in store.list_audit_events(None)}
    for_acme = {e.event_id for e in store.list_audit_events("acme")}

    assert everything == {platform.event_id, tenant.event_id}
    assert for_acme == {tenant.event_id}


# Cloud credentials


def test_credential_round_trip(store: Store) -> None:
    credential = records.credential(encrypted_credentials=bytes(range(256)))
    store.insert_credential(credential)

    assert store.get_credential("acme", credential.credential_id) == credential


def test_credential_null_columns(store: Store) -> None:
    credential = records.credential(
        name=None, account_hint=None, fingerprint=None, validated_at=None, details={}
    )
    store.insert_credential(credential)

    assert store.get_credential("acme", credential.credential_id) == credential


def test_credential_duplicate_rejected(store: Store) -> None:
    credential = records.credential()
    store.insert_credential(credential)

    with pytest.raises(AlreadyExistsError):
        store.insert_credential(replace(credential, name="other"))


def test_credential_list_oldest_first(store: Store) -> None:
    newer = records.credential(created_at=NOW + timedelta(minutes=1))
    older = records.credential()
    for credential in (newer, older):
        store.insert_credential(credential)

    assert store.list_credentials("acme") == [older, newer]


def test_credential_delete_and_restore(store: Store) -> None:
    credential = records.credential()
    store.insert_credential(credential)
    erase_after = NOW + timedelta(days=7)

    assert store.delete_credential(
        "acme", credential.credential_id, NOW, "key_1", erase_after
    )
    deleted = store.get_credential("acme", credential.credential_id)
    assert deleted is not None
    assert deleted.is_active is False
    assert deleted.erase_after == erase_after

    assert store.restore_credential("acme", credential.credential_id, NOW)
    assert store.get_credential("acme", credential.credential_id) == credential


def test_credential_delete_twice_false(store: Store) -> None:
    credential = records.credential()
    store.insert_credential(credential)
    store.delete_credential("acme", credential.credential_id, NOW, "key_1", NOW)

    assert not store.delete_credential(
        "acme", credential.credential_id, NOW, "key_2", NOW
    )


def test_credential_restore_after_window_false(store: Store) -> None:
    credential = records.credential()
    store.insert_credential(credential)
    store.delete_credential("acme", credential.credential_id, NOW, "key_1", NOW)

    assert not store.restore_credential("acme", credential.credential_id, NOW)


def test_credential_restore_active_false(store: Store) -> None:
    credential = records.credential()
    store.insert_credential(credential)

    assert not store.restore_credential("acme", credential.credential_id, NOW)


def test_credential_erase_due_only(store: Store) -> None:
    due, waiting, active = (records.credential() for _ in range(3))
    theirs = records.credential("globex")
    for credential in (due, waiting, active, theirs):
        store.insert_credential(credential)
    store.delete_credential("acme", due.credential_id, NOW, "k", NOW)
    store.delete_credential(
        "acme", waiting.credential_id, NOW, "k", NOW + timedelta(days=1)
    )
    store.delete_credential("globex", theirs.credential_id, NOW, "k", NOW)

    erased = store.erase_credentials("acme", NOW)

    assert erased == [due.credential_id]
    assert store.get_credential("acme", due.credential_id) is None
    assert store.get_credential("acme", waiting.credential_id) is not None
    assert store.get_credential("globex", theirs.credential_id) is not None


def test_credential_erase_nothing_due(store: Store) -> None:
    store.insert_credential(records.credential())

    assert store.erase_credentials("acme", NOW) == []


# Concurrent writers


def test_concurrent_writers_same_end_state(store: Store) -> None:
    keys = [records.api_key() for _ in range(8)]
    events = [records.event() for _ in range(8)]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            store.insert_api_key(keys[index])
            # Every writer also redelivers its neighbour's event.
            store.insert_audit_events([events[index], events[index - 1]])
            store.revoke_api_key("acme", keys[index].api_key_id, NOW, f"w{index}")
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(keys))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    listed = store.list_api_keys("acme")
    assert sorted(k.api_key_id for k in listed) == sorted(k.api_key_id for k in keys)
    assert all(not k.is_active for k in listed)
    audit = store.list_audit_events("acme")
    assert sorted(str(e.event_id) for e in audit) == sorted(
        str(e.event_id) for e in events
    )
