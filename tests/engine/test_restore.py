"""`restore_dump`: refuses to overwrite, detects truncated and altered dumps, restores one table."""

import gzip
import sqlite3

import pytest
import zstandard

from patina_assets.engine import (
    CorruptDump,
    RestoreError,
    SqliteSource,
    dump_database,
    restore_dump,
)


@pytest.fixture
def source_db(tmp_path):
    path = tmp_path / "src.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
        CREATE TABLE child(id INTEGER PRIMARY KEY AUTOINCREMENT, parent_id INTEGER REFERENCES parent(id), note TEXT);
        CREATE INDEX child_parent ON child(parent_id);
        CREATE TABLE log(at INTEGER, what TEXT);
        CREATE TRIGGER child_log AFTER INSERT ON child BEGIN INSERT INTO log VALUES (1, NEW.note); END;
        INSERT INTO parent VALUES (1, 'one'), (2, 'two');
        INSERT INTO child(parent_id, note) VALUES (1, 'a'), (2, 'b'), (2, 'c');
        DELETE FROM child WHERE id = 3;
        """
    )
    db.commit()
    db.close()
    return path


@pytest.fixture(params=["sql", "sql.gz", "sql.zst"])
def dump_file(request, source_db, tmp_path):
    out = tmp_path / f"dump.{request.param}"
    with SqliteSource(source_db) as source:
        dump_database(source, out)
    return out


def test_restore_every_format(dump_file, tmp_path):
    report = restore_dump(dump_file, tmp_path / "new.sqlite")
    assert report.table_rows == {"parent": 2, "child": 2, "log": 3}
    db = sqlite3.connect(tmp_path / "new.sqlite")
    # The trigger was created after the rows: restoring did not fire it (log keeps its 3 rows).
    assert db.execute("SELECT count(*) FROM log").fetchone() == (3,)
    assert db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'child'").fetchone() == (3,)


def test_restore_refuses_to_overwrite(dump_file, tmp_path):
    target = tmp_path / "exists.sqlite"
    target.write_bytes(b"precious")
    with pytest.raises(RestoreError, match="already exists"):
        restore_dump(dump_file, target)
    assert target.read_bytes() == b"precious"


def test_restore_one_table(dump_file, tmp_path):
    report = restore_dump(dump_file, tmp_path / "one.sqlite", table="child")
    assert report.table_rows == {"child": 2}
    db = sqlite3.connect(tmp_path / "one.sqlite")
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
    assert names == {"child", "child_parent", "sqlite_sequence"}
    assert db.execute("SELECT seq FROM sqlite_sequence").fetchall() == [(3,)]


def test_restore_unknown_table_names_the_tables(dump_file, tmp_path):
    with pytest.raises(RestoreError, match="no table 'nope'.*child"):
        restore_dump(dump_file, tmp_path / "x.sqlite", table="nope")
    assert not (tmp_path / "x.sqlite").exists()


def _plain(dump_file, tmp_path):
    data = dump_file.read_bytes()
    if dump_file.name.endswith(".gz"):
        data = gzip.decompress(data)
    elif dump_file.name.endswith(".zst"):
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def test_truncated_dump_is_refused_and_leaves_nothing(dump_file, tmp_path):
    data = _plain(dump_file, tmp_path)
    for cut in (len(data) // 3, data.index(b"-- Backup complete")):
        broken = tmp_path / "broken.sql"
        broken.write_bytes(data[:cut])
        with pytest.raises(CorruptDump):
            restore_dump(broken, tmp_path / "new.sqlite")
        assert not (tmp_path / "new.sqlite").exists()
        assert not list(tmp_path.glob(".new.sqlite*"))


def test_altered_dump_is_refused(dump_file, tmp_path):
    data = _plain(dump_file, tmp_path).replace(b"'one'", b"'0ne'")
    altered = tmp_path / "altered.sql"
    altered.write_bytes(data)
    with pytest.raises(CorruptDump, match="sha256"):
        restore_dump(altered, tmp_path / "new.sqlite")


@pytest.mark.parametrize("fmt", ["sql.gz", "sql.zst"])
def test_corrupt_compressed_dump_is_refused(fmt, source_db, tmp_path):
    with SqliteSource(source_db) as source:
        dump_database(source, tmp_path / f"dump.{fmt}")
    data = bytearray((tmp_path / f"dump.{fmt}").read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged = tmp_path / f"damaged.{fmt}"
    damaged.write_bytes(bytes(data))
    with pytest.raises(CorruptDump):
        restore_dump(damaged, tmp_path / "new.sqlite")
    assert not (tmp_path / "new.sqlite").exists()


def test_rows_too_big_for_d1_are_reported(tmp_path):
    source = tmp_path / "big.sqlite"
    db = sqlite3.connect(source)
    db.execute("CREATE TABLE files(id INTEGER PRIMARY KEY, a BLOB, b BLOB)")
    db.execute("INSERT INTO files VALUES (1, zeroblob(1500000), zeroblob(1500000))")
    db.commit()
    db.close()
    with SqliteSource(source) as src:
        result = dump_database(src, tmp_path / "big.sql")
    assert any("'files'" in w and "D1 cannot hold" in w for w in result.warnings)
    assert "-- Warning: table 'files' has rows of more than" in (tmp_path / "big.sql").read_text()
    restore_dump(tmp_path / "big.sql", tmp_path / "restored.sqlite")  # SQLite holds it all the same


def test_foreign_key_violations_fail_unless_allowed(tmp_path):
    source = tmp_path / "orphans.sqlite"
    db = sqlite3.connect(source)
    db.executescript(
        "CREATE TABLE p(id INTEGER PRIMARY KEY); CREATE TABLE c(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id));"
        "INSERT INTO c VALUES (1, 42);"  # foreign keys are off by default in SQLite: an orphan
    )
    db.commit()
    db.close()
    with SqliteSource(source) as src:
        dump_database(src, tmp_path / "orphans.sql")
    with pytest.raises(RestoreError, match="breaks 1 foreign key.*--allow-foreign-key-violations"):
        restore_dump(tmp_path / "orphans.sql", tmp_path / "strict.sqlite")
    assert not (tmp_path / "strict.sqlite").exists()
    report = restore_dump(tmp_path / "orphans.sql", tmp_path / "kept.sqlite", allow_foreign_key_violations=True)
    assert len(report.foreign_key_violations) == 1
