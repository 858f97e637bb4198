"""The credentials:read scope: only the operator issues or rotates such keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.crypto import EnvelopeCipher, LocalKeyring
from shared.events import DirectAuditSink
from shared.keyservice import KeyService, Principal
from shared.store._duckdb import DuckDBStore

KEY_PATH = "projects/p/locations/l/keyRings/r/cryptoKeys/api-key-encryption"


@pytest.fixture
def keys(tmp_path: Path) -> KeyService:
    store = DuckDBStore(tmp_path / "tenants.duckdb")
    cipher = EnvelopeCipher(LocalKeyring(tmp_path / "keyring.json"), KEY_PATH)
    return KeyService(store, cipher, DirectAuditSink(store))


@pytest.fixture
def tenant_admin(keys: KeyService) -> Principal:
    _, issued = keys.create_tenant(
        Principal.operator(), "acme", name="Acme", contact_email=None
    )
    return keys.verify(issued.api_key)


def test_operator_issues_read_key(keys: KeyService, tenant_admin: Principal) -> None:
    issued = keys.issue_key(
        Principal.operator(), tenant_id="acme", scopes=("credentials:read",)
    )

    assert keys.verify(issued.api_key).scopes == ("credentials:read",)


def test_tenant_admin_cannot_issue_read_key(
    keys: KeyService, tenant_admin: Principal
) -> None:
    with pytest.raises(PermissionError):
        keys.issue_key(tenant_admin, scopes=("api", "credentials:read"))


def test_tenant_admin_cannot_rotate_read_key(
    keys: KeyService, tenant_admin: Principal
) -> None:
    issued = keys.issue_key(
        Principal.operator(), tenant_id="acme", scopes=("credentials:read",)
    )

    with pytest.raises(PermissionError):
        keys.rotate_key(tenant_admin, issued.record.api_key_id)


def test_tenant_admin_still_rotates_own_keys(
    keys: KeyService, tenant_admin: Principal
) -> None:
    issued = keys.issue_key(tenant_admin, scopes=("api",))

    new_key, _ = keys.rotate_key(tenant_admin, issued.record.api_key_id)

    assert new_key.record.scopes == ("api",)
