"""Restore SQL into a real D1: wrangler 4.20.0's local mode (workerd's D1, with D1's rules).

`wrangler d1 execute testdb --local --file dump.sql` starts workerd through miniflare, runs the file
through D1 (its authorizer, its limits, its `_cf_*` tables) and writes the database under
``<project>/.wrangler/state/v3/d1/miniflare-D1DatabaseObject/<hash>.sqlite``. This module installs
the pinned wrangler (``tests/wrangler/package-lock.json``, installed with ``npm ci``), makes a
throwaway wrangler project per database, keeps wrangler offline and quiet, and hands back a plain
SQLite file that Python's ``sqlite3`` can open.

API::

    ensure_wrangler() -> Path                 # installs on first use, returns node_modules/.bin/wrangler
    db = LocalD1(workdir)                     # a fresh, empty local D1 in workdir (created if missing)
    db.execute_file(path) -> ExecResult       # raises WranglerError with D1's message on failure
    db.execute_sql(text) -> ExecResult        # writes text to workdir/input.sql, executes it
    db.execute_command(sql) -> ExecResult     # ad-hoc SQL (--command); .results has the rows
    db.snapshot(dest) -> Path                 # standalone copy of the database (WAL folded in)
    db.execute_files([a, b]) -> [ExecResult]  # several files into the same database, in order
    db.live_sqlite_path() -> Path             # the .sqlite workerd writes (incomplete without -wal)
    restore_into_local_d1(sql_file | [files], workdir) -> Path   # fresh D1, execute, snapshot

What wrangler 4.20.0 does with a file (read from its source, src/d1/{execute,splitter,trimmer}.ts,
and measured by tests/test_wrangler_harness.py):

* The file is read as UTF-8 text. If it contains ``BEGIN TRANSACTION`` anywhere (even inside a
  string literal) the first ``BEGIN TRANSACTION;`` and the first ``COMMIT;`` substrings are
  deleted; a second ``BEGIN TRANSACTION`` makes wrangler refuse the file.
* Wrangler splits the text into statements itself (quotes, ``--`` and ``/* */`` comments are
  understood) and sends them as ONE ``db.batch``: the whole file is one transaction, and one
  failing statement rolls back everything before it. Several files can be executed one after the
  other into the same database; each execute is its own transaction.
* A statement whose text contains `` BEGIN `` or `` CASE `` (unquoted, whitespace on both sides)
  opens a "compound statement" that only `` END`` in upper case followed by ``;`` or whitespace
  closes; until then semicolons do not split (D1 still runs the glued text, but the
  100,000-byte statement limit then applies to all of it).
* workerd 2025-06-04 keeps a cache of prepared statements of at most 1 MiB of SQL text; evicting
  from it can corrupt it and crash workerd ("HashIndex detected hash table inconsistency",
  wrangler reports ``read ECONNRESET``; cloudflare/workerd#5977). Seen with 14 distinct
  statements of 90 KB in one file (1.26 MB), not with 12 (1.08 MB). Keep one execute under about
  1 MB of SQL and split bigger restores over several files (each workerd starts afresh).
  Around 18,000 single-row INSERTs (2.2 MB) in one file hung for minutes; 12,000 took 12 s.

Environment: HOME, XDG_CONFIG_HOME, TMPDIR and the log directory are inside the workdir;
WRANGLER_SEND_METRICS=false, CI=true; the update check is answered from a seeded cache and
NODE_ENV=test stops miniflare from fetching Request.cf, so wrangler only talks to workerd on
127.0.0.1 (checked with strace, and in a network namespace with only loopback up).

Timing (2 cores): one execute of a small file takes 0.55-0.8 s wall clock, workerd start-up
included; `npm ci` takes about 3 s with a warm npm cache (~150 MB in node_modules).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WRANGLER_VERSION = "4.20.0"
MIN_NODE_MAJOR = 20
DATABASE_NAME = "testdb"
DATABASE_ID = "00000000-0000-4000-8000-000000000000"
DEFAULT_TIMEOUT = 180.0

WRANGLER_PACKAGE_DIR = Path(__file__).resolve().parent.parent / "wrangler"
_STAMP_NAME = ".patina-npm-ci-stamp"
_LOCK_NAME = "patina-wrangler-npm-ci.lock"

# D1 keeps its own tables in every database (_cf_METADATA always, _cf_KV on some paths).
# Comparisons between a source database and a restored one must leave them out.
D1_INTERNAL_TABLE_PREFIX = "_cf_"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

INSTALL_HINT = (
    "The wrangler tests restore SQL into workerd's local D1 and need Node.js >= 20 with npm on PATH "
    f"(wrangler {WRANGLER_VERSION} runs on Node 20). Install them, e.g. the NodeSource 'nodejs' "
    "20.x Debian package (Debian 12's own nodejs is 18, too old; Debian 13's nodejs and npm "
    "packages are 20), then run `npm ci --no-audit --no-fund` in tests/wrangler (the tests run it "
    "themselves when node_modules is missing; it needs the npm registry)."
)


class WranglerSetupError(RuntimeError):
    """Node/npm/wrangler is missing or could not be installed. Tests must fail on this, not skip."""


class WranglerError(RuntimeError):
    """`wrangler d1 execute` failed. `message` is D1's (or wrangler's) error text, e.g.
    'no such table: nope: SQLITE_ERROR'."""

    def __init__(self, message: str, result: ExecResult):
        super().__init__(message)
        self.message = message
        self.result = result

    @property
    def returncode(self) -> int:
        return self.result.returncode

    @property
    def stdout(self) -> str:
        return self.result.stdout

    @property
    def stderr(self) -> str:
        return self.result.stderr


@dataclass
class ExecResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    # Parsed `--json` output: on success one entry per statement ({"results": [...], "success": ...});
    # on failure None and `error` holds the message.
    results: list[dict[str, Any]] | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.error is None

    def rows(self, index: int = -1) -> list[dict[str, Any]]:
        """Rows of one statement's result (the last one by default), as wrangler printed them."""
        assert self.results is not None, self.error
        return self.results[index]["results"]


