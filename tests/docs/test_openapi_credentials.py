"""docs/openapi-credentials.yaml and docs/credentials.md against validate-credentials.

The function runs in-process through functions-framework's ``create_app`` on a
temporary data folder (DuckDB file, local keyring), with its live checks
pointed at the provider stand-ins on loopback. Every response below must be
documented for its operation and status code and match the documented schema.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import flask
import pytest
import yaml
from flask.testing import FlaskClient
from functions_framework import create_app
from openapi_spec_validator import OpenAPIV31SpecValidator
from werkzeug.test import TestResponse

from infra.provider_standins import (
    LoopbackServer,
    ProviderStandins,
    Reply,
    start_provider_standins,
)
from shared.config import Settings, get_settings
from shared.crypto import KmsUnavailableError
from shared.http import Router
from shared.keyservice import Principal
from shared.runtime import build_key_service
from shared.store import TransientStoreError, build_store
from tests.docs.openapi_checks import (
    HTTP_METHODS,
    check,
    escape,
    schema_validator,
)
from tests.functions.conftest import CurrentStdout

ROOT = Path(__file__).parents[2]
OPENAPI_FILE = ROOT / "docs" / "openapi-credentials.yaml"
GUIDE_FILE = ROOT / "docs" / "credentials.md"
FUNCTION_FILE = ROOT / "functions" / "validate_credentials" / "main.py"
CREDENTIALS_PACKAGE = ROOT / "shared" / "credentials"
ORIGIN = "https://console.example"
PROVIDERS = ("gcp", "aws", "azure", "openai")
MISSING_ID = "cred_00000000000000000000000000000000"
WRONG_AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLE+1"
WRONG_AZURE_SECRET = "Xy78Q~wrongwrongwrongwrongwrongwrong.abc"
JSON_MEDIA_TYPE = "application/json"


@dataclass
class Function:
    """The loaded function, its module, and keys of two tenants."""

    client: FlaskClient
    module: ModuleType
    data_dir: Path
    admin: str
    reader: str
    api_only: str
    other_admin: str

    def call(
        self, method: str, path: str, key: str | None = None, **options: Any
    ) -> TestResponse:
        """Send one request; ``options`` go to the test client."""
        headers = dict(options.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return self.client.open(path, method=method, headers=headers, **options)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(OPENAPI_FILE.read_text("utf-8"))
    return document


@pytest.fixture(scope="module")
def standins() -> Iterator[ProviderStandins]:
    running = start_provider_standins()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def unavailable() -> Iterator[LoopbackServer]:
    """A token endpoint on the allow-list that responds to every request with a 500."""
    page = "<html><body><h1>500 Internal Server Error</h1></body></html>"
    server = LoopbackServer(lambda *request: Reply(500, page, "text/html"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def function(
    tmp_path_factory: pytest.TempPathFactory,
    standins: ProviderStandins,
    unavailable: LoopbackServer,
) -> Iterator[Function]:
    """functions/validate_credentials/main.py under create_app, with test settings."""
    folder = tmp_path_factory.mktemp("validate_credentials")
    root_logger = logging.getLogger()
    saved_handlers, saved_level = root_logger.handlers[:], root_logger.level
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setattr(sys, "path", sys.path[:])
        patch.delitem(sys.modules, "main", raising=False)
        for variable in list(os.environ):
            if variable.lower() in Settings.model_fields:
                patch.delenv(variable)
        token_uris = f"{standins.google.token_uri},{unavailable.url}/token"
        for name, value in {
            **standins.settings(),
            "GCP_TOKEN_URI_ALLOWLIST": token_uris,
            "CREDENTIALS_CHECK_TIMEOUT_SECONDS": "2",
            "DATA_DIR": str(folder / "data"),
            "KMS_BACKEND": "local",
            "STORE_BACKEND": "duckdb",
            "AUDIT_DELIVERY": "store",
            "CORS_ALLOWED_ORIGINS": ORIGIN,
        }.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        app = create_app(  # type: ignore[no-untyped-call]
            target="validate_credentials",
            source=str(FUNCTION_FILE),
            signature_type="http",
        )
        for handler in root_logger.handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(CurrentStdout())
        yield _with_tenants(app, sys.modules["main"], folder / "data")
    get_settings.cache_clear()
    root_logger.handlers[:] = saved_handlers
    root_logger.setLevel(saved_level)


def _with_tenants(app: flask.Flask, module: ModuleType, data_dir: Path) -> Function:
    settings = get_settings()
    keys = build_key_service(settings, build_store(settings))
    operator = Principal.operator()
    _, admin = keys.create_tenant(operator, "acme", name="Acme", contact_email=None)
    _, other = keys.create_tenant(operator, "globex", name="Globex", contact_email=None)
    api_only = keys.issue_key(operator, tenant_id="acme", scopes=("api",))
    reader = keys.issue_key(operator, tenant_id="acme", scopes=("credentials:read",))
    return Function(
        app.test_client(),
        module,
        data_dir,
        admin.api_key,
        reader.api_key,
        api_only.api_key,
        other.api_key,
    )


def working(standins: ProviderStandins, provider: str) -> dict[str, Any]:
    """Return new credentials that the provider's stand-in accepts."""
    if provider == "gcp":
        return standins.google.create_key()
    if provider == "aws":
        return standins.aws.create_access_key()
    if provider == "azure":
        return standins.azure.create_application()
    return standins.openai.create_key()


