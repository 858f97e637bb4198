"""Input checks: every rejection names its field and fix; repairs are reported."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import credential_samples as samples
import pytest

from shared.credentials import CredentialInputError, NormalisedCredential
from shared.credentials.validation import normalise

NOW = datetime(2030, 1, 1, tzinfo=UTC)
Mutation = Callable[[dict[str, Any]], object]


def _run(provider: object, raw: object) -> NormalisedCredential:
    return normalise(provider, raw, endpoints=samples.ENDPOINTS, now=NOW)


def _set(**changes: object) -> Mutation:
    def mutate(raw: dict[str, Any]) -> object:
        raw.update(changes)
        return raw

    return mutate


def _drop(name: str) -> Mutation:
    def mutate(raw: dict[str, Any]) -> object:
        del raw[name]
        return raw

    return mutate


def _replace(value: object) -> Mutation:
    return lambda raw: value


def _gcp_key_on_one_line(raw: dict[str, Any]) -> object:
    raw["private_key"] = raw["private_key"].replace("\n", " ").strip()
    return raw


def _aws_swapped(raw: dict[str, Any]) -> object:
    return {
        "aws_access_key_id": raw["aws_secret_access_key"],
        "aws_secret_access_key": raw["aws_access_key_id"],
    }


def _aws_temporary(**changes: object) -> Mutation:
    def mutate(raw: dict[str, Any]) -> object:
        temporary = samples.aws_temporary()
        temporary.update(changes)
        return {name: value for name, value in temporary.items() if value is not None}

    return mutate


BAD_INPUTS: list[tuple[str, str, Mutation, str, str]] = [
    # case, provider, mutation, field, message fragment
    ("unknown provider", "gce", _set(), "provider", "must be one of"),
    ("gcp missing key", "gcp", _drop("private_key"), "private_key", "is required"),
    ("gcp key not text", "gcp", _set(private_key=123), "private_key", "a string"),
    (
        "gcp key garbage",
        "gcp",
        _set(
            private_key="-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
        ),
        "private_key",
        "does not load as a PEM private key",
    ),
    (
        "gcp key encrypted",
        "gcp",
        _set(private_key=samples.ENCRYPTED_PEM),
        "private_key",
        "encrypted with a password",
    ),
    ("gcp key one line", "gcp", _gcp_key_on_one_line, "private_key", "line breaks"),
    ("gcp key not rsa", "gcp", _set(private_key=samples.EC_PEM), "private_key", "RSA"),
    (
        "gcp key is a certificate",
        "gcp",
        _set(
            private_key="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"
        ),
        "private_key",
        "-----BEGIN PRIVATE KEY-----",
    ),
    (
        "gcp key oversized",
        "gcp",
        _set(private_key="A" * 9000),
        "private_key",
        "at most 8192 characters",
    ),
    (
        "gcp key id shape",
        "gcp",
        _set(private_key_id="ABC"),
        "private_key_id",
        "40 lower-case hexadecimal",
    ),
    (
        "gcp user email",
        "gcp",
        _set(client_email="someone@gmail.com"),
        "client_email",
        ".gserviceaccount.com",
    ),
    (
        "gcp project shape",
        "gcp",
        _set(project_id="Bad_Project"),
        "project_id",
        "project",
    ),
    ("gcp wrong type", "gcp", _set(type="service-account"), "type", "service_account"),
    (
        "gcp user credential",
        "gcp",
        _replace(
            {
                "type": "authorized_user",
                "client_id": "764086051850-x.apps.googleusercontent.com",
                "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty",
                "refresh_token": "1//0example",
            }
        ),
        "type",
        "user credential",
    ),
    (
        "gcp oauth client file",
        "gcp",
        _replace({"installed": {"client_id": "x", "client_secret": "GOCSPX-abc"}}),
        "credentials",
        "OAuth client file",
    ),
    (
        "gcp federation config",
        "gcp",
        _replace({"type": "external_account", "audience": "//iam.googleapis.com/x"}),
        "type",
        "workload identity federation",
    ),
    (
        "gcp token uri not allowed",
        "gcp",
        _set(token_uri="https://attacker.example/token"),
        "token_uri",
        "must be one of",
    ),
    (
        "gcp token uri lookalike",
        "gcp",
        _set(token_uri="https://oauth2.googleapis.com.attacker.example/token"),
        "token_uri",
        "must be one of",
    ),
    ("gcp text not json", "gcp", _replace("{not json"), "credentials", "is not JSON"),
    (
        "gcp api key",
        "gcp",
        _replace("AIzaSyExampleExampleExampleExample123"),
        "credentials",
        "Google API key",
    ),
    ("gcp list", "gcp", _replace([]), "credentials", "key file"),
    (
        "gcp text nested too deep",
        "gcp",
        _replace("[" * 5000 + "]" * 5000),
        "credentials",
        "is not JSON",
    ),
    (
        "aws missing secret",
        "aws",
        _drop("aws_secret_access_key"),
        "aws_secret_access_key",
        "is required",
    ),
    (
        "aws short key id",
        "aws",
        _set(aws_access_key_id="AKIA1234"),
        "aws_access_key_id",
        "20 characters",
    ),
    (
        "aws user id as key id",
        "aws",
        _set(aws_access_key_id="AIDAZ7EXAMPLE0USERID"),
        "aws_access_key_id",
        "AKIA",
    ),
    (
        "aws short secret",
        "aws",
        _set(aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLE+"),
        "aws_secret_access_key",
        "40-character secret",
    ),
    (
        "aws secret split by space",
        "aws",
        _set(aws_secret_access_key="wJalrXUtnFEMI/K7MDENG bPxRfiCYzEXAMPLE+1"),
        "aws_secret_access_key",
        "whitespace",
    ),
    ("aws swapped", "aws", _aws_swapped, "aws_access_key_id", "look swapped"),
    (
        "aws conflicting names",
        "aws",
        _set(access_key_id="AKIAZ7EXAMPLE0OTHER1"),
        "aws_access_key_id and credentials.access_key_id",
        "different values",
    ),
    (
        "aws temporary without token",
        "aws",
        _aws_temporary(aws_session_token=None),
        "aws_session_token",
        "required with a temporary key",
    ),
    (
        "aws long-term with token",
        "aws",
        _set(aws_session_token="IQoJb3JpZ2luX2VjEXAMPLE"),
        "aws_session_token",
        "temporary keys (ASIA...) only",
    ),
    (
        "aws expiration passed",
        "aws",
        _aws_temporary(expiration="2029-12-31T23:00:00Z"),
        "expiration",
        "has passed",
    ),
    (
        "aws expiration without zone",
        "aws",
        _aws_temporary(expiration="2030-02-01T00:00:00"),
        "expiration",
        "ISO 8601",
    ),
    ("aws not object", "aws", _replace("AKIA..."), "credentials", "JSON object"),
    (
        "azure secret id pasted",
        "azure",
        _set(client_secret="9f8e7d6c-5b4a-4321-8fed-cba987654321"),
        "client_secret",
        "Secret ID",
    ),
    (
        "azure client id shape",
        "azure",
        _set(client_id="my-app"),
        "client_id",
        "Application (client) ID",
    ),
    (
        "azure common tenant",
        "azure",
        _set(tenant_id="common"),
        "tenant_id",
        "multi-tenant alias",
    ),
    (
        "azure tenant shape",
        "azure",
        _set(tenant_id="not a tenant!"),
        "tenant_id",
        "Directory (tenant) ID",
    ),
    ("azure unknown cloud", "azure", _set(cloud="mars"), "cloud", "public, usgov"),
    (
        "azure foreign authority",
        "azure",
        _set(authority="https://login.attacker.example/"),
        "cloud",
        "public, usgov",
    ),
    (
        "azure secret with line break",
        "azure",
        _set(client_secret="Xy78Q~example\nsecret"),
        "client_secret",
        "whitespace",
    ),
    (
        "openai bearer prefix",
        "openai",
        _set(api_key="Bearer sk-proj-EXAMPLEexampleEXAMPLEexample0123456789"),
        "api_key",
        "Bearer",
    ),
    (
        "openai not a secret key",
        "openai",
        _set(api_key="pk-live-EXAMPLEexampleEXAMPLEexample"),
        "api_key",
        "sk-",
    ),
    (
        "openai organization shape",
        "openai",
        _set(organization="acme"),
        "organization",
        "org-",
    ),
    ("openai project shape", "openai", _set(project="p1"), "project", "proj_"),
    (
        "openai empty key",
        "openai",
        _set(api_key="  \n"),
        "api_key",
        "must not be empty",
    ),
]


@pytest.mark.parametrize(
    ("provider", "mutate", "field", "fragment"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_rejected(
    provider: str, mutate: Mutation, field: str, fragment: str
) -> None:
    base = samples.sample(provider if provider != "gce" else "aws")
    raw = mutate(base)

    with pytest.raises(CredentialInputError) as caught:
        _run(provider, raw)

    expected_field = (
        field if field in ("provider", "credentials") else (f"credentials.{field}")
    )
    assert caught.value.field == expected_field
    assert fragment in caught.value.message


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_message_quotes_no_value(case: tuple[Any, ...]) -> None:
    _, provider, mutate, _, _ = case
    raw = mutate(samples.sample(provider if provider != "gce" else "aws"))
    # Values that also occur in the settings may appear in a message.
    configured = str(samples.ENDPOINTS)
    values = [value for value in _strings(raw) if value not in configured]

    with pytest.raises(CredentialInputError) as caught:
        _run(provider, raw)

    quoted = [
        value for value in values if len(value) >= 8 and value in str(caught.value)
    ]
    assert quoted == []


def _strings(raw: object) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, dict):
        return [text for value in raw.values() for text in _strings(value)]
    return []


# Repairs


def test_gcp_text_with_bom_accepted() -> None:
    text = "\ufeff" + json.dumps(samples.gcp()) + "\r\n"

    credential = _run("gcp", text)

    assert credential.fields["private_key"] == samples.RSA_PEM
    assert "credentials: removed a leading byte-order mark" in credential.normalised


def test_gcp_escaped_newlines_repaired() -> None:
    raw = samples.gcp()
    raw["private_key"] = samples.RSA_PEM.replace("\n", "\\n")

    credential = _run("gcp", raw)

    assert credential.fields["private_key"] == samples.RSA_PEM
    assert any("literal \\n" in note for note in credential.normalised)


def test_gcp_crlf_repaired() -> None:
    raw = samples.gcp()
    raw["private_key"] = samples.RSA_PEM.replace("\n", "\r\n")

    credential = _run("gcp", raw)

    assert credential.fields["private_key"] == samples.RSA_PEM
    assert any("CR LF" in note for note in credential.normalised)


def test_gcp_file_as_issued_needs_no_repair() -> None:
    credential = _run("gcp", samples.gcp())

    assert credential.normalised == ()
    assert credential.ignored_fields == ()


def test_gcp_canonical_fields() -> None:
    credential = _run("gcp", samples.gcp())

    assert sorted(credential.fields) == [
        "client_email",
        "client_id",
        "private_key",
        "private_key_id",
        "project_id",
        "token_uri",
        "type",
        "universe_domain",
    ]


def test_gcp_missing_token_uri_defaulted() -> None:
    raw = samples.gcp()
    del raw["token_uri"]

    credential = _run("gcp", raw)

    assert credential.fields["token_uri"] == samples.TOKEN_URI
    assert any("token_uri: set to" in note for note in credential.normalised)


def test_gcp_unknown_field_reported() -> None:
    raw = samples.gcp()
    raw["comment"] = "from the old laptop"

    credential = _run("gcp", raw)

    assert credential.ignored_fields == ("credentials.comment",)
    assert "comment" not in credential.fields


def test_aws_lower_case_key_id_upper_cased() -> None:
    raw = samples.aws()
    raw["aws_access_key_id"] = raw["aws_access_key_id"].lower()

    credential = _run("aws", raw)

    assert credential.fields["aws_access_key_id"] == samples.aws()["aws_access_key_id"]
    assert "credentials.aws_access_key_id: converted to upper case" in (
        credential.normalised
    )


def test_aws_older_names_accepted() -> None:
    raw = samples.aws()
    old = {
        "access_key_id": raw["aws_access_key_id"],
        "secret_access_key": raw["aws_secret_access_key"],
    }

    credential = _run("aws", old)

    assert credential.fields == raw


def test_aws_secret_whitespace_trimmed_not_changed() -> None:
    raw = samples.aws()
    raw["aws_secret_access_key"] = " " + raw["aws_secret_access_key"] + "\r\n"

    credential = _run("aws", raw)

    secret = samples.aws()["aws_secret_access_key"]
    assert credential.fields["aws_secret_access_key"] == secret
    assert "credentials.aws_secret_access_key: removed surrounding whitespace" in (
        credential.normalised
    )


def test_aws_bom_removed() -> None:
    raw = samples.aws()
    raw["aws_access_key_id"] = "\ufeff" + raw["aws_access_key_id"]

    credential = _run("aws", raw)

    assert credential.fields["aws_access_key_id"] == samples.aws()["aws_access_key_id"]
    assert "credentials.aws_access_key_id: removed a leading byte-order mark" in (
        credential.normalised
    )


def test_aws_temporary_expiry_recorded() -> None:
    raw = samples.aws_temporary()
    raw["expiration"] = "2030-01-01T12:00:00Z"

    credential = _run("aws", raw)

    assert credential.expires_at == NOW + timedelta(hours=12)


def test_aws_hint_shows_key_id_ends() -> None:
    credential = _run("aws", samples.aws())

    assert credential.account_hint == "AKIA...YID1"


def test_azure_braced_guid_lowered() -> None:
    raw = samples.azure()
    raw["client_id"] = "{" + raw["client_id"].upper() + "}"

    credential = _run("azure", raw)

    assert credential.fields["client_id"] == samples.azure()["client_id"]
    assert any("client_id: converted" in note for note in credential.normalised)


def test_azure_cli_output_accepted() -> None:
    raw = samples.azure()
    cli_output = {
        "appId": raw["client_id"],
        "displayName": "pipelines",
        "password": raw["client_secret"],
        "tenant": raw["tenant_id"],
    }

    credential = _run("azure", cli_output)

    assert credential.fields == {**raw, "cloud": "public"}
    assert credential.ignored_fields == ()


@pytest.mark.parametrize(
    ("value", "cloud"),
    [
        ("AzureUSGovernment", "usgov"),
        ("AzureChinaCloud", "china"),
        ("https://login.microsoftonline.us/", "usgov"),
        ("public", "public"),
    ],
)
def test_azure_cloud_names(value: str, cloud: str) -> None:
    raw = samples.azure()
    raw["cloud"] = value

    credential = _run("azure", raw)

    assert credential.fields["cloud"] == cloud


def test_azure_domain_tenant_lowered() -> None:
    raw = samples.azure()
    raw["tenant_id"] = "Contoso.onmicrosoft.com"

    credential = _run("azure", raw)

    assert credential.fields["tenant_id"] == "contoso.onmicrosoft.com"


def test_openai_trailing_newline_trimmed() -> None:
    raw = samples.openai()
    raw["api_key"] += "\n"

    credential = _run("openai", raw)

    assert credential.fields["api_key"] == samples.openai()["api_key"]


def test_openai_hint_shows_last_four() -> None:
    credential = _run("openai", samples.openai())

    assert credential.account_hint == "sk-proj-...6789"


def test_canonical_json_is_sorted_and_compact() -> None:
    credential = _run("aws", samples.aws())

    assert (
        credential.canonical_json()
        == json.dumps(samples.aws(), sort_keys=True, separators=(",", ":")).encode()
    )


def test_repr_hides_secrets() -> None:
    credential = _run("azure", samples.azure())

    assert samples.azure()["client_secret"] not in repr(credential)


@pytest.mark.parametrize("provider", ["gcp", "aws", "azure", "openai"])
def test_secret_characters_unchanged(provider: str) -> None:
    raw = samples.sample(provider)

    credential = _run(provider, raw)

    for name in credential.secret_fields:
        if name in raw:
            assert credential.fields[name] == raw[name]


def test_random_guids_accepted() -> None:
    raw = samples.azure()
    raw["tenant_id"], raw["client_id"] = str(uuid.uuid4()), str(uuid.uuid4())

    credential = _run("azure", raw)

    assert credential.details["tenant_id"] == raw["tenant_id"]
