"""A real S3 API on loopback for tests: moto's server, and a fault-injecting HTTP proxy in front of it.

* ``moto_server()`` starts ``moto.server.ThreadedMotoServer`` on 127.0.0.1 with an OS-chosen port and
  yields its endpoint URL.  Code under test talks HTTP to it exactly as it would to R2.
* ``create_bucket(endpoint)`` makes a fresh, uniquely named bucket (moto's state is process-wide).
* ``FaultProxy(upstream)`` is a small HTTP/1.1 proxy that forwards every request to moto, records what it
  saw (operation, key, part number, body size, headers) and can fail chosen requests: answer an S3 error
  (``action="error"``) or drop the connection without answering (``action="drop"``), e.g. the 2nd
  UploadPart, or every PutObject of a key matching a pattern.
* ``iam_enforced(endpoint)`` and ``create_access_key(...)`` switch on moto's IAM checks so that refused
  credentials produce the real S3 errors (AccessDenied, InvalidAccessKeyId).

moto refuses CreateBucket in region ``auto`` (R2's), so everything here uses ``us-east-1``.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REGION = "us-east-1"
TEST_ACCESS_KEY = "testing"
TEST_SECRET_KEY = "testing"


# --------------------------------------------------------------------------------------------------
# moto
# --------------------------------------------------------------------------------------------------


@contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's S3 (and IAM) server on 127.0.0.1:<free port>; yield ``http://127.0.0.1:<port>``."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def direct_client(endpoint_url: str, service: str = "s3", **credentials: str) -> Any:
    """A plain boto3 client straight to moto (no proxy), for setting up and inspecting state."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=credentials.get("access_key_id", TEST_ACCESS_KEY),
        aws_secret_access_key=credentials.get("secret_access_key", TEST_SECRET_KEY),
    )


def patina_client(endpoint_url: str, *, max_retries: int = 0) -> Any:
    """Patina's own S3 client (`storage.make_s3_client`, as production builds it) with moto's test credentials.
    No retries by default: an injected fault stays a fault."""
    from patina_assets.storage import make_s3_client

    return make_s3_client(endpoint_url, REGION, TEST_ACCESS_KEY, TEST_SECRET_KEY, max_retries=max_retries)


def create_bucket(endpoint_url: str, name: str | None = None) -> str:
    """Create a fresh bucket and return its name."""
    name = name or f"patina-test-{uuid.uuid4().hex[:12]}"
    direct_client(endpoint_url).create_bucket(Bucket=name)
    return name


