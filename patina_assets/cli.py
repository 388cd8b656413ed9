"""`patina`: the command line. Each subcommand is a thin shell over the engine or the bucket."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .cli_support import (
    UsageError,
    announce,
    check_port_free,
    configure_logging,
    database_name,
    exit_quietly_on_closed_pipe,
    nothing_matched,
    open_catalog,
    refuse_overwrite,
)
from .engine import PatinaError
from .recovery import (
    D1_SOURCES,
    LATEST,
    all_targets,
    check_d1_targets_empty,
    import_into_d1,
    is_d1_target,
    parse_d1_target,
    plan_restore_all,
    restore_all,
)

if TYPE_CHECKING:
    from .catalog import Catalog
    from .config import PatinaConfig

# The bucket, catalog and status modules are imported inside the commands that use them: `patina dump`
# then carries only the engine (its benchmark's memory goal is 64 MB); the dump writer and the restorer
# likewise, so `patina status` (issue 17: under 0.5 s) does not load them.

#: The running Dagster webserver `patina trigger` queues its runs through (`--webserver`'s default).
WEBSERVER_ENV_VAR = "PATINA_DAGSTER_WEBSERVER"

#: ``restore --all DAY --to d1-sources``: each database into its own configured d1:// source.
#: In place of a DAY: the newest verified backup by capture time (``--any``: the newest that is not damaged).


class Progress:
    """Rows, bytes and rate on stderr, at most a few times a second, only when stderr is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, table: str, rows: int, sql_bytes: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.25:
            return
        self.last = now
        rate = rows / max(now - self.start, 1e-6)
        sys.stderr.write(f"\r{table[:30]:<30} {rows:>12,} rows {sql_bytes / 1e6:>10.1f} MB {rate:>10,.0f} rows/s")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _cmd_dump(args: argparse.Namespace) -> int:
    refuse_overwrite(Path(args.output), args.force)
    progress = Progress(sys.stderr.isatty() and not args.quiet)
    options, retries = {}, {}
    if args.source.startswith("d1://"):  # patina.yaml's request and budget settings (the defaults without one)
        config = _config(args)
        options = {
            **config.dump.d1_source_options(),
            "token_env": config.cloudflare.api_token_env,
            "api_url": config.cloudflare.api_url,
            "requests_per_5_minutes": config.cloudflare.requests_per_5_minutes,
        }
        retries = {"consistency_retries": config.dump.consistency_retries}
    options.update({k: v for k, v in (("deadline_seconds", args.deadline), ("page_bytes", args.page_bytes)) if v})
    from .engine import dump_database, open_source

    with open_source(args.source, **options) as source:
        result = dump_database(
            source, Path(args.output), database=args.name, job_id=args.job_id, progress=progress, **retries
        )
    progress.done()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        consistency = "one point in time" if result.point_in_time else "NOT one point in time (see the warning)"
        print(
            f"{result.path}: {result.tables} tables, {result.rows:,} rows, {result.bytes:,} bytes "
            f"({result.format}), sha256 {result.sha256[:16]}…, {result.duration_seconds:.2f}s"
            + (f", {result.requests} requests, {consistency} ({result.consistency})" if result.requests else "")
        )
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------------
# Restores: a local dump file, or a backup from the bucket, into a new SQLite file or a D1 database
# --------------------------------------------------------------------------------------------------


def _print_sqlite_restore(report, args: argparse.Namespace, extra: dict | None = None) -> None:
    if args.json:
        print(
            json.dumps(
                {
                    **(extra or {}),
                    "target": str(report.target),
                    "table_rows": report.table_rows,
                    "statements": report.statements,
                    "seconds": round(report.seconds, 3),
                },
                indent=2,
            )
        )
        return
    rows = sum(report.table_rows.values())
    fk = (
        f"{len(report.foreign_key_violations)} foreign key violation(s) kept"
        if report.foreign_key_violations
        else "foreign_key_check ok"
    )
    print(
        f"restored {len(report.table_rows)} table(s), {rows:,} rows into {report.target} in {report.seconds:.2f}s; "
        f"integrity_check ok, {fk}, row counts match the dump"
    )


