"""The manifest: what a complete backup run contains, written as its last object.

Example (``manifests/backup-20250301.json``; hashes shortened)::

    {
      "format": 1,
      "run": "backup-20250301",
      "slot": "2025-03-01",
      "snapshot_at": "2025-03-01T03:00:01.204518Z",
      "started_at": "2025-03-01T03:00:01.198006Z",
      "completed_at": "2025-03-01T03:00:02.877310Z",
      "source": {"backend": "duckdb", "dataset": "tenants_metadata"},
      "bucket": "convergence-backup",
      "tables": [
        {"table": "tenant_api_keys", "rows": 2,
         "files": [{"name": "api-keys/backup-20250301.json", "bytes": 1718,
                    "rows": 2, "sha256": "9f2c...", "crc32c": "mUk1Ow==",
                    "generation": 1740798002871234000}]}
      ],
      "kms_keys": [
        {"key_name": "projects/.../cryptoKeys/api-key-encryption",
         "backend": "local", "versions": [1, 2], "primary_version": 2}
      ]
    }

``rows`` of a file is null when BigQuery wrote it: its extract job reports
the table's row count, not each file's. ``versions`` lists the key versions
that the wrapped data keys of the exported rows name (local keyring), or is
null when the backend cannot tell (Cloud KMS ciphertext does not expose its
version). ``primary_version`` is null when unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.backup._layout import TABLE_FOLDERS

FORMAT = 1
_SHA256_HEX = r"^[0-9a-f]{64}$"


class ManifestError(ValueError):
    """A manifest is not valid JSON or lacks a field; the message names it."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileEntry(_Model):
    """One object of a table: its name, size, row count and checksums."""

    name: str
    bytes: int = Field(ge=0)
    rows: int | None = Field(default=None, ge=0)
    sha256: str = Field(pattern=_SHA256_HEX)
    crc32c: str
    generation: int = Field(ge=0)


class TableEntry(_Model):
    table: str
    rows: int = Field(ge=0)
    files: tuple[FileEntry, ...]


class KmsKeyEntry(_Model):
    """A KMS key that the backed-up ciphertext depends on."""

    key_name: str
    backend: str
    versions: tuple[int, ...] | None = None
    primary_version: int | None = None


class Source(_Model):
    backend: str
    dataset: str


class Manifest(_Model):
    format: int = FORMAT
    run: str = Field(pattern=r"^backup-\d{8}$")
    slot: date
    snapshot_at: datetime
    started_at: datetime
    completed_at: datetime
    source: Source
    bucket: str
    tables: tuple[TableEntry, ...]
    kms_keys: tuple[KmsKeyEntry, ...] = ()

    def table(self, name: str) -> TableEntry | None:
        return next((entry for entry in self.tables if entry.table == name), None)

    def files(self) -> Iterator[tuple[str, FileEntry]]:
        """Yield (table, file) for every file, in manifest order."""
        for entry in self.tables:
            for file in entry.files:
                yield entry.table, file

    @property
    def total_bytes(self) -> int:
        return sum(file.bytes for _, file in self.files())

    def to_json(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, *, source: str) -> Manifest:
        """Parse a manifest, raising ManifestError that names ``source``."""
        try:
            manifest = cls.model_validate_json(data)
        except ValidationError as exc:
            problems = sorted(
                {".".join(map(str, error["loc"])) or "body" for error in exc.errors()}
            )
            raise ManifestError(
                f"{source} is not a valid manifest: check {', '.join(problems)}"
            ) from None
        if manifest.format != FORMAT:
            raise ManifestError(
                f"{source} has manifest format {manifest.format}; this version "
                f"reads format {FORMAT}"
            )
        unknown = [entry.table for entry in manifest.tables]
        unknown = [name for name in unknown if name not in TABLE_FOLDERS]
        if unknown:
            raise ManifestError(f"{source} lists unknown tables {unknown}")
        return manifest
