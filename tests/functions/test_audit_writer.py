import base64
import copy
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from shared.apikeys import generate_api_key
from shared.events import AuditEvent, new_event
from shared.store import TransientStoreError
from shared.store._duckdb import DuckDBStore

PAYLOADS = Path(__file__).resolve().parent / "payloads"
EXPECTED = AuditEvent.model_validate_json((PAYLOADS / "audit_event.json").read_text())
STRUCTURED = json.loads((PAYLOADS / "cloudevent_structured.json").read_text())
BINARY = json.loads((PAYLOADS / "cloudevent_binary.json").read_text())
PUSH = json.loads((PAYLOADS / "pubsub_push.json").read_text())

Deliver = Callable[[FlaskClient, dict[str, Any]], TestResponse]


def _structured(client: FlaskClient, payload: dict[str, Any]) -> TestResponse:
    return client.post(
        "/",
        data=json.dumps(payload),
        headers={"Content-Type": "application/cloudevents+json"},
    )


def _binary(client: FlaskClient, payload: dict[str, Any]) -> TestResponse:
    return client.post(
        "/", data=json.dumps(payload["body"]), headers=payload["headers"]
    )


def _push(client: FlaskClient, payload: dict[str, Any]) -> TestResponse:
    return client.post("/", json=payload)


DELIVERIES: dict[str, tuple[Deliver, dict[str, Any]]] = {
    "structured": (_structured, STRUCTURED),
    "binary": (_binary, BINARY),
    "push": (_push, PUSH),
}


def _message(payload: dict[str, Any]) -> dict[str, Any]:
    """The Pub/Sub message inside any of the three payload shapes."""
    if "data" in payload:
        return payload["data"]["message"]
    if "body" in payload:
        return payload["body"]["message"]
    return payload["message"]


def _with_data(payload: dict[str, Any], data: bytes | str | None) -> dict[str, Any]:
    """A copy of ``payload`` whose message carries ``data`` (None: no data field)."""
    altered = copy.deepcopy(payload)
    message = _message(altered)
    if data is None:
        del message["data"]
    elif isinstance(data, bytes):
        message["data"] = base64.b64encode(data).decode()
    else:
        message["data"] = data
    return altered


