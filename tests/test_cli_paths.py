"""The command line as an operator meets it, each command a real subprocess: which config and bucket it used (the
same lookup for every command, from any directory), read commands that never create a bucket, and errors that
name the problem and the fix (usage errors, unknown databases, filters that match nothing, closed pipes, busy
ports, files that exist)."""

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml
from support.filled import DAILY_DAY, filled

PATINA = [sys.executable, "-m", "patina_assets.cli"]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATINA_", "DAGSTER_"))}
    return {**env, **extra}


def patina(*args, cwd, **env):
    return subprocess.run([*PATINA, *args], cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def bucket():
    return filled("local")


# -- 2. one way to find the config, named by every command ------------------------------------------------


def test_outside_a_patina_directory_without_a_config_the_message_says_how_to_point_at_one(tmp_path):
    for args in (["status"], ["list"], ["download", DAILY_DAY, "groveauth"], ["restore-guide", "groveauth"]):
        done = patina(*args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert "no Patina config" in done.stderr and "PATINA_CONFIG" in done.stderr and "--config" in done.stderr
        assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # no .patina/bucket appeared here


def test_every_command_names_its_config_and_bucket_from_any_directory(tmp_path, bucket):
    config = str(bucket.config_path)
    for args in (["status"], ["list"], ["restore-guide", "groveauth"]):
        done = patina(*args, cwd=tmp_path, PATINA_CONFIG=config)
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines()[0] == (
            f"patina: config {bucket.config_path} ($PATINA_CONFIG); bucket local "
            f"directory {bucket.config.bucket.local.path}"
        )
    listing = patina("list", "--json", cwd=tmp_path, PATINA_CONFIG=config)
    assert json.loads(listing.stdout)["total"] > 0  # stdout stays pure JSON; the line goes to stderr
    done = patina("download", DAILY_DAY, "groveauth", "-o", "g.sql", cwd=tmp_path, PATINA_CONFIG=config)
    assert done.returncode == 0 and (tmp_path / "g.sql").is_file(), done.stderr
    # ./patina.yaml is found in the working directory, after $PATINA_CONFIG; --config before both.
    (tmp_path / "patina.yaml").write_text(bucket.config_path.read_text())
    assert f"config {tmp_path / 'patina.yaml'};" in patina("list", cwd=tmp_path).stderr
    assert f"config {config} ($PATINA_CONFIG);" in patina("list", cwd=tmp_path, PATINA_CONFIG=config).stderr
    assert (
        f"config {tmp_path / 'patina.yaml'};"
        in patina("--config", "patina.yaml", "list", cwd=tmp_path, PATINA_CONFIG=config).stderr
    )


def test_a_read_command_never_creates_a_bucket(tmp_path, bucket):
    document = yaml.safe_load(bucket.config_path.read_text())
    document["bucket"] = {"local": {"path": "nowhere/bucket"}}
    (tmp_path / "patina.yaml").write_text(yaml.safe_dump(document))
    for args in (
        ["status"],
        ["list"],
        ["download", DAILY_DAY, "groveauth"],
        ["restore", DAILY_DAY, "groveauth", "--to", "x.sqlite"],
    ):
        done = patina(*args, cwd=tmp_path)
        assert done.returncode == 1, (args, done.stderr)
        assert "does not exist" in done.stderr and "Nothing was created" in done.stderr
        assert str(tmp_path / "patina.yaml") in done.stderr
    assert not (tmp_path / "nowhere").exists()


# -- 3. errors that name the problem and the fix ------------------------------------------------------------


def test_a_day_without_its_database_is_a_usage_error_not_a_damaged_dump(tmp_path, bucket):
    done = patina("restore", DAILY_DAY, "--to", "y.sqlite", cwd=tmp_path, PATINA_CONFIG=str(bucket.config_path))
    assert done.returncode == 2
    assert "damaged" not in done.stderr and "which database" in done.stderr and "usage: patina restore" in done.stderr
    done = patina("restore", "nosuch.sql.zst", "--to", "y.sqlite", cwd=tmp_path)
    assert done.returncode == 2 and "no such dump file" in done.stderr


def test_unknown_databases_list_the_configured_ones_and_asset_names_map(tmp_path, bucket):
    env = {"PATINA_CONFIG": str(bucket.config_path)}
    for args in (
        ["download", DAILY_DAY, "nope"],
        ["restore", DAILY_DAY, "nope", "--to", "n.sqlite"],
        ["list", "--db", "nope"],
        ["restore-guide", "nope"],
    ):
        done = patina(*args, cwd=tmp_path, **env)
        assert done.returncode == 2, (args, done.stderr)
        assert "known databases: scout-db, autumnsgrove-posts, groveauth" in done.stderr, done.stderr
        assert "no backups" not in done.stderr
    done = patina("restore", DAILY_DAY, "scout_db", "--to", "s.sqlite", cwd=tmp_path, **env)
    assert done.returncode == 0 and (tmp_path / "s.sqlite").is_file(), done.stderr


def test_filters_that_match_nothing_fail_with_what_exists(tmp_path, bucket):
    env = {"PATINA_CONFIG": str(bucket.config_path)}
    done = patina("list", "--date", "2020-01-01", cwd=tmp_path, **env)
    assert done.returncode == 1 and "no backups match day 2020-01-01" in done.stderr and DAILY_DAY in done.stderr
    done = patina("list", "--db", "groveauth", "--date", "2020-01-01", cwd=tmp_path, **env)
    assert done.returncode == 1 and "groveauth's days:" in done.stderr and DAILY_DAY in done.stderr


def test_a_missing_table_names_the_backup_not_a_temporary_file(tmp_path, bucket):
    done = patina(
        "restore",
        DAILY_DAY,
        "groveauth",
        "--to",
        "t.sqlite",
        "--table",
        "nosuch",
        cwd=tmp_path,
        PATINA_CONFIG=str(bucket.config_path),
    )
    assert done.returncode == 1
    assert f"the backup of groveauth on {DAILY_DAY} has no table 'nosuch'" in done.stderr
    assert "patina-restore-" not in done.stderr and not (tmp_path / "t.sqlite").exists()


def test_a_closed_pipe_ends_quietly(tmp_path, bucket):
    done = subprocess.run(
        f"{' '.join(PATINA)} list | head -1",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=clean_env(PATINA_CONFIG=str(bucket.config_path)),
        timeout=300,
    )
    assert done.stdout.startswith("DATE") and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_dump_refuses_to_overwrite_without_force(tmp_path, bucket):
    source = str(bucket.sources["groveauth"])
    (tmp_path / "out.sql").write_text("keep me")
    done = patina("dump", source, "-o", "out.sql", cwd=tmp_path)
    assert done.returncode == 2 and "already exists" in done.stderr and "--force" in done.stderr
    assert (tmp_path / "out.sql").read_text() == "keep me"
    assert patina("dump", source, "-o", "out.sql", "--force", cwd=tmp_path).returncode == 0
    assert (tmp_path / "out.sql").read_text().startswith("-- ")


def test_serve_on_a_busy_port_fails_before_it_prints_a_url(tmp_path, bucket):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = patina("serve", "--port", str(port), cwd=tmp_path, PATINA_CONFIG=str(bucket.config_path))
    assert done.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert "http://" not in done.stderr + done.stdout
