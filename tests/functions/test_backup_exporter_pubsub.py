"""backup_exporter behind the real Pub/Sub emulator's push subscription.

The emulator (``gcloud beta emulators pubsub start``) pushes each published
message to the function, run by functions-framework as a server. A message
published twice for one slot makes one run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.error import URLError

import pytest
from storage_emulator import StorageEmulator

from shared.backup import build_bucket, load_manifest
from shared.config import Settings, load_settings
from shared.keyservice import Principal
from shared.runtime import build_key_service
from shared.store import build_store

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("gcloud") is None or shutil.which("java") is None,
        reason="the Pub/Sub emulator needs gcloud and java on PATH",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "local-project"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def responds(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback
            return True
    except (URLError, OSError):
        return False


def listens(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start(
    command: list[str], log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=os.environ | env,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    # gcloud starts the emulator's Java process in the same session.
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture
def stack(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    storage = StorageEmulator()
    pubsub_host = f"127.0.0.1:{free_port()}"
    function_port = free_port()
    settings = load_settings(
        data_dir=tmp_path / "data",
        storage_api_endpoint=storage.url,
        backup_bucket=f"backup-{uuid.uuid4().hex[:12]}",
    )
    service = build_key_service(settings)
    service.create_tenant(Principal.operator(), "acme", name="Acme", contact_email=None)
    (tmp_path / "pubsub").mkdir()
    pubsub = start(
        [
            "gcloud",
            "beta",
            "emulators",
            "pubsub",
            "start",
            f"--host-port={pubsub_host}",
            f"--project={PROJECT}",
            f"--data-dir={tmp_path / 'pubsub'}",
        ],
        tmp_path / "pubsub.log",
        {
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
        },
    )
    function_log = tmp_path / "function.log"
    function = start(
        [
            sys.executable,
            "-m",
            "functions_framework",
            "--target=backup_exporter",
            f"--source={ROOT / 'functions/backup_exporter/main.py'}",
            "--signature-type=cloudevent",
            "--host=127.0.0.1",
            f"--port={function_port}",
        ],
        function_log,
        {
            "DATA_DIR": str(settings.data_dir),
            "STORAGE_API_ENDPOINT": storage.url,
            "BACKUP_BUCKET": settings.backup_bucket,
        },
    )
    try:
        wait_for(lambda: responds(f"http://{pubsub_host}/"), "the Pub/Sub emulator")
        wait_for(lambda: listens(function_port), "the function")
        clean_env.setenv("PUBSUB_EMULATOR_HOST", pubsub_host)
        yield {
            "settings": settings,
            "push_url": f"http://127.0.0.1:{function_port}/",
            "function_log": function_log,
        }
    finally:
        stop(function)
        stop(pubsub)
        storage.stop()


def test_published_twice_one_run(stack: dict[str, Any]) -> None:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    settings: Settings = stack["settings"]
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(PROJECT, "backup-requests")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(
        name=subscriber.subscription_path(PROJECT, "backup-exporter"),
        topic=topic,
        push_config={"push_endpoint": stack["push_url"]},
        ack_deadline_seconds=60,
    )

    log: Path = stack["function_log"]

    # The second message follows the first once it is handled: the storage
    # emulator ignores write preconditions, so two attempts racing on one run
    # would not be kept apart there as Cloud Storage keeps them.
    for count in (1, 2):
        publisher.publish(topic, b"{}", scheduled_for="2025-03-01").result(timeout=30)
        wait_for(
            lambda count=count: (
                log.read_text().count("backup trigger handled") >= count
            ),
            f"delivery {count} handled",
        )
    assert load_manifest(build_bucket(settings), "backup-20250301") is not None
    completed = build_store(settings).list_audit_events(
        None, event_type="backup.completed"
    )
    assert len(completed) == 1
    assert "backup trigger handled: already_complete" in log.read_text()
