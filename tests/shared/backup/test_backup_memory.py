"""Export memory stays flat as the table grows: a sanity bound, not a benchmark."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, date, datetime, timedelta

import duckdb
from backup_helpers import store_path

from shared.backup import build_runner
from shared.config import Settings
from shared.crypto import EnvelopeCipher, RecordContext, build_kms
from shared.store._duckdb import DuckDBStore

SMALL_ROWS = 1500
LARGE_ROWS = 6000


def fill_api_keys(settings: Settings, rows: int) -> None:
    """Insert ``rows`` key rows in one statement batch (the store's schema)."""
    path = store_path(settings)
    DuckDBStore(path).get_tenant("acme")  # creates the tables
    cipher = EnvelopeCipher(build_kms(settings), settings.api_key_kms_path)
    ciphertext = cipher.encrypt(b"x" * 48, RecordContext("acme", "api_key", "k"))
    now = datetime(2025, 3, 1, tzinfo=UTC)
    values = [
        (
            f"key_{index:032x}",
            "acme",
            None,
            f"{index:064x}",
            ciphertext,
            "acme_api_AbCd",
            f"key {index}",
            "api",
            True,
            now + timedelta(days=90),
            now,
            "operator",
        )
        for index in range(rows)
    ]
    con = duckdb.connect(str(path))
    try:
        con.executemany(
            "INSERT INTO tenant_api_keys (api_key_id, tenant_id, user_id, "
            "api_key_hash, encrypted_api_key, key_prefix, name, scopes, is_active, "
            "expires_at, created_at, created_by_user_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )
    finally:
        con.close()


def peak_export_memory(settings: Settings, rows: int) -> int:
    fill_api_keys(settings, rows)
    runner = build_runner(settings)
    tracemalloc.start()
    try:
        runner.run(date(2025, 3, 1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def test_export_memory_flat(settings: Settings) -> None:
    small = settings.model_copy(
        update={
            "data_dir": settings.data_dir / "small",
            "backup_bucket": f"{settings.backup_bucket}-s",
            "backup_shard_max_bytes": 64 * 1024,
        }
    )
    large = small.model_copy(
        update={
            "data_dir": settings.data_dir / "large",
            "backup_bucket": f"{settings.backup_bucket}-l",
        }
    )

    small_peak = peak_export_memory(small, SMALL_ROWS)
    large_peak = peak_export_memory(large, LARGE_ROWS)

    # Four times the rows; a whole-table buffer would show about four times
    # the peak. Shards and batches keep it near the small run's.
    assert large_peak < small_peak * 1.5