# --------------------------------------------------------------------------------------------
# Installing wrangler
# --------------------------------------------------------------------------------------------


def _tool_version(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        raise WranglerSetupError(f"`{tool}` was not found on PATH. {INSTALL_HINT}")
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WranglerSetupError(f"`{tool} --version` failed: {exc}. {INSTALL_HINT}") from exc
    if out.returncode != 0:
        raise WranglerSetupError(f"`{tool} --version` exited {out.returncode}: {out.stderr.strip()}. {INSTALL_HINT}")
    return out.stdout.strip()


def _check_node() -> None:
    version = _tool_version("node")  # e.g. v20.20.2
    match = re.match(r"v?(\d+)\.", version)
    if not match or int(match.group(1)) < MIN_NODE_MAJOR:
        raise WranglerSetupError(f"node {version} is too old. {INSTALL_HINT}")
    _tool_version("npm")


def _lock_digest(package_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        h.update((package_dir / name).read_bytes())
    return h.hexdigest()


def _installed_version(package_dir: Path) -> str | None:
    try:
        meta = json.loads((package_dir / "node_modules" / "wrangler" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    return meta.get("version")


def ensure_wrangler(package_dir: Path = WRANGLER_PACKAGE_DIR) -> Path:
    """Install the pinned wrangler with `npm ci` (once; a stamp file records the lock it installed)
    and return the path of its binary. Safe against concurrent callers (an flock on a lock file).

    Raises WranglerSetupError, naming what to install, when node/npm is missing or npm ci fails."""
    package_dir = Path(package_dir)
    binary = package_dir / "node_modules" / ".bin" / "wrangler"
    stamp = package_dir / "node_modules" / _STAMP_NAME
    if not (package_dir / "package-lock.json").is_file():
        raise WranglerSetupError(f"{package_dir}/package-lock.json is missing; it pins wrangler.")
    digest = _lock_digest(package_dir)

    def installed() -> bool:
        return (
            binary.exists()
            and stamp.is_file()
            and stamp.read_text().strip() == digest
            and _installed_version(package_dir) == WRANGLER_VERSION
        )

    _check_node()
    if installed():
        return binary
    # The lock lives outside the repository (npm ci empties node_modules, and the work tree
    # should not gain untracked files); one lock per package directory.
    lock_path = Path(tempfile.gettempdir()) / (
        f"{_LOCK_NAME}-{hashlib.sha256(str(package_dir.resolve()).encode()).hexdigest()[:16]}"
    )
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second pytest process waits here for the first
        if installed():
            return binary
        env = dict(os.environ)
        env.update(
            {
                "npm_config_update_notifier": "false",
                "npm_config_fund": "false",
                "npm_config_audit": "false",
                "CI": "true",
            }
        )
        cmd = [shutil.which("npm") or "npm", "ci", "--no-audit", "--no-fund"]
        try:
            proc = subprocess.run(
                cmd,
                cwd=package_dir,
                capture_output=True,
                text=True,
                timeout=900,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WranglerSetupError(f"`npm ci` in {package_dir} failed: {exc}. {INSTALL_HINT}") from exc
        if proc.returncode != 0:
            raise WranglerSetupError(
                f"`npm ci --no-audit --no-fund` in {package_dir} exited {proc.returncode}:\n"
                f"{proc.stderr[-4000:]}\n{INSTALL_HINT}"
            )
        version = _installed_version(package_dir)
        if version != WRANGLER_VERSION or not binary.exists():
            raise WranglerSetupError(f"npm ci installed wrangler {version!r}, expected {WRANGLER_VERSION} at {binary}.")
        stamp.write_text(digest + "\n")
    return binary


# --------------------------------------------------------------------------------------------
# A throwaway local D1
# --------------------------------------------------------------------------------------------

_WRANGLER_TOML = f"""\
# Throwaway project for tests/support/wrangler.py: one D1 binding, no deploy.
name = "patina-local-d1"
main = "worker.js"
compatibility_date = "2025-06-01"

[[d1_databases]]
binding = "{DATABASE_NAME}"
database_name = "{DATABASE_NAME}"
database_id = "{DATABASE_ID}"
"""

_WORKER_JS = "export default { async fetch() { return new Response('patina'); } };\n"


class LocalD1:
    """One local D1 database in `workdir` (a wrangler project made there if missing).

    Each execute starts workerd afresh (about 0.6-1 s), runs the SQL as one batch (one
    transaction) and stops workerd again; the database persists under
    workdir/.wrangler/state between executes, so several files can be executed one after the
    other into the same database. For a fresh database use a fresh workdir."""

    def __init__(self, workdir: Path, *, timeout: float = DEFAULT_TIMEOUT, wrangler: Path | None = None):
        self.workdir = Path(workdir).resolve()
        self.timeout = timeout
        self.wrangler = Path(wrangler) if wrangler else ensure_wrangler()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not (self.workdir / "wrangler.toml").exists():
            (self.workdir / "wrangler.toml").write_text(_WRANGLER_TOML)
            (self.workdir / "worker.js").write_text(_WORKER_JS)
        self.home = self.workdir / ".home"
        self.tmp = self.workdir / ".tmp"
        for d in (self.home, self.tmp, self.home / ".config"):
            d.mkdir(parents=True, exist_ok=True)
        self._seed_update_check()

    # -- environment ------------------------------------------------------------------------

    def _seed_update_check(self) -> None:
        # wrangler asks the npm registry for its latest version on every run (the `update-check`
        # package, no switch to turn it off). It caches the answer in $TMPDIR/update-check/ and
        # does not ask while the cache is younger than an hour: a cache stamped far in the future
        # that names our own version keeps it from asking and from printing "update available".
        d = self.tmp / "update-check"
        d.mkdir(parents=True, exist_ok=True)
        (d / "wrangler-latest.json").write_text(json.dumps({"latest": WRANGLER_VERSION, "lastUpdate": 32503680000000}))

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CLOUDFLARE_", "CF_", "WRANGLER_", "npm_", "NODE_OPTIONS"))
        }
        env.update(
            {
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "TMPDIR": str(self.tmp),
                "CI": "true",
                "WRANGLER_SEND_METRICS": "false",
                "WRANGLER_LOG_PATH": str(self.workdir / ".logs"),
                "NO_COLOR": "1",
                "FORCE_COLOR": "0",
                # If the update check ever did run, it would ask this dead loopback port and fail
                # at once, instead of going to the registry.
                "npm_config_registry": "http://127.0.0.1:9/",
                "NO_UPDATE_NOTIFIER": "1",
                # miniflare fetches https://workers.cloudflare.com/cf.json for Request.cf unless
                # NODE_ENV is "test" (then it uses a built-in placeholder).
                "NODE_ENV": "test",
            }
        )
        return env

    # -- running ----------------------------------------------------------------------------

    def _run(self, extra: list[str], *, check: bool) -> ExecResult:
        args = [str(self.wrangler), "d1", "execute", DATABASE_NAME, "--local", "--json", "--yes", *extra]
        t0 = time.monotonic()
        # bin/wrangler is a node launcher that starts a second node (cli.js), which starts workerd:
        # run them in their own process group so that a timeout ends all three.
        proc = subprocess.Popen(
            args,
            cwd=self.workdir,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise WranglerError(
                f"wrangler d1 execute timed out after {self.timeout} s (killed)",
                ExecResult(args, -1, _text(stdout), _text(stderr), time.monotonic() - t0),
            ) from None
        finally:
            # workerd is normally gone when wrangler exits; make sure of it (same group).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        result = ExecResult(args, proc.returncode, _text(stdout), _text(stderr), time.monotonic() - t0)
        _parse_output(result)
        if check and not result.ok:
            raise WranglerError(result.error or f"wrangler exited {result.returncode}", result)
        return result

    def execute_file(self, sql_file: Path, *, check: bool = True) -> ExecResult:
        return self._run(["--file", str(Path(sql_file).resolve())], check=check)

    def execute_sql(self, sql: str, *, check: bool = True, name: str = "input.sql") -> ExecResult:
        """Write `sql` to a file in the workdir (byte for byte, UTF-8) and execute it with --file."""
        path = self.workdir / name
        path.write_bytes(sql.encode("utf-8"))
        return self.execute_file(path, check=check)

    def execute_files(self, sql_files: list[Path], *, check: bool = True) -> list[ExecResult]:
        """Execute several files one after the other into this database (each its own
        transaction: a refusal keeps what earlier files wrote). Stops at the first failure."""
        results = []
        for f in sql_files:
            results.append(self.execute_file(f, check=check))
            if not results[-1].ok:
                break
        return results

    def execute_command(self, sql: str, *, check: bool = True) -> ExecResult:
        return self._run(["--command", sql], check=check)

    # -- the database file ------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.workdir / ".wrangler" / "state" / "v3" / "d1" / "miniflare-D1DatabaseObject"

    def live_sqlite_path(self) -> Path:
        """The .sqlite file workerd writes (its -wal beside it holds the latest commits)."""
        files = sorted(self.state_dir.glob("*.sqlite"))
        if len(files) != 1:
            raise FileNotFoundError(f"expected one .sqlite under {self.state_dir}, found {[f.name for f in files]}")
        return files[0]

    def snapshot(self, dest: Path) -> Path:
        """Copy the database to `dest` as one self-contained SQLite file and return `dest`.

        workerd keeps the database in WAL mode and does not checkpoint when it stops: after
        wrangler exits the committed data sits in ``<hash>.sqlite-wal`` and the ``.sqlite`` file
        alone can be empty (measured: a 4 KiB main file holding no tables, the table in a 12 KiB
        WAL). Opening the live file with sqlite3 would see the data, but SQLite would then
        checkpoint and delete the WAL of wrangler's state as the connection closes. So the
        ``.sqlite`` and ``-wal`` are copied (not the ``-shm``, which SQLite rebuilds from the
        WAL), the copy is checkpointed and switched to journal_mode=DELETE. Only do this while no
        wrangler runs on the workdir (execute_* return after wrangler and workerd have exited)."""
        src = self.live_sqlite_path()
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(dest) + suffix).unlink(missing_ok=True)
        shutil.copyfile(src, dest)
        wal = Path(str(src) + "-wal")
        if wal.exists():
            shutil.copyfile(wal, str(dest) + "-wal")
        con = sqlite3.connect(dest)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            con.execute("PRAGMA journal_mode=DELETE")
        finally:
            con.close()
        Path(str(dest) + "-wal").unlink(missing_ok=True)
        Path(str(dest) + "-shm").unlink(missing_ok=True)
        return dest


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


def _parse_output(result: ExecResult) -> None:
    """`--json` prints the per-statement results, or {"error": {"text": ...}} on failure; some
    wrangler-level errors are printed only as "✘ [ERROR] ..." on stderr."""
    out = result.stdout.strip()
    parsed: Any = None
    start = min((i for i in (out.find("["), out.find("{")) if i >= 0), default=-1)
    if start >= 0:
        try:
            parsed = json.loads(out[start:])
        except ValueError:
            parsed = None
    if isinstance(parsed, list):
        result.results = parsed
        bad = [r for r in parsed if not r.get("success", True)]
        if bad:
            result.error = json.dumps(bad[0])
    elif isinstance(parsed, dict) and "error" in parsed:
        err = parsed["error"]
        text = err.get("text") if isinstance(err, dict) else str(err)
        notes = [n.get("text", "") for n in err.get("notes", [])] if isinstance(err, dict) else []
        result.error = "\n".join([text or "", *[n for n in notes if n]]).strip()
    if result.returncode != 0 and result.error is None:
        stderr = _ANSI.sub("", result.stderr)
        m = re.search(r"\[ERROR\]\s*(.*?)(?:\n\s*\n|🪵|$)", stderr, re.S)
        result.error = (m.group(1) if m else stderr or out or f"exit {result.returncode}").strip()
    if result.error is not None and "HashIndex detected hash table inconsistency" in result.stderr:
        result.error += (
            " [workerd crashed: its statement cache (SQL_STATEMENT_CACHE_MAX_SIZE, 1 MiB of distinct"
            " statement text per workerd process) corrupts itself when it evicts (cloudflare/workerd"
            "#5977). Keep each execute under about 1 MB of SQL and execute the rest in further files.]"
        )


def restore_into_local_d1(sql_file: Path | list[Path], workdir: Path, *, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Execute `sql_file` (or several files, in order) into a fresh local D1 in `workdir` (which
    must not hold one already) and return a standalone SQLite copy of the result,
    ``workdir/restored.sqlite``.

    Safe to open with Python's sqlite3 afterwards: the returned file is a copy with workerd's WAL
    folded in (see LocalD1.snapshot). The live file under .wrangler/state/v3/d1/
    miniflare-D1DatabaseObject/*.sqlite is NOT complete on its own after wrangler exits: workerd
    does not checkpoint, the committed pages sit in its -wal.
    The database contains D1's own table ``_cf_METADATA`` (remote D1 also has ``_cf_KV``), which
    D1 hides from SQL but sqlite3 sees: comparisons must ignore every table whose name starts
    with ``_cf_`` (D1_INTERNAL_TABLE_PREFIX).

    Raises WranglerError with D1's message if a file is refused (nothing of that file is kept: a
    file runs as one batch; files executed before it stay). Keep each file under about 1 MB of
    SQL: workerd 2025-06-04 can crash on more (see the module docstring)."""
    workdir = Path(workdir)
    if (workdir / ".wrangler").exists():
        raise ValueError(f"{workdir} already holds a local D1; use a fresh directory")
    files = [Path(sql_file)] if isinstance(sql_file, (str, Path)) else [Path(f) for f in sql_file]
    db = LocalD1(workdir, timeout=timeout)
    db.execute_files(files)
    return db.snapshot(workdir / "restored.sqlite")
