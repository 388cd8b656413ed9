"""Benchmark: `patina dump` against `sqlite3 DB .dump` on a 2,000,000-row table, and the REST path's requests.

    .venv/bin/python bench/bench_dump.py [--rows 2000000] [--rest-rows 200000]

Goals (issue 2): wall time within 2x of `sqlite3 .dump`, peak RSS at most 64 MB, and over the REST API
about one request per 2 MB of SQL. Prints a Markdown table; the README keeps the latest results.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATINA = ROOT / ".venv" / "bin" / "patina"


def build(path: Path, rows: int) -> None:
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE events(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, kind TEXT NOT NULL, "
        "payload TEXT, score REAL, created_at INTEGER)"
    )
    rng = random.Random(1)
    kinds = ["login", "logout", "view", "click", "purchase"]
    db.executemany(
        "INSERT INTO events VALUES (?,?,?,?,?,?)",
        (
            (i, rng.randrange(100_000), kinds[i % 5], f"payload {rng.randrange(10**9)} it's \"quoted\"", rng.random() * 1000, 1_700_000_000 + i)
            for i in range(1, rows + 1)
        ),
    )
    db.commit()
    db.close()


def timed(cmd: list[str], stdout) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(cmd, stdout=stdout, check=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def best_of(n: int, fn):
    runs = [fn() for _ in range(n)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def rest_requests(db_path: Path, out: Path) -> tuple[int, int]:
    sys.path.insert(0, str(ROOT / "tests"))
    from support.d1_server import D1Server  # the loopback D1 stand-in the tests use

    from patina_assets.engine import D1Source, dump_database
    from patina_assets.engine.api_budget import ApiBudget

    with D1Server({"db": db_path}) as server:
        budget = ApiBudget(server.base_url, server.token, limit=1200, directory=out.parent / "api-budget")
        with D1Source("acct", "db", token=server.token, api_url=server.base_url, budget=budget) as source:
            result = dump_database(source, out)
    return result.requests, result.sql_bytes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rest-rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        db = tmp / "big.sqlite"
        build(db, args.rows)
        with open(os.devnull, "wb") as devnull:
            sqlite_s, sqlite_mb = best_of(args.repeat, lambda: timed(["sqlite3", str(db), ".dump"], devnull))

            def patina_run():
                out = tmp / "out.sql"
                out.unlink(missing_ok=True)
                return timed([str(PATINA), "dump", str(db), "-o", str(out), "-q"], devnull)

            patina_s, patina_mb = best_of(args.repeat, patina_run)
        print(f"| {args.rows:,}-row table | wall (best of {args.repeat}) | peak RSS |")
        print("|---|---|---|")
        print(f"| `sqlite3 DB .dump` | {sqlite_s:.2f} s | {sqlite_mb:.0f} MB |")
        print(f"| `patina dump DB -o out.sql` | {patina_s:.2f} s ({patina_s / sqlite_s:.2f}x) | {patina_mb:.0f} MB |")
        if args.rest_rows:
            small = tmp / "rest.sqlite"
            build(small, args.rest_rows)
            requests, sql_bytes = rest_requests(small, tmp / "rest.sql")
            per_2mb = sql_bytes / 2_000_000
            print(
                f"\nREST path, {args.rest_rows:,} rows: {requests} requests for {sql_bytes / 1e6:.1f} MB of SQL "
                f"({requests / per_2mb:.2f} requests per 2 MB; {args.rows:,} rows would take about "
                f"{round(requests * args.rows / args.rest_rows)})"
            )


if __name__ == "__main__":
    main()
