"""Buckets filled by real materializations, for the operators' tools tests (catalog, CLI, HTTP API).

``filled(kind)`` runs Dagster's nightly job for three days and the weekly job for the first week, on three small
SQLite databases, into a local bucket (``kind="local"``) or moto's S3 (``kind="s3"``), with a real Dagster
instance directory (``DAGSTER_HOME``). Retention keeps one day of dailies, so after the weekly run the first
week's two days exist only inside the weekly archive and the last day only as dailies:

    weekly/2026-03-01...tar.zst  <- 2026-03-01 and 2026-03-02 of every database
    daily/2026-03-09/...          <- every database

Building one takes a few seconds, so each kind is built once per test process and shared; tests that change a
bucket take ``copy_of(...)`` first.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import yaml

from patina_assets.config import PatinaConfig, load_config
from patina_assets.defs import build_definitions
from patina_assets.defs.archives.jobs import WEEKLY_JOB
from patina_assets.defs.dumps.jobs import NIGHTLY_JOB

from .configs import small_database, write_config
from .s3_server import create_bucket, direct_client, moto_server

WEEK = "2026-03-01"
ARCHIVED_DAYS = ("2026-03-01", "2026-03-02")
DAILY_DAY = "2026-03-09"
# Configured in this order on purpose: the priority order (critical, high, normal) is not the file's order.
DATABASES = (("scout-db", "normal", 12), ("autumnsgrove-posts", "high", 14), ("groveauth", "critical", 10))
PRIORITY_ORDER = ("groveauth", "autumnsgrove-posts", "scout-db")
S3_KEY_ENV, S3_SECRET_ENV = "PATINA_TOOLS_TEST_KEY", "PATINA_TOOLS_TEST_SECRET"


@dataclasses.dataclass(frozen=True)
class Filled:
    directory: Path
    config: PatinaConfig
    sources: dict[str, Path]  # database -> its SQLite source (unchanged since the backups)
    dagster_home: Path
    kind: str
    endpoint: str | None = None  # moto's endpoint for kind="s3"

    @property
    def config_path(self) -> Path:
        return self.directory / "patina.yaml"


_moto = None


def _moto_endpoint() -> str:
    """One moto server for the whole test process (its state is process-wide anyway)."""
    global _moto
    if _moto is None:
        _moto = moto_server()
        endpoint = _moto.__enter__()
        import atexit

        atexit.register(_moto.__exit__, None, None, None)
        _moto.endpoint = endpoint  # type: ignore[attr-defined]
    return _moto.endpoint  # type: ignore[attr-defined]


def s3_bucket_section(endpoint: str, bucket: str) -> dict:
    os.environ[S3_KEY_ENV] = os.environ[S3_SECRET_ENV] = "testing"
    return {
        "s3": {
            "bucket": bucket,
            "endpoint_url": endpoint,
            "region": "us-east-1",
            "access_key_id_env": S3_KEY_ENV,
            "secret_access_key_env": S3_SECRET_ENV,
        }
    }


def dagster_home(directory: Path, **extra) -> Path:
    home = directory / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}, **extra}))
    return home


@functools.cache
def filled(kind: str = "local") -> Filled:
    directory = Path(tempfile.mkdtemp(prefix=f"patina-tools-{kind}-"))
    import atexit

    atexit.register(shutil.rmtree, directory, True)
    sources_dir = directory / "sources"
    sources_dir.mkdir()
    sources = {name: small_database(sources_dir / f"{name}.sqlite", rows) for name, _, rows in DATABASES}
    endpoint = None
    bucket = None
    if kind == "s3":
        endpoint = _moto_endpoint()
        bucket = s3_bucket_section(endpoint, create_bucket(endpoint))
    config = write_config(
        directory,
        [
            {"name": name, "source": str(sources[name]), "priority": priority, "description": f"the {name} database"}
            for name, priority, _ in DATABASES
        ],
        bucket,
        retention={"daily_days": 1},
    )
    home = dagster_home(directory)
    defs = build_definitions(config)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for day in (*ARCHIVED_DAYS, DAILY_DAY):
            result = defs.resolve_job_def(NIGHTLY_JOB).execute_in_process(partition_key=day, instance=instance)
            assert result.success
        result = defs.resolve_job_def(WEEKLY_JOB).execute_in_process(partition_key=WEEK, instance=instance)
        assert result.success
    return Filled(directory, config, sources, home, kind, endpoint)


def copy_of(original: Filled, directory: Path) -> Filled:
    """The same backups in a bucket of their own (a copied directory, or a new S3 bucket), to change freely."""
    directory.mkdir(parents=True, exist_ok=True)
    if original.kind == "s3":
        client = direct_client(original.endpoint)
        bucket = create_bucket(original.endpoint)
        source = original.config.bucket.s3.bucket
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=source):
            for item in page.get("Contents", []):
                client.copy_object(Bucket=bucket, Key=item["Key"], CopySource={"Bucket": source, "Key": item["Key"]})
        section = s3_bucket_section(original.endpoint, bucket)
    else:
        shutil.copytree(original.config.bucket.local.path, directory / "bucket")
        section = {"local": {"path": str(directory / "bucket")}}
    document = yaml.safe_load(original.config_path.read_text())
    document["bucket"] = section
    (directory / "patina.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    config = load_config(directory / "patina.yaml", env={})
    return dataclasses.replace(original, directory=directory, config=config)
