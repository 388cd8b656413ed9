"""Databases modelled on the schemas of public D1 applications, with data of our own.

Each case follows the shape of a schema that real projects put on D1 (named in the builder's docstring):
the migration tables their tools keep, the quoting styles their generators write, the constraints,
indexes, triggers and virtual tables they use. The schema text and the data are written here; nothing is
copied. Registered with the awkward corpus (tests/support/awkward.py adds ``CASES``, ``D1_INCOMPATIBLE``
and ``BUILDERS`` to its own), so every round-trip test runs them: sqlite3 CLI, ``patina restore``,
local D1 through wrangler, and the REST source, compared value by value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .builds import _connect, _exec_many, _finish, _mixed_text, _rng

CASES: dict[str, str] = {
    "drizzle_app": "drizzle-kit migrations on D1: backtick-quoted tables, wrangler's d1_migrations and "
    "drizzle's __drizzle_migrations, JSON text columns, integer timestamps, unique indexes",
    "prisma_app": 'prisma\'s D1 migrations: "PascalCase" tables, _prisma_migrations, named FK constraints '
    "ON DELETE RESTRICT/CASCADE ON UPDATE CASCADE, an implicit many-to-many table",
    "auth_tables": "better-auth, lucia and Auth.js D1 adapter tables side by side: text keys, composite "
    "primary keys, ON DELETE CASCADE, UNIQUE tokens, camelCase quoted columns",
    "fts_search": "FTS5 with tokenize='porter unicode61 remove_diacritics 2' and prefix='2 3' over an "
    "external content table kept by triggers, and fts5vocab tables (row, col, instance) "
    "that hold no data of their own (inserting into one fails)",
    "json_events": "JSON columns: CHECK (json_valid()), ->> and json_extract generated columns (VIRTUAL "
    "and STORED), json_extract and generated-column indexes",
    "saas_tenants": "COLLATE NOCASE emails, partial unique indexes, ON DELETE/UPDATE CASCADE, "
    "DEFERRABLE INITIALLY DEFERRED foreign keys, sqlite_stat1 from ANALYZE",
    "checked_big_rows": "rows over one statement under constraints that tie columns together: CHECK "
    "(length(body) = body_len), CHECK (size = length(data)) WITHOUT ROWID, a STRICT "
    "table with a generated column, a 120 KB TEXT primary key, a foreign key, an "
    "external-content FTS5 index, an audit trigger, a standalone FTS5 table and a "
    "100-column table",
    "cms_200_tables": "210 tables (past one 200-name batch) of a headless CMS, linked by foreign keys, "
    "with indexes and a few rows each",
    "kv_strict": "INTEGER PRIMARY KEY DESC (not a rowid alias) and STRICT tables with ANY columns "
    "holding every storage class, as key-value stores on D1 keep them",
    "bracket_names": "SQL Server style [bracket] names (Northwind ports): [Order Details], a column "
    '[c"d] followed by a "semi;colon" column, and a comment inside CREATE TABLE, '
    "all of which wrangler's local splitter mis-reads",
}

D1_INCOMPATIBLE: dict[str, str] = {}


def build_drizzle_app(path: Path) -> Path:
    """Modelled on drizzle-kit's SQLite/D1 output (e.g. the drizzle-orm d1 examples): backticks, `--> statement-breakpoint`
    migrations applied by `wrangler d1 migrations apply` (its d1_migrations table) and drizzle's own migrator table."""
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE d1_migrations(
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            name       TEXT UNIQUE,
            applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
        );
        CREATE TABLE `__drizzle_migrations` (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at numeric);
        CREATE TABLE `users` (
            `id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
            `email` text NOT NULL,
            `display_name` text,
            `settings` text DEFAULT '{}' NOT NULL,
            `is_admin` integer DEFAULT false NOT NULL,
            `created_at` integer DEFAULT (unixepoch()) NOT NULL
        );
        CREATE UNIQUE INDEX `users_email_unique` ON `users` (`email`);
        CREATE TABLE `posts` (
            `id` text PRIMARY KEY NOT NULL,
            `author_id` integer NOT NULL,
            `slug` text NOT NULL,
            `title` text NOT NULL,
            `tags` text,
            `published_at` integer,
            FOREIGN KEY (`author_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
        );
        CREATE UNIQUE INDEX `posts_slug_unique` ON `posts` (`slug`);
        CREATE INDEX `posts_author_idx` ON `posts` (`author_id`,`published_at`);
    """,
    )
    for i, name in enumerate(["0000_init.sql", "0001_posts.sql", "0002_tags.sql"], 1):
        con.execute(
            "INSERT INTO d1_migrations(id, name, applied_at) VALUES(?, ?, ?)", (i, name, f"2025-0{i}-01 10:00:00")
        )
        con.execute("INSERT INTO __drizzle_migrations VALUES(?, ?, ?)", (i, f"{i:064x}", 1735689600000 + i))
    rng = _rng("drizzle_app")
    for i in range(1, 21):
        settings = json.dumps({"theme": rng.choice(["dark", "light"]), "langs": ["en", "fr"][: i % 3]})
        con.execute(
            "INSERT INTO users VALUES(?, ?, ?, ?, ?, ?)",
            (i, f"user{i}@example.com", None if i % 7 == 0 else f"User {i} ✓", settings, i == 1, 1735689600 + i),
        )
    for i in range(1, 41):
        tags = json.dumps(rng.sample(["d1", "sqlite", "hono", "drizzle", "édition"], 2), ensure_ascii=False)
        con.execute(
            "INSERT INTO posts VALUES(?, ?, ?, ?, ?, ?)",
            (
                f"p_{i:04d}",
                rng.randint(1, 20),
                f"post-{i}",
                f'Post {i}: it\'s "quoted"',
                tags,
                None if i % 5 == 0 else 1735700000 + i * 60,
            ),
        )
    con.execute("DELETE FROM users WHERE id = 20")  # the sequence stays above the last id
    con.execute("DELETE FROM posts WHERE author_id = 20")
    return _finish(con, path)


def build_prisma_app(path: Path) -> Path:
    """Modelled on prisma's SQLite migrations as applied to D1 (`prisma migrate diff --script` into wrangler
    migrations, the prisma-d1 examples): its migration log table, named constraints and an implicit m-n table."""
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE "_prisma_migrations" (
            "id"                    TEXT PRIMARY KEY NOT NULL,
            "checksum"              TEXT NOT NULL,
            "finished_at"           DATETIME,
            "migration_name"        TEXT NOT NULL,
            "logs"                  TEXT,
            "rolled_back_at"        DATETIME,
            "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,
            "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
        );
        CREATE TABLE "User" (
            "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
            "email" TEXT NOT NULL,
            "name" TEXT,
            "role" TEXT NOT NULL DEFAULT 'USER',
            "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
        );
        CREATE TABLE "Post" (
            "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
            "title" TEXT NOT NULL,
            "content" TEXT,
            "published" BOOLEAN NOT NULL DEFAULT false,
            "authorId" INTEGER NOT NULL,
            "price" DECIMAL,
            CONSTRAINT "Post_authorId_fkey" FOREIGN KEY ("authorId") REFERENCES "User" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
        );
        CREATE TABLE "Category" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "name" TEXT NOT NULL);
        CREATE TABLE "_CategoryToPost" (
            "A" INTEGER NOT NULL,
            "B" INTEGER NOT NULL,
            CONSTRAINT "_CategoryToPost_A_fkey" FOREIGN KEY ("A") REFERENCES "Category" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
            CONSTRAINT "_CategoryToPost_B_fkey" FOREIGN KEY ("B") REFERENCES "Post" ("id") ON DELETE CASCADE ON UPDATE CASCADE
        );
        CREATE UNIQUE INDEX "User_email_key" ON "User"("email");
        CREATE UNIQUE INDEX "_CategoryToPost_AB_unique" ON "_CategoryToPost"("A", "B");
        CREATE INDEX "_CategoryToPost_B_index" ON "_CategoryToPost"("B");
    """,
    )
    for i, name in enumerate(["20250101000000_init", "20250201000000_categories"]):
        con.execute(
            "INSERT INTO _prisma_migrations VALUES(?, ?, ?, ?, NULL, NULL, ?, 1)",
            (f"{i:08x}-0000-4000-8000-000000000000", f"{i:064x}", 1735689600000 + i, name, 1735689600000 + i),
        )
    rng = _rng("prisma_app")
    for i in range(1, 16):
        con.execute(
            'INSERT INTO "User" VALUES(?, ?, ?, ?, ?)',
            (i, f"u{i}@prisma.example", f"Name {i}", "ADMIN" if i == 1 else "USER", 1735689600000 + i * 1000),
        )
    for i in range(1, 31):
        # DECIMAL has NUMERIC affinity: '12.50' is stored as the REAL 12.5, '0012' as the integer 12.
        con.execute(
            'INSERT INTO "Post" VALUES(?, ?, ?, ?, ?, ?)',
            (
                i,
                f"Title {i}",
                None if i % 4 == 0 else f"Body {i}\n" * 3,
                i % 2,
                rng.randint(1, 15),
                rng.choice(["12.50", "0012", "abc", None, 3.25]),
            ),
        )
    for i, name in enumerate(["news", "howto", "release"], 1):
        con.execute('INSERT INTO "Category" VALUES(?, ?)', (i, name))
    pairs = sorted({(rng.randint(1, 3), rng.randint(1, 30)) for _ in range(40)})
    con.executemany('INSERT INTO "_CategoryToPost" VALUES(?, ?)', pairs)
    return _finish(con, path)


