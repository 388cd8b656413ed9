"""Exact comparison of two SQLite databases, for round-trip tests of dumps.

``compare_databases(expected, actual)`` returns a list of human-readable differences
(empty: identical); ``assert_same_database`` raises ``AssertionError`` listing them.

Every difference starts with its category and a colon, so callers can filter:

- ``schema:``    sqlite_schema rows (type, name, tbl_name, sql text; rootpage ignored).
                 Left out: sqlite_stat* tables, shadow tables of virtual tables (and their
                 indexes), and ``_cf_*`` tables, which belong to D1.
- ``data:``      every value of every ordinary table (WITHOUT ROWID, STRICT, generated
                 columns and sqlite_sequence included), matched by rowid (or primary key).
                 Types must match (typeof), integers exactly, REALs bit for bit (so -0.0 is
                 not 0.0), TEXT and BLOB byte for byte (embedded NULs and invalid UTF-8
                 included), NULL is not ''. Rowid tables are matched by rowid, so rowids
                 must match even without an INTEGER PRIMARY KEY (``check_rowids=False``
                 compares those tables as sorted multisets instead); sqlite_sequence is
                 matched by name (its own rowids are free), and duplicate names are
                 reported; a table whose rowid, _rowid_ and oid are all column names is
                 compared in scan order.
- ``vtab:``      the visible rows of virtual tables (``SELECT rowid, *``), except
                 contentless FTS tables, whose columns read as NULL.
- ``fts:``       FTS indexes: the full fts5vocab 'instance' listing (fts4aux for FTS3/4),
                 MATCH queries built from terms of the expected index, the FTS5 ``_config``
                 rows (rank, automerge, ... set with INSERT commands), and the
                 ``integrity-check`` command run on a temporary copy of ``actual``.
- ``pragma:``    PRAGMA user_version and application_id (D1 refuses both, so a restore into
                 D1 cannot carry them: pass ``check_pragmas=False``).
- ``integrity:`` PRAGMA quick_check of ``actual``.

Both databases are opened read-only (``file:...?mode=ro``); ``expected`` is never written
to, and neither is ``actual`` (the FTS integrity-check runs on a backup copy). Rows are
streamed: tables are never loaded whole into memory.

Reading uses Python's sqlite3 module by default (TEXT fetched as raw bytes through
``text_factory``); ``engine="apsw"`` reads with apsw's current SQLite instead, for databases
that use features the old library lacks.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

__all__ = [
    "CATEGORIES",
    "Text",
    "compare_databases",
    "assert_same_database",
]

CATEGORIES = ("schema", "data", "vtab", "fts", "pragma", "integrity")

_DOUBLE = struct.Struct("<d")
_FTS_MODULES = {"fts3", "fts4", "fts5"}
# Shadow-table suffixes by module, used when PRAGMA table_list cannot classify a table
# (the reading library lacks the module, or table_list fails).
_SHADOW_SUFFIXES = {
    "fts5": ("data", "idx", "content", "docsize", "config"),
    "fts4": ("content", "segments", "segdir", "docsize", "stat"),
    "fts3": ("content", "segments", "segdir", "docsize", "stat"),
    "rtree": ("node", "rowid", "parent"),
    "rtree_i32": ("node", "rowid", "parent"),
    "geopoly": ("node", "rowid", "parent"),
}


class Text(bytes):
    """A TEXT value, as the exact bytes SQLite stores (a plain ``bytes`` is a BLOB)."""

    __slots__ = ()


def q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------------------
# Reading


def _to_str(v):
    if isinstance(v, bytes):
        return bytes(v).decode("utf-8", "surrogateescape")
    return v


class _Db:
    """A read-only connection that returns exact values (Text / bytes / int / float / None)."""

    def __init__(self, path: Path, engine: str):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(self.path)
        uri = self.path.resolve().as_uri() + "?mode=ro"
        self.engine = engine
        if engine == "sqlite3":
            self.con = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            self.con.text_factory = Text
        elif engine == "apsw":
            import apsw

            self.con = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
        else:
            raise ValueError(f"unknown engine {engine!r} (sqlite3 or apsw)")
        self._temp_names = 0
        # One read transaction: a consistent snapshot, and the schema is read once.
        self._exec("BEGIN")

    def close(self) -> None:
        try:
            self._exec("ROLLBACK")
        except Exception:
            pass
        self.con.close()

    def _exec(self, sql: str, params: Sequence = ()):
        if self.engine == "sqlite3":
            return self.con.execute(sql, params)
        return self.con.cursor().execute(sql, params)

    def meta(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """All rows of a small query, TEXT decoded to str."""
        return [tuple(_to_str(v) for v in row) for row in self._exec(sql, params)]

    def scalar(self, sql: str, params: Sequence = ()):
        rows = self.meta(sql, params)
        return rows[0][0] if rows else None

    def select(self, exprs: Sequence[str], tail: str, params: Sequence = ()) -> Iterator[tuple]:
        """Stream ``SELECT exprs tail`` with exact values."""
        if self.engine == "sqlite3":
            yield from self._exec("SELECT " + ", ".join(exprs) + " " + tail, params)
            return
        # apsw decodes TEXT to str (and cannot represent invalid UTF-8): fetch TEXT as a BLOB
        # plus a flag saying it was TEXT.
        parts = []
        for e in exprs:
            parts.append(f"CASE WHEN typeof({e})='text' THEN CAST({e} AS BLOB) ELSE {e} END")
            parts.append(f"typeof({e})='text'")
        for row in self._exec("SELECT " + ", ".join(parts) + " " + tail, params):
            yield tuple(Text(row[i]) if row[i + 1] else row[i] for i in range(0, len(row), 2))

    def temp_name(self) -> str:
        self._temp_names += 1
        return f"patina_compare_{self._temp_names}"

    def backup_to(self, dest: Path):
        """Copy the database into ``dest`` and return a writable connection to the copy."""
        if self.engine == "sqlite3":
            dst = sqlite3.connect(dest, isolation_level=None)
            self.con.backup(dst)
            return dst
        import apsw

        dst = apsw.Connection(str(dest))
        with dst.backup("main", self.con, "main") as b:
            b.step()
        return dst


# --------------------------------------------------------------------------------------
# Schema


def _vtab_module(sql: str | None) -> tuple[str, list[str]] | None:
    """(module, args) of a CREATE VIRTUAL TABLE statement, or None."""
    if not sql:
        return None
    toks = list(_tokens(sql))
    words = [t.upper() for t in toks[:3]]
    if words != ["CREATE", "VIRTUAL", "TABLE"]:
        return None
    i = 3
    if [t.upper() for t in toks[i : i + 3]] == ["IF", "NOT", "EXISTS"]:
        i += 3
    i += 1  # table name
    if i < len(toks) and toks[i] == ".":
        i += 2
    if i >= len(toks) or toks[i].upper() != "USING":
        return None
    module = _dequote(toks[i + 1]).lower()
    start = sql.find("(", _token_end(sql, i + 1))
    if start < 0:
        return module, []
    return module, _split_args(sql[start + 1 : sql.rfind(")")])


_TOKEN_RE = re.compile(
    r"""\s*("(?:[^"]|"")*"|\[[^\]]*\]|`(?:[^`]|``)*`|'(?:[^']|'')*'|[\w$\x80-\U0010ffff]+|\S)""",
    re.S,
)


