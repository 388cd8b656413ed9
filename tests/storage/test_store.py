"""BackupStore on both buckets: publish (dump first, manifest last, confirmed), list, verify, orphans, delete."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from support.s3_server import (
    pending_uploads,
)
from support.storage import (
    BIG,
    DAY,
    DB,
    keys_of,
    manifest_for,
    s3_bucket,
    sha256_hex,
    write_dump,
)

from patina_assets import storage
from patina_assets.storage import (
    BackupStore,
    CorruptManifest,
    InvalidKey,
    StorageError,
    StorageIntegrityError,
    StorageUnavailable,
    daily_dump_key,
    daily_manifest_key,
    new_generation,
)


def test_publish_then_list_get_verify(store, bucket, tmp_path):
    dump = write_dump(tmp_path, "groveauth.sql.zst", size=20_000)

    published = store.publish_daily(DAY, DB, dump, manifest_for())

    assert re.fullmatch(r"daily/2026-01-05/groveauth\.\d{8}T\d{12}Z-[0-9a-f]{6}\.sql\.zst", published.key)
    assert published.bytes == 20_000 and published.sha256 == sha256_hex(dump.read_bytes())
    assert sha256_hex(bucket.get_bytes(published.key)) == published.sha256  # what is stored, byte for byte
    assert store.get_manifest(DAY, DB) == published
    assert store.list_daily() == [published]
    assert store.verify(published)
    with store.open_dump(published) as reader:
        assert sha256_hex(reader.read()) == published.sha256
    assert keys_of(bucket) == sorted([published.key, "daily/2026-01-05/groveauth.manifest.json"])
    assert store.find_orphans() == []


def test_large_dump_is_published_by_multipart(store, bucket, kind, request, tmp_path):
    published = store.publish_daily(DAY, DB, write_dump(tmp_path, "big", BIG), manifest_for())
    assert store.verify(published)
    if kind == "s3":
        assert len(request.getfixturevalue("proxy").seen("UploadPart")) == 3


def test_manifest_is_written_last(proxy, bucket_name, tmp_path):
    store = BackupStore(s3_bucket(proxy.endpoint_url, bucket_name))
    store.publish_daily(DAY, DB, write_dump(tmp_path, "big", BIG), manifest_for())

    writes = [(r.operation, r.key) for r in proxy.seen() if r.operation in ("PutObject", "CompleteMultipartUpload")]
    assert writes[-1] == ("PutObject", "daily/2026-01-05/groveauth.manifest.json")
    assert writes[0][0] == "CompleteMultipartUpload"
    requests = [(r.operation, r.key) for r in proxy.seen()]
    dump_check = next(i for i, (op, key) in enumerate(requests) if op == "HeadObject" and key.endswith(".sql.zst"))
    manifest_put = requests.index(("PutObject", daily_manifest_key(DAY, DB)))
    assert dump_check < manifest_put  # the size is checked before the manifest vouches for it


def test_rematerialization_replaces_cleanly(store, bucket, tmp_path):
    first = store.publish_daily(DAY, DB, write_dump(tmp_path, "v1", seed=1), manifest_for(job_id="run-1"))
    second = store.publish_daily(DAY, DB, write_dump(tmp_path, "v2", seed=2), manifest_for(job_id="run-2"))

    assert second.key != first.key and second.sha256 != first.sha256
    assert store.get_manifest(DAY, DB) == second
    assert store.list_daily() == [second]
    assert bucket.stat(first.key) is None
    assert keys_of(bucket) == sorted([second.key, daily_manifest_key(DAY, DB)])
    assert store.find_orphans() == []


def test_failed_dump_upload_keeps_previous_backup(store, bucket, breaker, kind, request, tmp_path):
    previous = store.publish_daily(DAY, DB, write_dump(tmp_path, "good"), manifest_for())
    breaker.fail_writes(r"groveauth\.[^/]*\.sql\.zst$")

    with pytest.raises(StorageError, match=r"daily/2026-01-05/groveauth\."):
        store.publish_daily(DAY, DB, write_dump(tmp_path, "big", BIG, seed=9), manifest_for(job_id="run-2"))

    assert store.get_manifest(DAY, DB) == previous
    assert store.list_daily() == [previous]
    assert store.verify(previous)
    assert store.find_orphans() == []
    assert keys_of(bucket) == sorted([previous.key, daily_manifest_key(DAY, DB)])
    if kind == "s3":
        proxy = request.getfixturevalue("proxy")
        assert [r.part_number for r in proxy.seen("UploadPart")] == [1, 2]  # it failed mid-upload
        assert pending_uploads(request.getfixturevalue("moto_endpoint"), request.getfixturevalue("bucket_name")) == []


def test_failed_manifest_write_keeps_previous_backup_and_removes_new_dump(store, bucket, breaker, tmp_path):
    previous = store.publish_daily(DAY, DB, write_dump(tmp_path, "good"), manifest_for())
    breaker.fail_writes(r"groveauth\.manifest\.json$")

    with pytest.raises(StorageError, match="groveauth.manifest.json"):
        store.publish_daily(DAY, DB, write_dump(tmp_path, "new", seed=5), manifest_for(job_id="run-2"))

    assert store.get_manifest(DAY, DB) == previous
    assert store.list_daily() == [previous] and store.verify(previous)
    assert keys_of(bucket) == sorted([previous.key, daily_manifest_key(DAY, DB)])


def test_manifest_write_whose_answer_is_lost_still_counts(proxy, bucket_name, tmp_path):
    store = BackupStore(s3_bucket(proxy.endpoint_url, bucket_name))
    previous = store.publish_daily(DAY, DB, write_dump(tmp_path, "good"), manifest_for())
    proxy.fail(operation="PutObject", key=r"manifest\.json$", action="lose_response")

    published = store.publish_daily(DAY, DB, write_dump(tmp_path, "new", seed=5), manifest_for(job_id="run-2"))

    assert store.get_manifest(DAY, DB) == published and store.verify(published)
    assert store.bucket.stat(previous.key) is None


def test_manifest_write_that_cannot_be_confirmed_fails_retryable_and_keeps_every_dump(proxy, bucket_name, tmp_path):
    """The manifest PUT fails and so does the read-back: the run must not report success (the bucket still
    names the older backup), must not delete anything a manifest might name, and must be retryable."""
    store = BackupStore(s3_bucket(proxy.endpoint_url, bucket_name))
    previous = store.publish_daily(DAY, DB, write_dump(tmp_path, "good"), manifest_for())
    proxy.fail(operation="PutObject", key=r"manifest\.json$", times=1)
    proxy.fail(operation="GetObject", key=r"manifest\.json$", skip=1, times=1)  # the first GET finds the previous

    with pytest.raises(storage.PublishUnconfirmed) as info:
        store.publish_daily(DAY, DB, write_dump(tmp_path, "new", seed=5), manifest_for(job_id="run-2"))
    assert info.value.retryable and isinstance(info.value, StorageUnavailable)
    assert "every object is kept" in str(info.value)

    proxy.clear()
    assert store.get_manifest(DAY, DB) == previous and store.verify(previous)
    dumps = [k for k in keys_of(store.bucket) if not k.endswith("manifest.json")]
    assert len(dumps) == 2 and previous.key in dumps  # the new dump is kept, as an orphan for now
    # The next run settles it: it publishes, and both older dumps go.
    third = store.publish_daily(DAY, DB, write_dump(tmp_path, "third", seed=6), manifest_for(job_id="run-3"))
    assert keys_of(store.bucket) == sorted([third.key, daily_manifest_key(DAY, DB)])


def test_a_lost_manifest_answer_whose_read_back_fails_is_not_reported_as_published(proxy, bucket_name, tmp_path):
    store = BackupStore(s3_bucket(proxy.endpoint_url, bucket_name))
    previous = store.publish_daily(DAY, DB, write_dump(tmp_path, "good"), manifest_for())
    proxy.fail(operation="PutObject", key=r"manifest\.json$", action="lose_response", times=1)
    proxy.fail(operation="GetObject", key=r"manifest\.json$", skip=1, times=1)

    with pytest.raises(storage.PublishUnconfirmed):
        store.publish_daily(DAY, DB, write_dump(tmp_path, "new", seed=5), manifest_for(job_id="run-2"))
    proxy.clear()
    current = store.get_manifest(DAY, DB)
    assert current != previous and store.verify(current)  # it landed after all, and its dump is there
    assert store.bucket.stat(previous.key) is not None  # nothing was deleted while it could not be told


def test_dump_without_manifest_is_an_orphan_not_a_backup(store, bucket, tmp_path):
    crashed = daily_dump_key(DAY, DB, "sql.zst", new_generation())
    bucket.put_file(crashed, write_dump(tmp_path, "half"))

    assert store.list_daily() == []
    assert store.get_manifest(DAY, DB) is None
    assert [o.key for o in store.find_orphans()] == [crashed]
    assert store.find_orphans(min_age=timedelta(hours=1)) == []  # may still be uploading

    published = store.publish_daily(DAY, DB, write_dump(tmp_path, "good"), manifest_for())
    assert store.list_daily() == [published]
    assert store.find_orphans() == []  # the re-run cleaned up the older leftover


def test_newer_unreferenced_dump_is_left_for_its_own_run(store, bucket, tmp_path):
    in_flight = daily_dump_key(DAY, DB, "sql.zst", new_generation(datetime.now(UTC) + timedelta(minutes=1)))
    bucket.put_bytes(in_flight, b"another run's upload")

    store.publish_daily(DAY, DB, write_dump(tmp_path, "good"), manifest_for())

    assert bucket.stat(in_flight) is not None


def test_corrupt_manifest_is_reported_not_listed(store, bucket, tmp_path):
    published = store.publish_daily(DAY, DB, write_dump(tmp_path, "good"), manifest_for())
    manifest_key = daily_manifest_key(DAY, DB)
    bucket.put_bytes(manifest_key, b'{"schema_version": 1, "database": "groveau')

    with pytest.raises(CorruptManifest, match=re.escape(manifest_key)):
        store.get_manifest(DAY, DB)
    assert store.list_daily() == []
    inventory = store.inventory()
    assert list(inventory.corrupt) == [manifest_key]
    assert inventory.orphans == []  # the dump beside it may be the only copy: not an orphan
    assert bucket.stat(published.key) is not None


def test_manifest_in_the_wrong_place_is_corrupt(store, bucket, tmp_path):
    published = store.publish_daily(DAY, DB, write_dump(tmp_path, "good"), manifest_for())
    other = daily_manifest_key(DAY, "scout-db")
    bucket.put_bytes(other, published.to_json().encode())

    with pytest.raises(CorruptManifest, match="scout-db"):
        store.get_manifest(DAY, "scout-db")
    assert store.list_daily() == [published]


def test_missing_or_tampered_dump(store, bucket, tmp_path):
    published = store.publish_daily(DAY, DB, write_dump(tmp_path, "good", size=1000), manifest_for())

    bucket.put_bytes(published.key, b"\0" * 1000)  # same size, different bytes
    assert store.list_daily() == [published]  # listing checks presence and size...
    assert not store.verify(published)  # ...verify re-reads the bytes

    bucket.delete(published.key)
    assert store.list_daily() == []
    assert "missing" in store.inventory().broken[daily_manifest_key(DAY, DB)]
    assert not store.verify(published)


def test_list_daily_filters(store, tmp_path):
    day2 = DAY + timedelta(days=1)
    published = {
        (day, db): store.publish_daily(day, db, write_dump(tmp_path, f"{db}-{day}"), manifest_for(day=day, database=db))
        for day in (DAY, day2)
        for db in ("groveauth", "scout-db")
    }
    assert store.list_daily() == [published[k] for k in sorted(published, key=lambda k: (k[0].isoformat(), k[1]))]
    assert store.list_daily(database="scout-db") == [published[(DAY, "scout-db")], published[(day2, "scout-db")]]
    assert store.list_daily(day=day2) == [published[(day2, "groveauth")], published[(day2, "scout-db")]]
    assert store.list_daily(database="scout-db", day="2026-01-06") == [published[(day2, "scout-db")]]


def test_delete_daily_removes_manifest_then_dumps(store, bucket, tmp_path):
    published = store.publish_daily(DAY, DB, write_dump(tmp_path, "good"), manifest_for())
    leftover = daily_dump_key(DAY, DB, "sql.zst", new_generation())
    bucket.put_bytes(leftover, b"crashed run")
    other = store.publish_daily(DAY, "scout-db", write_dump(tmp_path, "other"), manifest_for(database="scout-db"))

    deleted = store.delete_daily(DAY, DB)

    assert deleted[0] == daily_manifest_key(DAY, DB)
    assert sorted(deleted[1:]) == sorted([published.key, leftover])
    assert store.list_daily() == [other]
    assert keys_of(bucket) == sorted([other.key, daily_manifest_key(DAY, "scout-db")])
    assert store.delete_daily(DAY, DB) == []


def test_delete_daily_order_on_the_wire(proxy, bucket_name, tmp_path):
    store = BackupStore(s3_bucket(proxy.endpoint_url, bucket_name))
    store.publish_daily(DAY, DB, write_dump(tmp_path, "good"), manifest_for())
    proxy.clear()

    store.delete_daily(DAY, DB)

    deletes = [(r.operation, r.key) for r in proxy.seen() if r.operation in ("DeleteObject", "DeleteObjects")]
    assert deletes == [("DeleteObject", daily_manifest_key(DAY, DB)), ("DeleteObjects", "")]


def test_publish_rejects_mismatched_inputs(store, tmp_path):
    dump = write_dump(tmp_path, "good")
    with pytest.raises(ValueError, match="scout-db"):
        store.publish_daily(DAY, "scout-db", dump, manifest_for())
    with pytest.raises(ValueError, match="2026-01-06"):
        store.publish_daily(DAY + timedelta(days=1), DB, dump, manifest_for())
    with pytest.raises(StorageIntegrityError, match="changed after it was measured"):
        store.publish_daily(DAY, DB, dump, manifest_for(sha256="0" * 64))
    with pytest.raises(InvalidKey):
        store.publish_daily(DAY, "../etc", dump, manifest_for(database="../etc"))
    with pytest.raises(ValueError, match="rows is 8"):
        store.publish_daily(DAY, DB, dump, manifest_for(rows=8))  # refused before anything is uploaded
    assert keys_of(store.bucket) == []
