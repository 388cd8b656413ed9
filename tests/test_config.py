"""patina_assets.config: loading, defaults, and error messages that say what to fix."""

from __future__ import annotations

import copy
import datetime as dt
import json
import textwrap
from pathlib import Path

import pytest
import yaml

from patina_assets.config import (
    ASSET_NAME_RE,
    GROVE_DATABASES,
    PRIORITY_ORDER,
    ConfigError,
    ConfigNotFound,
    DatabaseConfig,
    UnknownDatabaseError,
    default_config,
    load_config,
    order_by_priority,
    parse_d1_source,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "patina.example.yaml"
ACCOUNT = "0123456789abcdef0123456789abcdef"
DB_ID = "45eae4c7-8ae7-4078-9218-8e1677a4360f"

MINIMAL = {
    "databases": [
        {"name": "groveauth", "source": f"d1://{ACCOUNT}/{DB_ID}", "priority": "critical"},
        {"name": "scout-db", "source": "data/scout.sqlite", "priority": "high"},
        {"name": "grove-domain-jobs", "source": "/var/lib/jobs.sqlite"},
    ],
    "bucket": {"local": {"path": "bucket"}},
}


def write(tmp_path: Path, data: dict | str, name: str = "patina.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def load_error(tmp_path: Path, data: dict | str) -> ConfigError:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    return info.value


def with_change(change) -> dict:
    data = copy.deepcopy(MINIMAL)
    change(data)
    return data


# --------------------------------------------------------------------------------------------
# Files that load
# --------------------------------------------------------------------------------------------


def test_example_file_loads():
    config = load_config(EXAMPLE, env={})
    assert config.source_path == EXAMPLE.resolve()
    assert [db.name for db in config.databases] == [g.name for g in GROVE_DATABASES]
    assert all(db.is_d1 for db in config.databases)
    registry = {g.name: g for g in GROVE_DATABASES}
    for db in config.databases:
        assert db.database_id == registry[db.name].database_id
        assert db.priority == registry[db.name].priority
        assert db.sqlite_path is None
    assert config.bucket.kind == "s3"
    s3 = config.bucket.s3
    assert s3.bucket == "grove-patina" and s3.region == "auto"
    assert s3.endpoint_url.endswith(".r2.cloudflarestorage.com")
    assert (s3.access_key_id_env, s3.secret_access_key_env) == ("R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY")
    assert config.start_date == dt.date(2026, 1, 1) and config.timezone == "UTC"
    assert config.dump.format == "sql.zst" and config.dump.concurrency == 3
    assert (config.retention.daily_days, config.retention.weekly_weeks) == (7, 12)
    a = config.alerts
    assert (a.size_decrease_ratio, a.size_increase_ratio, a.stale_after_days, a.consecutive_failure_limit) == (
        0.5,
        2.0,
        8,
        3,
    )
    assert [db.asset_name for db in config.by_priority()] == [
        "groveauth",
        "grove_engine_db",
        "scout_db",
        "autumnsgrove_posts",
        "autumnsgrove_git_stats",
        "grove_domain_jobs",
    ]


def test_minimal_file_gets_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), env={})
    assert config.cloudflare.api_token_env == "CLOUDFLARE_API_TOKEN"
    assert config.cloudflare.api_url == "https://api.cloudflare.com/client/v4"
    assert config.dump.deadline_seconds == 1800 and config.dump.page_bytes == 2_000_000
    assert config.retention.weekly_format == "tar.zst"
    assert config.alerts.discord_webhook_env == "PATINA_DISCORD_WEBHOOK"
    assert config.alerts.redact_names is False and config.alerts.notify_on_success is False
    assert config.database("grove-domain-jobs").priority == "normal"
    assert config.root == tmp_path.resolve()


