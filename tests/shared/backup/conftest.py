"""Fixtures of the backup tests: the storage emulator, settings, provider stand-in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_helpers import make_settings
from storage_emulator import StorageEmulator

from infra.provider_standins import OpenAIStandin
from shared.config import Settings


@pytest.fixture(scope="session")
def emulator() -> Iterator[StorageEmulator]:
    running = StorageEmulator()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def openai() -> Iterator[OpenAIStandin]:
    standin = OpenAIStandin()
    yield standin
    standin.stop()


@pytest.fixture
def bucket_name() -> str:
    return f"backup-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(
    tmp_path: Path,
    emulator: StorageEmulator,
    bucket_name: str,
    clean_env: pytest.MonkeyPatch,
) -> Settings:
    return make_settings(tmp_path / "data", emulator.url, bucket_name)
