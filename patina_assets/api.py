"""`patina serve`: the spec's HTTP API over the bucket (and Dagster, when there is one).

Built on Starlette and served by uvicorn: both come with dagster-webserver (pinned by it), so the API adds no
dependency, and Starlette gives routing, streaming and an ASGI app that tests drive over real HTTP.

Endpoints (the OpenAPI document is ``GET /openapi.json``):

* public: ``/`` (what this is), ``/health``, ``/status``, ``/list``, ``/metrics`` (Prometheus text);
* protected: ``GET /download/{date}/{db}``, ``GET /restore-guide/{db}``, ``POST /trigger``.

The pieces, each in its module: who may call (keys with scopes and expiry, allowed addresses, trusted
proxies: ``api_access``), the limits (bounded windows, download slots, the cached snapshot: ``api_limits``),
the checks before any endpoint and the audit line of every protected request (``api_http``), where audit
lines are kept (``api_audit``), and the watched download stream (``api_download``).

Order of a protected request: authentication first; a request without a valid key counts against its
address (30 an hour, so keys cannot be guessed quickly) and gets the spec's 401; a valid one counts against
its key (30 an hour), then its scopes decide (403). A download takes one of 2 slots, then one of the key's 10
an hour (a busy refusal costs nothing). Over a limit: 429 with ``Retry-After``. Public ``/status``, ``/list``
and ``/metrics`` are served from a snapshot at most ``snapshot_seconds`` old, limited per address, and show
no key names, trigger reasons, paths or error details without a key.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import __version__
from .api_access import KEY_HEADER, AccessPolicy, Client, Denied, parse_keys, parse_networks
from .api_audit import AuditLog, audit_logger
from .api_download import DownloadResponse
from .api_http import BackgroundServer, Gate, error, uvicorn_config
from .api_limits import Cached, Limits, Slots, WindowLimiter, address_key
from .api_openapi import openapi_document
from .catalog import BackupNotFound, Catalog, iso, list_document
from .config import PatinaConfig
from .engine.errors import PatinaError
from .fleets import with_tenants
from .guide import restore_guide
from .status import Orchestrator, Snapshot, unavailable
from .storage import AGE_CONTENT_TYPE, InvalidKey, StorageError, format_day

__all__ = [
    "AccessPolicy",
    "BackgroundServer",
    "Limits",
    "TriggerUnavailable",
    "create_app",
    "openapi_document",
    "parse_keys",
    "parse_networks",
    "serve",
]

logger = logging.getLogger(__name__)

PUBLIC_URL_ENV = "PATINA_PUBLIC_URL"
UNAUTHORIZED = {"error": "unauthorized", "message": "Valid authentication required to download backups"}
_LIMIT = re.compile(r"^[0-9]{1,5}$")


class TriggerUnavailable(Exception):
    """No Dagster instance to submit an on-demand backup to."""


Trigger = Callable[[list[str] | None, str | None, str], dict]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ApiState:
    config: PatinaConfig
    catalog: Callable[[], Catalog]
    orchestrator: Callable[[], Orchestrator]
    trigger: Trigger | None
    policy: AccessPolicy
    limits: Limits
    clock: Callable[[], float]  # windows and stalls (monotonic seconds)
    audit: Callable[[dict], None]
    public_url: str | None = None
    bind_host: str = "127.0.0.1"
    now: Callable[[], datetime] = _utc_now  # key expiry and audit timestamps

    def __post_init__(self) -> None:
        lim, clock, size = self.limits, self.clock, self.limits.addresses_tracked
        self.per_client = WindowLimiter(lim.requests_per_hour, lim.window_seconds, clock, size)
        self.failures = WindowLimiter(lim.failures_per_hour, lim.window_seconds, clock, size)
        self.downloads = WindowLimiter(lim.downloads_per_hour, lim.window_seconds, clock, size)
        self.public = WindowLimiter(lim.public_per_minute, 60.0, clock, size)
        self.slots = Slots(lim.concurrent_downloads)
        self.snapshot = Cached(
            lambda: Snapshot.take(self.config, self.catalog(), self.orchestrator()), lim.snapshot_seconds, clock
        )

    def write_audit(self, record: dict) -> None:
        self.audit({"timestamp": iso(self.now()), **record})


def create_app(
    config: PatinaConfig,
    *,
    catalog: Callable[[], Catalog] | None = None,
    orchestrator: Callable[[], Orchestrator] | None = None,
    trigger: Trigger | None = None,
    policy: AccessPolicy | None = None,
    limits: Limits | None = None,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = _utc_now,
    audit: Callable[[dict], None] | None = None,
    public_url: str | None = None,
    bind_host: str = "127.0.0.1",
) -> Starlette:
    """The API as an ASGI app. Everything that touches the outside is injectable (tests pass clocks)."""
    if catalog is None:
        shared = Catalog.for_config(config)  # one bucket client for every request (boto3 clients are thread-safe)
        catalog = lambda: shared  # noqa: E731
    policy = policy if policy is not None else AccessPolicy.from_env()
    policy.check_databases(config.names)
    state = ApiState(
        config=config,
        catalog=catalog,
        orchestrator=orchestrator or (lambda: unavailable("no Dagster instance was given to the server")),
        trigger=trigger,
        policy=policy,
        limits=limits or Limits(),
        clock=clock,
        audit=audit or AuditLog(),
        public_url=public_url,
        bind_host=bind_host,
        now=now,
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
        middleware=[Middleware(Gate, state=state)],
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


def _record(request: Request) -> dict:
    """This request's audit record (the gate writes it when the response ends); a scratch dict elsewhere."""
    return request.scope.get("patina.audit", {})


