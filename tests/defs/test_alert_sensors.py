"""The alert sensors, driven by real runs: nightly jobs executed on a test instance (groveauth fails while its
SQLite file is missing), asset checks defined here that fail, and the sensors evaluated tick after tick the
way the daemon does (their cursor carried from one tick to the next), delivering to webhook servers on
loopback. Payloads are asserted field by field; escalation, no repeats, a webhook that answers 500 then 200,
redaction, and the webhook URL kept out of logs, cursors and tick messages."""

from __future__ import annotations

import datetime as dt
import json
import logging

import dagster as dg
import pytest
from support.configs import small_database, write_config
from support.webhook_server import SECRET_TOKEN, WebhookServer, closed_port_url

from patina_assets.backup import open_store
from patina_assets.defs import build_definitions, resources
from patina_assets.defs.alerts import sensors as alert_sensors
from patina_assets.defs.alerts.sensors import CHECK_ALERTS_SENSOR, RUN_ALERTS_SENSOR, build_alert_sensors
from patina_assets.defs.archives.jobs import WEEKLY_JOB
from patina_assets.defs.dumps.assets import build_dump_assets, dump_asset_key
from patina_assets.defs.dumps.checks import DUMP_CHECK_NAMES
from patina_assets.defs.dumps.jobs import NIGHTLY_JOB
from patina_assets.defs.on_demand.jobs import build_on_demand_job
from patina_assets.defs.policies import step_executor
from patina_assets.notifications import DeliveryPolicy, format_duration, format_timestamp
from patina_assets.units import human_bytes

FAST = DeliveryPolicy(timeout_seconds=2.0, attempts=2, backoff_seconds=0.0)
DAYS = [f"2026-03-{d:02d}" for d in range(1, 15)]


class Patina:
    """groveauth (fails while its file is missing) and scout-db, the nightly job, the alert sensors, a test
    instance, and the sensors' cursors, carried from tick to tick as the daemon does."""

    def __init__(self, tmp_path, instance, extra: dg.Definitions | None = None, **alerts):
        sources = tmp_path / "sources"
        sources.mkdir()
        self.tmp_path = tmp_path
        self.auth = sources / "auth.sqlite"
        databases = [
            {"name": "groveauth", "source": str(self.auth), "priority": "critical"},
            {"name": "scout-db", "source": str(small_database(sources / "scout.sqlite", 30))},
        ]
        self.config = write_config(tmp_path, databases, alerts=alerts)
        assets = build_dump_assets(self.config)
        # The nightly without the dumps' own checks (they run in the dump's step; these nights are long past, so
        # captured_on_time would warn each night): the stub checks below stand in for them.
        own_checks = dg.AssetSelection.checks(
            *(dg.AssetCheckKey(dump_asset_key(db), name) for db in self.config.databases for name in DUMP_CHECK_NAMES)
        )
        nightly = dg.define_asset_job(
            NIGHTLY_JOB,
            selection=dg.AssetSelection.assets(*assets) - own_checks,
            executor_def=step_executor(2),
        )
        core = dg.Definitions(
            assets=assets,
            jobs=[nightly],
            sensors=build_alert_sensors(self.config, policy=FAST),
            resources=resources.resources(self.config),
        )
        self.defs = dg.Definitions.merge(core, extra) if extra else core
        self.instance = instance
        self.cursors: dict[str, str | None] = {}
        self.skips: list[str] = []

    def tick(self, sensor: str = RUN_ALERTS_SENSOR):
        result = self.defs.resolve_sensor_def(sensor).evaluate_tick(
            dg.build_sensor_context(instance=self.instance, cursor=self.cursors.get(sensor), sensor_name=sensor)
        )
        self.cursors[sensor] = result.cursor
        self.skips.append(result.skip_message or "")
        return result

    def start(self) -> None:
        """The sensors' first ticks: they start from the newest record."""
        self.tick(RUN_ALERTS_SENSOR)
        self.tick(CHECK_ALERTS_SENSOR)

    def night(self, day: str, auth_ok: bool, job: str = NIGHTLY_JOB, **kwargs) -> dg.ExecuteInProcessResult:
        if auth_ok and not self.auth.exists():
            small_database(self.auth, 40)
        elif not auth_ok and self.auth.exists():
            self.auth.unlink()
        return self.defs.resolve_job_def(job).execute_in_process(
            partition_key=day, instance=self.instance, raise_on_error=False, **kwargs
        )

    def record(self, result) -> dg.RunRecord:
        return self.instance.get_run_record_by_id(result.run_id)

    def stored_bytes(self, day: str) -> dict[str, int]:
        return {m.database: m.bytes for m in open_store(self.config).list_daily(day=day)}


