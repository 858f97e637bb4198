"""issue-key: request bodies that used to end in a 500 or an echoed body.

JSON allows ``\\ud800``-style escapes for lone UTF-16 surrogates, which no
UTF-8 store accepts, and the audit event of a new tenant rejects a name shaped
like an API key. Both must be a 400 naming the field, raised before anything is
written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

OPERATOR_TOKEN = "operator-token-for-security-tests"
OPERATOR = {
    "Authorization": f"Bearer {OPERATOR_TOKEN}",
    "Content-Type": "application/json",
}
KEY_SHAPED_NAME = "globex_api_" + "A" * 29


@pytest.fixture
def client(load_function: Callable[..., Any]) -> FlaskClient:
    app, _ = load_function(
        "issue_key",
        OPERATOR_TOKEN_SHA256=hashlib.sha256(OPERATOR_TOKEN.encode()).hexdigest(),
    )
    return app.test_client()


@pytest.fixture
def admin(client: FlaskClient) -> dict[str, str]:
    """Headers that carry the admin key of tenant acme."""
    response = client.post("/tenants", json={"tenant_id": "acme"}, headers=OPERATOR)
    key = response.get_json()["admin_key"]["api_key"]
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def _message(response: Any) -> str:
    return str(response.get_json()["error"]["message"])


def test_key_name_lone_surrogate_400(
    client: FlaskClient, admin: dict[str, str]
) -> None:
    response = client.post("/keys", data=b'{"name": "\\ud800"}', headers=admin)

    assert response.status_code == 400
    assert "name" in _message(response)


@pytest.mark.parametrize("field", ["name", "contact_email"])
def test_tenant_field_lone_surrogate_400(client: FlaskClient, field: str) -> None:
    body = b'{"tenant_id": "initech", "%s": "\\udfff"}' % field.encode()

    response = client.post("/tenants", data=body, headers=OPERATOR)

    assert response.status_code == 400
    assert field in _message(response)


def test_tenant_name_like_key_400(client: FlaskClient) -> None:
    body = {"tenant_id": "initech", "name": KEY_SHAPED_NAME}

    response = client.post("/tenants", json=body, headers=OPERATOR)

    assert response.status_code == 400
    assert "name" in _message(response)
    assert "globex_api_" not in response.get_data(as_text=True)


def test_tenant_name_like_key_creates_nothing(client: FlaskClient) -> None:
    body = {"tenant_id": "initech", "name": KEY_SHAPED_NAME}
    client.post("/tenants", json=body, headers=OPERATOR)

    retry = client.post("/tenants", json={"tenant_id": "initech"}, headers=OPERATOR)

    assert retry.status_code == 201
