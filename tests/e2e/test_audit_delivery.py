"""audit_writer fed by the emulator's push subscription: duplicates and bad input.

Pub/Sub delivers at least once, so the same event can arrive twice. A message
that cannot become an audit event must be acknowledged (HTTP 2xx to the push)
and write nothing: retrying cannot fix it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from e2e_stack import RunningStack, wait_for

from shared.events import new_event
from shared.topology import Subscription, load_topology

pytestmark = pytest.mark.e2e

TOPOLOGY = load_topology()
AUDIT_WRITER = TOPOLOGY.function("audit_writer")
SUBSCRIPTION: Subscription = next(
    sub for sub in TOPOLOGY.subscriptions if sub.push_function == "audit_writer"
)
DROPPED = "dropping malformed audit message"


@pytest.fixture(scope="module")
def pubsub_clients(stack: RunningStack) -> Iterator[tuple[Any, Any]]:
    """Publisher and subscriber clients of the stack's emulator."""
    from google.cloud import pubsub_v1

    with pytest.MonkeyPatch.context() as patch:
        # The clients read the variable when they are built.
        patch.setenv("PUBSUB_EMULATOR_HOST", stack.state["emulator_host"])
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
    yield publisher, subscriber
    subscriber.close()
    publisher.stop()


def publish(
    stack: RunningStack, clients: tuple[Any, Any], data: bytes, **attributes: str
) -> str:
    """Publish to audit_writer's trigger topic; return the message id."""
    publisher = clients[0]
    topic = publisher.topic_path(stack.state["project"], AUDIT_WRITER.trigger_topic)
    message_id: str = publisher.publish(topic, data, **attributes).result(timeout=30)
    return message_id


def writer_messages(stack: RunningStack, label: str, value: str) -> list[str]:
    """Return audit_writer's log messages whose ``label`` equals ``value``."""
    return [
        entry["message"]
        for entry in stack.log_entries("audit_writer")
        if entry.get("logging.googleapis.com/labels", {}).get(label) == value
    ]


def audit_row_count(stack: RunningStack) -> int:
    return len(stack.store().list_audit_events(None, limit=1_000_000))


def test_subscription_matches_topology(
    stack: RunningStack, pubsub_clients: tuple[Any, Any]
) -> None:
    project = stack.state["project"]
    name = f"projects/{project}/subscriptions/{SUBSCRIPTION.name}"
    writer_url = stack.state["functions"]["audit_writer"]["url"]
    assert SUBSCRIPTION.dead_letter_policy is not None
    assert SUBSCRIPTION.retry_policy is not None

    found = pubsub_clients[1].get_subscription(subscription=name)

    assert found.push_config.push_endpoint == (
        f"{writer_url}/projects/{project}/topics/{SUBSCRIPTION.topic}"
    )
    assert found.ack_deadline_seconds == SUBSCRIPTION.ack_deadline_seconds
    assert found.dead_letter_policy.dead_letter_topic == (
        f"projects/{project}/topics/{SUBSCRIPTION.dead_letter_policy.topic}"
    )
    assert found.dead_letter_policy.max_delivery_attempts == (
        SUBSCRIPTION.dead_letter_policy.max_delivery_attempts
    )
    assert found.retry_policy.minimum_backoff.seconds == (
        SUBSCRIPTION.retry_policy.minimum_backoff_seconds
    )


def test_duplicate_event_stored_once(
    stack: RunningStack, pubsub_clients: tuple[Any, Any]
) -> None:
    event = new_event(
        "api_key.created", tenant_id="e2e_redelivery", details={"api_key_id": "k1"}
    )
    event_id = str(event.event_id)
    for _ in range(2):
        publish(stack, pubsub_clients, event.to_message(), event_type=event.event_type)

    wait_for(
        lambda: len(writer_messages(stack, "event_id", event_id)) >= 2,
        "audit_writer to handle both copies",
    )
    messages = writer_messages(stack, "event_id", event_id)
    rows = [
        row
        for row in stack.store().list_audit_events("e2e_redelivery")
        if row.event_id == event.event_id
    ]

    assert sorted(messages) == [
        "audit event already stored; redelivery ignored",
        "audit event stored",
    ]
    assert len(rows) == 1


@dataclass(frozen=True)
class BadDelivery:
    bad_json_id: str
    attributes_only_id: str
    rows_before: int
    rows_after: int


@pytest.fixture(scope="module")
def bad_delivery(stack: RunningStack, pubsub_clients: tuple[Any, Any]) -> BadDelivery:
    """Publish a bad JSON and an attributes-only message, then a good event.

    After the good event is stored, the fixture watches for a while longer:
    a message that was not acknowledged comes back after the retry policy's
    minimum backoff.
    """
    rows_before = audit_row_count(stack)
    bad_json_id = publish(stack, pubsub_clients, b"{not json", event_type="x.y")
    attributes_only_id = publish(
        stack, pubsub_clients, b"", event_type="api_key.created", tenant_id="e2e_x"
    )
    for message_id in (bad_json_id, attributes_only_id):
        wait_for(
            lambda message_id=message_id: writer_messages(
                stack, "cloud_event_id", message_id
            ),
            f"audit_writer to drop message {message_id}",
        )
    sentinel = new_event("tenant.created", tenant_id="e2e_sentinel")
    publish(stack, pubsub_clients, sentinel.to_message())
    wait_for(
        lambda: writer_messages(stack, "event_id", str(sentinel.event_id)),
        "audit_writer to store the sentinel event",
    )
    assert SUBSCRIPTION.retry_policy is not None
    time.sleep(3 * max(SUBSCRIPTION.retry_policy.minimum_backoff_seconds, 1))
    return BadDelivery(
        bad_json_id, attributes_only_id, rows_before, audit_row_count(stack)
    )


def test_bad_json_acknowledged_once(
    stack: RunningStack, bad_delivery: BadDelivery
) -> None:
    messages = writer_messages(stack, "cloud_event_id", bad_delivery.bad_json_id)

    assert messages == [DROPPED + ": invalid audit event fields: body"]


def test_attributes_only_acknowledged_once(
    stack: RunningStack, bad_delivery: BadDelivery
) -> None:
    messages = writer_messages(stack, "cloud_event_id", bad_delivery.attributes_only_id)

    assert messages == [DROPPED + ": the Pub/Sub message has no data"]


def test_bad_messages_write_no_row(bad_delivery: BadDelivery) -> None:
    # The only new row is the sentinel event's.
    assert bad_delivery.rows_after - bad_delivery.rows_before == 1
