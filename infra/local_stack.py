"""Run the platform on this machine: the Pub/Sub emulator and every function.

``make run`` starts this script. It reads ``infra/topology.yaml``, starts the
Pub/Sub emulator, creates the topics and subscriptions on it, starts the
services beside the functions (``local_services.py``: provider stand-ins, an
SMTP server and a Slack webhook stand-in that print the alerts, the Cloud
Storage emulator), starts each function with functions-framework on its own
port, publishes the topology's schedules on time, and prints a curl
walk-through. Every child runs in its own process group. Ctrl-C, SIGTERM or
SIGHUP stops them all (the emulator's Java process included) and exits 0. A
child that exits on its own stops the stack with a non-zero status. SIGKILL
cannot be handled, so it leaves the children running.

The data folder (``--data-dir``, default ``.data``) contains the DuckDB file, the
local keyring and ``operator-token``, a bootstrap credential generated on the
first run and kept with mode 0600. The token is never printed: the functions
receive only its SHA-256 digest.

The emulator keeps nothing between runs (its ``--data-dir`` stores only an
``env.yaml``), so the topics and subscriptions are created on every start.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from local_services import ServiceError, start_scheduler, start_services

from shared.config import ConfigError, Settings, load_settings
from shared.topology import (
    DEFAULT_TOPOLOGY_PATH,
    Subscription,
    Topology,
    TopologyError,
    load_topology,
)

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
TOKEN_FILE = "operator-token"  # noqa: S105 - a file name
EMULATOR_START_SECONDS = 90.0
FUNCTION_START_SECONDS = 60.0
STOP_SECONDS = 10.0

_log = logging.getLogger("local_stack")
_child_log = logging.getLogger("local_stack.child")


class StackError(Exception):
    """The stack cannot start or keep running; the message gives the cause."""


class StopRequested(Exception):
    """SIGINT, SIGTERM or SIGHUP was received."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    _configure_output()
    stop = threading.Event()
    received: list[str] = []

    def request_stop(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    # SIGHUP arrives when the terminal closes.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, request_stop)
    supervisor = Supervisor(stop)
    status = 0
    with tempfile.TemporaryDirectory(prefix="local-stack-") as runtime_dir:
        try:
            _run(args, supervisor, Path(runtime_dir))
        except StopRequested:
            _log.info("received %s; stopping every child", received[0])
        except StackError as exc:
            _log.error("%s", exc)
            status = 1
        finally:
            supervisor.stop_all()
            if args.state_file is not None:
                args.state_file.unlink(missing_ok=True)
    return status


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the Pub/Sub emulator and every function locally."
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=REPO / ".data",
        help="folder for the DuckDB file, the local keyring and the operator "
        "token (default: .data in the repository)",
    )
    parser.add_argument(
        "--base-port",
        type=int,
        help="put the emulator on this port and the functions on the next ones, "
        "in topology order; 0 picks free ports (default: the topology's ports)",
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        help="once everything is ready, write the URLs, ports, emulator host, "
        "project and data folder to this JSON file; it is removed on exit",
    )
    parser.add_argument(
        "--topology",
        type=Path,
        default=DEFAULT_TOPOLOGY_PATH,
        help="topology file (default: infra/topology.yaml)",
    )
    args = parser.parse_args(argv)
    if args.state_file is not None:
        args.state_file = args.state_file.resolve()
    return args


