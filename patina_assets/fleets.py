"""Fleets, as plain Python: the D1 databases of an account that match a pattern, each one a tenant.

A fleet (`databases_from:` in patina.yaml) is discovered through the API's database list
(`engine.d1_accounts.list_databases`) each night. Every database found becomes a tenant: a
`DatabaseConfig` of its own, with a database name that satisfies the bucket's rule
(`storage.DATABASE_NAME`, see `tenant_name`), backed up by the same `back_up` as a configured
database. So a tenant's backups have the same key layout (`daily/<day>/<tenant>...`) and `patina
list`, `restore`, `status` and retention work on them unchanged.

Discovery writes the fleet's roster to the bucket (`fleets/<fleet>/roster.json`): which tenant names
stand for which D1 databases, and which tenants have vanished from the account since (their backups
are kept: retention ages them out like any database's). A run backing up one tenant reads the roster,
not the API, to find its database: one list per night, not one per tenant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .backup import Cloudflare, back_up
from .config import DatabaseConfig, FleetConfig, PatinaConfig
from .engine.api_budget import ApiBudget
from .engine.d1_accounts import AccountListing, ListedDatabase, list_databases
from .engine.errors import PatinaError
from .history import write_index
from .storage import (
    DAILY_PREFIX,
    DATABASE_NAME,
    BackupStore,
    ObjectChanged,
    StorageError,
    StorageObjectNotFound,
    parse_daily_key,
)

FLEETS_PREFIX = "fleets/"
ROSTER_VERSION = 1
_DERIVED_SUFFIX_CHARS = 8  # of the D1 uuid, after a name that had to be changed


class FleetError(PatinaError):
    """A fleet's roster is missing or does not name the tenant asked for."""


def roster_key(fleet: str) -> str:
    return f"{FLEETS_PREFIX}{fleet}/roster.json"


def tenant_name(listed: ListedDatabase) -> str:
    """The database name a D1 database is backed up under.

    Its D1 name when that satisfies the bucket's rule (1-63 characters of a-z 0-9 . _ -, starting with a
    letter or digit). Otherwise (upper case, spaces, other characters, too long) a name derived from it:
    lower-cased, every other character turned into '-', cut to 54 characters, followed by '-' and the
    first 8 hex digits of the database's uuid, so two D1 names that fold to one text stay apart and the
    derived name stays the same night after night (`MyShop` -> `myshop-0f2c1d3e`)."""
    if DATABASE_NAME.match(listed.name):
        return listed.name
    folded = re.sub(r"[^a-z0-9._-]", "-", listed.name.lower()).lstrip("._-")[:54].rstrip("-") or "d1"
    suffix = re.sub(r"[^0-9a-f]", "", listed.uuid.lower())[:_DERIVED_SUFFIX_CHARS]
    suffix = suffix or hashlib.sha256(listed.uuid.encode()).hexdigest()[:_DERIVED_SUFFIX_CHARS]
    return f"{folded}-{suffix}"


@dataclass(frozen=True)
class Tenant:
    """One database of a fleet: the name its backups are filed under, and the D1 database it is."""

    name: str
    uuid: str
    d1_name: str

    def database(self, fleet: FleetConfig) -> DatabaseConfig:
        """The tenant as a configured database, for `back_up`."""
        return DatabaseConfig(
            name=self.name,
            source=f"d1://{fleet.account_id}/{self.uuid}",
            description=f"tenant {self.d1_name} of fleet {fleet.name}",
            priority=fleet.priority,
            d1_name=self.d1_name if self.d1_name != self.name else None,
        )