def _tokens(sql: str) -> Iterator[str]:
    for m in _TOKEN_RE.finditer(sql):
        yield m.group(1)


def _token_end(sql: str, index: int) -> int:
    pos = 0
    for n, m in enumerate(_TOKEN_RE.finditer(sql)):
        pos = m.end()
        if n == index:
            break
    return pos


def _dequote(tok: str) -> str:
    tok = tok.strip()
    if len(tok) >= 2 and tok[0] in "\"'`[":
        close = "]" if tok[0] == "[" else tok[0]
        if tok[-1] == close:
            inner = tok[1:-1]
            return inner if close == "]" else inner.replace(close * 2, close)
    return tok


def _split_args(text: str) -> list[str]:
    args, depth, cur, quote = [], 0, [], None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None  # a doubled quote re-opens on the next char
            continue
        if ch in "'\"`":
            quote = ch
        elif ch == "[":
            quote = "]"
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        args.append("".join(cur).strip())
    return args


def _fts_options(args: list[str]) -> dict[str, str]:
    opts = {}
    for a in args:
        m = re.match(r"(?s)\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$", a)
        if m:
            opts[m.group(1).lower()] = _dequote(m.group(2))
    return opts


def _excluded_name(name: str, ignore: set[str]) -> bool:
    low = name.lower()
    return low.startswith("sqlite_stat") or low.startswith("_cf_") or low in ignore


