"""Keyed fingerprints that spot a credential stored twice in one tenant.

A fingerprint is HMAC-SHA256 over the provider and the canonical JSON, under a
key derived per tenant from one root key: ``HMAC-SHA256(root, label | tenant)``.
Without the root key a fingerprint confirms no guess of a secret, and equal
credentials in two tenants get different fingerprints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from shared.config import ConfigError

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.credentials._normalise import NormalisedCredential

MIN_KEY_BYTES = 32
_LABEL = b"convergence.credential-fingerprint.v1\x1f"
_LOCAL_KEY_FILE = "credential-fingerprint.key"


class Fingerprinter:
    """Computes fingerprints under per-tenant keys derived from a root key."""

    def __init__(self, root_key: bytes) -> None:
        if len(root_key) < MIN_KEY_BYTES:
            raise ValueError(f"the root key must be at least {MIN_KEY_BYTES} bytes")
        self._root_key = root_key

    def fingerprint(self, tenant_id: str, credential: NormalisedCredential) -> str:
        tenant_key = hmac.digest(self._root_key, _LABEL + tenant_id.encode(), "sha256")
        message = credential.provider.encode() + b"\x1f" + credential.canonical_json()
        return "v1:" + hmac.new(tenant_key, message, hashlib.sha256).hexdigest()


def load_fingerprint_key(settings: Settings) -> bytes:
    """Return the root key from CREDENTIALS_FINGERPRINT_KEY or the local key file.

    The local file (mode 0600 in DATA_DIR) is created on first use, and only
    with KMS_BACKEND=local; with Cloud KMS the setting is required.
    """
    if settings.credentials_fingerprint_key is not None:
        return _decode(settings.credentials_fingerprint_key.get_secret_value())
    if settings.kms_backend != "local":
        raise ConfigError(
            "CREDENTIALS_FINGERPRINT_KEY is required with KMS_BACKEND=gcp: set it "
            f"to base64 of at least {MIN_KEY_BYTES} random bytes, e.g. from "
            "Secret Manager"
        )
    path = settings.data_dir / _LOCAL_KEY_FILE
    if not path.exists():
        _create_key_file(path)
    return _decode(path.read_text(encoding="ascii"))


def _create_key_file(path: Path) -> None:
    # Written to a private temporary file, then linked into place, so a reader
    # never sees a half-written file. The link fails if another process won.
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(base64.b64encode(secrets.token_bytes(MIN_KEY_BYTES)).decode())
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def _decode(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("CREDENTIALS_FINGERPRINT_KEY: expected base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"CREDENTIALS_FINGERPRINT_KEY: expected at least {MIN_KEY_BYTES} bytes"
        )
    return key
