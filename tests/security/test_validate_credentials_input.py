"""validate-credentials: submissions that used to end in a 500 or cost seconds.

Each test loads the function fresh against the provider stand-ins on loopback
and sends the body through json.dumps, which writes a lone UTF-16 surrogate as
its escape.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskClient

from infra.provider_standins import ProviderStandins, start_provider_standins
from shared.config import get_settings
from shared.keyservice import Principal
from shared.runtime import build_key_service
from shared.store import build_store

# The local part of this address is shaped like an API key of tenant acme.
KEY_SHAPED_ACCOUNT = "acme_api_" + "a" * 29


@pytest.fixture(scope="module")
def standins() -> Iterator[ProviderStandins]:
    running = start_provider_standins()
    yield running
    running.stop()


@pytest.fixture
def client(
    load_function: Callable[..., Any], standins: ProviderStandins
) -> FlaskClient:
    environment = standins.settings()
    # Every cloud on the stand-in, whatever settings() returns: nothing may
    # leave loopback.
    for variable in ("AZURE_AUTHORITY_HOST_USGOV", "AZURE_AUTHORITY_HOST_CHINA"):
        environment[variable] = standins.azure.authority_host
    app, _ = load_function("validate_credentials", **environment)
    return app.test_client()


@pytest.fixture
def admin(client: FlaskClient) -> dict[str, str]:
    """Headers that carry the admin key of tenant acme."""
    settings = get_settings()
    keys = build_key_service(settings, build_store(settings))
    _, issued = keys.create_tenant(
        Principal.operator(), "acme", name="Acme", contact_email=None
    )
    return {
        "Authorization": f"Bearer {issued.api_key}",
        "Content-Type": "application/json",
    }


def _post(
    client: FlaskClient, path: str, headers: dict[str, str], body: dict[str, Any]
) -> Any:
    return client.post(path, data=json.dumps(body), headers=headers)


def _message(response: Any) -> str:
    return str(response.get_json()["error"]["message"])


def _rsa_pem(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode("ascii")


def test_name_lone_surrogate_400(
    client: FlaskClient, admin: dict[str, str], standins: ProviderStandins
) -> None:
    # json.dumps sends this lone surrogate as the escape \udfff.
    body: dict[str, Any] = {"provider": "openai", "name": "\udfff"}
    body["credentials"] = standins.openai.create_key()

    response = _post(client, "/credentials", admin, body)

    assert response.status_code == 400
    assert "name" in _message(response)


def test_gcp_email_like_key_400(
    client: FlaskClient, admin: dict[str, str], standins: ProviderStandins
) -> None:
    key_file = standins.google.create_key(account=KEY_SHAPED_ACCOUNT)
    body = {"provider": "gcp", "credentials": key_file}

    response = _post(client, "/credentials/validate", admin, body)

    assert response.status_code == 400
    assert "credentials.client_email" in _message(response)


def test_gcp_rsa_over_4096_bits_400(
    client: FlaskClient, admin: dict[str, str], standins: ProviderStandins
) -> None:
    # Checking the primes of an RSA key costs seconds past 4096 bits (2.8 s for
    # 8192 on two shared cores); Google issues 2048-bit keys.
    key_file = standins.google.create_key()
    key_file["private_key"] = _rsa_pem(4104)
    body = {"provider": "gcp", "credentials": key_file}

    response = _post(client, "/credentials/validate", admin, body)

    assert response.status_code == 400
    assert "credentials.private_key" in _message(response)


def test_aws_expiration_past_year_9999_400(
    client: FlaskClient, admin: dict[str, str], standins: ProviderStandins
) -> None:
    # 9999-12-31T23:59:59-14:00 is in the year 10000 in UTC, which DuckDB
    # stores but Python cannot read back.
    keys = standins.aws.create_temporary_credentials()
    keys["expiration"] = "9999-12-31T23:59:59-14:00"
    body = {"provider": "aws", "credentials": keys}

    response = _post(client, "/credentials", admin, body)

    assert response.status_code == 400
    assert "credentials.expiration" in _message(response)


def test_aws_far_expiration_keeps_list(
    client: FlaskClient, admin: dict[str, str], standins: ProviderStandins
) -> None:
    keys = standins.aws.create_temporary_credentials()
    keys["expiration"] = "9999-12-31T23:59:59-14:00"
    _post(client, "/credentials", admin, {"provider": "aws", "credentials": keys})

    response = client.get("/credentials", headers=admin)

    assert response.status_code == 200


def test_standins_keep_every_azure_cloud_local(standins: ProviderStandins) -> None:
    # validate-credentials sends the client secret to the host of the cloud a
    # tenant names; a host left at its default is Microsoft's, off loopback.
    settings = standins.settings()

    for variable in ("AZURE_AUTHORITY_HOST_USGOV", "AZURE_AUTHORITY_HOST_CHINA"):
        assert settings.get(variable) == standins.azure.authority_host, variable
