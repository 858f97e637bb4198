"""A fake Cloud KMS that sits behind the real ``KeyManagementServiceClient``.

It is a transport: the real client builds the request, applies the retry and
timeout it is given and hands back what the transport returns, so ``CloudKms``
runs through the same client code as against Cloud KMS.

Like the service, the transport rejects a request whose CRC32C fields do not
match its data and seals with AES-256-GCM over the additional authenticated
data. It raises the ``google.api_core`` errors Cloud KMS returns:
``InvalidArgument`` for ciphertext that does not authenticate, and
``NotFound``, ``PermissionDenied`` or ``FailedPrecondition`` for a missing,
forbidden or disabled key.

Faults are queued per method: an error to raise, or response fields to
overwrite, consumed one call at a time.
"""

from __future__ import annotations

import secrets
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from typing import Any

import google_crc32c
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.api_core import exceptions, gapic_v1
from google.auth.credentials import AnonymousCredentials
from google.cloud import kms
from google.cloud.kms_v1.services.key_management_service.transports.base import (
    KeyManagementServiceTransport,
)

_NONCE_BYTES = 12


def crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


class FakeKmsTransport(KeyManagementServiceTransport):
    """Serves ``encrypt`` and ``decrypt`` for the keys it was created with."""

    def __init__(self, *key_names: str) -> None:
        super().__init__(credentials=AnonymousCredentials())
        self._keys = {name: AESGCM.generate_key(bit_length=256) for name in key_names}
        self.disabled: set[str] = set()
        self.denied: set[str] = set()
        self.calls: Counter[str] = Counter()
        self.requests: list[Any] = []
        self._faults: defaultdict[str, deque[Exception | dict[str, Any]]] = defaultdict(
            deque
        )
        info = gapic_v1.client_info.ClientInfo()
        self._wrapped_methods = {
            method: gapic_v1.method.wrap_method(
                method, default_timeout=60.0, client_info=info
            )
            for method in (self._encrypt, self._decrypt)
        }

    # What the client looks up in _wrapped_methods.

    @property
    def encrypt(self) -> Callable[..., kms.EncryptResponse]:
        return self._encrypt

    @property
    def decrypt(self) -> Callable[..., kms.DecryptResponse]:
        return self._decrypt

    @property
    def kind(self) -> str:
        return "fake"

    def close(self) -> None:
        pass

    # Fault injection

    def fail_next(self, method: str, error: Exception, *, times: int = 1) -> None:
        """Raise ``error`` on the next ``times`` calls of ``method``."""
        self._faults[method].extend([error] * times)

    def tamper_next(self, method: str, *, times: int = 1, **fields: Any) -> None:
        """Overwrite response ``fields`` on the next ``times`` calls of ``method``."""
        self._faults[method].extend([fields] * times)

    # The service

    def _encrypt(self, request: kms.EncryptRequest, **_: Any) -> kms.EncryptResponse:
        override = self._begin("encrypt", request)
        key = self._key(request.name, "useToEncrypt")
        _check_crc32c(request, "plaintext")
        _check_crc32c(request, "additional_authenticated_data")
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(key).encrypt(
            nonce, request.plaintext, request.additional_authenticated_data
        )
        ciphertext = nonce + sealed
        response = kms.EncryptResponse(
            name=f"{request.name}/cryptoKeyVersions/1",
            ciphertext=ciphertext,
            ciphertext_crc32c=crc32c(ciphertext),
            verified_plaintext_crc32c="plaintext_crc32c" in request,
            verified_additional_authenticated_data_crc32c=(
                "additional_authenticated_data_crc32c" in request
            ),
            protection_level=kms.ProtectionLevel.SOFTWARE,
        )
        return _apply(response, override)

    def _decrypt(self, request: kms.DecryptRequest, **_: Any) -> kms.DecryptResponse:
        override = self._begin("decrypt", request)
        key = self._key(request.name, "useToDecrypt")
        _check_crc32c(request, "ciphertext")
        _check_crc32c(request, "additional_authenticated_data")
        ciphertext = request.ciphertext
        try:
            plaintext = AESGCM(key).decrypt(
                ciphertext[:_NONCE_BYTES],
                ciphertext[_NONCE_BYTES:],
                request.additional_authenticated_data,
            )
        except (InvalidTag, ValueError):
            raise exceptions.InvalidArgument(
                "Decryption failed: the ciphertext is invalid."
            ) from None
        response = kms.DecryptResponse(
            plaintext=plaintext,
            plaintext_crc32c=crc32c(plaintext),
            used_primary=True,
            protection_level=kms.ProtectionLevel.SOFTWARE,
        )
        return _apply(response, override)

    def _begin(self, method: str, request: Any) -> dict[str, Any]:
        self.calls[method] += 1
        self.requests.append(request)
        queue = self._faults[method]
        fault = queue.popleft() if queue else {}
        if isinstance(fault, Exception):
            raise fault
        return fault

    def _key(self, name: str, permission: str) -> bytes:
        if name in self.denied:
            raise exceptions.PermissionDenied(
                f"Permission 'cloudkms.cryptoKeyVersions.{permission}' denied on "
                f"resource '{name}' (or it may not exist)."
            )
        if name not in self._keys:
            raise exceptions.NotFound(f"{name} not found.")
        if name in self.disabled:
            raise exceptions.FailedPrecondition(
                f"{name}/cryptoKeyVersions/1 is not enabled, current state is: "
                "DISABLED."
            )
        return self._keys[name]


def _check_crc32c(request: Any, field: str) -> None:
    checksum_field = f"{field}_crc32c"
    if checksum_field not in request:
        return
    if getattr(request, checksum_field) != crc32c(getattr(request, field)):
        raise exceptions.InvalidArgument(
            f"The checksum in field {checksum_field} did not match the data in "
            f"field {field}."
        )


def _apply(response: Any, fields: dict[str, Any]) -> Any:
    for name, value in fields.items():
        setattr(response, name, value)
    return response


def fake_kms_client(transport: FakeKmsTransport) -> kms.KeyManagementServiceClient:
    return kms.KeyManagementServiceClient(transport=transport)
