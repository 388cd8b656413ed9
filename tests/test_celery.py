"""Past one machine: one night of the six demo databases with its steps on two Celery workers (dagster-celery on
the Redis broker at 127.0.0.1:6379), the Dagster instance in PostgreSQL, as deploy/celery/ and the README's
"Past one machine" describe. The workers and the run are separate processes that share only the broker, the
instance and the bucket, as they would on separate machines."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import dagster as dg
import pytest
import redis
from dagster_celery.core_execution_loop import DELEGATE_MARKER
from support.compare import assert_same_database
from support.configs import write_config

from patina_assets.catalog import Catalog
from patina_assets.defs.dumps.executors import (
    BROKER_ENV_VAR,
    EXECUTOR_ENV_VAR,
    QUEUE_ENV_VAR,
    RESULT_BACKEND_ENV_VAR,
    ExecutorChoiceError,
    executor_choice,
    nightly_executor,
)
from patina_assets.defs.dumps.jobs import NIGHTLY_JOB
from patina_assets.demo_data import DEMO_DATABASE_NAMES, generate_demo_databases
from patina_assets.engine import restore_dump

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BROKER = "redis://127.0.0.1:6379/0"
WORKER_READY_SECONDS = 120


@pytest.fixture
def queue():
    """A queue of this test's own on the shared broker, so no other worker takes its steps; removed afterwards."""
    name = f"patina-test-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(BROKER)
    for key in client.scan_iter(f"*{name}*"):  # the queue's lists (one per priority step) and bindings
        client.delete(key)
    client.close()


