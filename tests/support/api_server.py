"""`patina serve` on loopback for the API tests: the app on uvicorn on a thread, an httpx client, an injected
clock, and an audit sink the tests read."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from patina_assets.api import AccessPolicy, BackgroundServer, create_app

from .filled import filled

KEY = "alice-3f9a1c7e5b2d4a6c8e0f"
OTHER_KEY = "ci-runner-0a1b2c3d4e5f6a7b"
KEYS = {"alice": KEY, "ci": OTHER_KEY}
UNAUTHORIZED = {"error": "unauthorized", "message": "Valid authentication required to download backups"}


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


class Audit:
    """The audit sink: a list, with a condition to wait on (a download's line is written as it ends)."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.changed = threading.Condition()

    def __call__(self, event: dict) -> None:
        with self.changed:
            self.events.append(json.loads(json.dumps(event)))  # what the log line would hold
            self.changed.notify_all()

    def wait_for(self, kind: str, count: int, *, timeout: float = 10, **fields) -> list[dict]:
        with self.changed:
            found = self.changed.wait_for(lambda: len(self.of(kind, **fields)) >= count, timeout=timeout)
            assert found, self.events[-5:]
            return self.of(kind, **fields)

    def arrived(self, kind: str, count: int, *, timeout: float, **fields) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.of(kind, **fields)) >= count, timeout=timeout)

    def of(self, kind: str, **fields) -> list[dict]:
        return [e for e in self.events if e["event"] == kind and all(e.get(k) == v for k, v in fields.items())]


def key(value: str = KEY) -> dict[str, str]:
    return {"X-Patina-Key": value}


@pytest.fixture
def serve():
    """``serve(bucket=None, send_buffer=None, **create_app options)``: an httpx client of a running server,
    with ``.audit``, ``.state`` and ``.server``."""
    servers = []

    def start(bucket=None, send_buffer=None, **options):
        bucket = bucket or filled("local")
        options.setdefault("policy", AccessPolicy(keys=dict(KEYS)))
        options.setdefault("audit", Audit())
        app = create_app(bucket.config, **options)
        server = BackgroundServer(app, send_buffer=send_buffer).start()
        servers.append(server)
        client = httpx.Client(base_url=server.url, timeout=10)
        client.audit = options["audit"]
        client.state = app.state.patina
        client.server = server
        return client

    yield start
    for server in servers:
        server.stop()
