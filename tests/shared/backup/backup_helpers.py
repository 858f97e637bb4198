"""Helpers of the backup tests: a populated store, object edits, settings."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.provider_standins import OpenAIStandin
from shared.backup import Bucket, build_bucket
from shared.config import Settings, load_settings
from shared.credentials import CredentialService, Fingerprinter, ProviderEndpoints
from shared.credentials.service import Submission
from shared.crypto import EnvelopeCipher, build_kms
from shared.events import DirectAuditSink
from shared.keyservice import IssuedKey, KeyService, Principal
from shared.runtime import build_key_service
from shared.store import CredentialRecord, build_store

OPERATOR = Principal.operator()
TENANTS = ("acme", "globex")


def make_settings(
    data_dir: Path, emulator_url: str, bucket: str, **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "kms_backend": "local",
        "store_backend": "duckdb",
        "audit_delivery": "store",
        "verify_cache_ttl_seconds": 0,
        "storage_api_endpoint": emulator_url,
        "backup_bucket": bucket,
        "backup_include_audit_logs": True,
    }
    return load_settings(**(values | extra))


def settings_env(settings: Settings) -> dict[str, str]:
    """Return the environment variables that select ``settings``."""
    return {
        "DATA_DIR": str(settings.data_dir),
        "KMS_BACKEND": "local",
        "STORE_BACKEND": "duckdb",
        "AUDIT_DELIVERY": "store",
        "STORAGE_API_ENDPOINT": str(settings.storage_api_endpoint),
        "BACKUP_BUCKET": settings.backup_bucket,
        "BACKUP_INCLUDE_AUDIT_LOGS": str(settings.backup_include_audit_logs).lower(),
        "BACKUP_SHARD_MAX_BYTES": str(settings.backup_shard_max_bytes),
        "VERIFY_CACHE_TTL_SECONDS": "0",
    }


def credential_service(settings: Settings, openai: OpenAIStandin) -> CredentialService:
    store = build_store(settings)
    endpoints = ProviderEndpoints(
        aws_sts_endpoint="https://sts.amazonaws.com",
        aws_sts_region="us-east-1",
        azure_authority_hosts={
            "public": "https://login.microsoftonline.com",
            "usgov": "https://login.microsoftonline.us",
            "china": "https://login.chinacloudapi.cn",
        },
        openai_api_base=openai.api_base,
        gcp_token_uris=("https://oauth2.googleapis.com/token",),
    )
    return CredentialService(
        store,
        EnvelopeCipher(build_kms(settings), settings.credentials_kms_path),
        DirectAuditSink(store),
        endpoints,
        Fingerprinter(b"k" * 32),
    )


@dataclass
class Populated:
    """What was written before a backup: issued keys and stored secrets."""

    keys: list[IssuedKey] = field(default_factory=list)
    credentials: list[CredentialRecord] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)

    @property
    def api_keys(self) -> list[str]:
        return [issued.api_key for issued in self.keys]


def populate(
    settings: Settings, openai: OpenAIStandin, keys_per_tenant: int = 3
) -> Populated:
    """Create two tenants with keys and credentials through the services."""
    service = build_key_service(settings)
    populated = Populated()
    for tenant in TENANTS:
        _, admin_key = service.create_tenant(
            OPERATOR, tenant, name=tenant.title(), contact_email=f"ops@{tenant}.test"
        )
        populated.keys.append(admin_key)
        for number in range(keys_per_tenant):
            populated.keys.append(
                service.issue_key(OPERATOR, tenant_id=tenant, name=f"key {number}")
            )
        admin = Principal(admin_key.record.api_key_id, tenant, None, ("admin", "api"))
        credentials = credential_service(settings, openai)
        for number in range(2):
            fields = openai.create_key()
            record, _ = credentials.store(
                admin, Submission("openai", fields, name=f"openai {number}")
            )
            populated.credentials.append(record)
            populated.secrets.append(fields["api_key"])
    return populated


def key_service(settings: Settings) -> KeyService:
    return build_key_service(settings)


def store_path(settings: Settings) -> Path:
    return settings.data_dir / f"{settings.tenants_dataset_id}.duckdb"


def bucket_of(settings: Settings) -> Bucket:
    return build_bucket(settings)


def overwrite(bucket: Bucket, name: str, content: bytes) -> None:
    """Replace an object's content, as damage or tampering would."""
    info = bucket.stat(name)
    assert info is not None
    bucket.replace(name, io.BytesIO(content), len(content), info.generation)


def read_object(bucket: Bucket, name: str) -> bytes:
    info = bucket.stat(name)
    assert info is not None
    return b"".join(bucket.read(info))


def all_objects(bucket: Bucket) -> dict[str, int]:
    """Every object in the bucket, with its generation."""
    return {info.name: info.generation for info in bucket.list("")}
