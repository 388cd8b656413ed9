"""`make demo`'s work: six generated databases backed up for real through the nightly job."""

import datetime as dt
import io
import shutil
from pathlib import Path

import dagster as dg

from patina_assets.demo import demo_nights, run_demo
from patina_assets.demo_data import DEMO_DATABASE_NAMES

ROOT = Path(__file__).resolve().parents[1]


def test_demo_backs_up_six_databases_for_each_day(tmp_path, monkeypatch):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    nights = [dt.date(2026, 11, 29), dt.date(2026, 11, 30)]  # not a whole week: no archive
    assert run_demo(tmp_path, nights, out=out) == 0
    assert "weekly_archive" not in out.getvalue()
    lines = [line for line in out.getvalue().splitlines() if line[:4].isdigit() and "daily/" in line]
    assert len(lines) == 2 * len(DEMO_DATABASE_NAMES) == 12
    assert {line.split()[1] for line in lines} == set(DEMO_DATABASE_NAMES)
    assert all(f"daily/{line.split()[0]}/{line.split()[1]}." in line for line in lines)
    # The runs are in the instance `make ui` opens.
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        runs = instance.get_runs()
        assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    finally:
        instance.dispose()


def test_the_demo_backs_up_the_last_complete_week_through_yesterday():
    for today, first in (
        (dt.date(2026, 12, 1), dt.date(2026, 11, 22)),  # a Tuesday: 9 nights
        (dt.date(2026, 11, 29), dt.date(2026, 11, 22)),  # a Sunday: just that week
        (dt.date(2026, 11, 28), dt.date(2026, 11, 15)),
    ):  # a Saturday: 13 nights
        nights = demo_nights(today)
        assert nights[0] == first and first.weekday() == 6 and nights[-1] == today - dt.timedelta(days=1)
        assert nights == [first + dt.timedelta(days=n) for n in range(len(nights))]
