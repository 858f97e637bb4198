"""Fixtures of the end-to-end tests: the local stack, started once per module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from e2e_stack import RunningStack, start_stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = [tool for tool in ("gcloud", "java") if shutil.which(tool) is None]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"the Pub/Sub emulator needs {missing} on PATH")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    running.stop()