def build_auth_tables(path: Path) -> Path:
    """Modelled on better-auth's generated SQLite schema (user/session/account/verification, camelCase quoted),
    lucia's D1 guide (user + user_session with integer expiry) and the Auth.js D1 adapter's tables."""
    con = _connect(path)
    _exec_many(
        con,
        """
        create table "user" ("id" text not null primary key, "name" text not null, "email" text not null unique,
            "emailVerified" integer not null, "image" text, "createdAt" date not null, "updatedAt" date not null);
        create table "session" ("id" text not null primary key, "expiresAt" date not null, "token" text not null unique,
            "createdAt" date not null, "updatedAt" date not null, "ipAddress" text, "userAgent" text,
            "userId" text not null references "user" ("id") on delete cascade);
        create table "account" ("id" text not null primary key, "accountId" text not null, "providerId" text not null,
            "userId" text not null references "user" ("id") on delete cascade, "accessToken" text, "refreshToken" text,
            "idToken" text, "accessTokenExpiresAt" date, "scope" text, "password" text,
            "createdAt" date not null, "updatedAt" date not null);
        create table "verification" ("id" text not null primary key, "identifier" text not null, "value" text not null,
            "expiresAt" date not null, "createdAt" date, "updatedAt" date);
        create index "session_userId_idx" on "session" ("userId");
        create index "verification_identifier_idx" on "verification" ("identifier");
        CREATE TABLE lucia_user (id TEXT NOT NULL PRIMARY KEY, github_id INTEGER UNIQUE, username TEXT NOT NULL);
        CREATE TABLE lucia_session (id TEXT NOT NULL PRIMARY KEY, expires_at INTEGER NOT NULL,
            user_id TEXT NOT NULL REFERENCES lucia_user(id));
        CREATE TABLE users (id TEXT NOT NULL DEFAULT '', name TEXT DEFAULT NULL, email TEXT DEFAULT NULL,
            "emailVerified" DATETIME DEFAULT NULL, image TEXT DEFAULT NULL, PRIMARY KEY (id));
        CREATE TABLE accounts ("id" TEXT NOT NULL, "userId" TEXT NOT NULL DEFAULT NULL, "type" TEXT NOT NULL DEFAULT NULL,
            "provider" TEXT NOT NULL DEFAULT NULL, "providerAccountId" TEXT NOT NULL DEFAULT NULL,
            "refresh_token" TEXT DEFAULT NULL, "access_token" TEXT DEFAULT NULL, "expires_at" number DEFAULT NULL,
            "token_type" TEXT DEFAULT NULL, "scope" TEXT DEFAULT NULL, "id_token" TEXT DEFAULT NULL,
            "session_state" TEXT DEFAULT NULL, PRIMARY KEY (id),
            FOREIGN KEY ("userId") REFERENCES users(id) ON DELETE CASCADE);
        CREATE TABLE sessions ("id" TEXT NOT NULL, "sessionToken" TEXT NOT NULL, "userId" TEXT NOT NULL DEFAULT NULL,
            "expires" DATETIME NOT NULL DEFAULT NULL, PRIMARY KEY (sessionToken),
            FOREIGN KEY ("userId") REFERENCES users(id) ON DELETE CASCADE);
        CREATE TABLE verification_tokens (identifier TEXT NOT NULL, token TEXT NOT NULL DEFAULT NULL,
            expires DATETIME NOT NULL DEFAULT NULL, PRIMARY KEY (token));
    """,
    )
    rng = _rng("auth_tables")
    for i in range(1, 11):
        uid = f"usr_{rng.getrandbits(64):016x}"
        con.execute(
            'INSERT INTO "user" VALUES(?, ?, ?, ?, NULL, ?, ?)',
            (uid, f"Person {i}", f"p{i}@auth.example", i % 2, "2025-03-01T10:00:00.000Z", 1740823200000 + i),
        )
        for j in range(i % 3):
            con.execute(
                'INSERT INTO "session" VALUES(?, ?, ?, ?, ?, ?, ?, ?)',
                (
                    f"ses_{i}_{j}",
                    1750000000 + i,
                    f"tok_{rng.getrandbits(128):032x}",
                    "2025-03-01",
                    "2025-03-02",
                    "2001:db8::1" if j else "203.0.113.7",
                    "Mozilla/5.0 (X11; Linux x86_64)",
                    uid,
                ),
            )
        con.execute(
            'INSERT INTO "account" VALUES(?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?, ?, ?)',
            (
                f"acc_{i}",
                f"{10_000 + i}",
                "github" if i % 2 else "credential",
                uid,
                f"gho_{i:036d}" if i % 2 else None,
                "read:user user:email" if i % 2 else None,
                None if i % 2 else "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
                "2025-03-01",
                "2025-03-01",
            ),
        )
        con.execute("INSERT INTO lucia_user VALUES(?, ?, ?)", (f"lu{i}", 90_000 + i if i % 4 else None, f"gh-user-{i}"))
        con.execute("INSERT INTO lucia_session VALUES(?, ?, ?)", (f"ls{i}", 1750000000 + i * 3600, f"lu{i}"))
        con.execute(
            "INSERT INTO users VALUES(?, ?, ?, ?, NULL)",
            (f"aj{i}", f"A J {i}", f"aj{i}@example.org", None if i % 3 else "2025-01-01T00:00:00.000Z"),
        )
        con.execute(
            "INSERT INTO accounts(id, userId, type, provider, providerAccountId, expires_at) VALUES(?, ?, ?, ?, ?, ?)",
            (f"ac{i}", f"aj{i}", "oauth", "google", f"1{i:020d}", 1750000000.5 if i % 2 else 1750000000),
        )
        con.execute(
            "INSERT INTO sessions VALUES(?, ?, ?, ?)", (f"s{i}", f"st{i}", f"aj{i}", "2025-06-01T00:00:00.000Z")
        )
    con.execute("INSERT INTO verification VALUES('v1', 'p1@auth.example', '123456', '2025-03-01', NULL, NULL)")
    con.execute("INSERT INTO verification_tokens VALUES('p2@auth.example', 'vt-1', '2025-03-02')")
    return _finish(con, path)


