"""Weekly archives (plain Python): built from real dumps, read back with Patina's reader and with the standard
tools, verified member by member, rebuilt only when that loses nothing, and published all-or-nothing."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
import subprocess
import tarfile
from datetime import date
from pathlib import Path

import pytest
import zstandard
from support.archives import (  # noqa: F401 - fixtures, shared with the retention and Dagster tests
    NAMES,
    archives,
    back_up_day,
    config,
    day_of_restored,
    flip_sql,
    make_source,
    rewrite_archive,
    store,
    touch,
)
from support.configs import small_database, write_config
from support.s3_server import FaultProxy, create_bucket, moto_server

from patina_assets.archive import INDEX_NAME, ArchiveStore, EmptyWeek, read_archive_index
from patina_assets.backup import open_store
from patina_assets.storage import (
    ArchiveManifest,
    CorruptManifest,
    InvalidKey,
    StorageError,
    StorageIntegrityError,
    daily_manifest_key,
    parse_weekly_key,
    validate_week,
    week_days,
    week_start_of,
    weekly_manifest_key,
    weekly_verification_key,
)

WEEK = "2026-01-04"  # a Sunday
DAYS = week_days(WEEK)


# -- weeks -----------------------------------------------------------------------------------------


def test_weeks_run_sunday_to_saturday_and_are_named_by_their_sunday():
    assert week_start_of("2026-01-04") == date(2026, 1, 4)
    assert week_start_of("2026-01-10") == date(2026, 1, 4)  # Saturday
    assert week_start_of("2026-01-11") == date(2026, 1, 11)
    assert week_start_of("2026-01-01") == date(2025, 12, 28)  # Thursday: the week began the Sunday before
    assert week_days(WEEK) == [f"2026-01-{d:02d}" for d in range(4, 11)]
    with pytest.raises(InvalidKey, match="Sunday.*2026-01-04"):
        validate_week("2026-01-05")
    assert parse_weekly_key("weekly/2026-01-04.manifest.json").kind == "manifest"
    parsed = parse_weekly_key("weekly/2026-01-04.20260111T040012123456Z-3f9a1c.tar.zst")
    assert (parsed.kind, parsed.week, parsed.format) == ("archive", WEEK, "tar.zst")
    for stray in ("weekly/2026-W01.tar.gz", "weekly/2026-01-04.tar.zst", "weekly/2026-02-30.manifest.json", "daily/x"):
        assert parse_weekly_key(stray) is None


# -- building and reading --------------------------------------------------------------------------


def test_a_week_is_one_archive_with_every_daily_its_manifest_and_an_index(tmp_path, config, store, archives):
    for day in DAYS:
        back_up_day(config, store, day)
    outcome = archives.build(WEEK, NAMES)
    manifest = outcome.manifest
    assert (outcome.action, outcome.verification.ok, outcome.verification.problems) == ("created", True, [])
    assert outcome.verification.members == 14
    index = manifest.index
    assert index.days == tuple(DAYS) and index.databases == ("groveauth", "scout-db")
    assert index.is_complete and index.missing == {"groveauth": (), "scout-db": ()}
    dailies = {(m.day, m.database): m for m in store.list_daily()}
    assert {m.slot for m in index.members} == set(dailies)
    for member in index.members:
        daily = dailies[member.slot]
        assert (member.sql_sha256, member.sql_bytes, member.daily_key) == (daily.sql_sha256, daily.sql_bytes, daily.key)
    # One object plus its manifest, which is what makes it count; the manifest records the object exactly.
    objects = {info.key: info for info in store.bucket.list("weekly/")}
    assert set(objects) == {manifest.key, weekly_manifest_key(WEEK), weekly_verification_key(WEEK)}
    stored = store.bucket.get_bytes(manifest.key)
    assert len(stored) == manifest.bytes and hashlib.sha256(stored).hexdigest() == manifest.sha256
    assert archives.get_manifest(WEEK) == manifest and archives.list() == [manifest]
    # Successive days of a database sit side by side, SQL then manifest, and the index comes last.
    path = tmp_path / "week.tar.zst"
    path.write_bytes(stored)
    names = tarfile.open(
        fileobj=io.BytesIO(zstandard.ZstdDecompressor().decompress(stored, max_output_size=1 << 26))
    ).getnames()
    expected = [p for m in sorted(index.members, key=lambda m: (m.database, m.day)) for p in (m.path, m.manifest_path)]
    assert names == expected + [INDEX_NAME]
    assert read_archive_index(path) == index


def test_a_week_holding_a_day_an_older_patina_backed_up_keeps_its_sha256_digests(config, store, archives):
    # A manifest written before digest versions (no `digest_version`: SHA-256 digests) is archived as version 1,
    # beside days of version 2, and each archived manifest still says which hash its digests are.
    for day in DAYS[:2]:
        back_up_day(config, store, day, ["groveauth"])
    path = config.bucket.local.path / daily_manifest_key(DAYS[0], "groveauth")
    older = {k: v for k, v in json.loads(path.read_text()).items() if k != "digest_version"}
    path.write_text(json.dumps(older, indent=2, sort_keys=True) + "\n")
    outcome = archives.build(WEEK, ["groveauth"])
    assert outcome.verification.ok and outcome.verification.members == 2, outcome.verification.problems
    stored = store.bucket.get_bytes(outcome.manifest.key)
    archive = tarfile.open(fileobj=io.BytesIO(zstandard.ZstdDecompressor().decompress(stored, max_output_size=1 << 26)))
    versions = {
        member.day: json.loads(archive.extractfile(member.manifest_path).read())["digest_version"]
        for member in outcome.manifest.index.members
    }
    assert versions == {DAYS[0]: 1, DAYS[1]: 2}


@pytest.mark.parametrize("fmt", ["tar.zst", "tar.gz"])
def test_standard_tools_open_the_archive_and_every_member_restores(tmp_path, config, store, archives, fmt):
    for day in DAYS[:3]:
        back_up_day(config, store, day)
    manifest = archives.build(WEEK, NAMES, fmt).manifest
    assert manifest.key.endswith("." + fmt)
    path = tmp_path / Path(manifest.key).name
    path.write_bytes(store.bucket.get_bytes(manifest.key))
    out = tmp_path / "out"
    out.mkdir()
    # The commands the README gives.
    if fmt == "tar.zst":
        subprocess.run(["zstd", "-q", "-d", "--long=27", str(path), "-o", str(tmp_path / "week.tar")], check=True)
        subprocess.run(["tar", "-xf", str(tmp_path / "week.tar"), "-C", str(out)], check=True)
    else:
        subprocess.run(["tar", "-xzf", str(path), "-C", str(out)], check=True)
    assert json.loads((out / INDEX_NAME).read_text()) == manifest.index.to_dict()
    for member in manifest.index.members:
        sql = out / member.path
        assert hashlib.sha256(sql.read_bytes()).hexdigest() == member.sql_sha256
        assert json.loads((out / member.manifest_path).read_text())["sql_sha256"] == member.sql_sha256
        assert day_of_restored(sql, tmp_path / f"{member.database}-{member.day}.sqlite") == member.day
    # Patina's own reader extracts the same files from the bucket in one pass, and reads both formats.
    extracted = archives.extract(manifest, tmp_path / "patina")
    assert set(extracted) == {m.slot for m in manifest.index.members}
    for slot, sql in extracted.items():
        assert sql.read_bytes() == (out / "daily" / slot[0] / f"{slot[1]}.sql").read_bytes()
    assert read_archive_index(path) == manifest.index


def test_repeats_across_days_are_stored_once(tmp_path):
    """A week of a database that barely changes costs about one day of it in tar.zst; gzip's 32 KiB window
    cannot reach yesterday's copy, so tar.gz costs about seven."""
    source = tmp_path / "avatars.sqlite"
    small_database(source, 100, blob_bytes=2_000)  # ~400 KB of SQL a day, most of it incompressible
    db = sqlite3.connect(source)
    db.execute("CREATE TABLE days(day TEXT PRIMARY KEY)")
    db.commit()
    db.close()
    config = write_config(tmp_path, [{"name": "avatars", "source": str(source)}])
    store = open_store(config)
    for day in DAYS:
        back_up_day(config, store, day)
    one_day = max(m.bytes for m in store.list_daily())  # one compressed daily dump
    zst = ArchiveStore(store).build(WEEK, ["avatars"], "tar.zst").manifest
    store.bucket.delete_many([zst.key, weekly_manifest_key(WEEK)])
    gz = ArchiveStore(store).build(WEEK, ["avatars"], "tar.gz").manifest
    assert zst.index.sql_bytes > 7 * 350_000
    assert zst.bytes < 1.3 * one_day
    assert gz.bytes > 5 * one_day


