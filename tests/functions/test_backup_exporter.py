"""backup_exporter, fed Pub/Sub push bodies as functions-framework converts them."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import flask
import pytest
from flask.testing import FlaskClient
from storage_emulator import StorageEmulator

from shared.backup import Bucket, build_bucket, load_manifest
from shared.config import Settings, load_settings
from shared.keyservice import Principal
from shared.runtime import build_key_service
from shared.store import build_store

# The fixture type of tests/functions/conftest.py. Importing it from "conftest"
# picks whichever conftest module pytest loaded first.
LoadFunction = Callable[..., tuple[flask.Flask, ModuleType]]

PUBLISHED = "2025-03-01T03:00:00.512Z"


@pytest.fixture(scope="module")
def emulator() -> Iterator[StorageEmulator]:
    running = StorageEmulator()
    yield running
    running.stop()


@pytest.fixture
def env(emulator: StorageEmulator) -> dict[str, str]:
    return {
        "STORAGE_API_ENDPOINT": emulator.url,
        "BACKUP_BUCKET": f"backup-{uuid.uuid4().hex[:12]}",
    }


@pytest.fixture
def settings(data_dir: Path, env: dict[str, str]) -> Settings:
    return load_settings(
        data_dir=data_dir,
        storage_api_endpoint=env["STORAGE_API_ENDPOINT"],
        backup_bucket=env["BACKUP_BUCKET"],
    )


@pytest.fixture
def issued_keys(settings: Settings) -> list[str]:
    service = build_key_service(settings)
    _, admin = service.create_tenant(
        Principal.operator(), "acme", name="Acme", contact_email=None
    )
    other = service.issue_key(Principal.operator(), tenant_id="acme", name="ci")
    return [admin.api_key, other.api_key]


@pytest.fixture
def client(
    load_function: LoadFunction, env: dict[str, str], issued_keys: list[str]
) -> FlaskClient:
    app, _ = load_function("backup_exporter", "cloudevent", **env)
    return app.test_client()


def push_body(
    attributes: dict[str, str] | None = None,
    data: dict[str, Any] | None = None,
    publish_time: str = PUBLISHED,
) -> dict[str, Any]:
    encoded = base64.b64encode(json.dumps(data or {}).encode()).decode()
    return {
        "message": {
            "attributes": attributes or {},
            "data": encoded,
            "messageId": "9001",
            "publishTime": publish_time,
        },
        "subscription": "projects/local-project/subscriptions/backup-exporter",
    }


def bucket(settings: Settings) -> Bucket:
    return build_bucket(settings)


def generations(settings: Settings) -> dict[str, int]:
    return {info.name: info.generation for info in bucket(settings).list("")}


def test_slot_from_attribute(client: FlaskClient, settings: Settings) -> None:
    response = client.post("/", json=push_body({"scheduled_for": "2025-02-27"}))

    assert response.status_code == 200
    assert load_manifest(bucket(settings), "backup-20250227") is not None


def test_slot_from_data_field(client: FlaskClient, settings: Settings) -> None:
    response = client.post("/", json=push_body(data={"scheduled_for": "2025-02-26"}))

    assert response.status_code == 200
    assert load_manifest(bucket(settings), "backup-20250226") is not None


def test_slot_from_publish_time(client: FlaskClient, settings: Settings) -> None:
    response = client.post("/", json=push_body())

    assert response.status_code == 200
    assert load_manifest(bucket(settings), "backup-20250301") is not None


def test_redelivery_one_run(client: FlaskClient, settings: Settings) -> None:
    client.post("/", json=push_body())
    before = generations(settings)

    response = client.post("/", json=push_body(publish_time="2025-03-01T03:09:41Z"))

    assert response.status_code == 200
    assert generations(settings) == before
    events = build_store(settings).list_audit_events(
        None, event_type="backup.completed"
    )
    assert len(events) == 1


def test_completed_event_details(client: FlaskClient, settings: Settings) -> None:
    client.post("/", json=push_body())

    (event,) = build_store(settings).list_audit_events(
        None, event_type="backup.completed"
    )

    assert event.actor_id == "backup_exporter"
    assert event.details["run"] == "backup-20250301"
    assert event.details["rows"]["tenant_api_keys"] == 2


def test_invalid_slot_acknowledged(
    client: FlaskClient, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    response = client.post("/", json=push_body({"scheduled_for": "someday"}))

    assert response.status_code == 200
    assert generations(settings) == {}
    assert "invalid slot 'someday'" in capsys.readouterr().out


def test_push_without_data_acknowledged(client: FlaskClient) -> None:
    body = push_body()
    del body["message"]["data"]

    response = client.post("/", json=body)

    assert response.status_code == 204


def test_storage_down_redelivered(
    load_function: LoadFunction, issued_keys: list[str], data_dir: Path
) -> None:
    app, _ = load_function(
        "backup_exporter",
        "cloudevent",
        STORAGE_API_ENDPOINT="http://127.0.0.1:9",
        BACKUP_BUCKET="backup-unreachable",
        STORAGE_RETRY_SECONDS="1",
    )

    response = app.test_client().post("/", json=push_body())

    assert response.status_code == 500


def test_logs_hold_no_key(
    client: FlaskClient,
    issued_keys: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    client.post("/", json=push_body())

    output = capsys.readouterr().out
    assert "backup trigger handled: completed" in output
    for api_key in issued_keys:
        assert api_key not in output


def test_cold_start_loads_no_cloud_client(data_dir: Path) -> None:
    script = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('main', sys.argv[1])\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(n for n in sys.modules if n.startswith("
        "('google.cloud.storage', 'google.cloud.bigquery'))))\n"
    )
    main = Path(__file__).resolve().parents[2] / "functions/backup_exporter/main.py"

    result = subprocess.run(
        [sys.executable, "-c", script, str(main)],
        capture_output=True,
        text=True,
        check=True,
        env={"DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"},
    )

    assert result.stdout.strip() == "[]"
