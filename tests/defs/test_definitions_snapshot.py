"""The code location's names, pinned: asset keys, checks, jobs, schedules and sensors.

Alerts, reconciliation, `patina status` and people's bookmarks in the UI find things by these names; a rename
that would orphan them must be a decision, not an accident. When a change is meant, regenerate the snapshot:

    PATINA_UPDATE_SNAPSHOT=1 .venv/bin/pytest tests/defs/test_definitions_snapshot.py

and commit the diff of definitions_snapshot.json with the change (as dagster-open-platform does for its own).
"""

import json
import os
from pathlib import Path

from patina_assets.config import load_config
from patina_assets.defs import build_definitions

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")
DEMO_CONFIG = Path(__file__).parents[2] / "patina.example.yaml"


def describe(defs) -> dict:
    graph = defs.resolve_asset_graph()
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    repository = defs.get_repository_def()
    return {
        "assets": {
            key.to_user_string(): {
                "group": spec.group_name,
                "partitions": type(spec.partitions_def).__name__ if spec.partitions_def else None,
                "deps": sorted(dep.asset_key.to_user_string() for dep in spec.deps),
                "kinds": sorted(spec.kinds),
            }
            for key, spec in sorted(specs.items(), key=lambda item: item[0].to_user_string())
        },
        "checks": sorted(f"{key.asset_key.to_user_string()}:{key.name}" for key in graph.asset_check_keys),
        "jobs": sorted(job.name for job in repository.get_all_jobs() if not job.name.startswith("__")),
        "schedules": {
            schedule.name: {"cron": schedule.cron_schedule, "job": schedule.job_name}
            for schedule in sorted(repository.schedule_defs, key=lambda s: s.name)
        },
        "sensors": sorted(sensor.name for sensor in repository.sensor_defs),
        "resources": sorted(defs.resources or {}),
    }


def test_the_code_locations_names_are_the_snapshots(tmp_path):
    config = load_config(DEMO_CONFIG, env={})
    now = describe(build_definitions(config))
    if os.environ.get("PATINA_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(now, indent=2, sort_keys=True) + "\n")
    pinned = json.loads(SNAPSHOT.read_text())
    for part in pinned.keys() | now.keys():
        assert now.get(part) == pinned.get(part), (
            f"the code location's {part} changed (regenerate the snapshot if that is meant: see this file's docstring)"
        )