def _cmd_restore(args: argparse.Namespace) -> int:
    if args.all:
        if args.args:
            raise ValueError("restore --all DAY takes no other positional arguments: patina restore --all DAY --to ...")
        if args.table:
            raise ValueError("--table restores one table of one database; it cannot be combined with --all")
        return _restore_all(args)
    if len(args.args) == 1:
        _check_dump_argument(args.args[0])
        return _restore_file(args)
    if len(args.args) == 2:
        return _restore_backup(args)
    raise UsageError(
        "restore takes a DUMP file, or DAY DB from the bucket, or --all DAY: e.g. "
        "`patina restore dump.sql.zst --to new.sqlite`, `patina restore 2026-01-05 groveauth --to "
        "new.sqlite`, `patina restore --all 2026-01-05 --to restored/`"
    )


def _check_dump_argument(text: str) -> None:
    """One positional argument is a dump file; a day given alone lacks its database (a usage error, not a
    damaged dump)."""
    from .storage import InvalidKey, format_day

    if Path(text).exists():
        return
    try:
        day = format_day(text)
    except InvalidKey:
        raise UsageError(
            f"{text}: no such dump file. Give a local .sql/.sql.gz/.sql.zst dump, or DAY DB for a "
            "backup in the bucket (`patina list` shows them)"
        ) from None
    raise UsageError(
        f"restore {day}: which database? Give DAY DB, e.g. `patina restore {day} DB --to NEW.sqlite` "
        f"(`patina list --date {day}` shows that day's backups), or --all {day} for every database"
    )


def _restore_file(args: argparse.Namespace) -> int:
    """``patina restore DUMP --to ...``: a local dump file (the original form); an age file (a stored
    encrypted backup, e.g. from /download) is decrypted first, with the identity from the environment."""
    dump = Path(args.args[0])
    with open(dump, "rb") as head, tempfile.TemporaryDirectory(prefix="patina-restore-") as tmp:
        from .encryption import is_age_file

        if is_age_file(head.read(64)):
            dump = _decrypt_local(dump, Path(tmp), args)
        return _restore_plain_file(dump, args)


def _decrypt_local(path: Path, directory: Path, args: argparse.Namespace) -> Path:
    from .config import DEFAULT_IDENTITY_ENV
    from .encryption import decrypt_to_file, load_identities

    variable = _config(args).encryption.identity_file_env if args.config else DEFAULT_IDENTITY_ENV
    keyring = load_identities(variable, os.environ)
    target = directory / path.name.removesuffix(".age")
    with open(path, "rb") as source:
        decrypt_to_file(source, target, keyring, what=str(path))
    return target


def _restore_plain_file(dump: Path, args: argparse.Namespace) -> int:
    if is_d1_target(args.to):
        if args.table:
            raise ValueError("--table works with SQLite targets only: D1 restores the whole dump")
        config = _config(args)
        return _to_d1(config, dump, args.to, args, label=str(dump))
    from .engine import restore_dump

    progress = Progress(sys.stderr.isatty())
    report = restore_dump(
        dump,
        Path(args.to),
        table=args.table,
        progress=progress,
        allow_foreign_key_violations=args.allow_foreign_key_violations,
    )
    progress.done()
    _print_sqlite_restore(report, args)
    return 0


def _restore_backup(args: argparse.Namespace) -> int:
    """``patina restore DAY DB --to ...``: a backup from the bucket, checked against its sha256 on the way."""
    day_text, name = args.args
    config = _config(args)
    catalog = _catalog(config)
    name = database_name(config, name, catalog)
    backup = _pick(catalog, day_text, name, args, "restore DAY DB")
    day = backup.day
    if is_d1_target(args.to):
        if args.table:
            raise ValueError("--table works with SQLite targets only: D1 restores the whole dump")
        _confirm([(name, args.to)], args)
    with tempfile.TemporaryDirectory(prefix="patina-restore-") as tmp:
        dump = catalog.download(backup, Path(tmp) / backup.filename)
        if is_d1_target(args.to):
            return _to_d1(config, dump, args.to, args, label=f"{name} on {day}", confirmed=True)
        from .engine import restore_dump

        progress = Progress(sys.stderr.isatty())
        try:
            report = restore_dump(
                dump,
                Path(args.to),
                table=args.table,
                progress=progress,
                allow_foreign_key_violations=args.allow_foreign_key_violations,
            )
        except PatinaError as exc:  # name the backup, not the temporary file it was downloaded to
            raise PatinaError(str(exc).replace(str(dump), f"the backup of {name} on {day}")) from None
        progress.done()
    _print_sqlite_restore(
        report,
        args,
        {
            "database": name,
            "date": day,
            "from": backup.where,
            "verification": backup.status,
            "capturedAt": _iso(backup.captured_at),
        },
    )
    if not args.json:
        print(_picked(backup), file=sys.stderr)
    return 0


