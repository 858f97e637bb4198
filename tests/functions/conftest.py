import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import flask
import pytest
from functions_framework import create_app

from shared.config import get_settings

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"

LoadFunction = Callable[..., tuple[flask.Flask, ModuleType]]


class CurrentStdout:
    """Writes to whatever ``sys.stdout`` is now.

    pytest gives each test phase a new capture stream, so a handler bound to
    the stream of the setup phase would write nowhere during the test.
    """

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def load_function(
    clean_env: pytest.MonkeyPatch, data_dir: Path
) -> Iterator[LoadFunction]:
    """Import a function's main.py fresh, with the given environment.

    The modules read their settings and configure logging at import, so each
    test sets its environment first and gets a new module. The root logger,
    ``sys.path`` and the variables functions-framework writes are restored.
    """
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    clean_env.setattr(sys, "path", sys.path[:])

    def load(
        target: str, signature_type: str = "http", **env: str
    ) -> tuple[flask.Flask, ModuleType]:
        clean_env.setenv("FUNCTION_TARGET", target)
        clean_env.setenv("FUNCTION_SIGNATURE_TYPE", signature_type)
        clean_env.setenv("DATA_DIR", str(data_dir))
        for name, value in env.items():
            clean_env.setenv(name, value)
        get_settings.cache_clear()
        app = create_app(
            target=target,
            source=str(FUNCTIONS / target / "main.py"),
            signature_type=signature_type,
        )
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(CurrentStdout())  # type: ignore[arg-type]
        return app, sys.modules["main"]

    yield load
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
