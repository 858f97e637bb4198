"""A real SMTP server (aiosmtpd) and a webhook receiver on loopback, for tests.

``SmtpSink`` keeps every message it accepts and can be stopped and started
again on the same port, so a test can make the server unreachable.
``WebhookReceiver`` keeps every JSON body and responds with the next status of
a queue (200 once it is empty).
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import socket
import threading
from collections import deque
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

LOOPBACK = "127.0.0.1"

# aiosmtpd logs every connection at INFO from its own thread, past the
# capture of the test that caused it.
logging.getLogger("mail.log").setLevel(logging.WARNING)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


class _Collector:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


class SmtpSink:
    """aiosmtpd on a loopback port, collecting messages."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._collector = _Collector()
        self._controller: Controller | None = None
        self.start()

    @property
    def messages(self) -> list[EmailMessage]:
        return self._collector.messages

    @property
    def recipients(self) -> list[list[str]]:
        return self._collector.recipients

    def start(self) -> None:
        self._controller = Controller(
            self._collector, hostname=LOOPBACK, port=self.port
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


class WebhookReceiver:
    """An HTTP server on a loopback port that records POSTed JSON bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses: deque[int] = deque()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status = receiver.statuses.popleft() if receiver.statuses else 200
                if status == 200:
                    receiver.bodies.append(body)
                payload = b"ok" if status == 200 else b"error"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Keep request lines off stderr."""

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://{LOOPBACK}:{port}/services/T000/B000/webhook-token"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