def _run(args: argparse.Namespace, supervisor: Supervisor, runtime_dir: Path) -> None:
    """Start everything, print the walk-through, then watch the children."""
    _require_tools()
    try:
        topology = load_topology(args.topology)
    except TopologyError as exc:
        raise StackError(str(exc)) from None
    ports = _assign_ports(topology, args.base_port)
    data_dir = _prepare_data_dir(args.data_dir)
    settings = _settings(data_dir)
    database = data_dir / f"{settings.tenants_dataset_id}.duckdb"
    token_file, token_digest = _operator_token(data_dir)
    emulator_host = f"{HOST}:{ports.emulator}"
    urls = {name: f"http://{HOST}:{port}" for name, port in ports.functions.items()}

    _start_emulator(supervisor, topology, emulator_host, data_dir)
    _create_pubsub_resources(topology, emulator_host, urls)
    environment = {
        "DATA_DIR": str(data_dir),
        "AUDIT_DELIVERY": "pubsub",
        "PUBSUB_EMULATOR_HOST": emulator_host,
        "PUBSUB_PROJECT_ID": topology.pubsub.project_id,
        "OPERATOR_TOKEN_SHA256": token_digest,
        # Local clients connect directly, so X-Forwarded-For is theirs to forge.
        "TRUSTED_PROXY_HOPS": "0",
    }
    try:
        services = start_services(
            supervisor, topology, settings, data_dir, _child_environment
        )
    except ServiceError as exc:
        raise StackError(str(exc)) from None
    environment.update(services.environment)
    _start_functions(supervisor, topology, ports, environment, runtime_dir)
    next_slots = start_scheduler(supervisor, topology, emulator_host)

    state = {
        "project": topology.pubsub.project_id,
        "emulator_host": emulator_host,
        "emulator_port": ports.emulator,
        "data_dir": str(data_dir),
        "operator_token_file": str(token_file),
        "audit_database": str(database),
        "functions": {
            name: {"url": urls[name], "port": port}
            for name, port in ports.functions.items()
        },
        "services": services.endpoints,
        "standins_dir": str(services.standins_dir) if services.standins_dir else None,
        "schedules": next_slots,
    }
    if args.state_file is not None:
        _write_json(args.state_file, state)
    _log.info("%s", _banner(topology, state), extra={"plain": True})
    supervisor.watch()


# Output


# Loggers of this process other than the stack's own, by the name printed.
_SOURCES = {"shared.scheduler": "scheduler"}


