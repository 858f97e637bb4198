"""audit-writer: a CloudEvent function that stores audit events from Pub/Sub.

It accepts the ``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent
that Eventarc delivers, and the same event as functions-framework converts a
Pub/Sub push body. Redelivery is normal: each event_id is written at most once.
A malformed event is logged and acknowledged, because retrying cannot fix it.
Only a store error raises, so that Pub/Sub delivers the event again.

Deliveries that the instance serves at the same time, on the threads of
functions-framework, are written together (``shared/groupcommit.py``). The
first of a batch waits, for up to ``AUDIT_BATCH_WINDOW_SECONDS``, until as
many deliveries have joined as the previous batch had, and one INSERT writes
up to ``AUDIT_BATCH_MAX_EVENTS``. A request returns only after its batch has
committed, and if the write fails every request of the batch fails.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from collections.abc import Sequence
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent
from pydantic import ValidationError

from shared.config import get_settings
from shared.events import AuditEvent
from shared.groupcommit import GroupCommit
from shared.logs import configure_logging
from shared.store import Store, build_store

_log = logging.getLogger("audit_writer")
_settings = get_settings()
configure_logging(_settings.log_level)


class MalformedEvent(ValueError):
    """The CloudEvent does not carry a valid audit event."""


@functions_framework.cloud_event
def audit_writer(cloud_event: CloudEvent) -> None:
    """Entry point: write the audit event carried by a Pub/Sub message."""
    labels = {"cloud_event_id": str(cloud_event["id"])}
    try:
        event = parse_event(cloud_event.data)
    except MalformedEvent as exc:
        _log.error(
            "dropping malformed audit message: %s", exc, extra={"labels": labels}
        )
        return
    labels |= event.log_labels()
    if _batches().submit(event):
        _log.info("audit event stored", extra={"labels": labels})
    else:
        _log.info(
            "audit event already stored; redelivery ignored", extra={"labels": labels}
        )


def _acknowledge_unreadable(error: Exception) -> tuple[str, int]:
    """Acknowledge a delivery that functions-framework cannot read as a CloudEvent.

    A Pub/Sub push of a message without data is one. The framework's own 400
    would make Pub/Sub redeliver it forever, and its body echoes the request.
    """
    _log.error(
        "dropping a delivery that is not a CloudEvent (%s)", type(error).__name__
    )
    return "", 204


functions_framework.errorhandler(400)(_acknowledge_unreadable)


def parse_event(data: Any) -> AuditEvent:
    """Extract the audit event from a CloudEvent's data; raise MalformedEvent."""
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict):
        raise MalformedEvent("the CloudEvent has no Pub/Sub message")
    encoded = message.get("data")
    if not encoded:
        raise MalformedEvent("the Pub/Sub message has no data")
    try:
        payload = base64.b64decode(encoded, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise MalformedEvent("the message data is not base64") from None
    try:
        return AuditEvent.from_message(payload)
    except ValidationError as exc:
        fields = sorted(
            {".".join(map(str, error["loc"])) or "body" for error in exc.errors()}
        )
        raise MalformedEvent(
            f"invalid audit event fields: {', '.join(fields)}"
        ) from None


def write_events(events: Sequence[AuditEvent]) -> list[bool]:
    """Write a batch; return for each event whether this delivery stored it.

    A second copy of an event in the batch counts as a redelivery.
    """
    written = _store().insert_new_audit_events(events)
    seen: set[str] = set()
    stored = []
    for event in events:
        event_id = str(event.event_id)
        stored.append(event_id in written and event_id not in seen)
        seen.add(event_id)
    return stored


@functools.cache
def _batches() -> GroupCommit[AuditEvent, bool]:
    return GroupCommit(
        write_events,
        window_seconds=_settings.audit_batch_window_seconds,
        max_batch=_settings.audit_batch_max_events,
    )


@functools.cache
def _store() -> Store:
    return build_store(_settings)
