"""Submitting a run to the instance the UI and the daemon use, and watching it start and end.

The code location is called ``patina`` everywhere (``CODE_LOCATION``): pyproject.toml's ``[tool.dagster]`` (what
``dagster dev`` without ``-w`` loads, i.e. ``make ui``), workspace.yaml (``dagster dev -w``, the production
webserver and daemon) and the workspace ``patina trigger`` launches through. A queued run names the location it
came from, and the daemon launches it only from a location of that name: one name, or the run fails before it
starts (``DagsterCodeLocationNotFoundError``).

A run is submitted as `dagster job launch` submits it (the same location name, tags, op selection, empty run
config, job snapshot, planned steps and code pointer), but on an instance with a run queue (this checkout's dagster.yaml,
production's) without its CLI and ephemeral code server: the code location is loaded in this process
(``queue``), which is all a queued run needs, since the daemon launches it from its own code server of that
name. An instance that launches at submission (no queue) needs a code server to start the run in: there
`launch` still runs `dagster job launch`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from .config import CONFIG_ENV_VAR, PatinaConfig
from .engine import PatinaError

CODE_LOCATION = "patina"
DEFINITIONS_MODULE = "patina_assets.definitions"
#: How long a submitted run may stay queued before `trigger` says why it does not start.
START_TIMEOUT_SECONDS = 90.0
POLL_SECONDS = 0.5

_WAITING = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING)
_ENDED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


class TriggerError(PatinaError):
    """An on-demand backup could not be started; the message says why and what to do."""


def workspace_text(working_directory: Path) -> str:
    """The workspace `patina trigger` launches through when none is given: the location ``patina``."""
    return json.dumps(
        {
            "load_from": [
                {
                    "python_module": {
                        "module_name": DEFINITIONS_MODULE,
                        "location_name": CODE_LOCATION,
                        "working_directory": str(working_directory),
                    }
                }
            ]
        }
    )  # JSON is YAML


def submit(
    job: str,
    run_id: str,
    tags: dict[str, str],
    ops: list[str] | None,
    *,
    config: PatinaConfig,
    instance: dg.DagsterInstance,
    workspace: Path | None,
) -> None:
    """Submit a run of the code location's ``job`` to ``instance``, as `dagster job launch` would."""
    if isinstance(instance.run_coordinator, dg.QueuedRunCoordinator):
        queue(job, run_id, tags, ops, config=config, instance=instance, workspace=workspace)
    else:
        launch(job, run_id, tags, ops, workspace=workspace, env=child_environment(config.source_path, instance))


#: One code location loads at a time in a process (`patina serve` triggers from threads): the load sets the
#: configuration's environment variable and may re-import the definitions module.
_LOADING = threading.Lock()


def queue(
    job: str,
    run_id: str,
    tags: dict[str, str],
    ops: list[str] | None,
    *,
    config: PatinaConfig,
    instance: dg.DagsterInstance,
    workspace: Path | None,
) -> None:
    """Queue a run as `dagster job launch` does (dagster/_cli/job.py ``execute_launch_command``), with the
    workspace's code location loaded in this process instead of an ephemeral code server: the run records
    the location's name and the job's code pointer (module, working directory, interpreter) as that would,
    and the daemon launches it from its own location of that name, as it does the UI's runs."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    origins = [_in_this_process(origin) for origin in _workspace_origins(workspace)]
    with (
        _LOADING,
        _configured(config),
        WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origins), read_only=False) as process,
    ):
        context = process.create_request_context()
        location = _only_location(context)
        try:
            _create_and_submit(location, job, run_id, tags, ops, instance, context)
        except dg.DagsterError as exc:  # what `dagster job launch` would have failed with, in a line
            raise TriggerError(f"Dagster did not accept the run: {type(exc).__name__}: {_first_line(exc)}") from exc


def _create_and_submit(location, job, run_id, tags, ops, instance, context) -> None:
    """`dagster job launch`'s ``_create_run`` and ``submit_run``, for a location already loaded."""
    from dagster._core.definitions.selector import JobSubsetSelector
    from dagster._utils.tags import normalize_tags

    repositories = list(location.get_repositories().values())
    if len(repositories) != 1:
        raise TriggerError(
            f"Dagster did not accept the run: the code location {location.name!r} has "
            f"{len(repositories)} repositories, not one"
        )
    [repository] = repositories
    if not repository.has_job(job):
        raise TriggerError(f"Dagster did not accept the run: the code location {location.name!r} has no job {job!r}")
    full_job = repository.get_full_job(job)
    remote_job = location.get_job(
        JobSubsetSelector(location_name=location.name, repository_name=repository.name, job_name=job, op_selection=ops)
    )
    plan = location.get_execution_plan(
        remote_job, {}, step_keys_to_execute=None, known_state=None, instance=instance
    ).execution_plan_snapshot
    instance.create_run(
        job_name=job,
        run_id=run_id,
        run_config={},
        resolved_op_selection=remote_job.resolved_op_selection,
        step_keys_to_execute=plan.step_keys_to_execute,
        op_selection=ops,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags=normalize_tags({**full_job.tags, **tags}),
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=repository.asset_graph,
    )
    instance.submit_run(run_id, context)


