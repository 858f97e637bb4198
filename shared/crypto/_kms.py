"""The interface both KMS backends implement, and the errors they raise."""

from __future__ import annotations

from typing import Protocol


class DecryptionError(Exception):
    """Decryption failed. Deliberately opaque: the message never names the cause."""

    def __init__(self) -> None:
        super().__init__("decryption failed")


class KmsError(Exception):
    """A KMS operation failed for an operational reason (not bad ciphertext)."""

    kind = "unknown"


class KmsUnavailableError(KmsError):
    """The KMS did not respond in time or returned a transient error after retries."""

    kind = "unavailable"


class KmsPermissionError(KmsError):
    """The caller lacks permission to use the key."""

    kind = "permission_denied"


class KmsKeyDisabledError(KmsError):
    """The key, or the key version the ciphertext needs, is disabled or destroyed."""

    kind = "key_disabled"


class KmsIntegrityError(KmsError):
    """A CRC32C checksum did not match: the request or response was corrupted."""

    kind = "integrity"


class KmsClient(Protocol):
    """Wraps and unwraps small secrets (data keys) under a named KMS key.

    ``key_name`` is a Cloud KMS resource name
    (``projects/P/locations/L/keyRings/R/cryptoKeys/K``); ``aad`` is additional
    authenticated data that must match on decrypt. ``decrypt`` raises
    ``DecryptionError`` for ciphertext that does not authenticate and a
    ``KmsError`` for everything else.
    """

    def encrypt(self, key_name: str, plaintext: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, key_name: str, ciphertext: bytes, aad: bytes) -> bytes: ...


class KmsKeyNotFoundError(KmsError):
    """The key named in the configuration does not exist."""

    kind = "not_found"
