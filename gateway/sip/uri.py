"""SIP, SIPS and tel URIs (RFC 3261 section 19.1, RFC 3966) and other absolute URIs.

``SipUri`` stores user, password and parameters *decoded* (percent-escapes resolved,
section 19.1.2) and escapes them again on ``serialize()``; equality follows the
comparison rules of section 19.1.4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote as _pct_quote
from urllib.parse import unquote_to_bytes

from trunkline.gateway.sip.grammar import (
    ABSOLUTE_URI,
    BAD_ESCAPE,
    OPAQUE_PART,
    SIP_URI,
    TEL_SUBSCRIBER,
    SipParseError,
)

__all__ = ["SipUri", "parse_uri", "validate_uri"]

# Characters that may stay unescaped when serializing each component (section 25.1).
_USER_SAFE = "-_.!~*'()&=+$,;?/"
_PASSWORD_SAFE = "-_.!~*'()&=+$,"
_PARAM_SAFE = "-_.!~*'()[]/:&+$"
_HEADER_SAFE = "-_.!~*'()[]/?:+$"
_NEEDS_ESCAPE = {
    safe: re.compile("[^A-Za-z0-9" + re.escape(safe) + "]")
    for safe in (_USER_SAFE, _PASSWORD_SAFE, _PARAM_SAFE, _HEADER_SAFE)
}
_TEL_VISUAL = re.compile(r"[\-.()]")

# Section 19.1.4: these parameters must match even when present in only one URI.
_STRICT_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    return unquote_to_bytes(text).decode("utf-8", "surrogateescape")


def _escape(text: str, safe: str) -> str:
    if _NEEDS_ESCAPE[safe].search(text) is None:
        return text
    return _pct_quote(text.encode("utf-8", "surrogateescape"), safe=safe)


@dataclass(slots=True, eq=False)
class SipUri:
    """A parsed URI.

    For ``sip``/``sips``: ``user``, ``password`` (decoded), ``host`` (IPv6 kept in
    brackets, case preserved), ``port``, ordered ``params`` (decoded, names lower-cased,
    ``None`` for a valueless parameter such as ``lr``) and ``headers``.  For ``tel`` the
    number is in ``user`` and ``host`` is empty.  Any other scheme keeps its text in
    ``opaque`` (the layer above answers 416, RFC 3261 section 8.2.2.1).

    Treat instances as immutable (they are hashable and cached by messages); derive
    changed copies with ``with_params`` or ``dataclasses.replace``.  Not frozen only
    because frozen construction costs 4x more on the parsing hot path.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    opaque: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI; raise ``SipParseError`` if it is not well formed."""
        return parse_uri(text)

    @property
    def is_sip(self) -> bool:
        """True for ``sip`` and ``sips`` URIs."""
        return self.scheme in ("sip", "sips")

    @property
    def host_port(self) -> str:
        """``host[:port]`` as written in a Via sent-by or a Host header."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased, if any."""
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def lr(self) -> bool:
        """True when the loose-routing ``lr`` parameter is present (section 16.12)."""
        return "lr" in self.params

    def with_params(self, **params: str | None) -> SipUri:
        """Return a copy with parameters added or replaced."""
        merged = dict(self.params)
        merged.update(params)
        # The constructor, not dataclasses.replace: the same copy at a fraction of the cost.
        return type(self)(
            self.scheme, self.user, self.password, self.host, self.port, merged, self.headers, self.opaque
        )

    def without_headers(self) -> SipUri:
        """Return a copy without the ``?header`` part (e.g. for a Request-URI, section 19.1.5)."""
        return type(self)(
            self.scheme, self.user, self.password, self.host, self.port, self.params, {}, self.opaque
        )

    def serialize(self) -> str:
        """Return the URI text, escaping characters where section 25.1 requires it."""
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        parts = [self.scheme, ":"]
        if self.scheme == "tel":
            parts.append(self.user or "")
        else:
            if self.user is not None:
                parts.append(_escape(self.user, _USER_SAFE))
                if self.password is not None:
                    parts.append(":")
                    parts.append(_escape(self.password, _PASSWORD_SAFE))
                parts.append("@")
            parts.append(self.host)
            if self.port is not None:
                parts.append(f":{self.port}")
        for name, value in self.params.items():
            parts.append(";")
            parts.append(_escape(name, _PARAM_SAFE))
            if value is not None:
                parts.append("=")
                parts.append(_escape(value, _PARAM_SAFE))
        if self.headers:
            parts.append("?")
            parts.append(
                "&".join(
                    f"{_escape(k, _HEADER_SAFE)}={_escape(v, _HEADER_SAFE)}" for k, v in self.headers.items()
                )
            )
        return "".join(parts)

    __str__ = serialize

    def __eq__(self, other: object) -> bool:
        """Compare per RFC 3261 section 19.1.4 (tel: RFC 3966 section 4)."""
        if not isinstance(other, SipUri):
            return NotImplemented
        if self.scheme.lower() != other.scheme.lower():
            return False
        if self.opaque is not None or other.opaque is not None:
            return self.opaque == other.opaque
        if self.scheme == "tel":
            if _TEL_VISUAL.sub("", self.user or "") != _TEL_VISUAL.sub("", other.user or ""):
                return False
        elif (
            self.user != other.user
            or self.password != other.password
            or self.host.lower() != other.host.lower()
            or self.port != other.port
        ):
            return False
        mine, theirs = self.params, other.params
        for name in _STRICT_PARAMS:
            if (name in mine) != (name in theirs):
                return False
        for name, value in mine.items():
            if name in theirs:
                other_value = theirs[name]
                if (value is None) != (other_value is None):
                    return False
                if value is not None and other_value is not None and value.lower() != other_value.lower():
                    return False
        mine_h = {k.lower(): v for k, v in self.headers.items()}
        theirs_h = {k.lower(): v for k, v in other.headers.items()}
        return mine_h == theirs_h

    def __hash__(self) -> int:
        user = _TEL_VISUAL.sub("", self.user or "") if self.scheme == "tel" else self.user
        return hash((self.scheme.lower(), user, self.host.lower(), self.port, self.opaque))


