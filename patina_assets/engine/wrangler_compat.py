"""Keeping dumps intact through wrangler's own SQL handling (`wrangler d1 execute --file`, local mode).

Before sending a file to D1, wrangler 4.20.0 (src/d1/trimmer.ts and splitter.ts) does two things that
can change or break a valid SQL file:

- If the text `BEGIN TRANSACTION` occurs anywhere, even inside a quoted value, it deletes the first
  `BEGIN TRANSACTION;` and the first `COMMIT;` in the file. Dumps therefore never contain that text in a
  value (see `literals.text_literal`).
- It splits statements with a small scanner of its own (`wrangler_split` replays it exactly). That
  scanner knows '...', "...", `...`, $tag$...$tag$, -- and /* */ comments (and drops the comments), and
  opens a block at whitespace + BEGIN or CASE (any case) that only whitespace + upper-case END followed
  by `;` or whitespace closes. It does not know SQLite's [bracket] identifiers. So:
  - a trigger ending in a lower-case `end`, or `CASE ... END)` in a view, leaves a block open and
    wrangler sends the rest of the file as one statement (refused past D1's 100 KB limit);
  - a `"` inside `[c"d]` opens a quote wrangler closes at the next `"`, and a later `"semi;colon"`
    identifier is then split at its `;` ("unrecognized token"), or the quote runs on into the rows;
  - a comment inside CREATE text is dropped, so SQLite would store other text than the source has.

`guard` replays the scanner over each schema statement the dump writes (every statement starts
with the scanner in step) and returns the statement with harmless SQL around it that keeps wrangler in
step, without changing a byte of what SQLite runs of the statement: `SELECT 0 END LIMIT 0;` closes a
block left open, and `SELECT 0 AS ["] LIMIT 0;` (SQLite reads a bracketed alias; the same with ' and `)
closes a quote left open after it, or, written before it, opens a quote for wrangler that the
statement's first stray quote of that kind closes (a quote the statement never uses spans all of it,
which also keeps wrangler from dropping its comments). Each returns no row and changes nothing; D1 runs
every statement of a piece wrangler glues together. When no arrangement helps, `guard` says so, and the
dump carries a warning with the way out (`patina restore`, or D1's import API with `--remote`).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

_START = re.compile(r"\s(BEGIN|CASE)\s$", re.IGNORECASE)
_END = re.compile(r"\sEND[;\s]$")
RESYNC = "SELECT 0 END LIMIT 0;\n"
# Harmless statements (SQLite reads a bracketed alias) that open one of wrangler's quotes, or close it
# when wrangler is in one. D1 runs all of a glued piece, but refuses one whose rest is only a comment.
_QUOTES = {quote: f"SELECT 0 AS [{quote}] LIMIT 0;\n" for quote in "\"'`"}
_OPENERS = ("", *_QUOTES.values())


@dataclass
class Split:
    """What wrangler's scanner made of a text: its statements, and what it left open at the end."""

    statements: list[str]
    open_quote: str | None  # the end marker wrangler still looks for, if any
    open_blocks: int


def _is_dollar_tag(char: str) -> bool:
    return char in "0123456789_" or char.lower() != char.upper()


def wrangler_split(sql: str) -> Split:
    """wrangler 4.20.0's `splitSqlIntoStatements`, character for character (statements trimmed, empty ones dropped)."""
    statements: list[str] = []
    current: list[str] = []
    tail = ""  # the end of the current statement, enough for the BEGIN/CASE/END tests
    blocks = 0
    open_quote = None
    i, n = 0, len(sql)

    def add(text: str) -> None:
        nonlocal tail
        current.append(text)
        tail = (tail + text)[-16:]

    def until(marker: str, start: int) -> int:
        """The index just past `marker` from `start` (or the end, leaving the marker open)."""
        nonlocal open_quote
        found = sql.find(marker, start)
        if found < 0:
            open_quote = marker
            return n
        return found + len(marker)

    while i < n:
        char = sql[i]
        if blocks and _END.search(tail + char):
            blocks -= 1
        i += 1
        if char in "'\"`":
            end = until(char, i)
            add(char + sql[i:end])
            i = end
        elif char == "$":
            j = i
            while j < n and _is_dollar_tag(sql[j]):
                j += 1
            j = min(j + 1, n)  # the character that ends the tag is taken too
            tag = "$" + sql[i:j]
            add(tag)
            i = j
            if tag.endswith("$"):
                end = until(tag, i)
                add(sql[i:end])
                i = end
        elif char == "-" and sql.startswith("-", i):
            i = until("\n", i + 1)
            open_quote = None  # a comment at the end of the file is just over
            add("\n")
        elif char == "/" and sql.startswith("*", i):
            i = until("*/", i + 1)  # the comment is dropped (the BEGIN/CASE test still runs, as in wrangler)
        elif char == ";" and not blocks:
            statements.append("".join(current))
            current, tail = [], ""
            continue
        else:
            add(char)
            if char in "-/":  # wrangler `continue`s here: no BEGIN/CASE test
                continue
        if _START.search(tail):
            blocks += 1
    statements.append("".join(current))
    return Split([s.strip() for s in statements if s.strip()], open_quote, blocks)


def guard(text: str) -> tuple[str, bool]:
    """`text` (complete SQL statements) with what keeps wrangler in step around it, and whether wrangler
    then runs it exactly (False: local wrangler would break or alter it; the dump warns)."""
    body = text.strip()
    fallback = None
    for opener in _OPENERS:
        guarded = opener + text
        split = wrangler_split(guarded)
        if split.open_quote in _QUOTES:
            guarded += _QUOTES[split.open_quote]
            split = wrangler_split(guarded)
        if split.open_blocks and split.open_quote is None:
            guarded += RESYNC * split.open_blocks
            split = wrangler_split(guarded)
        if split.open_quote or split.open_blocks:
            continue
        fallback = fallback or guarded
        if _runs_exactly(split.statements, body):
            return guarded, True
    return fallback or text, False


def _runs_exactly(statements: list[str], body: str) -> bool:
    """Every statement wrangler sends is complete SQL, and one of them holds `body` unchanged."""
    if not all(sqlite3.complete_statement(s + ";") for s in statements):
        return False
    want = body.rstrip(";").strip()
    return any(want in s for s in statements)
