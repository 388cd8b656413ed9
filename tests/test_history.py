"""The per-database history index: what the checks read instead of listing the whole bucket, and why it can
be missing, stale or damaged without a check ever using a backup that is not in the bucket."""

import json
from datetime import UTC, datetime

import pytest
from support.configs import small_database, write_config
from support.s3_server import create_bucket
from support.storage import CountingBucket, InterleavingBucket, RefusingBucket, s3_bucket

from patina_assets import history
from patina_assets.backup import Cloudflare, back_up, open_store
from patina_assets.catalog import Catalog
from patina_assets.status import Snapshot, unavailable
from patina_assets.storage import (
    BackupStore,
    VerificationRecord,
    daily_dump_key,
    daily_manifest_key,
    new_generation,
    utc_timestamp,
)
from patina_assets.verify import keep_verdict, latest_backup, previous_backups

NO_CLOUDFLARE = Cloudflare(api_url="http://127.0.0.1:9", token=None)


@pytest.fixture
def fleet(tmp_path):
    """Two databases, `groveauth` and `scout-db`, in one local bucket; returns (config, store, night)."""
    sources = [small_database(tmp_path / f"{n}.sqlite", 20) for n in ("auth", "scout")]
    config = write_config(
        tmp_path, [{"name": "groveauth", "source": str(sources[0])}, {"name": "scout-db", "source": str(sources[1])}]
    )
    store = open_store(config)

    def night(day, database=0):
        return back_up(config.databases[database], day, store, NO_CLOUDFLARE, config.dump)[0]

    return config, store, night


def indexed_days(store, database):
    return sorted(history.read_index(store, database))


def test_each_publish_adds_its_backup_to_its_own_database_index(fleet):
    config, store, night = fleet
    for day in ("2026-03-01", "2026-03-02"):
        night(day)
    night("2026-03-01", database=1)
    assert indexed_days(store, "groveauth") == ["2026-03-01", "2026-03-02"]
    assert indexed_days(store, "scout-db") == ["2026-03-01"]
    document = json.loads(store.bucket.get_bytes("index/daily/groveauth.json"))
    assert document["backups"]["2026-03-02"]["key"] == store.get_manifest("2026-03-02", "groveauth").key


def test_a_check_reads_the_history_without_listing_the_bucket(fleet):
    config, store, night = fleet
    manifests = [night(day) for day in ("2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04")]
    night("2026-03-04", database=1)
    counting = type(store)(CountingBucket(store.bucket))
    assert [m.day for m in previous_backups(counting, manifests[-1], limit=2)] == ["2026-03-02", "2026-03-03"]
    assert previous_backups(counting, manifests[-1], limit=2) == manifests[1:3]
    assert latest_backup(counting, "groveauth") == manifests[-1]
    assert counting.bucket.listed == []


def test_a_missing_or_unreadable_index_is_rebuilt_from_the_bucket(fleet):
    config, store, night = fleet
    manifests = [night(day) for day in ("2026-03-01", "2026-03-02", "2026-03-03")]
    store.bucket.delete("index/daily/groveauth.json")
    assert previous_backups(store, manifests[-1]) == manifests[:2]
    assert indexed_days(store, "groveauth") == ["2026-03-01", "2026-03-02", "2026-03-03"]
    store.bucket.put_bytes("index/daily/groveauth.json", b'{"database": "groveauth", "backups": [')
    assert latest_backup(store, "groveauth") == manifests[-1]
    assert indexed_days(store, "groveauth") == ["2026-03-01", "2026-03-02", "2026-03-03"]


