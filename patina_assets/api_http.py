"""What `patina serve` checks before a request reaches its endpoint, and how uvicorn runs it.

``Gate`` is the ASGI middleware in front of the routes. For every request it works out the client's address
(see ``AccessPolicy.client_address``), redacts keys from the path and query (uvicorn's access log prints the
same scope, so it never sees them either; a key in a query parameter is refused), and refuses, before any
endpoint runs: more than ``max_headers`` headers (431), a path and query over ``max_target_bytes`` (414), a
``Host`` that is not this server's (421: a DNS-rebinding page in a browser names its own host), a body where
none belongs or over the endpoint's limit (413), and public reads over ``public_per_minute`` (429). For every
request to a protected endpoint it writes one audit line when the response has ended, whatever the outcome.

uvicorn runs with its h11 protocol (``PatinaH11Protocol``): h11 bounds the request line and headers together
(``h11_max_incomplete_event_size``; httptools, which uvicorn prefers when installed, has no bound), and the
subclass hands each request its connection's transport, from which a download measures what its client
acknowledged.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import uvicorn
from starlette.responses import JSONResponse
from uvicorn.protocols.http.h11_impl import H11Protocol

from .api_limits import Limits, address_key

if TYPE_CHECKING:
    from .api import ApiState

# The first path segment of each protected endpoint, and the audit event its lines carry.
PROTECTED = {"download": "backup_download", "restore-guide": "restore_guide", "trigger": "trigger"}
PUBLIC_LIMITED = ("/status", "/list", "/metrics")
REDACTED = "REDACTED"
_SECRET_NAME = re.compile(r"key|token|secret|passw|auth", re.IGNORECASE)
_OUTCOMES = {
    200: "ok",
    202: "started",
    400: "bad_request",
    401: "denied",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    414: "too_large",
    415: "unsupported_media_type",
    421: "wrong_host",
    429: "rate_limited",
    431: "too_large",
    503: "unavailable",
}


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def allowed_hosts(public_url: str | None, bind_host: str) -> tuple[frozenset[str], bool]:
    """The host names a request may name, and whether any IP literal may (bound to every interface)."""
    names = set()
    if public_url:
        hostname = urlsplit(public_url).hostname
        if hostname:
            names.add(hostname.lower())
    bind = bind_host.strip("[]").lower()
    wildcard = bind in ("0.0.0.0", "::", "")
    if not wildcard:
        names.add(bind)
        try:
            loopback = bind == "localhost" or ipaddress.ip_address(bind).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            names |= {"localhost", "127.0.0.1", "::1"}
    return frozenset(names), wildcard


def host_of(value: str) -> str:
    """``Host``'s name without the port or brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return (value.rpartition(":")[0] if value.count(":") == 1 else value).rstrip(".")


