"""Run the benchmarks and write the results page: ``python -m bench``.

Every suite runs in a fresh process; the data sets are built once per run in
a temporary folder and removed at the end. A suite that fails is reported on
the page as failed, the others still run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import audit, backup, coldstart, envelope, expiry, verify, verify_http
from bench._dataset import KeyStore, build_key_store
from bench._machine import REPO, describe
from bench._report import Row, SuiteResult, render
from bench._scale import SCALES, Scale
from bench._timing import isolated

RECORD = REPO / "docs" / "benchmarks.md"
SMOKE = REPO / "build" / "benchmarks-small.md"
SUITES = ("verify", "http", "envelope", "audit", "backup", "expiry", "coldstart")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    scale = SCALES["small" if args.quick else args.scale]
    output = args.output or (RECORD if scale.name == "full" else SMOKE)
    environment = describe(scale.name)
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        work_dir = Path(folder)
        stores = _build_stores(scale, work_dir, args.only)
        results = []
        for name in args.only or SUITES:
            results.append(_run_suite(name, scale, stores, work_dir))
    page = render(results, environment)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page + "\n", encoding="utf-8")
    _progress(f"wrote {output}")
    failed = [result.name for result in results if result.name.endswith("(failed)")]
    return 1 if failed else 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure the hot paths beside same-run baselines and write "
        "the results page.",
    )
    parser.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="full",
        help="data set sizes and time budgets: full (the record, a few minutes "
        "on two cores) or small (a smoke run of about a minute)",
    )
    parser.add_argument("--quick", action="store_true", help="same as --scale small")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SUITES,
        help="run only these suites (default: all)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="page to write (default: docs/benchmarks.md for the full scale, "
        "build/benchmarks-small.md for the small one)",
    )
    return parser.parse_args(argv)


def _build_stores(
    scale: Scale, work_dir: Path, only: Sequence[str] | None
) -> dict[int, KeyStore]:
    needed = {"verify", "http", "backup", "expiry"} & set(only or SUITES)
    if not needed:
        return {}
    stores = {}
    for size in scale.key_store_sizes():
        _progress(f"building a store of {size:,} keys")
        data_dir = work_dir / f"keys-{size}"
        stores[size] = build_key_store(data_dir, size, samples=scale.cold_samples)
    return stores


def _run_suite(
    name: str, scale: Scale, stores: dict[int, KeyStore], work_dir: Path
) -> SuiteResult:
    _progress(f"running {name}")
    suite_dir = work_dir / name
    suite_dir.mkdir()
    calls: dict[str, Callable[[], SuiteResult]] = {
        "verify": lambda: isolated(verify.run, scale, stores, suite_dir),
        "http": lambda: isolated(verify_http.run, scale, stores, suite_dir),
        "envelope": lambda: isolated(envelope.run, scale, suite_dir),
        "audit": lambda: isolated(audit.run, scale, suite_dir),
        "backup": lambda: backup.run(scale, stores),
        "expiry": lambda: isolated(expiry.run, scale, stores),
        "coldstart": lambda: coldstart.run(scale, suite_dir),
    }
    start = time.monotonic()
    try:
        result = calls[name]()
    except Exception as exc:  # noqa: BLE001 - one failed suite must not stop the rest
        traceback.print_exc()
        result = SuiteResult(f"{name} (failed)")
        result.rows.append(
            Row(name, "—", "—", "—", "—", f"**failed**: {type(exc).__name__}: {exc}")
        )
    _progress(f"{name} took {time.monotonic() - start:.0f} s")
    return result


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