def test_a_stale_entry_is_never_used_the_bucket_decides(fleet):
    """An entry for a backup deleted (or re-run) since: the check reads the bucket's backups instead."""
    config, store, night = fleet
    manifests = [night(day) for day in ("2026-03-01", "2026-03-02", "2026-03-03")]
    stale = history.read_index(store, "groveauth")
    store.delete_daily("2026-03-02", "groveauth")  # behind the index's back
    history.write_index(store, "groveauth", stale)
    assert previous_backups(store, manifests[-1]) == [manifests[0]]
    assert indexed_days(store, "groveauth") == ["2026-03-01", "2026-03-03"]
    # A dump damaged behind the index's back (not the recorded size) does not count either.
    store.bucket.put_bytes(manifests[-1].key, b"not the dump")
    assert latest_backup(store, "groveauth") == manifests[0]


def test_an_entry_lost_between_publish_and_index_comes_back_with_reconciliation(fleet):
    from patina_assets.archive import ArchiveStore
    from patina_assets.reconciliation import RecordedBackups, reconcile

    config, store, night = fleet
    manifests = [night(day) for day in ("2026-03-01", "2026-03-02")]
    history.forget(store, "groveauth", {"2026-03-02"})  # as if the run died right after the manifest
    assert indexed_days(store, "groveauth") == ["2026-03-01"]
    recorded = RecordedBackups(dailies=frozenset((m.day, m.database) for m in manifests))
    result = reconcile(ArchiveStore(store), recorded, deep=False)
    assert result.clean, result  # the index objects are Patina's, not strays
    assert result.indexes_rewritten == 1
    assert indexed_days(store, "groveauth") == ["2026-03-01", "2026-03-02"]


# -- holes: a backup in the bucket that its index lacks ---------------------------------------------


def refused_night(config, store, day, times=1):
    """The backup of groveauth on `day`, published while the bucket refuses its index's next `times` writes
    (its `record` logs that and the backup counts without its entry)."""
    refusing = RefusingBucket(store.bucket, history.index_key("groveauth"), times)
    manifest = back_up(config.databases[0], day, type(store)(refusing), NO_CLOUDFLARE, config.dump)[0]
    assert refusing.refused == times
    return manifest


def test_a_backup_whose_index_entry_was_refused_is_back_in_the_index_the_next_night(fleets):
    config, store, night = fleets
    first = night("2026-03-01")
    second = refused_night(config, store, "2026-03-02")
    assert indexed_days(store, "groveauth") == ["2026-03-01"]  # the hole
    third = night("2026-03-03")
    assert indexed_days(store, "groveauth") == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert previous_backups(store, third) == [first, second]  # the size check's history has night 2


def test_a_check_finds_a_backup_its_index_lacks_while_the_index_cannot_be_written(fleet):
    """Night 2's entry refused, and night 3's too: night 3's checks still see night 2, and so does a check
    run by hand before night 3."""
    config, store, night = fleet
    first = night("2026-03-01")
    second = refused_night(config, store, "2026-03-02")
    assert latest_backup(store, "groveauth") == second
    third = refused_night(config, store, "2026-03-03")
    assert indexed_days(store, "groveauth") == ["2026-03-01"]
    assert previous_backups(store, third) == [first, second]
    assert previous_backups(store, third, limit=1) == [second]
    assert latest_backup(store, "groveauth") == third


def test_an_empty_or_partial_index_is_not_trusted_over_the_bucket(fleet):
    """Backups written while no index was kept (a database moved into a fleet, whose discovery started an
    empty index; an index written as empty): the checks see them, and the next publish indexes them."""
    config, store, night = fleet
    manifests = [night(day) for day in ("2026-03-01", "2026-03-02", "2026-03-03")]
    entries = history.read_index(store, "groveauth")
    history.write_index(store, "groveauth", {})
    assert previous_backups(store, manifests[-1]) == manifests[:2]
    assert latest_backup(store, "groveauth") == manifests[-1]
    history.write_index(store, "groveauth", {"2026-03-02": entries["2026-03-02"]})
    assert previous_backups(store, manifests[-1]) == manifests[:2]
    assert latest_backup(store, "groveauth") == manifests[-1]
    fourth = night("2026-03-04")
    assert indexed_days(store, "groveauth") == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]
    assert latest_backup(store, "groveauth") == fourth
    # An entry added for a day the index lacked carries its facts, as one a publish writes.
    assert history.read_index(store, "groveauth")["2026-03-01"] == history.Entry.of(
        manifests[0],
        None,
        {
            daily_manifest_key("2026-03-01", "groveauth"): store.bucket.stat(
                daily_manifest_key("2026-03-01", "groveauth")
            )
        },
    )


