"""Store fixtures: every contract test runs on DuckDB and on bqemulator.

The emulator is one process for the session, on a free loopback port; each test
gets a dataset of its own. If the emulator cannot be installed or started, the
BigQuery tests fail: they are never skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bqemulator_server import Emulator, bigquery_client, install, start
from fault_proxy import FaultProxy

from shared.store import Store
from shared.store._bigquery import BigQueryStore
from shared.store._duckdb import DuckDBStore


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    venv = install()
    emulator = start(tmp_path_factory.mktemp("bqemulator") / "server.log", venv=venv)
    yield emulator
    emulator.stop()


@pytest.fixture
def make_bigquery_store(
    bigquery_emulator: Emulator,
) -> Callable[..., BigQueryStore]:
    """Return a factory of stores on one fresh dataset, optionally via a proxy."""
    dataset = f"tenants_{uuid.uuid4().hex[:12]}"

    def make(endpoint: str | None = None, **options: float) -> BigQueryStore:
        client = bigquery_client(endpoint or bigquery_emulator.endpoint)
        return BigQueryStore(client, dataset, create_tables=True, **options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def bigquery_store(make_bigquery_store: Callable[..., BigQueryStore]) -> BigQueryStore:
    return make_bigquery_store()


@pytest.fixture
def fault_proxy(bigquery_emulator: Emulator) -> Iterator[FaultProxy]:
    proxy = FaultProxy(bigquery_emulator.endpoint)
    yield proxy
    proxy.close()


@pytest.fixture(params=["duckdb", "bigquery"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "duckdb":
        return DuckDBStore(tmp_path / "tenants.duckdb")
    store: BigQueryStore = request.getfixturevalue("bigquery_store")
    return store
