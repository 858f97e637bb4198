"""Fixtures for the credential tests: provider stand-ins, a faulty provider, a store.

The stand-ins (infra/provider_standins.py) run for the whole session on loopback
ports. ``faulty`` is a server that responds to every request the same wrong way,
for the indeterminate cases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from credential_helpers import KEY_PATH, Clock, FaultyProvider, endpoints_for

from infra.provider_standins import ProviderStandins, start_provider_standins
from shared.credentials import CredentialService, Fingerprinter, ProviderEndpoints
from shared.crypto import EnvelopeCipher, LocalKeyring
from shared.events import DirectAuditSink
from shared.store._duckdb import DuckDBStore

MakeService = Callable[..., CredentialService]


@pytest.fixture(scope="session")
def standins() -> Iterator[ProviderStandins]:
    running = start_provider_standins()
    yield running
    running.stop()


@pytest.fixture
def endpoints(standins: ProviderStandins) -> ProviderEndpoints:
    return endpoints_for(standins)


@pytest.fixture
def faulty() -> Iterator[FaultyProvider]:
    provider = FaultyProvider()
    yield provider
    provider.stop()


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    return DuckDBStore(tmp_path / "tenants.duckdb")


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring(tmp_path / "keyring.json")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_service(
    store: DuckDBStore,
    keyring: LocalKeyring,
    endpoints: ProviderEndpoints,
    clock: Clock,
) -> MakeService:
    """Return a factory of services on one store; keywords override the defaults."""

    def make(**overrides: Any) -> CredentialService:
        options: dict[str, Any] = {"clock": clock, **overrides}
        return CredentialService(
            store,
            EnvelopeCipher(keyring, KEY_PATH),
            DirectAuditSink(store),
            options.pop("endpoints", endpoints),
            Fingerprinter(b"k" * 32),
            **options,
        )

    return make


@pytest.fixture
def service(make_service: MakeService) -> CredentialService:
    return make_service()
