"""``patina reencrypt``: rewrite stored backups to the current recipients, for the day a key leaks or is
retired.  Plain Python over ``BackupStore.reencrypt_daily``, ``ArchiveStore.reencrypt`` and
``r2.reencrypt_snapshot`` (one publish step each: verified before the old object goes; an R2 snapshot's old
objects go with the next garbage collection)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from . import history
from .archive import ArchiveStore
from .encryption import EncryptionError
from .leftovers import scratch_directory
from .r2 import list_snapshots, reencrypt_snapshot, snapshot_needs_reencryption
from .storage import StorageError, format_day, week_start_of

logger = logging.getLogger(__name__)

WOULD_REWRITE = "would rewrite"


@dataclass(frozen=True)
class Rewrite:
    """What happened to one stored backup: ``rewritten``, ``current`` (already encrypted to exactly the
    current recipients), ``failed`` (``problem`` says why; the old object is untouched) or, in a dry run,
    ``would rewrite``."""

    what: str
    old_key: str
    action: str
    new_key: str | None = None
    problem: str | None = None


def reencrypt_backups(
    archives: ArchiveStore,
    *,
    day: date | str | None = None,
    database: str | None = None,
    dry_run: bool = False,
) -> list[Rewrite]:
    """Rewrite the dailies (of ``day``, or all), the weekly archives (the one holding ``day``, or all) and the
    R2 bucket snapshots (of ``day``, or all; ``database`` names one) that are not encrypted to the current
    recipients.  A backup that cannot be rewritten (damaged) is
    reported and left as it is; a missing or wrong identity stops everything (it would fail them all).
    ``dry_run`` only says which would be rewritten, from the manifests (it needs no identity, writes nothing)."""
    store = archives.store
    if not store.keys.enabled:
        raise EncryptionError(
            "encryption is off (no encryption.recipients in patina.yaml): there is nothing to re-encrypt to"
        )
    day_text = format_day(day) if day is not None else None
    results: list[Rewrite] = []
    with scratch_directory("reencrypt") as scratch:
        for manifest in store.list_daily(database=database, day=day_text):

            def rewrite_daily(manifest=manifest) -> str:
                new = store.reencrypt_daily(manifest, scratch)
                history.record(store, new)  # its new key, with the verdict carried over to it
                return new.key

            what = f"{manifest.database} on {manifest.day}"
            needed = store.needs_reencryption(manifest)
            results.append(_rewrite(what, manifest.key, manifest.key, needed, dry_run, rewrite_daily))
    week = week_start_of(day_text).isoformat() if day_text else None
    for manifest in archives.list():
        if week is not None and manifest.week != week:
            continue
        if database is not None and all(m.database != database for m in manifest.index.members):
            continue
        what = f"archive of week {manifest.week}"
        needed = archives.needs_reencryption(manifest)
        results.append(
            _rewrite(what, manifest.key, manifest.key, needed, dry_run, lambda m=manifest: archives.reencrypt(m).key)
        )
    snapshots, unreadable = list_snapshots(store.bucket, database)
    for key, why in unreadable.items():
        if day_text is None or f"/{day_text}/" in key:
            results.append(Rewrite(f"R2 snapshot manifest {key}", key, "failed", problem=why))
    for snapshot in snapshots:
        if day_text is not None and snapshot.day != day_text:
            continue
        what = f"R2 snapshot {snapshot.name} on {snapshot.day}"
        needed = snapshot_needs_reencryption(snapshot, store.keys)
        results.append(
            _rewrite(
                what,
                snapshot.key,
                snapshot.entries_key,
                needed,
                dry_run,
                lambda s=snapshot: reencrypt_snapshot(store.bucket, s, store.keys).manifest.entries_key,
            )
        )
    return results


def _rewrite(what: str, key: str, current_key: str, needed: bool, dry_run: bool, rewrite: Callable[[], str]) -> Rewrite:
    """One stored backup: ``current`` (``current_key``) when its rewrite is not ``needed``, ``would rewrite`` in a
    dry run, else ``rewrite()``, which returns the new object's key; a ``StorageError`` (damage, a missing
    object) is reported as ``failed`` and the backup is left as it was."""
    if not needed:
        return Rewrite(what, key, "current", current_key)
    if dry_run:
        return Rewrite(what, key, WOULD_REWRITE)
    try:
        new_key = rewrite()
    except StorageError as exc:  # damage (CiphertextDamaged) included: reported, the old object kept
        logger.warning("%s was not re-encrypted: %s", what, exc)
        return Rewrite(what, key, "failed", problem=str(exc))
    return Rewrite(what, key, "rewritten", new_key)
