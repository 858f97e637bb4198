"""Install and run bqemulator, a BigQuery REST emulator backed by DuckDB.

bqemulator 1.4.0 loads DuckDB's ``spatial`` and ``avro`` extensions at start and
downloads them when missing, which fails offline. The ``duckdb-extension-*``
wheels carry those binaries for DuckDB 1.5.5 only, while the project pins
another DuckDB, so the emulator gets its own virtual environment,
``.venv-bqemulator`` at the repository root, built from ``bqemulator.lock``
beside this file. ``install`` also installs the extension binaries from the
wheels into an extension folder inside that environment. DuckDB looks for
extensions in ``~/.duckdb/extensions``, so the emulator runs with ``HOME``
pointing there.

From a fresh clone::

    .venv/bin/python tests/shared/store/bqemulator_server.py install
    .venv/bin/python tests/shared/store/bqemulator_server.py serve --port 9050

The test fixtures call ``install`` and ``start`` themselves.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.cloud import bigquery

ROOT = Path(__file__).resolve().parents[3]
VENV = ROOT / ".venv-bqemulator"
LOCK = Path(__file__).with_name("bqemulator.lock")
PIP = "pip==25.3"
PROJECT = "test-project"

# Run by the environment's own Python: installs each extension binary that the
# duckdb-extension-* wheels carry, from its file, into ~/.duckdb/extensions.
_INSTALL_EXTENSIONS = """
import pathlib, duckdb, duckdb_extension_avro, duckdb_extension_spatial
con = duckdb.connect()
for module in (duckdb_extension_spatial, duckdb_extension_avro):
    folder = pathlib.Path(module.__file__).parent
    for binary in folder.glob("extensions/v*/*.duckdb_extension"):
        con.execute("INSTALL '" + binary.as_posix().replace("'", "''") + "'")
"""


def _home(venv: Path) -> Path:
    return venv / "duckdb-home"


def install(venv: Path = VENV) -> Path:
    """Build ``venv`` from the lock file unless it was built from this lock."""
    stamp = venv / ".installed"
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", PIP], check=True)
    subprocess.run([*pip, "--requirement", str(LOCK)], check=True)
    home = _home(venv)
    home.mkdir(exist_ok=True)
    subprocess.run(
        [python, "-c", _INSTALL_EXTENSIONS],
        check=True,
        env={**os.environ, "HOME": str(home)},
    )
    stamp.write_text(digest)
    return venv


def bigquery_client(endpoint: str) -> bigquery.Client:
    """Return a client of the emulator at ``endpoint``, without credentials."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=endpoint),
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Emulator:
    """A running emulator process and its REST endpoint."""

    process: subprocess.Popen[bytes]
    endpoint: str
    log_path: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def start(log_path: Path, *, venv: Path = VENV, port: int | None = None) -> Emulator:
    """Start the emulator on loopback and return once it responds to REST calls."""
    port = port or free_port()
    command = [
        str(venv / "bin" / "bqemulator"),
        "start",
        "--rest-host=127.0.0.1",
        f"--rest-port={port}",
        "--grpc-host=127.0.0.1",
        f"--grpc-port={free_port()}",
        f"--project={PROJECT}",
        "--ephemeral",
        "--log-level=warning",
    ]
    env = {**os.environ, "HOME": str(_home(venv))}
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed arguments
            command, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    emulator = Emulator(process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_ready(emulator)
    except BaseException:
        emulator.stop()
        raise
    return emulator


def _wait_ready(emulator: Emulator, timeout_seconds: float = 90.0) -> None:
    url = f"{emulator.endpoint}/bigquery/v2/projects/{PROJECT}/datasets"
    deadline = time.monotonic() + timeout_seconds
    while True:
        if emulator.process.poll() is not None:
            raise RuntimeError(
                f"bqemulator exited with status {emulator.process.returncode}:\n"
                + emulator.log_tail()
            )
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"bqemulator did not answer within {timeout_seconds:g} s:\n"
                    + emulator.log_tail()
                ) from None
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="build .venv-bqemulator from the lock file")
    serve = commands.add_parser("serve", help="install, then run until interrupted")
    serve.add_argument("--port", type=int, default=9050, help="REST port")
    arguments = parser.parse_args()
    venv = install()
    if arguments.command == "serve":
        emulator = start(venv / "bqemulator.log", port=arguments.port)
        print(f"bqemulator is listening on {emulator.endpoint}", flush=True)
        try:
            emulator.process.wait()
        except KeyboardInterrupt:
            emulator.stop()


if __name__ == "__main__":
    main()
