"""Fixtures of the alert tests: a DuckDB store, real receivers, a far time zone.

Every test here runs with the process time zone set far from UTC (``TZ``), so
a boundary that depended on local time would move and a test would fail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alert_receivers import SmtpSink, WebhookReceiver
from alert_rows import use_time_zone
from pubsub_emulator import PubSubEmulator, emulator_available, shared_emulator

from shared.store._duckdb import DuckDBStore


@pytest.fixture(autouse=True)
def far_time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from use_time_zone(monkeypatch, "Pacific/Kiritimati")


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    return DuckDBStore(tmp_path / "tenants.duckdb")


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    yield sink
    sink.stop()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def pubsub(tmp_path_factory: pytest.TempPathFactory) -> PubSubEmulator:
    if not emulator_available():
        pytest.skip("the Pub/Sub emulator needs gcloud and java on PATH")
    return shared_emulator(tmp_path_factory.mktemp("pubsub"))


@pytest.fixture
def alerts_topic(pubsub: PubSubEmulator) -> str:
    """A new topic, with a pull subscription of the same name; returns its name."""
    name = f"alerts-{uuid.uuid4().hex[:12]}"
    pubsub.topic(name)
    return name
