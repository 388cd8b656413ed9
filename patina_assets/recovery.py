"""Disaster recovery as plain Python: where each database goes, and restoring every database in priority
order (`patina restore --all DAY --to ...`), stopping at the first failure; the command line only asks and
prints. No Dagster here: recovery must work when Dagster is what was lost."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .engine import PatinaError
from .engine.d1_address import parse_d1_source

if TYPE_CHECKING:
    from .catalog import Backup, Catalog
    from .config import DatabaseConfig, PatinaConfig

# The catalog and the bucket are imported where they are used: `patina dump` imports this module through the
# command line and carries only the engine (its benchmark's memory goal is 64 MB).

D1_SOURCES = "d1-sources"
LATEST = "latest"


def is_d1_target(target: str) -> bool:
    return target.startswith("d1:")


def import_into_d1(config: PatinaConfig, dump: Path, account: str, database_id: str):
    from .engine.d1_import import import_dump
    from .engine.restore import DumpReader

    reader = DumpReader(dump)
    for _ in reader.parts():  # the footer's sha256 and each table's row count, before anything is sent
        pass
    return import_dump(
        dump,
        account,
        database_id,
        token=config.cloudflare.api_token(os.environ),
        api_url=config.cloudflare.api_url,
        expected_rows=reader.expected_rows,
        **importer_options(config),
    )


def importer_options(config: PatinaConfig) -> dict:
    """The importer's request settings: the dumps' (attempts and backoff per request, the token's share of
    the rate limit). 429s are waited out as long as the dumps' are (the engine's patience for both)."""
    return {**config.dump.request_options(), "requests_per_5_minutes": config.cloudflare.requests_per_5_minutes}


def parse_d1_target(target: str) -> tuple[str, str]:
    try:
        return parse_d1_source(target)
    except ValueError as exc:
        raise ValueError(f"--to {target}: {exc}") from None


def check_d1_targets_empty(config: PatinaConfig, targets: list[tuple[str, str]]) -> None:
    """Every D1 target must exist and be empty before the first one is written (a dump has no DROP TABLE)."""
    from .engine.d1_import import D1Importer

    token = config.cloudflare.api_token(os.environ)
    busy = []
    for name, target in targets:
        account, database_id = parse_d1_target(target)
        with D1Importer(
            account,
            database_id,
            token=token,
            api_url=config.cloudflare.api_url,
            **importer_options(config),
        ) as importer:
            tables = importer.tables_in()
        if tables:
            busy.append(f"{name} -> {target} ({len(tables)} tables)")
    if busy:
        raise PatinaError(
            f"nothing was restored: these targets are not empty: {'; '.join(busy)}. A dump restores "
            "into an EMPTY database (it has no DROP TABLE): create new ones with `wrangler d1 create`"
        )


def all_targets(config: PatinaConfig, to: str) -> dict[str, str | Path]:
    """Where each database goes: ``DIR`` (DIR/<db>.sqlite), ``d1-sources`` (each database's own configured
    d1:// source) or a mapping file (YAML or JSON: database -> d1://ACCOUNT/ID or a .sqlite path)."""
    import yaml

    names = config.names
    if to == D1_SOURCES:
        not_d1 = [db.name for db in config.databases if not db.is_d1]
        if not_d1:
            raise ValueError(
                f"--to {D1_SOURCES}: {', '.join(not_d1)} have no d1:// source in the config; give a "
                "mapping file instead (database: d1://ACCOUNT_ID/DATABASE_ID)"
            )
        return {db.name: f"d1://{db.account_id}/{db.database_id}" for db in config.databases}
    path = Path(to)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            mapping = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"--to {to}: cannot read the mapping file ({exc})") from None
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise ValueError(
                f"--to {to}: expected a mapping of database name to d1://ACCOUNT_ID/DATABASE_ID or a .sqlite path"
            )
        unknown = sorted(set(map(str, mapping)) - set(names))
        lacking = [name for name in names if name not in mapping]
        if unknown or lacking:
            raise ValueError(
                f"--to {to}: "
                + "; ".join(
                    ([f"unknown database(s) {', '.join(unknown)}"] if unknown else [])
                    + ([f"no target for {', '.join(lacking)}"] if lacking else [])
                )
                + f" (configured: {', '.join(names)})"
            )
        for target in mapping.values():
            if is_d1_target(target):
                parse_d1_target(target)
        return {name: (target if is_d1_target(target) else path.parent / target) for name, target in mapping.items()}
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"--to {to}: not a directory; give a directory for DIR/<db>.sqlite, {D1_SOURCES}, or a "
            ".yaml/.json mapping file"
        )
    return {name: path / f"{name}.sqlite" for name in names}


