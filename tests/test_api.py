"""`patina serve` over real HTTP on loopback (uvicorn on a thread, port 0): every endpoint, keys and addresses,
path traversal, rate limits with an injected clock, the concurrent download limit, the audit log, and a
schemathesis fuzz run against the OpenAPI document."""

import contextlib
import hashlib
import http.client
import json
import logging
import threading

import dagster as dg
import httpx
import pytest
from support.api_server import KEY, KEYS, OTHER_KEY, UNAUTHORIZED, Clock, key, serve  # noqa: F401 (fixture)
from support.filled import (
    ARCHIVED_DAYS,
    DAILY_DAY,
    DATABASES,
    PRIORITY_ORDER,
    copy_of,
    dagster_home,
    filled,
)

from patina_assets.api import AccessPolicy, Limits, parse_keys, parse_networks
from patina_assets.api_access import CLOUDFLARE_RANGES
from patina_assets.api_http import allowed_hosts, host_of
from patina_assets.catalog import Catalog
from patina_assets.defs.on_demand.jobs import REASON_TAG, REQUESTED_BY_TAG
from patina_assets.orchestrator import DagsterView, trigger_backup

NAMES = {name for name, _, _ in DATABASES}


# -- public endpoints -----------------------------------------------------------------------------


def test_status_and_metrics_list_each_fleets_tenants(serve, tmp_path):
    """A fleet's tenants are databases of the status (from the roster its discovery stored in the bucket)."""
    import types

    from support.configs import small_database, write_config

    from patina_assets.backup import Cloudflare, back_up, open_store
    from patina_assets.fleets import Roster, Tenant, roster_key

    account = "0123456789abcdef0123456789abcdef"
    config = write_config(
        tmp_path,
        [{"name": "groveauth", "source": str(small_database(tmp_path / "auth.sqlite", 5))}],
        databases_from=[{"name": "tenants", "account": account}],
    )
    store = open_store(config)
    roster = Roster(
        fleet="tenants",
        account_id=account,
        name_pattern="*",
        discovered_at="2026-03-01T00:00:00Z",
        tenants=(
            Tenant("tenant-a", "1c0ffee0-0000-4000-8000-000000000001", "tenant-a"),
            Tenant("tenant-b", "1c0ffee0-0000-4000-8000-000000000002", "tenant-b"),
        ),
    )
    store.bucket.put_bytes(roster_key("tenants"), roster.to_json().encode(), content_type="application/json")
    back_up(config.databases[0], "2026-03-01", store, Cloudflare(api_url="http://127.0.0.1:9", token=None), config.dump)
    client = serve(bucket=types.SimpleNamespace(config=config), catalog=lambda: Catalog(store, config.retention))
    status = client.get("/status").json()
    rows = {d["database"]: d for d in status["databases"]}
    assert set(rows) == {"groveauth", "tenant-a", "tenant-b"}
    assert (rows["tenant-a"]["fleet"], rows["tenant-a"]["lastBackup"]) == ("tenants", None)
    assert rows["groveauth"]["fleet"] is None and rows["groveauth"]["lastBackup"] == "2026-03-01"
    assert status["fleets"] == [
        {"fleet": "tenants", "discovered": True, "tenants": 2, "tenantNames": ["tenant-a", "tenant-b"]}
    ]
    assert "patina_backup_databases_count 3" in client.get("/metrics").text
    # A tenant is a database to the other endpoints too, as to the CLI (its guide, its list, its downloads).
    guide = client.get("/restore-guide/tenant-a", headers=key(KEY))
    assert guide.status_code == 200 and guide.json()["database"] == "tenant-a", guide.text
    assert client.get("/list", params={"database": "tenant-b"}).status_code == 200
    missing = client.get("/download/2026-03-01/tenant-a", headers=key(KEY))
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    unknown = client.get("/restore-guide/tenant-z", headers=key(KEY))
    assert unknown.status_code == 400 and unknown.json()["error"] == "unknown_database"


