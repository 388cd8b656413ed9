"""Benchmark: `patina dump` against `sqlite3 DB .dump`, and the REST path's requests.

    .venv/bin/python bench/bench_dump.py [--rows 2000000] [--rest-rows 200000]
    .venv/bin/python bench/bench_dump.py --shapes [narrow,text,blob,real] [--repeat 5] [--keep DIR]

The first form: one 2,000,000-row table, and the requests the REST path makes for the same data.
`--shapes`: four tables of different shape (below), each dumped in turn (sqlite3 to /dev/null, sqlite3 to
a file, sqlite3 to a file then fsync'd, patina to a file, and again: on a loaded machine a drift then slows
all alike); prints the median wall and CPU time of each, the ratios of the medians (against sqlite3 writing a
file on the same filesystem, against the same made durable -- patina fsyncs its dump before it reports it
written, as a backup must -- and against /dev/null), and the peak RSS of the largest single process of each
command, the dump's worker processes included. `--patina PATH` runs another checkout's.

    narrow  2,000,000 rows: id, two integers, a short text with quotes, a random REAL, a timestamp
    text      500,000 rows of about 1 KB of text
    blob       50,000 rows of a 20 KB BLOB
    real    1,000,000 rows of 5 doubles of mixed magnitudes

Goals (issues 2 and 17): wall time within 2x of `sqlite3 .dump` on every shape (goal 1.25x), peak RSS
at most 64 MB, and over the REST API about one request per 2 MB of SQL. Prints Markdown tables; the
README keeps the latest results.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATINA = ROOT / ".venv" / "bin" / "patina"


def fill(path: Path, create: str, rows) -> None:
    """A new SQLite file with one table (`create`) holding `rows` (tuples)."""
    db = sqlite3.connect(path)
    db.execute(create)
    table, columns = create.split("(", 1)[0].split()[-1], create.count(",") + 1
    db.executemany(f"INSERT INTO {table} VALUES ({','.join('?' * columns)})", rows)
    db.commit()
    db.close()


def build(path: Path, rows: int) -> None:
    rng = random.Random(1)
    kinds = ["login", "logout", "view", "click", "purchase"]
    fill(
        path,
        "CREATE TABLE events(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, kind TEXT NOT NULL, "
        "payload TEXT, score REAL, created_at INTEGER)",
        (
            (
                i,
                rng.randrange(100_000),
                kinds[i % 5],
                f'payload {rng.randrange(10**9)} it\'s "quoted"',
                rng.random() * 1000,
                1_700_000_000 + i,
            )
            for i in range(1, rows + 1)
        ),
    )


def build_text(path: Path, rows: int = 500_000) -> None:
    rng = random.Random(2)
    words = ["lorem", "ipsum", "d1", "backup", "it's", '"quoted"', "naïve", "tenant", "restore", "snapshot"]
    bodies = [" ".join(rng.choice(words) for _ in range(200))[:1000] for _ in range(997)]
    fill(
        path,
        "CREATE TABLE docs(id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT NOT NULL)",
        ((i, f"post {i}", f"{i}: {bodies[i % 997]}") for i in range(1, rows + 1)),
    )


def build_blob(path: Path, rows: int = 50_000) -> None:
    rng = random.Random(3)
    fill(
        path,
        "CREATE TABLE files(id INTEGER PRIMARY KEY, name TEXT NOT NULL, data BLOB NOT NULL)",
        ((i, f"file-{i}.bin", rng.randbytes(20_480)) for i in range(1, rows + 1)),
    )


def build_real(path: Path, rows: int = 1_000_000) -> None:
    rng = random.Random(4)
    fill(
        path,
        "CREATE TABLE readings(id INTEGER PRIMARY KEY, a REAL, b REAL, c REAL, d REAL, e REAL)",
        (
            (
                i,
                rng.random(),
                rng.uniform(-1e6, 1e6),
                rng.gauss(0, 1e-3),
                rng.lognormvariate(0, 10),
                round(rng.uniform(0, 1000), 2),
            )
            for i in range(1, rows + 1)
        ),
    )


SHAPES = {
    "narrow": ("2,000,000 rows of 6 columns (integers, short text, a REAL)", lambda path: build(path, 2_000_000)),
    "text": ("500,000 rows of about 1 KB of text", build_text),
    "blob": ("50,000 rows of a 20 KB BLOB", build_blob),
    "real": ("1,000,000 rows of 5 doubles", build_real),
}


def run_once(cmd: list[str], stdout) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of the largest single process of `cmd`'s
    tree (wait4 counts the descendants it reaped: the dump's worker processes)."""
    start = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=stdout)
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with exit code {process.returncode}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def shapes(names: list[str], repeat: int, keep: Path | None, out_dir: Path | None, patina: Path) -> None:
    """Each shape dumped by `sqlite3 DB .dump > /dev/null`, `sqlite3 DB .dump > FILE` and `patina dump DB -o
    FILE` in turn. The file is the fair yardstick: patina writes (and fsyncs) a real file, which costs the
    kernel a copy of every byte; /dev/null costs nothing. Both are printed."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        directory = keep or tmp
        directory.mkdir(parents=True, exist_ok=True)
        print(
            f"| shape (medians of {repeat}, wall / cpu) | `sqlite3 DB .dump > /dev/null` | `sqlite3 DB .dump > FILE` "
            "| the same, then fsync | `patina dump DB -o FILE` | patina / sqlite3 to a file "
            "| patina / sqlite3 to a file, fsync'd | patina / sqlite3 to /dev/null | peak RSS sqlite3 / patina |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for name in names:
            label, make = SHAPES[name]
            db = directory / f"{name}.sqlite"
            if not db.exists():
                make(db)
            out = (out_dir or tmp) / "out.sql"
            yardstick = (out_dir or tmp) / "sqlite3-out.sql"
            null_runs, file_runs, synced_runs, patina_runs = [], [], [], []
            with open(os.devnull, "wb") as devnull:
                run_once(["sqlite3", str(db), ".dump"], devnull)  # warm the page cache
                for _ in range(repeat):
                    null_runs.append(run_once(["sqlite3", str(db), ".dump"], devnull))
                    yardstick.unlink(missing_ok=True)
                    with open(yardstick, "wb") as file:
                        file_runs.append(run_once(["sqlite3", str(db), ".dump"], file))
                    yardstick.unlink()
                    with open(yardstick, "wb") as file:
                        wall, cpu, rss = run_once(["sqlite3", str(db), ".dump"], file)
                        start = time.perf_counter()
                        os.fsync(file.fileno())  # what patina does before it calls a dump written
                        synced_runs.append((wall + time.perf_counter() - start, cpu, rss))
                    yardstick.unlink()
                    out.unlink(missing_ok=True)
                    patina_runs.append(run_once([str(patina), "dump", str(db), "-o", str(out), "-q"], devnull))
            sql_mb = out.stat().st_size / 1e6
            out.unlink()

            def medians(runs):
                return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)

            null, file, synced = medians(null_runs), medians(file_runs), medians(synced_runs)
            dump = medians(patina_runs)
            print(
                f"| {name}: {label}, {sql_mb:,.0f} MB of SQL | {null[0]:.2f} s / {null[1]:.2f} s "
                f"| {file[0]:.2f} s / {file[1]:.2f} s | {synced[0]:.2f} s | {dump[0]:.2f} s / {dump[1]:.2f} s "
                f"| **{dump[0] / file[0]:.2f}x** / {dump[1] / file[1]:.2f}x | **{dump[0] / synced[0]:.2f}x** "
                f"| {dump[0] / null[0]:.2f}x / {dump[1] / null[1]:.2f}x "
                f"| {max(r[2] for r in file_runs):.0f} / {max(r[2] for r in patina_runs):.0f} MB |",
                flush=True,
            )


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
    parser.add_argument("--shapes", nargs="?", const=",".join(SHAPES), help="the four shapes (or some: narrow,blob)")
    parser.add_argument("--keep", type=Path, help="keep the shapes' databases in this directory and reuse them")
    parser.add_argument(
        "--out-dir", type=Path, help="where both tools write their dumps (default: a temporary directory)"
    )
    parser.add_argument("--patina", type=Path, default=PATINA, help="the patina to run (another checkout's, say)")
    args = parser.parse_args()
    if args.shapes:
        names = args.shapes.split(",")
        unknown = [n for n in names if n not in SHAPES]
        if unknown:
            parser.error(f"unknown shape {unknown[0]!r}: choose from {', '.join(SHAPES)}")
        shapes(names, args.repeat, args.keep, args.out_dir, args.patina)
        return
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
