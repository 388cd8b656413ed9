"""How Patina names a D1 database: ``d1://<account_id>/<database_id>``, and the page size D1Source reads
with by default. A module of its own, with nothing to import: the configuration checks both, and every
command loads the configuration, most of them without reading a database (`patina status`)."""

from __future__ import annotations

import re

# `\Z`, not `$`: `$` also matches before a final line break ("...\n" would pass).
ACCOUNT_ID_RE = re.compile(r"^[0-9a-f]{32}\Z")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
#: D1Source's default, which patina.yaml's `dump:` section starts from (config.DumpConfig).
DEFAULT_PAGE_BYTES = 2_000_000


def parse_d1_source(source: str) -> tuple[str, str]:
    """Parse ``d1://<account_id>/<database_id>`` into ``(account_id, database_id)``.

    Raises ``ValueError`` with a message saying what is wrong.
    """
    expected = (
        "expected d1://<account_id>/<database_id>: the 32-hex-digit Cloudflare account ID "
        "(dashboard URL or `wrangler whoami`) and the database UUID (`wrangler d1 list`)"
    )
    if not source.startswith("d1://"):
        raise ValueError(f"{source!r} does not start with d1://; {expected}")
    rest = source[len("d1://") :]
    if any(c in rest for c in "@?#"):
        raise ValueError(
            f"{source!r} has a user, query or fragment part; credentials never go in the "
            f"source (use cloudflare.api_token_env); {expected}"
        )
    parts = rest.strip("/").split("/") if rest.strip("/") else []
    if len(parts) != 2:
        raise ValueError(f"{source!r} has {len(parts)} path part(s), not 2; {expected}")
    account_id, database_id = (p.lower() for p in parts)
    if not ACCOUNT_ID_RE.match(account_id):
        raise ValueError(f"account ID {parts[0]!r} in {source!r} is not 32 hexadecimal digits; {expected}")
    if not UUID_RE.match(database_id):
        raise ValueError(
            f"database ID {parts[1]!r} in {source!r} is not a UUID "
            f"(like 45eae4c7-8ae7-4078-9218-8e1677a4360f); {expected}"
        )
    return account_id, database_id
