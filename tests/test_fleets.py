"""Fleets without Dagster: `databases_from:` in patina.yaml, tenant names, the roster kept in the bucket,
and a night of tenants behind the loopback D1 server, each backed up under the same key layout as a
configured database (so `patina list` and `restore` work per tenant)."""

import json

import pytest
import yaml
from support.configs import small_database, write_config
from support.d1_server import D1Server

from patina_assets.archive import ArchiveStore
from patina_assets.backup import open_store
from patina_assets.cli import main
from patina_assets.config import ConfigError, FleetConfig, load_config
from patina_assets.engine.d1_accounts import AccountListing, ListedDatabase
from patina_assets.fleets import (
    FleetError,
    back_up_fleet,
    discover,
    fleet_cloudflare,
    load_roster,
    roster_from_listing,
    roster_key,
    tenant_name,
)
from patina_assets.reconciliation import RecordedBackups, reconcile
from patina_assets.storage import DATABASE_NAME

ACCOUNT = "0123456789abcdef0123456789abcdef"


def fleet_config(tmp_path, fleets, databases=(), **sections):
    document = {
        "start_date": "2026-01-01",
        **({"databases": list(databases)} if databases else {}),
        "databases_from": fleets,
        "bucket": {"local": {"path": str(tmp_path / "bucket")}},
        **sections,
    }
    path = tmp_path / "patina.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_config(path, env={})


def tenants(tmp_path, names, rows=5):
    directory = tmp_path / "d1"
    directory.mkdir(exist_ok=True)
    return {
        f"1c0ffee0-0000-4000-8000-{i:012x}": small_database(directory / f"{n}.sqlite", rows)
        for i, n in enumerate(names)
    }


def test_databases_from_alone_is_a_configuration(tmp_path):
    config = fleet_config(
        tmp_path,
        [{"name": "tenants", "account": ACCOUNT, "name_pattern": "tenant-*", "priority": "high"}],
    )
    assert config.databases == ()
    assert config.fleets == (FleetConfig(name="tenants", account_id=ACCOUNT, name_pattern="tenant-*", priority="high"),)
    assert config.fleets[0].token_env(config.cloudflare) == "CLOUDFLARE_API_TOKEN"


@pytest.mark.parametrize(
    "fleet, problem",
    [
        ({"account": ACCOUNT}, r"databases_from\[0\]\.name: is required"),
        ({"name": "t", "account": "not an id!"}, r"databases_from\[0\]\.account: .* is not valid"),
        ({"name": "t", "account": ACCOUNT + "\n"}, r"databases_from\[0\]\.account: .* is not valid"),
        ({"name": "t", "account": ACCOUNT, "priority": "urgent"}, r"priority: 'urgent' is not allowed"),
        ({"name": "t", "account": ACCOUNT, "api_token": "secret"}, r"looks like a secret value"),
        ({"name": "t", "account": ACCOUNT, "name_pattern": " "}, r"name_pattern: is empty"),
        ({"name": "blog", "account": ACCOUNT}, r"'blog' is also the \(asset\) name of a configured database"),
        ({"name": "my-db", "account": ACCOUNT}, r"'my-db' is also the \(asset\) name of a configured database"),
    ],
)
def test_bad_fleets_are_refused_with_the_field_and_the_fix(tmp_path, fleet, problem):
    with pytest.raises(ConfigError, match=problem):
        fleet_config(
            tmp_path,
            [fleet],
            databases=[
                {"name": "blog", "source": str(tmp_path / "blog.sqlite")},
                {"name": "my_db", "source": str(tmp_path / "my.sqlite")},
            ],
        )


def test_without_databases_or_databases_from_the_config_says_what_is_missing(tmp_path):
    path = tmp_path / "patina.yaml"
    path.write_text(yaml.safe_dump({"bucket": {"local": {"path": str(tmp_path)}}}))
    with pytest.raises(ConfigError, match="databases: is required"):
        load_config(path, env={})


def test_d1_names_become_database_names_that_the_bucket_accepts():
    def named(name, uuid="0f2c1d3e-aaaa-4bbb-8ccc-123456789abc"):
        return tenant_name(ListedDatabase(uuid=uuid, name=name))

    assert named("tenant-042") == "tenant-042"  # valid names are kept as they are
    assert named("MyShop") == "myshop-0f2c1d3e"
    assert named("Acme Corp (EU)") == "acme-corp--eu-0f2c1d3e"
    assert named("x" * 80) == "x" * 54 + "-0f2c1d3e"
    assert named("_db") == "db-0f2c1d3e"
    assert named("shop\n") == "shop-0f2c1d3e"  # a final line break is not kept (`$` would have let it through)
    assert named("MyShop", uuid="9a9a9a9a-0000-4000-8000-000000000000") == "myshop-9a9a9a9a"  # folded alike, kept apart
    for odd in ("MyShop", "Acme Corp (EU)", "x" * 80, "_db", "---", "ÜBER"):
        assert DATABASE_NAME.match(named(odd)), odd


