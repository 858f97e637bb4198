"""Audit events: the schema, and how functions publish them.

``AuditEvent`` is the one definition of the schema. Publishers validate before
sending and ``audit_writer`` validates on receipt; ``docs/audit-event.schema.json``
is generated from it. ``details`` carries ids and counts, never a secret.

HTTP functions publish through ``PubSubAuditSink``, which waits for Pub/Sub to
confirm each message. If publishing still fails after retries, the event is
written straight to the audit table so it is not lost.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.apikeys import redact_api_keys

if TYPE_CHECKING:
    from shared.store import Store

__all__ = [
    "AuditEvent",
    "AuditSink",
    "DirectAuditSink",
    "PubSubAuditSink",
    "is_valid_event_type",
    "new_event",
]

_log = logging.getLogger(__name__)
_EVENT_TYPE = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
_MAX_DETAILS_BYTES = 8 * 1024


class AuditEvent(BaseModel):
    """One security event, as published to ``audit-events`` and stored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    event_type: str = Field(pattern=_EVENT_TYPE, max_length=64)
    tenant_id: str | None = Field(default=None, max_length=50)
    user_id: str | None = Field(default=None, max_length=128)
    actor_id: str | None = Field(default=None, max_length=128)
    ip_address: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=512)
    occurred_at: datetime
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _require_timezone(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("occurred_at must carry a timezone")
        return value.astimezone(UTC)

    @field_validator("details")
    @classmethod
    def _check_details(cls, value: dict[str, Any]) -> dict[str, Any]:
        encoded = json.dumps(value, default=str)
        if len(encoded) > _MAX_DETAILS_BYTES:
            raise ValueError(
                f"details must encode to at most {_MAX_DETAILS_BYTES} bytes"
            )
        if redact_api_keys(encoded) != encoded:
            raise ValueError("details must not contain an API key")
        return value

    def log_labels(self) -> dict[str, str]:
        """Return the ids that log lines and log-based metrics carry for this event."""
        labels = {"event_id": str(self.event_id), "event_type": self.event_type}
        for name in ("tenant_id", "user_id", "ip_address"):
            value = getattr(self, name)
            if value:
                labels[name] = value
        return labels

    def to_message(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_message(cls, data: bytes) -> AuditEvent:
        return cls.model_validate_json(data)


def new_event(
    event_type: str,
    *,
    tenant_id: str | None = None,
    user_id: str | None = None,
    actor_id: str | None = None,
    ip_address: str | None = None,
    user_agent: str | None = None,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> AuditEvent:
    """Build an event with a fresh UUID, occurring ``now`` (default: the clock)."""
    return AuditEvent(
        event_id=uuid.uuid4(),
        event_type=event_type,
        tenant_id=tenant_id,
        user_id=user_id,
        actor_id=actor_id,
        ip_address=ip_address,
        user_agent=(user_agent or None) and user_agent[:512],
        occurred_at=now or datetime.now(UTC),
        details=details or {},
    )


class AuditSink(Protocol):
    def emit(self, event: AuditEvent) -> None: ...


class DirectAuditSink:
    """Writes events straight to the store; for the command line and tests."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def emit(self, event: AuditEvent) -> None:
        self._store.insert_audit_events([event])


class PubSubAuditSink:
    """Publishes events to a Pub/Sub topic, falling back to the store on failure."""

    def __init__(
        self,
        project_id: str,
        topic: str,
        fallback: Store,
        *,
        timeout_seconds: float = 10.0,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._topic_path = f"projects/{project_id}/topics/{topic}"
        self._fallback = fallback
        self._timeout = timeout_seconds
        self._client_factory = client_factory or _publisher_client
        self._client: Any = None

    def emit(self, event: AuditEvent) -> None:
        labels = event.log_labels()
        try:
            self._publish(event)
        except Exception as exc:  # noqa: BLE001 - any failure must reach the fallback
            _log.warning(
                "publishing audit event failed (%s); writing it to the store",
                type(exc).__name__,
                extra={"labels": labels},
            )
            self._fallback.insert_audit_events([event])

    def _publish(self, event: AuditEvent) -> None:
        from google.api_core import retry

        if self._client is None:
            self._client = self._client_factory()
        attributes = {"event_type": event.event_type}
        if event.tenant_id:
            attributes["tenant_id"] = event.tenant_id
        future = self._client.publish(
            self._topic_path,
            event.to_message(),
            retry=retry.Retry(initial=0.1, maximum=1.0, timeout=self._timeout),
            timeout=self._timeout,
            **attributes,
        )
        future.result(timeout=self._timeout)


def _publisher_client() -> Any:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    return pubsub_v1.PublisherClient()


def is_valid_event_type(event_type: str) -> bool:
    return re.fullmatch(_EVENT_TYPE, event_type) is not None
