"""`patina serve`: the spec's HTTP API over the bucket (and Dagster, when there is one).

Built on Starlette and served by uvicorn: both come with dagster-webserver (pinned by it), so the API adds no
dependency, and Starlette gives routing, streaming and an ASGI app that tests drive over real HTTP.

Endpoints (the OpenAPI document is ``GET /openapi.json``):

* public: ``/`` (what this is), ``/health``, ``/status``, ``/list``, ``/metrics`` (Prometheus text);
* protected: ``GET /download/{date}/{db}``, ``GET /restore-guide/{db}``, ``POST /trigger``.

Protected endpoints need a key in ``X-Patina-Key`` (``PATINA_API_KEYS="name1:key1,name2:key2"``; the name is
what the audit log records, compared in constant time) or a client address in ``PATINA_ALLOWED_IPS`` (addresses
or networks). Anything else gets the spec's 401 body. The client address is the TCP peer, or the header named by
``PATINA_CLIENT_IP_HEADER`` (e.g. ``CF-Connecting-IP``) when the server is only reachable through that proxy.

Rate limits, the spec's, in memory (per process): 30 requests an hour per address to the protected endpoints
(counted before authentication, so keys cannot be guessed quickly), 10 downloads an hour per client, 2 downloads
at once. Over a limit: 429 with ``Retry-After``. Each download writes one audit line (who, what, when, from where,
how it ended) to the ``patina.audit`` logger; keys never appear in it.

Downloads stream the backup's SQL with ``Content-Length`` and ``X-Patina-SQL-SHA256``; the SQL is checked against
its manifest as it streams and the last chunk is held back until the check passes, so a damaged backup ends in
a broken transfer (the client sees fewer bytes than announced), never in a complete-looking file.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import __version__
from .catalog import Backup, BackupMismatch, BackupNotFound, Catalog, iso, list_document
from .config import PatinaConfig
from .engine.errors import PatinaError
from .guide import restore_guide
from .status import Orchestrator, Snapshot, unavailable
from .storage import InvalidKey, StorageError, format_day

logger = logging.getLogger(__name__)
audit_logger = logging.getLogger("patina.audit")

KEY_HEADER = "X-Patina-Key"
KEYS_ENV = "PATINA_API_KEYS"
ALLOWED_IPS_ENV = "PATINA_ALLOWED_IPS"
CLIENT_IP_HEADER_ENV = "PATINA_CLIENT_IP_HEADER"
PUBLIC_URL_ENV = "PATINA_PUBLIC_URL"
MIN_KEY_LENGTH = 16
MAX_TRIGGER_BODY = 16 * 1024
CHUNK = 256 * 1024

UNAUTHORIZED = {"error": "unauthorized", "message": "Valid authentication required to download backups"}
_KEY_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


# --------------------------------------------------------------------------------------------------
# Who may call: keys, addresses
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """An authenticated caller: the key's name (or ``ip:<address>`` for an allowed address)."""

    name: str
    method: str  # "key" or "ip"
    ip: str


@dataclass
class AccessPolicy:
    keys: dict[str, str] = field(default_factory=dict)  # name -> key
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    client_ip_header: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> AccessPolicy:
        """Read ``PATINA_API_KEYS``, ``PATINA_ALLOWED_IPS`` and ``PATINA_CLIENT_IP_HEADER``; ValueError on a
        malformed entry (the message names the entry by position and name, never the key)."""
        return cls(keys=parse_keys(env.get(KEYS_ENV, "")), networks=parse_networks(env.get(ALLOWED_IPS_ENV, "")),
                   client_ip_header=(env.get(CLIENT_IP_HEADER_ENV) or "").strip() or None)

    def authenticate(self, key: str | None, ip: str) -> Client | None:
        if key:
            given = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
            matched = None
            for name, secret in self.keys.items():  # every key is compared: the time does not tell which matched
                if hmac.compare_digest(given, hashlib.sha256(secret.encode()).digest()):
                    matched = name
            if matched is not None:
                return Client(matched, "key", ip)
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if any(address in network for network in self.networks):
            return Client(f"ip:{ip}", "ip", ip)
        return None

    def describe(self) -> str:
        return (f"{len(self.keys)} key(s) ({', '.join(sorted(self.keys)) or 'none'}), "
                f"{len(self.networks)} allowed network(s)"
                + (f", client address from {self.client_ip_header}" if self.client_ip_header else ""))


