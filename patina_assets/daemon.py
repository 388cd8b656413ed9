"""Patina's Dagster daemon: `dagster-daemon` itself, with the backfill loop looking every
`BACKFILL_INTERVAL_SECONDS` instead of every 30 s.

    patina-daemon run                   # production, instead of `dagster-daemon run` (same arguments)
    python -m patina_assets.daemon run  # the same; what `make ui` (patina_assets/dev.py) starts

Dagster's backfill thread (`execute_backfill_iteration_loop` in dagster/_daemon/backfill.py) sleeps
`DEFAULT_DAEMON_INTERVAL_SECONDS` (30, dagster/_daemon/controller.py) less its own duration between looks, and
no dagster.yaml setting reaches it (dagster-io/dagster issue #11649; the RFC PR #11860 was never merged). A
backfill waits one look to start, one more per dependency level of its assets (the dailies, then the weekly
archive) and one to be marked completed: 30 s each, most of a small backfill's time. Everything else is Dagster's
own `dagster-daemon` (`dagster._daemon.cli.main`): `dagster-daemon run` still works, with 30-s backfill looks.

The loop reads the constant as an attribute of the controller module, at call time (its `from
dagster._daemon.controller import DEFAULT_DAEMON_INTERVAL_SECONDS` is inside the function). The controller's own
`create_daemon_of_type` reads the same name as a module global, for the asset daemon's default pre-sensor
interval (when dagster.yaml sets no `auto_materialize: minimum_interval_seconds`), and that one must stay 30 s.
So the value is not assigned: a property on the module's class answers attribute reads (the loop's import) with
Patina's interval, while the module's globals, which the controller's functions read, keep Dagster's 30.
`use_patina_backfill_interval` checks first that the pinned Dagster still reads the constant that way and
fails loudly otherwise (tests/test_daemon.py drives the real loop and sees the wait it asks for).
"""

from __future__ import annotations

import types

from dagster._daemon import backfill, controller

#: Seconds between the backfill loop's looks. dagster.yaml reads the run queue every second
#: (`dequeue_interval_seconds: 1`) for the same reason: a run should not wait on a timer. A look with no backfill
#: in progress is three small queries of the run storage (backfills requested, canceling, failing). A backfill in
#: progress is evaluated in the backfill thread pool (dagster.yaml's `backfills: use_threads`, on by default), and
#: a look skips a backfill whose last evaluation has not ended, so a short interval does not stack evaluations; it
#: does evaluate a long backfill about every second instead of every 30 s. 1 s makes the loop's wait at most about
#: a second a level instead of up to 30 (README, Benchmarks).
BACKFILL_INTERVAL_SECONDS = 1

NAME = "DEFAULT_DAEMON_INTERVAL_SECONDS"


class _Controller(types.ModuleType):
    """dagster._daemon.controller's class once Patina's interval is set: attribute reads of the constant (the
    backfill loop's import) get Patina's interval; the module's globals keep Dagster's value."""

    @property
    def DEFAULT_DAEMON_INTERVAL_SECONDS(self) -> int:  # noqa: N802  (Dagster's name)
        return BACKFILL_INTERVAL_SECONDS


def use_patina_backfill_interval() -> None:
    """Make Dagster's backfill loop, in this process, wait `BACKFILL_INTERVAL_SECONDS` between looks; raise if the
    pinned Dagster no longer reads its interval where Patina expects it."""
    loop = backfill.execute_backfill_iteration_loop.__code__.co_names
    if (
        not isinstance(controller.__dict__.get(NAME), int)
        or "dagster._daemon.controller" not in loop
        or NAME not in loop
    ):
        raise RuntimeError(
            f"patina_assets.daemon: this Dagster's backfill loop no longer imports {NAME} from "
            "dagster._daemon.controller (dagster/_daemon/backfill.py, execute_backfill_iteration_loop), so Patina "
            "cannot set its interval; update patina_assets/daemon.py for this Dagster, or run `dagster-daemon run`"
        )
    controller.__class__ = _Controller


def main() -> None:
    """`patina-daemon`: `dagster-daemon`'s command line, with Patina's backfill interval."""
    use_patina_backfill_interval()
    from dagster._daemon.cli import main as dagster_daemon

    dagster_daemon()


if __name__ == "__main__":
    main()
