"""What only the BigQuery backend shows: table layout, retries, read dedup.

Faults BigQuery raises under load (concurrent-update conflicts, rate limits,
a slow job) come from ``FaultProxy`` placed between the client and bqemulator,
because the emulator runs one statement at a time and never raises them.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import store_records as records
from bqemulator_server import PROJECT, Emulator, bigquery_client
from fault_proxy import RATE_LIMIT_ERROR, SERIALIZATION_ERROR, FaultProxy
from google.api_core import exceptions as api_exceptions
from store_records import NOW

from shared.config import ConfigError, load_settings
from shared.store import StoreError, TransientStoreError, build_store
from shared.store._bigquery import BigQueryStore, _is_transient
from shared.store.schema import TABLES, bigquery_schema

StoreFactory = Callable[..., BigQueryStore]


# Tables


def test_tables_created_with_layout(
    bigquery_store: BigQueryStore, bigquery_emulator: Emulator
) -> None:
    bigquery_store.get_tenant("acme")
    client = bigquery_client(bigquery_emulator.endpoint)

    audit = client.get_table(f"{bigquery_store.dataset}.tenant_audit_logs")
    keys = client.get_table(f"{bigquery_store.dataset}.tenant_api_keys")
    credentials = client.get_table(f"{bigquery_store.dataset}.tenant_credentials")

    assert audit.time_partitioning.type_ == "DAY"
    assert audit.time_partitioning.field == "created_at"
    assert audit.clustering_fields == ["tenant_id"]
    assert keys.clustering_fields == ["tenant_id"]
    assert credentials.clustering_fields == ["tenant_id"]


def test_tables_match_schema(
    bigquery_store: BigQueryStore, bigquery_emulator: Emulator
) -> None:
    bigquery_store.get_tenant("acme")
    client = bigquery_client(bigquery_emulator.endpoint)

    for table in TABLES.values():
        created = client.get_table(f"{bigquery_store.dataset}.{table.name}")
        fields = [(f.name, f.field_type, f.mode) for f in created.schema]
        expected = [(c["name"], c["type"], c["mode"]) for c in bigquery_schema(table)]
        assert fields == expected, table.name


def test_missing_tables_not_created(
    bigquery_emulator: Emulator,
) -> None:
    store = BigQueryStore(
        bigquery_client(bigquery_emulator.endpoint), "never_created", timeout_seconds=5
    )

    with pytest.raises(StoreError) as caught:
        store.get_tenant("acme")
    assert not isinstance(caught.value, TransientStoreError)


def test_dataset_id_checked(bigquery_emulator: Emulator) -> None:
    client = bigquery_client(bigquery_emulator.endpoint)

    with pytest.raises(ValueError, match="TENANTS_DATASET_ID"):
        BigQueryStore(client, "tenants-metadata")


def test_naive_timestamp_rejected(bigquery_store: BigQueryStore) -> None:
    key = records.api_key(created_at=datetime(2026, 3, 1, 12, 0))

    with pytest.raises(ValueError, match="created_at must be a timezone-aware"):
        bigquery_store.insert_api_key(key)


# Writes


def test_writes_never_stream(
    make_bigquery_store: StoreFactory, fault_proxy: FaultProxy
) -> None:
    store = make_bigquery_store(fault_proxy.endpoint)
    key = records.api_key()

    store.insert_api_key(key)
    store.append_usage([records.usage(key, NOW)])
    store.insert_audit_events([records.event()])
    store.revoke_api_key("acme", key.api_key_id, NOW, "operator")

    assert not [path for path in fault_proxy.paths if "insertAll" in path]
    assert [path for path in fault_proxy.paths if path.endswith("/jobs")]


def test_audit_racing_copy_listed_once(
    bigquery_store: BigQueryStore, bigquery_emulator: Emulator
) -> None:
    # Two INSERTs running at once can both pass the NOT IN check on BigQuery.
    # The emulator runs them in turn, so the second copy is written directly.
    event = records.event()
    bigquery_store.insert_audit_events([event])
    client = bigquery_client(bigquery_emulator.endpoint)
    table = f"`{bigquery_store.dataset}.tenant_audit_logs`"
    client.query(f"INSERT INTO {table} SELECT * FROM {table}").result()  # noqa: S608
    count = client.query(f"SELECT COUNT(*) AS n FROM {table}").result()  # noqa: S608

    assert next(iter(count))["n"] == 2
    assert bigquery_store.list_audit_events("acme") == [event]
    assert bigquery_store.list_audit_events(None) == [event]


def test_audit_slow_first_insert(
    make_bigquery_store: StoreFactory, fault_proxy: FaultProxy
) -> None:
    direct = make_bigquery_store()
    slow = make_bigquery_store(fault_proxy.endpoint)
    slow.get_tenant("acme")
    event = records.event()
    arrived, release = fault_proxy.hold_job("INSERT INTO tenant_audit_logs")
    first: list[int] = []
    thread = threading.Thread(
        target=lambda: first.append(slow.insert_audit_events([event]))
    )

    thread.start()
    assert arrived.wait(timeout=60)
    redelivered = direct.insert_audit_events([event])
    release.set()
    thread.join()

    assert redelivered == 1
    assert first == [0]
    assert direct.list_audit_events("acme") == [event]


# Retries


def test_retry_after_concurrent_update(
    make_bigquery_store: StoreFactory, fault_proxy: FaultProxy
) -> None:
    store = make_bigquery_store(fault_proxy.endpoint)
    key = records.api_key()
    store.insert_api_key(key)
    fault_proxy.fail_job("UPDATE tenant_api_keys", SERIALIZATION_ERROR, times=2)

    assert store.revoke_api_key("acme", key.api_key_id, NOW, "operator")

    stored = store.get_api_key("acme", key.api_key_id)
    assert stored is not None
    assert stored.is_active is False


def test_retry_after_rate_limit(
    make_bigquery_store: StoreFactory, fault_proxy: FaultProxy
) -> None:
    store = make_bigquery_store(fault_proxy.endpoint)
    event = records.event()
    store.get_tenant("acme")
    fault_proxy.reject_request("INSERT INTO tenant_audit_logs", 403, RATE_LIMIT_ERROR)

    assert store.insert_audit_events([event]) == 1
    assert store.list_audit_events("acme") == [event]


def test_retries_exhausted_transient(
    make_bigquery_store: StoreFactory, fault_proxy: FaultProxy
) -> None:
    store = make_bigquery_store(fault_proxy.endpoint, timeout_seconds=1.0)
    key = records.api_key()
    store.insert_api_key(key)
    fault_proxy.fail_job("UPDATE tenant_api_keys", SERIALIZATION_ERROR)

    with pytest.raises(TransientStoreError, match="BigQuery is busy"):
        store.revoke_api_key("acme", key.api_key_id, NOW, "operator")
    assert store.get_api_key("acme", key.api_key_id) == key


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (api_exceptions.BadRequest(SERIALIZATION_ERROR["message"]), True),
        (
            api_exceptions.BadRequest(
                "Transaction is aborted due to concurrent update against table t"
            ),
            True,
        ),
        (
            api_exceptions.BadRequest(
                "Resources exceeded during query execution: Too many DML "
                "statements outstanding against table p:d.t, limit is 20."
            ),
            True,
        ),
        (api_exceptions.Forbidden("quota", errors=[RATE_LIMIT_ERROR]), True),
        (api_exceptions.TooManyRequests("slow down"), True),
        (api_exceptions.ServiceUnavailable("try later"), True),
        (api_exceptions.BadRequest("Syntax error: Unexpected keyword"), False),
        (api_exceptions.NotFound("Not found: Table p:d.t"), False),
        (api_exceptions.Forbidden("Access Denied: Table p:d.t"), False),
    ],
)
def test_transient_errors_classified(
    error: api_exceptions.GoogleAPICallError, transient: bool
) -> None:
    assert _is_transient(error) is transient


# Settings


def test_build_store_from_settings(
    clean_env: pytest.MonkeyPatch, bigquery_emulator: Emulator
) -> None:
    clean_env.setenv("STORE_BACKEND", "bigquery")
    clean_env.setenv("BIGQUERY_API_ENDPOINT", bigquery_emulator.endpoint)
    clean_env.setenv("BIGQUERY_PROJECT_ID", PROJECT)
    clean_env.setenv("BIGQUERY_CREATE_TABLES", "true")
    clean_env.setenv("TENANTS_DATASET_ID", "tenants_from_settings")

    store = build_store(load_settings())
    store.create_tenant(records.tenant(), records.admin())

    assert isinstance(store, BigQueryStore)
    assert store.dataset == f"{PROJECT}.tenants_from_settings"
    assert store.get_tenant("acme") == records.tenant()


def test_endpoint_setting_checked(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BIGQUERY_API_ENDPOINT", "http://bigquery.example.com")

    with pytest.raises(ConfigError, match="BIGQUERY_API_ENDPOINT"):
        load_settings()


def test_duckdb_skips_bigquery_import(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from shared.config import load_settings\n"
        "from shared.store import build_store\n"
        f"build_store(load_settings(data_dir={str(tmp_path)!r})).get_tenant('x')\n"
        "print('google.cloud.bigquery' in sys.modules)\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )

    assert result.stdout.strip() == "False"
