"""Small pieces of SQL text: quoting identifiers, reading identifiers out of a statement, splitting a script.

SQLite accepts any character in a quoted identifier; the only escape is a doubled quote.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator

_TOKEN = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<line_comment>--[^\n]*)
    | (?P<block_comment>/\*.*?(?:\*/|\Z))
    | (?P<string>'(?:[^']|'')*')
    | (?P<dquoted>"(?:[^"]|"")*")
    | (?P<bquoted>`(?:[^`]|``)*`)
    | (?P<bracketed>\[[^\]]*\])
    | (?P<word>[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def quote_identifier(name: str) -> str:
    """`name` as a double-quoted SQL identifier, safe for any characters (reserved words, quotes, unicode)."""
    return '"' + name.replace('"', '""') + '"'


def quote_text(value: str) -> str:
    """`value` as a single-quoted SQL string literal (no newline handling; for short, known-clean strings)."""
    return "'" + value.replace("'", "''") + "'"


def identifiers(sql: str) -> set[str]:
    """Every identifier (bare or quoted) in `sql`, case-folded, ignoring strings and comments."""
    found: set[str] = set()
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup
        text = m.group()
        if kind == "word":
            found.add(text.lower())
        elif kind == "dquoted":
            found.add(text[1:-1].replace('""', '"').lower())
        elif kind == "bquoted":
            found.add(text[1:-1].replace("``", "`").lower())
        elif kind == "bracketed":
            found.add(text[1:-1].lower())
    return found


def module_arguments(create_virtual_table_sql: str) -> tuple[str, list[str]]:
    """The module name and its arguments from `CREATE VIRTUAL TABLE x USING module(arg, arg=...)`."""
    m = re.search(r"\bUSING\s+([A-Za-z0-9_]+)\s*(\((.*)\))?\s*$", create_virtual_table_sql, re.IGNORECASE | re.DOTALL)
    if not m:
        return "", []
    module = m.group(1).lower()
    body = m.group(3) or ""
    args: list[str] = []
    depth = 0
    current: list[str] = []
    for tok in _TOKEN.finditer(body):
        text = tok.group()
        if tok.lastgroup == "other" and text == "(":
            depth += 1
        elif tok.lastgroup == "other" and text == ")":
            depth -= 1
        if tok.lastgroup == "other" and text == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
        else:
            current.append(text)
    if "".join(current).strip():
        args.append("".join(current).strip())
    return module, args


def option_value(args: list[str], option: str) -> str | None:
    """The unquoted value of `option=value` among virtual-table arguments, or None when absent."""
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key.strip().lower() == option:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"`":
                value = value[1:-1].replace(value[0] * 2, value[0])
            elif value.startswith("[") and value.endswith("]"):
                value = value[1:-1]
            return value
    return None


def statements(lines: Iterable[str]) -> Iterator[str]:
    """Complete SQL statements from a stream of lines (comments between statements are dropped).

    Uses SQLite's own `sqlite3.complete_statement`, so semicolons inside strings, quoted names, comments
    and trigger bodies do not end a statement early.
    """
    buffer: list[str] = []
    for line in lines:
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer.append(line)
        if line.rstrip().endswith(";") and sqlite3.complete_statement("".join(buffer)):
            yield "".join(buffer)
            buffer = []
    rest = "".join(buffer).strip()
    if rest:
        yield rest
