"""Restoring a run: verify every file, load the tables, prove the data opens.

``restore_run`` works in three passes, and writes nothing until the first has
passed:

1. Verify. Every file the manifest lists must exist with the listed size.
   Its bytes must hash to the listed SHA-256, every line must parse as a row
   of its table, and the row counts must match. A missing, truncated or
   corrupted file raises ``RestoreError`` naming the object.
2. Load. The target must be empty unless ``allow_non_empty`` is set; then rows
   whose primary key exists are left as they are. DuckDB loads in one
   transaction; BigQuery runs one load job per table from the listed files.
3. Prove. Every API key in the target is decrypted with the current KMS keys
   and its SHA-256 compared with ``api_key_hash``, and a sample of credentials
   is decrypted. Nothing decrypted is kept, printed or logged.

A dry run stops after the first pass and runs the third on the backup files.
"""

# SQL here is assembled from schema table and column names only; every value
# is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shared import apikeys
from shared.backup._export import connect_duckdb, iter_lines
from shared.backup._manifest import FileEntry, Manifest
from shared.backup._rows import decode_row
from shared.backup._storage import Bucket, ObjectInfo
from shared.crypto import DecryptionError, EnvelopeCipher, KmsClient, RecordContext
from shared.crypto.managers import API_KEY_KIND, CREDENTIALS_KIND
from shared.store._duckdb import create_table_sql
from shared.store.schema import TABLES, Table, bigquery_schema, bigquery_table_options

# A progress callback factory: (label, total) -> context yielding advance(n).
Progress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]

_BATCH_ROWS = 1000
DEFAULT_CREDENTIAL_SAMPLE = 25


class RestoreError(Exception):
    """A run cannot be restored; the message names the file or the table."""


def no_progress(
    label: str, total: int
) -> AbstractContextManager[Callable[[int], None]]:
    return nullcontext(lambda advance: None)


@dataclass(frozen=True)
class VerifiedFile:
    table: str
    entry: FileEntry
    info: ObjectInfo


@dataclass
class Proof:
    """Outcome of the third pass: counts, and the ids (never values) that failed."""

    keys_checked: int = 0
    keys_failed: list[str] = field(default_factory=list)
    credentials_checked: int = 0
    credentials_failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.keys_failed and not self.credentials_failed


@dataclass(frozen=True)
class RestoreResult:
    run: str
    target: str
    dry_run: bool
    rows: dict[str, int]
    proof: Proof


class Target(Protocol):
    """Restore target: a DuckDB file or a BigQuery dataset."""

    description: str

    def non_empty_tables(self, tables: Sequence[str]) -> list[str]: ...

    def load(
        self,
        bucket: Bucket,
        files: Sequence[VerifiedFile],
        *,
        allow_non_empty: bool,
        advance: Callable[[int], None],
    ) -> None: ...

    def rows(self, table: str) -> Iterator[list[Any]]: ...


# Pass 1: verify


def verify_files(
    bucket: Bucket, manifest: Manifest, progress: Progress = no_progress
) -> list[VerifiedFile]:
    """Check every file of the run; RestoreError names the first bad one."""
    files = []
    for table, listed in manifest.files():
        info = bucket.stat(listed.name)
        if info is None:
            raise RestoreError(
                f"{listed.name} is missing; run {manifest.run} cannot be restored"
            )
        if info.size != listed.bytes:
            raise RestoreError(
                f"{listed.name} is {info.size} bytes but the manifest lists "
                f"{listed.bytes}: the file is truncated or was replaced"
            )
        files.append(VerifiedFile(table, listed, info))

    with progress(f"Verifying {manifest.run}", manifest.total_bytes) as advance:
        for file in files:
            _verify_content(bucket, file, advance)
    for entry in manifest.tables:
        of_table = [file for file in files if file.table == entry.table]
        if any(file.entry.rows is None for file in of_table):
            continue  # BigQuery's extract reports no row count per file
        counted = sum(file.entry.rows or 0 for file in of_table)
        if counted != entry.rows:
            raise RestoreError(
                f"table {entry.table} has {counted} rows in its files but the "
                f"manifest lists {entry.rows}"
            )
    return files


def _verify_content(
    bucket: Bucket, file: VerifiedFile, advance: Callable[[int], None]
) -> None:
    digest = hashlib.sha256()
    table = TABLES[file.table]

    def chunks() -> Iterator[bytes]:
        for chunk in bucket.read(file.info):
            digest.update(chunk)
            advance(len(chunk))
            yield chunk

    rows = 0
    for number, line in enumerate(iter_lines(chunks()), start=1):
        try:
            decode_row(table, line)
        except ValueError as exc:
            raise RestoreError(
                f"{file.entry.name} is corrupted: line {number}: {exc}"
            ) from None
        rows += 1
    if digest.hexdigest() != file.entry.sha256:
        raise RestoreError(
            f"{file.entry.name} is corrupted: its SHA-256 differs from the manifest"
        )
    if file.entry.rows is not None and rows != file.entry.rows:
        raise RestoreError(
            f"{file.entry.name} has {rows} rows but the manifest lists "
            f"{file.entry.rows}"
        )


