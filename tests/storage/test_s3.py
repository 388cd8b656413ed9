"""S3Bucket against moto's server on loopback behind FaultProxy, which records every request and fails chosen
ones, so the tests see exactly what R2 would be sent."""

from __future__ import annotations

import socket
import traceback

import pytest
from support.s3_server import (
    create_access_key,
    direct_client,
    iam_enforced,
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

from patina_assets.storage import (
    BackupStore,
    MiB,
    S3Bucket,
    StorageAccessDenied,
    StorageBucketNotFound,
    StorageUnavailable,
    make_s3_client,
)


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
