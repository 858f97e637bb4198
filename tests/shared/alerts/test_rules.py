"""Each rule fires on the rows just past its threshold and not on those at it.

The rules run on a DuckDB store at ``NOW``, once with the process time zone
14 hours ahead of UTC and once 11 hours behind it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import alert_rows as rows
import pytest
from alert_rows import NOW, use_time_zone

from shared.alerts import CRITICAL, WARNING, Alert, RuleSettings, evaluate
from shared.apikeys import generate_api_key
from shared.events import new_event
from shared.store._duckdb import DuckDBStore

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
RULES = RuleSettings(operator_email="oncall@platform.test")


@pytest.fixture(autouse=True, params=["Pacific/Kiritimati", "Pacific/Pago_Pago"])
def far_time_zone(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    yield from use_time_zone(monkeypatch, request.param)


@pytest.fixture
def acme(store: DuckDBStore) -> str:
    rows.tenant(store, "acme", "ops@acme.test", NOW - 30 * DAY)
    return "acme"


def alerts_of(store: DuckDBStore, rule: str) -> list[Alert]:
    return [alert for alert in evaluate(store, RULES, NOW) if alert.rule == rule]


# Key expiry


def test_key_at_lead_time_warned(store: DuckDBStore, acme: str) -> None:
    key = rows.api_key(acme, NOW + 7 * DAY, NOW - 80 * DAY)
    store.insert_api_key(key)

    (alert,) = alerts_of(store, "api_key.expiring")

    assert alert.key == f"api_key.expiring:{key.api_key_id}:7d"
    assert alert.severity == WARNING
    assert alert.recipients == ("ops@acme.test",)


def test_key_beyond_lead_time_ignored(store: DuckDBStore, acme: str) -> None:
    store.insert_api_key(rows.api_key(acme, NOW + 8 * DAY, NOW - 80 * DAY))
    store.insert_api_key(
        rows.api_key(acme, NOW + 7 * DAY + timedelta(seconds=1), NOW - 80 * DAY)
    )

    assert alerts_of(store, "api_key.expiring") == []


def test_key_gets_shortest_lead(store: DuckDBStore, acme: str) -> None:
    key = rows.api_key(acme, NOW + 12 * HOUR, NOW - 80 * DAY)
    store.insert_api_key(key)

    keys = [alert.key for alert in alerts_of(store, "api_key.expiring")]

    assert keys == [f"api_key.expiring:{key.api_key_id}:1d"]


def test_short_lived_key_warned(store: DuckDBStore, acme: str) -> None:
    # Issued an hour ago with a 3-day lifetime: never 7 days from expiry.
    key = rows.api_key(acme, NOW + 3 * DAY - HOUR, NOW - HOUR)
    store.insert_api_key(key)

    keys = [alert.key for alert in alerts_of(store, "api_key.expiring")]

    assert keys == [f"api_key.expiring:{key.api_key_id}:7d"]


def test_expired_key_not_warned(store: DuckDBStore, acme: str) -> None:
    store.insert_api_key(rows.api_key(acme, NOW, NOW - 80 * DAY))

    assert alerts_of(store, "api_key.expiring") == []


def test_key_message_names_key(store: DuckDBStore, acme: str) -> None:
    key = rows.api_key(acme, NOW + 6 * DAY + 4 * HOUR, NOW - 80 * DAY)
    store.insert_api_key(key)

    (alert,) = alerts_of(store, "api_key.expiring")
    text = alert.text()

    assert alert.summary == (
        "API key acme_Ab12... of tenant acme expires in 6 days 4 hours"
    )
    assert key.api_key_id in text
    assert "prefix acme_Ab12" in text
    assert "2026-03-08 13:00:00 UTC" in text
    assert f"POST /keys/{key.api_key_id}/rotate" in text
    assert alert.facts["expires_at"] == "2026-03-08T13:00:00Z"


def test_key_name_shaped_like_key_masked(store: DuckDBStore, acme: str) -> None:
    pasted = generate_api_key(acme)
    store.insert_api_key(
        rows.api_key(acme, NOW + DAY, NOW - DAY, name=f"copy of {pasted}")
    )

    (alert,) = alerts_of(store, "api_key.expiring")

    assert pasted not in alert.to_json()
    assert "[REDACTED]" in alert.text()


def test_key_without_contact_goes_to_operator(store: DuckDBStore) -> None:
    rows.tenant(store, "globex", None, NOW - 30 * DAY)
    store.insert_api_key(rows.api_key("globex", NOW + DAY, NOW - 80 * DAY))

    (alert,) = alerts_of(store, "api_key.expiring")

    assert alert.recipients == ("oncall@platform.test",)


def test_credential_expiry_warned(store: DuckDBStore, acme: str) -> None:
    credential = rows.credential(acme, NOW + 2 * DAY, NOW - DAY)
    store.insert_credential(credential)
    store.insert_credential(rows.credential(acme, NOW + 8 * DAY, NOW - DAY))
    store.insert_credential(rows.credential(acme, None, NOW - DAY))

    (alert,) = alerts_of(store, "credential.expiring")

    assert alert.key == f"credential.expiring:{credential.credential_id}:7d"
    assert "aws credential" in alert.summary
    assert "account ...WXYZ" in alert.text()


# Use after expiry


def test_expired_key_in_use_alerted(store: DuckDBStore, acme: str) -> None:
    key = rows.api_key(acme, NOW - 2 * HOUR, NOW - 80 * DAY)
    store.insert_api_key(key)
    store.insert_audit_events(
        rows.auth_failures(
            1, NOW - HOUR, HOUR, reason="expired", api_key_id=key.api_key_id
        )
    )

    (alert,) = alerts_of(store, "api_key.used_after_expiry")

    assert alert.key == f"api_key.used_after_expiry:{key.api_key_id}"
    assert alert.severity == CRITICAL
    assert "2026-03-02 08:00:00 UTC, after it expired" in alert.text()


def test_expired_key_unused_not_alerted(store: DuckDBStore, acme: str) -> None:
    key = rows.api_key(acme, NOW - 2 * HOUR, NOW - 80 * DAY)
    store.insert_api_key(key)
    store.insert_audit_events(
        rows.auth_failures(1, NOW - HOUR, HOUR, api_key_id=key.api_key_id)
    )

    assert alerts_of(store, "api_key.used_after_expiry") == []


def test_expired_credential_read_alerted(store: DuckDBStore, acme: str) -> None:
    credential = rows.credential(acme, NOW - DAY, NOW - 10 * DAY)
    store.insert_credential(credential)
    store.insert_audit_events(
        [
            new_event(
                "credentials.accessed",
                tenant_id=acme,
                details={"credential_id": credential.credential_id},
                now=NOW - HOUR,
            )
        ]
    )

    (alert,) = alerts_of(store, "credential.used_after_expiry")

    assert alert.tenant_id == acme


# Failed authentications


def test_six_failures_per_hour_alerted(store: DuckDBStore, acme: str) -> None:
    spacing = timedelta(minutes=11)
    store.insert_audit_events(
        rows.auth_failures(6, NOW - HOUR, spacing, ip="198.51.100.7")
        + rows.auth_failures(5, NOW - HOUR, spacing, ip="198.51.100.8")
    )

    (alert,) = alerts_of(store, "authentication.failed.burst")

    assert alert.facts["ip_address"] == "198.51.100.7"
    assert alert.facts["count"] == "6"
    assert alert.recipients == ("ops@acme.test",)
    assert alert.summary == (
        "6 failed authentications for tenant acme, user usr_1, from IP 198.51.100.7"
    )


def test_failures_of_two_users_apart(store: DuckDBStore, acme: str) -> None:
    spacing = timedelta(minutes=5)
    store.insert_audit_events(
        rows.auth_failures(3, NOW - HOUR, spacing, user_id="usr_1")
        + rows.auth_failures(3, NOW - HOUR, spacing, user_id="usr_2")
    )

    assert alerts_of(store, "authentication.failed.burst") == []


def test_failures_spread_over_hour_ignored(store: DuckDBStore, acme: str) -> None:
    store.insert_audit_events(rows.auth_failures(6, NOW - HOUR, timedelta(minutes=12)))

    assert alerts_of(store, "authentication.failed.burst") == []


def test_101_failures_per_minute_alerted(store: DuckDBStore) -> None:
    # Spread over many addresses, so only the platform-wide rule fires.
    events = []
    for i in range(101):
        events += rows.auth_failures(
            1, NOW - HOUR + i * timedelta(milliseconds=500), HOUR, ip=f"203.0.113.{i}"
        )
    store.insert_audit_events(events)

    (alert,) = alerts_of(store, "authentication.failed.rate")

    assert alert.facts["count"] == "101"
    assert alert.tenant_id is None
    assert alert.recipients == ("oncall@platform.test",)


def test_100_failures_per_minute_ignored(store: DuckDBStore) -> None:
    events = []
    for i in range(100):
        events += rows.auth_failures(
            1, NOW - HOUR + i * timedelta(milliseconds=500), HOUR, ip=f"203.0.113.{i}"
        )
    events += rows.auth_failures(1, NOW - HOUR + 61 * timedelta(seconds=1), HOUR)
    store.insert_audit_events(events)

    assert alerts_of(store, "authentication.failed.rate") == []


# KMS


def test_eleven_kms_failures_alerted(store: DuckDBStore) -> None:
    store.insert_audit_events(rows.kms_failures(11, NOW - HOUR, timedelta(seconds=20)))

    (alert,) = alerts_of(store, "kms.operation_failed.burst")

    assert alert.severity == CRITICAL
    assert alert.facts["count"] == "11"
    assert "convergence audit list --type kms.operation_failed" in alert.action


def test_ten_kms_failures_ignored(store: DuckDBStore) -> None:
    store.insert_audit_events(rows.kms_failures(10, NOW - HOUR, timedelta(seconds=20)))

    assert alerts_of(store, "kms.operation_failed.burst") == []


# Keys across runs


def test_burst_key_same_next_hour(store: DuckDBStore, acme: str) -> None:
    store.insert_audit_events(rows.kms_failures(11, NOW - HOUR, timedelta(seconds=1)))

    first = [alert.key for alert in evaluate(store, RULES, NOW)]
    later = [alert.key for alert in evaluate(store, RULES, NOW + HOUR)]

    assert first == ["kms.operation_failed.burst:2026-03-02T08:00:00Z"]
    assert later == first


def test_naive_now_rejected(store: DuckDBStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(store, RULES, NOW.replace(tzinfo=None))
