"""Key verification in process: warm cache against SHA-256, cold against a scan.

Warm: ``KeyService.verify`` on keys already in its cache, against the floor of
any verification, SHA-256 of the presented key. Cold: every verification uses
a key the service has not seen, so each one reads the store. Its baseline is
the same service with its cache off, reading a copy of the key table that has
no index (one full scan per request) on a connection it keeps open.
"""

from __future__ import annotations

import hashlib
import itertools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from bench import _report as report
from bench._dataset import API_KEY_KMS_PATH, KeyStore, build_unindexed_copy
from bench._report import Row, SuiteResult
from bench._scale import Scale
from bench._timing import latencies, percentile, throughput
from shared.crypto import EnvelopeCipher, LocalKeyring
from shared.events import DirectAuditSink
from shared.keyservice import KeyPolicy, KeyService
from shared.store import ApiKeyRecord, Store
from shared.store._duckdb import _KEY_COLUMNS, DuckDBStore, _key_from_row

WARM_TARGET = 20.0
COLD_TARGET = 10.0
# "Flat": the rate at the larger store is at least this share of the smaller's.
FLAT_SHARE = 0.8
_ROUNDS = 3

WARM_METHOD = """
Warm: one `KeyService` over the generated store with a 60 s verification
cache (the maximum `VERIFY_CACHE_TTL_SECONDS` allows, so no entry expires
during the loop). Its cache is filled first, then the loop verifies the same
keys round robin. The floor hashes the same keys with `hashlib.sha256`.
Rates come from loops that read the clock once per 64 calls, in three
interleaved rounds (median). Latencies come from a separate loop that times
each call with `time.perf_counter`.
"""

COLD_METHOD = """
Cold: each verification presents a real key the service has not seen, so it
misses the cache and reads the store: `DuckDBStore.find_api_key_by_hash`,
which runs the query on the UNIQUE index of `api_key_hash` over the store's
leased connection. The lease keeps the file open across a burst of lookups
and, under this sustained load, closes and reopens it after every 0.5 s so
that other processes get a turn. The baseline is the same `KeyService`
with its cache off, over a store whose lookup runs one query on one open
connection against a copy of `tenant_api_keys` without any index or
constraint, so each request scans the table. The held-connection row runs
the shipped query on the indexed table over one connection that is never
released.
"""


def run(scale: Scale, stores: dict[int, KeyStore], work_dir: Path) -> SuiteResult:
    result = SuiteResult("Key verification (in process)")
    result.method = WARM_METHOD.strip() + "\n\n" + COLD_METHOD.strip()
    result.rows.append(_warm(scale, stores[min(stores)], result.notes))
    result.rows += _cold(scale, stores, work_dir, result.notes)
    return result


# Warm


def _warm(scale: Scale, store: KeyStore, notes: list[str]) -> Row:
    service = _service(DuckDBStore(store.path), store, cache_seconds=60.0)
    keys = store.sample_keys[: scale.warm_keys]
    for key in keys:
        service.verify(key)

    verify = _cycling(keys, service.verify)
    floor = _cycling(keys, _sha256)
    verify_rates, floor_rates = [], []
    for _ in range(_ROUNDS):
        floor_rates.append(throughput(floor, seconds=scale.seconds).rate)
        verify_rates.append(throughput(verify, seconds=scale.seconds).rate)
    verify_rate = statistics.median(verify_rates)
    floor_rate = statistics.median(floor_rates)
    times = latencies(verify, seconds=scale.seconds)
    floor_times = latencies(floor, seconds=scale.seconds)

    slowdown = floor_rate / verify_rate
    notes.append(
        f"Warm: {len(keys):,} keys in the cache; per-call latency of the floor "
        f"p50 {report.duration(percentile(floor_times, 0.5))}, including the "
        "timer's own overhead, as the verification latencies do."
    )
    return Row(
        path="key verification, warm cache",
        figure=f"{report.count(verify_rate)} verifications/s; "
        f"p50 {report.duration(percentile(times, 0.5))}, "
        f"p99 {report.duration(percentile(times, 0.99))}",
        baseline=f"SHA-256 of the key: {report.count(floor_rate)}/s",
        ratio=f"{report.ratio(slowdown)} slower than the floor",
        target=f"within {WARM_TARGET:g}x of the floor",
        result=report.verdict(
            slowdown <= WARM_TARGET,
            f"{report.ratio(slowdown)} slower, "
            f"{report.ratio(slowdown / WARM_TARGET)} past the target",
        ),
    )


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _cycling(keys: Sequence[str], call: Callable[[str], Any]) -> Callable[[], Any]:
    iterator = itertools.cycle(keys)
    return lambda: call(next(iterator))


# Cold


@dataclass(frozen=True, slots=True)
class _Cold:
    """Verifications per second and latency percentiles of one cold run."""

    rate: float
    p50: float
    p99: float


