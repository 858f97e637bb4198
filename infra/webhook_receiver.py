"""A local stand-in for a Slack incoming webhook: print each message, return "ok".

The local stack starts it on a loopback port and points ``SLACK_WEBHOOK_URL``
at it, so the alerts expiry_alerter posts show up in the stack's output::

    python infra/webhook_receiver.py --port 9099

Each JSON body's ``text`` field is printed (the whole body when it has none),
one line per line of text, and the response is 200 and ``ok``, as Slack's. It
serves until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
_MAX_BODY_BYTES = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY_BYTES:
            self._answer(413, b"too large")
            return
        raw = self.rfile.read(length)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            self._answer(400, b"invalid_payload")
            return
        text = body.get("text") if isinstance(body, dict) else None
        printed = text if isinstance(text, str) else json.dumps(body)
        print(f"POST {self.path}", flush=True)
        for line in printed.splitlines():
            print(f"  {line}", flush=True)
        self._answer(200, b"ok")

    def _answer(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Print bodies only, not request lines."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((LOOPBACK, args.port), _Handler)
    server.daemon_threads = True
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"listening on http://{LOOPBACK}:{args.port}", flush=True)
    stop.wait()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
