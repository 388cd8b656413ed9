"""Patina configuration: one YAML file, validated into frozen dataclasses.

Where the configuration comes from, first match wins:

1. the ``path`` given to :func:`load_config`;
2. the file named by the environment variable ``PATINA_CONFIG``;
3. ``patina.yaml`` in the current working directory;
4. in a Patina checkout (a directory holding this project's ``pyproject.toml``), the embedded
   default (:func:`default_config`): the six Grove databases as local SQLite files under
   ``.patina/sources/`` and a local bucket under ``.patina/bucket`` -- what ``make demo`` runs on.

Anywhere else, with none of these, :class:`ConfigNotFound` says so and how to point at a config:
the demo's bucket is never created in whatever directory a command happens to run in.

Every problem raises :class:`ConfigError`, whose message names the file, the field path
(``databases[2].priority``), what is wrong and how to fix it. All problems found in a file are
reported together. Unknown keys are errors, so a typo never silently falls back to a default.

Secrets never live in the file: fields ending in ``_env`` hold the NAME of an environment
variable, read only when the secret is needed (:func:`require_env`). A key that looks like it
holds a secret value (``api_token:``, ``secret_access_key:``, ``discord_webhook:`` ...) is
rejected with a pointer to the matching ``*_env`` field.

This module is plain Python (no Dagster import) so the CLI, the tests and the Dagster
definitions can all use it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .encryption import DEFAULT_IDENTITY_ENV, InvalidRecipient, parse_recipient
from .engine.cloudflare_api import DEFAULT_API_URL, DEFAULT_BACKOFF_SECONDS, DEFAULT_MAX_ATTEMPTS
from .engine.d1_address import ACCOUNT_ID_RE, DEFAULT_PAGE_BYTES, parse_d1_source
from .engine.formats import FORMATS
from .storage.layout import ARCHIVE_FORMATS, DATABASE_NAME, DATABASE_NAME_RULE

__all__ = [
    "AlertsConfig",
    "BucketConfig",
    "CONFIG_ENV_VAR",
    "API_URL_ENV_VAR",
    "CloudflareConfig",
    "ConfigError",
    "ConfigNotFound",
    "DEFAULT_API_URL",
    "DEFAULT_CONFIG_FILENAME",
    "DEFAULT_START_DATE",
    "DEFAULT_IDENTITY_ENV",
    "DUMP_FORMATS",
    "DatabaseConfig",
    "DumpConfig",
    "EmailConfig",
    "FleetConfig",
    "EncryptionConfig",
    "GROVE_DATABASES",
    "GroveDatabase",
    "LocalBucketConfig",
    "PRIORITIES",
    "PRIORITY_ORDER",
    "PatinaConfig",
    "R2BucketConfig",
    "RetentionConfig",
    "S3BucketConfig",
    "UnknownDatabaseError",
    "WEEKLY_FORMATS",
    "default_config",
    "find_config_file",
    "is_patina_checkout",
    "load_config",
    "order_by_priority",
    "parse_d1_source",
    "require_env",
    "sanitize_asset_name",
]

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

CONFIG_ENV_VAR = "PATINA_CONFIG"
API_URL_ENV_VAR = "PATINA_CLOUDFLARE_API_URL"
DEFAULT_CONFIG_FILENAME = "patina.yaml"
DEFAULT_START_DATE = _dt.date(2026, 1, 1)

#: Priorities, most important first. Backups run (and restores should happen) in this order.
PRIORITIES: tuple[str, ...] = ("critical", "high", "normal")
#: priority -> rank (0 is most important).
PRIORITY_ORDER: Mapping[str, int] = {p: i for i, p in enumerate(PRIORITIES)}

DUMP_FORMATS: tuple[str, ...] = FORMATS
WEEKLY_FORMATS: tuple[str, ...] = tuple(ARCHIVE_FORMATS)

NAME_RE = DATABASE_NAME
# `\Z`, not `$`, ends each pattern that checks a whole value: `$` also matches before a final line break.
ASSET_NAME_RE = re.compile(r"^[A-Za-z0-9_]+\Z")
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*\Z")
# Keys that, without an `_env` suffix, would hold a secret value.
_SECRET_KEY_RE = re.compile(
    r"(token|secret|password|passwd|passphrase|api_?key|access_?key|private_?key|credential|"
    r"webhook|auth|bearer|dsn)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class GroveDatabase:
    """One entry of the spec's database registry (``src/lib/databases.ts``)."""

    name: str
    database_id: str
    binding: str
    description: str
    priority: str
    estimated_size: str


#: The spec's six Grove D1 databases, in the spec's restore order (its disaster-recovery runbook:
#: groveauth, grove-engine-db, scout-db, ...), which is also the order backups start in.
GROVE_DATABASES: tuple[GroveDatabase, ...] = (
    GroveDatabase(
        "groveauth",
        "45eae4c7-8ae7-4078-9218-8e1677a4360f",
        "GROVEAUTH_DB",
        "Authentication, users, sessions, OAuth (Heartwood)",
        "critical",
        "212 KB",
    ),
    GroveDatabase(
        "grove-engine-db",
        "a6394da2-b7a6-48ce-b7fe-b1eb3e730e68",
        "GROVE_ENGINE_DB",
        "Core platform: tenants, content, multi-tenant data (Lattice)",
        "critical",
        "180 KB",
    ),
    GroveDatabase(
        "scout-db",
        "6a289378-c662-4c6a-9f1b-fa5296e03fa2",
        "SCOUT_DB",
        "GroveScout searches, credits, referrals",
        "critical",
        "364 KB",
    ),
    GroveDatabase(
        "autumnsgrove-posts",
        "510badf3-457a-4892-bf2a-45d4bfd7a7bb",
        "AUTUMNSGROVE_POSTS_DB",
        "AutumnsGrove blog posts",
        "high",
        "118 KB",
    ),
    GroveDatabase(
        "autumnsgrove-git-stats",
        "0ca4036f-93f7-4c8a-98a5-5353263acd44",
        "AUTUMNSGROVE_GIT_STATS_DB",
        "Git statistics for AutumnsGrove",
        "normal",
        "335 KB",
    ),
    GroveDatabase(
        "grove-domain-jobs",
        "cd493112-a901-4f6d-aadf-a5ca78929557",
        "GROVE_DOMAIN_JOBS_DB",
        "Domain search jobs (Forage/Acorn)",
        "normal",
        "45 KB",
    ),
)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (field path, line), what is wrong, how to fix it."""

    field: str
    problem: str
    fix: str = ""
    line: int | None = None

    def render(self) -> str:
        where = [f"line {self.line}"] if self.line is not None else []
        where += [self.field] if self.field else []
        text = ": ".join([*where, self.problem])
        if self.fix:
            text += f" -- {self.fix}"
        return text


class ConfigError(ValueError):
    """The configuration is invalid or cannot be read.

    ``str(err)`` is a complete, human-readable message. ``err.file`` is the config file (or a
    description of where the configuration came from), ``err.problems`` the individual
    problems, each with ``field``, ``problem``, ``fix`` and, when known, ``line``.
    """

    def __init__(self, file: str | os.PathLike[str] | None, problems: Sequence[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.file = str(file) if file is not None else "<config>"
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(self._message())

    @property
    def field(self) -> str:
        """Field path of the first problem (convenience for single-problem errors)."""
        return self.problems[0].field if self.problems else ""

    def _message(self) -> str:
        if len(self.problems) == 1:
            return f"Invalid Patina config {self.file}: {self.problems[0].render()}"
        lines = [f"Invalid Patina config {self.file}: {len(self.problems)} problems:"]
        lines += [f"  - {p.render()}" for p in self.problems]
        return "\n".join(lines)

    def __str__(self) -> str:  # KeyError subclasses would otherwise repr() the message
        return self._message()


class UnknownDatabaseError(ConfigError, KeyError):
    """:meth:`PatinaConfig.database` was asked for a name that is not configured."""

    def _message(self) -> str:
        p = self.problems[0]
        return f"{p.problem} in Patina config {self.file} -- {p.fix}"


class ConfigNotFound(ConfigError):
    """No config file was named or found, and the working directory is not a Patina checkout."""

    def _message(self) -> str:
        p = self.problems[0]
        return f"{p.problem}; {p.fix}"


# --------------------------------------------------------------------------------------------
# Small helpers (also useful outside this module)
# --------------------------------------------------------------------------------------------


def sanitize_asset_name(name: str) -> str:
    """Turn a database name into a Dagster asset key part: ``scout-db`` -> ``scout_db``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def require_env(var: str | None, field_path: str, env: Mapping[str, str] | None = None) -> str:
    """Return the value of environment variable ``var`` or raise ConfigError naming the field."""
    env = os.environ if env is None else env
    if not var:
        raise ConfigError(
            "<environment>",
            Problem(
                field_path,
                "no environment variable is configured",
                f"set {field_path} to the NAME of an environment variable",
            ),
        )
    value = env.get(var)
    if not value:
        raise ConfigError(
            "<environment>",
            Problem(
                field_path,
                f"environment variable {var} is not set (or empty)",
                f"export {var}=... before running, or point {field_path} at another variable",
            ),
        )
    return value


