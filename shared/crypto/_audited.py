"""A KMS client that reports every failed operation before raising its error.

``build_kms`` wraps the configured backend in ``AuditedKms`` when it is given
an audit sink, so every function reports KMS failures in this one place. Each
``KmsError`` becomes a ``kms.operation_failed`` audit event with the
operation, the key's resource name and the error's ``kind``, never data. The
error is then raised unchanged. ``DecryptionError`` (a
ciphertext that does not open) is not a KMS failure and is not reported.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared.crypto._kms import KmsClient, KmsError

if TYPE_CHECKING:
    from shared.events import AuditSink

_log = logging.getLogger(__name__)

KMS_FAILURE_EVENT = "kms.operation_failed"


class AuditedKms:
    """Wraps a ``KmsClient`` and audits each ``KmsError`` it raises."""

    def __init__(
        self, inner: KmsClient, audit: AuditSink, *, actor_id: str | None = None
    ) -> None:
        self._inner = inner
        self._audit = audit
        self._actor_id = actor_id

    @property
    def inner(self) -> KmsClient:
        """The wrapped backend."""
        return self._inner

    def encrypt(self, key_name: str, plaintext: bytes, aad: bytes) -> bytes:
        try:
            return self._inner.encrypt(key_name, plaintext, aad)
        except KmsError as exc:
            self._report("encrypt", key_name, exc)
            raise

    def decrypt(self, key_name: str, ciphertext: bytes, aad: bytes) -> bytes:
        try:
            return self._inner.decrypt(key_name, ciphertext, aad)
        except KmsError as exc:
            self._report("decrypt", key_name, exc)
            raise

    def _report(self, operation: str, key_name: str, error: KmsError) -> None:
        from shared.events import new_event

        details = {"operation": operation, "key_name": key_name, "kind": error.kind}
        labels = {"kms_key": key_name, "operation": operation, "kind": error.kind}
        _log.error(
            "KMS %s failed (%s)", operation, error.kind, extra={"labels": labels}
        )
        try:
            self._audit.emit(
                new_event(KMS_FAILURE_EVENT, actor_id=self._actor_id, details=details)
            )
        except Exception:  # noqa: BLE001 - the KMS error is the one to raise
            _log.warning(
                "auditing a KMS failure failed", exc_info=True, extra={"labels": labels}
            )
