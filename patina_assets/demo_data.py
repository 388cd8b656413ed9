"""Deterministic demo copies of Grove's six D1 databases, as local SQLite files.

``generate_demo_databases(directory, day)`` writes ``<directory>/<name>.sqlite`` for each database in
:data:`patina_assets.config.GROVE_DATABASES`. The schemas are believable versions of what the
spec's databases hold, and deliberately use what a faithful SQL dump has to get right:

* groveauth -- users / sessions / oauth_clients / oauth_tokens with foreign keys (ON DELETE
  CASCADE / SET NULL), an AUTOINCREMENT ``audit_log`` whose ``sqlite_sequence`` counter is ahead of
  its largest id (the newest entries were deleted), indexes, a COLLATE NOCASE column, a trigger
  keeping ``users.updated_at`` current, and D1's own ``_cf_KV`` table (a dump must skip it).
* scout-db -- users, searches (JSON results), an append-only credits ledger, referrals, and a
  ``credit_balances`` view over the ledger.
* grove-engine-db -- tenants, members, multi-tenant content with JSON TEXT columns and ISO-8601
  TEXT timestamps, a partial index (``WHERE status = 'published'``), a WITHOUT ROWID ``settings``
  table, and a ``navigation`` table with a column named ``"order"``.
* autumnsgrove-posts -- posts with markdown bodies (quotes, newlines, CRLF, tabs, emoji, lines
  that look like SQL such as ``COMMIT;`` and ``-- Table: users``, and one post over 100 KB, more
  than D1 accepts in one SQL statement), tags, post_tags, and an FTS5 external-content index
  ``posts_fts`` over posts kept in sync by triggers.
* autumnsgrove-git-stats -- repos (with a VIRTUAL generated column), commits with REAL stats,
  millisecond timestamps and signed 64-bit fingerprints (beyond 2**53, including the extremes),
  and daily_stats (with a STORED generated column).
* grove-domain-jobs -- jobs, job_results with BLOB payloads (zlib data, an empty BLOB, a NULL,
  and one 64 KB payload), and a STRICT ``domain_checks`` table whose ``ANY`` column keeps
  INTEGER 1, REAL 1.0 and TEXT '1' apart.

Everything is derived from a seeded RNG and fixed timestamps: the same ``(day, seed,
base_date)`` gives identical table contents. The ``base_date`` state holds about eight months of
history; each day from ``base_date`` up to and including ``day`` adds that day's activity (new
users, sessions, searches, a post, commits, jobs; a few updates and deletions), so successive
nightly dumps differ a little, like a live database: every database has more rows each day.
About 5.5 MB in all at the base date (growing ~3% a week), written in well under two seconds.

Run ``python -m patina_assets.demo_data DIR [--day YYYY-MM-DD]`` to write them by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import sqlite3
import zlib
from collections.abc import Callable
from pathlib import Path

from .config import DEFAULT_START_DATE, GROVE_DATABASES

__all__ = [
    "DEFAULT_SEED",
    "DEMO_BASE_DATE",
    "DEMO_DATABASE_NAMES",
    "DEMO_TABLES",
    "generate_demo_database",
    "generate_demo_databases",
]

DEFAULT_SEED = 20260101
#: The day the base snapshot describes (activity is added for each day from here on).
DEMO_BASE_DATE = DEFAULT_START_DATE
#: Days of history in the base snapshot.
HISTORY_DAYS = 240

DEMO_DATABASE_NAMES: tuple[str, ...] = tuple(g.name for g in GROVE_DATABASES)

#: The ordinary tables (not views, FTS shadow tables or ``_cf_*``/``sqlite_*`` tables) of each database.
DEMO_TABLES: dict[str, tuple[str, ...]] = {
    "groveauth": ("users", "sessions", "oauth_clients", "oauth_tokens", "audit_log"),
    "scout-db": ("users", "searches", "credit_ledger", "referrals"),
    "grove-engine-db": ("tenants", "tenant_members", "content", "settings", "media", "navigation"),
    "autumnsgrove-posts": ("posts", "tags", "post_tags"),
    "autumnsgrove-git-stats": ("repos", "commits", "daily_stats", "languages"),
    "grove-domain-jobs": ("jobs", "job_results", "domain_checks"),
}

DAY = 86_400

# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

FIRST_NAMES = (
    "Autumn",
    "River",
    "Sage",
    "Wren",
    "Rowan",
    "Juniper",
    "Hazel",
    "Ash",
    "Linden",
    "Maple",
    "José",
    "Zoë",
    "Renée",
    "Søren",
    "Björn",
    "Ana",
    "Chidi",
    "Aiko",
    "Mateo",
    "Priya",
    "Nadia",
    "Émile",
    "Ines",
    "Kai",
    "Luca",
    "Mira",
    "Noor",
    "Oskar",
    "Quinn",
    "Ravi",
    "Siobhán",
    "Tomás",
    "Yara",
    "Zainab",
    "李",
    "Đức",
    "Łucja",
    "Ngozi",
    "Aroha",
    "Ilse",
)
LAST_NAMES = (
    "O'Brien",
    "Nguyen",
    "García",
    "Müller",
    "Okafor",
    "Kowalski",
    "Tanaka",
    "Silva",
    "Haddad",
    "Larsen",
    "Fairweather",
    "Thornbury",
    "Ashdown",
    "Birchwood",
    "D'Angelo",
    "Van der Berg",
    "McAllister",
    "Ó Súilleabháin",
    "Schröder",
    "Petrov",
    "Khan",
    "Moreau",
    "Lindqvist",
    "Abara",
    "Castillo",
    "Yilmaz",
    "Novak",
    "Quill",
    "Reyes",
    "Brook",
)
DOMAINS = (
    "gmail.com",
    "proton.me",
    "fastmail.com",
    "icloud.com",
    "outlook.com",
    "grove.place",
    "hey.com",
    "posteo.de",
    "example.org",
)
WORDS = (
    "grove",
    "moss",
    "lantern",
    "cedar",
    "quiet",
    "morning",
    "ember",
    "river",
    "fern",
    "lichen",
    "copper",
    "patina",
    "thread",
    "garden",
    "season",
    "autumn",
    "harvest",
    "root",
    "canopy",
    "trail",
    "ledger",
    "signal",
    "archive",
    "meadow",
    "orchard",
    "sprout",
    "tender",
    "bramble",
    "willow",
    "stone",
    "letter",
    "window",
    "kettle",
    "notebook",
    "shelf",
    "compass",
    "sketch",
    "blossom",
    "ripple",
    "hollow",
    "build",
    "deploy",
    "worker",
    "database",
    "backup",
    "cache",
    "render",
    "schema",
    "query",
    "index",
    "small",
    "slow",
    "warm",
    "bright",
    "gentle",
    "steady",
    "patient",
    "curious",
    "honest",
    "wild",
)
TAGS = (
    ("meta", "#8b5cf6"),
    ("life", "#22c55e"),
    ("code", "#3b82f6"),
    ("grove", "#16a34a"),
    ("cloudflare", "#f97316"),
    ("sqlite", "#0ea5e9"),
    ("writing", "#eab308"),
    ("gardening", "#65a30d"),
    ("music", "#ec4899"),
    ("books", "#a16207"),
    ("mental-health", "#14b8a6"),
    ("tools", "#64748b"),
    ("svelte", "#ff3e00"),
    ("rust", "#b7410e"),
    ("python", "#3776ab"),
    ("design", "#db2777"),
    ("community", "#7c3aed"),
    ("privacy", "#475569"),
    ("weeknotes", "#0d9488"),
    ("recipes", "#ca8a04"),
    ("photography", "#6366f1"),
    ("travel", "#0891b2"),
    ("games", "#dc2626"),
    ("accessibility", "#2563eb"),
)
EMOJI = ("🌲", "🍂", "✨", "🌿", "☕", "📚", "🪴", "🔥", "🌙", "💾", "🦊", "🍄", "🧵", "🌧️", "👩🏽‍💻")
USER_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "GroveApp/2.3.1 (Android 15; Pixel 8)",
    None,
)
AUDIT_EVENTS = (
    "login",
    "login",
    "login",
    "logout",
    "login_failed",
    "password_reset_requested",
    "oauth_grant",
    "oauth_revoke",
    "email_verified",
    "session_revoked",
    "mfa_enabled",
)
SCOPES = ("openid", "profile", "email", "posts:read", "posts:write", "scout:search", "domains:read")
STORES = ("Bookshop", "REI", "Etsy", "Thriftbooks", "Patagonia Worn Wear", "Back Market", "Local Co-op")


def _words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _sentence(rng: random.Random) -> str:
    s = _words(rng, 6, 16)
    s = s[0].upper() + s[1:]
    roll = rng.random()
    if roll < 0.08:
        s += f" {rng.choice(EMOJI)}"
    elif roll < 0.14:
        s = f'"{s}," she said'
    elif roll < 0.2:
        s += " -- isn't it"
    return s + rng.choice((".", ".", ".", "!", "?", "…"))


def _paragraph(rng: random.Random, lo: int = 2, hi: int = 6) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(lo, hi)))


def _hex_id(rng: random.Random, prefix: str, bits: int = 64) -> str:
    return f"{prefix}{rng.getrandbits(bits):0{bits // 4}x}"


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:]}"


def _sha256_hex(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return "2001:db8:" + ":".join(f"{rng.getrandbits(16):x}" for _ in range(6))
    return f"{rng.choice((73, 98, 145, 172, 203, 24, 81))}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _person(rng: random.Random, taken: set[str]) -> tuple[str, str]:
    while True:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = "".join(c for c in f"{first}.{last}".lower() if c.isascii() and (c.isalnum() or c == "."))
        local = local.strip(".") or "grove"
        if rng.random() < 0.5:
            local += str(rng.randint(1, 999))
        email = f"{local}@{rng.choice(DOMAINS)}"
        if email.lower() not in taken:
            taken.add(email.lower())
            return f"{first} {last}", email


class _Clock:
    """Timestamps for one database: history before ``base`` and activity on later days."""

    def __init__(self, base_date: dt.date):
        self.base = int(dt.datetime(base_date.year, base_date.month, base_date.day, tzinfo=dt.UTC).timestamp())

    def history(self, rng: random.Random, n: int, days: int = HISTORY_DAYS) -> list[int]:
        """``n`` sorted times spread over the last ``days`` days before the base time."""
        return sorted(self.base - rng.randint(60, days * DAY) for _ in range(n))

    def on(self, day_index: int, rng: random.Random, n: int) -> list[int]:
        """``n`` sorted times during day ``day_index`` (0 is the base date itself)."""
        start = self.base + day_index * DAY
        return sorted(start + rng.randint(0, DAY - 1) for _ in range(n))


# ---------------------------------------------------------------------------------------------
# groveauth
# ---------------------------------------------------------------------------------------------

GROVEAUTH_SCHEMA = """
CREATE TABLE users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE COLLATE NOCASE,
  display_name TEXT,
  avatar_url TEXT,
  email_verified INTEGER NOT NULL DEFAULT 0 CHECK (email_verified IN (0, 1)),
  is_admin INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  last_login_at INTEGER
);
CREATE TABLE sessions (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  token_hash TEXT NOT NULL UNIQUE,
  ip_address TEXT,
  user_agent TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  revoked_at INTEGER
);
CREATE INDEX idx_sessions_user ON sessions(user_id);
CREATE INDEX idx_sessions_expires ON sessions(expires_at);
CREATE TABLE oauth_clients (
  client_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  client_secret_hash TEXT NOT NULL,
  redirect_uris TEXT NOT NULL,          -- JSON array
  allowed_scopes TEXT NOT NULL,
  is_first_party INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
);
CREATE TABLE oauth_tokens (
  id INTEGER PRIMARY KEY,
  client_id TEXT NOT NULL REFERENCES oauth_clients(client_id),
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  access_token_hash TEXT NOT NULL UNIQUE,
  refresh_token_hash TEXT UNIQUE,
  scope TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_oauth_tokens_user_client ON oauth_tokens(user_id, client_id);
CREATE TABLE audit_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT REFERENCES users(id) ON DELETE SET NULL,
  event TEXT NOT NULL,
  ip_address TEXT,
  details TEXT,                         -- JSON
  created_at INTEGER NOT NULL
);
CREATE INDEX idx_audit_log_user_time ON audit_log(user_id, created_at DESC);
CREATE TRIGGER users_touch_updated_at AFTER UPDATE ON users
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
  UPDATE users SET updated_at = CAST(strftime('%s', 'now') AS INTEGER) WHERE id = NEW.id;
