"""`patina serve` under attack, over real HTTP on loopback: each finding of the attack on it (issue 13) as a
test. Forged client addresses, anonymous traffic against key holders, clients that stop reading, 30,000 forged
addresses, huge headers, DNS rebinding, cross-origin POSTs, keys in URLs, what public endpoints disclose, and
the runbook's curl on a damaged backup. Time windows use injected clocks; nothing sleeps."""

import dataclasses
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.api_server import KEY, KEYS, OTHER_KEY, Audit, Clock, key, serve  # noqa: F401 (fixture)
from support.configs import small_database
from support.filled import DAILY_DAY, copy_of, filled

from patina_assets.api import AccessPolicy, Limits, parse_networks
from patina_assets.api_audit import AuditLog, BucketAudit
from patina_assets.api_limits import Cached
from patina_assets.backup import Cloudflare, back_up, open_store
from patina_assets.catalog import Catalog
from patina_assets.status import JobRun, Orchestrator
from patina_assets.storage import AUDIT_PREFIX

BIG_DAY = "2026-03-10"
RUNBOOK = Path(__file__).parent.parent / "docs" / "disaster-recovery.md"


@pytest.fixture(scope="module")
def big_bucket(tmp_path_factory):
    """The filled bucket plus a ~4.5 MB backup of groveauth on BIG_DAY: more than any socket buffer holds."""
    directory = tmp_path_factory.mktemp("big")
    bucket = copy_of(filled("local"), directory / "copy")
    source = small_database(directory / "big.sqlite", 1500, blob_bytes=1500)
    database = dataclasses.replace(bucket.config.database("groveauth"), sqlite_path=source)
    back_up(database, BIG_DAY, open_store(bucket.config), Cloudflare("http://127.0.0.1:9", None), bucket.config.dump)
    return bucket