def _ip(request: Request) -> str:
    return request.scope.get("patina.ip") or (request.client.host if request.client else "unknown")


async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("bucket error on %s: %s", request.url.path, exc)
    _record(request)["outcome"] = "storage_error"
    return error(503, "storage_unavailable", "the backup bucket could not be read; try again later")


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return error(404, "not_found", "no such endpoint: GET / lists them")


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    allow = getattr(exc, "headers", None) or {}
    return error(
        405,
        "method_not_allowed",
        f"{request.method} is not allowed on {request.url.path}: GET / lists the endpoints",
        {k: v for k, v in allow.items() if k.lower() == "allow"},
    )


# -- who asks ----------------------------------------------------------------------------------


def _authenticate(request: Request) -> Client | Response | None:
    """The caller: a client (valid key or allowed address), None (no key: anyone), or the 401/429 to send
    for a key that is not valid. Every refused key counts against the address, wherever it is tried."""
    state = _state(request)
    key, ip = request.headers.get(KEY_HEADER), _ip(request)
    found = state.policy.authenticate(key, ip, state.now())
    if isinstance(found, Client):
        return found
    record = _record(request)
    record["reason"] = found.reason
    if key is None and isinstance(found, Denied) and request.url.path in ("/status", "/list"):
        return None
    wait = state.failures.admit(address_key(ip))
    if wait is not None:
        return error(
            429,
            "rate_limited",
            f"too many requests without a valid key from this address: at most "
            f"{state.limits.failures_per_hour} an hour; retry in {wait}s",
            {"Retry-After": str(wait)},
        )
    return JSONResponse(UNAUTHORIZED, status_code=401)


def _guard(request: Request, action: str) -> Client | Response:
    """Authentication, then the key's own limit, then its actions. The client, or the response to send."""
    state = _state(request)
    found = _authenticate(request)
    if not isinstance(found, Client):
        return found or JSONResponse(UNAUTHORIZED, status_code=401)
    record = _record(request)
    record.update(client=found.name, auth=found.method)
    wait = state.per_client.admit(found.name)
    if wait is not None:
        return error(
            429,
            "rate_limited",
            f"too many requests with this key: at most {state.limits.requests_per_hour} an hour; retry in {wait}s",
            {"Retry-After": str(wait)},
        )
    if not found.may(action):
        return _forbidden(found, action)
    return found


def _forbidden(client: Client, action: str, database: str | None = None) -> JSONResponse:
    what = f"{action} {database}" if database else action
    allowed = f"databases: {', '.join(sorted(client.databases))}" if client.databases is not None else "every database"
    return error(
        403,
        "forbidden",
        f"the key {client.name} may not {what} (actions: {', '.join(sorted(client.actions))}; {allowed})",
    )


# -- public ------------------------------------------------------------------------------------


