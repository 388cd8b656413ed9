"""Benchmark: dumping over D1's REST API from workerd's own D1 (`wrangler dev --local` running the REST
stand-in of tests/support/rest_worker.py): requests, wall time, and rows D1 read per row dumped.

    .venv/bin/python bench/bench_rest.py [--rows 1000000] [--wide-rows 20000]

Goals (issue 9): D1 bills the rows each query reads (`meta.rows_read`): at most 1.1 rows read per row
dumped, for a 1,000,000-row table and for a table of 100 columns. The requests count against Cloudflare's
1,200 requests per 5 minutes. Wall time is the dump alone (workerd started beforehand) and, on a shared
machine, only a rough figure. Prints a Markdown table; the README keeps the latest results.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_dump import build  # noqa: E402  the same events table as the SQLite benchmark
from support.rest_worker import WorkerD1Server  # noqa: E402

from patina_assets.engine import D1Source, dump_database  # noqa: E402


def build_wide(path: Path, rows: int) -> None:
    """100 columns (D1's maximum): an INTEGER PRIMARY KEY and 99 of every type, REALs of every exponent."""
    kinds = ["INTEGER", "TEXT", "REAL", "BLOB", ""]
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE wide(id INTEGER PRIMARY KEY, " + ", ".join(f"c{i:02d} {kinds[i % 5]}" for i in range(99)) + ")"
    )
    rng = random.Random(2)

    def row(i: int) -> list:
        values = [i]
        for c in range(99):
            values.append(
                [
                    rng.randrange(-(2**63), 2**63),
                    f"text {c} {i}",
                    rng.random() * 10.0 ** rng.randrange(-300, 300),
                    rng.randbytes(4),
                    None,
                ][c % 5]
            )
        return values

    db.executemany(f"INSERT INTO wide VALUES ({','.join('?' * 100)})", (row(i) for i in range(1, rows + 1)))
    db.commit()
    db.close()


def dump_over_workerd(server: WorkerD1Server, database_id: str, out: Path) -> dict:
    start = time.perf_counter()
    with D1Source("acct", database_id, token=server.token, api_url=server.base_url) as source:
        result = dump_database(source, out)
    return {
        "seconds": time.perf_counter() - start,
        "requests": result.requests,
        "rows": result.rows,
        "rows_read": source.rows_read,
        "mb": result.sql_bytes / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--wide-rows", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build(tmp / "events.sqlite", args.rows)
        build_wide(tmp / "wide.sqlite", args.wide_rows)
        with WorkerD1Server({"events": tmp / "events.sqlite", "wide": tmp / "wide.sqlite"}, tmp / "workerd") as server:
            results = {
                f"events, {args.rows:,} rows x 6 columns": dump_over_workerd(server, "events", tmp / "events.sql"),
                f"wide, {args.wide_rows:,} rows x 100 columns": dump_over_workerd(server, "wide", tmp / "wide.sql"),
            }
    print("| table (over workerd's D1) | requests | wall | rows read per row dumped | SQL |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['requests']} | {r['seconds']:.1f} s | {r['rows_read'] / r['rows']:.3f} "
            f"({r['rows_read']:,} / {r['rows']:,}) | {r['mb']:.0f} MB |"
        )


if __name__ == "__main__":
    main()
