"""Live checks against the provider stand-ins and a provider that misbehaves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import credential_samples as samples
import pytest
from credential_helpers import FaultyProvider

from infra.provider_standins import LoopbackServer, ProviderStandins, Reply
from shared.credentials import (
    CheckResult,
    CredentialInputError,
    ProviderEndpoints,
    Status,
)
from shared.credentials.validation import check, normalise
from shared.crypto import LocalKeyring
from shared.crypto.managers import CredentialsManager


def _check(
    provider: str, raw: dict[str, Any], endpoints: ProviderEndpoints
) -> CheckResult:
    now = datetime.now(UTC)
    credential = normalise(provider, raw, endpoints=endpoints, now=now)
    return check(credential, endpoints, now=now)


# Google


def test_gcp_key_valid(
    standins: ProviderStandins, endpoints: ProviderEndpoints
) -> None:
    key_file = standins.google.create_key()

    result = _check("gcp", key_file, endpoints)

    assert result.status is Status.VALID
    assert result.details == {"client_email": key_file["client_email"]}


def test_gcp_deleted_key_invalid(
    standins: ProviderStandins, endpoints: ProviderEndpoints
) -> None:
    key_file = standins.google.create_key()
    standins.google.delete_key(key_file["client_email"], key_file["private_key_id"])

    result = _check("gcp", key_file, endpoints)

    assert result.status is Status.INVALID
    assert result.reason == "key_not_active"


def test_gcp_key_of_other_account_invalid(
    standins: ProviderStandins, endpoints: ProviderEndpoints
) -> None:
    key_file = standins.google.create_key()
    other = standins.google.create_key()
    # Same account and key id, but a private key the stand-in never issued.
    key_file["private_key"] = other["private_key"]

    result = _check("gcp", key_file, endpoints)

    assert result.status is Status.INVALID
    assert result.reason == "key_not_active"


def test_gcp_deleted_account_invalid(
    standins: ProviderStandins, endpoints: ProviderEndpoints
) -> None:
    key_file = standins.google.create_key()
    standins.google.delete_account(key_file["client_email"])

    result = _check("gcp", key_file, endpoints)

    assert result.status is Status.INVALID
    assert result.reason == "unknown_account"


def test_gcp_token_uri_off_list_sends_nothing(
    standins: ProviderStandins, endpoints: ProviderEndpoints
) -> None:
    recorder = LoopbackServer(lambda *request: Reply(200, {"access_token": "x"}))
    key_file = standins.google.create_key()
    key_file["token_uri"] = f"{recorder.url}/token"

    try:
        with pytest.raises(CredentialInputError):
            _check("gcp", key_file, endpoints)
    finally:
        recorder.stop()

    assert recorder.requests == 0


# AWS


def test_aws_iam_key_valid(
    standins: ProviderStandins, endpoints: ProviderEndpoints
) -> None:
    keys = standins.aws.create_access_key()

    result = _check("aws", keys, endpoints)

    assert result.status is Status.VALID
    assert result.details["account_id"] == "123456789012"
    assert result.details["arn"].startswith("arn:aws:iam::123456789012:user/")


def test_aws_unknown_key_invalid(endpoints: ProviderEndpoints) -> None:
    keys = {
        "aws_access_key_id": "AKIAZ7UNKNOWN0KEY000",
        "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLE+1",
    }

    result = _check("aws", keys, endpoints)

    assert result.status is Status.INVALID
    assert result.reason == "unknown_key"


def test_aws_wrong_secret_invalid(
    standins: ProviderStandins, endpoints: ProviderEndpoints
) -> None:
    keys = standins.aws.create_access_key()
    keys["aws_secret_access_key"] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLE+1"

    result = _check("aws", keys, endpoints)

    assert result.status is Status.INVALID
    assert result.reason == "wrong_secret"


def test_aws_temporary_key_valid(
    standins: ProviderStandins, endpoints: ProviderEndpoints
) -> None:
    keys = standins.aws.create_temporary_credentials()

    result = _check("aws", keys, endpoints)

    assert result.status is Status.VALID
    assert ":assumed-role/" in result.details["arn"]


def test_aws_temporary_key_wrong_token_invalid(
    standins: ProviderStandins, endpoints: ProviderEndpoints
) -> None:
    keys = standins.aws.create_temporary_credentials()
    keys["aws_session_token"] = "IQoJb3JpZ2luX2VjEXAMPLEwrongTOKEN=="

    result = _check("aws", keys, endpoints)

    assert result.status is Status.INVALID
    assert result.reason == "unknown_key"


def test_aws_temporary_expiry_carried(
    standins: ProviderStandins, endpoints: ProviderEndpoints
) -> None:
    keys = standins.aws.create_temporary_credentials()
    expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    keys["expiration"] = expires_at.isoformat()

    result = _check("aws", keys, endpoints)

    assert result.expires_at == expires_at


# Azure


def test_azure_principal_valid(
    standins: ProviderStandins, endpoints: ProviderEndpoints
) -> None:
    principal = standins.azure.create_application()

    result = _check("azure", principal, endpoints)

    assert result.status is Status.VALID
    assert result.details["client_id"] == principal["client_id"]


def _azure_unknown_tenant(principal: dict[str, str]) -> None:
    principal["tenant_id"] = "00000000-0000-4000-8000-000000000000"


def _azure_unknown_client(principal: dict[str, str]) -> None:
    principal["client_id"] = "00000000-0000-4000-8000-000000000001"


def _azure_wrong_secret(principal: dict[str, str]) -> None:
    principal["client_secret"] = "Xy78Q~wrongwrongwrongwrongwrongwrong.abc"


@pytest.mark.parametrize(
    ("mutate", "reason", "field"),
    [
        (_azure_unknown_tenant, "unknown_tenant", "tenant_id"),
        (_azure_unknown_client, "unknown_client", "client_id"),
        (_azure_wrong_secret, "wrong_secret", "client_secret"),
    ],
)
def test_azure_rejection_mapped(
    standins: ProviderStandins,
    endpoints: ProviderEndpoints,
    mutate: Any,
    reason: str,
    field: str,
) -> None:
    principal = standins.azure.create_application()
    mutate(principal)

    result = _check("azure", principal, endpoints)

    assert result.status is Status.INVALID
    assert result.reason == reason
    assert result.message.startswith(field)


def test_azure_expired_secret_invalid(
    standins: ProviderStandins, endpoints: ProviderEndpoints
) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    principal = standins.azure.create_application(secret_expires_at=yesterday)

    result = _check("azure", principal, endpoints)

    assert result.status is Status.INVALID
    assert result.reason == "secret_expired"


# OpenAI


def test_openai_key_valid(
    standins: ProviderStandins, endpoints: ProviderEndpoints
) -> None:
    fields = standins.openai.create_key(organization="org-acme", project="proj_abc")

    result = _check("openai", fields, endpoints)

    assert result.status is Status.VALID


def test_openai_unknown_key_invalid(endpoints: ProviderEndpoints) -> None:
    fields = {"api_key": "sk-proj-unknownunknownunknownunknown0000"}

    result = _check("openai", fields, endpoints)

    assert result.status is Status.INVALID
    assert result.reason == "unknown_key"


def test_openai_other_organization_invalid(
    standins: ProviderStandins, endpoints: ProviderEndpoints
) -> None:
    fields = standins.openai.create_key(organization="org-acme")
    fields["organization"] = "org-globex"

    result = _check("openai", fields, endpoints)

    assert result.status is Status.INVALID
    assert result.reason == "wrong_organization"


# Indeterminate answers


def _faulty_credentials(provider: str, faulty: FaultyProvider) -> dict[str, Any]:
    raw = samples.sample(provider)
    if provider == "gcp":
        raw["token_uri"] = f"{faulty.url}/token"
    return raw


@pytest.mark.parametrize("provider", ["gcp", "aws", "azure", "openai"])
@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("500", "provider_unavailable"),
        ("html403", "unexpected_response"),
        ("garbage", "unexpected_response"),
        ("slow", "timeout"),
    ],
)
def test_faulty_answer_indeterminate(
    faulty: FaultyProvider, provider: str, mode: str, reason: str
) -> None:
    faulty.mode = mode

    result = _check(provider, _faulty_credentials(provider, faulty), faulty.endpoints())

    assert result.status is Status.INDETERMINATE
    assert result.reason == reason


@pytest.mark.parametrize("provider", ["gcp", "azure", "openai"])
def test_redirect_not_followed(faulty: FaultyProvider, provider: str) -> None:
    target = LoopbackServer(lambda *request: Reply(200, {"access_token": "x"}))
    faulty.mode, faulty.redirect_to = "redirect", f"{target.url}/token"
    endpoints = faulty.endpoints()

    try:
        result = _check(provider, _faulty_credentials(provider, faulty), endpoints)
    finally:
        target.stop()

    assert result.status is Status.INDETERMINATE
    assert result.reason == "unexpected_redirect"
    assert target.requests == 0


def test_unreachable_provider_indeterminate(faulty: FaultyProvider) -> None:
    endpoints = faulty.endpoints()
    faulty.stop()

    result = _check("openai", {"api_key": "sk-" + "a" * 40}, endpoints)

    assert result.status is Status.INDETERMINATE
    assert result.reason == "unreachable"


# The documented CredentialsManager API


@pytest.fixture
def manager(tmp_path: Any) -> CredentialsManager:
    return CredentialsManager(
        "p", "l", "r", "credentials-encryption", kms=LocalKeyring(tmp_path / "k.json")
    )


def test_manager_gcp_valid_true(
    manager: CredentialsManager,
    standins: ProviderStandins,
    endpoints: ProviderEndpoints,
) -> None:
    key_file = standins.google.create_key()

    assert manager.validate_gcp_credentials(key_file, endpoints=endpoints) is True


def test_manager_gcp_malformed_false(
    manager: CredentialsManager, endpoints: ProviderEndpoints
) -> None:
    key_file = {"type": "service_account"}

    assert manager.validate_gcp_credentials(key_file, endpoints=endpoints) is False


def test_manager_aws_valid_true(
    manager: CredentialsManager,
    standins: ProviderStandins,
    endpoints: ProviderEndpoints,
) -> None:
    keys = standins.aws.create_access_key()

    assert manager.validate_aws_credentials(keys, endpoints=endpoints) is True


def test_manager_aws_rejected_false(
    manager: CredentialsManager,
    standins: ProviderStandins,
    endpoints: ProviderEndpoints,
) -> None:
    keys = standins.aws.create_access_key()
    keys["aws_secret_access_key"] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLE+1"

    assert manager.validate_aws_credentials(keys, endpoints=endpoints) is False


def test_manager_indeterminate_false(
    manager: CredentialsManager, faulty: FaultyProvider
) -> None:
    keys = _faulty_credentials("aws", faulty)

    assert manager.validate_aws_credentials(keys, endpoints=faulty.endpoints()) is False
