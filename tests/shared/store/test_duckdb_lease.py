"""The DuckDB store's connection lease: held for a burst, released to others."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import store_records as records

from shared.events import new_event
from shared.store import TransientStoreError
from shared.store._duckdb import DuckDBStore, held_connection
from shared.store._lease import lease_for

REPO = Path(__file__).resolve().parents[3]
# How long a test waits for a condition or a process before it fails. The
# lease releases within a second; this bound only stops a broken test.
WAIT_SECONDS = 30.0

# Opens the file with plain duckdb.connect, retrying while it is locked.
OPEN_PLAIN = """
import sys, time, duckdb
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        duckdb.connect(sys.argv[1]).close()
        break
    except duckdb.IOException:
        if time.monotonic() > deadline:
            sys.exit("still locked")
        time.sleep(0.01)
print("opened")
"""

# Writes one audit event through a store of its own.
WRITE_ONE = """
import sys
from pathlib import Path
from shared.events import new_event
from shared.store._duckdb import DuckDBStore
store = DuckDBStore(Path(sys.argv[1]), lock_timeout_seconds=float(sys.argv[2]))
print(store.insert_audit_events([new_event("api_key.created", tenant_id="acme")]))
"""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tenants.duckdb"


@pytest.fixture
def store(path: Path) -> DuckDBStore:
    return DuckDBStore(path)


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS * 2,
        check=False,
    )


def wait_until(condition: Callable[[], bool]) -> None:
    pause = threading.Event()
    for _ in range(int(WAIT_SECONDS * 100)):
        if condition():
            return
        pause.wait(0.01)
    raise AssertionError("condition not reached")


def watcher_threads(path: Path) -> list[threading.Thread]:
    name = f"duckdb-lease-{path.name}"
    return [thread for thread in threading.enumerate() if thread.name == name]


@pytest.fixture
def holder(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the file with plain duckdb.connect."""
    process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed code
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
            "print('locked', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "locked\n"
    yield process
    process.kill()
    process.wait(timeout=WAIT_SECONDS)


def test_connection_kept_between_operations(store: DuckDBStore, path: Path) -> None:
    store.get_tenant("acme")

    assert lease_for(path).is_open


def test_idle_file_released_to_plain_open(store: DuckDBStore, path: Path) -> None:
    store.get_tenant("acme")

    opened = run_python(OPEN_PLAIN, str(path), str(WAIT_SECONDS))

    assert opened.stdout == "opened\n"


def test_idle_release_ends_watcher(store: DuckDBStore, path: Path) -> None:
    store.get_tenant("acme")
    assert len(watcher_threads(path)) == 1

    wait_until(lambda: not lease_for(path).is_open)
    wait_until(lambda: not watcher_threads(path))


def test_other_process_gets_turn_under_load(store: DuckDBStore, path: Path) -> None:
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            store.insert_audit_events([new_event("api_key.created", tenant_id="acme")])

    worker = threading.Thread(target=load)
    worker.start()
    try:
        # This process never idles, so only the hold limit lets the other in.
        written = run_python(WRITE_ONE, str(path), str(WAIT_SECONDS))
    finally:
        stop.set()
        worker.join(WAIT_SECONDS)

    assert written.stdout == "1\n", written.stderr


def test_busy_file_raises_transient(path: Path, holder: object) -> None:
    store = DuckDBStore(path, lock_timeout_seconds=0.2)

    with pytest.raises(TransientStoreError, match="is busy"):
        store.get_tenant("acme")


def test_busy_file_leaves_no_connection(path: Path, holder: object) -> None:
    store = DuckDBStore(path, lock_timeout_seconds=0.2)

    with pytest.raises(TransientStoreError):
        store.get_tenant("acme")

    assert not lease_for(path).is_open


def test_replaced_file_not_read_through_old_connection(
    store: DuckDBStore, path: Path
) -> None:
    store.create_tenant(records.tenant(), records.admin())
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()

    fresh = DuckDBStore(path)

    assert fresh.get_tenant("acme") is None


def test_failed_held_block_leaves_store_usable(store: DuckDBStore, path: Path) -> None:
    store.get_tenant("acme")

    with pytest.raises(RuntimeError), held_connection(path) as con:
        con.execute("BEGIN TRANSACTION")
        raise RuntimeError("export failed")

    assert store.get_tenant("acme") is None


def test_threads_share_connection(store: DuckDBStore) -> None:
    def write_many() -> None:
        for _ in range(25):
            store.insert_audit_events([new_event("api_key.created", tenant_id="acme")])

    threads = [threading.Thread(target=write_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)

    assert len(store.list_audit_events("acme", limit=1000)) == 200


def test_stores_on_one_file_share_lease(path: Path) -> None:
    first, second = DuckDBStore(path), DuckDBStore(path.parent / "." / path.name)
    first.create_tenant(records.tenant(), records.admin())

    assert second.get_tenant("acme") == first.get_tenant("acme")
    assert first._lease is second._lease
