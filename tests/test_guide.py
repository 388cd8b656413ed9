"""The restore guide's Time Travel method: the backup's own bookmark, exact when the backup is one point
in time, and the exact alternative when it is not."""

import dataclasses
import hashlib

from support.configs import write_config

from patina_assets.catalog import DAILY, Backup
from patina_assets.guide import render_guide, restore_guide
from patina_assets.storage import Manifest

SOURCE = "d1://0123456789abcdef0123456789abcdef/6a289378-c662-4c6a-9f1b-fa5296e03fa2"
START, END = "00000005-00000000-00000000-aa", "00000009-00000000-00000000-bb"


def backup(**changes) -> Backup:
    """A daily backup of groveauth whose manifest has `changes`."""
    manifest = Manifest(
        database="groveauth",
        day="2026-03-09",
        format="sql.zst",
        sql_bytes=100,
        sql_sha256=hashlib.sha256(b"").hexdigest(),
        tables=1,
        rows=3,
        table_rows={"users": 3},
        table_digests={"users": "a" * 64},
        content_digest="c" * 64,
        schema_fingerprint="d" * 64,
        source="d1://acct/db",
        point_in_time=True,
        requests=9,
        started_at="2026-03-10T03:00:00Z",
        finished_at="2026-03-10T03:00:05Z",
        job_id="job",
        consistency="one batch",
        bookmark=START,
        end_bookmark=START,
    )
    manifest = dataclasses.replace(manifest, **changes)
    return Backup(
        database="groveauth",
        day="2026-03-09",
        location=DAILY,
        key="daily/x",
        sql_bytes=100,
        sql_sha256="",
        tables=1,
        rows=3,
        created_at=None,
        expires_at=None,
        manifest=manifest,
    )


def time_travel(tmp_path, b: Backup) -> dict:
    config = write_config(tmp_path, [{"name": "groveauth", "source": SOURCE}])
    guide = restore_guide(config, config.databases[0], [b])
    assert "time-travel restore" in render_guide(guide)
    return guide["restoreInstructions"]["method2_timetravel"]


def test_a_point_in_time_backup_offers_its_own_bookmark(tmp_path):
    method = time_travel(tmp_path, backup())
    assert method["steps"][1] == (
        f"2. Restore to exactly the state this backup holds: "
        f"wrangler d1 time-travel restore groveauth --bookmark={START}"
    )


def test_a_backup_that_is_not_one_point_in_time_offers_the_exact_alternative(tmp_path):
    method = time_travel(tmp_path, backup(point_in_time=False, consistency="bookmark moved", end_bookmark=END))
    assert f"--bookmark={START}" in method["steps"][1] and "started at" in method["steps"][1]
    assert "NOT one point in time" in method["note"] and END in method["note"]


def test_a_backup_without_a_bookmark_keeps_the_timestamp(tmp_path):
    assert "--timestamp=" in time_travel(tmp_path, backup(bookmark=None, end_bookmark=None))["steps"][1]


def test_a_tenant_with_a_derived_name_gets_wrangler_commands_for_its_d1_database(tmp_path, capsys):
    """`My Shop` is backed up as `my-shop-<uuid prefix>`: the guide names the D1 database it stands for (name and
    id), wrangler commands name `My Shop` (quoted), patina commands the name its backups are filed under."""
    import json

    from patina_assets.backup import open_store
    from patina_assets.cli import main
    from patina_assets.engine.d1_accounts import AccountListing, ListedDatabase
    from patina_assets.fleets import roster_from_listing, roster_key

    account, uuid = "0123456789abcdef0123456789abcdef", "0f2c1d3e-aaaa-4bbb-8ccc-123456789abc"
    config = write_config(tmp_path, [], databases_from=[{"name": "shops", "account": account}])
    listing = AccountListing(account, "*", (ListedDatabase(uuid=uuid, name="My Shop"),), 0, 1, 1, 0.1, total_listed=1)
    roster = roster_from_listing(config.fleets[0], listing)
    open_store(config).bucket.put_bytes(roster_key("shops"), roster.to_json().encode())
    [name] = roster.names
    assert name == "my-shop-0f2c1d3e"

    assert main(["--config", str(config.source_path), "restore-guide", name]) == 0
    text = capsys.readouterr().out
    assert f"D1 database {uuid} (account {account})" in text and "D1 name: 'My Shop'" in text
    assert "wrangler d1 time-travel info 'My Shop'" in text
    assert "wrangler d1 time-travel restore 'My Shop' --timestamp=" in text
    assert f"patina restore YYYY-MM-DD {name} --to d1://{account}/NEW_DATABASE_ID --yes" in text
    assert f"replace {uuid} ('My Shop') with the new database's id" in text
    assert "time-travel info my-shop" not in text and "execute my-shop-0f2c1d3e " not in text

    assert main(["--config", str(config.source_path), "restore-guide", name, "--json"]) == 0
    guide = json.loads(capsys.readouterr().out)
    assert (guide["database"], guide["d1Name"], guide["databaseId"]) == (name, "My Shop", uuid)