def parse_keys(text: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for position, entry in enumerate(filter(None, (e.strip() for e in text.split(","))), start=1):
        name, sep, key = entry.partition(":")
        name, key = name.strip(), key.strip()
        where = f"{KEYS_ENV} entry {position}"
        if not sep or not _KEY_NAME.match(name):
            raise ValueError(f"{where}: write each entry as name:key (the name: letters, digits, . _ @ -)")
        if name in keys:
            raise ValueError(f"{where}: the name {name!r} is used twice; each key needs its own name")
        if len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key):
            raise ValueError(f"{where} ({name}): the key must be at least {MIN_KEY_LENGTH} characters without "
                             "spaces; generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        keys[name] = key
    return keys


def parse_networks(text: str) -> list:
    networks = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{ALLOWED_IPS_ENV}: {entry!r} is not an IP address or network (e.g. 203.0.113.7, "
                             "10.0.0.0/8)") from None
    return networks


# --------------------------------------------------------------------------------------------------
# Rate limits
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """The spec's limits; tests make them small."""

    requests_per_hour: int = 30  # per address, protected endpoints
    downloads_per_hour: int = 10  # per client
    concurrent_downloads: int = 2
    window_seconds: float = 3600.0
    busy_retry_after: int = 10  # when both download slots are taken


class RateLimiter:
    """A sliding window per key: at most ``limit`` admissions in any ``window`` seconds of ``clock``."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> int | None:
        """Count one more for ``key`` and return None, or return the seconds to wait (and count nothing)."""
        with self._lock:
            now = self.clock()
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(1, math.ceil(hits[0] + self.window - now))
            hits.append(now)
            if len(self._hits) > 10_000:  # forget idle keys so memory stays bounded
                for idle in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
                    del self._hits[idle]
            return None


class Slots:
    """At most ``size`` downloads at once."""

    def __init__(self, size: int) -> None:
        self.size, self.used = size, 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.size:
                return False
            self.used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.used -= 1


# --------------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------------


class TriggerUnavailable(Exception):
    """No Dagster instance to submit an on-demand backup to."""


Trigger = Callable[[list[str] | None, str | None, str], dict]


@dataclass
class ApiState:
    config: PatinaConfig
    catalog: Callable[[], Catalog]
    orchestrator: Callable[[], Orchestrator]
    trigger: Trigger | None
    policy: AccessPolicy
    limits: Limits
    clock: Callable[[], float]
    audit: Callable[[dict], None]
    public_url: str | None = None

    def __post_init__(self) -> None:
        self.per_ip = RateLimiter(self.limits.requests_per_hour, self.limits.window_seconds, self.clock)
        self.per_client = RateLimiter(self.limits.downloads_per_hour, self.limits.window_seconds, self.clock)
        self.slots = Slots(self.limits.concurrent_downloads)


def log_audit(event: dict) -> None:
    audit_logger.info(json.dumps(event, sort_keys=True))


def create_app(
    config: PatinaConfig,
    *,
    catalog: Callable[[], Catalog] | None = None,
    orchestrator: Callable[[], Orchestrator] | None = None,
    trigger: Trigger | None = None,
    policy: AccessPolicy | None = None,
    limits: Limits | None = None,
    clock: Callable[[], float] = time.monotonic,
    audit: Callable[[dict], None] = log_audit,
    public_url: str | None = None,
) -> Starlette:
    """The API as an ASGI app. Everything that touches the outside is injectable (tests pass a clock)."""
    if catalog is None:
        shared = Catalog.for_config(config)  # one bucket client for every request (boto3 clients are thread-safe)
        catalog = lambda: shared  # noqa: E731
    state = ApiState(
        config=config,
        catalog=catalog,
        orchestrator=orchestrator or (lambda: unavailable("no Dagster instance was given to the server")),
        trigger=trigger,
        policy=policy if policy is not None else AccessPolicy.from_env(),
        limits=limits or Limits(),
        clock=clock,
        audit=audit,
        public_url=public_url,
    )
    routes = [
        Route("/", _index, methods=["GET"]),
        Route("/health", _health, methods=["GET"]),
        Route("/status", _status, methods=["GET"]),
        Route("/list", _list, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
        Route("/download/{date}/{db}", _download, methods=["GET"]),
        Route("/restore-guide/{db}", _restore_guide, methods=["GET"]),
        Route("/trigger", _trigger, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            StorageError: _storage_error,
            404: _not_found,
            405: _method_not_allowed,
        },
    )
    app.state.patina = state
    return app


def _state(request: Request) -> ApiState:
    return request.app.state.patina


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("bucket error on %s: %s", request.url.path, exc)
    return error(503, "storage_unavailable", "the backup bucket could not be read; try again later")


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return error(404, "not_found", "no such endpoint: GET / lists them")


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    allow = getattr(exc, "headers", None) or {}
    return error(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}: GET / lists the "
                 "endpoints", {k: v for k, v in allow.items() if k.lower() == "allow"})


# -- public ------------------------------------------------------------------------------------


async def _index(request: Request) -> JSONResponse:
    config = _state(request).config
    r = config.retention
    return JSONResponse({
        "name": "Patina",
        "version": __version__,
        "description": "Automated D1 database backups: nightly SQL dumps, weekly archives, restore tools",
        "schedule": "Every night at 03:00 UTC (the day that just ended); weekly archives Sundays at 04:00 UTC",
        "retention": f"{r.daily_days} days of dailies, {r.weekly_weeks} weeks of weekly archives ({r.weekly_format})",
        "databases": len(config.databases),
        "endpoints": {
            "GET /": "This documentation",
            "GET /health": "Liveness",
            "GET /status": "Current backup status and recent history",
            "GET /list": "List all available backups (?database=&date=&limit=)",
            "POST /trigger": f"Manually trigger a backup (needs {KEY_HEADER})",
            "GET /download/{date}/{db}": f"Download a specific backup (needs {KEY_HEADER})",
            "GET /restore-guide/{db}": f"Restore instructions for a database (needs {KEY_HEADER})",
            "GET /metrics": "Prometheus metrics",
            "GET /openapi.json": "The OpenAPI document",
        },
    })


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "version": __version__})


async def _snapshot(request: Request) -> Snapshot:
    state = _state(request)
    return await anyio.to_thread.run_sync(
        lambda: Snapshot.take(state.config, state.catalog(), state.orchestrator()))


async def _status(request: Request) -> JSONResponse:
    return JSONResponse((await _snapshot(request)).to_dict())


async def _metrics(request: Request) -> Response:
    text = (await _snapshot(request)).metrics()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


async def _list(request: Request) -> JSONResponse:
    state = _state(request)
    params = request.query_params
    unknown = sorted(set(params) - {"database", "date", "limit"})
    if unknown:
        return error(400, "bad_request", f"unknown query parameter(s) {', '.join(unknown)}: use database, date, limit")
    database = params.get("database") or None
    if database is not None and database not in state.config.names:
        return error(400, "unknown_database", f"no database named {database[:80]!r}; configured: {', '.join(state.config.names)}")
    day = params.get("date") or None
    if day is not None:
        try:
            day = format_day(day)
        except InvalidKey:
            return error(400, "invalid_date", "date must be a real date as YYYY-MM-DD")
    limit = None
    if params.get("limit"):
        if not params["limit"].isdigit() or not 1 <= int(params["limit"]) <= 10_000:
            return error(400, "invalid_limit", "limit must be a whole number from 1 to 10000")
        limit = int(params["limit"])
    backups = await anyio.to_thread.run_sync(lambda: state.catalog().backups())
    return JSONResponse(list_document(backups, database=database, day=day, limit=limit))


async def _openapi(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document(_state(request).config))


# -- protected ---------------------------------------------------------------------------------


def client_ip(request: Request, policy: AccessPolicy) -> str:
    if policy.client_ip_header:
        forwarded = request.headers.get(policy.client_ip_header, "").split(",")[0].strip()
        if forwarded:
            return forwarded[:64]
    return request.client.host if request.client else "unknown"


def _guard(request: Request, endpoint: str) -> Client | Response:
    """Per-address rate limit, then authentication. Returns the client, or the response to send instead."""
    state = _state(request)
    ip = client_ip(request, state.policy)
    wait = state.per_ip.admit(ip)
    if wait is not None:
        state.audit(_event("rate_limited", endpoint=endpoint, ip=ip, limit="requests_per_ip"))
        return error(429, "rate_limited", f"too many requests from this address: at most "
                     f"{state.limits.requests_per_hour} an hour; retry in {wait}s", {"Retry-After": str(wait)})
    client = state.policy.authenticate(request.headers.get(KEY_HEADER), ip)
    if client is None:
        state.audit(_event("auth_denied", endpoint=endpoint, ip=ip,
                           reason="key refused" if request.headers.get(KEY_HEADER) else "no key, address not allowed"))
        return JSONResponse(UNAUTHORIZED, status_code=401)
    return client


def _event(event: str, **fields: Any) -> dict:
    return {"event": event, "timestamp": iso(datetime.now(timezone.utc)), **fields}


async def _download(request: Request) -> Response:
    state = _state(request)
    guarded = _guard(request, "download")
    if isinstance(guarded, Response):
        return guarded
    client = guarded
    day, db = request.path_params["date"], request.path_params["db"]
    problem = _check_day_and_db(state.config, day, db)
    if problem is not None:
        return problem
    day = format_day(day)
    catalog = state.catalog()
    try:
        backup = await anyio.to_thread.run_sync(lambda: catalog.find(day, db))
    except BackupNotFound:
        return error(404, "not_found", f"no backup of {db} on {day}: GET /list?database={db} shows its backups")
    headers = {
        "Content-Disposition": f'attachment; filename="{backup.filename}"',
        "Content-Length": str(backup.sql_bytes),
        "X-Patina-SQL-SHA256": backup.sql_sha256,
        "Cache-Control": "no-store",
    }
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers, media_type="application/sql")
    wait = state.per_client.admit(client.name)
    if wait is not None:
        state.audit(_event("rate_limited", endpoint="download", client=client.name, ip=client.ip,
                           limit="downloads_per_client"))
        return error(429, "rate_limited", f"at most {state.limits.downloads_per_hour} downloads an hour per client; "
                     f"retry in {wait}s", {"Retry-After": str(wait)})
    if not state.slots.take():
        state.audit(_event("rate_limited", endpoint="download", client=client.name, ip=client.ip,
                           limit="concurrent_downloads"))
        return error(429, "busy", f"{state.limits.concurrent_downloads} downloads are already running; retry shortly",
                     {"Retry-After": str(state.limits.busy_retry_after)})
    try:
        reader = await anyio.to_thread.run_sync(lambda: catalog.open_sql(backup))
    except BaseException:
        state.slots.give()
        raise
    return DownloadResponse(state, client, backup, reader, headers)


def _check_day_and_db(config: PatinaConfig, day: str, db: str) -> Response | None:
    if db not in config.names:
        return error(400, "unknown_database", f"no database named {db[:80]!r}; configured: {', '.join(config.names)}")
    try:
        format_day(day)
    except InvalidKey:
        return error(400, "invalid_date", "the date must be a real date as YYYY-MM-DD")
    return None


class DownloadResponse(Response):
    """Streams a checked backup; holds the last chunk back until the whole SQL matched its manifest.

    The download slot is given back however the stream ends (done, client gone, damaged backup), and the
    audit line is written then, with the outcome and the bytes sent.
    """

    def __init__(self, state: ApiState, client: Client, backup: Backup, reader, headers: dict[str, str]) -> None:
        super().__init__(status_code=200, headers=headers, media_type="application/sql")
        self.state, self.client, self.backup, self.reader = state, client, backup, reader

    async def __call__(self, scope, receive, send) -> None:
        started = time.monotonic()
        outcome, sent = "client_disconnected", 0
        holding = True

        def give_back() -> None:  # once the backup is read: a client that has every byte finds the slot free
            nonlocal holding
            if holding:
                holding = False
                self.state.slots.give()

        try:
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                try:
                    pending = await anyio.to_thread.run_sync(self.reader.read, CHUNK)
                    while True:
                        following = await anyio.to_thread.run_sync(self.reader.read, CHUNK)
                        if not following:
                            break
                        await send({"type": "http.response.body", "body": pending, "more_body": True})
                        sent += len(pending)
                        pending = following
                except (BackupMismatch, StorageError) as exc:
                    outcome = "integrity_failure" if isinstance(exc, BackupMismatch) else "storage_error"
                    logger.error("download of %s on %s aborted: %s", self.backup.database, self.backup.day, exc)
                    group.cancel_scope.cancel()  # returning without the last chunk breaks the transfer
                    return
                give_back()
                await send({"type": "http.response.body", "body": pending, "more_body": False})
                sent += len(pending)
                outcome = "complete"
                group.cancel_scope.cancel()
        finally:
            give_back()
            await anyio.to_thread.run_sync(self.reader.close)
            self.state.audit(_event(
                "backup_download", client=self.client.name, auth=self.client.method, ip=self.client.ip,
                database=self.backup.database, date=self.backup.day, source=self.backup.location,
                outcome=outcome, bytes=sent, seconds=round(time.monotonic() - started, 3),
            ))


async def _restore_guide(request: Request) -> Response:
    state = _state(request)
    guarded = _guard(request, "restore-guide")
    if isinstance(guarded, Response):
        return guarded
    db = request.path_params["db"]
    if db not in state.config.names:
        return error(400, "unknown_database", f"no database named {db[:80]!r}; configured: {', '.join(state.config.names)}")
    state.audit(_event("restore_guide", client=guarded.name, auth=guarded.method, ip=guarded.ip, database=db))
    database = state.config.database(db)
    backups = await anyio.to_thread.run_sync(lambda: state.catalog().backups(database=db))
    base_url = state.public_url or str(request.base_url)
    return JSONResponse(restore_guide(state.config, database, backups, base_url=base_url))


async def _trigger(request: Request) -> Response:
    state = _state(request)
    guarded = _guard(request, "trigger")
    if isinstance(guarded, Response):
        return guarded
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_TRIGGER_BODY:
            return error(413, "too_large", f"the request body must be at most {MAX_TRIGGER_BODY} bytes")
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        return error(400, "bad_request", 'the body must be JSON: {"databases": ["name", ...], "reason": "why"}')
    if not isinstance(body, dict) or set(body) - {"databases", "reason"}:
        return error(400, "bad_request", 'the body must be a JSON object with "databases" and/or "reason"')
    databases, reason = body.get("databases"), body.get("reason")
    if databases is not None and (not isinstance(databases, list) or not all(isinstance(d, str) for d in databases)):
        return error(400, "bad_request", '"databases" must be a list of database names')
    if reason is not None and not isinstance(reason, str):
        return error(400, "bad_request", '"reason" must be a string')
    if databases:
        unknown = [d for d in databases if d not in state.config.names]
        if unknown:
            return error(400, "unknown_database", f"unknown database(s) {', '.join(repr(d[:80]) for d in unknown[:5])}; "
                         f"configured: {', '.join(state.config.names)}")
    if state.trigger is None:
        return error(503, "unavailable", "no Dagster instance: start `patina serve` with DAGSTER_HOME set to run "
                     "on-demand backups")
    state.audit(_event("trigger", client=guarded.name, auth=guarded.method, ip=guarded.ip,
                       databases=databases or "all", reason=reason))
    try:
        result = await anyio.to_thread.run_sync(lambda: state.trigger(databases or None, reason, f"api:{guarded.name}"))
    except ValueError as exc:
        return error(400, "bad_request", str(exc))
    except (TriggerUnavailable, PatinaError) as exc:
        logger.error("trigger failed: %s", exc)
        return error(503, "unavailable", f"the backup could not be started: {exc}")
    return JSONResponse(result, status_code=502 if result.get("status") == "failed" else 202)


# --------------------------------------------------------------------------------------------------
# OpenAPI
# --------------------------------------------------------------------------------------------------


def openapi_document(config: PatinaConfig) -> dict:
    """OpenAPI 3.0 for the endpoints above; ``db`` is an enum of the configured databases."""
    def json_response(description: str, schema: dict | None = None) -> dict:
        return {"description": description,
                "content": {"application/json": {"schema": schema or {"$ref": "#/components/schemas/Error"}}}}

    errors = {
        "400": json_response("Bad input (the message says what and how to fix it)"),
        "401": json_response("No valid key and not an allowed address", {"$ref": "#/components/schemas/Unauthorized"}),
        "429": {**json_response("Rate limited"), "headers": {"Retry-After": {"schema": {"type": "integer"},
                                                                             "description": "Seconds to wait"}}},
        "503": json_response("The bucket or Dagster cannot be reached"),
    }
    db_param = {"name": "db", "in": "path", "required": True,
                "schema": {"type": "string", "enum": list(config.names)}}
    date_param = {"name": "date", "in": "path", "required": True,
                  "schema": {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}}
    secured = [{"PatinaKey": []}]
    anything = {"type": "object", "additionalProperties": True}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Patina", "version": __version__,
                 "description": "Backups of Cloudflare D1 databases: status, list, download, restore guide, trigger."},
        "components": {
            "securitySchemes": {"PatinaKey": {"type": "apiKey", "in": "header", "name": KEY_HEADER}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"],
                          "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
                "Unauthorized": {"type": "object", "required": ["error", "message"],
                                 "properties": {"error": {"type": "string", "enum": ["unauthorized"]},
                                                "message": {"type": "string"}}},
                "Backup": {"type": "object", "required": ["database", "date", "location", "sizeBytes", "tables", "rows"],
                           "properties": {"database": {"type": "string"}, "date": {"type": "string"},
                                          "location": {"type": "string", "enum": ["daily", "weekly"]},
                                          "key": {"type": "string"}, "member": {"type": "string", "nullable": True},
                                          "size": {"type": "string"}, "sizeBytes": {"type": "integer"},
                                          "storedBytes": {"type": "integer", "nullable": True},
                                          "tables": {"type": "integer"}, "rows": {"type": "integer"},
                                          "createdAt": {"type": "string", "nullable": True},
                                          "archivedAt": {"type": "string", "nullable": True},
                                          "expiresAt": {"type": "string", "nullable": True},
                                          "sqlSha256": {"type": "string"},
                                          "dagsterRunId": {"type": "string", "nullable": True}}},
                "List": {"type": "object", "required": ["backups", "total", "filtered"],
                         "properties": {"backups": {"type": "array", "items": {"$ref": "#/components/schemas/Backup"}},
                                        "total": {"type": "integer"}, "filtered": {"type": "integer"}}},
                "Status": {"type": "object", "required": ["currentStatus", "instance", "storage", "databases"],
                           "properties": {"currentStatus": {"type": "string",
                                                            "enum": ["idle", "running", "queued", "unknown"]},
                                          "instance": anything, "lastBackup": {**anything, "nullable": True},
                                          "nextScheduled": {"type": "string", "nullable": True},
                                          "storage": anything, "databases": {"type": "array", "items": anything}}},
                "TriggerRequest": {"type": "object", "additionalProperties": False, "properties": {
                    "databases": {"type": "array", "items": {"type": "string", "enum": list(config.names)}},
                    "reason": {"type": "string", "maxLength": 500}}},
                "TriggerResponse": {"type": "object", "required": ["jobId", "status", "databases"],
                                    "properties": {"jobId": {"type": "string"}, "status": {"type": "string"},
                                                   "databases": {"type": "integer"}, "message": {"type": "string"}}},
            },
        },
        "paths": {
            "/": {"get": {"summary": "What this API is", "responses": {"200": json_response("Documentation", anything)}}},
            "/health": {"get": {"summary": "Liveness", "responses": {"200": json_response("Alive", anything)}}},
            "/status": {"get": {"summary": "Backup status and recent jobs", "responses": {
                "200": json_response("Status", {"$ref": "#/components/schemas/Status"}), "503": errors["503"]}}},
            "/list": {"get": {
                "summary": "All available backups, newest first",
                "parameters": [
                    {"name": "database", "in": "query", "schema": {"type": "string", "enum": list(config.names)}},
                    {"name": "date", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
                ],
                "responses": {"200": json_response("Backups", {"$ref": "#/components/schemas/List"}),
                              "400": errors["400"], "503": errors["503"]}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "Prometheus text format 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "503": errors["503"]}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": json_response("OpenAPI", anything)}}},
            "/download/{date}/{db}": {"get": {
                "summary": "Download one backup's SQL (checked against its sha256 as it streams)",
                "security": secured, "parameters": [date_param, db_param],
                "responses": {
                    "200": {"description": "The SQL", "headers": {"X-Patina-SQL-SHA256": {"schema": {"type": "string"}}},
                            "content": {"application/sql": {"schema": {"type": "string", "format": "binary"}}}},
                    "404": json_response("No backup of that database on that day"),
                    **{code: errors[code] for code in ("400", "401", "429", "503")}}}},
            "/restore-guide/{db}": {"get": {
                "summary": "How to restore a database, with this installation's commands",
                "security": secured, "parameters": [db_param],
                "responses": {"200": json_response("The guide", anything),
                              **{code: errors[code] for code in ("400", "401", "429", "503")}}}},
            "/trigger": {"post": {
                "summary": "Back up some or all databases now",
                "security": secured,
                "requestBody": {"required": False, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/TriggerRequest"}}}},
                "responses": {"202": json_response("Started", {"$ref": "#/components/schemas/TriggerResponse"}),
                              "502": json_response("Started and already failed (the response says why)",
                                                   {"$ref": "#/components/schemas/TriggerResponse"}),
                              "413": json_response("Body too large"),
                              **{code: errors[code] for code in ("400", "401", "429", "503")}}}},
        },
    }


# --------------------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------------------


def serve(config: PatinaConfig, host: str = "127.0.0.1", port: int = 8080, env: Mapping[str, str] = os.environ) -> None:
    """Run the API until interrupted, with Dagster's instance when ``$DAGSTER_HOME`` is set."""
    import uvicorn

    from .defs.on_demand import DagsterView, open_instance, trigger_backup

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    audit_logger.setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # Dagster's storage migrations say hello on every open
    policy = AccessPolicy.from_env(env)
    if not policy.keys and not policy.networks:
        logger.warning("no %s and no %s: every protected endpoint will answer 401", KEYS_ENV, ALLOWED_IPS_ENV)
    with open_instance(env) as (instance, detail):
        view = DagsterView(config, instance, detail)

        def trigger(databases: list[str] | None, reason: str | None, requested_by: str) -> dict:
            if instance is None:
                raise TriggerUnavailable(detail)
            return trigger_backup(config, instance, databases, reason, requested_by=requested_by).to_dict()

        app = create_app(config, orchestrator=view.read, trigger=trigger if instance is not None else None,
                         policy=policy, public_url=env.get(PUBLIC_URL_ENV))
        logger.info("Patina API on http://%s:%s (%s; %s)", host, port, detail, policy.describe())
        uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, server_header=False)


class BackgroundServer:
    """The app served by uvicorn on a thread, on ``port`` (0: any free port); ``url`` once started."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)  # connections made before the loop runs wait in the backlog: no start-up race
        self.host, self.port = host, self.sock.getsockname()[1]
        # proxy_headers off, as in serve(): uvicorn would otherwise believe X-Forwarded-For from loopback peers.
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", server_header=False,
                                                    proxy_headers=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
