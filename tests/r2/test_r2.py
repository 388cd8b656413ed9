"""R2 bucket backups against moto's S3 server: one source bucket and one backup bucket on the loopback server,
each behind its own FaultProxy so the tests count what reached each side and break listings on purpose
(the fixtures: conftest.py)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from support.configs import write_config
from support.s3_server import FaultProxy, create_bucket, direct_client, patina_client

from patina_assets import cli
from patina_assets.backup import open_store
from patina_assets.cli_support import open_catalog
from patina_assets.config import ConfigError, RetentionConfig
from patina_assets.r2 import (
    GarbageCollectionRefused,
    RestoreRefused,
    SnapshotNotFound,
    backup_bucket,
    check_complete,
    check_objects,
    collect_garbage,
    judge_size,
    kept_days,
    list_snapshots,
    object_key,
    open_entries,
    restore_snapshot,
    snapshot_manifest_key,
)
from patina_assets.r2.backup import SPOOL_BYTES
from patina_assets.r2.layout import parse_snapshot_key
from patina_assets.status import Orchestrator, Snapshot
from patina_assets.storage import MiB, S3Bucket, StorageError, StorageIntegrityError, utc_timestamp


def put(moto_endpoint, bucket: str, key: str, data: bytes, **extra) -> None:
    direct_client(moto_endpoint).put_object(Bucket=bucket, Key=key, Body=data, **extra)


def delete(moto_endpoint, bucket: str, key: str) -> None:
    direct_client(moto_endpoint).delete_object(Bucket=bucket, Key=key)


def object_puts(proxy: FaultProxy) -> list[str]:
    """Keys of the content-addressed objects written (single PUTs and multipart uploads)."""
    return [
        r.key
        for r in proxy.seen()
        if r.operation in ("PutObject", "CreateMultipartUpload") and r.key.startswith("r2/objects/")
    ]


def fill(moto_endpoint, bucket: str, count: int = 10) -> dict[str, bytes]:
    objects = {f"media/{i:03d}.bin": f"object {i} ".encode() * (i + 1) for i in range(count)}
    for key, data in objects.items():
        put(moto_endpoint, bucket, key, data, ContentType="image/png", Metadata={"owner": f"user{key[-7:-4]}"})
    return objects


def entries_of(backup, day, name="grove-media"):
    snapshots, corrupt = list_snapshots(backup, name)
    assert not corrupt
    manifest = next(m for m in snapshots if m.day == day)
    return manifest, {entry.key: entry for entry in open_entries(backup, manifest)}


# --------------------------------------------------------------------------------------------------
# Backups
# --------------------------------------------------------------------------------------------------


def test_first_backup_stores_every_object_by_sha256_and_writes_the_manifest_last(
    moto_endpoint, source, source_name, backup, backup_proxy
):
    objects = fill(moto_endpoint, source_name)
    manifest = backup_bucket(source, backup, name="grove-media", day="2026-03-01")

    assert (manifest.objects, manifest.bytes) == (10, sum(map(len, objects.values())))
    assert manifest.copied_objects == 10 and manifest.reused_objects == 0
    _, entries = entries_of(backup, "2026-03-01")
    assert sorted(entries) == sorted(objects)
    for key, data in objects.items():
        entry = entries[key]
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        assert entry.size == len(data) and entry.etag == hashlib.md5(data).hexdigest()
        assert entry.content_type == "image/png" and entry.metadata == {"owner": f"user{key[-7:-4]}"}
        assert backup.get_bytes(object_key(entry.sha256)) == data
    writes = [r.key for r in backup_proxy.seen() if r.method == "PUT"]
    assert writes[-1] == snapshot_manifest_key("2026-03-01", "grove-media")  # the manifest is the last write
    assert writes[-2] == manifest.entries_key


def test_second_backup_copies_only_new_and_changed_objects(
    moto_endpoint, source, source_name, source_proxy, backup, backup_proxy
):
    objects = fill(moto_endpoint, source_name)
    backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    put(moto_endpoint, source_name, "media/003.bin", b"changed bytes")
    put(moto_endpoint, source_name, "media/new.bin", b"a new object")
    delete(moto_endpoint, source_name, "media/005.bin")
    source_proxy.clear()
    backup_proxy.clear()

    manifest = backup_bucket(source, backup, name="grove-media", day="2026-03-02")

    read = sorted(r.key for r in source_proxy.seen("GetObject"))
    assert read == ["media/003.bin", "media/new.bin"]  # unchanged objects are not even read
    assert sorted(object_puts(backup_proxy)) == sorted(
        object_key(hashlib.sha256(data).hexdigest()) for data in (b"changed bytes", b"a new object")
    )
    assert (manifest.objects, manifest.copied_objects, manifest.copied_bytes) == (10, 2, 25)
    _, entries = entries_of(backup, "2026-03-02")
    assert "media/005.bin" not in entries  # deleted in the source: absent from the new snapshot
    assert entries["media/003.bin"].sha256 == hashlib.sha256(b"changed bytes").hexdigest()
    assert entries["media/004.bin"].sha256 == hashlib.sha256(objects["media/004.bin"]).hexdigest()
    _, before = entries_of(backup, "2026-03-01")
    assert "media/005.bin" in before  # the past snapshot still has it


def test_the_same_bytes_under_two_keys_are_stored_once(moto_endpoint, source, source_name, backup, backup_proxy):
    for key in ("a/copy-1", "b/copy-2", "c/copy-3"):
        put(moto_endpoint, source_name, key, b"same bytes everywhere")
    manifest = backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    assert manifest.objects == 3 and manifest.copied_objects == 1 and manifest.reused_objects == 2
    assert len(object_puts(backup_proxy)) == 1


def test_prefix_and_exclude_patterns_choose_the_keys(moto_endpoint, source, source_name, backup):
    for key in ("media/a.png", "media/tmp/x.partial", "media/b.png", "other/c.png"):
        put(moto_endpoint, source_name, key, key.encode())
    manifest = backup_bucket(
        source, backup, name="grove-media", day="2026-03-01", prefix="media/", exclude=["*.partial"]
    )
    _, entries = entries_of(backup, "2026-03-01")
    assert sorted(entries) == ["media/a.png", "media/b.png"]
    assert manifest.excluded_objects == 1 and manifest.exclude == ["*.partial"]


def test_large_objects_stream_through_a_file_and_upload_in_parts(
    moto_endpoint, source, source_name, backup, backup_proxy
):
    data = bytes(range(256)) * (6 * MiB // 256)  # over SPOOL_BYTES and over the 5 MiB part size
    assert len(data) > SPOOL_BYTES
    put(moto_endpoint, source_name, "video/big.mp4", data)
    backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    sha256 = hashlib.sha256(data).hexdigest()
    assert [r.key for r in backup_proxy.seen("CreateMultipartUpload")] == [object_key(sha256)]
    assert len(backup_proxy.seen("UploadPart")) == 2
    assert hashlib.sha256(backup.get_bytes(object_key(sha256))).hexdigest() == sha256


def test_a_listing_that_fails_midway_publishes_nothing(moto_endpoint, source, source_name, source_proxy, backup):
    fill(moto_endpoint, source_name)
    first = backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    put(moto_endpoint, source_name, "media/later.bin", b"later")
    source_proxy.fail(operation="ListObjectsV2", skip=2)  # the third page of ten objects in pages of 3

    with pytest.raises(StorageError, match="cannot list"):
        backup_bucket(source, backup, name="grove-media", day="2026-03-02")
    with pytest.raises(StorageError, match="cannot list"):
        backup_bucket(source, backup, name="grove-media", day="2026-03-01")  # a re-run of a published day

    snapshots, _ = list_snapshots(backup, "grove-media")
    assert [m.day for m in snapshots] == ["2026-03-01"]
    assert snapshots[0] == first  # the day's published snapshot stands as it was
    assert [info.key for info in backup.list("r2/2026-03-02/")] == []


def test_a_copy_that_fails_publishes_nothing(moto_endpoint, source, source_name, source_proxy, backup):
    fill(moto_endpoint, source_name, 5)
    source_proxy.fail(operation="GetObject", key="media/003", status=403, code="AccessDenied")
    with pytest.raises(StorageError, match="access denied"):
        backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    assert list_snapshots(backup, "grove-media") == ([], {})


def test_a_damaged_previous_snapshot_only_costs_reads(
    moto_endpoint, source, source_name, source_proxy, backup, backup_proxy
):
    fill(moto_endpoint, source_name, 4)
    first = backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    backup.put_bytes(first.entries_key, gzip.compress(b'{"key": "media/000.bin", "broken": true}\n'))
    backup_proxy.clear()
    second = backup_bucket(source, backup, name="grove-media", day="2026-03-02")
    assert second.objects == 4 and second.reused_objects == 4  # read again, but every object was already stored
    assert object_puts(backup_proxy) == []


def test_a_rerun_of_a_day_replaces_its_snapshot_and_removes_the_old_entries(moto_endpoint, source, source_name, backup):
    fill(moto_endpoint, source_name, 3)
    first = backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    put(moto_endpoint, source_name, "media/more.bin", b"more")
    second = backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    assert second.objects == 4 and second.entries_key != first.entries_key
    assert sorted(info.key for info in backup.list("r2/2026-03-01/")) == sorted(
        [second.entries_key, snapshot_manifest_key("2026-03-01", "grove-media")]
    )


def test_the_entries_file_is_gzip_json_lines_in_key_order(moto_endpoint, source, source_name, backup):
    fill(moto_endpoint, source_name, 4)
    manifest = backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    raw = backup.get_bytes(manifest.entries_key)
    assert hashlib.sha256(raw).hexdigest() == manifest.entries_sha256
    lines = [json.loads(line) for line in gzip.decompress(raw).splitlines()]
    assert [line["key"] for line in lines] == sorted(line["key"] for line in lines)
    assert set(lines[0]) == {"key", "size", "etag", "sha256", "last_modified", "content_type", "metadata"}
    stored = json.loads(backup.get_bytes(snapshot_manifest_key("2026-03-01", "grove-media")))
    assert stored["objects"] == 4 and stored["kind"] == "r2-snapshot"


# --------------------------------------------------------------------------------------------------
# Retention and garbage collection
# --------------------------------------------------------------------------------------------------


def test_kept_days_are_the_newest_seven_and_the_newest_of_twelve_weeks():
    days = [(datetime(2026, 1, 1) + timedelta(days=i)).date().isoformat() for i in range(120)]
    kept = kept_days(days, RetentionConfig(daily_days=7, weekly_weeks=12))
    assert set(days[-7:]) <= kept
    weekly = kept - set(days[-7:])
    assert all(datetime.fromisoformat(day).isoweekday() == 7 for day in weekly)  # each week's newest: a Sunday
    weeks = sorted({datetime.fromisoformat(day).isocalendar()[:2] for day in days}, reverse=True)
    assert {datetime.fromisoformat(day).isocalendar()[:2] for day in kept} == set(weeks[:12])
    assert len(kept) == 7 + 10  # the two newest weeks' newest days are among the seven dailies


def test_garbage_collection_never_deletes_an_object_a_kept_snapshot_names(moto_endpoint, source, source_name, backup):
    retention = RetentionConfig(daily_days=2, weekly_weeks=1)
    put(moto_endpoint, source_name, "keep/forever", b"never changes")
    days = ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]
    for day in days:
        put(moto_endpoint, source_name, "daily/changing", f"content of {day}".encode())
        backup_bucket(source, backup, name="grove-media", day=day)
    later = datetime.now(UTC) + timedelta(days=2)  # past the grace period

    result = collect_garbage(backup, retention, now=later)

    snapshots, _ = list_snapshots(backup, "grove-media")
    assert [m.day for m in snapshots] == ["2026-03-04", "2026-03-05"]
    assert sorted(result.deleted_snapshots) == [snapshot_manifest_key(d, "grove-media") for d in days[:2]]
    for manifest in snapshots:
        for entry in open_entries(backup, manifest):
            assert backup.stat(object_key(entry.sha256)) is not None
    for gone in ("content of 2026-03-02", "content of 2026-03-03"):
        assert backup.stat(object_key(hashlib.sha256(gone.encode()).hexdigest())) is None
    assert result.deleted_objects == 2
    assert [i.key for i in backup.list("r2/2026-03-02/")] == []  # their entries files went too


def test_garbage_collection_leaves_young_unnamed_objects_alone(moto_endpoint, source, source_name, backup):
    put(moto_endpoint, source_name, "x", b"x")
    backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    backup.put_bytes(object_key(hashlib.sha256(b"in flight").hexdigest()), b"in flight")
    result = collect_garbage(backup, RetentionConfig())
    assert result.young_unreferenced == 1 and result.deleted_objects == 0


def test_garbage_collection_deletes_no_object_while_a_backup_runs(moto_endpoint, source, source_name, backup):
    put(moto_endpoint, source_name, "x", b"old")
    backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    put(moto_endpoint, source_name, "x", b"new")
    backup_bucket(source, backup, name="grove-media", day="2026-03-02")
    backup.put_bytes("r2/in-progress/grove-storage.20260303T030000000000Z-abcdef.json", b"{}")
    later = datetime.now(UTC) + timedelta(hours=1)  # past no grace period: the marker counts as running
    result = collect_garbage(backup, RetentionConfig(daily_days=1, weekly_weeks=1), now=later, grace=timedelta(hours=2))
    assert result.held_back_by and result.deleted_objects == 0
    assert backup.stat(object_key(hashlib.sha256(b"old").hexdigest())) is not None
    assert [m.day for m in list_snapshots(backup, "grove-media")[0]] == ["2026-03-02"]  # snapshots still go


def test_a_backup_leaves_no_in_progress_marker(moto_endpoint, source, source_name, backup):
    put(moto_endpoint, source_name, "x", b"x")
    backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    assert list(backup.list("r2/in-progress/")) == []


def test_garbage_collection_refuses_when_a_manifest_cannot_be_read(moto_endpoint, source, source_name, backup):
    put(moto_endpoint, source_name, "x", b"x")
    backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    backup.put_bytes(snapshot_manifest_key("2026-03-02", "grove-media"), b"{not json")
    with pytest.raises(GarbageCollectionRefused, match="nothing is deleted"):
        collect_garbage(backup, RetentionConfig(), now=datetime.now(UTC) + timedelta(days=2))
    assert backup.stat(object_key(hashlib.sha256(b"x").hexdigest())) is not None


# --------------------------------------------------------------------------------------------------
# Restore
# --------------------------------------------------------------------------------------------------


def two_nights(moto_endpoint, source, source_name, backup) -> dict[str, bytes]:
    objects = fill(moto_endpoint, source_name, 5)
    backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    put(moto_endpoint, source_name, "media/001.bin", b"overwritten later")
    delete(moto_endpoint, source_name, "media/002.bin")
    backup_bucket(source, backup, name="grove-media", day="2026-03-02")
    return objects


def test_restore_a_past_snapshot_into_a_directory(moto_endpoint, source, source_name, backup, tmp_path):
    objects = two_nights(moto_endpoint, source, source_name, backup)
    result = restore_snapshot(backup, "2026-03-01", "grove-media", tmp_path / "restored")
    assert result.objects == 5
    for key, data in objects.items():
        assert (tmp_path / "restored" / key).read_bytes() == data
    assert not list((tmp_path / "restored").rglob(".patina-tmp*"))


def test_restore_into_a_bucket_keeps_content_type_and_metadata(moto_endpoint, source, source_name, backup):
    objects = two_nights(moto_endpoint, source, source_name, backup)
    target = create_bucket(moto_endpoint)
    restore_snapshot(
        backup,
        "2026-03-01",
        "grove-media",
        f"s3://{target}/restored",
        prefix="media/00",
        s3_client=patina_client(moto_endpoint),
    )
    s3 = direct_client(moto_endpoint)
    for key, data in objects.items():
        got = s3.get_object(Bucket=target, Key=f"restored/{key}")
        assert got["Body"].read() == data
        assert got["ContentType"] == "image/png" and got["Metadata"] == {"owner": f"user{key[-7:-4]}"}


def test_keys_patinas_layout_refuses_are_backed_up_and_restored_into_a_bucket(moto_endpoint, source_name, backup):
    # S3 allows keys Patina never writes itself ("folder/" markers, "a//b", "../x"): a media bucket may hold them.
    odd = {"folder/": b"", "a//b": b"double slash", "../up": b"dot dot", "x/./y": b"dot"}
    for key, data in odd.items():
        put(moto_endpoint, source_name, key, data, ContentType="text/plain", Metadata={"k": "v"})
    source = S3Bucket(patina_client(moto_endpoint), source_name)
    manifest = backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    assert manifest.objects == len(odd)
    target = create_bucket(moto_endpoint)
    restore_snapshot(backup, "2026-03-01", "grove-media", f"s3://{target}", s3_client=patina_client(moto_endpoint))
    s3 = direct_client(moto_endpoint)
    for key, data in odd.items():
        got = s3.get_object(Bucket=target, Key=key)
        assert got["Body"].read() == data
        assert got["ContentType"] == "text/plain" and got["Metadata"] == {"k": "v"}


def test_restore_never_overwrites_unless_asked(moto_endpoint, source, source_name, backup, tmp_path):
    objects = two_nights(moto_endpoint, source, source_name, backup)
    target = tmp_path / "restored"
    (target / "media").mkdir(parents=True)
    (target / "media" / "003.bin").write_bytes(b"local edit")
    with pytest.raises(RestoreRefused, match="1 of the 5 objects .* already exist.*--overwrite"):
        restore_snapshot(backup, "2026-03-01", "grove-media", target)
    assert sorted(p.name for p in (target / "media").iterdir()) == ["003.bin"]  # nothing was written
    result = restore_snapshot(backup, "2026-03-01", "grove-media", target, overwrite=True)
    assert result.overwritten == 1 and (target / "media" / "003.bin").read_bytes() == objects["media/003.bin"]


def test_restore_to_a_bucket_refuses_existing_keys(moto_endpoint, source, source_name, backup):
    two_nights(moto_endpoint, source, source_name, backup)
    with pytest.raises(RestoreRefused, match="already exist"):  # restoring over the source itself
        restore_snapshot(
            backup, "2026-03-01", "grove-media", f"s3://{source_name}", s3_client=patina_client(moto_endpoint)
        )


def test_restore_refuses_a_key_that_would_leave_the_directory(moto_endpoint, source, source_name, backup, tmp_path):
    put(moto_endpoint, source_name, "../escape", b"outside")
    put(moto_endpoint, source_name, "safe", b"inside")
    backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    with pytest.raises(RestoreRefused, match="not a safe relative path"):
        restore_snapshot(backup, "2026-03-01", "grove-media", tmp_path / "restored")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "restored" / "safe").exists()


def test_restore_detects_a_damaged_object(moto_endpoint, source, source_name, backup, tmp_path):
    put(moto_endpoint, source_name, "photo.jpg", b"the real bytes")
    backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    backup.put_bytes(object_key(hashlib.sha256(b"the real bytes").hexdigest()), b"the rEal bytes")
    with pytest.raises(StorageIntegrityError, match="does not match"):
        restore_snapshot(backup, "2026-03-01", "grove-media", tmp_path / "restored")
    assert not (tmp_path / "restored" / "photo.jpg").exists()


def test_restore_of_a_missing_snapshot_says_so(backup, tmp_path):
    with pytest.raises(SnapshotNotFound, match="patina list"):
        restore_snapshot(backup, "2026-03-01", "grove-media", tmp_path)


# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------


def test_completeness_passes_for_a_fresh_snapshot_and_counts_later_changes(moto_endpoint, source, source_name, backup):
    fill(moto_endpoint, source_name, 5)
    manifest = backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    assert check_complete(source, backup, manifest).passed
    delete(moto_endpoint, source_name, "media/000.bin")
    result = check_complete(source, backup, manifest)
    assert result.passed and result.deleted_since == 1


def test_completeness_finds_keys_the_snapshot_lacks(moto_endpoint, source, source_name, backup):
    fill(moto_endpoint, source_name, 3)
    put(moto_endpoint, source_name, "zzz/forgotten", b"old")
    manifest = backup_bucket(source, backup, name="grove-media", day="2026-03-01", prefix="media/")
    # As if the snapshot's listing had begun a minute after zzz/forgotten was written (not in the same second).
    manifest = dataclasses.replace(manifest, listing_started_at=utc_timestamp(datetime.now(UTC) + timedelta(minutes=1)))
    bad = check_complete(source, backup, manifest, prefix="")  # a listing wider than the snapshot's
    assert not bad.passed and bad.missing_examples == ["zzz/forgotten"]


def test_referenced_objects_check_finds_missing_and_damaged_objects(moto_endpoint, source, source_name, backup):
    objects = fill(moto_endpoint, source_name, 6)
    manifest = backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    assert check_objects(backup, manifest, sample=3).passed
    assert check_objects(backup, manifest, sample=None).checked == 6
    backup.delete(object_key(hashlib.sha256(objects["media/001.bin"]).hexdigest()))
    backup.put_bytes(object_key(hashlib.sha256(objects["media/002.bin"]).hexdigest()), b"rot")
    full = check_objects(backup, manifest, sample=None)
    assert full.missing == ["media/001.bin"] and full.damaged == ["media/002.bin"]


def test_size_anomaly_on_object_count_and_bytes(moto_endpoint, source, source_name, backup):
    fill(moto_endpoint, source_name, 10)
    history = [backup_bucket(source, backup, name="grove-media", day=f"2026-03-0{d}") for d in (1, 2, 3)]
    for i in range(1, 10):
        delete(moto_endpoint, source_name, f"media/{i:03d}.bin")
    shrunk = backup_bucket(source, backup, name="grove-media", day="2026-03-04")
    verdict = judge_size(shrunk, history, decrease_ratio=0.5, increase_ratio=2.0)
    assert verdict.anomalous and "possible data loss" in verdict.summary()
    assert not judge_size(history[-1], history[:-1], decrease_ratio=0.5, increase_ratio=2.0).anomalous


# --------------------------------------------------------------------------------------------------
# Configuration and the command line
# --------------------------------------------------------------------------------------------------


def r2_entry(endpoint: str, bucket_name: str, **extra) -> dict:
    return {
        "name": "grove-media",
        "bucket": bucket_name,
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "priority": "critical",
        "exclude": ["*.tmp"],
        "access_key_id_env": "TEST_R2_KEY_ID",
        "secret_access_key_env": "TEST_R2_SECRET",
        **extra,
    }


def test_r2_buckets_in_patina_yaml(tmp_path):
    config = write_config(
        tmp_path,
        [{"name": "groveauth", "source": "x.sqlite"}],
        r2_buckets=[r2_entry("https://e.example", "grove-media")],
    )
    (entry,) = config.r2_buckets
    assert (entry.name, entry.bucket, entry.priority, entry.exclude) == (
        "grove-media",
        "grove-media",
        "critical",
        ("*.tmp",),
    )
    assert entry.credentials({"TEST_R2_KEY_ID": "id", "TEST_R2_SECRET": "s"}) == ("id", "s")
    assert "$TEST_R2_KEY_ID" in config.describe() and config.r2_bucket("grove_media") is entry


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"secret_access_key_env": "abcdef0123456789abcdef0123456789"}, "looks like a secret value"),
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"exclude": "*.tmp"}, "must be a list of glob patterns"),
        ({"bucket": "Not_A_Bucket"}, "bucket names are 3-63"),
    ],
)
def test_r2_buckets_refuse_bad_entries_with_the_fix(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        write_config(
            tmp_path,
            [{"name": "groveauth", "source": "x.sqlite"}],
            r2_buckets=[r2_entry("https://e.example", "b-1", **change)],
        )


def test_cli_lists_and_restores_an_r2_snapshot(moto_endpoint, source, source_name, tmp_path, capsys, monkeypatch):
    config = write_config(
        tmp_path, [{"name": "groveauth", "source": "x.sqlite"}], r2_buckets=[r2_entry(moto_endpoint, source_name)]
    )
    monkeypatch.setenv("TEST_R2_KEY_ID", "testing")
    monkeypatch.setenv("TEST_R2_SECRET", "testing")
    objects = fill(moto_endpoint, source_name, 3)
    backup_bucket(source, open_store(config).bucket, name="grove-media", day="2026-03-01")
    config_args = ["--config", str(tmp_path / "patina.yaml")]

    assert cli.main([*config_args, "list"]) == 0
    assert "grove-media" in capsys.readouterr().out
    assert cli.main([*config_args, "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["r2"]["snapshots"][0]["objects"] == 3
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert cli.main([*config_args, "status"]) == 0
    assert "grove-media: newest snapshot 2026-03-01, 3 objects" in capsys.readouterr().out
    metrics = Snapshot.take(config, open_catalog(config), Orchestrator(available=False, detail="none")).metrics()
    assert 'patina_r2_snapshot_objects{bucket="grove-media"} 3' in metrics

    target = create_bucket(moto_endpoint)
    assert cli.main([*config_args, "restore-r2", "latest", "grove-media", "--to", f"s3://{target}"]) == 0
    assert "restored 3 objects" in capsys.readouterr().out
    for key, data in objects.items():
        assert direct_client(moto_endpoint).get_object(Bucket=target, Key=key)["Body"].read() == data
    assert cli.main([*config_args, "restore-r2", "2026-03-01", "grove-media", "--to", f"s3://{target}"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main([*config_args, "restore-r2", "2026-03-01", "grove-media", "--to", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "media" / "000.bin").read_bytes() == objects["media/000.bin"]


def test_bucket_reconciliation_leaves_the_r2_snapshots_alone(moto_endpoint, source, source_name, backup):
    from patina_assets.archive import ArchiveStore
    from patina_assets.reconciliation import RecordedBackups, reconcile
    from patina_assets.storage import BackupStore

    fill(moto_endpoint, source_name, 2)
    backup_bucket(source, backup, name="grove-media", day="2026-03-01")
    result = reconcile(ArchiveStore(BackupStore(backup)), RecordedBackups(), deep=False)
    assert not [finding for finding in result.unknown if finding.key.startswith("r2/")]


def test_a_directory_restore_refuses_keys_that_are_both_a_file_and_a_folder_before_writing(
    moto_endpoint, source_name, backup, tmp_path
):
    # S3 allows "a" and "a/b" side by side; a directory cannot hold both, so nothing may be written half.
    for key in ["a", "a-other", "a/b", "z"]:
        put(moto_endpoint, source_name, key, key.encode())
    backup_bucket(S3Bucket(patina_client(moto_endpoint), source_name), backup, name="grove-media", day="2026-03-01")
    with pytest.raises(RestoreRefused, match="'a' is both a file and a folder.*s3://"):
        restore_snapshot(backup, "2026-03-01", "grove-media", tmp_path / "restored")
    assert not (tmp_path / "restored").exists() or not any((tmp_path / "restored").rglob("*"))
    restore_snapshot(backup, "2026-03-01", "grove-media", tmp_path / "some", prefix="z")  # the rest is fine
    assert (tmp_path / "some" / "z").read_bytes() == b"z"


def test_a_snapshot_key_ending_in_a_line_break_is_no_key_of_ours():
    """Python's `$` also matches before a final line break: the layout's patterns end at the text's end."""
    key = "r2/2026-01-05/media.manifest.json"
    assert parse_snapshot_key(key) is not None
    assert parse_snapshot_key(key + "\n") is None
    assert parse_snapshot_key("r2/2026-01-05/media\n.manifest.json") is None
