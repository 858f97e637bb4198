"""validate-credentials over HTTP, against the provider stand-ins on loopback.

Each test loads the function fresh with a new data folder and the stand-ins'
endpoint settings, creates tenants and keys through KeyService, and calls the
handlers in-process through Flask's test client.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from infra.provider_standins import (
    LoopbackServer,
    ProviderStandins,
    Reply,
    start_provider_standins,
)
from shared.config import get_settings
from shared.keyservice import Principal
from shared.logs import JsonFormatter
from shared.runtime import build_key_service
from shared.store import build_store

WRONG_AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLE+1"
WRONG_AZURE_SECRET = "Xy78Q~wrongwrongwrongwrongwrongwrong.abc"


@pytest.fixture(scope="module")
def standins() -> Iterator[ProviderStandins]:
    running = start_provider_standins()
    yield running
    running.stop()


@pytest.fixture
def unavailable() -> Iterator[LoopbackServer]:
    """A token endpoint on the allow-list that responds to every request with a 500."""
    page = "<html><body><h1>500 Internal Server Error</h1></body></html>"
    server = LoopbackServer(lambda *request: Reply(500, page, "text/html"))
    yield server
    server.stop()


@dataclass
class Api:
    """The loaded function, keys of two tenants, and every response body it sent."""

    client: FlaskClient
    data_dir: Path
    admin: str
    api_only: str
    reader: str
    other_admin: str
    bodies: list[str] = field(default_factory=list)

    def call(
        self,
        method: str,
        path: str,
        key: str | None = None,
        body: Any = None,
        **options: Any,
    ) -> TestResponse:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if body is not None:
            options["json"] = body
        response = self.client.open(path, method=method, headers=headers, **options)
        if not path.endswith("/secret"):
            self.bodies.append(response.get_data(as_text=True))
        return response

    def store(self, provider: str, credentials: Any, **extra: Any) -> TestResponse:
        body = {"provider": provider, "credentials": credentials, **extra}
        return self.call("POST", "/credentials", self.admin, body)


@pytest.fixture
def api(
    load_function: Any,
    standins: ProviderStandins,
    unavailable: LoopbackServer,
    data_dir: Path,
) -> Api:
    settings_env = standins.settings()
    token_uris = f"{settings_env['GCP_TOKEN_URI_ALLOWLIST']},{unavailable.url}/token"
    app, _ = load_function(
        "validate_credentials",
        **{**settings_env, "GCP_TOKEN_URI_ALLOWLIST": token_uris},
        CREDENTIALS_CHECK_TIMEOUT_SECONDS="2",
        LOG_LEVEL="DEBUG",
    )
    settings = get_settings()
    keys = build_key_service(settings, build_store(settings))
    operator = Principal.operator()
    _, admin = keys.create_tenant(operator, "acme", name="Acme", contact_email=None)
    _, other = keys.create_tenant(operator, "globex", name="Globex", contact_email=None)
    api_only = keys.issue_key(operator, tenant_id="acme", scopes=("api",))
    reader = keys.issue_key(operator, tenant_id="acme", scopes=("credentials:read",))
    return Api(
        app.test_client(),
        data_dir,
        admin.api_key,
        api_only.api_key,
        reader.api_key,
        other.api_key,
    )


def _message(response: TestResponse) -> str:
    return str(response.get_json()["error"]["message"])


# Authentication and scopes


def test_health_needs_no_key(api: Api) -> None:
    assert api.call("GET", "/healthz").status_code == 200


def test_missing_key_unauthenticated(api: Api) -> None:
    response = api.call("GET", "/credentials")

    assert response.status_code == 401


def test_api_scope_cannot_store(api: Api) -> None:
    response = api.call("POST", "/credentials", api.api_only, {"provider": "aws"})

    assert response.status_code == 403
    assert "admin scope" in _message(response)


def test_reader_cannot_list(api: Api) -> None:
    assert api.call("GET", "/credentials", api.reader).status_code == 403


def test_admin_cannot_read_secret(api: Api, standins: ProviderStandins) -> None:
    stored = api.store("aws", standins.aws.create_access_key()).get_json()
    credential_id = stored["credential"]["credential_id"]

    response = api.call("GET", f"/credentials/{credential_id}/secret", api.admin)

    assert response.status_code == 403
    assert "credentials:read" in _message(response)


# Input errors


BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("no provider", {"credentials": {}}, "provider: must be one of"),
    ("no credentials", {"provider": "aws"}, "credentials is required"),
    (
        "aws secret missing",
        {"provider": "aws", "credentials": {"aws_access_key_id": "AKIA" + "A" * 16}},
        "credentials.aws_secret_access_key: is required",
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
        "credentials.client_secret: is shaped like a GUID",
    ),
    (
        "gcp oauth client",
        {"provider": "gcp", "credentials": {"web": {"client_id": "x"}}},
        "credentials: is an OAuth client file",
    ),
    (
        "openai bearer",
        {"provider": "openai", "credentials": {"api_key": "Bearer sk-" + "a" * 30}},
        "credentials.api_key: starts with 'Bearer'",
    ),
    (
        "flag not boolean",
        {"provider": "aws", "credentials": {}, "store_if_indeterminate": "yes"},
        "store_if_indeterminate must be true or false",
    ),
    (
        "name empty",
        {
            "provider": "openai",
            "credentials": {"api_key": "sk-" + "a" * 30},
            "name": "",
        },
        "name: must be a string of 1 to 200 characters",
    ),
]


@pytest.mark.parametrize(
    ("body", "message"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_names_field(api: Api, body: dict[str, Any], message: str) -> None:
    response = api.call("POST", "/credentials", api.admin, body)

    assert response.status_code == 400
    assert message in _message(response)


def test_body_not_json(api: Api) -> None:
    response = api.call(
        "POST",
        "/credentials",
        api.admin,
        data="{",
        content_type="application/json",
    )

    assert response.status_code == 400


def test_body_nested_too_deep(api: Api) -> None:
    response = api.call(
        "POST",
        "/credentials",
        api.admin,
        data="[" * 5000 + "]" * 5000,
        content_type="application/json",
    )

    assert response.status_code == 400


def test_body_wrong_media_type(api: Api) -> None:
    response = api.call(
        "POST",
        "/credentials",
        api.admin,
        data="provider=aws",
        content_type="text/plain",
    )

    assert response.status_code == 415


def test_body_too_large_before_kms(api: Api) -> None:
    body = {"provider": "openai", "credentials": {"api_key": "sk-" + "a" * 20_000}}

    response = api.call("POST", "/credentials", api.admin, body)

    keyring = json.loads((api.data_dir / "keyring.json").read_text())
    assert response.status_code == 413
    assert not any(name.endswith("/credentials-encryption") for name in keyring["keys"])


def test_body_with_bom_accepted(api: Api, standins: ProviderStandins) -> None:
    body = {"provider": "openai", "credentials": standins.openai.create_key()}
    data = b"\xef\xbb\xbf" + json.dumps(body).encode()

    response = api.call(
        "POST", "/credentials", api.admin, data=data, content_type="application/json"
    )

    assert response.status_code == 201


# Validating and storing


@pytest.mark.parametrize("provider", ["gcp", "aws", "azure", "openai"])
def test_validate_reports_valid(
    api: Api, standins: ProviderStandins, provider: str
) -> None:
    credentials = _working(standins, provider)

    response = api.call(
        "POST",
        "/credentials/validate",
        api.admin,
        {"provider": provider, "credentials": credentials},
    )

    assert response.status_code == 200
    assert response.get_json()["status"] == "valid"
    assert api.call("GET", "/credentials", api.admin).get_json()["credentials"] == []


@pytest.mark.parametrize("provider", ["gcp", "aws", "azure", "openai"])
def test_store_then_read_back(
    api: Api, standins: ProviderStandins, provider: str
) -> None:
    credentials = _working(standins, provider)

    stored = api.store(provider, credentials, name=f"{provider} pipelines")
    credential_id = stored.get_json()["credential"]["credential_id"]
    secret = api.call("GET", f"/credentials/{credential_id}/secret", api.reader)

    assert stored.status_code == 201
    assert stored.get_json()["credential"]["status"] == "active"
    assert secret.status_code == 200
    assert secret.get_json()["credentials"].items() >= _secret_items(credentials)


def test_store_rejected_is_422(api: Api, standins: ProviderStandins) -> None:
    keys = dict(
        standins.aws.create_access_key(), aws_secret_access_key=WRONG_AWS_SECRET
    )

    response = api.store("aws", keys)

    assert response.status_code == 422
    assert response.get_json()["validation"]["reason"] == "wrong_secret"
    assert "aws_secret_access_key does not match" in _message(response)


def test_store_indeterminate_is_503(
    api: Api, standins: ProviderStandins, unavailable: LoopbackServer
) -> None:
    key_file = dict(standins.google.create_key(), token_uri=f"{unavailable.url}/token")

    response = api.store("gcp", key_file)

    assert response.status_code == 503
    assert response.get_json()["validation"]["status"] == "indeterminate"
    assert "store_if_indeterminate" in _message(response)


def test_store_indeterminate_when_asked(
    api: Api, standins: ProviderStandins, unavailable: LoopbackServer
) -> None:
    key_file = dict(standins.google.create_key(), token_uri=f"{unavailable.url}/token")

    response = api.store("gcp", key_file, store_if_indeterminate=True)

    credential = response.get_json()["credential"]
    assert response.status_code == 201
    assert credential["validation_status"] == "indeterminate"


def test_store_duplicate_is_409(api: Api, standins: ProviderStandins) -> None:
    keys = standins.aws.create_access_key()
    first = api.store("aws", keys).get_json()["credential"]["credential_id"]

    response = api.store("aws", keys)

    assert response.status_code == 409
    assert first in _message(response)


def test_store_reports_repairs(api: Api, standins: ProviderStandins) -> None:
    keys = standins.aws.create_access_key()
    keys["aws_access_key_id"] = keys["aws_access_key_id"].lower()

    validation = api.store("aws", keys).get_json()["validation"]

    assert validation["normalised"] == [
        "credentials.aws_access_key_id: converted to upper case"
    ]


# Listing, deleting, restoring


def test_list_get_delete_restore(api: Api, standins: ProviderStandins) -> None:
    stored = api.store("openai", standins.openai.create_key()).get_json()
    credential_id = stored["credential"]["credential_id"]
    path = f"/credentials/{credential_id}"

    listed = api.call("GET", "/credentials", api.admin).get_json()["credentials"]
    fetched = api.call("GET", path, api.admin).get_json()
    deleted = api.call("DELETE", path, api.admin).get_json()
    restored = api.call("POST", f"{path}/restore", api.admin).get_json()

    assert [item["credential_id"] for item in listed] == [credential_id]
    assert fetched["account_hint"].startswith("sk-proj-...")
    assert deleted["status"] == "deleted"
    assert deleted["erase_after"] is not None
    assert restored["status"] == "active"


def test_other_tenant_sees_nothing(api: Api, standins: ProviderStandins) -> None:
    stored = api.store("openai", standins.openai.create_key()).get_json()
    path = f"/credentials/{stored['credential']['credential_id']}"

    fetched = api.call("GET", path, api.other_admin)
    deleted = api.call("DELETE", path, api.other_admin)
    listed = api.call("GET", "/credentials", api.other_admin).get_json()

    assert fetched.status_code == 404
    assert deleted.status_code == 404
    assert listed["credentials"] == []


def test_deleted_secret_not_readable(api: Api, standins: ProviderStandins) -> None:
    stored = api.store("openai", standins.openai.create_key()).get_json()
    path = f"/credentials/{stored['credential']['credential_id']}"
    api.call("DELETE", path, api.admin)

    response = api.call("GET", f"{path}/secret", api.reader)

    assert response.status_code == 404


# No secret anywhere


def test_no_secret_in_logs_errors_audit_or_rows(
    api: Api, standins: ProviderStandins, unavailable: LoopbackServer
) -> None:
    submissions = _every_outcome(standins, unavailable)
    # Undo what earlier checks set, so this run shows the service quiets botocore.
    logging.getLogger("botocore").setLevel(logging.NOTSET)
    log_lines = io.StringIO()
    handler = logging.StreamHandler(log_lines)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        _submit(api, submissions)
    finally:
        logging.getLogger().removeHandler(handler)

    store = build_store(get_settings())
    events = store.list_audit_events(None, limit=1000)
    audit = [event.model_dump_json() for event in events]
    places = {
        "logs": log_lines.getvalue(),
        "responses": "\n".join(api.bodies),
        "audit events": "\n".join(audit),
        "stored rows": _all_rows(api.data_dir),
        "data files": _all_file_bytes(api.data_dir),
    }

    secrets = _secrets_of([credentials for _, credentials, _ in submissions])
    found = [
        (place, secret[:12])
        for place, text in places.items()
        for secret in secrets
        if secret in text
    ]
    assert found == []
    assert "credential checked" in places["logs"]
    assert "credentials.accessed" in places["audit events"]


Submissions = list[tuple[str, dict[str, Any], dict[str, Any]]]


def _every_outcome(
    standins: ProviderStandins, unavailable: LoopbackServer
) -> Submissions:
    """Return submissions that are stored, repeated, rejected, malformed or unproven."""
    submissions: Submissions = []
    for provider in ("gcp", "aws", "azure", "openai"):
        credentials = _working(standins, provider)
        submissions += [(provider, credentials, {}), (provider, credentials, {})]
    wrong_aws = dict(
        standins.aws.create_access_key(), aws_secret_access_key=WRONG_AWS_SECRET
    )
    wrong_azure = dict(
        standins.azure.create_application(), client_secret=WRONG_AZURE_SECRET
    )
    escaped = standins.google.create_key()
    escaped["private_key"] = escaped["private_key"].replace("\n", "\\n")
    broken = dict(standins.google.create_key(), token_uri=f"{unavailable.url}/token")
    malformed = dict(standins.google.create_key(), private_key_id="not-hex")
    swapped = {"aws_access_key_id": WRONG_AWS_SECRET, "aws_secret_access_key": "x"}
    unknown_openai = {"api_key": "sk-proj-unknownunknownunknownunknown0000"}
    submissions += [
        ("aws", standins.aws.create_temporary_credentials(), {}),
        ("aws", wrong_aws, {}),
        ("azure", wrong_azure, {}),
        ("openai", unknown_openai, {}),
        ("gcp", escaped, {}),
        ("gcp", broken, {}),
        ("gcp", broken, {"store_if_indeterminate": True}),
        ("gcp", malformed, {}),
        ("aws", swapped, {}),
    ]
    return submissions


def _submit(api: Api, submissions: Submissions) -> None:
    """Send every submission, then read back and delete what was stored."""
    for provider, credentials, extra in submissions:
        api.store(provider, credentials, **extra)
    listed = api.call("GET", "/credentials", api.admin).get_json()["credentials"]
    for item in listed:
        path = f"/credentials/{item['credential_id']}"
        api.call("GET", f"{path}/secret", api.reader)
        api.call("DELETE", path, api.admin)


def _secrets_of(submitted: list[dict[str, Any]]) -> list[str]:
    names = ("aws_secret_access_key", "aws_session_token", "client_secret", "api_key")
    secrets = [
        credentials[name]
        for credentials in submitted
        for name in names
        if len(credentials.get(name, "")) >= 16
    ]
    for credentials in submitted:
        pem = credentials.get("private_key", "").replace("\\n", "\n")
        # Every base64 line of the key, since a leak may be partial.
        secrets += [line for line in pem.splitlines() if len(line) >= 40]
    assert len(secrets) > 20
    return secrets


def _all_rows(data_dir: Path) -> str:
    rows = []
    # Not read-only: the store's connection in this process may still be open,
    # and DuckDB refuses a second configuration of a file in one process.
    con = duckdb.connect(str(data_dir / "tenants_metadata.duckdb"))
    try:
        tables = [name for (name,) in con.execute("SHOW TABLES").fetchall()]
        for table in tables:
            query = f"SELECT * FROM {table}"  # noqa: S608 - names from SHOW TABLES
            rows += [repr(row) for row in con.execute(query).fetchall()]
    finally:
        con.close()
    return "\n".join(rows)


def _all_file_bytes(data_dir: Path) -> str:
    return "\n".join(
        path.read_bytes().decode("latin-1")
        for path in sorted(data_dir.rglob("*"))
        if path.is_file()
    )


def _working(standins: ProviderStandins, provider: str) -> dict[str, Any]:
    if provider == "gcp":
        return standins.google.create_key()
    if provider == "aws":
        return standins.aws.create_access_key()
    if provider == "azure":
        return standins.azure.create_application()
    return standins.openai.create_key()


def _secret_items(credentials: dict[str, Any]) -> Any:
    stored_names = (
        "private_key",
        "private_key_id",
        "client_email",
        "aws_access_key_id",
        "aws_secret_access_key",
        "client_secret",
        "api_key",
    )
    return {(name, credentials[name]) for name in stored_names if name in credentials}
