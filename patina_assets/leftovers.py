"""No leftovers: what interrupted runs leave behind, found and removed by the next run.

A run killed mid-way (kill -9, the OOM killer, a lost machine) can leave four kinds of things:

- a local bucket's write temporaries (``.patina-tmp.<pid>.<random>`` beside the object being written);
- incomplete S3/R2 multipart uploads (no object, but parts that are stored and billed until aborted);
- scratch directories in the system temporary directory (a dump before upload, a restored copy for
  verification: 150-200 MB each for the demo's databases), named ``patina-scratch-<pid>-<purpose>-*``
  (:func:`scratch_directory`) so that nothing else in the temporary directory is ever touched;
- worker processes whose parent died (``engine/lifeline.py`` makes them die with it; this is the second line).

:func:`sweep` finds them and removes what is safe to remove, by these rules:

- a temporary: its writer (the pid in its name) is no longer running here, or it has not changed for
  ``stale_after`` (an hour: a writer on another machine sharing the directory writes continuously);
- a multipart upload: started more than ``stale_after`` ago (an upload in progress is younger: parts of
  16 MiB take seconds), by the time in its key's generation (:func:`upload_started`);
- a scratch directory: its owner no longer holds the lock on the ``.owner`` file inside it (the kernel
  releases an flock when the process dies, kill -9 included) and the pid in its name is gone (or, if that
  pid was reused, the directory is older than ``stale_after``);
- a worker: the parent recorded in its environment (``PATINA_PARENT_PID``) is gone or is no longer its parent.

Every sweep returns a :class:`LeftoverReport` of what it found and what it removed. It runs at the start of
each backup (``backup.back_up``) and in the bucket reconciliation, and never fails either: a leftover it
cannot remove is reported, not raised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .engine.lifeline import PARENT_PID_ENV
from .storage import Bucket, IncompleteWrite, StorageError, parse_daily_key, parse_weekly_key

try:
    import fcntl
except ImportError:  # not Unix: scratch ownership falls back to the pid in the name
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

SCRATCH_PREFIX = "patina-scratch-"
OWNER_FILE = ".owner"
#: Command-line marks of Patina's worker processes (`engine/dump_worker.py`, `engine/real_check_worker.py`).
WORKER_MARKS = (b"patina_assets.engine.dump_worker", b"real_check_worker.py")
STALE_AFTER = timedelta(hours=1)

TEMPORARY = "temporary file"
UPLOAD = "incomplete multipart upload"
SCRATCH = "scratch directory"
WORKER = "worker process"


@dataclass(frozen=True)
class Leftover:
    kind: str
    where: str
    detail: str
    removed: bool
    error: str | None = None

    def describe(self) -> str:
        outcome = "removed" if self.removed else (f"could not remove: {self.error}" if self.error else "kept")
        return f"{self.kind} {self.where} ({self.detail}): {outcome}"


@dataclass
class LeftoverReport:
    """What one sweep found; ``removed`` says which of them it removed."""

    found: list[Leftover] = field(default_factory=list)

    @property
    def removed(self) -> list[Leftover]:
        return [f for f in self.found if f.removed]

    @property
    def failed(self) -> list[Leftover]:
        return [f for f in self.found if f.error]

    def summary(self) -> str:
        if not self.found:
            return "no leftovers"
        return f"{len(self.found)} leftover(s) found, {len(self.removed)} removed"


# --------------------------------------------------------------------------------------------------
# Scratch directories
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_directory(purpose: str, parent: Path | str | None = None) -> Iterator[Path]:
    """A private scratch directory ``patina-scratch-<pid>-<purpose>-<random>`` (in ``parent``, default the
    system temporary directory), removed on exit; while it exists this process holds an flock on its
    ``.owner`` file, which is how :func:`sweep` tells a live one from a killed run's."""
    path = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-{purpose}-", dir=parent))
    owner = open(path / OWNER_FILE, "w")
    try:
        if fcntl is not None:
            fcntl.flock(owner.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        owner.write(f"{os.getpid()}\n")
        owner.flush()
        yield path
    finally:
        owner.close()
        shutil.rmtree(path, ignore_errors=True)


def _scratch_owner_gone(path: Path, now: datetime, stale_after: timedelta) -> bool:
    """Nobody holds the ``.owner`` lock, and the pid in the name is not running (a directory being created
    has no lock for an instant; its owner's pid is alive), or it is but the directory is older than
    ``stale_after`` (the pid was reused)."""
    lock = path / OWNER_FILE
    if fcntl is not None and lock.exists():
        try:
            with open(lock, "a") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: its owner holds it
            return False
    pid = path.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
    if pid.isdigit() and not process_alive(int(pid)):
        return True
    try:
        changed = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return False
    return fcntl is not None and lock.exists() and now - changed > stale_after


def _size_of(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(dirpath) / name).stat().st_size
            except OSError:
                pass
    return total


def _sweep_scratch(directory: Path, now: datetime, stale_after: timedelta, report: LeftoverReport) -> None:
    try:
        candidates = sorted(p for p in directory.iterdir() if p.name.startswith(SCRATCH_PREFIX) and p.is_dir())
    except OSError:
        return
    for path in candidates:
        if not _scratch_owner_gone(path, now, stale_after):
            continue
        detail = f"{_size_of(path):,} bytes, its run is gone"
        try:
            shutil.rmtree(path)
            report.found.append(Leftover(SCRATCH, str(path), detail, True))
        except OSError as exc:
            report.found.append(Leftover(SCRATCH, str(path), detail, False, exc.strerror or str(exc)))


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs here (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _sweep_workers(report: LeftoverReport) -> None:
    proc = Path("/proc")
    if not proc.is_dir():
        return
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if not any(mark in cmdline for mark in WORKER_MARKS):
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        recorded = next((v.split(b"=", 1)[1] for v in environ if v.startswith(PARENT_PID_ENV.encode() + b"=")), b"")
        if not recorded.isdigit():
            continue  # not started by a Patina that records its parent: not ours to judge
        pid, parent = int(entry.name), int(recorded)
        if not process_alive(pid) or (process_alive(parent) and _parent_of(pid) == parent):
            continue
        detail = f"pid {pid}, its parent {parent} is gone"
        try:
            os.kill(pid, signal.SIGKILL)
            report.found.append(Leftover(WORKER, f"pid {pid}", detail, True))
        except ProcessLookupError:
            pass
        except OSError as exc:
            report.found.append(Leftover(WORKER, f"pid {pid}", detail, False, exc.strerror or str(exc)))


# --------------------------------------------------------------------------------------------------
# Buckets
# --------------------------------------------------------------------------------------------------


def upload_started(write: IncompleteWrite) -> datetime:
    """When an upload began: the time in its key's generation (``...20260106T030012123456Z-3f9a1c.sql.zst``,
    this side's clock; some S3 servers report a fixed ``Initiated``), else what the server says."""
    parsed = parse_daily_key(write.where) or parse_weekly_key(write.where)
    generation = getattr(parsed, "generation", None)
    if generation:
        try:
            return datetime.strptime(generation.split("-", 1)[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        except ValueError:
            pass
    return write.started_at


def _sweep_bucket(bucket: Bucket, now: datetime, stale_after: timedelta, report: LeftoverReport) -> None:
    finder = getattr(bucket, "incomplete_writes", None)
    if finder is None:
        return
    for write in finder():
        age = now - write.started_at
        if write.upload_id is not None:
            started = upload_started(write)
            kind, gone = UPLOAD, now - started > stale_after
            detail = f"started {started.isoformat(timespec='seconds')}"
        else:
            kind = TEMPORARY
            writer_gone = write.writer_pid is not None and not process_alive(write.writer_pid)
            gone = writer_gone or age > stale_after
            detail = f"{write.size:,} bytes, " + (
                "its writer is gone"
                if writer_gone
                else f"unchanged since {write.started_at.isoformat(timespec='seconds')}"
            )
        if not gone:
            continue  # a write in progress
        try:
            bucket.discard_incomplete_write(write)
            report.found.append(Leftover(kind, write.where, detail, True))
        except StorageError as exc:
            report.found.append(Leftover(kind, write.where, detail, False, str(exc).splitlines()[0]))


def sweep(
    bucket: Bucket | None = None,
    *,
    now: datetime | None = None,
    temp_dir: Path | str | None = None,
    stale_after: timedelta = STALE_AFTER,
) -> LeftoverReport:
    """Find and remove what interrupted runs left: in ``bucket`` (if given), in ``temp_dir`` (default the
    system temporary directory) and among processes. Never raises; logs what it removed."""
    report = LeftoverReport()
    now = now or datetime.now(UTC)
    steps = [
        lambda: _sweep_workers(report),
        lambda: _sweep_scratch(Path(temp_dir or tempfile.gettempdir()), now, stale_after, report),
    ]
    if bucket is not None:
        steps.append(lambda: _sweep_bucket(bucket, now, stale_after, report))
    for step in steps:
        try:
            step()
        except Exception as exc:  # a sweep must never fail the backup or the reconciliation around it
            log.warning("leftover sweep step failed: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    for leftover in report.found:
        (log.info if leftover.removed else log.warning)("leftover %s", leftover.describe())
    return report
