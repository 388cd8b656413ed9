"""`patina dump` and `patina restore DUMPFILE` as a user runs them: exit codes, messages, progress."""

import json
import os
import pty
import subprocess
import sys

from support.compare import assert_same_database
from support.configs import small_database, write_config
from support.d1_server import D1Server, Fault

ACCOUNT = "0123456789abcdef0123456789abcdef"  # D1 IDs as Cloudflare gives them: 32 hex digits and a UUID
DB_ID = "6a289378-c662-4c6a-9f1b-fa5296e03fa2"
PATINA = [sys.executable, "-m", "patina_assets.cli"]


def patina(*args, env=None, **kw):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*PATINA, *args], capture_output=True, text=True, env=full_env, **kw)


def test_dump_then_restore(tmp_path):
    source = small_database(tmp_path / "src.sqlite")
    run = patina("dump", str(source), "-o", str(tmp_path / "out.sql.gz"), "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["format"] == "sql.gz" and result["table_rows"] == {"users": 50, "posts": 100}
    assert run.stderr == ""  # no progress when stderr is not a terminal
    run = patina("restore", str(tmp_path / "out.sql.gz"), "--to", str(tmp_path / "new.sqlite"))
    assert run.returncode == 0 and "row counts match" in run.stdout
    assert_same_database(source, tmp_path / "new.sqlite")


def test_dump_over_rest_with_env(tmp_path):
    source = small_database(tmp_path / "src.sqlite")
    with D1Server({DB_ID: source}, account_id=ACCOUNT) as server:
        env = {"CLOUDFLARE_API_TOKEN": "good-token", "PATINA_CLOUDFLARE_API_URL": server.base_url}
        run = patina("dump", f"d1://{ACCOUNT}/{DB_ID}", "-o", str(tmp_path / "d1.sql"), env=env)
    assert run.returncode == 0, run.stderr
    assert "one point in time (one batch)" in run.stdout


def test_dump_over_rest_uses_patina_yaml(tmp_path):
    """`patina dump d1://...` reads with patina.yaml's request settings when one is found."""
    source = small_database(tmp_path / "src.sqlite")
    write_config(
        tmp_path,
        [{"name": "grove", "source": str(source)}],
        dump={"page_bytes": 10_000, "request_attempts": 1, "consistency_retries": 0},
        cloudflare={"api_token_env": "GROVE_D1_TOKEN", "requests_per_5_minutes": 1200},
    )
    with D1Server({DB_ID: source}, account_id=ACCOUNT) as server:
        env = {"GROVE_D1_TOKEN": "good-token", "CLOUDFLARE_API_TOKEN": "", "PATINA_CLOUDFLARE_API_URL": server.base_url}
        run = patina("dump", f"d1://{ACCOUNT}/{DB_ID}", "-o", str(tmp_path / "d1.sql"), env=env, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        # The file (over 10,000 bytes) is paged at patina.yaml's page_bytes instead of read in one batch.
        assert "(bookmark unchanged)" in run.stdout
        pages = [r for r in server.requests if r.path.endswith("/raw") and "LIMIT" in r.body.get("sql", "")]
        # The first page of each table asks for page_bytes // 200 rows; the default (2 MB) would ask for 1,000.
        assert pages and all(r.body["sql"].endswith(" LIMIT 50") for r in pages if " WHERE (" not in r.body["sql"])
        server.inject(Fault.status(500))  # request_attempts: 1, so one 500 ends it
        run = patina("dump", f"d1://{ACCOUNT}/{DB_ID}", "-o", str(tmp_path / "again.sql"), env=env, cwd=tmp_path)
    assert run.returncode == 1 and "gave up after 1 attempts" in run.stderr
    assert not (tmp_path / "again.sql").exists()


def test_clear_errors_and_nothing_left_behind(tmp_path):
    source = small_database(tmp_path / "src.sqlite")
    cases = [
        (["dump", str(tmp_path / "missing.sqlite"), "-o", str(tmp_path / "x.sql")], "no SQLite database at"),
        (["dump", str(source), "-o", str(tmp_path / "x.txt")], "name it *.sql, *.sql.gz or *.sql.zst"),
        (["dump", "d1://only-account", "-o", str(tmp_path / "x.sql")], "d1://ACCOUNT_ID/DATABASE_ID"),
        (["restore", str(tmp_path / "none.sql"), "--to", str(tmp_path / "n.sqlite")], "none.sql"),
    ]
    for args, message in cases:
        run = patina(*args)
        assert run.returncode != 0 and message in run.stderr, (args, run.stderr)
        assert "Traceback" not in run.stderr
    run = patina("dump", f"d1://{ACCOUNT}/{DB_ID}", "-o", str(tmp_path / "x.sql"), env={"CLOUDFLARE_API_TOKEN": ""})
    assert run.returncode == 1 and "CLOUDFLARE_API_TOKEN is not set" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.sqlite"]


def test_bad_token_message_names_the_fix_not_the_token(tmp_path):
    source = small_database(tmp_path / "src.sqlite")
    with D1Server({DB_ID: source}, account_id=ACCOUNT) as server:
        env = {"CLOUDFLARE_API_TOKEN": "sekret-value-123", "PATINA_CLOUDFLARE_API_URL": server.base_url}
        run = patina("dump", f"d1://{ACCOUNT}/{DB_ID}", "-o", str(tmp_path / "d1.sql"), env=env)
    assert run.returncode == 1 and "refused the token" in run.stderr and "sekret" not in run.stderr + run.stdout
    assert not (tmp_path / "d1.sql").exists()


def test_progress_on_a_terminal(tmp_path):
    source = small_database(tmp_path / "src.sqlite", rows=3000)
    primary, secondary = pty.openpty()
    run = subprocess.run(
        [*PATINA, "dump", str(source), "-o", str(tmp_path / "p.sql")],
        stdout=subprocess.PIPE,
        stderr=secondary,
        text=True,
    )
    os.close(secondary)
    progress = os.read(primary, 65536).decode()
    os.close(primary)
    assert run.returncode == 0
    assert "rows" in progress and "rows/s" in progress and "MB" in progress


def test_restore_progress_on_a_terminal(tmp_path):
    source = small_database(tmp_path / "src.sqlite", rows=3000)
    assert patina("dump", str(source), "-o", str(tmp_path / "p.sql")).returncode == 0
    primary, secondary = pty.openpty()
    run = subprocess.run(
        [*PATINA, "restore", str(tmp_path / "p.sql"), "--to", str(tmp_path / "r.sqlite")],
        stdout=subprocess.PIPE,
        stderr=secondary,
        text=True,
    )
    os.close(secondary)
    progress = os.read(primary, 65536).decode()
    os.close(primary)
    assert run.returncode == 0 and "rows/s" in progress
