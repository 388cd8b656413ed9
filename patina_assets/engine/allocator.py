"""glibc's allocator, set for a dump: batches of buffers of a few MB, made and freed again and again.

By default glibc gives each allocation over 128 KB its own fresh mapping and unmaps it at free, and trims
the heap's top whenever more than 128 KB of it is free. A dump makes several copies of every batch of
rows (~2 MB each: joined, encoded, quoted, split, packed into statements) and frees them a moment later,
so each copy is new pages the kernel must fault in and zero: 380,000 page faults and about 1 s of system
time in a dump of 533 MB of text, a quarter of its wall time. Fixed thresholds (which also stop glibc's
own adjusting of them) keep those buffers in the heap for the next batch. Peak RSS stays the same (the
same buffers live at once); a process merely keeps up to `TRIM_THRESHOLD` of freed heap for reuse.
"""

from __future__ import annotations

import sys

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 16 << 20  # a batch's buffers stay below it: they come from the heap, not a mapping each
TRIM_THRESHOLD = 32 << 20  # freed heap kept for the next batch before any is given back
#: The same for a worker process, read by glibc when it starts (see `lifeline.child_environment`).
ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}

_tuned: bool | None = None


def tune() -> bool:
    """Set this process's thresholds (once); False where the C library has no glibc `mallopt`."""
    global _tuned
    if _tuned is None:
        _tuned = False
        if sys.platform.startswith("linux"):
            import ctypes  # (here, not at import: only a dump's processes tune)

            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):  # not glibc: its allocator has other habits
                return False
            mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
            _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
    return _tuned
