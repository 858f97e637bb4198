"""Operator and tenant alerts: rules over the store, delivered once per channel.

``AlertChecker.run(slot)`` evaluates every rule at the scheduled slot
(``_rules`` lists them). It sends each alert it finds, or still owes, by
email, to Slack and to the ``alerts`` Pub/Sub topic. It records each step in
the notification ledger, so an alert is sent once per channel however often
the job runs (``_delivery`` explains how). ``build_alert_checker`` builds it
from the settings: email when ``SMTP_HOST`` is set, Slack when
``SLACK_WEBHOOK_URL`` is set, Pub/Sub always. docs/alerts.md is the operator's
guide.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from shared.alerts._channels import (
    Channel,
    DeliveryError,
    EmailChannel,
    PubSubChannel,
    SlackChannel,
)
from shared.alerts._delivery import (
    ALERT_SENT_EVENT,
    AlertChecker,
    DeliveryPolicy,
    RunSummary,
    notification_id,
)
from shared.alerts._model import CRITICAL, WARNING, Alert
from shared.alerts._rules import RuleSettings, evaluate

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.events import AuditSink
    from shared.store import Store

__all__ = [
    "ALERT_SENT_EVENT",
    "CRITICAL",
    "WARNING",
    "Alert",
    "AlertChecker",
    "Channel",
    "DeliveryError",
    "DeliveryPolicy",
    "EmailChannel",
    "PubSubChannel",
    "RuleSettings",
    "RunSummary",
    "SlackChannel",
    "build_alert_checker",
    "build_channels",
    "evaluate",
    "notification_id",
]


def build_channels(settings: Settings) -> list[Channel]:
    """Return the channels the settings configure, Pub/Sub last."""
    timeout = settings.alert_send_timeout_seconds
    channels: list[Channel] = []
    if settings.smtp_host:
        password = settings.smtp_password
        channels.append(
            EmailChannel(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_from,
                username=settings.smtp_username,
                password=password.get_secret_value() if password else None,
                starttls=settings.smtp_starttls,
                timeout_seconds=timeout,
            )
        )
    if settings.slack_webhook_url is not None:
        channels.append(
            SlackChannel(
                settings.slack_webhook_url.get_secret_value(), timeout_seconds=timeout
            )
        )
    channels.append(
        PubSubChannel(
            settings.pubsub_project_id, settings.alert_topic, timeout_seconds=timeout
        )
    )
    return channels


def build_alert_checker(
    settings: Settings,
    store: Store,
    audit: AuditSink,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> AlertChecker:
    """Build the checker with the configured rules, channels and retry policy."""
    policy = DeliveryPolicy(
        max_attempts=settings.alert_max_attempts,
        retry_window=timedelta(hours=settings.alert_retry_hours),
        claim_timeout=timedelta(seconds=settings.alert_claim_seconds),
    )
    return AlertChecker(
        store,
        build_channels(settings),
        audit,
        RuleSettings.from_settings(settings),
        policy,
        clock=clock,
    )