def test_default_config(tmp_path):
    config = default_config(tmp_path)
    root = tmp_path.resolve()
    assert config.is_default and config.source_path is None
    assert [db.name for db in config.databases] == [g.name for g in GROVE_DATABASES]
    for db in config.databases:
        assert not db.is_d1
        assert db.sqlite_path == root / ".patina" / "sources" / f"{db.name}.sqlite"
        assert ASSET_NAME_RE.match(db.asset_name)
    assert config.bucket.local.path == root / ".patina" / "bucket"
    assert [db.priority for db in config.by_priority()] == ["critical"] * 3 + ["high"] + ["normal"] * 2


def test_no_file_in_a_checkout_means_embedded_default(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "patina"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(env={})
    assert config.is_default
    assert config.bucket.local.path == tmp_path.resolve() / ".patina" / "bucket"


def test_no_file_outside_a_checkout_is_an_error_that_says_how_to_point_at_one(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigNotFound) as info:
        load_config(env={})
    assert "PATINA_CONFIG" in str(info.value) and "--config" in str(info.value) and str(tmp_path) in str(info.value)
    assert not (tmp_path / ".patina").exists()


def test_patina_yaml_in_working_directory(tmp_path, monkeypatch):
    write(tmp_path, MINIMAL)
    monkeypatch.chdir(tmp_path)
    config = load_config(env={})
    assert config.source_path == (tmp_path / "patina.yaml").resolve()


def test_patina_config_env_var_is_honoured(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, {**MINIMAL, "bucket": {"local": {"path": "ignored"}}})  # ./patina.yaml loses
    other = write(tmp_path / "elsewhere", MINIMAL, "prod.yaml")
    config = load_config(env={"PATINA_CONFIG": str(other)})
    assert config.source_path == other.resolve()
    assert config.bucket.local.path == (tmp_path / "elsewhere" / "bucket").resolve()
    # An explicit path beats the environment variable.
    assert (
        load_config(tmp_path / "patina.yaml", env={"PATINA_CONFIG": str(other)}).source_path
        == (tmp_path / "patina.yaml").resolve()
    )


def test_patina_config_pointing_nowhere_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="PATINA_CONFIG") as info:
        load_config(env={"PATINA_CONFIG": str(tmp_path / "missing.yaml")})
    assert "missing.yaml" in str(info.value)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", env={})


def test_relative_sqlite_paths_resolve_against_the_config_directory(tmp_path, monkeypatch):
    cfg_dir = tmp_path / "conf"
    path = write(cfg_dir, MINIMAL)
    monkeypatch.chdir(tmp_path)  # not the config's directory
    config = load_config(path, env={})
    assert config.database("scout-db").sqlite_path == (cfg_dir / "data" / "scout.sqlite").resolve()
    assert config.database("grove-domain-jobs").sqlite_path == Path("/var/lib/jobs.sqlite")
    assert config.bucket.local.path == (cfg_dir / "bucket").resolve()
    # PATINA_CONFIG given as a relative path resolves against the working directory, then the
    # database paths against the file's directory.
    config = load_config(env={"PATINA_CONFIG": "conf/patina.yaml"})
    assert config.database("scout-db").sqlite_path == (cfg_dir / "data" / "scout.sqlite").resolve()


def test_api_url_environment_override(tmp_path):
    config = load_config(
        write(tmp_path, MINIMAL), env={"PATINA_CLOUDFLARE_API_URL": "http://127.0.0.1:8787/client/v4/"}
    )
    assert config.cloudflare.api_url == "http://127.0.0.1:8787/client/v4"
    with pytest.raises(ConfigError, match="PATINA_CLOUDFLARE_API_URL"):
        load_config(write(tmp_path, MINIMAL), env={"PATINA_CLOUDFLARE_API_URL": "not a url"})


# --------------------------------------------------------------------------------------------
# Databases: D1 sources, names, priorities, lookups
# --------------------------------------------------------------------------------------------


def test_d1_source_is_parsed(tmp_path):
    db = load_config(write(tmp_path, MINIMAL), env={}).database("groveauth")
    assert db.is_d1 and db.kind == "d1"
    assert (db.account_id, db.database_id) == (ACCOUNT, DB_ID)
    assert parse_d1_source(f"d1://{ACCOUNT.upper()}/{DB_ID.upper()}") == (ACCOUNT, DB_ID)


