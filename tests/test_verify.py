"""The verification logic without Dagster: real dumps of real SQLite files, stored in a local bucket, read
back, restored, damaged, compared."""

import dataclasses
import json
import sqlite3

import pytest
from support.awkward import build_all
from support.configs import small_database, write_config

from patina_assets.backup import Cloudflare, back_up, manifest_for, open_store
from patina_assets.engine import SqliteSource, dump_database, table_digests_of
from patina_assets.storage import daily_manifest_key
from patina_assets.verify import (
    SIZE_NOT_ENOUGH_HISTORY,
    SIZE_OK,
    SIZE_TOO_LARGE,
    SIZE_TOO_SMALL,
    compare_schemas,
    detect_schema_drift,
    judge_size,
    latest_backup,
    previous_backups,
    schema_objects_of_dump,
    verify_restore,
)

NO_CLOUDFLARE = Cloudflare(api_url="http://127.0.0.1:9", token=None)
# What Patina recorded for `setup`'s database before digests had versions (commit 3c7a0e2, run on this very
# database): the SHA-256 of each table's INSERT statements, and of their lines (digest version 1).
OLDER_PATINA_DIGESTS = {
    "users": "5e3dc45b70ea95416c534c794f40d12a8f3c32a550aa54a3412f08c2f73f04c1",
    "posts": "7b7f1749c317b89aa3fa2a242bb0cec6ee97dbb5b75f1de5302bd938884973e5",
}
OLDER_PATINA_CONTENT_DIGEST = "95ca871471aab1fbfeb6308937dab30488a9d0b99946ee3ff23985b04e65918e"


@pytest.fixture
def setup(tmp_path):
    """One SQLite database `groveauth` configured with a local bucket; returns (config, source, store)."""
    source = small_database(tmp_path / "auth.sqlite", 60)

    def configure(**dump):
        config = write_config(tmp_path, [{"name": "groveauth", "source": str(source)}], dump=dump)
        return config, source, open_store(config)

    return configure


def night(config, day, store):
    manifest, _ = back_up(config.databases[0], day, store, NO_CLOUDFLARE, config.dump)
    return manifest


def stored_path(config, manifest):
    return config.bucket.local.path / manifest.key


def as_an_older_patina_wrote_it(config, store, manifest):
    """The stored manifest of `manifest` rewritten as Patina wrote it before digest versions (SHA-256 digests,
    no `digest_version` field), and read back from the bucket."""
    path = config.bucket.local.path / daily_manifest_key(manifest.day, manifest.database)
    data = json.loads(path.read_text())
    del data["digest_version"]
    data.update(table_digests=OLDER_PATINA_DIGESTS, content_digest=OLDER_PATINA_CONTENT_DIGEST)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return store.get_manifest(manifest.day, manifest.database)


def execute(source, *statements):
    db = sqlite3.connect(source)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


# -- restore verification ---------------------------------------------------------------------------


def test_a_good_backup_restores_with_the_rows_and_digests_the_source_had(setup, tmp_path):
    config, source, store = setup()
    manifest = night(config, "2026-03-01", store)
    outcome = verify_restore(store, manifest, scratch_dir=tmp_path)
    assert outcome.passed and outcome.problems == [], outcome.problems
    assert outcome.restored and outcome.stored_sha256_matches and outcome.stored_bytes == manifest.bytes
    assert {t.name: (t.recorded_rows, t.restored_rows, t.digest_matches) for t in outcome.tables} == {
        "users": (60, 60, True),
        "posts": (120, 120, True),
    }
    assert outcome.restored_content_digest == manifest.content_digest and outcome.schema_fingerprint_matches
    assert outcome.rows == 180 and "restores cleanly" in outcome.summary()
    assert list(tmp_path.glob("patina-verify-*")) == []  # the scratch copies are gone