def file_rows(
    bucket: Bucket, files: Sequence[VerifiedFile], table: str
) -> Iterator[list[Any]]:
    """Yield the decoded rows of ``table`` from verified backup files."""
    schema = TABLES[table]
    for file in files:
        if file.table == table:
            for line in iter_lines(bucket.read(file.info)):
                yield decode_row(schema, line)


# Pass 3: prove


def prove_usable(
    rows: Callable[[str], Iterator[list[Any]]],
    tables: Sequence[str],
    kms: KmsClient,
    api_key_kms_path: str,
    *,
    credential_sample: int = DEFAULT_CREDENTIAL_SAMPLE,
    seed: int | None = None,
) -> Proof:
    """Decrypt every API key and a sample of credentials with the current keys."""
    proof = Proof()
    if "tenant_api_keys" in tables:
        _prove_keys(
            rows("tenant_api_keys"), EnvelopeCipher(kms, api_key_kms_path), proof
        )
    if "tenant_credentials" in tables:
        sample = _sample(rows("tenant_credentials"), credential_sample, seed)
        _prove_credentials(sample, kms, proof)
    return proof


def _prove_keys(
    rows: Iterator[list[Any]], cipher: EnvelopeCipher, proof: Proof
) -> None:
    names = TABLES["tenant_api_keys"].column_names
    at = {name: names.index(name) for name in names}
    for row in rows:
        key_id = row[at["api_key_id"]]
        context = RecordContext(row[at["tenant_id"]], API_KEY_KIND, key_id)
        proof.keys_checked += 1
        try:
            plaintext = cipher.decrypt(row[at["encrypted_api_key"]], context)
            matches = (
                apikeys.hash_api_key(plaintext.decode("ascii"))
                == row[at["api_key_hash"]]
            )
        except (DecryptionError, UnicodeDecodeError):
            matches = False
        if not matches:
            proof.keys_failed.append(key_id)


def _prove_credentials(rows: list[list[Any]], kms: KmsClient, proof: Proof) -> None:
    names = TABLES["tenant_credentials"].column_names
    at = {name: names.index(name) for name in names}
    ciphers: dict[str, EnvelopeCipher] = {}
    for row in rows:
        key_name = row[at["kms_key_name"]]
        cipher = ciphers.setdefault(key_name, EnvelopeCipher(kms, key_name))
        credential_id = row[at["credential_id"]]
        kind = f"{CREDENTIALS_KIND}:{row[at['provider']]}"
        context = RecordContext(row[at["tenant_id"]], kind, credential_id)
        proof.credentials_checked += 1
        try:
            opened = json.loads(
                cipher.decrypt(row[at["encrypted_credentials"]], context)
            )
            valid = isinstance(opened, dict)
        except (DecryptionError, ValueError):
            valid = False
        if not valid:
            proof.credentials_failed.append(credential_id)


def _sample(rows: Iterator[list[Any]], size: int, seed: int | None) -> list[list[Any]]:
    """Reservoir-sample ``size`` rows, so memory does not grow with the table."""
    chooser = random.Random(seed)  # noqa: S311 - a sample, not a secret
    sample: list[list[Any]] = []
    for seen, row in enumerate(rows):
        if len(sample) < size:
            sample.append(row)
        else:
            slot = chooser.randrange(seen + 1)
            if slot < size:
                sample[slot] = row
    return sample


# The whole restore


def restore_run(
    bucket: Bucket,
    manifest: Manifest,
    target: Target,
    kms: KmsClient,
    api_key_kms_path: str,
    *,
    dry_run: bool = False,
    allow_non_empty: bool = False,
    credential_sample: int = DEFAULT_CREDENTIAL_SAMPLE,
    progress: Progress = no_progress,
) -> RestoreResult:
    """Verify, load and prove a run (see the module docstring)."""
    tables = [entry.table for entry in manifest.tables]
    if not dry_run and not allow_non_empty:
        occupied = target.non_empty_tables(tables)
        if occupied:
            raise RestoreError(
                f"{target.description} is not empty: {', '.join(occupied)} "
                "already have rows; restore into an empty target or pass "
                "--allow-non-empty"
            )
    files = verify_files(bucket, manifest, progress)
    rows_by_table = {entry.table: entry.rows for entry in manifest.tables}

    if dry_run:

        def source(table: str) -> Iterator[list[Any]]:
            return file_rows(bucket, files, table)
    else:
        total_rows = sum(rows_by_table.values())
        with progress(f"Loading into {target.description}", total_rows) as advance:
            target.load(bucket, files, allow_non_empty=allow_non_empty, advance=advance)
        source = target.rows

    proof = prove_usable(
        source, tables, kms, api_key_kms_path, credential_sample=credential_sample
    )
    return RestoreResult(
        manifest.run, target.description, dry_run, rows_by_table, proof
    )


# Targets