@pytest.mark.parametrize(
    "source",
    [
        f"d1://{ACCOUNT}",
        f"d1://{ACCOUNT}/not-a-uuid",
        f"d1://abc/{DB_ID}",
        f"d1://{ACCOUNT}/{DB_ID}/extra",
        f"d1://token@{ACCOUNT}/{DB_ID}",
        f"d1://{ACCOUNT}/{DB_ID}\n",  # `$` in a pattern also matches before a final line break
        f"d1://{ACCOUNT}\n/{DB_ID}",
    ],
)
def test_bad_d1_url(tmp_path, source):
    err = load_error(tmp_path, with_change(lambda d: d["databases"][0].update(source=source)))
    assert "databases[0].source" in str(err)
    assert "d1://<account_id>/<database_id>" in str(err)


def test_unknown_source_scheme(tmp_path):
    err = load_error(tmp_path, with_change(lambda d: d["databases"][1].update(source="postgres://x/y")))
    assert "databases[1].source" in str(err) and "d1://" in str(err)


def test_bad_priority(tmp_path):
    err = load_error(tmp_path, with_change(lambda d: d["databases"][2].update(priority="urgent")))
    msg = str(err)
    assert str(tmp_path / "patina.yaml") in msg
    assert "databases[2].priority" in msg and "'urgent'" in msg
    assert "must be one of critical, high, normal" in msg
    assert err.field == "databases[2].priority"
    assert err.problems[0].line is not None


def test_duplicate_names(tmp_path):
    err = load_error(tmp_path, with_change(lambda d: d["databases"][2].update(name="groveauth")))
    assert "databases[2].name" in str(err) and "duplicate" in str(err) and "databases[0]" in str(err)


def test_names_colliding_after_sanitizing(tmp_path):
    err = load_error(tmp_path, with_change(lambda d: d["databases"][2].update(name="scout.db")))
    msg = str(err)
    assert "databases[2].name" in msg and "'scout_db'" in msg and "scout-db" in msg


@pytest.mark.parametrize("name", ["Groveauth", "-leading-dash", "has space", "x" * 64, ""])
def test_bad_database_name(tmp_path, name):
    err = load_error(tmp_path, with_change(lambda d: d["databases"][0].update(name=name)))
    assert "databases[0].name" in str(err)


def test_no_databases(tmp_path):
    assert "databases" in str(load_error(tmp_path, {**MINIMAL, "databases": []}))
    err = load_error(tmp_path, {"bucket": MINIMAL["bucket"]})
    assert "databases" in str(err) and "required" in str(err)


def test_asset_names_and_priority_order():
    dbs = [
        DatabaseConfig("b-normal", "b.sqlite"),
        DatabaseConfig("a.high", "a.sqlite", priority="high"),
        DatabaseConfig("c_crit", "c.sqlite", priority="critical"),
        DatabaseConfig("d-crit", f"d1://{ACCOUNT}/{DB_ID}", priority="critical"),
    ]
    assert [d.asset_name for d in dbs] == ["b_normal", "a_high", "c_crit", "d_crit"]
    assert [d.name for d in order_by_priority(dbs)] == ["c_crit", "d-crit", "a.high", "b-normal"]
    assert list(PRIORITY_ORDER) == ["critical", "high", "normal"]
    assert dbs[3].is_d1 and dbs[3].database_id == DB_ID and dbs[0].sqlite_path == Path("b.sqlite")
    with pytest.raises(ConfigError, match="priority"):
        DatabaseConfig("x", "x.sqlite", priority="urgent")


def test_database_lookup(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), env={})
    assert config.database("scout-db") is config.database("scout_db")
    with pytest.raises(KeyError) as info:
        config.database("scoutdb")
    err = info.value
    assert isinstance(err, UnknownDatabaseError) and isinstance(err, ConfigError)
    assert "scoutdb" in str(err) and "groveauth, scout-db, grove-domain-jobs" in str(err)
    assert "did you mean 'scout-db'" in str(err)


