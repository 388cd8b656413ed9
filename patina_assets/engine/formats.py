"""Dump files on disk: plain `.sql`, `.sql.gz` or `.sql.zst`, written atomically and hashed as they stream.

A dump is written to a hidden temporary file beside its destination and renamed into place only when
complete, so a reader never finds a half-written dump under the real name.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import queue
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import zstandard

from .errors import CorruptDump

FORMATS = ("sql", "sql.gz", "sql.zst")
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_LEVEL = 3


def format_of(path: Path | str) -> str:
    """The dump format named by a file's suffix."""
    name = str(path).lower()
    for fmt in ("sql.gz", "sql.zst", "sql"):
        if name.endswith("." + fmt):
            return fmt
    raise ValueError(f"cannot tell the dump format of {path}: name it *.sql, *.sql.gz or *.sql.zst")


WRITEBACK_BYTES = 32 << 20  # a dump's file is handed to the disk in steps of this much as it is written
_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range():
    """Linux's sync_file_range(2), which Python's os module lacks; None elsewhere. Looked up at the first
    write-back, not at import: every command imports this module, and only dumps write back."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


class _NoHash:
    """Stands in for a sha256 nobody will read (a scratch file's)."""

    def update(self, data) -> None:
        pass

    def hexdigest(self) -> str:
        return ""


class HashingWriter(io.RawIOBase):
    """Counts and hashes the bytes that pass into `raw` (a stored object's size and sha256)."""

    def __init__(self, raw: BinaryIO, hashed: bool = True) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256() if hashed else _NoHash()
        self.bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self.raw.write(data)


class HashingReader(io.RawIOBase):
    """Counts and hashes the bytes read out of `raw`, e.g. the stored bytes a decompressor pulls."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.bytes += n
        return n

    def drain(self) -> None:
        """Read to the end, so the hash covers every byte."""
        while self.read(1 << 20):
            pass

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
        super().close()


class DumpOutput:
    """A dump being written: text in, compressed bytes out, both counted and hashed (unless not `hashed`)."""

    def __init__(self, path: Path, hashed: bool = True) -> None:
        self.path = Path(path)
        self.format = format_of(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".partial")
        self._tmp = Path(tmp)
        # A small buffer: the header's many short writes are gathered, while a statement (up to 90 KB)
        # goes to the kernel as it is instead of being copied into the buffer first.
        self._raw = os.fdopen(fd, "wb", buffering=1 << 15)
        self._file = HashingWriter(self._raw, hashed)
        if self.format == "sql.gz":
            self._sink = gzip.GzipFile(fileobj=self._file, mode="wb", compresslevel=6, mtime=0)
        elif self.format == "sql.zst":
            self._sink = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).stream_writer(
                self._file, closefd=False
            )
        else:
            self._sink = self._file
        self.sql_sha256 = self._file.sha256 if self._sink is self._file or not hashed else hashlib.sha256()
        self.sql_bytes = 0
        self._done = False
        self._durable = hashed  # a file nobody hashes is a scratch file, never made durable
        self._written_back = 0

    def write(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def write_bytes(self, data: bytes) -> None:
        if self._sink is not self._file:  # plain .sql: the file's own hash is the SQL's
            self.sql_sha256.update(data)
        self.sql_bytes += len(data)
        self._sink.write(data)

    def consumers(self) -> list[Callable[[bytes], None]]:
        """What `write_bytes` does, in parts that may each run on a thread of their own (see `WriteBehind`),
        each given every chunk, in order: the SQL's sha256 beside the (compressed) write."""
        write = self._write_plain if self._sink is self._file else self._write_compressed
        # (plain .sql: the SQL's sha256 is the file's own)
        return [write] if isinstance(self.sql_sha256, _NoHash) else [self.sql_sha256.update, write]

    def _write_plain(self, data: bytes) -> None:
        self.sql_bytes += len(data)
        self._file.bytes += len(data)
        self._raw.write(data)
        if self._file.bytes - self._written_back >= WRITEBACK_BYTES:
            self._start_writeback()

    def _write_compressed(self, data: bytes) -> None:
        self.sql_bytes += len(data)
        self._sink.write(data)
        if self._file.bytes - self._written_back >= WRITEBACK_BYTES:
            self._start_writeback()

    def _start_writeback(self) -> None:
        """Ask the kernel to start writing what this file has so far to disk, without waiting for it: the
        fsync at the end then waits for the last few MB, not for the whole dump (2 GB took a second)."""
        end = self._file.bytes
        sync_file_range = _sync_file_range() if self._durable else None
        if sync_file_range is not None:  # advice: a failure (-1) changes nothing
            sync_file_range(self._raw.fileno(), self._written_back, end - self._written_back, _SYNC_FILE_RANGE_WRITE)
        self._written_back = end

    @property
    def file_sha256(self) -> str:
        return self._file.sha256.hexdigest()

    @property
    def file_bytes(self) -> int:
        return self._file.bytes

    def commit(self, durable: bool = True) -> None:
        """Finish the stream, flush it to disk (unless not `durable`: a scratch file) and move it into place."""
        if self._sink is not self._file:
            self._sink.close()
        self._raw.flush()
        if durable:
            os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self._tmp, self.path)
        self._done = True

    def abort(self) -> None:
        """Drop the partial file: nothing is left under any name."""
        if self._done:
            return
        self._done = True
        try:
            self._raw.close()
        finally:
            self._tmp.unlink(missing_ok=True)


