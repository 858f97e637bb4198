"""The topology, the Terraform and the code describe the same system.

Each test reads two of them and checks one kind of reference: entry points,
topics, tables, functions, environment variables and logged messages.
"""

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from terraform_config import (
    MODULES,
    REPO,
    TERRAFORM,
    blocks,
    parse,
    root_locals,
    root_variable_default,
    unquote,
)

from shared.config import Settings
from shared.store.schema import TABLE_OPTIONS_FILE, TABLES, export_bigquery_schemas
from shared.topology import Function, load_topology

TOPOLOGY = load_topology()
SCHEMAS = TERRAFORM / "schemas"
DECORATORS = {"http": "http", "cloudevent": "cloud_event"}
# A table name after a keyword, past an optional schema (main.tenants). A name
# followed by a dot is a schema whose table comes from an f-string placeholder.
SQL_TABLE = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE(?: IF NOT EXISTS)?)\s+(?:\w+\.)?(\w+)\b(?!\.)"
)
SQL_WORDS = {"IF", "SET", "UNNEST"}
# A common table expression's name: "WITH name AS (" or ", name AS (".
SQL_CTE = re.compile(r"(?:\bWITH|,)\s*(\w+)\s+AS\s*\(")


def _code_files() -> list[Path]:
    return sorted((REPO / "shared").rglob("*.py")) + sorted(
        (REPO / "functions").rglob("*.py")
    )


