"""Storage: both buckets against the same contract, the backup layout, and failures mid-upload.

The S3 side runs against moto's server on loopback (a real S3 API over HTTP) behind FaultProxy, which
records every request and fails chosen ones, so the tests see exactly what R2 would be sent.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import socket
import traceback
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from support.s3_server import (
    FaultProxy,
    create_access_key,
    create_bucket,
    direct_client,
    iam_enforced,
    moto_server,
    pending_uploads,
)

from patina_assets import storage
from patina_assets.storage import (
    BackupStore,
    Bucket,
    CorruptManifest,
    InvalidKey,
    LocalBucket,
    Manifest,
    MiB,
    S3Bucket,
    StorageAccessDenied,
    StorageBucketNotFound,
    StorageError,
    StorageIntegrityError,
    StorageObjectNotFound,
    StorageUnavailable,
    daily_dump_key,
    daily_manifest_key,
    make_s3_client,
    new_generation,
    parse_daily_key,
)

DAY = date(2026, 1, 5)
DB = "groveauth"
BIG = 12_000_000  # three 5 MiB parts: 5 MiB, 5 MiB, ~1.4 MiB


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint():
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def proxy(moto_endpoint):
    with FaultProxy(moto_endpoint) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def bucket_name(moto_endpoint) -> str:
    return create_bucket(moto_endpoint)


def s3_bucket(endpoint: str, name: str, *, max_retries: int = 0, **options) -> S3Bucket:
    """An S3Bucket as production builds it, with 5 MiB parts (moto's minimum) and tiny list pages
    so every listing in these tests is paginated.  No retries by default: an injected fault stays a fault."""
    client = make_s3_client(endpoint, "us-east-1", "testing", "testing", max_retries=max_retries)
    options = {"part_size": 5 * MiB, "list_page_size": 2, **options}
    return S3Bucket(client, name, **options)


@pytest.fixture(params=["local", "s3"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def bucket(kind, tmp_path, request) -> Bucket:
    if kind == "local":
        return LocalBucket(tmp_path / "backups")
    proxy = request.getfixturevalue("proxy")
    return s3_bucket(proxy.endpoint_url, request.getfixturevalue("bucket_name"))


@pytest.fixture
def store(bucket) -> BackupStore:
    return BackupStore(bucket)


class Breaker:
    """Makes writes of keys matching a pattern fail, on either kind of bucket.

    S3: the proxy answers 500 to the PutObject, or to the *second* UploadPart of a multipart upload,
    so the failure lands in the middle of the upload.  Local: the final rename fails with EIO.
    """

    def __init__(self, kind: str, request, monkeypatch) -> None:
        self.kind, self.request, self.monkeypatch = kind, request, monkeypatch

    def fail_writes(self, key_pattern: str) -> None:
        if self.kind == "s3":
            proxy = self.request.getfixturevalue("proxy")
            proxy.fail(operation="PutObject", key=key_pattern)
            proxy.fail(operation="UploadPart", key=key_pattern, part_number=2)
            return
        real_replace = os.replace

        def failing_replace(src, dst, *args, **kwargs):
            if re.search(key_pattern, str(dst)):
                raise OSError(errno.EIO, "Input/output error (injected)")
            return real_replace(src, dst, *args, **kwargs)

        self.monkeypatch.setattr(storage.local.os, "replace", failing_replace)


@pytest.fixture
def breaker(kind, request, monkeypatch) -> Breaker:
    return Breaker(kind, request, monkeypatch)


def write_dump(directory: Path, name: str, size: int = 4096, seed: int = 0) -> Path:
    path = directory / name
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def manifest_for(day=DAY, database=DB, fmt="sql.zst", **changes) -> Manifest:
    """A manifest as the dumper would hand it over (the store fills key, bytes, sha256, created_at)."""
    fields = dict(
        database=database,
        day=day.isoformat() if isinstance(day, date) else day,
        format=fmt,
        sql_bytes=10_000,
        sql_sha256=hashlib.sha256(b"sql").hexdigest(),
        tables=2,
        rows=7,
        table_rows={"users": 5, "sessions": 2},
        table_digests={"users": "a" * 64, "sessions": "b" * 64},
        content_digest="c" * 64,
        schema_fingerprint="d" * 64,
        source="d1://account/1f2e…/groveauth (REST API)",
        point_in_time=True,
        requests=3,
        started_at="2026-01-06T03:00:00Z",
        finished_at="2026-01-06T03:00:09Z",
        job_id="job-1",
        dagster_run_id="0b3c6f0e-1111-2222-3333-444455556666",
    )
    fields.update(changes)
    return Manifest(**fields)


def keys_of(bucket: Bucket, prefix: str = "") -> list[str]:
    return [info.key for info in bucket.list(prefix)]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------
# Bucket contract (both implementations)
# --------------------------------------------------------------------------------------------------


def test_put_get_stat_roundtrip(bucket):
    info = bucket.put_bytes("daily/2026-01-05/x.txt", b"hello", content_type="text/plain")

    assert (info.key, info.size) == ("daily/2026-01-05/x.txt", 5)
    assert info.last_modified.tzinfo is not None
    assert bucket.get_bytes("daily/2026-01-05/x.txt") == b"hello"
    stat = bucket.stat("daily/2026-01-05/x.txt")
    assert stat is not None and stat.size == 5 and stat.etag
    assert bucket.stat("daily/2026-01-05/missing.txt") is None


def test_put_file_streams_back(bucket, tmp_path):
    source = write_dump(tmp_path, "dump.sql.zst", size=3 * MiB + 17)

    bucket.put_file("a/dump.sql.zst", source)

    with bucket.open("a/dump.sql.zst") as reader:
        chunks = iter(lambda: reader.read(MiB), b"")
        assert sha256_hex(b"".join(chunks)) == sha256_hex(source.read_bytes())


def test_overwrite_replaces_whole_object(bucket):
    bucket.put_bytes("k", b"first version")
    bucket.put_bytes("k", b"second")
    assert bucket.get_bytes("k") == b"second"


def test_list_filters_by_plain_prefix_sorted_and_paginated(bucket, kind, request):
    for key in ["b/1", "a/2", "ab", "a/1", "a/3"]:
        bucket.put_bytes(key, key.encode())

    assert keys_of(bucket) == ["a/1", "a/2", "a/3", "ab", "b/1"]
    assert keys_of(bucket, "a/") == ["a/1", "a/2", "a/3"]
    assert keys_of(bucket, "a") == ["a/1", "a/2", "a/3", "ab"]
    assert keys_of(bucket, "c/") == []
    if kind == "s3":  # five objects with two per page: three ListObjectsV2 calls for the full listing
        proxy = request.getfixturevalue("proxy")
        proxy.clear()
        list(bucket.list())
        assert len(proxy.seen("ListObjectsV2")) == 3


def test_delete_and_delete_many(bucket):
    for key in ["d/1", "d/2", "d/3", "keep"]:
        bucket.put_bytes(key, b"x")

    bucket.delete("d/1")
    bucket.delete("d/never-existed")  # deleting nothing is fine, as on S3
    bucket.delete_many(["d/2", "d/3"])
    bucket.delete_many([])

    assert keys_of(bucket) == ["keep"]


def test_missing_object_errors_name_the_key(bucket):
    with pytest.raises(StorageObjectNotFound, match="nope/missing.sql"):
        bucket.get_bytes("nope/missing.sql")
    with pytest.raises(StorageObjectNotFound, match="nope/missing.sql"):
        bucket.open("nope/missing.sql")


@pytest.mark.parametrize("key", ["", "/abs", "../up", "a/../../b", "a//b", "a/./b", "dir/", "a\\b", "x/.patina-tmp.1"])
def test_unsafe_keys_are_rejected(bucket, key):
    with pytest.raises(InvalidKey):
        bucket.put_bytes(key, b"x")
    with pytest.raises(InvalidKey):
        bucket.stat(key)


def test_uri_and_describe(bucket, kind, tmp_path, bucket_name):
    if kind == "local":
        assert bucket.uri("daily/x.sql") == (tmp_path / "backups" / "daily" / "x.sql").as_uri()
        assert str(tmp_path) in bucket.describe()
    else:
        assert bucket.uri("daily/x.sql") == f"s3://{bucket_name}/daily/x.sql"
        assert bucket_name in bucket.describe() and "testing" not in bucket.describe()


# --------------------------------------------------------------------------------------------------
# LocalBucket specifics
# --------------------------------------------------------------------------------------------------


def test_local_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    bucket = LocalBucket(tmp_path)
    bucket.put_bytes("d/k", b"good")

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.local.os, "replace", full_disk)
    with pytest.raises(StorageError, match="Free disk space"):
        bucket.put_bytes("d/k", b"new")
    monkeypatch.undo()

    assert bucket.get_bytes("d/k") == b"good"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["k"]


def test_local_listing_ignores_temporaries(tmp_path):
    bucket = LocalBucket(tmp_path)
    bucket.put_bytes("d/k", b"x")
    (tmp_path / "d" / ".patina-tmp.abc123").write_bytes(b"half a write")

    assert keys_of(bucket) == ["d/k"]


def test_local_delete_prunes_empty_directories(tmp_path):
    bucket = LocalBucket(tmp_path)
    bucket.put_bytes("daily/2026-01-05/a", b"x")
    bucket.delete("daily/2026-01-05/a")
    assert list(tmp_path.iterdir()) == []


def test_local_missing_directory_without_create(tmp_path):
    with pytest.raises(StorageBucketNotFound, match="does not exist"):
        LocalBucket(tmp_path / "nowhere", create=False)


def test_local_permission_denied(tmp_path, monkeypatch):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    if os.geteuid() == 0:
        # Root ignores file modes, and nothing else here can refuse root a write: the one mock in this
        # file stands in for the kernel's EACCES.
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(root))

        monkeypatch.setattr("patina_assets.storage.local.tempfile.mkstemp", refuse)
    try:
        with pytest.raises(StorageAccessDenied, match="may read and write"):
            LocalBucket(root).put_bytes("k", b"x")
    finally:
        root.chmod(0o700)


# --------------------------------------------------------------------------------------------------
# S3Bucket specifics
# --------------------------------------------------------------------------------------------------


def test_make_s3_client_turns_off_default_checksums():
    client = make_s3_client("https://acct.r2.cloudflarestorage.com", "auto", "AKID", "SECRET")
    config = client.meta.config
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.retries == {"mode": "standard", "total_max_attempts": 6}  # botocore: 5 retries
    assert client.meta.region_name == "auto"


def test_uploads_send_content_md5_and_no_crc32(proxy, bucket_name, tmp_path):
    bucket = s3_bucket(proxy.endpoint_url, bucket_name)
    bucket.put_bytes("small", b"x" * 100)
    bucket.put_file("big", write_dump(tmp_path, "big", BIG))

    uploads = proxy.seen("PutObject") + proxy.seen("UploadPart")
    assert len(uploads) == 4
    for request in uploads:
        assert "content-md5" in request.headers
        assert not [h for h in request.headers if h.startswith("x-amz-checksum") or h == "x-amz-sdk-checksum-algorithm"]


def test_multipart_parts_are_equal_sized(proxy, bucket_name, tmp_path):
    bucket = s3_bucket(proxy.endpoint_url, bucket_name)
    source = write_dump(tmp_path, "big.sql.zst", BIG)

    info = bucket.put_file("daily/big.sql.zst", source)

    sizes = [r.body_size for r in proxy.seen("UploadPart")]
    assert sizes == [5 * MiB, 5 * MiB, BIG - 10 * MiB]
    assert [r.part_number for r in proxy.seen("UploadPart")] == [1, 2, 3]
    assert info.size == BIG and info.etag.endswith("-3")
    assert sha256_hex(bucket.get_bytes("daily/big.sql.zst")) == sha256_hex(source.read_bytes())


def test_small_files_are_one_put(proxy, bucket_name, tmp_path):
    bucket = s3_bucket(proxy.endpoint_url, bucket_name)
    bucket.put_file("one", write_dump(tmp_path, "one", 5 * MiB))  # at the threshold: still one PUT
    assert len(proxy.seen("PutObject")) == 1 and proxy.seen("CreateMultipartUpload") == []


def test_part_size_grows_for_files_beyond_ten_thousand_parts():
    bucket = S3Bucket(client=None, bucket="b", part_size=16 * MiB)
    assert bucket.part_size_for(100 * MiB) == 16 * MiB
    huge = 400 * 1024 * MiB  # 400 GiB / 10,000 parts = 40.96 MiB -> 41 MiB
    assert bucket.part_size_for(huge) == 41 * MiB
    assert huge / bucket.part_size_for(huge) <= 10_000
    with pytest.raises(ValueError, match="at least"):
        S3Bucket(client=None, bucket="b", part_size=MiB)


@pytest.mark.parametrize(
    "fault",
    [
        {"operation": "UploadPart", "part_number": 2},  # S3 error answer
        {"operation": "UploadPart", "part_number": 3, "action": "drop"},  # connection lost
        {"operation": "CompleteMultipartUpload"},
    ],
    ids=["part-2-error", "part-3-connection-drop", "complete-error"],
)
def test_failed_multipart_upload_leaves_nothing(proxy, bucket_name, moto_endpoint, tmp_path, fault):
    bucket = s3_bucket(proxy.endpoint_url, bucket_name)
    injected = proxy.fail(**fault)

    with pytest.raises(StorageUnavailable, match="big.sql.zst"):
        bucket.put_file("big.sql.zst", write_dump(tmp_path, "big", BIG))

    assert injected.fired == 1
    assert len(proxy.seen("AbortMultipartUpload")) == 1
    assert pending_uploads(moto_endpoint, bucket_name) == []
    assert bucket.stat("big.sql.zst") is None and keys_of(bucket) == []


def test_abort_failure_is_explained(proxy, bucket_name, moto_endpoint, tmp_path):
    bucket = s3_bucket(proxy.endpoint_url, bucket_name)
    proxy.fail(operation="UploadPart", part_number=2)
    proxy.fail(operation="AbortMultipartUpload")

    with pytest.raises(StorageUnavailable) as raised:
        bucket.put_file("big", write_dump(tmp_path, "big", BIG))

    [pending] = pending_uploads(moto_endpoint, bucket_name)
    assert any(pending["UploadId"] in note and "abort" in note for note in raised.value.__notes__)
    assert bucket.stat("big") is None
    direct_client(moto_endpoint).abort_multipart_upload(Bucket=bucket_name, Key="big", UploadId=pending["UploadId"])


def test_failed_single_put_leaves_nothing(proxy, bucket_name):
    bucket = s3_bucket(proxy.endpoint_url, bucket_name)
    proxy.fail(operation="PutObject", action="drop")
    with pytest.raises(StorageUnavailable, match="could not be reached"):
        bucket.put_bytes("k", b"data")
    assert bucket.stat("k") is None


def test_transient_part_failure_is_retried(proxy, bucket_name, tmp_path):
    bucket = s3_bucket(proxy.endpoint_url, bucket_name, max_retries=1)
    injected = proxy.fail(operation="UploadPart", part_number=2, times=1, status=503, code="SlowDown")

    info = bucket.put_file("big", write_dump(tmp_path, "big", BIG))

    assert injected.fired == 1 and info.size == BIG
    assert [r.part_number for r in proxy.seen("UploadPart")] == [1, 2, 2, 3]


def test_prefix_is_applied_and_stripped(proxy, bucket_name, moto_endpoint):
    bucket = s3_bucket(proxy.endpoint_url, bucket_name, prefix="/patina/prod/")
    bucket.put_bytes("daily/x", b"1")

    stored = [o["Key"] for o in direct_client(moto_endpoint).list_objects_v2(Bucket=bucket_name)["Contents"]]
    assert stored == ["patina/prod/daily/x"]
    assert keys_of(bucket) == ["daily/x"]
    assert bucket.uri("daily/x") == f"s3://{bucket_name}/patina/prod/daily/x"


def test_missing_bucket_says_create_it(proxy):
    bucket = s3_bucket(proxy.endpoint_url, "no-such-bucket-here")
    for attempt in (
        lambda: bucket.put_bytes("k", b"x"),
        lambda: bucket.get_bytes("k"),
        lambda: bucket.stat("k"),
        lambda: list(bucket.list()),
    ):
        with pytest.raises(StorageBucketNotFound, match=r"no-such-bucket-here.*does not exist.*[Cc]reate it"):
            attempt()


def test_access_denied_is_clear_and_never_shows_the_secret(moto_endpoint, bucket_name):
    reader_key, reader_secret = create_access_key(moto_endpoint, ["s3:GetObject", "s3:ListBucket"])
    bogus_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    with iam_enforced(moto_endpoint):
        read_only = S3Bucket(make_s3_client(moto_endpoint, "us-east-1", reader_key, reader_secret), bucket_name)
        with pytest.raises(StorageAccessDenied) as denied:
            read_only.put_bytes("daily/2026-01-05/x.sql", b"x")
        unknown_client = make_s3_client(moto_endpoint, "us-east-1", "AKIAUNKNOWN000000000", bogus_secret)
        unknown = S3Bucket(unknown_client, bucket_name)
        with pytest.raises(StorageAccessDenied) as unknown_key:
            unknown.get_bytes("daily/2026-01-05/x.sql")

    for raised, secret in ((denied, reader_secret), (unknown_key, bogus_secret)):
        message = str(raised.value)
        assert f"s3://{bucket_name}/daily/2026-01-05/x.sql" in message
        assert "access key" in message and "permission" in message
        full_report = "".join(traceback.format_exception(raised.value))  # chained botocore error included
        assert secret not in full_report
        assert raised.value.retryable is False
    assert "AccessDenied" in str(denied.value)
    assert "InvalidAccessKeyId" in str(unknown_key.value)


def test_unreachable_endpoint_is_retryable_and_names_it():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bucket = s3_bucket(f"http://127.0.0.1:{port}", "b")
    with pytest.raises(StorageUnavailable, match=rf"127\.0\.0\.1:{port}.*could not be reached") as raised:
        bucket.put_bytes("k", b"x")
    assert raised.value.retryable is True


def test_works_with_the_dagster_aws_resource_client(proxy, bucket_name, tmp_path):
    from dagster_aws.s3 import S3Resource

    client = S3Resource(
        endpoint_url=proxy.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).get_client()
    store = BackupStore(S3Bucket(client, bucket_name, part_size=5 * MiB))
    published = store.publish_daily(DAY, DB, write_dump(tmp_path, "big", BIG), manifest_for())

    assert store.verify(published) and len(proxy.seen("UploadPart")) == 3


# --------------------------------------------------------------------------------------------------
# Layout keys
# --------------------------------------------------------------------------------------------------


def test_daily_keys():
    assert daily_dump_key(DAY, "groveauth", "sql.zst") == "daily/2026-01-05/groveauth.sql.zst"
    assert daily_dump_key("2026-01-05", "scout-db", "sql") == "daily/2026-01-05/scout-db.sql"
    assert daily_manifest_key(DAY, "grove-engine") == "daily/2026-01-05/grove-engine.manifest.json"
    generation = new_generation(datetime(2026, 1, 6, 3, 0, 12, 123456, tzinfo=UTC))
    assert re.fullmatch(r"20260106T030012123456Z-[0-9a-f]{6}", generation)
    assert daily_dump_key(DAY, "a", "sql.gz", generation) == f"daily/2026-01-05/a.{generation}.sql.gz"


@pytest.mark.parametrize(
    "day, database, fmt",
    [
        ("2026-02-30", DB, "sql"),
        ("2026-1-5", DB, "sql"),
        ("../../etc", DB, "sql"),
        (datetime(2026, 1, 5), DB, "sql"),
        (DAY, "../x", "sql"),
        (DAY, "a/b", "sql"),
        (DAY, "Grove", "sql"),
        (DAY, "", "sql"),
        (DAY, "-x", "sql"),
        (DAY, "x" * 64, "sql"),
        (DAY, DB, "tar"),
    ],
)
def test_daily_key_validation(day, database, fmt):
    with pytest.raises(InvalidKey):
        daily_dump_key(day, database, fmt)


@pytest.mark.parametrize("database", ["groveauth", "foo.sql", "x.manifest", "a_b-c.d"])
@pytest.mark.parametrize("fmt", ["sql", "sql.gz", "sql.zst"])
def test_daily_keys_parse_back_unambiguously(database, fmt):
    generation = new_generation()
    for gen in (None, generation):
        parsed = parse_daily_key(daily_dump_key(DAY, database, fmt, gen))
        assert (parsed.kind, parsed.database, parsed.format, parsed.generation) == ("dump", database, fmt, gen)
    parsed = parse_daily_key(daily_manifest_key(DAY, database))
    assert (parsed.kind, parsed.database, parsed.day) == ("manifest", database, "2026-01-05")
    assert parse_daily_key("weekly/2026-W01.tar.gz") is None
    assert parse_daily_key("daily/2026-02-30/x.sql") is None


# --------------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------------


def complete_manifest(**changes) -> Manifest:
    return replace(
        manifest_for(),
        key=daily_dump_key(DAY, DB, "sql.zst", new_generation()),
        bytes=123,
        sha256="e" * 64,
        created_at="2026-01-06T03:00:10Z",
        **changes,
    )


def test_manifest_json_roundtrip():
    manifest = complete_manifest()
    text = manifest.to_json()
    assert json.loads(text)["schema_version"] == 1
    assert Manifest.from_json(text) == manifest
    assert Manifest.from_json(text.encode()) == manifest


def test_manifests_record_time_travel_bookmarks_and_older_ones_still_load():
    manifest = complete_manifest(
        point_in_time=False,
        consistency="bookmark moved",
        bookmark="00000001-00000000-00000000-aa",
        end_bookmark="00000002-00000000-00000000-bb",
    )
    assert Manifest.from_json(manifest.to_json()) == manifest
    older = json.loads(complete_manifest().to_json())
    for name in ("consistency", "bookmark", "end_bookmark"):
        del older[name]  # written before these fields existed
    loaded = Manifest.from_json(json.dumps(older))
    assert loaded.bookmark is None and loaded.consistency is None and loaded.point_in_time is True


def test_manifest_keeps_the_dumps_warnings_and_older_manifests_without_them_load():
    manifest = complete_manifest(warnings=["virtual table 'v' uses the module 'vec0' ..."])
    assert Manifest.from_json(manifest.to_json()).warnings == manifest.warnings
    older = {k: v for k, v in json.loads(manifest.to_json()).items() if k != "warnings"}
    assert Manifest.from_json(json.dumps(older)) == replace(manifest, warnings=[])
    with pytest.raises(CorruptManifest, match="warnings"):
        Manifest.from_json(json.dumps({**older, "warnings": "not a list"}))


def test_incomplete_manifest_cannot_be_written():
    with pytest.raises(ValueError, match="key"):
        manifest_for().to_json()  # key, bytes, sha256 are the store's to fill in
    with pytest.raises(ValueError, match="rows"):
        complete_manifest(rows=8).to_json()


@pytest.mark.parametrize(
    "mangle, expected",
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: "[1, 2]", "not a JSON object"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k != "sha256"}), "sha256"),
        (lambda d: json.dumps({**d, "schema_version": 2}), "schema_version 2"),
        (lambda d: json.dumps({**d, "bytes": "123"}), "bytes"),
        (lambda d: json.dumps({**d, "day": "2026-13-01"}), "day"),
        (lambda d: json.dumps({**d, "finished_at": "2026-01-06T03:00:09+02:00"}), "finished_at"),
        (lambda d: json.dumps({**d, "table_rows": {"users": -1, "sessions": 8}}), "table_rows"),
    ],
    ids=["garbage", "array", "missing-field", "future-version", "wrong-type", "bad-day", "not-utc", "negative"],
)
def test_unreadable_manifest_raises_corrupt_manifest_with_its_key(mangle, expected):
    text = mangle(json.loads(complete_manifest().to_json()))
    with pytest.raises(CorruptManifest, match=expected) as raised:
        Manifest.from_json(text, key="daily/2026-01-05/groveauth.manifest.json")
    assert "daily/2026-01-05/groveauth.manifest.json" in str(raised.value)


# --------------------------------------------------------------------------------------------------
# BackupStore (both buckets)
# --------------------------------------------------------------------------------------------------


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
