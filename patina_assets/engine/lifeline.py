"""Worker processes die with the process that started them.

A dump's helpers (`dump_worker.py`, `real_check_worker.py`) are separate processes. If their parent is
killed (kill -9, the OOM killer, a run worker Dagster gave up on) they must not go on reading the database
and filling the disk. Two mechanisms, both set up first thing in the worker:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker when its parent dies, even
  if it is stopped or blocked. Set after the worker started, so it then checks that its parent is still the
  one that started it (``PATINA_PARENT_PID``): if the parent died in between, it exits at once;
- everywhere, a pipe: the worker watches a stream whose other end only its parent holds (its stdin); when
  that reaches end of file, the parent is gone and the worker exits (:func:`exit_when_closed`).

It imports nothing of Patina but `allocator.py` beside it, so `real_check_worker.py` can use it when run as a
script.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import BinaryIO

try:
    from . import allocator
except ImportError:  # run as a script's neighbour (real_check_worker.py)
    import allocator  # type: ignore[no-redef]

PARENT_PID_ENV = "PATINA_PARENT_PID"
_PR_SET_PDEATHSIG = 1
#: The exit status of a worker whose parent is gone (EX_SOFTWARE would blame the worker).
ORPHANED = 75


def child_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a worker: ``env`` (default: this process's) plus this process's pid, and the
    allocator setting a dump's processes run with (see `allocator`)."""
    return {**(os.environ if env is None else env), **allocator.ENVIRONMENT, PARENT_PID_ENV: str(os.getpid())}


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (Linux), then exit now if it already did."""
    if sys.platform.startswith("linux"):
        import ctypes  # (here, not at import: every command imports this module for PARENT_PID_ENV)

        try:
            # The C library the interpreter runs on, as allocator.py and formats.py reach it (find_library
            # would run `ldconfig` in every worker as it starts).
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl here: the pipe watch still holds
    expected = os.environ.get(PARENT_PID_ENV)
    if expected and expected.isdigit() and os.getppid() != int(expected):
        os._exit(ORPHANED)


def exit_when_closed(stream: BinaryIO) -> threading.Thread:
    """Exit this process when ``stream`` (a pipe only the parent writes to) reaches end of file.

    The watch reads the file descriptor itself, not the buffered stream: a daemon thread blocked inside
    ``BufferedReader.read`` holds its lock, and the interpreter's shutdown, which closes ``sys.stdin``,
    then aborts the worker (``Fatal Python error: _enter_buffered_busy``) after its work is done."""
    fd = stream.fileno()

    def watch() -> None:
        try:
            while os.read(fd, 65536):
                pass
        except (OSError, ValueError):
            pass
        os._exit(ORPHANED)

    thread = threading.Thread(target=watch, name="patina-parent-watch", daemon=True)
    thread.start()
    return thread
