"""issue_key over real HTTP, with audit events delivered through the emulator.

The last tests stop the stack: keep them last in this file.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest
from e2e_stack import RunningStack, Tenant, wait_for

from shared import apikeys
from shared.events import AuditEvent

pytestmark = pytest.mark.e2e

FLOW_EVENT_TYPES = {
    "tenant.created",
    "api_key.created",
    "api_key.rotated",
    "api_key.revoked",
    "authentication.failed",
}


@pytest.fixture(scope="module")
def tenant_a(stack: RunningStack) -> Tenant:
    return stack.create_tenant("e2e_alpha")


@pytest.fixture(scope="module")
def tenant_b(stack: RunningStack) -> Tenant:
    return stack.create_tenant("e2e_beta")


def issue(stack: RunningStack, tenant: Tenant) -> dict[str, str]:
    response = stack.call(
        "POST", "/keys", key=tenant.admin_key, body={"name": "e2e", "scopes": ["api"]}
    )
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


def verify_status(stack: RunningStack, key: str) -> int:
    return stack.call("GET", "/verify", key=key).status_code


# Issue, verify, rotate, revoke


def test_issued_key_verifies(stack: RunningStack, tenant_a: Tenant) -> None:
    issued = issue(stack, tenant_a)

    response = stack.call("GET", "/verify", key=issued["api_key"])

    assert response.status_code == 200
    assert response.json()["tenant_id"] == tenant_a.tenant_id
    assert response.json()["api_key_id"] == issued["api_key_id"]


def test_admin_key_cannot_create_tenant(stack: RunningStack, tenant_a: Tenant) -> None:
    response = stack.call(
        "POST", "/tenants", key=tenant_a.admin_key, body={"tenant_id": "e2e_gamma"}
    )

    assert response.status_code == 403


def test_rotation_keeps_old_key_in_grace(stack: RunningStack, tenant_a: Tenant) -> None:
    issued = issue(stack, tenant_a)

    rotated = stack.call(
        "POST",
        f"/keys/{issued['api_key_id']}/rotate",
        key=tenant_a.admin_key,
        body={"grace_period_hours": 1},
    )
    new_key = rotated.json()["new_key"]

    assert rotated.status_code == 201
    assert verify_status(stack, issued["api_key"]) == 200
    assert verify_status(stack, new_key["api_key"]) == 200
    assert new_key["api_key_id"] != issued["api_key_id"]


def test_revoked_key_answers_like_unknown(
    stack: RunningStack, tenant_a: Tenant
) -> None:
    issued = issue(stack, tenant_a)
    never_issued = apikeys.generate_api_key(tenant_a.tenant_id)
    stack.secrets.append(never_issued)

    revoked = stack.call(
        "DELETE", f"/keys/{issued['api_key_id']}", key=tenant_a.admin_key
    )
    after = stack.call("GET", "/verify", key=issued["api_key"])
    unknown = stack.call("GET", "/verify", key=never_issued)

    assert revoked.status_code == 200
    assert after.status_code == 401
    assert unknown.status_code == 401
    assert after.json() == unknown.json()


# Tenant isolation


def test_other_tenant_cannot_list_keys(
    stack: RunningStack, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    # An admin key's tenant comes from the key; the query parameter is ignored.
    response = stack.call(
        "GET", f"/keys?tenant_id={tenant_a.tenant_id}", key=tenant_b.admin_key
    )
    listed = {key["api_key_id"] for key in response.json()["keys"]}

    assert response.status_code == 200
    assert tenant_a.admin_key_id not in listed
    assert tenant_b.admin_key_id in listed


def test_other_tenant_cannot_revoke_key(
    stack: RunningStack, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    issued = issue(stack, tenant_a)

    response = stack.call(
        "DELETE", f"/keys/{issued['api_key_id']}", key=tenant_b.admin_key
    )

    assert response.status_code in (403, 404)
    assert verify_status(stack, issued["api_key"]) == 200


def test_other_tenant_cannot_rotate_key(
    stack: RunningStack, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    issued = issue(stack, tenant_a)

    response = stack.call(
        "POST", f"/keys/{issued['api_key_id']}/rotate", key=tenant_b.admin_key
    )
    listed = stack.call("GET", "/keys", key=tenant_a.admin_key).json()["keys"]
    status = {key["api_key_id"]: key["status"] for key in listed}
    replacements = [
        key for key in listed if key["rotated_from_key_id"] == issued["api_key_id"]
    ]

    assert response.status_code in (403, 404)
    assert verify_status(stack, issued["api_key"]) == 200
    assert status[issued["api_key_id"]] == "active"
    assert replacements == []


# Audit events


@pytest.fixture(scope="module")
def audited_tenant(stack: RunningStack) -> Tenant:
    """A tenant that went through every audited step once."""
    tenant = stack.create_tenant("e2e_audit")
    issued = issue(stack, tenant)
    rotated = stack.call(
        "POST", f"/keys/{issued['api_key_id']}/rotate", key=tenant.admin_key
    )
    assert rotated.status_code == 201, rotated.text
    new_key = rotated.json()["new_key"]
    revoked = stack.call(
        "DELETE", f"/keys/{new_key['api_key_id']}", key=tenant.admin_key
    )
    assert revoked.status_code == 200, revoked.text
    assert verify_status(stack, new_key["api_key"]) == 401
    return tenant


def audit_rows(stack: RunningStack, tenant_id: str) -> list[AuditEvent] | None:
    """Return the tenant's audit rows once every flow event type is there."""
    rows = stack.store().list_audit_events(tenant_id)
    return rows if {row.event_type for row in rows} >= FLOW_EVENT_TYPES else None


