"""The per-database history index: what the checks read instead of listing the whole bucket, and why it can
be missing, stale or damaged without a check ever using a backup that is not in the bucket."""

import json

import pytest
from support.configs import small_database, write_config

from patina_assets import history
from patina_assets.backup import Cloudflare, back_up, open_store
from patina_assets.verify import latest_backup, previous_backups

NO_CLOUDFLARE = Cloudflare(api_url="http://127.0.0.1:9", token=None)


class CountingBucket:
    """The real local bucket, counting what is listed (a listing of `daily/` is what the index saves)."""

    def __init__(self, bucket):
        self._bucket = bucket
        self.listed: list[str] = []

    def list(self, prefix=""):
        self.listed.append(prefix)
        return self._bucket.list(prefix)

    def __getattr__(self, name):
        return getattr(self._bucket, name)


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