def slow_reader(client, path, headers=key()):
    """A raw connection with a tiny receive buffer that asks for ``path`` and reads only the response head."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((client.server.host, client.server.port))
    lines = [f"GET {path} HTTP/1.1", f"Host: {client.server.host}", *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    return sock, head


def drain(sock) -> int:
    """Read until the server ends the connection; the bytes read."""
    total = 0
    sock.settimeout(10)
    try:
        while chunk := sock.recv(1 << 16):
            total += len(chunk)
    except ConnectionResetError:
        pass
    sock.close()
    return total


# -- clients that stop reading --------------------------------------------------------------------


def test_a_client_that_stops_reading_is_cut_frees_its_slot_and_the_audit_counts_what_it_acknowledged(serve, big_bucket):
    clock = Clock()
    client = serve(
        big_bucket, send_buffer=16384, clock=clock, limits=Limits(concurrent_downloads=1, watch_interval=0.02)
    )
    size = Catalog.for_config(big_bucket.config).find(BIG_DAY, "groveauth").sql_bytes
    sock, head = slow_reader(client, f"/download/{BIG_DAY}/groveauth")
    assert head.startswith(b"HTTP/1.1 200") and size > 4_000_000
    busy = client.get(f"/download/{DAILY_DAY}/scout-db", headers=key(OTHER_KEY))
    assert busy.json()["error"] == "busy"  # the idle client holds the only slot...
    while not client.audit.arrived("backup_download", 1, timeout=0.2, outcome="stalled"):
        clock.now += 31  # ... until it has made no progress for stall_seconds (30) of the server's clock
    [cut] = client.audit.of("backup_download", outcome="stalled")
    # Bytes handed to the socket are not bytes delivered: the client's tiny window took only a few KB.
    assert cut["bytes_acknowledged"] < 64 * 1024 <= cut["bytes_sent"] < size
    assert client.state.slots.used == 0
    assert client.get(f"/download/{DAILY_DAY}/scout-db", headers=key(OTHER_KEY)).status_code == 200
    assert len(head) + drain(sock) < size  # the connection was cut, not completed


def test_a_client_slower_than_the_minimum_rate_is_cut(serve, big_bucket):
    clock = Clock()
    client = serve(
        big_bucket,
        send_buffer=16384,
        clock=clock,
        limits=Limits(watch_interval=0.02, min_bytes_per_second=4096, rate_window_seconds=120, stall_seconds=10**6),
    )
    sock, _ = slow_reader(client, f"/download/{BIG_DAY}/groveauth")
    read = 0
    for _ in range(1000):  # a trickle: 2 KB per 10 s of the server's clock (~200 B/s), always some progress
        try:
            read += len(sock.recv(2048))
        except ConnectionResetError:
            break
        clock.now += 10
        if client.audit.arrived("backup_download", 1, timeout=0.1, outcome="too_slow"):
            break
    [cut] = client.audit.wait_for("backup_download", 1, outcome="too_slow")
    assert 0 < cut["bytes_acknowledged"] < 1_000_000 and client.state.slots.used == 0
    sock.close()


# -- addresses ------------------------------------------------------------------------------------


def test_a_forged_client_address_header_from_a_peer_that_is_no_trusted_proxy_is_ignored(serve):
    policy = AccessPolicy(
        keys=dict(KEYS), networks=parse_networks("203.0.113.0/24"), client_ip_header="CF-Connecting-IP"
    )
    assert any("CF-Connecting-IP is IGNORED" in w for w in policy.warnings("127.0.0.1", None))
    client = serve(policy=policy, clock=Clock())
    assert client.get("/restore-guide/groveauth", headers={"CF-Connecting-IP": "203.0.113.7"}).status_code == 401
    for i in range(29):  # a new forged address each time escapes nothing: they all count against the peer
        forged = {"CF-Connecting-IP": f"198.51.100.{i}", "X-Forwarded-For": f"192.0.2.{i}"}
        assert client.get("/restore-guide/groveauth", headers=forged).status_code == 401
    assert client.get("/restore-guide/groveauth", headers={"CF-Connecting-IP": "198.51.100.200"}).status_code == 429
    assert {e["ip"] for e in client.audit.events} == {"127.0.0.1"} and not any("peer" in e for e in client.audit.events)
    # A trusted proxy that is not this peer changes nothing either.
    elsewhere = serve(policy=dataclasses.replace(policy, trusted_proxies=parse_networks("10.0.0.0/8")))
    assert elsewhere.get("/restore-guide/groveauth", headers={"CF-Connecting-IP": "203.0.113.7"}).status_code == 401


def test_x_forwarded_for_from_a_trusted_proxy_yields_the_nearest_untrusted_hop():
    policy = AccessPolicy(client_ip_header="X-Forwarded-For", trusted_proxies=parse_networks("10.0.0.0/8"))
    assert policy.client_address("10.1.1.1", "198.51.100.9, 203.0.113.5, 10.2.2.2") == "203.0.113.5"
    assert policy.client_address("10.1.1.1", "not-an-address") == "10.1.1.1"
    assert policy.client_address("192.0.2.1", "203.0.113.5") == "192.0.2.1"


def test_thirty_thousand_forged_addresses_cost_a_bounded_table(serve):
    """Behind a trusted proxy every request may name a new address: the table keeps 1,024 and forgets the
    least recently seen, so its memory stays under a bound whatever the number of addresses."""
    policy = AccessPolicy(
        keys=dict(KEYS), client_ip_header="CF-Connecting-IP", trusted_proxies=parse_networks("127.0.0.0/8")
    )
    count = 0

    def audit(event):
        nonlocal count
        count += 1

    client = serve(policy=policy, audit=audit, clock=Clock(), limits=Limits(addresses_tracked=1024))
    total, batch = 30_000, 25
    sock = socket.create_connection((client.server.host, client.server.port))
    answers = bytearray()
    for start in range(0, total, batch):  # pipelined in small batches (uvicorn's h11 is slow on long pipelines)
        sock.sendall(
            b"".join(
                f"HEAD /restore-guide/groveauth HTTP/1.1\r\nHost: 127.0.0.1\r\nCF-Connecting-IP: 10.{i >> 16}.{i >> 8 & 255}."
                f"{i & 255}\r\n\r\n".encode()
                for i in range(start, start + batch)
            )
        )
        while answers.count(b"HTTP/1.1 ") < start + batch:
            answers.extend(sock.recv(1 << 20))
    sock.close()
    assert answers.count(b"HTTP/1.1 401") == total and count == total
    failures = client.state.failures
    assert len(failures) == 1024 and failures.timestamps() == 1024
    table = failures._hits
    footprint = sys.getsizeof(table) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in table.items())
    assert footprint < 512 * 1024, footprint  # ~290 KB for 1,024 addresses; 30,000 would take ~9 MB
    # The newest addresses are still counted: the last one's 30th failure is refused.
    last = {"CF-Connecting-IP": f"10.{(total - 1) >> 16}.{(total - 1) >> 8 & 255}.{(total - 1) & 255}"}
    assert [client.head("/restore-guide/groveauth", headers=last).status_code for _ in range(30)][-1] == 429


# -- requests that are too big, for another host, from another site ------------------------------


def test_forty_megabytes_of_headers_are_refused_early_and_health_answers_meanwhile(serve):
    client = serve()
    sock = socket.create_connection((client.server.host, client.server.port))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
    sent, piece = 0, b"a" * 65536
    try:
        while sent < 40 * 2**20:
            sock.sendall(piece)
            sent += len(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert sent < 40 * 2**20  # the server refused and closed long before the end
    assert client.get("/health").status_code == 200
    sock.close()
    many = {f"X-Header-{i}": "1" for i in range(150)}
    assert client.get("/health", headers=many).status_code == 431
    assert client.get("/list", params={"database": "x" * 3000}).status_code == 414
    assert client.request("GET", "/status", content=b"0123456789").status_code == 413  # no body belongs there


def test_a_dns_rebinding_host_is_refused(serve):
    client = serve(public_url="https://patina.grove.place")
    for path, headers in (
        (f"/download/{DAILY_DAY}/groveauth", key()),
        ("/restore-guide/groveauth", key()),
        ("/status", {}),
    ):
        refused = client.get(path, headers={**headers, "Host": "rebind.attacker.example:8080"})
        assert refused.status_code == 421 and refused.json()["error"] == "wrong_host"
    for host in ("patina.grove.place", "localhost:8080", f"127.0.0.1:{client.server.port}"):
        assert client.get("/status", headers={"Host": host}).status_code == 200
    assert client.audit.of("backup_download", outcome="wrong_host")


def test_a_cross_origin_post_cannot_trigger_a_backup(serve):
    asked = []

    def trigger(databases, reason, requested_by):  # records the call; the real one is tested in test_api.py
        asked.append(requested_by)
        return {"jobId": "run", "status": "QUEUED", "databases": 3}

    client = serve(trigger=trigger)
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://sub.grove.place"},
    ):
        refused = client.post("/trigger", headers={**key(), **headers}, json={})
        assert refused.status_code == 403 and refused.json()["error"] == "cross_origin", headers
    # The one kind of POST a page may send without asking first (a "simple" request) is not JSON:
    simple = client.post("/trigger", headers={**key(), "Content-Type": "text/plain"}, content=b"{}")
    assert simple.status_code == 415
    same = client.post(
        "/trigger",
        headers={**key(), "Origin": str(client.base_url), "Sec-Fetch-Site": "same-origin"},
        json={"reason": "from our own page"},
    )
    assert same.status_code == 202 and asked == ["api:alice"]
    assert len(client.audit.of("trigger", outcome="forbidden")) == 4


# -- keys in URLs, and what the logs keep ----------------------------------------------------------


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_the_audit_log_is_kept_rotated_and_in_the_bucket_one_line_per_request_never_a_key(serve, tmp_path):
    bucket = copy_of(filled("local"), tmp_path / "copy")
    store = Catalog.for_config(bucket.config).store.bucket
    kept = AuditLog(
        tmp_path / "logs" / "audit.jsonl", max_bytes=2000, backups=50, bucket=BucketAudit(store, flush_seconds=3600)
    )
    seen = Audit()
    client = serve(bucket, audit=lambda event: (kept(event), seen(event)))
    access = Lines()
    logging.getLogger("uvicorn.access").addHandler(access)
    logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    as_json = {**key(), "Content-Type": "application/json"}
    try:
        answers = [
            client.get(f"/download/{DAILY_DAY}/groveauth", headers=key()).status_code,
            client.head(f"/download/{DAILY_DAY}/groveauth", headers=key()).status_code,
            client.get("/download/2026-03-05/groveauth", headers=key()).status_code,
            client.get("/download/2026-02-30/groveauth", headers=key()).status_code,
            client.get("/restore-guide/groveauth", headers=key(KEY[::-1])).status_code,
            client.get(f"/restore-guide/groveauth?key={KEY}").status_code,
            client.get(f"/download/{DAILY_DAY}/{KEY}", headers=key()).status_code,
            client.post("/trigger", headers=as_json, json={"reason": "r" * 10_000}).status_code,
            client.post("/trigger", headers=as_json, json={"reason": "s" * 600}).status_code,
        ]
        public = client.get("/list", params={"database": KEY}).status_code
        seen.wait_for("backup_download", 1, outcome="complete")
    finally:
        logging.getLogger("uvicorn.access").removeHandler(access)
    assert answers == [200, 200, 404, 400, 401, 400, 400, 413, 400] and public == 400
    assert [e["outcome"] for e in seen.events if e["event"] == "restore_guide"] == ["denied", "key_in_url"]
    kept.close()
    files = sorted((tmp_path / "logs").glob("audit.jsonl*"))
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(files) > 1 and len(lines) == len(answers)  # rotated, one line each
    assert {line["status"] for line in lines} == set(answers)
    stored = [info.key for info in store.list(AUDIT_PREFIX)]
    assert len(stored) == 1 and stored[0].endswith(".jsonl")
    assert len(store.get_bytes(stored[0]).decode().splitlines()) == len(answers)
    everything = "".join(f.read_text() for f in files) + store.get_bytes(stored[0]).decode() + "\n".join(access.lines)
    assert KEY not in everything and KEY[::-1] not in everything and "REDACTED" in "\n".join(access.lines)
    assert "r" * 100 not in everything and "s" * 100 not in everything  # refused reasons are never logged


# -- keys: scopes, expiry --------------------------------------------------------------------------


def test_keys_are_scoped_to_databases_and_actions_and_expire(serve):
    moment = [datetime(2026, 12, 1, tzinfo=UTC)]
    policy = AccessPolicy.from_env(
        {"PATINA_API_KEYS": f"alice:{KEY} databases=groveauth actions=download, ci:{OTHER_KEY} expires=2026-12-02"}
    )
    client = serve(policy=policy, now=lambda: moment[0])
    assert client.get(f"/download/{DAILY_DAY}/groveauth", headers=key()).status_code == 200
    for refused in (
        client.get(f"/download/{DAILY_DAY}/scout-db", headers=key()),
        client.get("/restore-guide/groveauth", headers=key()),
        client.post("/trigger", headers=key(), json={"databases": ["groveauth"]}),
    ):
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert client.get("/restore-guide/scout-db", headers=key(OTHER_KEY)).status_code == 200  # no options: everything
    moment[0] += timedelta(days=1)
    assert client.get("/restore-guide/scout-db", headers=key(OTHER_KEY)).status_code == 401
    assert client.audit.of("restore_guide", outcome="denied")[-1]["reason"] == "key ci expired"
    assert any("key ci expired" in w for w in policy.warnings("127.0.0.1", None, now=moment[0]))
    with pytest.raises(ValueError, match="does not have"):
        serve(policy=AccessPolicy.from_env({"PATINA_API_KEYS": f"alice:{KEY} databases=nope"}))


# -- what public endpoints show ---------------------------------------------------------------------


def test_public_status_and_list_disclose_nothing_an_attacker_can_use(serve):
    started = datetime(2026, 3, 10, 3, tzinfo=UTC)
    run = JobRun(
        "run-1",
        "on_demand_backup",
        "SUCCESS",
        DAILY_DAY,
        started,
        started + timedelta(minutes=1),
        databases_ok=("groveauth",),
        reason="before rotating vault/prod secrets",
        trigger="api:alice",
        nightly=False,
    )
    detail = "DagsterInvariantViolationError: no instance at DAGSTER_HOME=/srv/patina/dagster_home"
    client = serve(
        orchestrator=lambda: Orchestrator(available=True, detail=detail, recent=[run]),
        limits=Limits(snapshot_seconds=0),
    )
    public, keyed = client.get("/status").text, client.get("/status", headers=key()).text
    for secret in ("alice", "vault/prod", "DAGSTER_HOME", "/srv/patina", "DagsterInvariantViolationError"):
        assert secret not in public and secret in keyed
    assert json.loads(public)["recentJobs"][0]["status"] == "completed"  # what happened stays public
    listing = client.get("/list").json()["backups"]
    assert listing and not any("key" in b or "member" in b for b in listing)
    assert all("key" in b for b in client.get("/list", headers=key()).json()["backups"])
    for limit in ("²", "１", "-1", "1e3", " 1"):
        assert client.get("/list", params={"limit": limit}).status_code == 400, limit


def test_public_endpoints_are_served_from_a_snapshot_and_limited_per_address(serve):
    clock = Clock()
    client = serve(clock=clock)
    for _ in range(20):
        assert [client.get(p).status_code for p in ("/status", "/list", "/metrics")] == [200, 200, 200]
    assert client.state.snapshot.reads == 1  # 60 requests, one read of the bucket
    refused = client.get("/status")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) == 60
    assert client.get("/health").status_code == 200  # liveness is never limited
    clock.now += 60
    assert client.get("/status").status_code == 200 and client.state.snapshot.reads == 2


def test_a_slow_refresh_of_the_snapshot_ties_up_one_thread_not_every_request():
    clock, release, values = Clock(), threading.Event(), iter(["first", "second"])

    def read():
        value = next(values)
        if value == "second":
            assert release.wait(10)
        return value

    cached = Cached(read, 10.0, clock)
    assert cached.get() == "first"
    clock.now += 10
    refresher = threading.Thread(target=cached.get)
    refresher.start()
    while not cached._lock.locked():  # the refresher holds the lock while the bucket is slow...
        refresher.join(0.001)
    assert cached.get() == "first"  # ... and everyone else gets the previous snapshot at once
    release.set()
    refresher.join(10)
    assert cached.get() == "second" and cached.reads == 2


def test_patina_serve_says_at_start_what_it_ignores_and_keeps_its_audit_file(tmp_path):
    """The real command: its start-up warnings, the audit file from the environment, no key in its output."""
    bucket = filled("local")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATINA_", "DAGSTER_HOME"))}
    env.update(
        PATINA_API_KEYS=f"alice:{KEY}",
        PATINA_CLIENT_IP_HEADER="CF-Connecting-IP",
        PATINA_AUDIT_LOG=str(tmp_path / "audit.jsonl"),
    )
    patina = Path(sys.executable).parent / "patina"
    server = subprocess.Popen(
        [str(patina), "--config", str(bucket.config_path), "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        output = []
        for line in server.stderr:  # until uvicorn listens (or the command ends)
            output.append(line)
            if "Uvicorn running" in line:
                break
        started = "".join(output)
        assert "PATINA_CLIENT_IP_HEADER=CF-Connecting-IP is IGNORED" in started, started
        assert "1 key(s) (alice)" in started and str(tmp_path / "audit.jsonl") in started
        download = urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{port}/download/{DAILY_DAY}/groveauth", headers=key()), timeout=30
        )
        assert download.status == 200 and download.read()
    finally:
        server.terminate()
        rest = server.communicate(timeout=30)[1]
    [line] = [json.loads(text) for text in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert (line["event"], line["client"], line["outcome"]) == ("backup_download", "alice", "complete")
    assert KEY not in started + rest and "backup_download" in rest  # the audit line on stderr too, keyless


# -- the runbook's download -------------------------------------------------------------------------


def test_the_runbooks_curl_leaves_no_file_when_a_download_breaks(serve, big_bucket, tmp_path):
    curl = shutil.which("curl")
    assert curl, "curl is part of the runbook; install it"
    bucket = copy_of(big_bucket, tmp_path / "copy")
    catalog = Catalog.for_config(bucket.config)
    stored = bucket.config.bucket.local.path / catalog.find(BIG_DAY, "groveauth").key
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x10
    stored.write_bytes(bytes(data))
    client = serve(bucket)
    url = f"{client.base_url}/download/{BIG_DAY}/groveauth"
    assert "--fail --remove-on-error" in RUNBOOK.read_text()
    target = tmp_path / "groveauth.sql"
    runbook = subprocess.run(
        [curl, "--fail", "--remove-on-error", "-sS", "-H", f"X-Patina-Key: {KEY}", "-o", str(target), url],
        capture_output=True,
    )
    assert runbook.returncode != 0 and not target.exists()
    # Why the runbook insists: -f alone keeps what arrived, a file sqlite3 would half-import.
    plain = subprocess.run(
        [curl, "-f", "-sS", "-H", f"X-Patina-Key: {KEY}", "-o", str(target), url], capture_output=True
    )
    assert plain.returncode != 0 and 0 < target.stat().st_size < catalog.find(BIG_DAY, "groveauth").sql_bytes
    assert [e["outcome"] for e in client.audit.events] == ["integrity_failure"] * 2
