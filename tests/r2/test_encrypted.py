"""R2 bucket backups encrypted at rest (``encryption:`` configured), against moto's S3 server: no plaintext byte,
key or metadata reaches the backup bucket; incremental nights, checks, restore and garbage collection work with
the identity and refuse clearly without it; turning encryption on re-stores every object; the age CLI opens the
objects Patina stored."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from support.age import age_cli
from support.s3_server import create_bucket, direct_client, patina_client

from patina_assets.config import RetentionConfig
from patina_assets.encryption import AgeKeys, IdentityMissing, WrongIdentity, generate_identity
from patina_assets.r2 import (
    GarbageCollectionRefused,
    backup_bucket,
    check_complete,
    check_objects,
    collect_garbage,
    list_snapshots,
    object_key,
    open_entries,
    recipients_id,
    reencrypt_snapshot,
    restore_snapshot,
    snapshot_needs_reencryption,
)
from patina_assets.r2.report import R2_HEADERS, list_r2_document, render_r2_rows
from patina_assets.storage import S3Bucket, StorageIntegrityError

VARIABLE = "PATINA_AGE_IDENTITY"
NAME = "grove-media"


def keys_to(recipient, *holding) -> AgeKeys:
    """Keys that encrypt to ``recipient`` alone, with the identities of ``holding`` (none: no identity) in the
    environment variable."""
    return AgeKeys(
        [recipient.recipient], VARIABLE, env={VARIABLE: "".join(i.file_text for i in holding)} if holding else {}
    )


@pytest.fixture
def identities(tmp_path):
    first, second = generate_identity(), generate_identity()
    (tmp_path / "first.txt").write_text(first.file_text)
    return first, second


@pytest.fixture
def keys(identities) -> AgeKeys:
    first, _ = identities
    return keys_to(first, first)


def put(moto_endpoint, bucket: str, key: str, data: bytes) -> None:
    direct_client(moto_endpoint).put_object(
        Bucket=bucket, Key=key, Body=data, ContentType="image/png", Metadata={"owner": "secret-owner"}
    )


def fill(moto_endpoint, bucket: str, count: int = 6) -> dict[str, bytes]:
    # Distinctive, incompressible-looking plaintext, so a stray copy in the backup bucket would be found.
    objects = {f"private/avatar-{i:03d}.png": f"PLAINTEXT-{i:03d}-".encode() * (40 + i) for i in range(count)}
    for key, data in objects.items():
        put(moto_endpoint, bucket, key, data)
    return objects


def everything_stored(moto_endpoint, backup: S3Bucket) -> dict[str, bytes]:
    s3 = direct_client(moto_endpoint)
    return {info.key: s3.get_object(Bucket=backup.bucket, Key=info.key)["Body"].read() for info in backup.list("")}


def test_an_encrypted_snapshot_holds_no_plaintext_and_restores_exactly(
    moto_endpoint, source, source_name, backup, keys, identities, tmp_path
):
    objects = fill(moto_endpoint, source_name)
    manifest = backup_bucket(source, backup, name=NAME, day="2026-03-01", keys=keys)

    assert manifest.encrypted and manifest.recipients == list(keys.fingerprints)
    assert manifest.schema_version == 3 and manifest.entries_key.endswith(".entries.jsonl.gz.age")
    stored = everything_stored(moto_endpoint, backup)
    object_keys = [k for k in stored if k.startswith("r2/objects/")]
    assert len(object_keys) == len(objects) and all(k.endswith(".age") for k in object_keys)
    for key, data in stored.items():
        for needle in [b"PLAINTEXT-", b"private/avatar", b"secret-owner"]:
            assert needle not in data, f"{key} holds {needle!r}"
    # The objects are age files the age CLI opens without Patina; their names are the plaintext's sha256.
    first, _ = identities
    some_key, some_data = next(iter(objects.items()))
    stored_key = manifest.object_key(hashlib.sha256(some_data).hexdigest())
    (tmp_path / "object.age").write_bytes(stored[stored_key])
    opened = subprocess.run(
        [age_cli(), "-d", "-i", str(tmp_path / "first.txt"), str(tmp_path / "object.age")],
        capture_output=True,
        check=True,
    )
    assert opened.stdout == some_data

    entries = {entry.key: entry for entry in open_entries(backup, manifest, keys)}
    assert sorted(entries) == sorted(objects) and entries[some_key].metadata == {"owner": "secret-owner"}
    (row,) = render_r2_rows(list_r2_document(backup))  # `patina list` says so, without the identity
    assert row[R2_HEADERS.index("ENCRYPTED")] == "age"
    assert check_objects(backup, manifest, sample=None, keys=keys).passed
    assert check_complete(source, backup, manifest, keys=keys).passed

    restore_snapshot(backup, "2026-03-01", NAME, tmp_path / "restored", keys=keys)
    for key, data in objects.items():
        assert (tmp_path / "restored" / key).read_bytes() == data
    target = create_bucket(moto_endpoint)
    restore_snapshot(backup, "2026-03-01", NAME, f"s3://{target}", s3_client=patina_client(moto_endpoint), keys=keys)
    got = direct_client(moto_endpoint).get_object(Bucket=target, Key=some_key)
    assert got["Body"].read() == some_data and got["Metadata"] == {"owner": "secret-owner"}


def test_an_encrypted_night_copies_only_new_and_changed_objects(
    moto_endpoint, source, source_name, source_proxy, backup, keys
):
    objects = fill(moto_endpoint, source_name)
    backup_bucket(source, backup, name=NAME, day="2026-03-01", keys=keys)
    put(moto_endpoint, source_name, "private/avatar-002.png", b"changed")
    source_proxy.clear()

    manifest = backup_bucket(source, backup, name=NAME, day="2026-03-02", keys=keys)

    assert [r.key for r in source_proxy.seen("GetObject")] == ["private/avatar-002.png"]
    assert (manifest.objects, manifest.copied_objects) == (len(objects), 1)
    entries = {entry.key: entry for entry in open_entries(backup, manifest, keys)}
    assert entries["private/avatar-002.png"].sha256 == hashlib.sha256(b"changed").hexdigest()
    assert check_objects(backup, manifest, sample=None, keys=keys).passed


def test_without_the_identity_nothing_is_read_and_nothing_is_deleted(
    moto_endpoint, source, source_name, backup, keys, identities, tmp_path
):
    first, second = identities
    fill(moto_endpoint, source_name)
    manifest = backup_bucket(source, backup, name=NAME, day="2026-03-01", keys=keys)
    no_identity = keys_to(first)
    wrong_identity = keys_to(first, second)
    before = everything_stored(moto_endpoint, backup)

    with pytest.raises(IdentityMissing, match=VARIABLE):  # the previous night's entries need it
        backup_bucket(source, backup, name=NAME, day="2026-03-02", keys=no_identity)
    with pytest.raises(IdentityMissing, match=VARIABLE):
        restore_snapshot(backup, "2026-03-01", NAME, tmp_path / "restored", keys=no_identity)
    with pytest.raises(WrongIdentity, match="encrypted to"):
        check_objects(backup, manifest, keys=wrong_identity)
    with pytest.raises(GarbageCollectionRefused, match="nothing is deleted"):
        collect_garbage(backup, RetentionConfig(), grace=timedelta(0), keys=no_identity)
    assert not (tmp_path / "restored").exists()
    assert everything_stored(moto_endpoint, backup).keys() == before.keys()


def test_turning_encryption_on_stores_every_object_again_and_the_plaintext_ages_out(
    moto_endpoint, source, source_name, source_proxy, backup, keys
):
    objects = fill(moto_endpoint, source_name)
    plain = backup_bucket(source, backup, name=NAME, day="2026-03-02")
    assert not plain.encrypted
    source_proxy.clear()

    encrypted = backup_bucket(source, backup, name=NAME, day="2026-03-03", keys=keys)

    # Unchanged objects are read again: the plaintext copies must not stand in for encrypted ones.
    assert sorted(r.key for r in source_proxy.seen("GetObject")) == sorted(objects)
    assert encrypted.encrypted and encrypted.copied_objects == len(objects)
    # Both kept: each snapshot's own form of every object stays.
    kept_both = collect_garbage(backup, RetentionConfig(), grace=timedelta(0), keys=keys)
    assert kept_both.deleted_objects == 0 and kept_both.referenced_objects == 2 * len(objects)
    # Once retention drops the plaintext snapshot (same week: only the newest is kept), its objects go.
    later = datetime.now(UTC) + timedelta(days=2)
    result = collect_garbage(
        backup, RetentionConfig(daily_days=1, weekly_weeks=1), now=later, grace=timedelta(0), keys=keys
    )
    assert result.deleted_objects == len(objects)
    assert [m.day for m in list_snapshots(backup, NAME)[0]] == ["2026-03-03"]
    stored = everything_stored(moto_endpoint, backup)
    assert all(b"PLAINTEXT-" not in data for data in stored.values())
    assert check_objects(backup, encrypted, sample=None, keys=keys).passed


def test_a_tampered_encrypted_object_is_damage(moto_endpoint, source, source_name, backup, keys, tmp_path):
    objects = fill(moto_endpoint, source_name)
    manifest = backup_bucket(source, backup, name=NAME, day="2026-03-01", keys=keys)
    victim_key, victim = next(iter(objects.items()))
    stored_key = manifest.object_key(hashlib.sha256(victim).hexdigest())
    s3 = direct_client(moto_endpoint)
    data = bytearray(s3.get_object(Bucket=backup.bucket, Key=stored_key)["Body"].read())
    data[-20] ^= 0x01  # inside the last chunk's ciphertext
    s3.put_object(Bucket=backup.bucket, Key=stored_key, Body=bytes(data))

    result = check_objects(backup, manifest, sample=None, keys=keys)
    assert result.damaged == [victim_key] and not result.missing
    with pytest.raises(StorageIntegrityError, match="damaged"):
        restore_snapshot(backup, "2026-03-01", NAME, tmp_path / "restored", keys=keys, prefix=victim_key)
    assert not (tmp_path / "restored" / victim_key).exists()


def test_a_large_object_is_encrypted_from_its_scratch_file_and_restores_exactly(
    moto_endpoint, source, source_name, backup, keys, tmp_path
):
    data = bytes(range(256)) * (6 * 1024 * 1024 // 256)  # over SPOOL_BYTES and over the 5 MiB part size
    put(moto_endpoint, source_name, "private/video.mp4", data)
    manifest = backup_bucket(source, backup, name=NAME, day="2026-03-01", keys=keys)
    stored = everything_stored(moto_endpoint, backup)[manifest.object_key(hashlib.sha256(data).hexdigest())]
    assert data[:4096] not in stored and len(stored) > len(data)
    assert check_objects(backup, manifest, sample=None, keys=keys).passed
    restore_snapshot(backup, "2026-03-01", NAME, tmp_path / "restored", keys=keys)
    assert (tmp_path / "restored" / "private" / "video.mp4").read_bytes() == data


def test_after_a_recipient_change_the_next_night_opens_with_the_new_identity_alone(
    moto_endpoint, source, source_name, backup, identities, tmp_path
):
    # The day a key leaks: the recipient list is changed, and the old identity is to be thrown away. The next
    # night's snapshot must open with the new identity alone, unchanged objects included.
    first, second = identities
    objects = fill(moto_endpoint, source_name)
    old = keys_to(first, first)
    backup_bucket(source, backup, name=NAME, day="2026-03-01", keys=old)
    both = keys_to(second, first, second)

    manifest = backup_bucket(source, backup, name=NAME, day="2026-03-02", keys=both)

    new_only = keys_to(second, second)
    assert manifest.recipients == list(new_only.fingerprints)
    assert check_objects(backup, manifest, sample=None, keys=new_only).passed
    restore_snapshot(backup, "2026-03-02", NAME, tmp_path / "restored", keys=new_only)
    for key, data in objects.items():
        assert (tmp_path / "restored" / key).read_bytes() == data
    # and none of its objects opens with the old identity
    old_only = keys_to(first, first)
    with pytest.raises(WrongIdentity):
        check_objects(backup, manifest, sample=None, keys=old_only)


def opens_with(backup: S3Bucket, manifest, keys: AgeKeys) -> bool:
    """Every object ``manifest`` names opens with ``keys``' identity alone, each with its recorded bytes."""
    try:
        return check_objects(backup, manifest, sample=None, keys=keys).passed
    except WrongIdentity:
        return False