@pytest.fixture
def hooks(monkeypatch):
    """A Discord-like webhook (204) and a generic JSON one (200), named by the default variables."""
    with WebhookServer(default=204) as discord, WebhookServer(default=200) as generic:
        monkeypatch.setenv("PATINA_DISCORD_WEBHOOK", discord.url)
        monkeypatch.setenv("PATINA_WEBHOOK_URL", generic.url)
        yield discord, generic


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def fields(embed: dict) -> dict[str, str]:
    return {f["name"]: f["value"] for f in embed["fields"]}


def test_build_definitions_has_both_sensors_running_by_default(tmp_path):
    config = write_config(tmp_path, [{"name": "groveauth", "source": str(small_database(tmp_path / "a.sqlite", 5))}])
    defs = build_definitions(config)
    for name in (RUN_ALERTS_SENSOR, CHECK_ALERTS_SENSOR):
        sensor = defs.resolve_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING and sensor.description


def test_a_failed_night_sends_the_spec_embed_and_payload_once(tmp_path, instance, hooks):
    discord, generic = hooks
    patina = Patina(tmp_path, instance)
    patina.start()
    result = patina.night(DAYS[0], auth_ok=False)
    assert not result.success
    patina.tick()

    record = patina.record(result)
    finished = dt.datetime.fromtimestamp(record.end_time, tz=dt.UTC)
    duration = format_duration(record.end_time - record.start_time)
    size = human_bytes(patina.stored_bytes(DAYS[0])["scout-db"])
    (message,) = discord.accepted
    (embed,) = message["embeds"]
    assert embed["title"] == "⚠️ Patina Backup Partially Failed" and embed["color"] == 0xEF4444
    assert embed["fields"][:3] == [
        {"name": "Databases", "value": "1/2 successful", "inline": True},
        {"name": "Total Size", "value": size, "inline": True},
        {"name": "Duration", "value": duration, "inline": True},
    ]
    assert fields(embed)["Day"] == DAYS[0]
    assert fields(embed)["Failed"] == f"**groveauth**: no SQLite database at {patina.auth}: check the path"
    assert embed["footer"] == {"text": f"Job ID: {result.run_id}"}
    assert embed["timestamp"] == format_timestamp(finished)

    assert generic.accepted == [
        {
            "type": "backup_failed",
            "jobId": result.run_id,
            "job": "nightly_backup",
            "status": "partial_failure",
            "timestamp": format_timestamp(finished),
            "day": DAYS[0],
            "summary": {"successful": 1, "failed": 1, "totalSize": size, "duration": duration},
            "failures": [{"database": "groveauth", "error": f"no SQLite database at {patina.auth}: check the path"}],
            "canceled": False,
            "willRetry": False,
        }
    ]
    # The next ticks find nothing new: no repeat.
    patina.tick()
    patina.tick()
    assert len(discord.requests) == 1 and len(generic.requests) == 1


def test_runs_from_before_the_sensor_started_are_not_replayed(tmp_path, instance, hooks):
    discord, generic = hooks
    patina = Patina(tmp_path, instance)
    patina.night(DAYS[0], auth_ok=False)
    assert "from now on" in patina.tick().skip_message
    patina.tick()
    assert discord.requests == [] and generic.requests == []
    patina.night(DAYS[1], auth_ok=False)
    patina.tick()
    assert len(discord.accepted) == 1 and fields(discord.accepted[0]["embeds"][0])["Day"] == DAYS[1]


