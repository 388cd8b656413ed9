"""The Bucket contract, run against both implementations (a local directory and S3 on moto)."""

from __future__ import annotations

import pytest
from support.storage import (
    keys_of,
    sha256_hex,
    write_dump,
)

from patina_assets.storage import (
    InvalidKey,
    MiB,
    ObjectChanged,
    StorageObjectNotFound,
)


def test_put_get_stat_roundtrip(bucket):
    info = bucket.put_bytes("daily/2026-01-05/x.txt", b"hello", content_type="text/plain")

    assert (info.key, info.size) == ("daily/2026-01-05/x.txt", 5)
    assert info.last_modified.tzinfo is not None
    assert bucket.get_bytes("daily/2026-01-05/x.txt") == b"hello"
    stat = bucket.stat("daily/2026-01-05/x.txt")
    assert stat is not None and stat.size == 5 and stat.etag
    assert bucket.stat("daily/2026-01-05/missing.txt") is None


def test_a_conditional_write_replaces_only_the_object_its_writer_read(bucket):
    key = "index/daily/x.json"
    created = bucket.put_bytes_if_unchanged(key, b"first", None)  # None: only where there is no object yet
    assert bucket.get_bytes(key) == b"first" and created.etag
    with pytest.raises(ObjectChanged):
        bucket.put_bytes_if_unchanged(key, b"late creator", None)
    replaced = bucket.put_bytes_if_unchanged(key, b"second", created.etag)
    assert bucket.get_bytes(key) == b"second" and replaced.etag != created.etag
    with pytest.raises(ObjectChanged):  # the writer that read "first" does not overwrite "second"
        bucket.put_bytes_if_unchanged(key, b"stale", created.etag)
    assert bucket.get_bytes(key) == b"second"
    bucket.delete(key)
    with pytest.raises(ObjectChanged):  # gone since it was read
        bucket.put_bytes_if_unchanged(key, b"stale", replaced.etag)
    assert bucket.stat(key) is None and bucket.incomplete_writes() == []  # no temporary left behind either


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


def test_list_folders_names_the_folders_one_level_down_not_their_objects(bucket, kind, request):
    for key in ["daily/2026-01-06/a.json", "daily/2026-01-05/a.json", "daily/2026-01-05/b.json", "daily/x", "ab/1"]:
        bucket.put_bytes(key, key.encode())
    for _ in range(3):  # a day's many databases are not what is listed
        bucket.put_bytes(f"daily/2026-01-07/db-{_}.json", b"x")

    assert list(bucket.list_folders("daily/")) == ["daily/2026-01-05/", "daily/2026-01-06/", "daily/2026-01-07/"]
    assert list(bucket.list_folders("")) == ["ab/", "daily/"]
    assert list(bucket.list_folders("weekly/")) == []
    with pytest.raises(InvalidKey):
        list(bucket.list_folders("daily"))
    if kind == "s3":  # three folders with two per page: two ListObjectsV2 calls
        proxy = request.getfixturevalue("proxy")
        proxy.clear()
        list(bucket.list_folders("daily/"))
        assert len(proxy.seen("ListObjectsV2")) == 2


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
