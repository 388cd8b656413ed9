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
        while pipe.recv() == "count":  # until told to stop
            pipe.send(len(server.requests))
        pipe.send(len(server.requests))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=20, help="users per tenant (and as many posts)")
    parser.add_argument("--dagster-tenants", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument(
        "--daemon-tenants", type=int, default=0, help="tenants of a night run by dagster-daemon, as in production"
    )
    parser.add_argument("--no-engine", action="store_true", help="skip the night without Dagster")
    parser.add_argument(
        "--dequeue",
        default="",
        help="the queued run coordinator's settings for the daemon night instead of dagster.yaml's (every 1 s, "
        "4 threads), e.g. 'interval=5' (Dagster's default: every 5 s, one launch at a time)",
    )
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

        def count_requests() -> int:
            ours.send("count")
            return ours.recv()

        rows = run(args, work, base_url, write_config, count_requests)
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


def run(args, work: Path, base_url: str, write_config, count_requests) -> list[tuple]:
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
    if args.daemon_tenants:  # first: a fresh bucket, as a fleet's first night
        rows += daemon_night(config, roster, args.daemon_tenants, day, work, count_requests, args.dequeue)
    if args.no_engine:
        return rows
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


# ------------------------------------------------------------------------------------------------
# The night as the daemon runs it
# ------------------------------------------------------------------------------------------------

# Imported by every Python process of the daemon's tree (PYTHONPATH): lifts the API budget, for this
# benchmark only, by raising the limit each ApiBudget is made with when its module is first imported.
LIFT_BUDGET = """
import importlib.abc, importlib.util, sys

class _LiftBudget(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "patina_assets.engine.api_budget":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            init = module.ApiBudget.__init__

            def lifted(self, *args, **kwargs):
                kwargs["limit"] = 10**9
                init(self, *args, **kwargs)

            module.ApiBudget.__init__ = lifted

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _LiftBudget())
"""


def process_tree(root: int) -> dict[int, tuple[str, int, int, float]]:
    """pid -> (command, RSS kB, peak RSS kB, CPU seconds with its reaped children's) of `root` and its
    descendants, from /proc."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}  # seconds: the process's own and its reaped children's
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
                cpu[int(entry)] = sum(int(v) for v in fields[11:15]) / ticks  # utime stime cutime cstime
            except (OSError, IndexError, ValueError):
                pass
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid and child not in tree]
        tree.update(children)
        frontier += children
    found = {}
    for pid in tree:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            found[pid] = (
                command,
                int(fields["VmRSS"].split()[0]),
                int(fields["VmHWM"].split()[0]),
                cpu.get(pid, 0.0),
            )
        except (OSError, KeyError, ValueError):
            pass
    return found


def role(command: str) -> str:
    if "execute_run" in command or "spawn_main" in command:  # the code server spawns each run's process
        return "run"
    if "dagster-daemon" in command or "dagster_daemon" in command:
        return "daemon"
    if "grpc" in command or "code-server" in command or "code_server" in command:
        return "code server"
    return "other"


def daemon_night(config, roster, count: int, day: str, work: Path, count_requests, dequeue: str = "") -> list[tuple]:
    """`count` tenants (the roster's first) through `dagster-daemon run`, as a production night runs: the
    daemon's scheduler fires the fleet's 03:00 tick (its state says it was switched on before it), the
    queued run coordinator starts the runs (dagster.yaml's limits: 4 runs, 3 d1_export slots), each in
    its own `dagster api execute_run` process. The API budget is lifted (see LIFT_BUDGET)."""
    import shutil
    import signal
    import subprocess

    import dagster as dg
    import yaml
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus, ScheduleInstigatorData
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from patina_assets.defs.fleets import fleet_job_name, tenant_partitions_name

    fleet = config.fleets[0]
    home = work / "dagster_home"
    home.mkdir()
    instance_yaml = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    if dequeue:
        settings = dict(item.split("=") for item in dequeue.split(","))
        coordinator: dict = {"dequeue_interval_seconds": int(settings.get("interval", 5))}
        if "threads" in settings:
            coordinator.update(dequeue_use_threads=True, dequeue_num_workers=int(settings["threads"]))
        else:
            coordinator.update(dequeue_use_threads=False)
        instance_yaml["run_coordinator"] = {
            "module": "dagster._core.run_coordinator.queued_run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": coordinator,
        }
    text = yaml.safe_dump(instance_yaml).replace(".patina/dagster", str(home))
    (home / "dagster.yaml").write_text(text)
    site = work / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(LIFT_BUDGET)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PATINA_CONFIG": str(config.source_path),
        "CLOUDFLARE_API_TOKEN": TOKEN,
        "PATINA_API_BUDGET_DIR": tempfile.mkdtemp(prefix="patina-bench-budget-daemon-"),
        "PYTHONPATH": str(site),
    }
    os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "PATINA_CONFIG", "CLOUDFLARE_API_TOKEN")})
    names = [t.name for t in roster.tenants[:count]]
    schedule_name = f"fleet_{fleet.asset_name}_nightly_schedule"
    tick = dt.datetime.combine(dt.date.fromisoformat(day) + dt.timedelta(days=1), dt.time(3), tzinfo=dt.UTC)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        # The tenants as partitions (what the discovery sensor does; it finds nothing new when the daemon runs
        # it), and the schedule switched on a minute before the tick the daemon is to fire.
        instance.add_dynamic_partitions(tenant_partitions_name(fleet), names)
        target = WorkspaceFileTarget(paths=[str(ROOT / "workspace.yaml")])
        with WorkspaceProcessContext(instance, target) as workspace:
            location = next(iter(workspace.create_request_context().get_code_location_entries().values()))
            repository = next(iter(location.code_location.get_repositories().values()))
            schedule = repository.get_schedule(schedule_name)
            instance.add_instigator_state(
                InstigatorState(
                    schedule.get_remote_origin(),
                    InstigatorType.SCHEDULE,
                    InstigatorStatus.RUNNING,
                    ScheduleInstigatorData(schedule.cron_schedule, start_timestamp=tick.timestamp() - 60),
                )
            )
        requests_before = count_requests()
        started = time.monotonic()
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
            cwd=ROOT,
            env=env,
            stdout=open(work / "daemon.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        peaks: dict[int, tuple[str, int]] = {}
        sum_peak = 0
        cpu_seconds = 0.0  # of the daemon's tree (runs are reaped by the code server, counted in its children's)
        job = fleet_job_name(fleet)
        finished = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
        first_seen = None
        try:
            while True:
                tree = process_tree(daemon.pid)
                sum_peak = max(sum_peak, sum(rss for _, rss, _, _ in tree.values()))
                cpu_seconds = max(cpu_seconds, sum(used for *_, used in tree.values()))
                for pid, (command, _, hwm, _) in tree.items():
                    peaks[pid] = (command, max(hwm, peaks.get(pid, ("", 0))[1]))
                runs = instance.get_runs_count(dg.RunsFilter(job_name=job))
                if runs and first_seen is None:
                    first_seen = time.monotonic() - started
                done = instance.get_runs_count(dg.RunsFilter(job_name=job, statuses=list(finished)))
                if runs >= count and done >= count:
                    break
                if daemon.poll() is not None:
                    raise RuntimeError(f"the daemon exited ({daemon.returncode}): see {work / 'daemon.log'}")
                time.sleep(1.0)
            wall = time.monotonic() - started
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
        records = instance.get_run_records(dg.RunsFilter(job_name=job))
        succeeded = sum(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
        durations = sorted(r.end_time - r.start_time for r in records if r.start_time and r.end_time)
        span = max(r.end_time for r in records if r.end_time) - min(r.create_timestamp.timestamp() for r in records)
    shutil.rmtree(env["PATINA_API_BUDGET_DIR"], ignore_errors=True)
    requests = count_requests() - requests_before
    if os.environ.get("BENCH_FLEET_DEBUG"):
        for command, hwm in sorted(set(peaks.values())):
            print(f"{hwm / 1024:6.0f} MB  {command[:160]}")
    by_role: dict[str, int] = {}
    for command, hwm in peaks.values():
        by_role[role(command)] = max(by_role.get(role(command), 0), hwm)
    median = durations[len(durations) // 2] if durations else float("nan")
    print(
        f"\ndaemon night: {succeeded}/{len(records)} runs succeeded; first run created {first_seen:.1f}s after the "
        f"daemon started; runs from the first created to the last ended {span:.1f}s; a run's own time "
        f"(start to end) median {median:.1f}s, max {durations[-1] if durations else 0:.1f}s; "
        f"processes seen: {len(peaks)}; peak RSS by role (MB): "
        + ", ".join(f"{k} {v / 1024:.0f}" for k, v in sorted(by_role.items()))
        + f"; peak sum of RSS {sum_peak / 1024:.0f} MB; CPU of the daemon's process tree about {cpu_seconds:.0f}s "
        f"({cpu_seconds / max(1, len(records)):.1f}s a run)"
    )
    return [
        (
            f"night, dagster-daemon (1 run/tenant, {len(records)} runs{', dequeue ' + dequeue if dequeue else ''})",
            count,
            requests,
            f"{wall:.1f}",
            f"{wall / count:.3f}",
            f"run {by_role.get('run', 0) / 1024:.0f}, daemon {by_role.get('daemon', 0) / 1024:.0f}, code server "
            f"{by_role.get('code server', 0) / 1024:.0f}; all at once {sum_peak / 1024:.0f}",
            f"{wall / count * len(roster.tenants) / 60:.0f} min for all {len(roster.tenants)} at this rate",
        )
    ]


if __name__ == "__main__":
    main()