def test_reencrypt_rewrites_a_kept_snapshot_to_the_new_recipients_and_the_old_objects_go(
    moto_endpoint, source, source_name, source_proxy, backup, identities, tmp_path
):
    first, second = identities
    objects = fill(moto_endpoint, source_name)
    old = keys_to(first, first)
    kept = backup_bucket(source, backup, name=NAME, day="2026-03-01", keys=old)
    rotated = keys_to(second, first, second)
    new_only = keys_to(second, second)
    old_only = keys_to(first, first)
    newest = backup_bucket(source, backup, name=NAME, day="2026-03-02", keys=rotated)
    assert snapshot_needs_reencryption(kept, rotated) and not snapshot_needs_reencryption(newest, rotated)
    assert not opens_with(backup, kept, new_only)
    source_proxy.clear()

    resealed = reencrypt_snapshot(backup, kept, rotated)

    # The newest night stored every object for the new recipients already: nothing is read from the source, and
    # nothing is stored twice.
    assert source_proxy.seen("GetObject") == [] and (resealed.resealed_objects, resealed.stored_objects) == (0, 6)
    (day1, day2), _ = list_snapshots(backup, NAME)
    assert day1.recipients == list(new_only.fingerprints) and day1.entries_key != kept.entries_key
    assert (day1.objects, day1.bytes, day1.listing_started_at) == (kept.objects, kept.bytes, kept.listing_started_at)
    assert opens_with(backup, day1, new_only) and not opens_with(backup, day1, old_only)
    restore_snapshot(backup, "2026-03-01", NAME, tmp_path / "restored", keys=new_only)
    assert all((tmp_path / "restored" / key).read_bytes() == data for key, data in objects.items())
    # The old entries file went with the publish; the old objects go with the next garbage collection.
    assert backup.stat(kept.entries_key) is None
    result = collect_garbage(backup, RetentionConfig(), grace=timedelta(0), keys=new_only)
    assert result.deleted_objects == len(objects) and result.referenced_objects == len(objects)
    for info in backup.list("r2/objects/"):
        assert info.key.endswith(f".{recipients_id(new_only.fingerprints)}.age")