def _optional_env(var: str | None, env: Mapping[str, str] | None) -> str | None:
    env = os.environ if env is None else env
    if not var:
        return None
    return env.get(var) or None


# --------------------------------------------------------------------------------------------
# Dataclasses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseConfig:
    """One database to back up.

    ``source`` is either ``d1://<account_id>/<database_id>`` (Cloudflare D1 over the REST API) or
    a path to a SQLite file. ``sqlite_path``, ``account_id`` and ``database_id`` are derived from
    it when not given.
    """

    name: str
    source: str
    description: str = ""
    priority: str = "normal"
    sqlite_path: Path | None = None
    account_id: str | None = None
    database_id: str | None = None
    #: The database's name in D1 when it is not ``name``: a fleet's tenant whose D1 name is not a valid
    #: database name (``My Shop``, backed up as ``my-shop-0f2c1d3e``). What wrangler commands must name.
    d1_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise ConfigError(
                "<python>", Problem("name", f"invalid database name {self.name!r}", f"use {DATABASE_NAME_RULE}")
            )
        if self.priority not in PRIORITY_ORDER:
            raise ConfigError(
                "<python>",
                Problem("priority", f"invalid priority {self.priority!r}", f"must be one of {', '.join(PRIORITIES)}"),
            )
        if self.source.startswith("d1:"):
            if self.account_id is None or self.database_id is None:
                try:
                    account_id, database_id = parse_d1_source(self.source)
                except ValueError as exc:
                    raise ConfigError("<python>", Problem("source", str(exc))) from None
                object.__setattr__(self, "account_id", account_id)
                object.__setattr__(self, "database_id", database_id)
        elif self.sqlite_path is None:
            object.__setattr__(self, "sqlite_path", Path(self.source).expanduser())
        elif not isinstance(self.sqlite_path, Path):
            object.__setattr__(self, "sqlite_path", Path(self.sqlite_path))

    @property
    def is_d1(self) -> bool:
        """True for a Cloudflare D1 source (``d1://``), False for a local SQLite file."""
        return self.database_id is not None

    @property
    def kind(self) -> str:
        return "d1" if self.is_d1 else "sqlite"

    @property
    def asset_name(self) -> str:
        """Dagster asset key part (``scout-db`` -> ``scout_db``); unique within a config."""
        return sanitize_asset_name(self.name)

    @property
    def priority_rank(self) -> int:
        return PRIORITY_ORDER[self.priority]

    def describe_source(self) -> str:
        if self.is_d1:
            return f"D1 database {self.database_id} (account {self.account_id})"
        return f"SQLite file {self.sqlite_path}"


@dataclass(frozen=True)
class FleetConfig:
    """A fleet: every D1 database of ``account_id`` whose name matches ``name_pattern`` (a glob,
    ``tenant-*``), discovered through the API each night (``databases_from:`` in patina.yaml).

    Each database found is a tenant, backed up as one partition of the fleet's asset under a database
    name of its own (see :func:`patina_assets.fleets.tenant_name`). ``api_token_env`` names the
    token's variable when the fleet's account needs another token than ``cloudflare.api_token_env``.
    """

    name: str
    account_id: str
    name_pattern: str = "*"
    priority: str = "normal"
    description: str = ""
    api_token_env: str | None = None

    @property
    def asset_name(self) -> str:
        """Dagster asset key part (``tenants-eu`` -> ``tenants_eu``)."""
        return sanitize_asset_name(self.name)

    def token_env(self, cloudflare: CloudflareConfig) -> str:
        return self.api_token_env or cloudflare.api_token_env


@dataclass(frozen=True)
class CloudflareConfig:
    api_token_env: str = "CLOUDFLARE_API_TOKEN"
    api_url: str = DEFAULT_API_URL
    # Patina's share of the token's 1200 requests per 5 minutes, across every process on this machine
    requests_per_5_minutes: int = 600

    def api_token(self, env: Mapping[str, str] | None = None) -> str:
        """The API token, read from the environment; ConfigError if it is not set."""
        return require_env(self.api_token_env, "cloudflare.api_token_env", env)


@dataclass(frozen=True)
class LocalBucketConfig:
    """A directory standing in for the R2 bucket (demo, tests, or a mounted disk)."""

    path: Path


