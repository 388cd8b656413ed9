"""The second half of a big table, in a process of its own (see `dump._SecondHalf`).

Reads a JSON request as the first line of stdin (the SQLite file, the table's plan, the first rowid, the
statement limits and a file to write), writes that part of the table's INSERT statements to the file
exactly as the main process would have, and answers with a JSON line: rows written, REALs written in
exact form, warnings. The main process holds its read transaction open meanwhile, so both read one
snapshot. It dies with its parent (`lifeline`): the kernel's parent-death signal on Linux, and everywhere
the end of its stdin, which the parent keeps open until it has the answer.
"""

import json
import sys
from pathlib import Path

from .dump import _DumpWriter
from .formats import DumpOutput
from .lifeline import die_with_parent, exit_when_closed
from .schema import TablePlan
from .sources import SqliteSource


def main() -> None:
    die_with_parent()
    request = json.loads(sys.stdin.buffer.readline())
    exit_when_closed(sys.stdin.buffer)
    plan = request["table"]
    plan["fts5_config"] = [tuple(pair) for pair in plan["fts5_config"]]
    table = TablePlan(**plan)
    out = DumpOutput(Path(request["output"]), hashed=False)  # the main process hashes what it appends
    try:
        with SqliteSource(Path(request["database"])) as source:
            writer = _DumpWriter(source, out, "", "", None, request["statement_bytes"], request["rows_per_insert"])
            try:
                rows, _ = writer.write_rows(table, lo=request["lo"], split=False, hashed=False)
            finally:
                writer.checker.close()
        out.commit(durable=False)  # read back at once by the main process, whose dump is made durable
    except BaseException:
        out.abort()
        raise
    print(json.dumps({"rows": rows, "exact_reals": writer.exact_reals, "warnings": writer.warnings}))


if __name__ == "__main__":
    main()
