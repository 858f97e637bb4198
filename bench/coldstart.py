"""Cold start: the import time of each function's module in a fresh interpreter."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

from bench import _report as report
from bench._functions import FUNCTIONS, clean_environment
from bench._report import Row, SuiteResult
from bench._scale import Scale

TARGET_SECONDS = 0.3
CLOUD_CLIENTS = (
    "google.cloud.pubsub_v1",
    "google.cloud.kms",
    "google.cloud.bigquery",
    "google.cloud.storage",
)

# Runs in the child: time the imports only, not the interpreter's own start.
_PROGRAM = """
import importlib, importlib.util, sys, time
start = time.perf_counter()
for name in sys.argv[2:]:
    importlib.import_module(name)
spec = importlib.util.spec_from_file_location("main", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(time.perf_counter() - start)
"""

METHOD = f"""
Each measurement starts a new `python` process with the embedded backends
(no settings but `DATA_DIR`, in a folder without `.env`) that loads
`functions/<name>/main.py` as functions-framework does
(`spec_from_file_location`) and prints the time the imports took, so the
interpreter's own start-up is left out; functions-framework and Flask, which
the module imports, are included. The baseline first imports
{", ".join(f"`{name}`" for name in CLOUD_CLIENTS)}, as a module that builds
its cloud clients at import would. The table shows the median of the runs;
the two variants alternate.
"""


def run(scale: Scale, work_dir: Path) -> SuiteResult:
    result = SuiteResult("Cold start", method=METHOD)
    names = sorted(path.parent.name for path in FUNCTIONS.glob("*/main.py"))
    environment = clean_environment({"DATA_DIR": str(work_dir / "data")})
    for name in names:
        lazy, eager = [], []
        for _ in range(scale.import_repeats):
            lazy.append(_import_seconds(name, (), environment, work_dir))
            eager.append(_import_seconds(name, CLOUD_CLIENTS, environment, work_dir))
        result.rows.append(
            _row(name, statistics.median(lazy), statistics.median(eager))
        )
    result.notes.append(f"{scale.import_repeats} runs of each variant per function.")
    return result


def _row(name: str, lazy: float, eager: float) -> Row:
    return Row(
        path=f"cold start, {name}",
        figure=f"import {report.duration(lazy)}",
        baseline=f"cloud clients imported eagerly: {report.duration(eager)}",
        ratio=f"{report.ratio(eager / lazy)} faster",
        target=f"under {TARGET_SECONDS * 1000:.0f} ms on the embedded backend",
        result=report.verdict(
            lazy < TARGET_SECONDS,
            f"{report.duration(lazy)}, {lazy / TARGET_SECONDS - 1:.0%} over",
        ),
    )


def _import_seconds(
    name: str, first: tuple[str, ...], environment: dict[str, str], work_dir: Path
) -> float:
    main = FUNCTIONS / name / "main.py"
    completed = subprocess.run(  # noqa: S603 - this interpreter, fixed program
        [sys.executable, "-c", _PROGRAM, str(main), *first],
        cwd=work_dir,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"importing functions/{name}/main.py failed:\n{completed.stderr[-2000:]}"
        )
    return float(completed.stdout.strip().splitlines()[-1])