def store(
    function: Function, spec: dict[str, Any], provider: str, credentials: Any
) -> dict[str, Any]:
    """Store a credential through the API; return the checked 201 body."""
    body = {"provider": provider, "credentials": credentials}
    response = function.call("POST", "/credentials", function.admin, json=body)
    assert response.status_code == 201
    stored: dict[str, Any] = check(spec, "POST", "/credentials", response)
    return stored


@pytest.fixture
def stored_id(
    function: Function, spec: dict[str, Any], standins: ProviderStandins
) -> str:
    """The id of a newly stored OpenAI key in tenant acme."""
    body = store(function, spec, "openai", standins.openai.create_key())
    credential_id: str = body["credential"]["credential_id"]
    return credential_id


# The document itself


def test_openapi_version_is_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1.")


def test_openapi_document_is_valid(spec: dict[str, Any]) -> None:
    errors = [error.message for error in OpenAPIV31SpecValidator(spec).iter_errors()]

    assert errors == []


def test_documented_routes_match_router(
    spec: dict[str, Any], function: Function
) -> None:
    documented = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }

    assert documented == set(function.module._router().routes)


def test_documented_error_codes_match_code(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    documented = set(
        schemas["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    )
    documented |= set(
        schemas["CheckFailed"]["properties"]["error"]["properties"]["code"]["enum"]
    )
    sources = "".join(
        path.read_text("utf-8") for path in (FUNCTION_FILE, ROOT / "shared" / "http.py")
    )
    raised = set(
        re.findall(r'(?:HttpError|_check_failed)\(\s*\d{3},\s*"([a-z_]+)"', sources)
    )

    assert documented == raised


def test_documented_reasons_match_providers(spec: dict[str, Any]) -> None:
    documented = set(spec["components"]["schemas"]["Reason"]["enum"])
    returned: set[str] = set()
    for path in sorted(CREDENTIALS_PACKAGE.glob("*.py")):
        returned |= _reason_codes(ast.parse(path.read_text("utf-8")))

    assert documented == returned


def _reason_codes(tree: ast.Module) -> set[str]:
    """Return the reason codes a provider module passes to CheckResult."""
    codes: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and len(node.args) > 1:
            function = node.func
            if isinstance(function, ast.Name) and function.id in (
                "CheckResult",
                "_indeterminate",
            ):
                codes.append(node.args[1])
            elif (
                isinstance(function, ast.Attribute)
                and function.attr == "get"
                and isinstance(function.value, ast.Name)
                and function.value.id == "_REJECTIONS"
                and isinstance(node.args[1], ast.Tuple)
            ):
                codes.append(node.args[1].elts[0])
        if (
            isinstance(node, ast.Assign)
            and any(
                getattr(target, "id", None) == "_REJECTIONS" for target in node.targets
            )
            and isinstance(node.value, ast.Dict)
        ):
            codes += [
                value.elts[0]
                for value in node.value.values
                if isinstance(value, ast.Tuple)
            ]
    return {
        code.value
        for code in codes
        if isinstance(code, ast.Constant) and isinstance(code.value, str)
    }


def test_examples_match_schemas(spec: dict[str, Any]) -> None:
    checked = 0
    for pointer, example in _examples(spec):
        validator = schema_validator(spec, f"{pointer}/schema")
        errors = [error.message for error in validator.iter_errors(example)]
        assert errors == [], pointer
        checked += 1

    assert checked >= 15


def _examples(spec: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Yield each documented example's value and the pointer of its media type."""
    for template, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            prefix = f"/paths/{escape(template)}/{method}"
            if "requestBody" in operation:
                yield from _media_examples(
                    spec, f"{prefix}/requestBody", operation["requestBody"]
                )
            for status, response in operation["responses"].items():
                pointer = f"{prefix}/responses/{status}"
                if "$ref" in response:
                    pointer = response["$ref"].removeprefix("#")
                    response = spec["components"]["responses"][pointer.split("/")[-1]]
                yield from _media_examples(spec, pointer, response)


def _media_examples(
    spec: dict[str, Any], pointer: str, owner: dict[str, Any]
) -> Iterator[tuple[str, Any]]:
    media = owner.get("content", {}).get(JSON_MEDIA_TYPE)
    if media is None:
        return
    media_pointer = f"{pointer}/content/{escape(JSON_MEDIA_TYPE)}"
    if "example" in media:
        yield media_pointer, media["example"]
    for example in media.get("examples", {}).values():
        if "$ref" in example:
            example = spec["components"]["examples"][example["$ref"].split("/")[-1]]
        yield media_pointer, example["value"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_working_request_matches_schema(
    spec: dict[str, Any], standins: ProviderStandins, provider: str
) -> None:
    body = {"provider": provider, "credentials": working(standins, provider)}
    validator = schema_validator(spec, "/components/schemas/CredentialRequest")

    assert [error.message for error in validator.iter_errors(body)] == []


def test_temporary_aws_request_matches_schema(
    spec: dict[str, Any], standins: ProviderStandins
) -> None:
    body = {
        "provider": "aws",
        "credentials": standins.aws.create_temporary_credentials(),
    }
    validator = schema_validator(spec, "/components/schemas/CredentialRequest")

    assert [error.message for error in validator.iter_errors(body)] == []


def test_documented_scopes_are_enforced(
    spec: dict[str, Any], function: Function
) -> None:
    scoped_keys = {"admin": function.admin, "credentials:read": function.reader}
    checked = 0
    for template, item in spec["paths"].items():
        path = template.replace("{credential_id}", MISSING_ID)
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            requirements = operation.get("security", spec["security"])
            scopes = {
                scope
                for rule in requirements
                for roles in rule.values()
                for scope in roles
            }
            if not scopes:
                continue
            (scope,) = scopes
            (other_scope,) = set(scoped_keys) - {scope}
            case = f"{method.upper()} {template}"

            without = function.call(method.upper(), path, scoped_keys[other_scope])
            with_scope = function.call(method.upper(), path, scoped_keys[scope])

            assert without.status_code == 403, case
            error = check(spec, method, template, without)["error"]
            assert error["code"] == "forbidden", case
            assert with_scope.status_code not in (401, 403), case
            check(spec, method, template, with_scope)
            checked += 1

    assert checked == 7


def test_api_scope_key_gets_403(spec: dict[str, Any], function: Function) -> None:
    response = function.call("GET", "/credentials", function.api_only)

    assert response.status_code == 403
    assert check(spec, "GET", "/credentials", response)["error"]["code"] == "forbidden"


# Successful responses


def test_health_response(spec: dict[str, Any], function: Function) -> None:
    response = function.call("GET", "/healthz")

    assert check(spec, "GET", "/healthz", response) == {"status": "ok"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_validate_valid_response(
    spec: dict[str, Any], function: Function, standins: ProviderStandins, provider: str
) -> None:
    body = {"provider": provider, "credentials": working(standins, provider)}

    response = function.call("POST", "/credentials/validate", function.admin, json=body)

    assert response.status_code == 200
    assert check(spec, "POST", "/credentials/validate", response)["status"] == "valid"


@pytest.mark.parametrize(
    ("provider", "wrong_field", "wrong_value", "reason"),
    [
        ("aws", "aws_secret_access_key", WRONG_AWS_SECRET, "wrong_secret"),
        ("azure", "client_secret", WRONG_AZURE_SECRET, "wrong_secret"),
        (
            "openai",
            "api_key",
            "sk-proj-unknownunknownunknownunknown0000",
            "unknown_key",
        ),
    ],
)
def test_validate_invalid_response(
    spec: dict[str, Any],
    function: Function,
    standins: ProviderStandins,
    provider: str,
    wrong_field: str,
    wrong_value: str,
    reason: str,
) -> None:
    credentials = {**working(standins, provider), wrong_field: wrong_value}
    body = {"provider": provider, "credentials": credentials}

    response = function.call("POST", "/credentials/validate", function.admin, json=body)

    assert response.status_code == 200
    validation = check(spec, "POST", "/credentials/validate", response)
    assert validation["status"] == "invalid"
    assert validation["reason"] == reason


def test_validate_indeterminate_response(
    spec: dict[str, Any],
    function: Function,
    standins: ProviderStandins,
    unavailable: LoopbackServer,
) -> None:
    key_file = {**standins.google.create_key(), "token_uri": f"{unavailable.url}/token"}
    body = {"provider": "gcp", "credentials": key_file}

    response = function.call("POST", "/credentials/validate", function.admin, json=body)

    assert response.status_code == 200
    validation = check(spec, "POST", "/credentials/validate", response)
    assert validation["status"] == "indeterminate"
    assert validation["reason"] == "provider_unavailable"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_store_and_secret_responses(
    spec: dict[str, Any], function: Function, standins: ProviderStandins, provider: str
) -> None:
    stored = store(function, spec, provider, working(standins, provider))
    credential_id = stored["credential"]["credential_id"]

    response = function.call(
        "GET", f"/credentials/{credential_id}/secret", function.reader
    )

    assert stored["validation"]["status"] == "valid"
    assert response.status_code == 200
    secret = check(spec, "GET", "/credentials/{credential_id}/secret", response)
    assert secret["provider"] == provider


def test_temporary_aws_key_responses(
    spec: dict[str, Any], function: Function, standins: ProviderStandins
) -> None:
    keys = {
        **standins.aws.create_temporary_credentials(),
        "expiration": "2099-01-31T12:00:00+01:00",
    }
    stored = store(function, spec, "aws", keys)
    credential_id = stored["credential"]["credential_id"]

    response = function.call(
        "GET", f"/credentials/{credential_id}/secret", function.reader
    )

    assert stored["credential"]["expires_at"] == "2099-01-31T11:00:00+00:00"
    assert stored["validation"]["expires_at"] == "2099-01-31T11:00:00+00:00"
    assert response.status_code == 200
    secret = check(spec, "GET", "/credentials/{credential_id}/secret", response)
    assert "aws_session_token" in secret["credentials"]


def test_store_indeterminate_when_asked_response(
    spec: dict[str, Any],
    function: Function,
    standins: ProviderStandins,
    unavailable: LoopbackServer,
) -> None:
    key_file = {**standins.google.create_key(), "token_uri": f"{unavailable.url}/token"}
    body = {"provider": "gcp", "credentials": key_file, "store_if_indeterminate": True}

    response = function.call("POST", "/credentials", function.admin, json=body)

    assert response.status_code == 201
    stored = check(spec, "POST", "/credentials", response)
    assert stored["credential"]["validation_status"] == "indeterminate"


def test_list_response(
    spec: dict[str, Any], function: Function, stored_id: str
) -> None:
    response = function.call("GET", "/credentials", function.admin)

    assert response.status_code == 200
    listed = check(spec, "GET", "/credentials", response)["credentials"]
    assert stored_id in [item["credential_id"] for item in listed]


def test_get_response(spec: dict[str, Any], function: Function, stored_id: str) -> None:
    response = function.call("GET", f"/credentials/{stored_id}", function.admin)

    assert response.status_code == 200
    fetched = check(spec, "GET", "/credentials/{credential_id}", response)
    assert fetched["status"] == "active"


def test_delete_response(
    spec: dict[str, Any], function: Function, stored_id: str
) -> None:
    response = function.call("DELETE", f"/credentials/{stored_id}", function.admin)

    assert response.status_code == 200
    deleted = check(spec, "DELETE", "/credentials/{credential_id}", response)
    assert deleted["status"] == "deleted"
    assert deleted["erase_after"] is not None


def test_get_deleted_response(
    spec: dict[str, Any], function: Function, stored_id: str
) -> None:
    function.call("DELETE", f"/credentials/{stored_id}", function.admin)

    response = function.call("GET", f"/credentials/{stored_id}", function.admin)

    assert response.status_code == 200
    fetched = check(spec, "GET", "/credentials/{credential_id}", response)
    assert fetched["status"] == "deleted"


def test_restore_response(
    spec: dict[str, Any], function: Function, stored_id: str
) -> None:
    function.call("DELETE", f"/credentials/{stored_id}", function.admin)

    response = function.call(
        "POST", f"/credentials/{stored_id}/restore", function.admin
    )

    assert response.status_code == 200
    restored = check(spec, "POST", "/credentials/{credential_id}/restore", response)
    assert restored["status"] == "active"
    assert restored["erase_after"] is None


# The normalised list


def _gcp_with_bom_and_crlf(standins: ProviderStandins) -> str:
    key_file = standins.google.create_key()
    key_file["private_key"] = key_file["private_key"].replace("\n", "\r\n")
    return "\ufeff" + json.dumps(key_file)


def _gcp_escaped(standins: ProviderStandins) -> dict[str, str]:
    key_file = standins.google.create_key()
    key_file["private_key"] = key_file["private_key"].replace("\n", "\\n")
    return key_file


def _aws_messy(standins: ProviderStandins) -> dict[str, str]:
    keys = standins.aws.create_access_key()
    return {
        "aws_access_key_id": keys["aws_access_key_id"].lower(),
        "aws_secret_access_key": f"  {keys['aws_secret_access_key']}\n",
        "region": "eu-west-1",
    }


def _azure_cli_shape(standins: ProviderStandins) -> dict[str, str]:
    principal = standins.azure.create_application()
    return {
        "tenant": "{" + principal["tenant_id"].upper() + "}",
        "appId": principal["client_id"].upper(),
        "password": "\ufeff" + principal["client_secret"],
        "displayName": "pipelines",
        "cloud": "AzureCloud",
    }


def _azure_domain_tenant(standins: ProviderStandins) -> dict[str, str]:
    principal = standins.azure.create_application("contoso.onmicrosoft.com")
    return {**principal, "tenant_id": "Contoso.OnMicrosoft.com"}


def _openai_padded(standins: ProviderStandins) -> dict[str, str]:
    return {"api_key": "\t" + standins.openai.create_key()["api_key"] + " "}


REPAIRS: list[tuple[str, str, Any, list[str], list[str]]] = [
    (
        "gcp text with BOM and CR LF",
        "gcp",
        _gcp_with_bom_and_crlf,
        [
            "credentials: removed a leading byte-order mark",
            # The CR of the final CR LF counts as surrounding whitespace.
            "credentials.private_key: removed surrounding whitespace",
            "credentials.private_key: converted CR LF line endings to LF",
        ],
        [],
    ),
    (
        "gcp escaped line breaks",
        "gcp",
        _gcp_escaped,
        ["credentials.private_key: turned literal \\n sequences into line breaks"],
        [],
    ),
    (
        "aws lower case and whitespace",
        "aws",
        _aws_messy,
        [
            "credentials.aws_secret_access_key: removed surrounding whitespace",
            "credentials.aws_access_key_id: converted to upper case",
        ],
        ["credentials.region"],
    ),
    (
        "azure cli names",
        "azure",
        _azure_cli_shape,
        [
            "credentials.tenant_id: converted to a lower-case GUID without braces",
            "credentials.client_id: converted to a lower-case GUID without braces",
            "credentials.password: removed a leading byte-order mark",
            "credentials.cloud: stored as public",
        ],
        [],
    ),
    (
        "azure domain tenant",
        "azure",
        _azure_domain_tenant,
        ["credentials.tenant_id: converted to lower case"],
        [],
    ),
    (
        "openai whitespace",
        "openai",
        _openai_padded,
        ["credentials.api_key: removed surrounding whitespace"],
        [],
    ),
]


@pytest.mark.parametrize(
    ("provider", "make_credentials", "normalised", "ignored"),
    [case[1:] for case in REPAIRS],
    ids=[case[0] for case in REPAIRS],
)
def test_normalised_response(
    spec: dict[str, Any],
    function: Function,
    standins: ProviderStandins,
    provider: str,
    make_credentials: Any,
    normalised: list[str],
    ignored: list[str],
) -> None:
    body = {"provider": provider, "credentials": make_credentials(standins)}

    response = function.call("POST", "/credentials/validate", function.admin, json=body)

    validation = check(spec, "POST", "/credentials/validate", response)
    assert validation["status"] == "valid"
    assert validation["normalised"] == normalised
    assert validation["ignored_fields"] == ignored


# Error responses


BAD_REQUESTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("no credentials", {"provider": "aws"}, "missing_field", "credentials"),
    (
        "flag not boolean",
        {"provider": "aws", "credentials": {}, "store_if_indeterminate": "yes"},
        "invalid_field",
        "store_if_indeterminate",
    ),
    ("no provider", {"credentials": {}}, "invalid_credentials", "provider:"),
    (
        "unknown provider",
        {"provider": "ibm", "credentials": {}},
        "invalid_credentials",
        "provider:",
    ),
    (
        "credentials not object",
        {"provider": "aws", "credentials": ["AKIA"]},
        "invalid_credentials",
        "credentials:",
    ),
    (
        "aws secret missing",
        {"provider": "aws", "credentials": {"aws_access_key_id": "AKIA" + "A" * 16}},
        "invalid_credentials",
        "credentials.aws_secret_access_key:",
    ),
    (
        "azure secret id",
        {
            "provider": "azure",
            "credentials": {
                "tenant_id": "0d5f3a4e-1b2c-4d3e-8f90-a1b2c3d4e5f6",
                "client_id": "6e1c9d2a-7b3f-4a5e-9c8d-0f1e2d3c4b5a",
                "client_secret": "9f8e7d6c-5b4a-4321-8fed-cba987654321",
            },
        },
        "invalid_credentials",
        "credentials.client_secret:",
    ),
    (
        "gcp oauth client",
        {"provider": "gcp", "credentials": {"web": {"client_id": "x"}}},
        "invalid_credentials",
        "credentials:",
    ),
    (
        "gcp api key",
        {"provider": "gcp", "credentials": "AIzaSyExampleExampleExampleExample123"},
        "invalid_credentials",
        "credentials:",
    ),
    (
        "openai bearer",
        {"provider": "openai", "credentials": {"api_key": "Bearer sk-" + "a" * 30}},
        "invalid_credentials",
        "credentials.api_key:",
    ),
]


@pytest.mark.parametrize("path", ["/credentials", "/credentials/validate"])
@pytest.mark.parametrize(
    ("body", "code", "field"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_response(
    spec: dict[str, Any],
    function: Function,
    path: str,
    body: dict[str, Any],
    code: str,
    field: str,
) -> None:
    response = function.call("POST", path, function.admin, json=body)

    assert response.status_code == 400
    error = check(spec, "POST", path, response)["error"]
    assert error["code"] == code
    assert error["message"].startswith(field)


def test_store_bad_name_response(
    spec: dict[str, Any], function: Function, standins: ProviderStandins
) -> None:
    body = {"provider": "openai", "credentials": standins.openai.create_key()}

    response = function.call(
        "POST", "/credentials", function.admin, json={**body, "name": " "}
    )

    assert response.status_code == 400
    error = check(spec, "POST", "/credentials", response)["error"]
    assert error["code"] == "invalid_credentials"
    assert error["message"].startswith("name:")


def test_validate_ignores_name(
    spec: dict[str, Any], function: Function, standins: ProviderStandins
) -> None:
    body = {"provider": "openai", "credentials": standins.openai.create_key()}

    response = function.call(
        "POST", "/credentials/validate", function.admin, json={**body, "name": 7}
    )

    assert response.status_code == 200
    assert check(spec, "POST", "/credentials/validate", response)["status"] == "valid"


def test_error_responses(spec: dict[str, Any], function: Function) -> None:
    admin, reader = function.admin, function.reader
    secret_path = f"/credentials/{MISSING_ID}/secret"
    too_large = {"provider": "openai", "credentials": {"api_key": "sk-" + "a" * 20_000}}
    cases: list[tuple[str, str, str, str | None, dict[str, Any], int, str]] = [
        ("POST", "/credentials", "/credentials", None, {}, 401, "unauthenticated"),
        (
            "GET",
            "/credentials",
            "/credentials",
            "acme_api_0000",
            {},
            401,
            "unauthenticated",
        ),
        (
            "POST",
            "/credentials",
            "/credentials",
            admin,
            {"data": "{not json", "content_type": JSON_MEDIA_TYPE},
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/credentials/validate",
            "/credentials/validate",
            admin,
            {"data": "[1]", "content_type": JSON_MEDIA_TYPE},
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/credentials",
            "/credentials",
            admin,
            {"data": "provider=aws", "content_type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/credentials/validate",
            "/credentials/validate",
            admin,
            {"json": too_large},
            413,
            "body_too_large",
        ),
        (
            "GET",
            f"/credentials/{MISSING_ID}",
            "/credentials/{credential_id}",
            admin,
            {},
            404,
            "not_found",
        ),
        (
            "DELETE",
            f"/credentials/{MISSING_ID}",
            "/credentials/{credential_id}",
            admin,
            {},
            404,
            "not_found",
        ),
        (
            "POST",
            f"/credentials/{MISSING_ID}/restore",
            "/credentials/{credential_id}/restore",
            admin,
            {},
            404,
            "not_found",
        ),
        (
            "GET",
            secret_path,
            "/credentials/{credential_id}/secret",
            reader,
            {},
            404,
            "not_found",
        ),
        (
            "GET",
            secret_path,
            "/credentials/{credential_id}/secret",
            admin,
            {},
            403,
            "forbidden",
        ),
    ]

    for method, path, template, key, request, status, code in cases:
        response = function.call(method, path, key, **request)
        case = f"{method} {path} {status}"
        assert response.status_code == status, case
        assert check(spec, method, template, response)["error"]["code"] == code, case


def test_store_rejected_response(
    spec: dict[str, Any], function: Function, standins: ProviderStandins
) -> None:
    keys = {
        **standins.aws.create_access_key(),
        "aws_secret_access_key": WRONG_AWS_SECRET,
    }
    body = {"provider": "aws", "credentials": keys}

    response = function.call("POST", "/credentials", function.admin, json=body)

    assert response.status_code == 422
    failed = check(spec, "POST", "/credentials", response)
    assert failed["error"]["code"] == "credentials_invalid"
    assert failed["validation"]["reason"] == "wrong_secret"


def test_store_indeterminate_response(
    spec: dict[str, Any],
    function: Function,
    standins: ProviderStandins,
    unavailable: LoopbackServer,
) -> None:
    key_file = {**standins.google.create_key(), "token_uri": f"{unavailable.url}/token"}
    body = {"provider": "gcp", "credentials": key_file}

    response = function.call("POST", "/credentials", function.admin, json=body)

    assert response.status_code == 503
    failed = check(spec, "POST", "/credentials", response)
    assert failed["error"]["code"] == "validation_indeterminate"
    assert failed["validation"]["status"] == "indeterminate"


def test_store_duplicate_response(
    spec: dict[str, Any], function: Function, standins: ProviderStandins
) -> None:
    keys = standins.aws.create_access_key()
    first = store(function, spec, "aws", keys)["credential"]["credential_id"]
    body = {"provider": "aws", "credentials": keys}

    response = function.call("POST", "/credentials", function.admin, json=body)

    assert response.status_code == 409
    error = check(spec, "POST", "/credentials", response)["error"]
    assert error["code"] == "credential_exists"
    assert first in error["message"]


def test_other_tenant_gets_404(
    spec: dict[str, Any], function: Function, stored_id: str
) -> None:
    path = f"/credentials/{stored_id}"

    response = function.call("GET", path, function.other_admin)

    assert response.status_code == 404
    error = check(spec, "GET", "/credentials/{credential_id}", response)["error"]
    assert error["code"] == "not_found"


def test_deleted_credential_errors(
    spec: dict[str, Any], function: Function, stored_id: str
) -> None:
    path = f"/credentials/{stored_id}"
    function.call("DELETE", path, function.admin)

    again = function.call("DELETE", path, function.admin)
    secret = function.call("GET", f"{path}/secret", function.reader)

    again_error = check(spec, "DELETE", "/credentials/{credential_id}", again)
    secret_error = check(spec, "GET", "/credentials/{credential_id}/secret", secret)
    assert again.status_code == 404
    assert again_error["error"]["code"] == "not_found"
    assert secret.status_code == 404
    assert secret_error["error"]["code"] == "not_found"


def test_restore_active_is_404(
    spec: dict[str, Any], function: Function, stored_id: str
) -> None:
    response = function.call(
        "POST", f"/credentials/{stored_id}/restore", function.admin
    )

    assert response.status_code == 404
    error = check(spec, "POST", "/credentials/{credential_id}/restore", response)
    assert error["error"]["code"] == "not_found"


def test_moved_ciphertext_is_500(
    spec: dict[str, Any], function: Function, standins: ProviderStandins
) -> None:
    # A ciphertext is bound to its credential id, so one copied into another
    # row does not decrypt, and the read fails with the documented 500.
    target = store(function, spec, "openai", standins.openai.create_key())
    source = store(function, spec, "openai", standins.openai.create_key())
    target_id = target["credential"]["credential_id"]
    _copy_ciphertext(
        function.data_dir, source["credential"]["credential_id"], target_id
    )

    response = function.call("GET", f"/credentials/{target_id}/secret", function.reader)

    assert response.status_code == 500
    error = check(spec, "GET", "/credentials/{credential_id}/secret", response)
    assert error["error"]["code"] == "internal"


def _copy_ciphertext(data_dir: Path, source_id: str, target_id: str) -> None:
    con = duckdb.connect(str(data_dir / "tenants_metadata.duckdb"))
    try:
        con.execute(
            "UPDATE tenant_credentials SET encrypted_credentials = ("
            "SELECT encrypted_credentials FROM tenant_credentials "
            "WHERE credential_id = ?) WHERE credential_id = ?",
            [source_id, target_id],
        )
    finally:
        con.close()


@pytest.mark.parametrize("error", [TransientStoreError, KmsUnavailableError])
@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("POST", "/credentials"),
        ("GET", "/credentials"),
        ("GET", "/credentials/{credential_id}/secret"),
    ],
)
def test_dependency_error_response(
    spec: dict[str, Any],
    function: Function,
    error: type[Exception],
    method: str,
    template: str,
) -> None:
    # Fault injection: a handler that raises the error, behind the function's
    # own error translation, since a busy store or KMS cannot be provoked
    # in-process without waiting out the store's 15-second lock timeout.
    def failing(request: flask.Request, **path: str) -> flask.Response:
        raise error("injected")

    router = Router([])
    router.add(method, template, function.module._translate(failing))
    path = template.replace("{credential_id}", MISSING_ID)
    with flask.Flask("dependency_test").test_request_context(path, method=method):
        response = router.dispatch(flask.request)

    assert response.status_code == 503
    assert check(spec, method, template, response)["error"]["code"] == "unavailable"


def test_unlisted_method_matches_405_response(
    spec: dict[str, Any], function: Function
) -> None:
    response = function.call("PUT", "/credentials", function.admin)
    validator = schema_validator(
        spec,
        "/components/responses/MethodNotAllowed/content/application~1json/schema",
    )
    body = json.loads(response.get_data())

    assert response.status_code == 405
    assert validator.is_valid(body)
    assert body["error"]["message"] == "use one of: POST, GET"


def test_unknown_path_is_404(function: Function) -> None:
    response = function.call("GET", "/keys", function.admin)

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_trailing_slash_is_ignored(function: Function) -> None:
    response = function.call("GET", "/credentials/", function.admin)

    assert response.status_code == 200


# Headers described in the document's text


def test_security_headers_are_documented(
    spec: dict[str, Any], function: Function
) -> None:
    response = function.call("GET", "/healthz")

    for header in ("Cache-Control", "X-Content-Type-Options"):
        assert f"`{header}: {response.headers[header]}`" in spec["info"]["description"]


def test_cors_preflight_is_documented(spec: dict[str, Any], function: Function) -> None:
    response = function.call(
        "OPTIONS",
        "/credentials",
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


def test_cors_preflight_other_origin_is_403(function: Function) -> None:
    response = function.call(
        "OPTIONS", "/credentials", headers={"Origin": "https://elsewhere.example"}
    )

    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "origin_not_allowed"


# docs/credentials.md


def test_guide_settings_match_defaults() -> None:
    rows = re.findall(
        r"^\| `([A-Z0-9_]+)` \| ([^|]+?) \|", GUIDE_FILE.read_text("utf-8"), re.M
    )

    assert len(rows) >= 10
    for name, default in rows:
        assert name.lower() in Settings.model_fields, name
        field = Settings.model_fields[name.lower()]
        assert default == _rendered(field.default), name


def _rendered(default: object) -> str:
    """Return a setting's default as the guide's table writes it."""
    if default is None:
        return "unset"
    if isinstance(default, list):
        return (
            "`" + ",".join(str(item) for item in default) + "`" if default else "empty"
        )
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return f"`{default}`"


def test_guide_names_every_audit_event() -> None:
    source = (CREDENTIALS_PACKAGE / "service.py").read_text("utf-8")
    guide = GUIDE_FILE.read_text("utf-8")
    events = set(re.findall(r'"(credentials\.[a-z_]+)"', source))

    assert len(events) == 7
    for event in sorted(events):
        assert f"`{event}`" in guide, event
