"""A shared HTTP cache for TwiML documents fetched with GET (RFC 9111).

Twilio's webhook requests are POST by default and a POST response is never cached. A number whose
``voice_method`` is ``GET`` may be answered from this cache when the customer's app says so:

* ``Cache-Control: max-age=N`` (or ``s-maxage=N``, which wins for a shared cache, or an ``Expires``
  date) makes the document fresh for N seconds: calls in that time are answered without a request.
* ``no-cache`` (or ``max-age=0``) with an ``ETag`` or ``Last-Modified`` stores the document but
  revalidates it on every call: a conditional GET (``If-None-Match`` / ``If-Modified-Since``)
  answered ``304 Not Modified`` reuses the stored body.
* ``no-store``, ``private`` (this cache serves every call of the node, so it is a shared cache,
  RFC 9111 §5.2.2.7) and ``Vary: *`` are never stored; neither is a response that is not ``200``
  or that has neither an explicit lifetime nor a validator (no heuristic freshness).

The cache key is the ``voice_url`` as configured, *before* Twilio's call parameters (``CallSid``,
``From``, ...) are appended to its query string: those differ on every call, so keying on them
would never hit. An app that marks a GET document cacheable therefore declares that it does not
depend on the call's parameters; an app whose answer depends on them must not send ``max-age``.
Revalidation requests do carry the current call's parameters and signature.

The cache is a small LRU (``max_entries``) driven by an injected monotonic clock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from multidict import CIMultiDict

__all__ = ["CachePolicy", "CachedDocument", "TwimlCache", "cache_policy"]


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """What a response's headers allow: store it, for how long, with which validators."""

    store: bool
    lifetime: float
    """Seconds the stored document is fresh (0: revalidate on every use)."""
    etag: str | None = None
    last_modified: str | None = None


def _directives(value: str) -> dict[str, str | None]:
    # RFC 9111 §5.2: Cache-Control = #cache-directive
    #                cache-directive = token [ "=" ( token / quoted-string ) ]
    out: dict[str, str | None] = {}
    for item in value.split(","):
        name, sep, arg = item.strip().partition("=")
        if name:
            out[name.strip().lower()] = arg.strip().strip('"') if sep else None
    return out


def _seconds(value: str | None) -> float | None:
    # RFC 9111 §1.2.2: delta-seconds = 1*DIGIT; an invalid value is treated as stale (§4.2.1).
    if value is None:
        return None
    return float(value) if value.isdigit() else 0.0


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def cache_policy(status: int, headers: Mapping[str, str]) -> CachePolicy:
    """The storage decision of RFC 9111 §3 and the freshness lifetime of §4.2.1 for one response."""
    directives = _directives(headers.get("Cache-Control", ""))
    etag = headers.get("ETag") or None
    last_modified = headers.get("Last-Modified") or None
    # §3: no-store and (for a shared cache) private forbid storing; Vary: * never matches (§4.1).
    if (
        status != 200
        or "no-store" in directives
        or "private" in directives
        or headers.get("Vary", "").strip() == "*"
    ):
        return CachePolicy(False, 0.0)
    lifetime: float | None
    if "no-cache" in directives:
        lifetime = 0.0  # §5.2.2.4: must be validated before each reuse
    else:
        # §4.2.1: s-maxage, then max-age, then Expires minus Date.
        lifetime = _seconds(directives.get("s-maxage", directives.get("max-age")))
        if lifetime is None and "Expires" in headers:
            expires = _http_date(headers["Expires"])
            date = _http_date(headers.get("Date")) or time.time()
            lifetime = max(0.0, expires - date) if expires is not None else 0.0
    if lifetime is None:
        return CachePolicy(False, 0.0)  # no explicit freshness: no heuristic caching of TwiML
    # §4.2.3: the response's Age is already used up.
    age = _seconds(headers.get("Age")) or 0.0
    lifetime = max(0.0, lifetime - age)
    if lifetime == 0.0 and etag is None and last_modified is None:
        return CachePolicy(False, 0.0)  # stale at once and cannot be revalidated: useless
    return CachePolicy(True, lifetime, etag, last_modified)


@dataclass(frozen=True, slots=True)
class CachedDocument:
    """One stored TwiML response with its validators and the monotonic time it goes stale."""

    content_type: str
    body: bytes
    expires: float
    etag: str | None = None
    last_modified: str | None = None

    def fresh(self, now: float) -> bool:
        """Whether it may be used without asking the origin."""
        return now < self.expires

    def validators(self) -> dict[str, str]:
        """Conditional request headers (RFC 9110 §13.1.1, §13.1.3) to revalidate it."""
        headers = {}
        if self.etag is not None:
            headers["If-None-Match"] = self.etag
        if self.last_modified is not None:
            headers["If-Modified-Since"] = self.last_modified
        return headers


class TwimlCache:
    """LRU of GET TwiML documents keyed by the configured URL (see the module docstring)."""

    def __init__(self, max_entries: int = 1024, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, CachedDocument] = OrderedDict()
        self.hits = 0
        """Calls answered from the cache without a request."""
        self.revalidated = 0
        """Conditional requests answered ``304 Not Modified``."""
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> CachedDocument | None:
        """The stored document for ``key``, fresh or stale (check :meth:`CachedDocument.fresh`)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, status: int, headers: Mapping[str, str], body: bytes) -> bool:
        """Store a full response if its headers allow (else drop any old entry); return whether stored."""
        policy = cache_policy(status, headers)
        if not policy.store:
            self._entries.pop(key, None)
            return False
        self._entries[key] = CachedDocument(
            headers.get("Content-Type", ""),
            body,
            self.clock() + policy.lifetime,
            policy.etag,
            policy.last_modified,
        )
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    def refresh(self, key: str, entry: CachedDocument, headers: Mapping[str, str]) -> CachedDocument:
        """Update ``entry`` from a ``304`` (RFC 9111 §4.3.4): new lifetime and validators, same body.

        Returns the entry to use for this call; it stays stored only if the 304 still allows it.
        """
        merged: CIMultiDict[str] = CIMultiDict({"Content-Type": entry.content_type})
        if entry.etag is not None:
            merged["ETag"] = entry.etag
        if entry.last_modified is not None:
            merged["Last-Modified"] = entry.last_modified
        for name, value in headers.items():
            if name.lower() != "content-type":
                merged[name] = value
        policy = cache_policy(200, merged)
        updated = CachedDocument(
            entry.content_type,
            entry.body,
            self.clock() + policy.lifetime,
            policy.etag,
            policy.last_modified,
        )
        if policy.store:
            self._entries[key] = updated
        else:
            self._entries.pop(key, None)
        return updated

    def clear(self) -> None:
        """Forget every document."""
        self._entries.clear()
