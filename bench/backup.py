"""Backup export of the embedded store: streaming against reading into memory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import duckdb
import google_crc32c

from bench import _report as report
from bench._dataset import API_KEY_KMS_PATH, KeyStore
from bench._report import NOT_BUILT, Row, SuiteResult
from bench._scale import Scale
from bench._timing import isolated, peak_rss_reset, rss_bytes

# "Flat": the peak at the larger table is at most this multiple of the smaller's.
FLAT_FACTOR = 1.25

METHOD = """
The figure runs `LocalExporter.export` (shared/backup) on the generated
store: it snapshots the backed-up tables into a new DuckDB file, streams
them with `fetchmany`, writes JSON lines to temporary shard files and uploads
each shard. The bucket is an in-process stand-in that reads each upload in
the 8 MiB chunks the Cloud Storage client sends and keeps only its name, size
and CRC32C, so network and emulator time stay out of the figure. The
baseline reads each table with `fetchall()` and encodes every row into a list
of JSON lines in memory. Each export runs in a fresh process, and peak memory
is the growth of that process's peak resident set size (`VmHWM`, reset through
`/proc/self/clear_refs`) over its size before the export.
"""


def run(scale: Scale, stores: dict[int, KeyStore]) -> SuiteResult:
    result = SuiteResult("Backup export", method=METHOD)
    try:
        from shared.backup._export import LocalExporter  # noqa: F401
    except ImportError as exc:
        result.rows.append(_not_built())
        result.notes.append(f"shared.backup cannot be imported: {exc}")
        return result
    small, large = scale.backup_sizes
    streamed = {size: isolated(_export, stores[size].path) for size in (small, large)}
    loaded = {size: isolated(_load, stores[size].path) for size in (small, large)}
    for size in (small, large):
        result.rows.append(_row(size, streamed, loaded, scale))
    result.notes.append(
        "Rows are those of tenants, users, tenant_api_keys and tenant_credentials "
        "(the default backup set); the generated store fills tenants and "
        "tenant_api_keys only."
    )
    return result


def _row(
    size: int,
    streamed: dict[int, tuple[int, float, int]],
    loaded: dict[int, tuple[int, float, int]],
    scale: Scale,
) -> Row:
    rows, seconds, peak = streamed[size]
    base_rows, base_seconds, base_peak = loaded[size]
    small, large = scale.backup_sizes
    growth = streamed[large][2] / max(streamed[small][2], 1)
    flat = growth <= FLAT_FACTOR
    return Row(
        path=f"backup export, {size:,} keys",
        figure=f"{report.count(rows / seconds)} rows/s; peak +{report.megabytes(peak)}",
        baseline=f"table read into memory: {report.count(base_rows / base_seconds)} "
        f"rows/s; peak +{report.megabytes(base_peak)}",
        ratio=f"peak {report.ratio(peak / max(base_peak, 1))}, rate "
        f"{report.ratio((rows / seconds) / (base_rows / base_seconds))} the "
        "baseline's",
        target=f"memory flat from {small:,} to {large:,} rows",
        result=report.verdict(
            flat,
            f"peak at {large:,} rows is {report.ratio(growth)} "
            f"the peak at {small:,} rows",
        ),
    )


def _not_built() -> Row:
    return Row(
        "backup export", "—", "—", "—", "memory flat from 100k to 1M rows", NOT_BUILT
    )


def _export(path: Path) -> tuple[int, float, int]:
    """Export the store in this process and return rows, seconds and peak growth."""
    from shared.backup._export import KeyVersions, LocalExporter, new_attempt
    from shared.backup._layout import DEFAULT_TABLES, run_name

    now = datetime.now(UTC)
    exporter = LocalExporter(
        path, api_key_kms_path=API_KEY_KMS_PATH, shard_max_bytes=256 << 20
    )
    bucket = _DiscardBucket()
    peak_rss_reset()
    before = rss_bytes()
    start = time.perf_counter()
    exported = exporter.export(
        run_name(now.date()),
        new_attempt(now),
        DEFAULT_TABLES,
        bucket,  # type: ignore[arg-type]
        KeyVersions(read_versions=True),
    )
    seconds = time.perf_counter() - start
    rows = sum(table.rows for table in exported.tables)
    return rows, seconds, rss_bytes("VmHWM") - before


def _load(path: Path) -> tuple[int, float, int]:
    """Read every backed-up table into memory as JSON lines, measured as above."""
    from shared.backup._layout import DEFAULT_TABLES
    from shared.backup._rows import encode_row
    from shared.store.schema import TABLES

    peak_rss_reset()
    before = rss_bytes()
    start = time.perf_counter()
    con = duckdb.connect(str(path), read_only=True)
    rows = 0
    try:
        for name in DEFAULT_TABLES:
            table = TABLES[name]
            fetched = con.execute(
                f"SELECT {', '.join(table.column_names)} FROM {name}"  # noqa: S608
            ).fetchall()
            lines = [encode_row(table, row) for row in fetched]
            rows += len(lines)
    finally:
        con.close()
    seconds = time.perf_counter() - start
    return rows, seconds, rss_bytes("VmHWM") - before


class _DiscardBucket:
    """Takes uploads in Cloud Storage chunk sizes and keeps only their metadata."""

    name = "bench"

    def __init__(self) -> None:
        self._objects: dict[str, Any] = {}

    def write_once(self, name: str, source: IO[bytes], size: int) -> Any:
        from shared.backup._storage import ObjectExistsError

        if name in self._objects:
            raise ObjectExistsError(self._objects[name])
        return self._keep(name, source)

    def replace(self, name: str, source: IO[bytes], size: int, generation: int) -> Any:
        return self._keep(name, source)

    def stat(self, name: str) -> Any:
        return self._objects.get(name)

    def list(self, prefix: str) -> Iterator[Any]:
        return iter([i for n, i in self._objects.items() if n.startswith(prefix)])

    def delete(self, name: str, generation: int | None = None) -> bool:
        return self._objects.pop(name, None) is not None

    def _keep(self, name: str, source: IO[bytes]) -> Any:
        from shared.backup._storage import CHUNK_BYTES, ObjectInfo, crc32c_text

        checksum = google_crc32c.Checksum()  # type: ignore[no-untyped-call]
        size = 0
        while chunk := source.read(CHUNK_BYTES):
            checksum.update(chunk)  # type: ignore[no-untyped-call]
            size += len(chunk)
        info = ObjectInfo(name, size, crc32c_text(checksum), 1)
        self._objects[name] = info
        return info