class Gate:
    """The checks every request passes before its endpoint, and the audit line of protected ones."""

    def __init__(self, app: Any, state: ApiState) -> None:
        self.app, self.state = app, state
        self.hosts, self.any_ip = allowed_hosts(state.public_url, state.bind_host)
        header = (state.policy.client_ip_header or "").lower().encode("latin-1")
        self.forwarded_header = header if state.policy.trusted_proxies and header else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        peer = scope["client"][0] if scope.get("client") else "unknown"
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        forwarded = None
        if self.forwarded_header:
            forwarded = next((v.decode("latin-1") for k, v in headers if k == self.forwarded_header), None)
        ip = state.policy.client_address(peer, forwarded)
        scope["patina.ip"] = ip
        key_in_url = self._redact(scope)
        event = PROTECTED.get(scope["path"].lstrip("/").split("/", 1)[0])
        refusal = key_in_url or self._check(scope, headers, ip)
        if event is None:
            await (refusal or self.app)(scope, receive, send)
            return
        record: dict[str, Any] = {"event": event, "method": scope["method"], "path": scope["path"][:200], "ip": ip}
        if ip != peer:
            record["peer"] = peer
        if key_in_url is not None:
            record["outcome"] = "key_in_url"
        scope["patina.audit"] = record
        status = None

        async def tracking_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.monotonic()
        try:
            await (refusal or self.app)(scope, receive, tracking_send)
        finally:
            record["status"] = status
            record.setdefault(
                "outcome", _OUTCOMES.get(status or 0, "client_disconnected" if status is None else "error")
            )
            record["seconds"] = round(time.monotonic() - started, 3)
            state.write_audit(record)

    def _redact(self, scope: dict) -> JSONResponse | None:
        """Replace any key in the path or query by REDACTED; refuse key-like query parameters."""
        policy = self.state.policy
        refusal = None
        segments = scope["path"].split("/")
        if any(len(s) >= 16 and policy.is_key(s) for s in segments):
            scope["path"] = "/".join(REDACTED if len(s) >= 16 and policy.is_key(s) else s for s in segments)
            scope["raw_path"] = scope["path"].encode()
        query = scope.get("query_string") or b""
        if query:
            pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            secret = [name for name, _ in pairs if _SECRET_NAME.search(name)]
            if secret or any(policy.is_key(value) for _, value in pairs):
                scope["query_string"] = urlencode(
                    [(n, REDACTED if _SECRET_NAME.search(n) or policy.is_key(v) else v) for n, v in pairs]
                ).encode()
            if secret:
                refusal = error(
                    400,
                    "key_in_url",
                    "send the key in the X-Patina-Key header, never in the URL (URLs "
                    "end up in logs and browser histories); if it was a real key, rotate it",
                )
        return refusal

    def _check(self, scope: dict, headers: list[tuple[bytes, bytes]], ip: str) -> JSONResponse | None:
        limits: Limits = self.state.limits
        if len(headers) > limits.max_headers:
            return error(431, "too_many_headers", f"at most {limits.max_headers} headers")
        if len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") > limits.max_target_bytes:
            return error(414, "uri_too_long", f"the path and query must be at most {limits.max_target_bytes} bytes")
        host = next((v.decode("latin-1") for k, v in headers if k == b"host"), None)
        if host is not None and not self._host_allowed(host_of(host)):
            return error(
                421, "wrong_host", "this server does not answer for that host name; use its own URL (PATINA_PUBLIC_URL)"
            )
        body_limit = limits.trigger_body_bytes if scope["path"] == "/trigger" else 0
        length = next((v for k, v in headers if k == b"content-length"), b"0")
        chunked = any(k == b"transfer-encoding" for k, _ in headers)
        if not length.isdigit() or int(length) > body_limit or (chunked and body_limit == 0):
            return error(413, "too_large", f"the request body must be at most {body_limit} bytes here")
        if scope["path"] in PUBLIC_LIMITED:
            wait = self.state.public.admit(address_key(ip))
            if wait is not None:
                return error(
                    429,
                    "rate_limited",
                    f"at most {limits.public_per_minute} requests a minute per address "
                    f"to {scope['path']}; retry in {wait}s",
                    {"Retry-After": str(wait)},
                )
        return None

    def _host_allowed(self, host: str) -> bool:
        if host in self.hosts:
            return True
        if self.any_ip:
            try:
                ipaddress.ip_address(host)
                return True
            except ValueError:
                return False
        return False


# --------------------------------------------------------------------------------------------------
# uvicorn
# --------------------------------------------------------------------------------------------------


class PatinaH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with the connection's transport in each request's scope
    (``scope["extensions"]["patina.transport"]``): a download reads its socket's unsent queue from it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app = self.app

        async def with_transport(scope: dict, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})["patina.transport"] = self.transport
            await app(scope, receive, send)

        self.app = with_transport


def uvicorn_config(app: Any, limits: Limits, **options: Any) -> uvicorn.Config:
    """How `patina serve` and the tests run the app: h11 with its head bound, no proxy headers (the app decides
    which proxies to believe), no server header."""
    return uvicorn.Config(
        app,
        http=PatinaH11Protocol,
        h11_max_incomplete_event_size=limits.max_head_bytes,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=5,
        **options,
    )


class BackgroundServer:
    """The app served by uvicorn on a thread, on ``port`` (0: any free port); ``url`` once started."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, send_buffer: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if send_buffer is not None:  # accepted connections inherit it (tests: a small one fills quickly)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self.sock.bind((host, port))
        self.sock.listen(128)  # connections made before the loop runs wait in the backlog: no start-up race
        self.host, self.port = host, self.sock.getsockname()[1]
        limits = app.state.patina.limits
        self.server = uvicorn.Server(uvicorn_config(app, limits, log_level="warning", lifespan="off"))
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
