"""KMS envelope encryption for API keys and cloud credentials.

``build_kms`` picks the backend from the settings: the local keyring file
(default) or Google Cloud KMS. ``EnvelopeCipher`` seals records under cached,
KMS-wrapped data keys. ``APIKeyManager`` and ``CredentialsManager`` are the
documented convenience API on top.

Errors: ``DecryptionError`` for every ciphertext that does not open, and
``KmsError`` (with subclasses per cause) when the KMS itself fails. Given an
audit sink, ``build_kms`` returns ``AuditedKms``, which records each
``KmsError`` as a ``kms.operation_failed`` audit event before raising it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.crypto._audited import KMS_FAILURE_EVENT, AuditedKms
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
    from shared.events import AuditSink

__all__ = [
    "KMS_FAILURE_EVENT",
    "APIKeyManager",
    "AuditedKms",
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


def build_kms(settings: Settings, *, audit: AuditSink | None = None) -> KmsClient:
    """Return the KMS backend the settings select, audited when ``audit`` is given."""
    backend: KmsClient
    if settings.kms_backend == "gcp":
        backend = CloudKms()
    else:
        backend = LocalKeyring(settings.data_dir / "keyring.json")
    return backend if audit is None else AuditedKms(backend, audit)