def test_a_backlog_is_read_in_order_over_several_ticks(tmp_path, instance, hooks, monkeypatch):
    discord, generic = hooks
    monkeypatch.setattr(alert_sensors, "RUNS_PER_PAGE", 2)
    monkeypatch.setattr(alert_sensors, "READ_SECONDS_PER_TICK", 0.0)  # one page a tick
    patina = Patina(tmp_path, instance, notify_on_success=True)
    patina.start()
    runs = [
        patina.night(DAYS[0], auth_ok=True),
        patina.night(DAYS[1], auth_ok=False),
        patina.night(DAYS[2], auth_ok=True),
    ]
    assert "2 finished run(s) read" in patina.tick().skip_message
    assert "1 finished run(s) read" in patina.tick().skip_message
    assert "0 finished run(s) read" in patina.tick().skip_message
    assert [p["jobId"] for p in generic.accepted] == [r.run_id for r in runs]
    assert [p["type"] for p in generic.accepted] == ["backup_completed", "backup_failed", "backup_completed"]
    assert len(discord.requests) == 3


def streaks(server) -> list[dict]:
    return [m for m in server.accepted if "content" in m]


def test_three_failures_in_a_row_escalate(tmp_path, instance, hooks):
    discord, generic = hooks
    patina = Patina(tmp_path, instance)
    patina.start()
    first = patina.night(DAYS[0], auth_ok=True)
    assert first.success
    last_success = next(
        e
        for e in patina.instance.all_logs(first.run_id)
        if e.dagster_event
        and e.dagster_event.is_step_materialization
        and e.dagster_event.asset_key == dg.AssetKey(["dumps", "groveauth"])
    )

    second = patina.night(DAYS[1], auth_ok=False)
    third = patina.night(DAYS[2], auth_ok=False)
    # Dagster re-executing the third night (a run retry shares its root run id) is the same attempt.
    retry = patina.night(
        DAYS[2], auth_ok=False, tags={"dagster/root_run_id": third.run_id, "dagster/parent_run_id": third.run_id}
    )
    patina.tick()
    assert not any([second.success, third.success, retry.success])
    assert streaks(discord) == [] and len(discord.accepted) == 3  # three failure embeds, no escalation yet

    fourth = patina.night(DAYS[3], auth_ok=False)
    patina.tick()
    (escalation,) = streaks(discord)
    assert escalation["content"] == "@here Patina: groveauth failed 3 backups in a row"
    embed = escalation["embeds"][0]
    assert embed["title"] == "🚨 Patina: groveauth failed 3 backups in a row" and embed["color"] == 0x991B1B
    last_at = format_timestamp(dt.datetime.fromtimestamp(last_success.timestamp, tz=dt.UTC))
    assert fields(embed) == {
        "Database": "groveauth",
        "Consecutive failures": "3",
        "Escalates at": "3",
        "Last successful backup": f"backup of {DAYS[0]}, made {last_at}",
        "Latest error": f"no SQLite database at {patina.auth}: check the path",
    }
    assert embed["footer"] == {"text": f"Job ID: {fourth.run_id}"}
    generic_streak = [m for m in generic.accepted if m["type"] == "backup_failure_streak"]
    assert generic_streak == [
        {
            "type": "backup_failure_streak",
            "jobId": fourth.run_id,
            "status": "escalated",
            "timestamp": format_timestamp(dt.datetime.fromtimestamp(patina.record(fourth).end_time, tz=dt.UTC)),
            "database": "groveauth",
            "consecutiveFailures": 3,
            "threshold": 3,
            "lastSuccess": {"timestamp": last_at, "day": DAYS[0]},
            "error": f"no SQLite database at {patina.auth}: check the path",
        }
    ]

    patina.tick()  # no repeat of anything
    assert len(discord.requests) == 5
    patina.night(DAYS[4], auth_ok=False)
    patina.tick()
    assert [m["content"] for m in streaks(discord)][-1] == "@here Patina: groveauth failed 4 backups in a row"

    # A good night breaks the streak: the next failure is the first again.
    assert patina.night(DAYS[5], auth_ok=True).success
    patina.night(DAYS[6], auth_ok=False)
    patina.tick()
    assert len(streaks(discord)) == 2 and len(discord.accepted) == 8  # 6 failure embeds + 2 escalations


