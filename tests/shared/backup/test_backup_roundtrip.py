"""Back up a populated store, lose it, restore it, and use the restored data."""

from __future__ import annotations

import json
import logging
import re
from datetime import date

import pytest
from backup_helpers import (
    TENANTS,
    all_objects,
    bucket_of,
    credential_service,
    key_service,
    populate,
    read_object,
    settings_env,
    store_path,
)
from click.testing import CliRunner

from infra.provider_standins import OpenAIStandin
from shared.backup import load_manifest, run_backup
from shared.cli import cli
from shared.config import Settings
from shared.events import DirectAuditSink
from shared.keyservice import Principal
from shared.store import build_store

SLOT = date(2025, 3, 1)
RUN = "backup-20250301"


def backup(settings: Settings) -> None:
    run_backup(settings, SLOT, DirectAuditSink(build_store(settings)), actor_id="test")


def restore(settings: Settings, *args: str) -> tuple[int, str, str]:
    runner = CliRunner(env=settings_env(settings))
    result = runner.invoke(cli, ["backup", "restore", RUN, *args])
    return result.exit_code, result.stdout, result.stderr


def test_restore_keys_authenticate(settings: Settings, openai: OpenAIStandin) -> None:
    populated = populate(settings, openai)
    backup(settings)
    store_path(settings).unlink()

    code, _, stderr = restore(settings)

    assert code == 0, stderr
    service = key_service(settings)
    for api_key in populated.api_keys:
        principal = service.verify(api_key)
        assert principal.tenant_id in TENANTS


def test_restore_credentials_decrypt(settings: Settings, openai: OpenAIStandin) -> None:
    populated = populate(settings, openai)
    backup(settings)
    store_path(settings).unlink()

    code, _, stderr = restore(settings)

    assert code == 0, stderr
    credentials = credential_service(settings, openai)
    for record, secret in zip(populated.credentials, populated.secrets, strict=True):
        reader = Principal("reader", record.tenant_id, None, ("credentials:read",))
        _, fields = credentials.read(reader, record.credential_id)
        assert fields["api_key"] == secret


def test_restore_brings_back_every_table(
    settings: Settings, openai: OpenAIStandin
) -> None:
    populate(settings, openai)
    store = build_store(settings)
    events_before = store.list_audit_events(None, limit=1000)
    backup(settings)
    store_path(settings).unlink()

    code, stdout, stderr = restore(settings)

    assert code == 0, stderr
    restored = build_store(settings)
    assert restored.get_tenant("acme") is not None
    assert len(restored.list_api_keys("globex")) == 4
    assert len(restored.list_credentials("acme")) == 2
    events = restored.list_audit_events(None, limit=1000)
    ids = {event.event_id for event in events}
    assert {event.event_id for event in events_before} <= ids
    assert "API keys: 8 of 8 decrypt and match their hash." in stdout


def test_restore_output_json(settings: Settings, openai: OpenAIStandin) -> None:
    populate(settings, openai)
    backup(settings)
    store_path(settings).unlink()
    runner = CliRunner(env=settings_env(settings))

    result = runner.invoke(cli, ["--json", "backup", "restore", RUN])

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["api_keys_checked"] == 8
    assert document["api_keys_failed"] == []
    assert document["credentials_checked"] == 4
    assert document["rows"]["tenant_api_keys"] == 8


def test_backup_has_no_secret(settings: Settings, openai: OpenAIStandin) -> None:
    populated = populate(settings, openai)
    backup(settings)
    bucket = bucket_of(settings)

    contents = b"".join(read_object(bucket, name) for name in all_objects(bucket))

    for secret in [*populated.api_keys, *populated.secrets]:
        assert secret.encode() not in contents
    assert re.search(rb"[a-z]+_api_[0-9A-Za-z]{29}", contents) is None


def test_manifest_lists_key_versions(settings: Settings, openai: OpenAIStandin) -> None:
    populate(settings, openai)
    backup(settings)

    manifest = load_manifest(bucket_of(settings), RUN)

    assert manifest is not None
    versions = {key.key_name: key.versions for key in manifest.kms_keys}
    assert versions == {
        settings.api_key_kms_path: (1,),
        settings.credentials_kms_path: (1,),
    }


def test_logs_have_no_secret(
    settings: Settings, openai: OpenAIStandin, caplog: pytest.LogCaptureFixture
) -> None:
    populated = populate(settings, openai)
    caplog.set_level(logging.DEBUG)
    backup(settings)
    store_path(settings).unlink()

    code, stdout, stderr = restore(settings)

    assert code == 0, stderr
    logged = caplog.text + stdout + stderr
    assert "backup-20250301" in logged
    for secret in [*populated.api_keys, *populated.secrets]:
        assert secret not in logged