def test_a_backup_an_older_patina_made_is_checked_with_its_sha256_digests(setup, tmp_path):
    config, source, store = setup()
    manifest = night(config, "2026-03-01", store)
    assert manifest.digest_version == 2 and store.get_manifest("2026-03-01", "groveauth").digest_version == 2
    with SqliteSource(source) as db:  # a new dump's digests are BLAKE3's; version 1 still gives the old ones
        assert table_digests_of(db, digest_version=1) == OLDER_PATINA_DIGESTS != manifest.table_digests
    older = as_an_older_patina_wrote_it(config, store, manifest)
    assert older.digest_version == 1 and older.table_digests == OLDER_PATINA_DIGESTS

    outcome = verify_restore(store, older, scratch_dir=tmp_path)
    assert outcome.passed, outcome.problems
    assert {t.name: t.digest_matches for t in outcome.tables} == {"users": True, "posts": True}
    assert outcome.restored_content_digest == OLDER_PATINA_CONTENT_DIGEST and outcome.digest_version == 1
    with pytest.raises(ValueError, match="unknown digest version 3"):
        verify_restore(store, dataclasses.replace(older, digest_version=3), scratch_dir=tmp_path)


@pytest.mark.parametrize("version", [1, 2])
def test_a_changed_row_fails_under_either_digest_version(setup, tmp_path, version):
    config, source, store = setup()
    manifest = night(config, "2026-03-01", store)
    if version == 1:
        manifest = as_an_older_patina_wrote_it(config, store, manifest)
    assert manifest.digest_version == version
    execute(source, "UPDATE users SET email = 'changed@example.com' WHERE id = 3")
    other = tmp_path / "other.sql.zst"
    with SqliteSource(source) as db:
        dump_database(db, other, database="groveauth")  # a dump of today's (version 2), stored under the old record
    recorded = dataclasses.replace(manifest, key="", bytes=0, sha256="", created_at="")
    outcome = verify_restore(
        store, store.publish_daily("2026-03-01", "groveauth", other, recorded), scratch_dir=tmp_path
    )
    assert outcome.stored_sha256_matches and outcome.restored and outcome.digest_version == version
    assert {t.name: t.digest_matches for t in outcome.tables} == {"users": False, "posts": True}
    assert outcome.problems == [
        "table 'users' holds different values than the source had when it was dumped (digest mismatch)"
    ]


@pytest.mark.parametrize("fmt", ["sql.zst", "sql"])
def test_a_dump_damaged_in_the_bucket_fails(setup, tmp_path, fmt):
    config, source, store = setup(format=fmt)
    manifest = night(config, "2026-03-01", store)
    stored = stored_path(config, manifest)
    data = bytearray(stored.read_bytes())
    if fmt == "sql":  # an edit a person could make: valid SQL, one value changed
        at = data.index(b"'post 7\\nline two'")
        data[at : at + 7] = b"'post 8"
    else:  # a flipped byte in the compressed stream
        data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))

    outcome = verify_restore(store, manifest, scratch_dir=tmp_path)
    assert not outcome.passed and not outcome.restored and not outcome.stored_sha256_matches
    assert "altered or damaged after upload" in outcome.problems[0]
    restore_problem = outcome.problems[1]
    if fmt == "sql":
        assert "does not match the sha256 in its footer" in restore_problem
    else:
        assert "damaged" in restore_problem or "truncated" in restore_problem
    assert (
        manifest.key in restore_problem and str(tmp_path) not in restore_problem
    )  # names the object, not a scratch file
    assert "NOT usable" in outcome.summary()
    assert all(t.restored_rows is None for t in outcome.tables) and len(outcome.tables) == 2


def test_a_missing_dump_object_fails(setup, tmp_path):
    config, source, store = setup()
    manifest = night(config, "2026-03-01", store)
    stored_path(config, manifest).unlink()
    outcome = verify_restore(store, manifest, scratch_dir=tmp_path)
    assert not outcome.passed and outcome.stored_bytes is None
    assert outcome.problems == [f"the stored dump {manifest.key} is missing from the bucket"]


