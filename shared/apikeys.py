"""Tenant API key format: generation, parsing, hashing and redaction.

A key reads ``<tenant_id>_api_<random><checksum>``:

* ``tenant_id``: 3 to 50 characters, a lower-case letter first, then lower-case
  letters, digits or ``_``. The same rule applies everywhere a tenant id is
  accepted, because tenant ids end up in keys, object paths and queries.
* ``random``: 23 base62 characters encoding 136 bits from ``secrets``.
* ``checksum``: 6 base62 characters, the CRC32 of everything before it, so a
  mistyped or truncated key is rejected before any lookup and secret scanners
  can recognise the format.

Only the SHA-256 hex digest of the whole key is stored for lookup, with an
encrypted copy and a short display prefix (tenant plus 4 random characters).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib
from dataclasses import dataclass

__all__ = [
    "API_KEY_MAX_LENGTH",
    "InvalidAPIKey",
    "ParsedAPIKey",
    "display_prefix",
    "generate_api_key",
    "hash_api_key",
    "parse_api_key",
    "redact_api_keys",
    "validate_tenant_id",
]

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_BYTES = 17
_RANDOM_CHARS = 23  # 62**23 > 2**136
_CHECKSUM_CHARS = 6  # 62**6 > 2**32
_SEPARATOR = "_api_"
_PREFIX_RANDOM_CHARS = 4

TENANT_ID_PATTERN = r"[a-z][a-z0-9_]{2,49}"
_TENANT_ID = re.compile(TENANT_ID_PATTERN)
_KEY = re.compile(
    rf"(?P<tenant>{TENANT_ID_PATTERN}){_SEPARATOR}"
    rf"(?P<random>[0-9A-Za-z]{{{_RANDOM_CHARS}}})"
    rf"(?P<checksum>[0-9A-Za-z]{{{_CHECKSUM_CHARS}}})"
)
_KEY_IN_TEXT = re.compile(
    rf"[a-z][a-z0-9_]{{2,49}}{_SEPARATOR}"
    rf"[0-9A-Za-z]{{{_RANDOM_CHARS + _CHECKSUM_CHARS}}}"
)
API_KEY_MAX_LENGTH = 50 + len(_SEPARATOR) + _RANDOM_CHARS + _CHECKSUM_CHARS


class InvalidAPIKey(ValueError):
    """The text is not a well-formed API key; the message never quotes it."""


@dataclass(frozen=True, slots=True)
class ParsedAPIKey:
    """A key whose format and checksum are valid; not yet looked up."""

    tenant_id: str
    key: str

    @property
    def prefix(self) -> str:
        return display_prefix(self.key)


def validate_tenant_id(tenant_id: object) -> str:
    """Return ``tenant_id`` if it follows the tenant id rule, else raise ValueError."""
    if not isinstance(tenant_id, str):
        raise TypeError("tenant_id must be a str")
    if not _TENANT_ID.fullmatch(tenant_id):
        raise ValueError(
            "tenant_id must be 3 to 50 characters: a lower-case letter, then "
            "lower-case letters, digits or '_'"
        )
    return tenant_id


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    if number:
        raise ValueError("number does not fit the width")
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CHECKSUM_CHARS)


def generate_api_key(tenant_id: str) -> str:
    """Generate a new key for ``tenant_id`` with 136 random bits and a checksum."""
    validate_tenant_id(tenant_id)
    random_part = _base62(
        int.from_bytes(secrets.token_bytes(_RANDOM_BYTES), "big"), _RANDOM_CHARS
    )
    body = f"{tenant_id}{_SEPARATOR}{random_part}"
    return body + _checksum(body)


def parse_api_key(text: object) -> ParsedAPIKey:
    """Check the format and checksum of ``text``, raising InvalidAPIKey on failure."""
    if not isinstance(text, str) or len(text) > API_KEY_MAX_LENGTH:
        raise InvalidAPIKey("not an API key")
    match = _KEY.fullmatch(text)
    if match is None:
        raise InvalidAPIKey("not an API key")
    body = text[:-_CHECKSUM_CHARS]
    if not secrets.compare_digest(_checksum(body), match["checksum"]):
        raise InvalidAPIKey("API key checksum mismatch")
    return ParsedAPIKey(tenant_id=match["tenant"], key=text)


def hash_api_key(key: str) -> str:
    """Return the SHA-256 hex digest of the whole key, as stored for lookup."""
    if not isinstance(key, str):
        raise TypeError("key must be a str")
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    """Return the non-secret prefix shown in listings: tenant and 4 characters."""
    tenant, _, rest = key.rpartition(_SEPARATOR)
    return f"{tenant}{_SEPARATOR}{rest[:_PREFIX_RANDOM_CHARS]}"


def redact_api_keys(text: str) -> str:
    """Replace anything shaped like an API key in ``text`` with ``[REDACTED]``."""
    return _KEY_IN_TEXT.sub("[REDACTED]", text)
