"""AlertChecker against a real SMTP server, a webhook receiver and the emulator.

Each test chooses "now" twice: the slot the rules run at, and the clock that
stamps ledger rows and ages claims.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import alert_rows as rows
import pytest
from alert_receivers import SmtpSink, WebhookReceiver
from alert_rows import NOW
from pubsub_emulator import PROJECT, PubSubEmulator

from shared.alerts import (
    AlertChecker,
    Channel,
    DeliveryPolicy,
    EmailChannel,
    PubSubChannel,
    RuleSettings,
    SlackChannel,
    notification_id,
)
from shared.events import DirectAuditSink
from shared.store import NotificationRecord
from shared.store._duckdb import DuckDBStore

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
RULES = RuleSettings(operator_email="oncall@platform.test")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW + timedelta(seconds=30))


@pytest.fixture
def channels(
    smtp: SmtpSink,
    webhook: WebhookReceiver,
    pubsub: PubSubEmulator,
    alerts_topic: str,
) -> list[Channel]:
    return [
        EmailChannel("127.0.0.1", smtp.port, "alerts@platform.test", starttls=False),
        SlackChannel(webhook.url, timeout_seconds=5),
        PubSubChannel(
            PROJECT,
            alerts_topic,
            timeout_seconds=5,
            client_factory=lambda: pubsub.clients()[0],
        ),
    ]


MakeChecker = Callable[..., AlertChecker]


@pytest.fixture
def make_checker(
    store: DuckDBStore, channels: list[Channel], clock: Clock
) -> MakeChecker:
    def make(
        policy: DeliveryPolicy | None = None, rules: RuleSettings = RULES
    ) -> AlertChecker:
        return AlertChecker(
            store, channels, DirectAuditSink(store), rules, policy, clock=clock
        )

    return make


@pytest.fixture
def expiring_key(store: DuckDBStore) -> str:
    rows.tenant(store, "acme", "ops@acme.test", NOW - 30 * DAY)
    key = rows.api_key("acme", NOW + 5 * DAY, NOW - 80 * DAY)
    store.insert_api_key(key)
    return key.api_key_id


def sent_events(store: DuckDBStore) -> list[str]:
    events = store.list_audit_events(None, event_type="alert.sent")
    return sorted(event.details["channel"] for event in events)


# Delivery


def test_alert_reaches_every_channel(
    make_checker: MakeChecker,
    expiring_key: str,
    smtp: SmtpSink,
    webhook: WebhookReceiver,
    pubsub: PubSubEmulator,
    alerts_topic: str,
    store: DuckDBStore,
) -> None:
    summary = make_checker().run(NOW)
    published = pubsub.pull(alerts_topic)

    assert summary.sent == 3
    assert len(smtp.messages) == 1
    assert len(webhook.bodies) == 1
    assert len(published) == 1
    assert sent_events(store) == ["email", "pubsub", "slack"]


def test_email_says_what_and_when(
    make_checker: MakeChecker, expiring_key: str, smtp: SmtpSink
) -> None:
    make_checker().run(NOW)
    (message,) = smtp.messages
    body = message.get_content()

    assert message["Subject"] == (
        "Warning: API key acme_Ab12... of tenant acme expires in 5 days"
    )
    assert message["To"] == "ops@acme.test"
    assert message["From"] == "alerts@platform.test"
    assert message["X-Convergence-Alert"] == f"api_key.expiring:{expiring_key}:7d"
    assert f"The API key {expiring_key} (prefix acme_Ab12" in body
    assert "expires on 2026-03-07 09:00:00 UTC" in body
    assert "What to do: Rotate it before then" in body


def test_slack_text_escaped(
    make_checker: MakeChecker, store: DuckDBStore, webhook: WebhookReceiver
) -> None:
    rows.tenant(store, "acme", None, NOW - DAY)
    store.insert_api_key(
        rows.api_key("acme", NOW + DAY, NOW - DAY, name="<!channel> & co")
    )

    make_checker().run(NOW)
    (body,) = webhook.bodies

    assert "&lt;!channel&gt; &amp; co" in body["text"]
    assert "<!channel>" not in body["text"]


def test_pubsub_message_fields(
    make_checker: MakeChecker,
    expiring_key: str,
    pubsub: PubSubEmulator,
    alerts_topic: str,
) -> None:
    make_checker().run(NOW)
    (message,) = pubsub.pull(alerts_topic)
    document = json.loads(message.data)

    assert dict(message.attributes) == {
        "rule": "api_key.expiring",
        "severity": "warning",
        "tenant_id": "acme",
    }
    assert document["facts"]["api_key_id"] == expiring_key
    assert document["facts"]["key_prefix"] == "acme_Ab12"
    assert "ops@acme.test" not in message.data.decode()


def test_no_address_no_email(
    store: DuckDBStore,
    make_checker: MakeChecker,
    smtp: SmtpSink,
    webhook: WebhookReceiver,
) -> None:
    rows.tenant(store, "acme", None, NOW - DAY)
    store.insert_api_key(rows.api_key("acme", NOW + DAY, NOW - DAY))

    make_checker(rules=RuleSettings()).run(NOW)

    assert smtp.messages == []
    assert len(webhook.bodies) == 1


# Exactly once


def test_repeated_run_sends_nothing_new(
    make_checker: MakeChecker,
    expiring_key: str,
    smtp: SmtpSink,
    webhook: WebhookReceiver,
    pubsub: PubSubEmulator,
    alerts_topic: str,
) -> None:
    checker = make_checker()
    checker.run(NOW)
    second = checker.run(NOW)

    assert second.sent == 0
    assert len(smtp.messages) == 1
    assert len(webhook.bodies) == 1
    assert len(pubsub.pull(alerts_topic)) == 1


def test_hourly_for_days_sends_each_lead_once(
    make_checker: MakeChecker, expiring_key: str, smtp: SmtpSink, clock: Clock
) -> None:
    checker = make_checker()
    for hour in range(0, 7 * 24, 3):
        clock.now = NOW + hour * HOUR + timedelta(seconds=30)
        checker.run(NOW + hour * HOUR)

    alert_keys = [message["X-Convergence-Alert"] for message in smtp.messages]

    assert alert_keys == [
        f"api_key.expiring:{expiring_key}:7d",
        f"api_key.expiring:{expiring_key}:1d",
    ]


def test_racing_runs_send_once(
    store: DuckDBStore,
    channels: list[Channel],
    clock: Clock,
    expiring_key: str,
    smtp: SmtpSink,
) -> None:
    # Two stores on one file, as two instances of the function would have.
    checkers = [
        AlertChecker(
            DuckDBStore(store.path),
            channels,
            DirectAuditSink(store),
            RULES,
            clock=clock,
        )
        for _ in range(2)
    ]
    threads = [threading.Thread(target=c.run, args=(NOW,)) for c in checkers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(smtp.messages) == 1


# Retries


def test_smtp_down_retried_next_run(
    make_checker: MakeChecker,
    expiring_key: str,
    smtp: SmtpSink,
    webhook: WebhookReceiver,
    clock: Clock,
    store: DuckDBStore,
) -> None:
    checker = make_checker()
    smtp.stop()
    first = checker.run(NOW)
    smtp.start()
    clock.now += HOUR
    second = checker.run(NOW + HOUR)
    third = checker.run(NOW + HOUR)

    assert first.failed == 1
    assert second.sent == 1
    assert third.sent == 0
    assert len(smtp.messages) == 1
    assert len(webhook.bodies) == 1
    assert sent_events(store) == ["email", "pubsub", "slack"]


def test_webhook_error_retried_next_run(
    make_checker: MakeChecker,
    expiring_key: str,
    webhook: WebhookReceiver,
    smtp: SmtpSink,
    clock: Clock,
) -> None:
    checker = make_checker()
    webhook.statuses.append(500)
    first = checker.run(NOW)
    clock.now += HOUR
    second = checker.run(NOW + HOUR)
    checker.run(NOW + 2 * HOUR)

    assert first.failed == 1
    assert second.sent == 1
    assert len(webhook.bodies) == 1
    assert len(smtp.messages) == 1


def test_failure_recorded_without_secret(
    make_checker: MakeChecker,
    expiring_key: str,
    webhook: WebhookReceiver,
    store: DuckDBStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    webhook.statuses.append(503)

    make_checker().run(NOW)
    states = store.notification_states([f"api_key.expiring:{expiring_key}:7d"])
    (state,) = [state for state in states if state.channel == "slack"]

    assert state.sent is False
    assert state.attempts == 1
    assert "the Slack webhook returned HTTP 503" in caplog.text
    assert "webhook-token" not in caplog.text


def test_burst_retried_after_window_passed(
    make_checker: MakeChecker, store: DuckDBStore, smtp: SmtpSink, clock: Clock
) -> None:
    # The retry comes from the ledger: the rule no longer finds the burst.
    store.insert_audit_events(rows.kms_failures(11, NOW - HOUR, timedelta(seconds=5)))
    checker = make_checker()
    smtp.stop()
    checker.run(NOW)
    smtp.start()
    clock.now += 5 * HOUR
    checker.run(NOW + 5 * HOUR)

    (message,) = smtp.messages

    assert message["X-Convergence-Alert"] == (
        "kms.operation_failed.burst:2026-03-02T08:00:00Z"
    )
    assert message["To"] == "oncall@platform.test"


def test_retries_stop_at_max_attempts(
    make_checker: MakeChecker, expiring_key: str, smtp: SmtpSink, clock: Clock
) -> None:
    checker = make_checker(DeliveryPolicy(max_attempts=2))
    smtp.stop()
    failures = []
    for hour in range(3):
        clock.now = NOW + hour * HOUR
        failures.append(checker.run(NOW + hour * HOUR).failed)
    smtp.start()
    clock.now = NOW + 3 * HOUR
    checker.run(NOW + 3 * HOUR)

    assert failures == [1, 1, 0]
    assert smtp.messages == []


def test_retries_stop_after_window(
    make_checker: MakeChecker, store: DuckDBStore, smtp: SmtpSink, clock: Clock
) -> None:
    store.insert_audit_events(rows.kms_failures(11, NOW - HOUR, timedelta(seconds=5)))
    checker = make_checker(DeliveryPolicy(retry_window=2 * HOUR))
    smtp.stop()
    checker.run(NOW)
    smtp.start()
    clock.now += 3 * HOUR
    checker.run(NOW + 3 * HOUR)

    assert smtp.messages == []


def _open_claim(store: DuckDBStore, alert_key: str, at: datetime) -> None:
    store.record_notification(
        NotificationRecord(
            notification_id=notification_id(alert_key, "email", 0, "claimed"),
            alert_key=alert_key,
            channel="email",
            attempt=0,
            status="claimed",
            rule="api_key.expiring",
            tenant_id="acme",
            alert=None,
            error=None,
            recorded_at=at,
        )
    )


def test_open_claim_left_to_its_run(
    make_checker: MakeChecker,
    expiring_key: str,
    store: DuckDBStore,
    smtp: SmtpSink,
    clock: Clock,
) -> None:
    _open_claim(store, f"api_key.expiring:{expiring_key}:7d", clock.now)
    clock.now += timedelta(minutes=9)

    make_checker().run(NOW)

    assert smtp.messages == []


def test_abandoned_claim_retried(
    make_checker: MakeChecker,
    expiring_key: str,
    store: DuckDBStore,
    smtp: SmtpSink,
    clock: Clock,
) -> None:
    _open_claim(store, f"api_key.expiring:{expiring_key}:7d", clock.now)
    clock.now += timedelta(minutes=10)

    make_checker().run(NOW)

    assert len(smtp.messages) == 1


# Channels


def test_starttls_required_by_default(
    smtp: SmtpSink, make_checker: MakeChecker
) -> None:
    # aiosmtpd here offers no STARTTLS, so a channel that requires it sends nothing.
    from shared.alerts import Alert, DeliveryError

    channel = EmailChannel("127.0.0.1", smtp.port, "alerts@platform.test")
    alert = Alert("k", "r", "warning", None, "s", ("b",), "a", recipients=("x@y.z",))

    with pytest.raises(DeliveryError, match="SMTPNotSupportedError"):
        channel.send(alert)
    assert smtp.messages == []
