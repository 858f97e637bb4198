"""AuditedKms: each KMS failure becomes a kms.operation_failed audit event.

The failures come from the fake Cloud KMS behind the real client, and the
events go to a DuckDB store, where the alert rule reads them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fake_cloud_kms import FakeKmsTransport

from shared.alerts import RuleSettings, evaluate
from shared.config import load_settings
from shared.crypto import (
    KMS_FAILURE_EVENT,
    AuditedKms,
    CloudKms,
    DecryptionError,
    EnvelopeCipher,
    KmsKeyDisabledError,
    KmsPermissionError,
    LocalKeyring,
    RecordContext,
    build_kms,
)
from shared.events import AuditEvent, DirectAuditSink
from shared.store._duckdb import DuckDBStore

AAD = b"convergence.dek.v1\x1facme"
SECRET = b"0123456789abcdef0123456789abcdef"
CONTEXT = RecordContext("acme", "api_key", "key_1")


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    return DuckDBStore(tmp_path / "tenants.duckdb")


@pytest.fixture
def audited(cloud_kms: CloudKms, store: DuckDBStore) -> AuditedKms:
    return AuditedKms(cloud_kms, DirectAuditSink(store), actor_id="issue_key")


def failures(store: DuckDBStore) -> list[AuditEvent]:
    return store.list_audit_events(None, event_type=KMS_FAILURE_EVENT)


def test_failure_audited_and_raised(
    audited: AuditedKms, fake_kms: FakeKmsTransport, key_name: str, store: DuckDBStore
) -> None:
    fake_kms.denied.add(key_name)

    with pytest.raises(KmsPermissionError):
        audited.encrypt(key_name, SECRET, AAD)
    (event,) = failures(store)

    assert event.details == {
        "operation": "encrypt",
        "key_name": key_name,
        "kind": "permission_denied",
    }
    assert event.actor_id == "issue_key"
    assert event.tenant_id is None


def test_decrypt_failure_audited(
    audited: AuditedKms, fake_kms: FakeKmsTransport, key_name: str, store: DuckDBStore
) -> None:
    wrapped = audited.encrypt(key_name, SECRET, AAD)
    fake_kms.disabled.add(key_name)

    with pytest.raises(KmsKeyDisabledError):
        audited.decrypt(key_name, wrapped, AAD)

    assert [event.details["kind"] for event in failures(store)] == ["key_disabled"]


def test_success_not_audited(
    audited: AuditedKms, key_name: str, store: DuckDBStore
) -> None:
    wrapped = audited.encrypt(key_name, SECRET, AAD)

    assert audited.decrypt(key_name, wrapped, AAD) == SECRET
    assert failures(store) == []


def test_bad_ciphertext_not_audited(
    tmp_path: Path, key_name: str, store: DuckDBStore
) -> None:
    # A ciphertext that does not open is not a KMS failure.
    kms = AuditedKms(LocalKeyring(tmp_path / "keyring.json"), DirectAuditSink(store))
    wrapped = bytearray(kms.encrypt(key_name, SECRET, AAD))
    wrapped[-1] ^= 1

    with pytest.raises(DecryptionError):
        kms.decrypt(key_name, bytes(wrapped), AAD)
    assert failures(store) == []


def test_audit_failure_keeps_kms_error(
    cloud_kms: CloudKms,
    fake_kms: FakeKmsTransport,
    key_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A folder where the DuckDB file should be: every audit write fails.
    kms = AuditedKms(cloud_kms, DirectAuditSink(DuckDBStore(tmp_path)))
    fake_kms.denied.add(key_name)

    with pytest.raises(KmsPermissionError):
        kms.encrypt(key_name, SECRET, AAD)
    assert "auditing a KMS failure failed" in caplog.text


def test_details_carry_no_data(
    audited: AuditedKms, fake_kms: FakeKmsTransport, key_name: str, store: DuckDBStore
) -> None:
    fake_kms.denied.add(key_name)
    with pytest.raises(KmsPermissionError):
        EnvelopeCipher(audited, key_name).encrypt(SECRET, CONTEXT)

    (event,) = failures(store)

    assert SECRET.decode() not in event.model_dump_json()


def test_failures_feed_kms_rule(
    audited: AuditedKms, fake_kms: FakeKmsTransport, key_name: str, store: DuckDBStore
) -> None:
    fake_kms.denied.add(key_name)
    for _ in range(11):
        with pytest.raises(KmsPermissionError):
            audited.encrypt(key_name, SECRET, AAD)
    now = datetime.now(UTC) + timedelta(seconds=1)

    rules = [alert.rule for alert in evaluate(store, RuleSettings(), now)]

    assert rules == ["kms.operation_failed.burst"]


def test_build_kms_wraps_with_audit(tmp_path: Path, store: DuckDBStore) -> None:
    settings = load_settings(data_dir=tmp_path)

    plain = build_kms(settings)
    audited = build_kms(settings, audit=DirectAuditSink(store))

    assert isinstance(plain, LocalKeyring)
    assert isinstance(audited, AuditedKms)
    assert isinstance(audited.inner, LocalKeyring)