class _Formatter(logging.Formatter):
    """Formatter that prefixes each line with its source, except ``plain`` records."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if getattr(record, "plain", False):
            return message
        source = getattr(record, "source", None) or _SOURCES.get(
            record.name, "local-stack"
        )
        return f"{source:<12} | {message}"


def _configure_output() -> None:
    # One handler, so lines of the stack and of its children never interleave.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    _log.setLevel(logging.INFO)
    for name in _SOURCES:
        logging.getLogger(name).setLevel(logging.INFO)


# Setup steps


def _require_tools() -> None:
    missing = []
    if shutil.which("gcloud") is None:
        missing.append(
            "gcloud: install the Google Cloud CLI with its beta and "
            "pubsub-emulator components "
            "(https://cloud.google.com/sdk/docs/install, then "
            "`gcloud components install beta pubsub-emulator`)"
        )
    if shutil.which("java") is None:
        missing.append(
            "java: the Pub/Sub emulator needs a Java runtime "
            "(for example `apt-get install default-jre-headless`)"
        )
    if missing:
        raise StackError("not found on PATH: " + "; ".join(missing))


def _prepare_data_dir(path: Path) -> Path:
    data_dir = path.expanduser().resolve()
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StackError(f"cannot create the data folder {data_dir}: {exc}") from None
    _log.info("data folder: %s", data_dir)
    return data_dir


def _operator_token(data_dir: Path) -> tuple[Path, str]:
    """Create the operator token file once; return its path and SHA-256 hex."""
    path = data_dir / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _log.info("operator token: reusing %s", path)
    else:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write("op_" + secrets.token_urlsafe(32) + "\n")
        _log.info("operator token: generated %s (mode 0600)", path)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
        _log.warning("%s was readable by others; its mode is now 0600", path)
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise StackError(f"{path} is empty; delete it to generate a new token")
    return path, hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Ports:
    emulator: int
    functions: dict[str, int]


def _assign_ports(topology: Topology, base_port: int | None) -> Ports:
    names = [function.name for function in topology.functions]
    if base_port == 0:
        numbers = _free_ports(len(names) + 1)
    elif base_port is not None:
        if not 1024 <= base_port <= 65535 - len(names):
            raise StackError(
                f"--base-port must be 0 or between 1024 and {65535 - len(names)}"
            )
        numbers = list(range(base_port, base_port + len(names) + 1))
    else:
        numbers = [topology.pubsub.emulator_port]
        numbers += [function.port for function in topology.functions]
    ports = Ports(numbers[0], dict(zip(names, numbers[1:], strict=True)))
    for owner, port in [
        ("the Pub/Sub emulator", ports.emulator),
        *ports.functions.items(),
    ]:
        if not _port_is_free(port):
            raise StackError(
                f"port {port} for {owner} is already in use on {HOST}; stop the "
                "process that uses it or pass --base-port"
            )
    return ports


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the servers do, so that connections of a previous run in TIME_WAIT
        # do not count, while a listening socket still does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _start_emulator(
    supervisor: Supervisor, topology: Topology, host: str, data_dir: Path
) -> None:
    emulator_dir = data_dir / "pubsub-emulator"
    emulator_dir.mkdir(exist_ok=True)
    command = [
        "gcloud",
        "beta",
        "emulators",
        "pubsub",
        "start",
        f"--host-port={host}",
        f"--project={topology.pubsub.project_id}",
        f"--data-dir={emulator_dir}",
    ]
    # No prompts and no update check: gcloud must not wait for input or network.
    environment = {
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
    }
    supervisor.start("pubsub", command, _child_environment(environment))
    supervisor.wait_until(
        lambda: _answers(f"http://{host}/", require_ok=True),
        "the Pub/Sub emulator",
        EMULATOR_START_SECONDS,
    )
    _log.info("Pub/Sub emulator ready on %s", host)


def _create_pubsub_resources(
    topology: Topology, emulator_host: str, urls: Mapping[str, str]
) -> None:
    """Create the topics and subscriptions; update subscriptions that exist."""
    from google.api_core.exceptions import GoogleAPIError

    os.environ["PUBSUB_EMULATOR_HOST"] = emulator_host
    try:
        _create_topics_and_subscriptions(topology, urls)
    except GoogleAPIError as exc:
        raise StackError(
            f"creating Pub/Sub resources on the emulator failed: {exc}"
        ) from None


def _create_topics_and_subscriptions(
    topology: Topology, urls: Mapping[str, str]
) -> None:
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    project = topology.pubsub.project_id
    with pubsub_v1.PublisherClient() as publisher:
        for topic in topology.topics:
            try:
                publisher.create_topic(name=publisher.topic_path(project, topic.name))
                _log.info("created topic %s", topic.name)
            except AlreadyExists:
                _log.info("topic %s exists", topic.name)
    with pubsub_v1.SubscriberClient() as subscriber:
        for subscription in topology.subscriptions:
            request = _subscription_request(project, subscription, urls)
            endpoint = request["push_config"]["push_endpoint"] or "pull"
            try:
                subscriber.create_subscription(request=request)
                _log.info("created subscription %s -> %s", subscription.name, endpoint)
            except AlreadyExists:
                _update_subscription(subscriber, request)
                _log.info("updated subscription %s -> %s", subscription.name, endpoint)


def _subscription_request(
    project: str, subscription: Subscription, urls: Mapping[str, str]
) -> dict[str, Any]:
    topic = subscription.topic
    endpoint = ""
    if subscription.push_function is not None:
        # With the topic in the path, functions-framework puts it in the
        # CloudEvent's source, as Eventarc does.
        base = urls[subscription.push_function]
        endpoint = f"{base}/projects/{project}/topics/{topic}"
    request: dict[str, Any] = {
        "name": f"projects/{project}/subscriptions/{subscription.name}",
        "topic": f"projects/{project}/topics/{topic}",
        "push_config": {"push_endpoint": endpoint},
        "ack_deadline_seconds": subscription.ack_deadline_seconds,
    }
    retry = subscription.retry_policy
    if retry is not None:
        request["retry_policy"] = {
            "minimum_backoff": {"seconds": retry.minimum_backoff_seconds},
            "maximum_backoff": {"seconds": retry.maximum_backoff_seconds},
        }
    dead_letter = subscription.dead_letter_policy
    if dead_letter is not None:
        request["dead_letter_policy"] = {
            "dead_letter_topic": f"projects/{project}/topics/{dead_letter.topic}",
            "max_delivery_attempts": dead_letter.max_delivery_attempts,
        }
    return request


def _update_subscription(subscriber: Any, request: dict[str, Any]) -> None:
    existing = subscriber.get_subscription(subscription=request["name"])
    if existing.topic != request["topic"]:
        raise StackError(
            f"subscription {request['name']} exists on {existing.topic}, not on "
            f"{request['topic']}; restart the emulator to recreate it"
        )
    # A field in the mask but not in the body is cleared, matching the topology.
    fields = [
        "push_config",
        "ack_deadline_seconds",
        "retry_policy",
        "dead_letter_policy",
    ]
    body = {key: request[key] for key in ["name", *fields] if key in request}
    subscriber.update_subscription(
        request={"subscription": body, "update_mask": {"paths": fields}}
    )


def _start_functions(
    supervisor: Supervisor,
    topology: Topology,
    ports: Ports,
    environment: Mapping[str, str],
    runtime_dir: Path,
) -> None:
    program = Path(sys.executable).parent / "functions-framework"
    if not program.exists():
        raise StackError(
            f"{program} not found; run `make run`, which installs the pinned packages"
        )
    for function in topology.functions:
        if not (REPO / function.main_file).is_file():
            raise StackError(f"{function.name}: {function.main_file} not found")
        command = [
            str(program),
            f"--source={function.main_file}",
            f"--target={function.entry_point}",
            f"--signature-type={function.signature_type}",
            f"--host={HOST}",
            f"--port={ports.functions[function.name]}",
        ]
        # gunicorn puts its control socket in XDG_RUNTIME_DIR, or else in one
        # path per user, where two functions would replace each other's.
        function_runtime = runtime_dir / function.name
        function_runtime.mkdir(mode=0o700)
        child_environment = _child_environment(
            {
                **function.environment,
                **environment,
                "XDG_RUNTIME_DIR": str(function_runtime),
            }
        )
        supervisor.start(function.name, command, child_environment)
    for function in topology.functions:
        url = f"http://{HOST}:{ports.functions[function.name]}"
        # Without a health path any HTTP status shows the server is up.
        path = function.health_path
        ready = functools.partial(_answers, url + (path or "/"), require_ok=bool(path))
        supervisor.wait_until(ready, function.name, FUNCTION_START_SECONDS)
        _log.info("%s ready on %s", function.name, url)


def _child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    environment = dict(os.environ)
    # The functions get only the token's digest, never the token itself.
    environment.pop("OPERATOR_TOKEN", None)
    environment["PYTHONUNBUFFERED"] = "1"
    environment.update(extra)
    return environment


def _answers(url: str, *, require_ok: bool) -> bool:
    """Return whether a GET of ``url`` gets a response (200 if ``require_ok``)."""
    # Loopback only: no proxy from the environment applies.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return not require_ok
    except OSError:
        return False


def _settings(data_dir: Path) -> Settings:
    """Read the settings as the functions do, from the environment and .env."""
    try:
        return load_settings(_env_file=REPO / ".env", data_dir=data_dir)
    except ConfigError as exc:
        raise StackError(str(exc)) from None


def _write_json(path: Path, content: Mapping[str, Any]) -> None:
    # Written whole and renamed, so a reader never sees a partial file.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


# Children


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    pump: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.pump = threading.Thread(
            target=self._copy_output, name=f"output-{self.name}", daemon=True
        )
        self.pump.start()

    def _copy_output(self) -> None:
        assert self.process.stdout is not None
        stream: IO[bytes] = self.process.stdout
        for line in iter(stream.readline, b""):
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            _child_log.info("%s", text, extra={"source": self.name})

    def signal_group(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def group_alive(self) -> bool:
        """Return whether any process of the child's group is still running."""
        self.process.poll()
        return _group_alive(self.process.pid)


