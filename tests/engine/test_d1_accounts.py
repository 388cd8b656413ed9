"""A fleet's discovery against the loopback D1 server: every page of the account's database list, the
name pattern, and refusals explained; rate limits honoured through the token's shared API budget (on
an injected clock, so nothing really sleeps)."""

import apsw
import pytest
from support.d1_server import D1Server, Fault
from support.fake_clock import FakeClock

from patina_assets.engine.api_budget import ApiBudget
from patina_assets.engine.d1_accounts import list_databases
from patina_assets.engine.errors import AuthenticationFailed, DatabaseNotFound, RateLimited, SourceUnavailable


def tenant_databases(tmp_path, names):
    out = {}
    for i, name in enumerate(names):
        path = tmp_path / f"{name}.sqlite"
        conn = apsw.Connection(str(path))
        conn.execute("CREATE TABLE note(id INTEGER PRIMARY KEY, body TEXT)")
        conn.close()
        out[f"00000000-0000-4000-8000-{i:012x}"] = path
    return out


def listing(server, clock=None, **options):
    clock = clock or FakeClock()
    budget = ApiBudget(server.base_url, "good-token", limit=600, clock=clock.time, sleep=clock.sleep)
    return list_databases(
        "acct",
        token=options.pop("token", "good-token"),
        api_url=server.base_url,
        budget=budget,
        sleep=clock.sleep,
        **options,
    )


def test_every_page_is_read_and_the_pattern_filters(tmp_path):
    names = [f"tenant-{i:03d}" for i in range(25)] + ["billing", "tenant-archive-old"]
    with D1Server(tenant_databases(tmp_path, names)) as server:
        found = listing(server, per_page=10, name_pattern="tenant-[0-9]*")
        pages = [r.query["page"] for r in server.requests]
    assert [d.name for d in found.databases] == [f"tenant-{i:03d}" for i in range(25)]
    assert found.not_matching == 2 and found.total_listed == 27
    assert pages == [["1"], ["2"], ["3"]] and found.requests == 3 and found.pages == 3
    first = found.databases[0]
    assert first.uuid == "00000000-0000-4000-8000-000000000000" and first.num_tables == 1 and first.file_size > 0


def test_an_empty_account_and_a_full_last_page(tmp_path):
    with D1Server({}) as server:
        assert listing(server).databases == ()
    with D1Server(tenant_databases(tmp_path, [f"t{i}" for i in range(20)])) as server:
        found = listing(server, per_page=10)
        # total_count says page 2 was the last: no third request for an empty page
        assert len(found.databases) == 20 and len(server.requests) == 2


def test_per_page_outside_cloudflares_bounds_is_refused_before_any_request():
    with pytest.raises(ValueError, match="between 10 and 10000"):
        list_databases("acct", token="t", per_page=5)


def test_refusals_name_the_problem_and_the_fix(tmp_path):
    databases = tenant_databases(tmp_path, ["a"])
    with D1Server(databases, read_less_tokens=("no-d1-token",)) as server:
        with pytest.raises(AuthenticationFailed, match="HTTP 401.*D1 read permission") as bad:
            listing(server, token="wrong-token")
        assert "wrong-token" not in str(bad.value)
        with pytest.raises(AuthenticationFailed, match="HTTP 403"):
            listing(server, token="no-d1-token")
        with pytest.raises(AuthenticationFailed, match="reaches this account id"):
            list_databases("someone-else", token="good-token", api_url=server.base_url)
        with pytest.raises(AuthenticationFailed, match="no Cloudflare API token"):
            listing(server, token="")
        server.fail_always(503)
        with pytest.raises(SourceUnavailable, match="gave up after 3 attempts.*HTTP 503"):
            listing(server, max_attempts=3)
        server.clear_faults()
        server.inject(Fault.status(404))
        with pytest.raises(DatabaseNotFound, match="no such account"):
            listing(server)


def test_a_429_pauses_the_shared_budget_and_is_waited_out(tmp_path):
    clock = FakeClock()
    with D1Server(tenant_databases(tmp_path, [f"t{i:02d}" for i in range(30)]), clock=clock.time) as server:
        server.inject(Fault.status(429, retry_after=40))
        found = listing(server, clock, per_page=10)
        assert len(found.databases) == 30 and found.requests == 4  # the refused page, asked again
        # The pause is the budget's, so every dump of this token waits it out too.
        assert max(clock.sleeps) >= 40
        server.lock_out(10_000)
        with pytest.raises(RateLimited, match="429"):
            listing(server, clock, rate_limit_patience_seconds=600)


def test_the_budget_is_shared_with_dumps(tmp_path):
    """The listing's requests count in the token's budget file, which every D1Source of the token (any
    ApiBudget of that API URL and token) reads: past the limit, the listing waits for the window."""
    clock = FakeClock()
    with D1Server(tenant_databases(tmp_path, [f"t{i:02d}" for i in range(30)]), clock=clock.time) as server:
        budget = ApiBudget(server.base_url, "good-token", limit=2, clock=clock.time, sleep=clock.sleep)
        found = list_databases(
            "acct", token="good-token", api_url=server.base_url, per_page=10, budget=budget, sleep=clock.sleep
        )
        same_token = ApiBudget(server.base_url, "good-token", limit=2, clock=clock.time, sleep=clock.sleep)
    assert found.requests == 3 and same_token.used() == 1 and found.waited_seconds >= 299


def test_a_budget_in_use_is_waited_for_no_longer_than_asked(tmp_path):
    """A sensor's tick is short: when the night's dumps hold the budget, the listing gives up and says why."""
    clock = FakeClock()
    with D1Server(tenant_databases(tmp_path, ["a"]), clock=clock.time) as server:
        budget = ApiBudget(server.base_url, "good-token", limit=1, clock=clock.time, sleep=clock.sleep)
        budget.acquire()  # a dump took the only room
        with pytest.raises(RateLimited, match="budget .* has no room for 300s"):
            list_databases(
                "acct",
                token="good-token",
                api_url=server.base_url,
                budget=budget,
                budget_wait_seconds=20,
                sleep=clock.sleep,
            )
        assert server.requests == []


def test_a_listing_answer_is_judged_as_a_dumps_is_one_request_path(tmp_path):
    """The discovery and a dump send their requests through one path (engine/cloudflare_api.py): a 200 that is
    not JSON (a proxy's page) is the API being unavailable for both, not a malformed database list."""
    with D1Server(tenant_databases(tmp_path, ["t0"])) as server:
        server.inject(Fault.status(200, body="<html>down for maintenance</html>"))
        with pytest.raises(SourceUnavailable, match="answered 200 with a body that is not JSON"):
            listing(server)
