"""Exporting the tables to the bucket: DuckDB streamed locally, BigQuery extract.

``LocalExporter`` copies the tables of the DuckDB file into a snapshot file
in one transaction, so every table shows the same moment and the store is
locked for the copy only. It then streams each table from the snapshot with
``fetchmany``, in the order the rows are stored, writes JSON lines into a
temporary file per shard, and uploads a shard once it is full. DuckDB keeps
the pages it reads cached up to its memory limit (80% of RAM by default), so
the copy and the reads run with a limit of ``_MEMORY_LIMIT``. Memory use
is then that limit, one batch of rows and one upload chunk, whatever the table
size.

``BigQueryExporter`` runs one query job per table at a common
``FOR SYSTEM_TIME AS OF`` snapshot (audit rows deduplicated by ``event_id``),
then extracts each result to newline-delimited JSON. Job ids derive from the
run, the table and the attempt, so a retried ``jobs.insert`` finds its job
instead of starting a second one.
"""

# SQL here is assembled from schema table and column names only.
# ruff: noqa: S608

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import duckdb
import google_crc32c

from shared.backup._layout import AUDIT_TABLE, table_file, table_prefix
from shared.backup._manifest import FileEntry, TableEntry
from shared.backup._rows import encode_row
from shared.backup._storage import (
    Bucket,
    ObjectExistsError,
    ObjectInfo,
    crc32c_text,
)
from shared.crypto import DecryptionError, parse_ciphertext
from shared.store._duckdb import create_table_sql, held_connection
from shared.store._lease import connect_with_retry, lease_for
from shared.store.schema import TABLES, Table

_log = logging.getLogger(__name__)

_BATCH_ROWS = 1000
# DuckDB's memory limit for the snapshot copy and the reads of the snapshot.
# Past it DuckDB evicts cached pages, or spills to the temporary folder next
# to the file, instead of growing with the table.
_MEMORY_LIMIT = "64MB"
# The encrypted column of each table, and the column naming its KMS key
# (None: the table's rows all use the API key KMS key).
ENCRYPTED_COLUMNS: dict[str, tuple[str, str | None]] = {
    "tenant_api_keys": ("encrypted_api_key", None),
    "tenant_credentials": ("encrypted_credentials", "kms_key_name"),
}
# The first 4 bytes of a data key wrapped by the local keyring are its key
# version (shared/crypto/_local.py).
_LOCAL_VERSION_BYTES = 4


class ExportError(Exception):
    """The export could not read the store or write a file."""


@dataclass
class KeyVersions:
    """The KMS keys and key versions that exported ciphertext depends on."""

    read_versions: bool
    versions: dict[str, set[int]] = field(default_factory=dict)
    unreadable: int = 0

    def add(self, key_name: str, ciphertext: bytes) -> None:
        versions = self.versions.setdefault(key_name, set())
        if not self.read_versions:
            return
        try:
            wrapped = parse_ciphertext(ciphertext).wrapped_key
        except DecryptionError:
            self.unreadable += 1
            return
        if len(wrapped) < _LOCAL_VERSION_BYTES:
            self.unreadable += 1
            return
        versions.add(int.from_bytes(wrapped[:_LOCAL_VERSION_BYTES], "big"))


@dataclass(frozen=True)
class ExportResult:
    snapshot_at: datetime
    tables: list[TableEntry]


class Exporter(Protocol):
    """Writes the tables of one run to the bucket and describes the files."""

    backend: str
    dataset: str

    def export(
        self,
        run: str,
        attempt: str,
        tables: Sequence[str],
        bucket: Bucket,
        keys: KeyVersions,
    ) -> ExportResult: ...


# Writing files


@dataclass
class _Shard:
    """A shard being written to a temporary file, with its running checksums."""

    handle: IO[bytes]
    rows: int = 0
    size: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)
    crc32c: google_crc32c.Checksum = field(default_factory=google_crc32c.Checksum)

    def write(self, line: bytes) -> None:
        self.handle.write(line)
        self.sha256.update(line)
        self.crc32c.update(line)  # type: ignore[no-untyped-call]
        self.rows += 1
        self.size += len(line)


