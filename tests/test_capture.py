"""Capture time is the truth: a backfill of a night long past holds the data of the moment it ran, and is
stored (and shown) as captured late, or refused with `dump.late_backfill: refuse`."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from support.configs import small_database, write_config

from patina_assets.backup import Cloudflare, LateBackfillRefused, back_up, open_store
from patina_assets.catalog import Catalog
from patina_assets.engine import DatabaseNotFound
from patina_assets.storage import Manifest, daily_manifest_key, is_captured_late
from patina_assets.verify import latest_backup, previous_backups

NO_CLOUDFLARE = Cloudflare(api_url="http://127.0.0.1:9", token=None)
TODAY = datetime.now(UTC).date()
YESTERDAY = (TODAY - timedelta(days=1)).isoformat()
LONG_AGO = (TODAY - timedelta(days=6)).isoformat()


@pytest.fixture
def setup(tmp_path):
    source = small_database(tmp_path / "auth.sqlite", 30)

    def configure(**dump):
        config = write_config(tmp_path, [{"name": "groveauth", "source": str(source)}], dump=dump)
        return config, open_store(config)

    return configure


def night(config, store, day):
    return back_up(config.databases[0], day, store, NO_CLOUDFLARE, config.dump)[0]


def test_late_is_more_than_a_day_after_the_day_ended():
    day = "2026-11-25"  # ended 2026-11-26 00:00 UTC
    assert not is_captured_late(day, datetime(2026, 11, 26, 3, 0, tzinfo=UTC))  # the nightly
    assert not is_captured_late(day, datetime(2026, 11, 27, 0, 0, tzinfo=UTC))  # retried all day
    assert is_captured_late(day, datetime(2026, 11, 27, 0, 0, 1, tzinfo=UTC))
    assert is_captured_late(day, datetime(2026, 12, 1, 10, 0, tzinfo=UTC))  # the backfill


def test_a_backfill_after_a_nightly_is_the_newest_backup_everywhere(setup):
    """The issue: backfilling 6 days ago after last night's backup stores today's data under the old day.
    Listing, "latest", and the history the checks compare against must follow capture time."""
    config, store = setup()
    nightly = night(config, store, YESTERDAY)
    backfill = night(config, store, LONG_AGO)

    assert backfill.captured_late and not nightly.captured_late
    assert backfill.captured > nightly.captured
    assert latest_backup(store, "groveauth") == backfill
    assert previous_backups(store, backfill) == [nightly]  # what size_anomaly and schema_drift compare with
    assert previous_backups(store, nightly) == []
    listed = Catalog(store).backups()
    assert [(b.day, b.captured_late) for b in listed] == [(LONG_AGO, True), (YESTERDAY, False)]
    assert listed[0].to_dict()["capturedLate"] is True and listed[0].to_dict()["capturedAt"]


def test_late_backfills_can_be_refused(setup):
    config, store = setup(late_backfill="refuse")
    with pytest.raises(LateBackfillRefused) as info:
        night(config, store, LONG_AGO)
    message = str(info.value)
    assert LONG_AGO in message and "as it is NOW" in message and "cannot bring back" in message
    assert "late_backfill: store" in message
    assert store.list_daily() == []  # nothing read, nothing stored
    assert night(config, store, YESTERDAY).day == YESTERDAY  # the nightly is not a late backfill


def test_manifests_without_a_capture_time_load_with_their_start_time(setup):
    config, store = setup()
    manifest = night(config, store, YESTERDAY)
    old = json.loads(manifest.to_json())
    del old["captured_at"], old["captured_late"]
    loaded = Manifest.from_json(json.dumps(old))
    assert loaded.captured_at == loaded.started_at and loaded.captured_late is False
    store.bucket.put_bytes(daily_manifest_key(YESTERDAY, "groveauth"), json.dumps(old).encode())
    assert store.get_manifest(YESTERDAY, "groveauth").captured_at == manifest.started_at


def test_a_zero_byte_source_file_is_an_error_not_an_empty_backup(tmp_path):
    empty = tmp_path / "auth.sqlite"
    empty.write_bytes(b"")
    config = write_config(tmp_path, [{"name": "groveauth", "source": str(empty)}])
    store = open_store(config)
    with pytest.raises(DatabaseNotFound, match="0 bytes.*nothing was backed up"):
        night(config, store, YESTERDAY)
    assert store.list_daily() == []
