"""The alert rules: one store query each, turned into ``Alert`` objects.

Every rule is evaluated at ``now``, the run's scheduled slot, so two runs for
one slot find the same alerts with the same keys:

* ``api_key.expiring`` / ``credential.expiring`` (warning): an active key, or
  a stored credential with a provider-reported expiry, expires within a lead
  time. Only the shortest lead time that contains the expiry is alerted. So
  a key with 12 hours left gets the 1-day warning and not a late 7-day one,
  and a key issued for 3 days gets the 7-day warning at once.
* ``api_key.used_after_expiry`` / ``credential.used_after_expiry`` (critical):
  an expired key was presented (``authentication.failed`` with reason
  ``expired``), or an expired credential read (``credentials.accessed``),
  within the lookback. Something still depends on it.
* ``authentication.failed.burst`` (warning): more than the threshold of failed
  authentications for one tenant, user and IP within the window.
* ``authentication.failed.rate`` (warning): more than the threshold of failed
  authentications in all within the window.
* ``kms.operation_failed.burst`` (critical): more than the threshold of failed
  KMS operations within the window.

Windows slide: an event crosses a threshold when more than the threshold of
events happened in the window that ends at it. A burst alert's key carries the
window-length bucket (counted from the Unix epoch in UTC) of its crossing
events, so a burst that goes on is reported once per bucket.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from shared.alerts._model import CRITICAL, WARNING, Alert
from shared.apikeys import redact_api_keys
from shared.store import EventBurst, ExpiringItem, Store

if TYPE_CHECKING:
    from shared.config import Settings

_AUTH_FAILED = "authentication.failed"
_KMS_FAILED = "kms.operation_failed"


@dataclass(frozen=True)
class RuleSettings:
    """Thresholds, windows and lead times of the rules."""

    expiry_lead_days: tuple[int, ...] = (7, 1)
    expired_use_lookback: timedelta = timedelta(hours=24)
    auth_failure_threshold: int = 5
    auth_failure_window: timedelta = timedelta(hours=1)
    auth_failure_rate_threshold: int = 100
    auth_failure_rate_window: timedelta = timedelta(minutes=1)
    kms_failure_threshold: int = 10
    kms_failure_window: timedelta = timedelta(minutes=5)
    # How far back each run looks for bursts.
    lookback: timedelta = timedelta(hours=2)
    # Receives platform-wide alerts, and tenant alerts of tenants without a
    # contact address.
    operator_email: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RuleSettings:
        minutes = timedelta(minutes=1)
        return cls(
            expiry_lead_days=tuple(settings.alert_expiry_lead_days),
            expired_use_lookback=timedelta(
                hours=settings.alert_expired_use_lookback_hours
            ),
            auth_failure_threshold=settings.alert_auth_failure_threshold,
            auth_failure_window=settings.alert_auth_failure_window_minutes * minutes,
            auth_failure_rate_threshold=settings.alert_auth_failure_rate_threshold,
            auth_failure_rate_window=(
                settings.alert_auth_failure_rate_window_minutes * minutes
            ),
            kms_failure_threshold=settings.alert_kms_failure_threshold,
            kms_failure_window=settings.alert_kms_failure_window_minutes * minutes,
            lookback=settings.alert_lookback_minutes * minutes,
            operator_email=settings.alert_operator_email,
        )


def evaluate(store: Store, rules: RuleSettings, now: datetime) -> list[Alert]:
    """Run every rule at ``now`` and return the alerts they raise."""
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    now = now.astimezone(UTC)
    contacts = _Contacts(store)
    return [
        *_expiring(store, rules, now),
        *_used_after_expiry(store, rules, now),
        *_auth_bursts(store, rules, now, contacts),
        *_auth_rate(store, rules, now),
        *_kms_bursts(store, rules, now),
    ]


# Expiry


def _expiring(store: Store, rules: RuleSettings, now: datetime) -> Iterable[Alert]:
    leads = sorted(rules.expiry_lead_days)
    for item in store.list_expiring(now, now + timedelta(days=leads[-1])):
        remaining = item.expires_at - now
        lead = next(days for days in leads if remaining <= timedelta(days=days))
        yield _expiring_alert(item, lead, remaining, rules.operator_email)


def _expiring_alert(
    item: ExpiringItem, lead: int, remaining: timedelta, operator: str | None
) -> Alert:
    description = _describe(item)
    expires = _when(item.expires_at)
    if item.kind == "api_key":
        consequence = "After that, every request that uses it is rejected with 401."
        action = (
            f"Rotate it before then: POST /keys/{item.item_id}/rotate with an "
            "admin key (or 'convergence key rotate --tenant "
            f"{item.tenant_id} {item.item_id}'), then give the new key to every "
            "client that uses this one."
        )
    else:
        consequence = "After that, pipelines that read it get a credential the "
        consequence += "provider rejects."
        action = (
            "Store a fresh credential (POST /credentials), switch the pipelines "
            f"to it, then delete this one (DELETE /credentials/{item.item_id})."
        )
    return Alert(
        key=f"{item.kind}.expiring:{item.item_id}:{lead}d",
        rule=f"{item.kind}.expiring",
        severity=WARNING,
        tenant_id=item.tenant_id,
        summary=f"{_noun(item)} {_short(item)} of tenant {item.tenant_id} expires "
        f"in {_duration(remaining)}",
        body=(
            f"{description} expires on {expires}, in {_duration(remaining)}.",
            consequence,
        ),
        action=action,
        facts=_item_facts(item) | {"lead_days": str(lead)},
        recipients=_recipients(item.contact_email, operator),
    )


def _used_after_expiry(
    store: Store, rules: RuleSettings, now: datetime
) -> Iterable[Alert]:
    since = now - rules.expired_use_lookback
    for item in store.list_used_after_expiry(since, now):
        assert item.last_used_at is not None
        verb = "presented" if item.kind == "api_key" else "read"
        if item.kind == "api_key":
            action = (
                "Find the client that still sends this key and give it an "
                "active one: issue a key with POST /keys, or list the tenant's "
                "keys with GET /keys."
            )
        else:
            action = (
                "Store a fresh credential (POST /credentials) and switch the "
                "pipeline that still reads this one to it."
            )
        yield Alert(
            key=f"{item.kind}.used_after_expiry:{item.item_id}",
            rule=f"{item.kind}.used_after_expiry",
            severity=CRITICAL,
            tenant_id=item.tenant_id,
            summary=f"Expired {_noun(item)} {_short(item)} of tenant "
            f"{item.tenant_id} is still in use",
            body=(
                f"{_describe(item)} expired on {_when(item.expires_at)}, and it "
                f"was {verb} at {_when(item.last_used_at)}, after it expired.",
            ),
            action=action,
            facts=_item_facts(item) | {"used_at": _iso(item.last_used_at)},
            recipients=_recipients(item.contact_email, rules.operator_email),
        )


def _describe(item: ExpiringItem) -> str:
    # A name is the caller's text, so anything shaped like a key is masked.
    name = f', name "{redact_api_keys(item.name)}"' if item.name else ""
    if item.kind == "api_key":
        return (
            f"The API key {item.item_id} (prefix {item.label}{name}) of tenant "
            f"{item.tenant_id}"
        )
    account = f"account {item.label}" if item.label else "no account hint"
    return (
        f"The stored {item.provider} credential {item.item_id} ({account}{name}) "
        f"of tenant {item.tenant_id}"
    )


def _noun(item: ExpiringItem) -> str:
    return "API key" if item.kind == "api_key" else f"{item.provider} credential"


def _short(item: ExpiringItem) -> str:
    return f"{item.label}..." if item.kind == "api_key" else item.item_id


def _item_facts(item: ExpiringItem) -> dict[str, str]:
    id_name = "api_key_id" if item.kind == "api_key" else "credential_id"
    facts = {id_name: item.item_id, "expires_at": _iso(item.expires_at)}
    if item.kind == "api_key" and item.label:
        facts["key_prefix"] = item.label
    if item.provider:
        facts["provider"] = item.provider
    return facts


# Bursts


class _Contacts:
    """Tenants' contact addresses, each read from the store at most once."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._emails: dict[str, str | None] = {}

    def email(self, tenant_id: str) -> str | None:
        if tenant_id not in self._emails:
            tenant = self._store.get_tenant(tenant_id)
            self._emails[tenant_id] = tenant.contact_email if tenant else None
        return self._emails[tenant_id]


