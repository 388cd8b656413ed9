"""R2 bucket backups: nightly incremental snapshots in a content-addressed store (plain Python, no Dagster).

* ``layout``: keys (``r2/objects/<sha256>``, ``r2/DAY/<name>.manifest.json``) and the snapshot manifest
* ``backup``: ``backup_bucket``, one night's snapshot of one bucket
* ``retention``: ``collect_garbage``, 7 daily + 12 weekly snapshots and the objects they name
* ``restore``: ``restore_snapshot`` to a bucket or a directory, verified by sha256
* ``checks``: completeness, referenced objects, size anomaly
* ``reencrypt``: ``reencrypt_snapshot``, a kept snapshot rewritten to the current recipients
"""

from .backup import backup_bucket, is_excluded, open_source
from .checks import check_complete, check_objects, judge_size
from .layout import (
    OBJECTS_PREFIX,
    R2_PREFIX,
    Entry,
    SnapshotManifest,
    is_r2_key,
    list_snapshots,
    object_key,
    open_entries,
    recipients_id,
    snapshot_manifest_key,
)
from .reencrypt import reencrypt_snapshot, snapshot_needs_reencryption
from .restore import R2RestoreResult, RestoreRefused, SnapshotNotFound, restore_snapshot
from .retention import GarbageCollectionRefused, R2RetentionResult, collect_garbage, kept_days

__all__ = [
    "OBJECTS_PREFIX",
    "R2_PREFIX",
    "Entry",
    "GarbageCollectionRefused",
    "R2RestoreResult",
    "R2RetentionResult",
    "RestoreRefused",
    "SnapshotManifest",
    "SnapshotNotFound",
    "backup_bucket",
    "check_complete",
    "check_objects",
    "collect_garbage",
    "is_excluded",
    "is_r2_key",
    "judge_size",
    "kept_days",
    "list_snapshots",
    "object_key",
    "open_entries",
    "open_source",
    "recipients_id",
    "reencrypt_snapshot",
    "restore_snapshot",
    "snapshot_manifest_key",
    "snapshot_needs_reencryption",
]