def test_a_missing_day_and_a_database_added_mid_week_do_not_fail_the_week(config, store, archives):
    for day in DAYS:
        if day != "2026-01-06":
            back_up_day(config, store, day, ["groveauth"])
        if day >= "2026-01-08":  # scout-db is added on Thursday
            back_up_day(config, store, day, ["scout-db"])
    outcome = archives.build(WEEK, NAMES)
    index = outcome.manifest.index
    assert outcome.verification.ok and not index.is_complete
    assert index.missing == {"groveauth": ("2026-01-06",), "scout-db": tuple(DAYS[:4])}
    assert len(index.members) == 6 + 3


def test_days_before_the_start_date_are_not_missing(config, store, archives):
    """The first week begins on the Sunday before the configured start (2026-01-01, a Thursday)."""
    first_week = "2025-12-28"
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        back_up_day(config, store, day)
    index = archives.build(first_week, NAMES, first_day=config.start_date).manifest.index
    assert index.days == ("2026-01-01", "2026-01-02", "2026-01-03") and index.is_complete


def test_a_daily_whose_bytes_do_not_match_its_manifest_is_left_out_and_reported(config, store, archives):
    for day in DAYS[:3]:
        back_up_day(config, store, day)
    damaged = store.get_manifest(DAYS[1], "groveauth")
    data = bytearray(store.bucket.get_bytes(damaged.key))
    data[len(data) // 2] ^= 0xFF
    store.bucket.put_bytes(damaged.key, bytes(data))
    outcome = archives.build(WEEK, NAMES)
    index = outcome.manifest.index
    assert outcome.verification.ok
    assert index.member(DAYS[1], "groveauth") is None and DAYS[1] in index.missing["groveauth"]
    assert damaged.key in index.skipped[f"daily/{DAYS[1]}/groveauth.manifest.json"]  # zstd's checksum caught it


def test_an_empty_week_is_refused(archives):
    with pytest.raises(EmptyWeek, match="no daily backups.*run the nightly job"):
        archives.build(WEEK, NAMES)


# -- rebuilding -----------------------------------------------------------------------------------


def test_rebuilding_keeps_what_cannot_be_rebuilt(config, store, archives):
    for day in DAYS[:3]:
        back_up_day(config, store, day)
    first = archives.build(WEEK, NAMES).manifest
    # Same dailies: nothing is uploaded again.
    again = archives.build(WEEK, NAMES)
    assert (again.action, again.manifest) == ("unchanged", first)
    # A new day and a re-run day: rebuilt, under a new key; the superseded archive is removed.
    back_up_day(config, store, DAYS[3])
    back_up_day(config, store, DAYS[0], ["groveauth"])
    replaced = archives.build(WEEK, NAMES)
    assert replaced.action == "replaced" and replaced.verification.ok and replaced.manifest.key != first.key
    assert len(replaced.manifest.index.members) == 8
    assert (
        replaced.manifest.index.member(DAYS[0], "groveauth").sql_sha256
        == store.get_manifest(DAYS[0], "groveauth").sql_sha256
    )
    assert [i.key for i in store.bucket.list("weekly/")] == sorted(
        [replaced.manifest.key, weekly_manifest_key(WEEK), weekly_verification_key(WEEK)]
    )
    # Once a daily it holds is gone, the archive is the only copy: never replaced, and what it lacks is said.
    store.delete_daily(DAYS[1], "scout-db")
    back_up_day(config, store, DAYS[4], ["groveauth"])
    kept = archives.build(WEEK, NAMES)
    assert kept.action == "kept" and kept.manifest == replaced.manifest and kept.verification.ok
    assert kept.not_archived == [(DAYS[4], "groveauth")]
    assert "only copy" in kept.reason


def test_a_stored_archive_that_fails_verification_is_rebuilt_while_its_dailies_exist(config, store, archives):
    for day in DAYS[:2]:
        back_up_day(config, store, day)
    first = archives.build(WEEK, NAMES).manifest
    store.bucket.put_bytes(first.key, store.bucket.get_bytes(first.key)[:-100])  # truncated behind our back
    rebuilt = archives.build(WEEK, NAMES)
    assert rebuilt.action == "replaced" and rebuilt.verification.ok and rebuilt.manifest.key != first.key


# -- verification ---------------------------------------------------------------------------------


def test_verification_checks_every_member_against_its_daily_manifest(config, store, archives):
    for day in DAYS[:3]:
        back_up_day(config, store, day)
    manifest = archives.build(WEEK, NAMES).manifest
    member = manifest.index.member(DAYS[1], "scout-db")
    forged = rewrite_archive(archives, manifest, flip_sql(member.path))
    result = archives.verify(forged)
    assert not result.ok and result.verified == {}
    assert any(member.path in p and "daily manifest records" in p for p in result.problems)
    assert not result.holds(DAYS[0], "groveauth", manifest.index.member(DAYS[0], "groveauth").sql_sha256)
    with pytest.raises(StorageIntegrityError, match="does not match its sha256"):
        archives.extract(forged, Path(config.bucket.local.path).parent / "x", [member.slot])


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("truncate", "cannot be read to its end"),
        ("flip_object", "not the one its manifest records"),
        ("delete", "missing from the bucket"),
        ("index", "index.json inside the archive differs"),
        ("drop_member", "members missing from the archive"),
        ("daily_manifest", "daily manifest differs"),
    ],
)
def test_verification_names_what_is_wrong(config, store, archives, damage, expected):
    for day in DAYS[:2]:
        back_up_day(config, store, day)
    manifest = archives.build(WEEK, NAMES).manifest
    data = store.bucket.get_bytes(manifest.key)
    if damage == "truncate":
        store.bucket.put_bytes(manifest.key, data[: len(data) // 2])
    elif damage == "flip_object":  # the tar inside still checks out; the object is not the recorded one
        rewrite_archive(archives, manifest, lambda name, d: d, update_manifest=False)
    elif damage == "delete":
        store.bucket.delete(manifest.key)
    elif damage == "index":
        manifest = rewrite_archive(
            archives,
            manifest,
            lambda name, d: re.sub(rb'"rows": (\d+)', b'"rows": 99999', d, count=1) if name == INDEX_NAME else d,
        )
    elif damage == "drop_member":
        manifest = rewrite_archive(archives, manifest, lambda name, d: d)
        forged_index = manifest.index
        extra = dict(forged_index.to_dict())
        # the manifest lists a member the tar does not hold
        member = forged_index.members[0]
        extra_member = {**member.__dict__, "day": DAYS[2]}
        extra["members"] = extra["members"] + [extra_member]
        from patina_assets.storage import ArchiveIndex

        manifest = ArchiveManifest(
            ArchiveIndex.from_dict(extra, key="test"),
            manifest.key,
            manifest.bytes,
            manifest.sha256,
            manifest.created_at,
        )
    elif damage == "daily_manifest":
        path = manifest.index.members[0].manifest_path
        manifest = rewrite_archive(
            archives, manifest, lambda name, d: d.replace(b'"rows"', b'"rows" ') if name == path else d
        )
    result = archives.verify(manifest)
    assert not result.ok and result.verified == {}
    assert any(expected in p for p in result.problems), result.problems


def test_manifests_that_cannot_be_trusted_are_refused_with_their_key(archives, config, store):
    back_up_day(config, store, DAYS[0])
    manifest = archives.build(WEEK, NAMES).manifest
    key = weekly_manifest_key(WEEK)
    good = json.loads(manifest.to_json())
    for broken, message in [
        (b"{not json", "not valid JSON"),
        (
            json.dumps({**good, "key": "weekly/2026-01-11.20260111T040012123456Z-3f9a1c.tar.zst"}).encode(),
            "not a tar.zst archive of that week",
        ),
        (json.dumps({**good, "index": {**good["index"], "schema_version": 9}}).encode(), "schema_version"),
        (json.dumps({**good, "index": {**good["index"], "days": ["2026-01-12"]}}).encode(), "outside the week"),
    ]:
        store.bucket.put_bytes(key, broken)
        with pytest.raises(CorruptManifest, match=message) as info:
            archives.get_manifest(WEEK)
        assert key in str(info.value)
    inventory = archives.inventory()
    assert key in inventory.corrupt and inventory.archives == [] and inventory.orphans == []


# -- publishing -----------------------------------------------------------------------------------


@pytest.fixture
def s3_config(tmp_path, monkeypatch):
    monkeypatch.setenv("PATINA_TEST_KEY", "testing")
    monkeypatch.setenv("PATINA_TEST_SECRET", "testing")
    sources = tmp_path / "sources"
    sources.mkdir()
    databases = [{"name": "groveauth", "source": str(make_source(sources / "auth.sqlite"))}]
    with moto_server() as endpoint, FaultProxy(endpoint) as proxy:
        bucket = {
            "s3": {
                "bucket": create_bucket(endpoint),
                "endpoint_url": proxy.endpoint_url,
                "region": "us-east-1",
                "access_key_id_env": "PATINA_TEST_KEY",
                "secret_access_key_env": "PATINA_TEST_SECRET",
            }
        }
        yield write_config(tmp_path, databases, bucket), proxy


def test_a_failed_manifest_write_leaves_the_previous_archive_whole_and_no_orphan(s3_config):
    config, proxy = s3_config
    store = open_store(config)
    archives = ArchiveStore(store)
    back_up_day(config, store, DAYS[0])
    first = archives.build(WEEK, ["groveauth"]).manifest
    back_up_day(config, store, DAYS[1])
    proxy.fail(operation="PutObject", key=r"weekly/.*\.manifest\.json$", status=403, code="AccessDenied")  # no retries
    with pytest.raises(StorageError):
        archives.build(WEEK, ["groveauth"])
    proxy.clear()
    assert archives.get_manifest(WEEK) == first and archives.verify(first).ok
    assert [i.key for i in store.bucket.list("weekly/")] == sorted(
        [first.key, weekly_manifest_key(WEEK), weekly_verification_key(WEEK)]
    )
    # The next attempt succeeds and replaces it.
    assert archives.build(WEEK, ["groveauth"]).action == "replaced"


def test_an_archive_manifest_that_cannot_be_confirmed_fails_retryable_and_keeps_both_archives(s3_config):
    """The weekly publish is the daily one: manifest PUT and read-back both fail -> retryable, nothing deleted."""
    config, proxy = s3_config
    store = open_store(config)
    archives = ArchiveStore(store)
    back_up_day(config, store, DAYS[0])
    first = archives.build(WEEK, ["groveauth"]).manifest
    back_up_day(config, store, DAYS[1])
    # 403s: the client does not retry them, so each fault is one request.  The build reads the manifest twice
    # before publishing (is there one to keep? which one does it replace?); the third read is the read-back.
    proxy.fail(operation="PutObject", key=r"weekly/.*\.manifest\.json$", status=403, code="AccessDenied")
    proxy.fail(operation="GetObject", key=r"weekly/.*\.manifest\.json$", skip=2, status=403, code="AccessDenied")
    with pytest.raises(StorageError) as info:
        archives.build(WEEK, ["groveauth"])
    assert info.value.retryable and "every object is kept" in str(info.value)
    proxy.clear()
    assert archives.get_manifest(WEEK) == first and archives.verify(first).ok
    assert len([i for i in store.bucket.list("weekly/") if i.key.endswith(".tar.zst")]) == 2
    assert archives.build(WEEK, ["groveauth"]).action == "replaced"
    assert len([i for i in store.bucket.list("weekly/") if i.key.endswith(".tar.zst")]) == 1


def test_delete_removes_the_manifest_first_then_every_archive_of_the_week(config, store, archives):
    back_up_day(config, store, DAYS[0])
    manifest = archives.build(WEEK, NAMES).manifest
    orphan = manifest.key.replace(manifest.key.split(".")[1], "20200101T000000000000Z-000000")
    store.bucket.put_bytes(orphan, b"half an archive")
    assert archives.inventory().orphans[0].key == orphan
    deleted = archives.delete(WEEK)
    assert deleted[0] == weekly_manifest_key(WEEK)
    assert set(deleted[1:]) == {manifest.key, orphan, weekly_verification_key(WEEK)}
    assert list(store.bucket.list("weekly/")) == [] and archives.get_manifest(WEEK) is None