def test_index_health_status_list_and_openapi(serve):
    client = serve()
    index = client.get("/").json()
    assert index["name"] == "Patina" and index["databases"] == 3 and "GET /download/{date}/{db}" in index["endpoints"]
    assert client.get("/health").json()["status"] == "ok"
    status = client.get("/status").json()
    assert status["currentStatus"] == "unknown" and status["lastBackup"]["date"] == DAILY_DAY
    assert status["storage"]["totalBackups"] == 9
    listing = client.get("/list", params={"database": "groveauth"}).json()
    assert [b["date"] for b in listing["backups"]] == [DAILY_DAY, *reversed(ARCHIVED_DAYS)]
    assert (listing["total"], listing["filtered"]) == (9, 3)
    assert len(client.get("/list", params={"limit": 4}).json()["backups"]) == 4
    for params, code in (
        ({"date": "2026-02-30"}, "invalid_date"),
        ({"database": "../daily"}, "unknown_database"),
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "ten"}, "invalid_limit"),
        ({"db": "x"}, "bad_request"),
    ):
        response = client.get("/list", params=params)
        assert response.status_code == 400 and response.json()["error"] == code, params
    document = client.get("/openapi.json").json()
    assert set(document["paths"]) == {
        "/",
        "/health",
        "/status",
        "/list",
        "/metrics",
        "/openapi.json",
        "/download/{date}/{db}",
        "/restore-guide/{db}",
        "/trigger",
    }
    assert client.get("/nope").status_code == 404 and client.get("/nope").json()["error"] == "not_found"
    wrong_method = client.post("/status")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"]


def metrics_of(text):
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_metrics_are_the_specs(serve):
    bucket = filled("local")
    with dg.DagsterInstance.from_config(str(bucket.dagster_home)) as instance:
        view = DagsterView(bucket.config, instance, "test instance")
        client = serve(orchestrator=view.read)
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = metrics_of(response.text)
    catalog = Catalog.for_config(bucket.config)
    newest = {b.database: b for b in catalog.backups(day=DAILY_DAY)}
    assert values["patina_backup_last_success_timestamp"] == int(max(b.captured for b in newest.values()).timestamp())
    for name in NAMES:
        assert values[f'patina_backup_database_last_success_timestamp{{database="{name}"}}'] == int(
            newest[name].captured.timestamp()
        )
    assert values["patina_backup_total_size_bytes"] == catalog.storage().total_bytes
    assert values["patina_backup_databases_count"] == 3 and values["patina_backup_count"] == 9
    assert values["patina_backup_failures_24h"] == 0 and values["patina_dagster_instance_available"] == 1
    assert 0 <= values["patina_backup_last_duration_seconds"] < 60
    for metric in (
        "last_success_timestamp",
        "last_duration_seconds",
        "total_size_bytes",
        "databases_count",
        "failures_24h",
    ):
        assert f"# TYPE patina_backup_{metric} gauge" in response.text


# -- downloads and keys ---------------------------------------------------------------------------


def test_download_streams_the_checked_sql_from_dailies_and_archives(serve):
    client = serve()
    catalog = Catalog.for_config(filled("local").config)
    for day, _where in ((DAILY_DAY, "daily"), (ARCHIVED_DAYS[0], "weekly")):
        response = client.get(f"/download/{day}/scout-db", headers=key())
        backup = catalog.find(day, "scout-db")
        assert response.status_code == 200 and response.headers["content-type"] == "application/sql"
        assert response.headers["content-disposition"] == f'attachment; filename="scout-db-{day}.sql"'
        assert int(response.headers["content-length"]) == len(response.content) == backup.sql_bytes
        assert (
            hashlib.sha256(response.content).hexdigest() == response.headers["x-patina-sql-sha256"] == backup.sql_sha256
        )
    head = client.head(f"/download/{DAILY_DAY}/scout-db", headers=key())
    assert head.status_code == 200 and head.content == b""
    downloads = client.audit.wait_for("backup_download", 2, outcome="complete")
    assert sorted(
        (e["client"], e["auth"], e["ip"], e["database"], e["date"], e["source"], e["status"]) for e in downloads
    ) == [
        ("alice", "key", "127.0.0.1", "scout-db", ARCHIVED_DAYS[0], "weekly", 200),
        ("alice", "key", "127.0.0.1", "scout-db", DAILY_DAY, "daily", 200),
    ]
    # Every byte was acknowledged by the client's socket (SIOCOUTQ empty), not only handed to it.
    assert all(e["timestamp"].endswith("Z") and e["bytes_acknowledged"] == e["bytes_sent"] > 0 for e in downloads)
    missing = client.get("/download/2026-03-05/scout-db", headers=key())
    assert missing.status_code == 404 and "GET /list?database=scout-db" in missing.json()["message"]
    # HEAD and 404 have their audit lines too.
    [head_line] = client.audit.wait_for("backup_download", 1, outcome="head")
    [missing_line] = client.audit.wait_for("backup_download", 1, outcome="not_found")
    assert (head_line["method"], head_line["status"], missing_line["status"]) == ("HEAD", 200, 404)


