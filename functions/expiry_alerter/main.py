"""expiry-alerter: a CloudEvent function that checks the alert rules each hour.

The ``hourly-alert-check`` schedule publishes to ``alert-checks``, and the push
subscription delivers the message here as the
``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent. The message's
``scheduled_for`` attribute (RFC 3339, UTC) names the slot, and every rule is
evaluated at that instant. So a redelivered or repeated message raises the
same alerts under the same keys, and the notification ledger sends each one
once per channel. Cloud Scheduler sets no attributes of its own, so without
``scheduled_for`` the message's publish time is the slot.

A message whose slot is invalid, or more than five minutes ahead of the
clock, is logged and acknowledged: retrying cannot fix it. A failed send is
recorded and retried by the next run, so it does not fail the delivery. Only
a store error raises, so that Pub/Sub delivers the message again.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent

from shared.alerts import AlertChecker, build_alert_checker
from shared.config import get_settings
from shared.logs import configure_logging
from shared.runtime import build_audit_sink
from shared.store import build_store

_log = logging.getLogger("expiry_alerter")
_settings = get_settings()
configure_logging(_settings.log_level)

# Tolerated clock skew between the scheduler and this function.
_MAX_LEAD = timedelta(minutes=5)

# The wall clock; tests replace it to choose "now".
clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


class InvalidSlot(ValueError):
    """The message does not name a usable slot."""


@functions_framework.cloud_event
def expiry_alerter(cloud_event: CloudEvent) -> None:
    """Entry point: run the alert check for the slot the message names."""
    labels = {"cloud_event_id": str(cloud_event["id"])}
    try:
        slot = parse_slot(cloud_event.data, cloud_event.get("time"), clock())
    except InvalidSlot as exc:
        _log.error("dropping alert check message: %s", exc, extra={"labels": labels})
        return
    labels["scheduled_for"] = slot.isoformat()
    summary = _checker().run(slot)
    labels |= {
        "alerts": str(summary.alerts),
        "sent": str(summary.sent),
        "failed": str(summary.failed),
    }
    _log.info("alert check done", extra={"labels": labels})


def _acknowledge_unreadable(error: Exception) -> tuple[str, int]:
    """Acknowledge a delivery that functions-framework cannot read as a CloudEvent.

    Its own 400 would make Pub/Sub redeliver it forever, and its body echoes
    the request.
    """
    _log.error(
        "dropping a delivery that is not a CloudEvent (%s)", type(error).__name__
    )
    return "", 204


functions_framework.errorhandler(400)(_acknowledge_unreadable)


def parse_slot(data: Any, event_time: object, now: datetime) -> datetime:
    """Return the slot: ``scheduled_for``, else the publish time; UTC, aware."""
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict):
        raise InvalidSlot("the CloudEvent has no Pub/Sub message")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise InvalidSlot("the message attributes are not a mapping")
    raw = attributes.get("scheduled_for")
    source = "scheduled_for"
    if raw is None:
        raw = message.get("publishTime") or event_time
        source = "the publish time"
    slot = _timestamp(raw, source)
    if slot - now > _MAX_LEAD:
        raise InvalidSlot(f"{source} {slot.isoformat()} is in the future")
    return slot


def _timestamp(raw: object, source: str) -> datetime:
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise InvalidSlot(
                f"{source} must be an RFC 3339 time such as 2026-03-01T12:00:00Z"
            ) from None
    else:
        raise InvalidSlot(f"{source} is missing")
    if value.tzinfo is None:
        raise InvalidSlot(f"{source} must carry a UTC offset, e.g. a final Z")
    return value.astimezone(UTC)


@functools.cache
def _checker() -> AlertChecker:
    store = build_store(_settings)
    audit = build_audit_sink(_settings, store)
    # Looked up on each call, so that a test's replacement applies.
    return build_alert_checker(_settings, store, audit, clock=lambda: clock())
