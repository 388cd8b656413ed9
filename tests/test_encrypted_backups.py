"""Backups encrypted at rest, end to end on real parts: real SQLite sources backed up day by day into a local
bucket and a moto S3 server, restore verification, downloads, the weekly archive, retention and
reconciliation, key rotation, and the age command-line tool as the outside check."""

import hashlib
import json
import os
import sqlite3
import subprocess
from datetime import date, timedelta

import pytest
from support.age import age_cli
from support.api_server import Audit, serve  # noqa: F401 (fixture)
from support.archives import NAMES, back_up_day, day_of_restored, make_source
from support.configs import write_config
from support.s3_server import create_bucket, moto_server

from patina_assets.archive import ArchiveStore, iter_tar
from patina_assets.backup import open_store
from patina_assets.catalog import BackupMismatch, Catalog
from patina_assets.encryption import IdentityMissing, WrongIdentity, generate_identity, recipient_fingerprint
from patina_assets.reconciliation import RecordedBackups, reconcile
from patina_assets.retention import plan_retention
from patina_assets.storage import AGE_SUFFIX, Manifest, daily_manifest_key
from patina_assets.verify import verify_restore

VARIABLE = "PATINA_AGE_IDENTITY"
WEEK = "2026-01-04"  # a Sunday
DAYS = [(date(2026, 1, 4) + timedelta(days=i)).isoformat() for i in range(4)]


@pytest.fixture
def keys(tmp_path):
    """Two identities, each in its own file, and one file holding both (an identity file may hold several)."""
    first, second = generate_identity(), generate_identity()
    (tmp_path / "first.txt").write_text(first.file_text)
    (tmp_path / "second.txt").write_text(second.file_text)
    (tmp_path / "both.txt").write_text(first.file_text + second.file_text)
    return first, second


def encrypted_config(tmp_path, recipients, bucket=None):
    sources = tmp_path / "sources"
    sources.mkdir(exist_ok=True)
    databases = [
        {"name": "groveauth", "source": str(sources / "auth.sqlite")},
        {"name": "scout-db", "source": str(sources / "scout.sqlite")},
    ]
    for database in databases:
        if not (path := tmp_path / "sources" / database["source"].rsplit("/", 1)[1]).exists():
            make_source(path, 30)
    return write_config(tmp_path, databases, bucket, encryption={"recipients": recipients})


@pytest.fixture
def encrypted(tmp_path, keys, monkeypatch):
    first, _ = keys
    monkeypatch.setenv(VARIABLE, str(tmp_path / "first.txt"))
    config = encrypted_config(tmp_path, [first.recipient])
    store = open_store(config)
    for day in DAYS:
        back_up_day(config, store, day)
    return config, store


