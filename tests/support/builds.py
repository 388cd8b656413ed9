"""Helpers that build the test databases of tests/support/awkward.py and tests/support/real_schemas.py.

Each build opens a fresh file with `connect` (one transaction, foreign keys off, recursive triggers off
as on D1) and ends with `finish` (commit, then PRAGMA integrity_check and foreign_key_check, since D1
enforces foreign keys).
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path


def _connect(path: Path) -> sqlite3.Connection:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-journal", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.unlink()
    con = sqlite3.connect(path, isolation_level=None)
    # Debian's SQLite defaults recursive_triggers on; D1 has it off.
    con.execute("PRAGMA recursive_triggers=OFF")
    con.execute("PRAGMA foreign_keys=OFF")
    con.execute("BEGIN")
    return con


def _finish(con: sqlite3.Connection, path: Path) -> Path:
    con.execute("COMMIT")
    problems = [r[0] for r in con.execute("PRAGMA integrity_check")]
    if problems != ["ok"]:
        raise RuntimeError(f"{path}: integrity_check: {problems}")
    fk = list(con.execute("PRAGMA foreign_key_check"))
    if fk:
        raise RuntimeError(f"{path}: foreign_key_check: {fk[:5]}")
    con.close()
    return Path(path)


def _rng(case: str) -> random.Random:
    return random.Random(f"patina-awkward-{case}")


def _mixed_text(rng: random.Random, nbytes: int, alphabet: str | None = None) -> str:
    """Deterministic text of about ``nbytes`` UTF-8 bytes, mixing 1- to 4-byte characters,
    quotes and line breaks, so that any byte-sized split falls inside characters."""
    pieces = alphabet or (
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ 0123456789 "
        "''\"\";;--/**/\\\n\r\n\t"
        "éüßçñ€£¥©ΩπЖЯ中文日本語한국어"
        "😀🎉👍🏽𝄞𐍈\u0301\u200d\u05d0\u05d1\u0627\u0644"
    )
    out: list[str] = []
    size = 0
    while size < nbytes:
        word = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        out.append(word)
        size += len(word.encode("utf-8"))
    return "".join(out)


def _exec_many(con: sqlite3.Connection, sql: str) -> None:
    """Run several statements inside the already open transaction."""
    for stmt in _split_sql(sql):
        con.execute(stmt)


def _split_sql(sql: str) -> list[str]:
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
