"""A second D1 REST stand-in, backed by D1's own engine: workerd's D1 through `wrangler dev --local`.

``WorkerD1Server`` runs the small worker in ``tests/wrangler/rest_worker/worker.js`` with one D1 binding
per database and answers ``POST .../d1/database/{id}/query`` and ``/raw`` with Cloudflare's envelope, so
results pass through workerd's SQLite (3.47 in wrangler 4.20.0) and JavaScript as on Cloudflare, where the
loopback ``d1_server.D1Server`` runs a newer SQLite in Python and imitates JavaScript. Use it as a context
manager::

    with WorkerD1Server({"db-id": path_to_sqlite}, workdir) as server:
        D1Source("acct", "db-id", token=server.token, api_url=server.base_url)

The databases are loaded through wrangler's local state: each file is copied, before workerd starts, to
where miniflare keeps the Durable Object behind a D1 binding
(``.wrangler/state/v3/d1/miniflare-D1DatabaseObject/<id>.sqlite``, the id derived from the database id as
miniflare's ``durableObjectNamespaceIdFromName`` does). The source files are never written to.

Start-up takes a few seconds (wrangler bundles the worker, then starts workerd): start one server for
many tests. Offline like ``wrangler.LocalD1`` (same environment); it listens on free loopback ports
(HTTP and inspector), is ready once ``/ready`` answers, and is stopped by its own process group.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from .wrangler import LocalD1, ensure_wrangler

WORKER_JS = Path(__file__).resolve().parent.parent / "wrangler" / "rest_worker" / "worker.js"
OBJECT_KEY = "miniflare-D1DatabaseObject"  # miniflare's unique key for D1's Durable Object namespace
START_TIMEOUT = 180.0


def durable_object_id(name: str, unique_key: str = OBJECT_KEY) -> str:
    """The Durable Object id miniflare derives from a name (its `durableObjectNamespaceIdFromName`)."""
    key = hashlib.sha256(unique_key.encode()).digest()
    name_mac = hmac.new(key, name.encode(), hashlib.sha256).digest()[:16]
    return (name_mac + hmac.new(key, name_mac, hashlib.sha256).digest()[:16]).hex()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: The API budget of D1Sources reading the stand-in. Cloudflare's 1,200 requests per 5 minutes is a limit of
#: its API gateway, which the stand-in does not have; one stand-in serves a whole test session (every awkward
#: case and the corpus, thousands of requests), so the default budget of 600 would have the tests wait.
STAND_IN_REQUESTS_PER_5_MINUTES = 1_000_000


class WorkerD1Server:
    """`wrangler dev --local` serving D1's REST `/query` and `/raw` for `databases` ({id: SQLite file})."""

    API_PREFIX = "/client/v4"

    def __init__(
        self, databases: dict[str, Path], workdir: Path, *, account_id: str = "acct", token: str = "good-token"
    ) -> None:
        self.databases = {db_id: Path(p) for db_id, p in databases.items()}
        self.workdir = Path(workdir).resolve()
        self.account_id, self.token = account_id, token
        self.port: int | None = None
        self._process: subprocess.Popen | None = None
        self._log = None

    # -- set-up -----------------------------------------------------------------------------------

    def _write_project(self) -> LocalD1:
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(WORKER_JS, self.workdir / "worker.js")
        bindings = {db_id: f"DB{i}" for i, db_id in enumerate(self.databases)}
        toml = [
            'name = "patina-rest-stand-in"',
            'main = "worker.js"',
            'compatibility_date = "2025-06-01"',
            "",
            "[vars]",
            f"ACCOUNT_ID = {json.dumps(self.account_id)}",
            f"API_TOKEN = {json.dumps(self.token)}",
            f"DATABASES = {json.dumps(json.dumps(bindings))}",
        ]
        for db_id, binding in bindings.items():
            toml += [
                "",
                "[[d1_databases]]",
                f'binding = "{binding}"',
                f'database_name = "{binding.lower()}"',
                f"database_id = {json.dumps(db_id)}",
            ]
        (self.workdir / "wrangler.toml").write_text("\n".join(toml) + "\n")
        local = LocalD1(self.workdir, wrangler=ensure_wrangler())  # its offline environment and paths
        state = local.state_dir
        state.mkdir(parents=True, exist_ok=True)
        for db_id, source in self.databases.items():
            target = state / f"{durable_object_id(db_id)}.sqlite"
            for suffix in ("-wal", "-shm", "-journal"):
                Path(str(target) + suffix).unlink(missing_ok=True)
            shutil.copyfile(source, target)
        return local

    def start(self) -> WorkerD1Server:
        local = self._write_project()
        self.port = _free_port()
        args = [
            str(local.wrangler),
            "dev",
            "--local",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--inspector-port",
            str(_free_port()),
            "--show-interactive-dev-session=false",
        ]
        self._log = open(self.workdir / "wrangler-dev.log", "wb")
        self._process = subprocess.Popen(
            args,
            cwd=self.workdir,
            env=local.env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise RuntimeError(f"wrangler dev exited {self._process.returncode}:\n{self.log_text()[-3000:]}")
                try:
                    if client.get(f"{self.origin}/ready").text == "ready":
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)  # polling the port: the server is not up yet
        raise RuntimeError(f"wrangler dev did not answer within {START_TIMEOUT:.0f} s:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        path = self.workdir / "wrangler-dev.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):  # workerd, in the same group
                os.killpg(process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> WorkerD1Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + self.API_PREFIX
