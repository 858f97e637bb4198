"""The machine, the versions and the date a run is recorded with."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Packages whose version moves the figures: the store, the crypto, the server.
PACKAGES = (
    "duckdb",
    "cryptography",
    "cachetools",
    "pydantic",
    "functions-framework",
    "gunicorn",
    "Flask",
    "google-cloud-pubsub",
    "google-cloud-kms",
    "google-cloud-bigquery",
    "google-cloud-storage",
)


def describe(scale: str) -> list[tuple[str, str]]:
    """Return (name, value) pairs for the page's machine table."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("scale", scale),
        ("CPU", _cpu_model()),
        ("cores", _cores()),
        ("memory", _memory()),
        ("load average at start (1, 5, 15 min)", load),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("packages", ", ".join(_version(name) for name in PACKAGES)),
        ("commit", _commit()),
    ]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cores() -> str:
    usable = len(os.sched_getaffinity(0))
    return f"{usable} usable of {os.cpu_count()}"


def _memory() -> str:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    kib = int(line.split()[1])
                    return f"{kib / (1 << 20):.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(name: str) -> str:
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return f"{name} (not installed)"


def _commit() -> str:
    def git(*args: str) -> str:
        result = subprocess.run(  # noqa: S603 - fixed arguments
            ["git", *args],  # noqa: S607 - git from PATH
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        return f"{commit} with uncommitted changes"
    return commit
