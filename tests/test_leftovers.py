"""No leftovers: real processes killed with SIGKILL mid-dump and mid-upload, then the next run's sweep.

Each kill is synchronised on something the killed process does (a worker process appearing, a temporary
file growing, an UploadPart request held by the S3 proxy), never on a sleep. After the kill: the dump worker
dies with its parent, and the sweep finds and removes the scratch directory, the bucket's temporary and the
incomplete multipart upload, and reports them; reconciliation reports them too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.s3_server import FaultProxy, create_bucket, moto_server, pending_uploads

from patina_assets import leftovers
from patina_assets.archive import ArchiveStore
from patina_assets.defs.alerts.sensors import Alerting, build_alert_sensors
from patina_assets.defs.alerts.watch import mark_stuck_runs
from patina_assets.defs.policies import EXPORT_POOL
from patina_assets.notifications import DeliveryPolicy
from patina_assets.reconciliation import RecordedBackups, reconcile
from patina_assets.storage import BackupStore, LocalBucket, S3Bucket, make_s3_client

REPO = Path(__file__).resolve().parents[1]
WAIT = 120.0  # seconds a condition may take on a loaded machine before the test gives up


def wait_for(condition, what: str, timeout: float = WAIT):
    """Poll ``condition`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.002)
    pytest.fail(f"timed out waiting for {what}")


def python(script: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def children(pid: int, mark: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid and mark in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return found


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()


# ------------------------------------------------------------------------------------------------
# Mid-dump: a real nightly run (Dagster, in-process) killed while its dump worker runs
# ------------------------------------------------------------------------------------------------

RUN_SCRIPT = """
import sys
import dagster as dg
from patina_assets.config import load_config
from patina_assets.defs import build_definitions
job = build_definitions(load_config(sys.argv[1])).resolve_job_def("nightly_backup")
with dg.DagsterInstance.get() as instance:
    job.execute_in_process(partition_key=sys.argv[2], instance=instance)
"""


def sparse_database(path: Path) -> Path:
    """2,000 rows over a rowid range wider than SPLIT_MIN_ROWIDS: dumped by two processes."""
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT)")
    db.executemany("INSERT INTO t VALUES (?,?)", [(i * 500, f"row {i}") for i in range(2000)])
    db.commit()
    db.close()
    return path


def test_a_run_killed_mid_dump_leaves_no_worker_and_the_next_run_cleans_up_marks_it_and_alerts(tmp_path, monkeypatch):
    import dagster as dg
    from support.configs import write_config
    from support.webhook_server import WebhookServer

    from patina_assets.watch import run_bounds

    home, scratch = tmp_path / "home", tmp_path / "scratch"
    home.mkdir()
    scratch.mkdir()
    (home / "dagster.yaml").write_text(
        f"storage: {{sqlite: {{base_dir: {home / 'storage'}}}}}\n"
        "concurrency: {pools: {default_limit: 3}}\ntelemetry: {enabled: false}\n"
    )
    config = write_config(tmp_path, [{"name": "groveauth", "source": str(sparse_database(tmp_path / "auth.sqlite"))}])

    with dg.DagsterInstance.from_config(str(home)) as instance, WebhookServer(default=200) as hook:
        monkeypatch.setenv("PATINA_WEBHOOK_URL", hook.url)
        monkeypatch.delenv("PATINA_DISCORD_WEBHOOK", raising=False)
        alert_sensor = build_alert_sensors(config, policy=DeliveryPolicy(timeout_seconds=2.0, attempts=1))[0]
        cursor = alert_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, sensor_name="a")).cursor

        run = python(
            RUN_SCRIPT, str(config.source_path), "2026-03-01", env={"DAGSTER_HOME": str(home), "TMPDIR": str(scratch)}
        )
        (worker,) = wait_for(lambda: children(run.pid, b"dump_worker"), "the dump worker to start")
        os.kill(worker, signal.SIGSTOP)  # hold it wherever it is, then kill its parent
        kill(run)
        os.kill(worker, signal.SIGCONT)
        wait_for(lambda: not leftovers.process_alive(worker), "the orphaned worker to die")

        (left,) = [p for p in scratch.iterdir() if p.name.startswith(f"patina-scratch-{run.pid}-backup-")]
        halves = list(left.glob(".patina-half-*.sql"))
        assert halves and all(h.stat().st_size == 0 for h in halves)  # the worker never wrote its half
        report = leftovers.sweep(temp_dir=scratch)
        assert [(f.kind, f.where, f.removed) for f in report.found] == [(leftovers.SCRATCH, str(left), True)]
        assert not left.exists()
        assert leftovers.sweep(temp_dir=scratch).found == []  # nothing twice

        # Dagster still says STARTED, with the pool slot taken: the stuck-run watch settles it.
        (record,) = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.STARTED
        claimed = [s.run_id for s in instance.event_log_storage.get_concurrency_info(EXPORT_POOL).claimed_slots]
        bounds = run_bounds(config)
        alerting = Alerting(config)
        assert mark_stuck_runs(instance, alerting, bounds, now=time.time()) == []  # quiet, but not for long
        assert mark_stuck_runs(instance, alerting, bounds, now=time.time() + bounds.stall_seconds + 1) == [
            record.dagster_run.run_id
        ]
        assert instance.get_run_by_id(record.dagster_run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert claimed == [record.dagster_run.run_id]
        assert instance.event_log_storage.get_concurrency_info(EXPORT_POOL).claimed_slots == []

        alert_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, sensor_name="a"))
        (message,) = hook.accepted
        assert message["jobId"] == record.dagster_run.run_id and message["type"] == "backup_failed"
        (failure,) = message["failures"]
        assert failure["database"] == "groveauth" and failure["error"].startswith(
            "Patina marked this run failed: it logged nothing for"
        )


# ------------------------------------------------------------------------------------------------
# Mid-upload: a local bucket's temporary, an S3 multipart upload
# ------------------------------------------------------------------------------------------------

LOCAL_PUT = """
import sys
from patina_assets.storage import LocalBucket
LocalBucket(sys.argv[1]).put_file("daily/2026-03-01/groveauth.20260302T030000000000Z-abcdef.sql", sys.argv[2])
"""


def test_a_write_killed_mid_upload_to_a_local_bucket_is_found_removed_and_reported(tmp_path):
    root, fifo = tmp_path / "bucket", tmp_path / "dump.fifo"
    os.mkfifo(fifo)
    writer = python(LOCAL_PUT, str(root), str(fifo))
    with open(fifo, "wb") as feed:  # the upload reads the dump from this pipe: it is mid-write until we stop
        feed.write(b"INSERT INTO t VALUES (1);\n" * 100_000)  # over one copy buffer (1 MiB)
        feed.flush()
        (temporary,) = wait_for(
            lambda: [p for p in root.rglob(".patina-tmp.*") if p.stat().st_size > 0], "the upload's temporary to fill"
        )
        kill(writer)
    bucket = LocalBucket(root)
    (write,) = bucket.incomplete_writes()
    assert write.writer_pid == writer.pid and write.where == temporary.relative_to(root).as_posix()
    assert list(bucket.list("")) == []  # never mistaken for a backup

    report = reconcile(ArchiveStore(BackupStore(bucket)), RecordedBackups())
    (finding,) = report.leftovers
    assert (
        finding.key == write.where and "its writer is gone" in finding.detail and finding.detail.endswith(": removed")
    )
    assert report.leftovers_kept == 0 and not temporary.exists() and bucket.incomplete_writes() == []


S3_PUT = """
import sys
from patina_assets.storage import S3Bucket, daily_dump_key, make_s3_client, new_generation
client = make_s3_client(sys.argv[1], "us-east-1", "testing", "testing")
key = daily_dump_key("2026-03-01", "groveauth", "sql", new_generation())  # as publish_daily names an upload
S3Bucket(client, sys.argv[2], part_size=5 * 1024 * 1024).put_file(key, sys.argv[3])
"""


def test_an_upload_killed_mid_multipart_is_aborted_once_it_is_an_hour_old(tmp_path):
    dump = tmp_path / "dump.sql"
    dump.write_bytes(os.urandom(11 * 1024 * 1024))  # three parts of 5 MiB
    with moto_server() as endpoint, FaultProxy(endpoint) as proxy:
        name = create_bucket(endpoint)
        held = proxy.fail(operation="UploadPart", part_number=2, action="hold")
        uploader = python(S3_PUT, proxy.endpoint_url, name, str(dump))
        wait_for(held.reached.is_set, "the second part's upload")
        kill(uploader)
        held.release.set()
        (upload,) = pending_uploads(endpoint, name)

        bucket = S3Bucket(make_s3_client(endpoint, "us-east-1", "testing", "testing"), name)
        assert [w.upload_id for w in bucket.incomplete_writes()] == [upload["UploadId"]]
        # moto reports every upload as initiated in 2010: the age comes from the key's generation instead.
        assert leftovers.sweep(bucket, temp_dir=tmp_path).found == []  # young: it may be a run uploading now
        later = datetime.now(UTC) + timedelta(hours=1, minutes=1)
        report = leftovers.sweep(bucket, now=later, temp_dir=tmp_path)
        assert [(f.kind, f.where, f.removed) for f in report.found] == [(leftovers.UPLOAD, upload["Key"], True)]
        assert pending_uploads(endpoint, name) == []


def test_a_live_scratch_directory_and_other_programs_files_are_never_touched(tmp_path):
    foreign = [tmp_path / "patina-verify-abc", tmp_path / "pytest-of-root"]  # not Patina's by name
    for path in foreign:
        path.mkdir()
    with leftovers.scratch_directory("backup", tmp_path) as live:
        assert live.name.startswith(f"patina-scratch-{os.getpid()}-backup-")
        assert leftovers.sweep(temp_dir=tmp_path).found == [] and live.exists()
    assert not live.exists() and all(path.exists() for path in foreign)
