"""Benchmark: one night of N databases in-process, through the nightly job's executor, as a launched run, and
through a long-lived webserver and daemon (the UI's Launch, a backfill).

    .venv/bin/python bench/bench_pipeline.py [--databases 6,50,200] [--repeat 3] [--modes inprocess,executor,ui]
    .venv/bin/python bench/bench_pipeline.py --databases 50 --mode executor --work /tmp/pipe50   # one night, for a timer of whole processes
    .venv/bin/python bench/bench_pipeline.py --databases 6 --serve --work /tmp/pipe6 &   # then, as often as wanted:
    .venv/bin/python bench/bench_pipeline.py --databases 6 --mode ui --work /tmp/pipe6   # one night through it
    .venv/bin/python bench/bench_pipeline.py --checkout /work/main ...   # another checkout's code (before/after)
    .venv/bin/python bench/bench_pipeline.py --dagster-daemon ...   # served by Dagster's own daemon (30-s backfill loop)
    .venv/bin/python bench/bench_pipeline.py --databases 6 --days 7 --modes inprocess,ui,backfill   # a week of nights

Each mode runs the nightly job once for the same day (with `--days N`: for each of the N days up to yesterday) (dumps, publishes and every dump check) on a local
bucket under --work, and is timed from the moment its command starts to the run's end:

    inprocess  `execute_in_process` (what `make demo` does) in a fresh process: every step in one process
    executor   `dagster job execute` in a fresh process: the job's own executor, as the CLI runs it (one
               process per dump, with its checks folded into it)
    launched   `dagster job launch` (a fresh CLI, which loads the code location in an ephemeral code server) and
               wait for the run's end: the run launcher starts `dagster api execute_run`, which runs the job's
               executor, on the default run coordinator (no queue, no daemon)
    ui         what the UI's "Launch run" / "Materialize all" does: a GraphQL `launchPipelineExecution` to a
               running webserver; the run is queued, the daemon dequeues it and its code server starts the run
               worker. The webserver, daemon and code server (`dagster dev` with Patina's daemon, as `make ui` runs
               them: `python -m patina_assets.dev`; with `--dagster-daemon`, or for a checkout without it,
               Dagster's `dagster dev`; on the
               instance configuration of the checkout's dagster.yaml) are started once by `--serve`, outside
               the timing; the schedule and `patina trigger` end in the same queue
    backfill   a backfill of the one partition (GraphQL `launchPartitionBackfill`) through the same servers: the
               daemon's backfill loop (every second in Patina's daemon, patina_assets/daemon.py; every 30 s in
               Dagster's) creates the run, then as `ui`. With Dagster's daemon its wait is anything from 0 to
               30 s (15 on average), by where the loop is at submission: modes alternating in a cycle near 30 s
               can lock onto one phase for a whole run of the bench (3-7 s one time, 26-29 s another)
    trigger    `patina trigger` into the same queue: its CLI loads the code location and queues the on-demand
               job (as `dagster job launch` would, without that CLI and its ephemeral code server), then as `ui`.
               Not the nightly's work (no checks): compare its `submit` phase with `ui`'s, not its total with
               in-process

The served modes wait by reading the instance's SQLite run storage directly (no Dagster import in the bench's
poller) and print where the time went, from the run's events: submit (to the run's creation in the queue: the
webserver writes every planned materialization and check; for a backfill, also the backfill loop's wait),
queued (until the daemon dequeues it), run worker (its interpreter and code location, to RUN_START), first step
(the forkserver's start and preload, to the first step process), steps (to the last step's end) and ending
(to RUN_SUCCESS).

With `--days N`, `inprocess` runs the N nights one after another in one process, `ui` submits N runs at once
(N clicks of Materialize; the queue runs `max_concurrent_runs` of them at a time) and `backfill` one backfill
of the N partitions (what the UI makes of a range of days), each timed to the end of its last run: the cost of
a day in a backfill, the daemon's backfill loop's wait shared by all its days.

The N source databases are small SQLite files (two tables, a few thousand rows): what is measured is what
Dagster adds around each dump. Modes alternate (inprocess, executor, ..., inprocess, ...) so a drift of the
shared machine slows all alike; prints the median wall seconds of each and the ratio to in-process.
Goal (issue 17): every way a night runs within 1.5x of in-process (goal 1.2x).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The checkout whose code runs (--checkout: e.g. main's, for a before/after), with its own .venv.
CHECKOUT = ROOT
PYTHON = ROOT / ".venv" / "bin" / "python"
MODES = ("inprocess", "executor", "launched", "ui", "backfill", "trigger")
# Modes that submit to a long-lived webserver and daemon (`--serve`), started once outside the timing.
SERVED = ("ui", "backfill", "trigger")
DAGSTER_DEV = False  # --dagster-daemon: serve with Dagster's `dagster dev` (its daemon), not `make ui`'s
YESTERDAY = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
DAYS = [YESTERDAY.isoformat()]  # the nights each mode runs, oldest first (--days)
# Modes that can run several nights (--days): the others run one command per night.
SEVERAL_DAYS = ("inprocess", "ui", "backfill")
JOB = "nightly_backup"
LOCATION = "patina"
REPOSITORY = "__repository__"  # the repository Dagster makes of a module's `Definitions`
POLL_SECONDS = 0.1
SERVE_TIMEOUT_SECONDS = 600.0
ENDED = ("SUCCESS", "FAILURE", "CANCELED")

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
for day in sys.argv[1:]:
    result = job.execute_in_process(
        partition_key=day,
        instance=dg.DagsterInstance.get(),
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )
    if not result.success:
        sys.exit(1)
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

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

LAUNCH_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""

LOCATION_STATUS = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
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
    """The sources, patina.yaml and the instances' homes under `work` (kept between calls); the environment.

    Two instances: `dagster` (the default run coordinator: the fresh-process modes) and `served` (the checkout's
    own dagster.yaml: its queue, run monitoring, retries and pools, as `make ui` and production run)."""
    sources, home, served = work / "sources", work / "dagster", work / "served"
    for directory in (sources, home, served):
        directory.mkdir(parents=True, exist_ok=True)
    names = [f"tenant-{n:04d}" for n in range(databases)]
    for n, name in enumerate(names):
        if not (sources / f"{name}.sqlite").exists():
            make_source(sources / f"{name}.sqlite", n)
    lines = ["start_date: 2026-01-01", "databases:"]
    lines += [f"  - name: {name}\n    source: sources/{name}.sqlite" for name in names]
    lines += ["bucket:", "  local:", "    path: bucket"]
    (work / "patina.yaml").write_text("\n".join(lines) + "\n")
    (home / "dagster.yaml").write_text(INSTANCE_YAML.format(home=home))
    (served / "dagster.yaml").write_text(
        (CHECKOUT / "dagster.yaml").read_text().replace(".patina/dagster", str(served))
    )
    workspace = {
        "load_from": [
            {
                "python_module": {
                    "module_name": "patina_assets.definitions",
                    "location_name": LOCATION,
                    "working_directory": str(CHECKOUT),
                }
            }
        ]
    }
    (work / "workspace.yaml").write_text(json.dumps(workspace))  # JSON is YAML
    return {**os.environ, "DAGSTER_HOME": str(home), "PATINA_CONFIG": str(work / "patina.yaml")}


def command(mode: str, run_id: str) -> list[str]:
    tags = json.dumps({"dagster/partition": DAYS[-1]})
    if mode == "inprocess":
        return [str(PYTHON), "-c", IN_PROCESS, *DAYS]
    target = ["-m", "patina_assets.definitions", "-d", str(CHECKOUT), "-j", JOB, "--tags", tags]
    if mode == "executor":
        return [str(PYTHON), "-m", "dagster", "job", "execute", *target]
    return [str(PYTHON), "-m", "dagster", "job", "launch", *target, "--run-id", run_id]


# --------------------------------------------------------------------------------------------------
# The served modes: a webserver and a daemon started once, then GraphQL submissions
# --------------------------------------------------------------------------------------------------


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    if answer.get("errors"):
        raise SystemExit(f"GraphQL error: {answer['errors']}")
    return answer["data"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(work: Path, env: dict[str, str]) -> Iterator[int]:
    """`dagster dev` (webserver, daemon, one code server) on the `served` instance until the block ends; its
    port once the code location has loaded. It runs in a session of its own, which is ended as a whole.

    What `make ui` starts: `python -m patina_assets.dev`, dagster dev with Patina's daemon; Dagster's own
    `dagster dev` with `--dagster-daemon` (DAGSTER_DEV), or for a checkout from before patina_assets/dev.py."""
    port = free_port()
    patina_dev = (CHECKOUT / "patina_assets" / "dev.py").exists() and not DAGSTER_DEV
    log = open(work / "serve.log", "w")  # noqa: SIM115  (open as long as the servers run)
    served_env = {**env, "DAGSTER_HOME": str(work / "served")}
    server = subprocess.Popen(
        [str(PYTHON), "-m", *(["patina_assets.dev"] if patina_dev else ["dagster", "dev"])]
        + ["-w", str(work / "workspace.yaml"), "-p", str(port)],
        env=served_env,
        cwd=CHECKOUT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (work / "serve.json").write_text(json.dumps({"port": port, "pid": server.pid}))
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT_SECONDS
        while True:
            if server.poll() is not None:
                raise SystemExit(f"dagster dev ended (exit {server.returncode}): see {work / 'serve.log'}")
            with contextlib.suppress(OSError):
                entries = graphql(port, LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
                entry = next((e for e in entries if e["name"] == LOCATION), None)
                if entry and entry["loadStatus"] == "LOADED":
                    if entry["locationOrLoadError"]["__typename"] == "PythonError":
                        raise SystemExit(f"the code location did not load: {entry['locationOrLoadError']['message']}")
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"dagster dev did not load the code location in {SERVE_TIMEOUT_SECONDS:.0f} s")
            time.sleep(0.5)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)  # the session started above: dagster dev and its children
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
        (work / "serve.json").unlink(missing_ok=True)


def served_port(work: Path) -> int:
    try:
        return json.loads((work / "serve.json").read_text())["port"]
    except FileNotFoundError:
        raise SystemExit(f"no servers at {work}: start them first with --serve --work {work}") from None


def submit(mode: str, port: int, work: Path, env: dict[str, str]) -> tuple[str, list[str]]:
    """Submit the nights: ('run', their run ids) or ('backfill', [its id])."""
    if mode == "trigger":
        done = subprocess.run(
            [str(PYTHON), "-m", "patina_assets.cli", "trigger", "--json", "--workspace", str(work / "workspace.yaml")],
            env={**env, "DAGSTER_HOME": str(work / "served")},
            cwd=CHECKOUT,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"trigger: refused: {(done.stderr or done.stdout).strip()[-2000:]}")
        return "run", [json.loads(done.stdout)["jobId"]]
    repository = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    if mode == "ui":
        run_ids = []
        for day in DAYS:
            params = {
                "selector": {**repository, "jobName": JOB},
                "runConfigData": {},
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day}]},
            }
            answer = graphql(port, LAUNCH_RUN, {"params": params})["launchPipelineExecution"]
            if answer["__typename"] != "LaunchRunSuccess":
                raise SystemExit(f"ui: the run was refused: {answer}")
            run_ids.append(answer["run"]["runId"])
        return "run", run_ids
    params = {
        "selector": {"partitionSetName": f"{JOB}_partition_set", "repositorySelector": repository},
        "partitionNames": DAYS,
        "fromFailure": False,
    }
    answer = graphql(port, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if answer["__typename"] != "LaunchBackfillSuccess":
        raise SystemExit(f"backfill: refused: {answer}")
    return "backfill", [answer["backfillId"]]


def wait_in_storage(storage: Path, kind: str, keys: list[str]) -> list[tuple[str, str]]:
    """(run id, status) of each night's run, oldest run first, once all `len(DAYS)` have ended: the runs of
    `keys`, or those of the backfill `keys[0]`; read from the SQLite run storage."""
    while True:
        with contextlib.closing(sqlite3.connect(f"file:{storage / 'runs.db'}?mode=ro", uri=True, timeout=30)) as db:
            if kind == "run":
                marks = ",".join("?" * len(keys))
                rows = db.execute(f"SELECT run_id, status FROM runs WHERE run_id IN ({marks}) ORDER BY id", keys)
            else:
                rows = db.execute(
                    "SELECT runs.run_id, runs.status FROM runs JOIN run_tags ON run_tags.run_id = runs.run_id "
                    "WHERE run_tags.key = 'dagster/backfill' AND run_tags.value = ? ORDER BY runs.id",
                    keys,
                )
            rows = rows.fetchall()
        if len(rows) == len(DAYS) and all(status in ENDED for _, status in rows):
            return rows
        time.sleep(POLL_SECONDS)


def phases(storage: Path, run_id: str, submitted: float) -> dict[str, float]:
    """Where a served run's time went, from its events' timestamps (see the module's docstring)."""
    events = storage / "runs" / f"{run_id}.db"
    with contextlib.closing(sqlite3.connect(f"file:{events}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT dagster_event_type, timestamp FROM event_logs WHERE dagster_event_type IS NOT NULL ORDER BY id"
        ).fetchall()

    def first(kind: str) -> float:
        return next(dt.datetime.fromisoformat(t).replace(tzinfo=dt.UTC).timestamp() for k, t in rows if k == kind)

    def last(kinds: tuple[str, ...]) -> float:
        return max(dt.datetime.fromisoformat(t).replace(tzinfo=dt.UTC).timestamp() for k, t in rows if k in kinds)

    enqueued, starting, started = first("PIPELINE_ENQUEUED"), first("PIPELINE_STARTING"), first("PIPELINE_START")
    worker, steps_ended = first("STEP_WORKER_STARTED"), last(("STEP_SUCCESS", "STEP_FAILURE"))
    return {
        "submit": enqueued - submitted,
        "queued": starting - enqueued,
        "run worker": started - starting,
        "first step": worker - started,
        "steps": steps_ended - worker,
        "ending": first("PIPELINE_SUCCESS") - steps_ended,
    }


def run_served(mode: str, work: Path, port: int, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    storage = work / "served" / "storage" / "history"
    started, submitted = time.monotonic(), time.time()
    kind, keys = submit(mode, port, work, env)
    runs = wait_in_storage(storage, kind, keys)
    seconds = time.monotonic() - started
    for run_id, status in runs:
        if status != "SUCCESS":
            raise SystemExit(f"{mode}: the night's run {run_id} ended {status} (see it in the UI at port {port})")
    return seconds, phases(storage, runs[0][0], submitted)  # the first run's: the submission's wait is in it


def run_night(mode: str, env: dict[str, str], work: Path | None = None, port: int | None = None) -> float:
    """Wall seconds of the nights (`DAYS`) in `mode`, from the command's start to the last run's end."""
    if mode in SERVED:
        seconds, spent = run_served(mode, work, port, env)
        print(f"  {mode}: {seconds:.2f} s = " + ", ".join(f"{k} {v:.2f}" for k, v in spent.items()), file=sys.stderr)
        return seconds
    run_id = uuid.uuid4().hex
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
    parser.add_argument(
        "--days", type=int, default=1, help="run the N nights up to yesterday (modes: " + ", ".join(SEVERAL_DAYS) + ")"
    )
    parser.add_argument("--modes", default="inprocess,executor,launched,ui")
    parser.add_argument(
        "--mode", choices=MODES, help="one night in this mode only (for a timer of whole processes); needs --work"
    )
    parser.add_argument(
        "--serve", action="store_true", help="start the webserver and daemon for --mode ui/backfill; runs until killed"
    )
    parser.add_argument("--work", type=Path, help="keep sources, bucket and instance here (default: a temporary one)")
    parser.add_argument("--checkout", type=Path, help="run this checkout's code with its .venv (default: this one)")
    parser.add_argument(
        "--dagster-daemon",
        action="store_true",
        help="serve with Dagster's `dagster dev` and daemon (backfill loop every 30 s), not `make ui`'s Patina daemon",
    )
    args = parser.parse_args()
    DAYS[:] = [(YESTERDAY - dt.timedelta(days=n)).isoformat() for n in reversed(range(args.days))]
    if args.days > 1 and (bad := [m for m in (args.mode or args.modes).split(",") if m not in SEVERAL_DAYS]):
        parser.error(f"--days runs several nights in {', '.join(SEVERAL_DAYS)} only, not {bad[0]}")
    global DAGSTER_DEV
    DAGSTER_DEV = args.dagster_daemon
    if args.checkout:
        global CHECKOUT, PYTHON
        CHECKOUT, PYTHON = args.checkout.resolve(), args.checkout.resolve() / ".venv" / "bin" / "python"
    if args.mode or args.serve:
        if args.work is None:
            parser.error("--mode and --serve need --work (the sources are generated once there)")
        work = args.work.resolve()
        env = prepare(work, int(args.databases.split(",")[0]))
        if args.serve:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # end the servers too (serve's finally)
            with serve(work, env) as port:
                print(f"serving {work} on port {port}; stop with Ctrl-C or kill {os.getpid()}", flush=True)
                while True:
                    time.sleep(3600)
        port = served_port(work) if args.mode in SERVED else None
        print(f"{args.mode}: {run_night(args.mode, env, work, port):.2f} s")
        return 0
    modes = args.modes.split(",")
    print(
        f"| databases{f' x {args.days} days' if args.days > 1 else ''} | "
        + " | ".join(f"{m} (s)" for m in modes)
        + " | "
        + " | ".join(f"{m}/inprocess" for m in modes[1:])
        + " |"
    )
    print("|" + "---|" * (1 + 2 * len(modes) - 1))
    for count in (int(n) for n in args.databases.split(",")):
        with tempfile.TemporaryDirectory(prefix="patina-bench-pipeline-") as tmp:
            work = (args.work / str(count) if args.work else Path(tmp)).resolve()
            env = prepare(work, count)
            with serve(work, env) if set(modes) & set(SERVED) else contextlib.nullcontext() as port:
                run_night(modes[0], env, work, port)  # warm-up: the first night publishes, later ones supersede
                times: dict[str, list[float]] = {m: [] for m in modes}
                for _ in range(args.repeat):
                    for mode in modes:
                        times[mode].append(run_night(mode, env, work, port))
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
