from pathlib import Path

import pytest

from shared.config import ConfigError, get_settings, load_settings
from shared.crypto import LocalKeyring, build_kms


def test_operator_names_read_exactly(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KMS_PROJECT_ID", "prod-project")
    clean_env.setenv("KMS_LOCATION", "europe-west1")
    clean_env.setenv("KMS_KEYRING", "customer-keys")
    clean_env.setenv("KMS_API_KEY_NAME", "api-keys-v2")
    clean_env.setenv("KMS_CREDENTIALS_KEY_NAME", "creds-v2")
    clean_env.setenv("TENANTS_DATASET_ID", "tenants_prod")

    settings = load_settings()

    assert settings.kms_project_id == "prod-project"
    assert settings.kms_location == "europe-west1"
    assert settings.kms_keyring == "customer-keys"
    assert settings.kms_api_key_name == "api-keys-v2"
    assert settings.kms_credentials_key_name == "creds-v2"
    assert settings.tenants_dataset_id == "tenants_prod"


def test_kms_paths_built_from_names(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KMS_PROJECT_ID", "prod-project")
    clean_env.setenv("KMS_LOCATION", "europe-west1")
    clean_env.setenv("KMS_KEYRING", "customer-keys")

    settings = load_settings()

    assert settings.api_key_kms_path == (
        "projects/prod-project/locations/europe-west1/keyRings/customer-keys/"
        "cryptoKeys/api-key-encryption"
    )
    assert settings.credentials_kms_path.endswith("/cryptoKeys/credentials-encryption")


def test_tenants_dataset_default(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings().tenants_dataset_id == "tenants_metadata"


def test_empty_environment_is_local(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()

    assert settings.kms_backend == "local"
    assert settings.store_backend == "duckdb"
    assert settings.audit_delivery == "store"
    assert settings.operator_token_sha256 is None
    assert settings.pubsub_emulator_host is None
    assert settings.cors_allowed_origins == []
    assert settings.data_dir == Path(".data")


def test_empty_environment_builds_local_keyring(
    clean_env: pytest.MonkeyPatch,
) -> None:
    kms = build_kms(load_settings())

    assert isinstance(kms, LocalKeyring)
    assert kms.path == Path(".data") / "keyring.json"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KMS_PROJECT_ID", "prod project!"),
        ("KMS_KEYRING", "ring/../../other"),
        ("TENANTS_DATASET_ID", "d" * 64),
        ("KMS_BACKEND", "aws-kms-secretish"),
        ("OPERATOR_TOKEN_SHA256", "plain-operator-token-value"),
        ("VERIFY_CACHE_TTL_SECONDS", "6000"),
        ("MAX_REQUEST_BYTES", "12abc"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_invalid_value_names_variable(
    clean_env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    clean_env.setenv(variable, value)

    with pytest.raises(ConfigError) as excinfo:
        load_settings()

    assert variable in str(excinfo.value)
    assert value not in str(excinfo.value)
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__suppress_context__


def test_default_ttl_over_max_names_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("API_KEY_DEFAULT_TTL_DAYS", "400")
    clean_env.setenv("API_KEY_MAX_TTL_DAYS", "365")

    with pytest.raises(ConfigError, match="API_KEY_DEFAULT_TTL_DAYS"):
        load_settings()


def test_several_invalid_values_all_named(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KMS_LOCATION", "bad location")
    clean_env.setenv("STORE_BACKEND", "postgres")

    with pytest.raises(ConfigError) as excinfo:
        load_settings()

    assert "KMS_LOCATION" in str(excinfo.value)
    assert "STORE_BACKEND" in str(excinfo.value)


def test_operator_token_hash_accepted(clean_env: pytest.MonkeyPatch) -> None:
    digest = "ab" * 32
    clean_env.setenv("OPERATOR_TOKEN_SHA256", digest)

    assert load_settings().operator_token_sha256 == digest


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://console.example", ["https://console.example"]),
        (
            "https://a.example, https://b.example ,,",
            ["https://a.example", "https://b.example"],
        ),
        ("", []),
    ],
)
def test_cors_origins_comma_list(
    clean_env: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    clean_env.setenv("CORS_ALLOWED_ORIGINS", value)

    assert load_settings().cors_allowed_origins == expected


def test_dotenv_file_read(clean_env: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("KMS_KEYRING=from-dotenv\n", encoding="utf-8")

    assert load_settings().kms_keyring == "from-dotenv"


def test_environment_overrides_dotenv(clean_env: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("KMS_KEYRING=from-dotenv\n", encoding="utf-8")
    clean_env.setenv("KMS_KEYRING", "from-environment")

    assert load_settings().kms_keyring == "from-environment"


def test_get_settings_read_once(clean_env: pytest.MonkeyPatch) -> None:
    first = get_settings()
    clean_env.setenv("KMS_KEYRING", "changed-later")

    assert get_settings() is first
    assert get_settings().kms_keyring == "convergence-customer-keys"


def test_load_settings_overrides(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(kms_keyring="override-ring")

    assert settings.kms_keyring == "override-ring"
