"""Fixtures shared by the tests of patina_assets/defs/."""

import pytest
from support.webhook_server import WebhookServer


@pytest.fixture
def generic(monkeypatch):
    """A generic JSON webhook (200) named by PATINA_WEBHOOK_URL, and no Discord webhook: the alerts a run sends."""
    monkeypatch.delenv("PATINA_DISCORD_WEBHOOK", raising=False)
    with WebhookServer(default=200) as server:
        monkeypatch.setenv("PATINA_WEBHOOK_URL", server.url)
        yield server
