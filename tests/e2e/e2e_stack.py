"""The local stack as a real subprocess, and helpers to drive it.

``infra/local_stack.py`` runs with a temporary data folder and free ports, and
everything it prints (its own lines, the emulator's and the functions') goes to
one file that the tests read. Every API key seen in a response is remembered so
that a test can check the output for it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from shared.store._duckdb import DuckDBStore

REPO = Path(__file__).resolve().parents[2]
START_SECONDS = 120.0
STOP_SECONDS = 30.0
POLL_SECONDS = 30.0

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None], what: str, timeout: float = POLL_SECONDS
) -> T:
    """Poll ``check`` until it returns a truthy value; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    admin_key: str
    admin_key_id: str


@dataclass(frozen=True)
class StopResult:
    returncode: int
    # Processes that the stack had started and that still ran after it exited.
    survivors: list[str]
    # How many processes the stack had started, counted just before the stop.
    children: int


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    output_path: Path
    data_dir: Path
    state: dict[str, Any]
    operator_token: str
    # Every secret that must never appear in the output.
    secrets: list[str] = field(default_factory=list)
    stop_result: StopResult | None = None

    @property
    def issue_key_url(self) -> str:
        return str(self.state["functions"]["issue_key"]["url"])

    @property
    def credentials_url(self) -> str:
        return str(self.state["functions"]["validate_credentials"]["url"])

    def standin_request(self, provider: str) -> dict[str, Any]:
        """Return the stack's working request body for ``provider``'s stand-in."""
        path = Path(self.state["standins_dir"]) / f"{provider}.json"
        body: dict[str, Any] = json.loads(path.read_text())
        return body

    def standin_secrets(self) -> list[str]:
        """Return the secrets of every stand-in request body the stack wrote."""
        found = []
        for provider in ("gcp", "aws", "azure", "openai"):
            fields = self.standin_request(provider)["credentials"]
            for name in ("private_key", "aws_secret_access_key", "client_secret"):
                if name in fields:
                    # The longest line: a PEM key's header lines are not secret.
                    found.append(max(fields[name].splitlines(), key=len))
            if provider == "openai":
                found.append(fields["api_key"])
        return found

    def output(self) -> str:
        return self.output_path.read_text(encoding="utf-8", errors="replace")

    def store(self) -> DuckDBStore:
        return DuckDBStore(Path(self.state["audit_database"]))

    def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: dict[str, Any] | None = None,
        base_url: str | None = None,
    ) -> requests.Response:
        """Send a request to issue_key (or ``base_url``); remember any API key."""
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        response = requests.request(
            method,
            (base_url or self.issue_key_url) + path,
            headers=headers,
            json=body,
            timeout=30,
        )
        if response.headers.get("Content-Type", "").startswith("application/json"):
            self.secrets.extend(_api_keys(response.json()))
        return response

    def create_tenant(self, tenant_id: str, contact_email: str | None = None) -> Tenant:
        body = {"tenant_id": tenant_id}
        if contact_email is not None:
            body["contact_email"] = contact_email
        response = self.call("POST", "/tenants", key=self.operator_token, body=body)
        assert response.status_code == 201, response.text
        admin = response.json()["admin_key"]
        return Tenant(tenant_id, admin["api_key"], admin["api_key_id"])

    def lines(self, source: str) -> list[str]:
        """Return the text of every output line that ``source`` printed."""
        found = []
        for line in self.output().splitlines():
            prefix, _, text = line.partition(" | ")
            if prefix.strip() == source:
                found.append(text)
        return found

    def log_entries(self, source: str) -> list[dict[str, Any]]:
        """Return the JSON log lines that ``source`` (a function name) printed."""
        entries = []
        for line in self.output().splitlines():
            prefix, _, text = line.partition(" | ")
            if prefix.strip() != source or not text.startswith("{"):
                continue
            try:
                entries.append(json.loads(text))
            except ValueError:
                continue
        return entries

    def stop(self) -> StopResult:
        """Send SIGINT once and wait for the stack to exit; return what happened."""
        if self.stop_result is None:
            children = descendants(self.process.pid)
            self.process.send_signal(signal.SIGINT)
            try:
                returncode = self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                kill_processes(self.process, children)
                returncode = self.process.wait()
            survivors = [
                name for pid, name in children.items() if is_running(pid, name)
            ]
            self.stop_result = StopResult(returncode, survivors, len(children))
            # Leave nothing running, even when the stack failed to stop it.
            kill_processes(self.process, children)
        return self.stop_result


def start_stack(folder: Path) -> RunningStack:
    """Start infra/local_stack.py on free ports; return once it is ready."""
    data_dir = folder / "data"
    state_file = folder / "state.json"
    output_path = folder / "output.log"
    command = [
        sys.executable,
        str(REPO / "infra" / "local_stack.py"),
        "--data-dir",
        str(data_dir),
        "--state-file",
        str(state_file),
        "--base-port",
        "0",
    ]
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_SECONDS
    while not state_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            kill_processes(process, descendants(process.pid))
            tail = output_path.read_text(errors="replace")[-4000:]
            pytest.fail(f"the local stack did not start; its output ends:\n{tail}")
        time.sleep(0.2)
    state = json.loads(state_file.read_text())
    token = Path(state["operator_token_file"]).read_text().strip()
    return RunningStack(process, output_path, data_dir, state, token, [token])


def _api_keys(body: Any) -> list[str]:
    if isinstance(body, dict):
        found = [body["api_key"]] if isinstance(body.get("api_key"), str) else []
        for value in body.values():
            found += _api_keys(value)
        return found
    if isinstance(body, list):
        return [key for item in body for key in _api_keys(item)]
    return []


# Processes, read from /proc


def descendants(root: int) -> dict[int, str]:
    """Return pid -> identity (start time and command) of every descendant."""
    parents: dict[int, int] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None:
            parents[pid] = int(stat[1])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = _identity(pid)
                frontier.append(pid)
    return {pid: name for pid, name in found.items() if name}


def is_running(pid: int, identity: str) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z" and _identity(pid) == identity


def _identity(pid: int) -> str:
    stat = _stat(pid)
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return ""
    if stat is None:
        return ""
    # Field 22 of /proc/PID/stat, the start time, distinguishes a reused pid.
    return f"{stat[19]} {command.decode(errors='replace').strip()}"


def _stat(pid: int) -> list[str] | None:
    """Return the fields of /proc/PID/stat after the command name, from state on."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def kill_processes(process: subprocess.Popen[bytes], children: dict[int, str]) -> None:
    """SIGKILL the stack and the process groups of its children that still run."""
    for pid, identity in children.items():
        if not is_running(pid, identity):
            continue
        try:
            group = os.getpgid(pid)
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.kill()
    process.wait()