def failing_checks() -> list[dg.AssetChecksDefinition]:
    scout = dg.AssetKey(["dumps", "scout_db"])

    @dg.asset_check(asset=scout, name="restore_stub")
    def restore_stub() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description="restored 0 of 90 rows",
            metadata={"rows_expected": 90, "rows_restored": 0},
        )

    @dg.asset_check(asset=scout, name="drift_stub")
    def drift_stub() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="schema changed: table audit_log added",
            metadata={"added": "audit_log"},
        )

    @dg.asset_check(asset=scout, name="fine_stub")
    def fine_stub() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    return [restore_stub, drift_stub, fine_stub]


@pytest.mark.parametrize("warnings", [False, True])
def test_failed_checks_alert_once_each_warnings_by_setting(tmp_path, instance, hooks, warnings):
    discord, generic = hooks
    patina = Patina(tmp_path, instance, dg.Definitions(asset_checks=failing_checks()), warn_on_check_warnings=warnings)
    patina.start()
    result = patina.night(DAYS[0], auth_ok=True)
    assert result.success and len(result.get_asset_check_evaluations()) == 3
    patina.tick(RUN_ALERTS_SENSOR)
    patina.tick(CHECK_ALERTS_SENSOR)
    patina.tick(CHECK_ALERTS_SENSOR)

    finished = format_timestamp(dt.datetime.fromtimestamp(patina.record(result).end_time, tz=dt.UTC))
    titles = [m["embeds"][0]["title"] for m in discord.accepted]
    assert titles == ["❌ Patina check failed: restore_stub"] + (
        ["⚠️ Patina check warning: drift_stub"] if warnings else []
    )
    error = discord.accepted[0]["embeds"][0]
    assert error["color"] == 0xEF4444 and error["description"] == "restored 0 of 90 rows"
    assert fields(error) == {
        "Database": "scout-db",
        "Check": "restore_stub",
        "Severity": "ERROR",
        "Day": DAYS[0],
        "rows_expected": "90",
        "rows_restored": "0",
    }
    assert error["footer"] == {"text": f"Job ID: {result.run_id}"} and error["timestamp"] == finished
    assert generic.accepted[0] == {
        "type": "check_failed",
        "jobId": result.run_id,
        "status": "error",
        "timestamp": finished,
        "check": {
            "name": "restore_stub",
            "severity": "ERROR",
            "database": "scout-db",
            "day": DAYS[0],
            "asset": "dumps/scout_db",
            "description": "restored 0 of 90 rows",
            "metadata": {"rows_expected": "90", "rows_restored": "0"},
        },
    }
    if warnings:
        assert generic.accepted[1]["status"] == "warning" and generic.accepted[1]["check"]["metadata"] == {
            "added": "audit_log"
        }
    assert len(generic.requests) == len(discord.requests) == (2 if warnings else 1)


def test_a_cancelled_night_is_reported_as_cancelled(tmp_path, instance, hooks):
    """Run monitoring cancels a nightly run that passes dagster/max_runtime: that must not go unheard."""
    discord, generic = hooks
    patina = Patina(tmp_path, instance)
    patina.start()
    run = instance.create_run_for_job(patina.defs.resolve_job_def(NIGHTLY_JOB), tags={"dagster/partition": DAYS[0]})
    instance.report_run_canceled(run, message="exceeded dagster/max_runtime")
    patina.tick()
    (embed,) = discord.accepted[0]["embeds"]
    assert embed["title"] == "🛑 Patina Backup Canceled" and embed["color"] == 0xEF4444
    assert fields(embed)["Databases"] == "0/2 successful"
    assert fields(embed)["Failed"] == (
        "**groveauth**: canceled: exceeded dagster/max_runtime\n**scout-db**: canceled: exceeded dagster/max_runtime"
    )
    (payload,) = generic.accepted
    assert (payload["type"], payload["status"], payload["canceled"]) == ("backup_failed", "failure", True)
    patina.tick()
    assert len(discord.requests) == 1


