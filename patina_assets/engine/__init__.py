"""The dump engine: a plain Python library (no Dagster) that reads a database, writes an exact,
D1-importable SQL dump, and restores one. The Dagster layer in `patina_assets.defs` sits on top."""

import importlib
from typing import TYPE_CHECKING

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

# The rest is imported when first used (PEP 562): a command that only reads the bucket (`patina status`, a
# check) needs the errors, not the dump writer, the restorer and their imports.
_LAZY = {
    "DIGEST_ALGORITHMS": ".digests",
    "DIGEST_VERSION": ".digests",
    "content_digest": ".digests",
    "DumpResult": ".dump",
    "dump_database": ".dump",
    "table_digests_of": ".dump",
    "FORMATS": ".formats",
    "format_of": ".formats",
    "open_dump_bytes": ".formats",
    "open_dump_text": ".formats",
    "RestoreReport": ".restore",
    "restore_dump": ".restore",
    "D1Source": ".sources",
    "Source": ".sources",
    "SqliteSource": ".sources",
    "open_source": ".sources",
}

if TYPE_CHECKING:
    from .digests import DIGEST_ALGORITHMS, DIGEST_VERSION, content_digest
    from .dump import DumpResult, dump_database, table_digests_of
    from .formats import FORMATS, format_of, open_dump_bytes, open_dump_text
    from .restore import RestoreReport, restore_dump
    from .sources import D1Source, Source, SqliteSource, open_source


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


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
