"""The local scheduler: slots from cron and time zone, published on time.

The clock is injected, and the process time zone is 14 hours ahead of UTC, so
a slot that followed local time instead of the schedule's zone would move.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pubsub_emulator import PROJECT, PubSubEmulator, emulator_available, shared_emulator

from shared.scheduler import (
    Scheduler,
    current_slot,
    format_slot,
    next_slot,
    publish_slot,
)
from shared.topology import Schedule

HOURLY = Schedule(name="hourly", topic="alert-checks", schedule="0 * * * *")
BERLIN_3AM = Schedule(
    name="nightly",
    topic="backup-requests",
    schedule="0 3 * * *",
    time_zone="Europe/Berlin",
    payload={"requested_by": "nightly"},
)


@pytest.fixture(autouse=True)
def far_time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as patch:
        patch.setenv("TZ", "Pacific/Kiritimati")
        time.tzset()
        yield
    time.tzset()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Slots


def test_next_slot_strictly_after() -> None:
    assert next_slot(HOURLY, at("2026-03-02 12:00")) == at("2026-03-02 13:00")


def test_current_slot_includes_now() -> None:
    assert current_slot(HOURLY, at("2026-03-02 12:00")) == at("2026-03-02 12:00")


def test_current_slot_before_next() -> None:
    now = at("2026-03-02 12:59:59.999999")

    assert current_slot(HOURLY, now) == at("2026-03-02 12:00")


def test_slot_read_in_schedule_zone() -> None:
    # 03:00 in Berlin is 02:00 UTC in winter and 01:00 UTC in summer.
    winter = current_slot(BERLIN_3AM, at("2026-03-02 09:00"))
    summer = current_slot(BERLIN_3AM, at("2026-07-02 09:00"))

    assert winter == at("2026-03-02 02:00")
    assert summer == at("2026-07-02 01:00")


def test_slot_formatted_utc() -> None:
    slot = datetime.fromisoformat("2026-03-02T03:00:00+01:00")

    assert format_slot(slot) == "2026-03-02T02:00:00Z"


def test_naive_time_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_slot(HOURLY, datetime(2026, 3, 2, 12))


# Publishing on time


class Recorder:
    def __init__(self) -> None:
        self.published: list[tuple[str, datetime]] = []

    def __call__(self, schedule: Schedule, slot: datetime) -> None:
        self.published.append((schedule.name, slot))


def test_nothing_before_first_slot() -> None:
    recorder = Recorder()
    scheduler = Scheduler([HOURLY], recorder, clock=lambda: at("2026-03-02 11:59:30"))

    scheduler.tick(at("2026-03-02 11:59:59.999"))

    assert recorder.published == []


def test_publishes_at_slot() -> None:
    recorder = Recorder()
    scheduler = Scheduler([HOURLY], recorder, clock=lambda: at("2026-03-02 11:59:30"))

    scheduler.tick(at("2026-03-02 12:00"))
    scheduler.tick(at("2026-03-02 12:00:30"))

    assert recorder.published == [("hourly", at("2026-03-02 12:00"))]
    assert scheduler.next_slots() == {"hourly": at("2026-03-02 13:00")}


def test_start_on_slot_waits_for_next() -> None:
    # A slot at the start instant is not caught up, as with Cloud Scheduler.
    recorder = Recorder()
    scheduler = Scheduler([HOURLY], recorder, clock=lambda: at("2026-03-02 12:00"))

    scheduler.tick(at("2026-03-02 12:00"))

    assert recorder.published == []


def test_late_tick_publishes_latest_only(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    scheduler = Scheduler([HOURLY], recorder, clock=lambda: at("2026-03-02 11:59"))

    scheduler.tick(at("2026-03-02 15:10"))

    assert recorder.published == [("hourly", at("2026-03-02 15:00"))]
    assert "skipped 3 missed slots" in caplog.text


def test_failed_publish_keeps_others() -> None:
    recorder = Recorder()

    def publish(schedule: Schedule, slot: datetime) -> None:
        if schedule.name == "hourly":
            raise ConnectionError("emulator down")
        recorder(schedule, slot)

    scheduler = Scheduler(
        [HOURLY, BERLIN_3AM], publish, clock=lambda: at("2026-03-02 01:30")
    )
    published = scheduler.tick(at("2026-03-02 02:00"))

    assert published == [("nightly", at("2026-03-02 02:00"))]
    assert scheduler.next_slots()["hourly"] == at("2026-03-02 03:00")


def test_run_publishes_then_stops() -> None:
    # Each reading of the clock is 50 ms later, from 200 ms before the slot.
    readings = (
        at("2026-03-02 11:59:59.8") + i * timedelta(milliseconds=50)
        for i in range(1000)
    )
    stop = threading.Event()
    recorder = Recorder()

    def publish(schedule: Schedule, slot: datetime) -> None:
        recorder(schedule, slot)
        stop.set()

    scheduler = Scheduler([HOURLY], publish, clock=lambda: next(readings))
    worker = threading.Thread(target=scheduler.run, args=(stop,))
    worker.start()
    worker.join(timeout=30)

    assert not worker.is_alive()
    assert recorder.published == [("hourly", at("2026-03-02 12:00"))]


# A real publish


@pytest.fixture(scope="module")
def pubsub(tmp_path_factory: pytest.TempPathFactory) -> PubSubEmulator:
    if not emulator_available():
        pytest.skip("the Pub/Sub emulator needs gcloud and java on PATH")
    return shared_emulator(tmp_path_factory.mktemp("pubsub"))


def test_message_carries_slot(pubsub: PubSubEmulator) -> None:
    topic = f"backup-requests-{uuid.uuid4().hex[:8]}"
    pubsub.topic(topic)
    schedule = BERLIN_3AM.model_copy(update={"topic": topic})
    publisher = pubsub.clients()[0]

    publish_slot(publisher, PROJECT, schedule, at("2026-03-02 02:00"))
    (message,) = pubsub.pull(topic)

    assert dict(message.attributes) == {
        "scheduled_for": "2026-03-02T02:00:00Z",
        "schedule": "nightly",
    }
    assert json.loads(message.data) == {"requested_by": "nightly"}
