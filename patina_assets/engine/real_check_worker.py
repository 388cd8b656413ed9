"""The REAL-literal check, run as its own small process (see `literals.RealChecker`).

It reads frames from stdin (4-byte little-endian length, then REAL literals joined by commas), asks the
same SQLite library what each literal parses to, and answers with a frame listing the positions whose
value differs from the literal's exact (correctly rounded) value. It imports nothing of Patina but
`lifeline.py` beside it, so it starts in milliseconds and stays small; run as a script:
`python real_check_worker.py`. It dies with its parent (`lifeline`), and ends at the end of its stdin.
"""

import sqlite3
import struct
import sys

BATCH = 500  # literals per SELECT (SQLite allows up to 2000 result columns)


def misread(db: sqlite3.Connection, literals: list[str]) -> list[int]:
    bad = []
    for start in range(0, len(literals), BATCH):
        chunk = literals[start : start + BATCH]
        got = db.execute("SELECT " + ",".join(chunk)).fetchone()
        expected = tuple(map(float, chunk))  # Python parses exactly: repr round-trips
        if got != expected:
            bad.extend(start + i for i, (a, b) in enumerate(zip(expected, got)) if a != b)
    return bad


def main() -> None:
    try:
        from .lifeline import die_with_parent
    except ImportError:  # run as a script: this directory is sys.path[0]
        from lifeline import die_with_parent
    die_with_parent()
    db = sqlite3.connect(":memory:")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while len(head := stdin.read(4)) == 4:
        literals = stdin.read(struct.unpack("<I", head)[0]).decode().split(",")
        answer = ",".join(map(str, misread(db, literals))).encode()
        stdout.write(struct.pack("<I", len(answer)) + answer)
        stdout.flush()


if __name__ == "__main__":
    main()
