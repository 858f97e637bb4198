"""Backup runs against the storage emulator: repeats, damage, shards, claims."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from backup_helpers import (
    OPERATOR,
    all_objects,
    bucket_of,
    key_service,
    overwrite,
    populate,
    read_object,
    settings_env,
    store_path,
)
from click.testing import CliRunner, Result

from infra.provider_standins import OpenAIStandin
from shared.backup import (
    DamagedRunError,
    RunInProgressError,
    build_runner,
    list_runs,
    load_manifest,
    run_backup,
)
from shared.cli import cli
from shared.config import Settings, load_settings
from shared.events import DirectAuditSink
from shared.store import build_store

SLOT = date(2025, 3, 1)
RUN = "backup-20250301"
KEYS_FILE = "api-keys/backup-20250301.json"


def backup(settings: Settings, slot: date = SLOT) -> str:
    result, _ = run_backup(
        settings, slot, DirectAuditSink(build_store(settings)), actor_id="test"
    )
    return result.status


def cli_run(settings: Settings, *args: str) -> Result:
    return CliRunner(env=settings_env(settings)).invoke(cli, list(args))


def restore(settings: Settings) -> Result:
    store_path(settings).unlink(missing_ok=True)
    return cli_run(settings, "backup", "restore", RUN)


def events(settings: Settings, event_type: str) -> list[dict[str, object]]:
    found = build_store(settings).list_audit_events(None, event_type=event_type)
    return [event.details for event in found]


# Repeated triggers


def test_same_slot_twice_one_run(settings: Settings, openai: OpenAIStandin) -> None:
    populate(settings, openai)
    backup(settings)
    before = all_objects(bucket_of(settings))

    status = backup(settings)

    assert status == "already_complete"
    assert all_objects(bucket_of(settings)) == before
    assert len(events(settings, "backup.completed")) == 1


def test_same_slot_after_change_unchanged(
    settings: Settings, openai: OpenAIStandin
) -> None:
    populate(settings, openai)
    backup(settings)
    before = read_object(bucket_of(settings), KEYS_FILE)
    key_service(settings).issue_key(OPERATOR, tenant_id="acme", name="later")

    backup(settings)

    assert read_object(bucket_of(settings), KEYS_FILE) == before


def test_retrigger_damaged_run_fails(settings: Settings, openai: OpenAIStandin) -> None:
    populate(settings, openai)
    backup(settings)
    overwrite(bucket_of(settings), KEYS_FILE, b"{}\n")

    with pytest.raises(DamagedRunError, match=KEYS_FILE):
        backup(settings)
    failed = events(settings, "backup.failed")
    assert [event["run"] for event in failed] == [RUN]


# Damaged runs


def test_restore_corrupted_file_names_it(
    settings: Settings, openai: OpenAIStandin
) -> None:
    populate(settings, openai)
    backup(settings)
    bucket = bucket_of(settings)
    content = bytearray(read_object(bucket, KEYS_FILE))
    content[40] ^= 0x01
    overwrite(bucket, KEYS_FILE, bytes(content))

    result = restore(settings)

    assert result.exit_code == 1
    assert KEYS_FILE in result.stderr
    assert "corrupted" in result.stderr
    assert not store_path(settings).exists()


def test_restore_truncated_file_names_it(
    settings: Settings, openai: OpenAIStandin
) -> None:
    populate(settings, openai)
    backup(settings)
    bucket = bucket_of(settings)
    overwrite(bucket, KEYS_FILE, read_object(bucket, KEYS_FILE)[:-100])

    result = restore(settings)

    assert result.exit_code == 1
    assert f"{KEYS_FILE} is " in result.stderr
    assert "truncated" in result.stderr
    assert not store_path(settings).exists()


def test_restore_missing_manifest(settings: Settings, openai: OpenAIStandin) -> None:
    populate(settings, openai)
    backup(settings)
    bucket_of(settings).delete(f"manifests/{RUN}.json")

    result = restore(settings)

    assert result.exit_code == 1
    assert f"manifests/{RUN}.json not found" in result.stderr
    assert not store_path(settings).exists()


def test_list_missing_manifest_incomplete(
    settings: Settings, openai: OpenAIStandin
) -> None:
    populate(settings, openai)
    backup(settings)
    bucket = bucket_of(settings)
    bucket.delete(f"manifests/{RUN}.json")
    claim = f"claims/{RUN}.json"
    expired = json.dumps({"expires_at": "2025-03-01T03:15:00+00:00"}).encode()
    overwrite(bucket, claim, expired)

    runs = list_runs(bucket, datetime.now(UTC))

    assert [(run.run, run.status) for run in runs] == [(RUN, "incomplete")]


def test_restore_non_empty_target_refused(
    settings: Settings, openai: OpenAIStandin
) -> None:
    populate(settings, openai)
    backup(settings)

    result = cli_run(settings, "backup", "restore", RUN)

    assert result.exit_code == 1
    assert "is not empty" in result.stderr
    assert "--allow-non-empty" in result.stderr


def test_restore_allow_non_empty_keeps_rows(
    settings: Settings, openai: OpenAIStandin
) -> None:
    populate(settings, openai)
    backup(settings)
    before = len(build_store(settings).list_api_keys("acme"))

    result = cli_run(settings, "backup", "restore", RUN, "--allow-non-empty")

    assert result.exit_code == 0, result.stderr
    assert len(build_store(settings).list_api_keys("acme")) == before


def test_restore_dry_run_writes_nothing(
    settings: Settings, openai: OpenAIStandin
) -> None:
    populate(settings, openai)
    backup(settings)
    store_path(settings).unlink()

    result = cli_run(settings, "backup", "restore", RUN, "--dry-run")

    assert result.exit_code == 0, result.stderr
    assert "API keys: 8 of 8 decrypt and match their hash." in result.stdout
    assert not store_path(settings).exists()


def test_restore_into_target_data_dir(
    settings: Settings, openai: OpenAIStandin
) -> None:
    populate(settings, openai)
    backup(settings)
    target = settings.data_dir.parent / "restored"

    result = cli_run(
        settings, "backup", "restore", "2025-03-01", "--target-data-dir", str(target)
    )

    assert result.exit_code == 0, result.stderr
    restored = build_store(load_settings(data_dir=target))
    assert len(restored.list_credentials("globex")) == 2


# Shards


def test_small_shards_named_like_extract(
    settings: Settings, openai: OpenAIStandin
) -> None:
    sharded = settings.model_copy(update={"backup_shard_max_bytes": 1024})
    populate(sharded, openai)
    backup(sharded)

    manifest = load_manifest(bucket_of(sharded), RUN)

    assert manifest is not None
    keys = manifest.table("tenant_api_keys")
    assert keys is not None
    assert [file.name for file in keys.files] == [
        f"api-keys/{RUN}-{index:012d}.json" for index in range(8)
    ]
    assert sum(file.rows or 0 for file in keys.files) == 8


def test_restore_missing_shard_names_it(
    settings: Settings, openai: OpenAIStandin
) -> None:
    sharded = settings.model_copy(update={"backup_shard_max_bytes": 1024})
    populate(sharded, openai)
    backup(sharded)
    missing = f"api-keys/{RUN}-000000000003.json"
    bucket_of(sharded).delete(missing)

    result = restore(sharded)

    assert result.exit_code == 1
    assert f"{missing} is missing" in result.stderr
    assert not store_path(sharded).exists()


def test_list_missing_shard_damaged(settings: Settings, openai: OpenAIStandin) -> None:
    sharded = settings.model_copy(update={"backup_shard_max_bytes": 1024})
    populate(sharded, openai)
    backup(sharded)
    bucket = bucket_of(sharded)
    bucket.delete(f"api-keys/{RUN}-000000000003.json")

    result = cli_run(sharded, "--json", "backup", "list")

    assert result.exit_code == 0, result.stderr
    (run,) = json.loads(result.stdout)["runs"]
    assert run["status"] == "damaged"
    assert run["problems"] == [f"api-keys/{RUN}-000000000003.json is missing"]


# Claims


def write_claim(settings: Settings, expires_at: datetime) -> None:
    body = json.dumps({"run": RUN, "expires_at": expires_at.isoformat()}).encode()
    bucket_of(settings).write_once(f"claims/{RUN}.json", io.BytesIO(body), len(body))


def test_claimed_run_asks_for_retry(settings: Settings, openai: OpenAIStandin) -> None:
    populate(settings, openai)
    write_claim(settings, datetime.now(UTC) + timedelta(minutes=10))

    with pytest.raises(RunInProgressError):
        build_runner(settings).run(SLOT)
    assert load_manifest(bucket_of(settings), RUN) is None


def test_stale_claim_taken_over(settings: Settings, openai: OpenAIStandin) -> None:
    populate(settings, openai)
    write_claim(settings, datetime.now(UTC) - timedelta(minutes=1))
    stray = f"api-keys/{RUN}-000000000004.json"
    bucket_of(settings).write_once(stray, io.BytesIO(b"{}\n"), 3)

    result = build_runner(settings).run(SLOT)

    assert result.status == "completed"
    assert stray not in all_objects(bucket_of(settings))


def test_unfinished_attempt_file_replaced(
    settings: Settings, openai: OpenAIStandin
) -> None:
    populate(settings, openai)
    write_claim(settings, datetime.now(UTC) - timedelta(minutes=1))
    bucket_of(settings).write_once(KEYS_FILE, io.BytesIO(b"{}\n"), 3)

    result = build_runner(settings).run(SLOT)

    keys = result.manifest.table("tenant_api_keys")
    assert keys is not None
    assert keys.files[0].bytes == len(read_object(bucket_of(settings), KEYS_FILE))
    assert cli_run(settings, "backup", "restore", RUN, "--dry-run").exit_code == 0
