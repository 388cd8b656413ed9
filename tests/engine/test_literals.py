"""SQL literals read back exactly, on this machine's SQLite 3.40 (the sqlite3 CLI's) and on a current SQLite."""

import math
import random
import sqlite3
import struct

import apsw
import pytest

from patina_assets.engine import real_check_worker
from patina_assets.engine.literals import (
    RawText,
    RowFormatter,
    chunk_value,
    exact_real_literal,
    text_literal,
    utf8_length,
)


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def random_doubles(n: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if not math.isnan(x):
            out.append(x)
    return out


TRICKY = [
    0.1,
    1 / 3,
    5e-324,
    2.2250738585072014e-308,
    2.225073858507201e-308,
    1.7976931348623157e308,
    389.1076970815528,
    -40.19063450642766,
    1e300 * 6.696281568103213,
    3.0,
    1e20,
    2.0**53,
    2.0**63,
    -(2.0**80),
]


@pytest.mark.parametrize("value", TRICKY + random_doubles(200))
def test_exact_form_is_exact_on_old_and_new_sqlite(value):
    literal = exact_real_literal(value)
    old = sqlite3.connect(":memory:").execute(f"SELECT {literal}").fetchone()[0]
    new = next(apsw.Connection(":memory:").execute(f"SELECT {literal}"))[0]
    assert bits(old) == bits(value), literal
    assert bits(new) == bits(value), literal


def test_formatter_writes_literals_sqlite_340_reads_back_exactly():
    values = TRICKY + random_doubles(20_000, seed=2) + [random.Random(3).random() * 1000 for _ in range(20_000)]
    values = [v for v in values if not math.isinf(v)]
    formatter = RowFormatter(1)
    tuples = formatter.format_rows([(v,) for v in values])
    db = sqlite3.connect(":memory:")
    for value, literal in zip(values, tuples):
        got = db.execute(f"SELECT {literal[1:-1]}").fetchone()[0]
        assert bits(got) == bits(value), literal
    # SQLite 3.40 misreads a few repr() strings; the formatter must have noticed and used the exact form.
    assert formatter.exact_reals > 0


def test_async_formatting_checks_reals_before_handing_them_out():
    values = random_doubles(5_000, seed=4)
    formatter = RowFormatter(1)
    tuples = formatter.format_rows_async([(v,) for v in values])()
    db = sqlite3.connect(":memory:")
    got = [db.execute(f"SELECT {t[1:-1]}").fetchone()[0] for t in tuples]
    assert [bits(g) for g in got] == [bits(v) for v in values]
    formatter.checker.close()


def test_infinities_and_integers():
    formatter = RowFormatter(4)
    (row,) = formatter.format_rows([(float("inf"), float("-inf"), -(2**63), 2**63 - 1)])
    assert row == "(9e999,-9e999,-9223372036854775808,9223372036854775807)"
    got = sqlite3.connect(":memory:").execute(f"SELECT {row[1:-1]}").fetchone()
    assert got == (math.inf, -math.inf, -(2**63), 2**63 - 1)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain",
        "it's",
        "a\nb",
        "a\r\nb",
        "\r",
        "nul\x00inside",
        "\x00",
        "emoji 🎉 and ü",
        "-- Table: x",
        "'; DROP TABLE t; --",
    ],
)
def test_text_literals_are_one_line_and_exact(text):
    literal = text_literal(text)
    assert "\n" not in literal and "\r" not in literal
    got = sqlite3.connect(":memory:").execute(f"SELECT CAST({literal} AS BLOB)").fetchone()[0]
    assert got == text.encode()


AWKWARD_TEXTS = [
    "",
    "plain",
    "it's",
    "a\tb",
    "unit\x1fsep",
    "line\u2028sep",
    "nbsp\u00a0",
    "bell\x07",
    "é'",
    "🎉",
    "BEGIN TRANSACTION",
    "a\nb",
    "nul\x00",
    "\\n",
    "''",
]


@pytest.mark.parametrize("batch", [AWKWARD_TEXTS[:10], AWKWARD_TEXTS[:3] + AWKWARD_TEXTS[6:9], AWKWARD_TEXTS])
def test_a_column_of_text_is_written_as_text_literal_writes_each_value(batch):
    # The column-at-a-time path takes a shortcut where it can; it must agree with the one-value path.
    formatter = RowFormatter(2)
    rows = [(i, text) for i, text in enumerate(batch)]
    assert formatter.format_rows(rows) == [f"({i},{text_literal(text)})" for i, text in rows]


@pytest.mark.parametrize("size", [0, 100, 129, 5000])
def test_rows_with_big_blobs_are_written_as_with_small_ones(size):
    # Batches with big BLOBs are formatted as bytes; the text must not change.
    rng = random.Random(size)
    rows = [(i, rng.randbytes(size + i % 3), f"é {i}'", None if i % 2 else 1.5, RawText(b"\xff")) for i in range(20)]
    formatter = RowFormatter(5)
    expected = ["(" + ",".join(map(formatter.literal, row)) + ")" for row in rows]
    assert formatter.format_rows(rows) == expected
    assert [t if type(t) is str else t.decode() for t in formatter.format_rows_async(rows)()] == expected
    formatter.checker.close()