def test_a_blocking_check_that_fails_makes_the_database_count_as_failed(tmp_path, instance, hooks):
    discord, generic = hooks

    @dg.asset_check(asset=dg.AssetKey(["dumps", "scout_db"]), name="restore_stub", blocking=True)
    def restore_stub() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, description="restored 0 of 90 rows")

    patina = Patina(tmp_path, instance, dg.Definitions(asset_checks=[restore_stub]))
    patina.start()
    result = patina.night(DAYS[0], auth_ok=True)
    assert not result.success and len(result.get_asset_materialization_events()) == 2  # both dumps stored
    patina.tick()
    (embed,) = discord.accepted[0]["embeds"]
    assert embed["title"] == "⚠️ Patina Backup Partially Failed"
    assert fields(embed)["Databases"] == "1/2 successful"
    assert fields(embed)["Total Size"] == human_bytes(patina.stored_bytes(DAYS[0])["groveauth"])
    assert fields(embed)["Failed"] == "**scout-db**: check restore_stub failed: restored 0 of 90 rows"
    (payload,) = generic.accepted
    assert payload["failures"] == [
        {"database": "scout-db", "error": "check restore_stub failed: restored 0 of 90 rows"}
    ]


def test_a_webhook_answering_500_then_200_gets_the_message_once(tmp_path, instance, hooks):
    discord, generic = hooks
    patina = Patina(tmp_path, instance)
    patina.start()
    discord.answer(500, 500)  # both attempts of the first tick
    result = patina.night(DAYS[0], auth_ok=False)
    first = patina.tick()
    assert discord.accepted == [] and [r.status for r in discord.requests] == [500, 500]
    assert len(generic.accepted) == 1  # the other webhook is not held up
    cursor = json.loads(first.cursor)
    (waiting,) = cursor["outbox"]
    assert waiting["destination"] == "discord" and waiting["tries"] == 1 and waiting["last_error"] == "HTTP 500"
    assert "1 waiting for a later tick (discord ($PATINA_DISCORD_WEBHOOK): HTTP 500)" in first.skip_message

    patina.tick()
    patina.tick()
    assert [r.status for r in discord.requests] == [500, 500, 204]
    (message,) = discord.accepted
    assert message["embeds"][0]["footer"] == {"text": f"Job ID: {result.run_id}"}
    assert message == waiting["body"]
    assert json.loads(patina.cursors[RUN_ALERTS_SENSOR])["outbox"] == [] and len(generic.requests) == 1


def test_a_dead_webhook_never_fails_a_backup(tmp_path, instance, monkeypatch):
    monkeypatch.setenv("PATINA_DISCORD_WEBHOOK", closed_port_url())
    monkeypatch.delenv("PATINA_WEBHOOK_URL", raising=False)
    patina = Patina(tmp_path, instance, notify_on_success=True)
    patina.start()
    assert patina.night(DAYS[0], auth_ok=True).success
    tick = patina.tick()  # does not raise
    (waiting,) = json.loads(tick.cursor)["outbox"]
    assert waiting["last_error"] == "could not connect (ConnectError)"
    assert waiting["body"]["embeds"][0]["title"] == "✅ Patina Backup Completed"


def test_success_messages_are_off_by_default_and_complete_when_on(tmp_path, instance, hooks):
    discord, generic = hooks
    (tmp_path / "quiet").mkdir()
    (tmp_path / "loud").mkdir()
    quiet = Patina(tmp_path / "quiet", instance)
    quiet.start()
    assert quiet.night(DAYS[0], auth_ok=True).success
    quiet.tick()
    assert discord.requests == [] and generic.requests == []

    loud = Patina(tmp_path / "loud", instance, notify_on_success=True)
    loud.start()
    result = loud.night(DAYS[1], auth_ok=True)
    loud.tick()
    sizes = loud.stored_bytes(DAYS[1])
    (embed,) = discord.accepted[0]["embeds"]
    assert embed["title"] == "✅ Patina Backup Completed" and embed["color"] == 0x22C55E
    assert fields(embed)["Databases"] == "2/2 successful"
    assert fields(embed)["Total Size"] == human_bytes(sizes["groveauth"] + sizes["scout-db"])
    (payload,) = generic.accepted
    assert (
        payload["type"] == "backup_completed" and payload["status"] == "success" and payload["jobId"] == result.run_id
    )
    assert payload["details"] == [
        {"database": "groveauth", "status": "success", "size": human_bytes(sizes["groveauth"])},
        {"database": "scout-db", "status": "success", "size": human_bytes(sizes["scout-db"])},
    ]


