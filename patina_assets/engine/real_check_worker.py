"""The REAL-literal check, run as its own small process (see `literals.RealChecker`).

It reads frames from stdin (`request`: a little-endian header of two 4-byte counts, then the REAL
literals as a JSON array of strings, then the values they were written from as 8-byte doubles), asks the
same SQLite library what each literal parses to, and answers with a frame (4-byte length, then positions
joined by commas) listing the positions whose value differs from the value it was written from. It
imports nothing of Patina but `lifeline.py` beside it, so it starts in milliseconds and stays small; run
as a script: `python real_check_worker.py`. It dies with its parent (`lifeline`), and ends at the end of
its stdin.
"""

import sqlite3
import struct
import sys
from array import array

HEADER = struct.Struct("<II")  # bytes of the JSON array, number of doubles
# SQLite reads a REAL literal of SQL text (expr.c's codeReal) and casts TEXT to REAL (vdbemem.c's
# memRealValue) with the same function, sqlite3AtoF, given the same characters; a minus sign is applied
# after the read in one and inside it in the other, which rounds alike (rounding is symmetric). Casting
# the strings of one JSON array costs half of parsing and compiling `SELECT l1,l2,...`;
# tests/engine/test_literals.py holds the two against each other.
QUERY = "SELECT CAST(value AS REAL) FROM json_each(?)"


def json_array(literals: list[str]) -> str:
    return '["' + '","'.join(literals) + '"]'  # REAL literals hold no character JSON must escape


def request(literals: list[str], values: list[float]) -> bytes:
    """One frame for the worker: `literals[i]` was written from `values[i]`."""
    text = json_array(literals).encode()
    return HEADER.pack(len(text), len(values)) + text + array("d", values).tobytes()


def misread(db: sqlite3.Connection, literals: list[str] | str, values: list[float] | None = None) -> list[int]:
    """Positions of the literals SQLite parses to another value than `values` (by default each literal's
    exact value, which Python's `float` reads). `literals` may come as their JSON array already."""
    if values is None:
        values = list(map(float, literals))
    text = literals if isinstance(literals, str) else json_array(literals)
    got = [row[0] for row in db.execute(QUERY, (text,))]
    if got == values:
        return []
    return [i for i, (a, b) in enumerate(zip(values, got)) if a != b]


def main() -> None:
    try:
        from .lifeline import die_with_parent
    except ImportError:  # run as a script: this directory is sys.path[0]
        from lifeline import die_with_parent
    die_with_parent()
    db = sqlite3.connect(":memory:")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while len(head := stdin.read(HEADER.size)) == HEADER.size:
        text_bytes, count = HEADER.unpack(head)
        text = stdin.read(text_bytes).decode()
        values = array("d")
        values.frombytes(stdin.read(8 * count))
        answer = ",".join(map(str, misread(db, text, values.tolist()))).encode()
        stdout.write(struct.pack("<I", len(answer)) + answer)
        stdout.flush()


if __name__ == "__main__":
    main()
