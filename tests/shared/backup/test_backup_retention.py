"""Retention: expired runs are deleted, the newest run the keys can open is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backup_helpers import OPERATOR, bucket_of, key_service, populate

from infra.provider_standins import OpenAIStandin
from shared.backup import apply_retention, build_runner, key_check, list_runs
from shared.config import Settings
from shared.crypto import LocalKeyring

NOW = datetime(2025, 6, 30, 3, 0, tzinfo=UTC)
OLD = (NOW - timedelta(days=40)).date()
OLDER_KEPT = (NOW - timedelta(days=35)).date()
YOUNG = (NOW - timedelta(days=1)).date()


def run_names(settings: Settings) -> list[str]:
    return [run.run for run in list_runs(bucket_of(settings), NOW)]


def test_expired_runs_deleted(settings: Settings, openai: OpenAIStandin) -> None:
    populate(settings, openai, keys_per_tenant=1)
    runner = build_runner(settings)
    for slot in (OLD, OLDER_KEPT, YOUNG):
        runner.run(slot)

    result = apply_retention(bucket_of(settings), NOW, 30, key_check(settings))

    assert result.deleted == ("backup-20250526", "backup-20250521")
    assert run_names(settings) == ["backup-20250629"]


def test_run_needed_for_key_versions_kept(
    settings: Settings, openai: OpenAIStandin
) -> None:
    populate(settings, openai, keys_per_tenant=1)
    runner = build_runner(settings)
    runner.run(OLD)
    runner.run(OLDER_KEPT)
    keyring_file = settings.data_dir / "keyring.json"
    keyring_before_rotation = keyring_file.read_bytes()
    LocalKeyring(keyring_file).rotate(settings.api_key_kms_path)
    key_service(settings).issue_key(OPERATOR, tenant_id="acme", name="after rotation")
    young = runner.run(YOUNG)
    # The keyring is put back from a copy that predates the rotation, so the
    # young run needs a key version the keyring no longer has.
    keyring_file.write_bytes(keyring_before_rotation)

    result = apply_retention(bucket_of(settings), NOW, 30, key_check(settings))

    versions = {key.key_name: key.versions for key in young.manifest.kms_keys}
    assert versions[settings.api_key_kms_path] == (1, 2)
    assert result.deleted == ("backup-20250521",)
    assert result.kept_for_keys == "backup-20250526"
    assert run_names(settings) == ["backup-20250629", "backup-20250526"]


def test_no_openable_run_deletes_nothing(
    settings: Settings, openai: OpenAIStandin
) -> None:
    populate(settings, openai, keys_per_tenant=1)
    runner = build_runner(settings)
    runner.run(OLD)

    result = apply_retention(bucket_of(settings), NOW, 30, lambda entry: False)

    assert result.deleted == ()
    assert run_names(settings) == ["backup-20250521"]


def test_incomplete_expired_run_deleted(
    settings: Settings, openai: OpenAIStandin
) -> None:
    populate(settings, openai, keys_per_tenant=1)
    runner = build_runner(settings)
    runner.run(OLD)
    runner.run(YOUNG)
    bucket_of(settings).delete("manifests/backup-20250521.json")

    result = apply_retention(bucket_of(settings), NOW, 30, key_check(settings))

    assert result.deleted == ("backup-20250521",)
    assert run_names(settings) == ["backup-20250629"]