def _parse_uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        params[_unescape(name).lower()] = _unescape(value) if eq else None
    return params


def _match_uri(text: str) -> tuple[str, re.Match[str]]:
    """Check ``text`` against the URI grammar; return its lower-cased scheme and match."""
    colon = text.find(":")
    scheme = text[:colon].lower() if colon > 0 else ""
    if scheme == "sip" or scheme == "sips":
        m = SIP_URI.fullmatch(text, colon + 1)
        if m is None:
            raise SipParseError(f"malformed {scheme.upper()} URI {text!r}")
        port = m.group(4)
        if port is not None and int(port) > 65535:
            raise SipParseError(f"port out of range in URI {text!r}")
    elif scheme == "tel":
        m = TEL_SUBSCRIBER.fullmatch(text, colon + 1)
        if m is None:
            raise SipParseError(f"malformed tel URI {text!r}")
    else:
        m = ABSOLUTE_URI.fullmatch(text)
        if m is None or OPAQUE_PART.fullmatch(m.group(2)) is None:
            raise SipParseError(f"malformed URI {text!r}")
        return m.group(1).lower(), m
    if "%" in text and BAD_ESCAPE.search(text) is not None:
        raise SipParseError(f"bad percent-escape in URI {text!r}")
    return scheme, m


def validate_uri(text: str) -> None:
    """Raise ``SipParseError`` unless ``text`` is a well-formed URI (no object is built)."""
    _match_uri(text)


def parse_uri(text: str) -> SipUri:
    """Parse ``text`` into a ``SipUri``; raise ``SipParseError`` naming the bad URI."""
    scheme, m = _match_uri(text)
    if scheme == "sip" or scheme == "sips":
        user, password, host, port, params, headers = m.groups()
        header_map: dict[str, str] = {}
        if headers:
            for item in headers.split("&"):
                hname, _, hvalue = item.partition("=")
                header_map[_unescape(hname)] = _unescape(hvalue)
        return SipUri(
            scheme,
            None if user is None else _unescape(user),
            None if password is None else _unescape(password),
            host,
            None if port is None else int(port),
            _parse_uri_params(params) if params else {},
            header_map,
        )
    if scheme == "tel":
        number, params = m.groups()
        return SipUri("tel", number, None, "", None, _parse_uri_params(params) if params else {})
    return SipUri(scheme, opaque=m.group(2))
