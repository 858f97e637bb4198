"""A schedule fired through the emulator reaches expiry_alerter, and its alert
arrives at the stack's SMTP server, webhook receiver and ``alerts`` topic once.

``convergence schedule run`` publishes the hourly-alert-check message for the
current slot, as the stack's scheduler does on the hour. When the hour turns
during the test, the scheduler's own check may send the alert first, so the
tests count sends over every check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_stack import RunningStack, Tenant, wait_for

pytestmark = pytest.mark.e2e

CLI = Path(sys.executable).parent / "convergence"
SCHEDULE = "hourly-alert-check"
CONTACT = "ops@e2e-alerts.test"


@pytest.fixture(scope="module")
def tenant(stack: RunningStack) -> Tenant:
    return stack.create_tenant("e2e_alerts", contact_email=CONTACT)


@pytest.fixture(scope="module")
def key_id(stack: RunningStack, tenant: Tenant) -> str:
    response = stack.call(
        "POST",
        "/keys",
        key=tenant.admin_key,
        body={"name": "short-lived", "scopes": ["api"], "expires_in_days": 3},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["api_key_id"])


def run_schedule(stack: RunningStack) -> dict[str, Any]:
    """Run ``convergence schedule run``; return its JSON document."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PUBSUB_", "SMTP_", "SLACK_"))
    }
    environment["PUBSUB_EMULATOR_HOST"] = stack.state["emulator_host"]
    environment["PUBSUB_PROJECT_ID"] = stack.state["project"]
    result = subprocess.run(
        [str(CLI), "--json", "schedule", "run", SCHEDULE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def checks_done(stack: RunningStack) -> list[dict[str, str]]:
    """Return the labels of every "alert check done" line of expiry_alerter."""
    return [
        entry.get("logging.googleapis.com/labels", {})
        for entry in stack.log_entries("expiry_alerter")
        if entry["message"] == "alert check done"
    ]


def check_done(stack: RunningStack, message_id: str) -> dict[str, str] | None:
    """Return the labels of the check that handled message ``message_id``."""
    for labels in checks_done(stack):
        if labels.get("cloud_event_id") == message_id:
            return labels
    return None


@pytest.fixture(scope="module")
def first_run(stack: RunningStack, key_id: str) -> dict[str, Any]:
    document = run_schedule(stack)
    wait_for(
        lambda: check_done(stack, document["message_id"]),
        "expiry_alerter to finish the scheduled check",
    )
    return document


def alert_header(key_id: str) -> str:
    return f"X-Convergence-Alert: api_key.expiring:{key_id}:7d"


def test_schedule_reaches_alerter(
    stack: RunningStack, first_run: dict[str, Any]
) -> None:
    labels = check_done(stack, first_run["message_id"])
    sent = sum(int(check["sent"]) for check in checks_done(stack))

    assert labels is not None
    assert labels["scheduled_for"].replace("+00:00", "Z") == first_run["scheduled_for"]
    assert labels["failed"] == "0"
    assert sent == 3


def test_email_printed_by_smtp_server(
    stack: RunningStack, key_id: str, first_run: dict[str, Any]
) -> None:
    lines = stack.lines("smtp")

    assert lines.count(alert_header(key_id)) == 1
    assert f"To: {CONTACT}" in lines


def test_slack_message_printed(
    stack: RunningStack, key_id: str, first_run: dict[str, Any]
) -> None:
    mentions = [line for line in stack.lines("webhook") if key_id in line]

    assert mentions


@pytest.fixture(scope="module")
def subscriber(stack: RunningStack) -> Iterator[Any]:
    from google.cloud import pubsub_v1

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUBSUB_EMULATOR_HOST", stack.state["emulator_host"])
        client = pubsub_v1.SubscriberClient()
    yield client
    client.close()


def test_alert_on_alerts_topic(
    stack: RunningStack, subscriber: Any, key_id: str, first_run: dict[str, Any]
) -> None:
    path = subscriber.subscription_path(stack.state["project"], "alerts-pull")
    response = subscriber.pull(subscription=path, max_messages=10, timeout=30)
    documents = [json.loads(item.message.data) for item in response.received_messages]

    assert [document["alert_key"] for document in documents] == [
        f"api_key.expiring:{key_id}:7d"
    ]
    assert documents[0]["facts"]["api_key_id"] == key_id


def test_alert_sent_audited(
    stack: RunningStack, tenant: Tenant, first_run: dict[str, Any]
) -> None:
    def channels() -> list[str] | None:
        rows = stack.store().list_audit_events(
            tenant.tenant_id, event_type="alert.sent"
        )
        found = sorted(row.details["channel"] for row in rows)
        return found if len(found) >= 3 else None

    assert wait_for(channels, "three alert.sent rows") == ["email", "pubsub", "slack"]


def test_second_run_sends_nothing_new(
    stack: RunningStack, key_id: str, first_run: dict[str, Any]
) -> None:
    second = run_schedule(stack)
    labels = wait_for(
        lambda: check_done(stack, second["message_id"]),
        "expiry_alerter to finish the second check",
    )

    assert labels["sent"] == "0"
    assert sum(int(check["sent"]) for check in checks_done(stack)) == 3
    assert stack.lines("smtp").count(alert_header(key_id)) == 1


def test_output_has_no_errors(stack: RunningStack) -> None:
    stack.stop()
    markers = ('"severity": "ERROR"', '"severity": "CRITICAL"', "[ERROR]", "Traceback")

    errors = [
        line for line in stack.output().splitlines() if any(m in line for m in markers)
    ]

    assert errors == []
