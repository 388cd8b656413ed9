"""What a database holds and in which order a dump must recreate it.

Read through a `Source` with plain queries, so the same plan serves a SQLite file and a D1 database.
The order follows what D1 accepts on import (see ../shared/notes/d1-facts.md): every table before any
row (an INSERT into a child table fails while its parent table does not exist, even with deferred
foreign keys), indexes after the data, views in dependency order, triggers last so a restore does not
fire them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import DumpError, SourceError
from .sqltext import (
    identifiers,
    module_arguments,
    option_value,
    quote_identifier,
    quote_text,
)

if TYPE_CHECKING:
    from .sources import Source

ROWID_NAMES = ("rowid", "_rowid_", "oid")
D1_MAX_COLUMNS = 100
# Columns whose `hidden` flag in PRAGMA table_xinfo marks them as not inserted:
# 1 = hidden column of a virtual table, 2 = VIRTUAL generated, 3 = STORED generated.
GENERATED = (2, 3)
SCRATCH_NAME = "_patina_big_row"
# Virtual-table modules whose visible columns are their data: their rows are dumped as INSERTs.
FILLED_MODULES = ("rtree", "rtree_i32")
# Modules that read what other tables hold and keep nothing of their own: recreated, never inserted into.
DERIVED_MODULES = ("fts5vocab", "fts4aux", "fts3tokenize", "dbstat")
FTS_MODULES = ("fts5", "fts4", "fts3")


@dataclass(frozen=True)
class SchemaObject:
    """One row of sqlite_schema that the dump recreates."""

    type: str
    name: str
    tbl_name: str
    sql: str


@dataclass(frozen=True)
class Column:
    name: str
    declared_type: str
    pk: int
    hidden: int


@dataclass
class TablePlan:
    """How one table's rows are read and written.

    `columns` are the names the INSERT lists, in order; `key` the positions among them that identify a
    row (the rowid, or the primary key of a WITHOUT ROWID table), by which rows are read in order.
    """

    name: str
    sql: str
    virtual: bool
    without_rowid: bool
    columns: list[str]
    key: list[int]
    # "rows", "rebuild" (external-content full-text index) or "none" (recreated, never inserted into)
    data: str = "rows"
    note: str = ""
    # D1 refuses an INSERT naming more than 100 columns: a 100-column table's rows go in without their
    # rowid (the first column here), each followed by an UPDATE that sets it.
    rowid_by_update: bool = False
    # FTS5 settings kept in the index's _config table (rank, automerge, ...), replayed after creation.
    fts5_config: list[tuple[str, object]] = field(default_factory=list)
    # A table name the schema does not use: a row too big for one statement is built there, without
    # constraints, and moved into this table by one INSERT ... SELECT (see `dump._DumpWriter.write_large_row`).
    scratch: str = SCRATCH_NAME

    @property
    def quoted(self) -> str:
        return quote_identifier(self.name)

    @property
    def key_columns(self) -> list[str]:
        return [self.columns[i] for i in self.key]

    def create_if_not_exists(self) -> str:
        """The table's CREATE statement made idempotent, so a cut-out section can be run on its own."""
        return re.sub(r"^CREATE\s+(VIRTUAL\s+)?TABLE\s+", lambda m: m.group(0) + "IF NOT EXISTS ", self.sql, count=1)


@dataclass
class SchemaPlan:
    tables: list[TablePlan]
    indexes: list[SchemaObject]
    views: list[SchemaObject]
    triggers: list[SchemaObject]
    has_sequence: bool
    fingerprint: str
    warnings: list[str] = field(default_factory=list)
    # PRAGMA user_version and application_id (None where the source will not say: D1 refuses them).
    pragmas: dict[str, int] = field(default_factory=dict)


