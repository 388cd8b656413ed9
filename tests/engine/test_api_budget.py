"""The API budget: every request for one token stays under the configured share of Cloudflare's limit,
across objects and processes that share the budget's directory, with an injected clock."""

import subprocess
import sys
import threading

import pytest
from support.fake_clock import FakeClock

from patina_assets.engine.api_budget import ApiBudget, BudgetExhausted

URL = "https://api.cloudflare.com/client/v4"


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


def test_requests_stay_under_the_limit_in_every_window(tmp_path):
    clock = FakeClock(1_000_000.0)
    budget = ApiBudget(URL, "token-a", limit=5, directory=tmp_path, clock=clock.time, sleep=clock.sleep)
    sent = []
    for _ in range(12):
        budget.acquire()
        sent.append(clock.time())
    assert most_in_any_window(sent, 300) == 5
    assert sent[-1] - sent[0] >= 600  # 12 requests at 5 per 5 minutes need two full windows
    assert budget.waited == pytest.approx(sum(clock.sleeps))


def test_threads_and_objects_of_one_token_share_one_budget(tmp_path):
    clock = FakeClock(1_000_000.0)
    sent, lock = [], threading.Lock()

    def dump():  # each "dump" has its own budget object, as each D1Source does
        budget = ApiBudget(URL, "token-a", limit=7, directory=tmp_path, clock=clock.time, sleep=clock.sleep)
        for _ in range(5):
            at = budget.acquire()
            with lock:
                sent.append(at)

    threads = [threading.Thread(target=dump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sent) == 20 and most_in_any_window(sent, 300) <= 7
    other = ApiBudget(URL, "token-b", limit=7, directory=tmp_path, clock=clock.time, sleep=clock.sleep)
    assert other.used() == 0  # another token has its own budget


def test_another_process_counts_too(tmp_path):
    code = (
        "import sys; from pathlib import Path; from patina_assets.engine.api_budget import ApiBudget;"
        f"b = ApiBudget({URL!r}, 'token-a', limit=4, directory=Path(sys.argv[1]));"
        "[b.acquire() for _ in range(3)]"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    clock = FakeClock()  # real time now: the other process's requests are inside the window
    budget = ApiBudget(URL, "token-a", limit=4, directory=tmp_path, clock=clock.time, sleep=clock.sleep)
    budget.acquire()
    assert clock.sleeps == []
    budget.acquire()
    assert len(clock.sleeps) == 1 and 290 < clock.sleeps[0] <= 300


def test_a_429_pauses_every_user_of_the_token(tmp_path):
    clock = FakeClock(1_000_000.0)
    first = ApiBudget(URL, "token-a", directory=tmp_path, clock=clock.time, sleep=clock.sleep)
    second = ApiBudget(URL, "token-a", directory=tmp_path, clock=clock.time, sleep=clock.sleep)
    first.pause(60)
    first.pause(5)  # a shorter pause asked later does not shorten it
    second.acquire()
    assert clock.sleeps == [pytest.approx(60)]


def test_a_deadline_bounds_the_wait(tmp_path):
    clock = FakeClock(1_000_000.0)
    budget = ApiBudget(URL, "token-a", limit=1, directory=tmp_path, clock=clock.time, sleep=clock.sleep)
    budget.acquire()
    with pytest.raises(BudgetExhausted) as err:
        budget.acquire(deadline=clock.time() + 10)
    assert err.value.wait == pytest.approx(300) and clock.sleeps == []


def test_the_token_never_reaches_the_disk(tmp_path):
    budget = ApiBudget(URL, "secret-token-123", directory=tmp_path)
    budget.acquire()
    written = [p for p in tmp_path.rglob("*")]
    assert written and all("secret-token-123" not in str(p) for p in written)
    assert all("secret-token-123" not in p.read_text() for p in written if p.is_file())
