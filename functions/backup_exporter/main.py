"""backup-exporter: a CloudEvent function that backs up the tenant tables.

Cloud Scheduler (the local scheduler in development) publishes to
``backup-requests`` once a day, and a push subscription delivers the message
as a ``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent. The run is
named after the scheduled day, not the clock: the message attribute or JSON
data field ``scheduled_for`` (YYYY-MM-DD or an RFC 3339 time), else the
CloudEvent ``time`` (the publish time). Every delivery of one day's trigger
therefore names the same run, and a run already complete is left as it is.

A transient failure (bucket, store or KMS unavailable, or another attempt
still running) raises, so Pub/Sub delivers the message again. Any other
failure is audited as ``backup.failed``, logged and acknowledged, because
retrying cannot fix it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
from datetime import date
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent

from shared.backup import (
    BackupError,
    BackupRunner,
    ExportError,
    ManifestError,
    RunInProgressError,
    StorageError,
    TransientStorageError,
    build_runner,
    parse_slot,
    run_backup,
)
from shared.config import get_settings
from shared.events import AuditSink
from shared.logs import configure_logging
from shared.runtime import build_audit_sink
from shared.store import StoreError, TransientStoreError, build_store

_log = logging.getLogger("backup_exporter")
_settings = get_settings()
configure_logging(_settings.log_level)

ACTOR_ID = "backup_exporter"
_SLOT_FIELD = "scheduled_for"
_PERMANENT = (BackupError, ExportError, ManifestError, StorageError, StoreError)
_TRANSIENT = (TransientStorageError, TransientStoreError)


class MalformedTrigger(ValueError):
    """The CloudEvent names no slot that can be read."""


@functions_framework.cloud_event
def backup_exporter(cloud_event: CloudEvent) -> None:
    """Entry point: back up the tables as the run of the trigger's slot."""
    labels = {"cloud_event_id": str(cloud_event["id"])}
    try:
        slot = trigger_slot(cloud_event)
    except MalformedTrigger as exc:
        _log.error("dropping backup trigger: %s", exc, extra={"labels": labels})
        return
    labels["run"] = f"backup-{slot:%Y%m%d}"
    try:
        result, retention = run_backup(
            _settings, slot, _audit(), actor_id=ACTOR_ID, runner=_runner()
        )
    except RunInProgressError as exc:
        _log.info("%s; asking for redelivery", exc, extra={"labels": labels})
        raise
    except _TRANSIENT as exc:
        _log.warning("backup run failed, will retry: %s", exc, extra={"labels": labels})
        raise
    except _PERMANENT as exc:
        _log.error("backup run failed: %s", exc, extra={"labels": labels})
        return
    if retention is not None and retention.deleted:
        labels["deleted_runs"] = ",".join(retention.deleted)
    _log.info("backup trigger handled: %s", result.status, extra={"labels": labels})


def _acknowledge_unreadable(error: Exception) -> tuple[str, int]:
    """Acknowledge a delivery that functions-framework cannot read as a CloudEvent.

    Its own 400 would make Pub/Sub redeliver the message forever.
    """
    _log.error(
        "dropping a delivery that is not a CloudEvent (%s)", type(error).__name__
    )
    return "", 204


functions_framework.errorhandler(400)(_acknowledge_unreadable)


def trigger_slot(cloud_event: CloudEvent) -> date:
    """Return the day a trigger is for; raise MalformedTrigger if none is readable."""
    message = _message(cloud_event.data)
    attributes = message.get("attributes") or {}
    value = attributes.get(_SLOT_FIELD) if isinstance(attributes, dict) else None
    if value is None:
        value = _data_field(message.get("data"))
    if value is None:
        value = cloud_event.get("time")
    if not isinstance(value, str) or not value:
        raise MalformedTrigger(f"no {_SLOT_FIELD} and no CloudEvent time")
    try:
        return parse_slot(value)
    except ValueError as exc:
        raise MalformedTrigger(str(exc)) from None


def _message(data: Any) -> dict[str, Any]:
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, dict) else {}


def _data_field(encoded: Any) -> str | None:
    """Return ``scheduled_for`` from JSON message data, if the data has one."""
    if not encoded:
        return None
    try:
        document = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, TypeError, ValueError):
        return None
    value = document.get(_SLOT_FIELD) if isinstance(document, dict) else None
    return value if isinstance(value, str) else None


@functools.cache
def _runner() -> BackupRunner:
    return build_runner(_settings)


@functools.cache
def _audit() -> AuditSink:
    return build_audit_sink(_settings, build_store(_settings))
