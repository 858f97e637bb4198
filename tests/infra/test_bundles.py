"""The function bundles of `make package` build, pin and import on their own.

Each bundle is unzipped and imported by a fresh virtual environment that has
only the bundle's requirements.txt installed (with --no-deps, so a missing pin
fails). The environments are kept under build/bundle-venvs, one per
requirements file, so a second run installs nothing.

INFRA_TEST_LOCK names another lock file to build from, to try a candidate lock
before it replaces requirements.lock.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from terraform_config import REPO, load_package_script

from shared.topology import Function, load_topology

TOPOLOGY = load_topology()
VENVS = REPO / "build" / "bundle-venvs"


@pytest.fixture(scope="module")
def package() -> ModuleType:
    return load_package_script()


@pytest.fixture(scope="module")
def lock_path() -> Path:
    return Path(os.environ.get("INFRA_TEST_LOCK", REPO / "requirements.lock"))


@pytest.fixture(scope="module")
def bundles(
    package: ModuleType, lock_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    output = tmp_path_factory.mktemp("bundles")
    built = package.build_bundles(output, lock_path=lock_path)
    return {bundle.function: bundle.path for bundle in built}


def _entries(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _requirements(bundle: Path) -> list[str]:
    text = _entries(bundle)["requirements.txt"].decode()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_every_function_bundled(bundles: dict[str, Path]) -> None:
    assert sorted(bundles) == sorted(function.name for function in TOPOLOGY.functions)


@pytest.mark.parametrize("function", TOPOLOGY.functions, ids=lambda f: f.name)
def test_bundle_layout(bundles: dict[str, Path], function: Function) -> None:
    names = set(_entries(bundles[function.name]))

    assert "main.py" in names
    assert "requirements.txt" in names
    assert "shared/config.py" in names
    assert [name for name in names if "__pycache__" in name] == []


@pytest.mark.parametrize("function", TOPOLOGY.functions, ids=lambda f: f.name)
def test_requirements_pinned_from_lock(
    bundles: dict[str, Path], package: ModuleType, lock_path: Path, function: Function
) -> None:
    lock = set(package.read_lock(lock_path).values())
    requirements = _requirements(bundles[function.name])

    assert "functions-framework" in {line.split("==")[0] for line in requirements}
    assert set(requirements) - lock == set()


def test_issue_key_bundle_leaves_out_local_and_credential_code(
    bundles: dict[str, Path],
) -> None:
    names = {
        line.split("==")[0].lower() for line in _requirements(bundles["issue_key"])
    }

    assert "duckdb" not in names
    assert "boto3" not in names


def test_bundles_are_reproducible(
    bundles: dict[str, Path],
    package: ModuleType,
    lock_path: Path,
    tmp_path: Path,
) -> None:
    again = package.build_bundles(tmp_path, lock_path=lock_path)

    for bundle in again:
        assert bundle.path.read_bytes() == bundles[bundle.function].read_bytes()


@pytest.mark.parametrize("function", TOPOLOGY.functions, ids=lambda f: f.name)
def test_bundle_imports_in_fresh_venv(
    bundles: dict[str, Path], package: ModuleType, function: Function, tmp_path: Path
) -> None:
    source = tmp_path / "bundle"
    with zipfile.ZipFile(bundles[function.name]) as archive:
        archive.extractall(source)
    python = _venv_for(source / "requirements.txt")
    _, external = package.imported_modules(REPO / function.main_file)
    script = textwrap.dedent(
        f"""
        import importlib
        import main
        assert callable(main.{function.entry_point})
        for name in {sorted(external)!r}:
            importlib.import_module(name)
        """
    )

    result = subprocess.run(
        [str(python), "-s", "-E", "-c", script],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "DATA_DIR": str(tmp_path / "data"),
        },
    )

    assert result.returncode == 0, result.stderr[-3000:]


def _venv_for(requirements: Path) -> Path:
    """Return the Python of a venv with exactly ``requirements`` installed."""
    content = requirements.read_bytes()
    key = hashlib.sha256(content + sys.version.encode()).hexdigest()[:16]
    venv = VENVS / key
    python = venv / "bin" / "python"
    if (venv / ".installed").exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    environment = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for command in (
        ["install", "--quiet", "--no-deps", "--requirement", str(requirements)],
        ["check"],
    ):
        result = subprocess.run(
            [str(python), "-m", "pip", *command],
            capture_output=True,
            text=True,
            check=False,
            env=environment,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (venv / ".installed").write_text(content.decode())
    return python