def test_weekly_archive_failures_alert_and_other_jobs_do_not(tmp_path, instance, hooks):
    discord, generic = hooks

    @dg.asset(key=["archives", "weekly"])
    def weekly_archive() -> None:
        raise dg.Failure("archive of week 2026-W10 is missing 2 days")

    @dg.op
    def unrelated() -> None:
        raise dg.Failure("not a backup")

    extra = dg.Definitions(
        assets=[weekly_archive],
        jobs=[
            dg.define_asset_job(WEEKLY_JOB, [weekly_archive]),
            dg.JobDefinition(graph_def=dg.GraphDefinition("ad_hoc", node_defs=[unrelated])),
        ],
    )
    patina = Patina(tmp_path, instance, extra)
    patina.start()
    weekly = patina.defs.resolve_job_def(WEEKLY_JOB).execute_in_process(instance=instance, raise_on_error=False)
    other = patina.defs.resolve_job_def("ad_hoc").execute_in_process(instance=instance, raise_on_error=False)
    assert not weekly.success and not other.success
    patina.tick()
    (message,) = discord.accepted
    embed = message["embeds"][0]
    assert embed["title"] == "❌ Patina Weekly Archive Failed"
    assert fields(embed)["Archives"] == "0/1 successful"
    assert fields(embed)["Failed"] == "**archives/weekly**: archive of week 2026-W10 is missing 2 days"
    assert [p["job"] for p in generic.accepted] == [WEEKLY_JOB]


def test_redacted_messages_leave_out_names_sizes_and_errors(tmp_path, instance, hooks):
    discord, generic = hooks
    patina = Patina(
        tmp_path, instance, dg.Definitions(asset_checks=failing_checks()), redact_names=True, notify_on_success=True
    )
    patina.start()
    patina.night(DAYS[0], auth_ok=True)
    for day in DAYS[1:4]:
        patina.night(day, auth_ok=False)
    patina.tick(RUN_ALERTS_SENSOR)
    patina.tick(CHECK_ALERTS_SENSOR)

    bodies = discord.accepted + generic.accepted
    # success + 3 failures + 1 escalation, and 4 nights x 2 failed checks on scout-db: to each webhook
    assert len(discord.accepted) == len(generic.accepted) == 5 + 8
    sizes = [str(n) for day in DAYS[:4] for n in patina.stored_bytes(day).values()]
    sizes += [human_bytes(n) for day in DAYS[:4] for n in patina.stored_bytes(day).values()]
    secrets = ["groveauth", "scout", "no SQLite", str(tmp_path), "rows_expected", "audit_log", " KB", ' B"', *sizes]
    for body in bodies:
        text = json.dumps(body, ensure_ascii=False)
        assert not [s for s in secrets if s in text], text
    escalation = next(m for m in discord.accepted if "content" in m)
    assert escalation["content"] == "@here Patina: a database failed 3 backups in a row"
    assert fields(escalation["embeds"][0])["Database"] == "database 1 of 2"
    failure = next(p for p in generic.accepted if p["type"] == "backup_failed")
    assert failure["failures"] == [{"database": "database 1 of 2"}] and "totalSize" not in failure["summary"]