def _cold(
    scale: Scale, stores: dict[int, KeyStore], work_dir: Path, notes: list[str]
) -> list[Row]:
    shipped, unindexed, held = {}, {}, {}
    for size in scale.cold_sizes:
        store = stores[size]
        copy = work_dir / f"unindexed-{size}.duckdb"
        build_unindexed_copy(store.path, copy)
        shipped[size] = _cold_run(scale, store, DuckDBStore(store.path), 5.0)
        with _UnindexedStore(copy, store.path) as scanning:
            unindexed[size] = _cold_run(scale, store, scanning, 0)
        with _HeldConnectionStore(store.path) as holding:
            held[size] = _cold_run(scale, store, holding, 5.0)

    small, large = scale.cold_sizes
    flat_share = shipped[large].rate / shipped[small].rate
    held_share = held[large].rate / held[small].rate
    notes.append(
        f"Cold: the shipped store's rate at {large:,} keys is {flat_share:.0%} of "
        f"its rate at {small:,} keys; flat means at least {FLAT_SHARE:.0%}. On a "
        f"held connection it is {held_share:.0%}."
    )
    file_open, memory_open = _connect_seconds(stores[large].path)
    notes.append(
        "Cold: the shipped store reopens the DuckDB file after each 0.5 s of "
        f"holding it. Opening and closing the {large:,}-key file takes "
        f"{report.duration(file_open)} (median of 20), and an in-memory database "
        f"{report.duration(memory_open)}: the cost is creating the database "
        "instance, whatever the table size. The held-connection rows leave it out."
    )

    target = f"{COLD_TARGET:g}x the baseline, flat from {small:,} to {large:,} keys"
    rows = []
    for size in scale.cold_sizes:
        gain = shipped[size].rate / unindexed[size].rate
        shortfall = []
        if gain < COLD_TARGET:
            shortfall.append(f"{report.ratio(gain)} the baseline")
        if flat_share < FLAT_SHARE:
            shortfall.append(f"{flat_share:.0%} of the rate at {small:,} keys")
        rows.append(
            Row(
                path=f"key verification, cold (store lookup), {size:,} keys",
                figure=_cold_figure(shipped[size]),
                baseline=f"no index, no cache: {report.count(unindexed[size].rate)}"
                f"/s; p50 {report.duration(unindexed[size].p50)}",
                ratio=report.ratio(gain),
                target=target,
                result=report.verdict(not shortfall, "; ".join(shortfall)),
            )
        )
    for size in scale.cold_sizes:
        rows.append(
            Row(
                path=f"(what-if) cold lookup on one held connection, {size:,} keys",
                figure=_cold_figure(held[size]),
                baseline=f"no index, no cache: {report.count(unindexed[size].rate)}/s",
                ratio=report.ratio(held[size].rate / unindexed[size].rate),
                target="none: shows the cost of releasing the file",
                result="not shipped",
            )
        )
    return rows


def _cold_run(
    scale: Scale, key_store: KeyStore, store: Store, cache_seconds: float
) -> _Cold:
    """Verify keys the service has not seen, each once, for the time budget."""
    service = _service(store, key_store, cache_seconds)
    keys = iter(key_store.sample_keys)
    times = latencies(
        lambda: service.verify(next(keys)),
        seconds=scale.seconds * 2,
        max_calls=len(key_store.sample_keys),
    )
    return _Cold(
        len(times) / sum(times), percentile(times, 0.5), percentile(times, 0.99)
    )


def _connect_seconds(path: Path) -> tuple[float, float]:
    """Return median seconds to open and close ``path``, and a database in memory."""
    file_times, memory_times = [], []
    for _ in range(20):
        start = time.perf_counter()
        duckdb.connect(str(path)).close()
        file_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        duckdb.connect().close()
        memory_times.append(time.perf_counter() - start)
    return statistics.median(file_times), statistics.median(memory_times)


def _cold_figure(cold: _Cold) -> str:
    return (
        f"{report.count(cold.rate)} verifications/s; "
        f"p50 {report.duration(cold.p50)}, p99 {report.duration(cold.p99)}"
    )


def _service(store: Store, key_store: KeyStore, cache_seconds: float) -> KeyService:
    cipher = EnvelopeCipher(
        LocalKeyring(key_store.data_dir / "keyring.json"), API_KEY_KMS_PATH
    )
    policy = KeyPolicy(verify_cache_seconds=cache_seconds)
    return KeyService(store, cipher, DirectAuditSink(store), policy)


class _UnindexedStore:
    """Looks keys up with one query per call on an unindexed copy of the table.

    Everything else (usage batches, audit events) goes to the real store.
    """

    def __init__(self, unindexed: Path, real: Path) -> None:
        self._con = duckdb.connect(str(unindexed), read_only=True)
        self._con.execute("SET TimeZone = 'UTC'")
        self._real = DuckDBStore(real)

    def find_api_key_by_hash(self, api_key_hash: str) -> ApiKeyRecord | None:
        row = self._con.execute(
            f"SELECT {_KEY_COLUMNS} FROM tenant_api_keys "  # noqa: S608
            "WHERE api_key_hash = ?",
            [api_key_hash],
        ).fetchone()
        return _key_from_row(row) if row else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def __enter__(self) -> _UnindexedStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # An open connection would make later opens of the file in this
        # process reuse its database instance, and look cheap.
        self._con.close()


class _HeldConnectionStore(_UnindexedStore):
    """Runs the shipped lookup query on the indexed table over one open connection."""

    def __init__(self, real: Path) -> None:
        # Read-write, as the store's own connections to the same file are:
        # DuckDB refuses two configurations of one file in a process.
        self._con = duckdb.connect(str(real))
        self._con.execute("SET TimeZone = 'UTC'")
        self._real = DuckDBStore(real)