def test_a_dump_that_restores_but_holds_other_rows_than_recorded_fails(setup, tmp_path):
    """A whole, self-consistent dump (its footer is right) of data that differs from what the manifest
    recorded from the source: only the per-table digests can tell."""
    config, source, store = setup()
    manifest = night(config, "2026-03-01", store)
    execute(source, "UPDATE users SET email = 'changed@example.com' WHERE id = 3")
    other = tmp_path / "other.sql.zst"
    with SqliteSource(source) as db:
        dump_database(db, other, database="groveauth")
    recorded = dataclasses.replace(manifest, key="", bytes=0, sha256="", created_at="")  # the original source's record
    republished = store.publish_daily("2026-03-01", "groveauth", other, recorded)

    outcome = verify_restore(store, republished, scratch_dir=tmp_path)
    assert outcome.stored_sha256_matches and outcome.restored  # the object is what was uploaded, and restores
    assert not outcome.passed
    assert {t.name: t.digest_matches for t in outcome.tables} == {"users": False, "posts": True}
    assert outcome.problems == [
        "table 'users' holds different values than the source had when it was dumped (digest mismatch)"
    ]


def test_a_dump_missing_rows_the_manifest_recorded_fails(setup, tmp_path):
    config, source, store = setup()
    manifest = night(config, "2026-03-01", store)
    execute(source, "DELETE FROM posts WHERE id > 100")
    other = tmp_path / "other.sql.zst"
    with SqliteSource(source) as db:
        dump_database(db, other, database="groveauth")
    recorded = dataclasses.replace(manifest, key="", bytes=0, sha256="", created_at="")
    outcome = verify_restore(
        store, store.publish_daily("2026-03-01", "groveauth", other, recorded), scratch_dir=tmp_path
    )
    assert outcome.problems == ["table 'posts' has 100 rows after restore, but the manifest recorded 120"]


def test_every_awkward_database_verifies_and_its_schema_reads_back_exactly(setup, tmp_path):
    """No false alarms: each hazard of the awkward corpus (FTS5, generated columns, WITHOUT ROWID, odd names,
    invalid UTF-8, big rows, ...) restores to the recorded digests, and the schema read from the dump alone has
    the fingerprint the dump recorded."""
    _, _, store = setup()
    cases = build_all(tmp_path / "awkward")
    for case, path in cases.items():
        name = case.replace("_", "-")
        dump = tmp_path / f"{name}.sql.zst"
        with SqliteSource(path) as db:
            result = dump_database(db, dump, database=name)
        manifest = store.publish_daily("2026-03-01", name, dump, manifest_for(result, "2026-03-01", None))
        outcome = verify_restore(store, manifest, scratch_dir=tmp_path)
        assert outcome.passed, (case, outcome.problems)
        assert len(outcome.tables) == result.tables
        objects, fingerprint = schema_objects_of_dump(dump, tmp_path)
        assert fingerprint == result.schema_fingerprint, case
    assert len(cases) >= 20


# -- size -------------------------------------------------------------------------------------------


@pytest.fixture
def sized(setup):
    """A real manifest, copied to other days and sizes."""
    config, source, store = setup()
    base = night(config, "2026-03-01", store)

    def at(day, sql_bytes):
        return dataclasses.replace(base, day=day, sql_bytes=sql_bytes)

    return at


def judge(current, history):
    return judge_size(current, history, decrease_ratio=0.5, increase_ratio=2.0)


def test_no_size_verdict_until_three_earlier_backups(sized):
    history = [sized("2026-03-01", 1000), sized("2026-03-02", 1000)]
    verdict = judge(sized("2026-03-03", 10), history)
    assert verdict.verdict == SIZE_NOT_ENOUGH_HISTORY and not verdict.anomalous and verdict.average_sql_bytes is None
    assert "no verdict until 3 earlier backups exist (2 so far)" in verdict.summary()
    verdict = judge(sized("2026-03-04", 10), history + [sized("2026-03-03", 1000)])
    assert verdict.verdict == SIZE_TOO_SMALL and verdict.ratio == pytest.approx(0.01)


