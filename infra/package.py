"""Build one source bundle per Cloud Function, for Terraform to upload.

``make package`` runs this script. For each function in ``infra/topology.yaml``
it writes ``build/functions/<name>.zip`` containing:

    main.py            the files of functions/<name>/, at the root
    shared/            the shared package (Python files and py.typed)
    requirements.txt   the function's runtime dependencies, pinned

Dependencies are found by reading imports, not by running code. Starting from
``main.py``, every import of a ``shared`` module is followed, including imports
inside functions (the store and KMS backends are imported on first use) but not
those under ``if TYPE_CHECKING:``. Each third-party module is mapped to the
distribution that installed it in the environment running this script, and the
closure of what those distributions require is pinned to the versions in
``requirements.lock``. Markers are evaluated for the running interpreter, so run
the script with the Python of the Cloud Functions runtime (3.11, Linux). A
distribution missing from the lock stops the build with its name.

Archives are reproducible: sorted entries, fixed timestamps and modes. An
unchanged function gets a byte-identical zip, so Terraform does not redeploy it.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import importlib.util
import sys
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

from shared.topology import DEFAULT_TOPOLOGY_PATH, TopologyError, load_topology

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "build" / "functions"
DEFAULT_LOCK = REPO / "requirements.lock"

# Lazy imports that a deployed function never runs, so their dependencies stay
# out of its bundle. Each entry is (importing module, imported module).
SKIPPED_IMPORTS: dict[tuple[str, str], str] = {
    ("shared.store", "shared.store._duckdb"): (
        "Terraform sets STORE_BACKEND=bigquery; DuckDB is the local store"
    ),
    ("shared.crypto.managers", "shared.credentials"): (
        "only CredentialsManager's validate_* helpers import it; a function that "
        "checks credentials imports shared.credentials itself"
    ),
}

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o644 << 16
_SHARED_SUFFIXES = (".py", ".typed")


class PackageError(Exception):
    """A bundle cannot be built; the message names the function and the fix."""


@dataclass(frozen=True)
class Bundle:
    function: str
    path: Path
    requirements: tuple[str, ...]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        bundles = build_bundles(
            args.output,
            topology_path=args.topology,
            lock_path=args.lock,
            only=args.functions,
        )
    except (PackageError, TopologyError) as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    for bundle in bundles:
        count = len(bundle.requirements)
        print(f"{bundle.path}  ({count} pinned requirements)")
    return 0


def build_bundles(
    output: Path,
    *,
    topology_path: Path = DEFAULT_TOPOLOGY_PATH,
    lock_path: Path = DEFAULT_LOCK,
    only: Sequence[str] = (),
) -> list[Bundle]:
    """Write a zip per function of the topology (or of ``only``) into ``output``."""
    topology = load_topology(topology_path)
    names = [function.name for function in topology.functions]
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise PackageError(
            f"unknown functions {', '.join(unknown)}: expected names from "
            f"{topology_path.name}: {', '.join(names)}"
        )
    lock = read_lock(lock_path)
    output.mkdir(parents=True, exist_ok=True)
    bundles = []
    for function in topology.functions:
        if only and function.name not in only:
            continue
        source = REPO / function.source
        requirements = pinned_requirements(
            function.name, third_party_modules(source / "main.py"), lock
        )
        path = output / f"{function.name}.zip"
        write_bundle(path, source, requirements)
        bundles.append(Bundle(function.name, path, requirements))
    return bundles


# Imports


def third_party_modules(main_file: Path) -> set[str]:
    """Return the non-stdlib, non-shared modules that ``main_file`` reaches."""
    return imported_modules(main_file)[1]


def imported_modules(main_file: Path) -> tuple[set[str], set[str]]:
    """Return the shared modules and the third-party modules ``main_file`` reaches."""
    if not main_file.is_file():
        raise PackageError(f"{main_file} not found: a function needs its main.py")
    pending: list[tuple[str, Path]] = [("main", main_file)]
    seen: set[str] = set()
    external: set[str] = set()
    while pending:
        module, path = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        for imported in _imports(path, module):
            if _skipped(module, imported):
                continue
            if imported == "shared" or imported.startswith("shared."):
                pending.extend(_shared_files(imported))
            elif imported.split(".")[0] not in sys.stdlib_module_names:
                external.add(imported)
    return seen - {"main"}, external


def _skipped(module: str, imported: str) -> bool:
    return any(
        module == importer and (imported == target or imported.startswith(target + "."))
        for importer, target in SKIPPED_IMPORTS
    )


def _imports(path: Path, module: str) -> Iterator[str]:
    """Yield the modules a file imports, resolving ``from X import name``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            if base == "__future__":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if _is_module(candidate) else base


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Walk the tree, leaving out the bodies of ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _is_module(name: str) -> bool:
    if name == "shared" or name.startswith("shared."):
        return _shared_path(name) is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _shared_path(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _shared_files(module: str) -> Iterator[tuple[str, Path]]:
    """Yield ``module`` and the packages above it, as importing it runs them all."""
    parts = module.split(".")
    for end in range(1, len(parts) + 1):
        name = ".".join(parts[:end])
        path = _shared_path(name)
        if path is not None:
            yield name, path
        elif not REPO.joinpath(*parts[:end]).is_dir():  # a namespace package
            raise PackageError(f"cannot find module {name} under {REPO / 'shared'}")


# Distributions


def read_lock(path: Path) -> dict[NormalizedName, str]:
    """Return ``name==version`` lines of a lock file, keyed by normalised name."""
    pins: dict[NormalizedName, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, separator, version = line.partition("==")
        if not separator or not version.strip():
            raise PackageError(f"{path.name}:{number}: expected name==version")
        pins[canonicalize_name(name.strip())] = f"{name.strip()}=={version.strip()}"
    return pins


def pinned_requirements(
    function: str, modules: Iterable[str], lock: dict[NormalizedName, str]
) -> tuple[str, ...]:
    """Pin every distribution ``modules`` need, with what those require in turn."""
    index = _file_index()
    roots: set[NormalizedName] = set()
    for module in modules:
        distribution = _distribution_of(module, index)
        if distribution is None:
            raise PackageError(
                f"{function}: no installed distribution provides {module}; "
                "install the project's requirements first (make test)"
            )
        roots.add(distribution)
    needed = _closure(roots)
    missing = sorted(needed - set(lock))
    if missing:
        raise PackageError(
            f"{function} needs {', '.join(missing)}, which requirements.lock does "
            "not pin; add them to the lock"
        )
    return tuple(sorted((lock[name] for name in needed), key=str.lower))


def _file_index() -> dict[Path, NormalizedName]:
    """Map every file of every installed distribution to the distribution."""
    index: dict[Path, NormalizedName] = {}
    for distribution in importlib.metadata.distributions():
        name = canonicalize_name(distribution.metadata["Name"])
        for file in distribution.files or ():
            index[Path(str(distribution.locate_file(file))).resolve()] = name
    return index


def _distribution_of(
    module: str, index: dict[Path, NormalizedName]
) -> NormalizedName | None:
    # By file, because a namespace package (google) spans many distributions.
    file = _module_file(module)
    return None if file is None else index.get(file.resolve())


def _module_file(module: str) -> Path | None:
    loaded = sys.modules.get(module)
    file = getattr(loaded, "__file__", None)
    if isinstance(file, str):
        return Path(file)
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin in (None, "namespace", "built-in", "frozen"):
        return None
    return Path(spec.origin)


def _closure(roots: Iterable[NormalizedName]) -> set[NormalizedName]:
    """Return ``roots`` and every distribution they require, with extras."""
    environment = {key: str(value) for key, value in default_environment().items()}
    pending: list[tuple[NormalizedName, str]] = [(root, "") for root in roots]
    done: set[tuple[NormalizedName, str]] = set()
    while pending:
        name, extra = pending.pop()
        if (name, extra) in done:
            continue
        done.add((name, extra))
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            raise PackageError(f"{name} is required but not installed") from None
        for line in requires:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is not None and not marker.evaluate(
                {**environment, "extra": extra}
            ):
                continue
            if marker is None and extra:
                continue  # already taken with the base requirements
            dependency = canonicalize_name(requirement.name)
            pending.append((dependency, ""))
            pending.extend((dependency, wanted) for wanted in requirement.extras)
    return {name for name, _ in done}


# Archives


def write_bundle(path: Path, source: Path, requirements: Sequence[str]) -> None:
    """Write the zip: the function's files, ``shared`` and ``requirements.txt``."""
    header = "# Generated by infra/package.py from requirements.lock; do not edit.\n"
    entries: dict[str, bytes] = {
        "requirements.txt": (header + "\n".join(requirements) + "\n").encode()
    }
    for file in _source_files(source):
        entries[file.relative_to(source).as_posix()] = file.read_bytes()
    for file in _source_files(REPO / "shared", _SHARED_SUFFIXES):
        entries[file.relative_to(REPO).as_posix()] = file.read_bytes()
    temporary = path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = _FILE_MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name])
    temporary.replace(path)


def _source_files(root: Path, suffixes: tuple[str, ...] = ()) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        if suffixes and path.suffix not in suffixes:
            continue
        files.append(path)
    return files


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python infra/package.py",
        description="Build build/functions/<name>.zip for each Cloud Function.",
    )
    parser.add_argument(
        "functions", nargs="*", help="functions to build (default: every one)"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="folder for the zips"
    )
    parser.add_argument(
        "--lock", type=Path, default=DEFAULT_LOCK, help="pinned requirements file"
    )
    parser.add_argument(
        "--topology",
        type=Path,
        default=DEFAULT_TOPOLOGY_PATH,
        help="topology file listing the functions",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main())
