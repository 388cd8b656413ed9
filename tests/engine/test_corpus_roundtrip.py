"""Every database in ../shared/corpus (written by other people) dumped, restored with the sqlite3 CLI and
with `patina restore`, and compared with its source value by value and schema object by schema object."""

import subprocess
from pathlib import Path

import pytest
from support.compare import assert_same_database

from patina_assets.engine import SqliteSource, dump_database, restore_dump

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
DATABASES = sorted(CORPUS.glob("*.sqlite"))


def test_the_corpus_is_there():
    assert len(DATABASES) >= 5, f"expected the shared corpus in {CORPUS}"


@pytest.mark.parametrize("source", DATABASES, ids=[p.stem for p in DATABASES])
@pytest.mark.parametrize("fmt", ["sql", "sql.gz", "sql.zst"])
def test_corpus_round_trip(source, fmt, tmp_path):
    dump = tmp_path / f"{source.stem}.{fmt}"
    with SqliteSource(source) as db:
        result = dump_database(db, dump)
    assert result.point_in_time and result.rows == sum(result.table_rows.values())

    restore_dump(dump, tmp_path / "patina.sqlite")
    assert_same_database(source, tmp_path / "patina.sqlite", check_pragmas=False)

    if fmt == "sql":
        with open(dump, "rb") as sql:
            cli = subprocess.run(["sqlite3", str(tmp_path / "cli.sqlite")], stdin=sql, capture_output=True)
        assert cli.returncode == 0 and not cli.stderr, cli.stderr.decode()
        assert_same_database(source, tmp_path / "cli.sqlite", check_pragmas=False)