@dataclass(frozen=True)
class S3BucketConfig:
    """An S3-compatible bucket: Cloudflare R2 (region ``auto``) or any S3 API."""

    bucket: str
    endpoint_url: str | None = None
    region: str = "auto"
    prefix: str = ""
    access_key_id_env: str = "R2_ACCESS_KEY_ID"
    secret_access_key_env: str = "R2_SECRET_ACCESS_KEY"
    multipart_part_size_mb: int = 16

    @property
    def multipart_part_size_bytes(self) -> int:
        return self.multipart_part_size_mb * 1024 * 1024

    def credentials(self, env: Mapping[str, str] | None = None) -> tuple[str, str]:
        """``(access_key_id, secret_access_key)`` from the environment; ConfigError if unset."""
        return (
            require_env(self.access_key_id_env, "bucket.s3.access_key_id_env", env),
            require_env(self.secret_access_key_env, "bucket.s3.secret_access_key_env", env),
        )

    def key(self, *parts: str) -> str:
        """Object key under the prefix: ``key("daily", "2026-01-05", "groveauth.sql.zst")``."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))


@dataclass(frozen=True)
class BucketConfig:
    """Exactly one of ``local`` and ``s3`` is set."""

    local: LocalBucketConfig | None = None
    s3: S3BucketConfig | None = None

    def __post_init__(self) -> None:
        if (self.local is None) == (self.s3 is None):
            raise ConfigError("<python>", Problem("bucket", "exactly one of local and s3 must be set"))

    @property
    def kind(self) -> str:
        return "local" if self.local is not None else "s3"


@dataclass(frozen=True)
class R2BucketConfig:
    """One R2 bucket to back up (``r2_buckets:``): each night's snapshot of ``bucket`` (objects under
    ``prefix``, minus keys matching an ``exclude`` glob) lands in the backup bucket under ``r2/`` (see
    :mod:`patina_assets.r2`).  Credentials are read from the environment variables named here."""

    name: str
    bucket: str
    endpoint_url: str | None = None
    region: str = "auto"
    prefix: str = ""
    exclude: tuple[str, ...] = ()
    priority: str = "normal"
    description: str = ""
    access_key_id_env: str = "R2_ACCESS_KEY_ID"
    secret_access_key_env: str = "R2_SECRET_ACCESS_KEY"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise ConfigError(
                "<python>", Problem("name", f"invalid R2 backup name {self.name!r}", f"use {DATABASE_NAME_RULE}")
            )
        if self.priority not in PRIORITY_ORDER:
            raise ConfigError(
                "<python>",
                Problem("priority", f"invalid priority {self.priority!r}", f"must be one of {', '.join(PRIORITIES)}"),
            )
        object.__setattr__(self, "exclude", tuple(self.exclude))

    @property
    def asset_name(self) -> str:
        """The last part of the asset key ``r2/<asset_name>`` (``grove-media`` -> ``grove_media``)."""
        return sanitize_asset_name(self.name)

    @property
    def priority_rank(self) -> int:
        return PRIORITY_ORDER[self.priority]

    def credentials(self, env: Mapping[str, str] | None = None) -> tuple[str, str]:
        """``(access_key_id, secret_access_key)`` from the environment; ConfigError if unset."""
        return (
            require_env(self.access_key_id_env, f"r2_buckets[{self.name}].access_key_id_env", env),
            require_env(self.secret_access_key_env, f"r2_buckets[{self.name}].secret_access_key_env", env),
        )

    def describe_source(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix.strip('/') + '/' if self.prefix.strip('/') else ''}"
        return f"R2 bucket {where} at {self.endpoint_url or '(AWS default)'}"


@dataclass(frozen=True)
class DumpConfig:
    format: str = "sql.zst"
    concurrency: int = 3
    deadline_seconds: int = 1800
    page_bytes: int = DEFAULT_PAGE_BYTES
    retries: int = 3  # whole-dump retries after a failure that may pass
    retry_delay_seconds: int = 30  # before the first; doubles each time
    request_attempts: int = DEFAULT_MAX_ATTEMPTS  # per REST request (5xx, network), with exponential backoff
    request_backoff_seconds: float = DEFAULT_BACKOFF_SECONDS
    consistency_retries: int = 2  # D1 reads read again when the database was written during one
    late_backfill: str = "store"  # a backfill of a night long past: store it (marked captured late) or refuse

    def d1_source_options(self) -> dict[str, Any]:
        """The engine's D1Source settings this section sets (the CLI's `patina dump d1://...` and the
        nightly dumps read D1 with the same ones)."""
        return {"page_bytes": self.page_bytes, "deadline_seconds": self.deadline_seconds, **self.request_options()}

    def request_options(self) -> dict[str, Any]:
        """How each REST request to Cloudflare is retried (5xx, network errors): the dumps', and a restore's
        into D1 (`D1Importer`), so one setting serves every request the token makes."""
        return {"max_attempts": self.request_attempts, "backoff_seconds": self.request_backoff_seconds}

    @property
    def extension(self) -> str:
        """File extension of a dump, e.g. ``.sql.zst``."""
        return "." + self.format


#: ``dump.late_backfill``: what a dump materialized long after its night does (see ``backup.refuse_late``).
LATE_BACKFILL_CHOICES = ("store", "refuse")


@dataclass(frozen=True)
class RetentionConfig:
    daily_days: int = 7
    weekly_weeks: int = 12
    weekly_format: str = "tar.zst"


@dataclass(frozen=True)
class EncryptionConfig:
    """``encryption:``: every daily dump and weekly archive is stored encrypted to ``recipients`` (age X25519
    ``age1...`` or SSH public keys).  None listed (the demo default): stored unencrypted.  The identity that
    opens them comes from the environment variable ``identity_file_env`` names, never from this file."""

    recipients: tuple[str, ...] = ()
    identity_file_env: str = DEFAULT_IDENTITY_ENV

    @property
    def enabled(self) -> bool:
        return bool(self.recipients)


@dataclass(frozen=True)
class EmailConfig:
    """The third alert channel: SMTP with STARTTLS (always: credentials never cross the wire in clear).

    The server, port and addresses are not secrets and live in the file; the login comes from the
    environment variables named by ``username_env`` / ``password_env``, read when a message is sent.
    """

    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 587
    username_env: str | None = None
    password_env: str | None = None
    #: A CA bundle to trust besides the system's (a private mail relay with its own certificate).
    ca_file: Path | None = None
    timeout_seconds: float = 10.0

    def credentials(self, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
        """``(username, password)`` from the environment, or None when no login is configured."""
        if not self.username_env:
            return None
        return (
            require_env(self.username_env, "alerts.email.username_env", env),
            require_env(self.password_env, "alerts.email.password_env", env),
        )


@dataclass(frozen=True)
class AlertsConfig:
    discord_webhook_env: str | None = "PATINA_DISCORD_WEBHOOK"
    webhook_env: str | None = "PATINA_WEBHOOK_URL"
    notify_on_success: bool = False
    redact_names: bool = False
    size_decrease_ratio: float = 0.5
    size_increase_ratio: float = 2.0
    stale_after_days: int = 8
    stale_warn_after_days: int = 2
    consecutive_failure_limit: int = 3
    warn_on_check_warnings: bool = True
    #: Email as a third channel (None: off).
    email: EmailConfig | None = None

    def discord_webhook_url(self, env: Mapping[str, str] | None = None) -> str | None:
        """The Discord webhook URL, or None when not configured / the variable is unset."""
        return _optional_env(self.discord_webhook_env, env)

    def webhook_url(self, env: Mapping[str, str] | None = None) -> str | None:
        """The generic JSON webhook URL, or None when not configured / the variable is unset."""
        return _optional_env(self.webhook_env, env)


@dataclass(frozen=True)
class PatinaConfig:
    databases: tuple[DatabaseConfig, ...]
    bucket: BucketConfig
    start_date: _dt.date = DEFAULT_START_DATE
    timezone: str = "UTC"
    cloudflare: CloudflareConfig = field(default_factory=CloudflareConfig)
    dump: DumpConfig = field(default_factory=DumpConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    #: Fleets of D1 databases discovered each night (``databases_from:``).
    fleets: tuple[FleetConfig, ...] = ()
    encryption: EncryptionConfig = field(default_factory=EncryptionConfig)
    r2_buckets: tuple[R2BucketConfig, ...] = ()
    #: The file this came from; None for the embedded default or a config built in Python.
    source_path: Path | None = None
    #: Directory relative paths were resolved against (the config file's directory, or the
    #: root given to default_config).
    root: Path = field(default_factory=Path.cwd)

    def __post_init__(self) -> None:
        object.__setattr__(self, "databases", tuple(self.databases))
        object.__setattr__(self, "fleets", tuple(self.fleets))
        object.__setattr__(self, "r2_buckets", tuple(self.r2_buckets))

    # -- lookups ------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(db.name for db in self.databases)

    def database(self, name: str) -> DatabaseConfig:
        """The database called ``name`` (or whose asset_name is ``name``)."""
        for db in self.databases:
            if db.name == name:
                return db
        for db in self.databases:
            if db.asset_name == name:
                return db
        known = ", ".join(self.names) or "(none)"
        close = difflib.get_close_matches(str(name), self.names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownDatabaseError(
            self.origin, Problem("databases", f"no database named {name!r}", f"{hint}known databases: {known}")
        )

    def r2_bucket(self, name: str) -> R2BucketConfig:
        """The ``r2_buckets:`` entry called ``name`` (or whose asset_name is ``name``)."""
        for entry in self.r2_buckets:
            if name in (entry.name, entry.asset_name):
                return entry
        names = tuple(entry.name for entry in self.r2_buckets)
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownDatabaseError(
            self.origin,
            Problem(
                "r2_buckets", f"no R2 bucket named {name!r}", f"{hint}known R2 buckets: {', '.join(names) or '(none)'}"
            ),
        )

    def by_priority(self) -> tuple[DatabaseConfig, ...]:
        """Databases critical first, then high, then normal; config order within a priority."""
        return order_by_priority(self.databases)

    @property
    def is_default(self) -> bool:
        return self.source_path is None

    @property
    def origin(self) -> str:
        return str(self.source_path) if self.source_path else f"<embedded default, root {self.root}>"

    # -- safe views ---------------------------------------------------------------------------

    def redacted(self) -> dict[str, Any]:
        """A JSON-friendly dict of the configuration.

        It never contains secret values: the config holds only environment-variable NAMES,
        and that is all this shows.
        """

        def conv(value: Any) -> Any:
            if dataclasses.is_dataclass(value):
                return {f.name: conv(getattr(value, f.name)) for f in dataclasses.fields(value)}
            if isinstance(value, (tuple, list)):
                return [conv(v) for v in value]
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, _dt.date):
                return value.isoformat()
            return value

        out = conv(self)
        for db, raw in zip(self.databases, out["databases"]):
            raw["asset_name"] = db.asset_name
            raw["kind"] = db.kind
        return out

    def describe(self, env: Mapping[str, str] | None = None) -> str:
        """A human-readable summary. With ``env``, says whether each secret variable is set
        (never its value)."""

        def secret(var: str | None) -> str:
            if not var:
                return "(disabled)"
            if env is None:
                return f"${var}"
            return f"${var} ({'set' if env.get(var) else 'not set'})"

        lines = [
            f"Patina config: {self.origin}",
            f"  start_date: {self.start_date.isoformat()} ({self.timezone})",
            f"  databases ({len(self.databases)}, backup order):",
        ]
        for db in self.by_priority():
            lines.append(f"    - {db.name} [{db.priority}] -> {db.describe_source()}")
        if self.bucket.local is not None:
            lines.append(f"  bucket: local directory {self.bucket.local.path}")
        else:
            s3 = self.bucket.s3
            assert s3 is not None
            lines.append(
                f"  bucket: s3://{s3.bucket}/{s3.prefix} at {s3.endpoint_url or '(AWS default)'} "
                f"region {s3.region}, keys {secret(s3.access_key_id_env)} / "
                f"{secret(s3.secret_access_key_env)}"
            )
        if any(db.is_d1 for db in self.databases):
            lines.append(
                f"  cloudflare: {self.cloudflare.api_url}, token {secret(self.cloudflare.api_token_env)}, "
                f"at most {self.cloudflare.requests_per_5_minutes} requests per 5 minutes"
            )
        if self.r2_buckets:
            lines.append(f"  r2_buckets ({len(self.r2_buckets)}, snapshots under r2/ in the bucket):")
            for entry in sorted(self.r2_buckets, key=lambda e: e.priority_rank):
                lines.append(
                    f"    - {entry.name} [{entry.priority}] -> {entry.describe_source()}, keys "
                    f"{secret(entry.access_key_id_env)} / {secret(entry.secret_access_key_env)}"
                )
        d, r, a = self.dump, self.retention, self.alerts
        lines += [
            f"  dump: {d.format}, {d.concurrency} at once, {d.deadline_seconds}s deadline, {d.page_bytes} bytes/page",
            f"  retention: {r.daily_days} daily days, {r.weekly_weeks} weekly archives ({r.weekly_format})",
            f"  alerts: discord {secret(a.discord_webhook_env)}, webhook {secret(a.webhook_env)}, "
            f"notify_on_success={a.notify_on_success}, redact_names={a.redact_names}",
            f"  encryption: age, {len(self.encryption.recipients)} recipient(s), identity {secret(self.encryption.identity_file_env)}"
            if self.encryption.enabled
            else "  encryption: off (backups stored unencrypted)",
        ]
        if a.email is not None:
            login = (
                f", login {secret(a.email.username_env)} / {secret(a.email.password_env)}"
                if a.email.username_env
                else ""
            )
            lines.append(
                f"  email: {a.email.host}:{a.email.port} (STARTTLS) from {a.email.sender} to "
                f"{', '.join(a.email.to)}{login}"
            )
        return "\n".join(lines)


def order_by_priority(databases: Iterable[DatabaseConfig]) -> tuple[DatabaseConfig, ...]:
    """Critical first, then high, then normal; the given order within a priority (stable)."""
    return tuple(sorted(databases, key=lambda db: PRIORITY_ORDER[db.priority]))


# --------------------------------------------------------------------------------------------
# Embedded default
# --------------------------------------------------------------------------------------------


def default_config(root: Path | str) -> PatinaConfig:
    """The embedded default: the six Grove databases as local SQLite files
    ``<root>/.patina/sources/<name>.sqlite`` (see :mod:`patina_assets.demo_data`) and a local
    bucket ``<root>/.patina/bucket``. Everything else takes its default."""
    root = Path(root).expanduser().resolve()
    sources = root / ".patina" / "sources"
    databases = tuple(
        DatabaseConfig(
            name=g.name,
            source=str(sources / f"{g.name}.sqlite"),
            description=g.description,
            priority=g.priority,
            sqlite_path=sources / f"{g.name}.sqlite",
        )
        for g in GROVE_DATABASES
    )
    return PatinaConfig(
        databases=databases,
        bucket=BucketConfig(local=LocalBucketConfig(path=root / ".patina" / "bucket")),
        source_path=None,
        root=root,
    )


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def find_config_file(
    path: Path | str | None = None, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Path | None:
    """The config file :func:`load_config` would read, or None for the embedded default.

    An explicit ``path`` or ``$PATINA_CONFIG`` that does not exist is an error (never a silent
    fallback to the demo configuration)."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    if path is not None:
        p = Path(path).expanduser()
        p = p if p.is_absolute() else cwd / p
        if not p.is_file():
            raise ConfigError(
                p, Problem("", "config file not found", "check the path, or omit it to use ./patina.yaml")
            )
        return p
    from_env = env.get(CONFIG_ENV_VAR)
    if from_env:
        p = Path(from_env).expanduser()
        p = p if p.is_absolute() else cwd / p
        if not p.is_file():
            raise ConfigError(
                p, Problem("", f"config file not found (named by ${CONFIG_ENV_VAR})", f"fix or unset {CONFIG_ENV_VAR}")
            )
        return p
    p = cwd / DEFAULT_CONFIG_FILENAME
    return p if p.is_file() else None


