"""A real backup stored as a nightly run at a given moment stores it (a test cannot run one in the past): for the
watch and alert tests, which step a clock through days without backups."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from patina_assets.backup import manifest_for, open_store
from patina_assets.config import PatinaConfig
from patina_assets.engine import SqliteSource, dump_database
from patina_assets.storage import utc_timestamp


def store_backup_captured_at(
    config: PatinaConfig, database: str, moment: dt.datetime, tmp_path: Path, source: Path | None = None
) -> None:
    """A real dump of ``database`` (from ``source``, default its configured SQLite file), stored through the store
    as the backup whose data was read at ``moment``, for the day before it."""
    source = source if source is not None else config.database(database).sqlite_path
    path = tmp_path / f"{database}-{moment:%Y%m%d%H%M}.sql"
    with SqliteSource(source) as opened:
        result = dump_database(opened, path, database=database)
    day = (moment - dt.timedelta(days=1)).date().isoformat()
    manifest = dataclasses.replace(
        manifest_for(result, day, None),
        started_at=utc_timestamp(moment),
        captured_at=utc_timestamp(moment),
        captured_late=False,
        finished_at=utc_timestamp(moment + dt.timedelta(seconds=1)),
    )
    open_store(config).publish_daily(day, database, path, manifest, now=moment + dt.timedelta(seconds=2))