def upload_file(
    bucket: Bucket,
    name: str,
    handle: IO[bytes],
    *,
    size: int,
    rows: int | None,
    sha256: str,
    crc32c: str,
) -> FileEntry:
    """Upload one file write-once; an object left by an earlier attempt is replaced.

    The caller has the run's claim, and the run has no manifest yet, so an
    object already under ``name`` is an unfinished attempt's. Identical
    content is kept as it is; other content is replaced, guarded by its
    generation.
    """
    handle.seek(0)
    try:
        info = bucket.write_once(name, handle, size)
    except ObjectExistsError as exists:
        info = exists.existing
        if info.size != size or info.crc32c != crc32c:
            _log.warning(
                "replacing %s, left by an unfinished attempt of this run",
                name,
                extra={"labels": {"object": name}},
            )
            handle.seek(0)
            info = bucket.replace(name, handle, size, info.generation)
    return FileEntry(
        name=name,
        bytes=size,
        rows=rows,
        sha256=sha256,
        crc32c=info.crc32c or crc32c,
        generation=info.generation,
    )


def remove_strays(
    bucket: Bucket, table: str, run: str, keep: Sequence[FileEntry]
) -> None:
    """Delete files of ``table`` in ``run`` that this attempt did not write.

    An earlier attempt may have split the table into more shards; left in
    place, a wildcard read of the folder would mix them in.
    """
    expected = {file.name for file in keep}
    for info in list(bucket.list(table_prefix(table, run))):
        if info.name not in expected:
            _log.warning(
                "deleting %s, left by an unfinished attempt of this run",
                info.name,
                extra={"labels": {"object": info.name}},
            )
            bucket.delete(info.name, info.generation)


class _TableWriter:
    """Splits a table's lines into shards and uploads each shard when it is full.

    One finished shard waits on disk until the next one starts, because only
    then is it known whether the table needs shard names.
    """

    def __init__(
        self, bucket: Bucket, table: str, run: str, shard_max_bytes: int
    ) -> None:
        self._bucket = bucket
        self._table = table
        self._run = run
        self._max = shard_max_bytes
        self._current = self._new_shard()
        self._waiting: _Shard | None = None
        self._index = 0
        self.files: list[FileEntry] = []

    def write(self, line: bytes) -> None:
        if self._current.rows and self._current.size + len(line) > self._max:
            self._rotate()
        self._current.write(line)

    def close(self) -> TableEntry:
        """Upload what is left and return the table's entry for the manifest."""
        if self._waiting is None:
            self._upload(self._current, None)
        else:
            self._upload(self._waiting, self._index)
            self._upload(self._current, self._index + 1)
        self.abort()
        rows = sum(file.rows or 0 for file in self.files)
        return TableEntry(table=self._table, rows=rows, files=tuple(self.files))

    def abort(self) -> None:
        """Close and so delete the temporary shard files."""
        for shard in (self._current, self._waiting):
            if shard is not None:
                shard.handle.close()

    def _rotate(self) -> None:
        if self._waiting is not None:
            self._upload(self._waiting, self._index)
            self._waiting.handle.close()
            self._index += 1
        self._waiting, self._current = self._current, self._new_shard()

    def _upload(self, shard: _Shard, index: int | None) -> None:
        name = table_file(self._table, self._run, index)
        shard.handle.flush()
        self.files.append(
            upload_file(
                self._bucket,
                name,
                shard.handle,
                size=shard.size,
                rows=shard.rows,
                sha256=shard.sha256.hexdigest(),
                crc32c=crc32c_text(shard.crc32c),
            )
        )

    @staticmethod
    def _new_shard() -> _Shard:
        return _Shard(tempfile.TemporaryFile(prefix="backup-shard-"))  # noqa: SIM115


# DuckDB