# --------------------------------------------------------------------------------------------
# Bucket, sections, secrets
# --------------------------------------------------------------------------------------------


def test_both_local_and_s3(tmp_path):
    err = load_error(tmp_path, {**MINIMAL, "bucket": {"local": {"path": "b"}, "s3": {"bucket": "grove-patina"}}})
    assert "bucket" in str(err) and "both local and s3" in str(err) and "exactly one" in str(err)


def test_neither_local_nor_s3(tmp_path):
    err = load_error(tmp_path, {**MINIMAL, "bucket": {}})
    assert err.field == "bucket" and "neither local nor s3" in str(err)


def test_s3_bucket_loads(tmp_path):
    config = load_config(
        write(
            tmp_path,
            {
                **MINIMAL,
                "bucket": {
                    "s3": {
                        "bucket": "grove-patina",
                        "endpoint_url": f"https://{ACCOUNT}.r2.cloudflarestorage.com/",
                        "prefix": "p/",
                    }
                },
            },
        ),
        env={},
    )
    s3 = config.bucket.s3
    assert s3.endpoint_url == f"https://{ACCOUNT}.r2.cloudflarestorage.com"
    assert (
        s3.prefix == "p"
        and s3.key("daily", "2026-01-05", "groveauth.sql.zst") == "p/daily/2026-01-05/groveauth.sql.zst"
    )
    assert s3.multipart_part_size_bytes == 16 * 1024 * 1024
    with pytest.raises(ConfigError, match="R2_SECRET_ACCESS_KEY"):
        s3.credentials(env={"R2_ACCESS_KEY_ID": "id"})
    assert s3.credentials(env={"R2_ACCESS_KEY_ID": "id", "R2_SECRET_ACCESS_KEY": "sk"}) == ("id", "sk")


def test_s3_part_size_limit(tmp_path):
    err = load_error(tmp_path, {**MINIMAL, "bucket": {"s3": {"bucket": "grove-patina", "multipart_part_size_mb": 1}}})
    assert "bucket.s3.multipart_part_size_mb" in str(err) and "at least 5" in str(err)


def test_unknown_key(tmp_path):
    err = load_error(tmp_path, {**MINIMAL, "dump": {"concurency": 4}})
    msg = str(err)
    assert "dump.concurency" in msg and "unknown key" in msg and "did you mean 'concurrency'" in msg
    err = load_error(tmp_path, {**MINIMAL, "retention_days": 7})
    assert "retention_days" in str(err) and "retention" in str(err)
    err = load_error(tmp_path, with_change(lambda d: d["databases"][0].update(prioriti="high")))
    assert "databases[0].prioriti" in str(err)


@pytest.mark.parametrize(
    "section, key, suggestion",
    [
        ("cloudflare", "api_token", "api_token_env"),
        ("alerts", "discord_webhook", "discord_webhook_env"),
        ("alerts", "webhook", "webhook_env"),
    ],
)
def test_secret_value_in_file(tmp_path, section, key, suggestion):
    secret = "hJk3lm9QwErTy7uIoP2aSdF5gHjK8lZxCvBnM0qW"
    err = load_error(tmp_path, {**MINIMAL, section: {key: secret}})
    msg = str(err)
    assert f"{section}.{key}" in msg and "secret" in msg and suggestion in msg
    assert secret not in msg


def test_secret_access_key_in_s3_section(tmp_path):
    err = load_error(tmp_path, {**MINIMAL, "bucket": {"s3": {"bucket": "grove-patina", "secret_access_key": "abc"}}})
    assert "bucket.s3.secret_access_key" in str(err) and "secret_access_key_env" in str(err)


