"""What every step process of a Patina run starts from: imported once per run by the multiprocess executor's
forkserver (``STEP_EXECUTOR``), so each step is a fork of a process that has already imported Dagster, the
engine and the code location, instead of a fresh interpreter that spends seconds importing them (issue 17).

A code location that cannot load (a malformed patina.yaml) must not take the forkserver down with an error
nobody sees: the step process loads it again and fails there, with the error in the run's log.
"""

import logging

try:
    import patina_assets.definitions  # noqa: F401  (loaded for its side effect: the code location, built)
except Exception as exc:  # noqa: BLE001
    logging.getLogger(__name__).debug("the code location did not preload (its steps report why): %s", exc)
