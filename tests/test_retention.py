"""Retention and reconciliation (plain Python) on a bucket filled with real dumps and archives."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest
from support.archives import NAMES, archives, back_up_day, config, store  # noqa: F401 - fixtures

from patina_assets.config import RetentionConfig
from patina_assets.reconciliation import RecordedBackups, reconcile
from patina_assets.retention import apply_retention, daily_cutoff, plan_retention, weekly_cutoff
from patina_assets.storage import (
    VerificationRecord,
    daily_manifest_key,
    new_generation,
    week_days,
    weekly_manifest_key,
    weekly_verification_key,
)

RETENTION = RetentionConfig(daily_days=7, weekly_weeks=12)
W1, W2, W3 = "2026-01-04", "2026-01-11", "2026-01-18"


def fill(config, store, archives, weeks, names=None):
    """Back up every day of `weeks` and archive each week, as the nightly and weekly jobs would."""
    for week in weeks:
        for day in week_days(week):
            back_up_day(config, store, day, names)
        assert archives.build(week, NAMES).verification.ok


def last_day(week):
    return week_days(week)[-1]


def slots(store):
    return {(m.day, m.database) for m in store.list_daily()}


def test_cutoffs_count_from_the_last_day_of_the_week():
    assert daily_cutoff("2026-01-17", RETENTION) == date(2026, 1, 11)  # the seven days Sun..Sat
    assert weekly_cutoff("2026-01-17", RETENTION) == date(2026, 1, 11) - timedelta(weeks=11)
    assert daily_cutoff("2026-01-17", RetentionConfig(daily_days=1)) == date(2026, 1, 17)


def test_the_plan_is_a_dry_run_and_apply_deletes_exactly_it(config, store, archives):
    fill(config, store, archives, [W1, W2])
    before = {info.key: info.size for info in store.bucket.list("")}
    plan = plan_retention(archives, last_day(W2), RETENTION)
    assert {info.key: info.size for info in store.bucket.list("")} == before  # nothing deleted yet
    assert {(d.day, d.database) for d in plan.dailies} == {(day, db) for day in week_days(W1) for db in NAMES}
    assert plan.archives == [] and plan.kept == []
    w1 = archives.get_manifest(W1)
    assert {d.archive_key for d in plan.dailies} == {w1.key} and plan.verifications[W1].ok
    assert plan.bytes == sum(before[k] for d in plan.dailies for k in d.keys)

    result = apply_retention(archives, plan)
    assert not result.failures and result.bytes_freed == plan.bytes
    assert set(result.deleted_keys) == set(plan.keys)
    assert slots(store) == {(day, db) for day in week_days(W2) for db in NAMES}
    assert {info.key for info in store.bucket.list("")} == set(before) - set(plan.keys)


def test_a_daily_is_deleted_only_when_a_verified_archive_holds_exactly_it(config, store, archives):
    fill(config, store, archives, [W1, W2])
    # Monday of week 1 was re-run after its archive was built: the archive holds the older dump.
    back_up_day(config, store, week_days(W1)[1], ["groveauth"])
    back_up_day(config, store, last_day(W2), ["groveauth"])  # so the re-run is not the newest capture
    plan = plan_retention(archives, last_day(W2), RETENTION)
    reasons = {k.what: k.reason for k in plan.kept}
    assert "does not hold this dump" in reasons[f"groveauth on {week_days(W1)[1]}"]
    assert (week_days(W1)[1], "groveauth") not in {(d.day, d.database) for d in plan.dailies}
    archives.delete(W1)  # with no archive of the week, none of its dailies may go
    plan = plan_retention(archives, last_day(W2), RETENTION)
    assert plan.dailies == [] and all("no archive of week 2026-01-04" in k.reason for k in plan.kept)


def test_an_archive_that_fails_verification_blocks_the_deletion_of_its_dailies(config, store, archives):
    from test_archive import flip_sql, rewrite_archive

    fill(config, store, archives, [W1, W2])
    w1 = archives.get_manifest(W1)
    rewrite_archive(archives, w1, flip_sql(w1.index.member(week_days(W1)[3], "scout-db").path))  # one member
    plan = plan_retention(archives, last_day(W2), RETENTION)
    assert plan.dailies == [] and not plan.verifications[W1].ok
    assert len(plan.kept) == 14 and all("failed verification" in k.reason for k in plan.kept)
    apply_retention(archives, plan)
    assert {(day, db) for day in week_days(W1) for db in NAMES} <= slots(store)


def test_the_newest_good_backup_of_a_database_is_never_deleted(config, store, archives):
    fill(config, store, archives, [W1])
    fill(config, store, archives, [W2, W3], ["groveauth"])  # scout-db was retired after week 1
    plan = plan_retention(archives, last_day(W3), RETENTION)
    newest_scout = (last_day(W1), "scout-db")
    assert newest_scout not in {(d.day, d.database) for d in plan.dailies}
    assert {k.what: k.reason for k in plan.kept}[f"scout-db on {last_day(W1)}"].startswith("the newest good backup")
    apply_retention(archives, plan)
    assert {s for s in slots(store) if s[1] == "scout-db"} == {newest_scout}

    # If that newest daily is damaged, the newest one that still matches its manifest is kept instead.
    fill(config, store, archives, [W1], ["scout-db"])  # back up scout-db's week 1 again
    newest = store.get_manifest(last_day(W1), "scout-db")
    store.bucket.put_bytes(newest.key, b"\0" * newest.bytes)  # same size, wrong bytes
    plan = plan_retention(archives, last_day(W3), RETENTION)
    kept = {k.what: k.reason for k in plan.kept}
    assert kept[f"scout-db on {week_days(W1)[5]}"].startswith("the newest good backup")


def record(store, day, database, *, passed=True, size_verdict="ok"):
    """What restore_verification keeps beside a backup (see defs/dumps/checks.py)."""
    manifest = store.get_manifest(day, database)
    store.record_verification(
        manifest,
        VerificationRecord(
            key=manifest.key,
            sha256=manifest.sha256,
            passed=passed,
            checked_at="2026-02-01T03:10:00Z",
            size_verdict=size_verdict,
        ),
    )


def test_the_newest_good_backup_is_the_newest_verified_one_not_flagged_as_data_loss(config, store, archives):
    """The issue: a database emptied (size_anomaly ERROR, but a faithful backup of nothing) became its
    "newest good backup", so the dailies holding the real data went, then, weeks later, their archives."""
    fill(config, store, archives, [W1, W2], ["groveauth"])
    real, emptied = week_days(W1), week_days(W2)
    for day in real:
        record(store, day, "groveauth")
    for day in emptied[:-1]:
        record(store, day, "groveauth", size_verdict="too_small")  # restores fine, but possible data loss
    record(store, emptied[-1], "groveauth", passed=False)  # and the last one failed verification outright
    plan = plan_retention(archives, last_day(W3), RETENTION)  # every daily of W1 and W2 is past 7 days
    kept = {k.what: k.reason for k in plan.kept}
    assert kept[f"groveauth on {real[-1]}"].startswith("the newest good backup")
    assert (real[-1], "groveauth") not in {(d.day, d.database) for d in plan.dailies}
    assert {(d.day, d.database) for d in plan.dailies} == {(day, "groveauth") for day in real[:-1] + emptied}
    # Whatever its age: months later it is still kept, and so is the archive holding it.
    later = plan_retention(archives, "2026-06-27", RETENTION)
    assert (real[-1], "groveauth") not in {(d.day, d.database) for d in later.dailies}


def test_archives_older_than_the_weekly_retention_go_unless_one_holds_a_newest_backup(config, store, archives):
    weeks = [W1, W2, W3]
    fill(config, store, archives, weeks)
    two_weeks = RetentionConfig(daily_days=7, weekly_weeks=2)
    plan = plan_retention(archives, last_day(W3), two_weeks)
    assert [a.week for a in plan.archives] == [W1]
    assert set(plan.archives[0].keys) == {
        weekly_manifest_key(W1),
        archives.get_manifest(W1).key,
        weekly_verification_key(W1),
    }
    # A database whose only backups are in that old archive keeps it: its newest backup is in there.
    for day in week_days(W1):
        store.delete_daily(day, "scout-db")
    for day in week_days(W2) + week_days(W3):
        store.delete_daily(day, "scout-db")
    archives.delete(W2)
    archives.delete(W3)
    plan = plan_retention(archives, last_day(W3), two_weeks)
    assert plan.archives == []
    assert "newest backup of scout-db" in {k.what: k.reason for k in plan.kept}[f"archive of week {W1}"]


def test_apply_skips_a_daily_that_changed_since_the_plan(config, store, archives):
    fill(config, store, archives, [W1, W2])
    plan = plan_retention(archives, last_day(W2), RETENTION)
    rerun = week_days(W1)[2]
    back_up_day(config, store, rerun, ["groveauth"])
    result = apply_retention(archives, plan)
    assert [k.what for k in result.skipped] == [f"groveauth on {rerun}"]
    assert (rerun, "groveauth") in slots(store) and len(result.dailies) == 13


# -- reconciliation --------------------------------------------------------------------------------


def recorded_now(store, archives):
    return RecordedBackups(dailies=frozenset(slots(store)), weeks=frozenset(m.week for m in archives.list()))


def test_a_bucket_that_matches_its_records_reconciles_clean(config, store, archives):
    fill(config, store, archives, [W1])
    report = reconcile(archives, recorded_now(store, archives))
    assert report.clean and report.counts() == {"missing": 0, "corrupt": 0, "unknown": 0, "orphans": 0}
    assert (report.dailies_checked, report.archives_checked) == (14, 1)


def test_reconciliation_finds_each_kind_of_drift(config, store, archives):
    fill(config, store, archives, [W1])
    recorded = recorded_now(store, archives)
    days = week_days(W1)
    bucket = store.bucket
    # 1. deleted behind its back: a dump object, a whole backup (manifest and dump), and an archive
    gone_dump = store.get_manifest(days[0], "groveauth")
    bucket.delete(gone_dump.key)
    gone_backup = store.get_manifest(days[1], "groveauth")
    bucket.delete(daily_manifest_key(days[1], "groveauth"))  # its dump stays: an orphan now
    # 2. a stray object, and a valid backup the records do not know
    bucket.put_bytes("daily/2026-01-05/notes.txt", b"hello")
    bucket.put_bytes("stray.bin", b"\x00" * 10)
    bucket.put_bytes("audit/2026-01-05/031500-1-1.jsonl", b"{}\n")  # the API's audit log is no stray
    back_up_day(config, store, "2026-01-12", ["scout-db"])
    # 3. a corrupted dump (same size, so only the sha256 tells) and a corrupted archive
    corrupt = store.get_manifest(days[2], "scout-db")
    bucket.put_bytes(corrupt.key, b"\x00" * corrupt.bytes)
    # 4. a dump without manifest (an upload that never finished)
    half = f"daily/{days[3]}/groveauth.{new_generation()}.sql.zst"
    bucket.put_bytes(half, b"half a dump")

    report = reconcile(archives, recorded)
    keys = {
        kind: {f.key for f in findings}
        for kind, findings in (
            ("missing", report.missing),
            ("corrupt", report.corrupt),
            ("unknown", report.unknown),
            ("orphans", report.orphans),
        )
    }
    assert keys["missing"] == {daily_manifest_key(days[0], "groveauth"), daily_manifest_key(days[1], "groveauth")}
    assert keys["corrupt"] == {corrupt.key}
    assert keys["unknown"] == {"daily/2026-01-05/notes.txt", "stray.bin", daily_manifest_key("2026-01-12", "scout-db")}
    assert keys["orphans"] == {half, gone_backup.key}
    assert report.errors and report.counts() == {"missing": 2, "corrupt": 1, "unknown": 3, "orphans": 2}
    assert "is missing" in next(f.detail for f in report.missing if f.key.startswith(f"daily/{days[0]}"))
    # Without deep checks, equal-size corruption goes unseen (sizes are compared); the rest is found.
    shallow = reconcile(archives, recorded, deep=False)
    assert shallow.corrupt == [] and len(shallow.missing) == 2


def test_reconciliation_checks_archives_too(config, store, archives):
    from test_archive import flip_sql, rewrite_archive

    fill(config, store, archives, [W1, W2])
    recorded = dataclasses.replace(recorded_now(store, archives), weeks=frozenset({W1, W2, W3}))
    w1 = archives.get_manifest(W1)
    rewrite_archive(archives, w1, flip_sql(w1.index.members[0].path))
    orphan = archives.get_manifest(W2).key.replace(archives.get_manifest(W2).key.split(".")[1], new_generation())
    store.bucket.put_bytes(orphan, b"half an archive")
    report = reconcile(archives, recorded)
    assert [f.key for f in report.missing] == [weekly_manifest_key(W3)]
    assert [f.key for f in report.corrupt] == [w1.key] and "daily manifest records" in report.corrupt[0].detail
    assert [f.key for f in report.orphans] == [orphan]
    recorded = dataclasses.replace(recorded, weeks=frozenset({W1}))
    assert [f.key for f in reconcile(archives, recorded).unknown] == [archives.get_manifest(W2).key]


@pytest.mark.parametrize("daily_days", [1, 7, 10])
def test_retention_windows_are_configurable(config, store, archives, daily_days):
    fill(config, store, archives, [W1, W2])
    plan = plan_retention(archives, last_day(W2), RetentionConfig(daily_days=daily_days, weekly_weeks=12))
    cutoff = (date(2026, 1, 17) - timedelta(days=daily_days - 1)).isoformat()
    assert {(d.day, d.database) for d in plan.dailies} == {s for s in slots(store) if s[0] < cutoff}
