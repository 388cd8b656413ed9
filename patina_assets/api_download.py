"""A download of `patina serve`: the checked SQL, streamed; cut when its client stops reading.

The SQL is checked against its manifest as it streams and the last chunk is held back until the check passes,
so a damaged backup ends in a broken transfer (the client sees fewer bytes than announced), never in a
complete-looking file.

A client that stops reading would hold its download slot for ever: a watchdog measures what the client has
acknowledged (bytes handed to the connection, minus what still waits in uvicorn's buffer and in the socket's
send queue, read with ``SIOCOUTQ``) and cuts the connection when that has not grown for
``Limits.stall_seconds`` or averages under ``Limits.min_bytes_per_second`` over ``rate_window_seconds``. The
audit line records bytes sent and bytes acknowledged, and the outcome: ``complete`` (every byte
acknowledged), ``stalled``, ``too_slow``, ``client_disconnected``, ``integrity_failure``, ``storage_error``.
"""

from __future__ import annotations

import fcntl
import logging
import struct
import sys
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
from starlette.responses import Response

from .api_access import Client
from .catalog import Backup, BackupMismatch
from .storage import StorageError

if TYPE_CHECKING:
    from .api import ApiState

logger = logging.getLogger(__name__)

CHUNK = 256 * 1024
SIOCOUTQ = 0x5411  # linux/sockios.h: bytes in a TCP socket's send queue not yet acknowledged (= TIOCOUTQ)


class Acknowledged:
    """What the client has acknowledged of the body, as far as the server can tell.

    ``measure(sent)`` is bytes handed over minus uvicorn's buffer minus the socket's unacknowledged queue
    (the response's headers cancel out: they were handed over before the body and are counted in neither).
    Where the queue cannot be read (not Linux, no socket) ``known`` is False and the measure is what left
    uvicorn's buffer.
    """

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        self.fd = sock.fileno() if sock is not None else -1
        self.known = sys.platform == "linux" and self.fd >= 0 and self._unsent() is not None
        self.last = 0

    def _unsent(self) -> int | None:
        try:
            return struct.unpack("i", fcntl.ioctl(self.fd, SIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:
            return None

    def measure(self, sent: int) -> int:
        transport = self.transport
        if transport is None or transport.is_closing():
            return self.last  # the socket is gone: the last reading stands
        unsent = self._unsent() if self.known else 0
        if unsent is None:
            return self.last
        self.last = max(self.last, min(sent, sent - transport.get_write_buffer_size() - unsent))
        return self.last

    def waiting(self, sent: int) -> bool:
        """Whether the client may still acknowledge more of ``sent`` (the queue is readable and not empty)."""
        return self.known and not self.transport.is_closing() and self.measure(sent) < sent


class DownloadResponse(Response):
    """Streams a checked backup; holds the last chunk back until the whole SQL matched its manifest.

    The download slot is given back however the stream ends (done, client gone, cut, damaged backup); the
    outcome and byte counts go into the request's audit record, which the gate writes when it ends.
    """

    def __init__(
        self,
        state: ApiState,
        client: Client,
        backup: Backup,
        reader: Any,
        headers: dict[str, str],
        record: dict,
        media_type: str = "application/sql",
    ) -> None:
        super().__init__(status_code=200, headers=headers, media_type=media_type)
        self.state, self.client, self.backup, self.reader, self.record = state, client, backup, reader, record

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        limits, clock = self.state.limits, self.state.clock
        transport = scope.get("extensions", {}).get("patina.transport")
        acknowledged = Acknowledged(transport)
        outcome, sent, finished = "client_disconnected", 0, False
        holding = True

        def give_back() -> None:  # once the backup is read: a client that has every byte finds the slot free
            nonlocal holding
            if holding:
                holding = False
                self.state.slots.give()

        try:
            async with anyio.create_task_group() as group:

                def cut(why: str) -> None:
                    nonlocal outcome
                    outcome = why
                    logger.warning(
                        "download of %s on %s by %s cut: %s after %d bytes acknowledged",
                        self.backup.database,
                        self.backup.day,
                        self.client.name,
                        why,
                        acknowledged.measure(sent),
                    )
                    if transport is not None:
                        transport.abort()  # frees the socket now; close() would wait for the reader
                    group.cancel_scope.cancel()

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                async def watch_progress() -> None:
                    last, last_progress = 0, clock()
                    samples = deque([(last_progress, 0)])
                    while True:
                        await anyio.sleep(limits.watch_interval)
                        now, acked = clock(), acknowledged.measure(sent)
                        if acked > last:
                            last, last_progress = acked, now
                        if now - last_progress >= limits.stall_seconds:
                            return cut("stalled")
                        samples.append((now, acked))
                        while len(samples) > 1 and samples[1][0] <= now - limits.rate_window_seconds:
                            samples.popleft()
                        since, then = samples[0]
                        if (
                            now - since >= limits.rate_window_seconds
                            and (acked - then) / (now - since) < limits.min_bytes_per_second
                        ):
                            return cut("too_slow")

                group.start_soon(watch_disconnect)
                group.start_soon(watch_progress)
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                try:
                    pending = await anyio.to_thread.run_sync(self.reader.read, CHUNK)
                    while True:
                        following = await anyio.to_thread.run_sync(self.reader.read, CHUNK)
                        if not following:
                            break
                        # uvicorn waits for its buffer to drain before it writes: count the bytes once written.
                        await send({"type": "http.response.body", "body": pending, "more_body": True})
                        sent += len(pending)
                        pending = following
                except (BackupMismatch, StorageError) as exc:
                    outcome = "integrity_failure" if isinstance(exc, BackupMismatch) else "storage_error"
                    logger.error("download of %s on %s aborted: %s", self.backup.database, self.backup.day, exc)
                    group.cancel_scope.cancel()  # returning without the last chunk breaks the transfer
                    return
                give_back()
                await send({"type": "http.response.body", "body": pending, "more_body": False})
                sent += len(pending)
                finished = True
                delay = 0.002
                while acknowledged.waiting(sent):  # until the client has it all
                    await anyio.sleep(delay)
                    delay = min(delay * 2, limits.watch_interval)
                outcome = "complete"
                group.cancel_scope.cancel()
        finally:
            give_back()
            await anyio.to_thread.run_sync(self.reader.close)
            acked = acknowledged.measure(sent)
            if finished and acked >= sent and outcome == "client_disconnected":
                outcome = "complete"  # it hung up after taking every byte
            self.record.update(
                outcome=outcome, bytes_sent=sent, bytes_acknowledged=acked if acknowledged.known else None
            )
