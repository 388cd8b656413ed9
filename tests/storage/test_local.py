"""LocalBucket: what only a directory does (atomic renames, temporaries, permissions)."""

from __future__ import annotations

import errno
import os

import pytest
from support.storage import (
    keys_of,
)

from patina_assets import storage
from patina_assets.storage import (
    LocalBucket,
    StorageAccessDenied,
    StorageBucketNotFound,
    StorageError,
)


def test_local_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    bucket = LocalBucket(tmp_path)
    bucket.put_bytes("d/k", b"good")

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.local.os, "replace", full_disk)
    with pytest.raises(StorageError, match="Free disk space"):
        bucket.put_bytes("d/k", b"new")
    monkeypatch.undo()

    assert bucket.get_bytes("d/k") == b"good"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["k"]


def test_local_listing_ignores_temporaries(tmp_path):
    bucket = LocalBucket(tmp_path)
    bucket.put_bytes("d/k", b"x")
    (tmp_path / "d" / ".patina-tmp.abc123").write_bytes(b"half a write")

    assert keys_of(bucket) == ["d/k"]


def test_local_listing_skips_files_and_folders_whose_names_cannot_be_keys(tmp_path):
    """Strays put there by hand: a backslash or a control character in a file's or a folder's name, a
    symbolic link to a folder. The listing looks for such characters once per folder, so a folder holding
    one bad name among good ones must still list the good ones and only them."""
    bucket = LocalBucket(tmp_path)
    bucket.put_bytes("daily/2026-01-05/shop.manifest.json", b"{}")
    bucket.put_bytes("daily/2026-01-05/blog.manifest.json", b"{}")
    bucket.put_bytes("daily/2026-01-06/shop.manifest.json", b"{}")
    day = tmp_path / "daily" / "2026-01-05"
    (day / "back\\slash.sql").write_bytes(b"x")
    (day / "bell\x07.sql").write_bytes(b"x")
    (day / "tab\tfolder").mkdir()
    (day / "tab\tfolder" / "inside.sql").write_bytes(b"x")
    (tmp_path / "daily" / "linked").symlink_to(tmp_path / "daily" / "2026-01-06")

    assert keys_of(bucket) == [
        "daily/2026-01-05/blog.manifest.json",
        "daily/2026-01-05/shop.manifest.json",
        "daily/2026-01-06/shop.manifest.json",
    ]
    assert [info.key for info in bucket.list("daily/2026-01-05/s")] == ["daily/2026-01-05/shop.manifest.json"]


def test_local_delete_prunes_empty_directories(tmp_path):
    bucket = LocalBucket(tmp_path)
    bucket.put_bytes("daily/2026-01-05/a", b"x")
    bucket.delete("daily/2026-01-05/a")
    assert list(tmp_path.iterdir()) == []


def test_local_missing_directory_without_create(tmp_path):
    with pytest.raises(StorageBucketNotFound, match="does not exist"):
        LocalBucket(tmp_path / "nowhere", create=False)


def test_local_permission_denied(tmp_path, monkeypatch):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    if os.geteuid() == 0:
        # Root ignores file modes, and nothing else here can refuse root a write: the one mock in this
        # file stands in for the kernel's EACCES.
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(root))

        monkeypatch.setattr("patina_assets.storage.local.tempfile.mkstemp", refuse)
    try:
        with pytest.raises(StorageAccessDenied, match="may read and write"):
            LocalBucket(root).put_bytes("k", b"x")
    finally:
        root.chmod(0o700)
