"""checkov scans infra/terraform: no failed check, every skip justified.

checkov runs from its own virtual environment, .venv-checkov, which
`make test` builds from tests/infra/checkov-requirements.txt. It runs offline:
--skip-download keeps it from fetching policies or guidelines.
"""

import json
import os
import subprocess
from typing import Any

import pytest
from terraform_config import REPO, TERRAFORM

CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `make test`, which builds it")
    result = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(TERRAFORM),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        timeout=300,
    )
    parsed = json.loads(result.stdout)
    single: dict[str, Any] = parsed[0] if isinstance(parsed, list) else parsed
    return single


def test_checkov_finds_no_failure(report: dict[str, Any]) -> None:
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']})"
        for check in report["results"]["failed_checks"]
    ]

    assert failed == []


def test_checkov_parses_every_file(report: dict[str, Any]) -> None:
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] > 40


def test_checkov_skips_are_justified(report: dict[str, Any]) -> None:
    skipped = report["results"]["skipped_checks"]
    unjustified = [
        check["check_id"]
        for check in skipped
        if len(check.get("check_result", {}).get("suppress_comment", "")) < 30
    ]

    assert skipped
    assert unjustified == []
