"""A webhook on loopback for the alert tests: records every POST, answers with scripted statuses (500 then 200,
a Retry-After...), can hang to force client timeouts, and carries a secret-looking token in its URL as
Discord's webhooks do, so tests can prove the URL never leaks."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET_TOKEN = "s3cr3t-webhook-token-9f8e7d"


@dataclass
class Received:
    path: str
    headers: dict
    body: object
    status: int


class WebhookServer:
    """An HTTP server on 127.0.0.1 that records every POST and answers with the scripted statuses in
    order, then ``default`` (Discord answers 204). ``hang()`` makes it hold requests unanswered until it
    stops, to exercise client timeouts. Its URL carries a secret-looking token, as Discord's do."""

    def __init__(self, default: int = 204):
        self.default = default
        self.requests: list[Received] = []
        self._script: list[tuple[int, dict]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._hang = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if server._hang:
                    server._release.wait(30)
                    return
                with server._lock:
                    status, headers = server._script.pop(0) if server._script else (server.default, {})
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = raw.decode(errors="replace")
                    server.requests.append(Received(self.path, dict(self.headers), body, status))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/api/webhooks/1234567890/{SECRET_TOKEN}"

    def answer(self, *statuses: int, **headers: str) -> None:
        """Answer the next requests with ``statuses`` (each with ``headers``)."""
        with self._lock:
            self._script.extend((s, dict(headers)) for s in statuses)

    def hang(self) -> None:
        self._hang = True

    @property
    def accepted(self) -> list:
        """Bodies the webhook took (answered 2xx): what the channel shows."""
        return [r.body for r in self.requests if 200 <= r.status < 300]

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


def closed_port_url() -> str:
    """A loopback URL nobody listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/webhooks/1/{SECRET_TOKEN}"