KB_ARTICLES = [
    ("Getting started", "Create a D1 database, bind it to your Worker and run queries."),
    ("Résumé of FTS", "Full-text search with FTS5: tokenizers, prefixes, ranking with bm25()."),
    ("Migrations", "Apply migrations with wrangler; each migration runs once, recorded in d1_migrations."),
    ("Backups", "Time Travel restores a database to any minute of the last 30 days."),
    ("Naïve queries", "SELECT * without an index scans every row; add indexes for frequent filters."),
    ("Empty", ""),
]


def build_fts_search(path: Path) -> Path:
    """Modelled on the FTS5 search of Cloudflare's D1 tutorials and Hono + D1 blog/knowledge-base apps: an
    external-content index kept in step by triggers, with tokenize= and prefix= options, and fts5vocab views."""
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE kb_articles(id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT NOT NULL, updated_at INTEGER);
        CREATE VIRTUAL TABLE kb_fts USING fts5(title, body, content='kb_articles', content_rowid='id',
            tokenize='porter unicode61 remove_diacritics 2', prefix='2 3');
        CREATE TRIGGER kb_ai AFTER INSERT ON kb_articles BEGIN
            INSERT INTO kb_fts(rowid, title, body) VALUES (new.id, new.title, new.body);
        END;
        CREATE TRIGGER kb_ad AFTER DELETE ON kb_articles BEGIN
            INSERT INTO kb_fts(kb_fts, rowid, title, body) VALUES('delete', old.id, old.title, old.body);
        END;
        CREATE TRIGGER kb_au AFTER UPDATE ON kb_articles BEGIN
            INSERT INTO kb_fts(kb_fts, rowid, title, body) VALUES('delete', old.id, old.title, old.body);
            INSERT INTO kb_fts(rowid, title, body) VALUES (new.id, new.title, new.body);
        END;
        CREATE VIRTUAL TABLE kb_terms USING fts5vocab(kb_fts, row);
        CREATE VIRTUAL TABLE kb_terms_by_column USING fts5vocab('kb_fts', 'col');
        CREATE VIRTUAL TABLE kb_term_positions USING fts5vocab("kb_fts", instance);
        CREATE VIRTUAL TABLE notes_fts USING fts5(note, tokenize = "unicode61 tokenchars '-_'");
    """,
    )
    for i, (title, body) in enumerate(KB_ARTICLES, 1):
        con.execute("INSERT INTO kb_articles VALUES(?, ?, ?, ?)", (i * 10, title, body, 1735689600 + i))
    con.execute("UPDATE kb_articles SET body = body || ' Updated.' WHERE id = 20")
    con.execute("DELETE FROM kb_articles WHERE id = 30")
    for note in ("well-known tokens_with-dashes", "plain words", "naïve-café"):
        con.execute("INSERT INTO notes_fts(note) VALUES(?)", (note,))
    return _finish(con, path)


def build_json_events(path: Path) -> Path:
    """Modelled on event/analytics ingest Workers that keep JSON payloads in D1 (Hono + D1 webhook and
    analytics apps): json_valid checks, ->> generated columns and json_extract indexes."""
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE events(
            id INTEGER PRIMARY KEY,
            payload TEXT NOT NULL CHECK (json_valid(payload)),
            kind TEXT GENERATED ALWAYS AS (payload ->> '$.kind') VIRTUAL,
            user_id INTEGER AS (json_extract(payload, '$.user.id')) STORED,
            received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE INDEX events_kind ON events(kind);
        CREATE INDEX events_ts ON events(json_extract(payload, '$.ts'));
        CREATE INDEX events_user_kind ON events(user_id, kind) WHERE user_id IS NOT NULL;
        CREATE TABLE webhooks(id TEXT PRIMARY KEY, config TEXT NOT NULL DEFAULT '{}' CHECK (json_type(config) = 'object'),
            url TEXT AS (config ->> 'url'), active INTEGER AS (coalesce(config ->> '$.active', 0)) VIRTUAL) WITHOUT ROWID;
    """,
    )
    rng = _rng("json_events")
    kinds = ["page_view", "click", "signup", "purchase"]
    for i in range(1, 81):
        payload = {
            "kind": rng.choice(kinds),
            "ts": 1735689600 + i * 17,
            "props": {"path": f"/p/{i % 9}", "ok": i % 2 == 0},
        }
        if i % 3:
            payload["user"] = {"id": rng.randint(1, 12), "name": f"ü{i}"}
        if i % 11 == 0:
            payload["price"] = 19.99
        con.execute(
            "INSERT INTO events(id, payload, received_at) VALUES(?, ?, ?)",
            (i, json.dumps(payload, ensure_ascii=i % 2 == 0), f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}.000Z"),
        )
    con.execute("""INSERT INTO webhooks(id, config) VALUES('wh1', '{"url": "https://example.com/hook", "active": 1}'),
                   ('wh2', '{"url": null}'), ('wh3', '{}')""")
    return _finish(con, path)