class _Catalog:
    """What one database holds: schema rows, ordinary tables, virtual tables, shadow tables."""

    def __init__(self, db: _Db, ignore: set[str]):
        self.db = db
        rows = db.meta("SELECT type, name, tbl_name, sql FROM main.sqlite_schema")
        self.vtabs: dict[str, tuple[str, str, list[str]]] = {}  # lower -> (name, module, args)
        for typ, name, _tbl, sql in rows:
            parsed = _vtab_module(sql) if typ == "table" else None
            if parsed:
                self.vtabs[name.lower()] = (name, parsed[0], parsed[1])
        self.shadow: set[str] = set()
        self.table_kind: dict[str, tuple[str, str, int]] = {}  # lower -> (name, type, wr)
        try:
            listed = db.meta("PRAGMA main.table_list")
        except Exception:
            listed = None
        if listed is not None:
            for schema, name, typ, _ncol, wr, _strict in listed:
                if schema != "main":
                    continue
                if typ == "shadow":
                    self.shadow.add(name.lower())
                self.table_kind[name.lower()] = (name, typ, wr)
        else:
            for typ, name, _tbl, sql in rows:
                if typ == "table" and name.lower() not in self.vtabs:
                    wr = 1 if sql and re.search(r"(?i)\)\s*(?:STRICT\s*,\s*)?WITHOUT\s+ROWID", sql) else 0
                    self.table_kind[name.lower()] = (name, "table", wr)
        for low, (_name, module, _args) in self.vtabs.items():
            for suffix in _SHADOW_SUFFIXES.get(module, ()):
                self.shadow.add(f"{low}_{suffix}")
        for low in list(self.table_kind):
            if low in self.shadow:
                n, _t, wr = self.table_kind[low]
                self.table_kind[low] = (n, "shadow", wr)
            elif low in self.vtabs:
                n, _t, wr = self.table_kind[low]
                self.table_kind[low] = (n, "virtual", wr)
        self.objects: dict[tuple[str, str], tuple[str, str | None]] = {}
        for typ, name, tbl, sql in rows:
            if _excluded_name(name, ignore) or _excluded_name(tbl or "", ignore):
                continue
            if name.lower() in self.shadow or (tbl or "").lower() in self.shadow:
                continue
            self.objects[(typ, name)] = (tbl, sql)

    def ordinary_tables(self, ignore: set[str]) -> list[tuple[str, int]]:
        out = []
        for low, (name, typ, wr) in self.table_kind.items():
            if typ != "table" or low in ("sqlite_schema", "sqlite_master", "sqlite_temp_schema", "sqlite_temp_master"):
                continue
            if _excluded_name(name, ignore):
                continue
            out.append((name, wr))
        return sorted(out, key=lambda t: t[0].lower())


def _clip(s: str, n: int = 120) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def _first_diff(a: str | bytes, b: str | bytes) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _around(s: str, pos: int, width: int = 40) -> str:
    lo = max(0, pos - width)
    return ("..." if lo else "") + s[lo : pos + width] + ("..." if pos + width < len(s) else "")


def _compare_schema(ce: _Catalog, ca: _Catalog, diffs: list[str], trailing_space: bool = True) -> None:
    for key in sorted(set(ce.objects) | set(ca.objects), key=lambda k: (k[0], k[1].lower())):
        typ, name = key
        if key not in ca.objects:
            tbl, sql = ce.objects[key]
            diffs.append(f"schema: {typ} {q(name)} missing from actual (expected: {_clip(repr(sql))})")
            continue
        if key not in ce.objects:
            tbl, sql = ca.objects[key]
            diffs.append(f"schema: unexpected {typ} {q(name)} in actual ({_clip(repr(sql))})")
            continue
        (te, se), (ta, sa) = ce.objects[key], ca.objects[key]
        if not trailing_space and se is not None and sa is not None:
            se, sa = se.rstrip(), sa.rstrip()
        if te != ta:
            diffs.append(f"schema: {typ} {q(name)}: tbl_name expected {te!r}, actual {ta!r}")
        if se != sa:
            if se is None or sa is None:
                diffs.append(f"schema: {typ} {q(name)}: sql expected {se!r}, actual {sa!r}")
            else:
                pos = _first_diff(se, sa)
                diffs.append(
                    f"schema: {typ} {q(name)}: sql differs at character {pos}: "
                    f"expected {_around(se, pos)!r}, actual {_around(sa, pos)!r}"
                )


