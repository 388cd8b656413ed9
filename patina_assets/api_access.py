"""Who may call `patina serve`: keys with scopes and expiry, allowed addresses, and trusted proxies.

``PATINA_API_KEYS`` is a comma-separated list of ``name:key`` entries, optionally followed (after spaces) by
``databases=a+b``, ``actions=download+restore-guide+trigger+plaintext`` and ``expires=YYYY-MM-DD`` (or an ISO time in
UTC). An entry without options may do everything, as before options existed: keys never contain spaces, so
old values read the same. Weak keys (short, few distinct characters, runs, sequences) are refused with the
command that makes a good one; the messages name the entry, never the key.

``PATINA_ALLOWED_IPS`` lists addresses or networks written exactly (``203.0.113.7/0`` is refused: host bits
set). The client address is the TCP peer; the header named by ``PATINA_CLIENT_IP_HEADER`` is believed only
when the peer is in ``PATINA_TRUSTED_PROXIES`` (e.g. Cloudflare's published ranges), otherwise it is ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

KEY_HEADER = "X-Patina-Key"
KEYS_ENV = "PATINA_API_KEYS"
ALLOWED_IPS_ENV = "PATINA_ALLOWED_IPS"
CLIENT_IP_HEADER_ENV = "PATINA_CLIENT_IP_HEADER"
TRUSTED_PROXIES_ENV = "PATINA_TRUSTED_PROXIES"
MIN_KEY_LENGTH = 16
MIN_KEY_BITS = 40  # a Shannon estimate from the key itself (it underrates small alphabets: 16 hex digits score 44-64)
#: ``plaintext``: a download of an encrypted backup is decrypted by the server (when it holds the identity);
#: without it the client gets the stored age file, to open with its own key.
ACTIONS = ("download", "restore-guide", "trigger", "plaintext")
MAKE_A_KEY = "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
# Cloudflare's published ranges (https://www.cloudflare.com/ips/, checked 2026-12): the documented example of
# PATINA_TRUSTED_PROXIES. They change rarely; fetch the list again when you set it up.
CLOUDFLARE_RANGES = (
    "173.245.48.0/20,103.21.244.0/22,103.22.200.0/22,103.31.4.0/22,141.101.64.0/18,108.162.192.0/18,"
    "190.93.240.0/20,188.114.96.0/20,197.234.240.0/22,198.41.128.0/17,162.158.0.0/15,104.16.0.0/13,"
    "104.24.0.0/14,172.64.0.0/13,131.0.72.0/22,2400:cb00::/32,2606:4700::/32,2803:f800::/32,2405:b500::/32,"
    "2405:8100::/32,2a06:98c0::/29,2c0f:f248::/32"
)

_KEY_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its name (what logs show), the sha256 of the secret, and what it may do."""

    name: str
    digest: bytes
    databases: frozenset[str] | None = None  # None: every database
    actions: frozenset[str] = frozenset(ACTIONS)
    expires: datetime | None = None


@dataclass(frozen=True)
class Client:
    """An authenticated caller: the key's name (or ``ip:<address>`` for an allowed address) and its scopes."""

    name: str
    method: str  # "key" or "ip"
    ip: str
    databases: frozenset[str] | None = None
    actions: frozenset[str] = frozenset(ACTIONS)

    def may(self, action: str, database: str | None = None) -> bool:
        return action in self.actions and (database is None or self.databases is None or database in self.databases)


@dataclass(frozen=True)
class Denied:
    """Why a request was not authenticated (for the audit log; the client always sees the spec's 401)."""

    reason: str