BIG = "body é 🎉 it's " * 12  # over 128 characters a value: the column is escaped as UTF-8 bytes


@pytest.mark.parametrize(
    "batch",
    [
        [BIG + t for t in AWKWARD_TEXTS[:10]],  # one value holds "\x1f": the bytes path steps aside
        [BIG + t for t in AWKWARD_TEXTS[:3] + AWKWARD_TEXTS[6:9]],  # the bytes path
        [BIG + t for t in AWKWARD_TEXTS],
        [BIG + t + BIG for t in ["", "a\nb", "'", "''"]],
        [t + BIG for t in AWKWARD_TEXTS[:3]] + ["lone \ud800 surrogate" + BIG],
    ],
)
def test_a_column_of_big_text_is_written_as_text_literal_writes_each_value(batch):
    # Big text takes the shortcut on its UTF-8 bytes; it must agree with the one-value path, whatever
    # stands beside it (a big BLOB turns the whole row into bytes too).
    surrogate = "\ud800" in batch[-1]  # not UTF-8 at all: a dump cannot write it as such
    for blob in (None,) if surrogate else (None, b"\x00\xff" * 100):
        rows = [(i, text, "small", blob) for i, text in enumerate(batch)]
        formatter = RowFormatter(4)
        expected = ["(" + ",".join(map(formatter.literal, row)) + ")" for row in rows]
        assert formatter.format_rows(rows) == expected
        if not surrogate:
            tuples = formatter._format_rows(rows)  # bytes, or text where no column took a bytes path
            assert [t if type(t) is bytes else t.encode() for t in tuples] == [t.encode() for t in expected]
            joined = "".join(batch)
            plain = not any(c in joined for c in ("\x1f", "\n", "\r", "\x00", "BEGIN TRANSACTION"))
            assert type(tuples[0]) is (bytes if plain or blob else str)  # the shortcut was taken
        formatter.checker.close()


def test_raw_text_and_blob_literals():
    formatter = RowFormatter(3)
    (row,) = formatter.format_rows([(RawText(b"\xff\xfe\x00a"), b"", None)])
    db = sqlite3.connect(":memory:")
    got = db.execute(f"SELECT typeof(v), CAST(v AS BLOB) FROM (SELECT {row.split(',')[0][1:]} AS v)").fetchone()
    assert got == ("text", b"\xff\xfe\x00a")
    assert row.endswith(",X'',NULL)")


@pytest.mark.parametrize("value", ["x" * 250_000, "é'\n" * 60_000, "🎉" * 70_000, b"\x00\xff" * 120_000])
def test_chunks_fit_and_join_back(value):
    pieces = chunk_value(value, 80_000)
    assert len(pieces) > 1
    assert (b"" if isinstance(value, bytes) else "").join(pieces) == value
    formatter = RowFormatter(1)
    for piece in pieces:
        assert utf8_length(formatter.literal(piece)) <= 80_000


def test_the_check_finds_exactly_the_literals_sqlite_parses_to_another_value():
    # The check casts TEXT to REAL rather than parsing each literal as SQL: both must agree, value by value.
    values = [v for v in TRICKY + random_doubles(20_000, seed=7) if not math.isinf(v)]
    literals = [repr(v) for v in values]
    db = sqlite3.connect(":memory:")
    parsed = [db.execute(f"SELECT {literal}").fetchone()[0] for literal in literals]
    wrong = [i for i, (got, value) in enumerate(zip(parsed, values)) if bits(got) != bits(value)]
    assert wrong  # SQLite 3.40 misreads some of these: the comparison below means something
    assert real_check_worker.misread(db, literals) == wrong


def test_the_worker_process_and_this_process_agree_and_a_missing_worker_falls_back(monkeypatch):
    from patina_assets.engine.literals import RealChecker

    values = random_doubles(3000, seed=5) + [random.Random(6).random() * 1000 for _ in range(20_000)]
    values = [v for v in values if not math.isinf(v)]
    literals = [repr(v) for v in values]
    here = RealChecker()
    expected = here.misread(values, literals)
    assert expected  # SQLite 3.40 misreads some of these: the comparison below means something

    in_worker = RealChecker()
    try:
        assert in_worker.submit(values, literals).result() == expected
        assert in_worker._worker is not None and in_worker._worker.poll() is None  # a live worker did it
    finally:
        in_worker.close()
    assert in_worker._worker is None

    monkeypatch.setattr("sys.executable", "/nonexistent/python")
    fallback = RealChecker()
    try:
        assert fallback.submit(values, literals).result() == expected
        assert fallback._worker_failed
    finally:
        fallback.close()