END;
CREATE TABLE _cf_KV (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
"""

OAUTH_CLIENTS = (
    ("grove-engine", "Grove", 1, ["https://grove.place/auth/callback", "https://*.grove.place/auth/callback"]),
    ("groveScout", "GroveScout", 1, ["https://scout.grove.place/auth/callback"]),
    ("forage", "Forage", 1, ["https://forage.grove.place/auth/callback"]),
    ("patina-admin", "Patina dashboard", 1, ["https://patina.grove.place/auth/callback"]),
    ("autumnsgrove", "AutumnsGrove", 1, ["https://autumnsgrove.com/auth/callback"]),
    ("meadow-ios", "Meadow for iOS", 0, ["place.grove.meadow://oauth"]),
    ("cli-dev", "grove CLI (dev)", 0, ["http://127.0.0.1:8976/callback", "http://localhost:8976/callback"]),
    ("acme-widgets", 'ACME "Widgets" & Co\'s integration', 0, ["https://acme.example.org/o/grove?x=1&y=2"]),
)


class _Groveauth:
    schema = GROVEAUTH_SCHEMA

    def __init__(self, conn: sqlite3.Connection, clock: _Clock):
        self.conn, self.clock = conn, clock
        self.emails: set[str] = set()

    def _user_row(self, rng: random.Random, t: int) -> tuple:
        name, email = _person(rng, self.emails)
        if rng.random() < 0.08:
            email = email.upper() if rng.random() < 0.5 else email.capitalize()
        uid = _hex_id(rng, "usr_")
        avatar = f"https://cdn.grove.place/avatars/{uid}.webp" if rng.random() < 0.6 else None
        return (uid, email, name if rng.random() > 0.05 else None, avatar, int(rng.random() < 0.85), 0, t, t, None)

    def _session(self, rng: random.Random, uid: str, t: int) -> tuple:
        sid = _hex_id(rng, "ses_", 96)
        revoked = t + rng.randint(60, 10 * DAY) if rng.random() < 0.1 else None
        return (sid, uid, _sha256_hex("session", sid), _ip(rng), rng.choice(USER_AGENTS), t, t + 30 * DAY, revoked)

    def _token(self, rng: random.Random, uid: str, t: int) -> tuple:
        client = rng.choice(OAUTH_CLIENTS)[0]
        scope = " ".join(sorted(rng.sample(SCOPES, rng.randint(1, 4))))
        access = _hex_id(rng, "at_", 128)
        refresh = _sha256_hex("refresh", access) if rng.random() < 0.7 else None
        return (client, uid, _sha256_hex("access", access), refresh, scope, t, t + 3600, int(rng.random() < 0.15))

    def _audit(self, rng: random.Random, uid: str | None, t: int) -> tuple:
        event = rng.choice(AUDIT_EVENTS)
        details: dict = {"method": rng.choice(("password", "passkey", "magic_link", "google", "github"))}
        if event.startswith("oauth"):
            details = {"client_id": rng.choice(OAUTH_CLIENTS)[0], "scope": rng.choice(SCOPES)}
        elif event == "login_failed":
            details = {
                "reason": rng.choice(("bad_password", "unknown_email", "rate_limited")),
                "attempt": rng.randint(1, 5),
            }
        return (uid, event, _ip(rng), json.dumps(details, separators=(",", ":")), t)

    def build(self, rng: random.Random) -> None:
        c, clock = self.conn, self.clock
        c.executemany(
            "INSERT INTO _cf_KV VALUES (?, ?)",
            [("__cf_kv_version", b"\x01"), ("d1_migrations_applied", b"0007_oauth_refresh_tokens")],
        )
        t0 = clock.base - HISTORY_DAYS * DAY
        c.executemany(
            "INSERT INTO oauth_clients VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    cid,
                    name,
                    _sha256_hex("client-secret", cid),
                    json.dumps(uris),
                    " ".join(SCOPES),
                    first,
                    t0 + i * 3 * DAY,
                )
                for i, (cid, name, first, uris) in enumerate(OAUTH_CLIENTS)
            ],
        )
        users = [self._user_row(rng, t) for t in clock.history(rng, 600)]
        users[0] = ("usr_0000000000000001", "autumn@grove.place", "Autumn", None, 1, 1, t0, t0, None)
        c.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", users)
        uids = [u[0] for u in users]
        c.executemany(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [self._session(rng, rng.choice(uids), t) for t in clock.history(rng, 700, 60)],
        )
        c.executemany(
            "INSERT INTO oauth_tokens (client_id, user_id, access_token_hash, refresh_token_hash, scope,"
            " issued_at, expires_at, revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [self._token(rng, rng.choice(uids), t) for t in clock.history(rng, 600)],
        )
        c.executemany(
            "INSERT INTO audit_log (user_id, event, ip_address, details, created_at) VALUES (?, ?, ?, ?, ?)",
            [self._audit(rng, rng.choice(uids) if rng.random() < 0.95 else None, t) for t in clock.history(rng, 1800)],
        )
        self._logins(rng, uids, clock.history(rng, 400, 30))
        self._roll_back_newest_audit()

    def _logins(self, rng: random.Random, uids: list[str], times: list[int]) -> None:
        self.conn.executemany(
            "UPDATE users SET last_login_at = ?1, updated_at = MAX(updated_at + 1, ?1) WHERE id = ?2",
            [(t, rng.choice(uids)) for t in times],
        )

    def evolve(self, rng: random.Random, day_index: int) -> None:
        c, clock = self.conn, self.clock
        start = clock.base + day_index * DAY
        new = [self._user_row(rng, t) for t in clock.on(day_index, rng, rng.randint(2, 6))]
        c.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", new)
        uids = [r[0] for r in c.execute("SELECT id FROM users ORDER BY id")]
        c.executemany(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [self._session(rng, rng.choice(uids), t) for t in clock.on(day_index, rng, rng.randint(8, 16))],
        )
        c.execute("DELETE FROM sessions WHERE expires_at < ?", (start - 30 * DAY,))
        c.executemany(
            "INSERT INTO oauth_tokens (client_id, user_id, access_token_hash, refresh_token_hash, scope,"
            " issued_at, expires_at, revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [self._token(rng, rng.choice(uids), t) for t in clock.on(day_index, rng, rng.randint(3, 8))],
        )
        c.executemany(
            "INSERT INTO audit_log (user_id, event, ip_address, details, created_at) VALUES (?, ?, ?, ?, ?)",
            [self._audit(rng, rng.choice(uids), t) for t in clock.on(day_index, rng, rng.randint(10, 25))],
        )
        self._logins(rng, uids, clock.on(day_index, rng, rng.randint(8, 16)))
        if day_index % 9 == 4:  # someone deletes their account: sessions and tokens cascade, audit keeps NULL
            c.execute("DELETE FROM users WHERE id = ? AND is_admin = 0", (rng.choice(uids),))
        self._roll_back_newest_audit()

    def _roll_back_newest_audit(self) -> None:
        # The newest audit entries were rolled back: sqlite_sequence stays ahead of max(id).
        self.conn.execute("DELETE FROM audit_log WHERE id > (SELECT MAX(id) - 2 FROM audit_log)")


# ---------------------------------------------------------------------------------------------
# scout-db
# ---------------------------------------------------------------------------------------------

SCOUT_SCHEMA = """
CREATE TABLE users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  plan TEXT NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'seedling', 'sapling', 'oak')),
  referral_code TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
);
CREATE TABLE searches (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  query TEXT NOT NULL,
  filters TEXT,                        -- JSON
  status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'complete', 'failed')),
  result_count INTEGER,
  results_json TEXT,                   -- JSON array
  credits_used INTEGER NOT NULL DEFAULT 1,
  duration_ms INTEGER,
  created_at INTEGER NOT NULL,
  completed_at INTEGER
);
CREATE INDEX idx_searches_user_created ON searches(user_id, created_at DESC);
CREATE INDEX idx_searches_status ON searches(status);
CREATE TABLE credit_ledger (
  id INTEGER PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  delta INTEGER NOT NULL,
  reason TEXT NOT NULL CHECK (reason IN ('signup_bonus', 'purchase', 'search', 'refund', 'referral_bonus', 'admin_adjustment')),
  search_id TEXT REFERENCES searches(id) ON DELETE SET NULL,
  note TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX idx_credit_ledger_user ON credit_ledger(user_id, created_at);
CREATE TABLE referrals (
  id INTEGER PRIMARY KEY,
  referrer_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  referred_id TEXT NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
  status TEXT NOT NULL CHECK (status IN ('pending', 'rewarded', 'expired')),
  reward_credits INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  rewarded_at INTEGER,
  CHECK (referrer_id <> referred_id)
);
CREATE VIEW credit_balances AS
  SELECT u.id AS user_id,
         u.email,
         u.plan,
         COALESCE(SUM(l.delta), 0) AS balance,
         COUNT(l.id) AS entries,
         MAX(l.created_at) AS last_activity
    FROM users u
    LEFT JOIN credit_ledger l ON l.user_id = u.id
   GROUP BY u.id;
"""

SEARCH_THINGS = (
    "rain jacket",
    "cast iron skillet",
    "used ThinkPad X1",
    "fountain pen",
    "bike trailer",
    "standing desk",
    "kindle paperwhite",
    "hiking boots size 9",
    "linen duvet",
    "mechanical keyboard",
    "sourdough starter kit",
    "vintage camera 35mm",
    "heirloom tomato seeds",
    "wool socks",
    "ergonomic chair",
    "tent 2 person",
    "espresso grinder",
    "noise cancelling headphones",
)
SEARCH_MODS = (
    "cheap",
    "under $100",
    "refurbished",
    "sustainable",
    "local pickup",
    "ethically made",
    "",
    "",
    "best",
    "for kids",
    "waterproof",
    '"exact phrase"',
    "women's",
    "men's",
    "near Portland",
)


class _Scout:
    schema = SCOUT_SCHEMA

    def __init__(self, conn: sqlite3.Connection, clock: _Clock):
        self.conn, self.clock = conn, clock
        self.emails: set[str] = set()
        self.ledger: list[tuple] = []

    def _user(self, rng: random.Random, t: int) -> tuple:
        _, email = _person(rng, self.emails)
        plan = rng.choices(("free", "seedling", "sapling", "oak"), (70, 18, 9, 3))[0]
        return (_hex_id(rng, "sc_"), email, plan, f"{rng.getrandbits(32):08X}", t)

    def _search(self, rng: random.Random, uid: str, t: int) -> tuple:
        query = f"{rng.choice(SEARCH_MODS)} {rng.choice(SEARCH_THINGS)}".strip()
        status = rng.choices(("complete", "failed", "running", "pending"), (90, 6, 2, 2))[0]
        filters = json.dumps(
            {
                "max_price": rng.choice((None, 50, 100, 250, 1000)),
                "condition": rng.choice(("any", "new", "used")),
                "ships_to": rng.choice(("US", "CA", "GB", "DE", "NZ")),
            },
            sort_keys=True,
        )
        results = None
        count = None
        if status == "complete":
            items = [
                {
                    "title": f"{_words(rng, 2, 5).title()} {rng.choice(SEARCH_THINGS)}",
                    "store": rng.choice(STORES),
                    "price": round(rng.uniform(4, 900), 2),
                    "url": f"https://shop.example.com/p/{rng.getrandbits(40):x}",
                    "score": round(rng.random(), 4),
                }
                for _ in range(rng.randint(0, 4))
            ]
            results, count = json.dumps(items, ensure_ascii=False), len(items)
        duration = rng.randint(800, 45_000) if status in ("complete", "failed") else None
        credits = rng.choice((1, 1, 1, 2, 3))
        return (
            _hex_id(rng, "srch_"),
            uid,
            query,
            filters,
            status,
            count,
            results,
            credits,
            duration,
            t,
            t + duration // 1000 if duration else None,
        )

    def build(self, rng: random.Random) -> None:
        c, clock = self.conn, self.clock
        users = [self._user(rng, t) for t in clock.history(rng, 500)]
        c.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?)", users)
        self._after_signup(rng, users)
        uids = [u[0] for u in users]
        self._searches(rng, uids, clock.history(rng, 900))

    def _after_signup(self, rng: random.Random, users: list[tuple]) -> None:
        c = self.conn
        existing = [r[0] for r in c.execute("SELECT id FROM users ORDER BY created_at, id LIMIT 400")]
        ledger, referrals = [], []
        for uid, _, plan, _, t in users:
            ledger.append((uid, 10, "signup_bonus", None, None, t))
            if plan != "free":
                ledger.append(
                    (
                        uid,
                        {"seedling": 100, "sapling": 300, "oak": 1000}[plan],
                        "purchase",
                        None,
                        f"Stripe charge ch_{rng.getrandbits(48):012x}",
                        t + rng.randint(60, 3 * DAY),
                    )
                )
            if rng.random() < 0.25 and existing:
                referrer = rng.choice(existing)
                if referrer != uid:
                    rewarded = rng.random() < 0.7
                    referrals.append(
                        (
                            referrer,
                            uid,
                            "rewarded" if rewarded else "pending",
                            25 if rewarded else 0,
                            t,
                            t + DAY if rewarded else None,
                        )
                    )
                    if rewarded:
                        ledger.append((referrer, 25, "referral_bonus", None, f"referred {uid}", t + DAY))
        c.executemany(
            "INSERT INTO credit_ledger (user_id, delta, reason, search_id, note, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            ledger,
        )
        c.executemany(
            "INSERT OR IGNORE INTO referrals (referrer_id, referred_id, status, reward_credits, created_at,"
            " rewarded_at) VALUES (?, ?, ?, ?, ?, ?)",
            referrals,
        )

    def _searches(self, rng: random.Random, uids: list[str], times: list[int]) -> None:
        rows = [self._search(rng, rng.choice(uids), t) for t in times]
        self.conn.executemany("INSERT INTO searches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        ledger = []
        for r in rows:
            ledger.append((r[1], -r[7], "search", r[0], None, r[9]))
            if r[4] == "failed":
                ledger.append((r[1], r[7], "refund", r[0], "automatic refund: upstream timeout", r[9] + 60))
        if rows and rng.random() < 0.3:
            r = rng.choice(rows)
            ledger.append(
                (
                    r[1],
                    rng.choice((5, 20, -5)),
                    "admin_adjustment",
                    None,
                    "Goodwill credit -- see ticket #" + str(rng.randint(100, 999)) + '; user said "thanks!"',
                    r[9] + 120,
                )
            )
        self.conn.executemany(
            "INSERT INTO credit_ledger (user_id, delta, reason, search_id, note, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            ledger,
        )

    def evolve(self, rng: random.Random, day_index: int) -> None:
        c, clock = self.conn, self.clock
        self.emails.update(r[0].lower() for r in c.execute("SELECT email FROM users"))
        new = [self._user(rng, t) for t in clock.on(day_index, rng, rng.randint(1, 4))]
        c.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?)", new)
        self._after_signup(rng, new)
        uids = [r[0] for r in c.execute("SELECT id FROM users ORDER BY id")]
        self._searches(rng, uids, clock.on(day_index, rng, rng.randint(3, 9)))
        # Searches left running yesterday finish today.
        c.execute(
            "UPDATE searches SET status = 'complete', result_count = 0, results_json = '[]',"
            " completed_at = created_at + 30, duration_ms = 30000"
            " WHERE status IN ('pending', 'running') AND created_at < ?",
            (clock.base + day_index * DAY,),
        )


# ---------------------------------------------------------------------------------------------
# grove-engine-db
# ---------------------------------------------------------------------------------------------

ENGINE_SCHEMA = """
CREATE TABLE tenants (
  id TEXT PRIMARY KEY,
  subdomain TEXT NOT NULL UNIQUE,
  display_name TEXT NOT NULL,
  owner_email TEXT NOT NULL,
  plan TEXT NOT NULL DEFAULT 'seedling',
  theme TEXT,                                   -- JSON
  custom_domain TEXT UNIQUE,
  storage_used_bytes INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL DEFAULT (datetime('now')),
  updated_at TEXT NOT NULL DEFAULT (datetime('now')),
  deleted_at TEXT
);
CREATE TABLE tenant_members (
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'viewer')),
  invited_at TEXT,
  joined_at TEXT,
  PRIMARY KEY (tenant_id, user_id)
);
CREATE TABLE content (
  id INTEGER PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('post', 'page', 'note', 'gallery')),
  slug TEXT NOT NULL,
  title TEXT NOT NULL,
  body_markdown TEXT,
  frontmatter TEXT,                             -- JSON
  status TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published', 'archived')),
  word_count INTEGER,
  published_at TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  UNIQUE (tenant_id, kind, slug)
);
CREATE INDEX idx_content_published ON content(tenant_id, published_at DESC) WHERE status = 'published';
CREATE TABLE settings (
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,                          -- JSON
  updated_at TEXT NOT NULL,
  PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;
CREATE TABLE media (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  r2_key TEXT NOT NULL UNIQUE,
  content_type TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  width INTEGER,
  height INTEGER,
  alt_text TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX idx_media_tenant ON media(tenant_id, created_at);
CREATE TABLE navigation (
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  "order" INTEGER NOT NULL,
  label TEXT NOT NULL,
  href TEXT NOT NULL,
  PRIMARY KEY (tenant_id, "order")
);
"""

SETTING_KEYS = (
    "site.title",
    "site.description",
    "theme.accent",
    "theme.font",
    "comments.enabled",
    "analytics.enabled",
    "seo.og_image",
    "feed.items",
    "nav.show_search",
    "locale",
)


class _Engine:
    schema = ENGINE_SCHEMA

    def __init__(self, conn: sqlite3.Connection, clock: _Clock):
        self.conn, self.clock = conn, clock
        self.emails: set[str] = set()
        self.subdomains: set[str] = set()

    def _tenant(self, rng: random.Random, t: int) -> tuple:
        name, email = _person(rng, self.emails)
        while True:
            sub = f"{rng.choice(WORDS)}{rng.choice(WORDS)}{rng.randint(1, 99)}"
            if sub not in self.subdomains:
                self.subdomains.add(sub)
                break
        theme = {
            "accent": f"#{rng.getrandbits(24):06x}",
            "font": rng.choice(("lexend", "atkinson", "serif")),
            "dark_mode": rng.choice((True, False, None)),
            "season": rng.choice(("autumn", "winter", "spring")),
        }
        plan = rng.choices(("seedling", "sapling", "oak", "evergreen"), (60, 25, 12, 3))[0]
        custom = f"{sub}.blog" if plan in ("oak", "evergreen") and rng.random() < 0.6 else None
        return (
            _hex_id(rng, "tn_"),
            sub,
            f"{name.split()[0]}'s {rng.choice(WORDS).title()}",
            email,
            plan,
            json.dumps(theme),
            custom,
            rng.randint(0, 2_000_000_000),
            _iso(t),
            _iso(t),
            None,
        )

    def _add_tenant(self, rng: random.Random, t: int) -> str:
        row = self._tenant(rng, t)
        c = self.conn
        c.execute("INSERT INTO tenants VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        tid = row[0]
        members = [(tid, _hex_id(rng, "usr_"), "owner", None, _iso(t))]
        for _ in range(rng.randint(0, 4)):
            inv = t + rng.randint(DAY, 30 * DAY)
            members.append(
                (
                    tid,
                    _hex_id(rng, "usr_"),
                    rng.choice(("admin", "editor", "viewer")),
                    _iso(inv),
                    _iso(inv + rng.randint(60, 5 * DAY)) if rng.random() < 0.8 else None,
                )
            )
        c.executemany("INSERT OR IGNORE INTO tenant_members VALUES (?, ?, ?, ?, ?)", members)
        values = {
            "site.title": json.dumps(row[2], ensure_ascii=False),
            "site.description": json.dumps(_sentence(rng), ensure_ascii=False),
            "theme.accent": json.dumps(f"#{rng.getrandbits(24):06x}"),
            "theme.font": json.dumps(rng.choice(("lexend", "atkinson", "serif"))),
            "comments.enabled": json.dumps(rng.random() < 0.5),
            "analytics.enabled": json.dumps(rng.random() < 0.3),
            "seo.og_image": json.dumps({"r2_key": f"{tid}/og.png", "w": 1200, "h": 630}),
            "feed.items": json.dumps(rng.choice((10, 20, 50))),
            "nav.show_search": json.dumps(True),
            "locale": json.dumps(rng.choice(("en", "en-GB", "de", "pt-BR", "ja"))),
        }
        keys = rng.sample(SETTING_KEYS, rng.randint(4, len(SETTING_KEYS)))
        c.executemany("INSERT INTO settings VALUES (?, ?, ?, ?)", [(tid, k, values[k], _iso(t)) for k in sorted(keys)])
        nav = [
            ("Home", "/"),
            ("Blog", "/blog"),
            ("About", "/about"),
            ("Now", "/now"),
            ("Contact", "mailto:hi@grove.place"),
        ]
        c.executemany(
            'INSERT INTO navigation (tenant_id, "order", label, href) VALUES (?, ?, ?, ?)',
            [(tid, i * 10, label, href) for i, (label, href) in enumerate(nav[: rng.randint(2, 5)])],
        )
        return tid

    def _content(self, rng: random.Random, tid: str, t: int) -> tuple:
        kind = rng.choices(("post", "page", "note", "gallery"), (60, 10, 25, 5))[0]
        title = _words(rng, 2, 7).title()
        body = "\n\n".join(_paragraph(rng, 1, 4) for _ in range(rng.randint(1, 4)))
        if rng.random() < 0.2:
            body = f"# {title}\n\n{body}\n\n> {_sentence(rng)}\n"
        status = rng.choices(("draft", "published", "archived"), (25, 70, 5))[0]
        front = {
            "tags": rng.sample(WORDS, rng.randint(0, 3)),
            "cover": None if rng.random() < 0.6 else f"{tid}/covers/{rng.getrandbits(32):08x}.jpg",
            "reading_time": rng.randint(1, 12),
        }
        slug = "-".join(title.lower().split())[:60] + f"-{rng.getrandbits(16):04x}"
        return (
            tid,
            kind,
            slug,
            title,
            body if kind != "gallery" else None,
            json.dumps(front),
            status,
            len(body.split()),
            _iso(t + 600) if status != "draft" else None,
            _iso(t),
            _iso(t),
        )

    def _media(self, rng: random.Random, tid: str, t: int) -> tuple:
        mid = _hex_id(rng, "m_")
        ctype, ext = rng.choice(
            (
                ("image/webp", "webp"),
                ("image/jpeg", "jpg"),
                ("image/png", "png"),
                ("image/gif", "gif"),
                ("application/pdf", "pdf"),
            )
        )
        is_img = ctype.startswith("image/")
        return (
            mid,
            tid,
            f"{tid}/media/{mid}.{ext}",
            ctype,
            rng.randint(2_000, 8_000_000),
            rng.randint(200, 4000) if is_img else None,
            rng.randint(200, 4000) if is_img else None,
            _sentence(rng) if is_img and rng.random() < 0.6 else None,
            _iso(t),
        )

    def build(self, rng: random.Random) -> None:
        c, clock = self.conn, self.clock
        tids = [self._add_tenant(rng, t) for t in clock.history(rng, 80)]
        created = dict(c.execute("SELECT id, created_at FROM tenants"))
        rows, media = [], []
        for t in clock.history(rng, 450):
            tid = rng.choice([x for x in tids if created[x] <= _iso(t)] or tids[:1])
            rows.append(self._content(rng, tid, t))
        for t in clock.history(rng, 300):
            media.append(self._media(rng, rng.choice(tids), t))
        c.executemany(
            "INSERT OR IGNORE INTO content (tenant_id, kind, slug, title, body_markdown, frontmatter, status,"
            " word_count, published_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        c.executemany("INSERT INTO media VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", media)
        # A tenant that left: soft-deleted, content archived.
        gone = tids[7]
        c.execute(
            "UPDATE tenants SET deleted_at = ?, updated_at = ? WHERE id = ?",
            (_iso(clock.base - 5 * DAY), _iso(clock.base - 5 * DAY), gone),
        )

    def evolve(self, rng: random.Random, day_index: int) -> None:
        c, clock = self.conn, self.clock
        self.emails.update(r[0].lower() for r in c.execute("SELECT owner_email FROM tenants"))
        if day_index % 3 == 0:
            self._add_tenant(rng, clock.on(day_index, rng, 1)[0])
        tids = [r[0] for r in c.execute("SELECT id FROM tenants WHERE deleted_at IS NULL ORDER BY id")]
        rows = [self._content(rng, rng.choice(tids), t) for t in clock.on(day_index, rng, rng.randint(1, 4))]
        c.executemany(
            "INSERT OR IGNORE INTO content (tenant_id, kind, slug, title, body_markdown, frontmatter, status,"
            " word_count, published_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        c.executemany(
            "INSERT INTO media VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [self._media(rng, rng.choice(tids), t) for t in clock.on(day_index, rng, rng.randint(0, 3))],
        )
        # Publish a few drafts, tweak a setting.
        now = _iso(clock.on(day_index, rng, 1)[0])
        drafts = [r[0] for r in c.execute("SELECT id FROM content WHERE status = 'draft' ORDER BY id")]
        for cid in rng.sample(drafts, min(len(drafts), rng.randint(1, 3))):
            c.execute(
                "UPDATE content SET status = 'published', published_at = ?, updated_at = ? WHERE id = ?",
                (now, now, cid),
            )
        tid = rng.choice(tids)
        c.execute(
            "INSERT INTO settings VALUES (?, 'theme.accent', ?, ?) ON CONFLICT (tenant_id, key) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (tid, json.dumps(f"#{rng.getrandbits(24):06x}"), now),
        )


# ---------------------------------------------------------------------------------------------
# autumnsgrove-posts
# ---------------------------------------------------------------------------------------------

POSTS_SCHEMA = """
CREATE TABLE posts (
  id INTEGER PRIMARY KEY,
  slug TEXT NOT NULL UNIQUE,
  title TEXT NOT NULL,
  description TEXT,
  markdown_content TEXT NOT NULL,
  html_content TEXT,
  font TEXT DEFAULT 'default',
  status TEXT NOT NULL DEFAULT 'published' CHECK (status IN ('draft', 'published', 'unlisted')),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  published_at TEXT
);
CREATE INDEX idx_posts_published ON posts(published_at DESC);
CREATE TABLE tags (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  color TEXT
);
CREATE TABLE post_tags (
  post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
  tag_id INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
  PRIMARY KEY (post_id, tag_id)
);
CREATE INDEX idx_post_tags_tag ON post_tags(tag_id);
CREATE VIRTUAL TABLE posts_fts USING fts5(
  title, description, markdown_content,
  content='posts', content_rowid='id', tokenize='porter unicode61'
);
CREATE TRIGGER posts_fts_ai AFTER INSERT ON posts BEGIN
  INSERT INTO posts_fts(rowid, title, description, markdown_content)
  VALUES (new.id, new.title, new.description, new.markdown_content);
END;
CREATE TRIGGER posts_fts_ad AFTER DELETE ON posts BEGIN
  INSERT INTO posts_fts(posts_fts, rowid, title, description, markdown_content)
  VALUES ('delete', old.id, old.title, old.description, old.markdown_content);
END;
CREATE TRIGGER posts_fts_au AFTER UPDATE ON posts BEGIN
  INSERT INTO posts_fts(posts_fts, rowid, title, description, markdown_content)
  VALUES ('delete', old.id, old.title, old.description, old.markdown_content);
  INSERT INTO posts_fts(rowid, title, description, markdown_content)
  VALUES (new.id, new.title, new.description, new.markdown_content);
END;
"""

#: A post the tests (and you) can find with ``posts_fts MATCH 'verdigris'``.
KNOWN_POST_SLUG = "on-patina-and-verdigris"
KNOWN_POST_WORD = "verdigris"

_KNOWN_POST = """# On patina and verdigris 🍂

Copper doesn't rust; it *weathers*. The green layer -- **verdigris** -- is the metal's way of saying
"I've been here a while, and I'm not going anywhere."

> Age as armor. Time as protection.

I've been thinking about backups again. Here's the nightly job's heart, roughly:

```sql
-- Table: users
BEGIN TRANSACTION;
INSERT INTO "users" VALUES ('usr_123', 'it''s me', NULL);
COMMIT;
```

That snippet is *text in a post*, not something to run; a dump that splits statements on `;` at the
end of a line would trip over it. So would one that trusts `-- Table:` markers.\r
This line ends with a Windows line break, and this one has a tab:\there.

Little Bobby Tables says hi: Robert'); DROP TABLE posts;--

Backslashes stay backslashes: C:\\Users\\autumn\\backups\\ and a regex like `^\\d{4}-\\d{2}$`.
Unicode: naïve café, Zoë's crème brûlée, 日本語のテキスト, emoji 👩🏽‍💻🌲✨, and a zero-width joiner.
"""


def _markdown_post(rng: random.Random, title: str) -> str:
    parts = [f"# {title}", ""]
    for _ in range(rng.randint(3, 8)):
        roll = rng.random()
        if roll < 0.15:
            parts.append(f"## {_words(rng, 2, 5).title()}")
        elif roll < 0.25:
            parts.append("\n".join(f"- {_words(rng, 3, 9)}" for _ in range(rng.randint(2, 5))))
        elif roll < 0.32:
            parts.append(f"> {_sentence(rng)}\n> -- {rng.choice(FIRST_NAMES)}")
        elif roll < 0.38:
            lang = rng.choice(("ts", "python", "sql", "bash"))
            code = {
                "ts": "const x: string = 'it\\'s';\nexport default { fetch() { return new Response(\"ok\"); } };",
                "python": 'def greet(name: str) -> str:\n    return f"hi {name!r}"\n',
                "sql": "SELECT count(*) FROM posts WHERE title LIKE '%''%';",
                "bash": 'wrangler d1 execute autumnsgrove-posts --command="SELECT 1;"',
            }[lang]
            parts.append(f"```{lang}\n{code}\n```")
        elif roll < 0.42:
            parts.append(f"![{_words(rng, 2, 4)}](https://cdn.autumnsgrove.com/img/{rng.getrandbits(32):08x}.webp)")
        else:
            parts.append(_paragraph(rng, 2, 7))
        parts.append("")
    return "\n".join(parts)


def _html(markdown: str) -> str:
    out = []
    for block in markdown.replace("\r\n", "\n").split("\n\n"):
        block = block.strip()
        if not block:
            continue
        esc = block.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if block.startswith("## "):
            out.append(f"<h2>{esc[3:]}</h2>")
        elif block.startswith("# "):
            out.append(f"<h1>{esc[2:]}</h1>")
        elif block.startswith("```"):
            out.append(f"<pre><code>{esc.strip('`')}</code></pre>")
        elif block.startswith("&gt; "):
            out.append(f"<blockquote>{esc[5:]}</blockquote>")
        else:
            out.append(f"<p>{esc}</p>")
    return "\n".join(out)


class _Posts:
    schema = POSTS_SCHEMA

    def __init__(self, conn: sqlite3.Connection, clock: _Clock):
        self.conn, self.clock = conn, clock

    def _insert(
        self,
        rng: random.Random,
        t: int,
        title: str | None = None,
        slug: str | None = None,
        markdown: str | None = None,
        status: str | None = None,
    ) -> int:
        title = title or _words(rng, 2, 8).title().replace("Grove", "Grove's", 1)
        slug = slug or ("-".join(title.lower().replace("'", "").split())[:70] + f"-{rng.getrandbits(32):08x}")
        markdown = markdown or _markdown_post(rng, title)
        status = status or rng.choices(("published", "draft", "unlisted"), (88, 8, 4))[0]
        cur = self.conn.execute(
            "INSERT INTO posts (slug, title, description, markdown_content, html_content, font, status, created_at,"
            " updated_at, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                slug,
                title,
                _sentence(rng) if rng.random() < 0.85 else None,
                markdown,
                _html(markdown),
                rng.choice(("default", "default", "lexend", "atkinson", None)),
                status,
                _iso(t),
                _iso(t),
                _iso(t + 3600) if status != "draft" else None,
            ),
        )
        post_id = int(cur.lastrowid)
        tag_ids = rng.sample(range(1, len(TAGS) + 1), rng.randint(0, 4))
        self.conn.executemany("INSERT INTO post_tags VALUES (?, ?)", [(post_id, tid) for tid in sorted(tag_ids)])
        return post_id

    def build(self, rng: random.Random) -> None:
        c, clock = self.conn, self.clock
        c.executemany("INSERT INTO tags (name, color) VALUES (?, ?)", TAGS)
        times = clock.history(rng, 170, 3 * 365)
        for i, t in enumerate(times):
            if i == 30:
                self._insert(rng, t, "On Patina and Verdigris", KNOWN_POST_SLUG, _KNOWN_POST, "published")
            elif i == 90:
                # One post larger than D1's 100 KB statement limit.
                chapters = [
                    f"## Week {n}\n\n" + "\n\n".join(_paragraph(rng, 4, 8) for _ in range(6)) for n in range(1, 53)
                ]
                self._insert(
                    rng,
                    t,
                    "A Year of Weeknotes, Collected",
                    "a-year-of-weeknotes-collected",
                    "# A Year of Weeknotes, Collected 📚\n\n" + "\n\n".join(chapters) + "\n",
                    "published",
                )
            else:
                self._insert(rng, t)

    def evolve(self, rng: random.Random, day_index: int) -> None:
        c, clock = self.conn, self.clock
        self._insert(rng, clock.on(day_index, rng, 1)[0])
        if day_index % 5 == 1:  # an edit: the FTS index follows through the update trigger
            ids = [r[0] for r in c.execute("SELECT id FROM posts WHERE slug <> ? ORDER BY id", (KNOWN_POST_SLUG,))]
            pid = rng.choice(ids)
            t = clock.on(day_index, rng, 1)[0]
            note = f"\n\n*Edit ({_iso(t)[:10]}):* {_sentence(rng)}\n"
            c.execute(
                "UPDATE posts SET markdown_content = markdown_content || ?, updated_at = ? WHERE id = ?",
                (note, _iso(t), pid),
            )
        if day_index % 4 == 3:  # a draft goes out
            drafts = [r[0] for r in c.execute("SELECT id FROM posts WHERE status = 'draft' ORDER BY id")]
            if drafts:
                t = _iso(clock.on(day_index, rng, 1)[0])
                c.execute(
                    "UPDATE posts SET status = 'published', published_at = ?, updated_at = ? WHERE id = ?",
                    (t, t, rng.choice(drafts)),
                )


# ---------------------------------------------------------------------------------------------
# autumnsgrove-git-stats
# ---------------------------------------------------------------------------------------------

GIT_SCHEMA = """
CREATE TABLE repos (
  id INTEGER PRIMARY KEY,
  owner TEXT NOT NULL,
  name TEXT NOT NULL,
  full_name TEXT GENERATED ALWAYS AS (owner || '/' || name) VIRTUAL,
  description TEXT,
  is_private INTEGER NOT NULL DEFAULT 0,
  default_branch TEXT NOT NULL DEFAULT 'main',
  stars INTEGER NOT NULL DEFAULT 0,
  created_at_ms INTEGER NOT NULL,
  last_synced_at_ms INTEGER,
  UNIQUE (owner, name)
);
CREATE TABLE commits (
  sha TEXT PRIMARY KEY,
  repo_id INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
  author_name TEXT,
  author_email TEXT,
  message TEXT NOT NULL,
  committed_at_ms INTEGER NOT NULL,
  additions INTEGER NOT NULL,
  deletions INTEGER NOT NULL,
  files_changed INTEGER NOT NULL,
  churn_ratio REAL,
  sentiment REAL,
  fingerprint INTEGER,                 -- signed 64-bit simhash of the diff
  is_merge INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_commits_repo_time ON commits(repo_id, committed_at_ms DESC);
CREATE TABLE daily_stats (
  repo_id INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
  day TEXT NOT NULL,
  commits INTEGER NOT NULL,
  additions INTEGER NOT NULL,
  deletions INTEGER NOT NULL,
  net_lines INTEGER GENERATED ALWAYS AS (additions - deletions) STORED,
  avg_commit_size REAL,
  PRIMARY KEY (repo_id, day)
);
CREATE TABLE languages (
  repo_id INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
  language TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  share REAL NOT NULL,
  PRIMARY KEY (repo_id, language)
);
"""

REPOS = (
    "GroveEngine",
    "Patina",
    "GroveAuth",
    "GroveScout",
    "Forage",
    "AutumnsGrove",
    "Heartwood",
    "Lattice",
    "Acorn",
    "Meadow",
    "dotfiles",
    "grove-cli",
    "TreeChat",
    "Ivy",
    "Amber",
    "Foliage",
    "Canopy",
    "Trove",
    "Rings",
    "Nook",
    "Vista",
    "Clearing",
    "Wisp",
    "Porch",
    "Thorn",
    "Bloom",
)
LANGS = ("TypeScript", "Svelte", "Python", "Rust", "SQL", "CSS", "Shell", "Go", "Markdown", "HTML")
COMMIT_VERBS = ("fix", "feat", "chore", "docs", "refactor", "test", "perf", "style", "build", "ci")


class _GitStats:
    schema = GIT_SCHEMA

    def __init__(self, conn: sqlite3.Connection, clock: _Clock):
        self.conn, self.clock = conn, clock

    def _commit(self, rng: random.Random, repo_id: int, t_ms: int) -> tuple:
        adds, dels = int(rng.paretovariate(1.2) * 8), int(rng.paretovariate(1.4) * 4)
        files = max(1, min(200, (adds + dels) // 25 + rng.randint(0, 3)))
        verb = rng.choice(COMMIT_VERBS)
        msg = f"{verb}({rng.choice(WORDS)}): {_words(rng, 3, 9)}"
        if rng.random() < 0.25:
            msg += "\n\n" + _paragraph(rng, 1, 3) + "\n\nCo-authored-by: Claude <noreply@anthropic.com>"
        author = rng.choice(
            (
                ("Autumn Brown", "autumn@grove.place"),
                ("autumn", "autumn@users.noreply.github.com"),
                ("dependabot[bot]", "49699333+dependabot[bot]@users.noreply.github.com"),
                ("Wren O'Neil", "wren@grove.place"),
            )
        )
        fingerprint = rng.getrandbits(64) - 2**63
        return (
            f"{rng.getrandbits(160):040x}",
            repo_id,
            author[0],
            author[1],
            msg,
            t_ms,
            adds,
            dels,
            files,
            dels / (adds + dels) if adds + dels else None,
            round(rng.uniform(-1, 1), 6) if rng.random() < 0.9 else None,
            fingerprint,
            int(verb == "chore" and rng.random() < 0.3),
        )

    def _insert_commits(self, rows: list[tuple]) -> None:
        c = self.conn
        c.executemany("INSERT OR IGNORE INTO commits VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        agg: dict[tuple[int, str], list[int]] = {}
        for r in rows:
            key = (r[1], dt.datetime.fromtimestamp(r[5] / 1000, dt.UTC).strftime("%Y-%m-%d"))
            a = agg.setdefault(key, [0, 0, 0])
            a[0] += 1
            a[1] += r[6]
            a[2] += r[7]
        c.executemany(
            "INSERT INTO daily_stats (repo_id, day, commits, additions, deletions, avg_commit_size)"
            " VALUES (?1, ?2, ?3, ?4, ?5, CAST(?4 + ?5 AS REAL) / ?3)"
            " ON CONFLICT (repo_id, day) DO UPDATE SET commits = commits + excluded.commits,"
            " additions = additions + excluded.additions, deletions = deletions + excluded.deletions,"
            " avg_commit_size = CAST(additions + excluded.additions + deletions + excluded.deletions AS REAL)"
            " / (commits + excluded.commits)",
            [(k[0], k[1], v[0], v[1], v[2]) for k, v in sorted(agg.items())],
        )

    def build(self, rng: random.Random) -> None:
        c, clock = self.conn, self.clock
        start_ms = (clock.base - 2 * 365 * DAY) * 1000
        repos = []
        for i, name in enumerate(REPOS, start=1):
            owner = "AutumnsGrove" if i % 5 else "autumnbrown"
            repos.append(
                (
                    i,
                    owner,
                    name,
                    _sentence(rng) if rng.random() < 0.8 else None,
                    int(rng.random() < 0.2),
                    "main" if rng.random() < 0.9 else "master",
                    int(rng.paretovariate(1.1) * 3),
                    start_ms + rng.randint(0, 365 * DAY) * 1000,
                    clock.base * 1000 - rng.randint(0, 86_399_999),
                )
            )
        c.executemany(
            "INSERT INTO repos (id, owner, name, description, is_private, default_branch, stars,"
            " created_at_ms, last_synced_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            repos,
        )
        langs = []
        for rid in range(1, len(REPOS) + 1):
            chosen = rng.sample(LANGS, rng.randint(1, 5))
            sizes = [rng.randint(500, 2_000_000) for _ in chosen]
            total = sum(sizes)
            langs += [(rid, lang, size, size / total) for lang, size in zip(chosen, sizes)]
        c.executemany("INSERT INTO languages VALUES (?, ?, ?, ?)", langs)
        weights = [rng.paretovariate(1.0) for _ in REPOS]
        times = clock.history(rng, 2200, 365)
        rows = [
            self._commit(rng, rng.choices(range(1, len(REPOS) + 1), weights)[0], t * 1000 + rng.randint(0, 999))
            for t in times
        ]
        # The extremes of a signed 64-bit integer, which JSON/JavaScript cannot carry exactly.
        rows[10] = rows[10][:11] + (2**63 - 1,) + rows[10][12:]
        rows[11] = rows[11][:11] + (-(2**63),) + rows[11][12:]
        rows[12] = rows[12][:11] + (2**53 + 1,) + rows[12][12:]
        self._insert_commits(rows)

    def evolve(self, rng: random.Random, day_index: int) -> None:
        weights = [1.0 + (5.0 if name in ("Patina", "GroveEngine") else 0.0) for name in REPOS]
        rows = [
            self._commit(rng, rng.choices(range(1, len(REPOS) + 1), weights)[0], t * 1000 + rng.randint(0, 999))
            for t in self.clock.on(day_index, rng, rng.randint(1, 10))
        ]
        self._insert_commits(rows)
        synced = (self.clock.base + (day_index + 1) * DAY) * 1000 - 1
        self.conn.execute(
            "UPDATE repos SET last_synced_at_ms = ?, stars = stars + (id % 3 = ?)", (synced, day_index % 3)
        )


# ---------------------------------------------------------------------------------------------
# grove-domain-jobs
# ---------------------------------------------------------------------------------------------

JOBS_SCHEMA = """
CREATE TABLE jobs (
  id TEXT PRIMARY KEY,
  client_id TEXT NOT NULL,
  business_name TEXT,
  keywords TEXT,                       -- JSON array
  tld_preferences TEXT,                -- JSON array
  vibe TEXT,
  status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'complete', 'failed', 'cancelled')),
  batch_count INTEGER NOT NULL DEFAULT 0,
  domains_checked INTEGER NOT NULL DEFAULT 0,
  good_results INTEGER NOT NULL DEFAULT 0,
  error TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  completed_at TEXT
);
CREATE INDEX idx_jobs_status_created ON jobs(status, created_at);
CREATE INDEX idx_jobs_client ON jobs(client_id);
CREATE TABLE job_results (
  id INTEGER PRIMARY KEY,
  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  batch_num INTEGER NOT NULL,
  payload BLOB,                        -- zlib-compressed JSON from the AI batch
  payload_sha256 BLOB,
  content_type TEXT NOT NULL DEFAULT 'application/json+zlib',
  created_at TEXT NOT NULL,
  UNIQUE (job_id, batch_num)
);
CREATE TABLE domain_checks (
  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  domain TEXT NOT NULL,
  available INTEGER NOT NULL,
  price_cents INTEGER,
  score REAL,
  registrar TEXT,
  raw ANY,
  checked_at INTEGER NOT NULL,
  PRIMARY KEY (job_id, domain)
) STRICT;
"""

#: Jobs of this client are the Forage team's own fixtures: never purged.
PINNED_CLIENT = "cl_forage_fixtures"
TLDS = ("com", "place", "dev", "io", "blog", "garden", "co", "net", "xyz", "studio", "cafe", "app")
VIBES = ("cozy", "professional", "playful", "minimal", "earthy", "bold", None)


class _Jobs:
    schema = JOBS_SCHEMA

    def __init__(self, conn: sqlite3.Connection, clock: _Clock):
        self.conn, self.clock = conn, clock

    def _job(self, rng: random.Random, t: int, force_status: str | None = None) -> str:
        c = self.conn
        jid = _uuid(rng)
        status = (
            force_status or rng.choices(("complete", "failed", "cancelled", "running", "pending"), (82, 7, 3, 4, 4))[0]
        )
        business = (
            f"{rng.choice(WORDS).title()} {rng.choice(('Bakery', 'Studio', 'Books', 'Garden Co.', 'Café', 'Labs'))}"
        )
        keywords = rng.sample(WORDS, rng.randint(2, 5))
        tlds = rng.sample(TLDS, rng.randint(1, 4))
        batches = rng.randint(1, 6) if status in ("complete", "failed", "running") else 0
        checks = []
        seen = set()
        for _ in range(batches * rng.randint(3, 8)):
            d = f"{rng.choice(keywords)}{rng.choice(('', '-', ''))}{rng.choice(WORDS)}.{rng.choice(tlds)}"
            if d in seen:
                continue
            seen.add(d)
            avail = int(rng.random() < 0.35)
            raw_kind = rng.random()
            raw = (
                1
                if raw_kind < 0.2
                else 1.0
                if raw_kind < 0.4
                else "1"
                if raw_kind < 0.6
                else json.dumps({"rdap": "not found" if avail else "active"})
                if raw_kind < 0.8
                else bytes([avail, rng.getrandbits(8)])
                if raw_kind < 0.9
                else None
            )
            checks.append(
                (
                    jid,
                    d,
                    avail,
                    rng.randint(99, 9999) * 10 if avail else None,
                    round(rng.random(), 5) if avail else None,
                    rng.choice(("cloudflare", "porkbun", "namecheap", None)),
                    raw,
                    t + rng.randint(5, 600),
                )
            )
        good = sum(1 for ch in checks if ch[2])
        done = _iso(t + rng.randint(60, 900)) if status in ("complete", "failed", "cancelled") else None
        error = (
            "RDAP lookup failed: 429 Too Many Requests\n  at checkBatch (src/forage.ts:212)"
            if status == "failed"
            else None
        )
        client = PINNED_CLIENT if force_status else _hex_id(rng, "cl_")
        c.execute(
            "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                jid,
                client,
                business,
                json.dumps(keywords),
                json.dumps(tlds),
                rng.choice(VIBES),
                status,
                batches,
                len(checks),
                good,
                error,
                _iso(t),
                done or _iso(t),
                done,
            ),
        )
        results = []
        for b in range(1, batches + 1):
            doc = {"batch": b, "suggestions": [{"domain": ch[1], "why": _sentence(rng)} for ch in checks[b::batches]]}
            payload = zlib.compress(json.dumps(doc, ensure_ascii=False).encode(), 6)
            results.append((jid, b, payload, hashlib.sha256(payload).digest(), _iso(t + b * 30)))
        c.executemany(
            "INSERT INTO job_results (job_id, batch_num, payload, payload_sha256, created_at) VALUES (?, ?, ?, ?, ?)",
            results,
        )
        c.executemany("INSERT INTO domain_checks VALUES (?, ?, ?, ?, ?, ?, ?, ?)", checks)
        return jid

    def build(self, rng: random.Random) -> None:
        c, clock = self.conn, self.clock
        times = clock.history(rng, 230, 180)
        ids = [self._job(rng, t, "complete" if i < 3 else None) for i, t in enumerate(times)]
        # Edge cases: an empty BLOB, a NULL payload, and one 64 KB payload (its hex literal alone
        # is over D1's 100 KB statement limit).
        c.execute(
            "UPDATE job_results SET payload = X'', payload_sha256 = ? WHERE job_id = ? AND batch_num = 1",
            (hashlib.sha256(b"").digest(), ids[0]),
        )
        c.execute(
            "UPDATE job_results SET payload = NULL, payload_sha256 = NULL, content_type = 'application/octet-stream'"
            " WHERE job_id = ? AND batch_num = 1",
            (ids[1],),
        )
        big = rng.randbytes(64 * 1024)
        c.execute(
            "UPDATE job_results SET payload = ?, payload_sha256 = ?, content_type = 'application/octet-stream'"
            " WHERE job_id = ? AND batch_num = 1",
            (big, hashlib.sha256(big).digest(), ids[2]),
        )

    def evolve(self, rng: random.Random, day_index: int) -> None:
        c, clock = self.conn, self.clock
        start = clock.base + day_index * DAY
        for t in clock.on(day_index, rng, rng.randint(1, 3)):
            self._job(rng, t)
        # Yesterday's stuck jobs time out; finished jobs are purged after a year.
        c.execute(
            "UPDATE jobs SET status = 'failed', error = 'timed out after 24h', updated_at = ?, completed_at = ?"
            " WHERE status IN ('pending', 'running') AND created_at < ?",
            (_iso(start), _iso(start), _iso(start - DAY)),
        )
        c.execute(
            "DELETE FROM jobs WHERE created_at < ? AND status <> 'running' AND client_id <> ?",
            (_iso(start - 365 * DAY), PINNED_CLIENT),
        )


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

_BUILDERS: dict[str, Callable[[sqlite3.Connection, _Clock], object]] = {
    "groveauth": _Groveauth,
    "scout-db": _Scout,
    "grove-engine-db": _Engine,
    "autumnsgrove-posts": _Posts,
    "autumnsgrove-git-stats": _GitStats,
    "grove-domain-jobs": _Jobs,
}


def _day_count(day: dt.date | None, base_date: dt.date) -> int:
    """How many days of activity to add on top of the base snapshot (``day`` inclusive)."""
    if day is None:
        return 0
    if isinstance(day, dt.datetime):
        day = day.date()
    return max(0, (day - base_date).days + 1)


def generate_demo_database(
    name: str,
    path: Path | str,
    day: dt.date | None = None,
    *,
    seed: int = DEFAULT_SEED,
    base_date: dt.date = DEMO_BASE_DATE,
) -> Path:
    """Write one demo database to ``path`` (replacing it atomically) and return the path."""
    if name not in _BUILDERS:
        raise KeyError(f"no demo database named {name!r}; known: {', '.join(_BUILDERS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    for leftover in (tmp, Path(f"{tmp}-journal")):
        leftover.unlink(missing_ok=True)
    clock = _Clock(base_date)
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA foreign_keys = ON")
        builder = _BUILDERS[name](conn, clock)
        conn.executescript(builder.schema)  # type: ignore[attr-defined]
        conn.execute("BEGIN")
        builder.build(random.Random(f"{seed}:{name}:base"))  # type: ignore[attr-defined]
        for i in range(_day_count(day, base_date)):
            builder.evolve(random.Random(f"{seed}:{name}:day:{i}"), i)  # type: ignore[attr-defined]
        conn.execute("COMMIT")
        problems = conn.execute("PRAGMA foreign_key_check").fetchall()
        if problems:  # pragma: no cover - a bug in this module
            raise RuntimeError(f"demo database {name} violates foreign keys: {problems[:5]}")
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()
    os.replace(tmp, path)
    for stale in (Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    return path


def generate_demo_databases(
    directory: Path | str, day: dt.date | None = None, *, seed: int = DEFAULT_SEED, base_date: dt.date = DEMO_BASE_DATE
) -> dict[str, Path]:
    """Write the six Grove demo databases as ``<directory>/<name>.sqlite``.

    ``day`` None gives the base snapshot (history up to ``base_date``); a later ``day`` adds each
    day's activity from ``base_date`` through ``day`` (a day before ``base_date`` is the base
    snapshot). Deterministic for given ``(day, seed, base_date)``. Existing files are replaced
    atomically. Returns ``{name: path}`` in the registry's order.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return {
        name: generate_demo_database(name, directory / f"{name}.sqlite", day, seed=seed, base_date=base_date)
        for name in DEMO_DATABASE_NAMES
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write Patina's six Grove demo databases (SQLite).")
    parser.add_argument("directory", type=Path, nargs="?", default=Path(".patina/sources"))
    parser.add_argument(
        "--day", type=dt.date.fromisoformat, default=None, help="evolve the data through this day (YYYY-MM-DD)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    for name, path in generate_demo_databases(args.directory, args.day, seed=args.seed).items():
        print(f"{name:24} {path.stat().st_size:>10,} bytes  {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
