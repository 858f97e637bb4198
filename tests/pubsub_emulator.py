"""The Pub/Sub emulator (``gcloud beta emulators pubsub start``) for tests.

One emulator on a free loopback port; ``topic`` creates a topic with a pull
subscription and ``pull`` reads what was published to it. ``shared_emulator``
gives every test of a process the same one.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any
from urllib.error import URLError

PROJECT = "test-project"
START_SECONDS = 90.0


def emulator_available() -> bool:
    return shutil.which("gcloud") is not None and shutil.which("java") is not None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PubSubEmulator:
    """Runs the emulator in its own process group; ``stop`` ends the group."""

    def __init__(self, data_dir: Path) -> None:
        self.host = f"127.0.0.1:{_free_port()}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log = (data_dir / "emulator.log").open("wb")
        environment = dict(os.environ)
        environment["CLOUDSDK_CORE_DISABLE_PROMPTS"] = "1"
        environment["CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK"] = "1"
        self._process = subprocess.Popen(
            [
                "gcloud",
                "beta",
                "emulators",
                "pubsub",
                "start",
                f"--host-port={self.host}",
                f"--project={PROJECT}",
                f"--data-dir={data_dir}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError("the Pub/Sub emulator exited during start")
            try:
                with urllib.request.urlopen(f"http://{self.host}/", timeout=1):
                    return
            except (URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the Pub/Sub emulator did not answer in {START_SECONDS} s")

    def clients(self) -> tuple[Any, Any]:
        """Return a publisher and a subscriber client of this emulator."""
        from google.cloud import pubsub_v1

        previous = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = self.host
        try:
            return pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        finally:
            if previous is None:
                del os.environ["PUBSUB_EMULATOR_HOST"]
            else:
                os.environ["PUBSUB_EMULATOR_HOST"] = previous

    def topic(self, name: str) -> str:
        """Create topic ``name`` and a pull subscription of the same name."""
        publisher, subscriber = self.clients()
        topic = publisher.topic_path(PROJECT, name)
        publisher.create_topic(name=topic)
        subscriber.create_subscription(
            name=subscriber.subscription_path(PROJECT, name), topic=topic
        )
        subscriber.close()
        return topic

    def pull(self, subscription: str, max_messages: int = 100) -> list[Any]:
        """Return and acknowledge the messages waiting on ``subscription``."""
        _, subscriber = self.clients()
        path = subscriber.subscription_path(PROJECT, subscription)
        with warnings.catch_warnings():
            # Deprecated, but the emulator honours it, and a test that expects
            # no message must not wait for the timeout.
            warnings.simplefilter("ignore", DeprecationWarning)
            response = subscriber.pull(
                subscription=path,
                max_messages=max_messages,
                return_immediately=True,
                timeout=10,
            )
        received = list(response.received_messages)
        if received:
            subscriber.acknowledge(
                subscription=path, ack_ids=[item.ack_id for item in received]
            )
        subscriber.close()
        return [item.message for item in received]

    def stop(self) -> None:
        try:
            os.killpg(self._process.pid, signal.SIGTERM)
            self._process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._log.close()


_shared: PubSubEmulator | None = None


def shared_emulator(data_dir: Path) -> PubSubEmulator:
    """Return the test process's one emulator, started on first use.

    Fixtures in several folders share it; it stops when the process exits.
    """
    global _shared
    if _shared is None:
        _shared = PubSubEmulator(data_dir)
        atexit.register(_shared.stop)
    return _shared
