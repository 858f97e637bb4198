import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from shared.apikeys import generate_api_key
from shared.logs import JsonFormatter, configure_logging


class JsonLog:
    """A logger whose records are formatted by JsonFormatter into a buffer."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.logger = logging.getLogger("tests.logs")
        handler = logging.StreamHandler(self.buffer)
        handler.setFormatter(JsonFormatter())
        self.logger.handlers[:] = [handler]
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False

    def lines(self) -> list[str]:
        return self.buffer.getvalue().splitlines()

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]


@pytest.fixture
def log() -> Iterator[JsonLog]:
    json_log = JsonLog()
    yield json_log
    json_log.logger.handlers.clear()


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_line_is_one_json_object(log: JsonLog) -> None:
    log.logger.info("key issued for %s", "acme")

    assert len(log.lines()) == 1
    assert log.entries()[0]["message"] == "key issued for acme"


def test_line_carries_logger_and_time(log: JsonLog) -> None:
    log.logger.info("started")

    entry = log.entries()[0]
    assert entry["logger"] == "tests.logs"
    assert entry["time"].endswith("+00:00")


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (logging.DEBUG, "DEBUG"),
        (logging.INFO, "INFO"),
        (logging.WARNING, "WARNING"),
        (logging.ERROR, "ERROR"),
        (logging.CRITICAL, "CRITICAL"),
        (25, "DEFAULT"),
    ],
)
def test_severity_follows_level(log: JsonLog, level: int, severity: str) -> None:
    log.logger.log(level, "message")

    assert log.entries()[0]["severity"] == severity


def test_labels_become_cloud_logging_labels(log: JsonLog) -> None:
    log.logger.info("stored", extra={"labels": {"tenant_id": "acme", "count": 3}})

    labels = log.entries()[0]["logging.googleapis.com/labels"]
    assert labels == {"tenant_id": "acme", "count": "3"}


def test_line_without_labels_has_none(log: JsonLog) -> None:
    log.logger.info("plain")

    assert "logging.googleapis.com/labels" not in log.entries()[0]


@pytest.mark.parametrize("where", ["message", "argument", "label"])
def test_api_key_redacted(log: JsonLog, where: str) -> None:
    key = generate_api_key("acme")
    if where == "message":
        log.logger.warning(f"client sent {key}")
    elif where == "argument":
        log.logger.warning("client sent %s", key)
    else:
        log.logger.warning("client sent", extra={"labels": {"key": key}})

    line = log.lines()[0]
    assert key not in line
    assert "[REDACTED]" in line


def test_exception_type_recorded_without_message(log: JsonLog) -> None:
    try:
        raise ValueError("input was hunter2-secret")
    except ValueError:
        log.logger.exception("request failed")

    line = log.lines()[0]
    assert json.loads(line)["error_type"] == "ValueError"
    assert "hunter2-secret" not in line
    assert "Traceback" not in line


def test_non_ascii_message_kept(log: JsonLog) -> None:
    log.logger.info("tenant Zürich")

    assert log.entries()[0]["message"] == "tenant Zürich"


def test_configure_logging_writes_json_to_stdout(
    restore_root_logger: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO")

    logging.getLogger("tests.configured").info("hello", extra={"labels": {"a": "b"}})
    logging.getLogger("tests.configured").debug("below the level")

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["message"] == "hello"


def test_configure_logging_replaces_handlers(restore_root_logger: None) -> None:
    configure_logging("WARNING")
    configure_logging("WARNING")

    root = logging.getLogger()
    assert len(root.handlers) == 1
    assert isinstance(root.handlers[0].formatter, JsonFormatter)
    assert root.level == logging.WARNING
