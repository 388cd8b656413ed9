"""Benchmark: one night of N databases in-process, through the nightly job's executor, and as a launched run.

    .venv/bin/python bench/bench_pipeline.py [--databases 6,50,200] [--repeat 3] [--modes inprocess,executor,launched]
    .venv/bin/python bench/bench_pipeline.py --databases 50 --mode executor --work /tmp/pipe50   # one night, for farm-bench
    .venv/bin/python bench/bench_pipeline.py --checkout /work/main ...   # another checkout's code (before/after)

Each mode is one fresh process that runs the nightly job once for the same day (dumps, publishes and every
dump check), on a Dagster instance and a local bucket of its own under --work:

    inprocess  `execute_in_process` (what `make demo` does): every step in one process
    executor   `dagster job execute`: the job's own executor, as the CLI runs it (one process per step, or
               per dump with the checks folded into it)
    launched   `dagster job launch` and wait for the run's end: the run launcher starts `dagster api
               execute_run`, which runs the job's executor; this is what the daemon does with a queued run
               (`patina trigger`, the UI's Materialize, the schedule and backfills), minus its polling

The N source databases are small SQLite files (two tables, a few thousand rows): what is measured is what
Dagster adds around each dump. Modes alternate (inprocess, executor, launched, inprocess, ...) so a drift of
the shared machine slows all alike; prints the median wall seconds of each and the ratio to in-process.
Goal (issue 17): executor and launched within 1.5x of in-process (goal 1.2x).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The checkout whose code runs (--checkout: e.g. main's, for a before/after), with its own .venv.
CHECKOUT = ROOT
PYTHON = ROOT / ".venv" / "bin" / "python"
MODES = ("inprocess", "executor", "launched")
DAY = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()

INSTANCE_YAML = """\
storage:
  sqlite:
    base_dir: {home}/storage
local_artifact_storage:
  module: dagster._core.storage.root
  class: LocalArtifactStorage
  config:
    base_dir: {home}
compute_logs:
  module: dagster._core.storage.local_compute_log_manager
  class: LocalComputeLogManager
  config:
    base_dir: {home}/logs
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 3
"""

IN_PROCESS = """
import sys
import dagster as dg
from patina_assets.config import load_config
from patina_assets.defs import build_definitions
from patina_assets.defs.dumps.jobs import NIGHTLY_JOB
job = build_definitions(load_config()).resolve_job_def(NIGHTLY_JOB)
result = job.execute_in_process(
    partition_key=sys.argv[1],
    instance=dg.DagsterInstance.get(),
    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    raise_on_error=False,
)
sys.exit(0 if result.success else 1)
"""

WAIT_FOR_RUN = """
import sys, time
import dagster as dg
instance = dg.DagsterInstance.get()
ended = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
while (run := instance.get_run_by_id(sys.argv[1])) is None or run.status not in ended:
    time.sleep(0.2)
sys.exit(0 if run.status == dg.DagsterRunStatus.SUCCESS else 1)
"""


def make_source(path: Path, seed: int) -> None:
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, created_at INTEGER)")
    db.execute(
        "CREATE TABLE events(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), kind TEXT, score REAL)"
    )
    db.executemany(
        "INSERT INTO users VALUES (?, ?, ?)", ((i, f"u{i}@example.com", 1_700_000_000 + i) for i in range(500))
    )
    db.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?)",
        ((i, rng.randrange(500), rng.choice(["view", "click", "buy"]), rng.random()) for i in range(3000)),
    )
    db.commit()
    db.close()


def prepare(work: Path, databases: int) -> dict[str, str]:
    """The sources, patina.yaml and the instance's home under `work` (kept between calls); the environment."""
    sources, home = work / "sources", work / "dagster"
    sources.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    names = [f"tenant-{n:04d}" for n in range(databases)]
    for n, name in enumerate(names):
        if not (sources / f"{name}.sqlite").exists():
            make_source(sources / f"{name}.sqlite", n)
    lines = ["start_date: 2026-01-01", "databases:"]
    lines += [f"  - name: {name}\n    source: sources/{name}.sqlite" for name in names]
    lines += ["bucket:", "  local:", "    path: bucket"]
    (work / "patina.yaml").write_text("\n".join(lines) + "\n")
    (home / "dagster.yaml").write_text(INSTANCE_YAML.format(home=home))
    return {**os.environ, "DAGSTER_HOME": str(home), "PATINA_CONFIG": str(work / "patina.yaml")}


def command(mode: str, run_id: str) -> list[str]:
    tags = json.dumps({"dagster/partition": DAY})
    if mode == "inprocess":
        return [str(PYTHON), "-c", IN_PROCESS, DAY]
    target = ["-m", "patina_assets.definitions", "-d", str(CHECKOUT), "-j", "nightly_backup", "--tags", tags]
    if mode == "executor":
        return [str(PYTHON), "-m", "dagster", "job", "execute", *target]
    return [str(PYTHON), "-m", "dagster", "job", "launch", *target, "--run-id", run_id]


def run_night(mode: str, env: dict[str, str]) -> float:
    """Wall seconds of one night in `mode`, from the process start to the run's end."""
    run_id = __import__("uuid").uuid4().hex
    started = time.monotonic()
    done = subprocess.run(command(mode, run_id), env=env, cwd=CHECKOUT, capture_output=True, text=True)
    if done.returncode == 0 and mode == "launched":
        done = subprocess.run([str(PYTHON), "-c", WAIT_FOR_RUN, run_id], env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"{mode}: the night failed:\n{tail}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--databases", default="6,50", help="comma-separated database counts (default 6,50)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--mode", choices=MODES, help="one night in this mode only (for farm-bench); needs --work")
    parser.add_argument("--work", type=Path, help="keep sources, bucket and instance here (default: a temporary one)")
    parser.add_argument("--checkout", type=Path, help="run this checkout's code with its .venv (default: this one)")
    args = parser.parse_args()
    if args.checkout:
        global CHECKOUT, PYTHON
        CHECKOUT, PYTHON = args.checkout.resolve(), args.checkout.resolve() / ".venv" / "bin" / "python"
    if args.mode:
        if args.work is None:
            parser.error("--mode needs --work (the sources are generated once there)")
        env = prepare(args.work, int(args.databases.split(",")[0]))
        print(f"{args.mode}: {run_night(args.mode, env):.2f} s")
        return 0
    modes = args.modes.split(",")
    print(
        "| databases | "
        + " | ".join(f"{m} (s)" for m in modes)
        + " | "
        + " | ".join(f"{m}/inprocess" for m in modes[1:])
        + " |"
    )
    print("|" + "---|" * (1 + 2 * len(modes) - 1))
    for count in (int(n) for n in args.databases.split(",")):
        with tempfile.TemporaryDirectory(prefix="patina-bench-pipeline-") as tmp:
            env = prepare(args.work / str(count) if args.work else Path(tmp), count)
            run_night(modes[0], env)  # warm-up: the first night publishes, later ones supersede (the same work)
            times: dict[str, list[float]] = {m: [] for m in modes}
            for _ in range(args.repeat):
                for mode in modes:
                    times[mode].append(run_night(mode, env))
            medians = {m: statistics.median(t) for m, t in times.items()}
            base = medians.get("inprocess")
            ratios = [f"{medians[m] / base:.2f}x" if base else "-" for m in modes[1:]]
            print(
                f"| {count} | " + " | ".join(f"{medians[m]:.1f}" for m in modes) + " | " + " | ".join(ratios) + " |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
