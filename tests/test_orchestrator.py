"""patina_assets.orchestrator: the tools' view of Dagster."""

import random
from datetime import UTC, datetime, timedelta

import pytest
from dagster._utils.schedules import get_next_cron_tick  # the oracle: Dagster's own (private) helper
from support.configs import write_config

from patina_assets.orchestrator import definitions_crons
from patina_assets.schedules import next_cron_tick, schedule_crons

CRONS = ["0 3 * * *", "0 4 * * 0", "*/15 * * * *", "30 2 1 * *", "0 0 * * 1-5", "5 4 * * 7", "0 12 1,15 * 3"]


@pytest.mark.parametrize("timezone", ["UTC", "America/New_York", "Australia/Lord_Howe"])
def test_next_cron_tick_agrees_with_dagsters_own_scheduler(timezone):
    rng = random.Random(timezone)
    for _ in range(60):
        now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(2 * 365 * 24 * 3600))
        for cron in CRONS:
            assert next_cron_tick(cron, now, timezone) == get_next_cron_tick(cron, now, timezone).astimezone(UTC), (
                cron,
                now,
            )


def test_next_cron_tick_on_the_tick_is_that_tick_and_a_second_later_the_next():
    on_the_tick = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert next_cron_tick("0 3 * * *", on_the_tick) == on_the_tick
    assert next_cron_tick("0 3 * * *", on_the_tick + timedelta(seconds=1)) == datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def test_the_crons_status_reads_without_dagster_are_the_code_locations(tmp_path):
    """`schedules.schedule_crons` is what `patina status` reads instead of building the definitions."""
    config = write_config(
        tmp_path,
        [{"name": "groveauth", "source": str(tmp_path / "auth.sqlite")}],
        databases_from=[{"name": "tenants", "account": "0123456789abcdef0123456789abcdef"}],
    )
    assert schedule_crons(config) == definitions_crons(config)
    assert {name for name, _, _ in schedule_crons(config)} == {
        "nightly_backup_schedule",
        "weekly_archive_schedule",
        "fleet_tenants_nightly_schedule",
    }
