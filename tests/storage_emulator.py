"""The Cloud Storage emulator (gcp-storage-emulator) as a loopback server for tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from urllib.error import URLError


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class StorageEmulator:
    """Runs ``python -m gcp_storage_emulator start`` in memory on a free port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gcp_storage_emulator",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--in-memory",
                "--quiet",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read() if self._process.stderr else b""
                raise RuntimeError(
                    f"the storage emulator exited: {error.decode(errors='replace')}"
                )
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1):  # noqa: S310
                    return
            except (URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the storage emulator did not answer within 30 s")

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