def test_encrypted_dailies_restore_download_and_archive_and_the_bucket_holds_no_plaintext(tmp_path, encrypted, keys):
    config, store = encrypted
    first, _ = keys
    backups = store.list_daily()
    assert len(backups) == len(DAYS) * len(NAMES)
    for manifest in backups:
        stored = store.bucket.get_bytes(manifest.key)
        assert manifest.key.endswith(".sql.zst" + AGE_SUFFIX) and manifest.encrypted
        assert manifest.recipients == [recipient_fingerprint(first.recipient)]
        assert (manifest.bytes, manifest.sha256) == (len(stored), hashlib.sha256(stored).hexdigest())
        assert stored.startswith(b"age-encryption.org/v1\n") and b"example.com" not in stored
        assert manifest.plaintext_bytes < manifest.bytes and manifest.sql_sha256 != manifest.plaintext_sha256
        assert first.recipient not in json.dumps(
            json.loads(store.bucket.get_bytes(daily_manifest_key(manifest.day, manifest.database)))
        )
    outcome = verify_restore(store, store.get_manifest(DAYS[-1], "groveauth"), scratch_dir=tmp_path)
    assert outcome.passed, outcome.problems
    assert (outcome.stored_bytes, outcome.stored_sha256) == (
        store.get_manifest(DAYS[-1], "groveauth").bytes,
        store.get_manifest(DAYS[-1], "groveauth").sha256,
    )

    catalog = Catalog(store, config.retention)
    sql = catalog.download(catalog.find(DAYS[1], "groveauth", source="daily"), tmp_path / "auth.sql")
    assert day_of_restored(sql, tmp_path / "auth.sqlite") == DAYS[1]

    archives = ArchiveStore(store)
    outcome = archives.build(WEEK, NAMES, first_day=config.start_date)
    manifest = outcome.manifest
    assert outcome.verification.ok, outcome.verification.problems
    assert manifest.key.endswith(".tar.zst" + AGE_SUFFIX) and manifest.encrypted
    assert len(manifest.index.members) == len(DAYS) * len(NAMES)
    stored = store.bucket.get_bytes(manifest.key)
    assert b"example.com" not in stored and hashlib.sha256(stored).hexdigest() == manifest.sha256
    # The archive compressed the plaintext: far smaller than the SQL it holds.
    assert manifest.plaintext_bytes < manifest.index.sql_bytes / 3
    weekly = catalog.find(DAYS[2], "scout-db", source="weekly")
    sql = catalog.download(weekly, tmp_path / "scout.sql")
    assert day_of_restored(sql, tmp_path / "scout.sqlite") == DAYS[2]

    # The outside check: the age CLI alone opens the archive and a daily.
    (tmp_path / "week.tar.zst.age").write_bytes(stored)
    opened = subprocess.run(
        [
            age_cli(),
            "-d",
            "-i",
            str(tmp_path / "first.txt"),
            "-o",
            str(tmp_path / "week.tar.zst"),
            str(tmp_path / "week.tar.zst.age"),
        ],
        check=True,
    )
    assert opened.returncode == 0
    with open(tmp_path / "week.tar.zst", "rb") as raw, iter_tar(raw) as members:
        names = [info.name for info, _ in members]
    assert f"daily/{DAYS[0]}/groveauth.sql" in names and "index.json" in names
    daily = store.get_manifest(DAYS[0], "groveauth")
    (tmp_path / "daily.age").write_bytes(store.bucket.get_bytes(daily.key))
    plain = subprocess.run(
        [age_cli(), "-d", "-i", str(tmp_path / "first.txt"), str(tmp_path / "daily.age")],
        capture_output=True,
        check=True,
    ).stdout
    assert hashlib.sha256(plain).hexdigest() == daily.plaintext_sha256


def test_listing_retention_and_reconciliation_need_no_identity_but_reading_does(tmp_path, encrypted, monkeypatch):
    config, store = encrypted
    archives = ArchiveStore(store)
    assert archives.build(WEEK, NAMES, first_day=config.start_date).verification.ok  # with the identity
    monkeypatch.delenv(VARIABLE)
    store = open_store(config)
    archives = ArchiveStore(store)
    catalog = Catalog(store, config.retention)
    assert len(catalog.backups()) == 2 * len(DAYS) * len(NAMES)  # dailies and the archive's days
    recorded = RecordedBackups(frozenset((d, n) for d in DAYS for n in NAMES), frozenset({WEEK}))
    report = reconcile(archives, recorded, deep=True)
    assert not report.corrupt and not report.missing, (report.corrupt, report.missing)
    plan = plan_retention(archives, "2026-02-01", config.retention)
    assert {(d.day, d.database) for d in plan.dailies} == {(d, n) for d in DAYS for n in NAMES} - {
        (DAYS[-1], n) for n in NAMES
    }  # the archive vouches for them (its verified bytes); the newest good daily is kept
    with pytest.raises(IdentityMissing, match=rf"\${VARIABLE} is not set"):
        verify_restore(store, store.get_manifest(DAYS[0], "groveauth"), scratch_dir=tmp_path)
    with pytest.raises(IdentityMissing):
        catalog.download(catalog.find(DAYS[0], "groveauth"), tmp_path / "x.sql")
    assert not (tmp_path / "x.sql").exists()
    # The weekly job finds the archive unchanged on its stored bytes; backing up needs only the recipients...
    assert archives.build(WEEK, NAMES, first_day=config.start_date).action == "unchanged"
    back_up_day(config, store, DAYS[0], ["groveauth"])
    assert store.get_manifest(DAYS[0], "groveauth").encrypted
    with pytest.raises(IdentityMissing):  # ...but a rebuild reads the dailies
        archives.build(WEEK, NAMES, first_day=config.start_date)


