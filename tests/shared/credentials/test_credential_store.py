"""The DuckDB backend's tenant_credentials methods: round trips and tenant scoping."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.store import AlreadyExistsError, CredentialRecord
from shared.store._duckdb import DuckDBStore

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _record(credential_id: str = "cred_1", tenant_id: str = "acme") -> CredentialRecord:
    return CredentialRecord(
        credential_id=credential_id,
        tenant_id=tenant_id,
        provider="aws",
        name="pipelines",
        encrypted_credentials=b"\x01\x00sealed",
        kms_key_name="projects/p/locations/l/keyRings/r/cryptoKeys/k",
        account_hint="AKIA...WXYZ",
        fingerprint="v1:abc",
        validation_status="valid",
        validated_at=NOW,
        expires_at=None,
        details={"account_id": "123456789012"},
        is_active=True,
        created_at=NOW,
        created_by_user_id="key_1",
    )


def test_credential_round_trip(store: DuckDBStore) -> None:
    store.insert_credential(_record())

    assert store.get_credential("acme", "cred_1") == _record()


def test_credential_duplicate_id_rejected(store: DuckDBStore) -> None:
    store.insert_credential(_record())

    with pytest.raises(AlreadyExistsError):
        store.insert_credential(_record(tenant_id="globex"))


def test_credential_other_tenant_invisible(store: DuckDBStore) -> None:
    store.insert_credential(_record())

    assert store.get_credential("globex", "cred_1") is None
    assert store.list_credentials("globex") == []


def test_credential_list_oldest_first(store: DuckDBStore) -> None:
    newer = replace(_record("cred_a"), created_at=NOW + timedelta(seconds=1))
    store.insert_credential(newer)
    store.insert_credential(_record("cred_b"))

    listed = store.list_credentials("acme")

    assert [record.credential_id for record in listed] == ["cred_b", "cred_a"]


def test_credential_delete_sets_columns(store: DuckDBStore) -> None:
    store.insert_credential(_record())

    deleted = store.delete_credential(
        "acme", "cred_1", NOW, "key_2", NOW + timedelta(days=7)
    )

    record = store.get_credential("acme", "cred_1")
    assert deleted is True
    assert record is not None
    assert record.is_active is False
    assert record.deleted_by == "key_2"
    assert record.erase_after == NOW + timedelta(days=7)


def test_credential_delete_other_tenant_false(store: DuckDBStore) -> None:
    store.insert_credential(_record())

    deleted = store.delete_credential("globex", "cred_1", NOW, "key_9", NOW)

    assert deleted is False
    assert store.get_credential("acme", "cred_1") == _record()


def test_credential_restore_within_window(store: DuckDBStore) -> None:
    store.insert_credential(_record())
    store.delete_credential("acme", "cred_1", NOW, "key_2", NOW + timedelta(days=1))

    restored = store.restore_credential("acme", "cred_1", NOW + timedelta(hours=1))

    assert restored is True
    assert store.get_credential("acme", "cred_1") == _record()


def test_credential_restore_after_window_false(store: DuckDBStore) -> None:
    store.insert_credential(_record())
    store.delete_credential("acme", "cred_1", NOW, "key_2", NOW + timedelta(days=1))

    restored = store.restore_credential("acme", "cred_1", NOW + timedelta(days=1))

    assert restored is False


def test_credential_restore_active_false(store: DuckDBStore) -> None:
    store.insert_credential(_record())

    assert store.restore_credential("acme", "cred_1", NOW) is False


def test_credential_erase_due_rows_only(store: DuckDBStore) -> None:
    for credential_id in ("cred_due", "cred_later", "cred_active"):
        store.insert_credential(_record(credential_id))
    store.delete_credential("acme", "cred_due", NOW, "k", NOW + timedelta(days=1))
    store.delete_credential("acme", "cred_later", NOW, "k", NOW + timedelta(days=3))

    erased = store.erase_credentials("acme", NOW + timedelta(days=2))

    remaining = [record.credential_id for record in store.list_credentials("acme")]
    assert erased == ["cred_due"]
    assert sorted(remaining) == ["cred_active", "cred_later"]


def test_credential_erase_scoped_to_tenant(store: DuckDBStore) -> None:
    store.insert_credential(_record("cred_a", tenant_id="acme"))
    store.delete_credential("acme", "cred_a", NOW, "k", NOW)

    erased = store.erase_credentials("globex", NOW + timedelta(days=1))

    assert erased == []
    assert store.get_credential("acme", "cred_a") is not None


def test_credential_id_with_quote_is_data(store: DuckDBStore) -> None:
    store.insert_credential(_record())

    found = store.get_credential("acme' OR '1'='1", "cred_1' OR '1'='1")

    assert found is None
