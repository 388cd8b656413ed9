"""The catalog: every backup a bucket holds (dailies and the days inside weekly archives), found, opened and
checked from the bucket alone, on buckets filled by the real nightly and weekly jobs (local and moto S3)."""

import gc
import hashlib
import threading
from datetime import UTC, date, datetime

import pytest
from support.compare import assert_same_database
from support.configs import small_database, write_config
from support.filled import ARCHIVED_DAYS, DAILY_DAY, DATABASES, WEEK, copy_of, filled
from support.storage import CountingBucket

from patina_assets.archive import ArchiveStore
from patina_assets.backup import Cloudflare, back_up, open_store
from patina_assets.catalog import (
    DAILY,
    WEEKLY,
    BackupMismatch,
    BackupNotFound,
    Catalog,
    CatalogError,
    _collector_paused,
    expiry_of_daily,
    expiry_of_week,
)
from patina_assets.config import RetentionConfig
from patina_assets.engine import restore_dump
from patina_assets.retention import daily_cutoff, weekly_cutoff
from patina_assets.storage import InvalidKey, VerificationRecord
from patina_assets.verify import keep_verdict

NAMES = {name for name, _, _ in DATABASES}


@pytest.fixture(params=["local", "s3"])
def bucket(request):
    return filled(request.param)


def test_lists_dailies_and_the_days_inside_weekly_archives(bucket):
    catalog = Catalog.for_config(bucket.config)
    backups = catalog.backups()
    assert {(b.day, b.database, b.location) for b in backups} == (
        {(DAILY_DAY, name, DAILY) for name in NAMES} | {(day, name, WEEKLY) for day in ARCHIVED_DAYS for name in NAMES}
    )
    assert [b.day for b in backups] == sorted((b.day for b in backups), reverse=True)
    rows = {name: rows * 3 for name, _, rows in DATABASES}  # small_database: n users and 2n posts
    for backup in backups:
        assert backup.rows == rows[backup.database] and backup.tables == 2
        if backup.location == DAILY:
            assert backup.key.startswith(f"daily/{DAILY_DAY}/{backup.database}.") and backup.member is None
            assert backup.created_at is not None and backup.stored_bytes == backup.manifest.bytes
        else:
            assert backup.key.startswith(f"weekly/{WEEK}.") and backup.key.endswith(".tar.zst")
            assert backup.member == f"daily/{backup.day}/{backup.database}.sql"
            assert backup.created_at is None and backup.archived_at is not None and backup.stored_bytes is None
    assert [b.database for b in catalog.backups(database="groveauth", day=ARCHIVED_DAYS[1])] == ["groveauth"]
    assert catalog.backups(day="2026-03-05") == []


def test_opens_each_backup_as_the_sql_its_manifest_records_and_it_restores_to_the_source(bucket, tmp_path):
    catalog = Catalog.for_config(bucket.config)
    for day in (ARCHIVED_DAYS[0], DAILY_DAY):
        backup = catalog.find(day, "groveauth")
        assert backup.location == (DAILY if day == DAILY_DAY else WEEKLY)
        with catalog.open_sql(backup) as reader:
            sql = reader.read()
        assert len(sql) == backup.sql_bytes and hashlib.sha256(sql).hexdigest() == backup.sql_sha256
        assert sql.startswith(b"-- ") and b"CREATE TABLE" in sql
        path = catalog.download(backup, tmp_path / day / backup.filename)
        assert path.read_bytes() == sql
        restore_dump(path, tmp_path / day / "restored.sqlite")
        assert_same_database(bucket.sources["groveauth"], tmp_path / day / "restored.sqlite", check_pragmas=False)