def test_looking_for_holes_costs_one_folder_listing_and_a_stat_per_day_the_index_lacks(fleet):
    """What a night reads to be sure its index has no hole grows with the days kept, never with the databases:
    one listing of the day folders (not of their keys), and one stat of this database's manifest on each day
    the index does not hold (none when it holds them all)."""
    config, store, night = fleet
    for day in ("2026-03-01", "2026-03-02", "2026-03-03"):
        night(day, database=1)
    manifests = [night(day) for day in ("2026-03-02", "2026-03-03")]  # groveauth has none on 03-01
    counting = type(store)(CountingBucket(store.bucket))
    fourth = back_up(config.databases[0], "2026-03-04", counting, NO_CLOUDFLARE, config.dump)[0]
    assert previous_backups(counting, fourth) == manifests
    assert latest_backup(counting, "groveauth") == fourth
    bucket = counting.bucket
    assert set(bucket.folders) == {"daily/"}
    assert not any(prefix == "daily/" for prefix in bucket.listed)  # never a listing of every database's keys
    manifest_stats = [k for k in bucket.stats if k.endswith(".manifest.json")]
    assert set(manifest_stats) <= {daily_manifest_key(d, "groveauth") for d in ("2026-03-01", "2026-03-04")}
    assert daily_manifest_key("2026-03-01", "groveauth") in manifest_stats  # the one day the index lacks


# -- what a status reads: the indexes, checked against one listing -------------------------------

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def reports(config, store):
    """The status from the indexes and from every manifest and record (each its /status document without
    the index's own line, /metrics and /list), and which indexes the first had to rebuild."""
    catalog = Catalog(store, config.retention)
    indexed = Snapshot.take(config, catalog, unavailable("test"), NOW)
    full = Snapshot.take(config, catalog, unavailable("test"), NOW, indexed=False)

    def report(snapshot):
        document = snapshot.to_dict()
        document.pop("indexRebuilt")
        return document, snapshot.metrics(), [b.to_dict() for b in snapshot.backups]

    assert full.rebuilt == {}
    return report(indexed), report(full), indexed.rebuilt


def settled(config, store):
    """The report, once from indexes that needed rebuilding and once from the rebuilt ones: both the full one."""
    first, full, rebuilt = reports(config, store)
    assert first == full
    second, full, again = reports(config, store)
    assert second == full and again == {}
    return full[0], rebuilt


def verdict(manifest, passed=True, problems=()):
    return VerificationRecord(
        key=manifest.key, sha256=manifest.sha256, passed=passed, checked_at=utc_timestamp(), problems=tuple(problems)
    )


def test_status_from_the_indexes_is_the_status_from_every_manifest(fleet):
    config, store, night = fleet
    auth = [night(day) for day in ("2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04")]
    scout = [night(day, database=1) for day in ("2026-03-01", "2026-03-02")]
    keep_verdict(store, auth[0], verdict(auth[0]))
    keep_verdict(store, auth[1], verdict(auth[1]))
    keep_verdict(store, auth[2], verdict(auth[2], passed=False, problems=["table users has 19 rows"]))
    store.bucket.put_bytes(scout[1].key, b"not the dump")  # damaged behind the index's back
    store.bucket.put_bytes(daily_manifest_key("2026-03-05", "groveauth"), b"{not json")  # unreadable manifest
    store.bucket.put_bytes(daily_dump_key("2026-03-04", "groveauth", "sql.zst", new_generation()), b"x")  # an orphan

    document, rebuilt = settled(config, store)
    assert rebuilt == {"scout-db": "stale: the dump of 2026-03-02 changed"}
    checked = document["verification"]
    assert (checked["verified"], checked["failed"], checked["notVerified"], checked["damaged"]) == (2, 1, 2, 2)
    assert {(p["database"], p["date"], p["verification"]) for p in checked["problems"]} == {
        ("groveauth", "2026-03-03", "failed"),
        ("groveauth", "2026-03-05", "damaged"),
        ("scout-db", "2026-03-02", "damaged"),
    }
    assert len(document["storage"]["problems"]) == 3  # the unreadable manifest, the broken backup, the orphan
    by_name = {d["database"]: d for d in document["databases"]}
    assert (
        by_name["groveauth"]["lastBackup"] == "2026-03-04"
        and by_name["groveauth"]["lastVerifiedBackup"] == "2026-03-02"
    )
    assert by_name["scout-db"]["lastBackup"] == "2026-03-01"


