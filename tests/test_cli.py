"""`patina list / status / download / restore-guide / restore / trigger` against buckets filled by the real nightly
and weekly jobs (local and moto S3), human and --json output, and restores into SQLite and into D1 (loopback)."""

import hashlib
import json
import os
import sqlite3
import subprocess
import sys

import dagster as dg
import pytest
import yaml
from support.compare import assert_same_database
from support.d1_server import D1Server, Fault
from support.filled import (
    ARCHIVED_DAYS,
    DAILY_DAY,
    DATABASES,
    PRIORITY_ORDER,
    WEEK,
    copy_of,
    dagster_home,
    filled,
)

from patina_assets.cli import main
from patina_assets.defs.dumps.jobs import NIGHTLY_JOB
from patina_assets.defs.on_demand.jobs import ON_DEMAND_JOB, REASON_TAG, today

ACCOUNT = "0123456789abcdef0123456789abcdef"
IDS = {
    "groveauth": "45eae4c7-8ae7-4078-9218-8e1677a4360f",
    "autumnsgrove-posts": "510badf3-457a-4892-bf2a-45d4bfd7a7bb",
    "scout-db": "6a289378-c662-4c6a-9f1b-fa5296e03fa2",
}
TOKEN = "d1-token-for-tests-123"
NAMES = {name for name, _, _ in DATABASES}


