"""The Celery app of the nightly's workers: `celery -A patina_assets.celery_app worker -Q <queue>` (see
deploy/celery/patina-worker@.service and the README's "Past one machine").

It is dagster-celery's own app (its `execute_plan` task runs one Dagster step), with settings for steps that must
not be lost with the process that runs them:

- A step's message is acknowledged when the step ends, not when it starts, and a step whose process dies (the
  OOM killer, a segfault) is sent again, to this worker or another, up to the task's 3 retries; with
  dagster-celery's defaults it would be marked failed, and its run would stop submitting steps without ending.
- A message not acknowledged within the broker's visibility timeout (Redis) is handed to another worker: so a
  worker machine that goes down loses none of its steps. The timeout is well above a dump's deadline
  (dump.deadline_seconds, 1800 s by default), or a slow dump would be run twice at once.
- A worker takes one step per slot at a time (prefetch 1): a long dump keeps no other step waiting behind it.
- A step's result (its Dagster events, read by the run within a second or two) is kept in the result backend
  for an hour, not Celery's day.

The broker and the result backend are `CELERY_BROKER_URL` and `CELERY_RESULT_BACKEND`, which Celery reads itself.
"""

from __future__ import annotations

from dagster_celery.app import app, execute_job, execute_plan, resume_job
from dagster_celery.defaults import broker_transport_options

VISIBILITY_TIMEOUT_SECONDS = 2 * 3600
# Celery waits a task's default_retry_delay (3 minutes) before it sends a lost step again; the retries are few
# (3), so they come sooner.
LOST_STEP_RETRY_DELAY_SECONDS = 10

app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_retry_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    result_expires=3600,
    broker_transport_options={**broker_transport_options, "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
)
app.tasks[execute_plan.name].default_retry_delay = LOST_STEP_RETRY_DELAY_SECONDS

__all__ = ["app", "execute_job", "execute_plan", "resume_job"]
