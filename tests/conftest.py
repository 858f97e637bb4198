import os
from collections.abc import Iterator

import pytest

from shared.config import Settings, get_settings


@pytest.fixture
def clean_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[pytest.MonkeyPatch]:
    """Remove every variable the settings read and run in an empty folder.

    The settings also read ``.env`` from the working directory, so the test runs
    in a fresh folder that has none. The settings cache is cleared on both ends.
    """
    names = set(Settings.model_fields)
    for variable in list(os.environ):
        if variable.lower() in names:
            monkeypatch.delenv(variable)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()
