"""Fixtures of the storage tests: moto's S3 server on loopback (`moto_endpoint`, tests/conftest.py) behind
FaultProxy, and `bucket`, parametrized over both implementations, so every contract test runs against a
directory and S3."""

from __future__ import annotations

import pytest
from support.s3_server import (
    FaultProxy,
    create_bucket,
)
from support.storage import (
    Breaker,
    s3_bucket,
)

from patina_assets.storage import (
    BackupStore,
    Bucket,
    LocalBucket,
)


@pytest.fixture
def proxy(moto_endpoint):
    with FaultProxy(moto_endpoint) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def bucket_name(moto_endpoint) -> str:
    return create_bucket(moto_endpoint)


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


@pytest.fixture
def breaker(kind, request, monkeypatch) -> Breaker:
    return Breaker(kind, request, monkeypatch)
