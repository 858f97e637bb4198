"""The stack's own duties: the operator token file, and stopping on a child's exit.

The data folder starts with an operator token file that is readable by others,
as if a developer had created it by hand. The last test kills a function: keep
it last in this file.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_stack import RunningStack, descendants, is_running, kill_processes, start_stack

pytestmark = pytest.mark.e2e

TOKEN = "op_e2e_" + secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    folder = tmp_path_factory.mktemp("stack")
    token_file = folder / "data" / "operator-token"
    token_file.parent.mkdir()
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    running = start_stack(folder)
    yield running
    running.stop()


def environment(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {
        name.decode(errors="replace"): value.decode(errors="replace")
        for name, _, value in pairs
    }


def test_existing_token_reused(stack: RunningStack) -> None:
    response = stack.call(
        "POST", "/tenants", key=TOKEN, body={"tenant_id": "e2e_reuse"}
    )

    assert response.status_code == 201


def test_token_file_made_private(stack: RunningStack) -> None:
    mode = Path(stack.state["operator_token_file"]).stat().st_mode & 0o777

    assert mode == 0o600


def test_functions_get_token_digest_only(stack: RunningStack) -> None:
    children = descendants(stack.process.pid)
    functions = [pid for pid, name in children.items() if "functions-framework" in name]
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()

    environments = [environment(pid) for pid in children]
    digests = {environment(pid).get("OPERATOR_TOKEN_SHA256") for pid in functions}

    assert len(functions) >= 2
    assert digests == {digest}
    assert [env for env in environments if TOKEN in "\0".join(env.values())] == []


def test_function_exit_stops_stack(stack: RunningStack) -> None:
    children = descendants(stack.process.pid)
    writer = next(
        pid
        for pid, name in children.items()
        if "--target=audit_writer" in name and os.getpgid(pid) == pid
    )

    os.killpg(writer, signal.SIGKILL)
    try:
        returncode = stack.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        returncode = None
    survivors = [name for pid, name in children.items() if is_running(pid, name)]
    kill_processes(stack.process, children)
    output = stack.output()

    assert returncode == 1
    assert "audit_writer exited unexpectedly (killed by SIGKILL)" in output
    assert survivors == []
    assert TOKEN not in output