def test_a_missing_unreadable_or_stale_index_is_caught_and_rebuilt(fleet):
    config, store, night = fleet
    manifests = [night(day) for day in ("2026-03-01", "2026-03-02", "2026-03-03")]
    night("2026-03-01", database=1)
    assert settled(config, store)[1] == {}

    store.bucket.delete("index/daily/groveauth.json")
    assert settled(config, store)[1] == {"groveauth": "missing"}
    assert indexed_days(store, "groveauth") == ["2026-03-01", "2026-03-02", "2026-03-03"]

    store.bucket.put_bytes("index/daily/groveauth.json", b'{"database": "groveauth", "backups": [')
    assert settled(config, store)[1] == {"groveauth": "unreadable"}

    stale = history.read_index(store, "groveauth")
    store.delete_daily("2026-03-02", "groveauth")  # behind the index's back
    history.write_index(store, "groveauth", stale)
    document, rebuilt = settled(config, store)
    assert rebuilt == {"groveauth": "stale: the backup of 2026-03-02 is gone"}
    assert document["storage"]["dailyBackups"] == 3 and indexed_days(store, "groveauth") == ["2026-03-01", "2026-03-03"]

    history.forget(store, "groveauth", {"2026-03-03"})  # as if the run died between its manifest and the index
    assert settled(config, store)[1] == {"groveauth": "stale: it lacks 2026-03-03"}

    rerun = night("2026-03-01")  # re-run: a new dump, and the index follows it
    assert rerun.key != manifests[0].key and settled(config, store)[1] == {}


def test_verdicts_show_up_whoever_writes_them(fleet):
    config, store, night = fleet
    manifest = night("2026-03-01")

    def shown():
        document, rebuilt = settled(config, store)
        return document["databases"][0]["lastBackupVerification"], rebuilt

    assert shown() == ("not verified", {})
    keep_verdict(store, manifest, verdict(manifest))  # the check's way: the record, then the index
    assert shown() == ("verified", {})
    keep_verdict(store, manifest, verdict(manifest, passed=False, problems=["digest differs"]))
    assert shown() == ("failed", {})
    store.record_verification(manifest, verdict(manifest))  # behind the index's back (a crash before it)
    assert shown() == ("verified", {"groveauth": "stale: the verification record of 2026-03-01 changed"})
    rerun = night("2026-03-01")  # the record is about the dump it replaced: the new one is not verified
    assert shown() == ("not verified", {})
    keep_verdict(store, rerun, verdict(rerun))
    assert shown() == ("verified", {})


def test_an_index_written_before_facts_were_kept_still_works_and_is_upgraded(fleet):
    config, store, night = fleet
    manifests = [night(day) for day in ("2026-03-01", "2026-03-02", "2026-03-03")]
    old = {
        "database": "groveauth",
        "backups": {m.day: {"key": m.key, "captured_at": m.captured_at} for m in manifests[:2]},
    }
    store.bucket.put_bytes("index/daily/groveauth.json", json.dumps(old).encode())
    assert previous_backups(store, manifests[1]) == manifests[:1]  # the checks read it as before
    assert settled(config, store)[1] == {"groveauth": "written by an older Patina (no facts)"}
    assert all(e.facts is not None for e in history.read_index(store, "groveauth").values())

    store.bucket.put_bytes("index/daily/groveauth.json", json.dumps(old).encode())
    night("2026-03-04")  # a publish upgrades it too
    entries = history.read_index(store, "groveauth")
    assert sorted(entries) == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]
    assert all(e.facts is not None for e in entries.values())


