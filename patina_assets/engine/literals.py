"""SQL literals that read back as exactly the value that was written, on SQLite 3.40's parser and on D1's.

- INTEGER: decimal digits; the whole 64-bit range parses back as an integer.
- REAL: Python's shortest round-trip `repr` where that is safe. SQLite's decimal parser is not exact
  everywhere: 3.40 (the sqlite3 CLI here) misreads about one typical value in ten thousand, and D1's
  3.47 misreads many values with exponents beyond about +-100. So each REAL literal is checked against
  the SQLite library Patina runs with, values of extreme magnitude are never trusted to decimal, and
  those are written as an exact quotient of integers and powers of two instead, e.g.
  `(6845843473148657/17592186044416.0)`, which every version computes exactly. Infinities are `9e999`
  and `-9e999` (SQLite's own `quote()` writes `Inf`, which is not SQL).
- TEXT: single-quoted; newline, carriage return and NUL written as escape tokens put back by
  `replace()` (as the sqlite3 CLI's .dump does), so every statement stays on one line and line-based
  tools (grep, sed) can cut a dump safely. TEXT that is not
  valid UTF-8 (SQLite stores what it is given) is written as `CAST(X'..' AS TEXT)`.
- BLOB: `X'..'`. NULL: `NULL` (and `''` stays the empty string).
"""

from __future__ import annotations

import sqlite3
import struct
import subprocess
import sys
import threading
from binascii import hexlify
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import repeat
from pathlib import Path

from . import real_check_worker
from .lifeline import child_environment

POW2_62 = "4611686018427387904.0"  # 2**62 with a decimal point: a REAL every SQLite parses exactly
# D1's SQLite (3.47 in wrangler 4.20.0) misreads many decimal literals with exponents beyond about
# +-100, and the local library cannot vouch for it there: such values always take the exact form.
SAFE_MIN, SAFE_MAX = 1e-80, 1e80
_INF_LITERALS = {float("inf"): "9e999", float("-inf"): "-9e999"}


class RawText(bytes):
    """TEXT whose bytes are not valid UTF-8, kept as bytes so nothing is replaced on the way."""


# (text to keep out of the literal, token name, SQL that puts it back). `BEGIN TRANSACTION` is here because
# wrangler deletes it (and a COMMIT;) from anywhere in a file, quoted values included (see wrangler_compat).
_CONTROL = (
    ("\n", "n", "char(10)"),
    ("\r", "r", "char(13)"),
    ("\x00", "0", "char(0)"),
    ("BEGIN TRANSACTION", "B", "'BEGIN TRANS'||'ACTION'"),
)
WRANGLER_TRIGGER = "BEGIN TRANSACTION"
WRANGLER_TRIGGER_BYTES = WRANGLER_TRIGGER.encode()


def text_literal(value: str) -> str:
    """A TEXT value as a one-line SQL expression.

    Newline, carriage return and NUL are written as an escape token inside the string and put back
    by `replace()`, like the sqlite3 CLI's .dump: `replace('a\\nb','\\n',char(10))`; so is the text
    `BEGIN TRANSACTION`, which wrangler would otherwise cut out of the file. The token is
    chosen so that it does not occur in the text, and the nesting stays at most three calls deep
    however many line breaks the text holds (SQLite limits expression depth to 1000).
    """
    if value.isprintable() and WRANGLER_TRIGGER not in value:  # fast path: nothing to keep out
        return "'" + value.replace("'", "''") + "'"
    value = value.replace("'", "''")
    replacements = []
    for char, name, sql in _CONTROL:
        if char in value:
            token = "\\" + name
            n = 0
            while token in value:
                n += 1
                token = f"\\{name}{n}"
            value = value.replace(char, token)
            replacements.append((token, sql))
    literal = "'" + value + "'"
    for token, sql in replacements:
        literal = f"replace({literal},'{token}',{sql})"
    return literal


def blob_literal(value: bytes) -> str:
    return "X'" + value.hex() + "'"