def test_find_prefers_the_daily_and_says_which_days_exist(tmp_path):
    bucket = copy_of(filled("local"), tmp_path / "copy")
    catalog = Catalog.for_config(bucket.config)
    # Archive the last week too, as the weekly job does before retention: its days then exist twice.
    ArchiveStore(catalog.store).build("2026-03-08", sorted(NAMES))
    both = catalog.backups(database="scout-db", day=DAILY_DAY)
    assert [b.location for b in both] == [DAILY, WEEKLY]
    assert both[0].sql_sha256 == both[1].sql_sha256
    assert catalog.find(DAILY_DAY, "scout-db").location == DAILY
    assert catalog.find(ARCHIVED_DAYS[0], "scout-db").location == WEEKLY
    with pytest.raises(BackupNotFound) as missing:
        catalog.find("2026-03-05", "scout-db")
    assert str(missing.value).endswith(f"its backups: {DAILY_DAY}, {ARCHIVED_DAYS[1]}, {ARCHIVED_DAYS[0]}")
    with pytest.raises(BackupNotFound, match="it has no backups"):
        catalog.find(DAILY_DAY, "not-configured")
    with pytest.raises(InvalidKey, match="real date"):
        catalog.find("2026-02-30", "scout-db")
    with pytest.raises(InvalidKey, match="invalid database name"):
        catalog.find(DAILY_DAY, "../weekly")


def test_a_daily_whose_bytes_changed_is_refused_and_leaves_no_file(tmp_path):
    bucket = copy_of(filled("local"), tmp_path / "copy")
    catalog = Catalog.for_config(bucket.config)
    backup = catalog.find(DAILY_DAY, "groveauth")
    stored = bucket.config.bucket.local.path / backup.key
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size: the listing still counts it; only the content check can tell
    stored.write_bytes(bytes(data))
    target = tmp_path / "out" / "groveauth.sql"
    with pytest.raises(BackupMismatch, match="use another day's backup"):
        catalog.download(backup, target)
    assert not target.parent.exists() or list(target.parent.iterdir()) == []
    with pytest.raises(BackupMismatch):
        catalog.verify(backup)


def test_a_damaged_archive_member_is_refused(tmp_path):
    bucket = copy_of(filled("local"), tmp_path / "copy")
    catalog = Catalog.for_config(bucket.config)
    backup = catalog.find(ARCHIVED_DAYS[1], "scout-db")
    stored = bucket.config.bucket.local.path / backup.key
    data = bytearray(stored.read_bytes())
    data[len(data) // 3] ^= 0x40
    stored.write_bytes(bytes(data))
    with pytest.raises(BackupMismatch):
        catalog.download(backup, tmp_path / "scout.sql")
    assert not (tmp_path / "scout.sql").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]


def test_a_sql_that_differs_from_its_recorded_digest_is_refused_even_when_the_stored_object_matches(tmp_path):
    """The stored object's sha256 and the SQL's sha256 are both checked: a manifest recording other SQL fails."""
    import dataclasses

    catalog = Catalog.for_config(copy_of(filled("local"), tmp_path / "copy").config)
    backup = catalog.find(DAILY_DAY, "scout-db")
    wrong = dataclasses.replace(backup, sql_sha256="0" * 64)
    with pytest.raises(BackupMismatch, match="its SQL has"):
        catalog.verify(wrong)
    catalog.verify(backup)


def test_download_never_overwrites(tmp_path):
    catalog = Catalog.for_config(filled("local").config)
    backup = catalog.find(DAILY_DAY, "scout-db")
    target = tmp_path / "scout.sql"
    target.write_text("keep me")
    with pytest.raises(CatalogError, match="already exists"):
        catalog.download(backup, target)
    assert target.read_text() == "keep me"


def test_storage_counts_everything_and_reports_what_is_wrong(tmp_path):
    bucket = copy_of(filled("local"), tmp_path / "copy")
    catalog = Catalog.for_config(bucket.config)
    summary = catalog.storage()
    root = bucket.config.bucket.local.path
    # everything under daily/ and weekly/ (the bucket also holds history.py's small index objects, under index/)
    files = [p for where in ("daily", "weekly") for p in (root / where).rglob("*") if p.is_file()]
    assert summary.objects == len(files) and summary.total_bytes == sum(p.stat().st_size for p in files)
    assert summary.daily_backups == 3 and summary.weekly_backups == 6 and summary.backups == 9
    assert summary.weekly_archives == 1
    assert (summary.oldest, summary.newest) == (ARCHIVED_DAYS[0], DAILY_DAY)
    assert summary.problems == []
    (root / "daily" / DAILY_DAY / "scout-db.manifest.json").write_text("{not json")
    (root / "daily" / DAILY_DAY / "groveauth.20260310T030000000000Z-abcdef.sql.zst").write_bytes(b"x")
    problems = catalog.storage().problems
    assert any("unreadable manifest daily/2026-03-09/scout-db.manifest.json" in p for p in problems)
    assert any("without a manifest under daily/" in p for p in problems)
    # Nothing is hidden: the backup whose manifest cannot be read is listed, as damaged.
    listed = {b.database: b for b in catalog.backups(day=DAILY_DAY)}
    assert (
        set(listed) == NAMES
        and listed["scout-db"].status == "damaged"
        and "not valid JSON" in listed["scout-db"].problem
    )
    assert all(b.status != "damaged" for name, b in listed.items() if name != "scout-db")