def test_a_wrong_identity_is_named_and_changes_nothing(tmp_path, encrypted, keys, monkeypatch):
    config, _ = encrypted
    first, second = keys
    monkeypatch.setenv(VARIABLE, str(tmp_path / "second.txt"))
    store = open_store(config)
    before = sorted(info.key for info in store.bucket.list())
    with pytest.raises(WrongIdentity) as caught:
        verify_restore(store, store.get_manifest(DAYS[0], "groveauth"), scratch_dir=tmp_path)
    assert recipient_fingerprint(first.recipient) in str(caught.value)
    assert recipient_fingerprint(second.recipient) in str(caught.value)
    with pytest.raises(WrongIdentity):
        ArchiveStore(store).build(WEEK, NAMES, first_day=config.start_date)
    assert sorted(info.key for info in store.bucket.list()) == before


def test_recipients_changing_mid_week_apply_from_the_next_backup_and_the_archive_opens_both(
    tmp_path, keys, monkeypatch
):
    first, second = keys
    monkeypatch.setenv(VARIABLE, str(tmp_path / "first.txt"))
    config = encrypted_config(tmp_path, [first.recipient])
    store = open_store(config)
    for day in DAYS[:2]:
        back_up_day(config, store, day)
    config = encrypted_config(tmp_path, [second.recipient])  # the first key is retired mid-week
    monkeypatch.setenv(VARIABLE, str(tmp_path / "second.txt"))
    store = open_store(config)
    for day in DAYS[2:]:
        back_up_day(config, store, day)
    fingerprints = {m.day: m.recipients for m in store.list_daily(database="groveauth")}
    assert fingerprints[DAYS[0]] == [recipient_fingerprint(first.recipient)]
    assert fingerprints[DAYS[3]] == [recipient_fingerprint(second.recipient)]

    with pytest.raises(WrongIdentity, match=recipient_fingerprint(first.recipient).replace("+", r"\+")):
        ArchiveStore(store).build(WEEK, NAMES, first_day=config.start_date)  # the new key alone cannot read Monday

    monkeypatch.setenv(VARIABLE, str(tmp_path / "both.txt"))
    store = open_store(config)
    outcome = ArchiveStore(store).build(WEEK, NAMES, first_day=config.start_date)
    assert outcome.verification.ok and len(outcome.manifest.index.members) == len(DAYS) * len(NAMES)
    assert outcome.manifest.recipients == (recipient_fingerprint(second.recipient),)
    refused = subprocess.run(
        [age_cli(), "-d", "-i", str(tmp_path / "first.txt")],
        input=store.bucket.get_bytes(outcome.manifest.key),
        capture_output=True,
    )
    assert refused.returncode != 0  # the retired key does not open the new archive


def flip_byte(bucket, key, offset):
    data = bytearray(bucket.get_bytes(key))
    data[offset] ^= 0x01
    bucket.put_bytes(key, bytes(data))


def test_a_tampered_daily_is_reported_as_damage_and_the_archive_stays_the_good_copy(tmp_path, encrypted):
    config, store = encrypted
    archives = ArchiveStore(store)
    built = archives.build(WEEK, NAMES, first_day=config.start_date)
    assert built.verification.ok
    damaged = store.get_manifest(DAYS[1], "groveauth")
    flip_byte(store.bucket, damaged.key, damaged.bytes - 20)  # age's last chunk: same size, one bit

    outcome = verify_restore(store, damaged, scratch_dir=tmp_path)
    assert not outcome.passed and "damaged" in outcome.problems[0]
    recorded = RecordedBackups(frozenset((d, n) for d in DAYS for n in NAMES), frozenset({WEEK}))
    report = reconcile(archives, recorded, deep=True)
    assert [f.key for f in report.corrupt] == [damaged.key]
    catalog = Catalog(store, config.retention)
    with pytest.raises(BackupMismatch, match="damaged"):
        catalog.download(catalog.find(DAYS[1], "groveauth", source="daily"), tmp_path / "bad.sql")
    sql = catalog.download(catalog.find(DAYS[1], "groveauth", source="weekly"), tmp_path / "good.sql")
    assert day_of_restored(sql, tmp_path / "good.sqlite") == DAYS[1]

    again = archives.build(WEEK, NAMES, first_day=config.start_date)  # the archive already holds that day
    assert again.action == "unchanged" and again.manifest.key == built.manifest.key
    assert store.bucket.stat(built.manifest.key) is not None


