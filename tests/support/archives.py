"""Weekly-archive test helpers and fixtures, shared by tests/test_archive.py, tests/test_retention.py and
tests/defs/test_archives.py: small source databases that record the day they were backed up, real daily
backups of them, and ways to damage a stored archive."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import tarfile
from pathlib import Path

import pytest
import zstandard

from patina_assets.archive import ArchiveStore
from patina_assets.backup import Cloudflare, back_up, open_store
from patina_assets.engine import restore_dump
from patina_assets.storage import ArchiveManifest, weekly_manifest_key

from .configs import small_database, write_config

NO_CLOUDFLARE = Cloudflare(api_url="http://127.0.0.1:9", token=None)  # SQLite sources never call it


def make_source(path: Path, rows: int = 20) -> Path:
    """A small database plus a `days` table that records each day it was backed up on."""
    small_database(path, rows)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE days(day TEXT PRIMARY KEY)")
    db.commit()
    db.close()
    return path


def touch(source: Path, day: str) -> None:
    """Change the database a little, as a day of use would: the restored copy then tells which day it is."""
    db = sqlite3.connect(source)
    db.execute("INSERT OR IGNORE INTO days VALUES (?)", (day,))
    db.execute("INSERT INTO posts(user_id, body) VALUES (1, ?)", (f"written on {day}",))
    db.commit()
    db.close()


def day_of_restored(sql_path: Path, target: Path) -> str:
    """Restore a dump for real and return the last day its database saw."""
    restore_dump(sql_path, target)
    db = sqlite3.connect(target)
    try:
        return db.execute("SELECT max(day) FROM days").fetchone()[0]
    finally:
        db.close()


def back_up_day(config, store, day: str, names: list[str] | None = None) -> None:
    for database in config.databases:
        if names is None or database.name in names:
            touch(database.sqlite_path, day)
            back_up(database, day, store, NO_CLOUDFLARE, config.dump)


@pytest.fixture
def config(tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir()
    databases = [
        {"name": "groveauth", "source": str(make_source(sources / "auth.sqlite", 30))},
        {"name": "scout-db", "source": str(make_source(sources / "scout.sqlite", 10))},
    ]
    return write_config(tmp_path, databases, start_date="2026-01-01")


@pytest.fixture
def store(config):
    return open_store(config)


@pytest.fixture
def archives(store):
    return ArchiveStore(store)


NAMES = ["groveauth", "scout-db"]


def rewrite_archive(archives, manifest, change, *, update_manifest=True):
    """Re-pack the stored archive with `change(name, data) -> data` applied to each member, upload it over
    the same key, and (optionally) make the manifest vouch for the new object, so only the member check can
    tell."""
    bucket = archives.bucket
    raw = zstandard.ZstdDecompressor(max_window_size=1 << 27).decompressobj().decompress(bucket.get_bytes(manifest.key))
    source = tarfile.open(fileobj=io.BytesIO(raw))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as target:
        for info in source.getmembers():
            data = change(info.name, source.extractfile(info).read())
            info.size = len(data)
            target.addfile(info, io.BytesIO(data))
    packed = zstandard.ZstdCompressor().compress(out.getvalue())
    bucket.put_bytes(manifest.key, packed)
    if update_manifest:
        forged = ArchiveManifest(
            manifest.index, manifest.key, len(packed), hashlib.sha256(packed).hexdigest(), manifest.created_at
        )
        bucket.put_bytes(weekly_manifest_key(manifest.week), forged.to_json().encode())
        return forged
    return manifest


def flip_sql(target_path):
    def change(name, data):
        if name != target_path:
            return data
        return data.replace(b"written on", b"WRITTEN ON", 1)  # same size, different bytes

    return change
