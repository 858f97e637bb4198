"""Key verification over HTTP: issue_key against a constant-answer function."""

from __future__ import annotations

import http.client
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import _report as report
from bench._dataset import KeyStore
from bench._functions import FUNCTIONS, clean_environment
from bench._report import Row, SuiteResult
from bench._scale import Scale
from bench._timing import percentile

HOST = "127.0.0.1"
TARGET = 0.5
START_SECONDS = 60.0
_ROUNDS = 2
_KEYS = 100
LONG_CACHE_SECONDS = 60

METHOD = """
Servers on loopback, started the way `make run` starts the functions
(functions-framework, gunicorn with one worker and its default threads):
`functions/issue_key` over the generated store with the default settings,
the same function with `VERIFY_CACHE_TTL_SECONDS=60`, and
`bench/constant_function`, which returns a fixed JSON body of the same shape.
Each server first verifies every key once, then takes 0.5 s of load. One
client in the bench process, with one keep-alive `http.client` connection per
thread, sends `GET /verify` with `X-API-Key` (100 real keys round robin) to
each server in turn, two rounds each. A full-scale round lasts 5 s, the
default cache lifetime, so it includes one refresh of every key. Rates are
the mean of the rounds, and latencies are per request as the client sees
them. Client and servers share the machine's cores.
"""


@dataclass(slots=True)
class _Load:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def run(scale: Scale, stores: dict[int, KeyStore], work_dir: Path) -> SuiteResult:
    store = stores[min(stores)]
    keys = store.sample_keys[:_KEYS]
    real_source = FUNCTIONS / "issue_key" / "main.py"
    constant_source = Path(__file__).parent / "constant_function" / "main.py"
    long_cache = {"VERIFY_CACHE_TTL_SECONDS": str(LONG_CACHE_SECONDS)}
    with (
        _server(constant_source, "constant", store.data_dir, work_dir) as constant,
        _server(real_source, "issue_key", store.data_dir, work_dir) as real,
        _server(
            real_source, "issue_key", store.data_dir, work_dir, long_cache
        ) as real_long,
    ):
        ports = (constant, real, real_long)
        for port in ports:
            _fill_cache(port, keys)
            _drive(port, keys, scale.http_clients, 0.5)
        loads: dict[int, list[_Load]] = {port: [] for port in ports}
        for _ in range(_ROUNDS):
            for port in ports:
                loads[port].append(
                    _drive(port, keys, scale.http_clients, scale.http_seconds)
                )
    return _result(scale, loads[real], loads[constant], loads[real_long])


def _result(
    scale: Scale,
    real: Sequence[_Load],
    constant: Sequence[_Load],
    real_long: Sequence[_Load],
) -> SuiteResult:
    constant_rate = _mean_rate(constant)
    constant_p99 = report.duration(_latency(constant, 0.99))
    result = SuiteResult("Key verification over HTTP", method=METHOD)
    share = _mean_rate(real) / constant_rate
    result.rows.append(
        Row(
            path="key verification over HTTP (functions-framework)",
            figure=_figure(real),
            baseline=f"constant answer: {report.count(constant_rate)}/s; "
            f"p99 {constant_p99}",
            ratio=f"{share:.0%} of the constant server's rate",
            target=f"at least {TARGET:.0%} of the constant server's rate",
            result=report.verdict(share >= TARGET, f"{share:.0%}"),
        )
    )
    long_share = _mean_rate(real_long) / constant_rate
    result.rows.append(
        Row(
            path="(what-if) the same with VERIFY_CACHE_TTL_SECONDS="
            f"{LONG_CACHE_SECONDS}",
            figure=_figure(real_long),
            baseline=f"constant answer: {report.count(constant_rate)}/s",
            ratio=f"{long_share:.0%} of the constant server's rate",
            target="none: shows the cost of refreshing the cache",
            result="setting, not the default",
        )
    )
    errors = sum(load.errors for load in (*real, *constant, *real_long))
    result.notes.append(
        f"{scale.http_clients} client threads, {scale.http_seconds:g} s per round; "
        f"{errors} failed requests in all. With the default 5 s cache, each of the "
        f"{_KEYS} keys is read from the store again every 5 s, on the request "
        "that finds its entry expired."
    )
    return result


def _mean_rate(loads: Sequence[_Load]) -> float:
    return sum(load.rate for load in loads) / len(loads)


def _latency(loads: Sequence[_Load], fraction: float) -> float:
    return percentile([time for load in loads for time in load.latencies], fraction)


def _figure(loads: Sequence[_Load]) -> str:
    return (
        f"{report.count(_mean_rate(loads))} requests/s; "
        f"p50 {report.duration(_latency(loads, 0.5))}, "
        f"p99 {report.duration(_latency(loads, 0.99))}"
    )


@contextmanager
def _server(
    source: Path,
    target: str,
    data_dir: Path,
    work_dir: Path,
    settings: Mapping[str, str] | None = None,
) -> Iterator[int]:
    """Run one functions-framework server and yield its port.

    The server's process group is stopped on exit, whatever happened.
    """
    port = _free_port()
    runtime = work_dir / f"runtime-{port}"
    runtime.mkdir(mode=0o700)
    log_path = work_dir / f"server-{port}.log"

    program = Path(sys.executable).parent / "functions-framework"
    command = [
        str(program),
        f"--source={source}",
        f"--target={target}",
        "--signature-type=http",
        f"--host={HOST}",
        f"--port={port}",
    ]
    # gunicorn keeps a control socket in XDG_RUNTIME_DIR, so each server gets one.
    environment = clean_environment(
        {"DATA_DIR": str(data_dir), "XDG_RUNTIME_DIR": str(runtime), **(settings or {})}
    )

    log = log_path.open("wb")
    process = subprocess.Popen(  # noqa: S603 - fixed command
        command,
        cwd=work_dir,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_ready(port, process, log_path)
        yield port
    finally:
        _stop(process)
        log.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {process.returncode}; see {log}"
            )
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=2)
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server on port {port} did not start; see {log}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _fill_cache(port: int, keys: Sequence[str]) -> None:
    """Verify each key once, one at a time, so the rounds start with a full cache."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        for key in keys:
            connection.request("GET", "/verify", headers={"X-API-Key": key})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"GET /verify returned {response.status}")
    finally:
        connection.close()


def _drive(port: int, keys: Sequence[str], clients: int, seconds: float) -> _Load:
    """Send ``GET /verify`` from ``clients`` threads for ``seconds`` and merge."""
    loads = [_Load() for _ in range(clients)]
    deadline = time.perf_counter() + seconds
    threads = [
        threading.Thread(target=_client, args=(port, keys[n::clients], deadline, load))
        for n, load in enumerate(loads)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    merged = _Load(seconds=time.perf_counter() - start)
    for load in loads:
        merged.requests += load.requests
        merged.errors += load.errors
        merged.latencies += load.latencies
    return merged


def _client(port: int, keys: Sequence[str], deadline: float, load: _Load) -> None:
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    clock = time.perf_counter
    for key in itertools.cycle(keys):
        start = clock()
        if start >= deadline:
            break
        try:
            connection.request("GET", "/verify", headers={"X-API-Key": key})
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(HOST, port, timeout=30)
            ok = False
        load.latencies.append(clock() - start)
        load.requests += ok
        load.errors += not ok
    connection.close()