def test_a_tenant_whose_name_is_taken_is_refused_and_vanished_tenants_are_kept_in_the_roster():
    fleet = FleetConfig(name="tenants", account_id=ACCOUNT)

    def listing(*names):
        databases = tuple(ListedDatabase(uuid=f"{n}-uuid", name=n) for n in names)
        return AccountListing(ACCOUNT, "*", databases, 0, 1, 1, 0.0, total_listed=len(names))

    first = roster_from_listing(fleet, listing("a", "b", "blog"), taken={"blog"})
    assert first.names == ("a", "b") and "blog" in first.refused and "already" in first.refused["blog"]
    second = roster_from_listing(fleet, listing("b", "c"), previous=first)
    assert second.names == ("b", "c") and [t.name for t in second.vanished] == ["a"]
    with pytest.raises(FleetError, match="vanished .* backups are kept"):
        second.tenant("a")
    third = roster_from_listing(fleet, listing("a", "c"), previous=second)
    assert [t.name for t in third.vanished] == ["b"]  # "a" came back
    assert type(third).from_json(third.to_json()) == third


def stored_slots(store):
    return [(m.day, m.database) for m in store.list_daily()]


def test_a_night_of_tenants_is_stored_per_tenant_and_restorable(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    names = [f"tenant-{i:02d}" for i in range(6)] + ["Mixed Case"]
    with D1Server(tenants(tmp_path, names + ["billing"]), account_id=ACCOUNT) as server:
        config = write_config(
            tmp_path,
            [],
            databases_from=[{"name": "tenants", "account": ACCOUNT, "name_pattern": "[tM]*"}],
            cloudflare={"api_url": server.base_url},
        )
        fleet = config.fleets[0]
        store = open_store(config)
        cloudflare = fleet_cloudflare(fleet, config, env={"CLOUDFLARE_API_TOKEN": "good-token"})
        roster = discover(fleet, config, store, cloudflare)
        assert store.bucket.stat(roster_key("tenants")) is not None
        assert roster.renamed() == {"Mixed Case": "mixed-case-1c0ffee0"} and len(roster.tenants) == 7
        assert load_roster(store, "tenants") == roster

        night = back_up_fleet(fleet, roster, "2026-03-01", store, cloudflare, config)
    assert night.failed == {} and sorted(night.stored) == sorted(roster.names)
    assert night.requests > 0
    stored = {m.database: m for m in store.list_daily(day="2026-03-01")}
    assert set(stored) == set(roster.names)
    assert stored["tenant-03"].key.startswith("daily/2026-03-01/tenant-03.")
    assert stored["tenant-03"].source.startswith(f"d1://{ACCOUNT}/1c0ffee0-")
    assert all(m.point_in_time and m.table_rows["users"] == 5 for m in stored.values())

    # `patina status` has a line per tenant; the roster is no stray object for the bucket's reconciliation.
    assert main(["--config", str(config.source_path), "status", "--json"]) == 0
    databases = {d["database"]: d for d in json.loads(capsys.readouterr().out)["databases"]}
    assert set(databases) == set(roster.names) and databases["tenant-03"]["lastBackup"] == "2026-03-01"
    assert main(["--config", str(config.source_path), "restore-guide", "tenant-03", "--json"]) == 0
    guide = json.loads(capsys.readouterr().out)
    assert "tenant-03" in json.dumps(guide)
    reconciliation = reconcile(ArchiveStore(store), RecordedBackups(dailies=frozenset(stored_slots(store))), deep=False)
    assert reconciliation.unknown == [], reconciliation.unknown


def test_a_missing_roster_says_to_run_the_discovery(tmp_path):
    config = fleet_config(tmp_path, [{"name": "tenants", "account": ACCOUNT}])
    with pytest.raises(FleetError, match="discovery has not run yet"):
        load_roster(open_store(config), "tenants")


def test_discovery_starts_an_empty_history_only_for_new_tenants_without_backups(tmp_path, monkeypatch):
    """A new tenant with no backup gets an empty history index (its first backup then lists none of the keys
    of daily/); one that has backups already (its roster was lost, say) keeps the rebuild from the bucket, so
    none is hidden."""
    from patina_assets import history

    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "good-token")
    databases = tenants(tmp_path, ["tenant-a", "tenant-b"])
    with D1Server(databases, account_id=ACCOUNT) as server:
        config = fleet_config(
            tmp_path,
            [{"name": "tenants", "account": ACCOUNT, "name_pattern": "tenant-*"}],
            cloudflare={"api_url": server.base_url},
        )
        fleet, store = config.fleets[0], open_store(config)
        cloudflare = fleet_cloudflare(fleet, config, env={"CLOUDFLARE_API_TOKEN": "good-token"})
        roster = discover(fleet, config, store, cloudflare)
        assert history.read_index(store, "tenant-a") == {} and history.read_index(store, "tenant-b") == {}
        night = back_up_fleet(fleet, roster, "2026-03-01", store, cloudflare, config)
        assert sorted(night.stored) == ["tenant-a", "tenant-b"]

        store.bucket.delete(roster_key("tenants"))  # the roster lost: both tenants are new again
        store.bucket.delete(history.index_key("tenant-a"))  # and one index with it
        discover(fleet, config, store, cloudflare)
        assert history.read_index(store, "tenant-a") is None  # left to the rebuild: it has a backup
        assert list(history.read_index(store, "tenant-b")) == ["2026-03-01"]  # kept, not emptied
        assert history.newest_backup(store, "tenant-a").day == "2026-03-01"  # rebuilt from the bucket
