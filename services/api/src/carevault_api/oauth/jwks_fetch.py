"""Client keys registered as a JWKS URL (SMART Backend Services: ``jwks_uri``).

Fetched by api when a client authenticates, with tight limits, and cached:

- HTTPS only; the host must resolve to public addresses only (no loopback,
  private, link-local, multicast or reserved range), checked on the addresses
  the connection actually uses (a resolver that filters them, so a DNS answer
  that changes between check and use changes nothing); no redirects, no
  credentials in the URL. ``API_JWKS_URI_PRIVATE_NETWORKS`` lifts the address and
  scheme rules for the dev environment only (local test servers).
- Timeouts: 3 s to connect, 5 s in all; at most 64 KiB; a JSON JWK set of public
  keys only (a private member refuses the whole set).
- Cached per URL for ``Cache-Control: max-age`` bounded to 1 min .. 1 h (5 min
  without it). A key id the cached set lacks fetches again, at most every 30 s
  per URL (a client rotating its key is seen at once, a client sending garbage
  kids cannot make api hammer its server). When a fetch fails, the last good set
  is used for up to an hour, then the client cannot authenticate.

In Kubernetes api has no egress to the internet (docs/security-access.md): a site
that registers JWKS URLs opens egress to those hosts (or an egress proxy) itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

logger = logging.getLogger("carevault.api.jwks")

MAX_BYTES = 64 * 1024
CONNECT_TIMEOUT, TOTAL_TIMEOUT = 3.0, 5.0
DEFAULT_TTL, MIN_TTL, MAX_TTL = 300.0, 60.0, 3600.0
REFETCH_INTERVAL = 30.0
STALE_LIMIT = 3600.0
_MAX_AGE = re.compile(r"max-age=(\d+)")
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})


class JwksUnavailable(Exception):
    """The client's JWKS could not be obtained (nothing of why is sent to the client)."""


def _public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_global and not ip.is_multicast


def check_jwks_uri(uri: str, *, private_networks: bool = False) -> str | None:
    """Why ``uri`` cannot be registered, or None when it can."""
    if len(uri) > 2000:
        return "jwks_uri is too long"
    parts = urlsplit(uri)
    allowed = ("https", "http") if private_networks else ("https",)
    if parts.scheme not in allowed or not parts.hostname:
        return "jwks_uri must be an https URL"
    if parts.username or parts.password or parts.fragment:
        return "jwks_uri must not carry credentials or a fragment"
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return None
    if not private_networks and not _public_address(str(literal)):
        return "jwks_uri must not name a private, loopback or reserved address"
    return None


class _PublicOnlyResolver(AbstractResolver):
    """Resolves like the default resolver, then keeps public addresses only."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = [r for r in await self._inner.resolve(host, port, family) if _public_address(r["host"])]
        if not found:
            raise OSError(f"{host} resolves to no public address")
        return found

    async def close(self) -> None:
        await self._inner.close()


@dataclass
class _Entry:
    keys: KeySet
    fetched_at: float
    ttl: float


class JwksFetcher:
    def __init__(self, *, private_networks: bool = False, refetch_interval: float = REFETCH_INTERVAL) -> None:
        self.private_networks, self.refetch_interval = private_networks, refetch_interval
        self._entries: dict[str, _Entry] = {}
        self._last_attempt: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = None if self.private_networks else _PublicOnlyResolver()
            connector = aiohttp.TCPConnector(resolver=resolver, limit=20, ttl_dns_cache=60)
            timeout = aiohttp.ClientTimeout(total=TOTAL_TIMEOUT, connect=CONNECT_TIMEOUT)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)
        return self._session

    async def keys(self, uri: str, kid: str | None) -> KeySet:
        """The client's keys, fetched again if ``kid`` is not among the cached ones."""
        now = time.monotonic()
        entry = self._entries.get(uri)
        known = entry is not None and (kid is None or any(k.kid == kid for k in entry.keys.keys))
        if entry is not None and known and now - entry.fetched_at < entry.ttl:
            return entry.keys
        lock = self._locks.setdefault(uri, asyncio.Lock())
        async with lock:
            entry = self._entries.get(uri)
            if entry is not None and time.monotonic() - entry.fetched_at < min(1.0, self.refetch_interval):
                return entry.keys  # fetched by a concurrent request meanwhile
            recently_tried = time.monotonic() - self._last_attempt.get(uri, float("-inf")) < self.refetch_interval
            if entry is not None and recently_tried and time.monotonic() - entry.fetched_at < STALE_LIMIT:
                return entry.keys
            self._last_attempt[uri] = time.monotonic()
            try:
                keys, ttl = await self._fetch(uri)
            except JwksUnavailable:
                if entry is not None and time.monotonic() - entry.fetched_at < STALE_LIMIT:
                    return entry.keys
                raise
            self._entries[uri] = _Entry(keys, time.monotonic(), ttl)
            return keys

    async def _fetch(self, uri: str) -> tuple[KeySet, float]:
        if check_jwks_uri(uri, private_networks=self.private_networks) is not None:
            raise JwksUnavailable(uri)
        try:
            async with self._client().get(uri, allow_redirects=False, headers={"accept": "application/json"}) as resp:
                if resp.status != 200:
                    raise JwksUnavailable(f"status {resp.status}")
                body = await resp.content.read(MAX_BYTES + 1)
                cache_control = resp.headers.get("cache-control", "")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.warning("client JWKS fetch failed", extra={"error_type": type(exc).__name__})
            raise JwksUnavailable(type(exc).__name__) from None
        if len(body) > MAX_BYTES:
            raise JwksUnavailable("too large")
        try:
            document: Any = orjson.loads(body)
            members = document["keys"]
            if not isinstance(members, list) or any(not isinstance(k, dict) or _PRIVATE_MEMBERS & k.keys() for k in members):
                raise ValueError("not a set of public keys")
            keys = KeySet.import_key_set(document)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, JoseError):
            raise JwksUnavailable("not a JWK set") from None
        match = _MAX_AGE.search(cache_control)
        ttl = min(MAX_TTL, max(MIN_TTL, float(match.group(1)))) if match else DEFAULT_TTL
        return keys, ttl

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
