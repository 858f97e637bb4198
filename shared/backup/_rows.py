"""Rows as the lines of a newline-delimited JSON backup, as BigQuery exports them.

One JSON object per line, keys in schema order. BigQuery's extract writes the
same shape, so both backends produce files that load back the same way:

- BYTES are base64 text: ciphertext stays ciphertext.
- TIMESTAMP is ``YYYY-MM-DD HH:MM:SS[.ffffff] UTC``.
- INT64 is a JSON string, so 64-bit values survive any JSON reader.
- BOOL is ``true`` or ``false``.
- A NULL column is left out of the object.

``decode_row`` reads what ``encode_row`` wrote, and also ISO 8601 timestamps.
It raises ``ValueError`` naming the column for a value of the wrong type.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shared.store.schema import Table


def encode_row(table: Table, row: Sequence[Any]) -> bytes:
    """Return one row as a JSON line, newline included."""
    document: dict[str, Any] = {}
    for column, value in zip(table.columns, row, strict=True):
        if value is None:
            continue
        document[column.name] = _encode_value(column.type, value)
    return (
        json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        + b"\n"
    )


def decode_row(table: Table, line: bytes) -> list[Any]:
    """Return the column values of one JSON line, in schema order."""
    try:
        document = json.loads(line)
    except ValueError:
        raise ValueError("a line is not valid JSON") from None
    if not isinstance(document, dict):
        raise ValueError("a line is not a JSON object")
    unknown = sorted(set(document) - set(table.column_names))
    if unknown:
        raise ValueError(f"unknown columns {unknown}")
    values: list[Any] = []
    for column in table.columns:
        value = document.get(column.name)
        if value is None:
            if column.required:
                raise ValueError(f"required column {column.name} is missing")
            values.append(None)
            continue
        try:
            values.append(_decode_value(column.type, value))
        except (TypeError, ValueError, binascii.Error):
            raise ValueError(
                f"column {column.name} is not a valid {column.type}"
            ) from None
    return values


def _encode_value(type_: str, value: Any) -> Any:
    if type_ == "BYTES":
        return base64.b64encode(bytes(value)).decode("ascii")
    if type_ == "TIMESTAMP":
        return _timestamp_text(value)
    if type_ == "INT64":
        return str(int(value))
    if type_ == "BOOL":
        return bool(value)
    return str(value)


def _decode_value(type_: str, value: Any) -> Any:
    if type_ == "BYTES":
        if not isinstance(value, str):
            raise TypeError
        return base64.b64decode(value, validate=True)
    if type_ == "TIMESTAMP":
        if not isinstance(value, str):
            raise TypeError
        return _parse_timestamp(value)
    if type_ == "INT64":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError
        return int(value)
    if type_ == "BOOL":
        if not isinstance(value, bool):
            raise TypeError
        return value
    if not isinstance(value, str):
        raise TypeError
    return value


def _timestamp_text(value: datetime) -> str:
    moment = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return f"{text} UTC"


def _parse_timestamp(text: str) -> datetime:
    cleaned = text.strip()
    if cleaned.endswith(" UTC"):
        cleaned = cleaned[: -len(" UTC")] + "+00:00"
    moment = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