def read_schema(source: Source) -> SchemaPlan:
    """Plan the dump of everything `source` holds, except what SQLite or D1 own."""
    objects = [
        SchemaObject(*row) for row in source.query("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid")
    ]
    table_list = source.query("SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main'")
    kinds = {name: kind for name, kind, _wr in table_list}
    without_rowid = {name for name, _kind, wr in table_list if wr}

    def owned_elsewhere(name: str) -> bool:
        lowered = name.lower()
        return lowered.startswith("sqlite_") or lowered.startswith("_cf_") or kinds.get(name) == "shadow"

    table_objects = [o for o in objects if o.type == "table" and not owned_elsewhere(o.name)]
    # A virtual table of a module that is not loaded cannot even list its columns: only ask for those
    # of tables whose rows are dumped.
    readable = (None, *FTS_MODULES, *FILLED_MODULES)
    columns = _read_columns(source, [o.name for o in table_objects if _vtab_module(o.sql) in readable])
    scratch = scratch_name(o.name for o in objects)
    warnings: list[str] = []
    tables = []
    for obj in table_objects:
        plan = _plan_table(obj, columns.get(obj.name, []), obj.name in without_rowid)
        plan.scratch = scratch
        if plan.data == "unknown":
            plan.data, plan.note = "none", _unknown_module_note(source, plan)
        if plan.note:
            warnings.append(plan.note)
        if _vtab_module(obj.sql) == "fts5":
            plan.fts5_config = _fts5_config(source, obj.name)
        tables.append(plan)
    dumped = {o.name for o in table_objects}
    indexes = [o for o in objects if o.type == "index" and o.sql and o.tbl_name in dumped]
    views = _in_dependency_order([o for o in objects if o.type == "view"])
    triggers = [o for o in objects if o.type == "trigger" and not owned_elsewhere(o.tbl_name)]
    has_sequence = any(o.type == "table" and o.name == "sqlite_sequence" for o in objects)
    everything = table_objects + indexes + views + triggers
    warnings += [
        f"{o.type} {o.name!r} has the text BEGIN TRANSACTION in its SQL: `wrangler d1 execute --local` would "
        "cut it out of the file; restore with `patina restore` or D1's import API (`--remote`)"
        for o in everything
        if "BEGIN TRANSACTION" in o.sql
    ]
    return SchemaPlan(
        tables=tables,
        indexes=indexes,
        views=views,
        triggers=triggers,
        has_sequence=has_sequence,
        fingerprint=schema_fingerprint(everything),
        warnings=warnings,
        pragmas=_pragmas(source),
    )


def scratch_name(names) -> str:
    """A table name that none of the schema's objects has (SQLite compares names without case)."""
    taken = {n.lower() for n in names}
    name = SCRATCH_NAME
    while name.lower() in taken:
        name += "_"
    return name


def _vtab_module(sql: str) -> str | None:
    """The module of a CREATE VIRTUAL TABLE statement (None for an ordinary table)."""
    return module_arguments(sql)[0] if sql.upper().startswith("CREATE VIRTUAL TABLE") else None


def _unknown_module_note(source: Source, plan: TablePlan) -> str:
    """The warning for a virtual table whose module Patina cannot fill: whether it holds rows, if it can tell."""
    module = _vtab_module(plan.sql)
    start = f"virtual table {plan.name!r} uses the module {module!r}, which Patina does not know how to fill:"
    try:
        rows = source.query(f"SELECT count(*) FROM {plan.quoted}")[0][0]
    except SourceError as exc:
        return (
            f"{start} it is recreated empty, and it could not be read here ({exc}); if it holds data, "
            "that data is NOT in this dump, and restoring needs the module loaded"
        )
    if not rows:
        return f"{start} it held no rows and is recreated empty (restoring needs the module loaded)"
    return (
        f"{start} its {rows} rows are NOT in this dump; it is recreated empty and must be refilled by "
        "the application (restoring needs the module loaded)"
    )


def _pragmas(source: Source) -> dict[str, int]:
    try:
        rows = source.query("SELECT user_version, application_id FROM pragma_user_version, pragma_application_id")
    except SourceError:  # D1: "not authorized"
        return {}
    return {name: int(value) for name, value in zip(("user_version", "application_id"), rows[0]) if value}


def _fts5_config(source: Source, table: str) -> list[tuple[str, object]]:
    """The settings an FTS5 index keeps in its _config shadow table, except its format version."""
    shadow = quote_identifier(table + "_config")
    return [(k, v) for k, v in source.query(f"SELECT k, v FROM {shadow} WHERE k <> 'version' ORDER BY k")]


def schema_fingerprint(objects: list[SchemaObject]) -> str:
    """sha256 of the schema objects (type, name, table, SQL), independent of their order in the file."""
    canonical = sorted([o.type, o.name, o.tbl_name, o.sql] for o in objects)
    return hashlib.sha256(json.dumps(canonical, ensure_ascii=False).encode()).hexdigest()


def _read_columns(source: Source, names: list[str]) -> dict[str, list[Column]]:
    if not names:
        return {}
    found: dict[str, list[Column]] = {name: [] for name in names}
    # One query for all tables (one request over REST), in batches to stay under D1's 100 KB statements.
    batches: list[list[str]] = [[]]
    listed = 0  # bytes of the current batch's IN list
    for name in names:
        size = len(quote_text(name).encode("utf-8", "surrogatepass")) + 1
        if batches[-1] and (len(batches[-1]) == 200 or listed + size > 60_000):
            batches.append([])
            listed = 0
        batches[-1].append(name)
        listed += size
    for batch in batches:
        in_list = ",".join(quote_text(n) for n in batch)
        rows = source.query(
            "SELECT m.name, x.name, x.type, x.pk, x.hidden FROM sqlite_master AS m "
            f"JOIN pragma_table_xinfo(m.name) AS x WHERE m.type = 'table' AND m.name IN ({in_list}) ORDER BY m.name, x.cid"
        )
        for table, name, declared_type, pk, hidden in rows:
            found[table].append(Column(name, declared_type or "", int(pk), int(hidden)))
    return found


