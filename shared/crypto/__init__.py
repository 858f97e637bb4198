"""KMS envelope encryption for API keys and cloud credentials.

``build_kms`` picks the backend from the settings: the local keyring file
(default) or Google Cloud KMS. ``EnvelopeCipher`` seals records under cached,
KMS-wrapped data keys. ``APIKeyManager`` and ``CredentialsManager`` are the
documented convenience API on top.

Errors: ``DecryptionError`` for every ciphertext that does not open, and
``KmsError`` (with subclasses per cause) when the KMS itself fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.crypto._cloud import CloudKms
from shared.crypto._envelope import EnvelopeCipher, RecordContext, parse_ciphertext
from shared.crypto._kms import (
    DecryptionError,
    KmsClient,
    KmsError,
    KmsIntegrityError,
    KmsKeyDisabledError,
    KmsKeyNotFoundError,
    KmsPermissionError,
    KmsUnavailableError,
)
from shared.crypto._local import LocalKeyring
from shared.crypto.managers import APIKeyManager, CredentialsManager

if TYPE_CHECKING:
    from shared.config import Settings

__all__ = [
    "APIKeyManager",
    "CloudKms",
    "CredentialsManager",
    "DecryptionError",
    "EnvelopeCipher",
    "KmsClient",
    "KmsError",
    "KmsIntegrityError",
    "KmsKeyDisabledError",
    "KmsKeyNotFoundError",
    "KmsPermissionError",
    "KmsUnavailableError",
    "LocalKeyring",
    "RecordContext",
    "build_kms",
    "parse_ciphertext",
]


def build_kms(settings: Settings) -> KmsClient:
    """Return the KMS backend the settings select."""
    if settings.kms_backend == "gcp":
        return CloudKms()
    return LocalKeyring(settings.data_dir / "keyring.json")