@dataclass
class RestoreAll:
    """What `restore --all` did: the databases restored, the one that failed, the ones not attempted."""

    day: str
    done: list[dict] = field(default_factory=list)
    failure: dict | None = None
    not_attempted: list[str] = field(default_factory=list)


def plan_restore_all(
    config: PatinaConfig, catalog: Catalog, day: str, targets: dict[str, str | Path], *, source, any_status: bool
) -> list[tuple[DatabaseConfig, Backup, str | Path]]:
    """Each database's backup of `day` (or the latest) and its target, critical first; nothing is written.
    Raises when a database has no backup, or a file target exists (restore never overwrites)."""
    from .catalog import BackupNotFound

    plan, missing = [], []
    for db in config.by_priority():
        try:
            backup = (
                catalog.latest(db.name, source=source, any_status=any_status)
                if day == LATEST
                else catalog.find(day, db.name, source=source, any_status=any_status)
            )
            plan.append((db, backup, targets[db.name]))
        except BackupNotFound:
            missing.append(db.name)
    if missing:
        raise PatinaError(
            f"nothing was restored: no backup of {', '.join(missing)} on {day} "
            f"(`patina list --date {day}` shows what that day has; choose another day, or restore "
            "databases one by one with `patina restore DAY DB --to ...`)"
        )
    exists = [str(t) for _, _, t in plan if not is_d1_target(str(t)) and Path(t).exists()]
    if exists:
        raise ValueError(f"nothing was restored: {', '.join(exists)} already exist(s); restore never overwrites")
    return plan


def restore_all(
    config: PatinaConfig,
    catalog: Catalog,
    day: str,
    plan: list[tuple[DatabaseConfig, Backup, str | Path]],
    *,
    allow_foreign_key_violations: bool = False,
) -> RestoreAll:
    """Restore each planned database in order, stopping at the first failure (the D1 targets were confirmed
    and checked empty by the caller: see `check_d1_targets_empty`)."""
    from .storage import StorageError

    result = RestoreAll(day)
    for db, backup, target in plan:
        started = time.monotonic()
        try:
            with tempfile.TemporaryDirectory(prefix="patina-restore-") as tmp:
                dump = catalog.download(backup, Path(tmp) / backup.filename)
                if is_d1_target(str(target)):
                    account, database_id = parse_d1_target(str(target))
                    detail = f"{import_into_d1(config, dump, account, database_id).num_queries} statements"
                else:
                    from .engine import restore_dump

                    report = restore_dump(dump, Path(target), allow_foreign_key_violations=allow_foreign_key_violations)
                    detail = f"{sum(report.table_rows.values()):,} rows"
        except (PatinaError, StorageError, ValueError) as exc:
            result.failure = {"database": db.name, "priority": db.priority, "target": str(target), "error": str(exc)}
            break
        result.done.append(
            {
                "database": db.name,
                "priority": db.priority,
                "target": str(target),
                "from": backup.where,
                "date": backup.day,
                "verification": backup.status,
                "detail": detail,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
    result.not_attempted = [db.name for db, _, _ in plan[len(result.done) + (1 if result.failure else 0) :]]
    return result