@pytest.mark.parametrize("daily_days,weekly_weeks", [(1, 1), (7, 12), (10, 3)])
def test_expiry_is_the_first_weekly_run_whose_retention_cutoff_passes_the_backup(daily_days, weekly_weeks):
    retention = RetentionConfig(daily_days=daily_days, weekly_weeks=weekly_weeks)
    for day in ("2026-03-01", "2026-03-04", "2026-03-07"):
        expiry = expiry_of_daily(day, retention)
        run = expiry.date()
        assert expiry.tzinfo == UTC and run.weekday() == 6  # a Sunday: the weekly run
        saturday = date.fromordinal(run.toordinal() - 1)
        assert date.fromisoformat(day) < daily_cutoff(saturday, retention)
        assert date.fromisoformat(day) >= daily_cutoff(date.fromordinal(saturday.toordinal() - 7), retention)
    expiry = expiry_of_week(WEEK, retention)
    saturday = date.fromordinal(expiry.date().toordinal() - 1)
    assert date.fromisoformat(WEEK) < weekly_cutoff(saturday, retention)
    assert date.fromisoformat(WEEK) >= weekly_cutoff(date.fromordinal(saturday.toordinal() - 7), retention)


def test_expiry_with_the_spec_retention():
    spec = RetentionConfig()  # 7 days of dailies, 12 weeks of archives
    assert expiry_of_daily("2026-03-01", spec) == datetime(2026, 3, 15, tzinfo=UTC)
    assert expiry_of_daily("2026-03-07", spec) == datetime(2026, 3, 15, tzinfo=UTC)
    assert expiry_of_daily("2026-03-08", spec) == datetime(2026, 3, 22, tzinfo=UTC)
    assert expiry_of_week("2026-03-01", spec) == datetime(2026, 5, 31, tzinfo=UTC)


