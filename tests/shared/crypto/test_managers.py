import hashlib
from pathlib import Path

import pytest

from shared import apikeys
from shared.crypto import (
    APIKeyManager,
    CredentialsManager,
    DecryptionError,
    EnvelopeCipher,
    LocalKeyring,
    RecordContext,
)

LOCATION = ("test-project", "local", "test-ring")
CREDENTIALS = {"type": "service_account", "private_key": "-----BEGIN KEY-----x"}


@pytest.fixture
def api_keys(keyring: LocalKeyring) -> APIKeyManager:
    return APIKeyManager(*LOCATION, "api-key-encryption", kms=keyring)


@pytest.fixture
def credentials(keyring: LocalKeyring) -> CredentialsManager:
    return CredentialsManager(*LOCATION, "credentials-encryption", kms=keyring)


# APIKeyManager


def test_api_key_manager_key_path(api_keys: APIKeyManager) -> None:
    assert api_keys.key_path == (
        "projects/test-project/locations/local/keyRings/test-ring/"
        "cryptoKeys/api-key-encryption"
    )


def test_generate_api_key_parses(api_keys: APIKeyManager) -> None:
    key = api_keys.generate_api_key("acme")

    assert apikeys.parse_api_key(key).tenant_id == "acme"


def test_hash_api_key_is_sha256_hex(api_keys: APIKeyManager) -> None:
    key = api_keys.generate_api_key("acme")

    assert api_keys.hash_api_key(key) == hashlib.sha256(key.encode()).hexdigest()


def test_create_secure_api_key_fields(api_keys: APIKeyManager) -> None:
    created = api_keys.create_secure_api_key("acme")

    assert set(created) == {"api_key", "api_key_hash", "encrypted_api_key"}
    assert created["api_key_hash"] == api_keys.hash_api_key(created["api_key"])
    assert isinstance(created["encrypted_api_key"], bytes)


def test_create_secure_api_key_encrypted_copy_opens(api_keys: APIKeyManager) -> None:
    created = api_keys.create_secure_api_key("acme")

    opened = api_keys.decrypt_api_key(created["encrypted_api_key"], tenant_id="acme")

    assert opened == created["api_key"]


def test_encrypted_api_key_hides_key(api_keys: APIKeyManager) -> None:
    created = api_keys.create_secure_api_key("acme")

    assert created["api_key"].encode() not in created["encrypted_api_key"]


def test_decrypt_api_key_without_binding(api_keys: APIKeyManager) -> None:
    key = api_keys.generate_api_key("acme")

    assert api_keys.decrypt_api_key(api_keys.encrypt_api_key(key)) == key


def test_decrypt_api_key_with_key_id(api_keys: APIKeyManager) -> None:
    key = api_keys.generate_api_key("acme")
    sealed = api_keys.encrypt_api_key(key, api_key_id="key_1")

    assert api_keys.decrypt_api_key(sealed, tenant_id="acme", api_key_id="key_1") == key


def test_decrypt_api_key_other_tenant_fails(api_keys: APIKeyManager) -> None:
    sealed = api_keys.encrypt_api_key(api_keys.generate_api_key("acme"))

    with pytest.raises(DecryptionError):
        api_keys.decrypt_api_key(sealed, tenant_id="globex")


def test_decrypt_api_key_other_key_id_fails(api_keys: APIKeyManager) -> None:
    key = api_keys.generate_api_key("acme")
    sealed = api_keys.encrypt_api_key(key, api_key_id="key_1")

    with pytest.raises(DecryptionError):
        api_keys.decrypt_api_key(sealed, tenant_id="acme", api_key_id="key_2")


def test_decrypt_api_key_of_other_tenant_inside_fails(
    api_keys: APIKeyManager, keyring: LocalKeyring
) -> None:
    # Sealed under the same KMS key, bound to acme, but holding globex's key.
    cipher = EnvelopeCipher(keyring, api_keys.key_path)
    globex_key = apikeys.generate_api_key("globex")
    sealed = cipher.encrypt(globex_key.encode(), RecordContext("acme", "api_key", ""))

    with pytest.raises(DecryptionError):
        api_keys.decrypt_api_key(sealed)


