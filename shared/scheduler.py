"""Cloud Scheduler's part, locally: publish each schedule's message on its slots.

A schedule in the topology (``schedules:``) names a topic, a five-field cron
expression and the time zone it is read in. A *slot* is an instant that the
expression names; ``croniter`` 7.0.0 computes them, including around daylight
saving changes. Each message carries its slot as the ``scheduled_for``
attribute (RFC 3339, UTC) and the schedule's name as ``schedule``, and the
schedule's payload as JSON data. Consumers name their work after the slot,
never after the clock, so a late or repeated message still does the work of
its own slot.

``Scheduler`` runs while the local stack is up. It publishes no slot from
before it started, as Cloud Scheduler does not. When it falls behind (the
machine slept through several slots), it publishes only the latest slot and
logs how many it skipped. ``convergence schedule run NAME`` publishes the
current slot (the latest at or before now) at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from shared.topology import Schedule

__all__ = [
    "Publish",
    "Scheduler",
    "current_slot",
    "emulator_publisher",
    "format_slot",
    "next_slot",
    "publish_slot",
]

_log = logging.getLogger(__name__)

# Publish(schedule, slot) sends one message; an exception is logged.
Publish = Callable[[Schedule, datetime], object]

_MAX_WAIT_SECONDS = 30.0


def next_slot(schedule: Schedule, after: datetime) -> datetime:
    """Return the first slot strictly after ``after``, in UTC."""
    local = _aware(after).astimezone(ZoneInfo(schedule.time_zone))
    found: datetime = croniter(schedule.schedule, local).get_next(datetime)
    return found.astimezone(UTC)


def current_slot(schedule: Schedule, now: datetime) -> datetime:
    """Return the latest slot at or before ``now``, in UTC."""
    # get_prev looks strictly before its start, and slots fall on whole
    # minutes. So the start is ``now`` cut to whole seconds plus one second:
    # after a slot at ``now``, and not past the next slot.
    start = _aware(now).replace(microsecond=0) + timedelta(seconds=1)
    local = start.astimezone(ZoneInfo(schedule.time_zone))
    found: datetime = croniter(schedule.schedule, local).get_prev(datetime)
    return found.astimezone(UTC)


def format_slot(slot: datetime) -> str:
    """Return ``slot`` as the ``scheduled_for`` attribute: RFC 3339 in UTC, ``Z``."""
    return _aware(slot).astimezone(UTC).isoformat().replace("+00:00", "Z")


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("times must be timezone-aware datetimes")
    return value


class Scheduler:
    """Publishes each schedule's slots as they come, from its own thread."""

    def __init__(
        self,
        schedules: Sequence[Schedule],
        publish: Publish,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._schedules = list(schedules)
        self._publish = publish
        self._clock = clock
        start = clock()
        self._next = {s.name: next_slot(s, start) for s in self._schedules}

    def next_slots(self) -> dict[str, datetime]:
        """Return each schedule's next slot to publish."""
        return dict(self._next)

    def tick(self, now: datetime) -> list[tuple[str, datetime]]:
        """Publish every schedule whose next slot is at or before ``now``.

        Returns the (schedule name, slot) pairs published.
        """
        published = []
        for schedule in self._schedules:
            due = self._next[schedule.name]
            if due > now:
                continue
            slot = current_slot(schedule, now)
            skipped = self._count_slots(schedule, due, slot)
            if skipped:
                _log.warning(
                    "%s: skipped %d missed slots from %s; publishing %s only",
                    schedule.name,
                    skipped,
                    format_slot(due),
                    format_slot(slot),
                )
            self._next[schedule.name] = next_slot(schedule, slot)
            if self._send(schedule, slot):
                published.append((schedule.name, slot))
        return published

    def run(self, stop: threading.Event) -> None:
        """Publish slots until ``stop`` is set."""
        if not self._schedules:
            return
        while not stop.is_set():
            now = self._clock()
            self.tick(now)
            wait = (min(self._next.values()) - self._clock()).total_seconds()
            stop.wait(min(max(wait, 0.0), _MAX_WAIT_SECONDS))

    def _send(self, schedule: Schedule, slot: datetime) -> bool:
        try:
            self._publish(schedule, slot)
        except Exception:  # noqa: BLE001 - one failed publish must not stop the rest
            _log.exception(
                "%s: publishing slot %s to %s failed",
                schedule.name,
                format_slot(slot),
                schedule.topic,
            )
            return False
        _log.info(
            "%s: published slot %s to %s",
            schedule.name,
            format_slot(slot),
            schedule.topic,
        )
        return True

    @staticmethod
    def _count_slots(schedule: Schedule, first: datetime, last: datetime) -> int:
        """Return how many slots lie from ``first`` up to, not including, ``last``."""
        count = 0
        slot = first
        while slot < last:
            count += 1
            slot = next_slot(schedule, slot)
        return count


def publish_slot(
    publisher: Any,
    project_id: str,
    schedule: Schedule,
    slot: datetime,
    *,
    timeout_seconds: float = 30.0,
) -> str:
    """Publish the schedule's message for ``slot``; return the message id.

    Raises the client's error, or TimeoutError when Pub/Sub does not confirm
    the message within ``timeout_seconds``.
    """
    from google.api_core import retry

    topic = f"projects/{project_id}/topics/{schedule.topic}"
    data = json.dumps(schedule.payload, sort_keys=True).encode("utf-8")
    future = publisher.publish(
        topic,
        data,
        retry=retry.Retry(initial=0.1, maximum=1.0, timeout=timeout_seconds),
        timeout=timeout_seconds,
        scheduled_for=format_slot(slot),
        schedule=schedule.name,
    )
    message_id: str = future.result(timeout=timeout_seconds)
    return message_id


@contextlib.contextmanager
def _emulator_host(host: str) -> Iterator[None]:
    # The client reads PUBSUB_EMULATOR_HOST when it is built, and only then
    # opens an unauthenticated channel.
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    try:
        yield
    finally:
        if previous is None:
            del os.environ["PUBSUB_EMULATOR_HOST"]
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous


def emulator_publisher(host: str) -> Any:
    """Return a publisher client of the Pub/Sub emulator at ``host``."""
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    with _emulator_host(host):
        return pubsub_v1.PublisherClient()