def _auth_bursts(
    store: Store, rules: RuleSettings, now: datetime, contacts: _Contacts
) -> Iterable[Alert]:
    bursts = _bursts(
        store,
        _AUTH_FAILED,
        ("tenant_id", "user_id", "ip_address"),
        rules.auth_failure_threshold,
        rules.auth_failure_window,
        rules.lookback,
        now,
    )
    for burst in bursts:
        group = dict(burst.group)
        tenant, user, ip = group["tenant_id"], group["user_id"], group["ip_address"]
        subject = f"tenant {tenant}" if tenant else "no known tenant"
        if user:
            subject += f", user {user}"
        source = f"IP {ip}" if ip else "an unknown IP"
        window = _duration(rules.auth_failure_window)
        audit_filter = f" --tenant {tenant}" if tenant else ""
        contact = contacts.email(tenant) if tenant else None
        yield Alert(
            key=f"{_AUTH_FAILED}.burst:{tenant or '-'}|{user or '-'}|{ip or '-'}:"
            f"{_iso(burst.bucket_start)}",
            rule=f"{_AUTH_FAILED}.burst",
            severity=WARNING,
            tenant_id=tenant,
            summary=f"{burst.count} failed authentications for {subject}, "
            f"from {source}",
            body=(
                f"{burst.count} API key authentications failed for {subject}, from "
                f"{source}, between {_when(burst.first_at)} and "
                f"{_when(burst.last_at)}: more than "
                f"{rules.auth_failure_threshold} within {window}.",
            ),
            action=(
                "If these are not your own clients retrying with an old key, "
                "someone may be guessing keys: block the address, review the "
                "failures with 'convergence audit list"
                f"{audit_filter} --type {_AUTH_FAILED}', and rotate any key "
                "that may have leaked."
            ),
            facts=_burst_facts(burst) | {k: v for k, v in group.items() if v},
            recipients=_recipients(contact, rules.operator_email),
        )


