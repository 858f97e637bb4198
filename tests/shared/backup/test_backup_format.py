"""Row lines, run names and manifests, without a bucket."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from shared.backup import Manifest, ManifestError, parse_slot, run_name, slot_of
from shared.backup._layout import run_of_object, table_file
from shared.backup._rows import decode_row, encode_row
from shared.store.schema import TABLES

KEYS = TABLES["tenant_api_keys"]
ROW = [
    "key_1",
    "acme",
    None,
    "ab" * 32,
    bytes(range(256)),
    "acme_api_AbCd",
    "ci",
    "api",
    True,
    datetime(2025, 6, 1, 12, 0, 0, 512000, tzinfo=UTC),
    datetime(2025, 3, 1, tzinfo=UTC),
    "operator",
    None,
    None,
    None,
]


def test_row_round_trip() -> None:
    assert decode_row(KEYS, encode_row(KEYS, ROW)) == ROW


def test_row_bytes_base64() -> None:
    line = encode_row(KEYS, ROW)

    assert b'"encrypted_api_key":"AAECAwQF' in line


def test_row_timestamp_bigquery_text() -> None:
    line = encode_row(KEYS, ROW)

    assert b'"expires_at":"2025-06-01 12:00:00.512 UTC"' in line
    assert b'"created_at":"2025-03-01 00:00:00 UTC"' in line


def test_row_null_left_out() -> None:
    assert b'"user_id"' not in encode_row(KEYS, ROW)


def test_row_decode_iso_timestamp() -> None:
    line = encode_row(KEYS, ROW).replace(
        b"2025-03-01 00:00:00 UTC", b"2025-03-01T00:00:00Z"
    )

    assert decode_row(KEYS, line)[10] == datetime(2025, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json\n", "not valid JSON"),
        (b"[]\n", "not a JSON object"),
        (b'{"api_key_id": "k"}\n', "required column tenant_id is missing"),
        (b'{"surprise": 1}\n', "unknown columns"),
    ],
)
def test_row_decode_rejects(line: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_row(KEYS, line)


def test_row_decode_bad_base64() -> None:
    line = encode_row(KEYS, ROW).replace(b'"AAECAwQF', b'"!!!!AwQF')

    with pytest.raises(ValueError, match="encrypted_api_key is not a valid BYTES"):
        decode_row(KEYS, line)


def test_run_name_from_slot() -> None:
    assert run_name(date(2025, 3, 1)) == "backup-20250301"


def test_slot_of_run() -> None:
    assert slot_of("backup-20250301") == date(2025, 3, 1)


@pytest.mark.parametrize(
    ("value", "slot"),
    [
        ("2025-03-01", date(2025, 3, 1)),
        ("2025-03-01T03:00:00Z", date(2025, 3, 1)),
        ("2025-03-01T01:00:00+02:00", date(2025, 2, 28)),
        ("2025-03-01T03:00:00.123456789Z", date(2025, 3, 1)),
        ("yesterday", None),
    ],
)
def test_parse_slot(value: str, slot: date | None) -> None:
    if slot is None:
        with pytest.raises(ValueError, match="invalid slot"):
            parse_slot(value)
    else:
        assert parse_slot(value) == slot


def test_shard_names() -> None:
    assert table_file("tenant_credentials", "backup-20250301", 2) == (
        "credentials/backup-20250301-000000000002.json"
    )


def test_run_of_unrelated_object() -> None:
    assert run_of_object("api-keys/notes.txt") is None


def test_manifest_invalid_names_field() -> None:
    with pytest.raises(ManifestError, match="tables"):
        Manifest.from_json(b'{"run": "backup-20250301"}', source="m.json")
