"""Fixtures of the R2 bucket backup tests: moto's S3 server on loopback (`moto_endpoint`, tests/conftest.py)
holding both the source bucket and the backup bucket, each side behind its own FaultProxy, so a test counts
what reached each side and breaks listings on purpose."""

from __future__ import annotations

import pytest
from support.s3_server import FaultProxy, create_bucket, patina_client

from patina_assets.storage import MiB, S3Bucket


@pytest.fixture
def source_proxy(moto_endpoint):
    with FaultProxy(moto_endpoint) as proxy:
        yield proxy


@pytest.fixture
def backup_proxy(moto_endpoint):
    with FaultProxy(moto_endpoint) as proxy:
        yield proxy


@pytest.fixture
def source_name(moto_endpoint) -> str:
    return create_bucket(moto_endpoint)


@pytest.fixture
def source(source_proxy, source_name) -> S3Bucket:
    # Tiny pages: every listing here is paginated.
    return S3Bucket(patina_client(source_proxy.endpoint_url), source_name, list_page_size=3)


@pytest.fixture
def backup(backup_proxy, moto_endpoint) -> S3Bucket:
    return S3Bucket(patina_client(backup_proxy.endpoint_url), create_bucket(moto_endpoint), part_size=5 * MiB)
