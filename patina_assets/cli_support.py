"""What every `patina` command shares: which config and bucket it used, names checked against the config, usage
errors, quiet logging, closed pipes. Kept apart from cli.py so each command there stays a thin shell."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .engine import PatinaError

if TYPE_CHECKING:
    from .catalog import Catalog
    from .config import PatinaConfig


class UsageError(ValueError):
    """The command line itself is wrong (a missing or extra argument): exit 2, with the usage."""


class NothingMatched(PatinaError):
    """A filter matched no backup; the message says what the bucket does hold."""


# --------------------------------------------------------------------------------------------------
# Which config, which bucket
# --------------------------------------------------------------------------------------------------


def describe_bucket(config: PatinaConfig) -> str:
    """Where the config's bucket is, without opening it (never credentials)."""
    if config.bucket.local is not None:
        return f"local directory {config.bucket.local.path}"
    s3 = config.bucket.s3
    assert s3 is not None
    return f"s3://{s3.bucket}/{s3.prefix} at {s3.endpoint_url or 'the AWS default endpoint'}"


def describe_config(config: PatinaConfig, env=os.environ) -> str:
    from .config import CONFIG_ENV_VAR

    if config.source_path is None:
        return f"the demo's default for the checkout {config.root}"
    named = env.get(CONFIG_ENV_VAR)
    how = f" (${CONFIG_ENV_VAR})" if named and Path(named).expanduser().resolve() == config.source_path else ""
    return f"{config.source_path}{how}"


def announce(config: PatinaConfig, out=None) -> None:
    """One line on stderr naming the config and the bucket a command uses (stdout stays the command's own)."""
    print(f"patina: config {describe_config(config)}; bucket {describe_bucket(config)}", file=out or sys.stderr)


def open_catalog(config: PatinaConfig) -> Catalog:
    """The bucket's catalog, for reading: a local bucket that does not exist is an error, never created."""
    from .backup import open_store
    from .catalog import Catalog
    from .storage import StorageBucketNotFound

    try:
        return Catalog(open_store(config, create=False), config.retention)
    except StorageBucketNotFound as exc:
        raise PatinaError(
            f"{exc} (config {describe_config(config)}). Nothing was created. If this is not the "
            "config you meant, point at yours with `export PATINA_CONFIG=/path/to/patina.yaml` or "
            "`patina --config PATH ...`; for the demo, run `make demo` first"
        ) from None


def database_name(config: PatinaConfig, name: str, catalog: Catalog | None = None) -> str:
    """The configured database ``name`` stands for (its asset name, ``scout_db``, maps to ``scout-db``).

    A name the config does not know is still accepted when the bucket holds backups of it (a database removed
    from the config keeps its backups); otherwise the error lists the configured databases."""
    from .config import UnknownDatabaseError
    from .storage import validate_database_name

    try:
        return config.database(name).name
    except UnknownDatabaseError as unknown:
        if catalog is not None:
            validate_database_name(name)
            if catalog.backups(database=name):
                return name
        raise UsageError(str(unknown)) from None


def nothing_matched(catalog_backups: list, database: str | None, day: str | None) -> NothingMatched:
    """What to say when ``list --db/--date`` matches nothing: the days and databases the bucket does hold."""

    def some(values: set[str], newest_first: bool = True) -> str:
        ordered = sorted(values, reverse=newest_first)
        return ", ".join(ordered[:10]) + (" ..." if len(ordered) > 10 else "") if ordered else "none"

    asked = " and ".join(
        part for part in (f"database {database}" if database else "", f"day {day}" if day else "") if part
    )
    if not catalog_backups:
        return NothingMatched(f"no backups match {asked}: the bucket holds no backups at all")
    hints = []
    if database:
        hints.append(f"{database}'s days: {some({b.day for b in catalog_backups if b.database == database})}")
    if day:
        hints.append(f"databases on {day}: {some({b.database for b in catalog_backups if b.day == day}, False)}")
    hints.append(f"days in the bucket: {some({b.day for b in catalog_backups})}")
    return NothingMatched(f"no backups match {asked}; " + "; ".join(hints))


# --------------------------------------------------------------------------------------------------
# Files and ports
# --------------------------------------------------------------------------------------------------


def refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; nothing was written. Choose another -o, or add --force to replace it")


def check_port_free(host: str, port: int) -> None:
    """Refuse a busy port before anything says the server is listening there."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PatinaError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}. Another server holds that port "
                "(or the address is not this machine's): choose another with --port, or stop it"
            ) from None


# --------------------------------------------------------------------------------------------------
# Logging and pipes
# --------------------------------------------------------------------------------------------------


def configure_logging(verbose: bool) -> None:
    """Warnings only, unless -v: Dagster and its storage log at INFO/DEBUG on every instance they open."""
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in ("dagster", "alembic", "httpx", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(level if verbose else logging.WARNING)


def exit_quietly_on_closed_pipe(run: Callable[[], int]) -> int:
    """``patina list | head``: a reader that stops early is not an error, and gets no traceback."""
    try:
        code = run()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)