def _pick(catalog: Catalog, day_text: str, name: str, args: argparse.Namespace, where: str):
    """The backup a DAY (or ``latest``) names, with ``--from`` and ``--any``."""
    if day_text == LATEST:
        return catalog.latest(name, source=args.source, any_status=args.any)
    return catalog.find(_day(day_text, where), name, source=args.source, any_status=args.any)


def _picked(backup) -> str:
    late = " (captured late: it holds the data of that moment, not of its day)" if backup.captured_late else ""
    return (
        f"{backup.database} on {backup.day}: the {backup.location} copy, {backup.status}, captured "
        f"{_iso(backup.captured_at) or 'at an unrecorded time'}{late}"
    )


def _iso(moment) -> str | None:
    from .catalog import iso

    return iso(moment)


def _to_d1(
    config: PatinaConfig, dump: Path, target: str, args: argparse.Namespace, *, label: str, confirmed: bool = False
) -> int:
    account, database_id = parse_d1_target(target)
    if not confirmed:
        _confirm([(label, target)], args)
    result = import_into_d1(config, dump, account, database_id)
    if args.json:
        print(json.dumps({"restored": label, **result.to_dict()}, indent=2))
    else:
        print(
            f"restored {label} into {target}: {result.num_queries} statements in {result.seconds:.1f}s, row counts "
            f"match the dump; undo with `wrangler d1 time-travel restore DB --bookmark={result.at_bookmark}`"
        )
    return 0


