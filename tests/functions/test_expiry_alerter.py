"""expiry_alerter run through functions-framework, with real receivers.

Alerts go to aiosmtpd and a webhook receiver on loopback and to a topic on the
Pub/Sub emulator. Keys are issued by KeyService on the function's own DuckDB
file and local keyring. The function's clock and the message's slot are both
fixed, so "now" is the test's choice.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alert_receivers import SmtpSink, WebhookReceiver
from flask.testing import FlaskClient
from pubsub_emulator import PROJECT, PubSubEmulator, emulator_available, shared_emulator
from werkzeug.test import TestResponse

from shared.config import load_settings
from shared.crypto import EnvelopeCipher, LocalKeyring
from shared.events import DirectAuditSink
from shared.keyservice import AuthenticationError, KeyService, Principal
from shared.store._duckdb import DuckDBStore

# 09:00 UTC is 23:00 of the same day in Kiritimati, where these tests run.
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SLOT = "2026-03-02T09:00:00Z"


@pytest.fixture(autouse=True)
def far_time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as patch:
        patch.setenv("TZ", "Pacific/Kiritimati")
        time.tzset()
        yield
    time.tzset()


@pytest.fixture(scope="module")
def pubsub(tmp_path_factory: pytest.TempPathFactory) -> PubSubEmulator:
    if not emulator_available():
        pytest.skip("the Pub/Sub emulator needs gcloud and java on PATH")
    return shared_emulator(tmp_path_factory.mktemp("pubsub"))


@pytest.fixture
def topic(pubsub: PubSubEmulator) -> str:
    name = f"alerts-{uuid.uuid4().hex[:12]}"
    pubsub.topic(name)
    return name


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    yield sink
    sink.stop()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def alerter(
    load_function: Callable[..., tuple[Any, ModuleType]],
    smtp: SmtpSink,
    webhook: WebhookReceiver,
    pubsub: PubSubEmulator,
    topic: str,
) -> FlaskClient:
    app, module = load_function(
        "expiry_alerter",
        "cloudevent",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp.port),
        SMTP_STARTTLS="false",
        SMTP_FROM="alerts@platform.test",
        SLACK_WEBHOOK_URL=webhook.url,
        PUBSUB_EMULATOR_HOST=pubsub.host,
        PUBSUB_PROJECT_ID=PROJECT,
        ALERT_TOPIC=topic,
        ALERT_OPERATOR_EMAIL="oncall@platform.test",
    )
    module.clock = lambda: NOW + timedelta(seconds=20)
    client: FlaskClient = app.test_client()
    return client


@pytest.fixture
def keys(data_dir: Path) -> KeyService:
    """KeyService on the function's DuckDB file and keyring, one hour before NOW."""
    settings = load_settings(data_dir=data_dir)
    store = DuckDBStore(data_dir / f"{settings.tenants_dataset_id}.duckdb")
    cipher = EnvelopeCipher(
        LocalKeyring(data_dir / "keyring.json"), settings.api_key_kms_path
    )
    return KeyService(
        store, cipher, DirectAuditSink(store), clock=lambda: NOW - timedelta(hours=1)
    )


def push(
    client: FlaskClient, attributes: dict[str, str], publish_time: str = SLOT
) -> TestResponse:
    body = {
        "message": {
            "data": "e30=",
            "attributes": attributes,
            "messageId": "4242",
            "publishTime": publish_time,
        },
        "subscription": f"projects/{PROJECT}/subscriptions/expiry-alerter",
    }
    return client.post(f"/projects/{PROJECT}/topics/alert-checks", json=body)


def published(pubsub: PubSubEmulator, topic: str) -> list[dict[str, Any]]:
    return [json.loads(message.data) for message in pubsub.pull(topic)]


@pytest.fixture
def expiring(keys: KeyService) -> str:
    """A three-day key of tenant acme; returns the key itself."""
    operator = Principal.operator()
    keys.create_tenant(operator, "acme", name="Acme", contact_email="ops@acme.test")
    issued = keys.issue_key(operator, tenant_id="acme", ttl=timedelta(days=3))
    return issued.api_key


