"""Bad input over D1's REST API: a database without Time Travel, a token without D1 read permission, a
database deleted in the middle of its dump. Each fails at once with an error naming the fix, leaves no
file, stores nothing, and never shows the token."""

import pytest
from support.configs import small_database, write_config
from support.d1_server import D1Server

from patina_assets.backup import Cloudflare, back_up, open_database, open_store
from patina_assets.engine import AuthenticationFailed, DatabaseNotFound, TimeTravelUnavailable, dump_database

ACCOUNT = "0123456789abcdef0123456789abcdef"
DB_ID = "3c0c7c7e-4b1e-4f4a-9d55-1b2c3d4e5f62"


def delete_on_the_third_query(server):
    queries = []

    def hook(path, body):
        if path.endswith("/raw"):
            queries.append(path)
            if len(queries) == 3:
                server.databases.pop(DB_ID)

    return hook


CASES = {
    "no Time Travel": (
        dict(time_travel=False),
        "good-token",
        TimeTravelUnavailable,
        ["Time Travel is not available", "wrangler d1 info DB", "move the data to a new D1 database"],
    ),
    "no D1 read": (
        dict(read_less_tokens=("read-less-token",)),
        "read-less-token",
        AuthenticationFailed,
        ["refused the token (HTTP 403)", "has D1 read permission"],
    ),
    "deleted mid-dump": (
        {},
        "good-token",
        DatabaseNotFound,
        ["disappeared during the dump (HTTP 404)", "nothing was stored", "wrangler d1 list"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fails_at_once_names_the_fix_and_stores_nothing(tmp_path, case):
    server_options, token, error, phrases = CASES[case]
    db = small_database(tmp_path / "grove.sqlite")
    config = write_config(tmp_path, [{"name": "grove", "source": f"d1://{ACCOUNT}/{DB_ID}"}])
    store = open_store(config)
    out = tmp_path / "out" / "grove.sql.zst"
    for attempt in ("a dump to a file", "a nightly backup into the bucket"):
        with D1Server({DB_ID: db}, account_id=ACCOUNT, **server_options) as server:
            if case == "deleted mid-dump":
                server.before_request = delete_on_the_third_query(server)
            cloudflare = Cloudflare(api_url=server.base_url, token=token)
            with pytest.raises(error) as raised:
                if attempt == "a dump to a file":
                    with open_database(config.databases[0], cloudflare, config.dump) as source:
                        dump_database(source, out)
                else:
                    back_up(config.databases[0], "2026-03-09", store, cloudflare, config.dump)
            statuses = [r.status for r in server.requests]
        message = str(raised.value)
        assert all(phrase in message for phrase in phrases), (attempt, message)
        assert token not in message
        assert not raised.value.retryable and statuses.count(statuses[-1]) == 1  # nothing that cannot pass is retried
    assert list(out.parent.iterdir()) == []  # no dump, no partial file, no spool
    assert store.list_daily() == [] and not list((tmp_path / "bucket").rglob("*.sql*"))
