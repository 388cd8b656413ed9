"""The audit log of `patina serve`: one JSON line per protected request, kept where the operator says.

Lines always go to the ``patina.audit`` logger (stderr under `patina serve`); ``PATINA_AUDIT_LOG=FILE`` also
writes them to FILE, rotated at ``PATINA_AUDIT_LOG_MAX_BYTES`` (10 MB) keeping ``PATINA_AUDIT_LOG_BACKUPS``
(10) old files; ``PATINA_AUDIT_BUCKET=1`` also stores them in the backup bucket under ``audit/DAY/``, one
object per batch (a minute, 500 lines, or shutdown), so the record outlives the server. A line never holds a
key: the request's path and query are the redacted ones, and the trigger's reason is logged only once valid.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from .storage import AUDIT_PREFIX, Bucket, StorageError

audit_logger = logging.getLogger("patina.audit")
logger = logging.getLogger(__name__)

AUDIT_LOG_ENV = "PATINA_AUDIT_LOG"
AUDIT_LOG_MAX_BYTES_ENV = "PATINA_AUDIT_LOG_MAX_BYTES"
AUDIT_LOG_BACKUPS_ENV = "PATINA_AUDIT_LOG_BACKUPS"
AUDIT_BUCKET_ENV = "PATINA_AUDIT_BUCKET"


class BucketAudit:
    """Batches of audit lines stored as objects ``audit/DAY/TIME-PID-N.jsonl``, flushed by a thread."""

    def __init__(self, bucket: Bucket, *, flush_seconds: float = 60.0, batch_lines: int = 500) -> None:
        self.bucket, self.flush_seconds, self.batch_lines = bucket, flush_seconds, batch_lines
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._count = 0
        self._thread = threading.Thread(target=self._run, name="patina-audit-bucket", daemon=True)
        self._thread.start()

    def add(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            if len(self._lines) >= self.batch_lines:
                self._wake.set()

    def flush(self) -> str | None:
        """Store what is pending as one object; its key, or None when there was nothing."""
        with self._lock:
            lines, self._lines = self._lines, []
            self._count += 1
            count = self._count
        if not lines:
            return None
        now = datetime.now(UTC)
        key = f"{AUDIT_PREFIX}{now:%Y-%m-%d}/{now:%H%M%S}-{os.getpid()}-{count}.jsonl"
        try:
            self.bucket.put_bytes(key, ("\n".join(lines) + "\n").encode(), content_type="application/x-ndjson")
        except StorageError as exc:
            logger.error("audit lines could not be stored in the bucket (kept for the next try): %s", exc)
            with self._lock:
                self._lines[:0] = lines
            return None
        return key

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()


class AuditLog:
    """The audit sink: ``audit(event)`` writes one line everywhere configured."""

    def __init__(
        self,
        file: Path | str | None = None,
        *,
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 10,
        bucket: BucketAudit | None = None,
    ) -> None:
        self.file_logger: logging.Logger | None = None
        self.bucket = bucket
        if file is not None:
            Path(file).parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.file_logger = logging.getLogger(f"patina.audit.file.{id(self)}")
            self.file_logger.propagate = False
            self.file_logger.setLevel(logging.INFO)
            self.file_logger.addHandler(handler)

    @classmethod
    def from_env(cls, env: Mapping[str, str], bucket: Callable[[], Bucket]) -> AuditLog:
        file = (env.get(AUDIT_LOG_ENV) or "").strip() or None
        try:
            max_bytes = int(env.get(AUDIT_LOG_MAX_BYTES_ENV) or 10 * 1024 * 1024)
            backups = int(env.get(AUDIT_LOG_BACKUPS_ENV) or 10)
        except ValueError:
            raise ValueError(f"{AUDIT_LOG_MAX_BYTES_ENV} and {AUDIT_LOG_BACKUPS_ENV} must be whole numbers") from None
        in_bucket = (env.get(AUDIT_BUCKET_ENV) or "").strip().lower() in ("1", "true", "yes")
        return cls(file, max_bytes=max_bytes, backups=backups, bucket=BucketAudit(bucket()) if in_bucket else None)

    def describe(self) -> str:
        where = ["the patina.audit logger"]
        if self.file_logger is not None:
            where.append(self.file_logger.handlers[0].baseFilename)  # type: ignore[attr-defined]
        if self.bucket is not None:
            where.append(f"the bucket under {AUDIT_PREFIX}")
        return "audit log to " + ", ".join(where)

    def __call__(self, event: Mapping) -> None:
        line = json.dumps(event, sort_keys=True, default=str)
        audit_logger.info(line)
        if self.file_logger is not None:
            self.file_logger.info(line)
        if self.bucket is not None:
            self.bucket.add(line)

    def close(self) -> None:
        if self.file_logger is not None:
            for handler in self.file_logger.handlers:
                handler.close()
        if self.bucket is not None:
            self.bucket.close()
