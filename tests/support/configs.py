"""Patina configurations for tests, written as real patina.yaml files and loaded the way users load them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import yaml

from patina_assets.config import PatinaConfig, load_config

FAST_RETRIES = {"retries": 2, "retry_delay_seconds": 0, "request_attempts": 2, "request_backoff_seconds": 0}


def write_config(directory: Path, databases: list[dict], bucket: dict | None = None, **sections) -> PatinaConfig:
    """Write `directory/patina.yaml` and load it. `bucket` defaults to a local bucket in `directory`."""
    document = {
        "start_date": "2026-01-01",
        "databases": databases,
        "bucket": bucket or {"local": {"path": str(directory / "bucket")}},
        "dump": {**FAST_RETRIES, **sections.pop("dump", {})},
        **sections,
    }
    path = directory / "patina.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_config(path, env={})


def empty_database(path: Path) -> Path:
    """A SQLite file with nothing in it (a restore's or an import's target)."""
    sqlite3.connect(path).close()
    return path


def small_database(path: Path, rows: int = 50, *, blob_bytes: int = 0) -> Path:
    """A little SQLite database with a parent/child pair and an index."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL, big INTEGER, avatar BLOB);
        CREATE TABLE posts(id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL REFERENCES users(id), body TEXT);
        CREATE INDEX posts_user ON posts(user_id);
        """
    )
    rng = __import__("random").Random(rows)
    db.executemany(
        "INSERT INTO users VALUES (?,?,?,?)",
        [
            (i, f"user{i}@example.com", 2**62 + i, rng.randbytes(blob_bytes) if blob_bytes else None)
            for i in range(1, rows + 1)
        ],
    )
    db.executemany(
        "INSERT INTO posts(user_id, body) VALUES (?,?)",
        [(1 + i % rows, f"post {i}\nline two") for i in range(rows * 2)],
    )
    db.commit()
    db.close()
    return path
