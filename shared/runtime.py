"""Builds the service objects a function or the command line needs from settings."""

from __future__ import annotations

from datetime import timedelta

from shared.config import Settings
from shared.crypto import EnvelopeCipher, build_kms
from shared.events import AuditSink, DirectAuditSink, PubSubAuditSink
from shared.keyservice import KeyPolicy, KeyService
from shared.store import Store, build_store

__all__ = ["build_audit_sink", "build_key_service"]


def build_audit_sink(settings: Settings, store: Store) -> AuditSink:
    if settings.audit_delivery == "pubsub":
        return PubSubAuditSink(
            settings.pubsub_project_id,
            settings.audit_topic,
            store,
            timeout_seconds=settings.publish_timeout_seconds,
        )
    return DirectAuditSink(store)


def build_key_service(settings: Settings, store: Store | None = None) -> KeyService:
    store = store or build_store(settings)
    audit = build_audit_sink(settings, store)
    cipher = EnvelopeCipher(
        build_kms(settings, audit=audit),
        settings.api_key_kms_path,
        data_key_seconds=settings.data_key_cache_seconds,
    )
    policy = KeyPolicy(
        default_ttl=timedelta(days=settings.api_key_default_ttl_days),
        max_ttl=timedelta(days=settings.api_key_max_ttl_days),
        max_rotation_grace=timedelta(hours=settings.rotation_max_grace_hours),
        verify_cache_seconds=settings.verify_cache_ttl_seconds,
        usage_flush_seconds=settings.usage_flush_seconds,
    )
    return KeyService(store, cipher, audit, policy)
