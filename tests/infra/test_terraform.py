"""Static checks of infra/terraform: it parses, and its security rules hold.

Terraform cannot initialise here (providers download at run time), so the
configuration is read with python-hcl2.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from terraform_config import (
    MODULES,
    TERRAFORM,
    blocks,
    outputs,
    parse,
    tf_files,
    unquote,
    variables,
)

MODULE_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf")
NINETY_DAYS = f"{90 * 24 * 3600}s"
# BigQuery grants job creation on projects only; Cloud Functions creates the
# build's image repository itself, so the builder's roles have no resource.
PROJECT_ROLES = {
    "roles/bigquery.jobUser",
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
}


def _relative(path: Path) -> str:
    return str(path.relative_to(TERRAFORM))


@pytest.mark.parametrize("path", tf_files(), ids=_relative)
def test_tf_file_parses(path: Path) -> None:
    assert isinstance(parse(path), dict)


def test_modules_exist() -> None:
    assert sorted(path.name for path in MODULES.iterdir()) == [
        "bigquery",
        "functions",
        "kms",
        "monitoring",
        "pubsub",
        "scheduler",
        "secrets",
        "storage",
    ]


@pytest.mark.parametrize("module", sorted(MODULES.iterdir()), ids=lambda p: p.name)
def test_module_has_standard_files(module: Path) -> None:
    present = sorted(path.name for path in module.glob("*.tf"))

    assert present == sorted(MODULE_FILES)


@pytest.mark.parametrize(
    "path", [p for p in tf_files() if p.name == "variables.tf"], ids=_relative
)
def test_variables_typed_and_described(path: Path) -> None:
    declared = variables(path)
    untyped = sorted(name for name, body in declared.items() if "type" not in body)
    undescribed = sorted(
        name for name, body in declared.items() if not body.get("description")
    )

    assert declared
    assert untyped == []
    assert undescribed == []


@pytest.mark.parametrize(
    "path", [p for p in tf_files() if p.name == "outputs.tf"], ids=_relative
)
def test_outputs_described(path: Path) -> None:
    declared = outputs(path)

    assert declared
    assert [
        name for name, body in declared.items() if not body.get("description")
    ] == []


def test_kms_keys_rotate_every_90_days() -> None:
    kms = MODULES / "kms"
    default = unquote(variables(kms / "variables.tf")["rotation_period"]["default"])
    keys = [
        body
        for type_, _, body in blocks(kms / "main.tf", "resource")
        if type_ == "google_kms_crypto_key"
    ]

    assert default == NINETY_DAYS
    assert [key["rotation_period"] for key in keys] == ["${var.rotation_period}"]


def test_kms_resources_prevent_destroy() -> None:
    kms_blocks = [
        (type_, body)
        for type_, _, body in blocks(MODULES / "kms" / "main.tf", "resource")
        if type_ in ("google_kms_key_ring", "google_kms_crypto_key")
    ]

    assert len(kms_blocks) == 2
    for type_, body in kms_blocks:
        assert body["lifecycle"][0]["prevent_destroy"] is True, type_


def test_project_roles_are_documented_ones() -> None:
    roles = set()
    for path in tf_files():
        for type_, _, body in blocks(path, "resource"):
            if type_ == "google_project_iam_member":
                role = unquote(body["role"])
                for_each = unquote(body.get("for_each", ""))
                roles.add(role)
                if role == "${each.key}":
                    roles.remove(role)
                    roles.update(_literal_set(for_each))

    assert roles == PROJECT_ROLES


def _literal_set(expression: str) -> set[str]:
    """Return the strings of a ``${toset([...])}`` literal."""
    inner = expression.removeprefix("${toset([").removesuffix("])}")
    return {item.strip().strip('"') for item in inner.split(",") if item.strip()}


def test_no_secret_values_in_terraform() -> None:
    types = {type_ for path in tf_files() for type_, _, _ in blocks(path, "resource")}

    assert "google_secret_manager_secret_version" not in types


def test_no_primitive_roles() -> None:
    text = "\n".join(path.read_text() for path in tf_files())

    for role in ("roles/owner", "roles/editor", "roles/viewer"):
        assert f'"{role}"' not in text


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not on PATH")
def test_terraform_fmt_clean() -> None:
    terraform = shutil.which("terraform")
    assert terraform is not None
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-list=true", str(TERRAFORM)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull},
    )

    assert result.stdout == ""
    assert result.returncode == 0