def load_config(path: Path | str | None = None, env: Mapping[str, str] = os.environ) -> PatinaConfig:
    """Load and validate the Patina configuration (see the module docstring for the lookup order).

    ``env`` supplies ``PATINA_CONFIG`` and ``PATINA_CLOUDFLARE_API_URL`` (which overrides
    ``cloudflare.api_url``). Secret values are not read here.
    """
    config_path = find_config_file(path, env)
    if config_path is None:
        config = default_config(_checkout_or_refuse(Path.cwd()))
    else:
        config = load_config_text(_read_text(config_path), config_path.resolve())
    override = env.get(API_URL_ENV_VAR)
    if override:
        err = _url_problem(override, allow_http=True)
        if err:
            raise ConfigError(f"${API_URL_ENV_VAR}", Problem(API_URL_ENV_VAR, err, "give an http(s) URL"))
        config = dataclasses.replace(
            config, cloudflare=dataclasses.replace(config.cloudflare, api_url=override.rstrip("/"))
        )
    return config


def is_patina_checkout(directory: Path) -> bool:
    """Whether ``directory`` holds Patina's own ``pyproject.toml``: a clone of this project, where the
    embedded demo default (``.patina/sources``, ``.patina/bucket``) belongs."""
    import tomllib  # (only a command run without a config asks)

    try:
        with open(Path(directory) / "pyproject.toml", "rb") as file:
            return tomllib.load(file).get("project", {}).get("name") == "patina"
    except (OSError, tomllib.TOMLDecodeError):
        return False


def _checkout_or_refuse(cwd: Path) -> Path:
    if is_patina_checkout(cwd):
        return cwd
    raise ConfigNotFound(
        cwd,
        Problem(
            "",
            f"no Patina config: ${CONFIG_ENV_VAR} is not set and {cwd} has no {DEFAULT_CONFIG_FILENAME} (nor is it a "
            "Patina checkout, where the demo's default config applies)",
            f"point at yours with `export {CONFIG_ENV_VAR}=/path/to/{DEFAULT_CONFIG_FILENAME}` or `patina --config PATH "
            f"...`, or run from the directory that holds it (patina.example.yaml documents every field)",
        ),
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, Problem("", f"not UTF-8 text ({exc})", "save the file as UTF-8")) from None
    except OSError as exc:
        raise ConfigError(path, Problem("", f"cannot read the file: {exc.strerror or exc}")) from None


