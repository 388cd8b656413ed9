"""A fresh copy of this checkout, as a new user has it after `git clone` and `make install`, and the shell commands
of the documentation, extracted from their ```sh blocks so that a test runs them as written."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: A command the documentation marks so: not run here (it needs Cloudflare, R2, or it is the test suite itself).
SKIP_MARKERS = ("# production only", "# doc-test: skip")


def checkout_copy(directory: Path) -> Path:
    """The repository's files (tracked, and new ones not ignored) copied to ``directory``, with this checkout's
    .venv linked in: `make` finds it installed, and nothing of this checkout's .patina comes along."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, directory / name)
    (directory / ".venv").symlink_to(ROOT / ".venv")
    return directory


def user_environment(directory: Path) -> dict[str, str]:
    """A shell as a new user has it: none of Patina's or Dagster's variables set, the checkout as the home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATINA_", "DAGSTER_"))}
    return {**env, "HOME": str(directory)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_group(process: subprocess.Popen, timeout: float = 30) -> None:
    """End a process started with ``start_new_session=True`` and everything it started, by its process group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)


# --------------------------------------------------------------------------------------------------
# The documentation's commands
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    line: str
    runnable: bool  # False: marked production only / doc-test: skip


_BLOCK = re.compile(r"^(?P<indent>[ \t]*)```sh[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


def section(markdown: str, heading: str) -> str:
    """The text under ``heading`` (a line starting with #s) up to the next heading of the same level or higher."""
    match = re.search(rf"^(#+) {re.escape(heading)}[ \t]*$", markdown, re.M)
    assert match, f"no heading {heading!r}"
    level = len(match.group(1))
    rest = markdown[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def commands(markdown: str) -> list[Command]:
    """Every command line of every ```sh block, in order; a block whose first line is a marker is skipped whole,
    and so is a line carrying one."""
    found = []
    for block in _BLOCK.finditer(markdown):
        lines = []
        for line in (line.strip() for line in block.group("body").splitlines()):
            if lines and lines[-1].endswith("\\"):  # a command continued on the next line is one command
                lines[-1] = lines[-1][:-1] + line
            elif line:
                lines.append(line)
        whole_block_skipped = bool(lines) and lines[0].startswith(SKIP_MARKERS)
        for line in lines:
            if line.startswith("#"):
                continue
            found.append(Command(line, not whole_block_skipped and not any(m in line for m in SKIP_MARKERS)))
    return found


def patina_arguments(line: str) -> list[str] | None:
    """The arguments of a ``patina ...`` command line (after any VAR=value), placeholders made plain words."""
    words = shlex.split(re.sub(r"<[^>]*>", "X", line), comments=True)
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words = words[1:]
    return words[1:] if words and words[0] in ("patina", ".venv/bin/patina") else None
