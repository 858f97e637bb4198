"""The alert queries and the notification ledger, on every backend.

Each test takes the ``store`` fixture, so it runs on DuckDB and on BigQuery
(bqemulator). Rows sit right next to each boundary: one side is reported and
the other is not.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import store_records as records
from bqemulator_server import Emulator, bigquery_client
from store_records import NOW

from shared.events import AuditEvent
from shared.store import EventBurst, NotificationRecord, Store
from shared.store._bigquery import BigQueryStore

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _expiring_ids(store: Store, until: datetime = NOW + 7 * DAY) -> list[str]:
    return [item.item_id for item in store.list_expiring(NOW, until)]


# Expiring keys and credentials


def test_expiring_includes_boundary(store: Store) -> None:
    store.create_tenant(records.tenant(), records.admin())
    at_boundary = records.api_key(expires_at=NOW + 7 * DAY)
    beyond = records.api_key(expires_at=NOW + 7 * DAY + timedelta(microseconds=1))
    store.insert_api_key(at_boundary)
    store.insert_api_key(beyond)

    assert _expiring_ids(store) == [at_boundary.api_key_id]


def test_expiring_row_fields(store: Store) -> None:
    store.create_tenant(records.tenant(), records.admin())
    key = records.api_key(expires_at=NOW + 2 * DAY)
    store.insert_api_key(key)

    (item,) = store.list_expiring(NOW, NOW + 7 * DAY)

    assert item.kind == "api_key"
    assert item.tenant_id == "acme"
    assert item.label == key.key_prefix
    assert item.name == key.name
    assert item.expires_at == key.expires_at
    assert item.contact_email == "ops@acme.test"
    assert item.last_used_at is None


def test_expiring_skips_expired_and_revoked(store: Store) -> None:
    store.insert_api_key(records.api_key(expires_at=NOW))
    store.insert_api_key(records.api_key(expires_at=NOW + DAY, is_active=False))

    assert _expiring_ids(store) == []


def test_expiring_skips_rotated_key(store: Store) -> None:
    old = records.api_key(expires_at=NOW + 2 * DAY)
    store.insert_api_key(old)
    new = records.api_key(rotated_from_key_id=old.api_key_id)
    store.rotate_api_key("acme", old.api_key_id, new, NOW + HOUR)

    assert _expiring_ids(store) == []


def test_expiring_rotated_from_other_tenant(store: Store) -> None:
    # Only a successor in the same tenant hides a key.
    old = records.api_key(expires_at=NOW + 2 * DAY)
    store.insert_api_key(old)
    store.insert_api_key(records.api_key("globex", rotated_from_key_id=old.api_key_id))

    assert _expiring_ids(store) == [old.api_key_id]


def test_expiring_credentials(store: Store) -> None:
    store.create_tenant(records.tenant(), records.admin())
    soon = records.credential(expires_at=NOW + 3 * DAY)
    store.insert_credential(soon)
    store.insert_credential(records.credential(expires_at=None))
    store.insert_credential(records.credential(expires_at=NOW + 8 * DAY))
    deleted = records.credential(expires_at=NOW + DAY)
    store.insert_credential(deleted)
    store.delete_credential("acme", deleted.credential_id, NOW, "key_1", NOW + DAY)

    (item,) = store.list_expiring(NOW, NOW + 7 * DAY)

    assert item.kind == "credential"
    assert item.item_id == soon.credential_id
    assert item.provider == "aws"
    assert item.label == "...WXYZ"
    assert item.contact_email == "ops@acme.test"


def test_expiring_ordered_by_expiry(store: Store) -> None:
    later = records.api_key(expires_at=NOW + 5 * DAY)
    sooner = records.credential(expires_at=NOW + DAY)
    store.insert_api_key(later)
    store.insert_credential(sooner)

    assert _expiring_ids(store) == [sooner.credential_id, later.api_key_id]


# Use after expiry


def _expired_attempt(key_id: str, at: datetime, reason: str = "expired") -> AuditEvent:
    return records.event(
        "acme", "authentication.failed", at, reason=reason, api_key_id=key_id
    )


def test_used_after_expiry_from_failure(store: Store) -> None:
    key = records.api_key(expires_at=NOW - HOUR)
    store.insert_api_key(key)
    store.insert_audit_events(
        [
            _expired_attempt(key.api_key_id, NOW - timedelta(minutes=30)),
            _expired_attempt(key.api_key_id, NOW - 10 * timedelta(minutes=1)),
        ]
    )

    (item,) = store.list_used_after_expiry(NOW - DAY, NOW)

    assert item.item_id == key.api_key_id
    assert item.last_used_at == NOW - timedelta(minutes=10)


def test_used_after_expiry_needs_reason(store: Store) -> None:
    key = records.api_key(expires_at=NOW - HOUR)
    store.insert_api_key(key)
    store.insert_audit_events([_expired_attempt(key.api_key_id, NOW, "revoked")])

    assert store.list_used_after_expiry(NOW - DAY, NOW + HOUR) == []


def test_used_after_expiry_window_bounds(store: Store) -> None:
    key = records.api_key(expires_at=NOW - 2 * DAY)
    store.insert_api_key(key)
    store.insert_audit_events(
        [
            _expired_attempt(key.api_key_id, NOW - DAY - timedelta(microseconds=1)),
            _expired_attempt(key.api_key_id, NOW),
        ]
    )

    assert store.list_used_after_expiry(NOW - DAY, NOW) == []


def test_used_after_expiry_other_tenant_event(store: Store) -> None:
    key = records.api_key(expires_at=NOW - HOUR)
    store.insert_api_key(key)
    foreign = records.event(
        "globex",
        "authentication.failed",
        NOW - timedelta(minutes=5),
        reason="expired",
        api_key_id=key.api_key_id,
    )
    store.insert_audit_events([foreign])

    assert store.list_used_after_expiry(NOW - DAY, NOW) == []


def test_used_after_expiry_from_usage(store: Store) -> None:
    key = records.api_key(expires_at=NOW - HOUR)
    store.insert_api_key(key)
    before = records.api_key(expires_at=NOW - HOUR)
    store.insert_api_key(before)
    store.append_usage(
        [
            records.usage(key, NOW - timedelta(minutes=59)),
            records.usage(before, NOW - HOUR - timedelta(seconds=1)),
        ]
    )

    items = store.list_used_after_expiry(NOW - DAY, NOW + HOUR)

    assert [item.item_id for item in items] == [key.api_key_id]


def test_used_after_expiry_credential(store: Store) -> None:
    credential = records.credential(expires_at=NOW - HOUR)
    store.insert_credential(credential)
    unexpired = records.credential(expires_at=NOW + HOUR)
    store.insert_credential(unexpired)
    store.insert_audit_events(
        [
            records.event(
                "acme",
                "credentials.accessed",
                NOW - timedelta(minutes=1),
                credential_id=cred.credential_id,
            )
            for cred in (credential, unexpired)
        ]
    )

    (item,) = store.list_used_after_expiry(NOW - DAY, NOW)

    assert item.kind == "credential"
    assert item.item_id == credential.credential_id


# Bursts


def _failures(
    count: int,
    start: datetime,
    spacing: timedelta,
    *,
    ip: str = "192.0.2.1",
    tenant_id: str | None = "acme",
) -> list[AuditEvent]:
    events = []
    for i in range(count):
        event = records.event(
            tenant_id, "authentication.failed", start + i * spacing, reason="unknown"
        )
        events.append(event.model_copy(update={"ip_address": ip, "user_id": "usr_1"}))
    return events


def _bursts(store: Store) -> list[EventBurst]:
    return store.find_event_bursts(
        "authentication.failed",
        group_by=("tenant_id", "user_id", "ip_address"),
        threshold=5,
        window=HOUR,
        since=NOW - HOUR,
        until=NOW + HOUR,
    )


def test_burst_over_threshold_found(store: Store) -> None:
    store.insert_audit_events(_failures(6, NOW, timedelta(minutes=10)))

    (burst,) = _bursts(store)

    assert dict(burst.group) == {
        "tenant_id": "acme",
        "user_id": "usr_1",
        "ip_address": "192.0.2.1",
    }
    assert burst.count == 6
    assert burst.first_at == NOW
    assert burst.last_at == NOW + timedelta(minutes=50)
    assert burst.bucket_start == datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_burst_at_threshold_ignored(store: Store) -> None:
    store.insert_audit_events(_failures(5, NOW, timedelta(minutes=10)))

    assert _bursts(store) == []


def test_burst_window_is_half_open(store: Store) -> None:
    # Six events spanning exactly one window: the first is out of the last's.
    store.insert_audit_events(_failures(6, NOW, timedelta(minutes=12)))

    assert _bursts(store) == []


def test_burst_groups_kept_apart(store: Store) -> None:
    store.insert_audit_events(
        _failures(3, NOW, timedelta(minutes=1), ip="192.0.2.1")
        + _failures(3, NOW, timedelta(minutes=1), ip="192.0.2.2")
    )

    assert _bursts(store) == []


def test_burst_null_group_values(store: Store) -> None:
    store.insert_audit_events(_failures(6, NOW, timedelta(minutes=1), tenant_id=None))

    (burst,) = _bursts(store)

    assert dict(burst.group)["tenant_id"] is None


def test_burst_counts_context_before_since(store: Store) -> None:
    # Five events before ``since`` and one after: the sixth crosses.
    start = NOW - HOUR - timedelta(minutes=30)
    store.insert_audit_events(_failures(6, start, timedelta(minutes=6)))

    (burst,) = _bursts(store)

    assert burst.last_at == start + timedelta(minutes=30)


def test_burst_before_since_not_reported(store: Store) -> None:
    store.insert_audit_events(_failures(6, NOW - 2 * HOUR, timedelta(minutes=1)))

    assert _bursts(store) == []


def test_burst_without_groups(store: Store) -> None:
    events = _failures(3, NOW, timedelta(seconds=10), ip="192.0.2.1")
    events += _failures(3, NOW, timedelta(seconds=10), ip="192.0.2.2")
    store.insert_audit_events(events)

    (burst,) = store.find_event_bursts(
        "authentication.failed",
        group_by=(),
        threshold=5,
        window=timedelta(minutes=1),
        since=NOW,
        until=NOW + HOUR,
    )

    assert burst.group == ()
    assert burst.count == 6


def test_burst_counts_only_its_type(store: Store) -> None:
    events = _failures(5, NOW, timedelta(minutes=1))
    events.append(records.event("acme", "api_key.created", NOW + timedelta(minutes=6)))
    store.insert_audit_events(events)

    assert _bursts(store) == []


def test_burst_unknown_column_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="group_by"):
        store.find_event_bursts(
            "authentication.failed",
            group_by=("details",),
            threshold=5,
            window=HOUR,
            since=NOW,
            until=NOW + HOUR,
        )


def test_burst_duplicate_rows_counted_once(
    bigquery_store: BigQueryStore, bigquery_emulator: Emulator
) -> None:
    # BigQuery can hold two rows of one event; each event counts once.
    bigquery_store.insert_audit_events(_failures(5, NOW, timedelta(minutes=1)))
    table = f"`{bigquery_store.dataset}.tenant_audit_logs`"
    client = bigquery_client(bigquery_emulator.endpoint)
    client.query(f"INSERT INTO {table} SELECT * FROM {table}").result()  # noqa: S608

    assert _bursts(bigquery_store) == []


# Notification ledger


def _row(
    status: str = "claimed", attempt: int = 0, **overrides: object
) -> NotificationRecord:
    values: dict[str, object] = {
        "notification_id": f"{status}-{attempt}",
        "alert_key": "api_key.expiring:key_1:7d",
        "channel": "email",
        "attempt": attempt,
        "status": status,
        "rule": "api_key.expiring",
        "tenant_id": "acme",
        "alert": '{"title": "t"}' if status == "claimed" else None,
        "error": "SMTPConnectError" if status == "failed" else None,
        "recorded_at": NOW + attempt * HOUR,
    }
    values.update(overrides)
    return NotificationRecord(**values)  # type: ignore[arg-type]


def test_ledger_id_written_once(store: Store) -> None:
    first = store.record_notification(_row())
    second = store.record_notification(_row())

    assert first is True
    assert second is False


def test_ledger_claim_after_sent_rejected(store: Store) -> None:
    store.record_notification(_row())
    store.record_notification(_row("sent"))

    assert store.record_notification(_row(attempt=1)) is False


def test_ledger_claim_other_channel_allowed(store: Store) -> None:
    store.record_notification(_row())
    store.record_notification(_row("sent"))

    slack = _row(notification_id="slack-claim", channel="slack")

    assert store.record_notification(slack) is True


def test_ledger_states(store: Store) -> None:
    store.record_notification(_row())
    store.record_notification(_row("failed"))
    store.record_notification(_row(attempt=1))
    store.record_notification(_row(alert_key="other", notification_id="o"))

    (state,) = store.notification_states(["api_key.expiring:key_1:7d"])

    assert state.channel == "email"
    assert state.attempts == 2
    assert state.open_claim is True
    assert state.sent is False
    assert state.last_claimed_at == NOW + HOUR
    assert state.alert == '{"title": "t"}'


def test_ledger_claim_with_outcome_closed(store: Store) -> None:
    store.record_notification(_row())
    store.record_notification(_row(attempt=1))
    store.record_notification(_row("failed", attempt=1))

    (state,) = store.notification_states(["api_key.expiring:key_1:7d"])

    assert state.open_claim is False


def test_ledger_states_empty_keys(store: Store) -> None:
    store.record_notification(_row())

    assert store.notification_states([]) == []


def test_ledger_unsent(store: Store) -> None:
    store.record_notification(_row())
    store.record_notification(_row("failed"))
    store.record_notification(_row(alert_key="done", notification_id="d1"))
    store.record_notification(_row("sent", alert_key="done", notification_id="d2"))
    store.record_notification(
        _row(alert_key="old", notification_id="o1", recorded_at=NOW - DAY)
    )

    unsent = store.unsent_notifications(NOW - HOUR)

    assert [state.alert_key for state in unsent] == ["api_key.expiring:key_1:7d"]


def test_ledger_states_per_channel(store: Store) -> None:
    store.record_notification(_row())
    store.record_notification(replace(_row(), notification_id="s", channel="slack"))

    states = store.notification_states(["api_key.expiring:key_1:7d"])

    assert [state.channel for state in states] == ["email", "slack"]