async def _index(request: Request) -> JSONResponse:
    config = _state(request).config
    r = config.retention
    return JSONResponse(
        {
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
                "POST /trigger": f"Manually trigger a backup (needs {KEY_HEADER} and a JSON body)",
                "GET /download/{date}/{db}": f"Download a specific backup (needs {KEY_HEADER})",
                "GET /restore-guide/{db}": f"Restore instructions for a database (needs {KEY_HEADER})",
                "GET /metrics": "Prometheus metrics",
                "GET /openapi.json": "The OpenAPI document",
            },
        }
    )


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "version": __version__})


async def _snapshot(request: Request) -> Snapshot:
    return await anyio.to_thread.run_sync(_state(request).snapshot.get)


def public_status(document: dict) -> dict:
    """``/status`` for anyone: no instance detail (paths, error classes), no trigger reasons or who asked,
    no storage problem texts (object keys); their count stays."""

    def run(summary: dict | None) -> dict | None:
        return None if summary is None else {k: v for k, v in summary.items() if k not in ("reason", "trigger")}

    storage = {k: v for k, v in document["storage"].items() if k != "problems"}
    storage["problemCount"] = len(document["storage"].get("problems", []))
    return {
        **document,
        "instance": {"available": document["instance"]["available"]},
        "running": [run(r) for r in document["running"]],
        "recentJobs": [run(r) for r in document["recentJobs"]],
        "lastBackup": run(document["lastBackup"]),
        "storage": storage,
    }


async def _status(request: Request) -> Response:
    viewer = _authenticate(request)
    if isinstance(viewer, Response):
        return viewer
    document = (await _snapshot(request)).to_dict()
    return JSONResponse(document if viewer is not None else public_status(document))


async def _metrics(request: Request) -> Response:
    text = (await _snapshot(request)).metrics()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


async def _list(request: Request) -> Response:
    state = _state(request)
    params = request.query_params
    unknown = sorted(set(params) - {"database", "date", "limit"})
    if unknown:
        return error(
            400,
            "bad_request",
            f"unknown query parameter(s) {', '.join(u[:40] for u in unknown[:5])}: use database, date, limit",
        )
    database = params.get("database") or None
    if database is not None and database not in (await _with_tenants(state, database)).names:
        return error(
            400, "unknown_database", f"no database named {database[:80]!r}; configured: {', '.join(state.config.names)}"
        )
    day = params.get("date") or None
    if day is not None:
        try:
            day = format_day(day)
        except InvalidKey:
            return error(400, "invalid_date", "date must be a real date as YYYY-MM-DD")
    limit = None
    if params.get("limit"):
        if not _LIMIT.match(params["limit"]) or not 1 <= int(params["limit"]) <= 10_000:
            return error(400, "invalid_limit", "limit must be a whole number from 1 to 10000")
        limit = int(params["limit"])
    viewer = _authenticate(request)
    if isinstance(viewer, Response):
        return viewer
    document = list_document((await _snapshot(request)).backups, database=database, day=day, limit=limit)
    if viewer is None:  # bucket keys are for key holders
        document["backups"] = [{k: v for k, v in b.items() if k not in ("key", "member")} for b in document["backups"]]
    return JSONResponse(document)


async def _openapi(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document(_state(request).config))


# -- protected ---------------------------------------------------------------------------------


