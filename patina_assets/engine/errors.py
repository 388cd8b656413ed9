"""Errors of the dump engine. Each says what went wrong and what to do about it, and never carries a secret.

`retryable` tells the pipeline whether trying again can help: a rate limit or a 500 can pass, a bad token
or a missing database cannot.
"""

from __future__ import annotations


class PatinaError(Exception):
    """Base of every error Patina raises on purpose."""

    retryable = False


class SourceError(PatinaError):
    """Reading the source database failed."""


class SourceUnavailable(SourceError):
    """The source did not answer, or answered with a server error; it may work later."""

    retryable = True


class RateLimited(SourceUnavailable):
    """The API answered 429 too many times in a row."""


class AuthenticationFailed(SourceError):
    """The API refused the token (401/403). Retrying cannot help."""


class DatabaseNotFound(SourceError):
    """The account or database id does not exist (404), or the SQLite file is missing."""


class TimeTravelUnavailable(SourceError):
    """D1 would not give the database's Time Travel bookmark, without which no REST dump can be shown to
    be one point in time. Retrying cannot help."""


class SourceSQLError(SourceError):
    """The source rejected a query Patina sent (an SQL error)."""


class DeadlineExceeded(SourceError):
    """The per-database deadline passed before the dump finished."""

    retryable = True


class DumpError(PatinaError):
    """The database holds something the dump cannot represent faithfully."""


class RestoreError(PatinaError):
    """A restore failed or its result does not match the dump."""


class CorruptDump(RestoreError):
    """The dump file is truncated, altered or not a Patina dump."""
