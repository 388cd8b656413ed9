"""Every database in ../shared/corpus (written by other people) dumped, restored with the sqlite3 CLI and
with `patina restore`, and compared with its source value by value and schema object by schema object;
and dumped over the REST API from workerd's D1 (see tests/support/rest_worker.py) and compared the same way."""

import subprocess

import pytest
from conftest import CORPUS
from conftest import CORPUS_DATABASES as DATABASES
from support.compare import assert_same_database
from support.rest_worker import STAND_IN_REQUESTS_PER_5_MINUTES

from patina_assets.engine import D1Source, SqliteSource, dump_database, restore_dump


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


@pytest.mark.wrangler
@pytest.mark.parametrize("source", DATABASES, ids=[p.stem for p in DATABASES])
def test_corpus_round_trip_over_workerd_rest(source, workerd_d1, tmp_path):
    dump = tmp_path / f"{source.stem}.sql.zst"
    with D1Source(
        "acct",
        f"corpus-{source.stem}",
        token=workerd_d1.token,
        api_url=workerd_d1.base_url,
        requests_per_5_minutes=STAND_IN_REQUESTS_PER_5_MINUTES,
    ) as db:
        result = dump_database(db, dump)
    # Each corpus database fits in one batch (D1 runs it as one transaction), and nothing writes meanwhile.
    assert result.point_in_time and result.consistency == "one batch"
    assert result.rows == sum(result.table_rows.values())
    restore_dump(dump, tmp_path / "restored.sqlite")
    assert_same_database(source, tmp_path / "restored.sqlite", check_pragmas=False)