def build_saas_tenants(path: Path) -> Path:
    """Modelled on Cloudflare's saas-admin-template (customers, subscriptions, customer_subscriptions on D1)
    grown the way multi-tenant apps grow it: soft deletes with partial unique indexes, NOCASE emails,
    cascading and deferred foreign keys, and ANALYZE statistics."""
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE tenants(id INTEGER PRIMARY KEY, slug TEXT NOT NULL COLLATE NOCASE UNIQUE, name TEXT NOT NULL);
        CREATE TABLE customers(
            id INTEGER PRIMARY KEY,
            tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE ON UPDATE CASCADE,
            email TEXT NOT NULL COLLATE NOCASE,
            name TEXT,
            deleted_at TEXT,
            referred_by INTEGER REFERENCES customers(id) DEFERRABLE INITIALLY DEFERRED
        );
        CREATE UNIQUE INDEX customers_live_email ON customers(tenant_id, email) WHERE deleted_at IS NULL;
        CREATE INDEX customers_deleted ON customers(deleted_at) WHERE deleted_at IS NOT NULL;
        CREATE TABLE subscriptions(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
            features TEXT);
        CREATE TABLE customer_subscriptions(
            customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
            subscription_id INTEGER NOT NULL REFERENCES subscriptions(id) ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED,
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'cancelled', 'past_due')),
            subscription_starts_at INTEGER NOT NULL,
            subscription_ends_at INTEGER,
            PRIMARY KEY (customer_id, subscription_id)
        ) WITHOUT ROWID;
        CREATE INDEX cs_status ON customer_subscriptions(status, subscription_ends_at DESC);
    """,
    )
    rng = _rng("saas_tenants")
    for i, slug in enumerate(["Acme", "globex", "Initech"], 1):
        con.execute("INSERT INTO tenants VALUES(?, ?, ?)", (i, slug, slug.title() + " Inc."))
    for i in range(1, 61):
        deleted = "2025-02-01" if i % 9 == 0 else None
        # A deleted customer shares an address (in another case) with a live one.
        email = f"Person{i - 1}@Example.COM" if deleted else f"person{i}@example.com"
        referred = i + 1 if i % 13 == 0 and i < 60 else None  # points forward: deferred
        con.execute(
            "INSERT INTO customers VALUES(?, ?, ?, ?, ?, ?)",
            (i, (i % 3) + 1, email, f"Customer {i}", deleted, referred),
        )
    for i, (name, price) in enumerate([("Free", 0), ("Pro", 1900), ("Team", 4900)], 1):
        con.execute("INSERT INTO subscriptions VALUES(?, ?, ?, ?)", (i, name, price, json.dumps({"seats": i * 5})))
    for i in range(1, 61, 2):
        con.execute(
            "INSERT INTO customer_subscriptions VALUES(?, ?, ?, ?, ?)",
            (
                i,
                rng.randint(1, 3),
                rng.choice(["active", "cancelled", "past_due"]),
                1735689600 + i,
                None if i % 4 else 1767225600 + i,
            ),
        )
    con.execute("ANALYZE")
    return _finish(con, path)


def build_checked_big_rows(path: Path) -> Path:
    """Modelled on pastebin and file-sharing Workers on D1 (e.g. the R2 + D1 file-sharing and paste
    templates), which keep a body with its length, checked, and small files inline as BLOBs."""
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE pastes(
            id INTEGER PRIMARY KEY,
            body TEXT NOT NULL,
            body_len INTEGER NOT NULL,
            lines INTEGER GENERATED ALWAYS AS (length(body) - length(replace(body, char(10), '')) + 1) STORED,
            CHECK (length(body) = body_len)
        );
        CREATE TABLE files(
            key TEXT PRIMARY KEY,
            data BLOB NOT NULL,
            size INTEGER NOT NULL,
            paste_id INTEGER REFERENCES pastes(id) ON DELETE CASCADE,
            CHECK (size = length(data))
        ) WITHOUT ROWID;
        CREATE TABLE docs_strict(id INTEGER PRIMARY KEY, body TEXT NOT NULL CHECK (length(body) > 1000), sha TEXT NOT NULL,
            words INTEGER AS (length(body) - length(replace(body, ' ', '')) + 1) VIRTUAL) STRICT;
        CREATE TABLE snippets(body TEXT PRIMARY KEY, uses INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE audit(id INTEGER PRIMARY KEY, what TEXT NOT NULL);
        CREATE VIRTUAL TABLE pastes_fts USING fts5(body, content='pastes', content_rowid='id');
        CREATE VIRTUAL TABLE drafts_fts USING fts5(title, body);
        CREATE TRIGGER pastes_ai AFTER INSERT ON pastes BEGIN
            INSERT INTO pastes_fts(rowid, body) VALUES (new.id, new.body);
            INSERT INTO audit(what) VALUES ('paste ' || new.id || ' of ' || new.body_len);
        END;
        CREATE TRIGGER files_size BEFORE INSERT ON files WHEN new.size > 300000 BEGIN
            SELECT RAISE(ABORT, 'file too big');
        END;
    """,
    )
    rng = _rng("checked_big_rows")
    words = ["copper", "patina", "oxide", "verdigris", "é", "日本", "line\n", "it's", '"q"']
    for i, size in ((1, 150_000), (2, 600), (3, 110_000)):
        body = _mixed_text(rng, size) if i != 3 else " ".join(rng.choice(words) for _ in range(size // 6))
        con.execute("INSERT INTO pastes(id, body, body_len) VALUES(?, ?, ?)", (i, body, len(body)))
    for key, size, paste in (("a/big.bin", 160_000, 1), ("b/small.bin", 10, 2), ("c/mid.bin", 95_000, None)):
        data = rng.randbytes(size)
        con.execute("INSERT INTO files VALUES(?, ?, ?, ?)", (key, data, len(data), paste))
    for i in (1, 2):
        body = " ".join(rng.choice(words[:4]) for _ in range(20_000))
        con.execute("INSERT INTO docs_strict(id, body, sha) VALUES(?, ?, ?)", (i, body, f"{i:040x}"))
    con.execute("INSERT INTO snippets VALUES(?, 1), ('short', 2)", ("k" * 120_000,))
    draft = " ".join(rng.choice(words) for _ in range(20_000))
    con.execute("INSERT INTO drafts_fts(rowid, title, body) VALUES(5, 'long draft', ?), (6, 'short', 'x')", (draft,))
    # 100 columns (D1's most) and no INTEGER PRIMARY KEY: the rowid would be a 101st column.
    columns = ", ".join(f"f{i:02d} TEXT" for i in range(100))
    con.execute(f"CREATE TABLE form_answers({columns}, CHECK (length(f00) = 100000 OR f00 IS NULL))")
    con.execute("INSERT INTO form_answers(rowid, f00, f99) VALUES(7, ?, 'last')", ("a" * 100_000,))
    con.execute("INSERT INTO form_answers(rowid, f01) VALUES(-2, 'small')")
    return _finish(con, path)


def build_cms_200_tables(path: Path) -> Path:
    """Modelled on headless CMSs with D1 adapters (Payload CMS's D1 adapter, Directus-style collections):
    one table per collection plus its _rels and _locales tables, so an app reaches hundreds of tables."""
    con = _connect(path)
    rng = _rng("cms_200_tables")
    con.execute(
        "CREATE TABLE payload_migrations(id INTEGER PRIMARY KEY, name TEXT, batch NUMERIC, updated_at TEXT, created_at TEXT)"
    )
    con.execute("INSERT INTO payload_migrations VALUES(1, '20250101_initial', 1, '2025-01-01', '2025-01-01')")
    for c in range(70):
        name = f"collection_{c:02d}"
        con.execute(
            f"CREATE TABLE \"{name}\"(id INTEGER PRIMARY KEY, title TEXT NOT NULL, status TEXT DEFAULT 'draft', "
            f"updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        )
        con.execute(
            f'CREATE TABLE "{name}_locales"(id INTEGER PRIMARY KEY, _locale TEXT NOT NULL, _parent_id INTEGER NOT NULL '
            f'REFERENCES "{name}"(id) ON DELETE CASCADE, title TEXT, UNIQUE(_locale, _parent_id))'
        )
        target = f"collection_{(c + 1) % 70:02d}"
        con.execute(
            f'CREATE TABLE "{name}_rels"(id INTEGER PRIMARY KEY, "order" INTEGER, parent_id INTEGER NOT NULL '
            f'REFERENCES "{name}"(id) ON DELETE CASCADE, path TEXT NOT NULL, "{target}_id" INTEGER '
            f'REFERENCES "{target}"(id) ON DELETE CASCADE)'
        )
        con.execute(f'CREATE INDEX "{name}_rels_parent_idx" ON "{name}_rels"(parent_id)')
    for c in range(70):
        name = f"collection_{c:02d}"
        for r in range(1, 1 + c % 3):
            con.execute(
                f'INSERT INTO "{name}" VALUES(?, ?, ?, ?)',
                (r, f"{name} #{r}", rng.choice(["draft", "published"]), "2025-01-01T00:00:00.000Z"),
            )
            con.execute(f'INSERT INTO "{name}_locales" VALUES(?, ?, ?, ?)', (r, "fr", r, f"titre {r}"))
    for c in range(70):
        name, target = f"collection_{c:02d}", f"collection_{(c + 1) % 70:02d}"
        if c % 3 and (c + 1) % 70 % 3:
            con.execute(f"INSERT INTO \"{name}_rels\" VALUES(1, 1, 1, 'related', 1)")
    return _finish(con, path)


def build_kv_strict(path: Path) -> Path:
    """Modelled on key-value stores and job queues built on D1 (KV-style caches with STRICT ANY values, logs
    newest-first with INTEGER PRIMARY KEY DESC, which SQLite does not make a rowid alias)."""
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE kv(key TEXT PRIMARY KEY, value ANY, expires_at INTEGER, meta ANY NOT NULL DEFAULT '{}') STRICT, WITHOUT ROWID;
        CREATE TABLE kv_log(id INTEGER PRIMARY KEY DESC, key TEXT NOT NULL, op TEXT NOT NULL);
        CREATE TABLE jobs(id INTEGER PRIMARY KEY, payload ANY, attempts INT NOT NULL DEFAULT 0, run_at REAL) STRICT;
        CREATE INDEX jobs_run_at ON jobs(run_at) WHERE attempts < 5;
    """,
    )
    values = [
        ("int", 42),
        ("big", 2**63 - 1),
        ("real", 0.1),
        ("neg zero", -0.0),
        ("text num", "0012"),
        ("blob", b"\x00\x01\xff"),
        ("null", None),
        ("empty", ""),
        ("json", '{"a":[1,2]}'),
        ("inf", float("inf")),
    ]
    for i, (key, value) in enumerate(values):
        con.execute(
            "INSERT INTO kv VALUES(?, ?, ?, ?)", (key, value, None if i % 2 else 1735689600 + i, i if i % 3 else "{}")
        )
    for i, rowid in enumerate([5, 1, 9, 2**40, -3]):
        con.execute("INSERT INTO kv_log(rowid, id, key, op) VALUES(?, ?, ?, ?)", (rowid, 100 - i, values[i][0], "put"))
    for i in range(1, 11):
        con.execute(
            "INSERT INTO jobs VALUES(?, ?, ?, ?)", (i, [b"job", "job", i, i / 4][i % 4], i % 7, 1735689600.5 + i)
        )
    return _finish(con, path)


def build_bracket_names(path: Path) -> Path:
    """Modelled on the Northwind ports to SQLite that Cloudflare's D1 demo made famous (jpwhite3's
    northwind-SQLite3 keeps SQL Server's [bracket] names), with the names that mislead wrangler's splitter."""
    con = _connect(path)
    _exec_many(
        con,
        """
        CREATE TABLE [Categories]([CategoryID] INTEGER PRIMARY KEY, [CategoryName] TEXT, [Description] TEXT);
        CREATE TABLE [Order Details](
            [OrderID] INTEGER NOT NULL,
            [ProductID] INTEGER NOT NULL,
            [UnitPrice] NUMERIC NOT NULL DEFAULT 0,
            [Quantity] INTEGER NOT NULL DEFAULT 1, -- units, never zero
            [Discount] REAL NOT NULL DEFAULT 0,
            PRIMARY KEY ([OrderID], [ProductID]),
            CHECK ([Discount] >= (0) AND [Discount] <= (1))
        );
        CREATE TABLE [odd]([c"d] TEXT, "semi;colon" TEXT, [x] INTEGER);
        CREATE TABLE [lonely]([a"b] TEXT);
        CREATE INDEX [idx "odd";x] ON [odd]([x], "semi;colon");
        CREATE VIEW [Order Subtotals] AS SELECT [OrderID], Sum(([UnitPrice] * [Quantity]) * (1 - [Discount])) AS [Subtotal]
            FROM [Order Details] GROUP BY [OrderID];
        CREATE TRIGGER [odd log] AFTER UPDATE OF [c"d] ON [odd] BEGIN
            UPDATE [odd] SET "semi;colon" = 'changed;' WHERE rowid = new.rowid;
        END;
    """,
    )
    for i, name in enumerate(["Beverages", "Condiments", "Confections"], 1):
        con.execute("INSERT INTO Categories VALUES(?, ?, ?)", (i, name, f'{name}; and "more"'))
    for order in range(10248, 10258):
        for product in (11, 42, 72)[: 1 + order % 3]:
            con.execute(
                "INSERT INTO [Order Details] VALUES(?, ?, ?, ?, ?)", (order, product, "14.00", 12, 0.05 * (order % 3))
            )
    con.execute("INSERT INTO odd VALUES('q\"uote', 'semi;colon;value', 1), (NULL, '\"', 2)")
    con.execute("INSERT INTO lonely VALUES('only one \" here')")
    return _finish(con, path)


BUILDERS: dict[str, Callable[[Path], Path]] = {name: globals()[f"build_{name}"] for name in CASES}
