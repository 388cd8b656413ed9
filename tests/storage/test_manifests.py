"""The daily manifest: its JSON, older manifests still loading, and unreadable ones named."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from support.storage import (
    DAY,
    DB,
    manifest_for,
)

from patina_assets.storage import (
    CorruptManifest,
    Manifest,
    daily_dump_key,
    new_generation,
)


def complete_manifest(**changes) -> Manifest:
    return replace(
        manifest_for(),
        key=daily_dump_key(DAY, DB, "sql.zst", new_generation()),
        bytes=123,
        sha256="e" * 64,
        created_at="2026-01-06T03:00:10Z",
        **changes,
    )


def test_manifest_json_roundtrip():
    manifest = complete_manifest()
    text = manifest.to_json()
    assert json.loads(text)["schema_version"] == 1
    assert Manifest.from_json(text) == manifest
    assert Manifest.from_json(text.encode()) == manifest


def test_manifests_record_time_travel_bookmarks_and_older_ones_still_load():
    manifest = complete_manifest(
        point_in_time=False,
        consistency="bookmark moved",
        bookmark="00000001-00000000-00000000-aa",
        end_bookmark="00000002-00000000-00000000-bb",
    )
    assert Manifest.from_json(manifest.to_json()) == manifest
    older = json.loads(complete_manifest().to_json())
    for name in ("consistency", "bookmark", "end_bookmark"):
        del older[name]  # written before these fields existed
    loaded = Manifest.from_json(json.dumps(older))
    assert loaded.bookmark is None and loaded.consistency is None and loaded.point_in_time is True


def test_manifest_keeps_the_dumps_warnings_and_older_manifests_without_them_load():
    manifest = complete_manifest(warnings=["virtual table 'v' uses the module 'vec0' ..."])
    assert Manifest.from_json(manifest.to_json()).warnings == manifest.warnings
    older = {k: v for k, v in json.loads(manifest.to_json()).items() if k != "warnings"}
    assert Manifest.from_json(json.dumps(older)) == replace(manifest, warnings=[])
    with pytest.raises(CorruptManifest, match="warnings"):
        Manifest.from_json(json.dumps({**older, "warnings": "not a list"}))


def test_manifests_name_their_digest_version_and_older_ones_are_version_1():
    manifest = complete_manifest()
    assert manifest.digest_version == 2 and json.loads(manifest.to_json())["digest_version"] == 2  # BLAKE3
    older = {k: v for k, v in json.loads(manifest.to_json()).items() if k != "digest_version"}
    assert Manifest.from_json(json.dumps(older)).digest_version == 1  # written before the field: SHA-256
    for unknown in (3, "2", True, None):  # a newer Patina's version is not guessed at
        with pytest.raises(CorruptManifest, match="digest versions 1 \\(SHA-256\\), 2 \\(BLAKE3\\).*upgrade"):
            Manifest.from_json(json.dumps({**older, "digest_version": unknown}))


def test_incomplete_manifest_cannot_be_written():
    with pytest.raises(ValueError, match="key"):
        manifest_for().to_json()  # key, bytes, sha256 are the store's to fill in
    with pytest.raises(ValueError, match="rows"):
        complete_manifest(rows=8).to_json()


@pytest.mark.parametrize(
    "mangle, expected",
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: "[1, 2]", "not a JSON object"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k != "sha256"}), "sha256"),
        (lambda d: json.dumps({**d, "schema_version": 2}), "schema_version 2"),
        (lambda d: json.dumps({**d, "bytes": "123"}), "bytes"),
        (lambda d: json.dumps({**d, "day": "2026-13-01"}), "day"),
        (lambda d: json.dumps({**d, "finished_at": "2026-01-06T03:00:09+02:00"}), "finished_at"),
        (lambda d: json.dumps({**d, "table_rows": {"users": -1, "sessions": 8}}), "table_rows"),
        (lambda d: json.dumps({**d, "sha256": d["sha256"] + "\n"}), "sha256"),
    ],
    ids=[
        "garbage",
        "array",
        "missing-field",
        "future-version",
        "wrong-type",
        "bad-day",
        "not-utc",
        "negative",
        "digest-and-line-break",
    ],
)
def test_unreadable_manifest_raises_corrupt_manifest_with_its_key(mangle, expected):
    text = mangle(json.loads(complete_manifest().to_json()))
    with pytest.raises(CorruptManifest, match=expected) as raised:
        Manifest.from_json(text, key="daily/2026-01-05/groveauth.manifest.json")
    assert "daily/2026-01-05/groveauth.manifest.json" in str(raised.value)
