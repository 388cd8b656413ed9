"""`make demo`: the nightly backup, for real, on the embedded default.

Generates the spec's six Grove databases as local SQLite files (a little different each day, like live
databases), runs the nightly job for the last few days on the Dagster instance in this directory
(dagster.yaml: everything under .patina/), and prints what it stored. `make ui` then shows those runs.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import dagster as dg

from .config import PatinaConfig, default_config
from .defs import build_definitions
from .units import human_bytes
from .defs.resources import BucketResource
from .defs.schedules import NIGHTLY_JOB
from .demo_data import generate_demo_databases


def run_demo(root: Path, days: int = 3, out=sys.stdout) -> int:
    config = default_config(root)
    instance = dg.DagsterInstance.from_config(str(root))
    defs = build_definitions(config)
    job = defs.resolve_job_def(NIGHTLY_JOB)
    sources = root / ".patina" / "sources"
    today = dt.datetime.now(dt.timezone.utc).date()
    failed = 0
    for back in range(days, 0, -1):
        day = today - dt.timedelta(days=back)
        generate_demo_databases(sources, day=day)
        result = job.execute_in_process(
            partition_key=day.isoformat(),
            instance=instance,
            tags={"patina/trigger": "demo"},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )
        status = "ok" if result.success else "FAILED"
        failed += not result.success
        print(f"nightly_backup {day}: run {result.run_id[:8]} {status}", file=out)
    print_backups(config, out)
    print(f"\nBucket: {config.bucket.local.path}\nDagster instance: {root / '.patina' / 'dagster'} (open it with `make ui`)", file=out)
    return 1 if failed else 0


def print_backups(config: PatinaConfig, out=sys.stdout) -> None:
    store = BucketResource(local_path=str(config.bucket.local.path)).store()
    manifests = sorted(store.list_daily(), key=lambda m: (m.day, m.database))
    print(f"\n{'day':<10}  {'database':<24} {'rows':>8} {'bytes':>10}  {'sha256':<12}  key", file=out)
    for m in manifests:
        print(f"{m.day:<10}  {m.database:<24} {m.rows:>8,} {human_bytes(m.bytes):>10}  {m.sha256[:12]}  {m.key}", file=out)


if __name__ == "__main__":
    sys.exit(run_demo(Path.cwd()))