def raw_text_literal(value: bytes) -> str:
    return "CAST(X'" + bytes(value).hex() + "' AS TEXT)"


def exact_real_literal(value: float) -> str:
    """`value` as integer arithmetic on powers of two: exact on any SQLite, whatever its decimal parser."""
    if value in _INF_LITERALS:
        return _INF_LITERALS[value]
    numerator, denominator = value.as_integer_ratio()
    if denominator == 1:
        # A large integral REAL: odd mantissa times 2**k, built by multiplying exact powers of two.
        shift = (numerator & -numerator).bit_length() - 1
        mantissa = numerator >> shift
        factors = [f"{mantissa}.0"] if abs(mantissa) < 2**53 else [str(mantissa)]
        factors += _powers_of_two(shift)
        return "(" + "*".join(factors) + ")"
    shift = denominator.bit_length() - 1
    return "(" + "/".join([str(numerator)] + _powers_of_two(shift)) + ")"


def _powers_of_two(shift: int) -> list[str]:
    parts = [POW2_62] * (shift // 62)
    if shift % 62:
        parts.append(f"{1 << (shift % 62)}.0")
    return parts


class RealChecker:
    """Tells which REAL literals the local SQLite library would read back as a different value.

    `misread` checks in this process. `submit` checks in the background for the dump's hot path: a small
    worker process (`real_check_worker.py`, same Python, same SQLite) parses each batch while this
    process formats the next one; a thread would contend with the formatting for the GIL (measured:
    0.7 s more on 2 M rows). If the worker cannot run, the check happens here instead: slower, as exact.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._executor: ThreadPoolExecutor | None = None
        self._worker: subprocess.Popen | None = None
        self._worker_failed = False

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(":memory:", check_same_thread=False)
        return db

    def misread(self, values: Sequence[float], literals: Sequence[str]) -> list[int]:
        """Indexes of `literals` (each `repr` of the matching value) that SQLite parses to another value."""
        return real_check_worker.misread(self._db(), list(literals), list(values))

    def _misread_in_worker(self, values: list[float], literals: list[str]) -> list[int]:
        if not self._worker_failed:
            try:
                if self._worker is None:
                    self._worker = subprocess.Popen(
                        [sys.executable, str(Path(__file__).with_name("real_check_worker.py"))],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                        env=child_environment(),
                    )
                self._worker.stdin.write(real_check_worker.request(literals, values))
                self._worker.stdin.flush()
                head = self._worker.stdout.read(4)
                answer = self._worker.stdout.read(struct.unpack("<I", head)[0]).decode()
                return [int(i) for i in answer.split(",")] if answer else []
            except (OSError, ValueError, struct.error):
                self._worker_failed = True
                self._stop_worker()
        return self.misread(values, literals)

    def submit(self, values: list[float], literals: list[str]) -> Future:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="patina-real-check")
        return self._executor.submit(self._misread_in_worker, values, literals)

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            try:
                worker.stdin.close()
                worker.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                worker.kill()
            worker.stdout.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._stop_worker()


class _ByteLiterals(list):
    """A column's literals as UTF-8 bytes, each without the `open` and `close` bytes that surround it in
    SQL (`X'` and `'` around a BLOB's hex, quotes around a TEXT's body): those are written with the
    commas between values, so each value is copied once into its row (see `RowFormatter._format_rows`)."""

    def __init__(self, items, open: bytes, close: bytes) -> None:
        super().__init__(items)
        self.open, self.close = open, close


class RowFormatter:
    """Turns rows of Python values into SQL value tuples `(v1,v2,...)`, fast, for one column layout.

    Every REAL literal that is not trivially exact is checked (see `RealChecker`); when a check finds
    one the local SQLite would misread, that value is remembered in its exact form and the rows that
    held it are formatted again before anything is written.
    """

    def __init__(self, column_count: int, checker: RealChecker | None = None) -> None:
        self.checker = checker or RealChecker()
        self._values: list[float] = []
        self._literals: list[str] = []
        self._exact: dict[float, str] = dict(_INF_LITERALS)
        self.exact_reals = 0
        values_append, literals_append = self._values.append, self._literals.append
        exact_get = self._exact.get
        float_repr = float.__repr__

        def real(value: float) -> str:
            literal = exact_get(value)
            if literal is None:
                if not (SAFE_MIN < abs(value) < SAFE_MAX) and value != 0:
                    return exact_real_literal(value)
                literal = float_repr(value)
                if not (-1e15 < value < 1e15 and value.is_integer()):
                    values_append(value)
                    literals_append(literal)
            return literal

        formatters: dict[type, Callable] = {
            int: int.__repr__,
            str: text_literal,
            float: real,
            bytes: blob_literal,
            RawText: raw_text_literal,
            type(None): lambda _v: "NULL",
        }
        self.literal = lambda v: formatters[type(v)](v)
        self._real = real

    def _format_rows(self, rows: Sequence[Sequence]) -> list[str] | list[bytes]:
        """`(v1,v2,...)` for each row: the dump's hot path, so the work is done a column at a time
        with `map`, `join` and `split` (loops in C) rather than a Python call per value.

        Rows holding big BLOBs or big TEXT come back as UTF-8 bytes (the hex made as bytes, the text
        escaped as bytes, each copied once into its row); all others as text. `format_rows` always
        gives text."""
        if not rows:
            return []
        columns = [self._format_column(column) for column in zip(*rows)]
        if any(type(column) is _ByteLiterals for column in columns):
            # Each row is one join of (separator, value, separator, value, ..., separator), a separator
            # holding the comma between two values and whatever closes the one and opens the other.
            parts: list = []
            before = b"("
            for column in columns:
                if type(column) is _ByteLiterals:
                    parts += [repeat(before + column.open), column]
                    before = column.close + b","
                else:
                    parts += [repeat(before), map(str.encode, column)]
                    before = b","
            parts.append(repeat(before[:-1] + b")"))
            return list(map(b"".join, zip(*parts)))
        columns[0] = map("(".__add__, columns[0])
        columns[-1] = map(str.__add__, columns[-1], repeat(")"))
        return list(map(",".join, zip(*columns)))

    def _format_column(self, values: tuple) -> Sequence[str]:
        kinds = set(map(type, values))
        if len(kinds) == 1:
            kind = next(iter(kinds))
            if kind is int:
                return list(map(int.__repr__, values))
            if kind is str:
                # `text_literal` changes nothing but quotes in a value without line breaks, NUL or
                # BEGIN TRANSACTION (searched for in C, unlike `isprintable`, which looks up every
                # character); and where no value holds "\x1f", it can join and split them safely.
                joined = "\x1f".join(values)
                if len(joined) > 128 * len(values):  # big text: the same, on its UTF-8 bytes (twice as fast)
                    bodies = _text_bodies(joined, len(values))
                    if bodies is not None:
                        return bodies
                if (
                    joined.count("\x1f") == len(values) - 1
                    and "\n" not in joined
                    and "\r" not in joined
                    and "\x00" not in joined
                    and WRANGLER_TRIGGER not in joined
                ):
                    joined = joined.replace("'", "''")
                    return ("'" + joined.replace("\x1f", "'\x1f'") + "'").split("\x1f")
            elif kind is float:
                literals = list(map(float.__repr__, values))
                if max(map(abs, values)) < SAFE_MAX and min(map(abs, values)) > SAFE_MIN:
                    self._values.extend(values)
                    self._literals.extend(literals)
                    return list(map(self._exact.get, values, literals))
            elif kind is bytes:
                if sum(map(len, values)) > 128 * len(values):  # big BLOBs: the hex made as bytes
                    return _ByteLiterals(map(hexlify, values), b"X'", b"'")
                return ("X'" + "'\x1fX'".join(map(bytes.hex, values)) + "'").split("\x1f")
            elif kind is type(None):
                return ["NULL"] * len(values)
        return list(map(self.literal, values))

    def _take_pending(self) -> tuple[list[float], list[str]]:
        values, literals = self._values[:], self._literals[:]
        self._values.clear()
        self._literals.clear()
        return values, literals

    def _learn(self, values: list[float], bad: list[int]) -> None:
        if len(self._exact) > 100_000:
            self._exact.clear()
            self._exact.update(_INF_LITERALS)
        for i in bad:
            self._exact[values[i]] = exact_real_literal(values[i])
        self.exact_reals += len(bad)

    def format_rows_async(self, rows: Sequence[Sequence]) -> Callable[[], list[str]]:
        """Format `rows` now, check their REALs in the background; call the result to get checked tuples."""
        tuples = self._format_rows(rows)
        if not self._values:
            return lambda: tuples
        values, literals = self._take_pending()
        future = self.checker.submit(values, literals)

        def checked() -> list[str]:
            bad = future.result()
            if not bad:
                return tuples
            self._learn(values, bad)
            # Only the rows holding a misread value are formatted again (a value equal to one, such as
            # an integer, brings its row along: formatting it again is merely redundant).
            misread = {values[i] for i in bad}
            again = [i for i, row in enumerate(rows) if not misread.isdisjoint(row)]
            fixed = self._format_rows([rows[i] for i in again])
            self._take_pending()  # their REALs were all just checked, or now have an exact form
            if fixed and type(fixed[0]) is not type(tuples[0]):  # those rows alone may hold no big BLOB
                fixed = [t.encode() if type(t) is str else t.decode() for t in fixed]
            for i, text in zip(again, fixed):
                tuples[i] = text
            return tuples

        return checked

    def format_rows(self, rows: Sequence[Sequence]) -> list[str]:
        """Value tuples for `rows`, each REAL checked."""
        tuples = self._checked(lambda: self._format_rows(rows))
        return [t.decode() for t in tuples] if tuples and type(tuples[0]) is bytes else tuples

    def format_value(self, value) -> str:
        """One value's literal, checked."""
        return self._checked(lambda: self.literal(value))

    def _checked(self, make):
        pending_before = self._take_pending()  # keep another batch's pending REALs out of this check
        result = make()
        values, literals = self._take_pending()
        bad = self.checker.misread(values, literals) if values else []
        if bad:
            self._learn(values, bad)
            result = make()
            self._take_pending()
        self._values.extend(pending_before[0])
        self._literals.extend(pending_before[1])
        return result


def _text_bodies(joined: str, count: int) -> _ByteLiterals | None:
    """The `count` TEXT values joined by "\x1f" in `joined`, as the UTF-8 bodies of their literals (quotes
    doubled), when `text_literal` would write each as nothing but its quoted body; else None.

    UTF-8 writes every character outside ASCII as bytes of 0x80 and above, so searching and replacing
    the ASCII characters that matter in the bytes finds exactly what it would in the text."""
    try:
        data = joined.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8 at all; the text path decides
        return None
    if b"\n" in data or b"\r" in data or b"\x00" in data or WRANGLER_TRIGGER_BYTES in data:
        return None
    bodies = data.replace(b"'", b"''").split(b"\x1f")
    return _ByteLiterals(bodies, b"'", b"'") if len(bodies) == count else None  # else a value held "\x1f"


def utf8_length(text: str) -> int:
    """Bytes of `text` in UTF-8 (D1's statement limit counts bytes)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def chunk_value(value, max_literal_bytes: int) -> list:
    """Split a TEXT or BLOB value into pieces whose literals each fit in `max_literal_bytes`."""
    if isinstance(value, (bytes, bytearray)):  # BLOB and RawText: two hex digits a byte
        step = max(1, (max_literal_bytes - 24) // 2)
        kind = type(value)
        return [kind(value[i : i + step]) for i in range(0, len(value), step)] or [kind(b"")]
    # TEXT: start from the largest piece that could fit and shrink until its literal does.
    pieces = []
    i = 0
    while i < len(value):
        size = max_literal_bytes
        while size > 1 and utf8_length(text_literal(value[i : i + size])) > max_literal_bytes:
            size = size * 3 // 4
        pieces.append(value[i : i + size])
        i += size
    return pieces or [""]
