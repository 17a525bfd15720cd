"""A real webhook receiver for tests: an HTTP server on a free local port, in a thread.

It does what docs/webhooks.md tells a receiver to do: verify ``Trellis-Signature`` with
the webhook's secret, refuse a bad one (400), and take each event id once (a repeat is
answered 200 and counted, not taken again). ``script`` sets what it answers next: a
status, or ``("sleep", seconds)`` to answer 200 only after the sender gave up.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from trellis.platform.runtime.webhooks.signing import verify


class Receiver:
    """What the receiver saw: events taken (by id, in order), repeats, refused signatures."""

    def __init__(self) -> None:
        self.secret = ""
        self.script: list[Any] = []
        self.taken: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.repeats: list[str] = []
        self.bad_signatures = 0
        self.requests = 0
        self.url = ""
        self.lock = threading.Lock()

    def next_answer(self) -> Any:
        with self.lock:
            self.requests += 1
            return self.script.pop(0) if self.script else 200

    def take(self, body: bytes, headers: dict[str, str]) -> int:
        if not verify(self.secret, body, headers.get("Trellis-Signature", "")):
            self.bad_signatures += 1
            return 400
        event = json.loads(body)
        assert headers.get("Trellis-Event-Id") == event["id"]
        with self.lock:
            if any(seen["id"] == event["id"] for seen in self.taken):
                self.repeats.append(event["id"])
            else:
                self.taken.append(event)
                self.headers.append(headers)
        return 200


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            answer = receiver.next_answer()
            if isinstance(answer, tuple) and answer[0] == "sleep":
                time.sleep(answer[1])
                answer = 200
            if answer == 200:
                answer = receiver.take(body, dict(self.headers.items()))
            text = json.dumps({"received": answer == 200, "status": answer}).encode()
            self.send_response(answer)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(text)  # unless the sender gave up waiting (a timeout test)

        def log_message(self, *_args: Any) -> None:
            pass

    return Handler


@contextmanager
def running_receiver(
    tls: ssl.SSLContext | None = None, url_host: str = "127.0.0.1"
) -> Iterator[Receiver]:
    """A receiver served on 127.0.0.1 on a free port until the block ends; over HTTPS with
    ``tls`` (a server context), its ``url`` naming the host ``url_host``."""
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    receiver.url = f"{scheme}://{url_host}:{server.server_port}/hooks/trellis"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
