"""What the R2 snapshots' asset checks judge (plain Python; defs/r2_backups.py turns them into Dagster checks).

* ``check_complete``: the source listed again beside the snapshot's entries (both in key order): a key that
  existed when the snapshot's listing started but is not in it is missing.  Keys written or deleted since are
  counted, not failed: the bucket lives on.
* ``check_objects``: every referenced object exists with its sha256, for a sample of entries (nightly) or all of
  them (weekly).  A sample is a reservoir of the entries, seeded by the day, so a night's pick is repeatable.
* ``judge_size``: object count and bytes against the average of the previous snapshots, with the dumps' ratios.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..encryption import AgeKeys, CiphertextDamaged
from ..storage import Bucket, S3Bucket, StorageObjectNotFound, parse_utc_timestamp
from .backup import listed_objects
from .layout import Entry, SnapshotManifest, open_entries, read_object

DEFAULT_SAMPLE = 64


@dataclass
class Completeness:
    missing: int = 0
    missing_examples: list[str] = field(default_factory=list)
    written_since: int = 0  # new or changed after the snapshot's listing started
    deleted_since: int = 0
    listed: int = 0

    @property
    def passed(self) -> bool:
        return self.missing == 0

    def counts(self) -> dict[str, int]:
        return {"missing": self.missing, "written_since": self.written_since, "deleted_since": self.deleted_since}

    def summary(self) -> str:
        if self.passed:
            return (
                f"every one of the {self.listed} objects listed now is in the snapshot or was written after it began "
                f"({self.written_since} written since, {self.deleted_since} deleted since)"
            )
        return (
            f"{self.missing} object(s) that existed when the snapshot began are not in it "
            f"(e.g. {', '.join(repr(k) for k in self.missing_examples)})"
        )


def check_complete(
    source: S3Bucket, backup: Bucket, manifest: SnapshotManifest, prefix: str = "", keys: AgeKeys | None = None
) -> Completeness:
    result = Completeness()
    began = parse_utc_timestamp(manifest.listing_started_at.replace("Z", "+00:00"))
    entries = open_entries(backup, manifest, keys)
    current: Entry | None = next(entries, None)
    for info in listed_objects(source, prefix, manifest.exclude):
        result.listed += 1
        while current is not None and current.key < info.key:
            result.deleted_since += 1
            current = next(entries, None)
        if current is not None and current.key == info.key:
            current = next(entries, None)
            continue
        if info.last_modified.replace(microsecond=0) < began:  # began is floored to the second
            result.missing += 1
            if len(result.missing_examples) < 5:
                result.missing_examples.append(info.key)
        else:
            result.written_since += 1
    while current is not None:
        result.deleted_since += 1
        current = next(entries, None)
    return result


@dataclass
class ObjectsCheck:
    checked: int = 0
    bytes: int = 0
    full: bool = False
    missing: list[str] = field(default_factory=list)  # source keys whose object is gone
    damaged: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.missing and not self.damaged

    def counts(self) -> dict[str, int]:
        return {"checked": self.checked, "missing": len(self.missing), "damaged": len(self.damaged)}

    def summary(self) -> str:
        scope = "all" if self.full else "a sample of"
        if self.passed:
            return f"{scope} {self.checked} referenced objects ({self.bytes} bytes) exist with their sha256"
        return (
            f"of {scope} {self.checked} referenced objects, {len(self.missing)} are missing and {len(self.damaged)} "
            f"do not match their sha256 (e.g. {', '.join(repr(k) for k in (self.missing + self.damaged)[:5])})"
        )


def sample_entries(entries: Iterable[Entry], size: int, seed: str) -> list[Entry]:
    """A uniform sample of ``size`` entries in one pass with ``size`` entries of memory (reservoir sampling)."""
    chooser = random.Random(seed)
    sample: list[Entry] = []
    for index, entry in enumerate(entries):
        if index < size:
            sample.append(entry)
        else:
            slot = chooser.randrange(index + 1)
            if slot < size:
                sample[slot] = entry
    return sample


def check_objects(
    backup: Bucket,
    manifest: SnapshotManifest,
    *,
    sample: int | None = DEFAULT_SAMPLE,
    keys: AgeKeys | None = None,
) -> ObjectsCheck:
    """``sample`` entries (None: every one) read back from ``r2/objects/`` (decrypted, for an encrypted
    snapshot: an object that fails to authenticate is damaged) and hashed."""
    result = ObjectsCheck(full=sample is None)
    entries: Iterable[Entry] = open_entries(backup, manifest, keys)
    if sample is not None:
        entries = sample_entries(entries, sample, f"{manifest.name}/{manifest.day}")
    for entry in entries:
        result.checked += 1
        result.bytes += entry.size
        try:
            size, sha256 = read_object(backup, manifest, entry, None, keys)
        except StorageObjectNotFound:
            result.missing.append(entry.key)
            continue
        except CiphertextDamaged:
            result.damaged.append(entry.key)
            continue
        if (size, sha256) != (entry.size, entry.sha256):
            result.damaged.append(entry.key)
    return result


@dataclass(frozen=True)
class SizeJudgement:
    objects: int
    bytes: int
    average_objects: float | None
    average_bytes: float | None
    history: int
    problems: tuple[str, ...]

    @property
    def anomalous(self) -> bool:
        return bool(self.problems)

    def summary(self) -> str:
        if self.average_objects is None:
            return f"{self.objects} objects, {self.bytes} bytes: no earlier snapshot to compare with"
        if not self.problems:
            return (
                f"{self.objects} objects and {self.bytes} bytes are within range of the average of the last "
                f"{self.history} snapshots ({self.average_objects:.0f} objects, {self.average_bytes:.0f} bytes)"
            )
        return "; ".join(self.problems)


def judge_size(
    current: SnapshotManifest,
    history: Sequence[SnapshotManifest],
    *,
    decrease_ratio: float,
    increase_ratio: float,
) -> SizeJudgement:
    """Object count and bytes of ``current`` against the average of ``history`` (the snapshots before it)."""
    if not history:
        return SizeJudgement(current.objects, current.bytes, None, None, 0, ())
    average_objects = sum(m.objects for m in history) / len(history)
    average_bytes = sum(m.bytes for m in history) / len(history)
    problems = []
    for what, value, average in (
        ("objects", current.objects, average_objects),
        ("bytes", current.bytes, average_bytes),
    ):
        if average <= 0:
            continue
        ratio = value / average
        if ratio < decrease_ratio:
            problems.append(
                f"{value} {what} is {ratio:.0%} of the average of the last {len(history)} snapshots "
                f"({average:.0f}), under {decrease_ratio:.0%}: possible data loss in the source bucket"
            )
        elif ratio > increase_ratio:
            problems.append(
                f"{value} {what} is {ratio:.0%} of the average of the last {len(history)} snapshots "
                f"({average:.0f}), over {increase_ratio:.0%}: unexpected growth"
            )
    return SizeJudgement(current.objects, current.bytes, average_objects, average_bytes, len(history), tuple(problems))
