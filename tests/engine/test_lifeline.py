"""lifeline.die_with_parent: the kernel is asked to kill the worker when its parent dies (Linux)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from patina_assets.engine import lifeline

CHILD = """
import ctypes, sys
from patina_assets.engine import lifeline
lifeline.die_with_parent()
sig = ctypes.c_int(0)
ctypes.CDLL(None, use_errno=True).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
print(sig.value)
"""


def test_a_worker_asks_the_kernel_for_sigkill_when_its_parent_dies():
    """die_with_parent swallows a C library it cannot reach (the pipe watch still holds), so this asks the
    kernel what it was told: a lookup of prctl that broke would leave 0 here."""
    env = {**os.environ, lifeline.PARENT_PID_ENV: str(os.getpid())}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    assert int(done.stdout) == signal.SIGKILL
