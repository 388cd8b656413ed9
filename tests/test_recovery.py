"""Restoring into D1 (`recovery.py`) reaches the API with the configuration's request settings, the dump's:
as many attempts per request (`dump.request_attempts`), the same backoff (`dump.request_backoff_seconds`)
and the token's share of the rate limit; against the loopback D1 server."""

import sqlite3

import pytest
from support.configs import small_database, write_config
from support.d1_server import D1Server

from patina_assets.engine import dump_database, open_source
from patina_assets.engine.d1_import import D1ImportUnavailable
from patina_assets.engine.errors import PatinaError
from patina_assets.recovery import check_d1_targets_empty, import_into_d1

ACCOUNT = "0123456789abcdef0123456789abcdef"
DB_ID = "45eae4c7-8ae7-4078-9218-8e1677a4360f"
TOKEN = "good-token-0123456789"


@pytest.fixture
def restoring(tmp_path, monkeypatch):
    """A dump, an empty D1 database behind the loopback server, and a configuration whose REST requests are
    tried 3 times each without waiting (not the importer's own default of 6, with a 1 s backoff)."""
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
    source = small_database(tmp_path / "source.sqlite", 20)
    with open_source(str(source)) as s:
        dump_database(s, tmp_path / "dump.sql.zst", database="groveauth")
    target = tmp_path / "target.sqlite"
    sqlite3.connect(target).close()
    with D1Server({DB_ID: target}, account_id=ACCOUNT, token=TOKEN) as server:
        config = write_config(
            tmp_path,
            [{"name": "groveauth", "source": str(source)}],
            dump={"request_attempts": 3, "request_backoff_seconds": 0},
            cloudflare={"api_url": server.base_url},
        )
        yield config, server, tmp_path / "dump.sql.zst"


def sent(server, endpoint):
    return [r for r in server.requests if r.path.endswith(endpoint)]


def test_an_import_into_d1_tries_each_request_as_often_as_the_dumps_do(restoring):
    config, server, dump = restoring
    server.fail_always(503, path="/import")
    with pytest.raises(D1ImportUnavailable, match="after 3 attempts"):
        import_into_d1(config, dump, ACCOUNT, DB_ID)
    assert len(sent(server, "/import")) == 3


def test_the_check_that_d1_targets_are_empty_tries_each_request_as_often_as_the_dumps_do(restoring):
    config, server, _ = restoring
    server.fail_always(503, path="/raw")
    with pytest.raises(PatinaError, match="after 3 attempts"):
        check_d1_targets_empty(config, [("groveauth", f"d1://{ACCOUNT}/{DB_ID}")])
    assert len(sent(server, "/raw")) == 3