# --------------------------------------------------------------------------------------
# Values and rows


def _fmt(v) -> str:
    if v is None:
        return "NULL"
    t = type(v)
    if t is Text:
        s = bytes(v).decode("utf-8", "backslashreplace")
        return f"TEXT {_clip(repr(s), 70)} ({len(v)} bytes)"
    if t is bytes:
        h = v[:24].hex()
        return f"BLOB x'{h}{'...' if len(v) > 24 else ''}' ({len(v)} bytes)"
    if t is float:
        return f"REAL {v!r} (bits {_DOUBLE.pack(v)[::-1].hex()})"
    return f"INTEGER {v}"


def _value_diff(x, y) -> str:
    out = f"expected {_fmt(x)}, actual {_fmt(y)}"
    if type(x) is type(y) and isinstance(x, bytes) and x != y:
        out += f"; first differing byte at offset {_first_diff(x, y)}"
    return out


def _same(x, y) -> bool:
    if x is y:
        return True
    tx = type(x)
    if tx is not type(y):
        return False
    if tx is float:
        return _DOUBLE.pack(x) == _DOUBLE.pack(y)
    return x == y


def _sortkey(v):
    """Python key that orders values as SQLite's ORDER BY ... COLLATE BINARY does."""
    if v is None:
        return (0, 0)
    t = type(v)
    if t is int or t is float:
        return (1, v)
    if t is Text:
        return (2, bytes(v))
    return (3, v)


class _RowSource:
    """How to read one table: key expressions, value columns, ordering."""

    def __init__(
        self,
        label: str,
        key_names: list[str],
        key_exprs: list[str],
        cols: list[str],
        tail: str,
        keyfunc: Callable[[tuple], object] | None,
        positional: bool = False,
        multiset: bool = False,
    ):
        self.label = label
        self.key_names = key_names
        self.key_exprs = key_exprs
        self.cols = cols
        self.tail = tail
        self.keyfunc = keyfunc
        self.positional = positional
        self.multiset = multiset

    def rows(self, db: _Db) -> Iterator[tuple]:
        it = db.select(self.key_exprs + [q(c) for c in self.cols], self.tail)
        if self.positional:
            return ((i,) + row for i, row in enumerate(it, 1))
        return it


def _fmt_key(src: _RowSource, row: tuple) -> str:
    if src.positional:
        return f"row #{row[0]} (in scan order)"
    if src.multiset:
        return "row (" + ", ".join(f"{q(c)}={_fmt(v)}" for c, v in zip(src.cols, row)) + ")"
    nk = len(src.key_exprs)
    return ", ".join(f"{k}={_fmt(v) if not isinstance(v, int) else v}" for k, v in zip(src.key_names, row[:nk]))


def _fmt_row(src: _RowSource, row: tuple) -> str:
    nk = 0 if src.multiset else (1 if src.positional else len(src.key_exprs))
    vals = ", ".join(f"{q(c)}={_fmt(v)}" for c, v in zip(src.cols, row[nk:]))
    return _clip(vals, 300)


