"""Alert messages and their delivery, without Dagster: the spec's Discord embed and JSON payloads field by
field, redaction, and httpx delivery against a real HTTP server on loopback (500s, 429s, refusals,
timeouts), the outbox that keeps what could not be delivered, and the webhook URL kept out of everything."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import replace as dataclasses_replace

import pytest
from support.webhook_server import SECRET_TOKEN, WebhookServer, closed_port_url

from patina_assets.config import AlertsConfig
from patina_assets.notifications import (
    AMBER,
    CRITICAL,
    DARK_RED,
    DISCORD,
    EMAIL,
    ERROR,
    FLEET_BACKED_UP,
    FLEET_CHECK_FAILED,
    GREEN,
    INFO,
    RED,
    WARNING,
    WEBHOOK,
    CheckFailure,
    DatabaseOutcome,
    DeliveryPolicy,
    FailureStreak,
    FleetSummary,
    HeldFailures,
    MissedNight,
    Outbox,
    PendingMessage,
    RunSummary,
    StaleBackup,
    deliver,
    discord_message,
    email_message,
    fleet_cause,
    format_duration,
    pending,
    render,
    severity,
    webhook_payload,
    webhook_urls,
)
from patina_assets.units import human_bytes


@pytest.fixture
def webhook():
    with WebhookServer() as server:
        yield server


NO_WAIT = DeliveryPolicy(timeout_seconds=2.0, attempts=3, backoff_seconds=0.0)

# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------

FINISHED = dt.datetime(2026, 3, 10, 3, 1, 30, tzinfo=dt.UTC)


def partial_run() -> RunSummary:
    return RunSummary(
        job_id="550e8400-e29b-41d4-a716-446655440000",
        title="Backup",
        job_name="nightly_backup",
        outcomes=(
            DatabaseOutcome("groveauth", "database 1 of 3", True, size_bytes=212_000),
            DatabaseOutcome("scout-db", "database 2 of 3", False, error="Timeout after 30s\nTraceback ..."),
            DatabaseOutcome("grove-engine-db", "database 3 of 3", True, size_bytes=1_888_000),
        ),
        finished_at=FINISHED,
        duration_seconds=52.04,
        partition="2026-03-09",
    )


def test_sizes_and_durations_read_like_the_spec():
    assert [human_bytes(n) for n in (0, 512, 45_000, 212_000, 2_100_000, 1_800_000, 3_400_000_000)] == [
        "0 B",
        "512 B",
        "45 KB",
        "212 KB",
        "2.1 MB",
        "1.8 MB",
        "3.4 GB",
    ]
    assert [format_duration(s) for s in (None, 45.0, 52.04, 725, 3720)] == [
        "unknown",
        "45.0s",
        "52.0s",
        "12m 05s",
        "1h 02m",
    ]


def test_discord_embed_of_a_partly_failed_night_is_the_spec_format():
    assert discord_message(partial_run()) == {
        "embeds": [
            {
                "title": "⚠️ Patina Backup Partially Failed",
                "color": 0xEF4444,
                "fields": [
                    {"name": "Databases", "value": "2/3 successful", "inline": True},
                    {"name": "Total Size", "value": "2.1 MB", "inline": True},
                    {"name": "Duration", "value": "52.0s", "inline": True},
                    {"name": "Day", "value": "2026-03-09", "inline": True},
                    {"name": "Failed", "value": "**scout-db**: Timeout after 30s", "inline": False},
                ],
                "footer": {"text": "Job ID: 550e8400-e29b-41d4-a716-446655440000"},
                "timestamp": "2026-03-10T03:01:30Z",
            }
        ]
    }


def test_titles_and_colors_follow_the_outcome():
    ok = RunSummary(
        "j", "Backup", "nightly_backup", (DatabaseOutcome("a", "database 1 of 1", True, 10),), FINISHED, 1.0
    )
    none = RunSummary(
        "j",
        "Weekly Archive",
        "weekly_archive",
        (DatabaseOutcome("a", "database 1 of 1", False, error="x"),),
        FINISHED,
        1.0,
        will_retry=True,
    )
    assert ok.status == "success" and none.status == "failure" and partial_run().status == "partial_failure"
    ok_embed, none_embed = discord_message(ok)["embeds"][0], discord_message(none)["embeds"][0]
    assert (ok_embed["title"], ok_embed["color"]) == ("✅ Patina Backup Completed", GREEN)
    assert (none_embed["title"], none_embed["color"]) == ("❌ Patina Weekly Archive Failed", RED)
    assert {"name": "Retry", "value": "Dagster re-executes this run by itself", "inline": False} in none_embed["fields"]
    # The run failed although every database was backed up (a step outside them broke): never "Completed".
    odd = RunSummary(
        "j",
        "Backup",
        "nightly_backup",
        ok.outcomes,
        FINISHED,
        1.0,
        run_failed=True,
        run_error="DagsterExecutionInterruptedError: interrupted",
    )
    odd_embed = discord_message(odd)["embeds"][0]
    assert odd.status == "failure" and odd_embed["title"] == "❌ Patina Backup Failed"
    assert fields(odd_embed)["Error"] == "DagsterExecutionInterruptedError: interrupted"
    assert webhook_payload(odd)["error"] == "DagsterExecutionInterruptedError: interrupted"
    assert "error" not in webhook_payload(odd, redact=True)


def fields(embed: dict) -> dict[str, str]:
    return {f["name"]: f["value"] for f in embed["fields"]}


def test_json_webhook_payloads_are_the_specs():
    assert webhook_payload(partial_run()) == {
        "type": "backup_failed",
        "jobId": "550e8400-e29b-41d4-a716-446655440000",
        "job": "nightly_backup",
        "status": "partial_failure",
        "timestamp": "2026-03-10T03:01:30Z",
        "day": "2026-03-09",
        "summary": {"successful": 2, "failed": 1, "totalSize": "2.1 MB", "duration": "52.0s"},
        "failures": [{"database": "scout-db", "error": "Timeout after 30s"}],
        "canceled": False,
        "willRetry": False,
    }
    ok = RunSummary(
        "j1",
        "Backup",
        "nightly_backup",
        (
            DatabaseOutcome("groveauth", "database 1 of 2", True, 212_000),
            DatabaseOutcome("scout-db", "database 2 of 2", True, 364_000),
        ),
        FINISHED,
        45.0,
        "2026-03-09",
    )
    assert webhook_payload(ok) == {
        "type": "backup_completed",
        "jobId": "j1",
        "job": "nightly_backup",
        "status": "success",
        "timestamp": "2026-03-10T03:01:30Z",
        "day": "2026-03-09",
        "summary": {"successful": 2, "failed": 0, "totalSize": "576 KB", "duration": "45.0s"},
        "details": [
            {"database": "groveauth", "status": "success", "size": "212 KB"},
            {"database": "scout-db", "status": "success", "size": "364 KB"},
        ],
    }


def check_failure(severity="ERROR") -> CheckFailure:
    return CheckFailure(
        job_id="r1",
        check_name="size_anomaly",
        severity=severity,
        database="scout-db",
        label="database 2 of 3",
        asset="dumps/scout_db",
        finished_at=FINISHED,
        partition="2026-03-09",
        description="scout-db shrank to 12 KB: possible data loss",
        metadata=(("bytes", "12000"), ("average_bytes", "364000")),
    )


def test_check_messages():
    embed = discord_message(check_failure())["embeds"][0]
    assert embed == {
        "title": "❌ Patina check failed: size_anomaly",
        "color": RED,
        "description": "scout-db shrank to 12 KB: possible data loss",
        "fields": [
            {"name": "Database", "value": "scout-db", "inline": True},
            {"name": "Check", "value": "size_anomaly", "inline": True},
            {"name": "Severity", "value": "ERROR", "inline": True},
            {"name": "Day", "value": "2026-03-09", "inline": True},
            {"name": "bytes", "value": "12000", "inline": True},
            {"name": "average_bytes", "value": "364000", "inline": True},
        ],
        "footer": {"text": "Job ID: r1"},
        "timestamp": "2026-03-10T03:01:30Z",
    }
    warn = discord_message(check_failure("WARN"))["embeds"][0]
    assert (warn["title"], warn["color"]) == ("⚠️ Patina check warning: size_anomaly", AMBER)
    assert webhook_payload(check_failure("WARN")) == {
        "type": "check_failed",
        "jobId": "r1",
        "status": "warning",
        "timestamp": "2026-03-10T03:01:30Z",
        "check": {
            "name": "size_anomaly",
            "severity": "WARN",
            "database": "scout-db",
            "day": "2026-03-09",
            "asset": "dumps/scout_db",
            "description": "scout-db shrank to 12 KB: possible data loss",
            "metadata": {"bytes": "12000", "average_bytes": "364000"},
        },
    }


def streak() -> FailureStreak:
    return FailureStreak(
        job_id="r3",
        database="groveauth",
        label="database 1 of 3",
        failures=3,
        limit=3,
        finished_at=FINISHED,
        last_success_at=dt.datetime(2026, 3, 7, 3, 2, tzinfo=dt.UTC),
        last_success_day="2026-03-06",
        error="no SQLite database at /srv/auth.sqlite",
    )


def test_the_escalation_is_louder():
    message = discord_message(streak())
    assert message["content"] == "@here Patina: groveauth failed 3 backups in a row"
    assert message["allowed_mentions"] == {"parse": ["everyone"]}
    embed = message["embeds"][0]
    assert embed["title"] == "🚨 Patina: groveauth failed 3 backups in a row" and embed["color"] == DARK_RED
    assert {f["name"]: f["value"] for f in embed["fields"]} == {
        "Database": "groveauth",
        "Consecutive failures": "3",
        "Escalates at": "3",
        "Last successful backup": "backup of 2026-03-06, made 2026-03-07T03:02:00Z",
        "Latest error": "no SQLite database at /srv/auth.sqlite",
    }
    assert webhook_payload(streak()) == {
        "type": "backup_failure_streak",
        "jobId": "r3",
        "status": "escalated",
        "timestamp": "2026-03-10T03:01:30Z",
        "database": "groveauth",
        "consecutiveFailures": 3,
        "threshold": 3,
        "lastSuccess": {"timestamp": "2026-03-07T03:02:00Z", "day": "2026-03-06"},
        "error": "no SQLite database at /srv/auth.sqlite",
    }


SENSITIVE = (
    "groveauth",
    "scout-db",
    "grove-engine-db",
    "scout_db",
    "KB",
    "MB",
    "212",
    "12000",
    "364000",
    "Timeout",
    "shrank",
    "/srv/",
)


def test_redaction_leaves_out_names_sizes_and_errors():
    for alert in (partial_run(), check_failure(), check_failure("WARN"), streak()):
        for destination in (DISCORD, WEBHOOK):
            text = json.dumps(render(alert, destination, redact=True), ensure_ascii=False)
            leaked = [word for word in SENSITIVE if word in text]
            assert not leaked, f"{type(alert).__name__} to {destination} leaks {leaked}: {text}"
    redacted = discord_message(partial_run(), redact=True)["embeds"][0]
    assert {f["name"]: f["value"] for f in redacted["fields"]} == {
        "Databases": "2/3 successful",
        "Duration": "52.0s",
        "Day": "2026-03-09",
        "Failed": "database 2 of 3",
    }
    assert webhook_payload(partial_run(), redact=True)["failures"] == [{"database": "database 2 of 3"}]
    assert discord_message(streak(), redact=True)["content"] == "@here Patina: a database failed 3 backups in a row"


def test_webhook_urls_come_from_the_named_variables():
    settings = AlertsConfig(discord_webhook_env="MY_DISCORD", webhook_env="MY_HOOK")
    assert webhook_urls(settings, {"MY_DISCORD": "https://d/x", "PATINA_WEBHOOK_URL": "https://ignored"}) == {
        DISCORD: "https://d/x"
    }
    assert webhook_urls(settings, {"MY_DISCORD": "", "MY_HOOK": "https://h"}) == {WEBHOOK: "https://h"}
    assert webhook_urls(AlertsConfig(discord_webhook_env=None, webhook_env=None), {"PATINA_DISCORD_WEBHOOK": "x"}) == {}


# --------------------------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------------------------


def test_deliver_posts_json_and_retries_a_500_with_backoff(webhook):
    webhook.answer(500, 502)
    waits = []
    result = deliver(
        webhook.url, {"content": "hello"}, DeliveryPolicy(attempts=3, backoff_seconds=0.5), sleep=waits.append
    )
    assert result.delivered and result.attempts == 3 and result.status == 204
    assert waits == [0.5, 1.0]  # exponential
    assert [r.status for r in webhook.requests] == [500, 502, 204]
    assert webhook.accepted == [{"content": "hello"}]
    first = webhook.requests[0]
    assert (
        first.path == f"/api/webhooks/1234567890/{SECRET_TOKEN}" and first.headers["Content-Type"] == "application/json"
    )


def test_deliver_gives_up_without_raising(webhook):
    webhook.default = 503
    result = deliver(webhook.url, {"content": "x"}, NO_WAIT)
    assert not result.delivered and result.retry_later and result.attempts == 3 and result.reason == "HTTP 503"


def test_deliver_honors_retry_after_and_stops_at_a_long_one(webhook):
    webhook.answer(429, **{"Retry-After": "0.25"})
    waits = []
    assert deliver(webhook.url, {"content": "x"}, NO_WAIT, sleep=waits.append).delivered and waits == [0.25]
    webhook.answer(429, **{"Retry-After": "600"})
    result = deliver(webhook.url, {"content": "x"}, NO_WAIT, sleep=waits.append)
    assert not result.delivered and result.retry_later and result.attempts == 1 and "600" in result.reason


def test_a_refused_message_is_not_retried_and_a_wrong_url_waits(webhook):
    webhook.answer(400)
    rejected = deliver(webhook.url, {"content": "x"}, NO_WAIT)
    assert rejected.rejected and not rejected.retry_later and rejected.attempts == 1
    webhook.answer(404)
    missing = deliver(webhook.url, {"content": "x"}, NO_WAIT)
    assert missing.retry_later and missing.attempts == 1 and "wrong or revoked" in missing.reason
    assert len(webhook.requests) == 2


def test_connection_refused_and_timeouts_are_reported_not_raised():
    refused = deliver(closed_port_url(), {"content": "x"}, NO_WAIT)
    assert not refused.delivered and refused.retry_later and refused.attempts == 3
    assert refused.reason == "could not connect (ConnectError)"
    with WebhookServer() as silent:
        silent.hang()
        timed_out = deliver(silent.url, {"content": "x"}, DeliveryPolicy(timeout_seconds=0.2, attempts=1))
    assert not timed_out.delivered and timed_out.reason == "timed out after 0.2s"


def test_the_url_is_in_no_log_line_or_result(webhook, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # the CLI, run in-process by other tests, quiets httpx
    webhook.answer(500)
    results = [deliver(webhook.url, {"content": "x"}, NO_WAIT), deliver(closed_port_url(), {"content": "x"}, NO_WAIT)]
    webhook.answer(400)
    results.append(deliver(webhook.url, {"content": "x"}, NO_WAIT))
    assert "<webhook URL hidden>" in caplog.text  # httpx did log its request line, with the URL hidden
    assert SECRET_TOKEN not in caplog.text and "api/webhooks" not in caplog.text
    assert all(SECRET_TOKEN not in repr(r) for r in results)


# --------------------------------------------------------------------------------------------
# Outbox
# --------------------------------------------------------------------------------------------


def message(i: int, destination: str = DISCORD, created_at: float = 1000.0) -> PendingMessage:
    return PendingMessage(
        id=f"m{i}@{destination}", destination=destination, body={"content": f"m{i}"}, created_at=created_at
    )


def send_once(url, body):
    return deliver(url, body, DeliveryPolicy(timeout_seconds=2.0, attempts=1, backoff_seconds=0))


def test_outbox_keeps_what_a_down_webhook_missed_and_delivers_it_once(webhook):
    with WebhookServer() as other:
        outbox = Outbox()
        for m in (message(1), message(2), message(1, WEBHOOK)):
            assert outbox.add(m)
        assert not outbox.add(message(1))  # the same event is queued once
        webhook.answer(500)
        urls = {DISCORD: webhook.url, WEBHOOK: other.url}
        first = outbox.flush(urls, now=1000.0, send=send_once)
        # Discord failed on m1 and was not tried again for m2 in the same flush; the other webhook got its message.
        assert first.delivered == ["m1@webhook"] and first.waiting == ["m1@discord", "m2@discord"]
        assert first.failing == {DISCORD: "HTTP 500"} and len(webhook.requests) == 1
        assert outbox.messages[0].tries == 1 and outbox.messages[0].last_error == "HTTP 500"

        # Through the cursor and back, then the webhook is up again.
        outbox = Outbox.from_json(json.loads(json.dumps(outbox.to_json())))
        second = outbox.flush(urls, now=1030.0, send=send_once)
        assert second.delivered == ["m1@discord", "m2@discord"] and len(outbox) == 0
        assert webhook.accepted == [{"content": "m1"}, {"content": "m2"}]
        assert outbox.flush(urls, now=1060.0, send=send_once).delivered == [] and len(webhook.requests) == 3
        assert other.accepted == [{"content": "m1"}]


def test_outbox_is_bounded_in_size_and_age_and_waits_for_a_missing_url(webhook):
    outbox = Outbox(limit=3, max_age_seconds=3600)
    for i in range(5):
        outbox.add(message(i, created_at=1000.0 + i))
    report = outbox.flush({}, now=1010.0, send=send_once, missing=lambda d: f"$X for {d} is not set")
    assert report.failing == {DISCORD: "$X for discord is not set"} and report.delivered == []
    assert [m.id for m in outbox.messages] == ["m2@discord", "m3@discord", "m4@discord"]
    assert [why for _, why in report.dropped] == ["outbox full (3 messages)"] * 2
    expired = outbox.flush({}, now=1002.0 + 3601, send=send_once)
    assert [mid for mid, _ in expired.dropped] == ["m2@discord"] and len(outbox) == 2
    assert len(webhook.requests) == 0


def test_outbox_stops_at_its_send_budget(webhook):
    outbox = Outbox()
    for i in range(4):
        outbox.add(message(i))
    report = outbox.flush({DISCORD: webhook.url}, now=1000.0, max_sends=3, send=send_once)
    assert report.delivered == ["m0@discord", "m1@discord", "m2@discord"] and report.waiting == ["m3@discord"]
    assert outbox.messages[0].tries == 0  # not tried, not counted


def test_a_full_outbox_drops_the_least_severe_message_first():

    outbox = Outbox(limit=3)
    ranks = [
        ("failure-old", ERROR),
        ("success-1", INFO),
        ("warning", WARNING),
        ("success-2", INFO),
        ("escalation", CRITICAL),
    ]
    for i, (name, rank) in enumerate(ranks):
        outbox.add(PendingMessage(id=name, destination=DISCORD, body={}, created_at=1000.0 + i, severity=rank))
    report = outbox.flush({}, now=1010.0, send=send_once)
    # Over the bound by two: both success notes go, oldest first; failures and the escalation stay, in order.
    assert [mid for mid, _ in report.dropped] == ["success-1", "success-2"]
    assert [m.id for m in outbox.messages] == ["failure-old", "warning", "escalation"]
    outbox.add(PendingMessage(id="failure-new", destination=DISCORD, body={}, created_at=1020.0, severity=ERROR))
    assert [mid for mid, _ in outbox.flush({}, now=1021.0, send=send_once).dropped] == ["warning"]
    # The rank survives the cursor.
    assert [m.severity for m in Outbox.from_json(json.loads(json.dumps(outbox.to_json()))).messages] == [
        ERROR,
        CRITICAL,
        ERROR,
    ]


def test_each_alert_has_a_severity_for_the_outbox():

    success = RunSummary(
        job_id="r",
        title="Backup",
        job_name="nightly_backup",
        finished_at=FINISHED,
        outcomes=(DatabaseOutcome("groveauth", "database 1 of 1", True, size_bytes=1),),
    )
    assert severity(success) == INFO and severity(partial_run()) == ERROR
    check = CheckFailure(
        job_id="r",
        check_name="schema_drift",
        severity="WARN",
        database="groveauth",
        label="database 1 of 1",
        asset="dumps/groveauth",
        finished_at=FINISHED,
    )
    assert severity(check) == WARNING
    assert (
        severity(FailureStreak(job_id="r", database="groveauth", label="x", failures=3, limit=3, finished_at=FINISHED))
        == CRITICAL
    )
    assert [m.severity for m in pending("a", success, [DISCORD, WEBHOOK], redact=False, now=0.0)] == [INFO, INFO]


def test_stale_and_missed_messages_in_every_format_and_redacted():

    newest = FINISHED - dt.timedelta(days=8, hours=2)
    stale = StaleBackup(
        database="scout-db",
        label="database 2 of 3",
        level="error",
        threshold_days=8,
        checked_at=FINISHED,
        newest_day="2026-03-01",
        newest_at=newest,
    )
    (embed,) = discord_message(stale)["embeds"]
    assert embed["title"] == "🚨 Patina: no good backup of scout-db for 8 days" and embed["color"] == DARK_RED
    assert embed["fields"][1] == {
        "name": "Newest good backup",
        "inline": False,
        "value": "2026-03-01, data read 2026-03-02T01:01:30Z (8.1 days ago)",
    }
    assert embed["footer"] == {"text": "Patina freshness watch"}
    assert webhook_payload(stale) == {
        "type": "backup_stale",
        "status": "error",
        "timestamp": "2026-03-10T03:01:30Z",
        "database": "scout-db",
        "thresholdDays": 8,
        "newestGoodBackup": {"day": "2026-03-01", "capturedAt": "2026-03-02T01:01:30Z"},
    }
    redacted = json.dumps(
        [discord_message(stale, redact=True), webhook_payload(stale, redact=True), render(stale, EMAIL, redact=True)],
        ensure_ascii=False,
    )
    assert "scout" not in redacted and "database 2 of 3" in redacted
    mail = email_message(stale)
    assert mail["subject"] == "Patina: no good backup of scout-db for 8 days"
    assert "Newest good backup: 2026-03-01, data read 2026-03-02T01:01:30Z (8.1 days ago)" in mail["text"]

    missed = MissedNight(
        expected_day="2026-03-08", due_at=FINISHED - dt.timedelta(hours=12), checked_at=FINISHED, newest_at=newest
    )
    assert discord_message(missed)["embeds"][0]["title"] == "❌ Patina: the nightly backup of 2026-03-08 never ran"
    assert webhook_payload(missed)["type"] == "nightly_missed" and severity(missed) == 2
    resumed = dataclasses_replace(missed, recovered=True)
    assert webhook_payload(resumed)["type"] == "nightly_resumed" and severity(resumed) == 0
    assert severity(dataclasses_replace(stale, level="warn")) == 1 and severity(stale) == 3


def fleet_failure(**changes) -> FleetSummary:
    fields = dict(
        fleet="tenants",
        day="2026-03-09",
        cause="d1://acct/<database id>: the API refused the token (HTTP 401)",
        count=29,
        names=tuple(f"shop-{i:02d}" for i in range(29)),
        tenants=30,
        running=0,
        job_name="fleet_tenants_nightly",
        job_id="550e8400-e29b-41d4-a716-446655440000",
        finished_at=FINISHED,
    )
    return FleetSummary(**{**fields, **changes})


def test_a_fleet_failure_names_the_fleet_the_cause_the_count_and_a_few_tenants_redacted_none():
    embed = discord_message(fleet_failure())["embeds"][0]
    assert embed["title"] == "❌ Patina: 29 of 30 tenants of fleet tenants failed on 2026-03-09"
    shown = {f["name"]: f["value"] for f in embed["fields"]}
    assert shown["Failed"] == "29 of the 30 tenants with a run that night"
    assert shown["Tenants"] == "shop-00, shop-01, shop-02, shop-03, shop-04 and 24 more"
    assert shown["Cause"].endswith("refused the token (HTTP 401)")
    assert "dagster/partition/day=2026-03-09" in shown["All of them"] and "patina status" in shown["All of them"]
    assert severity(fleet_failure()) == ERROR and embed["color"] == RED
    escalated = fleet_failure(escalated=4, escalated_names=("shop-01", "shop-02"), limit=3, part=2, count_so_far=40)
    message = discord_message(escalated)
    assert message["content"] == "@here Patina: 29 more tenants of fleet tenants failed on 2026-03-09, the same way"
    assert severity(escalated) == CRITICAL
    assert {f["name"]: f["value"] for f in message["embeds"][0]["fields"]}["3+ failures in a row"] == (
        "4 of them: shop-01, shop-02 and 2 more"
    )
    assert "40 in all the same way (message 2)" in json.dumps(message)
    assert webhook_payload(fleet_failure())["summary"] == {"failed": 29, "tenants": 30, "notFinished": 0}
    assert email_message(fleet_failure())["subject"] == "Patina: 29 of 30 tenants of fleet tenants failed on 2026-03-09"
    for destination in (DISCORD, WEBHOOK, EMAIL):
        text = json.dumps(render(fleet_failure(), destination, redact=True), ensure_ascii=False)
        assert "shop-" not in text and "refused" not in text, text
        assert "29" in text and "tenants" in text


def test_a_fleet_cause_is_the_same_for_every_tenant_and_keeps_what_differs():
    def error(tenant, uuid):
        return f"d1://acct/{uuid}: the API refused the token (HTTP 401) for {tenant}\nTraceback ..."

    one = fleet_cause(error("shop-1", "5a5a5a5a-0000-4000-8000-000000000001"), "shop-1")
    assert one == "d1://acct/<database id>: the API refused the token (HTTP 401) for <tenant>"
    assert fleet_cause(error("shop-12", "5a5a5a5a-0000-4000-8000-00000000000c"), "shop-12") == one
    assert fleet_cause("HTTP 500 for shop-1", "shop-1") != fleet_cause("HTTP 401 for shop-1", "shop-1")
    assert fleet_cause("shop-10 is gone", "shop-1") == "shop-10 is gone"  # another name is not the tenant's
    # A check's result quotes what it measured: with its day, the day and the numbers go too.
    assert fleet_cause("shop-1 2026-03-09: 412 bytes of SQL is 8.5% of the average", "shop-1", day="2026-03-09") == (
        "<tenant> <day>: <n> bytes of SQL is <n>% of the average"
    )


def test_held_failures_group_by_fleet_night_and_cause_and_survive_the_cursor():
    held = HeldFailures()

    def add(tenant, cause="401", day="2026-03-09", now=100.0, **changes):
        fields = dict(fleet="tenants", job_name="j", run_id=f"run-{tenant}", finished_at=now, escalated=False)
        fields.update(changes, canceled=changes.get("canceled", False), now=now)
        return held.add(day=day, cause=cause, tenant=tenant, **fields)

    add("a")
    add("a", run_id="run-a-retry")  # its retry: still one tenant, both runs kept to be sent alone
    add("b", now=200.0, escalated=True)
    add("c", cause="404")
    add("d", day="2026-03-10")
    held = HeldFailures.from_json(json.loads(json.dumps(held.to_json())))
    [first, lone, other_night] = held.groups
    assert (first.tenants, first.runs, first.escalated, first.held_since) == (["a", "b"], [], ["b"], 100.0)
    assert (lone.tenants, lone.runs) == (["c"], ["run-c"])
    assert held.due(now=150.0, hold_seconds=600, settled=lambda g: g.day == "2026-03-10") == [other_night]
    assert held.due(now=700.0, hold_seconds=600, settled=lambda g: False) == [first, lone]
    assert held.groups == []
    assert held.count_sent(first, 700.0) == (1, 2)
    assert held.count_sent(first, 800.0) == (2, 4)  # a follow-up counts with the first


def test_a_fleet_check_failure_and_a_fleet_success_say_what_they_are_about_redacted_none():
    check = fleet_failure(
        kind=FLEET_CHECK_FAILED,
        check="size_anomaly",
        check_severity="WARN",
        asset="fleets/tenants",
        cause="<tenant> <day>: <n> bytes of SQL is <n>% of the average ...: possible corruption or runaway growth",
    )
    embed = discord_message(check)["embeds"][0]
    assert embed["title"] == "⚠️ Patina: 29 of 30 tenants of fleet tenants warned on check size_anomaly on 2026-03-09"
    assert (embed["color"], severity(check)) == (AMBER, WARNING)
    assert "fleets/tenants" in {f["name"]: f["value"] for f in embed["fields"]}["All of them"]
    payload = webhook_payload(check)
    assert (payload["type"], payload["status"], payload["check"]["name"]) == (
        "fleet_check_failed",
        "warning",
        "size_anomaly",
    )
    backed_up = fleet_failure(kind=FLEET_BACKED_UP, cause="", total_bytes=3 * 1024 * 1024)
    embed = discord_message(backed_up)["embeds"][0]
    assert embed["title"] == "✅ Patina: 29 of 30 tenants of fleet tenants were backed up on 2026-03-09"
    assert (embed["color"], severity(backed_up)) == (GREEN, INFO)
    payload = webhook_payload(backed_up)
    assert payload["type"] == "fleet_backup_completed" and payload["summary"]["successful"] == 29
    assert "status Success" in payload["seeAll"] and "cause" not in payload
    for alert in (check, backed_up):
        for destination in (DISCORD, WEBHOOK, EMAIL):
            text = json.dumps(render(alert, destination, redact=True), ensure_ascii=False)
            assert "shop-" not in text and "<n>" not in text and "MB" not in text, text