@dataclass
class AccessPolicy:
    keys: dict[str, ApiKey] = field(default_factory=dict)  # name -> key
    networks: list[Network] = field(default_factory=list)
    client_ip_header: str | None = None
    trusted_proxies: list[Network] = field(default_factory=list)

    def __post_init__(self) -> None:  # tests and callers may give plain name -> secret pairs
        self.keys = {name: k if isinstance(k, ApiKey) else ApiKey(name, _digest(k)) for name, k in self.keys.items()}
        self._digests = {k.digest for k in self.keys.values()}

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> AccessPolicy:
        """Read the four variables; ValueError on a malformed entry (named by position and name, never the key)."""
        return cls(
            keys=parse_keys(env.get(KEYS_ENV, "")),
            networks=parse_networks(env.get(ALLOWED_IPS_ENV, "")),
            client_ip_header=(env.get(CLIENT_IP_HEADER_ENV) or "").strip() or None,
            trusted_proxies=parse_networks(env.get(TRUSTED_PROXIES_ENV, ""), TRUSTED_PROXIES_ENV),
        )

    # -- the client's address -----------------------------------------------------------------------

    def client_address(self, peer: str, header_value: str | None) -> str:
        """The peer, or, when the peer is a trusted proxy, the nearest address in the header that is not one
        of the proxies (X-Forwarded-For lists hops left to right; CF-Connecting-IP holds one)."""
        if not self.client_ip_header or not header_value or not _in(peer, self.trusted_proxies):
            return peer
        for hop in reversed(header_value.split(",")[:16]):
            try:
                address = ipaddress.ip_address(hop.strip())
            except ValueError:
                return peer  # not what a proxy writes: trust nothing in it
            if not any(address in network for network in self.trusted_proxies):
                return str(address)
        return peer

    # -- keys ---------------------------------------------------------------------------------------

    def authenticate(self, key: str | None, ip: str, now: datetime | None = None) -> Client | Denied:
        if key:
            given = _digest(key)
            matched = None
            for candidate in self.keys.values():  # every key is compared: the time does not tell which matched
                if hmac.compare_digest(given, candidate.digest):
                    matched = candidate
            if matched is not None:
                if matched.expires is not None and (now or datetime.now(UTC)) >= matched.expires:
                    return Denied(f"key {matched.name} expired")
                return Client(matched.name, "key", ip, matched.databases, matched.actions)
        if _in(ip, self.networks):
            return Client(f"ip:{ip}", "ip", ip)
        return Denied("key refused" if key else "no key, address not allowed")

    def is_key(self, text: str) -> bool:
        """Whether ``text`` is one of the keys (to redact it wherever it turns up)."""
        return _digest(text) in self._digests

    def check_databases(self, names: Iterable[str]) -> None:
        known = set(names)
        for k in self.keys.values():
            unknown = sorted((k.databases or set()) - known)
            if unknown:
                raise ValueError(
                    f"{KEYS_ENV} ({k.name}): databases= names {', '.join(unknown)}, which the "
                    f"configuration does not have; configured: {', '.join(sorted(known))}"
                )

    # -- start-up -----------------------------------------------------------------------------------

    def describe(self) -> str:
        return (
            f"{len(self.keys)} key(s) ({', '.join(sorted(self.keys)) or 'none'}), "
            f"{len(self.networks)} allowed network(s)"
            + (
                f", client address from {self.client_ip_header} when the peer is one of "
                f"{len(self.trusted_proxies)} trusted proxy network(s)"
                if self.client_ip_header and self.trusted_proxies
                else ""
            )
        )

    def warnings(self, host: str, public_url: str | None, now: datetime | None = None) -> list[str]:
        """What the operator should hear at start: ignored headers, clear-text keys, keys about to expire."""
        out = []
        if not self.keys and not self.networks:
            out.append(f"no {KEYS_ENV} and no {ALLOWED_IPS_ENV}: every protected endpoint will answer 401")
        if self.client_ip_header and not self.trusted_proxies:
            out.append(
                f"{CLIENT_IP_HEADER_ENV}={self.client_ip_header} is IGNORED: without {TRUSTED_PROXIES_ENV} "
                "anyone could forge it; set it to the proxy's networks (Cloudflare's: "
                "https://www.cloudflare.com/ips/)"
            )
        if self.trusted_proxies and not self.client_ip_header:
            out.append(
                f"{TRUSTED_PROXIES_ENV} is set without {CLIENT_IP_HEADER_ENV}: every client behind the "
                "proxy has the proxy's address (one shared per-address limit)"
            )
        if not _is_loopback(host) and not (public_url or "").startswith("https://"):
            out.append(
                f"listening on {host}, beyond loopback, without TLS in front: keys would cross the network "
                "in clear; serve it behind a TLS proxy and set PATINA_PUBLIC_URL=https://..."
            )
        moment = now or datetime.now(UTC)
        for k in sorted(self.keys.values(), key=lambda k: k.name):
            if k.expires is not None and k.expires <= moment:
                out.append(f"key {k.name} expired at {k.expires.isoformat()}: it is refused; remove it")
            elif k.expires is not None and k.expires <= moment + timedelta(days=14):
                out.append(f"key {k.name} expires at {k.expires.isoformat()}: issue its replacement")
        return out


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def _in(ip: str, networks: list[Network]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------------
# Parsing the environment
# --------------------------------------------------------------------------------------------------


def parse_keys(text: str) -> dict[str, ApiKey]:
    keys: dict[str, ApiKey] = {}
    for position, entry in enumerate(filter(None, (e.strip() for e in text.split(","))), start=1):
        first, *options = entry.split()
        name, sep, key = first.partition(":")
        where = f"{KEYS_ENV} entry {position}"
        if not sep or not _KEY_NAME.match(name):
            raise ValueError(
                f"{where}: write each entry as name:key (the name: letters, digits, . _ @ -), then "
                "optionally databases=a+b actions=download+restore-guide+trigger+plaintext expires=YYYY-MM-DD"
            )
        if name in keys:
            raise ValueError(f"{where}: the name {name!r} is used twice; each key needs its own name")
        weakness = key_weakness(key)
        if weakness:
            raise ValueError(f"{where} ({name}): the key is weak ({weakness}); {MAKE_A_KEY}")
        keys[name] = ApiKey(name, _digest(key), **_key_options(options, f"{where} ({name})"))
    return keys


def _key_options(options: list[str], where: str) -> dict:
    out: dict = {}
    for option in options:
        label, sep, value = option.partition("=")
        if not sep or label not in ("databases", "actions", "expires") or label in out or not value:
            raise ValueError(
                f"{where}: {label!r} is not an option (each at most once): use databases=a+b, "
                f"actions={'+'.join(ACTIONS)}, expires=YYYY-MM-DD"
            )
        if label == "databases":
            out["databases"] = None if value == "*" else frozenset(value.split("+"))
        elif label == "actions":
            actions = set(ACTIONS) if value == "*" else set(value.split("+"))
            if actions - set(ACTIONS):
                raise ValueError(
                    f"{where}: unknown action(s) {', '.join(sorted(actions - set(ACTIONS)))}; "
                    f"the actions are {', '.join(ACTIONS)}"
                )
            out["actions"] = frozenset(actions)
        else:
            out["expires"] = _expiry(value, where)
    return out


def _expiry(value: str, where: str) -> datetime:
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.utcoffset() is None:
            raise ValueError
        return moment.astimezone(UTC)
    except ValueError:
        raise ValueError(
            f"{where}: expires={value!r} is not a date (YYYY-MM-DD: the key stops working at its "
            "start, UTC) or an ISO time with its offset"
        ) from None


def key_weakness(key: str) -> str | None:
    """Why a key is too easy to guess, or None. Lengths, distinct characters, runs, sequences, entropy."""
    if len(key) < MIN_KEY_LENGTH:
        return f"shorter than {MIN_KEY_LENGTH} characters"
    if any(c.isspace() for c in key):
        return "it contains spaces"
    if len(set(key)) < 6:
        return "fewer than 6 different characters"
    if re.search(r"(.)\1{4}", key):
        return "a character repeated 5 times in a row"
    steps = sum(1 for a, b in zip(key, key[1:]) if abs(ord(a) - ord(b)) == 1)
    if steps * 2 >= len(key):
        return "mostly consecutive characters"
    counts = Counter(key)
    bits = -sum(n * math.log2(n / len(key)) for n in counts.values())
    if bits < MIN_KEY_BITS:
        return f"about {bits:.0f} bits of entropy, fewer than {MIN_KEY_BITS}"
    return None


def parse_networks(text: str, variable: str = ALLOWED_IPS_ENV) -> list[Network]:
    networks = []
    for entry in filter(None, re.split(r"[,\s]+", text)):  # commas, or the lines of cloudflare.com/ips-v4
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError as exc:
            if "host bits set" in str(exc):
                loose = ipaddress.ip_network(entry, strict=False)
                raise ValueError(
                    f"{variable}: {entry!r} has host bits set, so it would mean {loose} "
                    f"({loose.num_addresses:,} addresses); write the address alone "
                    f"({entry.split('/')[0]}) or the network exactly ({loose})"
                ) from None
            raise ValueError(
                f"{variable}: {entry!r} is not an IP address or network (e.g. 203.0.113.7, 10.0.0.0/8)"
            ) from None
        if network.prefixlen == 0:
            raise ValueError(f"{variable}: {entry!r} is every address; name the networks that may connect")
        networks.append(network)
    return networks