def _workspace_origins(workspace: Path | None) -> list:
    """The code locations of ``workspace`` (a workspace.yaml), or of the default one (`workspace_text`), as
    Dagster reads them."""
    from dagster._core.workspace.load import location_origins_from_config, location_origins_from_yaml_paths

    if workspace is None:
        default = json.loads(workspace_text(Path.cwd()))
        return list(location_origins_from_config(default, str(Path.cwd() / "workspace.yaml")).values())
    try:
        return list(location_origins_from_yaml_paths([str(workspace)]))
    except Exception as exc:  # Dagster's own reading of the file: its message says what is wrong
        raise TriggerError(f"Dagster did not accept the workspace {workspace}: {_first_line(exc)}") from exc


def _in_this_process(origin):
    """A code location Dagster would load in a code server of this interpreter, loaded here instead (the same
    loadable target, so the same code pointer); any other (another interpreter, a running gRPC server) as the
    workspace says."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin, ManagedGrpcPythonEnvCodeLocationOrigin

    if not isinstance(origin, ManagedGrpcPythonEnvCodeLocationOrigin):
        return origin
    target = origin.loadable_target_origin
    executable = target.executable_path or sys.executable
    if os.path.realpath(executable) != os.path.realpath(sys.executable):
        return origin
    # container_context {} as a code server of this interpreter reports it (the run's code origin then matches)
    return InProcessCodeLocationOrigin(
        target._replace(executable_path=executable), location_name=origin.location_name, container_context={}
    )


def _only_location(context):
    names = list(context.code_location_names)
    if len(names) != 1:
        raise TriggerError(
            f"Dagster did not accept the run: the workspace has {len(names)} code locations "
            f"({', '.join(names) or 'none'}); give one with --workspace"
        )
    [name] = names
    if context.has_code_location_error(name):
        error = context.get_code_location_error(name)
        raise TriggerError(
            f"Dagster did not accept the run: the code location {name!r} did not load: {_error_text(error)}"
        )
    return context.get_code_location(name)


@contextmanager
def _configured(config: PatinaConfig) -> Iterator[None]:
    """The environment `dagster job launch`'s code server had (`child_environment`): the definitions module
    reads the configuration from ``$PATINA_CONFIG``.  A definitions module imported earlier in this process
    from another configuration is imported again (a process that triggers for one configuration keeps it)."""
    loaded = sys.modules.get(DEFINITIONS_MODULE)
    if loaded is not None and getattr(loaded, "config", None) != config:
        del sys.modules[DEFINITIONS_MODULE]
    before = os.environ.get(CONFIG_ENV_VAR)
    if config.source_path is not None:
        os.environ[CONFIG_ENV_VAR] = str(config.source_path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CONFIG_ENV_VAR, None)
        else:
            os.environ[CONFIG_ENV_VAR] = before


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def launch(
    job: str, run_id: str, tags: dict[str, str], ops: list[str] | None, *, workspace: Path | None, env: dict[str, str]
) -> None:
    """Submit a run through `dagster job launch`, Dagster's public way to submit a run of a code location's job:
    for an instance that launches runs at submission, in the code server it starts for them.

    It loads the code location as the daemon and the UI do, so the run names a location they know."""
    with tempfile.TemporaryDirectory(prefix="patina-trigger-") as tmp:
        if workspace is None:
            workspace = Path(tmp) / "workspace.yaml"
            workspace.write_text(workspace_text(Path.cwd()))
        command = [
            sys.executable,
            "-m",
            "dagster",
            "job",
            "launch",
            "-w",
            str(workspace),
            "-j",
            job,
            "--run-id",
            run_id,
            "--tags",
            json.dumps(tags),
        ]
        if ops:
            command += ["--op-selection", ",".join(ops)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        detail = " | ".join(lines[-3:]) or f"exit code {done.returncode}"
        raise TriggerError(f"Dagster did not accept the run: {detail}")


def submit_through_webserver(url: str, job: str, tags: dict[str, str], ops: list[str] | None) -> str:
    """Queue a run through a running Dagster webserver's GraphQL API, as the UI's Launch does (dagster-graphql's
    client, Dagster's public one); return its run id.  The webserver has the code location loaded already, so
    nothing is imported or started here: about 0.4 s, where `dagster job launch` costs a CLI and an ephemeral
    code server (3 s on a small machine)."""
    from urllib.parse import urlsplit

    import requests
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TriggerError(f"--webserver {url!r} is not the URL of a Dagster webserver, e.g. http://127.0.0.1:3000")
    where = f"the Dagster webserver at {parts.scheme}://{parts.netloc}{parts.path}"
    try:
        client = DagsterGraphQLClient(
            parts.hostname,
            port_number=parts.port,
            use_https=parts.scheme == "https",
            path_prefix=parts.path.rstrip("/"),
            timeout=60,
        )
        return client.submit_job_execution(job, repository_location_name=CODE_LOCATION, tags=tags, op_selection=ops)
    except (DagsterGraphQLClientError, requests.RequestException) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise TriggerError(
            f"{where} did not queue the run ({type(exc).__name__}: {detail}). Is it running, and does it serve the "
            f"code location {CODE_LOCATION!r}? Leave out --webserver to submit without it"
        ) from exc


def wait_until_started(
    instance: dg.DagsterInstance, run_id: str, timeout: float = START_TIMEOUT_SECONDS
) -> dg.DagsterRun:
    """The run once it has left the queue (started, or already ended); TriggerError if it cannot start."""
    deadline = time.monotonic() + timeout
    while True:
        run = instance.get_run_by_id(run_id)
        if run is None:
            raise TriggerError(
                f"the run {run_id} was submitted but the instance at $DAGSTER_HOME does not show it: "
                "is DAGSTER_HOME the instance the daemon uses?"
            )
        if run.status not in _WAITING:
            if (
                run.status in _ENDED
                and run.status != dg.DagsterRunStatus.SUCCESS
                and not steps_started(instance, run_id)
            ):
                raise TriggerError(f"run {run_id} failed to start: {failure_reason(instance, run_id)}")
            return run
        if time.monotonic() > deadline:
            raise TriggerError(
                f"run {run_id} is still {run.status.value} after {timeout:.0f} s: {_why_waiting(instance)}"
            )
        time.sleep(POLL_SECONDS)


def wait_until_ended(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    while True:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status in _ENDED:
            return run
        time.sleep(POLL_SECONDS)


def steps_started(instance: dg.DagsterInstance, run_id: str) -> bool:
    return bool(instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START, limit=1).records)


def failure_reason(instance: dg.DagsterInstance, run_id: str) -> str:
    """Why a run failed, in a line or two: the failed steps' errors, else the engine's (e.g. a code location the
    daemon does not know), else the run's own failure message."""
    kinds = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ENGINE_EVENT, dg.DagsterEventType.RUN_FAILURE}
    steps, engine, run_messages = [], [], []
    for record in instance.get_records_for_run(run_id, of_type=kinds).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            steps.append(f"{event.step_key}: {_error_text(event.step_failure_data.error)}")
        elif event.event_type == dg.DagsterEventType.ENGINE_EVENT:
            error = getattr(event.engine_event_data, "error", None)
            if error is not None:
                engine.append(_error_text(error))
        elif event.message:
            run_messages.append(event.message)
    found = steps or engine or run_messages
    return "; ".join(dict.fromkeys(found)) if found else "Dagster recorded no reason (see the run in the UI)"