def _compare_rows(
    src: _RowSource, it_e: Iterator[tuple], it_a: Iterator[tuple], category: str, diffs: list[str], limit: int
) -> None:
    nk = 0 if src.multiset else (1 if src.positional else len(src.key_exprs))
    keyf = src.keyfunc or (lambda r: r[0])
    count = 0
    missing = extra = changed = 0

    def add(msg: str) -> None:
        nonlocal count
        count += 1
        if count <= limit:
            diffs.append(f"{category}: {src.label}: {msg}")

    a = next(it_e, None)
    b = next(it_a, None)
    prev_a = prev_b = None
    while a is not None or b is not None:
        ka = keyf(a) if a is not None else None
        kb = keyf(b) if b is not None else None
        # Keys ascend; equal keys (duplicates) only occur where nothing makes them unique:
        # sqlite_sequence, and rows compared as a multiset.
        if ka is not None and prev_a is not None and ka < prev_a:
            add("rows of expected are not in key order; comparison stopped")
            return
        if kb is not None and prev_b is not None and kb < prev_b:
            add("rows of actual are not in key order; comparison stopped")
            return
        if b is None or (a is not None and ka < kb):
            missing += 1
            dup = " (a duplicate key)" if prev_a is not None and ka == prev_a and not src.multiset else ""
            add(f"{_fmt_key(src, a)}{dup} missing from actual (expected {_fmt_row(src, a)})")
            prev_a = ka
            a = next(it_e, None)
        elif a is None or kb < ka:
            extra += 1
            dup = " (a duplicate key)" if prev_b is not None and kb == prev_b and not src.multiset else ""
            add(f"unexpected {_fmt_key(src, b)}{dup} in actual ({_fmt_row(src, b)})")
            prev_b = kb
            b = next(it_a, None)
        else:
            row_changed = False
            for i in range(nk, len(a)):
                x, y = a[i], b[i]
                if x is y:
                    continue
                if not _same(x, y):
                    row_changed = True
                    add(f"{_fmt_key(src, a)} column {q(src.cols[i - nk])}: {_value_diff(x, y)}")
            changed += row_changed
            prev_a, prev_b = ka, kb
            a = next(it_e, None)
            b = next(it_a, None)
    if count > limit:
        diffs.append(
            f"{category}: {src.label}: ... {count - limit} more differences "
            f"({missing} rows missing, {extra} unexpected, {changed} changed in all)"
        )


def _columns(db: _Db, table: str) -> list[tuple[str, int]]:
    """(name, pk) of the columns to read: generated ones included, vtab hidden ones not."""
    rows = db.meta("SELECT name, pk, hidden FROM pragma_table_xinfo(?, 'main') ORDER BY cid", (table,))
    return [(name, pk) for name, pk, hidden in rows if not (hidden == 1)]


def _table_source(db: _Db, table: str, wr: int, cols_pk: list[tuple[str, int]], check_rowids: bool) -> _RowSource:
    cols = [c for c, _ in cols_pk]
    lower = {c.lower() for c in cols}
    label = f"table {q(table)}"
    frm = f"FROM main.{q(table)}"
    if table.lower() == "sqlite_sequence":
        return _RowSource(
            label, [q("name")], [q("name")], cols, frm + ' ORDER BY "name" COLLATE BINARY', lambda r: _sortkey(r[0])
        )
    if wr:
        pks = [c for c, pk in sorted((x for x in cols_pk if x[1] > 0), key=lambda x: x[1])]
        order = ", ".join(f"{q(c)} COLLATE BINARY" for c in pks)
        if len(pks) == 1:
            keyf = lambda r: _sortkey(r[0])  # noqa: E731
        else:
            n = len(pks)
            keyf = lambda r: tuple(_sortkey(v) for v in r[:n])  # noqa: E731
        return _RowSource(label, [q(c) for c in pks], [q(c) for c in pks], cols, f"{frm} ORDER BY {order}", keyf)
    alias = next((a for a in ("rowid", "_rowid_", "oid") if a not in lower), None)
    ipk = _integer_primary_key(db, table, cols_pk)
    if not check_rowids and ipk is None:
        order = ", ".join(f"{q(c)} COLLATE BINARY" for c in cols) or "1"
        return _RowSource(
            label, [], [], cols, f"{frm} ORDER BY {order}", lambda r: tuple(_sortkey(v) for v in r), multiset=True
        )
    if alias is None:
        # rowid, _rowid_ and oid are all column names: the rowid cannot be read. Compare in
        # scan order (which is rowid order).
        return _RowSource(label, [], [], cols, frm, None, positional=True)
    return _RowSource(label, [alias], [alias], cols, f"{frm} ORDER BY {alias}", None)


def _integer_primary_key(db: _Db, table: str, cols_pk: list[tuple[str, int]]) -> str | None:
    pks = [c for c, pk in cols_pk if pk > 0]
    if len(pks) != 1:
        return None
    # An INTEGER PRIMARY KEY is the rowid: it has no index of its own in index_list.
    for _seq, _name, _unique, origin, _partial in db.meta(
        "SELECT seq, name, \"unique\", origin, partial FROM pragma_index_list(?, 'main')", (table,)
    ):
        if origin == "pk":
            return None
    return pks[0]


