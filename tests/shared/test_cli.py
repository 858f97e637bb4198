"""The ``convergence`` command line, run against a DuckDB file and a local keyring."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from shared import apikeys
from shared.cli import cli
from shared.config import load_settings
from shared.crypto import parse_ciphertext
from shared.keyservice import AuthenticationError, KeyService, Principal
from shared.runtime import build_key_service
from shared.store import ApiKeyRecord

KEY_IN_TEXT = re.compile(r"\b[a-z][a-z0-9_]{2,49}_api_[0-9A-Za-z]{29}\b")
WARNING = "This key will not be shown again"


@pytest.fixture
def data_dir(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Path:
    return tmp_path / "data"


@pytest.fixture
def runner(data_dir: Path) -> CliRunner:
    return CliRunner(
        env={
            "DATA_DIR": str(data_dir),
            "KMS_BACKEND": "local",
            "STORE_BACKEND": "duckdb",
            "AUDIT_DELIVERY": "store",
        }
    )


@pytest.fixture
def service(data_dir: Path) -> KeyService:
    """A KeyService on the same files, as a function would build it."""
    return build_key_service(
        load_settings(
            data_dir=data_dir,
            kms_backend="local",
            store_backend="duckdb",
            audit_delivery="store",
            verify_cache_ttl_seconds=0,
        )
    )


def run(runner: CliRunner, *args: str, **env: str) -> Result:
    return runner.invoke(cli, list(args), env=env or None, catch_exceptions=False)


def run_json(runner: CliRunner, *args: str) -> Any:
    result = run(runner, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def create_tenant(runner: CliRunner, tenant_id: str = "acme") -> dict[str, Any]:
    document: dict[str, Any] = run_json(runner, "tenant", "create", tenant_id)
    return document


def assert_one_line_error(result: Result, exit_code: int) -> None:
    assert result.exit_code == exit_code
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


# Help


def test_help_lists_exit_codes(runner: CliRunner) -> None:
    result = run(runner, "--help")

    assert result.exit_code == 0
    for line in ("0  success", "1  the operation failed", "2  usage error"):
        assert line in result.stdout
    assert "3  configuration error" in result.stdout
    assert "4  a dependency was unavailable" in result.stdout


# tenant create


def test_tenant_create_prints_admin_key_once(runner: CliRunner) -> None:
    result = run(runner, "tenant", "create", "acme", "--name", "Acme Corp")

    assert result.exit_code == 0
    assert "Created tenant acme (Acme Corp)." in result.stdout
    keys = KEY_IN_TEXT.findall(result.stdout)
    assert len(keys) == 1
    assert apikeys.parse_api_key(keys[0]).tenant_id == "acme"
    assert WARNING in result.stdout


def test_tenant_create_json(runner: CliRunner) -> None:
    result = run(runner, "--json", "tenant", "create", "acme")
    document = json.loads(result.stdout)

    assert result.exit_code == 0
    assert document["tenant_id"] == "acme"
    assert apikeys.parse_api_key(document["admin_key"]["api_key"])
    assert document["admin_key"]["scopes"] == ["admin", "api"]
    assert document["admin_key"]["status"] == "active"
    assert WARNING in result.stderr


def test_tenant_create_is_audited(runner: CliRunner) -> None:
    run(runner, "tenant", "create", "acme", "--contact-email", "ops@acme.test")

    events = run_json(runner, "audit", "list", "--type", "tenant.created")["events"]
    assert events[0]["tenant_id"] == "acme"
    assert events[0]["actor_id"] == "operator"


def test_tenant_create_existing_exits_1(runner: CliRunner) -> None:
    create_tenant(runner)

    result = run(runner, "tenant", "create", "acme")

    assert_one_line_error(result, 1)
    assert "tenant acme already exists" in result.stderr


def test_tenant_create_invalid_id_exits_1(runner: CliRunner) -> None:
    result = run(runner, "tenant", "create", "Acme-Corp")

    assert_one_line_error(result, 1)
    assert "tenant_id must be 3 to 50 characters" in result.stderr


def test_tenant_create_long_name_exits_1(runner: CliRunner) -> None:
    result = run(runner, "tenant", "create", "acme", "--name", "x" * 201)

    assert_one_line_error(result, 1)
    assert "--name must be 1 to 200 characters" in result.stderr


# key issue


def test_key_issue_prints_key_once(runner: CliRunner) -> None:
    create_tenant(runner)

    result = run(
        runner,
        "key",
        "issue",
        "--tenant",
        "acme",
        "--name",
        "deploy",
        "--scope",
        "api",
        "--scope",
        "admin",
    )

    assert result.exit_code == 0
    assert len(KEY_IN_TEXT.findall(result.stdout)) == 1
    assert "name:    deploy" in result.stdout
    assert "scopes:  admin, api" in result.stdout
    assert WARNING in result.stdout


def test_key_issue_json(runner: CliRunner) -> None:
    create_tenant(runner)
    before = datetime.now(UTC)

    document = run_json(
        runner, "key", "issue", "--tenant", "acme", "--expires-in-days", "7"
    )

    expires_at = datetime.fromisoformat(document["expires_at"])
    assert apikeys.parse_api_key(document["api_key"]).tenant_id == "acme"
    assert document["scopes"] == ["api"]
    assert document["user_id"] is None
    assert before + timedelta(days=7) <= expires_at
    assert expires_at <= datetime.now(UTC) + timedelta(days=7)


def test_key_issue_key_verifies(runner: CliRunner, service: KeyService) -> None:
    create_tenant(runner)
    document = run_json(runner, "key", "issue", "--tenant", "acme")

    principal = service.verify(document["api_key"])

    assert principal.tenant_id == "acme"
    assert principal.scopes == ("api",)


def test_key_issue_unknown_tenant_exits_1(runner: CliRunner) -> None:
    result = run(runner, "key", "issue", "--tenant", "nobody")

    assert_one_line_error(result, 1)
    assert "tenant nobody not found" in result.stderr


def test_key_issue_expiry_over_maximum_exits_1(runner: CliRunner) -> None:
    create_tenant(runner)

    result = run(runner, "key", "issue", "--tenant", "acme", "--expires-in-days", "366")

    assert_one_line_error(result, 1)
    assert "--expires-in-days must be between 1 and 365" in result.stderr


def test_key_issue_unknown_scope_exits_2(runner: CliRunner) -> None:
    result = run(runner, "key", "issue", "--tenant", "acme", "--scope", "root")

    assert result.exit_code == 2
    assert "Invalid value for '--scope': 'root' is not one of" in result.stderr


def test_key_issue_operator_scope(runner: CliRunner, service: KeyService) -> None:
    create_tenant(runner)

    document = run_json(
        runner, "key", "issue", "--tenant", "acme", "--scope", "credentials:read"
    )

    assert service.verify(document["api_key"]).scopes == ("credentials:read",)


# key list


def test_key_list_table(runner: CliRunner) -> None:
    create_tenant(runner)
    run(runner, "key", "issue", "--tenant", "acme", "--name", "deploy")

    result = run(runner, "key", "list", "--tenant", "acme")
    header, *rows = result.stdout.splitlines()

    assert result.exit_code == 0
    assert header.split() == [
        "ID",
        "PREFIX",
        "NAME",
        "SCOPES",
        "STATUS",
        "EXPIRES",
        "LAST",
        "USED",
    ]
    assert len(rows) == 2
    assert "initial admin key" in rows[0]
    assert "deploy" in rows[1]
    assert " active " in rows[1]


def test_key_list_json_fields(runner: CliRunner) -> None:
    create_tenant(runner)

    (entry,) = run_json(runner, "key", "list", "--tenant", "acme")["keys"]

    assert set(entry) == {
        "api_key_id",
        "tenant_id",
        "user_id",
        "key_prefix",
        "name",
        "scopes",
        "status",
        "expires_at",
        "created_at",
        "revoked_at",
        "rotated_from_key_id",
        "last_used_at",
    }


def test_key_list_never_prints_keys(runner: CliRunner) -> None:
    issued = create_tenant(runner)["admin_key"]["api_key"]
    secret_parts = (issued, apikeys.hash_api_key(issued), issued[-29:])

    for args in (("key", "list"), ("--json", "key", "list")):
        result = run(runner, *args, "--tenant", "acme")
        assert result.exit_code == 0
        for part in secret_parts:
            assert part not in result.stdout


def test_key_list_empty_tenant_id_exits_1(runner: CliRunner) -> None:
    result = run(runner, "key", "list", "--tenant", "")

    assert_one_line_error(result, 1)


def test_key_list_unknown_tenant_exits_1(runner: CliRunner) -> None:
    result = run(runner, "--json", "key", "list", "--tenant", "nobody")

    assert_one_line_error(result, 1)
    assert "convergence tenant create nobody" in result.stderr


def test_key_list_missing_tenant_exits_2(runner: CliRunner) -> None:
    result = run(runner, "key", "list")

    assert result.exit_code == 2
    assert "Missing option '--tenant'" in result.stderr


# key revoke


def test_key_revoke_human(runner: CliRunner, service: KeyService) -> None:
    admin = create_tenant(runner)["admin_key"]

    result = run(runner, "key", "revoke", "--tenant", "acme", admin["api_key_id"])

    assert result.exit_code == 0
    assert f"Revoked key {admin['api_key_id']}" in result.stdout
    with pytest.raises(AuthenticationError):
        service.verify(admin["api_key"])


def test_key_revoke_json(runner: CliRunner) -> None:
    admin = create_tenant(runner)["admin_key"]

    document = run_json(
        runner, "key", "revoke", "--tenant", "acme", admin["api_key_id"]
    )

    assert document["status"] == "revoked"
    assert document["revoked_at"] is not None
    assert "api_key" not in document


def test_key_revoke_twice_exits_1(runner: CliRunner) -> None:
    key_id = create_tenant(runner)["admin_key"]["api_key_id"]
    run(runner, "key", "revoke", "--tenant", "acme", key_id)

    result = run(runner, "key", "revoke", "--tenant", "acme", key_id)

    assert_one_line_error(result, 1)
    assert f"no active key {key_id} in tenant acme" in result.stderr


def test_key_revoke_other_tenant_exits_1(runner: CliRunner) -> None:
    key_id = create_tenant(runner, "acme")["admin_key"]["api_key_id"]
    create_tenant(runner, "globex")

    result = run(runner, "key", "revoke", "--tenant", "globex", key_id)

    assert_one_line_error(result, 1)
    (entry,) = run_json(runner, "key", "list", "--tenant", "acme")["keys"]
    assert entry["status"] == "active"


# key rotate


def test_key_rotate_human(runner: CliRunner, service: KeyService) -> None:
    admin = create_tenant(runner)["admin_key"]

    result = run(
        runner,
        "key",
        "rotate",
        "--tenant",
        "acme",
        admin["api_key_id"],
        "--grace-hours",
        "0",
    )
    (new_key,) = KEY_IN_TEXT.findall(result.stdout)

    assert result.exit_code == 0
    assert f"Rotated key {admin['api_key_id']}" in result.stdout
    assert WARNING in result.stdout
    assert service.verify(new_key).tenant_id == "acme"
    with pytest.raises(AuthenticationError):
        service.verify(admin["api_key"])


def test_key_rotate_json(runner: CliRunner, service: KeyService) -> None:
    admin = create_tenant(runner)["admin_key"]

    document = run_json(
        runner, "key", "rotate", "--tenant", "acme", admin["api_key_id"]
    )
    old_expires_at = datetime.fromisoformat(document["old_key"]["expires_at"])

    assert document["new_key"]["rotated_from_key_id"] == admin["api_key_id"]
    assert document["new_key"]["scopes"] == ["admin", "api"]
    assert "api_key" not in document["old_key"]
    assert old_expires_at <= datetime.now(UTC) + timedelta(hours=24)
    assert service.verify(admin["api_key"]).tenant_id == "acme"


def test_key_rotate_grace_over_maximum_exits_1(runner: CliRunner) -> None:
    key_id = create_tenant(runner)["admin_key"]["api_key_id"]

    result = run(
        runner, "key", "rotate", "--tenant", "acme", key_id, "--grace-hours", "169"
    )

    assert_one_line_error(result, 1)
    assert "--grace-hours must be between 0 and 168" in result.stderr


def test_key_rotate_unknown_key_exits_1(runner: CliRunner) -> None:
    create_tenant(runner)

    result = run(runner, "key", "rotate", "--tenant", "acme", "key_missing")

    assert_one_line_error(result, 1)
    assert "no active key key_missing in tenant acme" in result.stderr


# kms rotate


def key_version(ciphertext: bytes) -> int:
    # The local keyring prefixes each wrapped data key with its 4-byte version.
    return int.from_bytes(parse_ciphertext(ciphertext).wrapped_key[:4], "big")


def stored_record(service: KeyService, key_id: str) -> ApiKeyRecord:
    records = service.list_keys(Principal.operator(), tenant_id="acme")
    (record,) = [record for record in records if record.api_key_id == key_id]
    return record


def test_kms_rotate_keeps_old_keys_working(
    runner: CliRunner, service: KeyService
) -> None:
    old = create_tenant(runner)["admin_key"]

    result = run(runner, "kms", "rotate", "--key", "api")
    new = run_json(runner, "key", "issue", "--tenant", "acme")
    old_record = stored_record(service, old["api_key_id"])
    new_record = stored_record(service, new["api_key_id"])

    assert result.exit_code == 0
    assert "version 2 is primary" in result.stdout
    assert key_version(old_record.encrypted_api_key) == 1
    assert key_version(new_record.encrypted_api_key) == 2
    assert service.decrypt_key(old_record) == old["api_key"]
    assert service.decrypt_key(new_record) == new["api_key"]
    assert service.verify(old["api_key"]).tenant_id == "acme"


def test_kms_rotate_all_json(runner: CliRunner) -> None:
    create_tenant(runner)

    document = run_json(runner, "kms", "rotate")
    rotated = {entry["key"]: entry for entry in document["rotated"]}

    assert set(rotated) == {"api", "credentials"}
    assert rotated["api"]["primary"] == 2
    assert rotated["api"]["versions"] == [1, 2]
    assert rotated["credentials"]["versions"] == [1]
    assert rotated["api"]["key_name"].endswith("/cryptoKeys/api-key-encryption")


def test_kms_rotate_gcp_prints_gcloud_command(runner: CliRunner) -> None:
    result = run(runner, "kms", "rotate", "--key", "credentials", KMS_BACKEND="gcp")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert "rotation schedule" in result.stderr
    assert "gcloud kms keys versions create" in result.stderr
    assert "--key=credentials-encryption --primary" in result.stderr
    assert "api-key-encryption" not in result.stderr


# audit list and schema


def test_audit_list_human(runner: CliRunner) -> None:
    admin = create_tenant(runner)["admin_key"]

    result = run(runner, "audit", "list", "--tenant", "acme")
    header, *rows = result.stdout.splitlines()

    assert result.exit_code == 0
    assert header.split() == ["OCCURRED", "EVENT", "TYPE", "TENANT", "ACTOR", "DETAILS"]
    assert len(rows) == 2
    assert "api_key.created" in rows[0] or "api_key.created" in rows[1]
    assert admin["api_key_id"] in result.stdout
    assert admin["api_key"] not in result.stdout


def test_audit_list_json_filters(runner: CliRunner) -> None:
    create_tenant(runner, "acme")
    create_tenant(runner, "globex")

    events = run_json(
        runner, "audit", "list", "--tenant", "globex", "--type", "api_key.created"
    )["events"]

    assert len(events) == 1
    assert events[0]["tenant_id"] == "globex"
    assert events[0]["event_type"] == "api_key.created"
    assert events[0]["actor_id"] == "operator"


def test_audit_list_limit(runner: CliRunner) -> None:
    create_tenant(runner)

    events = run_json(runner, "audit", "list", "--limit", "1")["events"]

    assert len(events) == 1


def test_audit_list_empty(runner: CliRunner) -> None:
    result = run(runner, "audit", "list")

    assert result.exit_code == 0
    assert result.stdout == "No audit events match.\n"


def test_audit_list_invalid_type_exits_1(runner: CliRunner) -> None:
    result = run(runner, "audit", "list", "--type", "DROP TABLE")

    assert_one_line_error(result, 1)
    assert "--type must be a dotted lower-case event type" in result.stderr


def test_audit_schema_prints_json_schema(runner: CliRunner) -> None:
    result = run(runner, "audit", "schema")
    schema = json.loads(result.stdout)

    assert result.exit_code == 0
    assert schema["title"] == "AuditEvent"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


# Configuration and dependency errors


def test_invalid_kms_backend_exits_3(runner: CliRunner) -> None:
    result = run(runner, "key", "list", "--tenant", "acme", KMS_BACKEND="nope")

    assert_one_line_error(result, 3)
    assert "KMS_BACKEND" in result.stderr


def test_data_dir_on_a_file_exits_3(runner: CliRunner, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")

    result = run(runner, "key", "list", "--tenant", "acme", DATA_DIR=str(blocker))

    assert_one_line_error(result, 3)
    assert "check DATA_DIR" in result.stderr


@pytest.fixture
def locked_store(data_dir: Path) -> Iterator[None]:
    """Another process holding the DuckDB file, as a running function would."""
    data_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
            "print('locked', flush=True); sys.stdin.read()",
            str(data_dir / "tenants_metadata.duckdb"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "locked\n"
    yield
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=30)


def test_busy_store_exits_4(runner: CliRunner, locked_store: None) -> None:
    # DuckDBStore retries the lock for 15 s before giving up.
    result = run(runner, "key", "list", "--tenant", "acme")

    assert_one_line_error(result, 4)
    assert "is busy" in result.stderr


def test_console_script_exit_code(data_dir: Path) -> None:
    script = Path(sys.executable).parent / "convergence"

    result = subprocess.run(
        [str(script), "key", "list", "--tenant", "acme"],
        env={"DATA_DIR": str(data_dir), "KMS_BACKEND": "nope", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 3
    assert result.stderr.startswith("Error: invalid configuration: KMS_BACKEND")
