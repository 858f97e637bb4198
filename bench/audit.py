"""The audit writer: Pub/Sub deliveries into the store, with redelivery."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from cloudevents.http import CloudEvent

from bench import _report as report
from bench._dataset import build_audit_store, tenant_id
from bench._functions import load_function
from bench._report import Row, SuiteResult
from bench._scale import Scale
from shared.events import AuditEvent, new_event
from shared.store._duckdb import _AUDIT_COLUMNS, DuckDBStore, _audit_row

TARGET = 20.0
# Every REDELIVERY_EVERY-th delivery repeats an earlier event.
REDELIVERY_EVERY = 10

METHOD = """
The store starts with the pre-filled audit table given below. The figure
imports `functions/audit_writer/main.py` in a process of its own (embedded
store, default settings, stdout to /dev/null) and calls its entry point with
one Pub/Sub CloudEvent per delivery, as push delivery does, from as many
threads at once as one deployed instance serves requests: 32, the
`function_request_concurrency` of `audit_writer` in infra/terraform (the
Terraform also sets `THREADS` to it). A `THREADS` variable overrides it here.
Pub/Sub push keeps many deliveries outstanding, so every thread always has
one. Concurrent deliveries share an
INSERT (group commit, `AUDIT_BATCH_WINDOW_SECONDS`). Every tenth delivery
repeats an earlier event. The baseline writes other events of the same shape
with the same redeliveries over one DuckDB connection it keeps open, one
transaction and one `INSERT ... ON CONFLICT DO NOTHING` per delivery, from
one thread. The batch row hands `DuckDBStore.insert_audit_events` the
deliveries in batches of a fixed size. Every side checks that the table grew
by exactly the number of distinct events.
"""


def run(scale: Scale, work_dir: Path) -> SuiteResult:
    data_dir = work_dir / "audit-data"
    path = build_audit_store(data_dir, scale.audit_prefill)
    module = load_function("audit_writer", data_dir, work_dir)

    events = _deliveries(scale.audit_deliveries)
    cloud_events = [_cloud_event(event, n) for n, event in enumerate(events)]
    threads = _server_threads()
    function_rate = _timed(
        path, events, lambda: _call_all(module, cloud_events, threads)
    )

    events = _deliveries(scale.audit_deliveries)
    baseline_rate = _timed(path, events, lambda: _insert_each(path, events))

    events = _deliveries(scale.audit_deliveries * 4)
    store = DuckDBStore(path)
    batch_rate = _timed(path, events, lambda: _insert_batches(store, events, scale))

    unique = len({event.event_id for event in events})
    result = SuiteResult("Audit writer", method=METHOD)
    gain = function_rate / baseline_rate
    result.rows.append(
        Row(
            path="audit writer",
            figure=f"{report.count(function_rate)} deliveries/s",
            baseline=f"one transaction per event: {report.count(baseline_rate)}/s",
            ratio=report.ratio(gain),
            target=f"{TARGET:g}x the baseline",
            result=report.verdict(
                gain >= TARGET, f"{report.ratio(gain)} of the baseline"
            ),
        )
    )
    result.rows.append(
        Row(
            path=f"(what-if) audit store, batches of {scale.audit_batch}",
            figure=f"{report.count(batch_rate)} deliveries/s",
            baseline=f"one transaction per event: {report.count(baseline_rate)}/s",
            ratio=report.ratio(batch_rate / baseline_rate),
            target="none: what batches of a fixed size reach",
            result=f"the function's batches hold at most {threads} deliveries",
        )
    )
    result.notes.append(
        f"The audit table held {scale.audit_prefill:,} events before the run; "
        f"{len(events) - unique:,} of the {len(events):,} deliveries of the batch "
        "row were redeliveries, and the same share on the other rows. "
        f"The function was called from {threads} threads."
    )
    return result


def _deliveries(unique: int) -> list[AuditEvent]:
    """Return ``unique`` new events with every tenth delivery a redelivery."""
    events: list[AuditEvent] = []
    for n in range(unique):
        events.append(
            new_event(
                "api_key.created",
                tenant_id=tenant_id(n % 1000),
                actor_id="operator",
                ip_address="192.0.2.1",
                user_agent="bench",
                details={"api_key_id": f"key_{n}", "scopes": ["api"]},
            )
        )
        if n % REDELIVERY_EVERY == REDELIVERY_EVERY - 1:
            events.append(events[n // 2])
    return events


def _cloud_event(event: AuditEvent, number: int) -> CloudEvent:
    data = base64.b64encode(event.to_message()).decode("ascii")
    attributes = {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/local-project/topics/audit-events",
        "id": f"delivery-{number}",
    }
    return CloudEvent(attributes, {"message": {"data": data, "messageId": str(number)}})


def _timed(path: Path, events: Sequence[AuditEvent], work: Callable[[], None]) -> float:
    """Run ``work`` and return deliveries per second.

    Raises AssertionError unless the table grew by exactly the distinct events.
    """
    before = _audit_rows(path)
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    grown = _audit_rows(path) - before
    expected = len({event.event_id for event in events})
    if grown != expected:
        raise AssertionError(f"audit table grew by {grown}, expected {expected}")
    return len(events) / seconds


def _audit_rows(path: Path) -> int:
    con = duckdb.connect(str(path))
    try:
        row = con.execute("SELECT count(*) FROM tenant_audit_logs").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


# Requests one deployed audit_writer instance serves at once:
# function_request_concurrency in infra/terraform/variables.tf.
DEPLOYED_CONCURRENCY = 32


def _server_threads() -> int:
    """Return the requests one deployed instance serves at once."""
    return int(os.environ.get("THREADS", DEPLOYED_CONCURRENCY))


def _call_all(module: object, cloud_events: Sequence[CloudEvent], threads: int) -> None:
    """Deliver every event, each thread taking the next as it finishes one."""
    entry_point = module.audit_writer  # type: ignore[attr-defined]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(entry_point, cloud_events):
            pass


def _insert_each(path: Path, events: Sequence[AuditEvent]) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        placeholders = ", ".join("?" * len(_AUDIT_COLUMNS.split(", ")))
        sql = (
            f"INSERT INTO tenant_audit_logs ({_AUDIT_COLUMNS}) "  # noqa: S608
            f"VALUES ({placeholders}) ON CONFLICT DO NOTHING"
        )
        for event in events:
            con.execute("BEGIN TRANSACTION")
            con.execute(sql, _audit_row(event, datetime.now(UTC)))
            con.execute("COMMIT")
    finally:
        con.close()


def _insert_batches(
    store: DuckDBStore, events: Sequence[AuditEvent], scale: Scale
) -> None:
    for start in range(0, len(events), scale.audit_batch):
        store.insert_audit_events(events[start : start + scale.audit_batch])