def _compare_tables(
    de: _Db, da: _Db, ce: _Catalog, ca: _Catalog, ignore: set[str], diffs: list[str], limit: int, check_rowids: bool
) -> None:
    actual_tables = {n.lower(): (n, wr) for n, wr in ca.ordinary_tables(ignore)}
    for name, wr in ce.ordinary_tables(ignore):
        if name.lower() not in actual_tables:
            continue  # reported as a schema difference
        name_a, wr_a = actual_tables[name.lower()]
        cols_e = _columns(de, name)
        cols_a = _columns(da, name_a)
        names_a = {c.lower() for c, _ in cols_a}
        common = [(c, pk) for c, pk in cols_e if c.lower() in names_a]
        if [c.lower() for c, _ in cols_e] != [c.lower() for c, _ in cols_a]:
            diffs.append(
                f"data: table {q(name)}: columns differ: expected {[c for c, _ in cols_e]}, "
                f"actual {[c for c, _ in cols_a]} (comparing the common ones)"
            )
        if wr != wr_a:
            diffs.append(f"data: table {q(name)}: WITHOUT ROWID in one database only; rows not compared")
            continue
        src = _table_source(de, name, wr, common, check_rowids)
        try:
            _compare_rows(src, src.rows(de), src.rows(da), "data", diffs, limit)
        except Exception as exc:  # noqa: BLE001 - report, do not crash the comparison
            diffs.append(f"data: table {q(name)}: cannot compare: {exc}")


# --------------------------------------------------------------------------------------
# Virtual tables and FTS


def _compare_vtabs(
    de: _Db, da: _Db, ce: _Catalog, ca: _Catalog, ignore: set[str], diffs: list[str], limit: int, check_fts: bool
) -> None:
    fts_tables = []
    for low, (name, module, args) in sorted(ce.vtabs.items()):
        if _excluded_name(name, ignore) or low not in ca.vtabs:
            continue
        opts = _fts_options(args) if module in _FTS_MODULES else {}
        contentless = "content" in opts and opts["content"] == ""
        if not contentless:
            try:
                cols = [c for c, _ in _columns(de, name)]
                src = _RowSource(
                    f"virtual table {q(name)}", ["rowid"], ["rowid"], cols, f"FROM main.{q(name)} ORDER BY rowid", None
                )
                _compare_rows(src, src.rows(de), src.rows(da), "vtab", diffs, limit)
            except Exception as exc:  # noqa: BLE001
                hint = " (engine='apsw' has more modules)" if de.engine == "sqlite3" else ""
                diffs.append(f"vtab: virtual table {q(name)}: cannot compare rows: {exc}{hint}")
        if check_fts and module in _FTS_MODULES:
            fts_tables.append((name, module, opts))
            try:
                _compare_fts_index(de, da, name, module, diffs, limit)
            except Exception as exc:  # noqa: BLE001
                diffs.append(f"fts: {q(name)}: cannot compare index: {exc}")
    if fts_tables:
        _fts_integrity(de, da, fts_tables, diffs)


def _vocab(db: _Db, table: str, module: str, kind: str) -> str:
    """Create a temp vocabulary table over ``table``; return its quoted name."""
    tmp = q(db.temp_name())
    if module == "fts5":
        db._exec(f"CREATE VIRTUAL TABLE temp.{tmp} USING fts5vocab(main, {q(table)}, {kind})")
    else:
        db._exec(f"CREATE VIRTUAL TABLE temp.{tmp} USING fts4aux(main, {q(table)})")
    return f"temp.{tmp}"


