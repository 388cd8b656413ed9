"""Where Patina's backups live: the object-store layer and the backup layout on top of it.

Plain Python (no Dagster here, so the restore tooling and the tests can use it alone):

* ``buckets``: the ``Bucket`` protocol and the storage errors; ``local`` (``LocalBucket``, a directory) and
  ``s3`` (``S3Bucket``, any S3 API: R2 in production, moto in tests) implement it, all-or-nothing.
* ``layout``: every key and generation in the bucket, and the one table of dump formats.
* ``manifests``: what a daily backup's manifest holds, and the restore-verification record.
* ``publish``: the one publish step (an object, then the manifest that names it, confirmed by reading back).
* ``store``: ``BackupStore``, the daily backups on a bucket (save, list, find, orphans), and ``open_bucket``,
  the one factory of buckets.

Everything is importable from ``patina_assets.storage`` itself.
"""

from __future__ import annotations

from .buckets import (
    DEFAULT_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    Bucket,
    CorruptManifest,
    IncompleteWrite,
    InvalidKey,
    MiB,
    ObjectInfo,
    PublishUnconfirmed,
    StorageAccessDenied,
    StorageBucketNotFound,
    StorageError,
    StorageIntegrityError,
    StorageObjectNotFound,
    StorageUnavailable,
    validate_key,
    validate_prefix,
)
from .layout import (
    ARCHIVE_FORMATS,
    AUDIT_PREFIX,
    DAILY_PREFIX,
    DATABASE_NAME,
    DUMP_CONTENT_TYPES,
    DUMP_FORMATS,
    MANIFEST_CONTENT_TYPE,
    MANIFEST_SUFFIX,
    VERIFICATION_SUFFIX,
    WEEKLY_PREFIX,
    DailyKey,
    WeeklyKey,
    daily_dump_key,
    daily_manifest_key,
    daily_prefix,
    daily_verification_key,
    format_day,
    new_generation,
    parse_daily_key,
    parse_weekly_key,
    validate_database_name,
    validate_format,
    weekly_archive_key,
    weekly_manifest_key,
    weekly_verification_key,
)
from .local import (
    LocalBucket,
)
from .manifests import (
    DAMAGED,
    FAILED,
    LATE_AFTER,
    MANIFEST_SCHEMA_VERSION,
    NOT_VERIFIED,
    VERIFICATION_SCHEMA_VERSION,
    VERIFIED,
    Manifest,
    VerificationRecord,
    by_capture,
    day_end,
    is_captured_late,
    parse_utc_timestamp,
    patina_version,
    read_verification,
    utc_timestamp,
)
from .publish import (
    Publication,
    publish,
)
from .s3 import (
    S3Bucket,
    make_s3_client,
)
from .store import (
    BackupStore,
    DailyInventory,
    open_bucket,
)

__all__ = [
    "ARCHIVE_FORMATS",
    "AUDIT_PREFIX",
    "BackupStore",
    "Bucket",
    "CorruptManifest",
    "DAILY_PREFIX",
    "DAMAGED",
    "DATABASE_NAME",
    "DEFAULT_PART_SIZE",
    "DUMP_CONTENT_TYPES",
    "DUMP_FORMATS",
    "DailyInventory",
    "DailyKey",
    "FAILED",
    "IncompleteWrite",
    "InvalidKey",
    "LATE_AFTER",
    "LocalBucket",
    "MANIFEST_CONTENT_TYPE",
    "MANIFEST_SCHEMA_VERSION",
    "MANIFEST_SUFFIX",
    "MAX_PARTS",
    "MIN_PART_SIZE",
    "Manifest",
    "MiB",
    "NOT_VERIFIED",
    "ObjectInfo",
    "Publication",
    "PublishUnconfirmed",
    "S3Bucket",
    "StorageAccessDenied",
    "StorageBucketNotFound",
    "StorageError",
    "StorageIntegrityError",
    "StorageObjectNotFound",
    "StorageUnavailable",
    "VERIFICATION_SCHEMA_VERSION",
    "VERIFICATION_SUFFIX",
    "VERIFIED",
    "VerificationRecord",
    "WEEKLY_PREFIX",
    "WeeklyKey",
    "by_capture",
    "daily_dump_key",
    "daily_manifest_key",
    "daily_prefix",
    "daily_verification_key",
    "day_end",
    "format_day",
    "is_captured_late",
    "make_s3_client",
    "new_generation",
    "open_bucket",
    "parse_daily_key",
    "parse_utc_timestamp",
    "parse_weekly_key",
    "patina_version",
    "publish",
    "read_verification",
    "utc_timestamp",
    "validate_database_name",
    "validate_format",
    "validate_key",
    "validate_prefix",
    "weekly_archive_key",
    "weekly_manifest_key",
    "weekly_verification_key",
]
