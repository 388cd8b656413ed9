"""How sizes read to people: the spec's style, decimal units (`512 B`, `45 KB`, `212 KB`, `2.1 MB`)."""

from __future__ import annotations


def human_bytes(n: int | float | None) -> str:
    """`n` bytes in decimal units, one decimal under 10 of a unit; `-` when unknown."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if abs(value) < 10 else f"{value:.0f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
