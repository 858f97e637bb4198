"""Unit checks of infra/package.py: import discovery and pinning."""

from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType

import pytest
from terraform_config import REPO, load_package_script


@pytest.fixture(scope="module")
def package() -> ModuleType:
    return load_package_script()


def test_type_checking_imports_ignored(package: ModuleType, tmp_path: Path) -> None:
    main = tmp_path / "main.py"
    main.write_text(
        "from typing import TYPE_CHECKING\n"
        "import click\n"
        "if TYPE_CHECKING:\n"
        "    import yaml\n"
        "def handler() -> None:\n"
        "    from cryptography.fernet import Fernet\n"
    )

    found = package.third_party_modules(main)

    assert "click" in found
    assert "cryptography.fernet" in found
    assert "yaml" not in found


def test_shared_imports_followed(package: ModuleType, tmp_path: Path) -> None:
    main = tmp_path / "main.py"
    main.write_text("from shared.store import build_store\n")

    shared, external = package.imported_modules(main)

    assert "shared.store._bigquery" in shared
    assert "google.cloud.bigquery" in external


@pytest.mark.parametrize("edge", sorted(load_package_script().SKIPPED_IMPORTS))
def test_skipped_import_is_lazy(edge: tuple[str, str]) -> None:
    """A skipped edge must stay an import inside a function, never at the top."""
    importer, target = edge
    path = REPO.joinpath(*importer.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = [
        node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
    ]

    assert [name for name in top_level if name.startswith(target)] == []


def test_read_lock_rejects_unpinned_line(package: ModuleType, tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("click==8.5.1\nflask>=3\n")

    with pytest.raises(package.PackageError, match=r"requirements.lock:2"):
        package.read_lock(lock)


def test_unpinned_dependency_named(package: ModuleType, tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("click==8.5.1\n")

    with pytest.raises(package.PackageError, match="functions-framework"):
        package.build_bundles(tmp_path / "out", lock_path=lock)
