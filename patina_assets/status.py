"""The spec's ``/status`` and the ``/metrics`` it implies, built from the bucket and, when reachable, Dagster.

Plain Python: the bucket part comes from ``Catalog``; what only Dagster knows (is a run going on, how did the
last job end, which databases failed) arrives as an ``Orchestrator`` that ``patina_assets.orchestrator``
reads from the instance. Without one, the status still reports everything the bucket says and states that
the instance is unavailable, so the tools keep working on the day it is lost.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .catalog import DAILY, Backup, Catalog, iso
from .config import PatinaConfig
from .storage import DAMAGED, FAILED, NOT_VERIFIED, VERIFIED, BackupStore, parse_utc_timestamp
from .units import human_bytes

ACTIVE = "active"
STATUSES = (VERIFIED, FAILED, NOT_VERIFIED, DAMAGED)


@dataclass(frozen=True)
class JobRun:
    """One backup run as Dagster recorded it (the nightly job or an on-demand backup)."""

    run_id: str
    job: str
    status: str  # Dagster's run status: SUCCESS, FAILURE, STARTED, QUEUED, CANCELED, ...
    day: str | None
    started_at: datetime | None
    ended_at: datetime | None
    databases_ok: tuple[str, ...] = ()
    databases_failed: tuple[str, ...] = ()
    reason: str | None = None
    trigger: str | None = None
    nightly: bool = True  # the scheduled nightly job (False: an on-demand backup)
    failed_to_start: str | None = None  # why, when the run ended before any backup began

    @property
    def finished(self) -> bool:
        return self.status in ("SUCCESS", "FAILURE", "CANCELED")

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.started_at).total_seconds())


@dataclass
class Orchestrator:
    """What the Dagster instance says; ``available=False`` (with ``detail`` saying why) when it cannot be read."""

    available: bool
    detail: str
    active: list[JobRun] = field(default_factory=list)
    recent: list[JobRun] = field(default_factory=list)  # newest first
    next_scheduled: dict[str, datetime] = field(default_factory=dict)  # schedule name -> next tick


def unavailable(detail: str, next_scheduled: dict[str, datetime] | None = None) -> Orchestrator:
    return Orchestrator(available=False, detail=detail, next_scheduled=dict(next_scheduled or {}))


def read_orchestrator(config: PatinaConfig, env: Mapping[str, str] = os.environ) -> Orchestrator:
    """What the Dagster instance at ``$DAGSTER_HOME`` says. Without ``DAGSTER_HOME`` Dagster is not even
    imported (a second of a status's time): the next ticks come from the configuration's crons."""
    if not env.get("DAGSTER_HOME"):
        from .schedules import next_ticks, schedule_crons

        return unavailable("DAGSTER_HOME is not set", next_ticks(schedule_crons(config)))
    from .orchestrator import DagsterView, open_instance

    with open_instance(env) as (instance, detail):
        return DagsterView(config, instance, detail).read()


@dataclass(frozen=True)
class FleetTenants:
    """A fleet's tenants as its roster names them; ``discovered=False``: no roster yet (none are known)."""

    fleet: str
    tenants: tuple[str, ...]
    discovered: bool


def with_fleet_tenants(config: PatinaConfig, store: BackupStore) -> tuple[PatinaConfig, list[FleetTenants]]:
    """`config` with every fleet's tenants added to its databases (each tenant is one database of the
    status), and each fleet's tenants. Tenants already among the databases are not added twice."""
    if not config.fleets:
        return config, []
    from .fleets import load_roster

    known = set(config.names)
    added, fleets = [], []
    for fleet in config.fleets:
        roster = load_roster(store, fleet.name, missing_ok=True)
        tenants = roster.tenants if roster else ()
        fleets.append(FleetTenants(fleet.name, tuple(t.name for t in tenants), roster is not None))
        for tenant in tenants:
            if tenant.name not in known:
                known.add(tenant.name)
                added.append(tenant.database(fleet))
    return (dataclasses.replace(config, databases=config.databases + tuple(added)) if added else config), fleets


@dataclass
class Snapshot:
    """Everything ``/status`` and ``/metrics`` show, read once."""

    config: PatinaConfig
    backups: list[Backup]
    storage: dict
    orchestrator: Orchestrator
    now: datetime
    #: Per configured R2 bucket, its newest snapshot (``patina_assets.r2.report.r2_status``); empty without any.
    r2: list[dict] = field(default_factory=list)
    #: Databases whose history index could not be trusted (missing, unreadable, stale, an older format) and
    #: was rebuilt from the listing for this snapshot: database -> why. What it reports is the bucket's either way.
    rebuilt: dict[str, str] = field(default_factory=dict)
    #: Each fleet's tenants (they are among ``config``'s databases).
    fleets: list[FleetTenants] = field(default_factory=list)

    @classmethod
    def take(
        cls,
        config: PatinaConfig,
        catalog: Catalog,
        orchestrator: Orchestrator,
        now: datetime | None = None,
        *,
        indexed: bool = True,
    ) -> Snapshot:
        """One listing of the bucket, each database's history index (``indexed=False``: every manifest and
        verification record instead), the weekly archives' manifests, and the R2 buckets' newest snapshots."""
        r2 = []
        if config.r2_buckets:
            from .r2.report import r2_status

            r2 = r2_status(config, catalog.store.bucket)
        config, fleets = with_fleet_tenants(config, catalog.store)
        seen = catalog.overview(config.names, indexed=indexed)
        return cls(
            config,
            seen.backups,
            seen.storage.to_dict(),
            orchestrator,
            now or datetime.now(UTC),
            r2,
            seen.rebuilt,
            fleets,
        )

    # -- the last job --------------------------------------------------------------------------

    def last_job(self) -> dict | None:
        """The last night's job: the newest finished nightly run in Dagster's records (an on-demand run when
        there is none), else what the bucket says of the newest day before today."""
        finished = [run for run in self.orchestrator.recent if run.finished]
        nightly = [run for run in finished if run.nightly]
        if nightly or finished:
            return self._job_from_run((nightly or finished)[0])
        return self._job_from_bucket()

    def _job_from_run(self, run: JobRun) -> dict:
        size = sum(b.stored_bytes or 0 for b in self.backups if b.location == DAILY and b.dagster_run_id == run.run_id)
        return {
            "jobId": run.run_id,
            "job": run.job,
            "date": run.day,
            "status": _job_status(run.status, run.databases_failed, run.failed_to_start),
            "error": run.failed_to_start,
            "successful": len(run.databases_ok),
            "failed": len(run.databases_failed),
            "failedDatabases": list(run.databases_failed),
            "totalSize": human_bytes(size),
            "totalSizeBytes": size,
            "duration": _human_seconds(run.duration_seconds),
            "durationSeconds": run.duration_seconds,
            "startedAt": iso(run.started_at),
            "finishedAt": iso(run.ended_at),
            "reason": run.reason,
            "source": "dagster",
        }

    def _job_from_bucket(self) -> dict | None:
        dailies = [b for b in self.backups if b.facts is not None and b.status != DAMAGED]
        if not dailies:
            return None
        # Today's backups can only be on-demand ones (a night backs up the day that ended): skip them if possible.
        today = self.now.date().isoformat()
        day = max((b.day for b in dailies if b.day < today), default=None) or max(b.day for b in dailies)
        that_day = [b for b in dailies if b.day == day]
        names = {b.database for b in that_day}
        missing = [name for name in self.config.names if name not in names]
        started = min(parse_utc_timestamp(b.facts.started_at) for b in that_day)  # type: ignore[union-attr]
        finished = max(parse_utc_timestamp(b.facts.finished_at) for b in that_day)  # type: ignore[union-attr]
        runs = {b.dagster_run_id for b in that_day}
        size = sum(b.stored_bytes or 0 for b in that_day)
        seconds = (finished - started).total_seconds()
        return {
            "jobId": runs.pop() if len(runs) == 1 else None,
            "job": None,
            "date": day,
            "status": "completed" if not missing else "partial_failure",
            "successful": len(that_day),
            "failed": len(missing),
            "failedDatabases": missing,
            "totalSize": human_bytes(size),
            "totalSizeBytes": size,
            "duration": _human_seconds(seconds),
            "durationSeconds": seconds,
            "startedAt": iso(started),
            "finishedAt": iso(finished),
            "reason": None,
            "source": "bucket",
        }

    # -- per database --------------------------------------------------------------------------

    def newest_by_database(self, *, verified: bool = False) -> dict[str, Backup]:
        """Each database's newest backup by capture time that is not damaged (``verified``: that passed
        verification)."""
        newest: dict[str, Backup] = {}
        for backup in self.backups:
            if backup.status == DAMAGED or (verified and backup.status != VERIFIED):
                continue
            current = newest.get(backup.database)
            if current is None or _newness(backup) > _newness(current):
                newest[backup.database] = backup
        return newest

    def databases(self) -> list[dict]:
        newest, verified = self.newest_by_database(), self.newest_by_database(verified=True)
        fleet_of = {name: f.fleet for f in self.fleets for name in f.tenants}
        out = []
        for db in self.config.by_priority():
            backup, good = newest.get(db.name), verified.get(db.name)
            age = (self.now - stored_at(backup)).total_seconds() / 3600 if backup else None
            out.append(
                {
                    "database": db.name,
                    "priority": db.priority,
                    "fleet": fleet_of.get(db.name),
                    "lastBackup": backup.day if backup else None,
                    "lastBackupAt": iso(stored_at(backup)) if backup else None,
                    "lastBackupCapturedLate": backup.captured_late if backup else None,
                    "lastBackupVerification": backup.status if backup else None,
                    "lastVerifiedBackup": good.day if good else None,
                    "lastVerifiedBackupAt": iso(stored_at(good)) if good else None,
                    "ageHours": round(age, 1) if age is not None else None,
                }
            )
        return out

    def verification(self) -> dict:
        """How many backups are verified, failed, not yet verified, damaged; and which failed or are damaged."""
        counts = {status: sum(1 for b in self.backups if b.status == status) for status in STATUSES}
        bad = [
            {
                "database": b.database,
                "date": b.day,
                "location": b.location,
                "verification": b.status,
                "problem": b.problem,
            }
            for b in self.backups
            if b.status in (FAILED, DAMAGED)
        ]
        return {
            "verified": counts[VERIFIED],
            "failed": counts[FAILED],
            "notVerified": counts[NOT_VERIFIED],
            "damaged": counts[DAMAGED],
            "problems": bad,
        }

    def failures_24h(self) -> int | None:
        """Databases that failed in runs started within 24 hours (None without Dagster's records)."""
        if not self.orchestrator.available:
            return None
        since = self.now - timedelta(hours=24)
        return sum(
            len(run.databases_failed)
            for run in self.orchestrator.recent
            if run.started_at is not None and run.started_at >= since
        )

    # -- documents -----------------------------------------------------------------------------

    def current_status(self) -> str:
        if not self.orchestrator.available:
            return "unknown"
        statuses = {run.status for run in self.orchestrator.active}
        if statuses & {"STARTED", "STARTING", "CANCELING"}:
            return "running"
        return "queued" if statuses else "idle"

    def next_scheduled(self) -> datetime | None:
        ticks = self.orchestrator.next_scheduled
        return min(ticks.values()) if ticks else None

    def to_dict(self) -> dict:
        """The spec's ``/status`` document (camelCase, as the spec writes it), with exact numbers added."""
        orch = self.orchestrator
        return {
            "currentStatus": self.current_status(),
            "instance": {"available": orch.available, "detail": orch.detail},
            "running": [_run_summary(run) for run in orch.active],
            "lastBackup": self.last_job(),
            "nextScheduled": iso(self.next_scheduled()),
            "schedules": {name: iso(tick) for name, tick in sorted(orch.next_scheduled.items())},
            "recentJobs": [_run_summary(run) for run in orch.recent[:10]],
            "storage": self.storage,
            "verification": self.verification(),
            "databases": self.databases(),
            "generatedAt": iso(self.now),
            "indexRebuilt": dict(sorted(self.rebuilt.items())),
            "fleets": [
                {
                    "fleet": f.fleet,
                    "discovered": f.discovered,
                    "tenants": len(f.tenants),
                    "tenantNames": list(f.tenants),
                }
                for f in self.fleets
            ],
            **({"r2": self.r2} if self.config.r2_buckets else {}),
        }

    def metrics(self) -> str:
        """Prometheus text exposition (version 0.0.4) of the spec's backup metrics."""
        newest = self.newest_by_database()
        last_success = max((stored_at(b) for b in newest.values()), default=None)
        job = self.last_job()
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

        metric(
            "patina_backup_last_success_timestamp",
            "gauge",
            "Unix time when the data of the newest backup the bucket holds was captured (any database).",
            [("", int(last_success.timestamp()))] if last_success else [],
        )
        metric(
            "patina_backup_database_last_success_timestamp",
            "gauge",
            "Unix time when the data of each configured database's newest backup was captured.",
            [
                (f'{{database="{_label(name)}"}}', int(stored_at(newest[name]).timestamp()))
                for name in self.config.names
                if name in newest
            ],
        )
        metric(
            "patina_backup_last_duration_seconds",
            "gauge",
            "How long the last finished backup job took.",
            [("", job["durationSeconds"])] if job and job["durationSeconds"] is not None else [],
        )
        metric(
            "patina_backup_total_size_bytes",
            "gauge",
            "Bytes stored under daily/ and weekly/ in the bucket.",
            [("", self.storage["totalSizeBytes"])],
        )
        metric(
            "patina_backup_databases_count",
            "gauge",
            "Databases configured for backup.",
            [("", len(self.config.databases))],
        )
        metric(
            "patina_backup_count",
            "gauge",
            "Database-days the bucket can restore.",
            [("", self.storage["totalBackups"])],
        )
        failures = self.failures_24h()
        metric(
            "patina_backup_failures_24h",
            "gauge",
            "Database backups that failed in runs started in the last 24 hours (from Dagster's records).",
            [("", failures)] if failures is not None else [],
        )
        metric(
            "patina_dagster_instance_available",
            "gauge",
            "1 when the Dagster instance could be read, else 0.",
            [("", 1 if self.orchestrator.available else 0)],
        )
        if self.config.r2_buckets:
            newest_r2 = [(f'{{bucket="{_label(row["name"])}"}}', row["newest"]) for row in self.r2 if row["newest"]]
            metric(
                "patina_r2_snapshot_last_success_timestamp",
                "gauge",
                "Unix time when each configured R2 bucket's newest snapshot was published.",
                [(labels, int(parse_utc_timestamp(n["createdAt"]).timestamp())) for labels, n in newest_r2],
            )
            metric(
                "patina_r2_snapshot_objects",
                "gauge",
                "Objects in each R2 bucket's newest snapshot.",
                [(labels, n["objects"]) for labels, n in newest_r2],
            )
            metric(
                "patina_r2_snapshot_bytes",
                "gauge",
                "Bytes of the objects in each R2 bucket's newest snapshot.",
                [(labels, n["bytes"]) for labels, n in newest_r2],
            )
            metric(
                "patina_r2_snapshot_copied_bytes",
                "gauge",
                "Bytes the newest snapshot of each R2 bucket copied (new or changed objects).",
                [(labels, n["copiedBytes"]) for labels, n in newest_r2],
            )
        return "\n".join(lines) + "\n"


def stored_at(backup: Backup) -> datetime:
    """When a backup's data was read from the source (its capture time): what its age is counted from.
    Archives built before capture times were recorded give the end of the backup's day, the earliest its
    nightly can have run (so ages err on the old side)."""
    return backup.captured


def _newness(backup: Backup) -> tuple:
    return (backup.captured, backup.day, backup.location == DAILY)


def _job_status(status: str, failed: tuple[str, ...], failed_to_start: str | None = None) -> str:
    if failed_to_start:
        return "failed_to_start"
    if status == "SUCCESS":
        return "completed"
    if status == "CANCELED":
        return "canceled"
    if status == "FAILURE":
        return "partial_failure" if failed else "failed"
    return status.lower()


def _run_summary(run: JobRun) -> dict:
    return {
        "jobId": run.run_id,
        "job": run.job,
        "date": run.day,
        "status": (
            _job_status(run.status, run.databases_failed, run.failed_to_start) if run.finished else run.status.lower()
        ),
        "error": run.failed_to_start,
        "databases": {"successful": len(run.databases_ok), "failed": len(run.databases_failed)},
        "failedDatabases": list(run.databases_failed),
        "startedAt": iso(run.started_at),
        "durationSeconds": run.duration_seconds,
        "reason": run.reason,
        "trigger": run.trigger,
    }


def _human_seconds(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_status(status: dict) -> str:
    """``patina status`` for people."""
    lines = [
        f"Patina: {status['currentStatus']}"
        + (
            ""
            if status["instance"]["available"]
            else f" (Dagster instance unavailable: {status['instance']['detail']})"
        )
    ]
    for run in status["running"]:
        lines.append(
            f"  {run['status']}: {run['job']} {run['date'] or ''} run {run['jobId']}"
            + (f" ({run['reason']})" if run.get("reason") else "")
        )
    job = status["lastBackup"]
    if job:
        failed = f", failed: {', '.join(job['failedDatabases'])}" if job["failedDatabases"] else ""
        lines.append(
            f"Last backup: {job['date']} {job['status']}: {job['successful']} ok, {job['failed']} failed"
            f"{failed}; {job['totalSize']} in {job['duration'] or '?'}"
            + (f" (run {job['jobId']})" if job["jobId"] else "")
            + (" [from the bucket]" if job["source"] == "bucket" else "")
            + (f"; it backed up nothing: {job['error']}" if job.get("error") else "")
        )
    else:
        lines.append("Last backup: none in the bucket")
    lines.append(f"Next scheduled: {status['nextScheduled'] or 'unknown'}")
    st = status["storage"]
    lines.append(
        f"Storage: {st['totalBackups']} backups ({st['dailyBackups']} daily, {st['weeklyBackups']} in weekly "
        f"archives), {st['totalSize']} in {st['objects']} objects; oldest {st['oldestBackup'] or '-'}, "
        f"newest {st['newestBackup'] or '-'}"
    )
    for problem in st["problems"]:
        lines.append(f"  problem: {problem}")
    checked = status["verification"]
    lines.append(
        f"Verification: {checked['verified']} verified, {checked['failed']} failed, {checked['notVerified']} "
        f"not yet verified, {checked['damaged']} damaged"
    )
    for bad in checked["problems"]:
        lines.append(
            f"  {bad['verification'].upper()}: {bad['database']} {bad['date']} ({bad['location']})"
            + (f": {bad['problem']}" if bad["problem"] else "")
        )
    for fleet in status.get("fleets", ()):
        lines.append(
            f"Fleet {fleet['fleet']}: {fleet['tenants']} tenant(s)"
            + ("" if fleet["discovered"] else " (not discovered yet: no roster in the bucket)")
        )
    rebuilt = status.get("indexRebuilt") or {}
    if rebuilt:
        shown = ", ".join(f"{name} ({why})" for name, why in list(rebuilt.items())[:5])
        lines.append(
            f"History index rebuilt from the listing for {len(rebuilt)} database(s): {shown}"
            + (" ..." if len(rebuilt) > 5 else "")
        )
    lines.append("")
    lines.append(
        table(
            ["DATABASE", "PRIORITY", "LAST BACKUP", "AGE", "VERIFIED", "LAST VERIFIED"],
            [
                [
                    d["database"] + (f" ({d['fleet']})" if d.get("fleet") else ""),
                    d["priority"],
                    (d["lastBackup"] or "none") + (" (captured late)" if d["lastBackupCapturedLate"] else ""),
                    f"{d['ageHours']:.1f} h" if d["ageHours"] is not None else "-",
                    d["lastBackupVerification"] or "-",
                    d["lastVerifiedBackup"] or "none",
                ]
                for d in status["databases"]
            ],
        )
    )
    if status["recentJobs"]:
        lines.append("")
        lines.append(
            table(
                ["RUN", "JOB", "DAY", "STATUS", "OK", "FAILED", "REASON"],
                [
                    [
                        r["jobId"][:8],
                        r["job"],
                        r["date"] or "-",
                        r["status"],
                        str(r["databases"]["successful"]),
                        str(r["databases"]["failed"]),
                        r["reason"] or "",
                    ]
                    for r in status["recentJobs"]
                ],
            )
        )
    return "\n".join(lines)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain left-aligned text table."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [headers, *rows]
    )
