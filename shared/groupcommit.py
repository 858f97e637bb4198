"""Group commit: concurrent callers share one write, and each waits for it.

``GroupCommit.submit(item)`` adds the item to the open batch and blocks until
the batch has been written. It then returns the item's own result, or raises
the write's exception in every caller of the batch, so a caller never
reports success for an item that was not written.

The first caller of a batch (its leader) waits for others to join until the
batch is as large as the previous batch was, for ``window_seconds`` at most.
It then waits for the previous batch's write to finish and writes its own,
and items that arrive meanwhile still join it, up to ``max_batch``. So a
caller waits at most ``window_seconds`` plus two writes, and a lone caller
waits only when the previous batch had more than one item. Batches grow with
the number of callers at once: those that arrive during a write share the
next one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class _Batch(Generic[T, R]):
    items: list[T] = field(default_factory=list)
    results: Future[Sequence[R]] = field(default_factory=Future)


class GroupCommit(Generic[T, R]):
    """Gathers items from concurrent threads and writes each batch with one call.

    ``write`` receives the items of a batch in the order they were submitted
    and returns one result per item, in the same order.
    """

    def __init__(
        self,
        write: Callable[[Sequence[T]], Sequence[R]],
        *,
        window_seconds: float,
        max_batch: int,
    ) -> None:
        if window_seconds < 0:
            raise ValueError("window_seconds must be 0 or more")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._write = write
        self._window = window_seconds
        self._max_batch = max_batch
        self._lock = threading.Lock()
        # Notified when the open batch reaches the expected or the maximum
        # size, so its leader stops waiting.
        self._filled = threading.Condition(self._lock)
        self._open: _Batch[T, R] | None = None
        # Size of the last batch taken for writing: how many callers a leader
        # waits for.
        self._expected = 1
        # Held while a batch is written: one write at a time.
        self._writing = threading.Lock()

    def submit(self, item: T) -> R:
        """Write ``item`` in a batch; return its result or raise the write's error."""
        with self._lock:
            batch = self._open
            is_leader = batch is None
            if batch is None:
                batch = self._open = _Batch()
            position = len(batch.items)
            batch.items.append(item)
            if len(batch.items) >= self._max_batch:
                self._open = None
                self._filled.notify_all()
            elif len(batch.items) >= self._expected:
                self._filled.notify_all()
        if is_leader:
            self._lead(batch)
        return batch.results.result()[position]

    def _lead(self, batch: _Batch[T, R]) -> None:
        deadline = time.monotonic() + self._window
        with self._lock:
            while self._open is batch and len(batch.items) < self._expected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._filled.wait(remaining)
        with self._writing:
            with self._lock:
                if self._open is batch:
                    self._open = None
                self._expected = len(batch.items)
            try:
                results = self._write(batch.items)
                if len(results) != len(batch.items):
                    raise RuntimeError(
                        f"write returned {len(results)} results for "
                        f"{len(batch.items)} items"
                    )
            except BaseException as exc:  # every caller of the batch gets it
                batch.results.set_exception(exc)
            else:
                batch.results.set_result(results)
