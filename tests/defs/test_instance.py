"""Dagster's own storage: the repo's dagster.yaml for local use, and PostgreSQL for production."""

import shutil
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from support.configs import small_database, write_config

from patina_assets.defs import build_definitions
from patina_assets.defs.dumps.jobs import NIGHTLY_JOB

ROOT = Path(__file__).resolve().parents[2]


def test_materialization_recorded_in_postgres(tmp_path, postgres_url, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    monkeypatch.setenv("PATINA_POSTGRES_URL", postgres_url)
    source = small_database(tmp_path / "auth.sqlite")
    config = write_config(tmp_path, [{"name": "groveauth", "source": str(source)}])
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = (
            build_definitions(config)
            .resolve_job_def(NIGHTLY_JOB)
            .execute_in_process(partition_key="2026-03-09", instance=instance)
        )
        assert result.success
        event = instance.get_latest_materialization_event(dg.AssetKey(["dumps", "groveauth"]))
        assert event.asset_materialization.partition == "2026-03-09"
        assert event.asset_materialization.metadata["rows"].value == 150
    finally:
        instance.dispose()
    # What Dagster wrote is in PostgreSQL itself, not in a file beside it.
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] == 1


def test_local_dagster_yaml_keeps_everything_under_dot_patina(tmp_path, monkeypatch):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.chdir(tmp_path)
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 3
        assert instance.run_monitoring_enabled
    finally:
        instance.dispose()
    assert (tmp_path / ".patina" / "dagster" / "storage").is_dir()


@pytest.mark.parametrize(
    "instance_yaml", ["dagster.yaml", "deploy/dagster.postgres.yaml", "deploy/celery/dagster.yaml"]
)
def test_every_instance_dequeues_within_a_second_and_keeps_its_run_limit(
    instance_yaml, tmp_path, postgres_url, monkeypatch
):
    # A run from the UI, the schedule, a backfill or `patina trigger` waits in the queue until the daemon's next
    # look: Dagster's default is every 5 s (2.5 s on average), a fixed cost of every run (issue 17).
    shutil.copy(ROOT / instance_yaml, tmp_path / "dagster.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATINA_POSTGRES_URL", postgres_url)
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert instance.run_coordinator.dequeue_interval_seconds == 1
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 3
    finally:
        instance.dispose()