def test_check_alerts_every_channel(
    alerter: FlaskClient,
    expiring: str,
    smtp: SmtpSink,
    webhook: WebhookReceiver,
    pubsub: PubSubEmulator,
    topic: str,
) -> None:
    response = push(alerter, {"scheduled_for": SLOT})
    documents = published(pubsub, topic)

    assert response.status_code in (200, 204)
    assert [message["To"] for message in smtp.messages] == ["ops@acme.test"]
    assert len(webhook.bodies) == 1
    assert [document["rule"] for document in documents] == ["api_key.expiring"]


def test_alerts_never_carry_key(
    alerter: FlaskClient,
    expiring: str,
    smtp: SmtpSink,
    webhook: WebhookReceiver,
    pubsub: PubSubEmulator,
    topic: str,
) -> None:
    push(alerter, {"scheduled_for": SLOT})
    sent = [message.as_string() for message in smtp.messages]
    sent += [json.dumps(body) for body in webhook.bodies]
    sent += [json.dumps(document) for document in published(pubsub, topic)]

    assert len(sent) == 3
    assert [text for text in sent if expiring in text] == []
    assert all(expiring[:12] in text for text in sent)


def test_redelivery_sends_nothing_new(
    alerter: FlaskClient, expiring: str, smtp: SmtpSink, webhook: WebhookReceiver
) -> None:
    push(alerter, {"scheduled_for": SLOT})
    push(alerter, {"scheduled_for": SLOT})

    assert len(smtp.messages) == 1
    assert len(webhook.bodies) == 1


def test_publish_time_is_fallback_slot(
    alerter: FlaskClient,
    expiring: str,
    smtp: SmtpSink,
    capsys: pytest.CaptureFixture[str],
) -> None:
    push(alerter, {}, publish_time="2026-03-02T09:00:00.512Z")
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    done = [entry for entry in logged if entry["message"] == "alert check done"]

    assert done[0]["logging.googleapis.com/labels"]["scheduled_for"] == (
        "2026-03-02T09:00:00.512000+00:00"
    )
    assert len(smtp.messages) == 1


def test_expired_key_in_use_alerted(
    alerter: FlaskClient, keys: KeyService, smtp: SmtpSink
) -> None:
    operator = Principal.operator()
    keys.create_tenant(operator, "acme", name="Acme", contact_email="ops@acme.test")
    issued = keys.issue_key(operator, tenant_id="acme", ttl=timedelta(minutes=1))
    later = KeyService(
        keys._store, keys._cipher, keys._audit, clock=lambda: NOW - timedelta(minutes=5)
    )
    with pytest.raises(AuthenticationError):
        later.verify(issued.api_key)

    push(alerter, {"scheduled_for": SLOT})
    subjects = sorted(str(message["Subject"]) for message in smtp.messages)

    assert subjects == [
        "Critical: Expired API key "
        f"{issued.record.key_prefix}... of tenant acme is still in use"
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("yesterday", "scheduled_for must be an RFC 3339 time"),
        ("2026-03-02T09:00:00", "scheduled_for must carry a UTC offset"),
        ("2026-03-02T09:06:00Z", "is in the future"),
    ],
)
def test_bad_slot_acknowledged(
    alerter: FlaskClient,
    expiring: str,
    smtp: SmtpSink,
    capsys: pytest.CaptureFixture[str],
    value: str,
    reason: str,
) -> None:
    response = push(alerter, {"scheduled_for": value})
    output = capsys.readouterr().out

    assert response.status_code in (200, 204)
    assert reason in output
    assert smtp.messages == []


def test_unreadable_delivery_acknowledged(
    alerter: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    response = alerter.post(
        f"/projects/{PROJECT}/topics/alert-checks",
        json={"message": {}, "subscription": "s"},
    )

    assert response.status_code == 204
    assert "dropping a delivery that is not a CloudEvent" in capsys.readouterr().out


def test_failed_send_does_not_fail_delivery(
    alerter: FlaskClient, expiring: str, smtp: SmtpSink, webhook: WebhookReceiver
) -> None:
    smtp.stop()
    response = push(alerter, {"scheduled_for": SLOT})
    smtp.start()

    assert response.status_code in (200, 204)
    assert len(webhook.bodies) == 1