def test_size_against_the_average_of_the_last_seven_backups_before_the_day(sized):
    # Ten earlier days: the three oldest (huge) fall out of the window; a later day does not count.
    history = [sized(f"2026-03-0{d}", 100_000) for d in range(1, 4)]
    history += [sized(f"2026-03-{d:02d}", 1000 + 100 * (d - 4)) for d in range(4, 11)]  # 1000 .. 1600
    history += [sized("2026-03-12", 1)]
    current = sized("2026-03-11", 1300)
    verdict = judge(current, history)
    assert [day for day, _ in verdict.history] == [f"2026-03-{d:02d}" for d in range(4, 11)]
    assert verdict.average_sql_bytes == 1300 and verdict.ratio == 1.0 and verdict.verdict == SIZE_OK

    assert judge(sized("2026-03-11", 650), history).verdict == SIZE_OK  # exactly 50%: not "smaller than"
    too_small = judge(sized("2026-03-11", 649), history)
    assert too_small.verdict == SIZE_TOO_SMALL and "possible data loss" in too_small.summary()
    assert judge(sized("2026-03-11", 2600), history).verdict == SIZE_OK  # exactly 200%
    too_large = judge(sized("2026-03-11", 3900), history)
    assert too_large.verdict == SIZE_TOO_LARGE and too_large.ratio == 3.0
    assert "possible corruption or runaway growth" in too_large.summary()


def test_size_thresholds_are_configurable_and_checked(sized):
    history = [sized(f"2026-03-0{d}", 1000) for d in range(1, 5)]
    assert (
        judge_size(sized("2026-03-05", 800), history, decrease_ratio=0.9, increase_ratio=1.1).verdict == SIZE_TOO_SMALL
    )
    assert (
        judge_size(sized("2026-03-05", 1200), history, decrease_ratio=0.9, increase_ratio=1.1).verdict == SIZE_TOO_LARGE
    )
    with pytest.raises(ValueError, match="size ratios"):
        judge_size(sized("2026-03-05", 1200), history, decrease_ratio=1.5, increase_ratio=2.0)


def test_previous_backups_are_the_ones_captured_before_in_capture_order(setup):
    """A backfill of an old day run after later nights holds newer data: "previous" is by capture time."""
    config, source, store = setup()
    manifests = {day: night(config, day, store) for day in ("2026-03-03", "2026-03-01", "2026-03-02", "2026-03-05")}
    assert [m.day for m in previous_backups(store, manifests["2026-03-05"])] == [
        "2026-03-03",
        "2026-03-01",
        "2026-03-02",
    ]
    assert [m.day for m in previous_backups(store, manifests["2026-03-05"], limit=2)] == ["2026-03-01", "2026-03-02"]
    assert [m.day for m in previous_backups(store, manifests["2026-03-01"])] == ["2026-03-03"]
    assert previous_backups(store, manifests["2026-03-03"]) == []
    assert latest_backup(store, "groveauth").day == "2026-03-05"
    other = dataclasses.replace(manifests["2026-03-05"], database="scout-db")
    assert previous_backups(store, other) == []


# -- schema drift -----------------------------------------------------------------------------------


