"""`make ui` in a fresh checkout (before `make demo`), exactly as a new user starts it (`dagster dev` without -w,
which names the code location from pyproject.toml), and `patina trigger --wait` beside it, as a subprocess: the
run it queues (from the code location loaded in its own process) starts through the UI's daemon and backs up; a
run the daemon cannot start fails the command with Dagster's reason, and `patina status` says it failed to start
rather than that six databases failed. `make ui`'s daemon is Patina's (patina_assets/dev.py), and a backfill
submitted to it completes."""

import json
import os
import subprocess
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml
from support.checkout import ROOT, checkout_copy, free_port, stop_group, user_environment

from patina_assets.launching import CODE_LOCATION

READY_SECONDS = 300
BACKFILL_SECONDS = 300


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    root = checkout_copy(tmp_path_factory.mktemp("fresh-checkout"))
    port = free_port()
    log = open(root / "make-ui.log", "w")
    process = subprocess.Popen(
        ["make", "ui", f"PORT={port}"],
        cwd=root,
        env=user_environment(root),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            assert process.poll() is None, (root / "make-ui.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (root / "make-ui.log").read_text()[-3000:]
            time.sleep(1)  # polling the server's own readiness answer, not standing in for it
        root.joinpath("ui-url").write_text(f"http://127.0.0.1:{port}")
        yield root
    finally:
        stop_group(process)
        log.close()


def patina(root, *args, timeout=600):
    env = {**user_environment(root), "DAGSTER_HOME": str(root)}
    return subprocess.run(
        [str(root / ".venv" / "bin" / "patina"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_code_location_has_one_name():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert pyproject["tool"]["dagster"]["code_location_name"] == CODE_LOCATION
    assert [entry["python_module"]["location_name"] for entry in workspace["load_from"]] == [CODE_LOCATION]


def test_make_ui_works_first_and_trigger_wait_backs_up_beside_it(ui):
    assert sorted(p.name for p in (ui / ".patina" / "sources").glob("*.sqlite")) == sorted(
        f"{name}.sqlite"
        for name in (
            "groveauth",
            "grove-engine-db",
            "scout-db",
            "autumnsgrove-posts",
            "autumnsgrove-git-stats",
            "grove-domain-jobs",
        )
    )
    # Queued from the code location loaded in the command's own process (no `dagster job launch`), started by the
    # UI's daemon from its own location of the same name, as the UI's runs are.
    done = patina(ui, "trigger", "--db", "scout_db", "--reason", "pre-deploy", "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    triggered = json.loads(done.stdout)
    assert triggered["databaseNames"] == ["scout-db"] and triggered["status"] == "completed", triggered
    assert "DEBUG" not in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr  # only the config line
    listing = json.loads(patina(ui, "list", "--json").stdout)
    assert [b["database"] for b in listing["backups"]] == ["scout-db"]
    newest = json.loads(patina(ui, "status", "--json").stdout)["recentJobs"][0]
    assert newest["jobId"] == triggered["jobId"] and newest["status"] == "completed", newest
    assert (newest["reason"], newest["trigger"]) == ("pre-deploy", "cli")  # its tags, as `dagster job launch` set them
    assert newest["databases"] == {"successful": 1, "failed": 0}  # its op selection: the one database asked for


def test_trigger_through_the_running_webserver_backs_up(ui):
    url = (ui / "ui-url").read_text()
    done = patina(ui, "trigger", "--db", "groveauth", "--webserver", url, "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    triggered = json.loads(done.stdout)
    assert triggered["databaseNames"] == ["groveauth"] and triggered["status"] == "completed", triggered
    listing = json.loads(patina(ui, "list", "--json", "--db", "groveauth").stdout)
    assert [b["database"] for b in listing["backups"]] == ["groveauth"]
    # A webserver of another instance than $DAGSTER_HOME's: refused, naming both (its run is not ours to watch).
    elsewhere = ui / "another-dagster-home"
    elsewhere.mkdir()
    other = subprocess.run(
        [str(ui / ".venv" / "bin" / "patina"), "trigger", "--db", "groveauth", "--webserver", url],
        cwd=ui,
        env={**user_environment(ui), "DAGSTER_HOME": str(elsewhere)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert other.returncode == 1 and "another Dagster instance" in other.stderr, other.stdout + other.stderr
    # A URL where no webserver answers: the error says so and how to do without it.
    refused = patina(ui, "trigger", "--db", "groveauth", "--webserver", "http://127.0.0.1:9", timeout=120)
    assert refused.returncode == 1 and "did not queue the run" in refused.stderr and "--webserver" in refused.stderr


def test_a_run_the_daemon_cannot_start_fails_trigger_and_status_says_so(ui):
    other = ui / "other-workspace.yaml"  # the old mismatch: a location the UI's daemon does not have
    other.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": "patina_assets.definitions",
                            "location_name": "patina_assets.definitions",
                        }
                    }
                ]
            }
        )
    )
    done = patina(ui, "trigger", "--db", "groveauth", "--workspace", str(other), "--wait")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed to start" in done.stderr and "patina_assets.definitions" in done.stderr, done.stderr
    status = json.loads(patina(ui, "status", "--json").stdout)
    newest = status["recentJobs"][0]
    assert newest["status"] == "failed_to_start" and newest["databases"] == {"successful": 0, "failed": 0}
    assert "patina_assets.definitions" in newest["error"]
    assert "failed_to_start" in patina(ui, "status").stdout


def processes_in(directory: Path) -> list[list[str]]:
    """The command lines of the processes running in ``directory`` (their working directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if Path(os.readlink(proc / "cwd")) == directory:
                    found.append((proc / "cmdline").read_bytes().decode().split("\0")[:-1])
            except OSError:  # ended meanwhile, or not ours to read
                pass
    return found


def graphql(root: Path, query: str, **variables) -> dict:
    request = urllib.request.Request(
        (root / "ui-url").read_text() + "/graphql",
        json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    assert not answer.get("errors"), answer
    return answer["data"]


PARTITIONS = "query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode { partitionKeys } } }"
LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL_STATUS = (
    "query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"
)
BACKFILL_ENDED = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")


def test_make_ui_runs_patinas_daemon_and_a_backfill_completes_through_it(ui):
    # dagster dev's daemon process is `python -m patina_assets.daemon run ...`, not Dagster's `-m dagster._daemon`.
    commands = processes_in(ui.resolve())
    daemons = [c for c in commands if c[1:4] == ["-m", "patina_assets.daemon", "run"]]
    assert len(daemons) == 1 and "--shutdown-pipe" in daemons[0], commands
    assert not [c for c in commands if "dagster._daemon" in c], commands
    # An asset backfill of one day of one database (the UI's Materialize of a range of days makes such backfills):
    # the daemon's backfill loop submits its run, sees it end and marks the backfill completed.
    key = {"path": ["dumps", "autumnsgrove_posts"]}
    day = graphql(ui, PARTITIONS, key=key)["assetNodeOrError"]["partitionKeys"][-1]
    params = {"assetSelection": [key], "partitionNames": [day], "fromFailure": False}
    launched = graphql(ui, LAUNCH_BACKFILL, params=params)["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    deadline = time.monotonic() + BACKFILL_SECONDS
    while (
        status := graphql(ui, BACKFILL_STATUS, id=launched["backfillId"])["partitionBackfillOrError"]["status"]
    ) not in BACKFILL_ENDED:
        assert time.monotonic() < deadline, f"the backfill is still {status} after {BACKFILL_SECONDS} s"
        time.sleep(0.5)  # polling the backfill's own status, not standing in for it
    assert status == "COMPLETED_SUCCESS", status
    listing = json.loads(patina(ui, "list", "--json", "--db", "autumnsgrove-posts").stdout)
    assert [(b["database"], b["date"]) for b in listing["backups"]] == [("autumnsgrove-posts", day)]
