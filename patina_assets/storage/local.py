"""``LocalBucket``: objects as files under a directory, all-or-nothing.

Each write goes to a temporary file in the target directory, is fsynced, then renamed over the target, so an
object only ever appears whole.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import operator
import os
import shutil
import stat as stat_module
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, BinaryIO

from .buckets import (
    _BAD_KEY_CHARS,
    _COPY_BUFFER,
    _MAX_KEY_BYTES,
    _TMP_MARKER,
    IncompleteWrite,
    InvalidKey,
    ObjectChanged,
    ObjectInfo,
    StorageAccessDenied,
    StorageBucketNotFound,
    StorageError,
    StorageObjectNotFound,
    _open_source,
    validate_key,
    validate_prefix,
)

logger = logging.getLogger(__name__)


class LocalBucket:
    """Objects as files under ``root`` (a local or mounted backup directory).

    Writes are atomic: data goes to ``<dir>/.patina-tmp.<random>`` in the target's own directory (so the
    rename cannot cross file systems), is fsynced, then ``os.replace``d over the target, and the directory
    is fsynced so the rename survives a power cut.  A crash leaves either the old file or the new one,
    plus at worst a temporary that listings ignore.  Files are created mode 0600: backups hold user data.
    """

    def __init__(self, root: Path | str, *, create: bool = True) -> None:
        self.root = Path(root).expanduser().absolute()
        if create:
            with self._errors("create", None):
                self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise StorageBucketNotFound(
                f"backup directory {self.root} does not exist: create it or fix the configured path"
            )

    # -- writes --------------------------------------------------------------------------------

    def put_file(self, key: str, path: Path | str, content_type: str | None = None) -> ObjectInfo:
        """Copy the file at ``path`` to ``key`` atomically.  ``content_type`` has no meaning on disk."""
        with _open_source(path) as source:
            return self._write_atomically(key, lambda out: shutil.copyfileobj(source, out, _COPY_BUFFER))

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        """Write ``data`` to ``key`` atomically."""
        payload = bytes(data)
        return self._write_atomically(key, lambda out: out.write(payload))

    def put_bytes_if_unchanged(
        self, key: str, data: bytes, etag: str | None, content_type: str | None = None
    ) -> ObjectInfo:
        """Write ``data`` to ``key`` atomically, only if the file is still the one ``etag`` names (None: only
        if there is none), else ``ObjectChanged``. The comparison and the rename are made holding an flock
        on the target's directory, which every conditional writer of that directory takes: two of them that
        read the same file cannot both replace it."""
        payload = bytes(data)

        def replace_if_unchanged(tmp: Path, target: Path) -> None:
            with _directory_lock(target.parent):
                current = self.stat(key)
                if (current.etag if current else None) != etag:
                    raise ObjectChanged(
                        f"cannot write {target}: it changed since it was read (another writer "
                        f"{'replaced' if etag else 'created'} it); nothing was written"
                    )
                os.replace(tmp, target)

        return self._write_atomically(key, lambda out: out.write(payload), replace_if_unchanged)

    def _write_atomically(
        self,
        key: str,
        write: Callable[[IO[bytes]], object],
        commit: Callable[[Path, Path], None] | None = None,
    ) -> ObjectInfo:
        """Write through a temporary, then `commit` it (default: rename it over the target)."""
        target = self._path(key)
        with self._errors("write", key):
            tmp = self._create_temporary(target.parent)
            try:
                with open(tmp, "wb") as out:
                    write(out)
                    out.flush()
                    os.fsync(out.fileno())
                if commit is None:
                    os.replace(tmp, target)
                else:
                    commit(tmp, target)
            except BaseException:
                _remove_quietly(tmp)
                raise
            _fsync_directory(target.parent)
            return self._info(key, target.stat())

    def _create_temporary(self, directory: Path) -> Path:
        # A concurrent delete may prune the (empty) directory between mkdir and mkstemp: retry once.
        for attempt in (1, 2):
            directory.mkdir(parents=True, exist_ok=True)
            try:
                # The writer's pid in the name: cleanup knows a temporary whose writer is gone (leftovers.py).
                fd, name = tempfile.mkstemp(prefix=f"{_TMP_MARKER}{os.getpid()}.", dir=directory)
            except FileNotFoundError:
                if attempt == 2:
                    raise
                continue
            os.close(fd)
            return Path(name)
        raise AssertionError("unreachable")

    # -- reads ---------------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        """Open ``key`` for streaming reads."""
        path = self._path(key)
        with self._errors("read", key):
            return open(path, "rb")

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as reader:
            return reader.read()

    def stat(self, key: str) -> ObjectInfo | None:
        """The object's size, mtime and a change tag, or None if there is no such object."""
        path = self._path(key)
        with self._errors("stat", key):
            try:
                st = path.stat()
            except FileNotFoundError:
                return None
        return self._info(key, st) if stat_module.S_ISREG(st.st_mode) else None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix`` (a plain string prefix, as on S3), sorted by key."""
        validate_prefix(prefix)
        return self._iter_objects(prefix)

    def list_folders(self, prefix: str) -> Iterator[str]:
        """The folders one level under ``prefix`` (ending in ``/``), sorted: ``daily/2026-03-01/``, ... (what
        an S3 listing with the delimiter ``/`` calls common prefixes). One directory read, whatever they hold."""
        validate_prefix(prefix)
        if prefix and not prefix.endswith("/"):
            raise InvalidKey(f"invalid folder prefix {prefix!r}: it must end with '/'")
        start = self.root.joinpath(*prefix.rstrip("/").split("/")) if prefix else self.root
        with self._errors("list", None):
            try:
                names = sorted(entry.name for entry in os.scandir(start) if entry.is_dir(follow_symlinks=False))
            except FileNotFoundError:
                names = []
        return iter([f"{prefix}{name}/" for name in names if _is_valid_segment(name)])

    def _iter_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        directory = prefix.rpartition("/")[0]
        start = self.root.joinpath(*directory.split("/")) if directory else self.root
        if not start.is_dir():
            return
        # One stat per file, relative to its open folder (a status lists every object of the bucket: 18,000 at
        # 200 databases x 30 days, where the walk's own Python was most of the listing's cost).
        found: list[ObjectInfo] = []
        info = self._info
        with self._errors("list", None):
            for key, st in self._walk_files(str(start), f"{directory}/" if directory else ""):
                if key.startswith(prefix):
                    found.append(info(key, st))
        found.sort(key=_by_key)
        yield from found

    @staticmethod
    def _walk_files(start: str, relative: str) -> Iterator[tuple[str, os.stat_result]]:
        """(key, stat) of every regular file under ``start`` whose name can be a key (``relative``: the key
        prefix of ``start``, empty or ending in ``/``). A file is stat'ed through a symbolic link (reading it
        follows the link); folders are not entered through one, and one whose path cannot be a key holds
        none. What is deleted during the walk is not there."""
        pending = [(start, relative)]
        while pending:
            path, relative = pending.pop()
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                with os.scandir(fd) as listing:
                    entries = list(listing)
                # One search for control characters in the whole folder's names, not one per name (a day
                # folder holds three objects per database); only when one has any is each name looked at.
                suspect = _BAD_KEY_CHARS.search("".join(entry.name for entry in entries)) is not None
                for entry in entries:
                    name = entry.name
                    if not _is_valid_segment(name, searched=not suspect):
                        continue
                    key = relative + name
                    if entry.is_dir():
                        if not entry.is_symlink() and _is_valid_key(key):
                            pending.append((os.path.join(path, name), key + "/"))
                    elif len(key) <= _MAX_KEY_BYTES // 4 or len(key.encode("utf-8")) <= _MAX_KEY_BYTES:
                        # `validate_key(key)`: its folder was checked before it was entered
                        try:
                            st = entry.stat()  # relative to the open folder: no walk of the whole path
                        except FileNotFoundError:
                            continue
                        if stat_module.S_ISREG(st.st_mode):
                            yield key, st
            finally:
                os.close(fd)

    # -- leftovers of interrupted writes (see leftovers.py) -----------------------------------

    def incomplete_writes(self) -> list[IncompleteWrite]:
        """Temporaries (``.patina-tmp.*``) that writes left behind or are writing now, oldest first."""
        found = []
        with self._errors("list", None):
            for dirpath, _dirnames, filenames in os.walk(self.root):
                for name in filenames:
                    if name.startswith(_TMP_MARKER):
                        path = Path(dirpath) / name
                        try:
                            st = path.stat()
                        except FileNotFoundError:  # the write just finished
                            continue
                        pid = name[len(_TMP_MARKER) :].split(".", 1)[0]
                        found.append(
                            IncompleteWrite(
                                where=path.relative_to(self.root).as_posix(),
                                size=st.st_size,
                                started_at=datetime.fromtimestamp(st.st_mtime, UTC),
                                writer_pid=int(pid) if pid.isdigit() else None,
                            )
                        )
        return sorted(found, key=lambda w: w.started_at)

    def discard_incomplete_write(self, write: IncompleteWrite) -> None:
        """Remove one temporary found by :meth:`incomplete_writes`."""
        path = self.root.joinpath(*write.where.split("/"))
        if not path.name.startswith(_TMP_MARKER):
            raise InvalidKey(f"{write.where!r} is not a temporary of an interrupted write")
        with self._errors("delete", None):
            path.unlink(missing_ok=True)

    # -- deletes -------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing object is not an error (as on S3).  Empty directories are pruned."""
        path = self._path(key)
        with self._errors("delete", key):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        self._prune_empty_directories(path.parent)

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.delete(key)

    def _prune_empty_directories(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()  # fails (harmlessly) unless empty
            except OSError:
                return
            directory = directory.parent

    # -- naming --------------------------------------------------------------------------------

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def describe(self) -> str:
        return f"local directory {self.root}"

    def __repr__(self) -> str:
        return f"LocalBucket({str(self.root)!r})"

    # -- helpers -------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    @staticmethod
    def _info(key: str, st: os.stat_result) -> ObjectInfo:
        size = st.st_size
        etag = f"{st.st_ino:x}-{st.st_mtime_ns:x}-{size:x}"  # changes whenever the file is replaced
        return ObjectInfo(key, size, datetime.fromtimestamp(st.st_mtime, UTC), etag)

    @contextmanager
    def _errors(self, action: str, key: str | None) -> Iterator[None]:
        """Turn OSErrors into StorageErrors that say which file and what to do about it."""
        try:
            yield
        except StorageError:
            raise
        except OSError as exc:
            raise self._translate(action, key, exc) from exc

    def _translate(self, action: str, key: str | None, exc: OSError) -> StorageError:
        where = str(self.root / key) if key else str(self.root)
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileNotFoundError):
            return StorageObjectNotFound(f"cannot {action} {where}: no such object in {self.describe()}")
        if isinstance(exc, PermissionError):
            return StorageAccessDenied(
                f"cannot {action} {where}: {reason}. Check that the user running Patina "
                f"(uid {os.getuid()}) may read and write {self.root}"
            )
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageError(f"cannot {action} {where}: {reason}. Free disk space or move the backup directory")
        if exc.errno == errno.EROFS:
            return StorageAccessDenied(f"cannot {action} {where}: {reason}. The backup directory is read-only")
        return StorageError(f"cannot {action} {where}: {reason}")


_by_key = operator.attrgetter("key")


def _is_valid_segment(name: str, *, searched: bool = False) -> bool:
    """``searched``: the name is known to hold no control character or backslash."""
    return (
        name not in ("", ".", "..")
        and not name.startswith(_TMP_MARKER)
        and (searched or not _BAD_KEY_CHARS.search(name))
    )


def _is_valid_key(key: str) -> bool:
    """Stray files whose names could not be keys (say, with a backslash) are not objects."""
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return True


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """An exclusive flock on ``directory`` itself (no lock file to leave behind or sweep), released on exit.
    A file system without flock (some network mounts) gets the comparison without the lock: a narrow race
    instead of no conditional write at all."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
                raise
        yield
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Persist a rename: on POSIX the new directory entry is durable only once the directory is fsynced."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