class _InvalidTimestamp(str):
    """A scalar YAML took for a date/time but that is not a valid one (e.g. 2026-13-01)."""


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """yaml's SafeLoader (libyaml's C parser when PyYAML has it: a fleet-sized patina.yaml parses ten times
    faster, and `patina status` parses it on every call), except that an impossible date becomes a value we
    can report with its field path instead of an exception without one."""

    def construct_yaml_timestamp(self, node: yaml.Node) -> Any:  # type: ignore[override]
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            return _InvalidTimestamp(self.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


def load_config_text(text: str, path: Path | str) -> PatinaConfig:
    """Validate YAML ``text`` as if read from ``path`` (relative paths resolve against its directory)."""
    path = Path(path)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        column = f", column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{context}: {what}" if context else what
        raise ConfigError(
            path,
            Problem(
                "",
                f"YAML syntax error{column}: {detail}",
                "fix the indentation or quoting there (values containing ': ' or ' #' need quotes)",
                line=line,
            ),
        ) from None
    ctx = _Ctx(path)
    if node is not None:
        ctx.index(node, "")
    config = _validate(ctx, data, path.resolve().parent, path)
    ctx.raise_if_errors()
    assert config is not None
    return config


# --------------------------------------------------------------------------------------------
# Validation machinery
# --------------------------------------------------------------------------------------------

_MISSING = object()


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        _dt.date: "a date",
        _dt.datetime: "a date-time",
    }.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Ctx:
    def __init__(self, file: Path):
        self.file = file
        self.problems: list[Problem] = []
        self.lines: dict[str, int] = {}

    def index(self, node: yaml.Node, path: str) -> None:
        """Record the line of every field path, and flag duplicate keys (yaml drops them)."""
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is None or key == "<<":
                    continue
                child = _join(path, key)
                line = key_node.start_mark.line + 1
                if key in seen:
                    self.error(
                        child,
                        f"duplicate key {key!r} (also on line {seen[key]}); YAML would silently keep only the last one",
                        "remove one of them",
                        line=line,
                    )
                seen[key] = line
                self.lines[child] = line
                self.index(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.index(item, _join(path, i))

    def error(self, path: str, problem: str, fix: str = "", line: int | None = None) -> None:
        probe = path
        while line is None:
            line = self.lines.get(probe)
            if not probe:
                break
            probe = re.sub(r"(\.[^.\[\]]+|\[\d+\]|^[^.\[\]]+)$", "", probe)
        self.problems.append(Problem(path, problem, fix, line))

    def raise_if_errors(self) -> None:
        if self.problems:
            raise ConfigError(self.file, self.problems)

    # -- typed getters -----------------------------------------------------------------------

    def mapping(self, value: Any, path: str, allowed: Iterable[str], required: Iterable[str] = ()) -> dict | None:
        allowed = tuple(allowed)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.error(
                path, f"must be a mapping of {', '.join(allowed)} (got {_type_name(value)})", "indent the keys under it"
            )
            return None
        for key in value:
            if not isinstance(key, str):
                self.error(
                    path,
                    f"key {key!r} is {_type_name(key)}, not a name",
                    f"keys must be one of {', '.join(allowed)} (quote it if it is meant as text)",
                )
                continue
            if key not in allowed:
                self._unknown_key(path, key, allowed)
        for key in required:
            if key not in value or value[key] is None:
                self.error(_join(path, key), "is required", f"add {key}: under {path or 'the top level'}")
        return value

    def _unknown_key(self, path: str, key: str, allowed: tuple[str, ...]) -> None:
        child = _join(path, key)
        if not key.endswith("_env") and _SECRET_KEY_RE.search(key):
            env_key = f"{key}_env"
            if env_key in allowed:
                fix = f"put the value in an environment variable and write `{env_key}: VARIABLE_NAME` instead"
            else:
                options = [k for k in allowed if k.endswith("_env")]
                fix = "put the value in an environment variable and name it with " + (
                    " or ".join(f"`{k}`" for k in options)
                    if options
                    else "the matching `*_env` field: cloudflare.api_token_env (Cloudflare API token), "
                    "bucket.s3.access_key_id_env / secret_access_key_env (R2 keys), "
                    "alerts.discord_webhook_env / webhook_env (webhook URLs)"
                )
            self.error(
                child,
                "looks like a secret value; Patina never reads secrets from the config "
                "file (it may be committed, copied or logged)",
                fix,
            )
            return
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        fix = f"did you mean {close[0]!r}? " if close else ""
        self.error(child, f"unknown key {key!r}", f"{fix}allowed here: {', '.join(allowed)}")

    def get(self, section: dict | None, path: str, key: str, default: Any = _MISSING) -> Any:
        if section is None or key not in section or section[key] is None:
            return default
        return section[key]

    def string(
        self,
        section: dict | None,
        path: str,
        key: str,
        default: Any = _MISSING,
        choices: Sequence[str] | None = None,
        pattern: re.Pattern[str] | None = None,
        pattern_fix: str = "",
    ) -> Any:
        p = _join(path, key)
        value = self.get(section, path, key, default)
        if value is _MISSING:
            return _MISSING
        if value is None:
            return None
        if not isinstance(value, str):
            if choices:
                self.error(p, f"{_show(value)} is {_type_name(value)}", f"must be one of {', '.join(choices)}")
            else:
                self.error(p, f"must be text (got {_type_name(value)} {_show(value)})", "quote the value")
            return _MISSING
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(value, choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.error(p, f"{value!r} is not allowed{hint}", f"must be one of {', '.join(choices)}")
            return _MISSING
        if pattern is not None and not pattern.match(value):
            self.error(p, f"{_show(value)} is not valid", pattern_fix or f"must match {pattern.pattern}")
            return _MISSING
        return value

    def integer(
        self,
        section: dict | None,
        path: str,
        key: str,
        default: int,
        minimum: int | None = None,
        maximum: int | None = None,
        unit: str = "",
    ) -> Any:
        p = _join(path, key)
        value = self.get(section, path, key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                self.error(
                    p,
                    f"must be a whole number{unit} (got {_type_name(value)} {_show(value)})",
                    f"e.g. {key}: {default}",
                )
                return _MISSING
        if minimum is not None and value < minimum:
            what = "negative" if value < 0 else "too small"
            self.error(p, f"{value} is {what}", f"must be at least {minimum}{unit}")
            return _MISSING
        if maximum is not None and value > maximum:
            self.error(p, f"{value} is too large", f"must be at most {maximum}{unit}")
            return _MISSING
        return value

    def number(
        self,
        section: dict | None,
        path: str,
        key: str,
        default: float,
        *,
        gt: float | None = None,
        lt: float | None = None,
    ) -> Any:
        p = _join(path, key)
        value = self.get(section, path, key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(p, f"must be a number (got {_type_name(value)} {_show(value)})", f"e.g. {key}: {default}")
            return _MISSING
        value = float(value)
        bounds = " and ".join(
            b
            for b in (f"greater than {gt:g}" if gt is not None else "", f"less than {lt:g}" if lt is not None else "")
            if b
        )
        if (gt is not None and not value > gt) or (lt is not None and not value < lt) or value != value:
            self.error(p, f"{value:g} is out of range", f"must be {bounds}")
            return _MISSING
        return value

    def boolean(self, section: dict | None, path: str, key: str, default: bool) -> Any:
        value = self.get(section, path, key, default)
        if not isinstance(value, bool):
            self.error(_join(path, key), f"must be true or false (got {_type_name(value)} {_show(value)})")
            return _MISSING
        return value

    def env_name(self, section: dict | None, path: str, key: str, default: str | None, optional: bool = False) -> Any:
        p = _join(path, key)
        if section is not None and key in section and section[key] is None:
            if optional:
                return None
            self.error(p, "must name an environment variable", f"e.g. {key}: {default}")
            return _MISSING
        value = self.get(section, path, key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not ENV_NAME_RE.match(value):
            looks_secret = isinstance(value, str) and (
                "://" in value
                or len(value) >= 20
                and re.search(r"[a-z]", value)
                and re.search(r"\d", value)
                or value.upper().startswith("AGE-SECRET-KEY-")  # an age identity (upper-case bech32)
                or "PRIVATE KEY" in value
            )
            problem = (
                "looks like a secret value, not the name of an environment variable"
                if looks_secret
                else f"{_show(value)} is not an environment variable name"
            )
            self.error(
                p,
                problem,
                "give the NAME of the environment variable that holds the secret "
                f"(upper-case letters, digits and _), e.g. {key}: {default or 'MY_SECRET'}"
                + ("; never the secret itself" if looks_secret else ""),
            )
            return _MISSING
        return value


def _url_problem(value: str, allow_http: bool = True) -> str | None:
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        return f"{value!r} is not a URL ({exc})"
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.netloc:
        return f"{_show(value)} is not an {'/'.join(schemes)} URL"
    if parts.username or parts.password or "@" in parts.netloc:
        return "contains credentials (user:password@); never put secrets in the config file"
    if parts.query or parts.fragment:
        return "has a query string or fragment, which may carry a secret; give a plain base URL"
    return None


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------

_TOP_KEYS = (
    "start_date",
    "timezone",
    "databases",
    "databases_from",
    "cloudflare",
    "bucket",
    "dump",
    "retention",
    "alerts",
    "encryption",
    "r2_buckets",
)
_FLEET_KEYS = ("name", "account", "name_pattern", "priority", "description", "api_token_env")
_ENCRYPTION_KEYS = ("recipients", "identity_file_env")
_R2_KEYS = (
    "name",
    "bucket",
    "endpoint_url",
    "region",
    "prefix",
    "exclude",
    "priority",
    "description",
    "access_key_id_env",
    "secret_access_key_env",
)
_DB_KEYS = ("name", "source", "description", "priority")
_CF_KEYS = ("api_token_env", "api_url", "requests_per_5_minutes")
_BUCKET_KEYS = ("local", "s3")
_LOCAL_KEYS = ("path",)
_S3_KEYS = (
    "bucket",
    "endpoint_url",
    "region",
    "prefix",
    "access_key_id_env",
    "secret_access_key_env",
    "multipart_part_size_mb",
)
_DUMP_KEYS = (
    "format",
    "concurrency",
    "deadline_seconds",
    "page_bytes",
    "retries",
    "retry_delay_seconds",
    "request_attempts",
    "request_backoff_seconds",
    "consistency_retries",
    "late_backfill",
)
_RETENTION_KEYS = ("daily_days", "weekly_weeks", "weekly_format")
_ALERT_KEYS = tuple(f.name for f in dataclasses.fields(AlertsConfig))
_EMAIL_KEYS = ("host", "port", "from", "to", "username_env", "password_env", "ca_file", "timeout_seconds")
_EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+\Z")
_S3_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_UTC_NAMES = ("UTC", "Etc/UTC", "utc", "Z")


def _validate(ctx: _Ctx, data: Any, base_dir: Path, path: Path) -> PatinaConfig | None:
    if data is None:
        ctx.error("", "the file is empty", "add at least `databases:` and `bucket:` (see patina.example.yaml)")
        return None
    top = ctx.mapping(
        data, "", _TOP_KEYS, required=("bucket",) if "databases_from" in (data or {}) else ("databases", "bucket")
    )
    if top is None:
        return None

    start_date = _start_date(ctx, top)
    timezone = ctx.get(top, "", "timezone", "UTC")
    if timezone not in _UTC_NAMES:
        ctx.error(
            "timezone",
            f"{_show(timezone)} is not supported",
            "only UTC is accepted for now (daily partitions are UTC days, like the spec's 03:00 UTC "
            "cron); write timezone: UTC or remove the line",
        )
    databases = _databases(ctx, top.get("databases"), base_dir, allow_empty="databases_from" in top)
    fleets = _fleets(ctx, top.get("databases_from"), {db.name for db in databases})
    cloudflare = _cloudflare(ctx, top.get("cloudflare"))
    bucket = _bucket(ctx, top.get("bucket"), base_dir)
    dump = _dump(ctx, top.get("dump"))
    retention = _retention(ctx, top.get("retention"))
    alerts = _alerts(ctx, top.get("alerts"), base_dir)
    encryption = _encryption(ctx, top.get("encryption"))
    r2_buckets = _r2_buckets(ctx, top.get("r2_buckets"))

    if ctx.problems:
        return None
    return PatinaConfig(
        databases=databases,
        bucket=bucket,
        start_date=start_date,
        timezone="UTC",
        cloudflare=cloudflare,
        dump=dump,
        retention=retention,
        alerts=alerts,
        fleets=fleets,
        encryption=encryption,
        r2_buckets=r2_buckets,
        source_path=path,
        root=base_dir,
    )


def _start_date(ctx: _Ctx, top: dict) -> Any:
    value = top.get("start_date", DEFAULT_START_DATE)
    if value is None:
        value = DEFAULT_START_DATE
    fix = "write a calendar date as YYYY-MM-DD, e.g. start_date: 2026-01-01"
    if isinstance(value, _dt.datetime):
        ctx.error("start_date", f"{value.isoformat()} has a time of day", fix)
        return _MISSING
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    ctx.error("start_date", f"{_show(value)} is not a date", fix)
    return _MISSING


def _entries(
    ctx: _Ctx,
    value: Any,
    path: str,
    noun: str,
    item_fix: str,
    keys: tuple[str, ...],
    required: tuple[str, ...],
    allow_empty: bool = True,
) -> Iterator[tuple[str, dict]]:
    """(field path, mapping) of each entry of the list section `path` (databases, fleets) that is a
    mapping; a section that is not a list (or an empty one, unless `allow_empty`), an entry that is not a
    mapping, an unknown key or a missing `required` one is reported."""
    if value is None:
        return
    if not isinstance(value, list) or not (value or allow_empty):
        ctx.error(path, f"must be a list of {noun} (got {_type_name(value)})", item_fix)
        return
    for i, item in enumerate(value):
        p = _join(path, i)
        section = ctx.mapping(item, p, keys, required=required)
        if section is not None:
            yield p, section


def _entry_name(ctx: _Ctx, section: dict, p: str, fix_tail: str) -> Any:
    """An entry's `name`: a database name (NAME_RE) for databases, fleets and R2 backups alike."""
    return ctx.string(section, p, "name", pattern=NAME_RE, pattern_fix=f"use {DATABASE_NAME_RULE}{fix_tail}")


def _first_use(ctx: _Ctx, seen: dict[str, str], name: str, p: str, duplicate: str, fix: str) -> bool:
    """Whether the entry at `p` is the first with `name` (`seen` maps each name to the first entry's path);
    a later one is reported as `duplicate`, naming the first."""
    if name in seen:
        ctx.error(_join(p, "name"), f"{duplicate} (also {seen[name]})", fix)
        return False
    seen[name] = p
    return True


def _databases(ctx: _Ctx, value: Any, base_dir: Path, allow_empty: bool = False) -> tuple[DatabaseConfig, ...]:
    path = "databases"
    if value is None or (allow_empty and value == []):
        return ()  # "required" already reported, or a configuration of fleets alone
    if value == []:
        ctx.error(path, "is empty", "configure at least one database to back up")
        return ()
    out: list[DatabaseConfig] = []
    by_name: dict[str, str] = {}
    by_asset: dict[str, tuple[str, str]] = {}
    entries = _entries(
        ctx,
        value,
        path,
        "databases",
        "write each database as an item starting with `- name: ...`",
        _DB_KEYS,
        ("name", "source"),
    )
    for p, section in entries:
        name = _entry_name(ctx, section, p, ", starting with a letter or digit (e.g. scout-db)")
        description = ctx.string(section, p, "description", "")
        priority = ctx.string(section, p, "priority", "normal", choices=PRIORITIES)
        source = ctx.string(section, p, "source")
        if isinstance(name, str):
            if _first_use(
                ctx, by_name, name, p, f"duplicate name {name!r}", "database names must be unique; rename or remove one"
            ):
                asset = sanitize_asset_name(name)
                if asset in by_asset:
                    first, other = by_asset[asset]
                    ctx.error(
                        _join(p, "name"),
                        f"{name!r} and {first} {other!r} both become the asset "
                        f"name {asset!r} (non-alphanumerics turn into '_')",
                        "rename one so their asset names differ",
                    )
                else:
                    by_asset[asset] = (p, name)
        parsed = _source(ctx, source, _join(p, "source"), base_dir) if isinstance(source, str) else None
        if (
            isinstance(name, str)
            and isinstance(description, str)
            and isinstance(priority, str)
            and parsed is not None
            and not ctx.problems
        ):
            sqlite_path, account_id, database_id = parsed
            out.append(
                DatabaseConfig(
                    name=name,
                    source=source,
                    description=description,
                    priority=priority,
                    sqlite_path=sqlite_path,
                    account_id=account_id,
                    database_id=database_id,
                )
            )
    return tuple(out)


def _fleets(ctx: _Ctx, value: Any, database_names: set[str]) -> tuple[FleetConfig, ...]:
    path = "databases_from"
    out: list[FleetConfig] = []
    names: dict[str, str] = {}
    database_assets = {sanitize_asset_name(n) for n in database_names}
    entries = _entries(
        ctx,
        value,
        path,
        "fleets",
        "write each fleet as an item: `- {name: tenants, account: ACCOUNT_ID, name_pattern: 'tenant-*'}`",
        _FLEET_KEYS,
        ("name", "account"),
        allow_empty=False,
    )
    for p, section in entries:
        name = _entry_name(ctx, section, p, " (e.g. tenants)")
        account = ctx.string(
            section,
            p,
            "account",
            pattern=ACCOUNT_ID_RE,
            pattern_fix="give the Cloudflare account id (32 hex digits, shown in the dashboard)",
        )
        name_pattern = ctx.string(section, p, "name_pattern", "*")
        if isinstance(name_pattern, str) and not name_pattern.strip():
            ctx.error(_join(p, "name_pattern"), "is empty", "give a glob such as 'tenant-*', or '*' for every database")
        priority = ctx.string(section, p, "priority", "normal", choices=PRIORITIES)
        description = ctx.string(section, p, "description", "")
        token_env = ctx.env_name(section, p, "api_token_env", None, optional=True)
        if (
            isinstance(name, str)
            and _first_use(ctx, names, name, p, f"duplicate fleet name {name!r}", "rename one")
            and sanitize_asset_name(name) in database_assets
        ):
            ctx.error(
                _join(p, "name"),
                f"{name!r} is also the (asset) name of a configured database",
                "fleets and databases share one namespace of asset names: rename the fleet",
            )
        if not ctx.problems:
            out.append(
                FleetConfig(
                    name=name,
                    account_id=account,
                    name_pattern=name_pattern,
                    priority=priority,
                    description=description,
                    api_token_env=token_env,
                )
            )
    return tuple(out)


def _source(ctx: _Ctx, source: str, p: str, base_dir: Path) -> tuple[Path | None, str | None, str | None] | None:
    if not source.strip():
        ctx.error(p, "is empty", "give d1://<account_id>/<database_id> or a path to a SQLite file")
        return None
    scheme = source.split(":", 1)[0].lower() if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", source) else ""
    if scheme == "d1":
        try:
            account_id, database_id = parse_d1_source(source)
        except ValueError as exc:
            ctx.error(p, str(exc))
            return None
        return None, account_id, database_id
    if scheme == "sqlite" or scheme == "file":
        ctx.error(
            p,
            f"{_show(source)}: URL-style SQLite sources are not supported",
            "give a plain filesystem path (relative paths resolve against the config file's directory)",
        )
        return None
    if "://" in source:
        ctx.error(
            p,
            f"unknown source scheme in {_show(source)}",
            "use d1://<account_id>/<database_id> or a path to a SQLite file",
        )
        return None
    sqlite_path = Path(source).expanduser()
    if not sqlite_path.is_absolute():
        sqlite_path = base_dir / sqlite_path
    return sqlite_path, None, None


def _cloudflare(ctx: _Ctx, value: Any) -> CloudflareConfig:
    path = "cloudflare"
    section = ctx.mapping(value, path, _CF_KEYS)
    token_env = ctx.env_name(section, path, "api_token_env", "CLOUDFLARE_API_TOKEN")
    api_url = ctx.string(section, path, "api_url", DEFAULT_API_URL)
    if isinstance(api_url, str):
        err = _url_problem(api_url)
        if err:
            ctx.error(_join(path, "api_url"), err, f"e.g. api_url: {DEFAULT_API_URL}")
    # Cloudflare allows 1200 per token; more than that only gets the token locked out for 5 minutes.
    budget = ctx.integer(section, path, "requests_per_5_minutes", 600, minimum=1, maximum=1200)
    if ctx.problems:
        return CloudflareConfig()
    return CloudflareConfig(api_token_env=token_env, api_url=api_url.rstrip("/"), requests_per_5_minutes=budget)


def _bucket(ctx: _Ctx, value: Any, base_dir: Path) -> BucketConfig | None:
    path = "bucket"
    if value is None:
        return None  # "required" already reported
    section = ctx.mapping(value, path, _BUCKET_KEYS)
    if section is None:
        return None
    has_local = "local" in section
    has_s3 = "s3" in section
    if has_local and has_s3:
        ctx.error(path, "both local and s3 are set", "keep exactly one: local (a directory) or s3 (R2 / an S3 bucket)")
        return None
    if not has_local and not has_s3:
        ctx.error(
            path,
            "neither local nor s3 is set",
            "add `local: {path: .patina/bucket}` or `s3: {bucket: grove-patina, endpoint_url: ...}`",
        )
        return None
    if has_local:
        p = _join(path, "local")
        local = ctx.mapping(section["local"], p, _LOCAL_KEYS, required=("path",))
        raw = ctx.string(local, p, "path")
        if not isinstance(raw, str):
            return None
        if not raw.strip():
            ctx.error(_join(p, "path"), "is empty", "give a directory, e.g. path: .patina/bucket")
            return None
        local_path = Path(raw).expanduser()
        if not local_path.is_absolute():
            local_path = base_dir / local_path
        return BucketConfig(local=LocalBucketConfig(path=local_path))

    p = _join(path, "s3")
    s3 = ctx.mapping(section["s3"], p, _S3_KEYS, required=("bucket",))
    if s3 is None:
        return None
    n = len(ctx.problems)
    name = ctx.string(
        s3,
        p,
        "bucket",
        pattern=_S3_BUCKET_RE,
        pattern_fix="bucket names are 3-63 lower-case letters, digits, '.' or '-' (e.g. grove-patina)",
    )
    endpoint = ctx.string(s3, p, "endpoint_url", None)
    if isinstance(endpoint, str):
        err = _url_problem(endpoint)
        if err:
            ctx.error(_join(p, "endpoint_url"), err, "e.g. endpoint_url: https://<account_id>.r2.cloudflarestorage.com")
    region = ctx.string(s3, p, "region", "auto")
    prefix = ctx.string(s3, p, "prefix", "")
    if isinstance(prefix, str) and (prefix.startswith("/") or "//" in prefix or ".." in prefix.split("/")):
        ctx.error(
            _join(p, "prefix"),
            f"{prefix!r} is not a clean key prefix",
            "use something like `patina` or `backups/patina` (no leading '/', '//' or '..')",
        )
    key_env = ctx.env_name(s3, p, "access_key_id_env", "R2_ACCESS_KEY_ID")
    secret_env = ctx.env_name(s3, p, "secret_access_key_env", "R2_SECRET_ACCESS_KEY")
    part_mb = ctx.integer(s3, p, "multipart_part_size_mb", 16, minimum=5, maximum=5120, unit=" MB (S3 part limits)")
    if len(ctx.problems) > n:
        return None
    return BucketConfig(
        s3=S3BucketConfig(
            bucket=name,
            endpoint_url=endpoint.rstrip("/") if endpoint else None,
            region=region,
            prefix=prefix.strip("/"),
            access_key_id_env=key_env,
            secret_access_key_env=secret_env,
            multipart_part_size_mb=part_mb,
        )
    )


def _r2_buckets(ctx: _Ctx, value: Any) -> tuple[R2BucketConfig, ...]:
    path = "r2_buckets"
    if value is None:
        return ()
    if not isinstance(value, list):
        ctx.error(
            path,
            f"must be a list of buckets (got {_type_name(value)})",
            "write each bucket as an item starting with `- name: ...`",
        )
        return ()
    out: list[R2BucketConfig] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(value):
        p = _join(path, i)
        n = len(ctx.problems)
        section = ctx.mapping(item, p, _R2_KEYS, required=("name", "bucket", "endpoint_url"))
        if section is None:
            continue
        name = _entry_name(ctx, section, p, " (e.g. grove-media)")
        bucket = ctx.string(
            section,
            p,
            "bucket",
            pattern=_S3_BUCKET_RE,
            pattern_fix="bucket names are 3-63 lower-case letters, digits, '.' or '-' (e.g. grove-media)",
        )
        endpoint = ctx.string(section, p, "endpoint_url")
        if isinstance(endpoint, str):
            err = _url_problem(endpoint)
            if err:
                ctx.error(
                    _join(p, "endpoint_url"), err, "e.g. endpoint_url: https://<account_id>.r2.cloudflarestorage.com"
                )
        region = ctx.string(section, p, "region", "auto")
        prefix = ctx.string(section, p, "prefix", "")
        if isinstance(prefix, str) and prefix.startswith("/"):
            ctx.error(_join(p, "prefix"), f"{prefix!r} starts with '/'", "give the key prefix as listed, e.g. media/")
        exclude = ctx.get(section, p, "exclude", [])
        if not isinstance(exclude, list) or not all(isinstance(x, str) and x for x in exclude):
            ctx.error(
                _join(p, "exclude"),
                f"must be a list of glob patterns (got {_show(exclude)})",
                'e.g. exclude: ["tmp/*", "*.partial"]',
            )
            exclude = []
        priority = ctx.string(section, p, "priority", "normal", choices=PRIORITIES)
        description = ctx.string(section, p, "description", "")
        key_env = ctx.env_name(section, p, "access_key_id_env", "R2_ACCESS_KEY_ID")
        secret_env = ctx.env_name(section, p, "secret_access_key_env", "R2_SECRET_ACCESS_KEY")
        if isinstance(name, str):
            _first_use(
                ctx, seen, name, p, f"duplicate name {name!r}", "R2 backup names must be unique; rename or remove one"
            )
        if len(ctx.problems) > n:
            continue
        out.append(
            R2BucketConfig(
                name=name,
                bucket=bucket,
                endpoint_url=endpoint.rstrip("/"),
                region=region,
                prefix=prefix,
                exclude=tuple(exclude),
                priority=priority,
                description=description,
                access_key_id_env=key_env,
                secret_access_key_env=secret_env,
            )
        )
    assets = {sanitize_asset_name(entry.name) for entry in out}
    if len(assets) < len(out):
        ctx.error(path, "two names become the same asset name (non-alphanumerics turn into '_')", "rename one")
    return tuple(out)


def _dump(ctx: _Ctx, value: Any) -> DumpConfig:
    path = "dump"
    section = ctx.mapping(value, path, _DUMP_KEYS)
    d = DumpConfig()  # the defaults
    fmt = ctx.string(section, path, "format", d.format, choices=DUMP_FORMATS)
    concurrency = ctx.integer(section, path, "concurrency", d.concurrency, minimum=1, maximum=32)
    deadline = ctx.integer(section, path, "deadline_seconds", d.deadline_seconds, minimum=1, unit=" seconds")
    page_bytes = ctx.integer(section, path, "page_bytes", d.page_bytes, minimum=10_000, unit=" bytes")
    retries = ctx.integer(section, path, "retries", d.retries, minimum=0, maximum=10)
    retry_delay = ctx.integer(section, path, "retry_delay_seconds", d.retry_delay_seconds, minimum=0, unit=" seconds")
    attempts = ctx.integer(section, path, "request_attempts", d.request_attempts, minimum=1, maximum=20)
    backoff = ctx.number(section, path, "request_backoff_seconds", d.request_backoff_seconds, gt=-0.000001)
    consistency_retries = ctx.integer(
        section, path, "consistency_retries", d.consistency_retries, minimum=0, maximum=10
    )
    late_backfill = ctx.string(section, path, "late_backfill", d.late_backfill, choices=LATE_BACKFILL_CHOICES)
    if ctx.problems:
        return DumpConfig()
    return DumpConfig(
        format=fmt,
        concurrency=concurrency,
        deadline_seconds=deadline,
        page_bytes=page_bytes,
        retries=retries,
        retry_delay_seconds=retry_delay,
        request_attempts=attempts,
        request_backoff_seconds=float(backoff),
        consistency_retries=consistency_retries,
        late_backfill=late_backfill,
    )


def _retention(ctx: _Ctx, value: Any) -> RetentionConfig:
    path = "retention"
    section = ctx.mapping(value, path, _RETENTION_KEYS)
    r = RetentionConfig()  # the defaults
    daily = ctx.integer(section, path, "daily_days", r.daily_days, minimum=1, unit=" day(s)")
    weekly = ctx.integer(section, path, "weekly_weeks", r.weekly_weeks, minimum=1, unit=" week(s)")
    fmt = ctx.string(section, path, "weekly_format", r.weekly_format, choices=WEEKLY_FORMATS)
    if ctx.problems:
        return RetentionConfig()
    return RetentionConfig(daily_days=daily, weekly_weeks=weekly, weekly_format=fmt)


def _encryption(ctx: _Ctx, value: Any) -> EncryptionConfig:
    path = "encryption"
    section = ctx.mapping(value, path, _ENCRYPTION_KEYS)
    n = len(ctx.problems)
    identity_env = ctx.env_name(section, path, "identity_file_env", DEFAULT_IDENTITY_ENV)
    listed = ctx.get(section, path, "recipients", [])
    if isinstance(listed, str):
        listed = [listed]
    if not isinstance(listed, list):
        ctx.error(
            _join(path, "recipients"),
            f"must be a list of public keys (got {_type_name(listed)})",
            "e.g. recipients: [age1...] (`patina keygen` prints one)",
        )
        listed = []
    recipients: list[str] = []
    if listed:
        for i, text in enumerate(listed):
            try:
                parse_recipient(text)
            except InvalidRecipient as exc:
                ctx.error(f"{path}.recipients[{i}]", str(exc))
                continue
            recipients.append(text.strip())
    if section is not None and "recipients" in section and not listed:
        ctx.error(
            _join(path, "recipients"),
            "is empty, so nothing would be encrypted",
            "list at least one public key (`patina keygen` prints one), or remove the encryption section to store "
            "backups unencrypted",
        )
    if len(ctx.problems) > n:
        return EncryptionConfig()
    return EncryptionConfig(recipients=tuple(recipients), identity_file_env=identity_env)


def _email(ctx: _Ctx, value: Any, base_dir: Path) -> EmailConfig | None:
    if value is None:
        return None
    path = "alerts.email"
    section = ctx.mapping(value, path, _EMAIL_KEYS, required=("host", "from", "to"))
    if section is None:
        return None
    n = len(ctx.problems)
    host = ctx.string(section, path, "host", None)
    port = ctx.integer(section, path, "port", 587, minimum=1, maximum=65535)
    sender = ctx.string(
        section, path, "from", None, pattern=_EMAIL_RE, pattern_fix="an address like patina@example.com"
    )
    to = section.get("to")
    recipients: list[str] = []
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to:
        if to is not None:
            ctx.error(_join(path, "to"), "must be an address or a list of addresses", "e.g. to: [ops@example.com]")
    else:
        for i, address in enumerate(to):
            if not isinstance(address, str) or not _EMAIL_RE.match(address):
                ctx.error(f"{path}.to[{i}]", f"{_show(address)} is not an email address", "e.g. ops@example.com")
            else:
                recipients.append(address)
    username_env = ctx.env_name(section, path, "username_env", None, optional=True)
    password_env = ctx.env_name(section, path, "password_env", None, optional=True)
    if (username_env is None) != (password_env is None) and _MISSING not in (username_env, password_env):
        ctx.error(
            _join(path, "password_env" if password_env is None else "username_env"),
            "a login needs both username_env and password_env",
            "name both variables, e.g. username_env: PATINA_SMTP_USER, password_env: PATINA_SMTP_PASSWORD",
        )
    ca_file = ctx.string(section, path, "ca_file", None)
    timeout = ctx.number(section, path, "timeout_seconds", 10.0, gt=0)
    if len(ctx.problems) > n:
        return None
    return EmailConfig(
        host=host,
        sender=sender,
        to=tuple(recipients),
        port=port,
        username_env=username_env,
        password_env=password_env,
        ca_file=(base_dir / ca_file) if ca_file else None,
        timeout_seconds=float(timeout),
    )


def _alerts(ctx: _Ctx, value: Any, base_dir: Path) -> AlertsConfig:
    path = "alerts"
    section = ctx.mapping(value, path, _ALERT_KEYS)
    n = len(ctx.problems)
    d = AlertsConfig()
    out = dict(
        discord_webhook_env=ctx.env_name(section, path, "discord_webhook_env", d.discord_webhook_env, optional=True),
        webhook_env=ctx.env_name(section, path, "webhook_env", d.webhook_env, optional=True),
        notify_on_success=ctx.boolean(section, path, "notify_on_success", d.notify_on_success),
        redact_names=ctx.boolean(section, path, "redact_names", d.redact_names),
        size_decrease_ratio=ctx.number(section, path, "size_decrease_ratio", d.size_decrease_ratio, gt=0, lt=1),
        size_increase_ratio=ctx.number(section, path, "size_increase_ratio", d.size_increase_ratio, gt=1),
        stale_after_days=ctx.integer(section, path, "stale_after_days", d.stale_after_days, minimum=1, unit=" day(s)"),
        stale_warn_after_days=ctx.integer(
            section, path, "stale_warn_after_days", d.stale_warn_after_days, minimum=1, unit=" day(s)"
        ),
        consecutive_failure_limit=ctx.integer(
            section, path, "consecutive_failure_limit", d.consecutive_failure_limit, minimum=1
        ),
        warn_on_check_warnings=ctx.boolean(section, path, "warn_on_check_warnings", d.warn_on_check_warnings),
        email=_email(ctx, section.get("email") if section else None, base_dir),
    )
    if len(ctx.problems) > n:
        return d
    if out["stale_warn_after_days"] >= out["stale_after_days"]:
        ctx.error(
            _join(path, "stale_warn_after_days"),
            f"{out['stale_warn_after_days']} is not less than stale_after_days ({out['stale_after_days']})",
            "the warning must come before the error: make it smaller",
        )
        return d
    return AlertsConfig(**out)