def test_secret_pasted_into_env_field(tmp_path):
    err = load_error(tmp_path, {**MINIMAL, "cloudflare": {"api_token_env": "hJk3lm9QwErTy7uIoP2aSdF5gHjK8lZxCvBnM0qW"}})
    assert "cloudflare.api_token_env" in str(err) and "looks like a secret" in str(err)
    err = load_error(tmp_path, {**MINIMAL, "alerts": {"discord_webhook_env": "https://discord.com/api/webhooks/1/x"}})
    assert "alerts.discord_webhook_env" in str(err) and "NAME of the environment variable" in str(err)


def test_credentials_in_urls_are_rejected(tmp_path):
    err = load_error(tmp_path, {**MINIMAL, "cloudflare": {"api_url": "https://user:pw@api.example.com/"}})
    assert "cloudflare.api_url" in str(err) and "credentials" in str(err)


def test_optional_webhooks_can_be_disabled(tmp_path):
    config = load_config(write(tmp_path, {**MINIMAL, "alerts": {"discord_webhook_env": None}}), env={})
    assert config.alerts.discord_webhook_env is None
    assert config.alerts.discord_webhook_url(env={"PATINA_DISCORD_WEBHOOK": "https://x"}) is None
    assert config.alerts.webhook_url(env={"PATINA_WEBHOOK_URL": "https://hook.example/x"}) == "https://hook.example/x"
    assert config.alerts.webhook_url(env={}) is None


# --------------------------------------------------------------------------------------------
# Scalars
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["next monday", "2026-13-01", "2026-01-01T03:00:00Z", 20260101])
def test_non_date_start_date(tmp_path, value):
    err = load_error(tmp_path, {**MINIMAL, "start_date": value})
    assert err.field == "start_date" and "YYYY-MM-DD" in str(err)


def test_quoted_start_date_is_fine(tmp_path):
    text = yaml.safe_dump(MINIMAL) + 'start_date: "2026-02-01"\n'
    assert load_config(write(tmp_path, text), env={}).start_date == dt.date(2026, 2, 1)


def test_only_utc(tmp_path):
    err = load_error(tmp_path, {**MINIMAL, "timezone": "America/Los_Angeles"})
    assert err.field == "timezone" and "only UTC" in str(err)


@pytest.mark.parametrize("key", ["daily_days", "weekly_weeks"])
def test_negative_retention(tmp_path, key):
    err = load_error(tmp_path, {**MINIMAL, "retention": {key: -3}})
    assert f"retention.{key}" in str(err) and "negative" in str(err) and "at least 1" in str(err)


@pytest.mark.parametrize(
    "section, key, value, fragment",
    [
        ("dump", "format", "sql.bz2", "must be one of sql, sql.gz, sql.zst"),
        ("dump", "concurrency", 0, "at least 1"),
        ("dump", "concurrency", "three", "whole number"),
        ("dump", "concurrency", True, "whole number"),
        ("retention", "weekly_format", "zip", "tar.zst, tar.gz"),
        ("alerts", "size_decrease_ratio", 1.5, "less than 1"),
        ("alerts", "size_increase_ratio", 0.9, "greater than 1"),
        ("alerts", "notify_on_success", "sometimes", "true or false"),
        ("alerts", "stale_warn_after_days", 10, "stale_after_days"),
    ],
)
def test_bad_scalars(tmp_path, section, key, value, fragment):
    err = load_error(tmp_path, {**MINIMAL, section: {key: value}})
    assert f"{section}.{key}" in str(err) and fragment in str(err)


def test_yaml_syntax_error_has_line_number(tmp_path):
    text = textwrap.dedent("""\
        start_date: 2026-01-01
        databases:
          - name: groveauth
            source: ./auth.sqlite
           priority: critical
        bucket: {local: {path: b}}
        """)
    err = load_error(tmp_path, text)
    assert "YAML syntax error" in str(err)
    assert err.problems[0].line in (4, 5)
    assert f"line {err.problems[0].line}" in str(err)


def test_duplicate_yaml_keys_are_errors(tmp_path):
    text = yaml.safe_dump(MINIMAL) + "dump: {format: sql}\ndump: {format: sql.gz}\n"
    err = load_error(tmp_path, text)
    assert "duplicate key 'dump'" in str(err)


