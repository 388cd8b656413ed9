"""The dump engine: a plain Python library (no Dagster) that reads a database, writes an exact,
D1-importable SQL dump, and restores one. The Dagster layer in `patina_assets.defs` sits on top."""

from .digests import DIGEST_ALGORITHMS, DIGEST_VERSION, content_digest
from .dump import DumpResult, dump_database, table_digests_of
from .errors import (
    AuthenticationFailed,
    CorruptDump,
    DatabaseNotFound,
    DeadlineExceeded,
    DumpError,
    PatinaError,
    RateLimited,
    RestoreError,
    SourceError,
    SourceSQLError,
    SourceUnavailable,
    TimeTravelUnavailable,
)
from .formats import FORMATS, format_of, open_dump_bytes, open_dump_text
from .restore import RestoreReport, restore_dump
from .sources import D1Source, Source, SqliteSource, open_source

__all__ = [
    "AuthenticationFailed",
    "CorruptDump",
    "DIGEST_ALGORITHMS",
    "DIGEST_VERSION",
    "D1Source",
    "DatabaseNotFound",
    "DeadlineExceeded",
    "DumpError",
    "DumpResult",
    "FORMATS",
    "PatinaError",
    "RateLimited",
    "RestoreError",
    "RestoreReport",
    "Source",
    "SourceError",
    "SourceSQLError",
    "SourceUnavailable",
    "SqliteSource",
    "TimeTravelUnavailable",
    "content_digest",
    "dump_database",
    "format_of",
    "open_dump_bytes",
    "open_dump_text",
    "open_source",
    "restore_dump",
    "table_digests_of",
]
