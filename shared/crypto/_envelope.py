"""Envelope encryption with cached, KMS-wrapped, per-tenant data keys.

Design
------
Records are sealed with AES-256-GCM under a data key (DEK). The DEK is wrapped
by the KMS key for the record's purpose (API keys or credentials), with
``b"convergence.dek.v1" 0x1F tenant_id`` as KMS additional authenticated data,
and the wrapped DEK travels in every ciphertext. One DEK per (KMS key, tenant)
is reused for at most ``data_key_seconds`` and ``_MAX_DEK_USES`` records, so
issuing many keys costs one KMS call per tenant per interval rather than one
per record. Decryption caches unwrapped DEKs for the same interval, keyed by the
wrapped bytes. Each ciphertext is self-contained: a backup restored elsewhere
needs only the KMS key.

Ciphertext format, version 1 (all integers big-endian)::

    offset  size  field
    0       1     format version, 0x01
    1       2     C = length of the context (at most 1024)
    3       C     context: tenant_id 0x1F kind 0x1F record_id, UTF-8
    3+C     2     W = length of the wrapped DEK (at most 1024)
    5+C     W     wrapped DEK, as returned by the KMS backend
    5+C+W   12    AES-GCM nonce (random)
    17+C+W  n+16  AES-GCM ciphertext and tag

The AES-GCM associated data is every byte before the nonce, so the context and
the wrapped DEK are authenticated with the record. Decryption takes the context
the caller expects (from the row it read) and rejects a ciphertext whose context
differs: a ciphertext copied into another tenant's row, another kind of record
or another record id does not decrypt.

Every decryption failure raises the same ``DecryptionError``, without chaining,
so neither a message nor a traceback reveals which check failed.
"""

from __future__ import annotations

import secrets
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.crypto._kms import DecryptionError, KmsClient

FORMAT_VERSION = 1
MAX_CONTEXT_BYTES = 1024
MAX_WRAPPED_KEY_BYTES = 1024
NONCE_BYTES = 12
TAG_BYTES = 16
# Random 96-bit nonces stay far below the 2**32 messages per key that NIST
# SP 800-38D allows for AES-GCM with random nonces.
_MAX_DEK_USES = 1 << 20
_SEPARATOR = "\x1f"
_LENGTH = struct.Struct(">H")
_WRAP_AAD_LABEL = b"convergence.dek.v1"


@dataclass(frozen=True, slots=True)
class RecordContext:
    """The binding of a ciphertext: the tenant, the kind of record and its id."""

    tenant_id: str
    kind: str
    record_id: str

    def __post_init__(self) -> None:
        for name in ("tenant_id", "kind", "record_id"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"RecordContext.{name} must be a str")
            if _SEPARATOR in value:
                raise ValueError(f"RecordContext.{name} must not contain U+001F")
        if not self.kind:
            raise ValueError("RecordContext.kind must not be empty")
        if len(self.encode()) > MAX_CONTEXT_BYTES:
            raise ValueError(
                f"RecordContext must encode to at most {MAX_CONTEXT_BYTES} bytes"
            )

    def encode(self) -> bytes:
        return _SEPARATOR.join((self.tenant_id, self.kind, self.record_id)).encode()

    @classmethod
    def decode(cls, data: bytes) -> RecordContext:
        tenant_id, kind, record_id = data.decode("utf-8").split(_SEPARATOR)
        return cls(tenant_id, kind, record_id)


@dataclass(frozen=True, slots=True)
class ParsedCiphertext:
    """The fields of a version 1 ciphertext, as laid out in the module docstring."""

    context: RecordContext
    wrapped_key: bytes
    nonce: bytes
    sealed: bytes
    header: bytes


