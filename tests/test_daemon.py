"""Patina's daemon (patina_assets/daemon.py) and `make ui`'s `dagster dev` (patina_assets/dev.py), against the
pinned Dagster: its backfill loop, driven as the daemon's backfill thread drives it, asks to wait Patina's interval
between looks (Dagster's 30 s without Patina), the asset daemon keeps Dagster's default, and `dagster dev`'s
daemon command is Patina's. `make ui` really starting it, and a backfill completing through it, is in
tests/test_ui_trigger.py."""

import subprocess
import sys
import types

import dagster as dg
import pytest
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon import backfill, controller
from dagster._daemon.asset_daemon import AssetDaemon
from dagster._daemon.daemon import BackfillDaemon
from support.checkout import ROOT

from patina_assets import daemon, dev

DAGSTER_INTERVAL = 30  # dagster/_daemon/controller.py's DEFAULT_DAEMON_INTERVAL_SECONDS in the pinned Dagster


class Recorder:
    """A shutdown event for the daemon's loop that records each wait it is asked for, instead of waiting."""

    def __init__(self):
        self.waits = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return False

    def is_set(self):
        return False


@pytest.fixture
def dagster_as_pinned():
    """dagster._daemon.controller as Dagster made it, before the test and after it (Patina's setup changes the
    module's class for the whole process)."""
    assert type(controller) is types.ModuleType
    try:
        yield
    finally:
        controller.__class__ = types.ModuleType


def first_wait(monkeypatch) -> float:
    """The wait the real backfill daemon's loop asks for after its first look, over an instance with no backfill,
    with the clock stopped (so the look's own duration, which the loop subtracts, is 0)."""
    monkeypatch.setattr(backfill, "get_current_timestamp", lambda: 1_800_000_000.0)
    recorder = Recorder()
    with (
        dg.instance_for_test() as instance,
        create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as workspace,
        controller.create_daemon_of_type(BackfillDaemon.daemon_type(), instance) as backfills,
    ):
        loop = backfills.core_loop(workspace, recorder)
        while not recorder.waits:
            next(loop)
        loop.close()
        return recorder.waits[0]


def test_the_backfill_loop_waits_patinas_interval(dagster_as_pinned, monkeypatch):
    assert first_wait(monkeypatch) == DAGSTER_INTERVAL  # Dagster's own: what `dagster-daemon run` waits
    daemon.use_patina_backfill_interval()
    assert first_wait(monkeypatch) == daemon.BACKFILL_INTERVAL_SECONDS == 1
    daemon.use_patina_backfill_interval()  # twice is once
    assert first_wait(monkeypatch) == daemon.BACKFILL_INTERVAL_SECONDS


def test_the_asset_daemon_keeps_dagsters_default_interval(dagster_as_pinned):
    daemon.use_patina_backfill_interval()
    with dg.instance_for_test() as instance:
        assets = controller.create_daemon_of_type(AssetDaemon.daemon_type(), instance)
        assert instance.auto_materialize_minimum_interval_seconds is None  # so Dagster's default applies
        assert assets._pre_sensor_interval_seconds == DAGSTER_INTERVAL


def test_a_dagster_that_moved_the_interval_is_refused_at_start(dagster_as_pinned, monkeypatch):
    def execute_backfill_iteration_loop(*args, **kwargs):  # a loop that reads its interval from elsewhere
        yield None

    monkeypatch.setattr(backfill, "execute_backfill_iteration_loop", execute_backfill_iteration_loop)
    with pytest.raises(RuntimeError, match="no longer imports DEFAULT_DAEMON_INTERVAL_SECONDS"):
        daemon.use_patina_backfill_interval()
    monkeypatch.undo()
    monkeypatch.delattr(controller, "DEFAULT_DAEMON_INTERVAL_SECONDS")
    with pytest.raises(RuntimeError, match="dagster-daemon run"):
        daemon.use_patina_backfill_interval()
    assert type(controller) is types.ModuleType


def test_patina_daemon_is_dagster_daemons_command_line():
    for command in ([sys.executable, "-m", "patina_assets.daemon"], [str(ROOT / ".venv" / "bin" / "patina-daemon")]):
        done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert all(name in done.stdout for name in ("run", "liveness-check", "wipe")), done.stdout
        run = subprocess.run([*command, "run", "--help"], capture_output=True, text=True, timeout=120)
        assert "--code-server-log-level" in run.stdout and "--workspace" in run.stdout, run.stdout  # dagster-daemon's


def test_dagster_devs_daemon_command_becomes_patinas(monkeypatch):
    started = []
    monkeypatch.setattr(dev.dev, "open_ipc_subprocess", lambda parts, **kwargs: started.append((parts, kwargs)))
    dev.use_patina_daemon()
    dev.use_patina_daemon()  # twice is once
    daemon_command = [sys.executable, "-m", "dagster._daemon", "run", "--shutdown-pipe", "5", "--workspace", "w.yaml"]
    webserver_command = [sys.executable, "-m", "dagster_webserver", "--port", "3000"]
    dev.dev.open_ipc_subprocess(daemon_command, pass_fds=[5])
    dev.dev.open_ipc_subprocess(webserver_command, pass_fds=[3])
    assert started == [
        (
            [sys.executable, "-m", "patina_assets.daemon", "run", "--shutdown-pipe", "5", "--workspace", "w.yaml"],
            {"pass_fds": [5]},
        ),
        (webserver_command, {"pass_fds": [3]}),
    ]
