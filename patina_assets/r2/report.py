"""What `patina list` and `patina status` show of the R2 snapshots (plain Python)."""

from __future__ import annotations

from typing import Any

from ..config import PatinaConfig
from ..storage import Bucket
from ..units import human_bytes
from .layout import SnapshotManifest, list_snapshots


def snapshot_document(snapshot: SnapshotManifest) -> dict[str, Any]:
    return {
        "date": snapshot.day,
        "name": snapshot.name,
        "objects": snapshot.objects,
        "bytes": snapshot.bytes,
        "copiedObjects": snapshot.copied_objects,
        "copiedBytes": snapshot.copied_bytes,
        "encrypted": snapshot.encrypted,
        "createdAt": snapshot.created_at,
        "manifest": snapshot.key,
    }


def list_r2_document(bucket: Bucket, *, name: str | None = None, day: str | None = None) -> dict[str, Any]:
    """Every R2 snapshot (newest first), filtered by name and day, and the manifests that cannot be read."""
    snapshots, corrupt = list_snapshots(bucket, name)
    chosen = [s for s in reversed(snapshots) if day is None or s.day == day]
    return {
        "snapshots": [snapshot_document(s) for s in chosen],
        "unreadable": [{"manifest": key, "problem": why} for key, why in sorted(corrupt.items())],
    }


def render_r2_rows(document: dict[str, Any]) -> list[list[str]]:
    return [
        [
            s["date"],
            s["name"],
            f"{s['objects']:,}",
            human_bytes(s["bytes"]),
            f"{s['copiedObjects']:,} ({human_bytes(s['copiedBytes'])})",
            "age" if s.get("encrypted") else "no",
            s["createdAt"],
        ]
        for s in document["snapshots"]
    ]


R2_HEADERS = ["DATE", "R2 BUCKET", "OBJECTS", "SIZE", "COPIED THAT NIGHT", "ENCRYPTED", "CREATED"]


def r2_status(config: PatinaConfig, bucket: Bucket) -> list[dict[str, Any]]:
    """Per configured R2 bucket: its newest snapshot and how many are kept."""
    snapshots, _ = list_snapshots(bucket)
    out = []
    for entry in config.r2_buckets:
        own = [s for s in snapshots if s.name == entry.name]
        newest = own[-1] if own else None
        out.append(
            {
                "name": entry.name,
                "source": entry.describe_source(),
                "snapshots": len(own),
                "newest": snapshot_document(newest) if newest else None,
            }
        )
    return out


def render_r2_status(rows: list[dict[str, Any]]) -> str:
    lines = ["R2 buckets:"]
    for row in rows:
        newest = row["newest"]
        if newest is None:
            lines.append(f"  {row['name']}: no snapshot yet ({row['source']})")
        else:
            lines.append(
                f"  {row['name']}: newest snapshot {newest['date']}, {newest['objects']:,} objects "
                f"({human_bytes(newest['bytes'])}), {row['snapshots']} kept"
            )
    return "\n".join(lines)