def test_reencrypt_stores_objects_of_a_snapshot_no_night_has_stored_for_the_new_recipients(
    moto_endpoint, source, source_name, source_proxy, backup, identities, tmp_path
):
    # Objects deleted from the source since: only the old snapshot holds them, so they are read back from the
    # backup bucket (never the source), checked, and stored again for the new recipients.
    first, second = identities
    objects = fill(moto_endpoint, source_name)
    old = keys_to(first, first)
    kept = backup_bucket(source, backup, name=NAME, day="2026-03-01", keys=old)
    rotated = keys_to(second, first, second)
    source_proxy.clear()

    resealed = reencrypt_snapshot(backup, kept, rotated)

    assert source_proxy.seen("GetObject") == [] and resealed.resealed_objects == len(objects)
    new_only = keys_to(second, second)
    restore_snapshot(backup, "2026-03-01", NAME, tmp_path / "restored", keys=new_only)
    assert all((tmp_path / "restored" / key).read_bytes() == data for key, data in objects.items())


def test_reencrypt_leaves_a_snapshot_with_a_damaged_object_as_it_was(
    moto_endpoint, source, source_name, backup, identities
):
    first, second = identities
    objects = fill(moto_endpoint, source_name)
    old = keys_to(first, first)
    kept = backup_bucket(source, backup, name=NAME, day="2026-03-01", keys=old)
    victim = kept.object_key(hashlib.sha256(next(iter(objects.values()))).hexdigest())
    s3 = direct_client(moto_endpoint)
    data = bytearray(s3.get_object(Bucket=backup.bucket, Key=victim)["Body"].read())
    data[-20] ^= 0x01
    s3.put_object(Bucket=backup.bucket, Key=victim, Body=bytes(data))
    rotated = keys_to(second, first, second)

    with pytest.raises(StorageIntegrityError, match="damaged"):
        reencrypt_snapshot(backup, kept, rotated)

    (still,), _ = list_snapshots(backup, NAME)
    assert still == kept and backup.stat(kept.entries_key) is not None
    assert [info.key for info in backup.list("r2/in-progress/")] == []