def worker_command(instance: str, queue: str) -> list[str]:
    """deploy/celery/patina-worker@.service's ExecStart as systemd would run it for `patina-worker@<instance>`,
    with this checkout's celery and the test's queue."""
    unit = (ROOT / "deploy" / "celery" / "patina-worker@.service").read_text()
    (line,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    command = shlex.split(line.removeprefix("ExecStart=").replace("${PATINA_CELERY_QUEUE}", queue))
    return [str(BIN / "celery")] + [arg.replace("%i", instance).replace("%%", "%") for arg in command[1:]]


@contextmanager
def celery_worker(
    instance: str, queue: str, env: dict[str, str], logs: Path, hear: Callable[[str], None]
) -> Iterator[Callable[[], str]]:
    """A worker as deploy/celery/patina-worker@.service starts it, in its own process group, stopped (warm
    shutdown) afterwards. Yields a wait: it returns the worker's node name once the worker says it consumes
    (its "ready." line). Every line it logs (its pool processes' Dagster logs too) goes to `hear` as well."""
    node = f"patina-{instance}@{socket.gethostname()}"
    log = logs / f"worker-{instance}.log"
    command = worker_command(instance, queue)
    assert command[command.index("-n") + 1] == f"patina-{instance}@%h"
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    ready = threading.Event()

    def drain() -> None:  # keeps the pipe from filling, writes the log, and hears the ready line
        with log.open("w") as out:
            for line in process.stdout:
                out.write(line)
                out.flush()
                hear(line)
                if f"{node} ready." in line:
                    ready.set()
        ready.set()  # the worker exited: stop waiting

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()

    def wait_ready() -> str:
        assert ready.wait(WORKER_READY_SECONDS) and process.poll() is None, (
            f"worker {node} did not start:\n{log.read_text()[-4000:]}"
        )
        return node

    try:
        yield wait_ready
    finally:
        process.terminate()  # warm shutdown: the worker stops its pool's processes itself
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reader.join(10)


class StepKiller:
    """Kills the process that runs `step` the first time a worker logs the step's start (Dagster's console
    log, which names the process), as the OOM killer or a segfault would."""

    def __init__(self, step: str):
        self.started = re.compile(rf" - (\d+) - {re.escape(step)} - STEP_START - ")
        self.killed: int | None = None
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        match = self.started.search(line)
        with self.lock:
            if match and self.killed is None:
                self.killed = int(match.group(1))
                os.kill(self.killed, signal.SIGKILL)


def test_a_night_runs_on_two_celery_workers_with_the_instance_in_postgres(tmp_path, postgres_url, queue, monkeypatch):
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)  # what the 03:00 schedule would run
    home = tmp_path / "dagster_home"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PATINA_CONFIG": str(tmp_path / "patina.yaml"),  # where write_config puts it
        "PATINA_POSTGRES_URL": postgres_url,
        EXECUTOR_ENV_VAR: "celery",
        BROKER_ENV_VAR: BROKER,
        RESULT_BACKEND_ENV_VAR: BROKER,
        QUEUE_ENV_VAR: queue,
    }
    monkeypatch.setenv("PATINA_POSTGRES_URL", postgres_url)  # for this process's view of the instance
    # The biggest dump's process is killed as the dump starts: the step is sent again and the night still succeeds.
    killed_step = "dumps__grove_domain_jobs"
    killer = StepKiller(killed_step)
    with ExitStack() as workers:
        # The workers start while the sources are made: they read the config only when a step comes.
        waits = [workers.enter_context(celery_worker(n, queue, env, tmp_path, killer)) for n in ("a", "b")]
        sources = generate_demo_databases(tmp_path / "sources", day)
        config = write_config(tmp_path, [{"name": name, "source": str(path)} for name, path in sources.items()])
        home.mkdir()
        shutil.copy(ROOT / "deploy" / "celery" / "dagster.yaml", home / "dagster.yaml")
        # The schema is made once, before any worker or run connects.
        dg.DagsterInstance.from_config(str(home)).dispose()
        nodes = {wait() for wait in waits}
        night = subprocess.run(
            [str(BIN / "dagster"), "job", "execute", "-m", "patina_assets.definitions", "-j", NIGHTLY_JOB]
            + ["--tags", json.dumps({"dagster/partition": day.isoformat()})],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert night.returncode == 0, night.stdout[-4000:] + night.stderr[-4000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == day.isoformat()
        records = instance.get_records_for_run(run.run_id).records
        events = [r.event_log_entry for r in records if r.event_log_entry.dagster_event is not None]
        worker_of = {
            e.step_key: e.dagster_event.engine_event_data.metadata["Celery worker"].value
            for e in events
            if e.dagster_event.event_type == dg.DagsterEventType.ENGINE_EVENT
            and "Celery worker" in e.dagster_event.engine_event_data.metadata
        }
        succeeded = {e.step_key for e in events if e.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS}
        # Every step (the six dumps, and their checks where they are steps of their own) ran on a worker, and
        # both workers took some.
        dumps = {f"dumps__{db.asset_name}" for db in config.databases}
        assert len(dumps) == len(DEMO_DATABASE_NAMES) and dumps <= succeeded and succeeded == set(worker_of)
        assert set(worker_of.values()) == nodes, worker_of
        # The killed dump ran twice: the lost attempt, and the one Celery sent again.
        assert killer.killed is not None
        attempts = [
            e
            for e in events
            if e.dagster_event.event_type == dg.DagsterEventType.STEP_START and e.step_key == killed_step
        ]
        assert len(attempts) == 2 and attempts[0].dagster_event.pid == killer.killed, [
            (e.dagster_event.pid, e.timestamp) for e in attempts
        ]
        # All six dumps are ready at once and the workers have four slots; the d1_export pool (dagster.yaml:
        # 3) still caps them: a dump is handed to Celery only once it holds a slot of the pool.
        submitted = {
            e.step_key: e.timestamp
            for e in events
            if e.dagster_event.event_type == dg.DagsterEventType.ENGINE_EVENT
            and e.dagster_event.engine_event_data.marker_start == DELEGATE_MARKER
        }
        done = {
            e.step_key: e.timestamp for e in events if e.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS
        }
        at_once = max(sum(submitted[o] <= submitted[d] < done[o] for o in dumps) for d in dumps)
        assert at_once == 3, {d: (submitted[d], done[d]) for d in dumps}
        materialized = {
            db.name: instance.get_latest_materialization_event(dg.AssetKey(["dumps", db.asset_name]))
            for db in config.databases
        }
    # Each of the night's dumps, fetched as an operator would, restores to exactly its source.
    catalog = Catalog.for_config(config)
    for name, event in materialized.items():
        assert event.asset_materialization.partition == day.isoformat()
        backup = catalog.find(day.isoformat(), name)
        assert backup.key == event.asset_materialization.metadata["key"].value
        dump = catalog.download(backup, tmp_path / "dumps" / backup.filename)
        restore_dump(dump, tmp_path / "restored" / f"{name}.sqlite")
        assert_same_database(sources[name], tmp_path / "restored" / f"{name}.sqlite", check_pragmas=False)


def test_the_executor_is_multiprocess_unless_patina_executor_says_celery():
    multiprocess = dg.multiprocess_executor.configured({"max_concurrent": 3})
    assert nightly_executor(multiprocess, env={}) is multiprocess
    assert nightly_executor(multiprocess, env={EXECUTOR_ENV_VAR: "multiprocess"}) is multiprocess
    celery = nightly_executor(
        multiprocess, env={EXECUTOR_ENV_VAR: "celery", BROKER_ENV_VAR: BROKER, RESULT_BACKEND_ENV_VAR: BROKER}
    )
    assert celery.name == "patina_celery"
    with pytest.raises(ExecutorChoiceError, match="PATINA_EXECUTOR='kubernetes' names no executor.*multiprocess"):
        executor_choice({EXECUTOR_ENV_VAR: "kubernetes"})
    with pytest.raises(ExecutorChoiceError, match="needs CELERY_BROKER_URL and CELERY_RESULT_BACKEND"):
        nightly_executor(multiprocess, env={EXECUTOR_ENV_VAR: "celery"})
