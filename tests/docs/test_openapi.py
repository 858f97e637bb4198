"""docs/openapi.yaml against the issue-key function it describes.

The function runs in-process on a temporary DuckDB file and local keyring, and
every response below must be documented for its operation and status code and
match the documented schema.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import flask
import pytest
import yaml
from openapi_spec_validator import OpenAPIV31SpecValidator

from shared.config import Settings, get_settings
from tests.docs.openapi_checks import HTTP_METHODS, check, schema_validator

ROOT = Path(__file__).parents[2]
OPENAPI_FILE = ROOT / "docs" / "openapi.yaml"
FUNCTION_FILE = ROOT / "functions" / "issue_key" / "main.py"
OPERATOR_TOKEN = "operator-token-for-openapi-tests"
ORIGIN = "https://console.example"

_tenant_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(OPENAPI_FILE.read_text("utf-8"))
    return document


@pytest.fixture(scope="module")
def issue_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """functions/issue_key/main.py, loaded under its own name with test settings."""
    folder = tmp_path_factory.mktemp("issue_key")
    root_logger = logging.getLogger()
    saved_handlers, saved_level = root_logger.handlers[:], root_logger.level
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for variable in list(os.environ):
            if variable.lower() in Settings.model_fields:
                patch.delenv(variable)
        for name, value in {
            "DATA_DIR": str(folder / "data"),
            "KMS_BACKEND": "local",
            "STORE_BACKEND": "duckdb",
            "AUDIT_DELIVERY": "store",
            "OPERATOR_TOKEN_SHA256": hashlib.sha256(
                OPERATOR_TOKEN.encode()
            ).hexdigest(),
            "CORS_ALLOWED_ORIGINS": ORIGIN,
            "VERIFY_CACHE_TTL_SECONDS": "0",
        }.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        module_spec = importlib.util.spec_from_file_location(
            "issue_key_under_openapi_test", FUNCTION_FILE
        )
        assert module_spec is not None
        assert module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        yield module
    get_settings.cache_clear()
    root_logger.handlers[:] = saved_handlers
    root_logger.setLevel(saved_level)


def call(
    module: ModuleType,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> flask.Response:
    """Send one request to the function; ``body`` is passed to the test request."""
    app = flask.Flask("openapi_test")
    with app.test_request_context(path, method=method, headers=headers, **body):
        response: flask.Response = module.issue_key(flask.request)
    return response


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(issue_key: ModuleType, spec: dict[str, Any]) -> dict[str, Any]:
    """A new tenant's admin key, created through the API by the operator."""
    tenant_id = f"openapi_{next(_tenant_numbers)}"
    response = call(
        issue_key,
        "POST",
        "/tenants",
        headers=bearer(OPERATOR_TOKEN),
        json={"tenant_id": tenant_id, "contact_email": "ops@example.test"},
    )
    assert response.status_code == 201
    admin_key: dict[str, Any] = check(spec, "POST", "/tenants", response)["admin_key"]
    return admin_key


# The document itself


def test_openapi_version_is_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1.")


def test_openapi_document_is_valid(spec: dict[str, Any]) -> None:
    errors = [error.message for error in OpenAPIV31SpecValidator(spec).iter_errors()]

    assert errors == []


def test_documented_routes_match_router(
    spec: dict[str, Any], issue_key: ModuleType
) -> None:
    documented = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }

    assert documented == set(issue_key._router().routes)


def test_documented_error_codes_are_used(spec: dict[str, Any]) -> None:
    codes = spec["components"]["schemas"]["Error"]["properties"]["error"]
    sources = "".join(
        path.read_text("utf-8") for path in (FUNCTION_FILE, ROOT / "shared" / "http.py")
    )

    for code in codes["properties"]["code"]["enum"]:
        assert f'"{code}"' in sources, code


# Successful responses


def test_health_response(spec: dict[str, Any], issue_key: ModuleType) -> None:
    response = call(issue_key, "GET", "/healthz")

    assert check(spec, "GET", "/healthz", response) == {"status": "ok"}


