"""Settings for every function and the operator command line.

The settings are read once per process, at cold start, from the environment and
an optional ``.env`` file in the working directory. Library code receives the
``Settings`` object (or the values it needs) and never reads the environment.
With no configuration at all everything runs locally: a key file under the data
folder replaces Cloud KMS and an embedded DuckDB file replaces BigQuery.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["ConfigError", "Settings", "get_settings", "load_settings"]

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_RESOURCE_ID = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
# One address, no display name: enough to catch a paste of the wrong value.
_EMAIL = re.compile(r"^[^@\s<>,;]{1,64}@[^@\s<>,;]{1,255}$")


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
    # An emulator's base URL, e.g. http://127.0.0.1:9050; set, it also selects
    # anonymous credentials. Unset means the real BigQuery API.
    bigquery_api_endpoint: str | None = None
    # Create the dataset and tables when missing: for local use and tests.
    # In production the infrastructure creates them and this stays false.
    bigquery_create_tables: bool = False
    # Location of new datasets and of query jobs; unset lets BigQuery choose.
    bigquery_location: str | None = None

    pubsub_project_id: str = "local-project"
    pubsub_emulator_host: str | None = None
    audit_topic: str = "audit-events"
    # "pubsub" publishes audit events to AUDIT_TOPIC; "store" writes them directly.
    audit_delivery: Literal["pubsub", "store"] = "store"
    publish_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # audit_writer stores deliveries that arrive together with one INSERT. The
    # first delivery of a batch waits up to this long for others to join, as
    # many as the previous batch had.
    audit_batch_window_seconds: float = Field(default=0.002, ge=0, le=0.1)
    # Maximum events per INSERT; BigQuery's store sends at most 500 a statement.
    audit_batch_max_events: int = Field(default=100, ge=1, le=500)

    # SHA-256 hex digest of the operator bootstrap credential. Unset disables it.
    operator_token_sha256: str | None = None

    api_key_default_ttl_days: int = Field(default=90, ge=1)
    api_key_max_ttl_days: int = Field(default=365, ge=1)
    rotation_max_grace_hours: int = Field(default=168, ge=0)
    verify_cache_ttl_seconds: float = Field(default=5.0, ge=0, le=60)
    usage_flush_seconds: float = Field(default=30.0, gt=0, le=3600)
    data_key_cache_seconds: float = Field(default=300.0, gt=0, le=86400)

    # Credential validation (validate-credentials). Endpoints are https URLs;
    # plain http is accepted for loopback hosts only, for the local stand-ins.
    aws_sts_endpoint: str = "https://sts.amazonaws.com"
    aws_sts_region: str = "us-east-1"
    azure_authority_host: str = "https://login.microsoftonline.com"
    azure_authority_host_usgov: str = "https://login.microsoftonline.us"
    azure_authority_host_china: str = "https://login.chinacloudapi.cn"
    openai_api_base: str = "https://api.openai.com/v1"
    # Comma-separated; a service account key's token_uri must be one of these.
    gcp_token_uri_allowlist: Annotated[list[str], NoDecode] = [
        "https://oauth2.googleapis.com/token"
    ]
    # Applies to the connect and to the read of each live check separately.
    credentials_check_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    credentials_max_request_bytes: int = Field(default=16 * 1024, ge=4096, le=1 << 20)
    # Days a deleted credential can be restored before its row is erased.
    credentials_recovery_days: int = Field(default=7, ge=0, le=30)
    # Base64 of at least 32 random bytes; keys the duplicate-spotting fingerprint.
    # Required with KMS_BACKEND=gcp; locally a key file in DATA_DIR is created.
    credentials_fingerprint_key: SecretStr | None = None

    # Backups (backup_exporter and ``convergence backup``). The bucket keeps
    # one run per day; runs older than BACKUP_RETENTION_DAYS are deleted.
    backup_bucket: str = "convergence-backup"
    backup_retention_days: int = Field(default=30, ge=1, le=3650)
    backup_include_audit_logs: bool = False
    # A table's export is split into files of at most this many bytes.
    # BigQuery's extract splits at 1 GB on its own.
    backup_shard_max_bytes: int = Field(default=256 << 20, ge=1024, le=1 << 30)
    # How long a started run keeps its claim on the day's slot. A redelivery
    # within this time leaves the run to the attempt that made the claim.
    backup_claim_seconds: int = Field(default=900, ge=60, le=86400)
    # Base URL of a Cloud Storage emulator, e.g. http://127.0.0.1:9023; set,
    # the client sends no credentials. STORAGE_EMULATOR_HOST is read too.
    storage_api_endpoint: str | None = None
    storage_emulator_host: str | None = None
    # Project of the storage client; unset means the client's default.
    storage_project_id: str | None = None
    # How long the storage client retries a failing request, in seconds.
    storage_retry_seconds: float = Field(default=60.0, gt=0, le=600)

    # Alerts (expiry_alerter); docs/alerts.md describes each rule.
    # Days before expiry at which a key or credential is warned about, once
    # each; comma-separated.
    alert_expiry_lead_days: Annotated[list[int], NoDecode] = [7, 1]
    # How far back a run looks for use of a key or credential after it expired.
    alert_expired_use_lookback_hours: int = Field(default=24, ge=1, le=24 * 30)
    # More than THRESHOLD failed authentications for one tenant, user and IP
    # within WINDOW_MINUTES.
    alert_auth_failure_threshold: int = Field(default=5, ge=1)
    alert_auth_failure_window_minutes: int = Field(default=60, ge=1, le=24 * 60)
    # More than RATE_THRESHOLD failed authentications in all within
    # RATE_WINDOW_MINUTES.
    alert_auth_failure_rate_threshold: int = Field(default=100, ge=1)
    alert_auth_failure_rate_window_minutes: int = Field(default=1, ge=1, le=24 * 60)
    # More than THRESHOLD failed KMS operations within WINDOW_MINUTES.
    alert_kms_failure_threshold: int = Field(default=10, ge=1)
    alert_kms_failure_window_minutes: int = Field(default=5, ge=1, le=24 * 60)
    # How far back each run looks for bursts; more than the check interval, so
    # late audit events and a missed run are still covered.
    alert_lookback_minutes: int = Field(default=120, ge=1, le=7 * 24 * 60)
    # A failed notification is retried by later runs for this long, at most
    # ALERT_MAX_ATTEMPTS times per channel.
    alert_retry_hours: int = Field(default=24, ge=1, le=24 * 30)
    alert_max_attempts: int = Field(default=24, ge=1, le=1000)
    # A run that claimed a notification and did not record the outcome within
    # this time is presumed dead, and a later run sends it again.
    alert_claim_seconds: int = Field(default=600, ge=30, le=86400)
    alert_send_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Topic that receives every alert as JSON.
    alert_topic: str = "alerts"
    # Recipient of platform-wide alerts, and of tenant alerts when the tenant
    # has no contact_email. Unset: those alerts go to Slack and Pub/Sub only.
    alert_operator_email: str | None = None
    # Email: set SMTP_HOST to send. STARTTLS is required unless the host is a
    # loopback address.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_from: str = "convergence-alerts@localhost"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    # Slack incoming webhook; the URL contains a token, so it is a secret.
    slack_webhook_url: SecretStr | None = None

    # Proxies in front of the HTTP functions that append to X-Forwarded-For:
    # 1 for Google's front end in production, 0 when clients connect directly.
    trusted_proxy_hops: int = Field(default=1, ge=0, le=5)
    cors_allowed_origins: Annotated[list[str], NoDecode] = []
    max_request_bytes: int = Field(default=64 * 1024, ge=1024, le=10 * 1024 * 1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("gcp_token_uri_allowlist", mode="before")
    @classmethod
    def _split_token_uris(cls, value: object) -> object:
        if isinstance(value, str):
            return [uri.strip() for uri in value.split(",") if uri.strip()]
        return value

    @field_validator("alert_expiry_lead_days", mode="before")
    @classmethod
    def _split_lead_days(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("alert_expiry_lead_days")
    @classmethod
    def _check_lead_days(cls, value: list[int]) -> list[int]:
        if not value or any(not 1 <= days <= 365 for days in value):
            raise ValueError("list 1 or more whole days between 1 and 365, e.g. 7,1")
        return sorted(set(value), reverse=True)

    @field_validator("alert_operator_email", "smtp_from")
    @classmethod
    def _check_email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("expected one email address such as ops@example.com")
        return value

    @field_validator("slack_webhook_url")
    @classmethod
    def _check_webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            return SecretStr(_endpoint_url(value.get_secret_value()))
        except ValueError:
            # The URL contains the webhook's token, so it is not quoted.
            raise ValueError(
                "expected an https:// Slack incoming webhook URL "
                "(http:// for loopback only)"
            ) from None

    @model_validator(mode="after")
    def _check_smtp_security(self) -> Settings:
        if (
            self.smtp_host is not None
            and self.smtp_username is not None
            and not self.smtp_starttls
            and not _is_loopback(self.smtp_host)
        ):
            raise ValueError(
                "SMTP_STARTTLS must be true when SMTP_USERNAME is set and "
                "SMTP_HOST is not a loopback address: the password would travel "
                "in plain text"
            )
        return self

    @field_validator(
        "aws_sts_endpoint",
        "azure_authority_host",
        "azure_authority_host_usgov",
        "azure_authority_host_china",
        "openai_api_base",
    )
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        return _endpoint_url(value)

    @field_validator("gcp_token_uri_allowlist")
    @classmethod
    def _check_token_uris(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one token endpoint URL")
        return [_endpoint_url(uri) for uri in value]

    @field_validator("bigquery_api_endpoint")
    @classmethod
    def _check_bigquery_endpoint(cls, value: str | None) -> str | None:
        return None if value is None else _endpoint_url(value)

    @field_validator("storage_api_endpoint")
    @classmethod
    def _check_storage_endpoint(cls, value: str | None) -> str | None:
        return None if value is None else _endpoint_url(value)

    @field_validator("storage_emulator_host")
    @classmethod
    def _check_storage_emulator_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "://" not in value:
            value = f"http://{value}"
        return _endpoint_url(value)

    @field_validator("backup_bucket")
    @classmethod
    def _check_backup_bucket(cls, value: str) -> str:
        if not _BUCKET_NAME.match(value):
            raise ValueError(
                "expected a Cloud Storage bucket name: 3 to 63 lower-case letters, "
                "digits, '-', '_' or '.', starting and ending with a letter or digit"
            )
        return value

    @field_validator("bigquery_location")
    @classmethod
    def _check_bigquery_location(cls, value: str | None) -> str | None:
        if value is not None and not _RESOURCE_ID.match(value):
            raise ValueError("expected a BigQuery location such as US or europe-west1")
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
        "alert_topic",
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

    @property
    def storage_endpoint(self) -> str | None:
        """The Cloud Storage emulator's URL, or None for Google's API."""
        return self.storage_api_endpoint or self.storage_emulator_host


def _endpoint_url(value: str) -> str:
    """Return ``value`` without a trailing slash if it is a usable endpoint URL."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("expected an https:// URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError("expected https://; http:// is allowed for loopback only")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("expected a URL without query, fragment or user info")
    return value.strip().rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