def test_a_status_reads_one_index_per_database_not_every_manifest(fleet):
    config, store, night = fleet
    for day in ("2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"):
        night(day)
        night(day, database=1)
    settled(config, store)
    counting = type(store)(CountingBucket(store.bucket))
    Snapshot.take(config, Catalog(counting, config.retention), unavailable("test"), NOW)
    assert sorted(counting.bucket.listed) == ["daily/", "index/daily/", "weekly/"]
    assert sorted(counting.bucket.read) == ["index/daily/groveauth.json", "index/daily/scout-db.json"]


# -- writers at once: an index is only written over the version its writer read ----------------------


@pytest.fixture(params=["local", "s3"])
def fleets(request, fleet):
    """`fleet`, its bucket a directory or S3 on moto (the conditional writes are the bucket's own)."""
    if request.param == "local":
        return fleet
    config, _, _ = fleet
    endpoint = request.getfixturevalue("moto_endpoint")
    store = BackupStore(s3_bucket(endpoint, create_bucket(endpoint)))

    def night(day, database=0):
        return back_up(config.databases[database], day, store, NO_CLOUDFLARE, config.dump)[0]

    return config, store, night


def racing(store, meanwhile):
    """`store` on a bucket where `meanwhile` (another writer) runs right before the first write of groveauth's
    index: between what the writer read (its listing, or the index) and what it writes."""
    return type(store)(InterleavingBucket(store.bucket, history.index_key("groveauth"), meanwhile))


def test_a_status_rebuild_does_not_overwrite_the_index_a_publish_wrote_meanwhile(fleets):
    config, store, night = fleets
    night("2026-03-01")
    night("2026-03-02")
    history.forget(store, "groveauth", {"2026-03-02"})  # stale: the status rebuilds it from its listing
    published = []
    racer = racing(store, lambda: published.append(night("2026-03-03")))  # after the status listed the bucket
    snapshot = Snapshot.take(config, Catalog(racer, config.retention), unavailable("test"), NOW)
    assert racer.bucket.interleaved and snapshot.rebuilt == {"groveauth": "stale: it lacks 2026-03-02"}
    # The rebuild from the older listing was not written over the publish's index: 03-03 is still in it,
    # and the checks' newest backup is the one just published, not 03-02.
    assert "2026-03-03" in indexed_days(store, "groveauth")
    assert latest_backup(store, "groveauth") == published[0]


def test_a_checks_rebuild_does_not_overwrite_the_index_a_publish_wrote_meanwhile(fleets):
    config, store, night = fleets
    manifests = [night(day) for day in ("2026-03-01", "2026-03-02")]
    store.bucket.delete(history.index_key("groveauth"))  # missing: the check lists the bucket and rebuilds
    published = []
    racer = racing(store, lambda: published.append(night("2026-03-03")))
    assert previous_backups(racer, manifests[-1]) == manifests[:1]
    assert racer.bucket.interleaved
    assert indexed_days(store, "groveauth") == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert latest_backup(store, "groveauth") == published[0]


def test_two_publishes_of_one_database_at_once_both_stay_in_its_index(fleets):
    config, store, night = fleets
    night("2026-03-01")
    racer = racing(store, lambda: night("2026-03-02"))  # the other publish records its entry first
    back_up(config.databases[0], "2026-03-03", racer, NO_CLOUDFLARE, config.dump)
    assert racer.bucket.interleaved
    assert indexed_days(store, "groveauth") == ["2026-03-01", "2026-03-02", "2026-03-03"]