def _log_entries(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture
def writer(
    load_function: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> tuple[FlaskClient, ModuleType]:
    app, module = load_function("audit_writer", "cloudevent")
    return app.test_client(), module


@pytest.fixture
def client(writer: tuple[FlaskClient, ModuleType]) -> FlaskClient:
    return writer[0]


@pytest.fixture
def store(data_dir: Path) -> DuckDBStore:
    return DuckDBStore(data_dir / "tenants_metadata.duckdb")


# Valid deliveries


@pytest.mark.parametrize("mode", DELIVERIES)
def test_delivery_stores_one_row(
    client: FlaskClient, store: DuckDBStore, mode: str
) -> None:
    deliver, payload = DELIVERIES[mode]

    response = deliver(client, payload)

    assert response.status_code == 200
    assert store.list_audit_events(None) == [EXPECTED]


@pytest.mark.parametrize("mode", DELIVERIES)
def test_redelivery_stores_once(
    client: FlaskClient,
    store: DuckDBStore,
    capsys: pytest.CaptureFixture[str],
    mode: str,
) -> None:
    deliver, payload = DELIVERIES[mode]

    first = deliver(client, payload)
    second = deliver(client, payload)

    assert first.status_code == 200
    assert second.status_code == 200
    assert len(store.list_audit_events(None)) == 1
    messages = [entry["message"] for entry in _log_entries(capsys.readouterr().out)]
    assert messages == [
        "audit event stored",
        "audit event already stored; redelivery ignored",
    ]


def test_same_event_in_every_mode_stores_once(
    client: FlaskClient, store: DuckDBStore
) -> None:
    for deliver, payload in DELIVERIES.values():
        assert deliver(client, payload).status_code == 200

    assert len(store.list_audit_events(None)) == 1


def test_stored_log_line_carries_ids(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    _structured(client, STRUCTURED)

    entry = _log_entries(capsys.readouterr().out)[0]

    assert entry["severity"] == "INFO"
    assert entry["logging.googleapis.com/labels"] == {
        "cloud_event_id": STRUCTURED["id"],
        "event_id": str(EXPECTED.event_id),
        "event_type": "api_key.created",
        "tenant_id": EXPECTED.tenant_id,
        "user_id": EXPECTED.user_id,
        "ip_address": EXPECTED.ip_address,
    }


# Malformed deliveries: acknowledged, not stored, logged once


def _invalid_fields() -> bytes:
    event = json.loads(EXPECTED.to_message())
    event["event_type"] = "Not A Type"
    event["occurred_at"] = "2025-03-01T12:00:00"
    return json.dumps(event).encode()


def _key_in_details() -> bytes:
    event = json.loads(EXPECTED.to_message())
    event["details"] = {"leaked": generate_api_key("acme")}
    return json.dumps(event).encode()


MALFORMED: dict[str, bytes | str | None] = {
    "not-base64": "%%% not base64 %%%",
    "not-json": b"not json at all",
    "not-utf8": b"\xff\xfe\x00{",
    "array": b"[1, 2, 3]",
    "invalid-fields": _invalid_fields(),
    "extra-field": json.dumps(
        json.loads(EXPECTED.to_message()) | {"secret": "x"}
    ).encode(),
    "key-in-details": _key_in_details(),
    "empty-data": "",
    "attributes-only": None,
}


@pytest.mark.parametrize("mode", DELIVERIES)
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_acknowledged_once(
    client: FlaskClient,
    store: DuckDBStore,
    capsys: pytest.CaptureFixture[str],
    mode: str,
    case: str,
) -> None:
    deliver, payload = DELIVERIES[mode]
    data = MALFORMED[case]

    response = deliver(client, _with_data(payload, data))

    output = capsys.readouterr().out
    errors = [e for e in _log_entries(output) if e["severity"] == "ERROR"]
    assert 200 <= response.status_code < 300
    assert store.list_audit_events(None) == []
    assert len(errors) == 1
    assert len(_log_entries(output)) == 1


@pytest.mark.parametrize("case", ["key-in-details", "not-json", "invalid-fields"])
def test_malformed_log_line_quotes_no_data(
    client: FlaskClient, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    data = MALFORMED[case]
    assert isinstance(data, bytes)

    _structured(client, _with_data(STRUCTURED, data))

    output = capsys.readouterr().out
    assert "[REDACTED]" not in output
    assert "not json at all" not in output
    assert "Not A Type" not in output


def test_invalid_fields_named_in_log(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    _structured(client, _with_data(STRUCTURED, MALFORMED["invalid-fields"]))

    message = _log_entries(capsys.readouterr().out)[0]["message"]

    assert message == (
        "dropping malformed audit message: invalid audit event fields: "
        "event_type, occurred_at"
    )


def test_cloudevent_without_message_acknowledged(
    client: FlaskClient, store: DuckDBStore
) -> None:
    payload = copy.deepcopy(STRUCTURED)
    payload["data"] = {"subscription": "projects/p/subscriptions/s"}

    response = _structured(client, payload)

    assert response.status_code == 200
    assert store.list_audit_events(None) == []


def test_unreadable_delivery_acknowledged_without_echo(client: FlaskClient) -> None:
    response = client.post(
        "/", json={"hello": "operator-token-value"}, headers={"X-Probe": "probe-value"}
    )

    assert response.status_code == 204
    assert b"operator-token-value" not in response.get_data()
    assert b"probe-value" not in response.get_data()


# Transient store errors


class LockHolder:
    """Another process holding the store file open, as a busy writer would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
                "print('locked', flush=True); sys.stdin.read()",
                str(path),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        assert self._process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=10)

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=10)


@pytest.fixture
def lock_holder(data_dir: Path) -> Iterator[LockHolder]:
    data_dir.mkdir(parents=True, exist_ok=True)
    holder = LockHolder(data_dir / "tenants_metadata.duckdb")
    try:
        yield holder
    finally:
        holder.kill()


def test_busy_store_fails_then_redelivery_stores(
    writer: tuple[FlaskClient, ModuleType],
    lock_holder: LockHolder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, module = writer
    # The real store, with a short wait for the lock.
    store = DuckDBStore(lock_holder.path, lock_timeout_seconds=0.2)
    monkeypatch.setattr(module, "_store", lambda: store)

    busy = _structured(client, STRUCTURED)
    lock_holder.release()
    redelivered = _structured(client, STRUCTURED)

    assert busy.status_code >= 500
    assert redelivered.status_code == 200
    assert store.list_audit_events(None) == [EXPECTED]


# Concurrent deliveries: written in batches


class FailingStore:
    """Passes calls to a real store; audit writes raise while ``failing`` is set."""

    def __init__(self, inner: DuckDBStore) -> None:
        self.inner = inner
        self.failing = True

    def insert_new_audit_events(self, events: Sequence[AuditEvent]) -> frozenset[str]:
        if self.failing:
            raise TransientStoreError("DuckDB file is busy: another process holds it")
        return self.inner.insert_new_audit_events(events)


def _event_payload(number: int) -> dict[str, Any]:
    event = new_event("api_key.created", tenant_id="acme", details={"n": number})
    return _with_data(STRUCTURED, event.to_message())


def _deliver_at_once(
    app_client: Callable[[], FlaskClient], payloads: Sequence[dict[str, Any]]
) -> list[int]:
    """POST each payload from a thread of its own; return the status codes."""
    with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
        responses = pool.map(
            lambda payload: _structured(app_client(), payload).status_code, payloads
        )
        return list(responses)


def test_write_events_marks_redeliveries(
    writer: tuple[FlaskClient, ModuleType], store: DuckDBStore
) -> None:
    _, module = writer
    stored, new = EXPECTED, new_event("api_key.created", tenant_id="acme")
    store.insert_audit_events([stored])

    result = module.write_events([stored, new, new])

    assert result == [False, True, False]
    assert len(store.list_audit_events(None)) == 2


def test_concurrent_deliveries_all_stored(
    writer: tuple[FlaskClient, ModuleType],
    store: DuckDBStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, _ = writer
    payloads = [_event_payload(number) for number in range(8)]

    statuses = _deliver_at_once(lambda: client.application.test_client(), payloads)

    assert statuses == [200] * 8
    assert len(store.list_audit_events(None)) == 8
    messages = [entry["message"] for entry in _log_entries(capsys.readouterr().out)]
    assert messages == ["audit event stored"] * 8


def test_failed_batch_fails_every_delivery(
    writer: tuple[FlaskClient, ModuleType],
    store: DuckDBStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, module = writer
    failing = FailingStore(store)
    monkeypatch.setattr(module, "_store", lambda: failing)
    payloads = [_event_payload(number) for number in range(4)]
    app_client = client.application.test_client

    busy = _deliver_at_once(app_client, payloads)
    failing.failing = False
    redelivered = _deliver_at_once(app_client, payloads)

    assert all(status >= 500 for status in busy)
    assert redelivered == [200] * 4
    assert len(store.list_audit_events(None)) == 4
