import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from shared.groupcommit import GroupCommit
from shared.store import TransientStoreError

# Long enough that a leader waiting for it would stall the test run; the
# leaders below stop waiting long before, or never start.
LONG_WINDOW = 3600.0
# How long a test waits for its threads before it fails.
JOIN_SECONDS = 30.0


class BlockingWrite:
    """Records each batch and returns each item doubled.

    The first write waits until ``release`` is set, so that the test can
    gather callers behind it.
    """

    def __init__(self, *, block_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        if not block_first:
            self.release.set()

    def __call__(self, items: Sequence[int]) -> list[int]:
        if not self.batches:
            assert self.release.wait(JOIN_SECONDS)
        self.batches.append(list(items))
        return [item * 2 for item in items]


class Submitters:
    """Threads that each submit one item; outcomes are results or exceptions."""

    def __init__(self, group: GroupCommit[int, int], items: Sequence[int]) -> None:
        self.outcomes: list[Any] = [None] * len(items)
        self._threads = [
            threading.Thread(target=self._run, args=(group, n, item))
            for n, item in enumerate(items)
        ]
        for thread in self._threads:
            thread.start()

    def join(self) -> list[Any]:
        for thread in self._threads:
            thread.join(JOIN_SECONDS)
        assert not any(thread.is_alive() for thread in self._threads)
        return self.outcomes

    def _run(self, group: GroupCommit[int, int], index: int, item: int) -> None:
        try:
            self.outcomes[index] = group.submit(item)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            self.outcomes[index] = exc


def open_batch_size(group: GroupCommit[int, int]) -> int:
    batch = group._open
    return 0 if batch is None else len(batch.items)


def wait_until(condition: Callable[[], bool]) -> None:
    pause = threading.Event()
    for _ in range(int(JOIN_SECONDS * 100)):
        if condition():
            return
        pause.wait(0.01)
    raise AssertionError("condition not reached")


def write_behind_first(
    write: BlockingWrite, group: GroupCommit[int, int], items: Sequence[int]
) -> list[Any]:
    """Submit 0, then ``items`` while its write is blocked; return their outcomes."""
    first = Submitters(group, [0])
    wait_until(lambda: bool(group._writing.locked()))
    rest = Submitters(group, items)
    wait_until(lambda: open_batch_size(group) == len(items))
    write.release.set()
    first.join()
    return rest.join()


def test_submit_alone_writes_without_waiting() -> None:
    write = BlockingWrite()
    group = GroupCommit(write, window_seconds=LONG_WINDOW, max_batch=10)

    assert group.submit(21) == 42
    assert write.batches == [[21]]


def test_submits_during_write_share_next_batch() -> None:
    write = BlockingWrite(block_first=True)
    group = GroupCommit(write, window_seconds=0.0, max_batch=10)

    outcomes = write_behind_first(write, group, [1, 2, 3, 4, 5])

    assert len(write.batches) == 2
    assert sorted(write.batches[1]) == [1, 2, 3, 4, 5]
    assert outcomes == [2, 4, 6, 8, 10]


def test_leader_waits_for_previous_batch_size() -> None:
    write = BlockingWrite(block_first=True)
    group = GroupCommit(write, window_seconds=LONG_WINDOW, max_batch=10)
    write_behind_first(write, group, [1, 2, 3])

    # The last batch had 3 items, so the next leader waits for 3.
    outcomes = Submitters(group, [4, 5, 6]).join()

    assert sorted(write.batches[2]) == [4, 5, 6]
    assert len(write.batches) == 3
    assert outcomes == [8, 10, 12]


def test_max_batch_caps_batches() -> None:
    write = BlockingWrite(block_first=True)
    group = GroupCommit(write, window_seconds=0.0, max_batch=2)
    first = Submitters(group, [0])
    wait_until(lambda: bool(group._writing.locked()))
    rest = Submitters(group, [1, 2, 3, 4, 5])
    write.release.set()
    first.join()

    outcomes = rest.join()

    assert max(len(batch) for batch in write.batches) == 2
    assert sorted(item for batch in write.batches for item in batch) == list(range(6))
    assert outcomes == [2, 4, 6, 8, 10]


def test_failed_write_raises_in_every_caller() -> None:
    def failing(items: Sequence[int]) -> list[int]:
        raise TransientStoreError("store busy")

    group = GroupCommit(failing, window_seconds=0.0, max_batch=3)

    outcomes = Submitters(group, [1, 2, 3, 4]).join()

    for outcome in outcomes:
        assert isinstance(outcome, TransientStoreError)


def test_failed_batch_fails_all_its_callers() -> None:
    write = BlockingWrite(block_first=True)
    failures: list[list[int]] = []

    def fail_second(items: Sequence[int]) -> list[int]:
        if write.batches:
            failures.append(list(items))
            raise TransientStoreError("store busy")
        return write(items)

    group = GroupCommit(fail_second, window_seconds=0.0, max_batch=10)

    outcomes = write_behind_first(write, group, [1, 2, 3])

    assert sorted(failures[0]) == [1, 2, 3]
    for outcome in outcomes:
        assert isinstance(outcome, TransientStoreError)


def test_wrong_result_count_raises() -> None:
    group: GroupCommit[int, int] = GroupCommit(
        lambda items: [], window_seconds=0.0, max_batch=1
    )

    with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
        group.submit(1)


@pytest.mark.parametrize(
    ("window", "max_batch", "message"),
    [(-1.0, 10, "window_seconds"), (0.0, 0, "max_batch")],
)
def test_invalid_settings_raise(window: float, max_batch: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GroupCommit(BlockingWrite(), window_seconds=window, max_batch=max_batch)
