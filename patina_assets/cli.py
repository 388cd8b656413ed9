"""`patina`: the command line. Each subcommand is a thin shell over the engine or the bucket."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import __version__
from .engine import PatinaError, dump_database, open_source, restore_dump


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
    progress = Progress(sys.stderr.isatty() and not args.quiet)
    with open_source(args.source, deadline_seconds=args.deadline, page_bytes=args.page_bytes) as source:
        result = dump_database(source, Path(args.output), database=args.name, job_id=args.job_id, progress=progress)
    progress.done()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(
            f"{result.path}: {result.tables} tables, {result.rows:,} rows, {result.bytes:,} bytes "
            f"({result.format}), sha256 {result.sha256[:16]}…, {result.duration_seconds:.2f}s"
            + ("" if result.point_in_time else f", {result.requests} requests, not a single point in time")
        )
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    report = restore_dump(
        Path(args.dump), Path(args.to), table=args.table, allow_foreign_key_violations=args.allow_foreign_key_violations
    )
    if args.json:
        print(json.dumps({"target": str(report.target), "table_rows": report.table_rows,
                          "statements": report.statements, "seconds": round(report.seconds, 3)}, indent=2))
    else:
        rows = sum(report.table_rows.values())
        fk = f"{len(report.foreign_key_violations)} foreign key violation(s) kept" if report.foreign_key_violations else "foreign_key_check ok"
        print(
            f"restored {len(report.table_rows)} table(s), {rows:,} rows into {report.target} in {report.seconds:.2f}s; "
            f"integrity_check ok, {fk}, row counts match the dump"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="patina", description="Exact, D1-importable backups of Cloudflare D1 databases.")
    parser.add_argument("--version", action="version", version=f"patina {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    dump = sub.add_parser("dump", help="dump a SQLite file or a D1 database to .sql, .sql.gz or .sql.zst")
    dump.add_argument("source", help="a SQLite file, or d1://ACCOUNT_ID/DATABASE_ID (token in CLOUDFLARE_API_TOKEN)")
    dump.add_argument("-o", "--output", required=True, help="the dump file; its suffix picks the format")
    dump.add_argument("--name", help="the database name written in the dump's header (default: from the file name)")
    dump.add_argument("--job-id", help="an id recorded in the header (default: a new UUID)")
    dump.add_argument("--deadline", type=float, help="give up after this many seconds (D1 sources)")
    dump.add_argument("--page-bytes", type=int, help="bytes of SQL per REST response (default 2,000,000)")
    dump.add_argument("--json", action="store_true", help="print what was written as JSON")
    dump.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    dump.set_defaults(func=_cmd_dump)

    restore = sub.add_parser("restore", help="restore a dump into a new SQLite file and verify it")
    restore.add_argument("dump", help="a .sql, .sql.gz or .sql.zst dump")
    restore.add_argument("--to", required=True, help="the new SQLite file (must not exist)")
    restore.add_argument("--table", help="restore only this table (with its indexes)")
    restore.add_argument("--allow-foreign-key-violations", action="store_true",
                         help="keep rows that break foreign keys (a SQLite source may hold them; D1 never does)")
    restore.add_argument("--json", action="store_true")
    restore.set_defaults(func=_cmd_restore)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PatinaError as e:
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
