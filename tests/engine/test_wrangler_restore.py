"""Restores into D1 for real: dumps executed with `wrangler d1 execute --local --file` (workerd's D1, with
D1's authorizer and limits), then the database D1 wrote compared with the source, value by value."""

import sqlite3
from pathlib import Path

import pytest
from conftest import CORPUS_DATABASES
from support import awkward
from support.compare import compare_databases
from support.wrangler import restore_into_local_d1

from patina_assets.engine import SqliteSource, dump_database
from patina_assets.engine.sqltext import statements

pytestmark = pytest.mark.wrangler

# What D1 itself cannot hold (measured with this wrangler; see tests/support/awkward.py).
NOT_FOR_D1 = set(awkward.D1_INCOMPATIBLE)
FILE_BYTES = 800_000  # workerd 2025-06 crashes on executes of more than about 1 MB of SQL (workerd#5977)


def d1_files(dump: Path, directory: Path) -> list[Path]:
    """The dump as one file, or, when it is bigger than local workerd can take, cut at statement
    boundaries into files of at most FILE_BYTES (each is then its own transaction)."""
    if dump.stat().st_size <= FILE_BYTES:
        return [dump]
    files, chunk, size = [], [], 0
    for statement in statements(dump.read_text().splitlines(keepends=True)):
        if size + len(statement.encode()) > FILE_BYTES and chunk:
            files.append(chunk)
            chunk, size = [], 0
        chunk.append(statement)
        size += len(statement.encode())
    files.append(chunk)
    paths = []
    for i, chunk in enumerate(files):
        path = directory / f"part{i:03}.sql"
        path.write_text("PRAGMA defer_foreign_keys=TRUE;\n" + "".join(chunk))
        paths.append(path)
    return paths


def restore_and_compare(source: Path, tmp_path: Path, **kw) -> list[str]:
    dump = tmp_path / "dump.sql"
    with SqliteSource(source) as db:
        dump_database(db, dump)
    restored = restore_into_local_d1(d1_files(dump, tmp_path), tmp_path / "d1")
    # wrangler trims each statement it sends, so stored schema SQL loses trailing whitespace.
    return compare_databases(source, restored, check_pragmas=False, schema_trailing_space=False, **kw)


@pytest.mark.parametrize("source", CORPUS_DATABASES, ids=lambda p: p.stem)
def test_corpus_restores_into_d1(source, tmp_path):
    assert restore_and_compare(source, tmp_path) == []


@pytest.mark.parametrize("case", sorted(set(awkward.CASES) - NOT_FOR_D1))
def test_awkward_cases_restore_into_d1(case, awkward_corpus, tmp_path):
    diffs = restore_and_compare(awkward_corpus[case], tmp_path)
    if case == "rowids":  # every rowid name is a column there: nothing can read those rowids
        diffs = [d for d in diffs if "shadowed_all" not in d]
    assert diffs == []


def test_lower_case_trigger_end_and_case_in_views_do_not_break_wrangler(tmp_path):
    source = tmp_path / "lower.sqlite"
    db = sqlite3.connect(source)
    db.executescript(
        """
        create table t(id integer primary key, v text, n int check (case when n < 0 then 0 else 1 end));
        create table log(id integer primary key, what text);
        create trigger t_log after insert on t begin insert into log(what) values (new.v); end;
        create view v as select id, case when n > 1 then 'many' else 'few' end as size from t;
        """
    )
    db.executemany(
        "INSERT INTO t(v, n) VALUES (?, ?)", [("x" * 30_000 + "BEGIN TRANSACTION; y COMMIT;", i) for i in range(12)]
    )
    db.commit()
    db.close()
    assert restore_and_compare(source, tmp_path) == []