def _auth_rate(store: Store, rules: RuleSettings, now: datetime) -> Iterable[Alert]:
    window = _duration(rules.auth_failure_rate_window)
    bursts = _bursts(
        store,
        _AUTH_FAILED,
        (),
        rules.auth_failure_rate_threshold,
        rules.auth_failure_rate_window,
        rules.lookback,
        now,
    )
    for burst in bursts:
        yield Alert(
            key=f"{_AUTH_FAILED}.rate:{_iso(burst.bucket_start)}",
            rule=f"{_AUTH_FAILED}.rate",
            severity=WARNING,
            tenant_id=None,
            summary=f"{burst.count} failed authentications across all tenants",
            body=(
                f"{burst.count} API key authentications failed across all "
                f"tenants between {_when(burst.first_at)} and "
                f"{_when(burst.last_at)}: more than "
                f"{rules.auth_failure_rate_threshold} within {window}.",
            ),
            action=(
                "Find the sources with 'convergence audit list --type "
                f"{_AUTH_FAILED} --limit 1000' (ip_address and tenant_id). A "
                "single address points to key guessing: block it. Many clients "
                "at once point to a revoked or expired key still in use."
            ),
            facts=_burst_facts(burst),
            recipients=_recipients(None, rules.operator_email),
        )


def _kms_bursts(store: Store, rules: RuleSettings, now: datetime) -> Iterable[Alert]:
    window = _duration(rules.kms_failure_window)
    bursts = _bursts(
        store,
        _KMS_FAILED,
        (),
        rules.kms_failure_threshold,
        rules.kms_failure_window,
        rules.lookback,
        now,
    )
    for burst in bursts:
        yield Alert(
            key=f"{_KMS_FAILED}.burst:{_iso(burst.bucket_start)}",
            rule=f"{_KMS_FAILED}.burst",
            severity=CRITICAL,
            tenant_id=None,
            summary=f"{burst.count} failed KMS operations",
            body=(
                f"{burst.count} KMS operations failed between "
                f"{_when(burst.first_at)} and {_when(burst.last_at)}: more than "
                f"{rules.kms_failure_threshold} within {window}. While KMS "
                "fails, keys cannot be issued or rotated and stored credentials "
                "cannot be stored or read.",
            ),
            action=(
                "See which key and error kind failed with 'convergence audit "
                f"list --type {_KMS_FAILED}', then check that key's state "
                "(enabled, not destroyed) and the functions' permission on it."
            ),
            facts=_burst_facts(burst),
            recipients=_recipients(None, rules.operator_email),
        )


def _bursts(
    store: Store,
    event_type: str,
    group_by: Sequence[str],
    threshold: int,
    window: timedelta,
    lookback: timedelta,
    now: datetime,
) -> list[EventBurst]:
    return store.find_event_bursts(
        event_type,
        group_by=group_by,
        threshold=threshold,
        window=window,
        since=now - lookback,
        until=now,
    )


def _burst_facts(burst: EventBurst) -> dict[str, str]:
    return {
        "count": str(burst.count),
        "first_at": _iso(burst.first_at),
        "last_at": _iso(burst.last_at),
        "bucket_start": _iso(burst.bucket_start),
    }


# Formatting


def _recipients(contact: str | None, operator: str | None) -> tuple[str, ...]:
    address = contact or operator
    return (address,) if address else ()


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _duration(span: timedelta) -> str:
    """Return ``span`` in words, in its two largest units: "6 days 4 hours"."""
    minutes = max(int(span.total_seconds() // 60), 0)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [
        f"{value} {unit}{'' if value == 1 else 's'}"
        for value, unit in ((days, "day"), (hours, "hour"), (minutes, "minute"))
        if value
    ]
    return " ".join(parts[:2]) if parts else "less than a minute"