async def _download(request: Request) -> Response:
    state, record = _state(request), _record(request)
    day, db = request.path_params["date"], request.path_params["db"]
    record.update(database=db[:80], date=day[:20])
    guarded = _guard(request, "download")
    if isinstance(guarded, Response):
        return guarded
    client = guarded
    problem = _check_day_and_db(await _with_tenants(state, db), day, db)
    if problem is not None:
        return problem
    if not client.may("download", db):
        return _forbidden(client, "download", db)
    day = format_day(day)
    catalog = state.catalog()
    try:
        backup = await anyio.to_thread.run_sync(lambda: catalog.find(day, db))
    except BackupNotFound:
        return error(404, "not_found", f"no backup of {db} on {day}: GET /list?database={db} shows its backups")
    record["source"] = backup.location
    # An encrypted backup is decrypted here only when this server holds the identity and the key may have
    # plaintext; otherwise the client gets the stored age file (`age -d -i key.txt` opens it).
    plaintext = not backup.encrypted or (
        client.may("plaintext", db) and await anyio.to_thread.run_sync(catalog.store.keys.has_identity)
    )
    record["encrypted"] = not plaintext
    if plaintext:
        media_type = "application/sql"
        headers = {
            "Content-Disposition": f'attachment; filename="{backup.filename}"',
            "Content-Length": str(backup.sql_bytes),
            "X-Patina-SQL-SHA256": backup.sql_sha256,
            "Cache-Control": "no-store",
        }
    else:
        media_type = AGE_CONTENT_TYPE
        size, sha256 = backup.stored_digest
        headers = {
            "Content-Disposition": f'attachment; filename="{backup.stored_filename}"',
            "Content-Length": str(size),
            "X-Patina-Encrypted": "age",
            "X-Patina-Stored-SHA256": sha256,
            "X-Patina-SQL-SHA256": backup.sql_sha256,
            "Cache-Control": "no-store",
        }
        if backup.member:
            headers["X-Patina-Member"] = backup.member
    if request.method == "HEAD":
        record["outcome"] = "head"
        return Response(status_code=200, headers=headers, media_type=media_type)
    if not state.slots.take():  # before the hourly count: a busy refusal costs the client nothing
        record["outcome"] = "busy"
        return error(
            429,
            "busy",
            f"{state.limits.concurrent_downloads} downloads are already running; retry shortly",
            {"Retry-After": str(state.limits.busy_retry_after)},
        )
    wait = state.downloads.admit(client.name)
    if wait is not None:
        state.slots.give()
        return error(
            429,
            "rate_limited",
            f"at most {state.limits.downloads_per_hour} downloads an hour per client; retry in {wait}s",
            {"Retry-After": str(wait)},
        )
    try:
        reader = await anyio.to_thread.run_sync(
            lambda: catalog.open_sql(backup) if plaintext else catalog.open_stored(backup)
        )
    except BaseException:
        state.slots.give()
        state.downloads.refund(client.name)
        raise
    return DownloadResponse(state, client, backup, reader, headers, record, media_type)


async def _with_tenants(state: ApiState, name: str) -> PatinaConfig:
    """The configuration, with the fleets' tenants (from their rosters in the bucket) when ``name`` is not a
    configured database: a tenant's backups are listed, downloaded and guided as a database's, as the CLI does."""
    if name in state.config.names or not state.config.fleets:
        return state.config
    return await anyio.to_thread.run_sync(lambda: with_tenants(state.config, state.catalog().store))


def _check_day_and_db(config: PatinaConfig, day: str, db: str) -> Response | None:
    if db not in config.names:
        return error(400, "unknown_database", f"no database named {db[:80]!r}; configured: {', '.join(config.names)}")
    try:
        format_day(day)
    except InvalidKey:
        return error(400, "invalid_date", "the date must be a real date as YYYY-MM-DD")
    return None


async def _restore_guide(request: Request) -> Response:
    state, record = _state(request), _record(request)
    db = request.path_params["db"]
    record["database"] = db[:80]
    guarded = _guard(request, "restore-guide")
    if isinstance(guarded, Response):
        return guarded
    config = await _with_tenants(state, db)
    if db not in config.names:
        return error(
            400, "unknown_database", f"no database named {db[:80]!r}; configured: {', '.join(state.config.names)}"
        )
    if not guarded.may("restore-guide", db):
        return _forbidden(guarded, "restore-guide", db)
    database = config.database(db)
    catalog = state.catalog()

    def guide() -> dict:  # the listing, then the newest backup's manifest: bucket reads, off the event loop
        backups = catalog.backups(database=db)
        return restore_guide(config, database, backups, base_url=base_url, manifest_of=catalog.manifest_of)

    base_url = state.public_url or str(request.base_url)
    return JSONResponse(await anyio.to_thread.run_sync(guide))


