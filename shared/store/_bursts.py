"""Helpers that both backends' ``find_event_bursts`` share."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from shared.store import BURST_GROUP_COLUMNS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def check_group_columns(group_by: Sequence[str]) -> tuple[str, ...]:
    """Return ``group_by`` as a tuple if every name is a groupable audit column."""
    # The names go into the SQL text, so only known columns pass.
    unknown = sorted(set(group_by) - set(BURST_GROUP_COLUMNS))
    if unknown or len(set(group_by)) != len(group_by):
        raise ValueError(
            f"group_by must be distinct names drawn from {list(BURST_GROUP_COLUMNS)}"
        )
    return tuple(group_by)


def window_microseconds(window: timedelta) -> int:
    micros = window // timedelta(microseconds=1)
    if micros <= 0:
        raise ValueError("window must be positive")
    return micros


def bucket_start(bucket: int, window_us: int) -> datetime:
    """Return the start of bucket number ``bucket`` of ``window_us`` microseconds."""
    return _EPOCH + timedelta(microseconds=bucket * window_us)