def test_create_tenant_response(admin: dict[str, Any]) -> None:
    assert admin["scopes"] == ["admin", "api"]


def test_issue_key_response(
    spec: dict[str, Any], issue_key: ModuleType, admin: dict[str, Any]
) -> None:
    response = call(
        issue_key,
        "POST",
        "/keys",
        headers={"X-API-Key": admin["api_key"]},
        json={"name": "ci", "scopes": ["api"], "expires_in_days": 1.5},
    )

    assert response.status_code == 201
    assert check(spec, "POST", "/keys", response)["name"] == "ci"


def test_list_keys_response(
    spec: dict[str, Any], issue_key: ModuleType, admin: dict[str, Any]
) -> None:
    response = call(issue_key, "GET", "/keys", headers=bearer(admin["api_key"]))

    assert response.status_code == 200
    assert len(check(spec, "GET", "/keys", response)["keys"]) == 1


def test_list_keys_as_operator_response(
    spec: dict[str, Any], issue_key: ModuleType, admin: dict[str, Any]
) -> None:
    response = call(
        issue_key,
        "GET",
        "/keys",
        headers=bearer(OPERATOR_TOKEN),
        query_string={"tenant_id": admin["tenant_id"]},
    )

    assert response.status_code == 200
    (entry,) = check(spec, "GET", "/keys", response)["keys"]
    assert entry["api_key_id"] == admin["api_key_id"]


def test_rotate_key_response(
    spec: dict[str, Any], issue_key: ModuleType, admin: dict[str, Any]
) -> None:
    response = call(
        issue_key,
        "POST",
        f"/keys/{admin['api_key_id']}/rotate",
        headers=bearer(admin["api_key"]),
        json={"grace_period_hours": 1},
    )

    assert response.status_code == 201
    body = check(spec, "POST", "/keys/{api_key_id}/rotate", response)
    assert body["new_key"]["rotated_from_key_id"] == admin["api_key_id"]


def test_revoke_key_response(
    spec: dict[str, Any], issue_key: ModuleType, admin: dict[str, Any]
) -> None:
    issued = call(
        issue_key, "POST", "/keys", headers=bearer(admin["api_key"]), json={}
    ).get_json()

    response = call(
        issue_key,
        "DELETE",
        f"/keys/{issued['api_key_id']}",
        headers=bearer(admin["api_key"]),
    )

    assert response.status_code == 200
    assert check(spec, "DELETE", "/keys/{api_key_id}", response)["status"] == (
        "revoked"
    )


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_verify_response(
    spec: dict[str, Any], issue_key: ModuleType, admin: dict[str, Any], method: str
) -> None:
    response = call(issue_key, method, "/verify", headers=bearer(admin["api_key"]))

    assert response.status_code == 200
    assert check(spec, method, "/verify", response)["tenant_id"] == admin["tenant_id"]


# Error responses