def test_a_schema_2_snapshot_is_still_restored_then_the_next_night_and_reencrypt_rewrite_it(
    moto_endpoint, source, source_name, source_proxy, backup, keys, tmp_path
):
    # Schema version 2 (the first encrypted snapshots) named objects <sha256>.age, whatever their recipients.
    objects = fill(moto_endpoint, source_name)
    current = backup_bucket(source, backup, name=NAME, day="2026-03-01", keys=keys)
    s3 = direct_client(moto_endpoint)
    for data in objects.values():
        sha = hashlib.sha256(data).hexdigest()
        s3.copy_object(
            Bucket=backup.bucket,
            Key=object_key(sha, legacy_age=True),
            CopySource=f"{backup.bucket}/{current.object_key(sha)}",
        )
        s3.delete_object(Bucket=backup.bucket, Key=current.object_key(sha))
    legacy = dataclasses.replace(current, schema_version=2)
    s3.put_object(Bucket=backup.bucket, Key=legacy.key, Body=legacy.to_json())
    (read,), _ = list_snapshots(backup, NAME)
    assert read.legacy_objects and snapshot_needs_reencryption(read, keys)
    restore_snapshot(backup, "2026-03-01", NAME, tmp_path / "restored", keys=keys)
    assert all((tmp_path / "restored" / key).read_bytes() == data for key, data in objects.items())
    source_proxy.clear()

    night = backup_bucket(source, backup, name=NAME, day="2026-03-02", keys=keys)
    # its keys do not say whom the objects are encrypted to: the night stores every one again, under keys that do
    assert sorted(r.key for r in source_proxy.seen("GetObject")) == sorted(objects) and night.schema_version == 3
    resealed = reencrypt_snapshot(backup, read, keys)
    assert resealed.manifest.schema_version == 3 and resealed.stored_objects == len(objects)
    assert check_objects(backup, resealed.manifest, sample=None, keys=keys).passed
    assert collect_garbage(backup, RetentionConfig(), grace=timedelta(0), keys=keys).deleted_objects == len(objects)


