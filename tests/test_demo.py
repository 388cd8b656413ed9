"""`make demo`'s work: six generated databases backed up for real through the nightly job."""

import io
import shutil
from pathlib import Path

import dagster as dg

from patina_assets.demo import run_demo
from patina_assets.demo_data import DEMO_DATABASE_NAMES

ROOT = Path(__file__).resolve().parents[1]


def test_demo_backs_up_six_databases_for_each_day(tmp_path, monkeypatch):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert run_demo(tmp_path, days=2, out=out) == 0
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
