"""The expiry scan: the store's one query against a Python loop over every row."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from bench import _report as report
from bench._dataset import KeyStore
from bench._report import NOT_BUILT, Row, SuiteResult
from bench._scale import Scale
from shared.store._duckdb import DuckDBStore

TARGET_SECONDS = 1.0
# The alerter's longest default lead (ALERT_EXPIRY_LEAD_DAYS 7,1).
LEAD = timedelta(days=7)
_REPEATS = 3

METHOD = """
The figure calls `DuckDBStore.list_expiring(now, now + 7 days)`, the query
the expiry alerter runs for its longest default lead: active keys and
credentials that expire in the window, leaving out keys another key was
rotated from, with the tenant's contact. It includes opening the store file.
The baseline opens the file, reads every key row with one query and applies
the same rules in a Python loop. Each side runs three times; the table shows
the median, and both must return the same keys.
"""


def run(scale: Scale, stores: dict[int, KeyStore]) -> SuiteResult:
    result = SuiteResult("Expiry scan", method=METHOD)
    key_store = stores[scale.expiry_rows]
    store = DuckDBStore(key_store.path)
    if not hasattr(store, "list_expiring"):
        result.rows.append(
            Row("expiry scan", "—", "—", "—", "one query, under a second", NOT_BUILT)
        )
        return result

    now = datetime.now(UTC)
    query_times, loop_times = [], []
    for _ in range(_REPEATS):
        start = time.perf_counter()
        found = store.list_expiring(now, now + LEAD)
        query_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        looped = _python_loop(key_store.path, now)
        loop_times.append(time.perf_counter() - start)

    expected = {(item.tenant_id, item.item_id) for item in found}
    if looped != expected:
        raise AssertionError("the query and the loop found different keys")

    query, loop = statistics.median(query_times), statistics.median(loop_times)
    result.rows.append(
        Row(
            path=f"expiry scan, {scale.expiry_rows:,} keys",
            figure=f"{report.duration(query)} for {len(found):,} expiring keys",
            baseline=f"Python loop over every row: {report.duration(loop)}",
            ratio=f"{report.ratio(loop / query)} faster",
            target="one query, under a second",
            result=report.verdict(
                query < TARGET_SECONDS, f"{report.duration(query)}, not under 1 s"
            ),
        )
    )
    result.notes.append(
        f"{scale.expiry_rows:,} keys with expiry times spread over 400 days from "
        "30 days ago; one in 50 revoked; no stored credentials."
    )
    return result


def _python_loop(path: Path, now: datetime) -> set[tuple[str, str]]:
    con = duckdb.connect(str(path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(
            "SELECT tenant_id, api_key_id, is_active, expires_at, rotated_from_key_id "
            "FROM tenant_api_keys"
        ).fetchall()
    finally:
        con.close()
    rotated = {(tenant, source) for tenant, _, _, _, source in rows if source}
    until = now + LEAD
    return {
        (tenant, key_id)
        for tenant, key_id, active, expires_at, _ in rows
        if active and now < expires_at <= until and (tenant, key_id) not in rotated
    }
