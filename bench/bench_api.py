"""Benchmark: what `patina serve` costs under the attacks of issue 13.

    .venv/bin/python bench/bench_api.py [--addresses 30000] [--samples 400]

Serves the tests' filled bucket (three databases, nine backups; built by Dagster, ~20 s) on loopback and
measures, over real HTTP on one keep-alive connection:

* the median time of a keyless protected request (401) and of ``/health``, with an empty address table and
  after ``--addresses`` forged addresses arrived through a trusted proxy (the table is fixed-size: the two
  should be equal; the old table scanned itself past 10,000 addresses, 0.26 ms -> 8 ms, /health 48 ms);
* the size of that table (sys.getsizeof of the dictionary, its keys and windows);
* 200 keyless ``GET /status``: served from the snapshot (at most 10 s old) against read afresh each time
  (what every request did before).

Prints a Markdown table. The machine's load moves the times; compare the rows of one run.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.filled import filled  # noqa: E402

from patina_assets.api import AccessPolicy, BackgroundServer, Limits, create_app, parse_networks  # noqa: E402


def request(sock: socket.socket, text: str) -> float:
    """Send one request, read its response head (and body, if any); the seconds it took."""
    started = time.perf_counter()
    sock.sendall(text.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    if not text.startswith("HEAD"):
        while len(body) < length:
            body += sock.recv(65536)
    return time.perf_counter() - started


def forged(i: int) -> str:
    return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def medians(sock: socket.socket, samples: int) -> tuple[float, float]:
    protected = [
        request(
            sock,
            f"HEAD /restore-guide/groveauth HTTP/1.1\r\nHost: 127.0.0.1\r\nCF-Connecting-IP: 192.0.2.{i % 250}\r\n\r\n",
        )
        for i in range(samples)
    ]
    health = [request(sock, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") for _ in range(samples)]
    return statistics.median(protected) * 1000, statistics.median(health) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=30_000)
    parser.add_argument("--samples", type=int, default=400)
    args = parser.parse_args()
    bucket = filled("local")
    policy = AccessPolicy(client_ip_header="CF-Connecting-IP", trusted_proxies=parse_networks("127.0.0.0/8"))
    rows = []
    app = create_app(
        bucket.config,
        policy=policy,
        audit=lambda event: None,
        limits=Limits(failures_per_hour=10**6, public_per_minute=10**6),
    )
    with BackgroundServer(app) as server:
        sock = socket.create_connection((server.host, server.port))
        empty = medians(sock, args.samples)
        for i in range(args.addresses):
            request(
                sock,
                f"HEAD /restore-guide/groveauth HTTP/1.1\r\nHost: 127.0.0.1\r\nCF-Connecting-IP: {forged(i)}\r\n\r\n",
            )
        full = medians(sock, args.samples)
        table = app.state.patina.failures._hits
        footprint = sys.getsizeof(table) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in table.items())
        rows.append(("keyless protected request (401), median ms", f"{empty[0]:.2f}", f"{full[0]:.2f}"))
        rows.append(("/health, median ms", f"{empty[1]:.2f}", f"{full[1]:.2f}"))
        rows.append(("address table: entries / bytes", "-", f"{len(table):,} / {footprint:,}"))
        sock.close()
    for label, seconds in (("snapshot (10 s)", 10.0), ("read afresh", 0.0)):
        app = create_app(
            bucket.config,
            policy=policy,
            audit=lambda event: None,
            limits=Limits(public_per_minute=10**6, snapshot_seconds=seconds),
        )
        with BackgroundServer(app) as server:
            sock = socket.create_connection((server.host, server.port))
            started = time.perf_counter()
            for _ in range(200):
                request(sock, "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            rows.append(
                (
                    f"200 x GET /status, {label}: seconds / bucket reads",
                    "-",
                    f"{time.perf_counter() - started:.2f} / {app.state.patina.snapshot.reads}",
                )
            )
            sock.close()
    print(f"| measure | empty table | after {args.addresses:,} addresses |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