def _error_text(error) -> str:
    """The error's own first line, and its first cause's (Dagster wraps the interesting one)."""
    if error is None:
        return "unknown error"
    parts = []
    while error is not None and len(parts) < 2:
        line = (error.message or "").strip().splitlines()
        if line:
            parts.append(line[0].removeprefix("dagster._core.errors.")[:300])
        error = error.cause
    return " <- ".join(parts) or "unknown error"


def _why_waiting(instance: dg.DagsterInstance) -> str:
    if isinstance(instance.run_coordinator, dg.QueuedRunCoordinator):
        status = instance.get_daemon_statuses(["QUEUED_RUN_COORDINATOR"]).get("QUEUED_RUN_COORDINATOR")
        if status is None or not status.healthy:
            return (
                "no Dagster daemon is dequeuing runs on this instance: start one (`make ui` runs one; in "
                "production `patina-daemon run`); the run starts once it does"
            )
        return "the daemon is running but has not started it: the run queue may be full (see Runs in the UI)"
    return "the run launcher has not started it (see the run in the UI)"


def child_environment(config_path: Path | None, instance: dg.DagsterInstance) -> dict[str, str]:
    """`dagster job launch` submits to the instance we watch, and loads the code with our config.

    The instance's home is $DAGSTER_HOME when set (the directory with its dagster.yaml, which
    `open_instance` read): its `root_directory` is only the artifact directory, which dagster.yaml may give
    relative to the working directory (this checkout's does), and Dagster refuses a relative DAGSTER_HOME."""
    home = os.environ.get("DAGSTER_HOME") or instance.root_directory
    return {
        **os.environ,
        "DAGSTER_HOME": os.path.abspath(home),
        **({CONFIG_ENV_VAR: str(config_path)} if config_path else {}),
    }