def test_decrypt_api_key_non_key_plaintext_fails(
    api_keys: APIKeyManager, keyring: LocalKeyring
) -> None:
    cipher = EnvelopeCipher(keyring, api_keys.key_path)
    sealed = cipher.encrypt(b"not a key", RecordContext("acme", "api_key", ""))

    with pytest.raises(DecryptionError):
        api_keys.decrypt_api_key(sealed, tenant_id="acme")


def test_encrypt_api_key_rejects_malformed_key(api_keys: APIKeyManager) -> None:
    with pytest.raises(apikeys.InvalidAPIKey):
        api_keys.encrypt_api_key("acme_api_short")


def test_api_key_manager_survives_restart(
    api_keys: APIKeyManager, keyring: LocalKeyring
) -> None:
    created = api_keys.create_secure_api_key("acme")
    restarted = APIKeyManager(
        *LOCATION, "api-key-encryption", kms=LocalKeyring(keyring.path)
    )

    opened = restarted.decrypt_api_key(created["encrypted_api_key"], tenant_id="acme")

    assert opened == created["api_key"]


def test_api_key_manager_default_backend_from_settings(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("DATA_DIR", str(tmp_path / "data"))
    manager = APIKeyManager(*LOCATION, "api-key-encryption")

    created = manager.create_secure_api_key("acme")

    assert (tmp_path / "data" / "keyring.json").exists()
    assert manager.decrypt_api_key(created["encrypted_api_key"]) == created["api_key"]


# CredentialsManager


def test_credentials_round_trip(credentials: CredentialsManager) -> None:
    sealed = credentials.encrypt_credentials(
        CREDENTIALS, tenant_id="acme", provider="gcp", credential_id="cred_1"
    )

    opened = credentials.decrypt_credentials(
        sealed, tenant_id="acme", provider="gcp", credential_id="cred_1"
    )

    assert opened == CREDENTIALS


def test_credentials_round_trip_without_binding(
    credentials: CredentialsManager,
) -> None:
    sealed = credentials.encrypt_credentials(CREDENTIALS)

    assert credentials.decrypt_credentials(sealed) == CREDENTIALS


def test_credentials_ciphertext_hides_secret(credentials: CredentialsManager) -> None:
    sealed = credentials.encrypt_credentials(CREDENTIALS, tenant_id="acme")

    assert b"BEGIN KEY" not in sealed


@pytest.mark.parametrize(
    "binding",
    [
        {"tenant_id": "globex", "provider": "gcp", "credential_id": "cred_1"},
        {"tenant_id": "acme", "provider": "aws", "credential_id": "cred_1"},
        {"tenant_id": "acme", "provider": "gcp", "credential_id": "cred_2"},
    ],
    ids=["tenant", "provider", "credential_id"],
)
def test_credentials_other_binding_fails(
    credentials: CredentialsManager, binding: dict[str, str]
) -> None:
    sealed = credentials.encrypt_credentials(
        CREDENTIALS, tenant_id="acme", provider="gcp", credential_id="cred_1"
    )

    with pytest.raises(DecryptionError):
        credentials.decrypt_credentials(sealed, **binding)


def test_credentials_api_key_manager_cannot_open(
    credentials: CredentialsManager, api_keys: APIKeyManager
) -> None:
    sealed = credentials.encrypt_credentials(CREDENTIALS, tenant_id="acme")

    with pytest.raises(DecryptionError):
        api_keys.decrypt_api_key(sealed, tenant_id="acme")


def test_credentials_non_dict_raises(credentials: CredentialsManager) -> None:
    with pytest.raises(TypeError, match="credentials must be a dict"):
        credentials.encrypt_credentials([1, 2])  # type: ignore[arg-type]