def test_a_damaged_daily_is_listed_as_damaged_and_restored_from_its_weekly_copy(tmp_path, capsys):
    """The issue: damage was invisible to `list`, and the intact copy of the day inside the weekly archive
    could not be used when its daily was damaged."""
    import json
    import sqlite3

    from patina_assets.cli import main
    from patina_assets.storage import week_start_of

    bucket = copy_of(filled("local"), tmp_path / "copy")
    catalog = Catalog.for_config(bucket.config)
    assert ArchiveStore(catalog.store).build(week_start_of(DAILY_DAY), sorted(NAMES)).verification.ok
    daily = catalog.find(DAILY_DAY, "groveauth")
    assert daily.location == DAILY and daily.status == "verified"  # the nightly's restore_verification said so
    stored = bucket.config.bucket.local.path / daily.key
    stored.write_bytes(stored.read_bytes()[: stored.stat().st_size // 2])  # truncated in the bucket
    (bucket.config.bucket.local.path / catalog.find(DAILY_DAY, "scout-db").key).unlink()  # and one gone

    listed = {(b.database, b.location): b for b in catalog.backups(day=DAILY_DAY)}
    assert len(listed) == 2 * len(NAMES)  # nothing hidden
    assert listed[("groveauth", DAILY)].status == "damaged" and "bytes, not" in listed[("groveauth", DAILY)].problem
    assert listed[("scout-db", DAILY)].status == "damaged" and "missing" in listed[("scout-db", DAILY)].problem
    assert listed[("groveauth", WEEKLY)].status == "verified"
    assert catalog.find(DAILY_DAY, "groveauth").location == WEEKLY
    assert catalog.latest("groveauth").location == WEEKLY and catalog.latest("groveauth").day == DAILY_DAY
    with pytest.raises(BackupNotFound, match="the daily copy is damaged"):
        catalog.find(DAILY_DAY, "groveauth", source=DAILY)

    target = tmp_path / "restored.sqlite"
    assert (
        main(["--config", str(bucket.config_path), "restore", DAILY_DAY, "groveauth", "--to", str(target), "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["from"].startswith("weekly/") and report["verification"] == "verified"
    with sqlite3.connect(target) as db:
        assert db.execute("SELECT count(*) FROM users").fetchone()[0] == daily.manifest.table_rows["users"]
    assert (
        main(
            [
                "--config",
                str(bucket.config_path),
                "download",
                "latest",
                "scout-db",
                "--from",
                "weekly",
                "-o",
                str(tmp_path / "scout.sql"),
            ]
        )
        == 0
    )
    assert "weekly" in capsys.readouterr().out
    assert main(["--config", str(bucket.config_path), "list", "--date", DAILY_DAY]) == 0
    out = capsys.readouterr().out
    assert "DAMAGED" in out and "VERIFIED" in out.splitlines()[0]


def test_a_daily_that_failed_verification_is_taken_only_when_asked(tmp_path):
    from patina_assets.storage import VerificationRecord

    bucket = copy_of(filled("local"), tmp_path / "copy")
    catalog = Catalog.for_config(bucket.config)
    daily = catalog.find(DAILY_DAY, "groveauth")
    catalog.store.record_verification(
        daily.manifest,
        VerificationRecord(
            key=daily.key,
            sha256=daily.manifest.sha256,
            passed=False,
            checked_at="2026-03-10T03:10:00Z",
            problems=("table 'users' has 9 rows after restore, but the manifest recorded 10",),
        ),
    )
    listed = catalog.backups(database="groveauth", day=DAILY_DAY)[0]
    assert listed.status == "failed" and "9 rows" in listed.problem
    with pytest.raises(BackupNotFound, match="--any"):
        catalog.find(DAILY_DAY, "groveauth")  # no weekly copy of that day
    assert catalog.find(DAILY_DAY, "groveauth", any_status=True).status == "failed"
    newest = catalog.latest("groveauth")  # the newest verified: an archived day
    assert newest.location == WEEKLY and newest.day == ARCHIVED_DAYS[1]


def test_finding_one_database_on_one_day_lists_only_its_keys(bucket):
    # A download or a restore of one tenant must not list every database's keys of that day (a fleet's thousands).
    store = Catalog.for_config(bucket.config).store
    counting = CountingBucket(store.bucket)
    catalog = Catalog(type(store)(counting, store.keys), bucket.config.retention)
    backup = catalog.find(DAILY_DAY, "groveauth")
    assert (backup.database, backup.day, backup.location) == ("groveauth", DAILY_DAY, DAILY)
    assert [p for p in counting.listed if p.startswith("daily/")] == [f"daily/{DAILY_DAY}/groveauth."]


NIGHTS = ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06"]


def nights_of(tmp_path, others: list[str], nights=NIGHTS):
    """groveauth and ``others`` backed up each of ``nights`` into one local bucket (real dumps, real publishes)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = small_database(tmp_path / "source.sqlite", 10)
    names = ["groveauth", *others]
    config = write_config(tmp_path, [{"name": name, "source": str(source)} for name in names])
    store = open_store(config)
    no_cloudflare = Cloudflare(api_url="http://127.0.0.1:9", token=None)
    manifests = {
        (db.name, day): back_up(db, day, store, no_cloudflare, config.dump)[0]
        for db in config.databases
        for day in nights
    }
    return config, store, manifests


def counted(config, store) -> tuple[Catalog, CountingBucket]:
    counting = CountingBucket(store.bucket)
    return Catalog(type(store)(counting, store.keys), config.retention), counting


def test_one_databases_backups_read_only_its_own_keys_whatever_the_other_databases(tmp_path):
    reads = []
    for others in (["scout-db"], [f"shop-{i:02d}" for i in range(12)]):
        config, store, _ = nights_of(tmp_path / str(len(others)), others, NIGHTS[:4])
        catalog, counting = counted(config, store)
        backups = catalog.backups(database="groveauth")
        assert [b.day for b in backups] == NIGHTS[:4][::-1]
        assert [b.to_dict() for b in backups] == [
            b.to_dict() for b in Catalog(store, config.retention).backups(database="groveauth", indexed=False)
        ]
        assert all(b.manifest is None for b in backups)  # from the index: the manifests are read when needed
        reads.append((counting.folders, counting.listed, counting.read, counting.stats))
    assert reads[0] == reads[1]  # 1 or 12 other databases: the same reads
    folders, listed, read, stats = reads[0]
    assert folders == ["daily/"]  # the days, not their keys
    assert listed == [f"daily/{day}/groveauth." for day in NIGHTS[:4]] + ["weekly/"]
    assert read == ["index/daily/groveauth.json"] and stats == ["index/daily/groveauth.json"]


def test_one_databases_backups_from_its_index_are_the_ones_every_manifest_gives(tmp_path):
    config, store, manifests = nights_of(tmp_path, ["groveauth.x", "scout-db"])
    verified, failed, truncated, unreadable, missing, _ = NIGHTS
    for day, passed in ((verified, True), (failed, False)):
        manifest = manifests[("groveauth", day)]
        keep_verdict(  # as restore_verification keeps it: the record, then the index
            store,
            manifest,
            VerificationRecord(
                key=manifest.key,
                sha256=manifest.sha256,
                passed=passed,
                checked_at="2026-03-07T03:10:00Z",
                problems=() if passed else ("table 'users' has 9 rows after restore, but the manifest recorded 10",),
            ),
        )
    store.bucket.put_bytes(manifests[("groveauth", truncated)].key, b"cut short")  # damaged: a truncated dump
    store.bucket.put_bytes(f"daily/{unreadable}/groveauth.manifest.json", b'{"database": "groveauth", ')
    store.bucket.delete(manifests[("groveauth", missing)].key)  # damaged: the dump is gone

    def answers():
        catalog = Catalog(store, config.retention)
        indexed = [b.to_dict() for b in catalog.backups(database="groveauth")]
        every_manifest = [b.to_dict() for b in catalog.backups(database="groveauth", indexed=False)]
        return indexed, every_manifest

    # Damaged behind the index's back (it is rebuilt from groveauth's keys), then from the rebuilt index, which
    # holds the good days only: the damaged ones are found in the days' listings all the same.
    for _ in range(2):
        indexed, every_manifest = answers()
        assert indexed == every_manifest
        assert {b["date"]: b["verification"] for b in indexed} == {
            verified: "verified",
            failed: "failed",
            truncated: "damaged",
            unreadable: "damaged",
            missing: "damaged",
            NIGHTS[5]: "not verified",
        }
        assert all(b["database"] == "groveauth" for b in indexed)

    # What is listed from the index opens as the manifest-read one does (the manifest is read then).
    catalog = Catalog(store, config.retention)
    [newest] = [b for b in catalog.backups(database="groveauth") if b.day == verified]
    assert newest.manifest is None and catalog.manifest_of(newest) == manifests[("groveauth", verified)]
    catalog.verify(newest)
    assert catalog.latest("groveauth").day == verified


def test_an_overview_pauses_the_garbage_collector_and_gives_it_back_when_the_last_one_ends():
    """Overviews may overlap (`patina serve` answers in threads): the collector stays paused until the last
    ends, and one that was off before stays off."""
    assert gc.isenabled()
    entered, leave, left = threading.Event(), threading.Event(), threading.Event()

    def other_overview() -> None:
        with _collector_paused():
            entered.set()
            leave.wait()
        left.set()

    thread = threading.Thread(target=other_overview)
    thread.start()
    entered.wait()
    with _collector_paused():
        assert not gc.isenabled()
        leave.set()
        left.wait()  # the other ended first: this one is still reading
        assert not gc.isenabled()
    thread.join()
    assert gc.isenabled()

    gc.disable()
    try:
        with _collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
