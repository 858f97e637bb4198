import hashlib
import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shared import apikeys

TENANT_IDS = st.from_regex(apikeys.TENANT_ID_PATTERN, fullmatch=True)
KEY_CHARACTERS = string.ascii_letters + string.digits + "_-. "
SECRET_CHARACTERS = 23 + 6  # random part and checksum


@given(TENANT_IDS)
def test_generated_key_parses_to_its_tenant(tenant_id: str) -> None:
    key = apikeys.generate_api_key(tenant_id)

    assert apikeys.parse_api_key(key).tenant_id == tenant_id


@given(TENANT_IDS)
def test_generated_key_fits_max_length(tenant_id: str) -> None:
    key = apikeys.generate_api_key(tenant_id)

    assert len(key) <= apikeys.API_KEY_MAX_LENGTH


@given(TENANT_IDS, st.data())
def test_single_substitution_rejected(tenant_id: str, data: st.DataObject) -> None:
    key = apikeys.generate_api_key(tenant_id)
    index = data.draw(st.integers(0, len(key) - 1))
    replacement = data.draw(st.sampled_from(KEY_CHARACTERS))
    assume(replacement != key[index])
    altered = key[:index] + replacement + key[index + 1 :]

    with pytest.raises(apikeys.InvalidAPIKey):
        apikeys.parse_api_key(altered)


@given(TENANT_IDS, st.data())
def test_truncation_rejected(tenant_id: str, data: st.DataObject) -> None:
    key = apikeys.generate_api_key(tenant_id)
    length = data.draw(st.integers(0, len(key) - 1))

    with pytest.raises(apikeys.InvalidAPIKey):
        apikeys.parse_api_key(key[:length])


@given(TENANT_IDS, st.text(min_size=1, max_size=5))
def test_appended_text_rejected(tenant_id: str, suffix: str) -> None:
    key = apikeys.generate_api_key(tenant_id)

    with pytest.raises(apikeys.InvalidAPIKey):
        apikeys.parse_api_key(key + suffix)


@given(st.text())
def test_any_text_parses_or_raises_invalid(text: str) -> None:
    # Any exception other than InvalidAPIKey fails the test.
    try:
        parsed = apikeys.parse_api_key(text)
    except apikeys.InvalidAPIKey:
        return
    assert parsed.key == text


@given(TENANT_IDS, st.data())
def test_non_ascii_character_rejected(tenant_id: str, data: st.DataObject) -> None:
    key = apikeys.generate_api_key(tenant_id)
    index = data.draw(st.integers(0, len(key) - 1))
    character = data.draw(st.characters(min_codepoint=128))
    altered = key[:index] + character + key[index + 1 :]

    with pytest.raises(apikeys.InvalidAPIKey):
        apikeys.parse_api_key(altered)


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "x" * 1_000_000,
        "acme_api_" + "A" * 1_000_000,
        "\udc80",
        "acme_api_ÄÖÜ",
        None,
        b"acme_api_0123456789",
        12345,
    ],
    ids=[
        "empty",
        "space",
        "huge",
        "huge-key-shape",
        "surrogate",
        "umlaut",
        "none",
        "bytes",
        "int",
    ],
)
def test_parse_bad_input_raises_invalid(value: object) -> None:
    with pytest.raises(apikeys.InvalidAPIKey):
        apikeys.parse_api_key(value)


def test_parse_error_message_hides_key() -> None:
    key = apikeys.generate_api_key("acme")
    altered = key[:-1] + ("A" if key[-1] != "A" else "B")

    with pytest.raises(apikeys.InvalidAPIKey) as excinfo:
        apikeys.parse_api_key(altered)

    assert altered[:-1] not in str(excinfo.value)


def test_parse_surrounding_whitespace_rejected() -> None:
    key = apikeys.generate_api_key("acme")

    with pytest.raises(apikeys.InvalidAPIKey):
        apikeys.parse_api_key(f" {key}\n")


def test_generated_keys_unique() -> None:
    keys = {apikeys.generate_api_key("acme") for _ in range(1000)}

    assert len(keys) == 1000


# Tenant ids


@given(TENANT_IDS)
def test_valid_tenant_id_accepted(tenant_id: str) -> None:
    assert apikeys.validate_tenant_id(tenant_id) == tenant_id


@pytest.mark.parametrize(
    "tenant_id",
    [
        "",
        "ab",
        "a" * 51,
        "Acme",
        "1acme",
        "_acme",
        "acme-corp",
        "acme corp",
        "acmé",
        "acme\n",
        "acme;drop",
        "ａｃｍｅ",
    ],
)
def test_invalid_tenant_id_rejected(tenant_id: str) -> None:
    with pytest.raises(ValueError, match="tenant_id must be 3 to 50 characters"):
        apikeys.validate_tenant_id(tenant_id)


def test_non_str_tenant_id_raises_type_error() -> None:
    with pytest.raises(TypeError, match="tenant_id must be a str"):
        apikeys.validate_tenant_id(None)


def test_generate_for_invalid_tenant_raises() -> None:
    with pytest.raises(ValueError):
        apikeys.generate_api_key("Bad-Tenant")


# Hashing, redaction and display


def test_hash_is_sha256_hex() -> None:
    key = apikeys.generate_api_key("acme")

    assert apikeys.hash_api_key(key) == hashlib.sha256(key.encode()).hexdigest()


def test_hash_non_str_raises_type_error() -> None:
    with pytest.raises(TypeError, match="key must be a str"):
        apikeys.hash_api_key(b"bytes")  # type: ignore[arg-type]


@given(TENANT_IDS, st.text(), st.text())
def test_redact_hides_key_in_text(tenant_id: str, before: str, after: str) -> None:
    key = apikeys.generate_api_key(tenant_id)

    redacted = apikeys.redact_api_keys(before + key + after)

    assert key[-SECRET_CHARACTERS:] not in redacted


def test_redact_replaces_each_key() -> None:
    first = apikeys.generate_api_key("acme")
    second = apikeys.generate_api_key("globex")

    redacted = apikeys.redact_api_keys(f"keys: {first}, {second}.")

    assert redacted == "keys: [REDACTED], [REDACTED]."


@given(st.text().filter(lambda text: "_api_" not in text))
def test_redact_leaves_other_text(text: str) -> None:
    assert apikeys.redact_api_keys(text) == text


@given(TENANT_IDS)
def test_display_prefix_reveals_four_random_characters(tenant_id: str) -> None:
    key = apikeys.generate_api_key(tenant_id)

    prefix = apikeys.display_prefix(key)

    assert prefix == key[: len(tenant_id) + len("_api_") + 4]


def test_parsed_key_prefix_matches_display_prefix() -> None:
    key = apikeys.generate_api_key("acme")

    assert apikeys.parse_api_key(key).prefix == apikeys.display_prefix(key)


def test_display_prefix_does_not_parse() -> None:
    prefix = apikeys.display_prefix(apikeys.generate_api_key("acme"))

    with pytest.raises(apikeys.InvalidAPIKey):
        apikeys.parse_api_key(prefix)
