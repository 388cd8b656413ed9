"""The restore guide for one database (`patina restore-guide DB`, `GET /restore-guide/{db}`).

The spec's guide, with the commands filled in for this installation: the database's name and id, the backups
the bucket really holds, the table to count and how many rows to expect, and the server's URL when it is
asked over HTTP. Plain Python over the ``Catalog``.

A Patina dump restores into an EMPTY database. It has no ``DROP TABLE``, on purpose: run against the wrong
database, or against the right one by mistake, a dump that drops tables destroys data before anyone notices,
and D1 enforces foreign keys, so dropping and re-creating tables that others reference fails half-way anyway.
So the guide restores into a new D1 database and then switches the binding to it; the damaged one stays
untouched until the new one is confirmed.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from .catalog import DAILY, Backup, CatalogError, iso
from .config import DatabaseConfig, PatinaConfig
from .storage import VERIFIED, Manifest
from .units import human_bytes

EMPTY_DATABASE_WARNING = (
    "A Patina dump restores into an EMPTY database: it has no DROP TABLE, so it can never wipe a database by "
    "mistake, and executing it against a database that still has these tables fails with 'table ... already "
    "exists' (D1 rolls the import back). Restore into a new D1 database, check it, then switch the binding "
    "(database_id in wrangler.toml) to it. Keep the old database until the new one is confirmed."
)


def restore_guide(
    config: PatinaConfig,
    database: DatabaseConfig,
    backups: list[Backup],
    base_url: str | None = None,
    *,
    manifest_of: Callable[[Backup], Manifest | None] | None = None,
) -> dict:
    """The guide as the spec's JSON document (with extra fields). ``manifest_of`` (``Catalog.manifest_of``)
    reads the newest backup's manifest (its bookmark, its tables' rows) when the listing came without it.

    Backups are filed (and `patina` commands take) the database's Patina name; wrangler names the database as
    D1 does, which for a fleet's tenant whose D1 name had to be changed (`My Shop`, backed up as
    `my-shop-0f2c1d3e`) is its D1 name (`database.d1_name`), quoted for the shell."""
    name = database.name
    d1_name = database.d1_name or name
    # The newest verified backup by capture time (``backups`` come newest capture first), else the newest usable.
    newest = next((b for b in backups if b.status == VERIFIED), None) or next((b for b in backups if b.usable), None)
    day = newest.day if newest else "YYYY-MM-DD"
    sql_file = f"{name}-{day}.sql"
    new_db = f"{name}-restored-{day.replace('-', '')}"
    q = shlex.quote
    d1 = q(d1_name)  # what wrangler is told: the D1 database in place (Time Travel), not the name backups go by
    manifest = _manifest(newest, manifest_of)
    count_table, expected = _table_to_count(manifest)
    count_sql = f"SELECT COUNT(*) FROM {_sql_name(count_table)}" if count_table else "SELECT name FROM sqlite_master"
    expect = f" (expect {expected:,})" if expected is not None else ""
    download = (
        f'curl --fail --remove-on-error -H "X-Patina-Key: $PATINA_KEY" -o {q(sql_file)} {base_url.rstrip("/")}/download/{day}/{name}'
        if base_url
        else f"patina download {day} {name} -o {q(sql_file)}"
    )
    order = [db.name for db in config.by_priority()].index(name) + 1
    account = database.account_id or "ACCOUNT_ID"
    wrangler_steps = [
        f"1. Download the backup (its sha256 is checked): {download}"
        + (f"  (or: patina download {day} {name} -o {q(sql_file)})" if base_url else ""),
        f"2. Review it: head -20 {q(sql_file)}; tail -12 {q(sql_file)} (the footer lists tables, rows and the SQL's sha256)",
        f"3. Check it restores (integrity, foreign keys, row counts): patina restore {day} {name} --to {q(name + '-' + day + '.sqlite')}",
        f"4. Create an empty D1 database: wrangler d1 create {new_db}",
        f"5. Execute: wrangler d1 execute {new_db} --remote --file={q(sql_file)} -y",
        f'6. Verify: wrangler d1 execute {new_db} --remote --command="{count_sql}"{expect}',
        _switch_step(database, d1_name),
    ]
    patina_steps = [
        f"1. Create an empty D1 database: wrangler d1 create {new_db} (note its id)",
        f"2. Restore through D1's import API (checks the target is empty, then every table's row count): "
        f"patina restore {day} {name} --to d1://{account}/NEW_DATABASE_ID --yes",
        "3. Switch the binding as in the wrangler method, step 7",
    ]
    moment = (newest.captured_at or newest.created_at) if newest else None
    timestamp = iso(moment) if moment else "YYYY-MM-DDTHH:MM:SSZ"
    bookmark_step, time_travel_note = _bookmark_step(d1, manifest)
    time_travel_steps = [
        f"1. Get available restore points: wrangler d1 time-travel info {d1}",
        bookmark_step
        or (
            f"2. Restore to a timestamp (e.g. when this backup was taken): "
            f'wrangler d1 time-travel restore {d1} --timestamp="{timestamp}"'
        ),
        f'3. Verify: wrangler d1 execute {d1} --remote --command="{count_sql}"',
    ]
    return {
        "database": name,
        "databaseId": database.database_id,
        "d1Name": d1_name if database.is_d1 else None,
        "accountId": database.account_id,
        "source": database.describe_source(),
        "description": database.description,
        "priority": database.priority,
        "restoreOrder": order,
        "config": str(config.source_path) if config.source_path else None,
        "availableBackups": [
            {
                "date": b.day,
                "size": human_bytes(b.sql_bytes),
                "sizeBytes": b.sql_bytes,
                "location": b.location,
                "tables": b.tables,
                "rows": b.rows,
                "createdAt": iso(b.created_at),
            }
            for b in backups
        ],
        "restoreInstructions": {
            "method1_wrangler": {
                "name": "Wrangler CLI (Recommended)",
                "steps": wrangler_steps,
                "warning": EMPTY_DATABASE_WARNING,
            },
            "method2_timetravel": {
                "name": "D1 Time Travel (last 30 days on paid plans, 7 on free)",
                "steps": time_travel_steps,
                "note": (
                    "Time Travel is faster and needs no download, but it restores the database in place "
                    "(everything after the timestamp is undone); it prints a bookmark to undo it with."
                    + time_travel_note
                ),
            },
            "method3_patina_import": {
                "name": "patina restore into D1 (the import API, like wrangler's --file)",
                "steps": patina_steps,
                "warning": EMPTY_DATABASE_WARNING,
            },
        },
        "notes": [
            f"Restore order across databases (the spec's priority order): "
            f"{', '.join(db.name for db in config.by_priority())}; this is number {order}.",
            f"All of this database's backups: patina list --db {name}",
        ]
        + _renamed_note(database, d1_name)
        + _encryption_notes(config, newest, sql_file),
    }


def _switch_step(database: DatabaseConfig, d1_name: str) -> str:
    if database.d1_name:  # a fleet's tenant: the application finds it by its id, not through a binding of its own
        return (
            f"7. Switch: where the application maps this tenant to its D1 database, replace {database.database_id} "
            f"({d1_name!r}) with the new database's id, and check the tenant; keep the old database until you are sure"
        )
    return (
        f"7. Switch: set database_id of the {database.name} binding in wrangler.toml to the new database's id, "
        "deploy, and check the application; keep the old database until you are sure"
    )


def _renamed_note(database: DatabaseConfig, d1_name: str) -> list[str]:
    if not database.d1_name:
        return []
    return [
        f"{database.name} is D1 database {d1_name!r} ({database.database_id}, account {database.account_id}): "
        f"its D1 name is not a valid backup name, so its backups are filed under {database.name}. Patina commands "
        f"take {database.name}; wrangler takes {shlex.quote(d1_name)}."
    ]


def _encryption_notes(config: PatinaConfig, backup: Backup | None, sql_file: str) -> list[str]:
    """How to open an encrypted backup: with Patina (the identity in the environment) or with age alone."""
    if backup is None or not backup.encrypted:
        return []
    q = shlex.quote
    stored = backup.stored_filename
    if backup.member:
        by_hand = (
            f"age -d -i key.txt {q(stored)} | tar --use-compress-program='zstd -d --long=27' -xf - {q(backup.member)}"
        )
    else:
        compressed = stored.removesuffix(".age")
        by_hand = f"age -d -i key.txt -o {q(compressed)} {q(stored)} && zstd -d {q(compressed)} -o {q(sql_file)}"
    return [
        f"This backup is encrypted with age: patina download and restore need the identity, from "
        f"${config.encryption.identity_file_env} (the path of the identity file). Over HTTP, a key without the "
        f"plaintext action (or a server without the identity) gets the stored file {stored}; open it with the age "
        f"CLI: {by_hand}"
    ]


def render_guide(guide: dict) -> str:
    """The guide for people (``patina restore-guide DB``)."""
    lines = [f"Restore guide: {guide['database']} ({guide['priority']}, restore order {guide['restoreOrder']})"]
    if guide["description"]:
        lines.append(f"  {guide['description']}")
    lines.append(f"  source: {guide['source']}")
    if guide.get("d1Name") and guide["d1Name"] != guide["database"]:
        lines.append(f"  D1 name: {guide['d1Name']!r} (its backups are filed under {guide['database']})")
    backups = guide["availableBackups"]
    if backups:
        lines.append(
            f"  backups ({len(backups)}): "
            + ", ".join(
                f"{b['date']} ({b['size']}{', weekly' if b['location'] != DAILY else ''})" for b in backups[:14]
            )
            + (" ..." if len(backups) > 14 else "")
        )
    else:
        lines.append("  backups: none in the bucket")
    for method in guide["restoreInstructions"].values():
        lines.append("")
        lines.append(method["name"] + ":")
        lines.extend(f"  {step}" for step in method["steps"])
        for key in ("warning", "note"):
            if method.get(key):
                lines.append(f"  {key.capitalize()}: {method[key]}")
    lines.append("")
    lines.extend(guide["notes"])
    return "\n".join(lines)


def _bookmark_step(name: str, manifest) -> tuple[str | None, str]:
    """Time Travel's step 2 for a backup that recorded D1's bookmark, and what to note about it."""
    if manifest is None or not manifest.bookmark:
        return None, ""
    command = f"wrangler d1 time-travel restore {name} --bookmark={manifest.bookmark}"
    if not manifest.point_in_time:
        return (
            f"2. Restore to the bookmark this backup started at: {command}",
            " This backup is NOT one point in time (the database was written while it was read, "
            f"bookmark {manifest.bookmark} to {manifest.end_bookmark}): the bookmark gives the database exactly "
            "as it was when the dump started, a state that really existed, which the backup does not hold.",
        )
    exact = manifest.end_bookmark == manifest.bookmark
    return (
        f"2. Restore to {'exactly the state this backup holds' if exact else 'the bookmark this backup started at'}: "
        f"{command}",
        "",
    )


def _manifest(backup: Backup | None, manifest_of: Callable[[Backup], Manifest | None] | None) -> Manifest | None:
    """The backup's daily manifest if there is one to read (a guide without it leaves out what it tells)."""
    if backup is None or manifest_of is None or backup.manifest is not None:
        return backup.manifest if backup is not None else None
    try:
        return manifest_of(backup)
    except CatalogError:  # replaced or damaged since it was listed: the guide stands without its details
        return None


def _table_to_count(manifest: Manifest | None) -> tuple[str | None, int | None]:
    """The table with the most rows in the backup's manifest, and its row count (to check a restore by)."""
    if manifest is None or not manifest.table_rows:
        return None, None
    rows = {t: n for t, n in manifest.table_rows.items() if not t.startswith("sqlite_")}
    if not rows:
        return None, None
    table = max(sorted(rows), key=lambda t: rows[t])
    return table, rows[table]


def _sql_name(name: str) -> str:
    return name if name.isidentifier() and name.isascii() else '\\"' + name.replace('"', '""') + '\\"'