class LocalExporter:
    """Streams the tables of the DuckDB store file to the bucket."""

    backend = "duckdb"

    def __init__(
        self,
        database: Path,
        *,
        api_key_kms_path: str,
        shard_max_bytes: int,
        batch_rows: int = _BATCH_ROWS,
        lock_timeout_seconds: float = 15.0,
    ) -> None:
        self._database = Path(database)
        self._api_key_kms_path = api_key_kms_path
        self._shard_max = shard_max_bytes
        self._batch_rows = batch_rows
        self._lock_timeout = lock_timeout_seconds
        self.dataset = self._database.stem

    def export(
        self,
        run: str,
        attempt: str,
        tables: Sequence[str],
        bucket: Bucket,
        keys: KeyVersions,
    ) -> ExportResult:
        if not self._database.is_file():
            raise ExportError(
                f"store file {self._database} not found; check DATA_DIR and "
                "TENANTS_DATASET_ID"
            )
        with tempfile.TemporaryDirectory(prefix="backup-snapshot-") as folder:
            snapshot = Path(folder) / "snapshot.duckdb"
            snapshot_at = self._snapshot(snapshot, tables)
            con = duckdb.connect(
                str(snapshot),
                read_only=True,
                config={"memory_limit": _MEMORY_LIMIT},
            )
            try:
                entries = [
                    self._export_table(con, TABLES[name], run, bucket, keys)
                    for name in tables
                ]
            finally:
                con.close()
        return ExportResult(snapshot_at, entries)

    def _snapshot(self, target: Path, tables: Sequence[str]) -> datetime:
        """Copy ``tables`` into a new DuckDB file in one read transaction.

        The copy runs on the store's connection of this process, so the
        store's operations wait for it in this process and in others.
        """
        with held_connection(self._database, self._lock_timeout) as con:
            try:
                return _copy_tables(con, target, tables)
            except duckdb.Error as exc:
                raise ExportError(f"copying the tables failed: {exc}") from None

    def _export_table(
        self,
        con: duckdb.DuckDBPyConnection,
        table: Table,
        run: str,
        bucket: Bucket,
        keys: KeyVersions,
    ) -> TableEntry:
        # No ORDER BY: sorting would hold the table in memory, and nothing
        # reads the files in order (a restore inserts rows as a set, and
        # BigQuery's extract writes no order either).
        cursor = con.execute(
            f"SELECT {', '.join(table.column_names)} FROM {table.name}"
        )
        writer = _TableWriter(bucket, table.name, run, self._shard_max)
        track = self._key_tracker(table, keys)
        try:
            while batch := cursor.fetchmany(self._batch_rows):
                for row in batch:
                    track(row)
                    writer.write(encode_row(table, row))
            entry = writer.close()
        except BaseException:
            writer.abort()
            raise
        remove_strays(bucket, table.name, run, entry.files)
        return entry

    def _key_tracker(self, table: Table, keys: KeyVersions) -> Any:
        columns = ENCRYPTED_COLUMNS.get(table.name)
        if columns is None:
            return lambda row: None
        names = table.column_names
        value_at = names.index(columns[0])
        key_at = None if columns[1] is None else names.index(columns[1])
        default_key = self._api_key_kms_path

        def track(row: Sequence[Any]) -> None:
            key_name = default_key if key_at is None else row[key_at]
            keys.add(str(key_name), bytes(row[value_at]))

        return track


def _copy_tables(
    con: duckdb.DuckDBPyConnection, target: Path, tables: Sequence[str]
) -> datetime:
    con.execute(f"SET memory_limit = '{_MEMORY_LIMIT}'")
    for table in TABLES.values():
        con.execute(create_table_sql(table))
    con.execute(f"ATTACH '{_sql_text(str(target))}' AS snapshot")
    con.execute("BEGIN TRANSACTION")
    snapshot_at = datetime.now(UTC)
    for name in tables:
        con.execute(f"CREATE TABLE snapshot.{name} AS SELECT * FROM main.{name}")
    con.execute("COMMIT")
    con.execute("DETACH snapshot")
    # The store's connections run with DuckDB's default limit.
    con.execute("RESET memory_limit")
    return snapshot_at


