"""`make demo`: the nightly backup and the weekly archive, for real, on the embedded default.

Generates the spec's six Grove databases as local SQLite files (a little different each day, like live
databases), runs the nightly job for every night from the start of the last complete week (Sunday to Saturday,
UTC) through yesterday, then that week's archive job (archive, its checks, retention, reconciliation), on the
Dagster instance in this directory (dagster.yaml: everything under .patina/), and prints what it stored.
`make ui` then shows every asset materialized and every check evaluated.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dagster as dg

from .config import PatinaConfig, default_config
from .defs import build_definitions
from .defs.archives.jobs import WEEKLY_JOB
from .defs.dumps.jobs import NIGHTLY_JOB
from .defs.resources import BucketResource
from .demo_data import DEMO_DATABASE_NAMES, generate_demo_databases
from .storage import week_start_of
from .units import human_bytes

# Errors only on the console: every night of the demo is a night long past (see run_demo), so each dump warns
# that it was captured late; the demo says that once instead, and the UI keeps every line.
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def demo_nights(today: dt.date) -> list[dt.date]:
    """Every night from the Sunday that starts the last complete week before ``today`` through yesterday."""
    yesterday = today - dt.timedelta(days=1)
    last_saturday = yesterday - dt.timedelta(days=(yesterday.weekday() - 5) % 7)
    sunday = last_saturday - dt.timedelta(days=6)
    return [sunday + dt.timedelta(days=n) for n in range((yesterday - sunday).days + 1)]


def run_demo(root: Path, nights: list[dt.date] | None = None, out=sys.stdout) -> int:
    config = default_config(root)
    instance = dg.DagsterInstance.from_config(str(root))
    defs = build_definitions(config)
    nightly = defs.resolve_job_def(NIGHTLY_JOB)
    nights = nights or demo_nights(dt.datetime.now(dt.UTC).date())
    print(
        f"Backing up the nights of {nights[0]} to {nights[-1]} now, each from its sources as they were that night: "
        "every backup is marked captured late (taken after its day ended), as a backfill of a past night is.",
        file=out,
    )
    failed = 0
    for day in sources_day_by_day(root, nights):
        result = nightly.execute_in_process(
            partition_key=day.isoformat(),
            instance=instance,
            tags={"patina/trigger": "demo"},
            run_config=QUIET,
            raise_on_error=False,
        )
        failed += not result.success
        print(f"{NIGHTLY_JOB} {day}: run {result.run_id[:8]} {'ok' if result.success else 'FAILED'}", file=out)
    week = week_start_of(nights[0])
    if week + dt.timedelta(days=6) in nights:  # a whole week backed up: archive it, as Sunday's schedule would
        result = defs.resolve_job_def(WEEKLY_JOB).execute_in_process(
            partition_key=week.isoformat(),
            instance=instance,
            tags={"patina/trigger": "demo"},
            run_config=QUIET,
            raise_on_error=False,
        )
        failed += not result.success
        print(f"{WEEKLY_JOB} {week}: run {result.run_id[:8]} {'ok' if result.success else 'FAILED'}", file=out)
    print_backups(config, out)
    print(
        f"\nBucket: {config.bucket.local.path}\nDagster instance: {root / '.patina' / 'dagster'} (open it with "
        "`make ui`)",
        file=out,
    )
    return 1 if failed else 0


def sources_of(root: Path) -> Path:
    return root / ".patina" / "sources"


def sources_day_by_day(root: Path, nights: list[dt.date]) -> Iterator[dt.date]:
    """Each night in turn, with the source databases as they were that day in ``.patina/sources``.

    The next night's databases are generated in a second process while the current night is backed up (the
    backup mostly waits for the Dagster instance's SQLite commits), then moved into place between runs."""
    sources = sources_of(root)
    staging = root / ".patina" / "sources-next"
    with ProcessPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(generate_demo_databases, staging / nights[0].isoformat(), nights[0])
        for index, day in enumerate(nights):
            generated = pending.result()
            if index + 1 < len(nights):
                following = nights[index + 1]
                pending = pool.submit(generate_demo_databases, staging / following.isoformat(), following)
            sources.mkdir(parents=True, exist_ok=True)
            for name, path in generated.items():
                os.replace(path, sources / f"{name}.sqlite")
            path.parent.rmdir()
            yield day
    staging.rmdir()


def ensure_sources(root: Path, out=sys.stdout) -> None:
    """The demo's source databases, as of yesterday, if any is missing (`make ui` before `make demo`)."""
    sources = sources_of(root)
    if all((sources / f"{name}.sqlite").is_file() for name in DEMO_DATABASE_NAMES):
        return
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    generate_demo_databases(sources, day=yesterday)
    print(f"generated the demo's source databases in {sources}", file=out)


def print_backups(config: PatinaConfig, out=sys.stdout) -> None:
    """The daily backups the bucket holds, one line each (SIZE is the SQL's size, as `patina list` shows it)."""
    store = BucketResource(local_path=str(config.bucket.local.path)).store()
    manifests = sorted(store.list_daily(), key=lambda m: (m.day, m.database))
    print(f"\n{'day':<10}  {'database':<24} {'rows':>8} {'size':>10} {'stored':>10}  {'sha256':<12}  key", file=out)
    for m in manifests:
        print(
            f"{m.day:<10}  {m.database:<24} {m.rows:>8,} {human_bytes(m.sql_bytes):>10} {human_bytes(m.bytes):>10}  "
            f"{m.sha256[:12]}  {m.key}",
            file=out,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m patina_assets.demo", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sources-only",
        action="store_true",
        help="only generate the source databases if missing (what `make ui` needs)",
    )
    args = parser.parse_args(argv)
    if args.sources_only:
        ensure_sources(Path.cwd())
        return 0
    return run_demo(Path.cwd())


if __name__ == "__main__":
    sys.exit(main())
