"""The README's quick start and the runbook's commands, run as written in a fresh copy of this checkout (one
`make demo` for the module), and what the demo leaves: every asset materialized, every check evaluated, with
descriptions and without sentinel values; the README's names and numbers match what the commands print."""

import datetime as dt
import json
import os
import re
import subprocess
import sys

import dagster as dg
import pytest
from support.checkout import ROOT, checkout_copy, commands, patina_arguments, section, user_environment

from patina_assets.cli import build_parser
from patina_assets.config import default_config
from patina_assets.defs import build_definitions
from patina_assets.defs.dumps.checks import DUMP_CHECK_NAMES

README = (ROOT / "README.md").read_text()
RUNBOOK = (ROOT / "docs" / "disaster-recovery.md").read_text()


def shell(script: str, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800
    )


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory):
    """The README's quick start, in a fresh copy of the checkout (`make demo` included)."""
    root = checkout_copy(tmp_path_factory.mktemp("checkout"))
    lines = commands(section(README, "Quick start"))
    done = shell("\n".join(c.line for c in lines if c.runnable), root, user_environment(root))
    return root, lines, done


def test_the_readme_quick_start_runs_as_written(quick_start):
    root, lines, done = quick_start
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ran = [c.line for c in lines if c.runnable]
    assert ran[0].startswith("make demo") and any(line.startswith("patina status") for line in ran)
    assert {c.line.split()[1] for c in lines if not c.runnable and c.line.startswith("make")} == {"test", "ui"}
    assert "weekly_archive" in done.stdout and "FAILED" not in done.stdout
    assert (root / "restored.sqlite").is_file() and (root / "one-table.sqlite").is_file()


def test_the_runbook_runs_as_written_against_the_demo(quick_start):
    root, _, done = quick_start
    assert done.returncode == 0
    day = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    lines = commands(RUNBOOK)
    runnable = [re.sub(r"^DAY=\d{4}-\d\d-\d\d\b", f"DAY={day}", c.line) for c in lines if c.runnable]
    env = {**user_environment(root), "PATH": f"{root / '.venv' / 'bin'}:{os.environ['PATH']}"}
    ran = shell("\n".join(runnable), root, env)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert sum(line.startswith("patina ") for line in runnable) >= 12
    assert (root / f"check-{day}" / "groveauth.sqlite").is_file() and (root / "rehearsal" / "scout-db.sqlite").is_file()
    assert (root / f"groveauth-{day}.sql").is_file() and (root / "users.sql").is_file()
    # Every command names the config and the bucket it used.
    assert f"patina: config the demo's default for the checkout {root}" in ran.stderr
    # What cannot run here must at least still parse, so it cannot drift either.
    for command in [c for c in lines if not c.runnable] + commands(
        section(README, "Operators' tools: status, list, download, restore, and the disaster-recovery runbook")
    ):
        arguments = patina_arguments(command.line)
        if arguments is not None and "[" not in command.line:
            build_parser().parse_args(arguments)


def test_the_demo_shows_every_asset_materialized_and_every_check_evaluated(quick_start, monkeypatch):
    root, _, done = quick_start
    assert done.returncode == 0
    monkeypatch.chdir(root)  # dagster.yaml's storage paths are relative to the checkout
    defs = build_definitions(default_config(root))
    graph = defs.get_repository_def().asset_graph
    with dg.DagsterInstance.from_config(str(root)) as instance:
        for key in graph.get_all_asset_keys():
            event = instance.get_latest_materialization_event(key)
            assert event is not None, f"{key.to_user_string()} never materialized"
            assert -1 not in [getattr(v, "value", None) for v in event.asset_materialization.metadata.values()]
        for spec in defs.resolve_all_asset_specs():
            assert "**" not in (spec.description or ""), spec.key
        assert len(graph.asset_check_keys) == 6 * len(DUMP_CHECK_NAMES) + 4
        for check in graph.asset_check_keys:
            records = instance.event_log_storage.get_asset_check_execution_history(check, limit=1)
            assert records, f"{check} never evaluated"
            evaluation = records[0].event.dagster_event.event_specific_data
            assert evaluation.passed, (check, evaluation.description)
            assert evaluation.description, f"{check} has no description"
            sentinels = {k: v for k, v in evaluation.metadata.items() if getattr(v, "value", None) == -1}
            assert not sentinels, (check, sentinels)


def test_the_readme_names_and_numbers_match_what_the_commands_print(quick_start):
    root, _, done = quick_start
    defs = build_definitions(default_config(root))
    repository = defs.get_repository_def()
    for name in (
        [s.name for s in repository.schedule_defs]
        + [s.name for s in repository.sensor_defs]
        + [j.name for j in repository.get_all_jobs() if not j.name.startswith("__")]
    ):
        assert f"`{name}`" in README, name
    sources = sum(p.stat().st_size for p in (root / ".patina" / "sources").glob("*.sqlite"))
    stated = int(re.search(r"about (\d+) MB, a little different each day", README).group(1))
    assert abs(sources / 1e6 - stated) / stated < 0.25, (sources, stated)
    # The demo's SIZE column is the SQL's size, as `patina list` shows it.
    listing = json.loads(
        subprocess.run(
            [sys.executable, "-m", "patina_assets.cli", "list", "--json", "--limit", "1"],
            cwd=root,
            env=user_environment(root),
            capture_output=True,
            text=True,
        ).stdout
    )
    newest = listing["backups"][0]
    line = next(
        line
        for line in done.stdout.splitlines()
        if line.startswith(newest["date"]) and f" {newest['database']} " in line
    )
    assert f" {newest['size']} " in line
