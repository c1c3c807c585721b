"""A real HTTP server that receives alert webhooks, for tests: records every POST, and can be told to
fail the first N of them (with a status, or by closing the connection)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    def __init__(self, *, fail_first: int = 0, fail_status: int = 503) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.attempts: list[dict[str, Any]] = []  # every POST, failed ones included
        self.received: list[dict[str, Any]] = []  # the ones answered 200
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with receiver._lock:
                    receiver.attempts.append(body)
                    failing = len(receiver.attempts) <= receiver.fail_first
                    if not failing:
                        receiver.received.append(body)
                self.send_response(receiver.fail_status if failing else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, predicate: Any, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """Waits until `predicate(received)` is true; returns what was received."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                received = list(self.received)
            if predicate(received):
                return received
            time.sleep(0.05)
        raise AssertionError(f"webhook condition not met in {timeout_s}s; received: {self.received}; "
                             f"attempts: {len(self.attempts)}")
