"""Several dumps at once, one token: together they stay inside the API budget, and a storm of 429s is
waited out by all of them without failing one. The loopback server's rate limiter and every wait run on
one injected clock, so nothing really sleeps."""

import threading

import pytest
from support.compare import assert_same_database
from support.configs import small_database
from support.d1_server import D1Server
from support.fake_clock import FakeClock

from patina_assets.engine import D1Source, dump_database, restore_dump
from patina_assets.engine.api_budget import ApiBudget

IDS = [f"4d0c7c7e-4b1e-4f4a-9d55-1b2c3d4e5f6{i}" for i in range(3)]


def dump_all_at_once(server, tmp_path, clock, budget_limit, max_attempts=8):
    results, errors = {}, []

    def dump(db_id):
        budget = ApiBudget(server.base_url, "good-token", limit=budget_limit, clock=clock.time, sleep=clock.sleep)
        try:
            with D1Source(
                "acct",
                db_id,
                token="good-token",
                api_url=server.base_url,
                page_bytes=10_000,
                one_batch_bytes=0,
                budget=budget,
                sleep=clock.sleep,
                backoff_seconds=1,
                max_attempts=max_attempts,
            ) as source:
                results[db_id] = dump_database(source, tmp_path / f"{db_id}.sql")
        except Exception as e:  # the test reports it below
            errors.append(e)

    threads = [threading.Thread(target=dump, args=(db_id,)) for db_id in IDS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


@pytest.fixture
def databases(tmp_path):
    return {db_id: small_database(tmp_path / f"db{i}.sqlite", 300) for i, db_id in enumerate(IDS)}


def test_concurrent_dumps_stay_inside_the_budget(tmp_path, databases):
    clock = FakeClock()
    # The server stands for Cloudflare: past 60 requests in 5 minutes it answers 429. The budget is half of
    # that, as 600 is of Cloudflare's 1200 (the injected clock jumps while a request is on its way, so a
    # request can arrive in the window after the one it was counted in: the half is the margin for that).
    with D1Server(databases, rate_limit=(60, 300), clock=clock.time) as server:
        results = dump_all_at_once(server, tmp_path, clock, budget_limit=30)
        statuses = [r.status for r in server.requests]
    assert 429 not in statuses and len(statuses) > 30  # more than one window's worth: the budget made them wait
    assert sum(r.requests for r in results.values()) == len(statuses)  # each manifest's count is right
    assert clock.sleeps and all(r.point_in_time for r in results.values())


def test_a_lockout_is_waited_out_without_failing_healthy_dumps(tmp_path, databases):
    clock = FakeClock()
    with D1Server(databases, clock=clock.time) as server:
        sent = []

        def lock_the_token_out_mid_dump(path, body):  # as Cloudflare does past its limit: 5 minutes of 429s
            sent.append(path)
            if len(sent) == 20:
                server.lock_out(300)

        server.before_request = lock_the_token_out_mid_dump
        # Two attempts per request: the 429s of a lockout must not count against them.
        results = dump_all_at_once(server, tmp_path, clock, budget_limit=600, max_attempts=2)
        statuses = [r.status for r in server.requests]
    assert all(r.point_in_time for r in results.values())
    # The first 429 paused every dump of the token: at most the requests already on their way met the
    # lockout (one a dump), instead of each dump hammering the locked token for 5 minutes.
    assert 1 <= statuses.count(429) <= len(databases)
    assert max(clock.sleeps) == pytest.approx(300, abs=1)
    assert sum(r.requests for r in results.values()) == len(statuses)
    for db_id, path in databases.items():
        restore_dump(tmp_path / f"{db_id}.sql", tmp_path / f"{db_id}.restored.sqlite")
        assert_same_database(path, tmp_path / f"{db_id}.restored.sqlite", check_pragmas=False)