@pytest.fixture(autouse=True)
def no_dagster_home(monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


@pytest.fixture(params=["local", "s3"])
def bucket(request):
    return filled(request.param)


def patina(capsys, bucket, *args):
    code = main(["--config", str(bucket.config_path), *args])
    out, err = capsys.readouterr()
    return code, out, err


def patina_json(capsys, bucket, *args):
    code, out, err = patina(capsys, bucket, *args, "--json")
    assert code == 0, err
    return json.loads(out)


# -- list -------------------------------------------------------------------------------------------


def test_list_shows_dailies_and_archived_days(capsys, bucket):
    document = patina_json(capsys, bucket, "list")
    assert document["total"] == document["filtered"] == len(document["backups"]) == 9
    assert [(b["date"], b["location"]) for b in document["backups"][:3]] == [(DAILY_DAY, "daily")] * 3
    assert {(b["date"], b["database"]) for b in document["backups"] if b["location"] == "weekly"} == {
        (day, name) for day in ARCHIVED_DAYS for name in NAMES
    }
    first = document["backups"][0]
    assert set(first) >= {"database", "date", "size", "sizeBytes", "tables", "rows", "createdAt", "expiresAt", "key"}
    code, out, _ = patina(capsys, bucket, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "DATE",
        "DATABASE",
        "WHERE",
        "SIZE",
        "TABLES",
        "ROWS",
        "CAPTURED",
        "VERIFIED",
        "EXPIRES",
    ]
    assert sum(1 for line in lines if line.startswith(("2026-03-09", "2026-03-02", "2026-03-01"))) == 9
    assert lines[-1] == "9 of 9 matching backup(s) shown; 9 in the bucket"


def test_list_filters_and_limits(capsys):
    bucket = filled("local")
    document = patina_json(capsys, bucket, "list", "--db", "groveauth", "--limit", "2")
    assert document["filtered"] == 3 and document["total"] == 9
    assert [(b["database"], b["date"]) for b in document["backups"]] == [
        ("groveauth", DAILY_DAY),
        ("groveauth", ARCHIVED_DAYS[1]),
    ]
    document = patina_json(capsys, bucket, "list", "--date", ARCHIVED_DAYS[0])
    assert {b["database"] for b in document["backups"]} == NAMES and {b["location"] for b in document["backups"]} == {
        "weekly"
    }
    code, _, err = patina(capsys, bucket, "list", "--date", "2026-02-30")
    assert code == 2 and "'2026-02-30' is not a date" in err and "YYYY-MM-DD" in err


# -- status ---------------------------------------------------------------------------------------


def test_status_from_the_bucket_alone_when_dagster_is_gone(capsys, bucket):
    status = patina_json(capsys, bucket, "status")
    assert status["currentStatus"] == "unknown"
    assert status["instance"] == {"available": False, "detail": "DAGSTER_HOME is not set"}
    job = status["lastBackup"]
    assert (job["date"], job["successful"], job["failed"], job["source"]) == (DAILY_DAY, 3, 0, "bucket")
    assert job["totalSizeBytes"] > 0 and job["durationSeconds"] >= 0
    storage = status["storage"]
    assert (storage["totalBackups"], storage["dailyBackups"], storage["weeklyBackups"]) == (9, 3, 6)
    assert (storage["oldestBackup"], storage["newestBackup"]) == (ARCHIVED_DAYS[0], DAILY_DAY)
    assert status["nextScheduled"].endswith("T03:00:00Z")
    assert set(status["schedules"]) == {"nightly_backup_schedule", "weekly_archive_schedule"}
    assert [d["database"] for d in status["databases"]] == list(PRIORITY_ORDER)
    code, out, _ = patina(capsys, bucket, "status")
    assert code == 0 and "Dagster instance unavailable: DAGSTER_HOME is not set" in out
    assert f"Last backup: {DAILY_DAY} completed: 3 ok, 0 failed" in out and "[from the bucket]" in out


def test_status_trusts_the_indexes_it_rebuilt_on_either_bucket(capsys, bucket):
    """What a status writes when it rebuilds an index (the ETags of that listing) is what the next one lists."""
    first = patina_json(capsys, bucket, "status")
    second = patina_json(capsys, bucket, "status")
    assert second["indexRebuilt"] == {}
    for part in ("storage", "verification", "lastBackup"):
        assert second[part] == first[part]


def test_status_without_dagster_home_does_not_import_dagster():
    """The next ticks come from the configuration's crons; building the definitions took seconds."""
    bucket = filled("local")
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    program = (
        "import json, sys\n"
        "from patina_assets.cli import main\n"
        f"code = main(['--config', {str(bucket.config_path)!r}, 'status', '--json'])\n"
        "print(json.dumps({'code': code, 'dagster': sorted(m for m in sys.modules if m.split('.')[0] == 'dagster')}))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True)
    status_text, _, verdict_line = done.stdout.rstrip().rpartition("\n")
    verdict = json.loads(verdict_line)
    assert verdict == {"code": 0, "dagster": []}, done.stderr[-2000:]
    status = json.loads(status_text)
    assert status["instance"]["detail"] == "DAGSTER_HOME is not set"
    assert status["nextScheduled"].endswith("T03:00:00Z")
    assert set(status["schedules"]) == {"nightly_backup_schedule", "weekly_archive_schedule"}


def test_status_with_the_dagster_instance(capsys, monkeypatch):
    bucket = filled("local")
    monkeypatch.setenv("DAGSTER_HOME", str(bucket.dagster_home))
    status = patina_json(capsys, bucket, "status")
    assert status["currentStatus"] == "idle" and status["instance"]["available"] is True
    job = status["lastBackup"]
    assert (job["job"], job["date"], job["status"], job["successful"], job["source"]) == (
        NIGHTLY_JOB,
        DAILY_DAY,
        "completed",
        3,
        "dagster",
    )
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(job["jobId"])
        assert run.tags["dagster/partition"] == DAILY_DAY
    assert [j["date"] for j in status["recentJobs"] if j["job"] == NIGHTLY_JOB] == [DAILY_DAY, *reversed(ARCHIVED_DAYS)]
    code, out, _ = patina(capsys, bucket, "status")
    assert out.startswith("Patina: idle\n") and "RUN" in out and NIGHTLY_JOB in out


# -- download ---------------------------------------------------------------------------------------


def test_download_from_a_daily_and_from_inside_a_weekly_archive(capsys, bucket, tmp_path):
    for day, where in ((DAILY_DAY, "daily"), (ARCHIVED_DAYS[1], "weekly")):
        target = tmp_path / f"{day}.sql"
        document = patina_json(capsys, bucket, "download", day, "groveauth", "-o", str(target))
        data = target.read_bytes()
        assert document["path"] == str(target) and document["location"] == where
        assert hashlib.sha256(data).hexdigest() == document["sqlSha256"] and len(data) == document["sizeBytes"]
    code, out, _ = patina(capsys, bucket, "download", DAILY_DAY, "scout-db", "-o", str(tmp_path / "s.sql"))
    assert code == 0 and "sha256" in out and "checked" in out and (tmp_path / "s.sql").exists()


def test_download_refuses_a_backup_whose_sha256_does_not_match(capsys, tmp_path):
    bucket = copy_of(filled("local"), tmp_path / "copy")
    document = patina_json(capsys, bucket, "list", "--db", "groveauth", "--date", DAILY_DAY)
    stored = bucket.config.bucket.local.path / document["backups"][0]["key"]
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x04
    stored.write_bytes(bytes(data))
    target = tmp_path / "out" / "groveauth.sql"
    code, _, err = patina(capsys, bucket, "download", DAILY_DAY, "groveauth", "-o", str(target))
    assert code == 1 and "damaged" in err and "use another day's backup" in err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_download_says_which_days_exist(capsys):
    code, _, err = patina(capsys, filled("local"), "download", "2026-03-05", "groveauth")
    assert code == 1 and "no backup of groveauth on 2026-03-05" in err and DAILY_DAY in err


# -- restore-guide ----------------------------------------------------------------------------------


def test_restore_guide_has_this_installations_commands(capsys):
    bucket = filled("local")
    guide = patina_json(capsys, bucket, "restore-guide", "groveauth")
    assert guide["database"] == "groveauth" and guide["priority"] == "critical" and guide["restoreOrder"] == 1
    assert [b["date"] for b in guide["availableBackups"]] == [DAILY_DAY, *reversed(ARCHIVED_DAYS)]
    steps = "\n".join(guide["restoreInstructions"]["method1_wrangler"]["steps"])
    assert f"patina download {DAILY_DAY} groveauth -o groveauth-{DAILY_DAY}.sql" in steps
    assert f"--remote --file=groveauth-{DAILY_DAY}.sql" in steps
    assert 'SELECT COUNT(*) FROM posts" (expect 20)' in steps
    assert "EMPTY database" in guide["restoreInstructions"]["method1_wrangler"]["warning"]
    assert "no DROP TABLE" in guide["restoreInstructions"]["method1_wrangler"]["warning"]
    assert "wrangler d1 time-travel info groveauth" in guide["restoreInstructions"]["method2_timetravel"]["steps"][0]
    code, out, _ = patina(capsys, bucket, "restore-guide", "groveauth")
    assert code == 0 and out.startswith("Restore guide: groveauth (critical, restore order 1)")
    code, _, err = patina(capsys, bucket, "restore-guide", "groveauht")
    assert code == 2 and "did you mean 'groveauth'" in err


# -- restore into SQLite ---------------------------------------------------------------------------


def test_restore_a_backup_from_the_bucket_into_sqlite(capsys, bucket, tmp_path):
    for day in (DAILY_DAY, ARCHIVED_DAYS[0]):
        target = tmp_path / f"{day}.sqlite"
        document = patina_json(capsys, bucket, "restore", day, "autumnsgrove-posts", "--to", str(target))
        assert document["database"] == "autumnsgrove-posts" and document["date"] == day
        assert_same_database(bucket.sources["autumnsgrove-posts"], target, check_pragmas=False)
    one = tmp_path / "users.sqlite"
    code, out, _ = patina(capsys, bucket, "restore", DAILY_DAY, "groveauth", "--to", str(one), "--table", "users")
    assert code == 0 and "restored 1 table(s), 10 rows" in out
    assert [r[0] for r in sqlite3.connect(one).execute("SELECT name FROM sqlite_master WHERE type='table'")] == [
        "users"
    ]


def test_restore_arguments_are_unambiguous(capsys, tmp_path):
    bucket = filled("local")
    cases = [
        (["restore", "--to", str(tmp_path / "x.sqlite")], "restore takes a DUMP file, or DAY DB"),
        (["restore", "a", "b", "c", "--to", str(tmp_path / "x.sqlite")], "restore takes a DUMP file, or DAY DB"),
        (["restore", "yesterday", "groveauth", "--to", str(tmp_path / "x.sqlite")], "'yesterday' is not a date"),
        (["restore", "--all", DAILY_DAY, "groveauth", "--to", str(tmp_path)], "takes no other positional"),
        (
            ["restore", DAILY_DAY, "groveauth", "--to", f"d1://{ACCOUNT}/{IDS['groveauth']}", "--table", "users"],
            "--table works with SQLite targets only",
        ),
    ]
    for args, message in cases:
        code, _, err = patina(capsys, bucket, *args)
        assert code == 2 and message in err, (args, err)
    assert list(tmp_path.iterdir()) == []
    # One positional is still a local dump file, as before.
    dump = tmp_path / "g.sql"
    assert patina(capsys, bucket, "download", DAILY_DAY, "groveauth", "-o", str(dump))[0] == 0
    code, out, _ = patina(capsys, bucket, "restore", str(dump), "--to", str(tmp_path / "g.sqlite"))
    assert code == 0 and "row counts match the dump" in out


def test_restore_all_into_a_directory_in_priority_order(capsys, tmp_path):
    bucket = filled("local")
    document = patina_json(capsys, bucket, "restore", "--all", ARCHIVED_DAYS[1], "--to", str(tmp_path / "restored"))
    assert [d["database"] for d in document["restored"]] == list(PRIORITY_ORDER)
    assert document["failed"] is None and document["notAttempted"] == []
    for name in NAMES:
        assert_same_database(bucket.sources[name], tmp_path / "restored" / f"{name}.sqlite", check_pragmas=False)
    code, _, err = patina(capsys, bucket, "restore", "--all", ARCHIVED_DAYS[1], "--to", str(tmp_path / "restored"))
    assert code == 2 and "already exist" in err and "nothing was restored" in err
    code, _, err = patina(capsys, bucket, "restore", "--all", "2026-03-05", "--to", str(tmp_path / "other"))
    assert (
        code == 1 and "nothing was restored: no backup of groveauth, autumnsgrove-posts, scout-db on 2026-03-05" in err
    )
    assert not (tmp_path / "other").exists()


# -- restore into D1 --------------------------------------------------------------------------------


@pytest.fixture
def d1_env(monkeypatch):
    def start(databases):
        server = D1Server({IDS[name]: path for name, path in databases.items()}, account_id=ACCOUNT, token=TOKEN)
        server.start()
        monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
        monkeypatch.setenv("PATINA_CLOUDFLARE_API_URL", server.base_url)
        servers.append(server)
        return server

    servers = []
    yield start
    for server in servers:
        server.stop()


def empty(path):
    sqlite3.connect(path).close()
    return path


def test_restore_into_d1_asks_first_then_imports_and_checks(capsys, tmp_path, d1_env):
    bucket = filled("local")
    target = empty(tmp_path / "d1-groveauth.sqlite")
    server = d1_env({"groveauth": target})
    to = f"d1://{ACCOUNT}/{IDS['groveauth']}"
    code, _, err = patina(capsys, bucket, "restore", ARCHIVED_DAYS[0], "groveauth", "--to", to)
    assert code == 2 and "without confirmation" in err and "--yes" in err
    assert server.requests == []
    document = patina_json(capsys, bucket, "restore", ARCHIVED_DAYS[0], "groveauth", "--to", to, "--yes")
    assert (
        document["target"] == to
        and document["numQueries"] > 0
        and document["restored"] == f"groveauth on {ARCHIVED_DAYS[0]}"
    )
    assert_same_database(bucket.sources["groveauth"], target, check_pragmas=False)
    actions = [r.body["action"] for r in server.requests if isinstance(r.body, dict) and "action" in r.body]
    assert actions == ["init", "ingest", "poll"]
    assert TOKEN not in json.dumps(document)
    code, _, err = patina(capsys, bucket, "restore", DAILY_DAY, "groveauth", "--to", to, "--yes")
    assert code == 1 and "is not empty" in err and "wrangler d1 create" in err


def test_restore_all_into_d1_goes_critical_first_and_stops_at_the_first_failure(capsys, tmp_path, d1_env):
    bucket = filled("local")
    targets = {name: empty(tmp_path / f"{name}.sqlite") for name in NAMES}
    server = d1_env(targets)
    mapping = tmp_path / "targets.yaml"
    mapping.write_text(yaml.safe_dump({name: f"d1://{ACCOUNT}/{IDS[name]}" for name in NAMES}))
    document = patina_json(capsys, bucket, "restore", "--all", DAILY_DAY, "--to", str(mapping), "--yes")
    assert [d["database"] for d in document["restored"]] == list(PRIORITY_ORDER) and document["failed"] is None
    inits = [
        r.path.split("/")[-2] for r in server.requests if isinstance(r.body, dict) and r.body.get("action") == "init"
    ]
    assert inits == [IDS[name] for name in PRIORITY_ORDER]
    for name in NAMES:
        assert_same_database(bucket.sources[name], targets[name], check_pragmas=False)

    # Again into the same databases: refused before anything is written, since they are not empty any more.
    code, _, err = patina(capsys, bucket, "restore", "--all", DAILY_DAY, "--to", str(mapping), "--yes")
    assert code == 1 and "nothing was restored: these targets are not empty" in err and "scout-db" in err

    # Into empty ones, with D1 refusing the second import: the first stays restored, the third is not attempted.
    for path in targets.values():
        path.unlink()
        empty(path)
    server.inject(Fault.status(400, path=f"{IDS['autumnsgrove-posts']}/import"))
    code, out, _ = patina(capsys, bucket, "restore", "--all", DAILY_DAY, "--to", str(mapping), "--yes")
    assert code == 1
    rows = [line.split()[:3] for line in out.splitlines()[2:5]]
    assert rows == [
        ["groveauth", "critical", "restored"],
        ["autumnsgrove-posts", "high", "FAILED"],
        ["scout-db", "normal", "not"],
    ]
    assert "stopped at autumnsgrove-posts" in out and "could not start the import (init): HTTP 400" in out
    assert_same_database(bucket.sources["groveauth"], targets["groveauth"], check_pragmas=False)
    for name in ("autumnsgrove-posts", "scout-db"):
        assert sqlite3.connect(targets[name]).execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_restore_all_to_d1_sources_needs_d1_sources(capsys, tmp_path):
    code, _, err = patina(capsys, filled("local"), "restore", "--all", DAILY_DAY, "--to", "d1-sources", "--yes")
    assert code == 2 and "have no d1:// source" in err and "mapping file" in err
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"groveauth": f"d1://{ACCOUNT}/{IDS['groveauth']}", "nope": "x.sqlite"}))
    code, _, err = patina(capsys, filled("local"), "restore", "--all", DAILY_DAY, "--to", str(bad), "--yes")
    assert code == 2 and "unknown database(s) nope" in err and "no target for" in err