def stored_event_ids(stack: RunningStack) -> set[str]:
    return {
        entry["logging.googleapis.com/labels"]["event_id"]
        for entry in stack.log_entries("audit_writer")
        if entry["message"] == "audit event stored"
    }


def test_audit_rows_cover_flow(stack: RunningStack, audited_tenant: Tenant) -> None:
    rows = wait_for(
        lambda: audit_rows(stack, audited_tenant.tenant_id),
        f"audit rows of {sorted(FLOW_EVENT_TYPES)}",
    )

    assert {row.tenant_id for row in rows} == {audited_tenant.tenant_id}
    assert len([row for row in rows if row.event_type == "tenant.created"]) == 1


def test_audit_rows_came_through_pubsub(
    stack: RunningStack, audited_tenant: Tenant
) -> None:
    rows = wait_for(
        lambda: audit_rows(stack, audited_tenant.tenant_id), "the audit rows"
    )
    expected = {str(row.event_id) for row in rows}

    # audit_writer logs after it commits, so its lines may trail the rows.
    wait_for(
        lambda: expected <= stored_event_ids(stack),
        "audit_writer to log every event id",
    )
    fallbacks = [
        entry
        for entry in stack.log_entries("issue_key")
        if entry["message"].startswith("publishing audit event failed")
    ]

    assert expected - stored_event_ids(stack) == set()
    assert fallbacks == []


def test_failed_authentication_audited_for_key_tenant(
    stack: RunningStack, tenant_b: Tenant
) -> None:
    unknown = apikeys.generate_api_key(tenant_b.tenant_id)
    stack.secrets.append(unknown)
    assert verify_status(stack, unknown) == 401

    failures = wait_for(
        lambda: [
            row
            for row in stack.store().list_audit_events(
                tenant_b.tenant_id, event_type="authentication.failed"
            )
            if row.details.get("reason") == "unknown"
        ],
        "the authentication.failed row of tenant B",
    )

    assert {row.tenant_id for row in failures} == {tenant_b.tenant_id}


# The printed walk-through, then the stop: these run last.


def walkthrough(stack: RunningStack) -> str:
    """Return the shell lines of the printed walk-through."""
    lines = stack.output().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("export "))
    # The walk-through ends with the DuckDB file's path, on a line of its own.
    end = lines.index("  " + shlex.quote(stack.state["audit_database"]))
    return "\n".join(lines[start : end + 1])


def test_walkthrough_runs_in_bash(stack: RunningStack) -> None:
    script = walkthrough(stack)
    script += '\nprintf "secret %s\\n" "$ADMIN_KEY" "$API_KEY" "$NEW_KEY" "$READ_KEY"\n'
    stack.secrets.extend(stack.standin_secrets())
    aws_key_id = stack.standin_request("aws")["credentials"]["aws_access_key_id"]

    result = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            name: value
            for name, value in os.environ.items()
            if name != "OPERATOR_TOKEN"
        },
    )
    secrets = re.findall(r"^secret (\S+)$", result.stdout, re.MULTILINE)
    stack.secrets.extend(secrets)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.count('"valid": true') == 2
    assert "HTTP 401" in result.stdout
    assert len(secrets) == 4
    # validate_credentials: a valid Google key, 422 and 400, the secret read back.
    assert '"provider": "gcp", "status": "valid"' in result.stdout
    assert "HTTP 422" in result.stdout
    assert "HTTP 400" in result.stdout
    assert f'"aws_access_key_id": "{aws_key_id}"' in result.stdout
    # The alert check published for its slot.
    assert "Published hourly-alert-check for slot" in result.stdout


def test_output_has_no_secrets(stack: RunningStack, tenant_a: Tenant) -> None:
    issue(stack, tenant_a)
    stack.stop()
    output = stack.output()

    leaked = [secret[:4] + "..." for secret in stack.secrets if secret in output]

    assert len(stack.secrets) >= 3
    assert leaked == []


def test_output_has_no_errors(stack: RunningStack) -> None:
    stack.stop()
    markers = ('"severity": "ERROR"', '"severity": "CRITICAL"', "[ERROR]", "Traceback")

    errors = [
        line for line in stack.output().splitlines() if any(m in line for m in markers)
    ]

    assert errors == []


def test_sigint_stops_every_child(stack: RunningStack) -> None:
    result = stack.stop()

    assert result.returncode == 0
    assert result.children >= 4
    assert result.survivors == []
