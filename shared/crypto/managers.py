"""``APIKeyManager`` and ``CredentialsManager``: the documented Python API.

Both take the KMS key's project, location, key ring and name, as operators'
code already calls them, and work against whichever KMS backend is configured
(``KMS_BACKEND``), or against a ``kms`` client passed in. Ciphertexts use the
envelope format of ``shared.crypto._envelope``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared import apikeys
from shared.crypto._envelope import EnvelopeCipher, RecordContext, parse_ciphertext
from shared.crypto._kms import DecryptionError, KmsClient

if TYPE_CHECKING:
    from shared.credentials import ProviderEndpoints

_log = logging.getLogger(__name__)

API_KEY_KIND = "api_key"
CREDENTIALS_KIND = "credentials"


def _key_path(project_id: str, location: str, keyring: str, key_name: str) -> str:
    return (
        f"projects/{project_id}/locations/{location}/"
        f"keyRings/{keyring}/cryptoKeys/{key_name}"
    )


def _cipher(
    key_path: str, kms: KmsClient | None, data_key_seconds: float
) -> EnvelopeCipher:
    if kms is None:
        from shared.config import get_settings
        from shared.crypto import build_kms

        kms = build_kms(get_settings())
    return EnvelopeCipher(kms, key_path, data_key_seconds=data_key_seconds)


class APIKeyManager:
    """Generates, hashes and encrypts tenant API keys."""

    def __init__(
        self,
        project_id: str,
        location: str,
        keyring: str,
        key_name: str,
        *,
        kms: KmsClient | None = None,
        data_key_seconds: float = 300.0,
    ) -> None:
        self.key_path = _key_path(project_id, location, keyring, key_name)
        self._cipher = _cipher(self.key_path, kms, data_key_seconds)

    def generate_api_key(self, tenant_id: str) -> str:
        return apikeys.generate_api_key(tenant_id)

    def hash_api_key(self, api_key: str) -> str:
        return apikeys.hash_api_key(api_key)

    def encrypt_api_key(self, api_key: str, *, api_key_id: str = "") -> bytes:
        """Encrypt ``api_key``, bound to its tenant and, if given, its key id."""
        parsed = apikeys.parse_api_key(api_key)
        context = RecordContext(parsed.tenant_id, API_KEY_KIND, api_key_id)
        return self._cipher.encrypt(api_key.encode("ascii"), context)

    def decrypt_api_key(
        self,
        encrypted_api_key: bytes,
        *,
        tenant_id: str | None = None,
        api_key_id: str | None = None,
    ) -> str:
        """Decrypt a key, checking its binding when ``tenant_id`` is given.

        Without them the ciphertext's own context is used, and the key inside
        must still belong to the tenant that context names.
        """
        expected = None
        if tenant_id is not None:
            expected = RecordContext(tenant_id, API_KEY_KIND, api_key_id or "")
        plaintext = self._cipher.decrypt(encrypted_api_key, expected)
        owner = tenant_id
        if owner is None:
            owner = parse_ciphertext(encrypted_api_key).context.tenant_id
        try:
            key = plaintext.decode("ascii")
            parsed = apikeys.parse_api_key(key)
        except (UnicodeDecodeError, ValueError):
            raise DecryptionError() from None
        if parsed.tenant_id != owner:
            raise DecryptionError()
        return key

    def create_secure_api_key(self, tenant_id: str) -> dict[str, Any]:
        """Return a new key with its hash and encrypted copy; show the key once."""
        api_key = self.generate_api_key(tenant_id)
        return {
            "api_key": api_key,
            "api_key_hash": self.hash_api_key(api_key),
            "encrypted_api_key": self.encrypt_api_key(api_key),
        }


class CredentialsManager:
    """Encrypts and decrypts customer cloud credentials as canonical JSON."""

    def __init__(
        self,
        project_id: str,
        location: str,
        keyring: str,
        key_name: str,
        *,
        kms: KmsClient | None = None,
        data_key_seconds: float = 300.0,
    ) -> None:
        self.key_path = _key_path(project_id, location, keyring, key_name)
        self._cipher = _cipher(self.key_path, kms, data_key_seconds)

    def encrypt_credentials(
        self,
        credentials: dict[str, Any],
        *,
        tenant_id: str = "",
        provider: str = "",
        credential_id: str = "",
    ) -> bytes:
        """Encrypt ``credentials``, bound to the tenant, provider and credential id."""
        if not isinstance(credentials, dict):
            raise TypeError("credentials must be a dict")
        canonical = json.dumps(credentials, sort_keys=True, separators=(",", ":"))
        context = RecordContext(tenant_id, _credentials_kind(provider), credential_id)
        return self._cipher.encrypt(canonical.encode("utf-8"), context)

    def decrypt_credentials(
        self,
        encrypted_credentials: bytes,
        *,
        tenant_id: str | None = None,
        provider: str = "",
        credential_id: str = "",
    ) -> dict[str, Any]:
        """Decrypt credentials; with ``tenant_id`` the binding is checked too."""
        expected = None
        if tenant_id is not None:
            expected = RecordContext(
                tenant_id, _credentials_kind(provider), credential_id
            )
        plaintext = self._cipher.decrypt(encrypted_credentials, expected)
        try:
            credentials = json.loads(plaintext)
        except ValueError:
            raise DecryptionError() from None
        if not isinstance(credentials, dict):
            raise DecryptionError()
        return credentials

    def validate_gcp_credentials(
        self, credentials: dict[str, Any], *, endpoints: ProviderEndpoints | None = None
    ) -> bool:
        """Return whether Google accepts the service account key.

        Runs the input checks and the live check of ``shared.credentials.gcp``
        against ``endpoints`` (default: from the settings).
        """
        return _validate("gcp", credentials, endpoints)

    def validate_aws_credentials(
        self, credentials: dict[str, Any], *, endpoints: ProviderEndpoints | None = None
    ) -> bool:
        """Return whether AWS STS accepts the access key; see the GCP variant."""
        return _validate("aws", credentials, endpoints)


def _validate(
    provider: str, credentials: object, endpoints: ProviderEndpoints | None
) -> bool:
    """Return True only for a credential the provider accepted.

    False covers malformed input, a rejection and a check that proved nothing
    (timeout, 5xx) alike, because a bool cannot tell them apart. Callers that
    must, use ``shared.credentials.validation`` directly.
    """
    from shared.credentials import (
        CredentialInputError,
        ProviderEndpoints,
        Status,
        validation,
    )

    if endpoints is None:
        from shared.config import get_settings

        endpoints = ProviderEndpoints.from_settings(get_settings())
    now = datetime.now(UTC)
    try:
        credential = validation.normalise(
            provider, credentials, endpoints=endpoints, now=now
        )
    except CredentialInputError as exc:
        _log.warning(
            "%s credentials are malformed",
            provider,
            extra={"labels": {"field": exc.field}},
        )
        return False
    result = validation.check(credential, endpoints, now=now)
    if result.status is not Status.VALID:
        _log.warning(
            "%s credentials are %s (%s)", provider, result.status.value, result.reason
        )
    return result.status is Status.VALID


def _credentials_kind(provider: str) -> str:
    return f"{CREDENTIALS_KIND}:{provider}" if provider else CREDENTIALS_KIND
