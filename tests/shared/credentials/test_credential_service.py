"""CredentialService: storing, listing, deleting, reading back, and its audit trail."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import credential_samples as samples
import pytest
from credential_helpers import (
    ADMIN,
    KEY_PATH,
    OTHER_ADMIN,
    OTHER_READER,
    READER,
    Clock,
    FaultyProvider,
)

from infra.provider_standins import ProviderStandins
from shared.credentials import (
    CheckIndeterminateError,
    CredentialInputError,
    CredentialRejectedError,
    CredentialService,
    DuplicateCredentialError,
    Fingerprinter,
    Status,
    Submission,
)
from shared.credentials.validation import normalise
from shared.crypto import LocalKeyring
from shared.crypto.managers import CredentialsManager
from shared.keyservice import NotFoundError
from shared.store._duckdb import DuckDBStore


def _events(store: DuckDBStore, event_type: str) -> list[dict[str, Any]]:
    return [
        event.details
        for event in store.list_audit_events("acme", event_type=event_type)
    ]


def _aws(standins: ProviderStandins) -> Submission:
    return Submission("aws", standins.aws.create_access_key(), name="pipelines")


# Store


def test_store_valid_credential(
    service: CredentialService, standins: ProviderStandins, store: DuckDBStore
) -> None:
    record, outcome = service.store(ADMIN, _aws(standins))

    assert outcome.result.status is Status.VALID
    assert store.get_credential("acme", record.credential_id) == record
    assert record.validation_status == "valid"
    assert record.name == "pipelines"
    assert record.details["account_id"] == "123456789012"
    assert record.kms_key_name == KEY_PATH


def test_store_opens_with_credentials_manager(
    service: CredentialService, standins: ProviderStandins, keyring: LocalKeyring
) -> None:
    keys = standins.aws.create_access_key()
    record, _ = service.store(ADMIN, Submission("aws", keys))
    manager = CredentialsManager("p", "l", "r", "credentials-encryption", kms=keyring)

    opened = manager.decrypt_credentials(
        record.encrypted_credentials,
        tenant_id="acme",
        provider="aws",
        credential_id=record.credential_id,
    )

    assert opened == keys


def test_store_canonical_not_as_pasted(
    service: CredentialService, standins: ProviderStandins
) -> None:
    key_file = standins.google.create_key()
    pasted = dict(key_file, private_key=key_file["private_key"].replace("\n", "\\n"))
    record, _ = service.store(ADMIN, Submission("gcp", "\ufeff" + json.dumps(pasted)))

    _, fields = service.read(READER, record.credential_id)

    assert fields["private_key"] == key_file["private_key"]
    assert "auth_uri" not in fields


def test_store_rejected_credential_not_stored(
    service: CredentialService, standins: ProviderStandins, store: DuckDBStore
) -> None:
    keys = standins.aws.create_access_key()
    keys["aws_secret_access_key"] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLE+1"

    with pytest.raises(CredentialRejectedError) as caught:
        service.store(ADMIN, Submission("aws", keys))

    assert caught.value.validation.result.reason == "wrong_secret"
    assert store.list_credentials("acme") == []


def test_store_malformed_audited(
    service: CredentialService, store: DuckDBStore
) -> None:
    raw = samples.aws()
    raw["aws_access_key_id"] = "AKIA1"

    with pytest.raises(CredentialInputError):
        service.store(ADMIN, Submission("aws", raw))

    assert _events(store, "credentials.validation_failed") == [
        {
            "provider": "aws",
            "status": "rejected_input",
            "reason": "input_invalid",
            "field": "credentials.aws_access_key_id",
        }
    ]


def test_store_indeterminate_refused_by_default(
    make_service: Any, faulty: FaultyProvider, store: DuckDBStore
) -> None:
    service = make_service(endpoints=faulty.endpoints())

    with pytest.raises(CheckIndeterminateError):
        service.store(ADMIN, Submission("openai", samples.openai()))

    assert store.list_credentials("acme") == []


def test_store_indeterminate_when_asked(
    make_service: Any, faulty: FaultyProvider
) -> None:
    service = make_service(endpoints=faulty.endpoints())

    record, _ = service.store(
        ADMIN, Submission("openai", samples.openai()), store_if_indeterminate=True
    )

    assert record.validation_status == "indeterminate"


def test_store_duplicate_refused(
    service: CredentialService, standins: ProviderStandins
) -> None:
    keys = standins.aws.create_access_key()
    first, _ = service.store(ADMIN, Submission("aws", keys))
    pasted_again = {**keys, "aws_access_key_id": keys["aws_access_key_id"].lower()}

    with pytest.raises(DuplicateCredentialError) as caught:
        service.store(ADMIN, Submission("aws", pasted_again))

    assert caught.value.existing.credential_id == first.credential_id


def test_store_after_delete_allowed(
    service: CredentialService, standins: ProviderStandins
) -> None:
    submission = _aws(standins)
    first, _ = service.store(ADMIN, submission)
    service.delete(ADMIN, first.credential_id)

    second, _ = service.store(ADMIN, submission)

    assert second.credential_id != first.credential_id


def test_store_same_credential_other_tenant(
    service: CredentialService, standins: ProviderStandins
) -> None:
    submission = _aws(standins)
    mine, _ = service.store(ADMIN, submission)

    theirs, _ = service.store(OTHER_ADMIN, submission)

    assert theirs.fingerprint != mine.fingerprint


def test_store_needs_admin_scope(
    service: CredentialService, standins: ProviderStandins
) -> None:
    with pytest.raises(PermissionError):
        service.store(READER, _aws(standins))


def test_store_name_checked(service: CredentialService) -> None:
    with pytest.raises(CredentialInputError) as caught:
        service.store(ADMIN, Submission("aws", samples.aws(), name="x" * 201))

    assert caught.value.field == "name"


def test_validate_stores_nothing(
    service: CredentialService, standins: ProviderStandins, store: DuckDBStore
) -> None:
    outcome = service.validate(
        ADMIN, Submission("azure", standins.azure.create_application())
    )

    assert outcome.result.status is Status.VALID
    assert store.list_credentials("acme") == []


# Fingerprints


def test_fingerprint_is_keyed() -> None:
    credential = normalise(
        "aws", samples.aws(), endpoints=samples.ENDPOINTS, now=Clock().now
    )

    first = Fingerprinter(b"a" * 32).fingerprint("acme", credential)
    second = Fingerprinter(b"b" * 32).fingerprint("acme", credential)

    assert first != second


def test_fingerprint_short_key_rejected() -> None:
    with pytest.raises(ValueError):
        Fingerprinter(b"short")


# List, get, delete, restore


def test_list_shows_tenant_rows_only(
    service: CredentialService, standins: ProviderStandins
) -> None:
    mine, _ = service.store(ADMIN, _aws(standins))
    service.store(OTHER_ADMIN, _aws(standins))

    listed = service.list(ADMIN)

    assert [record.credential_id for record in listed] == [mine.credential_id]


def test_get_other_tenant_not_found(
    service: CredentialService, standins: ProviderStandins
) -> None:
    record, _ = service.store(ADMIN, _aws(standins))

    with pytest.raises(NotFoundError):
        service.get(OTHER_ADMIN, record.credential_id)


def test_delete_other_tenant_not_found(
    service: CredentialService, standins: ProviderStandins, store: DuckDBStore
) -> None:
    record, _ = service.store(ADMIN, _aws(standins))

    with pytest.raises(NotFoundError):
        service.delete(OTHER_ADMIN, record.credential_id)

    assert store.get_credential("acme", record.credential_id) == record


def test_delete_then_restore(
    service: CredentialService, standins: ProviderStandins, clock: Clock
) -> None:
    record, _ = service.store(ADMIN, _aws(standins))

    deleted = service.delete(ADMIN, record.credential_id)
    restored = service.restore(ADMIN, record.credential_id)

    assert deleted.status(clock.now) == "deleted"
    assert deleted.erase_after == clock.now + timedelta(days=7)
    assert restored.status(clock.now) == "active"
    assert restored.erase_after is None


def test_delete_twice_not_found(
    service: CredentialService, standins: ProviderStandins
) -> None:
    record, _ = service.store(ADMIN, _aws(standins))
    service.delete(ADMIN, record.credential_id)

    with pytest.raises(NotFoundError):
        service.delete(ADMIN, record.credential_id)


def test_erased_after_window(
    service: CredentialService,
    standins: ProviderStandins,
    clock: Clock,
    store: DuckDBStore,
) -> None:
    record, _ = service.store(ADMIN, _aws(standins))
    service.delete(ADMIN, record.credential_id)
    clock.now += timedelta(days=7)

    listed = service.list(ADMIN)

    assert listed == []
    assert _events(store, "credentials.erased") == [
        {"credential_id": record.credential_id}
    ]


def test_restore_after_window_not_found(
    service: CredentialService, standins: ProviderStandins, clock: Clock
) -> None:
    record, _ = service.store(ADMIN, _aws(standins))
    service.delete(ADMIN, record.credential_id)
    clock.now += timedelta(days=8)

    with pytest.raises(NotFoundError):
        service.restore(ADMIN, record.credential_id)


def test_zero_window_erases_at_once(
    make_service: Any, standins: ProviderStandins, store: DuckDBStore
) -> None:
    service = make_service(recovery_window=timedelta(0))
    record, _ = service.store(ADMIN, _aws(standins))

    service.delete(ADMIN, record.credential_id)

    assert store.get_credential("acme", record.credential_id) is None


# Reading back


def test_read_returns_canonical_fields(
    service: CredentialService, standins: ProviderStandins
) -> None:
    principal = standins.azure.create_application()
    record, _ = service.store(ADMIN, Submission("azure", principal))

    _, fields = service.read(READER, record.credential_id)

    assert fields == {**principal, "cloud": "public"}


def test_read_audited(
    service: CredentialService, standins: ProviderStandins, store: DuckDBStore
) -> None:
    record, _ = service.store(ADMIN, _aws(standins))

    service.read(READER, record.credential_id)

    events = store.list_audit_events("acme", event_type="credentials.accessed")
    assert [event.actor_id for event in events] == [READER.actor_id]
    assert events[0].details["credential_id"] == record.credential_id


def test_read_needs_read_scope(
    service: CredentialService, standins: ProviderStandins
) -> None:
    record, _ = service.store(ADMIN, _aws(standins))

    with pytest.raises(PermissionError):
        service.read(ADMIN, record.credential_id)


def test_read_other_tenant_not_found(
    service: CredentialService, standins: ProviderStandins
) -> None:
    record, _ = service.store(ADMIN, _aws(standins))

    with pytest.raises(NotFoundError):
        service.read(OTHER_READER, record.credential_id)


def test_read_deleted_not_found(
    service: CredentialService, standins: ProviderStandins
) -> None:
    record, _ = service.store(ADMIN, _aws(standins))
    service.delete(ADMIN, record.credential_id)

    with pytest.raises(NotFoundError):
        service.read(READER, record.credential_id)


# Audit trail


def test_audit_trail_of_one_credential(
    service: CredentialService, standins: ProviderStandins, store: DuckDBStore
) -> None:
    record, _ = service.store(ADMIN, _aws(standins))
    service.read(READER, record.credential_id)
    service.delete(ADMIN, record.credential_id)
    service.restore(ADMIN, record.credential_id)

    types = [event.event_type for event in store.list_audit_events("acme")]

    assert sorted(types) == [
        "credentials.accessed",
        "credentials.deleted",
        "credentials.restored",
        "credentials.stored",
        "credentials.validated",
    ]


def test_audit_invalid_reason_recorded(
    service: CredentialService, standins: ProviderStandins, store: DuckDBStore
) -> None:
    principal = standins.azure.create_application()
    principal["client_secret"] = "Xy78Q~wrongwrongwrongwrongwrongwrong.abc"

    with pytest.raises(CredentialRejectedError):
        service.store(ADMIN, Submission("azure", principal))

    details = _events(store, "credentials.validation_failed")
    assert [event["reason"] for event in details] == ["wrong_secret"]
