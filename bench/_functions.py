"""Environment for running the functions in a bench process or server.

The functions read their settings from the environment and a ``.env`` file in
the working directory, so the bench drops every variable the settings read
and works in a folder with no ``.env``, then sets only what it means to.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from bench._machine import REPO
from shared.config import Settings

FUNCTIONS = REPO / "functions"


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """Return ``os.environ`` without the settings' variables, plus ``extra``."""
    names = set(Settings.model_fields)
    environment = {
        name: value for name, value in os.environ.items() if name.lower() not in names
    }
    environment.update(extra)
    return environment


def load_function(name: str, data_dir: Path, work_dir: Path) -> ModuleType:
    """Import ``functions/<name>/main.py`` in this process with its own settings.

    Only for a process of its own (``isolated``): it changes the environment,
    the working directory and stdout, which the functions log to.
    """
    os.environ.clear()
    os.environ.update(clean_environment({"DATA_DIR": str(data_dir)}))
    os.chdir(work_dir)
    # The functions log JSON lines to stdout; the bench keeps stdout for itself.
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the process's life
    spec = importlib.util.spec_from_file_location(
        f"{name}_main", FUNCTIONS / name / "main.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load functions/{name}/main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