# -- trigger ----------------------------------------------------------------------------------------


def test_trigger_needs_an_instance(capsys):
    code, _, err = patina(capsys, filled("local"), "trigger", "--reason", "x")
    assert code == 1 and "trigger needs the Dagster instance" in err and "DAGSTER_HOME" in err


def test_trigger_and_wait_backs_up_now_with_the_reason_as_a_run_tag(capsys, tmp_path, monkeypatch):
    """--wait returns when the run has ended (here on an instance that launches at once, with no daemon)."""
    bucket = copy_of(filled("local"), tmp_path / "copy")
    home = dagster_home(
        tmp_path / "instance",
        run_coordinator={"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    code, _, err = patina(capsys, bucket, "trigger", "--db", "nope")
    assert code == 2 and "unknown database(s) 'nope'" in err
    document = patina_json(capsys, bucket, "trigger", "--db", "groveauth", "--reason", "pre-deploy 1.4", "--wait")
    assert document["status"] == "completed" and document["databaseNames"] == ["groveauth"]
    assert document["date"] == today()
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(document["jobId"])
        assert run.job_name == ON_DEMAND_JOB and run.tags[REASON_TAG] == "pre-deploy 1.4"
        event = instance.get_latest_materialization_event(dg.AssetKey(["dumps", "groveauth"]))
        assert event.run_id == run.run_id and event.asset_materialization.partition == today()
    listing = patina_json(capsys, bucket, "list", "--date", today())
    assert [(b["database"], b["dagsterRunId"]) for b in listing["backups"]] == [("groveauth", run.run_id)]
    status = patina_json(capsys, bucket, "status")
    assert status["recentJobs"][0]["reason"] == "pre-deploy 1.4" and status["recentJobs"][0]["trigger"] == "cli"


def test_trigger_submits_a_run_to_the_instance(tmp_path):
    """The real path: `patina trigger` in its own process submits through Dagster (here an instance whose
    coordinator launches at once, as the daemon would from the queue)."""
    bucket = copy_of(filled("local"), tmp_path / "copy")
    home = dagster_home(
        tmp_path / "instance",
        run_coordinator={"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
    )
    env = {**__import__("os").environ, "DAGSTER_HOME": str(home), "PATINA_CONFIG": str(bucket.config_path)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "patina_assets.cli",
            "trigger",
            "--db",
            "scout-db",
            "--reason",
            "schema change",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(document["jobId"])
        assert run.tags[REASON_TAG] == "schema change" and run.op_selection == ["backup_scout_db"]
        assert run.status == dg.DagsterRunStatus.SUCCESS
    days = {
        b["date"]
        for b in json.loads(
            subprocess.run(
                [sys.executable, "-m", "patina_assets.cli", "list", "--db", "scout-db", "--json"],
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp_path,
            ).stdout
        )["backups"]
    }
    assert today() in days and WEEK in days