@dataclass(frozen=True)
class Roster:
    """A fleet's tenants as of its last discovery, and those gone since an earlier one."""

    fleet: str
    account_id: str
    name_pattern: str
    discovered_at: str
    tenants: tuple[Tenant, ...]
    vanished: tuple[Tenant, ...] = ()
    #: D1 databases matching the pattern that are not backed up, and why (a name another database has).
    refused: Mapping[str, str] = field(default_factory=dict)
    listed: int = 0  # databases the account listed, matching or not
    requests: int = 0
    seconds: float = 0.0

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tenants)

    def tenant(self, name: str) -> Tenant:
        for tenant in self.tenants:
            if tenant.name == name:
                return tenant
        gone = any(t.name == name for t in self.vanished)
        raise FleetError(
            f"fleet {self.fleet}: {name!r} is "
            + (
                "no longer in the account (it vanished since an earlier discovery); its backups are kept"
                if gone
                else f"not one of its {len(self.tenants)} tenants as of {self.discovered_at}"
            )
            + ": run the fleet's discovery again (the sensor does each night) if it was created since"
        )

    def renamed(self) -> dict[str, str]:
        """D1 names that were not valid database names, and the names their backups are filed under."""
        return {t.d1_name: t.name for t in self.tenants if t.name != t.d1_name}

    def to_json(self) -> str:
        def tenants(items: Iterable[Tenant]) -> list[dict]:
            return [{"name": t.name, "uuid": t.uuid, "d1_name": t.d1_name} for t in items]

        return json.dumps(
            {
                "version": ROSTER_VERSION,
                "fleet": self.fleet,
                "account_id": self.account_id,
                "name_pattern": self.name_pattern,
                "discovered_at": self.discovered_at,
                "tenants": tenants(self.tenants),
                "vanished": tenants(self.vanished),
                "refused": dict(self.refused),
                "listed": self.listed,
                "requests": self.requests,
                "seconds": round(self.seconds, 3),
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Roster:
        data = json.loads(text)

        def tenants(items: list[dict]) -> tuple[Tenant, ...]:
            return tuple(Tenant(name=t["name"], uuid=t["uuid"], d1_name=t["d1_name"]) for t in items)

        return cls(
            fleet=data["fleet"],
            account_id=data["account_id"],
            name_pattern=data["name_pattern"],
            discovered_at=data["discovered_at"],
            tenants=tenants(data["tenants"]),
            vanished=tenants(data.get("vanished", [])),
            refused=dict(data.get("refused", {})),
            listed=int(data.get("listed", 0)),
            requests=int(data.get("requests", 0)),
            seconds=float(data.get("seconds", 0.0)),
        )


def roster_from_listing(
    fleet: FleetConfig,
    listing: AccountListing,
    *,
    taken: Iterable[str] = (),
    previous: Roster | None = None,
    now: datetime | None = None,
) -> Roster:
    """The tenants of `listing`, named (see `tenant_name`). A tenant whose name is `taken` (a configured
    database, or a tenant of another fleet) is refused: two databases filed under one name would mix
    their backups. Tenants of `previous` no longer listed are `vanished` (and stay so until they return)."""
    taken = set(taken)
    tenants: list[Tenant] = []
    refused: dict[str, str] = {}
    seen: set[str] = set()
    for listed in listing.databases:
        name = tenant_name(listed)
        if name in taken or name in seen:
            refused[listed.name] = (
                f"its database name {name!r} is already that of a configured database or of another tenant: "
                "rename one of them (in D1, or in patina.yaml), or narrow the fleet's name_pattern"
            )
            continue
        seen.add(name)
        tenants.append(Tenant(name=name, uuid=listed.uuid, d1_name=listed.name))
    vanished: dict[str, Tenant] = {}
    if previous is not None:
        for tenant in (*previous.tenants, *previous.vanished):
            if tenant.name not in seen:
                vanished.setdefault(tenant.name, tenant)
    return Roster(
        fleet=fleet.name,
        account_id=fleet.account_id,
        name_pattern=fleet.name_pattern,
        discovered_at=(now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        tenants=tuple(tenants),
        vanished=tuple(sorted(vanished.values(), key=lambda t: t.name)),
        refused=refused,
        listed=listing.total_listed,
        requests=listing.requests,
        seconds=round(listing.seconds, 3),
    )


def fleet_cloudflare(fleet: FleetConfig, config: PatinaConfig, env: Mapping[str, str] = os.environ) -> Cloudflare:
    """How the fleet reaches D1: the configured API and the fleet's token (its own, or cloudflare's)."""
    return Cloudflare(
        api_url=config.cloudflare.api_url,  # $PATINA_CLOUDFLARE_API_URL already applied by load_config
        token=env.get(fleet.token_env(config.cloudflare)) or None,
        requests_per_5_minutes=config.cloudflare.requests_per_5_minutes,
    )


def discover(
    fleet: FleetConfig,
    config: PatinaConfig,
    store: BackupStore,
    cloudflare: Cloudflare,
    *,
    budget: ApiBudget | None = None,
    wait_seconds: float | None = None,
    transport=None,
    sleep: Callable[[float], None] = time.sleep,
) -> Roster:
    """List the fleet's account, name its tenants and store the roster in the bucket (a whole object,
    replaced at once). Raises what `list_databases` raises; the stored roster is then unchanged.
    `wait_seconds` bounds the waits for the API budget and for 429s (a sensor's tick is short)."""
    listing = list_databases(
        fleet.account_id,
        token=cloudflare.token or "",
        api_url=cloudflare.api_url,
        name_pattern=fleet.name_pattern,
        requests_per_5_minutes=cloudflare.requests_per_5_minutes,
        budget=budget,
        budget_wait_seconds=wait_seconds,
        **({"rate_limit_patience_seconds": wait_seconds} if wait_seconds is not None else {}),
        transport=transport,
        sleep=sleep,
    )
    taken = set(config.names)
    for other in config.fleets:
        if other.name != fleet.name:
            stored = load_roster(store, other.name, missing_ok=True)
            taken.update(stored.names if stored else ())
    previous = load_roster(store, fleet.name, missing_ok=True)
    roster = roster_from_listing(fleet, listing, taken=taken, previous=previous)
    store.bucket.put_bytes(roster_key(fleet.name), roster.to_json().encode(), content_type="application/json")
    start_histories(store, roster, previous)
    return roster


def start_histories(store: BackupStore, roster: Roster, previous: Roster | None) -> list[str]:
    """An empty history index (history.py) for each tenant new to the roster that has no backup in the bucket.

    The first backup of a database without an index rebuilds it from a listing of all of `daily/`: for a new
    fleet of 1,000 tenants that is 1,000 listings of a `daily/` growing all night. One listing here (keys
    only, and only when there are new tenants) tells which new tenants have no backup at all; their index
    starts empty, so their first nights list nothing of `daily/` but its day folders (and stat the tenant's
    manifest on each: `history.unindexed`, in case a backup missed the index). A new tenant that does have
    backups (a roster lost, a database once configured by hand) is left to the rebuild. Returns the tenants
    given an index."""
    known = set(previous.names) | {t.name for t in previous.vanished} if previous else set()
    new = {t.name for t in roster.tenants} - known
    if not new:
        return []
    try:
        for info in store.bucket.list(DAILY_PREFIX):
            parsed = parse_daily_key(info.key)
            if parsed is not None:
                new.discard(parsed.database)
        with ThreadPoolExecutor(max_workers=8) as pool:  # small PUTs: a sensor's tick is short
            started = list(pool.map(lambda name: _start_history(store, name), sorted(new)))
    except StorageError:
        return []  # each tenant's first backup rebuilds its index from a listing instead, as any database's
    return [name for name, ok in zip(sorted(new), started) if ok]


def _start_history(store: BackupStore, name: str) -> bool:
    """An empty index only where there is none: one written since the listing holds a first backup."""
    try:
        write_index(store, name, {}, None)
    except ObjectChanged:
        return False
    return True


def load_roster(store: BackupStore, fleet: str, *, missing_ok: bool = False) -> Roster | None:
    """The fleet's roster as its last discovery stored it."""
    try:
        return Roster.from_json(store.bucket.get_bytes(roster_key(fleet)))
    except StorageObjectNotFound:
        if missing_ok:
            return None
        raise FleetError(
            f"fleet {fleet}: no roster in the bucket ({roster_key(fleet)}): its discovery has not run yet; "
            "turn on the fleet's discovery sensor, or run it once from the UI"
        ) from None


def with_tenants(config: PatinaConfig, store: BackupStore) -> PatinaConfig:
    """`config` with every fleet's tenants (as their rosters name them) added to its databases, so what reads
    the configured databases (`patina status`) sees each tenant as one. A fleet not discovered yet adds none."""
    tenants = []
    for fleet in config.fleets:
        roster = load_roster(store, fleet.name, missing_ok=True)
        tenants += [tenant.database(fleet) for tenant in (roster.tenants if roster else ())]
    return dataclasses.replace(config, databases=config.databases + tuple(tenants)) if tenants else config


@dataclass
class FleetNight:
    """One night of a fleet, backed up without Dagster (`back_up_fleet`): what it took."""

    day: str
    tenants: int = 0
    stored: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    seconds: float = 0.0


def back_up_fleet(
    fleet: FleetConfig,
    roster: Roster,
    day: str,
    store: BackupStore,
    cloudflare: Cloudflare,
    config: PatinaConfig,
    *,
    concurrency: int | None = None,
) -> FleetNight:
    """Every tenant of `roster` backed up as `day`'s backup, `concurrency` at a time (dump.concurrency),
    all sharing the token's API budget. One tenant's failure does not stop the others; it is reported."""
    night = FleetNight(day=day, tenants=len(roster.tenants))
    started = time.monotonic()

    def one(tenant: Tenant) -> tuple[str, int, str | None]:
        try:
            manifest, _ = back_up(tenant.database(fleet), day, store, cloudflare, config.dump)
        except PatinaError as e:
            return tenant.name, 0, str(e)
        return tenant.name, manifest.requests, None

    with ThreadPoolExecutor(max_workers=concurrency or config.dump.concurrency) as pool:
        for name, requests, problem in pool.map(one, roster.tenants):
            night.requests += requests
            if problem is None:
                night.stored.append(name)
            else:
                night.failed[name] = problem
    night.seconds = time.monotonic() - started
    return night