def test_error_responses(
    spec: dict[str, Any], issue_key: ModuleType, admin: dict[str, Any]
) -> None:
    key = bearer(admin["api_key"])
    operator = bearer(OPERATOR_TOKEN)
    key_path = f"/keys/{admin['api_key_id']}"
    cases: list[tuple[str, str, str, dict[str, Any], int, str]] = [
        ("POST", "/tenants", "/tenants", {"json": {}}, 401, "unauthenticated"),
        (
            "POST",
            "/tenants",
            "/tenants",
            {"headers": key, "json": {"tenant_id": "newco"}},
            403,
            "forbidden",
        ),
        (
            "POST",
            "/tenants",
            "/tenants",
            {"headers": operator, "json": {"tenant_id": admin["tenant_id"]}},
            409,
            "tenant_exists",
        ),
        (
            "POST",
            "/tenants",
            "/tenants",
            {"headers": operator, "json": {}},
            400,
            "missing_field",
        ),
        (
            "POST",
            "/tenants",
            "/tenants",
            {"headers": operator, "json": {"tenant_id": "Not-Valid"}},
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/keys",
            "/keys",
            {"headers": key, "json": {"name": ""}},
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/keys",
            "/keys",
            {"headers": key, "json": {"scopes": ["root"]}},
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/keys",
            "/keys",
            {"headers": key, "json": {"scopes": ["credentials:read"]}},
            403,
            "forbidden",
        ),
        (
            "POST",
            "/keys",
            "/keys",
            {"headers": key, "json": {"expires_in_days": 366}},
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/keys",
            "/keys",
            {"headers": key, "json": {"expires_in_days": 0}},
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/keys",
            "/keys",
            {
                "headers": key,
                "data": "{not json",
                "content_type": "application/json",
            },
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/keys",
            "/keys",
            {"headers": key, "data": "name=x", "content_type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/keys",
            "/keys",
            {"headers": key, "json": {"name": "x" * 70_000}},
            413,
            "body_too_large",
        ),
        (
            "POST",
            "/keys",
            "/keys",
            {"headers": operator, "json": {"tenant_id": "nobody_here"}},
            404,
            "not_found",
        ),
        ("GET", "/keys", "/keys", {"headers": operator}, 400, "invalid_request"),
        (
            "POST",
            f"{key_path}/rotate",
            "/keys/{api_key_id}/rotate",
            {"headers": key, "json": {"grace_period_hours": 1000}},
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/keys/key_missing/rotate",
            "/keys/{api_key_id}/rotate",
            {"headers": key},
            404,
            "not_found",
        ),
        (
            "DELETE",
            "/keys/key_missing",
            "/keys/{api_key_id}",
            {"headers": key},
            404,
            "not_found",
        ),
        ("GET", "/verify", "/verify", {"headers": operator}, 401, "unauthenticated"),
        (
            "POST",
            "/verify",
            "/verify",
            {"headers": bearer("acme_api_0000")},
            401,
            "unauthenticated",
        ),
    ]

    for method, path, template, request, status, code in cases:
        response = call(issue_key, method, path, **request)
        case = f"{method} {path} {request.get('json')}"
        assert response.status_code == status, case
        assert check(spec, method, template, response)["error"]["code"] == code, case


def test_limited_key_gets_403(
    spec: dict[str, Any], issue_key: ModuleType, admin: dict[str, Any]
) -> None:
    api_only = call(
        issue_key, "POST", "/keys", headers=bearer(admin["api_key"]), json={}
    ).get_json()

    response = call(issue_key, "GET", "/keys", headers=bearer(api_only["api_key"]))

    assert response.status_code == 403
    assert check(spec, "GET", "/keys", response)["error"]["code"] == "forbidden"


def test_unlisted_method_matches_405_response(
    spec: dict[str, Any], issue_key: ModuleType
) -> None:
    response = call(issue_key, "PUT", "/keys")
    validator = schema_validator(
        spec,
        "/components/responses/MethodNotAllowed/content/application~1json/schema",
    )
    body = json.loads(response.get_data())

    assert response.status_code == 405
    assert validator.is_valid(body)
    assert body["error"]["message"] == "use one of: POST, GET"


def test_unknown_path_is_404(issue_key: ModuleType) -> None:
    response = call(issue_key, "GET", "/nothing-here")

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


# Headers described in the document's text


def test_security_headers_are_documented(
    spec: dict[str, Any], issue_key: ModuleType
) -> None:
    response = call(issue_key, "GET", "/healthz")

    for header in ("Cache-Control", "X-Content-Type-Options"):
        assert f"`{header}: {response.headers[header]}`" in spec["info"]["description"]


def test_cors_preflight_is_documented(
    spec: dict[str, Any], issue_key: ModuleType
) -> None:
    response = call(
        issue_key,
        "OPTIONS",
        "/keys",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    description = spec["info"]["description"]

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    for header in (
        "Access-Control-Allow-Methods",
        "Access-Control-Allow-Headers",
        "Access-Control-Max-Age",
    ):
        assert f"`{header}: {response.headers[header]}`" in description


def test_cors_preflight_other_origin_is_403(issue_key: ModuleType) -> None:
    response = call(
        issue_key, "OPTIONS", "/keys", headers={"Origin": "https://elsewhere.example"}
    )

    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "origin_not_allowed"