def test_the_reencrypt_command_rewrites_r2_snapshots_too(
    moto_endpoint, source, source_name, identities, tmp_path, monkeypatch, capsys
):
    from support.configs import write_config

    from patina_assets.backup import open_store
    from patina_assets.cli import main

    first, second = identities
    objects = fill(moto_endpoint, source_name)
    monkeypatch.setenv("TEST_R2_KEY_ID", "testing")
    monkeypatch.setenv("TEST_R2_SECRET", "testing")

    def configured(recipient: str):
        r2 = {
            "name": NAME,
            "bucket": source_name,
            "endpoint_url": moto_endpoint,
            "region": "us-east-1",
            "access_key_id_env": "TEST_R2_KEY_ID",
            "secret_access_key_env": "TEST_R2_SECRET",
        }
        databases = [{"name": "groveauth", "source": "x.sqlite"}]
        return write_config(tmp_path, databases, r2_buckets=[r2], encryption={"recipients": [recipient]})

    monkeypatch.setenv(VARIABLE, first.file_text)
    store = open_store(configured(first.recipient))
    backup_bucket(source, store.bucket, name=NAME, day="2026-03-01", keys=store.keys)
    path = str(configured(second.recipient).source_path)  # the first key leaked

    monkeypatch.delenv(VARIABLE)  # a dry run reads manifests only
    assert main(["--config", path, "reencrypt", "--all", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"R2 snapshot {NAME} on 2026-03-01" in out and "1 would be rewritten" in out
    monkeypatch.setenv(VARIABLE, first.file_text + second.file_text)
    assert main(["--config", path, "reencrypt", "--day", "2026-03-01"]) == 0
    assert "1 rewritten" in capsys.readouterr().out

    new_only = keys_to(second, second)
    (manifest,), _ = list_snapshots(store.bucket, NAME)
    assert opens_with(store.bucket, manifest, new_only)
    restore_snapshot(store.bucket, "2026-03-01", NAME, tmp_path / "restored", keys=new_only)
    assert all((tmp_path / "restored" / key).read_bytes() == data for key, data in objects.items())
    assert main(["--config", path, "reencrypt", "--all"]) == 0
    assert "0 rewritten" in capsys.readouterr().out