def _confirm(targets: list[tuple[str, str]], args: argparse.Namespace) -> None:
    """Writing into D1 needs a yes: typed at a terminal, or --yes."""
    if args.yes:
        return
    listing = "; ".join(f"{what} -> {where}" for what, where in targets)
    if not sys.stdin.isatty():
        raise ValueError(
            f"refusing to restore into D1 without confirmation ({listing}): it writes into those "
            "databases. Check the targets, then run again with --yes"
        )
    print(f"About to restore into D1: {listing}.", file=sys.stderr)
    print(
        "Each target must be an EMPTY database (a dump has no DROP TABLE). Type 'yes' to go on: ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    if sys.stdin.readline().strip().lower() != "yes":
        raise ValueError("not confirmed: nothing was restored")


def _restore_all(args: argparse.Namespace) -> int:
    """``patina restore --all DAY --to ...``: every database, critical first, stopping at the first failure
    (the work is `recovery.restore_all`; here, the confirmation and the report)."""
    from .status import table

    day = args.all if args.all == LATEST else _day(args.all, "restore --all DAY")
    config = _config(args)
    catalog = _catalog(config)
    targets = all_targets(config, args.to)
    plan = plan_restore_all(config, catalog, day, targets, source=args.source, any_status=args.any)
    d1 = [(db.name, str(t)) for db, _, t in plan if is_d1_target(str(t))]
    if d1:
        _confirm(d1, args)
        check_d1_targets_empty(config, d1)
    result = restore_all(config, catalog, day, plan, allow_foreign_key_violations=args.allow_foreign_key_violations)
    done, failure, not_attempted = result.done, result.failure, result.not_attempted
    if args.json:
        print(json.dumps({"date": day, "restored": done, "failed": failure, "notAttempted": not_attempted}, indent=2))
    else:
        rows = [[d["database"], d["priority"], "restored", d["target"], d["detail"]] for d in done]
        if failure:
            rows.append([failure["database"], failure["priority"], "FAILED", failure["target"], ""])
        rows += [
            [name, config.database(name).priority, "not attempted", str(targets[name]), ""] for name in not_attempted
        ]
        print(f"restore --all {day}, in priority order:")
        print(table(["DATABASE", "PRIORITY", "RESULT", "TARGET", "DETAIL"], rows))
        if failure:
            print(f"\nstopped at {failure['database']}: {failure['error']}")
            print(f"fix it, then restore the rest one by one (patina restore {day} DB --to ...), in the order above")
    return 1 if failure else 0


# --------------------------------------------------------------------------------------------------
# The bucket: list, download, status, restore guide
# --------------------------------------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace) -> int:
    from .catalog import list_document
    from .status import table
    from .storage import validate_database_name

    config = _config(args)
    day = _day(args.date, "--date") if args.date else None
    catalog = _catalog(config)
    database = database_name(config, validate_database_name(args.db), catalog) if args.db else None
    # from each database's history index, checked against one listing, as `status` and the API's /list read
    backups = catalog.overview(config.names).backups
    document = list_document(backups, database=database, day=day, limit=args.limit)
    if not document["filtered"] and (database or day):
        raise nothing_matched(backups, database, day)
    r2 = _r2_listing(config, catalog, day)
    if args.json:
        print(json.dumps({**document, "r2": r2} if r2 is not None else document, indent=2))
        return 0
    rows = [
        [
            b["date"],
            b["database"],
            b["location"],
            b["size"],
            str(b["tables"]),
            f"{b['rows']:,}",
            (b["capturedAt"] or "-") + (" LATE" if b["capturedLate"] else ""),
            b["verification"].upper() if b["verification"] in ("failed", "damaged") else b["verification"],
            b["expiresAt"] or "-",
        ]
        for b in document["backups"]
    ]
    print(table(["DATE", "DATABASE", "WHERE", "SIZE", "TABLES", "ROWS", "CAPTURED", "VERIFIED", "EXPIRES"], rows))
    for b in document["backups"]:
        if b["problem"]:
            print(f"  {b['database']} {b['date']} ({b['location']}): {b['verification']}: {b['problem']}")
    shown = len(document["backups"])
    if any(b["capturedLate"] for b in document["backups"]):
        print(
            "\nLATE: captured more than a day after its day ended (a backfill): it holds the data of its capture "
            "time, not of its day"
        )
    print(f"\n{shown} of {document['filtered']} matching backup(s) shown; {document['total']} in the bucket")
    if r2 is not None and (r2["snapshots"] or r2["unreadable"]):
        from .r2.report import R2_HEADERS, render_r2_rows

        print()
        print(table(R2_HEADERS, render_r2_rows(r2)))
        for unreadable in r2["unreadable"]:
            print(f"  {unreadable['manifest']}: cannot be read: {unreadable['problem']}")
        print(f"\n{len(r2['snapshots'])} R2 snapshot(s); restore one with `patina restore-r2 DAY NAME --to ...`")
    return 0


def _r2_listing(config: PatinaConfig, catalog: Catalog, day: str | None) -> dict | None:
    """The R2 snapshots for `list`, when R2 buckets are configured (None otherwise: nothing to look for)."""
    if not config.r2_buckets:
        return None
    from .r2.report import list_r2_document

    return list_r2_document(catalog.store.bucket, day=day)


def _cmd_restore_r2(args: argparse.Namespace) -> int:
    from .r2 import list_snapshots, restore_snapshot
    from .r2.restore import SnapshotNotFound, parse_destination
    from .storage import make_s3_client, validate_database_name

    config = _config(args)
    catalog = _catalog(config)
    name = validate_database_name(args.name)
    bucket = catalog.store.bucket
    if args.day == LATEST:
        snapshots, _ = list_snapshots(bucket, name)
        if not snapshots:
            raise SnapshotNotFound(
                f"there is no R2 snapshot of {name} yet; `patina list` shows the snapshots there are"
            )
        day = snapshots[-1].day
    else:
        day = _day(args.day, "DAY")
    client = None
    if not isinstance(parse_destination(args.to), Path):
        entry = config.r2_bucket(name)  # the destination bucket is reached with that R2 bucket's account and keys
        key_id, secret = entry.credentials()
        client = make_s3_client(entry.endpoint_url, entry.region, key_id, secret)
    result = restore_snapshot(
        bucket,
        day,
        name,
        args.to,
        prefix=args.prefix or "",
        overwrite=args.overwrite,
        s3_client=client,
        keys=catalog.store.keys,
    )
    if args.json:
        print(json.dumps(result.__dict__, indent=2))
    else:
        print(result.summary())
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    config = _config(args)
    catalog = _catalog(config)
    args.db = database_name(config, args.db, catalog)
    backup = _pick(catalog, args.day, args.db, args, "download DAY DB")
    day = backup.day
    target = catalog.download(backup, Path(args.output or backup.filename))
    if args.json:
        print(json.dumps({"path": str(target), **backup.to_dict()}, indent=2))
    else:
        print(
            f"{target}: {args.db} on {day}, {backup.sql_bytes:,} bytes of SQL ({backup.tables} tables, "
            f"{backup.rows:,} rows) from {backup.where}; sha256 {backup.sql_sha256} checked"
        )
        print(_picked(backup), file=sys.stderr)
    return 0


def _cmd_keygen(args: argparse.Namespace) -> int:
    from .encryption import generate_identity

    new = generate_identity()
    if args.output:
        path = Path(args.output)
        try:  # created readable by its owner only, and never over an existing key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise UsageError(f"{path} exists: a key file is never overwritten (choose another name)") from None
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(new.file_text)
        print(f"patina: wrote the identity to {path} (mode 600)", file=sys.stderr)
    else:
        sys.stdout.write(new.file_text)
    print(
        f"Public key: {new.recipient}\n"
        f"List it under encryption.recipients in patina.yaml; keep the identity out of every repository and point "
        f"$PATINA_AGE_IDENTITY (encryption.identity_file_env) at it where backups are read. Store a copy offline: "
        f"without it no encrypted backup can be opened.",
        file=sys.stderr,
    )
    return 0


def _cmd_reencrypt(args: argparse.Namespace) -> int:
    from .archive import ArchiveStore
    from .backup import open_store
    from .reencrypt import WOULD_REWRITE, reencrypt_backups
    from .status import table

    if bool(args.day) == bool(args.all):
        raise UsageError("give --day DAY (that day's backups and its week's archive) or --all")
    config = _config(args)
    store = open_store(config, create=False)
    results = reencrypt_backups(
        ArchiveStore(store), day=_day(args.day, "--day") if args.day else None, database=args.db, dry_run=args.dry_run
    )
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        rows = [
            [r.what, r.action.upper() if r.action == "failed" else r.action, r.new_key or r.old_key] for r in results
        ]
        print(table(["BACKUP", "ACTION", "OBJECT"], rows))
        for r in results:
            if r.problem:
                print(f"  {r.what}: {r.problem}")
        done = sum(r.action == (WOULD_REWRITE if args.dry_run else "rewritten") for r in results)
        print(
            f"\n{done} {'would be rewritten' if args.dry_run else 'rewritten'} to {', '.join(store.keys.fingerprints)}; "
            f"{sum(r.action == 'current' for r in results)} already current"
            + ("; nothing was written (--dry-run)" if args.dry_run else "")
        )
    return 1 if any(r.action == "failed" for r in results) else 0


def _cmd_status(args: argparse.Namespace) -> int:
    from .status import Snapshot, read_orchestrator, render_status, with_fleet_tenants

    config = _config(args)
    try:
        catalog = _catalog(config)
        # each tenant of a fleet is one database of the status (and of the runs Dagster reports)
        config, _ = with_fleet_tenants(config, catalog.store)
    except PatinaError as exc:
        if getattr(args, "check", False):  # cron reads the exit code: a bucket it cannot read holds no fresh backup
            print(f"error: {exc}")
            return 2
        raise
    orchestrator = read_orchestrator(config)  # Dagster is imported only with DAGSTER_HOME set
    snapshot = Snapshot.take(config, catalog, orchestrator)
    status = snapshot.to_dict()
    if getattr(args, "check", False):  # for cron / uptime checks: the exit code says it, no daemon needed
        from .watch import health  # (it imports the alerts' delivery: only here)

        verdict = health(snapshot.config, snapshot.backups, snapshot.now)
        status["check"] = {"exit_code": verdict.exit_code, "problems": list(verdict.problems)}
        print(
            json.dumps(status, indent=2)
            if args.json
            else "\n".join(verdict.problems or ("ok: every database is fresh",))
        )
        return verdict.exit_code
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    if "r2" in status and not args.json:
        from .r2.report import render_r2_status

        print(render_r2_status(status["r2"]))
    return 0


def _cmd_restore_guide(args: argparse.Namespace) -> int:
    from .fleets import with_tenants
    from .guide import render_guide, restore_guide

    config = _config(args)
    catalog = _catalog(config)
    config = with_tenants(config, catalog.store)  # a fleet's tenant has a guide as a configured database has
    database = config.database(args.db)
    guide = restore_guide(config, database, catalog.backups(database=database.name), manifest_of=catalog.manifest_of)
    print(json.dumps(guide, indent=2) if args.json else render_guide(guide))
    return 0


def _cmd_trigger(args: argparse.Namespace) -> int:

    config = _config(args)
    from .orchestrator import open_instance, trigger_backup

    with open_instance() as (instance, detail):
        if instance is None:
            raise PatinaError(
                f"trigger needs the Dagster instance the daemon uses ({detail}): set DAGSTER_HOME to "
                "its directory (the one with dagster.yaml; `make ui` uses this checkout's)"
            )
        triggered = trigger_backup(
            config,
            instance,
            args.db,
            args.reason,
            wait=args.wait,
            workspace=Path(args.workspace) if args.workspace else None,
            webserver=args.webserver,
        )
    document = triggered.to_dict()
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(
            f"run {triggered.run_id}: on-demand backup of {', '.join(triggered.databases)} for {triggered.day}, "
            f"{document['status']}" + (f" ({triggered.reason})" if triggered.reason else "")
        )
        if triggered.error:
            print(f"patina: error: the backup failed: {triggered.error}", file=sys.stderr)
    return 1 if document["status"] == "failed" else 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .api import serve

    config = _config(args)
    check_port_free(args.host, args.port)
    serve(config, host=args.host, port=args.port)
    return 0


def _config(args: argparse.Namespace) -> PatinaConfig:
    from .config import load_config

    config = load_config(getattr(args, "config", None))
    announce(config)
    return config


def _catalog(config: PatinaConfig) -> Catalog:
    return open_catalog(config)


def _day(text: str, where: str) -> str:
    from .storage import InvalidKey, format_day

    try:
        return format_day(text)
    except InvalidKey:
        raise ValueError(f"{where}: {text!r} is not a date: write a real date as YYYY-MM-DD, e.g. 2026-01-05") from None


def _limit(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _add_pick_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="source",
        choices=("auto", "daily", "weekly"),
        default="auto",
        help="which copy: auto (default: the daily, or the day's copy inside the weekly archive when "
        "the daily is damaged or failed verification), daily, or weekly",
    )
    parser.add_argument(
        "--any",
        action="store_true",
        help=f"also take a backup that is not verified ({LATEST}) or failed verification (a DAY)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="patina", description="Exact, D1-importable backups of Cloudflare D1 databases."
    )
    parser.add_argument("--version", action="version", version=f"patina {__version__}")
    parser.add_argument(
        "--config",
        help="the patina.yaml to use (default: $PATINA_CONFIG, then ./patina.yaml, then "
        "the demo's default in a Patina checkout)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what Dagster and the storage do (DEBUG)")
    sub = parser.add_subparsers(dest="command", required=True)

    dump = sub.add_parser("dump", help="dump a SQLite file or a D1 database to .sql, .sql.gz or .sql.zst")
    dump.add_argument("source", help="a SQLite file, or d1://ACCOUNT_ID/DATABASE_ID (token in CLOUDFLARE_API_TOKEN)")
    dump.add_argument("-o", "--output", required=True, help="the dump file; its suffix picks the format")
    dump.add_argument("--name", help="the database name written in the dump's header (default: from the file name)")
    dump.add_argument("--job-id", help="an id recorded in the header (default: a new UUID)")
    dump.add_argument(
        "--deadline",
        type=float,
        help="give up after this many seconds (D1 sources; default: patina.yaml's dump.deadline_seconds)",
    )
    dump.add_argument(
        "--page-bytes",
        type=int,
        help="bytes of SQL per REST response (default: patina.yaml's dump.page_bytes, 2,000,000)",
    )
    dump.add_argument("--json", action="store_true", help="print what was written as JSON")
    dump.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    dump.add_argument("--force", action="store_true", help="replace the output file if it exists")
    dump.set_defaults(func=_cmd_dump)

    restore = sub.add_parser(
        "restore",
        help="restore a dump file, or a backup from the bucket, into a new SQLite file or an empty D1 database",
        description="patina restore DUMP --to NEW.sqlite | patina restore DAY DB --to NEW.sqlite|d1://ACCOUNT/ID | "
        f"patina restore --all DAY --to DIR|{D1_SOURCES}|MAP.yaml",
    )
    restore.add_argument(
        "args",
        nargs="*",
        metavar="DUMP | DAY DB",
        help="a local .sql/.sql.gz/.sql.zst dump, or the DAY (YYYY-MM-DD, or latest: the newest "
        "verified backup) and DB of a backup in the bucket",
    )
    restore.add_argument(
        "--all", metavar="DAY", help="every configured database's backup of DAY (or latest), critical first"
    )
    restore.add_argument(
        "--to",
        required=True,
        help="a new SQLite file, d1://ACCOUNT_ID/DATABASE_ID (an empty D1 database); with --all: a "
        f"directory, {D1_SOURCES} (each database's configured source) or a YAML/JSON mapping",
    )
    restore.add_argument("--table", help="restore only this table, with its indexes (SQLite targets)")
    restore.add_argument("--yes", action="store_true", help="restore into D1 without asking")
    restore.add_argument(
        "--allow-foreign-key-violations",
        action="store_true",
        help="keep rows that break foreign keys (a SQLite source may hold them; D1 never does)",
    )
    _add_pick_options(restore)
    restore.add_argument("--json", action="store_true")
    restore.set_defaults(func=_cmd_restore)

    listing = sub.add_parser("list", help="every backup the bucket holds: dailies and the days inside weekly archives")
    listing.add_argument("--db", help="only this database")
    listing.add_argument("--date", help="only this day (YYYY-MM-DD)")
    listing.add_argument("--limit", type=_limit, help="at most this many, newest first")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_cmd_list)

    restore_r2 = sub.add_parser(
        "restore-r2",
        help="restore an R2 bucket's snapshot into a bucket or a directory, each object checked against its sha256",
        description="patina restore-r2 DAY NAME --to s3://BUCKET[/PREFIX] | DIR [--prefix KEYPREFIX] [--overwrite]",
    )
    restore_r2.add_argument("day", metavar="DAY", help=f"YYYY-MM-DD, or {LATEST}: the newest snapshot")
    restore_r2.add_argument("name", metavar="NAME", help="the r2_buckets: entry's name (e.g. grove-media)")
    restore_r2.add_argument(
        "--to",
        required=True,
        help="s3://BUCKET[/PREFIX] (reached with NAME's endpoint and keys from patina.yaml) or a directory",
    )
    restore_r2.add_argument("--prefix", help="only keys starting with this")
    restore_r2.add_argument("--overwrite", action="store_true", help="replace objects or files that already exist")
    restore_r2.add_argument("--json", action="store_true")
    restore_r2.set_defaults(func=_cmd_restore_r2)

    download = sub.add_parser(
        "download", help="a backup's SQL, from a daily or a weekly archive, checked against its sha256"
    )
    download.add_argument("day", metavar="DAY", help=f"YYYY-MM-DD, or {LATEST}: the newest verified backup")
    download.add_argument("db", metavar="DB")
    download.add_argument("-o", "--output", help="the file to write (default: DB-DAY.sql here; never overwritten)")
    _add_pick_options(download)
    download.add_argument("--json", action="store_true")
    download.set_defaults(func=_cmd_download)

    status = sub.add_parser(
        "status", help="running or idle, the last job, the next run, storage, oldest and newest backup"
    )
    status.add_argument("--json", action="store_true")
    status.add_argument(
        "--check",
        action="store_true",
        help="only freshness, as the exit code: 0 fresh, 1 a warning, 2 stale or a missed night "
        "(for cron or an uptime monitor: it needs no Dagster daemon)",
    )
    status.set_defaults(func=_cmd_status)

    guide = sub.add_parser("restore-guide", help="how to restore one database, with this installation's commands")
    guide.add_argument("db", metavar="DB")
    guide.add_argument("--json", action="store_true")
    guide.set_defaults(func=_cmd_restore_guide)

    trigger = sub.add_parser("trigger", help="back up some or all databases now, through Dagster ($DAGSTER_HOME)")
    trigger.add_argument("--db", action="append", help="a database to back up (repeat for more; default: all)")
    trigger.add_argument("--reason", help="why (kept as the run tag patina/reason, shown in the UI)")
    trigger.add_argument("--wait", action="store_true", help="wait for the run to end (default: until it has started)")
    trigger.add_argument(
        "--workspace",
        help="the Dagster workspace.yaml the daemon loads, if its code location is not "
        "called `patina` (default: the module patina_assets.definitions as the "
        "location `patina`, as in pyproject.toml and workspace.yaml)",
    )
    trigger.add_argument(
        "--webserver",
        default=os.environ.get(WEBSERVER_ENV_VAR) or None,
        metavar="URL",
        help="queue the run through this running Dagster webserver (e.g. http://127.0.0.1:3000, what `make ui` "
        f"serves; default ${WEBSERVER_ENV_VAR}): seconds sooner than loading the code here",
    )
    trigger.add_argument("--json", action="store_true")
    trigger.set_defaults(func=_cmd_trigger)

    keygen = sub.add_parser(
        "keygen", help="a new age identity (private key) and its recipient (public key) for encryption.recipients"
    )
    keygen.add_argument("-o", "--output", help="write the identity to this new file (mode 600) instead of stdout")
    keygen.set_defaults(func=_cmd_keygen)

    reencrypt = sub.add_parser(
        "reencrypt",
        help="rewrite stored backups to the current encryption.recipients (after a key leaks or is retired)",
        description="Each backup is decrypted (the identity must open it), checked, encrypted to the current "
        "recipients, uploaded and read back before its manifest switches to it and the old object goes. R2 bucket "
        "snapshots too: their objects are stored again for the current recipients, and the old ones are deleted "
        "by the next garbage collection.",
    )
    reencrypt.add_argument("--day", help="the backups of this day (YYYY-MM-DD) and the weekly archive holding it")
    reencrypt.add_argument("--all", action="store_true", help="every daily backup and weekly archive")
    reencrypt.add_argument(
        "--db", help="only this database's dailies (and the archives that hold it), or this R2 bucket's snapshots"
    )
    reencrypt.add_argument(
        "--dry-run", action="store_true", help="only list what would be rewritten (needs no identity, writes nothing)"
    )
    reencrypt.add_argument("--json", action="store_true")
    reencrypt.set_defaults(func=_cmd_reencrypt)

    serve = sub.add_parser("serve", help="the HTTP API (/status, /list, /download, /restore-guide, /trigger, /metrics)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.set_defaults(func=_cmd_serve)
    for command in sub.choices.values():  # a usage error shows the usage of its own command
        command.set_defaults(usage=command.format_usage())
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    return exit_quietly_on_closed_pipe(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except UsageError as e:
        print(f"{args.usage}patina {args.command}: error: {e}", file=sys.stderr)
        return 2
    except PatinaError as e:  # storage errors are PatinaErrors too
        print(f"patina: error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"patina: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("patina: interrupted; nothing was left half-written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
