"""The backup layout: daily keys, their validation, and parsing them back."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from support.storage import (
    DAY,
    DB,
)

from patina_assets.storage import (
    InvalidKey,
    daily_dump_key,
    daily_manifest_key,
    new_generation,
    parse_daily_key,
    validate_database_name,
)


def test_daily_keys():
    assert daily_dump_key(DAY, "groveauth", "sql.zst") == "daily/2026-01-05/groveauth.sql.zst"
    assert daily_dump_key("2026-01-05", "scout-db", "sql") == "daily/2026-01-05/scout-db.sql"
    assert daily_manifest_key(DAY, "grove-engine") == "daily/2026-01-05/grove-engine.manifest.json"
    generation = new_generation(datetime(2026, 1, 6, 3, 0, 12, 123456, tzinfo=UTC))
    assert re.fullmatch(r"20260106T030012123456Z-[0-9a-f]{6}", generation)
    assert daily_dump_key(DAY, "a", "sql.gz", generation) == f"daily/2026-01-05/a.{generation}.sql.gz"


@pytest.mark.parametrize(
    "day, database, fmt",
    [
        ("2026-02-30", DB, "sql"),
        ("2026-1-5", DB, "sql"),
        ("../../etc", DB, "sql"),
        (datetime(2026, 1, 5), DB, "sql"),
        (DAY, "../x", "sql"),
        (DAY, "a/b", "sql"),
        (DAY, "Grove", "sql"),
        (DAY, "", "sql"),
        (DAY, "-x", "sql"),
        (DAY, "x" * 64, "sql"),
        (DAY, DB, "tar"),
    ],
)
def test_daily_key_validation(day, database, fmt):
    with pytest.raises(InvalidKey):
        daily_dump_key(day, database, fmt)


@pytest.mark.parametrize("database", ["groveauth", "foo.sql", "x.manifest", "a_b-c.d"])
@pytest.mark.parametrize("fmt", ["sql", "sql.gz", "sql.zst"])
def test_daily_keys_parse_back_unambiguously(database, fmt):
    generation = new_generation()
    for gen in (None, generation):
        parsed = parse_daily_key(daily_dump_key(DAY, database, fmt, gen))
        assert (parsed.kind, parsed.database, parsed.format, parsed.generation) == ("dump", database, fmt, gen)
    parsed = parse_daily_key(daily_manifest_key(DAY, database))
    assert (parsed.kind, parsed.database, parsed.day) == ("manifest", database, "2026-01-05")
    assert parse_daily_key("weekly/2026-W01.tar.gz") is None
    assert parse_daily_key("daily/2026-02-30/x.sql") is None


GEN = "20260105T030012123456Z-3f9a1c"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (f"daily/2026-01-05/a.b.{GEN}.sql.zst.age", ("a.b", "dump", "sql.zst", GEN, True)),
        ("daily/2026-01-05/shop.sql.gz", ("shop", "dump", "sql.gz", None, False)),
        ("daily/2026-01-05/shop.zst.sql", ("shop.zst", "dump", "sql", None, False)),
        (f"daily/2026-01-05/{GEN}.sql", None),  # a generation is no database name
        (f"daily/2026-01-05/.{GEN}.sql", None),  # nor is nothing
        ("daily/2026-01-05/shop.manifest.json.age", None),  # manifests are never encrypted
        ("daily/2026-01-05/shop.sql.age.age", None),
        ("daily/2026-01-05/shop.zst", None),
        ("daily/2026-01-05/a/b.sql", None),  # a name holds no '/'
        ("daily/2026-01-05/Shop.sql", None),  # nor capitals
        ("daily/2026-01-05/.manifest.json", None),
        ("daily/2026-1-05/shop.sql", None),
        ("daily/2026-01-05shop.sql", None),
    ],
)
def test_daily_keys_parse_to_their_parts_or_to_none(key, expected):
    """The corner cases of the layout (checked against the regular expression it was first read with, on
    760,000 generated keys, when it became string operations)."""
    parsed = parse_daily_key(key)
    got = None if parsed is None else (parsed.database, parsed.kind, parsed.format, parsed.generation, parsed.encrypted)
    assert got == expected


@pytest.mark.parametrize(
    "key",
    [
        "daily/2026-01-05/groveauth\n.manifest.json",  # a name ending in a line break
        "daily/2026-01-05/groveauth.manifest.json\n",  # a key ending in one
        "daily/2026-01-05\n/groveauth.sql",
    ],
)
def test_a_line_break_at_the_end_of_a_name_or_key_is_no_key_of_ours(key):
    """Python's `$` also matches before a final newline; the layout's patterns must end at the text's end."""
    assert parse_daily_key(key) is None


def test_a_database_name_ending_in_a_line_break_is_refused():
    with pytest.raises(InvalidKey):
        daily_dump_key(DAY, "groveauth\n", "sql")


def test_a_bad_database_name_is_explained_in_words_not_as_a_pattern():
    with pytest.raises(InvalidKey) as raised:
        validate_database_name("Shop!")
    assert "lower-case letters, digits" in str(raised.value)
    assert "\\Z" not in str(raised.value) and "[a-z0-9]" not in str(raised.value)