ALMOST = [
    "",  # empty
    KEY[:-1],  # one character short
    KEY + "0",  # one too many
    KEY[:-1] + ("0" if KEY[-1] != "0" else "1"),  # last character wrong
    KEY.upper(),  # case
    f"alice:{KEY}",  # the env entry, not the key
    "alice",  # the name
    KEY[::-1],
]


def test_missing_wrong_and_almost_right_keys_get_the_specs_401_and_the_audit_log_keeps_no_secret(serve, caplog):
    caplog.set_level(logging.DEBUG)
    client = serve(limits=Limits(failures_per_hour=1000))
    endpoints = [("GET", f"/download/{DAILY_DAY}/groveauth"), ("GET", "/restore-guide/groveauth"), ("POST", "/trigger")]
    for method, path in endpoints:
        assert client.request(method, path).json() == UNAUTHORIZED
        for attempt in ALMOST:
            response = client.request(method, path, headers={"X-Patina-Key": attempt} if attempt else {})
            assert response.status_code == 401 and response.json() == UNAUTHORIZED, (path, attempt)
    assert client.get(f"/download/{DAILY_DAY}/groveauth", headers=key()).status_code == 200
    assert client.get("/restore-guide/groveauth", headers=key(OTHER_KEY)).status_code == 200
    client.audit.wait_for("backup_download", 1, outcome="complete")
    denied = [e for e in client.audit.events if e["outcome"] == "denied"]
    assert len(denied) == len(endpoints) * (len(ALMOST) + 1) and {e["status"] for e in denied} == {401}
    assert {e["reason"] for e in denied} == {"key refused", "no key, address not allowed"}
    assert client.audit.of("restore_guide", outcome="ok")[0]["client"] == "ci"
    logged = json.dumps(client.audit.events) + caplog.text
    for secret in [KEY, OTHER_KEY, *[a for a in ALMOST if len(a) > 8]]:
        assert secret not in logged


def test_an_allowed_address_needs_no_key_and_a_forwarded_address_is_trusted_only_when_configured(serve):
    client = serve(policy=AccessPolicy(keys=dict(KEYS), networks=parse_networks("127.0.0.0/8")))
    assert client.get("/restore-guide/scout-db").status_code == 200
    assert client.audit.of("restore_guide")[0]["client"] == "ip:127.0.0.1"
    # Behind a trusted proxy that sets CF-Connecting-IP, the header is the client; without the setting it is ignored.
    proxied = serve(
        policy=AccessPolicy(
            networks=parse_networks("203.0.113.0/24"),
            client_ip_header="CF-Connecting-IP",
            trusted_proxies=parse_networks("127.0.0.0/8"),
        )
    )
    assert proxied.get("/restore-guide/scout-db", headers={"CF-Connecting-IP": "203.0.113.9"}).status_code == 200
    assert proxied.get("/restore-guide/scout-db", headers={"CF-Connecting-IP": "198.51.100.1"}).status_code == 401
    assert [(e["ip"], e["peer"]) for e in proxied.audit.events] == [
        ("203.0.113.9", "127.0.0.1"),
        ("198.51.100.1", "127.0.0.1"),
    ]
    direct = serve(policy=AccessPolicy(networks=parse_networks("203.0.113.0/24")))
    assert (
        direct.get(
            "/restore-guide/scout-db", headers={"CF-Connecting-IP": "203.0.113.9", "X-Forwarded-For": "203.0.113.9"}
        ).status_code
        == 401
    )


def test_keys_and_networks_from_the_environment_are_checked():
    assert set(parse_keys(f" alice:{KEY} , ci:{OTHER_KEY} ")) == set(KEYS)
    for text, message in (
        (f"alice{KEY}", "write each entry as name:key"),
        ("alice:short", "shorter than 16"),
        (f"alice:{KEY},alice:{OTHER_KEY}", "used twice"),
        (f"a b:{KEY}", "name:key"),
    ):
        with pytest.raises(ValueError, match=message) as problem:
            parse_keys(text)
        assert KEY not in str(problem.value) and "short" not in str(problem.value).replace("shorter", "")
    with pytest.raises(ValueError, match="not an IP address"):
        parse_networks("10.0.0.0/8, example.com")
    policy = AccessPolicy.from_env({"PATINA_API_KEYS": f"alice:{KEY}", "PATINA_ALLOWED_IPS": "10.1.2.3"})
    assert policy.authenticate(KEY, "192.0.2.1").name == "alice"
    assert policy.authenticate(None, "10.1.2.3").name == "ip:10.1.2.3"
    assert policy.authenticate("nope", "192.0.2.1").reason == "key refused"
    assert policy.authenticate(None, "unknown").reason == "no key, address not allowed"