def _compare_fts_index(de: _Db, da: _Db, name: str, module: str, diffs: list[str], limit: int) -> None:
    label = f"{q(name)}"
    # 1. The whole index, position by position.
    if module == "fts5":
        cols = ["term", "doc", "col", "offset"]
        order = 'ORDER BY term, doc, col, "offset"'
    else:
        cols = ["term", "col", "documents", "occurrences"]
        order = "ORDER BY term, col"
    ve, va = _vocab(de, name, module, "instance"), _vocab(da, name, module, "instance")
    exprs = [q(c) for c in cols]
    it_e = de.select(exprs, f"FROM {ve} {order}")
    it_a = da.select(exprs, f"FROM {va} {order}")
    mismatched = 0
    n = 0
    for n, (x, y) in enumerate(_zip_longest(it_e, it_a), 1):
        if x is None or y is None or any(not _same(u, v) for u, v in zip(x, y)):
            mismatched += 1
            if mismatched <= min(limit, 5):
                diffs.append(
                    f"fts: {label}: index entry #{n} ({', '.join(cols)}): expected "
                    f"{_fmt_tuple(x)}, actual {_fmt_tuple(y)}"
                )
    if mismatched > min(limit, 5):
        diffs.append(f"fts: {label}: ... {mismatched - min(limit, 5)} more index entries differ (of {n})")

    # 2. MATCH queries built from terms of the expected index.
    if module == "fts5":
        vr = _vocab(de, name, module, "row")
        terms = de.meta(f"SELECT term FROM {vr} ORDER BY doc DESC, term LIMIT 3")
        terms += de.meta(f"SELECT term FROM {vr} ORDER BY doc, term LIMIT 3")
    else:
        terms = de.meta(f"SELECT term FROM {ve} WHERE col='*' ORDER BY documents DESC, term LIMIT 3")
        terms += de.meta(f"SELECT term FROM {ve} WHERE col='*' ORDER BY documents, term LIMIT 3")
    queries = []
    for (term,) in terms:
        if not isinstance(term, str) or any("\udc80" <= ch <= "\udcff" for ch in term):
            continue  # invalid UTF-8 (decoded with surrogateescape): not a query string
        queries.append('"' + term.replace('"', '""') + '"')
    if terms and isinstance(terms[0][0], str) and len(terms[0][0]) >= 2 and terms[0][0][:2].isalnum():
        prefix = terms[0][0][:2]
        queries.append(f'"{prefix}" *' if module == "fts5" else f"{prefix}*")
    for query in dict.fromkeys(queries):
        sql = f"FROM main.{q(name)} WHERE {q(name)} MATCH ? ORDER BY rowid"
        try:
            got_e = [r[0] for r in de.select(["rowid"], sql, (query,))]
        except Exception:  # noqa: BLE001 - a term the query syntax cannot take
            continue
        try:
            got_a = [r[0] for r in da.select(["rowid"], sql, (query,))]
        except Exception as exc:  # noqa: BLE001
            diffs.append(f"fts: {label}: MATCH {query!r} fails on actual: {exc}")
            continue
        if got_e != got_a:
            diffs.append(
                f"fts: {label}: MATCH {query!r}: expected rowids {_clip(str(got_e), 80)}, "
                f"actual {_clip(str(got_a), 80)}"
            )

    # 3. FTS5 persistent configuration (rank, automerge, pgsz, ... set by INSERT commands).
    if module == "fts5":
        cfg = q(f"{name}_config")
        ce = {r[0]: r[1] for r in de.select(["k", "v"], f"FROM main.{cfg}")}
        ca = {r[0]: r[1] for r in da.select(["k", "v"], f"FROM main.{cfg}")}
        for k in sorted(set(ce) | set(ca), key=_sortkey):
            if k not in ca or k not in ce or not _same(ce[k], ca[k]):
                diffs.append(f"fts: {label}: config {_fmt(k)}: expected {_fmt(ce.get(k))}, actual {_fmt(ca.get(k))}")


def _zip_longest(a: Iterator, b: Iterator) -> Iterator[tuple]:
    while True:
        x = next(a, None)
        y = next(b, None)
        if x is None and y is None:
            return
        yield x, y


def _fmt_tuple(t) -> str:
    if t is None:
        return "(nothing)"
    return "(" + ", ".join(_fmt(v) for v in t) + ")"


def _integrity_sql(name: str, module: str, opts: dict[str, str]) -> tuple[str, str | None]:
    base = f"INSERT INTO {q(name)}({q(name)}) VALUES('integrity-check')"
    if module == "fts5" and opts.get("content"):
        # With rank 1, FTS5 also checks the index against its external content table.
        return f"INSERT INTO {q(name)}({q(name)}, rank) VALUES('integrity-check', 1)", base
    return base, None


