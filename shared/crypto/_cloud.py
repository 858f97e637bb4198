"""Cloud KMS backend with the CRC32C integrity checks Google documents.

Every request carries the CRC32C of its plaintext or ciphertext and of the
additional authenticated data, and every response is checked: the service must
confirm it verified our checksums, and the checksum of what it returned must
match. A mismatch is retried a few times, then raised as ``KmsIntegrityError``.
Transient errors are retried with exponential backoff by ``google-api-core``.
"""

from __future__ import annotations

import logging
from typing import Any

import google_crc32c

from shared.crypto._kms import (
    DecryptionError,
    KmsError,
    KmsIntegrityError,
    KmsKeyDisabledError,
    KmsKeyNotFoundError,
    KmsPermissionError,
    KmsUnavailableError,
)

_log = logging.getLogger(__name__)
_INTEGRITY_ATTEMPTS = 3


def _crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


class CloudKms:
    """KMS backend that calls Google Cloud KMS through ``google-cloud-kms``.

    ``client`` is a ``kms.KeyManagementServiceClient`` or anything with the same
    ``encrypt``/``decrypt`` methods; without one, a client is built on first use
    with Application Default Credentials.
    """

    def __init__(
        self, client: Any | None = None, *, timeout_seconds: float = 10.0
    ) -> None:
        self._client = client
        self._timeout = timeout_seconds

    def encrypt(self, key_name: str, plaintext: bytes, aad: bytes) -> bytes:
        from google.cloud import kms

        request = kms.EncryptRequest(
            name=key_name,
            plaintext=plaintext,
            plaintext_crc32c=_crc32c(plaintext),
            additional_authenticated_data=aad,
            additional_authenticated_data_crc32c=_crc32c(aad),
        )
        for _ in range(_INTEGRITY_ATTEMPTS):
            response = self._call("encrypt", request)
            if (
                response.verified_plaintext_crc32c
                and response.verified_additional_authenticated_data_crc32c
                and response.ciphertext_crc32c == _crc32c(response.ciphertext)
            ):
                return bytes(response.ciphertext)
            _log.warning(
                "Cloud KMS encrypt failed its CRC32C check, retrying",
                extra={"labels": {"kms_key": key_name}},
            )
        raise KmsIntegrityError("Cloud KMS encrypt failed its CRC32C check")

    def decrypt(self, key_name: str, ciphertext: bytes, aad: bytes) -> bytes:
        from google.cloud import kms

        request = kms.DecryptRequest(
            name=key_name,
            ciphertext=ciphertext,
            ciphertext_crc32c=_crc32c(ciphertext),
            additional_authenticated_data=aad,
            additional_authenticated_data_crc32c=_crc32c(aad),
        )
        for _ in range(_INTEGRITY_ATTEMPTS):
            response = self._call("decrypt", request)
            if response.plaintext_crc32c == _crc32c(response.plaintext):
                return bytes(response.plaintext)
            _log.warning(
                "Cloud KMS decrypt failed its CRC32C check, retrying",
                extra={"labels": {"kms_key": key_name}},
            )
        raise KmsIntegrityError("Cloud KMS decrypt failed its CRC32C check")

    def _call(self, method: str, request: Any) -> Any:
        from google.api_core import exceptions, retry

        transient = retry.Retry(
            predicate=retry.if_exception_type(
                exceptions.ServiceUnavailable,
                exceptions.DeadlineExceeded,
                exceptions.InternalServerError,
                exceptions.TooManyRequests,
                exceptions.ResourceExhausted,
            ),
            initial=0.1,
            maximum=2.0,
            multiplier=2.0,
            timeout=self._timeout,
        )
        try:
            return getattr(self._get_client(), method)(
                request=request, retry=transient, timeout=self._timeout
            )
        except exceptions.InvalidArgument:
            if method == "decrypt":
                raise DecryptionError() from None
            raise KmsError(f"Cloud KMS rejected the {method} request") from None
        except (exceptions.PermissionDenied, exceptions.Unauthenticated):
            raise KmsPermissionError(
                f"permission denied to {method} with {request.name}: grant "
                "roles/cloudkms.cryptoKeyEncrypterDecrypter on the key"
            ) from None
        except exceptions.FailedPrecondition:
            raise KmsKeyDisabledError(
                f"{request.name} (or the version this ciphertext needs) is "
                "disabled or destroyed"
            ) from None
        except exceptions.NotFound:
            raise KmsKeyNotFoundError(f"KMS key {request.name} not found") from None
        except (exceptions.RetryError, exceptions.GoogleAPICallError) as exc:
            raise KmsUnavailableError(
                f"Cloud KMS {method} failed after retries: {type(exc).__name__}"
            ) from None

    def _get_client(self) -> Any:
        if self._client is None:
            from google.cloud import kms

            self._client = kms.KeyManagementServiceClient()
        return self._client
