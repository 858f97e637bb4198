"""Connection leases: one process's connection to a DuckDB file, kept for a burst.

A lease belongs to one file in one process and is shared by every store on
that file in the process. ``Lease.connection`` serialises the process's
operations on the file (``Lease.lock``) and yields the open connection,
opening it first when needed. The module docstring of ``shared.store._duckdb``
gives the timing and its bounds; this one describes the mechanics.

Taking turns. DuckDB lets one process at a time open a file for writing,
with an fcntl lock on the file. A failed open still costs about 3 ms of CPU
(DuckDB 2.0.1), so waiting processes do not poll DuckDB. They take turns
through an flock on a sidecar file (``<file>.lock``), which costs one system
call to try. A process takes the flock before it opens the DuckDB file and
releases it after closing the file, and a waiting process tries it every 1
to 2 ms. A process that opens the file without the sidecar (a plain
``duckdb.connect``) makes the open of the process whose turn it is fail.
That process then retries DuckDB's own lock with a backoff of 2 ms doubling
to 20 ms.

Releasing. A daemon thread per open lease wakes when the connection has been
idle for ``IDLE_SECONDS``, closes it and exits, so an idle process keeps no
file open and runs no watcher. Being a daemon, the thread never keeps the
process alive, and ``atexit`` closes the leases still open at exit. Under
sustained load an operation that finds the connection open for
``MAX_HOLD_SECONDS`` closes it, releases the turn and sleeps
``HANDOFF_PAUSE_SECONDS`` before it tries again. The pause is longer than a
waiting process's polling interval, so that process gets the turn.

Forking. A child process does not inherit the fcntl lock, so it must never
use, or close, a connection open at the fork (closing writes a checkpoint).
After a fork the child forgets every lease's connection and keeps the
object referenced. NOTE: if that object is finalized when the child exits,
DuckDB may still write to the file. Nothing in this project forks with a
lease open: gunicorn forks its workers before any request opens the store.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from shared.store import StoreError, TransientStoreError

_log = logging.getLogger(__name__)

# The connection closes after this long without an operation.
IDLE_SECONDS = 0.05
# An operation reopens a connection open for longer than this, after a pause.
MAX_HOLD_SECONDS = 0.5
HANDOFF_PAUSE_SECONDS = 0.005
# How often a waiting process tries the sidecar lock, before jitter.
_TURN_POLL_SECONDS = 0.001
# Backoff on DuckDB's own lock: first and longest delay, before jitter.
_FIRST_RETRY_SECONDS = 0.002
_MAX_RETRY_SECONDS = 0.02
# How long atexit waits for an operation still running in a daemon thread.
_EXIT_WAIT_SECONDS = 1.0


class Lease:
    """This process's connection to one DuckDB file, opened on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self._turn_path = path.with_name(path.name + ".lock")
        self._turn_fd: int | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        # Device and inode of the file the connection has open.
        self._file_id: tuple[int, int] | None = None
        self._opened_at = 0.0
        self._last_used = 0.0
        self._watcher: threading.Thread | None = None

    @property
    def is_open(self) -> bool:
        return self._con is not None

    @contextmanager
    def connection(self, timeout_seconds: float) -> Iterator[duckdb.DuckDBPyConnection]:
        """Yield the open connection; other threads of the process wait meanwhile.

        Raises TransientStoreError if the file stays busy for ``timeout_seconds``
        and StoreError if it cannot be opened at all. The caller must leave the
        connection open and without an open transaction.
        """
        with self.lock:
            con = self._acquire(timeout_seconds)
            try:
                yield con
            finally:
                self._last_used = time.monotonic()

    def rollback(self, con: duckdb.DuckDBPyConnection) -> None:
        """Roll back the open transaction, or close the connection if that fails.

        Call it from inside ``connection``, which holds ``lock``.
        """
        try:
            con.execute("ROLLBACK")
        except duckdb.Error as exc:
            _log.warning(
                "rollback on DuckDB file %s failed (%s); closing the connection",
                self.path,
                type(exc).__name__,
            )
            self._close()

    def discard(self) -> None:
        """Close the connection, from inside ``connection`` (holding ``lock``)."""
        self._close()

    def close(self, timeout_seconds: float = _EXIT_WAIT_SECONDS) -> None:
        """Close the connection now, once the running operation, if any, ends."""
        if not self.lock.acquire(timeout=timeout_seconds):
            _log.warning("DuckDB file %s is still in use; left open", self.path)
            return
        try:
            self._close()
        finally:
            self.lock.release()

    def close_if_replaced(self) -> None:
        """Close the connection if the file was deleted or replaced since it opened.

        ``duckdb.connect`` in this process returns a connection to the database
        that is already open under the same path, even if that file is gone.
        """
        with self.lock:
            if self._con is not None and _file_id(self.path) != self._file_id:
                self._close()

    # Opening and closing. The caller holds ``lock``.

    def _acquire(self, timeout_seconds: float) -> duckdb.DuckDBPyConnection:
        if self._con is not None and _file_id(self.path) != self._file_id:
            # Deleted or replaced: the connection would write to the old file.
            self._close()
        held = time.monotonic() - self._opened_at
        if self._con is not None and held >= MAX_HOLD_SECONDS:
            self._close()
            time.sleep(HANDOFF_PAUSE_SECONDS)
        if self._con is None:
            deadline = time.monotonic() + timeout_seconds
            self._take_turn(deadline)
            try:
                self._con = connect_with_retry(self.path, deadline)
            except BaseException:
                self._give_turn()
                raise
            self._file_id = _file_id(self.path)
            self._opened_at = self._last_used = time.monotonic()
            self._watch()
        return self._con

    def _close(self) -> None:
        con, self._con = self._con, None
        try:
            if con is not None:
                con.close()
        finally:
            self._give_turn()

    def _take_turn(self, deadline: float) -> None:
        if self._turn_fd is None:
            try:
                self._turn_fd = os.open(
                    self._turn_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
                )
            except OSError as exc:
                raise StoreError(f"cannot open lock file {self._turn_path}") from exc
        while True:
            try:
                fcntl.flock(self._turn_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if time.monotonic() > deadline:
                self._give_turn()
                raise _busy(self.path)
            time.sleep(_TURN_POLL_SECONDS * (1 + random.random()))  # noqa: S311

    def _give_turn(self) -> None:
        # Closing the descriptor releases the flock. A lease keeps none open
        # between turns, so many store files do not use up descriptors.
        fd, self._turn_fd = self._turn_fd, None
        if fd is not None:
            os.close(fd)

    # Idle release

    def _watch(self) -> None:
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._release_when_idle,
                name=f"duckdb-lease-{self.path.name}",
                daemon=True,
            )
            self._watcher.start()

    def _release_when_idle(self) -> None:
        while True:
            with self.lock:
                wait = 0.0
                if self._con is not None:
                    wait = self._last_used + IDLE_SECONDS - time.monotonic()
                    if wait <= 0:
                        self._close()
                if self._con is None:
                    self._watcher = None
                    return
            time.sleep(wait)

    def _forget_after_fork(self) -> None:
        """Drop the state a forked child inherited, without touching the file."""
        self.lock = threading.Lock()
        if self._con is not None:
            _INHERITED.append(self._con)
            self._con = None
        if self._turn_fd is not None:
            # The parent's descriptor keeps the flock; closing the child's
            # copy of it leaves the lock in place.
            os.close(self._turn_fd)
            self._turn_fd = None
        self._watcher = None


