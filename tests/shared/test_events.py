import uuid
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.apikeys import generate_api_key
from shared.events import (
    AuditEvent,
    DirectAuditSink,
    PubSubAuditSink,
    is_valid_event_type,
    new_event,
)
from shared.store._duckdb import DuckDBStore

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _event(**fields: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "event_type": "api_key.created",
        "tenant_id": "acme",
        "occurred_at": NOW,
        "details": {"api_key_id": "key_1"},
    } | fields
    return AuditEvent(**values)


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    return DuckDBStore(tmp_path / "tenants.duckdb")


# Schema


def test_new_event_fills_id_and_time() -> None:
    event = new_event("tenant.created", tenant_id="acme", now=NOW)

    assert event.event_id.version == 4
    assert event.occurred_at == NOW


def test_new_event_truncates_user_agent() -> None:
    event = new_event("tenant.created", user_agent="a" * 2000, now=NOW)

    assert event.user_agent == "a" * 512


def test_message_round_trip() -> None:
    event = _event(details={"count": 3, "scopes": ["api"]})

    assert AuditEvent.from_message(event.to_message()) == event


def test_naive_timestamp_rejected() -> None:
    with pytest.raises(ValidationError, match="occurred_at must carry a timezone"):
        _event(occurred_at=datetime(2025, 3, 1, 12, 0))


def test_timestamp_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))

    event = _event(occurred_at=datetime(2025, 3, 1, 14, 0, tzinfo=plus_two))

    assert event.occurred_at == NOW
    assert event.occurred_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "event_type", ["api_key.created", "authentication.failed", "a.b.c", "x1.y_2"]
)
def test_event_type_accepted(event_type: str) -> None:
    assert _event(event_type=event_type).event_type == event_type


@pytest.mark.parametrize(
    "event_type",
    [
        "created",
        "Api_key.created",
        "api-key.created",
        "api_key.",
        ".created",
        "api_key..created",
        "1api.created",
        "api_key.created\n",
        "api_key.created; drop",
        "a." + "b" * 63,
    ],
)
def test_event_type_rejected(event_type: str) -> None:
    with pytest.raises(ValidationError):
        _event(event_type=event_type)


@pytest.mark.parametrize(
    ("event_type", "valid"),
    [("api_key.created", True), ("created", False), ("api_key.created\n", False)],
)
def test_is_valid_event_type(event_type: str, valid: bool) -> None:
    assert is_valid_event_type(event_type) is valid


def test_details_over_size_rejected() -> None:
    with pytest.raises(ValidationError, match="at most 8192 bytes"):
        _event(details={"blob": "x" * 9000})


def test_details_near_size_accepted() -> None:
    assert _event(details={"blob": "x" * 8000}).details["blob"] == "x" * 8000


@pytest.mark.parametrize(
    "build",
    [
        lambda key: {"key": key},
        lambda key: {"nested": {"list": ["ok", f"prefix {key} suffix"]}},
        lambda key: {key: 1},
    ],
    ids=["value", "nested", "name"],
)
def test_details_with_api_key_rejected(build: Callable[[str], dict[str, Any]]) -> None:
    details = build(generate_api_key("acme"))

    with pytest.raises(ValidationError, match="details must not contain an API key"):
        _event(details=details)


def test_extra_field_rejected() -> None:
    with pytest.raises(ValidationError):
        _event(api_key="anything")


def test_tenant_id_length_capped() -> None:
    with pytest.raises(ValidationError):
        _event(tenant_id="t" * 51)


def test_from_message_invalid_json_raises() -> None:
    with pytest.raises(ValidationError):
        AuditEvent.from_message(b"{not json")


def test_event_is_frozen() -> None:
    event = _event()

    with pytest.raises(ValidationError):
        event.tenant_id = "globex"  # type: ignore[misc]


# Sinks


class FakePublisher:
    """Records publish calls and returns futures resolved with ``outcome``."""

    def __init__(self, outcome: BaseException | None = None) -> None:
        self.outcome = outcome
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    def publish(
        self, topic: str, data: bytes, *, retry: Any, timeout: float, **attributes: str
    ) -> Future[str]:
        self.published.append((topic, data, attributes))
        future: Future[str] = Future()
        if self.outcome is None:
            future.set_result("message-1")
        else:
            future.set_exception(self.outcome)
        return future


def test_direct_sink_writes_store(store: DuckDBStore) -> None:
    event = _event()

    DirectAuditSink(store).emit(event)

    assert store.list_audit_events("acme") == [event]


def test_pubsub_sink_publishes(store: DuckDBStore) -> None:
    publisher = FakePublisher()
    sink = PubSubAuditSink(
        "proj", "audit-events", store, client_factory=lambda: publisher
    )
    event = _event()

    sink.emit(event)

    topic, data, attributes = publisher.published[0]
    assert topic == "projects/proj/topics/audit-events"
    assert AuditEvent.from_message(data) == event
    assert attributes == {"event_type": "api_key.created", "tenant_id": "acme"}
    assert store.list_audit_events(None) == []


def test_pubsub_sink_omits_empty_tenant_attribute(store: DuckDBStore) -> None:
    publisher = FakePublisher()
    sink = PubSubAuditSink(
        "proj", "audit-events", store, client_factory=lambda: publisher
    )

    sink.emit(_event(tenant_id=None))

    assert publisher.published[0][2] == {"event_type": "api_key.created"}


def test_pubsub_sink_builds_client_once(store: DuckDBStore) -> None:
    built: list[FakePublisher] = []

    def factory() -> FakePublisher:
        built.append(FakePublisher())
        return built[-1]

    sink = PubSubAuditSink("proj", "audit-events", store, client_factory=factory)
    sink.emit(_event())
    sink.emit(_event())

    assert len(built) == 1
    assert len(built[0].published) == 2


def test_pubsub_sink_falls_back_when_future_fails(store: DuckDBStore) -> None:
    publisher = FakePublisher(outcome=TimeoutError("publish timed out"))
    sink = PubSubAuditSink(
        "proj", "audit-events", store, client_factory=lambda: publisher
    )
    event = _event()

    sink.emit(event)

    assert store.list_audit_events(None) == [event]


def test_pubsub_sink_falls_back_when_client_fails(store: DuckDBStore) -> None:
    def no_client() -> Any:
        raise RuntimeError("no credentials")

    sink = PubSubAuditSink("proj", "audit-events", store, client_factory=no_client)
    event = _event()

    sink.emit(event)

    assert store.list_audit_events(None) == [event]


def test_pubsub_fallback_then_redelivery_stores_once(store: DuckDBStore) -> None:
    # The publish may have gone through after all: the writer then stores the
    # same event_id again, which must not duplicate it.
    publisher = FakePublisher(outcome=TimeoutError("publish timed out"))
    sink = PubSubAuditSink(
        "proj", "audit-events", store, client_factory=lambda: publisher
    )
    event = _event()
    sink.emit(event)

    written = store.insert_audit_events([AuditEvent.from_message(event.to_message())])

    assert written == 0
    assert len(store.list_audit_events(None)) == 1
