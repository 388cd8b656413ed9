"""How `patina trigger` submits a run without a webserver: on an instance with a run queue, `launching.queue`
loads the code location in its own process and queues the run that `dagster job launch` (which it used to run)
queues, field by field, so the daemon launches it the same way. Here the instance has a queue and no daemon:
the runs stay queued, to be compared. (A daemon running such a run to success: tests/test_ui_trigger.py.)"""

import uuid

import dagster as dg
import pytest
from support.configs import small_database, write_config
from support.filled import dagster_home, filled

from patina_assets.defs.on_demand.jobs import DAY_TAG, ON_DEMAND_JOB, REASON_TAG, REQUESTED_BY_TAG
from patina_assets.launching import CODE_LOCATION, TriggerError, child_environment, launch, queue, submit

QUEUED = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}
TAGS = {DAY_TAG: "2026-03-02", REQUESTED_BY_TAG: "cli", REASON_TAG: "pre-deploy"}
#: What a run records that the daemon, its run worker and the UI read; the origin's kind (a code server's or
#: this process's) is not among them: the daemon looks the location up by its name.
SAME_FIELDS = (
    "job_name",
    "run_config",
    "tags",
    "op_selection",
    "resolved_op_selection",
    "step_keys_to_execute",
    "asset_selection",
    "job_snapshot_id",
    "job_code_origin",
    "status",
)


def run_id(n: int) -> str:
    return str(uuid.UUID(int=n))


@pytest.fixture
def queued_instance(tmp_path, monkeypatch):
    """A queued instance at $DAGSTER_HOME, and a working directory outside the checkout (trigger runs from any)."""
    home = dagster_home(tmp_path / "instance", run_coordinator=QUEUED)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.mark.parametrize("ops", [["backup_scout_db"], None], ids=["one-database", "all"])
def test_queue_records_the_run_dagster_job_launch_records(queued_instance, ops):
    config = filled("local").config
    launch(
        ON_DEMAND_JOB, run_id(1), TAGS, ops, workspace=None, env=child_environment(config.source_path, queued_instance)
    )
    submit(ON_DEMAND_JOB, run_id(2), TAGS, ops, config=config, instance=queued_instance, workspace=None)
    launched, queued = queued_instance.get_run_by_id(run_id(1)), queued_instance.get_run_by_id(run_id(2))
    assert queued.status == dg.DagsterRunStatus.QUEUED
    for field in SAME_FIELDS:
        assert getattr(queued, field) == getattr(launched, field), field
    assert queued.remote_job_origin.location_name == launched.remote_job_origin.location_name == CODE_LOCATION
    assert queued.remote_job_origin.repository_origin.repository_name == (
        launched.remote_job_origin.repository_origin.repository_name
    )
    assert queued.remote_job_origin.job_name == ON_DEMAND_JOB

    def planned(run):
        plan = queued_instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        return sorted(step.key for step in plan.steps), plan.step_keys_to_execute

    assert planned(queued) == planned(launched)
    assert len(planned(queued)[0]) == (1 if ops else len(config.databases))


def test_each_configuration_queues_its_own_databases(queued_instance, tmp_path):
    """One process (`patina serve` in a test, say) queueing for two configurations: the second one's code
    location is its own, not the first one's definitions again."""
    first = filled("local").config
    queue(ON_DEMAND_JOB, run_id(3), TAGS, None, config=first, instance=queued_instance, workspace=None)
    (tmp_path / "other").mkdir()
    other = write_config(
        tmp_path / "other", [{"name": "lonely-db", "source": str(small_database(tmp_path / "other" / "l.sqlite"))}]
    )
    queue(ON_DEMAND_JOB, run_id(4), TAGS, ["backup_lonely_db"], config=other, instance=queued_instance, workspace=None)
    assert queued_instance.get_run_by_id(run_id(4)).step_keys_to_execute == ["backup_lonely_db"]
    assert len(queued_instance.get_run_by_id(run_id(3)).step_keys_to_execute) == len(first.databases)


def test_a_workspace_with_two_locations_is_refused_naming_them(queued_instance, tmp_path):
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        + "".join(
            f"  - python_module: {{module_name: patina_assets.definitions, location_name: {name}}}\n"
            for name in ("patina", "patina_too")
        )
    )
    config = filled("local").config
    with pytest.raises(TriggerError, match="2 code locations .patina, patina_too"):
        queue(ON_DEMAND_JOB, run_id(5), TAGS, None, config=config, instance=queued_instance, workspace=workspace)
    assert queued_instance.get_run_by_id(run_id(5)) is None


def test_a_run_dagster_refuses_is_a_trigger_error_saying_why(queued_instance):
    config = filled("local").config
    queue(ON_DEMAND_JOB, run_id(6), TAGS, None, config=config, instance=queued_instance, workspace=None)
    with pytest.raises(TriggerError, match="Dagster did not accept the run: DagsterRunAlreadyExists"):
        queue(ON_DEMAND_JOB, run_id(6), TAGS, None, config=config, instance=queued_instance, workspace=None)
