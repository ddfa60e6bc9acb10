# API-STABLE
"""SIP message model: ``Headers``, ``SipRequest``, ``SipResponse`` and response builders.

Header values are kept as raw (unfolded, stripped) strings; typed views (``via``,
``cseq``, ``from_``...) are parsed on first access and cached until the headers change.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from trunkline.gateway.sip.grammar import SipParseError
from trunkline.gateway.sip.headers import MAGIC_COOKIE, CSeq, NameAddr, Via, split_list
from trunkline.gateway.sip.uri import SipUri

__all__ = [
    "REASON_PHRASES",
    "Headers",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "canonical_name",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
]

_T = TypeVar("_T")

# Compact forms: RFC 3261 section 7.3.3 and 20; o/r/b/x/u from RFC 3265, 3515, 3892, 4028, 3265.
_COMPACT = {
    "v": "Via",
    "f": "From",
    "t": "To",
    "i": "Call-ID",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "u": "Allow-Events",
}
# fmt: off
_KNOWN = (
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "In-Reply-To",
    "Max-Forwards", "Min-Expires", "Min-SE", "MIME-Version", "Organization", "P-Asserted-Identity",
    "P-Preferred-Identity", "Path", "Priority", "Privacy", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-To",
    "Referred-By", "Replaces", "Reply-To", "Require", "Retry-After", "Route", "RSeq", "Server",
    "Service-Route", "Session-Expires", "Subject", "Subscription-State", "Supported", "Timestamp",
    "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate", "History-Info",
    "Diversion", "Remote-Party-ID", "Identity",
)
# fmt: on
_CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN}
_CANONICAL.update(_COMPACT)

# Headers whose grammar is a comma-separated list (RFC 3261 section 7.3.1); get_all splits them.
# fmt: off
LIST_HEADERS = frozenset((
    "via", "route", "record-route", "contact", "allow", "supported", "require", "proxy-require",
    "unsupported", "accept", "accept-encoding", "accept-language", "allow-events",
    "content-encoding", "content-language", "in-reply-to", "path", "service-route", "reason",
    "warning", "call-info", "alert-info", "error-info", "p-asserted-identity",
    "p-preferred-identity", "history-info", "diversion",
))
# fmt: on

# Headers that may appear once only (RFC 3261 section 7.3.1 and table 2/3 of section 20).
SINGLE_HEADERS = frozenset(
    ("to", "from", "call-id", "cseq", "max-forwards", "content-length", "content-type", "expires")
)


def canonical_name(name: str) -> str:
    """Return the canonical spelling of a header name (compact forms expanded)."""
    return _CANONICAL.get(name.lower(), name)


# header name as given -> (key, canonical spelling); bounded memo of the names the code and the
# wire use (a few dozen), so that lookups do not lower-case and map the name every time.
_NAMES: dict[str, tuple[str, str]] = {}


def _names(name: str) -> tuple[str, str]:
    entry = _NAMES.get(name)
    if entry is None:
        canon = _CANONICAL.get(name.lower())
        entry = (canon.lower(), canon) if canon is not None else (name.lower(), name)
        if len(_NAMES) < 4096:
            _NAMES[name] = entry
    return entry


def _key(name: str) -> str:
    entry = _NAMES.get(name)
    return (entry if entry is not None else _names(name))[0]


class Headers:
    """Ordered, multi-valued header list with case-insensitive lookup.

    Stores ``(key, name, value)`` triples: ``key`` is the lower-cased canonical name,
    ``name`` the canonical spelling used on output, ``value`` the raw value text.
    """

    __slots__ = ("_cache", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        self._cache: dict[str, Any] = {}
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_triples(cls, triples: list[tuple[str, str, str]]) -> Headers:
        headers = cls.__new__(cls)
        headers._items = triples
        headers._cache = {}
        return headers

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of header ``name`` (raw text), or ``default``."""
        key = (_NAMES.get(name) or _names(name))[0]
        for k, _, value in self._items:
            if k == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """All values of ``name`` in order; list headers (Via, Route, Contact...) are also
        split at commas outside quotes and angle brackets."""
        key = _key(name)
        values = [value for k, _, value in self._items if k == key]
        if key in LIST_HEADERS:
            out: list[str] = []
            for value in values:
                if "," in value:
                    out.extend(split_list(value, canonical_name(name)))
                else:
                    out.append(value)
            return out
        return values

    def count(self, name: str) -> int:
        """Number of header lines named ``name`` (e.g. to detect duplicated single headers)."""
        key = _key(name)
        return sum(1 for k, _, _ in self._items if k == key)

    def duplicated_singletons(self) -> list[str]:
        """Names of single-valued headers that appear more than once (To, From, Call-ID,
        CSeq, Max-Forwards, Content-Length...); RFC 4475 multi01/mcl01 expect a 400."""
        seen: set[str] = set()
        out: list[str] = []
        for key, name, _ in self._items:
            if key in SINGLE_HEADERS:
                if key in seen and name not in out:
                    out.append(name)
                seen.add(key)
        return out

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name)
        return any(k == key for k, _, _ in self._items)

    def add(self, name: str, value: str) -> None:
        """Append a header line."""
        key, canon = _NAMES.get(name) or _names(name)
        self._items.append((key, canon, value))
        self._cache.clear()

    def insert_first(self, name: str, value: str) -> None:
        """Insert a header line before the first line of the same name (or at the top),
        as a proxy does with its Via (RFC 3261 section 16.6 step 8)."""
        key = _key(name)
        index = 0
        for i, (k, _, _) in enumerate(self._items):
            if k == key:
                index = i
                break
        self._items.insert(index, (key, canonical_name(name), value))
        self._cache.clear()

    def set(self, name: str, value: str) -> None:
        """Replace all lines of ``name`` by one line (at the first one's position)."""
        key = _key(name)
        entry = (key, canonical_name(name), value)
        out: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[0] == key:
                if not placed:
                    out.append(entry)
                    placed = True
            else:
                out.append(item)
        if not placed:
            out.append(entry)
        self._items = out
        self._cache.clear()

    def remove(self, name: str) -> int:
        """Remove all lines of ``name``; return how many were removed."""
        key = _key(name)
        before = len(self._items)
        self._items = [item for item in self._items if item[0] != key]
        self._cache.clear()
        return before - len(self._items)

    def remove_first(self, name: str) -> str | None:
        """Remove the first *element* of ``name`` (e.g. the top Via or Route, even when the
        line holds several comma-separated values); return it or ``None``."""
        key = _key(name)
        for i, (k, canon, value) in enumerate(self._items):
            if k == key:
                parts = split_list(value, canon) if key in LIST_HEADERS and "," in value else [value]
                if len(parts) > 1:
                    self._items[i] = (k, canon, ", ".join(parts[1:]))
                else:
                    del self._items[i]
                self._cache.clear()
                return parts[0]
        return None

    def copy(self) -> Headers:
        """Return an independent copy."""
        return Headers._from_triples(list(self._items))

    def items(self) -> list[tuple[str, str]]:
        """``(name, value)`` pairs in order."""
        return [(name, value) for _, name, value in self._items]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((name, value) for _, name, value in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        """Equal when the same values appear in the same order; Content-Length is ignored
        because ``serialize()`` always rewrites it from the body."""
        if not isinstance(other, Headers):
            return NotImplemented
        mine = [(k, v) for k, _, v in self._items if k != "content-length"]
        theirs = [(k, v) for k, _, v in other._items if k != "content-length"]
        return mine == theirs

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"

    def drop_parsed(self) -> None:
        """Forget the typed views parsed so far (they are parsed again if asked for).

        For a message that stays referenced long after its use (an INVITE kept by its server
        transaction for 64*T1, RFC 6026): its text is all that is left to keep.
        """
        self._cache.clear()

    def cached(self, key: str, build: Callable[[], _T]) -> _T:
        """Return ``build()`` memoised under ``key`` until the headers change."""
        try:
            value: _T = self._cache[key]
            return value
        except KeyError:
            value = self._cache[key] = build()
            return value

    def _serialize_lines(self, parts: list[str], body_len: int) -> None:
        seen_length = False
        for key, name, value in self._items:
            if key == "content-length":
                seen_length = True
                value = str(body_len)
            parts.append(f"{name}: {value}")
        if not seen_length:
            parts.append(f"Content-Length: {body_len}")


class _MessageBase:
    """Typed header accessors shared by requests and responses."""

    __slots__ = ()
    headers: Headers
    body: bytes

    def start_line(self) -> str:
        """The request or status line."""
        raise NotImplementedError

    def serialize(self) -> bytes:
        """Wire bytes; Content-Length always equals ``len(body)``."""
        parts = [self.start_line()]
        self.headers._serialize_lines(parts, len(self.body))
        parts.append("\r\n")
        return "\r\n".join(parts).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.serialize()

    def _one(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header", header=name)
        return value

    @property
    def via(self) -> list[Via]:
        """All Via values, top first."""
        headers = self.headers
        hit: list[Via] | None = headers._cache.get("via")  # the hot path: no closure built
        if hit is not None:
            return hit
        return headers.cached("via", lambda: [Via.parse(v) for v in headers.get_all("Via")])

    @property
    def top_via(self) -> Via:
        """The top Via (raises ``SipParseError`` if there is none)."""
        vias = self.via
        if not vias:
            raise SipParseError("missing Via header", header="Via")
        return vias[0]

    @property
    def cseq(self) -> CSeq:
        """The CSeq (raises ``SipParseError`` if missing or malformed)."""
        hit: CSeq | None = self.headers._cache.get("cseq")
        if hit is not None:
            return hit
        return self.headers.cached("cseq", lambda: CSeq.parse(self._one("CSeq")))

    @property
    def call_id(self) -> str:
        """The Call-ID (raises ``SipParseError`` if missing)."""
        return self._one("Call-ID")

    @property
    def from_(self) -> NameAddr:
        """The From header (raises ``SipParseError`` if missing or malformed)."""
        hit: NameAddr | None = self.headers._cache.get("from")
        if hit is not None:
            return hit
        return self.headers.cached("from", lambda: NameAddr.parse(self._one("From"), "From"))

    @property
    def to(self) -> NameAddr:
        """The To header (raises ``SipParseError`` if missing or malformed)."""
        hit: NameAddr | None = self.headers._cache.get("to")
        if hit is not None:
            return hit
        return self.headers.cached("to", lambda: NameAddr.parse(self._one("To"), "To"))

    @property
    def contact(self) -> list[NameAddr]:
        """All Contact values; empty for none and for the REGISTER wildcard ``*``."""
        headers = self.headers

        def build() -> list[NameAddr]:
            return [NameAddr.parse(v, "Contact") for v in headers.get_all("Contact") if v != "*"]

        return headers.cached("contact", build)

    @property
    def contact_is_wildcard(self) -> bool:
        """True for ``Contact: *`` (RFC 3261 section 10.2.2)."""
        return self.headers.get_all("Contact") == ["*"]

    @property
    def route(self) -> list[NameAddr]:
        """All Route values in order."""
        headers = self.headers
        return headers.cached("route", lambda: [NameAddr.parse(v, "Route") for v in headers.get_all("Route")])

    @property
    def record_route(self) -> list[NameAddr]:
        """All Record-Route values in order."""
        headers = self.headers
        return headers.cached(
            "record-route",
            lambda: [NameAddr.parse(v, "Record-Route") for v in headers.get_all("Record-Route")],
        )

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards as an int, or ``None`` when absent."""
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        if not value.isdigit():
            raise SipParseError(f"malformed Max-Forwards {value!r}", header="Max-Forwards")
        return int(value)

    @property
    def content_type(self) -> str | None:
        """The Content-Type value (raw, e.g. ``application/sdp``), or ``None``."""
        return self.headers.get("Content-Type")

    @property
    def expires(self) -> int | None:
        """The Expires header as an int, or ``None``."""
        value = self.headers.get("Expires")
        return None if value is None or not value.isdigit() else int(value)


@dataclass(slots=True, eq=True)
class SipRequest(_MessageBase):
    """A SIP request. ``uri`` is the parsed Request-URI."""

    method: str
    uri: SipUri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def start_line(self) -> str:
        """``Method SP Request-URI SP SIP-Version``."""
        return f"{self.method} {self.uri.serialize()} {self.version}"


@dataclass(slots=True, eq=True)
class SipResponse(_MessageBase):
    """A SIP response."""

    status_code: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def start_line(self) -> str:
        """``SIP-Version SP Status-Code SP Reason-Phrase``."""
        return f"{self.version} {self.status_code} {self.reason}"


SipMessage = SipRequest | SipResponse

# RFC 3261 section 21 plus common extensions (RFC 3265, 3329, 3903, 4028, 4412, 5079, 6665).
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
}


def new_branch() -> str:
    """A fresh Via branch starting with the magic cookie ``z9hG4bK`` (section 8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    """A fresh From/To tag with at least 32 bits of randomness (section 19.3)."""
    return secrets.token_hex(6)


def new_call_id(host: str | None = None) -> str:
    """A fresh, globally unique Call-ID, optionally ``random@host`` (section 8.1.1.4)."""
    value = secrets.token_hex(16)
    return f"{value}@{host}" if host else value


_COPIED = frozenset(("via", "from", "call-id", "cseq"))
_TAG_PARAM = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)


def _to_has_tag(request: SipRequest) -> bool:
    try:
        return request.to.tag is not None
    except SipParseError:  # a malformed To (400 to a partial message): look at the raw text
        raw = request.headers.get("To")
        return raw is not None and _TAG_PARAM.search(raw) is not None


def make_response(
    request: SipRequest,
    status_code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> SipResponse:
    """Build a response to ``request`` per RFC 3261 section 8.2.6.2.

    Copies every Via (in order), From, Call-ID and CSeq; copies To and adds ``to_tag``
    when the request's To has no tag yet (never for 100 Trying, section 8.2.6.1).
    Copying Record-Route into dialog-creating responses (section 12.1.1) is left to the
    caller, through ``headers``, which are appended after the copied ones.
    """
    add_tag = to_tag is not None and status_code != 100 and not _to_has_tag(request)
    out: list[tuple[str, str, str]] = []
    added = False
    for item in request.headers._items:
        key = item[0]
        if key in _COPIED:
            out.append(item)
        elif key == "to":
            value = item[2]
            if add_tag:
                value = f"{value};tag={to_tag}"
                add_tag = False
                added = True
            out.append((key, item[1], value))
    response = SipResponse(
        status_code,
        REASON_PHRASES.get(status_code, "") if reason is None else reason,
        Headers._from_triples(out),
        body,
    )
    copied_only = True
    if headers is not None:
        for name, value in headers:
            response.headers.add(name, value)
            if copied_only and _key(name) in _SEEDED:
                copied_only = False
    if copied_only:
        _seed(request.headers._cache, response.headers._cache, to_tag if added else None)
    return response


# Typed views a response shares with its request when it copies their header lines unchanged.
_SEEDED = frozenset(("via", "from", "cseq", "to"))
_TAG_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")  # token (section 25.1)


def _seed(parsed: dict[str, Any], cache: dict[str, Any], to_tag: str | None) -> None:
    """Give a new response the request's parsed Via, From, CSeq and To (plus the To tag added):
    the same header text parses to equal values, so 2xx/dialog code need not parse them again."""
    if not parsed:
        return
    for key in ("via", "from", "cseq"):
        value = parsed.get(key)
        if value is not None:
            cache[key] = value
    to = parsed.get("to")
    if to is None:
        return
    if to_tag is None:
        cache["to"] = to
    elif _TAG_TOKEN.fullmatch(to_tag) is not None:
        cache["to"] = to.with_tag(to_tag)