def _cross_origin(request: Request, public_url: str | None) -> str | None:
    """Why a request comes from another site's page, or None. Browsers send Sec-Fetch-Site and Origin on
    POSTs; scripts and curl send neither."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site: {site[:20]}"
    origin = request.headers.get("origin")
    if origin is not None:
        own = {f"{request.url.scheme}://{request.headers.get('host', '')}".lower()}
        if public_url:
            own.add(public_url.rstrip("/").lower())
        if origin.rstrip("/").lower() not in own:
            return f"Origin: {origin[:80]}"
    return None


async def _trigger(request: Request) -> Response:

    state, record = _state(request), _record(request)
    cross = _cross_origin(request, state.public_url)
    if cross is not None:
        record["reason"] = f"cross-origin ({cross})"
        return error(403, "cross_origin", "POST /trigger does not accept requests from web pages of other sites")
    guarded = _guard(request, "trigger")
    if isinstance(guarded, Response):
        return guarded
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return error(
            415,
            "unsupported_media_type",
            "send the body as Content-Type: application/json, e.g. "
            '{"databases": ["name"], "reason": "why"} ({} backs up every database)',
        )
    limit = state.limits.trigger_body_bytes
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            return error(413, "too_large", f"the request body must be at most {limit} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return error(
            400,
            "bad_request",
            'the body must be JSON: {"databases": ["name", ...], "reason": "why"} ({} backs up every database)',
        )
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
            return error(
                400,
                "unknown_database",
                f"unknown database(s) {', '.join(repr(d[:80]) for d in unknown[:5])}; "
                f"configured: {', '.join(state.config.names)}",
            )
    try:
        from .orchestrator import check_request

        check_request(state.config, databases or None, reason)  # before the reason goes into the audit line
    except ValueError as exc:
        return error(400, "bad_request", str(exc))
    denied = [d for d in (databases or state.config.names) if not guarded.may("trigger", d)]
    if denied:
        return _forbidden(
            guarded, "trigger", ", ".join(denied[:5]) + (" (name the databases)" if not databases else "")
        )
    if state.trigger is None:
        return error(
            503,
            "unavailable",
            "no Dagster instance: start `patina serve` with DAGSTER_HOME set to run on-demand backups",
        )
    record.update(databases=databases or "all", reason=reason)
    try:
        result = await anyio.to_thread.run_sync(lambda: state.trigger(databases or None, reason, f"api:{guarded.name}"))
    except ValueError as exc:
        return error(400, "bad_request", str(exc))
    except (TriggerUnavailable, PatinaError) as exc:
        logger.error("trigger failed: %s", exc)
        return error(503, "unavailable", f"the backup could not be started: {exc}")
    return JSONResponse(result, status_code=502 if result.get("status") == "failed" else 202)


# --------------------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------------------


def serve(config: PatinaConfig, host: str = "127.0.0.1", port: int = 8080, env: Mapping[str, str] = os.environ) -> None:
    """Run the API until interrupted, with Dagster's instance when ``$DAGSTER_HOME`` is set."""
    import uvicorn

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    audit_logger.setLevel(logging.INFO)
    logger.setLevel(logging.INFO)  # what it serves and ignores is said at start, whatever the CLI's quiet level
    logging.getLogger("alembic").setLevel(logging.WARNING)  # Dagster's storage migrations say hello on every open
    policy = AccessPolicy.from_env(env)
    public_url = env.get(PUBLIC_URL_ENV)
    for warning in policy.warnings(host, public_url):
        logger.warning(warning)
    shared = Catalog.for_config(config, env)
    audit = AuditLog.from_env(env, lambda: shared.store.bucket)
    from .orchestrator import DagsterView, open_instance, trigger_backup

    with open_instance(env) as (instance, detail):
        view = DagsterView(config, instance, detail)

        def trigger(databases: list[str] | None, reason: str | None, requested_by: str) -> dict:
            if instance is None:
                raise TriggerUnavailable(detail)
            return trigger_backup(config, instance, databases, reason, requested_by=requested_by).to_dict()

        app = create_app(
            config,
            catalog=lambda: shared,
            orchestrator=view.read,
            trigger=trigger if instance is not None else None,
            policy=policy,
            audit=audit,
            public_url=public_url,
            bind_host=host,
        )
        logger.info("Patina API on http://%s:%s (%s; %s; %s)", host, port, detail, policy.describe(), audit.describe())
        try:
            uvicorn.Server(uvicorn_config(app, app.state.patina.limits, host=host, port=port, log_level="info")).run()
        finally:
            audit.close()
