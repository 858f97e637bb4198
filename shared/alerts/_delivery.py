"""``AlertChecker``: evaluates the rules, then delivers each alert once per channel.

The notification ledger (``alert_notifications``) makes delivery exactly once
per alert key and channel across runs, however often the job runs:

1. Before sending, a run inserts a ``claimed`` row whose id is derived from
   the alert key, the channel and the attempt number. The id is inserted only
   if it is new and the alert has no ``sent`` row on that channel, so of two
   runs racing for one attempt only one sends.
2. After the send it inserts ``sent``, or ``failed`` with the reason.
3. A later run skips a sent alert. It retries a failed one as the next
   attempt, up to ``max_attempts``, for ``retry_window`` after the last claim,
   with the text stored in the claim, even when the rule no longer raises it.
   A claim with no outcome after ``claim_timeout`` is taken to be from a run
   that died, and is retried too.

NOTE: a run that dies after the channel accepted the alert and before the
``sent`` row is written leaves an open claim, so the alert is sent again
after ``claim_timeout``: at least once, not at most once, in that case. On
BigQuery, two claims of one attempt inserted at the same instant can both
pass the check (the same race as audit inserts), so both runs would send.

Each successful send is also audited as ``alert.sent``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.alerts._channels import Channel, DeliveryError
from shared.alerts._model import Alert
from shared.alerts._rules import RuleSettings, evaluate
from shared.events import AuditSink, new_event
from shared.store import NotificationRecord, NotificationState, Store

_log = logging.getLogger(__name__)

ALERT_SENT_EVENT = "alert.sent"


@dataclass(frozen=True)
class DeliveryPolicy:
    """Retry limits for failed and abandoned notifications."""

    max_attempts: int = 24
    retry_window: timedelta = timedelta(hours=24)
    claim_timeout: timedelta = timedelta(minutes=10)


@dataclass
class RunSummary:
    """Counts of one run: alerts raised or retried, and sends by outcome."""

    alerts: int = 0
    sent: int = 0
    failed: int = 0


class AlertChecker:
    """Runs the alert rules for one slot and delivers what they raise."""

    def __init__(
        self,
        store: Store,
        channels: Sequence[Channel],
        audit: AuditSink,
        rules: RuleSettings,
        policy: DeliveryPolicy | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        actor_id: str = "expiry_alerter",
    ) -> None:
        self._store = store
        self._channels = list(channels)
        self._audit = audit
        self._rules = rules
        self._policy = policy or DeliveryPolicy()
        self._clock = clock
        self._actor_id = actor_id

    def run(self, slot: datetime) -> RunSummary:
        """Evaluate every rule at ``slot`` and send each new or retried alert."""
        alerts = evaluate(self._store, self._rules, slot)
        alerts += self._retries({alert.key for alert in alerts})
        states = {
            (state.alert_key, state.channel): state
            for state in self._store.notification_states([a.key for a in alerts])
        }
        summary = RunSummary(alerts=len(alerts))
        for alert in alerts:
            for channel in self._channels:
                if channel.accepts(alert):
                    state = states.get((alert.key, channel.name))
                    self._deliver(alert, channel, state, summary)
        return summary

    def _retries(self, known: set[str]) -> list[Alert]:
        """Return alerts the rules did not raise now but a channel still owes."""
        since = self._clock() - self._policy.retry_window
        names = {channel.name for channel in self._channels}
        retries: dict[str, Alert] = {}
        for state in self._store.unsent_notifications(since):
            if state.alert_key in known or state.alert_key in retries:
                continue
            if state.channel not in names or state.alert is None:
                continue
            try:
                retries[state.alert_key] = Alert.from_json(state.alert)
            except ValueError as exc:
                _log.error(
                    "skipping a ledger entry whose alert is unreadable: %s",
                    exc,
                    extra={"labels": {"alert_key": state.alert_key}},
                )
        return list(retries.values())

    def _deliver(
        self,
        alert: Alert,
        channel: Channel,
        state: NotificationState | None,
        summary: RunSummary,
    ) -> None:
        if not self._due(state):
            return
        attempt = state.attempts if state else 0
        labels = {
            "alert_key": alert.key,
            "channel": channel.name,
            "rule": alert.rule,
            "attempt": str(attempt),
        }
        if alert.tenant_id:
            labels["tenant_id"] = alert.tenant_id
        if not self._record(alert, channel.name, attempt, "claimed"):
            # Another run claimed this attempt, or sent the alert, meanwhile.
            return

        try:
            channel.send(alert)
        except DeliveryError as exc:
            _log.warning(
                "sending an alert failed; a later run retries it: %s",
                exc,
                extra={"labels": labels},
            )
            self._record(alert, channel.name, attempt, "failed", error=str(exc))
            summary.failed += 1
            return

        self._record(alert, channel.name, attempt, "sent")
        self._audit.emit(
            new_event(
                ALERT_SENT_EVENT,
                tenant_id=alert.tenant_id,
                actor_id=self._actor_id,
                details={
                    "alert_key": alert.key,
                    "rule": alert.rule,
                    "severity": alert.severity,
                    "channel": channel.name,
                    "attempt": attempt,
                },
                now=self._clock(),
            )
        )
        _log.info("alert sent", extra={"labels": labels})
        summary.sent += 1

    def _due(self, state: NotificationState | None) -> bool:
        """Return whether the ledger state allows another attempt now."""
        if state is None:
            return True
        if state.sent or state.attempts >= self._policy.max_attempts:
            return False
        if state.open_claim and state.last_claimed_at is not None:
            return self._clock() - state.last_claimed_at >= self._policy.claim_timeout
        return True

    def _record(
        self,
        alert: Alert,
        channel: str,
        attempt: int,
        status: str,
        *,
        error: str | None = None,
    ) -> bool:
        return self._store.record_notification(
            NotificationRecord(
                notification_id=notification_id(alert.key, channel, attempt, status),
                alert_key=alert.key,
                channel=channel,
                attempt=attempt,
                status=status,
                rule=alert.rule,
                tenant_id=alert.tenant_id,
                alert=alert.to_json() if status == "claimed" else None,
                error=error,
                recorded_at=self._clock(),
            )
        )


def notification_id(alert_key: str, channel: str, attempt: int, status: str) -> str:
    """Return the ledger id of one step: SHA-256 hex of its four key fields."""
    fields = "\x1f".join((alert_key, channel, str(attempt), status))
    return hashlib.sha256(fields.encode("utf-8")).hexdigest()