class Supervisor:
    """Children, each in its own process group, started and stopped together."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._children: list[Child] = []
        self._cleanups: list[Callable[[], None]] = []

    def add_cleanup(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` in ``stop_all``, before the children are stopped."""
        self._cleanups.append(cleanup)

    def start(self, name: str, command: list[str], environment: dict[str, str]) -> None:
        _log.info("starting %s: %s", name, shlex.join(command))
        try:
            process = subprocess.Popen(  # noqa: S603 - fixed commands
                command,
                cwd=REPO,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise StackError(f"cannot start {name}: {exc}") from None
        self._children.append(Child(name, process))

    def wait_until(
        self, ready: Callable[[], bool], what: str, timeout_seconds: float
    ) -> None:
        deadline = time.monotonic() + timeout_seconds
        while not ready():
            self._check()
            if time.monotonic() > deadline:
                raise StackError(
                    f"{what} did not respond within {timeout_seconds:g} s; "
                    "see its output above"
                )
            self._stop.wait(0.2)
        self._check()

    def watch(self) -> None:
        """Block until a signal arrives (StopRequested) or a child exits."""
        while True:
            self._check()
            self._stop.wait(0.5)

    def stop_all(self) -> None:
        """Run the cleanups, then stop every child.

        Each child's group gets SIGTERM, and SIGKILL after STOP_SECONDS.
        """
        while self._cleanups:
            cleanup = self._cleanups.pop()
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - the children must still stop
                _log.warning("stopping a service failed: %s", exc)
        if not self._children:
            return
        for child in reversed(self._children):
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in reversed(self._children):
            while child.group_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            if child.group_alive():
                _log.warning("%s did not stop in time; killing it", child.name)
                child.signal_group(signal.SIGKILL)
                child.process.wait()
        for child in self._children:
            child.pump.join(timeout=2)
        _log.info("stopped")

    def _check(self) -> None:
        if self._stop.is_set():
            raise StopRequested
        for child in self._children:
            code = child.process.poll()
            if code is not None:
                raise StackError(
                    f"{child.name} exited unexpectedly ({_describe_exit(code)}); "
                    "stopping the stack"
                )


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def _group_alive(pgid: int) -> bool:
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command name: state, ppid, pgrp. Zombies have finished.
        if fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


# The walk-through


def _banner(topology: Topology, state: Mapping[str, Any]) -> str:
    cli = shlex.quote(str(Path(sys.executable).parent / "convergence"))
    lines = [
        *_banner_summary(topology, state),
        *_walkthrough_keys(state),
        *_walkthrough_credentials(state),
        *_walkthrough_alerts(state, cli),
        *_walkthrough_audit(state, cli),
        "",
        f"Pub/Sub clients reach the emulator with "
        f"PUBSUB_EMULATOR_HOST={state['emulator_host']}.",
        "",
    ]
    return "\n".join(lines)


def _banner_summary(topology: Topology, state: Mapping[str, Any]) -> list[str]:
    rows = [
        (name, f"{entry['url']}  ({topology.function(name).signature_type})")
        for name, entry in state["functions"].items()
    ]
    rows += [
        ("Pub/Sub", f"{state['emulator_host']}, project {state['project']}"),
        ("data folder", state["data_dir"]),
        *state["services"].items(),
    ]
    rows += [
        (
            "schedule",
            f"{schedule.name}: {schedule.schedule} ({schedule.time_zone}) to "
            f"{schedule.topic}, next {state['schedules'][schedule.name]}",
        )
        for schedule in topology.schedules
    ]
    width = max(len(name) for name, _ in rows)
    lines = ["", "Local stack ready. Press Ctrl-C to stop it.", ""]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    if "smtp" in state["services"] or "slack webhook" in state["services"]:
        lines += [
            "",
            "Alerts print below: emails as smtp lines, Slack messages as webhook "
            "lines.",
        ]
    return lines


def _walkthrough_keys(state: Mapping[str, Any]) -> list[str]:
    token_file = shlex.quote(state["operator_token_file"])
    return [
        "",
        f"The operator token is in {state['operator_token_file']} (mode 0600).",
        "Paste these lines into a shell to try the API:",
        "",
        f'export OPERATOR_TOKEN="$(cat {token_file})"',
        f"URL={state['functions']['issue_key']['url']}",
        "TENANT=demo_$(date +%s)",
        "json_field() { python3 -c 'import json, sys",
        "value = json.load(sys.stdin)",
        "for name in sys.argv[1:]:",
        "    if not isinstance(value, dict) or name not in value:",
        '        sys.exit(f"no {name} in the response: {json.dumps(value)}")',
        "    value = value[name]",
        'print(value)\' "$@"; }',
        "",
        "# Create a tenant; the response carries its first admin key, shown once.",
        'ADMIN_KEY=$(curl -sS -X POST "$URL/tenants" '
        '-H "Authorization: Bearer $OPERATOR_TOKEN" '
        "-H 'Content-Type: application/json' "
        '-d "{\\"tenant_id\\": \\"$TENANT\\"}" | json_field admin_key api_key)',
        "",
        "# Issue a key with the admin key.",
        'KEY_JSON=$(curl -sS -X POST "$URL/keys" '
        '-H "Authorization: Bearer $ADMIN_KEY" '
        "-H 'Content-Type: application/json' "
        """-d '{"name": "demo", "scopes": ["api"]}')""",
        'API_KEY=$(printf %s "$KEY_JSON" | json_field api_key)',
        'KEY_ID=$(printf %s "$KEY_JSON" | json_field api_key_id)',
        "",
        "# Verify it.",
        'curl -sS "$URL/verify" -H "Authorization: Bearer $API_KEY"; echo',
        "",
        "# Rotate it: the old key stays valid for the grace period, here 1 hour.",
        'ROTATED_JSON=$(curl -sS -X POST "$URL/keys/$KEY_ID/rotate" '
        '-H "Authorization: Bearer $ADMIN_KEY" '
        "-H 'Content-Type: application/json' "
        """-d '{"grace_period_hours": 1}')""",
        'NEW_KEY=$(printf %s "$ROTATED_JSON" | json_field new_key api_key)',
        'NEW_KEY_ID=$(printf %s "$ROTATED_JSON" | json_field new_key api_key_id)',
        'curl -sS "$URL/verify" -H "Authorization: Bearer $NEW_KEY"; echo',
        "",
        "# Revoke the new key; verifying it then returns 401.",
        'curl -sS -X DELETE "$URL/keys/$NEW_KEY_ID" '
        '-H "Authorization: Bearer $ADMIN_KEY"; echo',
        'curl -sS -w " HTTP %{http_code}\\n" "$URL/verify" '
        '-H "Authorization: Bearer $NEW_KEY"',
        "",
        "# List the tenant's keys.",
        'curl -sS "$URL/keys" -H "Authorization: Bearer $ADMIN_KEY"; echo',
        "",
    ]


def _walkthrough_credentials(state: Mapping[str, Any]) -> list[str]:
    """Return validate_credentials' lines; they reuse the lines before them."""
    if "validate_credentials" not in state["functions"] or not state["standins_dir"]:
        return []
    admin = '-H "Authorization: Bearer $ADMIN_KEY"'
    as_json = "-H 'Content-Type: application/json'"
    status = 'curl -sS -w " HTTP %{http_code}\\n" -X POST'
    return [
        f"CRED_URL={state['functions']['validate_credentials']['url']}",
        f"STANDINS={shlex.quote(state['standins_dir'])}",
        "# Check a service account key without storing it.",
        f'curl -sS -X POST "$CRED_URL/credentials/validate" {admin} {as_json} '
        '-d @"$STANDINS/gcp.json"; echo',
        "# Store an AWS key: the response carries metadata only; the secret is "
        "never shown again.",
        f'CRED_ID=$(curl -sS -X POST "$CRED_URL/credentials" {admin} {as_json} '
        '-d @"$STANDINS/aws.json" | json_field credential credential_id)',
        "# A key the provider does not know: 422 with the reason.",
        f'{status} "$CRED_URL/credentials" {admin} {as_json} '
        """-d '{"provider": "openai", "credentials": {"api_key": """
        """"sk-proj-0000000000000000000000000000"}}'""",
        "# A paste accident: 400 naming the field and the fix.",
        f'{status} "$CRED_URL/credentials" {admin} {as_json} '
        """-d '{"provider": "azure", "credentials": {"tenant_id": """
        """"0d5f3a4e-1b2c-4d3e-8f90-a1b2c3d4e5f6", "client_id": """
        """"6e1c9d2a-7b3f-4a5e-9c8d-0f1e2d3c4b5a", "client_secret": """
        """"9f8e7d6c-5b4a-4321-8fed-cba987654321"}}'""",
        f'curl -sS "$CRED_URL/credentials" {admin}; echo',
        "# Pipelines read secrets back with a credentials:read key, which only "
        "the operator issues; each read is audited.",
        'READ_KEY=$(curl -sS -X POST "$URL/keys" '
        f'-H "Authorization: Bearer $OPERATOR_TOKEN" {as_json} '
        '-d "{\\"tenant_id\\": \\"$TENANT\\", \\"name\\": \\"pipelines\\", '
        '\\"scopes\\": [\\"credentials:read\\"]}" | json_field api_key)',
        'curl -sS "$CRED_URL/credentials/$CRED_ID/secret" '
        '-H "Authorization: Bearer $READ_KEY"; echo',
        "# Delete (restorable for CREDENTIALS_RECOVERY_DAYS), then restore.",
        f'curl -sS -X DELETE "$CRED_URL/credentials/$CRED_ID" {admin}; echo',
        f'curl -sS -X POST "$CRED_URL/credentials/$CRED_ID/restore" {admin}; echo',
        "",
    ]


def _walkthrough_alerts(state: Mapping[str, Any], cli: str) -> list[str]:
    if "hourly-alert-check" not in state["schedules"]:
        return []
    emulator = shlex.quote(state["emulator_host"])
    return [
        "# Alerts: issue a key that expires in 3 days, then run the hourly alert",
        "# check now instead of on the hour. Its warning is sent once, however",
        "# often the check runs.",
        'curl -sS -X POST "$URL/keys" -H "Authorization: Bearer $ADMIN_KEY" '
        "-H 'Content-Type: application/json' "
        """-d '{"name": "short-lived", "scopes": ["api"], "expires_in_days": 3}'"""
        " | json_field api_key_id",
        f"PUBSUB_EMULATOR_HOST={emulator} {cli} schedule run hourly-alert-check",
        "",
    ]


def _walkthrough_audit(state: Mapping[str, Any], cli: str) -> list[str]:
    data_dir = shlex.quote(state["data_dir"])
    python = shlex.quote(sys.executable)
    database = shlex.quote(state["audit_database"])
    return [
        "# Read the audit log. Events reach it through Pub/Sub and audit_writer,",
        "# so the newest can take a moment to appear.",
        f'DATA_DIR={data_dir} {cli} audit list --tenant "$TENANT"',
        "",
        "# The same without the CLI. DuckDB locks the file, so read it through",
        "# DuckDBStore, which retries while a function holds the lock.",
        f"{python} -c 'import sys",
        "from shared.store._duckdb import DuckDBStore",
        "for event in DuckDBStore(sys.argv[1]).list_audit_events(None):",
        "    print(event.occurred_at.isoformat(), event.event_type, "
        "event.tenant_id, event.details)' \\",
        f"  {database}",
    ]


if __name__ == "__main__":
    sys.exit(main())