def _string_constants(path: Path) -> list[str]:
    """Return the string literals of a file, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def _function_access() -> dict[str, Any]:
    access: dict[str, Any] = unquote(root_locals()["function_access"])
    return access


# Topology and code


@pytest.mark.parametrize("function", TOPOLOGY.functions, ids=lambda f: f.name)
def test_entry_point_defined(function: Function) -> None:
    main = REPO / function.main_file
    tree = ast.parse(main.read_text(encoding="utf-8"))
    decorators = {
        node.name: {ast.unparse(item) for item in node.decorator_list}
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }
    expected = f"functions_framework.{DECORATORS[function.signature_type]}"

    assert function.entry_point in decorators
    assert expected in decorators[function.entry_point]


def test_settings_topics_in_topology() -> None:
    topics = {topic.name for topic in TOPOLOGY.topics}
    defaults = {
        name: field.default
        for name, field in Settings.model_fields.items()
        if name.endswith("_topic")
    }

    assert defaults
    assert {
        name: topic for name, topic in defaults.items() if topic not in topics
    } == {}


@pytest.mark.parametrize("function", TOPOLOGY.functions, ids=lambda f: f.name)
def test_function_topics_in_topology(function: Function) -> None:
    topics = {topic.name for topic in TOPOLOGY.topics}
    named = {
        value for name, value in function.environment.items() if name.endswith("_TOPIC")
    }

    assert named - topics == set()


def test_queried_tables_have_schemas() -> None:
    queried = set()
    for path in _code_files():
        texts = _string_constants(path)
        defined = {name for text in texts for name in SQL_CTE.findall(text)}
        for text in texts:
            queried.update(set(SQL_TABLE.findall(text)) - defined)
    queried -= SQL_WORDS

    assert "tenant_api_keys" in queried
    assert queried - set(TABLES) == set()


# Schemas and Terraform


def test_schema_files_match_code(tmp_path: Path) -> None:
    export_bigquery_schemas(tmp_path)
    expected = {path.name: path.read_text() for path in tmp_path.iterdir()}
    committed = {path.name: path.read_text() for path in SCHEMAS.glob("*.json")}

    assert sorted(committed) == sorted(expected)
    for name, text in expected.items():
        assert committed[name] == text, (
            f"{name} is stale: run python -m shared.store.schema --export "
            "infra/terraform/schemas"
        )


def test_terraform_creates_every_table() -> None:
    main = MODULES / "bigquery" / "main.tf"
    tables = {
        name: body
        for type_, name, body in blocks(main, "resource")
        if type_ == "google_bigquery_table"
    }
    table_locals = parse(main)["locals"][0]

    assert tables["this"]["for_each"] == "${local.table_options}"
    assert tables["this"]["schema"] == '${file("${var.schema_dir}/${each.key}.json")}'
    assert TABLE_OPTIONS_FILE in table_locals["table_options"]


def test_root_passes_schema_dir() -> None:
    locals_ = root_locals()

    assert unquote(locals_["schema_dir"]) == "${path.module}/schemas"


def test_access_tables_have_schemas() -> None:
    named = {
        table for access in _function_access().values() for table in access["tables"]
    }
    analyst_tables = set(root_variable_default("analyst_tables"))

    assert named - set(TABLES) == set()
    assert analyst_tables - set(TABLES) == set()


# Topology and Terraform


def test_terraform_reads_topology() -> None:
    default = root_variable_default("topology_file")
    locals_ = root_locals()

    assert (TERRAFORM / default).resolve() == REPO / "infra" / "topology.yaml"
    assert locals_["topology"] == "${yamldecode(file(local.topology_path))}"


@pytest.mark.parametrize("function", TOPOLOGY.functions, ids=lambda f: f.name)
def test_function_has_access_entry(function: Function) -> None:
    assert function.name in _function_access()


@pytest.mark.parametrize("function", TOPOLOGY.functions, ids=lambda f: f.name)
def test_access_topics_in_topology(function: Function) -> None:
    topics = {topic.name for topic in TOPOLOGY.topics}
    publishes = set(_function_access()[function.name]["publish_topics"])

    assert publishes - topics == set()


@pytest.mark.parametrize("function", TOPOLOGY.functions, ids=lambda f: f.name)
def test_environment_names_are_settings(function: Function) -> None:
    settings = {name.upper() for name in Settings.model_fields}
    locals_ = unquote(root_locals())
    names = set(locals_["common_environment"])
    names |= set(function.environment)
    names |= _keys(locals_["function_environment"].get(function.name, {}))
    names |= set(_function_access()[function.name]["secrets"])

    assert names - settings == set()


def _keys(value: dict[str, Any] | str) -> set[str]:
    """Return the keys of a map literal, or the keys named in a merge() expression."""
    if isinstance(value, dict):
        return set(value)
    return set(re.findall(r"\b([A-Z][A-Z0-9_]*)\s*=", value))


def test_only_issue_key_uses_api_key_key() -> None:
    users = {
        name
        for name, access in _function_access().items()
        if "api_keys" in access["kms_keys"]
    }

    assert users == {"issue_key"}


def test_only_validate_credentials_uses_credentials_key() -> None:
    users = {
        name
        for name, access in _function_access().items()
        if "credentials" in access["kms_keys"]
    }

    assert users == {"validate_credentials"}


def test_audit_writer_writes_audit_table_only() -> None:
    access = _function_access()["audit_writer"]

    assert access["tables"] == {"tenant_audit_logs": "editor"}
    assert access["kms_keys"] == {}
    assert access["publish_topics"] == []


# Monitoring and code


def test_metric_messages_are_logged() -> None:
    """Every message a log-based metric matches is a literal in the code."""
    main = (MODULES / "monitoring" / "main.tf").read_text(encoding="utf-8")
    exact = re.findall(r'jsonPayload\.message=\\"([^\\]+)\\"', main)
    prefixes = re.findall(r'jsonPayload\.message=~\\"\^([^\\(]+)', main)
    code = [text for path in _code_files() for text in _string_constants(path)]

    assert exact
    assert prefixes
    for message in exact:
        assert message in code, message
    for prefix in prefixes:
        assert any(text.startswith(prefix) for text in code), prefix


def test_metric_error_types_cover_kms_errors() -> None:
    main = (MODULES / "monitoring" / "main.tf").read_text(encoding="utf-8")
    prefixes = re.findall(r'jsonPayload\.error_type=~\\"\^(\w+)', main)
    kms = (REPO / "shared" / "crypto" / "_kms.py").read_text(encoding="utf-8")
    errors = ["KmsError"] + re.findall(
        r"^class (\w+)\(KmsError\)", kms, flags=re.MULTILINE
    )

    assert prefixes == ["Kms"]
    assert len(errors) > 1
    assert [name for name in errors if not name.startswith("Kms")] == []
