"""docs/audit-event.schema.json is what ``convergence audit schema`` prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from shared.cli import render_audit_event_schema
from shared.events import AuditEvent, new_event

SCHEMA_FILE = Path(__file__).parents[2] / "docs" / "audit-event.schema.json"
REGENERATE = "regenerate it: convergence audit schema > docs/audit-event.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return document


def test_schema_file_is_current() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_audit_event_schema(), (
        REGENERATE
    )


def test_schema_file_is_the_model_schema(schema: dict[str, Any]) -> None:
    body = {key: value for key, value in schema.items() if key != "$schema"}

    assert body == AuditEvent.model_json_schema()


def test_schema_file_is_valid_json_schema(schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)


def test_schema_accepts_published_event(schema: dict[str, Any]) -> None:
    event = new_event(
        "api_key.created",
        tenant_id="acme",
        actor_id="operator",
        details={"api_key_id": "key_0123", "scopes": ["api"]},
    )
    message = json.loads(event.to_message())

    errors = list(Draft202012Validator(schema).iter_errors(message))

    assert errors == []


def test_schema_rejects_unknown_field(schema: dict[str, Any]) -> None:
    message = json.loads(new_event("api_key.created").to_message())
    message["api_key"] = "not allowed"

    assert not Draft202012Validator(schema).is_valid(message)
