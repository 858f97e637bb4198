"""Services the local stack runs beside the emulator and the functions.

* The provider stand-ins (``provider_standins.py``), in this process, for
  validate_credentials' live checks, with one working request body per
  provider in ``DATA_DIR/standins``.
* An SMTP server that prints every message it receives (aiosmtpd's
  ``Debugging`` handler), unless ``SMTP_HOST`` is set.
* A Slack webhook stand-in that prints every message (``webhook_receiver.py``),
  unless ``SLACK_WEBHOOK_URL`` is set.
* The Cloud Storage emulator (gcp-storage-emulator) with its data in
  ``DATA_DIR/storage-emulator``, when the topology has backup_exporter and
  neither ``STORAGE_API_ENDPOINT`` nor ``STORAGE_EMULATOR_HOST`` is set.
* The scheduler (``shared.scheduler``), in a thread of this process, which
  publishes the topology's schedules to the emulator on their slots.

Servers listen on free loopback ports. ``start_services`` returns the settings
that point the functions at them and what the banner prints.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shared.config import Settings
from shared.scheduler import Scheduler, emulator_publisher, format_slot, publish_slot
from shared.topology import Topology

HOST = "127.0.0.1"
SERVICE_START_SECONDS = 30.0
# Recipient of the operator's alerts when ALERT_OPERATOR_EMAIL is unset.
LOCAL_OPERATOR_EMAIL = "operator@localhost"
WEBHOOK_PATH = "/slack"
BACKUP_FUNCTION = "backup_exporter"

_log = logging.getLogger("local_stack")


class Supervisor(Protocol):
    def start(self, name: str, command: list[str], environment: dict[str, str]) -> None:
        """Start a child process in its own process group."""

    def wait_until(
        self, ready: Callable[[], bool], what: str, timeout_seconds: float
    ) -> None:
        """Wait until ``ready()``; raise if a child exits or time runs out."""

    def add_cleanup(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` when the stack stops."""


ChildEnvironment = Callable[[Mapping[str, str]], dict[str, str]]


class ServiceError(Exception):
    """A service cannot start; its message names what to install or fix."""


@dataclass
class Services:
    """Settings for the function processes, and what the banner shows."""

    environment: dict[str, str] = field(default_factory=dict)
    # Name -> address, for the banner and the state file.
    endpoints: dict[str, str] = field(default_factory=dict)
    standins_dir: Path | None = None


def start_services(
    supervisor: Supervisor,
    topology: Topology,
    settings: Settings,
    data_dir: Path,
    child_environment: ChildEnvironment,
) -> Services:
    """Start every service the topology and the settings call for."""
    services = Services()
    if any(f.name == "validate_credentials" for f in topology.functions):
        _start_standins(supervisor, data_dir, services)
    if settings.smtp_host is None:
        _start_smtp(supervisor, child_environment, services)
    if settings.alert_operator_email is None:
        services.environment["ALERT_OPERATOR_EMAIL"] = LOCAL_OPERATOR_EMAIL
    if settings.slack_webhook_url is None:
        _start_webhook(supervisor, child_environment, services)
    wants_storage = any(f.name == BACKUP_FUNCTION for f in topology.functions)
    if wants_storage and settings.storage_endpoint is None:
        _start_storage(supervisor, child_environment, settings, data_dir, services)
    return services


def _start_standins(supervisor: Supervisor, data_dir: Path, services: Services) -> None:
    # The script's own folder is on sys.path, so the stand-ins import as a module.
    from provider_standins import start_provider_standins

    try:
        standins = start_provider_standins()
    except ImportError as exc:
        raise ServiceError(
            f"the provider stand-ins need {exc.name}; run `make run`, which "
            "installs the pinned packages"
        ) from None
    supervisor.add_cleanup(standins.stop)
    folder = data_dir / "standins"
    standins.write_requests(folder)
    folder.chmod(0o700)
    services.environment.update(standins.settings())
    services.standins_dir = folder
    services.endpoints["provider stand-ins"] = (
        f"AWS STS {standins.aws.endpoint}, Azure {standins.azure.authority_host}, "
        f"OpenAI {standins.openai.api_base}, Google {standins.google.token_uri}"
    )
    _log.info("provider stand-ins ready; request bodies in %s", folder)