def test_weak_keys_loose_networks_and_risky_binds_are_refused_or_warned():
    for weak in ("a" * 16, "abcdabcdabcdabcd", "0123456789abcdef", "Secret-aaaaa-key-1", "tiny-key"):
        with pytest.raises(ValueError, match="weak") as problem:
            parse_keys(f"bob:{weak}")
        assert weak not in str(problem.value) and "secrets.token_urlsafe" in str(problem.value)
    with pytest.raises(ValueError, match=r"'203.0.113.7/0' has host bits set.*write the address alone \(203.0.113.7\)"):
        parse_networks("203.0.113.7/0")
    with pytest.raises(ValueError, match="host bits set"):
        parse_networks("10.1.2.3/8", "PATINA_TRUSTED_PROXIES")
    with pytest.raises(ValueError, match="every address"):
        parse_networks("0.0.0.0/0")
    assert [str(n) for n in parse_networks("203.0.113.7, 10.0.0.0/8, 2001:db8::/32")] == [
        "203.0.113.7/32",
        "10.0.0.0/8",
        "2001:db8::/32",
    ]
    parse_networks(CLOUDFLARE_RANGES, "PATINA_TRUSTED_PROXIES")  # the documented example parses exactly
    assert len(parse_networks("173.245.48.0/20\n103.21.244.0/22 2400:cb00::/32")) == 3  # as cloudflare.com/ips-v4 lists
    policy = AccessPolicy(keys=dict(KEYS))
    assert any("without TLS in front" in w for w in policy.warnings("0.0.0.0", None))
    assert any("without TLS in front" in w for w in policy.warnings("0.0.0.0", "http://patina.example"))
    assert policy.warnings("127.0.0.1", None) == policy.warnings("0.0.0.0", "https://patina.grove.place") == []
    assert allowed_hosts("https://patina.grove.place", "0.0.0.0") == (frozenset({"patina.grove.place"}), True)
    assert allowed_hosts(None, "127.0.0.1") == (frozenset({"127.0.0.1", "localhost", "::1"}), False)
    assert [host_of(h) for h in ("Patina.Grove.Place.:443", "[::1]:8080", "::1", "localhost")] == [
        "patina.grove.place",
        "::1",
        "::1",
        "localhost",
    ]
    keys = parse_keys(
        f"alice:{KEY}, ci:{OTHER_KEY} actions=download+restore-guide databases=groveauth+scout-db "
        "expires=2027-01-31T12:00:00Z"
    )
    assert (
        keys["alice"].actions == {"download", "restore-guide", "trigger", "plaintext"}
        and keys["alice"].databases is None
    )
    assert (
        keys["ci"].databases == {"groveauth", "scout-db"}
        and keys["ci"].expires.isoformat() == "2027-01-31T12:00:00+00:00"
    )
    for options, message in (
        ("actions=delete", "unknown action"),
        ("expires=tomorrow", "not a date"),
        ("owner=bob", "not an option"),
        ("actions=download actions=trigger", "not an option"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_keys(f"ci:{OTHER_KEY} {options}")


TRAVERSALS = [
    "/download/../../etc/passwd",
    "/download/%2e%2e/%2e%2e/etc/passwd",
    f"/download/{DAILY_DAY}/..%2F..%2Fetc%2Fpasswd",
    f"/download/{DAILY_DAY}/%2e%2e",
    f"/download/{DAILY_DAY}/..",
    "/download/%2Fetc%2Fpasswd/groveauth",
    f"/download/{DAILY_DAY}/daily%2F{DAILY_DAY}%2Fgroveauth.manifest.json",
    f"/download/{DAILY_DAY}/groveauth.manifest.json",
    f"/download/{DAILY_DAY}/groveauth%00",
    f"/download/{DAILY_DAY}/GROVEAUTH",
    f"/download/{DAILY_DAY}/groveauth/extra",
    "/download/weekly/2026-03-01.manifest.json",
    "/download/2026-13-45/groveauth",
    "/download/20260309/groveauth",
    f"/download/{DAILY_DAY}%2F..%2F{DAILY_DAY}/groveauth",
    f"//download/{DAILY_DAY}/groveauth",
    f"http://example.com/download/{DAILY_DAY}/../../etc/passwd",
    "/restore-guide/..%2Fgroveauth",
    "/restore-guide/%2Fetc%2Fpasswd",
]


def test_path_traversal_attempts_never_reach_the_bucket(serve):
    client = serve(limits=Limits(requests_per_hour=1000))
    host, port = client.base_url.host, client.base_url.port
    for path in TRAVERSALS:
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.request("GET", path, headers=key())  # sent as written: no client-side normalisation
        response = connection.getresponse()
        body = response.read()
        connection.close()
        assert response.status in (400, 404, 421), (path, response.status, body)  # 421: Host example.com
        assert b"CREATE TABLE" not in body and b"root:" not in body
        assert json.loads(body)["error"] in ("not_found", "invalid_date", "unknown_database", "wrong_host")
    assert client.audit.of("backup_download", outcome="complete") == []
    assert len(client.audit.events) >= len(TRAVERSALS) - 1  # one line each (the absolute-form one is not /download)
    assert {e["outcome"] for e in client.audit.events} <= {"bad_request", "not_found", "wrong_host"}


# -- rate limits ------------------------------------------------------------------------------------


def test_failed_attempts_are_limited_per_address_and_never_lock_out_a_valid_key(serve):
    clock = Clock()
    client = serve(clock=clock)
    for attempt in range(30):  # keys cannot be guessed quickly...
        headers = key("guess-" + "x" * 20) if attempt % 2 else {}
        assert client.get("/restore-guide/groveauth", headers=headers).status_code == 401
    refused = client.get("/restore-guide/groveauth")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "3600"
    assert client.get("/status", headers=key("guess-" + "y" * 20)).status_code == 429  # wherever they are tried
    # ... and 30 keyless requests from an address (or from everyone behind one proxy) lock out no key holder.
    assert client.get("/restore-guide/groveauth", headers=key()).status_code == 200
    clock.now += 1800
    assert client.get(f"/download/{DAILY_DAY}/groveauth").headers["retry-after"] == "1800"
    clock.now += 1800
    assert client.get("/restore-guide/groveauth").status_code == 401
    limited = client.audit.of("restore_guide", outcome="rate_limited")
    assert [(e["status"], e["ip"], e.get("client")) for e in limited] == [(429, "127.0.0.1", None)]


def test_thirty_requests_an_hour_per_key_whatever_the_address(serve):
    clock = Clock()
    client = serve(clock=clock)
    for _ in range(30):
        assert client.get("/restore-guide/groveauth", headers=key()).status_code == 200
    refused = client.get("/restore-guide/groveauth", headers=key())
    assert refused.status_code == 429 and refused.headers["retry-after"] == "3600"
    assert "with this key" in refused.json()["message"]
    assert client.get("/restore-guide/groveauth", headers=key(OTHER_KEY)).status_code == 200  # another key
    clock.now += 3600
    assert client.get("/restore-guide/groveauth", headers=key()).status_code == 200


def test_ten_downloads_an_hour_per_client(serve):
    clock = Clock()
    client = serve(clock=clock)
    for _ in range(10):
        assert client.get(f"/download/{DAILY_DAY}/groveauth", headers=key()).status_code == 200
        clock.now += 60
    refused = client.get(f"/download/{DAILY_DAY}/groveauth", headers=key())
    assert refused.status_code == 429 and refused.headers["retry-after"] == str(3600 - 600)
    assert client.get(f"/download/{DAILY_DAY}/groveauth", headers=key(OTHER_KEY)).status_code == 200  # another client
    assert client.head(f"/download/{DAILY_DAY}/groveauth", headers=key()).status_code == 200  # HEAD is no download
    clock.now += 3600 - 600
    assert client.get(f"/download/{DAILY_DAY}/groveauth", headers=key()).status_code == 200
    limited = client.audit.of("backup_download", outcome="rate_limited")
    assert [(e["client"], e["ip"]) for e in limited] == [("alice", "127.0.0.1")]


class GatedCatalog(Catalog):
    """The real catalog, whose readers wait for a gate before their first byte: downloads stay open."""

    gate = threading.Event()

    def open_sql(self, backup):
        reader = super().open_sql(backup)
        gate = self.gate

        class Gated:
            def read(self, size=-1):
                assert gate.wait(10)
                return reader.read(size)

            def close(self):
                reader.close()

        return Gated()


def test_two_downloads_at_once_then_429_until_one_ends_and_busy_refusals_cost_no_allowance(serve):
    bucket = filled("local")
    GatedCatalog.gate = threading.Event()
    client = serve(catalog=lambda: GatedCatalog.for_config(bucket.config), limits=Limits(downloads_per_hour=2))
    with contextlib.ExitStack() as streams:
        first = streams.enter_context(client.stream("GET", f"/download/{DAILY_DAY}/groveauth", headers=key()))
        second = streams.enter_context(
            httpx.stream("GET", f"{client.base_url}/download/{ARCHIVED_DAYS[0]}/scout-db", headers=key(OTHER_KEY))
        )
        assert first.status_code == second.status_code == 200  # headers sent: both hold a slot, waiting at the gate
        for _ in range(5):
            busy = httpx.get(f"{client.base_url}/download/{DAILY_DAY}/autumnsgrove-posts", headers=key())
            assert busy.status_code == 429 and busy.json()["error"] == "busy" and int(busy.headers["retry-after"]) > 0
        GatedCatalog.gate.set()
        for response in (first, second):
            body = response.read()
            assert hashlib.sha256(body).hexdigest() == response.headers["x-patina-sql-sha256"]
    assert client.get(f"/download/{DAILY_DAY}/autumnsgrove-posts", headers=key()).status_code == 200  # 2nd of 2
    assert client.get(f"/download/{DAILY_DAY}/autumnsgrove-posts", headers=key()).json()["error"] == "rate_limited"
    assert client.state.slots.used == 0
    assert len(client.audit.of("backup_download", outcome="busy")) == 5


def test_a_damaged_backup_ends_in_a_broken_transfer_and_frees_its_slot(serve, tmp_path):
    bucket = copy_of(filled("local"), tmp_path / "copy")
    catalog = Catalog.for_config(bucket.config)
    stored = bucket.config.bucket.local.path / catalog.find(DAILY_DAY, "groveauth").key
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x10
    stored.write_bytes(bytes(data))
    client = serve(bucket, limits=Limits(concurrent_downloads=1))
    with pytest.raises(httpx.HTTPError):  # fewer bytes than Content-Length announced
        client.get(f"/download/{DAILY_DAY}/groveauth", headers=key())
    [event] = client.audit.wait_for("backup_download", 1, outcome="integrity_failure")
    assert event["database"] == "groveauth" and event["bytes_sent"] < catalog.find(DAILY_DAY, "groveauth").sql_bytes
    assert client.get(f"/download/{DAILY_DAY}/scout-db", headers=key()).status_code == 200


# -- restore guide and trigger --------------------------------------------------------------------


def test_restore_guide_names_this_servers_download_url(serve):
    client = serve(public_url="https://patina.grove.place")
    guide = client.get("/restore-guide/groveauth", headers=key()).json()
    assert (
        'curl --fail --remove-on-error -H "X-Patina-Key: $PATINA_KEY" -o groveauth-2026-03-09.sql '
        f"https://patina.grove.place/download/{DAILY_DAY}/groveauth"
    ) in guide["restoreInstructions"]["method1_wrangler"]["steps"][0]
    assert guide["notes"][0].startswith(
        f"Restore order across databases (the spec's priority order): {', '.join(PRIORITY_ORDER)}"
    )
    assert client.get("/restore-guide/nope", headers=key()).json()["error"] == "unknown_database"


def launching_instance(directory):
    """An instance that launches submitted runs at once (no daemon needed), at its own $DAGSTER_HOME."""
    home = dagster_home(
        directory, run_coordinator={"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
    )
    return dg.DagsterInstance.from_config(str(home))


def test_trigger_starts_a_backup_with_the_reason_and_who_asked(serve, tmp_path):
    bucket = copy_of(filled("local"), tmp_path / "copy")
    with launching_instance(tmp_path / "instance") as instance:

        def trigger(databases, reason, requested_by):
            return trigger_backup(
                bucket.config, instance, databases, reason, wait=True, requested_by=requested_by
            ).to_dict()

        client = serve(bucket, trigger=trigger)
        response = client.post(
            "/trigger", headers=key(), json={"databases": ["scout-db"], "reason": "Pre-deployment backup"}, timeout=600
        )  # a real run, launched by Dagster in its own processes
        assert response.status_code == 202
        document = response.json()
        assert document["databases"] == 1 and document["status"] == "completed"
        run = instance.get_run_by_id(document["jobId"])
        assert run.tags[REASON_TAG] == "Pre-deployment backup" and run.tags[REQUESTED_BY_TAG] == "api:alice"
        as_json = {**key(), "Content-Type": "application/json"}
        for body, code in (
            ("not json", "bad_request"),
            ("", "bad_request"),
            ([], "bad_request"),
            ({"databases": "scout-db"}, "bad_request"),
            ({"databases": ["nope"]}, "unknown_database"),
            ({"reason": 5}, "bad_request"),
            ({"reason": "x\ny"}, "bad_request"),
            ({"other": 1}, "bad_request"),
            ("[" * 3000, "bad_request"),
            ("{" * 3000, "bad_request"),
        ):
            sent = client.post("/trigger", headers=as_json, content=body if isinstance(body, str) else json.dumps(body))
            assert sent.status_code == 400 and sent.json()["error"] == code, body
        assert client.post("/trigger", headers=as_json, content=b"x" * 20_000).status_code == 413
        assert client.post("/trigger", headers=key(), content=b"{}").status_code == 415  # not application/json
        assert len(instance.get_runs()) == 1
    [trigger_event] = client.audit.of("trigger", outcome="started")
    assert trigger_event["client"] == "alice" and trigger_event["databases"] == ["scout-db"]
    assert trigger_event["reason"] == "Pre-deployment backup"
    without = serve(bucket)
    assert without.post("/trigger", headers=key(), json={}).status_code == 503


# -- fuzzing ------------------------------------------------------------------------------------------

NO_INPUTS = {"/", "/health", "/status", "/metrics", "/openapi.json"}


def test_fuzzing_the_openapi_document_finds_no_server_error(serve, tmp_path):
    """schemathesis generates valid and invalid requests for every operation; none may answer 5xx, and valid
    ones must match the document (status codes, content types, response schemas)."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    bucket = copy_of(filled("local"), tmp_path / "copy")
    with launching_instance(tmp_path / "instance") as instance:

        def trigger(databases, reason, requested_by):
            return trigger_backup(
                bucket.config, instance, databases, reason, wait=True, requested_by=requested_by
            ).to_dict()

        client = serve(
            bucket,
            trigger=trigger,
            limits=Limits(requests_per_hour=10**6, downloads_per_hour=10**6, public_per_minute=10**6),
        )
        document = client.get("/openapi.json").json()
        # An example date that has backups, so that the explicit phase also downloads something real.
        document["paths"]["/download/{date}/{db}"]["get"]["parameters"][0]["example"] = DAILY_DAY
        schema = schemathesis.openapi.from_dict(document)
        base_url = str(client.base_url)
        checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
        calls = []
        for result in schema.get_all_operations():
            operation = result.ok()
            examples = 2 if operation.path == "/trigger" else 40  # each valid trigger runs a real backup
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

                @settings(
                    max_examples=examples,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                # fuzz runs at once, inside this iteration: the loop variables it reads are this iteration's
                @given(case=operation.as_strategy(generation_mode=mode))
                def fuzz(case):
                    # A valid trigger is a real run, launched by Dagster in its own processes: give it time.
                    response = case.call(
                        base_url=base_url,
                        headers=key(),
                        **({"timeout": 600} if operation.path == "/trigger" else {}),  # noqa: B023
                    )
                    calls.append((operation.path, response.status_code))  # noqa: B023
                    assert response.status_code < 500, (
                        case.path,
                        case.path_parameters,
                        case.query,
                        case.body,
                        response.text[:300],
                    )
                    if mode == schemathesis.GenerationMode.POSITIVE:  # noqa: B023
                        case.validate_response(response, checks=checks)

                try:
                    fuzz()
                except Unsatisfiable:  # nothing can be invalid in an operation without inputs (GET /)
                    assert mode == schemathesis.GenerationMode.NEGATIVE and operation.path in NO_INPUTS
    assert len(calls) > 150 and all(status < 500 for _, status in calls)
    assert {path for path, status in calls if status == 200} >= {
        "/",
        "/status",
        "/list",
        "/download/{date}/{db}",
        "/restore-guide/{db}",
    }
