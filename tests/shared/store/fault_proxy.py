"""An HTTP proxy on loopback, in front of the emulator, that injects faults.

The emulator runs statements one at a time, so it never reports the failures
BigQuery gives under load. The proxy fails chosen ``jobs.insert`` calls the
way BigQuery reports them, or holds a call until the test releases it. It
forwards everything else unchanged. It also records every request path.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

SERIALIZATION_ERROR = {
    "reason": "invalidQuery",
    "message": "Could not serialize access to table test-project:ds.tenant_api_keys "
    "due to concurrent update",
}
RATE_LIMIT_ERROR = {
    "reason": "rateLimitExceeded",
    "message": "Exceeded rate limits: too many api requests per user per method",
}


@dataclass
class _Rule:
    match: str
    remaining: float
    job_error: dict[str, str] | None = None
    http_status: int | None = None
    http_error: dict[str, str] | None = None
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event | None = None


class FaultProxy:
    """Forward to ``upstream``, failing or holding job inserts whose SQL matches."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.paths: list[str] = []
        self._rules: list[_Rule] = []
        self._failed_jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        with self._lock:
            for rule in self._rules:
                if rule.release is not None:
                    rule.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def fail_job(
        self, match: str, error: dict[str, str], times: float = float("inf")
    ) -> None:
        """Make matching jobs end DONE with ``error``, as BigQuery reports failures."""
        with self._lock:
            self._rules.append(_Rule(match, times, job_error=error))

    def reject_request(
        self, match: str, status: int, error: dict[str, str], times: float = 1
    ) -> None:
        """Reject matching ``jobs.insert`` calls with an HTTP error."""
        with self._lock:
            self._rules.append(
                _Rule(match, times, http_status=status, http_error=error)
            )

    def hold_job(self, match: str) -> tuple[threading.Event, threading.Event]:
        """Hold the next matching job insert; return its (arrived, release) events."""
        rule = _Rule(match, 1, release=threading.Event())
        with self._lock:
            self._rules.append(rule)
        assert rule.release is not None
        return rule.arrived, rule.release

    # Request handling

    def _take_rule(self, query: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.remaining > 0 and rule.match in query:
                    rule.remaining -= 1
                    return rule
        return None

    def _failed_job(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._failed_jobs.get(job_id)

    def _record_failed_job(self, job: dict[str, Any]) -> None:
        with self._lock:
            self._failed_jobs[job["jobReference"]["jobId"]] = job


def _failed_job_resource(body: dict[str, Any], error: dict[str, str]) -> dict[str, Any]:
    reference = dict(body["jobReference"])
    reference.setdefault("location", "US")
    return {
        "kind": "bigquery#job",
        "id": f"{reference['projectId']}:{reference['location']}.{reference['jobId']}",
        "jobReference": reference,
        "configuration": body["configuration"],
        "status": {"state": "DONE", "errorResult": error, "errors": [error]},
        "statistics": {"creationTime": "0", "startTime": "0", "endTime": "0"},
    }


def _error_body(status: int, error: dict[str, str]) -> dict[str, Any]:
    return {"error": {"code": status, "message": error["message"], "errors": [error]}}


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            self._handle()

        def do_POST(self) -> None:  # noqa: N802
            self._handle()

        def do_PUT(self) -> None:  # noqa: N802
            self._handle()

        def do_PATCH(self) -> None:  # noqa: N802
            self._handle()

        def do_DELETE(self) -> None:  # noqa: N802
            self._handle()

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?")[0]
            with proxy._lock:
                proxy.paths.append(path)
            is_job_insert = self.command == "POST" and path.endswith("/jobs")
            if is_job_insert and self._inject(json.loads(body)):
                return
            job_id = path.rsplit("/", 1)[-1]
            failed = proxy._failed_job(job_id) if self.command == "GET" else None
            if failed is not None:
                if "/queries/" in path:
                    # getQueryResults on a failed job returns its error.
                    error = failed["status"]["errorResult"]
                    self._send(400, _error_body(400, error))
                else:
                    self._send(200, failed)
                return
            self._forward(body)

        def _inject(self, job: dict[str, Any]) -> bool:
            query = job.get("configuration", {}).get("query", {}).get("query", "")
            rule = proxy._take_rule(query)
            if rule is None:
                return False
            if rule.release is not None:
                rule.arrived.set()
                rule.release.wait(timeout=60)
                return False
            if rule.http_status is not None and rule.http_error is not None:
                self._send(
                    rule.http_status, _error_body(rule.http_status, rule.http_error)
                )
                return True
            assert rule.job_error is not None
            resource = _failed_job_resource(job, rule.job_error)
            proxy._record_failed_job(resource)
            self._send(200, resource)
            return True

        def _forward(self, body: bytes) -> None:
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in ("host", "content-length", "connection")
            }
            response = requests.request(
                self.command,
                proxy.upstream + self.path,
                data=body or None,
                headers=headers,
                timeout=120,
            )
            self.send_response(response.status_code)
            self.send_header("Content-Type", response.headers.get("Content-Type", ""))
            self.send_header("Content-Length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