def test_empty_and_non_mapping_files(tmp_path):
    assert "empty" in str(load_error(tmp_path, ""))
    assert "mapping" in str(load_error(tmp_path, "- just\n- a list\n"))


def test_all_problems_reported_at_once(tmp_path):
    data = with_change(lambda d: (d["databases"][0].update(priority="urgent"), d.update(timezone="CET")))
    err = load_error(tmp_path, data)
    fields = {p.field for p in err.problems}
    assert {"databases[0].priority", "timezone"} <= fields
    assert "2 problems" in str(err)


# --------------------------------------------------------------------------------------------
# Safe views
# --------------------------------------------------------------------------------------------


def test_redacted_and_describe_never_show_secret_values(tmp_path):
    config = load_config(EXAMPLE, env={})
    env = {
        "CLOUDFLARE_API_TOKEN": "cf-secret-value-123",
        "R2_SECRET_ACCESS_KEY": "r2-secret-value-456",
        "PATINA_DISCORD_WEBHOOK": "https://discord.com/api/webhooks/secret-789",
    }
    text = config.describe(env) + json.dumps(config.redacted())
    for secret in env.values():
        assert secret not in text
    assert "CLOUDFLARE_API_TOKEN (set)" in text and "R2_ACCESS_KEY_ID (not set)" in text
    red = config.redacted()
    assert red["cloudflare"]["api_token_env"] == "CLOUDFLARE_API_TOKEN"
    assert red["databases"][0]["asset_name"] == "groveauth"
    json.dumps(red)  # JSON-friendly
    assert "groveauth [critical]" in default_config(tmp_path).describe()


def test_api_token_helper(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), env={})
    assert config.cloudflare.api_token(env={"CLOUDFLARE_API_TOKEN": "tok"}) == "tok"
    with pytest.raises(ConfigError, match="CLOUDFLARE_API_TOKEN is not set"):
        config.cloudflare.api_token(env={})


def test_the_api_budget_and_consistency_retries(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), env={})
    assert config.cloudflare.requests_per_5_minutes == 600 and config.dump.consistency_retries == 2
    data = with_change(lambda d: d.update(cloudflare={"requests_per_5_minutes": 300}, dump={"consistency_retries": 0}))
    config = load_config(write(tmp_path, data), env={})
    assert config.cloudflare.requests_per_5_minutes == 300 and config.dump.consistency_retries == 0
    err = load_error(tmp_path, with_change(lambda d: d.update(cloudflare={"requests_per_5_minutes": 1500})))
    assert err.field == "cloudflare.requests_per_5_minutes" and "1200" in str(err)


def test_a_database_name_ending_in_a_line_break_is_refused(tmp_path):
    data = {**MINIMAL, "databases": [{**MINIMAL["databases"][1], "name": "scout-db\n"}]}
    assert "databases[0].name: 'scout-db\\n' is not valid -- use 1-63 characters" in str(load_error(tmp_path, data))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(cloudflare={"api_token_env": "CLOUDFLARE_API_TOKEN\n"}), "cloudflare.api_token_env"),
        (lambda d: d.update(bucket={"s3": {"bucket": "grove-patina\n"}}), "bucket.s3.bucket"),
        (
            lambda d: d.update(
                alerts={"email": {"host": "smtp.example.com", "from": "p@example.com\n", "to": "o@x.io"}}
            ),
            "alerts.email.from",
        ),
        (
            lambda d: d.update(
                alerts={"email": {"host": "smtp.example.com", "from": "p@example.com", "to": "o@x.io\n"}}
            ),
            "alerts.email.to",
        ),
    ],
)
def test_a_value_ending_in_a_line_break_is_refused(tmp_path, change, field):
    """A YAML block scalar (`|`) ends in a line break, and Python's `$` matches before one: each pattern
    that checks a whole value must end at the text's end."""
    err = load_error(tmp_path, with_change(change))
    assert field in str(err)