def _start_smtp(
    supervisor: Supervisor, child_environment: ChildEnvironment, services: Services
) -> None:
    port = _free_port()
    # -n: do not switch to the user nobody. The default handler, Debugging,
    # prints each message to stdout.
    command = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"{HOST}:{port}"]
    supervisor.start("smtp", command, child_environment({}))
    supervisor.wait_until(
        lambda: _listening(port), "the SMTP server", SERVICE_START_SECONDS
    )
    services.environment.update(
        {
            "SMTP_HOST": HOST,
            "SMTP_PORT": str(port),
            # A loopback server without TLS, holding nothing but these alerts.
            "SMTP_STARTTLS": "false",
        }
    )
    services.endpoints["smtp"] = f"{HOST}:{port}"
    _log.info("SMTP server ready on %s:%d", HOST, port)


def _start_webhook(
    supervisor: Supervisor, child_environment: ChildEnvironment, services: Services
) -> None:
    port = _free_port()
    script = Path(__file__).with_name("webhook_receiver.py")
    command = [sys.executable, str(script), "--port", str(port)]
    supervisor.start("webhook", command, child_environment({}))
    supervisor.wait_until(
        lambda: _listening(port), "the webhook receiver", SERVICE_START_SECONDS
    )
    url = f"http://{HOST}:{port}{WEBHOOK_PATH}"
    services.environment["SLACK_WEBHOOK_URL"] = url
    services.endpoints["slack webhook"] = url
    _log.info("webhook receiver ready on %s", url)


def _start_storage(
    supervisor: Supervisor,
    child_environment: ChildEnvironment,
    settings: Settings,
    data_dir: Path,
    services: Services,
) -> None:
    if importlib.util.find_spec("gcp_storage_emulator") is None:
        raise ServiceError(
            "backup_exporter needs the Cloud Storage emulator: install "
            "gcp-storage-emulator, or set STORAGE_API_ENDPOINT to one that runs"
        )
    port = _free_port()
    folder = data_dir / "storage-emulator"
    folder.mkdir(mode=0o700, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "gcp_storage_emulator",
        "start",
        "--host",
        HOST,
        "--port",
        str(port),
        "--default-bucket",
        settings.backup_bucket,
        "--quiet",
    ]
    # The emulator keeps its objects under STORAGE_BASE/.cloudstorage.
    environment = child_environment({"STORAGE_BASE": str(folder)})
    supervisor.start("storage", command, environment)
    supervisor.wait_until(
        lambda: _listening(port), "the Cloud Storage emulator", SERVICE_START_SECONDS
    )
    url = f"http://{HOST}:{port}"
    services.environment["STORAGE_API_ENDPOINT"] = url
    services.endpoints["storage"] = f"{url}, bucket {settings.backup_bucket}"
    _log.info("Cloud Storage emulator ready on %s, data in %s", url, folder)


def start_scheduler(
    supervisor: Supervisor, topology: Topology, emulator_host: str
) -> dict[str, str]:
    """Start publishing the schedules; return each one's next slot."""
    if not topology.schedules:
        return {}
    publisher = emulator_publisher(emulator_host)
    project = topology.pubsub.project_id

    def publish(schedule: Any, slot: Any) -> str:
        return publish_slot(publisher, project, schedule, slot)

    scheduler = Scheduler(topology.schedules, publish)
    stop = threading.Event()
    thread = threading.Thread(
        target=scheduler.run, args=(stop,), name="scheduler", daemon=True
    )

    def stop_scheduler() -> None:
        stop.set()
        thread.join(timeout=10)
        publisher.stop()

    thread.start()
    supervisor.add_cleanup(stop_scheduler)
    return {name: format_slot(slot) for name, slot in scheduler.next_slots().items()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((HOST, port)) == 0