def parse_ciphertext(data: bytes) -> ParsedCiphertext:
    """Split a ciphertext into its fields, raising DecryptionError if malformed."""
    try:
        if data[0] != FORMAT_VERSION:
            raise ValueError
        (context_length,) = _LENGTH.unpack_from(data, 1)
        if context_length > MAX_CONTEXT_BYTES:
            raise ValueError
        offset = 3 + context_length
        context = RecordContext.decode(data[3:offset])
        (wrapped_length,) = _LENGTH.unpack_from(data, offset)
        if wrapped_length > MAX_WRAPPED_KEY_BYTES:
            raise ValueError
        offset += 2
        wrapped_key = data[offset : offset + wrapped_length]
        offset += wrapped_length
        nonce = data[offset : offset + NONCE_BYTES]
        sealed = data[offset + NONCE_BYTES :]
        if len(wrapped_key) != wrapped_length or len(sealed) < TAG_BYTES:
            raise ValueError
    except (IndexError, ValueError, TypeError, struct.error, UnicodeDecodeError):
        # Not chained: the parse error could quote bytes of the input.
        raise DecryptionError() from None
    return ParsedCiphertext(context, wrapped_key, nonce, sealed, data[:offset])


@dataclass(slots=True)
class _DataKey:
    key: bytes
    wrapped: bytes
    expires_at: float
    uses: int = 0


class EnvelopeCipher:
    """Seals records under one KMS key with cached per-tenant data keys."""

    def __init__(
        self,
        kms: KmsClient,
        key_name: str,
        *,
        data_key_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kms = kms
        self._key_name = key_name
        self._ttl = data_key_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._encrypt_keys: dict[str, _DataKey] = {}
        self._decrypt_keys: TTLCache[tuple[str, bytes], bytes] = TTLCache(
            maxsize=10_000, ttl=data_key_seconds, timer=clock
        )

    @property
    def key_name(self) -> str:
        return self._key_name

    def encrypt(self, plaintext: bytes, context: RecordContext) -> bytes:
        """Seal ``plaintext`` bound to ``context``."""
        if not isinstance(plaintext, bytes):
            raise TypeError("plaintext must be bytes")
        if not isinstance(context, RecordContext):
            raise TypeError("context must be a RecordContext")
        data_key = self._data_key_for(context.tenant_id)
        encoded_context = context.encode()
        header = (
            bytes([FORMAT_VERSION])
            + _LENGTH.pack(len(encoded_context))
            + encoded_context
            + _LENGTH.pack(len(data_key.wrapped))
            + data_key.wrapped
        )
        nonce = secrets.token_bytes(NONCE_BYTES)
        return header + nonce + AESGCM(data_key.key).encrypt(nonce, plaintext, header)

    def decrypt(self, ciphertext: bytes, expected: RecordContext | None) -> bytes:
        """Open ``ciphertext``; it must be bound to ``expected`` when given."""
        if not isinstance(ciphertext, bytes | bytearray | memoryview):
            raise TypeError("ciphertext must be bytes")
        if expected is not None and not isinstance(expected, RecordContext):
            raise TypeError("expected must be a RecordContext or None")
        parsed = parse_ciphertext(bytes(ciphertext))
        if expected is not None and parsed.context != expected:
            raise DecryptionError()
        key = self._unwrap(parsed.context.tenant_id, parsed.wrapped_key)
        try:
            return AESGCM(key).decrypt(parsed.nonce, parsed.sealed, parsed.header)
        except InvalidTag:
            raise DecryptionError() from None

    def _data_key_for(self, tenant_id: str) -> _DataKey:
        now = self._clock()
        with self._lock:
            current = self._encrypt_keys.get(tenant_id)
            if (
                current is None
                or current.expires_at <= now
                or (current.uses >= _MAX_DEK_USES)
            ):
                key = AESGCM.generate_key(bit_length=256)
                wrapped = self._kms.encrypt(self._key_name, key, _wrap_aad(tenant_id))
                if len(wrapped) > MAX_WRAPPED_KEY_BYTES:
                    raise ValueError("KMS returned a wrapped key over 1024 bytes")
                current = _DataKey(key, wrapped, now + self._ttl)
                self._encrypt_keys[tenant_id] = current
                self._decrypt_keys[(tenant_id, wrapped)] = key
            current.uses += 1
            return current

    def _unwrap(self, tenant_id: str, wrapped: bytes) -> bytes:
        cache_key = (tenant_id, wrapped)
        with self._lock:
            key = self._decrypt_keys.get(cache_key)
        if key is None:
            key = self._kms.decrypt(self._key_name, wrapped, _wrap_aad(tenant_id))
            with self._lock:
                self._decrypt_keys[cache_key] = key
        return key


def _wrap_aad(tenant_id: str) -> bytes:
    return _WRAP_AAD_LABEL + b"\x1f" + tenant_id.encode()