def test_the_webhook_url_is_in_no_log_cursor_or_tick_message(tmp_path, instance, monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # Python logging, httpx included
    caplog.set_level(logging.INFO, logger="httpx")  # whatever level an earlier in-process `patina` command gave it
    with WebhookServer() as discord:
        monkeypatch.setenv("PATINA_DISCORD_WEBHOOK", discord.url)
        refused = closed_port_url()
        monkeypatch.setenv("PATINA_WEBHOOK_URL", refused)
        patina = Patina(tmp_path, instance, dg.Definitions(asset_checks=failing_checks()))
        patina.start()
        discord.answer(500, 500, 404)
        patina.night(DAYS[0], auth_ok=False)
        for _ in range(3):
            patina.tick(RUN_ALERTS_SENSOR)
            patina.tick(CHECK_ALERTS_SENSOR)
        assert [r.status for r in discord.requests] == [500, 500, 404, 204, 204, 204]
        assert len(discord.accepted) == 3  # the run failure and the two failed checks, after the outage

    console = (
        capfd.readouterr().err
    )  # the sensors' own log lines go to the console (and, in the daemon, the tick's log)
    assert "2 waiting for a later tick (discord ($PATINA_DISCORD_WEBHOOK): HTTP 500; " in console
    assert "webhook ($PATINA_WEBHOOK_URL): could not connect (ConnectError))" in console
    assert "discord ($PATINA_DISCORD_WEBHOOK): HTTP 404: the webhook URL is wrong or revoked" in console
    assert "HTTP Request: POST <webhook URL hidden>" in caplog.text  # httpx's request lines, URL hidden
    seen = "\n".join([console, caplog.text, *patina.skips, *(c or "" for c in patina.cursors.values())])
    for secret in (SECRET_TOKEN, discord.url, refused, refused.split("/api")[0], "/api/webhooks"):
        assert secret not in seen


def test_every_run_that_materializes_a_patina_asset_is_alerted_with_the_underlying_cause(tmp_path, instance, hooks):
    """Backfills, UI / script materializations (in-process, no code location) and on-demand runs, not only the
    nightly job; a retried step's message is its error, not Dagster's "Exceeded max_retries of 2"."""

    discord, generic = hooks
    patina = Patina(tmp_path, instance)
    patina.start()
    patina.auth.write_bytes(b"not a database, " * 400)  # SourceError: retried (dump.retries: 2), then failed
    cause = f"SourceError: cannot read {patina.auth} as a SQLite database: file is not a database"
    groveauth = next(a for a in patina.defs.assets if a.key == dg.AssetKey(["dumps", "groveauth"]))
    resources_ = resources.resources(patina.config)
    adhoc = dg.materialize(
        [groveauth], partition_key=DAYS[0], instance=instance, resources=resources_, raise_on_error=False
    )
    backfill = dg.materialize(
        [groveauth],
        partition_key=DAYS[1],
        instance=instance,
        resources=resources_,
        raise_on_error=False,
        tags={"dagster/backfill": "bf-1"},
    )
    on_demand = build_on_demand_job(patina.config).execute_in_process(
        instance=instance, raise_on_error=False, resources=resources_, op_selection=["backup_groveauth"]
    )
    assert not any(r.success for r in (adhoc, backfill, on_demand))
    failure = next(e for e in adhoc.all_events if e.is_step_failure)
    assert "Exceeded max_retries" in failure.step_failure_data.error.message  # what Dagster itself says

    patina.tick()
    assert [p["jobId"] for p in generic.accepted] == [adhoc.run_id, backfill.run_id, on_demand.run_id]
    assert [p["failures"] for p in generic.accepted] == [[{"database": "groveauth", "error": cause}]] * 3
    titles = [m["embeds"][0]["title"] for m in discord.accepted]
    assert titles == [
        "❌ Patina Materialization Failed",
        "❌ Patina Backfill Failed",
        "❌ Patina On-demand Backup Failed",
    ]
    assert fields(discord.accepted[0]["embeds"][0])["Failed"] == f"**groveauth**: {cause}"


def test_a_webhook_down_for_three_nights_gets_every_message_once_when_it_is_back(tmp_path, instance, hooks):
    discord, generic = hooks
    discord.default = generic.default = 503  # both down
    patina = Patina(tmp_path, instance)
    patina.start()
    runs = []
    for day in DAYS[:3]:
        runs.append(patina.night(day, auth_ok=False))
        for _ in range(3):  # the daemon keeps ticking through the night
            patina.tick()
    assert discord.accepted == generic.accepted == [] and len(generic.requests) > 3
    waiting = json.loads(patina.cursors[RUN_ALERTS_SENSOR])["outbox"]
    assert len(waiting) == 2 * 4  # three failures and the escalation, for each webhook

    discord.default, generic.default = 204, 200
    patina.tick()
    patina.tick()
    assert [(p["type"], p["jobId"]) for p in generic.accepted] == [
        ("backup_failed", runs[0].run_id),
        ("backup_failed", runs[1].run_id),
        ("backup_failed", runs[2].run_id),
        ("backup_failure_streak", runs[2].run_id),
    ]
    assert [m["embeds"][0]["footer"]["text"] for m in discord.accepted] == [
        f"Job ID: {r.run_id}" for r in runs + runs[2:]
    ]
    assert json.loads(patina.cursors[RUN_ALERTS_SENSOR])["outbox"] == []
    patina.tick()
    assert len(discord.accepted) == len(generic.accepted) == 4
