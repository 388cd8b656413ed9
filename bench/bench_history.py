"""Benchmark: what one check and `patina status` cost as the bucket grows (databases x days kept).

    .venv/bin/python bench/bench_history.py [--grid 6x7,6x90,200x7,200x30] [--repeat 5] [--work DIR]

For each DATABASESxDAYS a local bucket is filled with that many backups (one small real dump, published
under every (day, database) with its manifest, its verification record and the database's history index),
then it times, median of --repeat:

    check (listing)  the history a size_anomaly check needs the old way: list `daily/`, read every manifest
                     of the database (`BackupStore.list_daily(database=...)`), keep the 7 captured before
    check (index)    the same through the database's history index (`verify.previous_backups`)
    status, bucket (every manifest)  what `patina status` read from the bucket before the index held the
                     status's facts: every manifest and verification record (`Snapshot.take(indexed=False)`)
    status, bucket (index)  what it reads now (`status.Snapshot`): one listing, one index per database
    status           `patina status` as a command, without DAGSTER_HOME (a fresh process, imports included)
    status, Dagster  the same with DAGSTER_HOME set (an empty instance: Dagster imported and opened)

Goals (issue 17): one check costs the same with 6 or 2,000 databases and 7 or 90 days kept; `patina
status` under 0.5 s on 200 databases x 30 days.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from patina_assets import history  # noqa: E402
from patina_assets.backup import manifest_for  # noqa: E402
from patina_assets.catalog import Catalog  # noqa: E402
from patina_assets.config import load_config  # noqa: E402
from patina_assets.engine import SqliteSource, dump_database  # noqa: E402
from patina_assets.status import Snapshot, unavailable  # noqa: E402
from patina_assets.storage import BackupStore, LocalBucket, VerificationRecord, by_capture, utc_timestamp  # noqa: E402
from patina_assets.verify import HISTORY_WINDOW, previous_backups  # noqa: E402

PATINA = ROOT / ".venv" / "bin" / "patina"
LAST_DAY = dt.date(2026, 11, 30)


def build(work: Path, databases: int, days: int) -> tuple[BackupStore, list[str], Path]:
    """The bucket, the database names and patina.yaml; built once per work directory."""
    names = [f"tenant-{n:04d}" for n in range(databases)]
    source, dump, bucket = work / "source.sqlite", work / "dump.sql.zst", work / "bucket"
    store = BackupStore(LocalBucket(bucket))
    config = work / "patina.yaml"
    if not config.exists():
        db = sqlite3.connect(source)
        db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        db.executemany("INSERT INTO t VALUES (?, ?)", ((i, f"row {i}") for i in range(200)))
        db.commit()
        db.close()
        with SqliteSource(source) as src:
            result = dump_database(src, dump, database=names[0])
        for day in (LAST_DAY - dt.timedelta(days=n) for n in range(days)):
            captured = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(3), dt.UTC)
            for name in names:
                manifest = dataclasses.replace(
                    manifest_for(result, day.isoformat(), None),
                    database=name,
                    captured_at=captured.isoformat(),
                )
                stored = store.publish_daily(day, name, dump, manifest)
                record = VerificationRecord(
                    key=stored.key, sha256=stored.sha256, passed=True, checked_at=utc_timestamp(), problems=()
                )
                store.record_verification(stored, record)
        history.rebuild_all(store, store.inventory())
        lines = ["start_date: 2026-01-01", "databases:"]
        lines += [f"  - name: {name}\n    source: {source}" for name in names]
        lines += ["bucket:", "  local:", f"    path: {bucket}"]
        config.write_text("\n".join(lines) + "\n")
    return store, names, config


def median_seconds(repeat: int, work) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def history_by_listing(store: BackupStore, current) -> list:
    earlier = [m for m in store.list_daily(database=current.database) if by_capture(m) < by_capture(current)]
    return sorted(earlier, key=by_capture)[-HISTORY_WINDOW:]


def status_seconds(config: Path, repeat: int, *, dagster: bool) -> float:
    # Compiled modules cached as an installed Patina has them (PYTHONDONTWRITEBYTECODE would time the compiler).
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "PYTHONDONTWRITEBYTECODE")}
    env["PYTHONPYCACHEPREFIX"] = str(config.parent / "pycache")
    env["PATINA_CONFIG"] = str(config)
    if dagster:
        env["DAGSTER_HOME"] = str(config.parent / "dagster")
        (config.parent / "dagster").mkdir(exist_ok=True)

    def run() -> None:
        done = subprocess.run([str(PATINA), "status"], env=env, capture_output=True, text=True)
        if done.returncode not in (0, 1, 2):
            raise SystemExit(f"patina status failed: {done.stderr[-2000:]}")

    run()  # a warm-up: the compiled modules, the instance's storage
    return median_seconds(repeat, run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", default="6x7,6x90,200x7,200x30")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--work", type=Path, help="keep the buckets here between calls (default: temporary)")
    parser.add_argument("--no-status", action="store_true", help="skip `patina status`")
    args = parser.parse_args()
    print(
        "| databases x days | check (listing) s | check (index) s | status, bucket (every manifest) s "
        "| status, bucket (index) s | status s | status, Dagster s |"
    )
    print("|---|---|---|---|---|---|---|")
    for cell in args.grid.split(","):
        databases, days = (int(n) for n in cell.split("x"))
        with tempfile.TemporaryDirectory(prefix="patina-bench-history-") as tmp:
            work = (args.work / cell) if args.work else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            store, names, config = build(work, databases, days)
            current = store.get_manifest(LAST_DAY, names[len(names) // 2])
            assert history_by_listing(store, current) == previous_backups(store, current, limit=HISTORY_WINDOW)
            listing = median_seconds(args.repeat, lambda: history_by_listing(store, current))  # noqa: B023
            indexed = median_seconds(args.repeat, lambda: previous_backups(store, current, limit=HISTORY_WINDOW))  # noqa: B023
            patina = load_config(config)
            catalog = Catalog.for_config(patina)

            def snapshot(indexed: bool, now=None) -> dict:
                document = Snapshot.take(patina, catalog, unavailable("bench"), now, indexed=indexed).to_dict()  # noqa: B023
                document.pop("indexRebuilt")
                return document

            warm = Snapshot.take(patina, catalog, unavailable("bench"))  # rebuilds what the build left stale
            assert snapshot(True, warm.now) == snapshot(False, warm.now), "the index's status is not the bucket's"
            every_manifest = median_seconds(args.repeat, lambda: snapshot(False))  # noqa: B023
            bucket_part = median_seconds(args.repeat, lambda: snapshot(True))  # noqa: B023
            status = "-" if args.no_status else f"{status_seconds(config, args.repeat, dagster=False):.2f}"
            dagster = "-" if args.no_status else f"{status_seconds(config, args.repeat, dagster=True):.2f}"
            print(
                f"| {databases} x {days} | {listing:.4f} | {indexed:.4f} | {every_manifest:.3f} | {bucket_part:.3f} "
                f"| {status} | {dagster} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
