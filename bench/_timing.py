"""Timing loops, percentiles and process isolation shared by the suites."""

from __future__ import annotations

import functools
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")

# Calls between two reads of the clock in a throughput loop.
_CHUNK = 64


@dataclass(frozen=True, slots=True)
class Throughput:
    """Calls completed in a timed loop."""

    calls: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else 0.0


def throughput(
    call: Callable[[], object], *, seconds: float, max_calls: int | None = None
) -> Throughput:
    """Run ``call`` back to back for ``seconds`` (or ``max_calls``) and count.

    The clock is read once per chunk of calls, so per-call timer overhead does
    not enter the rate of calls that take well under a microsecond.
    """
    limit = max_calls if max_calls is not None else 1 << 62
    chunk = min(_CHUNK, limit)
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while calls < limit and now < deadline:
        for _ in range(min(chunk, limit - calls)):
            call()
        calls += min(chunk, limit - calls)
        now = time.perf_counter()
    return Throughput(calls, now - start)


def latencies(
    call: Callable[[], object], *, seconds: float, max_calls: int | None = None
) -> list[float]:
    """Time each call of ``call`` separately and return the durations in seconds."""
    limit = max_calls if max_calls is not None else 1 << 62
    clock = time.perf_counter
    durations: list[float] = []
    deadline = clock() + seconds
    while len(durations) < limit:
        start = clock()
        call()
        end = clock()
        durations.append(end - start)
        if end >= deadline:
            break
    return durations


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the value at ``fraction`` (0 to 1) of the sorted values, nearest rank."""
    if not values:
        raise ValueError("values must not be empty")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def isolated(function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """Run ``function`` in a fresh Python process and return its result.

    Each suite imports the function modules with its own environment and
    measures its own peak memory, so it gets a process of its own.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        call = functools.partial(function, *args, **kwargs)
        return pool.submit(_quietly, call).result()


def _quietly(call: Callable[[], _R]) -> _R:
    # DuckDB draws progress bars on stdout during long queries. The results
    # travel back through the pool's pipe, so this process's stdout can go.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    return call()


def peak_rss_reset() -> None:
    """Reset the peak resident set size of this process (Linux 4.0 and later)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def rss_bytes(field: str = "VmRSS") -> int:
    """Return ``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")