def _fts_integrity(de: _Db, da: _Db, tables: list[tuple[str, str, dict]], diffs: list[str]) -> None:
    """Run each FTS table's integrity-check on a backup copy of ``actual``.

    A check that fails on ``actual`` is run on a copy of ``expected`` too: when it fails
    there as well (an external-content index legally out of step with its content table,
    a contentless FTS4 table, which has no integrity-check), a weaker check is tried, and
    otherwise nothing is reported, since the original is no better.
    """
    tmpdir = Path(tempfile.mkdtemp(prefix="patina-compare-"))
    copies: dict[str, object] = {}

    def run(which: str, sql: str) -> Exception | None:
        if which not in copies:
            copies[which] = (da if which == "actual" else de).backup_to(tmpdir / f"{which}.sqlite")
        try:
            copies[which].execute(sql)
            return None
        except Exception as exc:  # noqa: BLE001
            return exc

    try:
        for name, module, opts in tables:
            for sql in _integrity_sql(name, module, opts):
                if sql is None:
                    break
                error = run("actual", sql)
                if error is None:
                    break
                if run("expected", sql) is None:
                    diffs.append(f"fts: {q(name)}: integrity-check fails on actual: {error}")
                    break
    finally:
        for con in copies.values():
            con.close()
        shutil.rmtree(tmpdir, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Entry points


def compare_databases(
    expected: Path,
    actual: Path,
    *,
    ignore_tables: Iterable[str] = (),
    check_pragmas: bool = True,
    check_fts: bool = True,
    check_integrity: bool = True,
    check_rowids: bool = True,
    max_per_table: int = 10,
    engine: str = "sqlite3",
    schema_trailing_space: bool = True,
) -> list[str]:
    """Differences between two SQLite databases (empty list: identical).

    ignore_tables: table names (case-insensitive) whose schema objects, rows and FTS
        indexes are not compared.
    check_pragmas: compare user_version and application_id ("pragma:" differences).
    check_fts: compare FTS indexes and run integrity-check on a copy of ``actual``.
    check_integrity: run PRAGMA quick_check on ``actual``.
    check_rowids: when False, rowid tables without an INTEGER PRIMARY KEY are compared as
        sorted multisets of rows (their rowids are free to differ).
    max_per_table: detailed differences reported per table before summarising.
    engine: "sqlite3" (Python's module, the default) or "apsw".
    schema_trailing_space: when False, schema SQL that differs only in trailing whitespace is the same
        (wrangler trims every statement it sends to D1, so `CREATE INDEX ... ON t(x)\n` comes back without the newline).
    """
    ignore = {t.lower() for t in ignore_tables}
    diffs: list[str] = []
    de = _Db(Path(expected), engine)
    try:
        da = _Db(Path(actual), engine)
        try:
            ce, ca = _Catalog(de, ignore), _Catalog(da, ignore)
            _compare_schema(ce, ca, diffs, schema_trailing_space)
            _compare_tables(de, da, ce, ca, ignore, diffs, max_per_table, check_rowids)
            _compare_vtabs(de, da, ce, ca, ignore, diffs, max_per_table, check_fts)
            if check_pragmas:
                for pragma in ("user_version", "application_id"):
                    ve = de.scalar(f"PRAGMA main.{pragma}")
                    va = da.scalar(f"PRAGMA main.{pragma}")
                    if ve != va:
                        diffs.append(f"pragma: {pragma}: expected {ve}, actual {va}")
            if check_integrity:
                result = [r[0] for r in da.meta("PRAGMA main.quick_check")]
                if result != ["ok"]:
                    diffs.append("integrity: quick_check of actual: " + _clip("; ".join(map(str, result)), 300))
        finally:
            da.close()
    finally:
        de.close()
    return diffs


def assert_same_database(expected: Path, actual: Path, *, show: int = 30, **kw) -> None:
    """Raise AssertionError listing (at most ``show``) differences between the databases."""
    diffs = compare_databases(expected, actual, **kw)
    if diffs:
        lines = [f"{len(diffs)} difference(s) between {expected} (expected) and {actual} (actual):"]
        lines += ["  " + d for d in diffs[:show]]
        if len(diffs) > show:
            lines.append(f"  ... and {len(diffs) - show} more")
        raise AssertionError("\n".join(lines))
