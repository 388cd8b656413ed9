"""What every step process of a Patina run starts from: imported once per run by the multiprocess executor's
forkserver (``STEP_EXECUTOR``), so each step is a fork of a process that has already imported Dagster, the
engine and the code location, instead of a fresh interpreter that spends seconds importing them (issue 17).

The code location's repository (its jobs and asset graph) is resolved here too: a step's process looks its job
up in it first, and a fork that had to resolve it again would pay for it in every step (~0.2 s a step with 200
databases).

A code location that cannot load (a malformed patina.yaml) must not take the forkserver down with an error
nobody sees: the step process loads it again and fails there, with the error in the run's log.
"""

import logging

try:
    from patina_assets.definitions import defs

    defs.get_repository_def()  # cached on `defs`, which every forked step inherits
except Exception as exc:  # noqa: BLE001
    logging.getLogger(__name__).debug("the code location did not preload (its steps report why): %s", exc)
