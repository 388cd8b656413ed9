"""Where the nightly's steps run: in processes on the machine that runs the run (the default), or as tasks on
the workers of a Celery cluster (dagster-celery), so that one night spreads over several machines.

`PATINA_EXECUTOR` chooses, read where the code location loads (the webserver, the daemon, each run and each
Celery worker: give them all the same environment):

- `multiprocess` (or unset): one process per step, on the run's machine, at most dump.concurrency at once.
- `celery`: each step is a task on the broker `CELERY_BROKER_URL` (e.g. `redis://host:6379/0`), in the queue
  `PATINA_CELERY_QUEUE` (default `dagster`), run by whichever `celery -A patina_assets.celery_app worker` takes it;
  its events come back through `CELERY_RESULT_BACKEND`. The cap is then the workers' slots (`-c`), and the
  `d1_export` pool across everything (dagster.yaml), which the Celery executor also claims slots from. The
  instance must be one every worker reaches (PostgreSQL: deploy/celery/dagster.yaml), and so must the bucket.

The two Celery variables are Celery's own names: the workers read them the same way. They are passed as
environment references, so a broker password never appears in the run's config or the UI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

EXECUTOR_ENV_VAR = "PATINA_EXECUTOR"
QUEUE_ENV_VAR = "PATINA_CELERY_QUEUE"
BROKER_ENV_VAR = "CELERY_BROKER_URL"
RESULT_BACKEND_ENV_VAR = "CELERY_RESULT_BACKEND"
MULTIPROCESS = "multiprocess"
CELERY = "celery"
EXECUTORS = (MULTIPROCESS, CELERY)
# dagster-celery's own default queue: what its app's workers consume without -Q.
DEFAULT_QUEUE = "dagster"


class ExecutorChoiceError(ValueError):
    """PATINA_EXECUTOR names no executor, or names one whose requirements are missing."""


def executor_choice(env: Mapping[str, str] = os.environ) -> str:
    choice = env.get(EXECUTOR_ENV_VAR, "").strip() or MULTIPROCESS
    if choice not in EXECUTORS:
        raise ExecutorChoiceError(
            f"{EXECUTOR_ENV_VAR}={choice!r} names no executor -- set it to one of {', '.join(EXECUTORS)}, "
            "or unset it for multiprocess"
        )
    return choice


def nightly_executor(multiprocess: dg.ExecutorDefinition, env: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    """The nightly job's executor: ``multiprocess`` (the job's own, configured as it wants) unless
    PATINA_EXECUTOR says celery."""
    if executor_choice(env) == MULTIPROCESS:
        return multiprocess
    return celery_executor(env)


def celery_executor(env: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    """dagster-celery's executor on the broker and result backend of the environment, into the queue
    PATINA_CELERY_QUEUE."""
    try:
        from dagster_celery import celery_executor as dagster_celery_executor
    except ImportError as e:
        raise ExecutorChoiceError(
            f"{EXECUTOR_ENV_VAR}=celery needs dagster-celery, which is not installed -- "
            "pip install 'patina[celery]' (in the environment of the code location and of every worker)"
        ) from e
    missing = [name for name in (BROKER_ENV_VAR, RESULT_BACKEND_ENV_VAR) if not env.get(name)]
    if missing:
        raise ExecutorChoiceError(
            f"{EXECUTOR_ENV_VAR}=celery needs {' and '.join(missing)} -- set them to the broker and result backend "
            "the workers use, e.g. redis://127.0.0.1:6379/0 for both"
        )
    return dagster_celery_executor.configured(
        {
            "broker": {"env": BROKER_ENV_VAR},
            "backend": {"env": RESULT_BACKEND_ENV_VAR},
            # How workers take and keep steps is the workers' own app's: patina_assets/celery_app.py.
            "config_source": {"task_default_queue": env.get(QUEUE_ENV_VAR, "").strip() or DEFAULT_QUEUE},
        },
        name="patina_celery",
    )