def test_a_tampered_archive_fails_verification_and_retention_keeps_the_dailies(tmp_path, encrypted):
    config, store = encrypted
    archives = ArchiveStore(store)
    manifest = archives.build(WEEK, NAMES, first_day=config.start_date).manifest
    flip_byte(store.bucket, manifest.key, manifest.bytes // 2)
    checked = archives.verify(manifest)
    assert not checked.ok and "damaged" in checked.problems[0]
    plan = plan_retention(archives, "2026-02-01", config.retention)
    assert plan.dailies == [] and all("failed verification" in k.reason for k in plan.kept if "archive" in k.reason)
    rebuilt = archives.build(WEEK, NAMES, first_day=config.start_date)
    assert rebuilt.action == "replaced" and rebuilt.verification.ok  # from the dailies, which were never deleted


def test_reencrypt_rewrites_a_backup_to_the_new_recipients_and_keeps_its_verdict(
    tmp_path, encrypted, keys, monkeypatch
):
    config, store = encrypted
    first, second = keys
    old = store.get_manifest(DAYS[0], "groveauth")
    outcome = verify_restore(store, old, scratch_dir=tmp_path)
    from patina_assets.verify import verification_record

    store.record_verification(old, verification_record(outcome, None))
    monkeypatch.setenv(VARIABLE, str(tmp_path / "both.txt"))
    rotated = open_store(encrypted_config(tmp_path, [second.recipient]))
    assert rotated.needs_reencryption(old)
    new = rotated.reencrypt_daily(old, tmp_path)
    assert new.key != old.key and store.bucket.stat(old.key) is None
    assert new.recipients == [recipient_fingerprint(second.recipient)] and not rotated.needs_reencryption(new)
    assert (new.plaintext_sha256, new.sql_sha256, new.captured_at) == (
        old.plaintext_sha256,
        old.sql_sha256,
        old.captured_at,
    )
    assert rotated.verification_status(new, rotated.get_verification(new.day, new.database)) == "verified"
    plain = subprocess.run(
        [age_cli(), "-d", "-i", str(tmp_path / "second.txt")],
        input=rotated.bucket.get_bytes(new.key),
        capture_output=True,
        check=True,
    ).stdout
    assert hashlib.sha256(plain).hexdigest() == old.plaintext_sha256


def test_old_unencrypted_manifests_still_load(encrypted):
    _, store = encrypted
    manifest = store.list_daily()[0]
    data = json.loads(manifest.to_json())
    data.update(
        key=manifest.key.removesuffix(AGE_SUFFIX), bytes=manifest.plaintext_bytes, sha256=manifest.plaintext_sha256
    )
    for name in ("encrypted", "recipients", "plaintext_bytes", "plaintext_sha256"):
        del data[name]
    old = Manifest.from_json(json.dumps(data))
    assert not old.encrypted and old.dump_sha256 == manifest.plaintext_sha256


def test_an_encrypted_week_round_trips_through_s3(tmp_path, keys, monkeypatch):
    first, _ = keys
    monkeypatch.setenv(VARIABLE, str(tmp_path / "first.txt"))
    monkeypatch.setenv("PATINA_TEST_KEY", "testing")
    monkeypatch.setenv("PATINA_TEST_SECRET", "testing")
    with moto_server() as endpoint:
        bucket = {
            "s3": {
                "bucket": create_bucket(endpoint),
                "endpoint_url": endpoint,
                "region": "us-east-1",
                "access_key_id_env": "PATINA_TEST_KEY",
                "secret_access_key_env": "PATINA_TEST_SECRET",
            }
        }
        config = encrypted_config(tmp_path, [first.recipient], bucket)
        store = open_store(config)
        for day in DAYS[:2]:
            back_up_day(config, store, day)
        assert all(m.encrypted for m in store.list_daily())
        assert verify_restore(store, store.get_manifest(DAYS[1], "scout-db"), scratch_dir=tmp_path).passed
        outcome = ArchiveStore(store).build(WEEK, NAMES, first_day=config.start_date)
        assert outcome.verification.ok and outcome.manifest.encrypted
        catalog = Catalog(store, config.retention)
        sql = catalog.download(catalog.find(DAYS[0], "groveauth", source="weekly"), tmp_path / "auth.sql")
        assert day_of_restored(sql, tmp_path / "auth.sqlite") == DAYS[0]


def test_the_command_line_lists_without_the_identity_and_reencrypts_everything_after_a_key_leaks(
    tmp_path, encrypted, keys, monkeypatch, capsys
):
    from patina_assets.cli import main

    config, store = encrypted
    first, second = keys
    assert ArchiveStore(store).build(WEEK, NAMES, first_day=config.start_date).verification.ok
    path = str(config.source_path)
    monkeypatch.delenv(VARIABLE)
    assert main(["--config", path, "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["backups"]
    assert len(listed) == 2 * len(DAYS) * len(NAMES) and all(b["encrypted"] for b in listed)
    assert main(["--config", path, "download", DAYS[0], "groveauth", "-o", str(tmp_path / "a.sql")]) == 1
    assert f"${VARIABLE} is not set" in capsys.readouterr().err and not (tmp_path / "a.sql").exists()

    encrypted_config(tmp_path, [second.recipient])  # the first key leaked: patina.yaml lists only the second
    monkeypatch.setenv(VARIABLE, str(tmp_path / "both.txt"))
    assert main(["--config", path, "reencrypt"]) == 2  # --day or --all
    capsys.readouterr()
    before = sorted(info.key for info in store.bucket.list(""))
    monkeypatch.delenv(VARIABLE)  # a dry run reads manifests only
    assert main(["--config", path, "reencrypt", "--all", "--dry-run"]) == 0
    assert f"{len(DAYS) * len(NAMES) + 1} would be rewritten" in capsys.readouterr().out
    assert sorted(info.key for info in store.bucket.list("")) == before  # nothing written
    monkeypatch.setenv(VARIABLE, str(tmp_path / "both.txt"))
    assert main(["--config", path, "reencrypt", "--all"]) == 0
    out = capsys.readouterr().out
    assert f"{len(DAYS) * len(NAMES) + 1} rewritten" in out
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["--config", path, "status", "--json"]) == 0  # reencrypt kept each history index up to date
    assert json.loads(capsys.readouterr().out)["indexRebuilt"] == {}
    store = open_store(encrypted_config(tmp_path, [second.recipient]))
    wanted = [recipient_fingerprint(second.recipient)]
    assert all(m.recipients == wanted for m in store.list_daily())
    assert [list(a.recipients) for a in ArchiveStore(store).list()] == [wanted]
    assert main(["--config", path, "reencrypt", "--day", DAYS[0]]) == 0
    assert "0 rewritten" in capsys.readouterr().out
    monkeypatch.setenv(VARIABLE, str(tmp_path / "first.txt"))  # the leaked key opens nothing any more
    assert main(["--config", path, "download", DAYS[0], "groveauth", "-o", str(tmp_path / "a.sql")]) == 1
    assert "cannot be opened" in capsys.readouterr().err
    monkeypatch.setenv(VARIABLE, str(tmp_path / "second.txt"))
    assert main(["--config", path, "download", DAYS[0], "groveauth", "-o", str(tmp_path / "a.sql")]) == 0
    assert day_of_restored(tmp_path / "a.sql", tmp_path / "a.sqlite") == DAYS[0]
    assert main(["--config", path, "restore", "--all", DAYS[1], "--to", str(tmp_path / "all")]) == 0
    assert sorted(p.name for p in (tmp_path / "all").glob("*.sqlite")) == ["groveauth.sqlite", "scout-db.sqlite"]


def test_download_serves_the_age_file_unless_the_server_holds_the_identity_and_the_key_may_have_plaintext(
    tmp_path, encrypted, keys, monkeypatch, serve
):
    import types

    from patina_assets.api import AccessPolicy

    config, store = encrypted
    ArchiveStore(store).build(WEEK, NAMES, first_day=config.start_date)
    store.delete_daily(DAYS[0], "scout-db")  # that day is left only in the weekly archive
    full, ciphertext_only = "alice-3f9a1c7e5b2d4a6c8e0f", "ops-9e8d7c6b5a4f3e2d1c0b"
    policy = AccessPolicy.from_env({"PATINA_API_KEYS": f"alice:{full}, ops:{ciphertext_only} actions=download"})
    client = serve(types.SimpleNamespace(config=config), policy=policy, audit=Audit())
    daily = store.get_manifest(DAYS[1], "groveauth")

    plain = client.get(f"/download/{DAYS[1]}/groveauth", headers={"X-Patina-Key": full})
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/sql"
    assert hashlib.sha256(plain.content).hexdigest() == daily.sql_sha256

    sealed = client.get(f"/download/{DAYS[1]}/groveauth", headers={"X-Patina-Key": ciphertext_only})
    assert sealed.status_code == 200 and sealed.headers["x-patina-encrypted"] == "age"
    assert sealed.headers["content-disposition"] == f'attachment; filename="groveauth-{DAYS[1]}.sql.zst.age"'
    assert sealed.content == store.bucket.get_bytes(daily.key)
    assert hashlib.sha256(sealed.content).hexdigest() == sealed.headers["x-patina-stored-sha256"] == daily.sha256
    opened = subprocess.run(
        [age_cli(), "-d", "-i", str(tmp_path / "first.txt")], input=sealed.content, capture_output=True, check=True
    )
    assert hashlib.sha256(opened.stdout).hexdigest() == daily.plaintext_sha256

    archived = client.get(f"/download/{DAYS[0]}/scout-db", headers={"X-Patina-Key": ciphertext_only})
    assert archived.status_code == 200 and archived.headers["x-patina-member"] == f"daily/{DAYS[0]}/scout-db.sql"
    assert archived.content == store.bucket.get_bytes(ArchiveStore(store).get_manifest(WEEK).key)

    monkeypatch.delenv(VARIABLE)  # a server without the identity serves every key the age file
    client = serve(types.SimpleNamespace(config=config), policy=policy, audit=Audit())
    without = client.get(f"/download/{DAYS[1]}/groveauth", headers={"X-Patina-Key": full})
    assert without.status_code == 200 and without.headers["x-patina-encrypted"] == "age"
    assert without.content == sealed.content


def test_the_restore_guide_says_how_to_open_an_encrypted_backup_with_age_alone(tmp_path, encrypted):
    from patina_assets.guide import restore_guide

    config, store = encrypted
    catalog = Catalog(store, config.retention)
    guide = restore_guide(config, config.database("groveauth"), catalog.backups(database="groveauth"))
    [note] = [n for n in guide["notes"] if "encrypted with age" in n]
    assert "$PATINA_AGE_IDENTITY" in note and f"age -d -i key.txt -o groveauth-{DAYS[-1]}.sql.zst" in note
    # The command as written opens the stored file.
    stored = tmp_path / f"groveauth-{DAYS[-1]}.sql.zst.age"
    stored.write_bytes(store.bucket.get_bytes(store.get_manifest(DAYS[-1], "groveauth").key))
    command = note.split("open it with the age CLI: ")[1].replace("key.txt", str(tmp_path / "first.txt"))
    subprocess.run(["bash", "-e", "-c", command], cwd=tmp_path, check=True, env={"PATH": os.environ["PATH"]})
    assert day_of_restored(tmp_path / f"groveauth-{DAYS[-1]}.sql", tmp_path / "g.sqlite") == DAYS[-1]


def test_patina_restore_opens_a_downloaded_age_file_with_the_identity(tmp_path, encrypted, monkeypatch, capsys):
    from patina_assets.cli import main

    _, store = encrypted
    manifest = store.get_manifest(DAYS[2], "groveauth")
    stored = tmp_path / "groveauth.sql.zst.age"
    stored.write_bytes(store.bucket.get_bytes(manifest.key))
    assert main(["restore", str(stored), "--to", str(tmp_path / "restored.sqlite")]) == 0
    with sqlite3.connect(tmp_path / "restored.sqlite") as db:
        assert db.execute("SELECT max(day) FROM days").fetchone()[0] == DAYS[2]
    monkeypatch.setenv(VARIABLE, str(tmp_path / "second.txt"))
    assert main(["restore", str(stored), "--to", str(tmp_path / "again.sqlite")]) == 1
    assert "cannot be opened" in capsys.readouterr().err and not (tmp_path / "again.sqlite").exists()
