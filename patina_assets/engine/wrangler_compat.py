"""Keeping dumps intact through wrangler's own SQL handling (`wrangler d1 execute --file`, local mode).

Before sending a file to D1, wrangler 4.x (src/d1/trimmer.ts and splitter.ts) does two things that can
change or break a valid SQL file:

- If the text `BEGIN TRANSACTION` occurs anywhere, even inside a quoted value, it deletes the first
  `BEGIN TRANSACTION;` and the first `COMMIT;` in the file. Dumps therefore never contain that text in a
  value (see `literals.text_literal`).
- It splits statements with a small scanner that opens a block at whitespace + BEGIN or CASE (any case)
  and closes it only at whitespace + upper-case END followed by `;` or whitespace. A trigger ending in
  a lower-case `end`, or `CASE ... END)` in a view, leaves the block open, and wrangler then sends the
  rest of the file as one statement (refused past D1's 100 KB limit). `Splitter` replays that scanner
  over the schema statements a dump writes, and `resync` gives harmless statements that close what a
  statement left open: `SELECT 0 END LIMIT 0;` returns no row and changes nothing.
"""

from __future__ import annotations

import re

_START = re.compile(r"\s(BEGIN|CASE)\s$", re.IGNORECASE)
_END = re.compile(r"\sEND[;\s]$")
RESYNC = "SELECT 0 END LIMIT 0;\n"


class Splitter:
    """wrangler's statement splitter, reduced to what matters here: how many blocks are left open."""

    def __init__(self) -> None:
        self.open_blocks = 0
        self._tail = ""  # the end of the current statement text, enough for the regexes

    def feed(self, sql: str) -> None:
        i, n = 0, len(sql)
        while i < n:
            char = sql[i]
            if self.open_blocks and _END.search(self._tail[-8:] + char):
                self.open_blocks -= 1
            if char in "'\"`":
                end = sql.find(char, i + 1)
                end = n if end < 0 else end + 1
                self._add(sql[i:end])
                i = end
                continue
            if char == "-" and sql.startswith("--", i):
                end = sql.find("\n", i + 2)
                i = n if end < 0 else end + 1
                self._add("\n")
            elif char == "/" and sql.startswith("/*", i):
                end = sql.find("*/", i + 2)
                i = n if end < 0 else end + 2
            elif char == ";" and not self.open_blocks:
                self._tail = ""
                i += 1
                continue
            else:
                self._add(char)
                i += 1
            if _START.search(self._tail[-8:]):
                self.open_blocks += 1

    def _add(self, text: str) -> None:
        self._tail = (self._tail + text)[-16:]

    def resync(self) -> str:
        """Statements that close every block left open (empty when none is)."""
        text = RESYNC * self.open_blocks
        self.feed(text)
        return text