def _plan_table(obj: SchemaObject, columns: list[Column], without_rowid: bool) -> TablePlan:
    virtual = obj.sql.upper().startswith("CREATE VIRTUAL TABLE")
    if virtual:
        return _plan_virtual_table(obj, columns)
    names = [c.name for c in columns if c.hidden not in GENERATED]
    if without_rowid:
        pk = sorted((c for c in columns if c.pk), key=lambda c: c.pk)
        return TablePlan(obj.name, obj.sql, False, True, names, [names.index(c.name) for c in pk])
    alias = _rowid_alias(obj.sql, columns)
    if alias is not None:
        return TablePlan(obj.name, obj.sql, False, False, names, [names.index(alias)])
    taken = {c.name.lower() for c in columns}
    free = next((n for n in ROWID_NAMES if n not in taken), None)
    if free is None:
        note = (
            f"table {obj.name!r}: columns named rowid, _rowid_ and oid hide its rowids; they are renumbered on restore"
        )
        return TablePlan(obj.name, obj.sql, False, False, names, [], note=note)
    return TablePlan(obj.name, obj.sql, False, False, [free] + names, [0], rowid_by_update=len(names) >= D1_MAX_COLUMNS)


def _rowid_alias(sql: str, columns: list[Column]) -> str | None:
    """The INTEGER PRIMARY KEY column that is the rowid itself, if there is one.

    SQLite's quirk: `INTEGER PRIMARY KEY DESC` in a column definition is *not* an alias; when the
    statement mentions DESC at all, the rowid is dumped explicitly rather than guessed.
    """
    pk = [c for c in columns if c.pk]
    if len(pk) == 1 and pk[0].declared_type.upper() == "INTEGER" and not re.search(r"\bDESC\b", sql, re.IGNORECASE):
        return pk[0].name
    return None


def _plan_virtual_table(obj: SchemaObject, columns: list[Column]) -> TablePlan:
    module, args = module_arguments(obj.sql)
    visible = [c.name for c in columns if c.hidden == 0]
    if module in FTS_MODULES:
        content = option_value(args, "content")
        rowid = "rowid" if module == "fts5" else "docid"
        if content is None:
            return TablePlan(obj.name, obj.sql, True, False, [rowid] + visible, [0])
        if content == "":
            note = (
                f"table {obj.name!r} is a contentless {module} index: it keeps no text to dump, so it is "
                "recreated empty and must be refilled by the application"
            )
            return TablePlan(obj.name, obj.sql, True, False, [], [], data="none", note=note)
        return TablePlan(obj.name, obj.sql, True, False, [], [], data="rebuild")
    if module in FILLED_MODULES:  # their visible columns hold the data
        return TablePlan(obj.name, obj.sql, True, False, ["rowid"] + visible, [0])
    if module in DERIVED_MODULES:  # e.g. fts5vocab: "table x may not be modified"
        return TablePlan(obj.name, obj.sql, True, False, [], [], data="none")
    return TablePlan(obj.name, obj.sql, True, False, [], [], data="unknown")


def _in_dependency_order(views: list[SchemaObject]) -> list[SchemaObject]:
    """Views ordered so each comes after the views it reads (stable otherwise; a cycle keeps file order)."""
    by_name = {v.name.lower(): v for v in views}
    depends = {
        v.name: {by_name[n].name for n in identifiers(v.sql) if n in by_name and by_name[n] is not v} for v in views
    }
    ordered: list[SchemaObject] = []
    placed: set[str] = set()
    remaining = list(views)
    while remaining:
        ready = [v for v in remaining if depends[v.name] <= placed]
        if not ready:  # a cycle (or a false match): keep the original order for the rest
            ready = remaining[:1]
        for v in ready:
            ordered.append(v)
            placed.add(v.name)
        remaining = [v for v in remaining if v.name not in placed]
    return ordered


SEQUENCE_SQL = "SELECT name, CAST(seq AS TEXT) FROM sqlite_sequence ORDER BY rowid"


def sequence_rows(source: Source, tables: list[TablePlan]) -> list[tuple[str, int]]:
    """sqlite_sequence's counters for the dumped tables, so AUTOINCREMENT keeps counting where it was."""
    names = {t.name for t in tables}
    # CAST to TEXT: over the REST API an integer beyond 2**53 would come back rounded.
    rows = source.query(SEQUENCE_SQL)
    return [(name, int(seq)) for name, seq in rows if name in names and seq is not None]


def require_key(plan: TablePlan) -> None:
    if not plan.key:
        raise DumpError(f"table {plan.name!r} has no reachable rowid or primary key to read it by")
