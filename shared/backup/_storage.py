"""The backup bucket, through ``google-cloud-storage``, with write-once objects.

Every object is created with the precondition ``ifGenerationMatch=0``, so a
second writer of the same name gets HTTP 412 instead of replacing it. The
Cloud Storage emulator (gcp-storage-emulator 2026.7.19) ignores preconditions.
So ``write_once`` also looks the object up before it uploads, and a second
write fails on the emulator too, unless two writers race. Errors of the client
library become ``StorageError`` or ``TransientStorageError`` here.

``google.cloud.storage`` is imported when the first bucket is built, so a
process that never backs up never loads it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import google_crc32c
import requests

if TYPE_CHECKING:
    from shared.config import Settings

_EMULATOR_PROJECT = "local-project"
# Uploads and downloads move this many bytes per request, so a file of any size
# passes through memory in pieces. Cloud Storage wants a multiple of 256 KiB.
CHUNK_BYTES = 8 << 20
_CONTENT_TYPE = "application/json"


class StorageError(Exception):
    """A bucket operation failed; the message names the object."""


class TransientStorageError(StorageError):
    """Cloud Storage was unavailable or busy; the same call may succeed later."""


class ObjectExistsError(StorageError):
    """A write-once object already exists; ``existing`` describes it."""

    def __init__(self, existing: ObjectInfo) -> None:
        super().__init__(f"{existing.name} already exists")
        self.existing = existing


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object's name, size in bytes, CRC32C (base64) and generation."""

    name: str
    size: int
    crc32c: str
    generation: int


def crc32c_text(checksum: google_crc32c.Checksum) -> str:
    """Return a running CRC32C as Cloud Storage prints it: base64, big-endian."""
    digest = checksum.digest()  # type: ignore[no-untyped-call]
    return base64.b64encode(digest).decode("ascii")


class Bucket:
    """One bucket of backups."""

    def __init__(self, client: Any, name: str, *, retry_seconds: float = 60.0) -> None:
        from google.cloud.storage.retry import DEFAULT_RETRY

        self._client = client
        self._bucket = client.bucket(name)
        self.name = name
        # The client retries failed requests with backoff until this deadline.
        self._retry = DEFAULT_RETRY.with_timeout(retry_seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> Bucket:
        """Build a client for the emulator the settings name, or for Google's API."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage  # type: ignore[attr-defined]

        endpoint = settings.storage_endpoint
        if endpoint:
            client = storage.Client(
                project=settings.storage_project_id or _EMULATOR_PROJECT,
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": endpoint},
            )
        else:
            client = storage.Client(project=settings.storage_project_id)
        return cls(
            client, settings.backup_bucket, retry_seconds=settings.storage_retry_seconds
        )

    def create_if_missing(self) -> None:
        """Create the bucket (emulator and tests); production buckets come from IaC."""
        from google.api_core import exceptions

        with _wrapped(f"bucket {self.name}"):
            if self._bucket.exists(retry=self._retry):
                return
            # A concurrent delivery may create it first.
            with suppress(exceptions.Conflict):
                self._client.create_bucket(self.name, retry=self._retry)

    def write_once(self, name: str, source: IO[bytes], size: int) -> ObjectInfo:
        """Create ``name`` from ``source``; ObjectExistsError if it exists."""
        existing = self.stat(name)
        if existing is not None:
            raise ObjectExistsError(existing)
        return self._upload(name, source, size, generation=0)

    def replace(
        self, name: str, source: IO[bytes], size: int, generation: int
    ) -> ObjectInfo:
        """Replace generation ``generation`` of ``name``; 412 if it changed."""
        return self._upload(name, source, size, generation=generation)

    def stat(self, name: str) -> ObjectInfo | None:
        with _wrapped(name):
            blob = self._bucket.get_blob(name, retry=self._retry)
        return None if blob is None else _info(blob)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        with _wrapped(f"objects under {prefix}"):
            blobs = self._client.list_blobs(self.name, prefix=prefix, retry=self._retry)
            for blob in blobs:
                yield _info(blob)

    def read(self, info: ObjectInfo) -> Iterator[bytes]:
        """Yield the bytes of ``info``'s generation in chunks."""
        from google.api_core import exceptions

        blob = self._bucket.blob(info.name, generation=info.generation)
        with _wrapped(info.name):
            try:
                with blob.open(
                    "rb", chunk_size=CHUNK_BYTES, retry=self._retry
                ) as reader:
                    while chunk := reader.read(CHUNK_BYTES):
                        yield chunk
            except exceptions.NotFound:
                raise StorageError(f"{info.name} is missing") from None

    def read_small(self, name: str, limit: int = 1 << 20) -> bytes | None:
        """Return a small object's bytes (a manifest), or None if it is missing."""
        info = self.stat(name)
        if info is None:
            return None
        if info.size > limit:
            raise StorageError(f"{name} is {info.size} bytes, over {limit}")
        return b"".join(self.read(info))

    def delete(self, name: str, generation: int | None = None) -> bool:
        """Delete ``name`` (only that generation, when given); False if missing."""
        from google.api_core import exceptions

        blob = self._bucket.blob(name)
        with _wrapped(name):
            try:
                blob.delete(if_generation_match=generation, retry=self._retry)
            except exceptions.NotFound:
                return False
        return True

    def _upload(
        self, name: str, source: IO[bytes], size: int, *, generation: int
    ) -> ObjectInfo:
        from google.api_core import exceptions

        blob = self._bucket.blob(name, chunk_size=CHUNK_BYTES)
        with _wrapped(name):
            try:
                blob.upload_from_file(
                    source,
                    size=size,
                    content_type=_CONTENT_TYPE,
                    if_generation_match=generation,
                    checksum="crc32c",
                    retry=self._retry,
                )
            except exceptions.PreconditionFailed:
                pass
            else:
                return _info(blob)
        # HTTP 412: another writer created the object first.
        existing = self.stat(name)
        if existing is None:
            raise TransientStorageError(f"{name} changed while it was written; retry")
        raise ObjectExistsError(existing)


@contextmanager
def _wrapped(what: str) -> Iterator[None]:
    """Turn client library and connection errors into StorageError."""
    from google.api_core import exceptions

    try:
        yield
    except exceptions.GoogleAPICallError as exc:
        raise _error(what, exc) from None
    except requests.exceptions.RequestException as exc:
        raise TransientStorageError(
            f"Cloud Storage did not respond on {what} ({type(exc).__name__}); retry"
        ) from None


def _error(what: str, exc: Any) -> StorageError:
    from google.api_core import exceptions

    transient = isinstance(
        exc,
        exceptions.TooManyRequests
        | exceptions.InternalServerError
        | exceptions.BadGateway
        | exceptions.ServiceUnavailable
        | exceptions.GatewayTimeout,
    )
    kind = TransientStorageError if transient else StorageError
    return kind(f"Cloud Storage failed on {what}: HTTP {exc.code} {exc.message}")


def _info(blob: Any) -> ObjectInfo:
    return ObjectInfo(
        name=blob.name,
        size=int(blob.size or 0),
        crc32c=blob.crc32c or "",
        generation=int(blob.generation or 0),
    )
