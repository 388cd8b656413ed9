"""`make ui`: Dagster's `dagster dev`, with Patina's daemon (patina_assets/daemon.py: backfills look every second,
not every 30 s) in place of Dagster's.

    python -m patina_assets.dev -h 127.0.0.1 -p 3000   # exactly `dagster dev`'s arguments

`dagster dev` (dagster/_cli/dev.py) starts its daemon as `[sys.executable, "-m", "dagster._daemon", "run", ...]`
through `open_ipc_subprocess`. This runs Dagster's own `dagster dev` command and rewrites only that module name, to
`-m patina_assets.daemon`, in the one command it starts so: the shared code server, the instance reference, the
shutdown pipes, the webserver and the workspace arguments are all `dagster dev`'s. The options weighed: setting
the interval inside the daemon process some other way needs code of ours to run there, which only its command
line can bring (an import hook or a .pth file would reach every interpreter of the venv); starting the webserver,
code server and daemon ourselves would copy dagster dev's process management (`dev_command_impl`). If the pinned Dagster
no longer starts its daemon that way, this fails at start instead of quietly running Dagster's daemon.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dagster._cli import dev

DAGSTER_DAEMON = "dagster._daemon"
PATINA_DAEMON = "patina_assets.daemon"


def patina_daemon_command(command: Sequence[str]) -> list[str]:
    """`command` with `-m dagster._daemon` (dagster dev's daemon) made `-m patina_assets.daemon`; any other command
    as it is."""
    parts = list(command)
    for i in range(len(parts) - 1):
        if parts[i] == "-m" and parts[i + 1] == DAGSTER_DAEMON:
            parts[i + 1] = PATINA_DAEMON
    return parts


def use_patina_daemon() -> None:
    """Make `dagster dev`, in this process, start Patina's daemon; raise if it no longer starts one as expected."""
    code = dev.dev_command_impl.__code__
    if DAGSTER_DAEMON not in code.co_consts or "open_ipc_subprocess" not in code.co_names:
        raise RuntimeError(
            "patina_assets.dev: this Dagster's `dagster dev` no longer starts its daemon as "
            f"`open_ipc_subprocess([sys.executable, '-m', '{DAGSTER_DAEMON}', ...])` (dagster/_cli/dev.py), so "
            "it cannot start Patina's instead; update patina_assets/dev.py for this Dagster, or run `dagster dev`"
        )
    dagster_open = dev.open_ipc_subprocess
    if getattr(dagster_open, "patina", False):
        return

    def open_ipc_subprocess(parts, **kwargs):
        return dagster_open(patina_daemon_command(parts), **kwargs)

    open_ipc_subprocess.patina = True
    dev.open_ipc_subprocess = open_ipc_subprocess


def main(argv: Sequence[str] | None = None) -> None:
    """`dagster dev` with Patina's daemon: the `dagster` command line's `dev`, as the `dagster` script runs it."""
    use_patina_daemon()
    from dagster._cli import ENV_PREFIX, cli

    cli.main(
        args=["dev", *(sys.argv[1:] if argv is None else argv)], prog_name="dagster", auto_envvar_prefix=ENV_PREFIX
    )


if __name__ == "__main__":
    main()
