"""JSON log lines for Cloud Logging, with a last-resort filter for API keys.

Each record becomes one line with ``severity``, ``message``, ``logger`` and the
ids passed in ``extra={"labels": {...}}``. Code logs ids, never values. As a
second line of defence, anything shaped like one of our API keys is replaced by
``[REDACTED]`` before the line is written.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from shared.apikeys import redact_api_keys

__all__ = ["JsonFormatter", "configure_logging"]

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one Cloud Logging structured JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "logger": record.name,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
        }
        labels = getattr(record, "labels", None)
        if isinstance(labels, dict):
            entry["logging.googleapis.com/labels"] = {
                str(key): str(value) for key, value in labels.items()
            }
        if record.exc_info and record.exc_info[0] is not None:
            # Only the exception type: messages of library errors can quote input.
            entry["error_type"] = record.exc_info[0].__name__
        return redact_api_keys(json.dumps(entry, ensure_ascii=False))


def configure_logging(level: str = "INFO") -> None:
    """Send every log record of the process to stdout as JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
