from datetime import timedelta
from pathlib import Path

import pytest

from shared.config import Settings, load_settings
from shared.events import DirectAuditSink, PubSubAuditSink
from shared.keyservice import Principal
from shared.runtime import build_audit_sink, build_key_service
from shared.store._duckdb import DuckDBStore


@pytest.fixture
def settings(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        api_key_default_ttl_days=30,
        api_key_max_ttl_days=60,
        rotation_max_grace_hours=12,
        verify_cache_ttl_seconds=2.0,
        usage_flush_seconds=10.0,
    )


def test_audit_sink_default_is_direct(settings: Settings, tmp_path: Path) -> None:
    sink = build_audit_sink(settings, DuckDBStore(tmp_path / "store.duckdb"))

    assert isinstance(sink, DirectAuditSink)


def test_audit_sink_pubsub_selected(settings: Settings, tmp_path: Path) -> None:
    pubsub = settings.model_copy(update={"audit_delivery": "pubsub"})

    sink = build_audit_sink(pubsub, DuckDBStore(tmp_path / "store.duckdb"))

    assert isinstance(sink, PubSubAuditSink)


def test_key_service_policy_from_settings(settings: Settings) -> None:
    policy = build_key_service(settings).policy

    assert policy.default_ttl == timedelta(days=30)
    assert policy.max_ttl == timedelta(days=60)
    assert policy.max_rotation_grace == timedelta(hours=12)
    assert policy.verify_cache_seconds == 2.0
    assert policy.usage_flush_seconds == 10.0


def test_key_service_works_locally(settings: Settings) -> None:
    service = build_key_service(settings)

    _, issued = service.create_tenant(
        Principal.operator(), "acme", name="Acme", contact_email=None
    )

    assert service.verify(issued.api_key).tenant_id == "acme"
    assert (settings.data_dir / "keyring.json").exists()
    assert (settings.data_dir / "tenants_metadata.duckdb").exists()
