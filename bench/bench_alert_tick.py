"""Benchmark: how many finished runs one tick of `patina_run_alerts` reads, a fleet's night of failed tenants.

    .venv/bin/python bench/bench_alert_tick.py [--tenants 200] [--repeat 3]

A fleet of --tenants tenants behind the loopback D1 server (the tests' support), each tenant's run of one
night executed in-process with a revoked token (every run fails the same way); then one sensor tick from
a cursor taken before those runs, timed, --repeat times (each re-reads the same runs: the cursor is not
carried). A tick reads page after page for up to READ_SECONDS_PER_TICK; the line says how many it read,
and whether the night went out as one message. Prints the tick's seconds and runs read per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import dagster as dg  # noqa: E402
from support.configs import small_database, write_config  # noqa: E402
from support.d1_server import D1Server  # noqa: E402
from support.webhook_server import WebhookServer  # noqa: E402

from patina_assets.backup import open_store  # noqa: E402
from patina_assets.defs import build_definitions  # noqa: E402
from patina_assets.defs.alerts.sensors import RUN_ALERTS_SENSOR, build_alert_sensors  # noqa: E402
from patina_assets.defs.fleets import fleet_job_name, tenant_partition_key  # noqa: E402
from patina_assets.fleets import discover, fleet_cloudflare  # noqa: E402
from patina_assets.notifications import DeliveryPolicy  # noqa: E402

ACCOUNT = "0123456789abcdef0123456789abcdef"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-alert-tick-"))
    (work / "d1").mkdir()
    paths = {
        f"5a5a5a5a-0000-4000-8000-{i:012x}": small_database(work / "d1" / f"tenant-{i:04d}.sqlite", 3)
        for i in range(args.tenants)
    }
    os.environ["CLOUDFLARE_API_TOKEN"] = "good-token"
    with (
        D1Server(paths, account_id=ACCOUNT) as server,
        dg.instance_for_test() as instance,
        WebhookServer(default=200) as hook,
    ):
        os.environ["PATINA_WEBHOOK_URL"] = hook.url
        os.environ.pop("PATINA_DISCORD_WEBHOOK", None)
        fleets = [{"name": "tenants", "account": ACCOUNT, "name_pattern": "tenant-*"}]
        config = write_config(work, [], databases_from=fleets, cloudflare={"api_url": server.base_url})
        fleet = config.fleets[0]
        roster = discover(fleet, config, open_store(config), fleet_cloudflare(fleet, config))
        instance.add_dynamic_partitions("fleet_tenants_tenants", list(roster.names))
        job = build_definitions(config).resolve_job_def(fleet_job_name(fleet))
        fast = DeliveryPolicy(timeout_seconds=2.0, attempts=1, backoff_seconds=0.0)
        sensor = dg.Definitions(sensors=build_alert_sensors(config, policy=fast)).resolve_sensor_def(RUN_ALERTS_SENSOR)
        start = sensor.evaluate_tick(dg.build_sensor_context(instance=instance)).cursor
        os.environ["CLOUDFLARE_API_TOKEN"] = "revoked-token"
        for name in sorted(roster.names):
            key = tenant_partition_key("2026-11-30", name)
            job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
        seconds = []
        for _ in range(args.repeat):
            began = time.monotonic()
            result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=start))
            seconds.append(time.monotonic() - began)
            print(f"tick {seconds[-1]:.2f} s: {result.skip_message}", flush=True)
        median = statistics.median(seconds)
        print(f"{args.tenants} failed tenant runs: median tick {median:.2f} s, {args.tenants / median:.1f} runs/s")


if __name__ == "__main__":
    main()