def pending_uploads(endpoint_url: str, bucket: str) -> list[dict[str, Any]]:
    """Multipart uploads started and neither completed nor aborted."""
    return direct_client(endpoint_url).list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def create_access_key(endpoint_url: str, actions: list[str]) -> tuple[str, str]:
    """An IAM user allowed only ``actions`` (e.g. ``["s3:GetObject"]``); returns (key id, secret)."""
    iam = direct_client(endpoint_url, "iam")
    user = f"patina-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
    iam.put_user_policy(UserName=user, PolicyName="patina-test", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@contextmanager
def iam_enforced(endpoint_url: str) -> Iterator[None]:
    """Make moto check signatures and IAM policies for every request until the block ends."""
    previous = _reset_auth(endpoint_url, "0")
    try:
        yield
    finally:
        _reset_auth(endpoint_url, previous)


def _reset_auth(endpoint_url: str, count: str) -> str:
    request = urllib.request.Request(
        f"{endpoint_url}/moto-api/reset-auth",
        data=count.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},  # a form content type would hide the body from moto
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"])


# --------------------------------------------------------------------------------------------------
# The fault-injecting proxy
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyRequest:
    """One request as the proxy saw it (path-style addressing: ``/bucket/key``)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body_size: int
    bucket: str
    key: str
    operation: str
    status: int | None = None  # what the client got; None when the connection was dropped

    @property
    def part_number(self) -> int | None:
        values = self.query.get("partNumber")
        return int(values[0]) if values else None


@dataclass
class Fault:
    """Fail requests matching ``operation`` (a name or tuple of names), ``key`` (a regex searched in the
    key) and ``part_number``, after letting ``skip`` matches through, ``times`` times (None: always)."""

    operation: str | tuple[str, ...] | None = None
    key: str | None = None
    part_number: int | None = None
    skip: int = 0
    times: int | None = None
    # "error": answer an S3 error document; "drop": close without forwarding or answering;
    # "lose_response": forward (so the write happens) but close instead of relaying moto's answer;
    # "hold": set ``reached`` and keep the request unanswered until ``release`` is set, then drop it
    # (a test knows the client is mid-request, e.g. mid-upload, and can kill it there).
    action: str = "error"
    status: int = 500
    code: str = "InternalError"
    message: str = "We encountered an internal error. Please try again. (injected by FaultProxy)"
    seen: int = 0
    fired: int = 0
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def matches(self, request: ProxyRequest) -> bool:
        operations = (self.operation,) if isinstance(self.operation, str) else self.operation
        return (
            (operations is None or request.operation in operations)
            and (self.key is None or re.search(self.key, request.key) is not None)
            and (self.part_number is None or request.part_number == self.part_number)
        )

    def take(self) -> bool:
        """Count one match; True if this one is to fail (call with the proxy's lock held)."""
        self.seen += 1
        if self.seen <= self.skip or (self.times is not None and self.fired >= self.times):
            return False
        self.fired += 1
        return True


_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)


class FaultProxy:
    """An HTTP proxy on 127.0.0.1:<free port> in front of ``upstream`` (moto), recording and failing requests."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.faults: list[Fault] = []
        self.requests: list[ProxyRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-proxy", daemon=True
        )

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for fault in self.faults:
            fault.release.set()  # held requests end
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # -- configuring and inspecting -----------------------------------------------------------

    def fail(self, **kwargs: Any) -> Fault:
        """Add a ``Fault(**kwargs)``; returns it (its ``fired`` count tells whether it was used)."""
        fault = Fault(**kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Forget the faults and the recorded requests."""
        with self._lock:
            self.faults.clear()
            self.requests.clear()

    def seen(self, operation: str | None = None) -> list[ProxyRequest]:
        """Recorded requests, optionally only those of one operation, in arrival order."""
        with self._lock:
            return [r for r in self.requests if operation is None or r.operation == operation]

    # -- used by the handler -------------------------------------------------------------------

    def _fault_for(self, request: ProxyRequest) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(request) and fault.take():
                    return fault
        return None

    def _record(self, request: ProxyRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            outgoing = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or method in ("PUT", "POST"):
                outgoing["Content-Length"] = str(len(body))
            connection.request(method, path, body=body or None, headers=outgoing)
            response = connection.getresponse()
            payload = response.read()
            return response.status, response.getheaders(), payload
        finally:
            connection.close()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and an immediate "100 Continue" for botocore's Expect header

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence per-request logging
        pass

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._reply(501, [], b"FaultProxy does not handle chunked request bodies")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = _describe(self.command, self.path, dict(self.headers.items()), len(body))
        fault = proxy._fault_for(request)
        if fault is not None and fault.action == "hold":
            proxy._record(request)
            fault.reached.set()
            fault.release.wait(60)
            self.close_connection = True
            return
        if fault is not None and fault.action in ("drop", "lose_response"):
            if fault.action == "lose_response":
                proxy._forward(self.command, self.path, dict(self.headers.items()), body)
            proxy._record(request)
            self.close_connection = True  # no answer at all: the client sees the connection close
            return
        if fault is not None:
            proxy._record(_with_status(request, fault.status))
            self._reply(fault.status, [("Content-Type", "application/xml")], _error_document(fault))
            return
        status, headers, payload = proxy._forward(self.command, self.path, dict(self.headers.items()), body)
        proxy._record(_with_status(request, status))
        self._reply(status, headers, payload)

    def _reply(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status)
        upstream_length = None
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length":
                upstream_length = value
            elif lower not in _HOP_BY_HOP and lower not in ("server", "date"):
                self.send_header(name, value)
        # A HEAD answer describes the object without carrying it: keep moto's Content-Length.
        length = upstream_length if self.command == "HEAD" and upstream_length is not None else str(len(payload))
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def _with_status(request: ProxyRequest, status: int) -> ProxyRequest:
    return ProxyRequest(**{**request.__dict__, "status": status})


def _error_document(fault: Fault) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{fault.code}</Code><Message>{fault.message}</Message>"
        "<RequestId>fault-proxy</RequestId></Error>"
    ).encode()


def _describe(method: str, target: str, headers: dict[str, str], body_size: int) -> ProxyRequest:
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
    return ProxyRequest(
        method=method,
        path=parts.path,
        query=query,
        headers={k.lower(): v for k, v in headers.items()},
        body_size=body_size,
        bucket=bucket,
        key=key,
        operation=_operation(method, bucket, key, query),
    )


def _operation(method: str, bucket: str, key: str, query: dict[str, list[str]]) -> str:
    """Name the S3 operation of a path-style request, as botocore calls it."""
    if bucket == "moto-api":
        return "MotoApi"
    if not key:
        bucket_ops = {
            ("GET", "list-type"): "ListObjectsV2",
            ("GET", "uploads"): "ListMultipartUploads",
            ("POST", "delete"): "DeleteObjects",
        }
        for (verb, marker), name in bucket_ops.items():
            if method == verb and marker in query:
                return name
        return {"GET": "ListObjects", "PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(
            method, f"{method} bucket"
        )
    if method == "PUT":
        return "UploadPart" if "partNumber" in query else "PutObject"
    if method == "POST":
        return "CreateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    return "HeadObject" if method == "HEAD" else f"{method} object"
