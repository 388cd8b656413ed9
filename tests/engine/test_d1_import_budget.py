"""A restore into D1 shares its token's API budget with the dumps: a 429 the import meets pauses every user
of the token, and a lockout is waited out (up to the rate-limit patience) rather than spending the import's
retries. The loopback server, the budget and every wait run on one injected clock, so nothing really sleeps."""

import pytest
from support.compare import assert_same_database
from support.configs import empty_database, small_database
from support.d1_server import D1Server, Fault
from support.fake_clock import FakeClock

from patina_assets.engine import D1Source, dump_database, restore_dump
from patina_assets.engine.api_budget import ApiBudget
from patina_assets.engine.d1_import import D1ImportUnavailable, import_dump

TARGET_ID = "45eae4c7-8ae7-4078-9218-8e1677a4360f"
NIGHTLY_ID = "9b0e3c1d-2f4a-4e5b-8c6d-7e8f90a1b2c3"
TOKEN = "good-token-0123456789"


def test_a_429_met_by_a_restore_pauses_a_dump_on_the_same_token(dump, tmp_path):
    source, path = dump
    clock = FakeClock()
    nightly = small_database(tmp_path / "nightly.sqlite", 20)
    target = empty_database(tmp_path / "target.sqlite")
    with D1Server({TARGET_ID: target, NIGHTLY_ID: nightly}, token=TOKEN, clock=clock.time) as server:
        server.inject(Fault.status(429, retry_after=120, path="/import"))
        nightly_budget = ApiBudget(server.base_url, TOKEN, clock=clock.time, sleep=clock.sleep)
        seen = {}

        def restore_sleep(seconds):
            # The restore waits out its 429: a nightly dump on the same token (its own budget object, as in
            # another process) starts now, and must wait too instead of meeting the locked token.
            if not seen:
                seen["paused_at"] = clock.time()
                with D1Source(
                    "acct", NIGHTLY_ID, token=TOKEN, api_url=server.base_url, budget=nightly_budget, sleep=clock.sleep
                ) as nightly_source:
                    seen["nightly"] = dump_database(nightly_source, tmp_path / "nightly.sql")
            clock.sleep(seconds)

        result = import_dump(
            path, "acct", TARGET_ID, token=TOKEN, api_url=server.base_url, sleep=restore_sleep, clock=clock.time
        )
        statuses = [r.status for r in server.requests]
    assert result.num_queries > 0 and statuses.count(429) == 1  # the dump never met the 429 the restore met
    assert nightly_budget.waited == pytest.approx(120, abs=1)
    assert seen["nightly"].point_in_time
    assert_same_database(source, target, check_pragmas=False)
    restore_dump(tmp_path / "nightly.sql", tmp_path / "nightly.restored.sqlite")
    assert_same_database(nightly, tmp_path / "nightly.restored.sqlite", check_pragmas=False)


def test_a_lockout_longer_than_the_import_s_retries_is_waited_out(dump, tmp_path):
    source, path = dump
    clock = FakeClock()
    target = empty_database(tmp_path / "target.sqlite")
    with D1Server({TARGET_ID: target}, token=TOKEN, clock=clock.time) as server:
        # Six 429s in a row without Retry-After, at each step of the import: two attempts could not outlast them.
        server.inject(*[Fault.status(429, path="/import") for _ in range(6)])
        result = import_dump(
            path,
            "acct",
            TARGET_ID,
            token=TOKEN,
            api_url=server.base_url,
            max_attempts=2,
            sleep=clock.sleep,
            clock=clock.time,
        )
        statuses = [r.status for r in server.requests]
    assert result.num_queries > 0 and statuses.count(429) == 6
    assert sum(clock.sleeps) >= 1 + 2 + 4 + 8 + 16 + 32  # the budget's pauses, growing as the 429s go on
    assert_same_database(source, target, check_pragmas=False)


def test_429s_past_the_rate_limit_patience_give_up_saying_what_to_do(dump, tmp_path):
    _, path = dump
    clock = FakeClock()
    target = empty_database(tmp_path / "target.sqlite")
    with D1Server({TARGET_ID: target}, token=TOKEN, clock=clock.time) as server:
        server.fail_always(429, retry_after=60, path="/import")
        with pytest.raises(D1ImportUnavailable) as gave_up:
            import_dump(
                path,
                "acct",
                TARGET_ID,
                token=TOKEN,
                api_url=server.base_url,
                rate_limit_patience_seconds=300,
                sleep=clock.sleep,
                clock=clock.time,
            )
        statuses = [r.status for r in server.requests]
    message = str(gave_up.value)
    assert "could not start the import (init)" in message and "429 (rate limited)" in message
    assert "requests_per_5_minutes" in message and TOKEN not in message
    assert statuses.count(429) == 6  # at 0, 60, ..., 300 s: five minutes of patience, then no more


def test_a_wait_past_its_deadline_names_the_import_not_a_dump(tmp_path):
    """The one request path (cloudflare_api.py) serves dumps, imports and account listings: a caller with a
    deadline that the API asks to wait past is told which of them it was."""
    from patina_assets.engine.cloudflare_api import CloudflareApi
    from patina_assets.engine.errors import DeadlineExceeded

    clock = FakeClock()
    target = empty_database(tmp_path / "target.sqlite")
    with D1Server({TARGET_ID: target}, token=TOKEN, clock=clock.time) as server:
        server.inject(Fault.status(503, retry_after=600, path="/import"))
        budget = ApiBudget(server.base_url, TOKEN, clock=clock.time, sleep=clock.sleep)
        api = CloudflareApi(
            server.base_url,
            TOKEN,
            where=f"d1://acct/{TARGET_ID}",
            operation="import",
            budget=budget,
            budget_exhausted=lambda e: e,
            remaining=lambda: 60.0,
        )
        try:
            with pytest.raises(DeadlineExceeded) as exceeded:
                api.call("POST", f"/accounts/acct/d1/database/{TARGET_ID}/import", lambda s, b: AssertionError(s))
        finally:
            api.close()
    message = str(exceeded.value)
    assert "asked to wait 600s, past this import's deadline" in message and "dump" not in message
