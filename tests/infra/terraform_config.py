"""Read infra/terraform with python-hcl2, for the infrastructure tests.

python-hcl2 keeps the quotes of string literals and block labels
(``"\\"editor\\""``); ``unquote`` strips them so tests compare plain values.
Expressions stay as ``${...}`` strings.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import hcl2

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "infra" / "terraform"
MODULES = TERRAFORM / "modules"


def tf_files() -> list[Path]:
    return sorted(
        path for path in TERRAFORM.rglob("*.tf") if ".terraform" not in path.parts
    )


@cache
def parse(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        parsed: dict[str, Any] = hcl2.load(handle)
    return parsed


def unquote(value: Any) -> Any:
    """Strip python-hcl2's quotes from literals, recursively; drop its markers."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(item) for item in value]
    if isinstance(value, dict):
        return {
            unquote(key): unquote(item)
            for key, item in value.items()
            if not key.startswith("__")
        }
    return value


def blocks(path: Path, kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (type, name, body) of each ``resource`` or ``data`` block."""
    for entry in parse(path).get(kind, []):
        for type_, named in entry.items():
            for name, body in named.items():
                yield unquote(type_), unquote(name), body


def variables(path: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for entry in parse(path).get("variable", []):
        for name, body in entry.items():
            found[unquote(name)] = body
    return found


def outputs(path: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for entry in parse(path).get("output", []):
        for name, body in entry.items():
            found[unquote(name)] = body
    return found


def root_locals() -> dict[str, Any]:
    """The ``locals`` of the root module, merged across its files."""
    merged: dict[str, Any] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        for entry in parse(path).get("locals", []):
            merged.update(entry)
    return merged


def root_variable_default(name: str) -> Any:
    return unquote(variables(TERRAFORM / "variables.tf")[name].get("default"))


def load_package_script() -> ModuleType:
    """Import infra/package.py, which is a script, not a package module."""
    name = "infra_package"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "infra" / "package.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
