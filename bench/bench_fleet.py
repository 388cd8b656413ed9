"""Benchmark: a fleet of generated small tenants behind the loopback D1 server (tests/support/d1_server.py).

    .venv/bin/python bench/bench_fleet.py [--tenants 1000] [--rows 20] [--dagster-tenants 50]

Measures, for one night:

1. discovery: the account's database list read through the API (requests, seconds);
2. the night without Dagster (`fleets.back_up_fleet`, dump.concurrency tenants at a time, every request
   through the token's API budget): requests, wall time, and peak RSS of this process (the D1 server runs in
   a child process, so its memory is not counted);
3. the same work through the fleet's Dagster asset in-process (`--dagster-tenants` of them, one run per
   tenant as the nightly schedule launches them): seconds per tenant and peak RSS.

The API budget is Cloudflare's 1,200 requests per 5 minutes per token, of which Patina takes
`cloudflare.requests_per_5_minutes` (600 by default). The night is run with the budget lifted, to measure
Patina itself; the length of a budgeted night is then the larger of that wall time and the requests paced
at the budget's rate (the first window's worth go at once), which is what the budget would hold the night
to. "Fits" means that length is within the nightly run's limit (watch.run_bounds: 6 h by default).
Prints a Markdown table; the README keeps the latest results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

ACCOUNT = "0123456789abcdef0123456789abcdef"
TOKEN = "good-token"
BUDGET = 600  # requests per 5 minutes: cloudflare.requests_per_5_minutes by default
NIGHT_LIMIT_SECONDS = 6 * 3600


def tenant_id(i: int) -> str:
    return f"b0b0b0b0-0000-4000-8000-{i:012x}"


def serve(directory: str, tenants: int, pipe) -> None:
    """The D1 server, in a child process: answers until the parent closes the pipe."""
    from support.d1_server import D1Server

    databases = {tenant_id(i): Path(directory) / f"tenant-{i:05d}.sqlite" for i in range(tenants)}
    with D1Server(databases, account_id=ACCOUNT, token=TOKEN) as server:
        pipe.send(server.base_url)
        pipe.recv()  # until told to stop
        pipe.send(len(server.requests))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=20, help="users per tenant (and as many posts)")
    parser.add_argument("--dagster-tenants", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=3)
    args = parser.parse_args()

    os.environ.setdefault("PATINA_API_BUDGET_DIR", tempfile.mkdtemp(prefix="patina-bench-budget-"))
    from support.configs import small_database, write_config

    work = Path(tempfile.mkdtemp(prefix="patina-bench-fleet-"))
    sources = work / "d1"
    sources.mkdir()
    started = time.monotonic()
    template = small_database(work / "template.sqlite", args.rows)
    for i in range(args.tenants):
        (sources / f"tenant-{i:05d}.sqlite").write_bytes(template.read_bytes())
    generated = time.monotonic() - started

    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(target=serve, args=(str(sources), args.tenants, theirs))
    server.start()
    base_url = ours.recv()
    try:
        rows = run(args, work, base_url, write_config)
    finally:
        ours.send("stop")
        served = ours.recv()
        server.join()
    print(f"\n{args.tenants} tenants of {args.rows} users + {args.rows} posts each, generated in {generated:.1f}s; ")
    print(f"the D1 server answered {served} requests in all.\n")
    print("| step | tenants | requests | wall s | s/tenant | peak RSS MB | budgeted night |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")


def run(args, work: Path, base_url: str, write_config) -> list[tuple]:
    import gc

    from patina_assets.backup import Cloudflare, open_store
    from patina_assets.fleets import back_up_fleet, discover

    config = write_config(
        work,
        [],
        databases_from=[{"name": "tenants", "account": ACCOUNT, "name_pattern": "tenant-*"}],
        cloudflare={"api_url": base_url},
        dump={"concurrency": args.concurrency},
    )
    fleet = config.fleets[0]
    store = open_store(config)
    # The budget lifted, to measure Patina; see the module docstring for the budgeted night.
    unbounded = Cloudflare(api_url=base_url, token=TOKEN, requests_per_5_minutes=10**9)
    rows = []

    started = time.monotonic()
    roster = discover(fleet, config, store, unbounded)
    rows.append(("discovery", len(roster.tenants), roster.requests, f"{time.monotonic() - started:.2f}", "", "", ""))
    assert len(roster.tenants) == args.tenants, roster

    day = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    gc.collect()
    night = back_up_fleet(fleet, roster, day, store, unbounded, config, concurrency=args.concurrency)
    assert not night.failed, list(night.failed.items())[:3]
    paced = max(0, night.requests - BUDGET) * 300 / BUDGET
    budgeted = max(night.seconds, paced)
    fits = "fits" if budgeted <= NIGHT_LIMIT_SECONDS else "DOES NOT FIT"
    rows.append(
        (
            f"night, engine ({args.concurrency} at once)",
            len(night.stored),
            night.requests,
            f"{night.seconds:.1f}",
            f"{night.seconds / max(1, len(night.stored)):.3f}",
            f"{peak_rss_mb():.0f}",
            f"{budgeted / 60:.0f} min at {BUDGET}/5 min: {fits} in {NIGHT_LIMIT_SECONDS // 3600} h",
        )
    )

    if args.dagster_tenants:
        rows.append(dagster_night(config, roster, args.dagster_tenants, day))
    return rows


def dagster_night(config, roster, count: int, day: str) -> tuple:
    """`count` tenants through the fleet's asset in-process, one run each, as the schedule launches them
    (the same night again: each run dumps, stores a new generation and checks it)."""
    import dagster as dg

    from patina_assets.defs import build_definitions
    from patina_assets.defs.fleets import fleet_job_name, tenant_partition_key

    os.environ["CLOUDFLARE_API_TOKEN"] = TOKEN
    # A budget of its own: the engine's night just spent thousands of requests of this token, and the runs,
    # which keep to cloudflare.requests_per_5_minutes, would first wait for them to leave the window.
    os.environ["PATINA_API_BUDGET_DIR"] = tempfile.mkdtemp(prefix="patina-bench-budget-dagster-")
    fleet = config.fleets[0]
    defs = build_definitions(config)
    job = defs.resolve_job_def(fleet_job_name(fleet))
    with dg.instance_for_test() as instance:
        names = [t.name for t in roster.tenants[:count]]
        instance.add_dynamic_partitions(f"fleet_{fleet.asset_name}_tenants", names)
        started = time.monotonic()
        for name in names:
            result = job.execute_in_process(partition_key=tenant_partition_key(day, name), instance=instance)
            assert result.success
        seconds = time.monotonic() - started
    return (
        "night, Dagster in-process (1 run/tenant)",
        count,
        "",
        f"{seconds:.1f}",
        f"{seconds / count:.3f}",
        f"{peak_rss_mb():.0f}",
        f"{seconds / count * len(roster.tenants) / 60:.0f} min for all {len(roster.tenants)} at this rate",
    )


if __name__ == "__main__":
    main()