def test_schema_drift_lists_objects_added_removed_and_changed(setup, tmp_path):
    config, source, store = setup()
    execute(source, "CREATE VIEW recent_posts AS SELECT * FROM posts WHERE id > 100")
    before = night(config, "2026-03-01", store)
    execute(
        source,
        "CREATE TABLE comments(id INTEGER PRIMARY KEY, post_id INTEGER REFERENCES posts(id), body TEXT)",
        "CREATE INDEX comments_post ON comments(post_id)",
        "DROP VIEW recent_posts",
        "DROP INDEX posts_user",
        "CREATE INDEX posts_user ON posts(user_id, id)",
    )
    after = night(config, "2026-03-02", store)

    drift = detect_schema_drift(store, after, before, scratch_dir=tmp_path)
    assert drift.changed and drift.objects_listed and drift.note == ""
    assert [c.label for c in drift.diff.added] == ["index comments_post on comments", "table comments"]
    assert [c.label for c in drift.diff.removed] == ["view recent_posts"]
    assert [c.label for c in drift.diff.changed] == ["index posts_user on posts"]
    (changed,) = drift.diff.changed
    assert "posts(user_id)" in changed.before and "posts(user_id, id)" in changed.after
    assert drift.summary() == (
        "groveauth 2026-03-02: schema changed since 2026-03-01: added index comments_post on comments, table comments; "
        "removed view recent_posts; changed index posts_user on posts"
    )
    assert list(tmp_path.glob("patina-verify-*")) == []


def test_an_unchanged_fingerprint_needs_no_download(setup, tmp_path):
    config, source, store = setup()
    before = night(config, "2026-03-01", store)
    execute(source, "INSERT INTO users(id, email) VALUES (1000, 'new@example.com')")  # data, not schema
    after = night(config, "2026-03-02", store)
    stored_path(config, before).unlink()  # were it read, this would show
    stored_path(config, after).unlink()
    drift = detect_schema_drift(store, after, before, scratch_dir=tmp_path)
    assert not drift.changed and drift.diff.empty and not drift.objects_listed
    assert drift.summary() == "groveauth 2026-03-02: schema unchanged since 2026-03-01"
    first = detect_schema_drift(store, before, None)
    assert not first.changed and "the first backup" in first.summary()


def test_no_false_alarm_between_a_day_of_sha256_digests_and_a_day_of_blake3_ones(setup, tmp_path):
    config, source, store = setup()
    before = as_an_older_patina_wrote_it(config, store, night(config, "2026-03-01", store))
    after = night(config, "2026-03-02", store)
    assert (before.digest_version, after.digest_version) == (1, 2)
    assert before.content_digest != after.content_digest  # same rows, other hashes: never compared
    drift = detect_schema_drift(store, after, before, scratch_dir=tmp_path)
    assert not drift.changed and drift.summary() == "groveauth 2026-03-02: schema unchanged since 2026-03-01"
    assert [m.day for m in previous_backups(store, after)] == ["2026-03-01"]
    assert verify_restore(store, before, scratch_dir=tmp_path).passed  # each day is checked with its own
    assert verify_restore(store, after, scratch_dir=tmp_path).passed


def test_a_changed_schema_whose_dumps_cannot_be_read_still_warns(setup, tmp_path):
    config, source, store = setup()
    before = night(config, "2026-03-01", store)
    execute(source, "CREATE TABLE comments(id INTEGER PRIMARY KEY)")
    after = night(config, "2026-03-02", store)
    stored_path(config, before).unlink()
    drift = detect_schema_drift(store, after, before, scratch_dir=tmp_path)
    assert drift.changed and not drift.objects_listed
    assert "could not be read back" in drift.note and "objects not listed" in drift.summary()


def test_compare_schemas_keys_objects_by_type_and_name(setup, tmp_path):
    config, source, store = setup()
    manifest = night(config, "2026-03-01", store)
    dump = tmp_path / "d.sql.zst"
    dump.write_bytes(store.bucket.get_bytes(manifest.key))
    objects, fingerprint = schema_objects_of_dump(dump, tmp_path)
    assert fingerprint == manifest.schema_fingerprint
    assert sorted((o.type, o.name) for o in objects) == [
        ("index", "posts_user"),
        ("table", "posts"),
        ("table", "users"),
    ]
    assert compare_schemas(objects, objects).empty
    renamed = [dataclasses.replace(o, name="people") if o.name == "users" else o for o in objects]
    diff = compare_schemas(objects, renamed)
    assert [c.label for c in diff.added] == ["table people"] and [c.label for c in diff.removed] == ["table users"]
