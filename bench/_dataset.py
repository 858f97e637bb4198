"""Generated data sets: DuckDB store files bulk-loaded with INSERT ... SELECT.

A key store of ``rows`` keys contains ``samples`` real keys, made by
``shared.apikeys`` and encrypted by ``EnvelopeCipher``, so verification finds
them. The other rows are filler generated in SQL: their hashes are SHA-256 of
a counter, and their ciphertexts repeat eight real envelope ciphertexts, so
rows have the size and shape of real ones without a million encryptions.
Expiry times spread over 400 days starting 30 days ago, and one key in 50 is
revoked, so the expiry scan has work to do.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from shared import apikeys
from shared.config import Settings
from shared.crypto import EnvelopeCipher, LocalKeyring, RecordContext
from shared.crypto.managers import API_KEY_KIND
from shared.store._duckdb import create_table_sql
from shared.store.schema import TABLES

# Default settings, built without reading the environment or a .env file.
API_KEY_KMS_PATH = Settings.model_construct().api_key_kms_path
STORE_FILE = f"{Settings.model_construct().tenants_dataset_id}.duckdb"
TENANTS = 1000
_DISTINCT_CIPHERTEXTS = 8


@dataclass(frozen=True, slots=True)
class KeyStore:
    """A data folder with a keyring and a store file of generated keys."""

    data_dir: Path
    rows: int
    sample_keys: tuple[str, ...]

    @property
    def path(self) -> Path:
        return self.data_dir / STORE_FILE


def tenant_id(number: int) -> str:
    return f"tenant_{number:04d}"


def build_key_store(data_dir: Path, rows: int, *, samples: int) -> KeyStore:
    """Create ``data_dir`` with a store of ``rows`` keys, ``samples`` of them real."""
    if samples > rows:
        raise ValueError("samples must not exceed rows")
    data_dir.mkdir(parents=True, exist_ok=True)
    cipher = EnvelopeCipher(LocalKeyring(data_dir / "keyring.json"), API_KEY_KMS_PATH)
    now = datetime.now(UTC)
    con = _create(data_dir / STORE_FILE)
    try:
        con.execute(
            "INSERT INTO tenants SELECT 'tenant_' || lpad(i::VARCHAR, 4, '0'), "
            "'Tenant ' || i, NULL, 'active', ? FROM range(?) t(i)",
            [now, TENANTS],
        )
        _insert_filler_keys(con, cipher, rows - samples, now)
        keys = _insert_sample_keys(con, cipher, samples, now)
        # One usage batch per key, as a day of traffic would leave.
        con.execute(
            "INSERT INTO tenant_usage SELECT tenant_id, api_key_id, "
            "1 + hash(api_key_id) % 100, created_at, created_at + INTERVAL 1 HOUR, "
            "created_at + INTERVAL 1 HOUR FROM tenant_api_keys"
        )
    finally:
        con.close()
    return KeyStore(data_dir, rows, keys)


def build_unindexed_copy(source: Path, target: Path) -> None:
    """Copy the key table of ``source`` into ``target`` without any constraint."""
    target.unlink(missing_ok=True)
    con = duckdb.connect(str(target))
    try:
        con.execute(f"ATTACH '{source}' AS source (READ_ONLY)")
        con.execute(
            "CREATE TABLE tenant_api_keys AS SELECT * FROM source.tenant_api_keys"
        )
        con.execute("DETACH source")
    finally:
        con.close()


def build_audit_store(data_dir: Path, rows: int) -> Path:
    """Create a store whose audit table already contains ``rows`` events."""
    data_dir.mkdir(parents=True, exist_ok=True)
    con = _create(data_dir / STORE_FILE)
    try:
        con.execute(
            "INSERT INTO tenant_audit_logs SELECT uuid()::VARCHAR, 'api_key.created',"
            " 'tenant_' || lpad((i % ?)::VARCHAR, 4, '0'), NULL, 'operator', "
            "'192.0.2.1', 'bench', now() - to_seconds(i), now(), "
            "'{\"api_key_id\": \"key_' || i || '\"}' FROM range(?) t(i)",
            [TENANTS, rows],
        )
    finally:
        con.close()
    return data_dir / STORE_FILE


def _create(path: Path) -> duckdb.DuckDBPyConnection:
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    for table in TABLES.values():
        con.execute(create_table_sql(table))
    return con


def _insert_filler_keys(
    con: duckdb.DuckDBPyConnection, cipher: EnvelopeCipher, rows: int, now: datetime
) -> None:
    ciphertexts = [
        cipher.encrypt(
            apikeys.generate_api_key(tenant_id(n)).encode("ascii"),
            RecordContext(tenant_id(n), API_KEY_KIND, f"key_filler{n}"),
        )
        for n in range(_DISTINCT_CIPHERTEXTS)
    ]
    con.execute(
        "INSERT INTO tenant_api_keys SELECT 'key_' || md5('filler' || i), "
        "'tenant_' || lpad((i % ?)::VARCHAR, 4, '0'), NULL, "
        "sha256('filler' || i), list_extract(?::BLOB[], (i % ?) + 1), "
        "'tenant_' || lpad((i % ?)::VARCHAR, 4, '0') || '_api_Ab12', NULL, 'api', "
        "i % 50 <> 0, ? + to_seconds((i * 104729) % 34560000) - INTERVAL 30 DAY, "
        "? - INTERVAL 60 DAY, 'operator', "
        "CASE WHEN i % 50 = 0 THEN ? - INTERVAL 1 DAY END, "
        "CASE WHEN i % 50 = 0 THEN 'operator' END, NULL FROM range(?) t(i)",
        [
            TENANTS,
            ciphertexts,
            _DISTINCT_CIPHERTEXTS,
            TENANTS,
            now,
            now,
            now,
            rows,
        ],
    )


def _insert_sample_keys(
    con: duckdb.DuckDBPyConnection, cipher: EnvelopeCipher, samples: int, now: datetime
) -> tuple[str, ...]:
    keys: list[str] = []
    columns: list[list[object]] = [[] for _ in range(6)]
    for n in range(samples):
        tenant = tenant_id(n % TENANTS)
        key = apikeys.generate_api_key(tenant)
        key_id = f"key_{uuid.uuid4().hex}"
        context = RecordContext(tenant, API_KEY_KIND, key_id)
        values = (
            key_id,
            tenant,
            apikeys.hash_api_key(key),
            cipher.encrypt(key.encode("ascii"), context),
            apikeys.display_prefix(key),
            now + timedelta(days=90),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
        keys.append(key)
    con.execute(
        "INSERT INTO tenant_api_keys SELECT unnest(?::VARCHAR[]), "
        "unnest(?::VARCHAR[]), NULL, unnest(?::VARCHAR[]), unnest(?::BLOB[]), "
        "unnest(?::VARCHAR[]), 'bench', 'admin api', true, "
        "unnest(?::TIMESTAMPTZ[]), ? - INTERVAL 1 DAY, 'operator', NULL, NULL, NULL",
        [*columns, now],
    )
    return tuple(keys)
