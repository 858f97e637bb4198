"""validate_credentials in the stack: one AWS key stored, listed and read back.

The AWS stand-in (moto, started by the stack) checks the key live. Audit
events go through Pub/Sub and audit_writer like every other function's.
The last test stops the stack: keep it last in this file.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from e2e_stack import RunningStack, Tenant, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tenant(stack: RunningStack) -> Tenant:
    return stack.create_tenant("e2e_credentials")


@pytest.fixture(scope="module")
def stored(stack: RunningStack, tenant: Tenant) -> dict[str, Any]:
    response = stack.call(
        "POST",
        "/credentials",
        key=tenant.admin_key,
        body=stack.standin_request("aws"),
        base_url=stack.credentials_url,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def read_key(stack: RunningStack, tenant: Tenant) -> str:
    response = stack.call(
        "POST",
        "/keys",
        key=stack.operator_token,
        body={
            "tenant_id": tenant.tenant_id,
            "name": "pipelines",
            "scopes": ["credentials:read"],
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["api_key"])


def test_store_returns_metadata_only(
    stack: RunningStack, stored: dict[str, Any]
) -> None:
    fields = stack.standin_request("aws")["credentials"]

    assert stored["credential"]["provider"] == "aws"
    assert stored["validation"]["status"] == "valid"
    assert fields["aws_secret_access_key"] not in json.dumps(stored)


def test_stored_credential_listed(
    stack: RunningStack, tenant: Tenant, stored: dict[str, Any]
) -> None:
    response = stack.call(
        "GET", "/credentials", key=tenant.admin_key, base_url=stack.credentials_url
    )
    listed = [entry["credential_id"] for entry in response.json()["credentials"]]

    assert response.status_code == 200
    assert listed == [stored["credential"]["credential_id"]]


def read_secret(
    stack: RunningStack, stored: dict[str, Any], key: str
) -> requests.Response:
    credential_id = stored["credential"]["credential_id"]
    return stack.call(
        "GET",
        f"/credentials/{credential_id}/secret",
        key=key,
        base_url=stack.credentials_url,
    )


def test_secret_read_with_read_key(
    stack: RunningStack, stored: dict[str, Any], read_key: str
) -> None:
    response = read_secret(stack, stored, read_key)

    assert response.status_code == 200
    assert response.json()["credentials"] == stack.standin_request("aws")["credentials"]


def test_admin_key_cannot_read_secret(
    stack: RunningStack, tenant: Tenant, stored: dict[str, Any]
) -> None:
    response = read_secret(stack, stored, tenant.admin_key)

    assert response.status_code == 403


def test_credential_events_audited(
    stack: RunningStack,
    tenant: Tenant,
    stored: dict[str, Any],
    read_key: str,
) -> None:
    assert read_secret(stack, stored, read_key).status_code == 200
    expected = {"credentials.validated", "credentials.stored", "credentials.accessed"}

    def types() -> set[str] | None:
        rows = stack.store().list_audit_events(tenant.tenant_id)
        found = {row.event_type for row in rows}
        return found if expected <= found else None

    found = wait_for(types, f"audit rows {sorted(expected)}")
    stored_by_writer = {
        entry["logging.googleapis.com/labels"]["event_type"]
        for entry in stack.log_entries("audit_writer")
        if entry["message"] == "audit event stored"
    }

    assert expected <= found
    assert expected <= stored_by_writer


def test_output_has_no_credential_secrets(
    stack: RunningStack, stored: dict[str, Any], read_key: str
) -> None:
    stack.stop()
    output = stack.output()
    secrets = [*stack.standin_secrets(), read_key]

    leaked = [secret[:4] + "..." for secret in secrets if secret in output]

    assert leaked == []