class DuckDBTarget:
    """A DuckDB store file, created with the store's schema when missing."""

    def __init__(self, path: Path, *, lock_timeout_seconds: float = 15.0) -> None:
        self._path = Path(path)
        self._lock_timeout = lock_timeout_seconds
        self.description = f"DuckDB file {self._path}"

    def non_empty_tables(self, tables: Sequence[str]) -> list[str]:
        if not self._path.exists():
            return []
        con = self._connect()
        try:
            return [name for name in tables if _count(con, name) > 0]
        finally:
            con.close()

    def load(
        self,
        bucket: Bucket,
        files: Sequence[VerifiedFile],
        *,
        allow_non_empty: bool,
        advance: Callable[[int], None],
    ) -> None:
        con = self._connect()
        try:
            con.execute("BEGIN TRANSACTION")
            for file in files:
                self._load_file(con, bucket, file, allow_non_empty, advance)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def rows(self, table: str) -> Iterator[list[Any]]:
        schema = TABLES[table]
        con = self._connect()
        try:
            cursor = con.execute(
                f"SELECT {', '.join(schema.column_names)} FROM {table}"
            )
            while batch := cursor.fetchmany(_BATCH_ROWS):
                for row in batch:
                    yield [
                        bytes(v) if isinstance(v, bytearray | memoryview) else v
                        for v in row
                    ]
        finally:
            con.close()

    def _connect(self) -> Any:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        con = connect_duckdb(self._path, self._lock_timeout)
        for table in TABLES.values():
            con.execute(create_table_sql(table))
        return con

    @staticmethod
    def _load_file(
        con: Any,
        bucket: Bucket,
        file: VerifiedFile,
        allow_non_empty: bool,
        advance: Callable[[int], None],
    ) -> None:
        schema = TABLES[file.table]
        statement = _insert_sql(schema, skip_existing=allow_non_empty)
        batch: list[list[Any]] = []
        for line in iter_lines(bucket.read(file.info)):
            batch.append(decode_row(schema, line))
            if len(batch) >= _BATCH_ROWS:
                con.executemany(statement, batch)
                advance(len(batch))
                batch = []
        if batch:
            con.executemany(statement, batch)
            advance(len(batch))


def _insert_sql(table: Table, *, skip_existing: bool) -> str:
    marks = ", ".join("?" for _ in table.columns)
    sql = f"INSERT INTO {table.name} ({', '.join(table.column_names)}) VALUES ({marks})"
    if skip_existing and table.primary_key:
        sql += " ON CONFLICT DO NOTHING"
    return sql


def _count(con: Any, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


class BigQueryTarget:
    """A BigQuery dataset, loaded by one load job per table from the bucket.

    NOTE: bqemulator cannot load from Cloud Storage, so no test covers this
    target; the DuckDB target runs the same verification and proof.
    """

    def __init__(
        self, client: Any, dataset: str, *, location: str | None = None
    ) -> None:
        self._client = client
        self._dataset = f"{client.project}.{dataset}"
        self._location = location
        self.description = f"BigQuery dataset {self._dataset}"

    def non_empty_tables(self, tables: Sequence[str]) -> list[str]:
        from google.api_core import exceptions

        occupied = []
        for name in tables:
            try:
                table = self._client.get_table(f"{self._dataset}.{name}")
            except exceptions.NotFound:
                continue
            if table.num_rows:
                occupied.append(name)
        return occupied

    def load(
        self,
        bucket: Bucket,
        files: Sequence[VerifiedFile],
        *,
        allow_non_empty: bool,
        advance: Callable[[int], None],
    ) -> None:
        from google.cloud import bigquery

        if allow_non_empty:
            # BigQuery enforces no primary key, so appending would duplicate rows.
            raise RestoreError(
                "--allow-non-empty applies to DuckDB targets only; restore into "
                "an empty BigQuery dataset"
            )
        for name in dict.fromkeys(file.table for file in files):
            table = TABLES[name]
            uris = [
                f"gs://{bucket.name}/{f.entry.name}" for f in files if f.table == name
            ]
            config = bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
                schema=[
                    bigquery.SchemaField.from_api_repr(c)
                    for c in bigquery_schema(table)
                ],
                write_disposition=bigquery.WriteDisposition.WRITE_EMPTY,
            )
            options = bigquery_table_options(table)
            if "timePartitioning" in options:
                config.time_partitioning = bigquery.TimePartitioning(
                    field=options["timePartitioning"]["field"]
                )
            if "clustering" in options:
                config.clustering_fields = options["clustering"]["fields"]
            job = self._client.load_table_from_uri(
                uris,
                f"{self._dataset}.{name}",
                job_config=config,
                location=self._location,
            )
            job.result()
            advance(int(job.output_rows or 0))

    def rows(self, table: str) -> Iterator[list[Any]]:
        schema = TABLES[table]
        result = self._client.query(
            f"SELECT {', '.join(schema.column_names)} FROM `{self._dataset}.{table}`",
            location=self._location,
        ).result(page_size=_BATCH_ROWS)
        for row in result:
            yield list(row.values())
