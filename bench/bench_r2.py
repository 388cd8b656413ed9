"""Benchmark: R2 bucket backups of many small objects, against moto's S3 server on loopback.

    .venv/bin/python bench/bench_r2.py [--objects 10000] [--size 2048] [--change 0.01]

Fills a source bucket with `--objects` objects of about `--size` bytes, then runs, each in its own process so
its peak RSS is its own (moto, which keeps every object in memory, runs in this parent process):

1. the first backup (every object copied into r2/objects/<sha256>),
2. a second backup with nothing changed (nothing read, nothing copied: the listing and the previous entries),
3. a third after `--change` of the objects were rewritten,
4. the completeness check and a full objects check of the third snapshot,
5. garbage collection, and a restore of the first snapshot into a directory.

Prints a Markdown table: seconds, peak RSS, objects copied.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def child(step: str, endpoint: str, source_name: str, backup_name: str, day: str, work: str) -> None:
    from datetime import UTC, datetime, timedelta

    from patina_assets.config import RetentionConfig
    from patina_assets.r2 import backup_bucket, check_complete, check_objects, collect_garbage, restore_snapshot
    from patina_assets.r2.layout import read_manifest, snapshot_manifest_key
    from patina_assets.storage import S3Bucket, make_s3_client

    client = make_s3_client(endpoint, "us-east-1", "testing", "testing")
    source = S3Bucket(client, source_name)
    backup = S3Bucket(client, backup_name)
    started = time.perf_counter()
    detail: dict = {}
    if step == "backup":
        manifest = backup_bucket(source, backup, name="bench", day=day)
        detail = {"objects": manifest.objects, "copied": manifest.copied_objects}
    elif step == "checks":
        manifest = read_manifest(backup, snapshot_manifest_key(day, "bench"))
        complete = check_complete(source, backup, manifest)
        objects = check_objects(backup, manifest, sample=None)
        detail = {"objects": objects.checked, "passed": complete.passed and objects.passed}
    elif step == "gc":
        result = collect_garbage(
            backup, RetentionConfig(daily_days=1, weekly_weeks=1), now=datetime.now(UTC) + timedelta(days=2)
        )
        detail = {"objects": result.referenced_objects, "deleted": result.deleted_objects}
    elif step == "restore":
        result = restore_snapshot(backup, day, "bench", Path(work) / "restored")
        detail = {"objects": result.objects}
    seconds = time.perf_counter() - started
    peak_mb = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, **detail}))


def peak_rss_mb() -> float:
    """This process's peak RSS since it started: VmHWM, not ru_maxrss, which Linux carries over from the parent
    across fork and exec (here the parent is moto, holding every object in memory)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--change", type=float, default=0.01)
    parser.add_argument("--child", nargs=6)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from support.s3_server import create_bucket, direct_client, moto_server

    rng = random.Random(15)
    with moto_server() as endpoint, tempfile.TemporaryDirectory(prefix="patina-bench-r2-") as work:
        source_name, backup_name = create_bucket(endpoint), create_bucket(endpoint)
        s3 = direct_client(endpoint)
        keys = [f"media/{i // 100:03d}/{i:06d}.bin" for i in range(args.objects)]

        def put(key: str) -> None:
            s3.put_object(Bucket=source_name, Key=key, Body=os.urandom(rng.randint(args.size // 2, args.size * 3 // 2)))

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, keys))
        print(f"filled {args.objects} objects in {time.perf_counter() - started:.1f}s", file=sys.stderr)

        rows = []
        first = run_child("backup", endpoint, source_name, backup_name, "2026-03-01", work)
        rows.append(("first backup", first))
        rows.append(
            (
                "second backup, nothing changed",
                run_child("backup", endpoint, source_name, backup_name, "2026-03-02", work),
            )
        )
        changed = rng.sample(keys, int(args.objects * args.change))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, changed))
        rows.append(
            (
                f"third backup, {len(changed)} changed",
                run_child("backup", endpoint, source_name, backup_name, "2026-03-03", work),
            )
        )
        rows.append(
            (
                "completeness + full objects check",
                run_child("checks", endpoint, source_name, backup_name, "2026-03-03", work),
            )
        )
        rows.append(
            (
                "restore of the first snapshot to a directory",
                run_child("restore", endpoint, source_name, backup_name, "2026-03-01", work),
            )
        )
        rows.append(
            ("garbage collection (keep 1 day)", run_child("gc", endpoint, source_name, backup_name, "2026-03-03", work))
        )

    print(f"| {args.objects:,} objects of ~{args.size} B | seconds | peak RSS | objects | copied / deleted |")
    print("|---|---|---|---|---|")
    for label, result in rows:
        extra = result.get("copied", result.get("deleted", "-"))
        print(f"| {label} | {result['seconds']:.1f} | {result['peak_mb']:.0f} MB | {result['objects']:,} | {extra} |")


if __name__ == "__main__":
    main()
