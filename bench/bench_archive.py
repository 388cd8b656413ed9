"""Benchmark: a week's archive in tar.zst (long-distance matching, 128 MiB window) against tar.gz.

    .venv/bin/python bench/bench_archive.py [--sql-mb 30] [--change 0.01] [--days 7]

Builds a SQLite database whose dump is about `--sql-mb` MB of SQL, then for each day of a week changes
about `--change` of its rows (updates, a few inserts and deletes) and backs it up through Patina's real
path (`back_up`: dump, .sql.zst, manifest) into a local bucket.  Then archives the week in each format with
`ArchiveStore.build` (fetch each daily, decompress, tar, compress, upload, read back, verify), each in its
own process so its peak RSS is its own.  For reference it also prints the dailies themselves and plain
zstd -3 (8 MiB window, no long-distance matching) of the same tar.  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WEEK = "2026-01-04"
WORDS = (
    "the of and to in is was for on that by with as at from his her it an were are which this be or has had not "
    "but what all when there can one more said would been their will if who so no out up time about into than "
    "them only other new some could these two may first then do any like my now over such our man me even most "
    "made after also did many before must through back years where much your way well down should because each"
).split()


def build(path: Path, sql_bytes: int, rng: random.Random) -> int:
    """A posts-and-users database of about `sql_bytes` of SQL; returns the number of posts."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT, created_at INTEGER);
        CREATE TABLE posts(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), title TEXT,
                           body TEXT, score REAL, updated_at INTEGER);
        CREATE INDEX posts_user ON posts(user_id);
        """
    )
    users = 5_000
    db.executemany(
        "INSERT INTO users VALUES (?,?,?,?)",
        ((i, f"user{i}@example.com", f"User {i}", 1_700_000_000 + i) for i in range(1, users + 1)),
    )
    posts = max(1, (sql_bytes - users * 80) // 440)  # ~440 bytes of SQL per post
    db.executemany("INSERT INTO posts VALUES (?,?,?,?,?,?)", (post(i, rng, users) for i in range(1, posts + 1)))
    db.commit()
    db.close()
    return posts


def post(i: int, rng: random.Random, users: int) -> tuple:
    body = " ".join(rng.choices(WORDS, k=80))
    return (i, rng.randint(1, users), " ".join(rng.choices(WORDS, k=6)), body, rng.random() * 100, 1_700_000_000 + i)


def change(path: Path, fraction: float, rng: random.Random, day: int) -> None:
    """A day of use: ~`fraction` of the posts edited, a few added and deleted."""
    db = sqlite3.connect(path)
    (count,) = db.execute("SELECT count(*) FROM posts").fetchone()
    (top,) = db.execute("SELECT max(id) FROM posts").fetchone()
    edits = max(1, int(count * fraction))
    ids = rng.sample(range(1, top + 1), edits)
    db.executemany(
        "UPDATE posts SET body = ?, score = ?, updated_at = ? WHERE id = ?",
        ((" ".join(rng.choices(WORDS, k=80)), rng.random() * 100, 1_800_000_000 + day, i) for i in ids),
    )
    db.executemany(
        "INSERT INTO posts VALUES (?,?,?,?,?,?)", (post(top + 1 + k, rng, 5_000) for k in range(edits // 10))
    )
    db.executemany("DELETE FROM posts WHERE id = ?", ((i,) for i in rng.sample(range(1, top + 1), edits // 10)))
    db.commit()
    db.close()


def child(bucket: str, fmt: str) -> None:
    """Build one archive (in this process, so its peak RSS is its own) and print what it measured."""
    from patina_assets.archive import ArchiveStore
    from patina_assets.storage import BackupStore, LocalBucket

    store = BackupStore(LocalBucket(bucket))
    archives = ArchiveStore(store)
    started = time.perf_counter()
    outcome = archives.build(WEEK, ["bench"], fmt)
    total = time.perf_counter() - started
    peak_mb = peak_rss_mb()
    assert outcome.verification.ok, outcome.verification.problems
    print(
        json.dumps(
            {
                "bytes": outcome.manifest.bytes,
                "sql_bytes": outcome.manifest.index.sql_bytes,
                "build_s": total - outcome.verification.seconds,
                "verify_s": outcome.verification.seconds,
                "peak_mb": peak_mb,
                "key": outcome.manifest.key,
            }
        )
    )


def peak_rss_mb() -> float:
    """This process's peak RSS.  VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent
    across fork and exec, so a child would report its parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Counter:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data) -> int:
        self.bytes += len(data)
        return len(data)


