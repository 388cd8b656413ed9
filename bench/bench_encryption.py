"""Benchmark: what encryption at rest (age, through pyrage) costs a nightly backup and a weekly archive.

    .venv/bin/python bench/bench_encryption.py [--rows 2000000] [--repeat 3] [--keep DIR]
    .venv/bin/python bench/bench_encryption.py --archive [--sql-mb 30] [--days 7]
    .venv/bin/python bench/bench_encryption.py --once plain|age DB BUCKET   # one backup, for an outside timer

The first form: bench_dump.py's 2,000,000-row table backed up through Patina's real path (`back_up`: dump,
.sql.zst, publish into a local bucket), unencrypted and encrypted in turn (plain, age, plain, age, ...: a
drifting machine slows both alike), each in its own process; prints the median wall time of each, their
ratio, the encryption step alone (age over the compressed dump) and the decryption of it, with each
process's peak RSS.  Goal (issue 14): encryption under 10% of the backup's wall time, memory flat.

`--archive`: bench_archive.py's week of dailies, backed up encrypted and unencrypted into two buckets, then
the week's archive built from each (fetch, decrypt, decompress, tar, compress, encrypt, upload, read back,
decrypt, verify), each in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DAY = "2026-01-05"
IDENTITY_ENV = "PATINA_AGE_IDENTITY"


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss carries the parent's over across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def keys_for(mode: str):
    from patina_assets.encryption import AgeKeys, parse_identities

    if mode == "plain":
        return AgeKeys()
    text = os.environ[IDENTITY_ENV]
    identities, _ = parse_identities(Path(text).read_text() if not text.startswith("#") else text)
    return AgeKeys([str(identities[0].to_public())])


def once(mode: str, db: str, bucket: str) -> None:
    """One nightly backup of ``db`` into ``bucket``, encrypted or not; prints what it measured as JSON."""
    from patina_assets.backup import Cloudflare, back_up
    from patina_assets.config import DatabaseConfig, DumpConfig
    from patina_assets.storage import BackupStore, LocalBucket

    store = BackupStore(LocalBucket(bucket), keys_for(mode))
    started = time.perf_counter()
    manifest, _ = back_up(
        DatabaseConfig(name="bench", source=db), DAY, store, Cloudflare("http://127.0.0.1:9", None), DumpConfig()
    )
    print(json.dumps({"wall_s": time.perf_counter() - started, "peak_mb": peak_rss_mb(), "bytes": manifest.bytes}))


def seal_once(mode: str, dump: str, scratch: str) -> None:
    """Encrypt (mode ``seal``) or decrypt (``open``) one dump file alone, in this process."""
    from patina_assets.encryption import decrypt_to_file, load_identities

    keys = keys_for("age")
    started = time.perf_counter()
    if mode == "seal":
        sealed = keys.seal(dump, scratch)
        size = sealed.stored_bytes
    else:
        keyring = load_identities(IDENTITY_ENV, os.environ)
        with open(dump, "rb") as source:
            sealed = decrypt_to_file(source, scratch, keyring, what=dump)
        size = sealed.plain_bytes
    print(json.dumps({"wall_s": time.perf_counter() - started, "peak_mb": peak_rss_mb(), "bytes": size}))


def child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def backups(args: argparse.Namespace, tmp: Path) -> None:
    from bench_dump import build

    source = (args.keep or tmp) / f"bench-{args.rows}.sqlite"
    if not source.exists():
        source.parent.mkdir(parents=True, exist_ok=True)
        build(source, args.rows)
    runs: dict[str, list[dict]] = {"plain": [], "age": []}
    for n in range(args.repeat):
        for mode in ("plain", "age"):
            bucket = tmp / f"bucket-{mode}-{n}"
            runs[mode].append(child("--once", mode, str(source), str(bucket)))
    stored = next((tmp / "bucket-age-0").rglob("*.age"))
    dump = tmp / "dump.sql.zst"
    plain_dump = next(p for p in (tmp / "bucket-plain-0").rglob("*.sql.zst"))
    dump.write_bytes(plain_dump.read_bytes())
    seals, opens = [], []
    for n in range(args.repeat):
        seals.append(child("--seal", "seal", str(dump), str(tmp / f"sealed-{n}.age")))
        opens.append(child("--seal", "open", str(stored), str(tmp / f"opened-{n}.sql.zst")))

    def median(rows: list[dict], name: str) -> float:
        return statistics.median(r[name] for r in rows)

    plain, sealed = median(runs["plain"], "wall_s"), median(runs["age"], "wall_s")
    mb = 1e6
    print(
        f"{args.rows:,} rows; the stored dump {runs['plain'][0]['bytes'] / mb:.1f} MB (.sql.zst), "
        f"{runs['age'][0]['bytes'] / mb:.1f} MB encrypted; medians of {args.repeat}\n"
    )
    print("| | wall | peak RSS |")
    print("|---|---:|---:|")
    print(f"| back_up, unencrypted | {plain:.2f} s | {median(runs['plain'], 'peak_mb'):.0f} MB |")
    print(f"| back_up, encrypted (age) | {sealed:.2f} s | {median(runs['age'], 'peak_mb'):.0f} MB |")
    print(f"| ratio encrypted / unencrypted | {sealed / plain:.3f} | |")
    print(
        f"| encryption alone (age over the .sql.zst) | {median(seals, 'wall_s'):.2f} s "
        f"({median(seals, 'wall_s') / sealed:.1%} of the encrypted backup) | {median(seals, 'peak_mb'):.0f} MB |"
    )
    print(f"| decryption alone | {median(opens, 'wall_s'):.2f} s | {median(opens, 'peak_mb'):.0f} MB |")


def archive_child(bucket: str, mode: str) -> None:
    from patina_assets.archive import ArchiveStore
    from patina_assets.storage import BackupStore, LocalBucket

    archives = ArchiveStore(BackupStore(LocalBucket(bucket), keys_for(mode)))
    started = time.perf_counter()
    outcome = archives.build("2026-01-04", ["bench"], "tar.zst")
    total = time.perf_counter() - started
    assert outcome.verification.ok, outcome.verification.problems
    print(
        json.dumps(
            {
                "wall_s": total,
                "verify_s": outcome.verification.seconds,
                "peak_mb": peak_rss_mb(),
                "bytes": outcome.manifest.bytes,
                "sql_bytes": outcome.manifest.index.sql_bytes,
            }
        )
    )


def archive(args: argparse.Namespace, tmp: Path) -> None:
    import random

    from bench_archive import WEEK, build, change

    from patina_assets.backup import Cloudflare, back_up
    from patina_assets.config import DatabaseConfig, DumpConfig
    from patina_assets.storage import BackupStore, LocalBucket, week_days

    rng = random.Random(4)
    source = tmp / "bench.sqlite"
    build(source, int(args.sql_mb * 1e6), rng)
    database = DatabaseConfig(name="bench", source=str(source))
    stores = {mode: BackupStore(LocalBucket(tmp / f"bucket-{mode}"), keys_for(mode)) for mode in ("plain", "age")}
    for n, day in enumerate(week_days(WEEK)[: args.days]):
        if n:
            change(source, 0.01, rng, n)
        for store in stores.values():
            back_up(database, day, store, Cloudflare("http://127.0.0.1:9", None), DumpConfig())
    results: dict[str, list[dict]] = {"plain": [], "age": []}
    for _ in range(args.repeat):
        for mode, store in stores.items():
            store.bucket.delete_many([info.key for info in store.bucket.list("weekly/")])
            results[mode].append(child("--archive-child", str(tmp / f"bucket-{mode}"), mode))
    mb = 1e6
    first = results["plain"][0]
    print(
        f"{args.days} dailies of one database, {first['sql_bytes'] / args.days / mb:.1f} MB of SQL a day; "
        f"medians of {args.repeat}\n"
    )
    print("| the week's archive | stored | build and verify | of which verify | peak RSS |")
    print("|---|---:|---:|---:|---:|")
    for mode, label in (("plain", "unencrypted"), ("age", "encrypted dailies, encrypted archive")):
        rows = results[mode]
        print(
            f"| {label} | {rows[0]['bytes'] / mb:.1f} MB | {statistics.median(r['wall_s'] for r in rows):.2f} s | "
            f"{statistics.median(r['verify_s'] for r in rows):.2f} s | "
            f"{statistics.median(r['peak_mb'] for r in rows):.0f} MB |"
        )
    ratio = statistics.median(a["wall_s"] / p["wall_s"] for a, p in zip(results["age"], results["plain"]))
    print(f"| ratio encrypted / unencrypted (paired) | | {ratio:.3f} | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the source database in this directory and reuse it")
    parser.add_argument("--archive", action="store_true", help="the weekly archive instead of the nightly backup")
    parser.add_argument("--sql-mb", type=float, default=30, help="--archive: one day's SQL (default 30)")
    parser.add_argument("--days", type=int, default=7, choices=range(1, 8), metavar="1..7")
    parser.add_argument("--once", nargs=3, metavar=("MODE", "DB", "BUCKET"), help="one backup: plain or age")
    parser.add_argument("--seal", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--archive-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="patina-bench-age-") as tmp:
        if IDENTITY_ENV not in os.environ:  # a throwaway identity for this run
            from patina_assets.encryption import generate_identity

            key = Path(tmp) / "key.txt"
            key.write_text(generate_identity().file_text)
            os.environ[IDENTITY_ENV] = str(key)
        if args.once:
            once(*args.once)
        elif args.seal:
            seal_once(*args.seal)
        elif args.archive_child:
            archive_child(*args.archive_child)
        elif args.archive:
            archive(args, Path(tmp))
        else:
            backups(args, Path(tmp))


if __name__ == "__main__":
    main()