def connect_with_retry(path: Path, deadline: float) -> duckdb.DuckDBPyConnection:
    """Open ``path`` in UTC, retrying DuckDB's lock until ``deadline`` (monotonic).

    Raises TransientStoreError when the deadline passes and StoreError when
    the file cannot be opened for another reason.
    """
    delay = _FIRST_RETRY_SECONDS
    while True:
        try:
            con = duckdb.connect(str(path))
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise StoreError(f"cannot open DuckDB file {path}") from exc
            if time.monotonic() > deadline:
                raise _busy(path) from None
            time.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter
            delay = min(delay * 2, _MAX_RETRY_SECONDS)
    try:
        con.execute("SET TimeZone = 'UTC'")
    except BaseException:
        # An open connection keeps the file locked for every other process.
        con.close()
        raise
    return con


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino


def _busy(path: Path) -> TransientStoreError:
    return TransientStoreError(f"DuckDB file {path} is busy: another process holds it")


_LEASES: dict[Path, Lease] = {}
_LEASES_GUARD = threading.Lock()
# Connections a forked child inherited: kept referenced, never used or closed.
_INHERITED: list[duckdb.DuckDBPyConnection] = []


def lease_for(path: Path) -> Lease:
    """Return the lease that every store on ``path`` in this process shares."""
    resolved = path.resolve()
    with _LEASES_GUARD:
        lease = _LEASES.get(resolved)
        if lease is None:
            lease = _LEASES[resolved] = Lease(resolved)
        return lease


def _close_all() -> None:
    with _LEASES_GUARD:
        leases = list(_LEASES.values())
    # Every lease, open or not: taking its lock also waits for a watcher that
    # is closing the connection. A thread still inside DuckDB when the
    # interpreter finalizes aborts the process.
    for lease in leases:
        lease.close()


def _forget_all_after_fork() -> None:
    global _LEASES_GUARD
    _LEASES_GUARD = threading.Lock()
    for lease in _LEASES.values():
        lease._forget_after_fork()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_forget_all_after_fork)