class WriteBehind:
    """Passes chunks of bytes to each of `consumers` on a thread of its own, in order.

    What a dump does with its bytes (two sha256s, zlib and zstd compression, the file write) runs in C with
    the GIL released, so on other cores it overlaps the formatting of the next rows, and each consumer
    overlaps the others: the table digest, the file's sha256 and the write each take a thread (measured
    on 2 GB of SQL: the two sha256 passes alone cost about 3 s, one after the other on one thread). Every
    consumer sees the same chunks in the same order, so each computes exactly what it would alone. At
    most `depth` chunks wait for each. An error of a consumer stops it and comes back from the next
    `put` or from `close`.
    """

    def __init__(self, consumers: Callable[[bytes], None] | list[Callable[[bytes], None]], depth: int = 16) -> None:
        self._consumers = [consumers] if callable(consumers) else list(consumers)
        self._queues: list[queue.Queue] = [queue.Queue(depth) for _ in self._consumers]
        self._error: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._run, args=(consume, line), name="patina-write-behind", daemon=True)
            for consume, line in zip(self._consumers, self._queues)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, consume: Callable[[bytes], None], line: queue.Queue) -> None:
        failed = False
        while (data := line.get()) is not None:
            if not failed:
                try:
                    consume(data)
                except BaseException as e:  # handed to the writer's thread, which raises it
                    failed = True
                    if self._error is None:
                        self._error = e

    def put(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        for line in self._queues:
            line.put(data)

    def close(self) -> None:
        """Wait until every chunk is consumed by every consumer; raise what one raised."""
        for thread, line in zip(self._threads, self._queues):
            if thread.is_alive():
                line.put(None)
        for thread in self._threads:
            thread.join()
        if self._error is not None:
            raise self._error


def open_dump_bytes(path: Path) -> BinaryIO:
    """The uncompressed bytes of a dump in any of the three formats (told by content, not by name)."""
    raw = open(path, "rb")
    return decompressing_reader(raw, str(path))


def decompressing_reader(raw: BinaryIO, label: str) -> BinaryIO:
    """Wrap a binary stream so it yields the SQL, whether it is plain, gzip or zstd."""
    buffered = io.BufferedReader(raw) if not hasattr(raw, "peek") else raw
    head = buffered.peek(4)[:4]
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if head == ZSTD_MAGIC:
        return zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True, closefd=True)
    if head and not head.lstrip().startswith(b"--") and not head[:1].isalpha() and not head[:1].isspace():
        raise CorruptDump(f"{label} is not a SQL dump (it is neither text, gzip nor zstd)")
    return buffered


def open_dump_text(path: Path) -> io.TextIOWrapper:
    """The dump's SQL as text lines (line endings kept as written)."""
    return io.TextIOWrapper(open_dump_bytes(path), encoding="utf-8", newline="")