def connect_duckdb(
    path: Path, lock_timeout_seconds: float
) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file, retrying while another process holds its lock.

    The connection is the caller's own, outside the store's lease
    (``shared/store/_lease.py``), so it takes no turn: processes of the store
    wait for DuckDB's lock until it is closed, and it gets the file between
    their holds.
    """
    # This process's lease may still have a deleted file open under the path,
    # and duckdb.connect would return a connection to that.
    lease_for(path).close_if_replaced()
    return connect_with_retry(path, time.monotonic() + lock_timeout_seconds)


def _sql_text(value: str) -> str:
    return value.replace("'", "''")


# BigQuery


class BigQueryExporter:
    """Extracts the tables of a BigQuery dataset to the bucket."""

    backend = "bigquery"

    def __init__(
        self,
        client: Any,
        dataset: str,
        *,
        api_key_kms_path: str,
        credentials_kms_path: str,
        shard_max_bytes: int,
        location: str | None = None,
        timeout_seconds: float = 480.0,
    ) -> None:
        self._client = client
        self.dataset = dataset
        self._keys = (api_key_kms_path, credentials_kms_path)
        self._shard_max = shard_max_bytes
        self._location = location
        self._timeout = timeout_seconds

    def export(
        self,
        run: str,
        attempt: str,
        tables: Sequence[str],
        bucket: Bucket,
        keys: KeyVersions,
    ) -> ExportResult:
        # NOTE: bqemulator cannot run extract jobs, so no test covers this
        # path; tests cover LocalExporter, which writes the same format.
        from google.api_core import exceptions

        snapshot_at = _attempt_time(attempt)
        entries = []
        for name in tables:
            try:
                entry = self._export_table(name, run, attempt, snapshot_at, bucket.name)
            except exceptions.GoogleAPICallError as exc:
                raise ExportError(
                    f"exporting {name} failed: HTTP {exc.code} {exc.message}"
                ) from None
            files = sorted(bucket.list(table_prefix(name, run)), key=_name)
            described = tuple(_file_entry(bucket, info) for info in files)
            entries.append(TableEntry(table=name, rows=entry.rows, files=described))
        for key_name in self._keys:
            keys.versions.setdefault(key_name, set())
        return ExportResult(snapshot_at, entries)

    def _export_table(
        self,
        name: str,
        run: str,
        attempt: str,
        snapshot_at: datetime,
        bucket_name: str,
    ) -> TableEntry:
        from google.cloud import bigquery

        dataset = f"{self._client.project}.{self.dataset}"
        sql = f"SELECT * FROM `{dataset}.{name}` FOR SYSTEM_TIME AS OF @snapshot_at"
        if name == AUDIT_TABLE:
            # Reads of the audit table keep one row per event (docs/bigquery.md).
            sql += (
                " QUALIFY ROW_NUMBER() OVER "
                "(PARTITION BY event_id ORDER BY created_at) = 1"
            )
        query = self._job(
            f"{run}_{name}_{attempt}_query",
            lambda job_id: self._client.query(
                sql,
                job_config=bigquery.QueryJobConfig(
                    query_parameters=[
                        bigquery.ScalarQueryParameter(
                            "snapshot_at", "TIMESTAMP", snapshot_at
                        )
                    ]
                ),
                job_id=job_id,
                location=self._location,
            ),
        )
        result = self._client.get_table(query.destination)
        if (result.num_bytes or 0) <= self._shard_max:
            destination = table_file(name, run)
        else:
            destination = f"{table_prefix(name, run)}-*.json"
        self._job(
            f"{run}_{name}_{attempt}_extract",
            lambda job_id: self._client.extract_table(
                query.destination,
                f"gs://{bucket_name}/{destination}",
                job_id=job_id,
                job_config=bigquery.ExtractJobConfig(  # type: ignore[no-untyped-call]
                    destination_format="NEWLINE_DELIMITED_JSON"
                ),
                location=self._location,
            ),
        )
        return TableEntry(table=name, rows=int(result.num_rows or 0), files=())

    def _job(self, job_id: str, start: Any) -> Any:
        """Start a job, or find the one an earlier delivery started, and wait."""
        from google.api_core import exceptions

        try:
            job = start(job_id)
        except exceptions.Conflict:
            job = self._client.get_job(job_id, location=self._location)
        job.result(timeout=self._timeout)
        return job


def _name(info: ObjectInfo) -> str:
    return info.name


def _file_entry(bucket: Bucket, info: ObjectInfo) -> FileEntry:
    digest = hashlib.sha256()
    for chunk in bucket.read(info):
        digest.update(chunk)
    return FileEntry(
        name=info.name,
        bytes=info.size,
        rows=None,
        sha256=digest.hexdigest(),
        crc32c=info.crc32c,
        generation=info.generation,
    )


_ATTEMPT_FORMAT = "%Y%m%dt%H%M%S%fz"


def new_attempt(now: datetime) -> str:
    """Return an attempt id: its start time to the microsecond, valid in job ids."""
    return now.astimezone(UTC).strftime(_ATTEMPT_FORMAT)


def _attempt_time(attempt: str) -> datetime:
    return datetime.strptime(attempt, _ATTEMPT_FORMAT).replace(tzinfo=UTC)


def iter_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Split a stream of chunks into lines, each with its newline if it has one."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line + b"\n"
    if pending:
        yield pending