def plain_zstd(archive: Path) -> tuple[int, float]:
    """zstd -3 with its default window (no long-distance matching) over the same tar, for reference
    (the time includes decompressing the archive)."""
    import zstandard

    from patina_assets.archive import decompress_archive

    started = time.perf_counter()
    counter = _Counter()
    with open(archive, "rb") as raw, decompress_archive(raw) as tar:
        zstandard.ZstdCompressor(level=3).copy_stream(tar, counter)
    return counter.bytes, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sql-mb", type=float, default=30, help="size of one day's SQL (default 30)")
    parser.add_argument("--change", type=float, default=0.01, help="fraction of rows changed a day (default 0.01)")
    parser.add_argument("--days", type=int, default=7, choices=range(1, 8), metavar="1..7")
    parser.add_argument("--child", nargs=2, metavar=("BUCKET", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from patina_assets.backup import Cloudflare, back_up
    from patina_assets.config import DatabaseConfig, DumpConfig
    from patina_assets.storage import BackupStore, LocalBucket, week_days

    rng = random.Random(4)
    with tempfile.TemporaryDirectory(prefix="patina-bench-") as tmp:
        tmp = Path(tmp)
        source = tmp / "bench.sqlite"
        started = time.perf_counter()
        build(source, int(args.sql_mb * 1e6), rng)
        database = DatabaseConfig(name="bench", source=str(source))
        store = BackupStore(LocalBucket(tmp / "bucket"))
        for n, day in enumerate(week_days(WEEK)[: args.days]):
            if n:
                change(source, args.change, rng, n)
            back_up(database, day, store, Cloudflare("http://127.0.0.1:9", None), DumpConfig())
        dailies = store.list_daily()
        setup_s = time.perf_counter() - started

        results = {}
        for fmt in ("tar.gz", "tar.zst"):
            store.bucket.delete_many([info.key for info in store.bucket.list("weekly/")])
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(tmp / "bucket"), fmt],
                check=True,
                capture_output=True,
                text=True,
            )
            results[fmt] = json.loads(out.stdout.strip().splitlines()[-1])
        plain_bytes, plain_s = plain_zstd(tmp / "bucket" / results["tar.zst"]["key"])

        sql = results["tar.zst"]["sql_bytes"]
        mb = 1e6
        print(
            f"{len(dailies)} days of one database, {sql / len(dailies) / mb:.1f} MB of SQL a day, "
            f"~{args.change:.0%} of rows changed a day ({sql / mb:.0f} MB of SQL in the week; setup {setup_s:.0f} s)\n"
        )
        print("| the week as | size | of the SQL | build | verify (read back) | peak RSS |")
        print("|---|---:|---:|---:|---:|---:|")
        daily_bytes = sum(m.bytes for m in dailies)
        print(
            f"| {len(dailies)} dailies (.sql.zst, zstd -3 each) | {daily_bytes / mb:.1f} MB | {daily_bytes / sql:.1%} | | | |"
        )
        for fmt, label in (
            ("tar.zst", "**tar.zst** (zstd -3, --long=27, default)"),
            ("tar.gz", "tar.gz (gzip -6, the spec's)"),
        ):
            r = results[fmt]
            print(
                f"| {label} | {r['bytes'] / mb:.1f} MB | {r['bytes'] / sql:.1%} | {r['build_s']:.2f} s | "
                f"{r['verify_s']:.2f} s | {r['peak_mb']:.0f} MB |"
            )
        print(
            f"| tar, zstd -3 without long-distance matching (reference) | {plain_bytes / mb:.1f} MB | "
            f"{plain_bytes / sql:.1%} | {plain_s:.2f} s | | |"
        )


if __name__ == "__main__":
    main()
