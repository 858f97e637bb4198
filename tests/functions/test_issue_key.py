import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from shared.apikeys import generate_api_key, parse_api_key
from shared.store._duckdb import DuckDBStore

OPERATOR_TOKEN = "operator-bootstrap-token-for-tests"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
ALLOWED_ORIGIN = "https://console.example"
MAX_REQUEST_BYTES = 2048
UNAUTHENTICATED = {
    "error": {
        "code": "unauthenticated",
        "message": "send a valid, unexpired API key as "
        "'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
    }
}


@pytest.fixture
def client(
    load_function: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> FlaskClient:
    app, _ = load_function(
        "issue_key",
        OPERATOR_TOKEN_SHA256=hashlib.sha256(OPERATOR_TOKEN.encode()).hexdigest(),
        CORS_ALLOWED_ORIGINS=ALLOWED_ORIGIN,
        MAX_REQUEST_BYTES=str(MAX_REQUEST_BYTES),
    )
    return app.test_client()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _create_tenant(client: FlaskClient, tenant_id: str) -> dict[str, Any]:
    response = client.post(
        "/tenants", json={"tenant_id": tenant_id, "name": tenant_id}, headers=OPERATOR
    )
    assert response.status_code == 201
    return response.get_json()


@pytest.fixture
def acme(client: FlaskClient) -> str:
    """The admin key of tenant acme."""
    return str(_create_tenant(client, "acme")["admin_key"]["api_key"])


@pytest.fixture
def globex(client: FlaskClient) -> str:
    """The admin key of tenant globex."""
    return str(_create_tenant(client, "globex")["admin_key"]["api_key"])


def _issue(client: FlaskClient, admin_key: str, **body: Any) -> dict[str, Any]:
    response = client.post("/keys", json=body, headers=_bearer(admin_key))
    assert response.status_code == 201
    return response.get_json()


def _error(response: TestResponse) -> dict[str, str]:
    return response.get_json()["error"]


# Health and routing


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_unknown_path_404(client: FlaskClient) -> None:
    assert client.get("/admin").status_code == 404


def test_wrong_method_405(client: FlaskClient) -> None:
    response = client.put("/keys", headers=OPERATOR)

    assert response.status_code == 405
    assert _error(response)["message"] == "use one of: POST, GET"


# Tenants


def test_create_tenant(client: FlaskClient) -> None:
    body = _create_tenant(client, "acme")

    admin_key = body["admin_key"]
    assert body["tenant_id"] == "acme"
    assert admin_key["scopes"] == ["admin", "api"]
    assert admin_key["status"] == "active"
    assert parse_api_key(admin_key["api_key"]).tenant_id == "acme"
    assert admin_key["key_prefix"] == admin_key["api_key"][: len("acme_api_") + 4]


def test_create_tenant_twice_409(client: FlaskClient, acme: str) -> None:
    response = client.post("/tenants", json={"tenant_id": "acme"}, headers=OPERATOR)

    assert response.status_code == 409
    assert _error(response)["code"] == "tenant_exists"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "tenant_id"),
        ({"tenant_id": "Acme-Corp"}, "tenant_id"),
        ({"tenant_id": 42}, "tenant_id"),
        ({"tenant_id": "acme", "name": ""}, "name"),
        ({"tenant_id": "acme", "name": "n" * 201}, "name"),
        ({"tenant_id": "acme", "contact_email": ["a@example.com"]}, "contact_email"),
    ],
)
def test_create_tenant_bad_field_400(
    client: FlaskClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/tenants", json=body, headers=OPERATOR)

    assert response.status_code == 400
    assert field in _error(response)["message"]


def test_create_tenant_400_does_not_echo_value(client: FlaskClient) -> None:
    response = client.post(
        "/tenants", json={"tenant_id": "Evil<script>"}, headers=OPERATOR
    )

    assert b"Evil<script>" not in response.get_data()


def test_create_tenant_by_admin_key_403(client: FlaskClient, acme: str) -> None:
    response = client.post(
        "/tenants", json={"tenant_id": "globex"}, headers=_bearer(acme)
    )

    assert response.status_code == 403
    assert _error(response)["code"] == "forbidden"


def test_create_tenant_wrong_operator_token_401(client: FlaskClient) -> None:
    response = client.post(
        "/tenants", json={"tenant_id": "acme"}, headers=_bearer(OPERATOR_TOKEN + "x")
    )

    assert response.status_code == 401


# Keys


def test_issue_key(client: FlaskClient, acme: str) -> None:
    body = _issue(client, acme, name="ci", scopes=["api"], expires_in_days=30)

    assert body["name"] == "ci"
    assert body["scopes"] == ["api"]
    assert body["tenant_id"] == "acme"
    assert parse_api_key(body["api_key"]).tenant_id == "acme"


def test_issue_key_with_x_api_key_header(client: FlaskClient, acme: str) -> None:
    response = client.post("/keys", json={}, headers={"X-API-Key": acme})

    assert response.status_code == 201


def test_issued_key_verifies(client: FlaskClient, acme: str) -> None:
    issued = _issue(client, acme)

    response = client.get("/verify", headers=_bearer(issued["api_key"]))

    assert response.status_code == 200
    assert response.get_json() == {
        "valid": True,
        "tenant_id": "acme",
        "api_key_id": issued["api_key_id"],
        "user_id": issued["user_id"],
        "scopes": ["api"],
    }


def test_post_verify(client: FlaskClient, acme: str) -> None:
    assert client.post("/verify", headers=_bearer(acme)).status_code == 200


def test_list_keys_hides_keys(client: FlaskClient, acme: str) -> None:
    issued = _issue(client, acme, name="ci")

    response = client.get("/keys", headers=_bearer(acme))

    keys = response.get_json()["keys"]
    assert [key["api_key_id"] for key in keys][-1] == issued["api_key_id"]
    assert all("api_key" not in key for key in keys)
    assert issued["api_key"] not in response.get_data(as_text=True)


def test_list_keys_shows_last_used_at(client: FlaskClient, acme: str) -> None:
    issued = _issue(client, acme)
    client.get("/verify", headers=_bearer(issued["api_key"]))

    keys = client.get("/keys", headers=_bearer(acme)).get_json()["keys"]

    used = {key["api_key_id"]: key["last_used_at"] for key in keys}
    assert used[issued["api_key_id"]] is not None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": ["root"]}, "scopes"),
        ({"scopes": "api"}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"scopes": [1]}, "scopes"),
        ({"name": 5}, "name"),
        ({"expires_in_days": "30"}, "expires_in_days"),
        ({"expires_in_days": True}, "expires_in_days"),
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": -1}, "expires_in_days"),
        ({"expires_in_days": 366}, "expires_in_days"),
        ({"expires_in_days": 1e308}, "expires_in_days"),
        ({"expires_in_days": 10**400}, "expires_in_days"),
    ],
)
def test_issue_key_bad_field_400(
    client: FlaskClient, acme: str, body: dict[str, Any], field: str
) -> None:
    response = client.post("/keys", json=body, headers=_bearer(acme))

    assert response.status_code == 400
    assert field in _error(response)["message"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_issue_key_non_finite_days_400(
    client: FlaskClient, acme: str, literal: str
) -> None:
    response = client.post(
        "/keys",
        data='{"expires_in_days": ' + literal + "}",
        headers=_bearer(acme) | {"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert "expires_in_days" in _error(response)["message"]


def test_body_too_large_413(client: FlaskClient, acme: str) -> None:
    body = json.dumps({"name": "x" * MAX_REQUEST_BYTES})

    response = client.post(
        "/keys",
        data=body,
        headers=_bearer(acme) | {"Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert _error(response)["code"] == "body_too_large"


def test_wrong_content_type_415(client: FlaskClient, acme: str) -> None:
    response = client.post(
        "/keys",
        data="name=ci",
        headers=_bearer(acme) | {"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 415


@pytest.mark.parametrize("body", ["{not json", "[1, 2]"])
def test_invalid_json_400(client: FlaskClient, acme: str, body: str) -> None:
    response = client.post(
        "/keys",
        data=body,
        headers=_bearer(acme) | {"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_json"


def test_non_admin_key_403(client: FlaskClient, acme: str) -> None:
    member = _issue(client, acme, scopes=["api"])["api_key"]

    for response in (
        client.get("/keys", headers=_bearer(member)),
        client.post("/keys", json={}, headers=_bearer(member)),
    ):
        assert response.status_code == 403
        assert "admin scope" in _error(response)["message"]


def test_revoke_key(client: FlaskClient, acme: str) -> None:
    issued = _issue(client, acme)

    response = client.delete(f"/keys/{issued['api_key_id']}", headers=_bearer(acme))

    assert response.status_code == 200
    assert response.get_json()["status"] == "revoked"
    assert client.get("/verify", headers=_bearer(issued["api_key"])).status_code == 401


def test_revoke_unknown_key_404(client: FlaskClient, acme: str) -> None:
    response = client.delete("/keys/key_missing", headers=_bearer(acme))

    assert response.status_code == 404


def test_rotate_key(client: FlaskClient, acme: str) -> None:
    old = _issue(client, acme, name="ci")

    response = client.post(
        f"/keys/{old['api_key_id']}/rotate",
        json={"grace_period_hours": 1},
        headers=_bearer(acme),
    )

    body = response.get_json()
    assert response.status_code == 201
    assert body["new_key"]["rotated_from_key_id"] == old["api_key_id"]
    assert body["old_key"]["api_key_id"] == old["api_key_id"]
    assert "api_key" not in body["old_key"]
    assert client.get("/verify", headers=_bearer(old["api_key"])).status_code == 200
    new_key = body["new_key"]["api_key"]
    assert client.get("/verify", headers=_bearer(new_key)).status_code == 200


@pytest.mark.parametrize("grace", [-1, 169, 1e308, "24"])
def test_rotate_bad_grace_400(client: FlaskClient, acme: str, grace: Any) -> None:
    old = _issue(client, acme)

    response = client.post(
        f"/keys/{old['api_key_id']}/rotate",
        json={"grace_period_hours": grace},
        headers=_bearer(acme),
    )

    assert response.status_code == 400
    assert "grace_period_hours" in _error(response)["message"]


# Tenant isolation


def test_other_tenant_revoke_404(client: FlaskClient, acme: str, globex: str) -> None:
    target = _issue(client, acme)

    response = client.delete(f"/keys/{target['api_key_id']}", headers=_bearer(globex))

    assert response.status_code == 404
    assert client.get("/verify", headers=_bearer(target["api_key"])).status_code == 200


def test_other_tenant_rotate_404(client: FlaskClient, acme: str, globex: str) -> None:
    target = _issue(client, acme)

    response = client.post(
        f"/keys/{target['api_key_id']}/rotate", json={}, headers=_bearer(globex)
    )

    assert response.status_code == 404


def test_other_tenant_list_shows_own_keys(
    client: FlaskClient, acme: str, globex: str
) -> None:
    response = client.get("/keys?tenant_id=acme", headers=_bearer(globex))

    tenants = {key["tenant_id"] for key in response.get_json()["keys"]}
    assert tenants == {"globex"}


def test_other_tenant_body_tenant_ignored(
    client: FlaskClient, acme: str, globex: str
) -> None:
    issued = _issue(client, globex, tenant_id="acme")

    assert issued["tenant_id"] == "globex"


# Operator


def test_operator_lists_named_tenant(client: FlaskClient, acme: str) -> None:
    response = client.get("/keys?tenant_id=acme", headers=OPERATOR)

    assert response.status_code == 200
    assert len(response.get_json()["keys"]) == 1


def test_operator_must_name_tenant_400(client: FlaskClient, acme: str) -> None:
    response = client.get("/keys", headers=OPERATOR)

    assert response.status_code == 400
    assert "tenant_id" in _error(response)["message"]


def test_operator_unknown_tenant_404(client: FlaskClient) -> None:
    response = client.get("/keys?tenant_id=nobody_here", headers=OPERATOR)

    assert response.status_code == 404


def test_operator_token_rejected_by_verify(client: FlaskClient) -> None:
    assert client.get("/verify", headers=OPERATOR).status_code == 401


# Authentication failures: one response for every cause


def _expired_key(client: FlaskClient, admin_key: str) -> str:
    old = _issue(client, admin_key)
    response = client.post(
        f"/keys/{old['api_key_id']}/rotate",
        json={"grace_period_hours": 0},
        headers=_bearer(admin_key),
    )
    assert response.status_code == 201
    return str(old["api_key"])


def _revoked_key(client: FlaskClient, admin_key: str) -> str:
    issued = _issue(client, admin_key)
    client.delete(f"/keys/{issued['api_key_id']}", headers=_bearer(admin_key))
    return str(issued["api_key"])


def test_failed_authentication_one_body(client: FlaskClient, acme: str) -> None:
    presented: dict[str, dict[str, str]] = {
        "missing": {},
        "empty": {"Authorization": ""},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "malformed": _bearer("not-a-key"),
        "checksum": _bearer(acme[:-1] + ("A" if acme[-1] != "A" else "B")),
        "unknown": _bearer(generate_api_key("acme")),
        "other-tenant-shape": _bearer(generate_api_key("globex")),
        "revoked": _bearer(_revoked_key(client, acme)),
        "expired": _bearer(_expired_key(client, acme)),
        "x-api-key-unknown": {"X-API-Key": generate_api_key("acme")},
    }

    for case, headers in presented.items():
        for method, path in (("GET", "/keys"), ("GET", "/verify"), ("POST", "/keys")):
            response = client.open(path, method=method, headers=headers, json={})
            assert response.status_code == 401, case
            assert response.get_json() == UNAUTHENTICATED, case
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), case


@pytest.mark.parametrize(
    "headers",
    [
        _bearer("ключ-доступа".encode().decode("latin-1")),
        {"X-API-Key": "ключ".encode().decode("latin-1")},
        {"X-API-Key": "\x00\x01\x7f"},
        _bearer("k" * 200_000),
        {"X-API-Key": "acme_api_" + "A" * 200_000},
        {"Authorization": "Bearer " + "é" * 10_000},
    ],
    ids=[
        "bearer-utf8",
        "x-api-key-utf8",
        "control",
        "huge",
        "huge-key-shape",
        "latin1",
    ],
)
def test_odd_credential_401(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.get(
        "/verify",
        headers=headers | {"User-Agent": "ü" * 5000, "X-Forwarded-For": "x" * 5000},
    )

    assert response.status_code == 401
    assert response.get_json() == UNAUTHENTICATED


# CORS


def test_preflight_allowed_origin(client: FlaskClient) -> None:
    response = client.options(
        "/keys",
        headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"},
    )

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


def test_preflight_other_origin_403(client: FlaskClient) -> None:
    response = client.options("/keys", headers={"Origin": "https://evil.example"})

    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers


def test_allowed_origin_on_401(client: FlaskClient) -> None:
    response = client.get("/keys", headers={"Origin": ALLOWED_ORIGIN})

    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


def test_other_origin_gets_no_acao(client: FlaskClient, acme: str) -> None:
    response = client.get(
        "/keys", headers=_bearer(acme) | {"Origin": "https://evil.example"}
    )

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


# Every response


def test_every_response_no_store(client: FlaskClient, acme: str) -> None:
    responses = [
        client.get("/healthz"),
        client.get("/nowhere"),
        client.put("/keys"),
        client.get("/keys"),
        client.get("/keys", headers=_bearer(acme)),
        client.post("/keys", json={"scopes": ["root"]}, headers=_bearer(acme)),
        client.post("/keys", json={}, headers=_bearer(acme)),
        client.post(
            "/keys",
            data="x" * (MAX_REQUEST_BYTES + 1),
            headers=_bearer(acme) | {"Content-Type": "application/json"},
        ),
        client.options("/keys", headers={"Origin": ALLOWED_ORIGIN}),
        client.options("/keys", headers={"Origin": "https://evil.example"}),
    ]

    statuses = sorted({response.status_code for response in responses})
    assert statuses == [200, 201, 204, 400, 401, 403, 404, 405, 413]
    for response in responses:
        assert response.headers["Cache-Control"] == "no-store", response.status
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.status


def _keys_in(body: Any) -> list[str]:
    """Every ``api_key`` value anywhere in a response body."""
    if isinstance(body, dict):
        found = [body["api_key"]] if isinstance(body.get("api_key"), str) else []
        return found + [key for value in body.values() for key in _keys_in(value)]
    if isinstance(body, list):
        return [key for value in body for key in _keys_in(value)]
    return []


def test_issued_keys_appear_only_in_their_issuing_response(
    client: FlaskClient, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issuing: dict[str, str] = {}  # key -> body of the response that issued it
    others: list[str] = []

    def call(method: str, path: str, key: str | None = None, **kwargs: Any) -> Any:
        headers = _bearer(key) if key else OPERATOR
        response = client.open(path, method=method, headers=headers, **kwargs)
        text = response.get_data(as_text=True)
        body = response.get_json()
        found = _keys_in(body)
        for issued in found:
            issuing[issued] = text
        if not found:
            others.append(text)
        return body

    admin = call("POST", "/tenants", json={"tenant_id": "acme"})["admin_key"]["api_key"]
    member = call("POST", "/keys", admin, json={"name": "ci"})
    call("GET", "/keys", admin)
    call("GET", "/verify", member["api_key"])
    rotated = call("POST", f"/keys/{member['api_key_id']}/rotate", admin, json={})
    call("DELETE", f"/keys/{rotated['new_key']['api_key_id']}", admin)
    call("GET", "/verify", rotated["new_key"]["api_key"])
    call("GET", "/verify", member["api_key"] + "x")
    call("GET", "/keys?tenant_id=acme")

    assert len(issuing) == 3
    logs = capsys.readouterr().out
    events = DuckDBStore(data_dir / "tenants_metadata.duckdb").list_audit_events(
        None, limit=1000
    )
    audit = "\n".join(event.model_dump_json() for event in events)
    assert len(events) == 7
    for key, own_body in issuing.items():
        assert key in own_body
        assert all(key not in text for text in others)
        assert all(key not in body for body in issuing.values() if body != own_body)
        assert key not in logs
        assert key not in audit
    assert "[REDACTED]" not in logs
    assert OPERATOR_TOKEN not in logs
    assert OPERATOR_TOKEN not in audit
