"""A local stand-in for Cloud KMS: versioned AES-256-GCM keys in one file.

The file (``keyring.json`` in the data folder) is created on first use with
mode 0600 and holds, per key name, the primary version and every version's
material. ``rotate`` adds a version and makes it primary. Old versions stay, so
ciphertexts made before a rotation still decrypt. A wrapped secret reads::

    version (4 bytes, big-endian) | nonce (12 bytes) | AES-GCM ciphertext + tag

Processes share the file. A process reloads it when it changed on disk, so a
rotation made elsewhere applies to the next encryption here, and when a
ciphertext names a version it has not seen. Writes take an exclusive ``flock``
and replace the file atomically.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import secrets
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.crypto._kms import DecryptionError

_KEY_NAME = re.compile(
    r"projects/[A-Za-z0-9_-]+/locations/[A-Za-z0-9_-]+/"
    r"keyRings/[A-Za-z0-9_-]+/cryptoKeys/[A-Za-z0-9_-]+"
)
_HEADER = struct.Struct(">I12s")
_FORMAT = 1


class LocalKeyring:
    """KMS backend that keeps key material in a file under the data folder."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._stamp: tuple[int, int, int] | None = None

    @property
    def path(self) -> Path:
        return self._path

    def encrypt(self, key_name: str, plaintext: bytes, aad: bytes) -> bytes:
        _check_key_name(key_name)
        version, material = self._primary(key_name)
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(material).encrypt(nonce, plaintext, aad)
        return _HEADER.pack(version, nonce) + sealed

    def decrypt(self, key_name: str, ciphertext: bytes, aad: bytes) -> bytes:
        _check_key_name(key_name)
        if len(ciphertext) < _HEADER.size + 16:
            raise DecryptionError()
        version, nonce = _HEADER.unpack_from(ciphertext)
        material = self._version(key_name, version)
        if material is None:
            raise DecryptionError()
        try:
            return AESGCM(material).decrypt(nonce, ciphertext[_HEADER.size :], aad)
        except InvalidTag:
            raise DecryptionError() from None

    def rotate(self, key_name: str) -> int:
        """Add a new primary version to ``key_name`` and return its number."""
        _check_key_name(key_name)
        return self._add_version(key_name, only_if_missing=False)

    def _add_version(self, key_name: str, *, only_if_missing: bool) -> int:
        with self._locked_file() as keys:
            entry = keys.setdefault(key_name, {"primary": 0, "versions": {}})
            if only_if_missing and entry["versions"]:
                self._keys = keys
                return int(entry["primary"])
            version = max((int(v) for v in entry["versions"]), default=0) + 1
            entry["versions"][str(version)] = _new_version()
            entry["primary"] = version
            self._keys = keys
        return version

    def versions(self, key_name: str) -> list[int]:
        """Return the version numbers of ``key_name``, oldest first."""
        self._reload()
        entry = self._keys.get(key_name, {"versions": {}})
        return sorted(int(v) for v in entry["versions"])

    def primary_version(self, key_name: str) -> int:
        return self._primary(key_name)[0]

    def _primary(self, key_name: str) -> tuple[int, bytes]:
        with self._lock:
            if key_name not in self._keys or self._stamp != _file_stamp(self._path):
                self._reload()
            if key_name not in self._keys:
                self._add_version(key_name, only_if_missing=True)
            entry = self._keys[key_name]
            version = int(entry["primary"])
            return version, _material(entry, version)

    def _version(self, key_name: str, version: int) -> bytes | None:
        with self._lock:
            entry = self._keys.get(key_name)
            if entry is None or str(version) not in entry["versions"]:
                self._reload()
                entry = self._keys.get(key_name)
            if entry is None or str(version) not in entry["versions"]:
                return None
            return _material(entry, version)

    def _reload(self) -> None:
        # Stamped before reading: a write in between makes the next check reload.
        self._stamp = _file_stamp(self._path)
        try:
            self._keys = _read(self._path)
        except FileNotFoundError:
            self._keys = {}

    @contextmanager
    def _locked_file(self) -> Iterator[dict[str, Any]]:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self._path.with_suffix(".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                keys = _read(self._path)
            except FileNotFoundError:
                keys = {}
            yield keys
            _write(self._path, keys)
            self._stamp = _file_stamp(self._path)
        finally:
            os.close(fd)


def _check_key_name(key_name: str) -> None:
    if not isinstance(key_name, str) or not _KEY_NAME.fullmatch(key_name):
        raise ValueError(
            "key_name must be a KMS resource name: "
            "projects/P/locations/L/keyRings/R/cryptoKeys/K"
        )


def _new_version() -> dict[str, str]:
    return {
        "material": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode(),
        "created_at": datetime.now(UTC).isoformat(),
    }


def _material(entry: dict[str, Any], version: int) -> bytes:
    return base64.b64decode(entry["versions"][str(version)]["material"])


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def _read(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document = json.load(handle)
    if document.get("format") != _FORMAT:
        raise ValueError(f"{path}: unknown keyring format {document.get('format')!r}")
    keys: dict[str, Any] = document["keys"]
    return keys


def _write(path: Path, keys: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"format": _FORMAT, "keys": keys}, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
