"""Sizes and time budgets: ``full`` for the record, ``small`` for a smoke run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scale:
    name: str
    # Seconds each timed loop runs, at most.
    seconds: float
    warm_keys: int
    cold_sizes: tuple[int, int]
    # Distinct real keys per store: each cold verification uses a new one.
    cold_samples: int
    http_seconds: float
    http_clients: int
    envelope_records: int
    envelope_tenants: int
    audit_prefill: int
    audit_deliveries: int
    audit_batch: int
    backup_sizes: tuple[int, int]
    expiry_rows: int
    import_repeats: int

    def key_store_sizes(self) -> list[int]:
        sizes = {*self.cold_sizes, *self.backup_sizes, self.expiry_rows}
        return sorted(sizes)


FULL = Scale(
    name="full",
    seconds=2.0,
    warm_keys=1000,
    cold_sizes=(10_000, 1_000_000),
    cold_samples=3000,
    http_seconds=5.0,
    http_clients=8,
    envelope_records=20_000,
    envelope_tenants=10,
    audit_prefill=1_000_000,
    audit_deliveries=600,
    audit_batch=500,
    backup_sizes=(100_000, 1_000_000),
    expiry_rows=1_000_000,
    import_repeats=7,
)

SMALL = Scale(
    name="small",
    seconds=0.4,
    warm_keys=200,
    cold_sizes=(2_000, 20_000),
    cold_samples=500,
    http_seconds=2.5,
    http_clients=4,
    envelope_records=2000,
    envelope_tenants=10,
    audit_prefill=20_000,
    audit_deliveries=100,
    audit_batch=100,
    backup_sizes=(5_000, 20_000),
    expiry_rows=20_000,
    import_repeats=3,
)

SCALES = {scale.name: scale for scale in (FULL, SMALL)}
