"""Settings for every function and the operator command line.

The settings are read once per process, at cold start, from the environment and
an optional ``.env`` file in the working directory. Library code receives the
``Settings`` object (or the values it needs) and never reads the environment.
With no configuration at all everything runs locally: a key file under the data
folder stands in for Cloud KMS and an embedded DuckDB file for BigQuery.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["ConfigError", "Settings", "get_settings", "load_settings"]

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_RESOURCE_ID = re.compile(r"^[A-Za-z0-9_-]{1,63}$")


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable."""


class Settings(BaseSettings):
    """Every setting, named after its environment variable in upper case."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Names the platform's operators already use.
    kms_project_id: str = "local-project"
    kms_location: str = "local"
    kms_keyring: str = "convergence-customer-keys"
    kms_api_key_name: str = "api-key-encryption"
    kms_credentials_key_name: str = "credentials-encryption"
    tenants_dataset_id: str = "tenants_metadata"

    # Backends: "local" keeps key material in DATA_DIR, "gcp" calls Cloud KMS.
    kms_backend: Literal["local", "gcp"] = "local"
    store_backend: Literal["duckdb", "bigquery"] = "duckdb"
    data_dir: Path = Path(".data")
    bigquery_project_id: str | None = None

    pubsub_project_id: str = "local-project"
    pubsub_emulator_host: str | None = None
    audit_topic: str = "audit-events"
    # "pubsub" publishes audit events to AUDIT_TOPIC; "store" writes them directly.
    audit_delivery: Literal["pubsub", "store"] = "store"
    publish_timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    # SHA-256 hex digest of the operator bootstrap credential. Unset disables it.
    operator_token_sha256: str | None = None

    api_key_default_ttl_days: int = Field(default=90, ge=1)
    api_key_max_ttl_days: int = Field(default=365, ge=1)
    rotation_max_grace_hours: int = Field(default=168, ge=0)
    verify_cache_ttl_seconds: float = Field(default=5.0, ge=0, le=60)
    usage_flush_seconds: float = Field(default=30.0, gt=0, le=3600)
    data_key_cache_seconds: float = Field(default=300.0, gt=0, le=86400)

    cors_allowed_origins: Annotated[list[str], NoDecode] = []
    max_request_bytes: int = Field(default=64 * 1024, ge=1024, le=10 * 1024 * 1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("operator_token_sha256")
    @classmethod
    def _check_token_hash(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256_HEX.match(value):
            raise ValueError(
                "expected 64 lower-case hex characters: the SHA-256 of the token"
            )
        return value

    @field_validator(
        "kms_project_id",
        "kms_location",
        "kms_keyring",
        "kms_api_key_name",
        "kms_credentials_key_name",
        "tenants_dataset_id",
        "pubsub_project_id",
        "audit_topic",
    )
    @classmethod
    def _check_resource_id(cls, value: str) -> str:
        if not _RESOURCE_ID.match(value):
            raise ValueError(
                "expected 1 to 63 letters, digits, '-' or '_' (a Google Cloud id)"
            )
        return value

    @model_validator(mode="after")
    def _check_ttl_bounds(self) -> Settings:
        if self.api_key_default_ttl_days > self.api_key_max_ttl_days:
            raise ValueError(
                "API_KEY_DEFAULT_TTL_DAYS must not exceed API_KEY_MAX_TTL_DAYS"
            )
        return self

    def kms_key_path(self, key_name: str) -> str:
        """Return the Cloud KMS resource name of ``key_name`` in the configured ring."""
        return (
            f"projects/{self.kms_project_id}/locations/{self.kms_location}/"
            f"keyRings/{self.kms_keyring}/cryptoKeys/{key_name}"
        )

    @property
    def api_key_kms_path(self) -> str:
        return self.kms_key_path(self.kms_api_key_name)

    @property
    def credentials_kms_path(self) -> str:
        return self.kms_key_path(self.kms_credentials_key_name)


def load_settings(**overrides: object) -> Settings:
    """Read the settings, raising ``ConfigError`` that names each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False):
            name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            problems.append(f"{name}: {error['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


@functools.cache
def get_settings() -> Settings:
    """Return the process-wide settings, read on first use."""
    return load_settings()
