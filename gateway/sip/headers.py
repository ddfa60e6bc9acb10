"""Typed SIP header values: Via, CSeq, name-addr (From/To/Contact/Route/Record-Route) and
the credentials/challenge parameter lists of Authorization and WWW-Authenticate.

Each type has ``parse(text)`` (raising ``SipParseError``) and ``serialize()``; the
patterns live in ``grammar``.  Header parameter names are lower-cased; values are kept
verbatim (quoted strings keep their quotes, use ``grammar.unquote``).

Treat values as immutable snapshots (messages cache them): derive changed copies with
``with_params`` and write them back with ``Headers.set`` / ``insert_first``.  ``Via``,
``NameAddr`` and ``SipUri`` are not frozen only because frozen dataclass construction is
4x slower on the parsing hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trunkline.gateway.sip.grammar import (
    ADDR_SPEC,
    AUTH_HEAD,
    AUTH_PARAM,
    CSEQ,
    FAST_NAME_ADDR,
    FAST_VIA,
    GEN_PARAMS,
    LIST_ITEM,
    NAME_ADDR,
    VIA_PARM,
    SipParseError,
    parse_gen_params,
    quote,
    serialize_params,
    unquote,
)
from trunkline.gateway.sip.uri import SipUri, parse_uri, validate_uri

__all__ = ["MAGIC_COOKIE", "AuthValue", "CSeq", "NameAddr", "Via", "split_list"]

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 section 8.1.1.7

# Digest parameters written without quotes (RFC 3261 section 25.1 / RFC 2617)
_UNQUOTED_AUTH = frozenset({"algorithm", "qop", "nc", "stale"})


def split_list(value: str, header: str = "header") -> list[str]:
    """Split a comma-separated header value (RFC 3261 section 7.3.1), keeping commas inside
    quoted strings and angle brackets.  Empty elements come back as ``""`` so a caller can
    reject them; an unbalanced quote or ``<`` raises ``SipParseError``."""
    if "," not in value:
        return [value.strip()]
    if '"' not in value and "<" not in value:
        return [part.strip() for part in value.split(",")]
    items: list[str] = []
    pos = 0
    for m in LIST_ITEM.finditer(value):
        start = m.start()
        if start != pos:
            gap = value[pos:start]
            commas = gap.count(",")
            if gap.strip(", \t"):
                raise SipParseError(f"unbalanced quote or angle bracket in {header} {value!r}", header=header)
            items.extend([""] * (commas - (1 if items else 0)))
        items.append(m.group().strip())
        pos = m.end()
    gap = value[pos:]
    if gap.strip(", \t"):
        raise SipParseError(f"unbalanced quote or angle bracket in {header} {value!r}", header=header)
    items.extend([""] * gap.count(","))
    return items


@dataclass(slots=True, frozen=True)
class CSeq:
    """``CSeq: <seq> <method>`` (section 20.16); ``seq`` fits in 32 bits."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse a CSeq value; the number must fit in 32 bits (RFC 4475 scalar02)."""
        m = CSEQ.fullmatch(text.strip())
        if m is None:
            raise SipParseError(f"malformed CSeq {text!r}", header="CSeq")
        seq = int(m.group(1))
        if seq > 0xFFFFFFFF:
            raise SipParseError(f"CSeq number {m.group(1)} exceeds 2**32-1", header="CSeq")
        return cls(seq, m.group(2))

    def serialize(self) -> str:
        """Return ``"<seq> <method>"``."""
        return f"{self.seq} {self.method}"


@dataclass(slots=True)
class Via:
    """One via-parm: ``SIP/2.0/UDP host:port;branch=...;received=...;rport``."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @staticmethod
    def validate(text: str) -> None:
        """Raise ``SipParseError`` unless ``text`` is one well-formed via-parm (no object built)."""
        if FAST_VIA.fullmatch(text) is not None:
            return
        m = VIA_PARM.fullmatch(text)
        if m is None:
            raise SipParseError(f"malformed Via {text!r}", header="Via")
        port, params = m.group(5, 6)
        if port is not None and int(port) > 65535:
            raise SipParseError(f"Via port {port} out of range", header="Via")
        if params:
            if GEN_PARAMS.fullmatch(params) is None:
                raise SipParseError(f"malformed parameters {params!r} in Via", header="Via")
            if "ttl" in params.lower():
                Via.parse(text)

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse a single via-parm (split the header with ``split_list`` first)."""
        m = VIA_PARM.fullmatch(text.strip())
        if m is None:
            raise SipParseError(f"malformed Via {text!r}", header="Via")
        name, version, transport, host, port, params = m.groups()
        port_num = None
        if port is not None:
            port_num = int(port)
            if port_num > 65535:
                raise SipParseError(f"Via port {port} out of range", header="Via")
        parsed = parse_gen_params(params, "Via") if params else {}
        ttl = parsed.get("ttl")
        if ttl is not None and (not ttl.isdigit() or int(ttl) > 255):
            raise SipParseError(f"Via ttl {ttl!r} out of range", header="Via")
        return cls(transport.upper(), host, port_num, parsed, f"{name.upper()}/{version}")

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as sent."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def branch(self) -> str | None:
        """The branch parameter (RFC 3261 section 8.1.1.7), if any."""
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The received parameter (section 18.2.1), if any."""
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The RFC 3581 rport value; ``None`` when absent or valueless (see ``has_rport``)."""
        value = self.params.get("rport")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def has_rport(self) -> bool:
        """True when the rport parameter is present, with or without a value (RFC 3581)."""
        return "rport" in self.params

    @property
    def maddr(self) -> str | None:
        """The maddr parameter, if any."""
        return self.params.get("maddr")

    @property
    def ttl(self) -> int | None:
        """The ttl parameter, if any."""
        value = self.params.get("ttl")
        return int(value) if value is not None else None

    @property
    def rfc3261_branch(self) -> bool:
        """True when the branch starts with the magic cookie (section 17.2.3 matching)."""
        branch = self.params.get("branch")
        return branch is not None and branch.startswith(MAGIC_COOKIE)

    def with_params(self, **params: str | None) -> Via:
        """Return a copy with parameters added or replaced (e.g. ``received``, ``rport``)."""
        merged = dict(self.params)
        merged.update(params)
        # The constructor, not dataclasses.replace: the same copy at a fraction of the cost.
        return type(self)(self.transport, self.host, self.port, merged, self.protocol)

    def serialize(self) -> str:
        """Return the via-parm text."""
        return f"{self.protocol}/{self.transport} {self.sent_by}{serialize_params(self.params)}"


@dataclass(slots=True)
class NameAddr:
    """``[display-name] <uri>;params`` as used by From, To, Contact, Route and Record-Route.

    ``display_name`` is the decoded text (quotes and quoted-pairs removed), or ``None``.
    """

    uri: SipUri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @staticmethod
    def _split(text: str, header: str) -> tuple[str | None, str, str]:
        m = NAME_ADDR.fullmatch(text)
        if m is not None:
            display, uri_text, rest = m.groups()
            return display or None, uri_text, rest
        m = ADDR_SPEC.fullmatch(text)
        if m is None:
            what = "name-addr" if "<" in text else "value"
            raise SipParseError(f"malformed {header} {what} {text!r}", header=header)
        uri_text, rest = m.groups()
        return None, uri_text, rest

    @staticmethod
    def validate(text: str, header: str = "name-addr") -> str:
        """Raise ``SipParseError`` unless ``text`` is a well-formed name-addr/addr-spec with
        parameters; return the parameter text (no object built; "" when it has no
        parameter needing a range check)."""
        if FAST_NAME_ADDR.fullmatch(text) is not None:
            return ""
        _, uri_text, rest = NameAddr._split(text, header)
        try:
            validate_uri(uri_text)
        except SipParseError as exc:
            raise SipParseError(f"{exc.reason} in {header}", header=header) from None
        if rest and GEN_PARAMS.fullmatch(rest) is None:
            raise SipParseError(f"malformed parameters {rest!r} in {header}", header=header)
        return rest

    @classmethod
    def parse(cls, text: str, header: str = "name-addr") -> NameAddr:
        """Parse a name-addr or addr-spec followed by header parameters."""
        display, uri_text, rest = NameAddr._split(text, header)
        name = (unquote(display) if display[0] == '"' else display) if display else None
        try:
            uri = parse_uri(uri_text)
        except SipParseError as exc:
            raise SipParseError(f"{exc.reason} in {header}", header=header) from None
        params = parse_gen_params(rest, header) if rest else {}
        return cls(uri, name, params)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (section 19.3), if any."""
        return self.params.get("tag")

    @property
    def expires(self) -> int | None:
        """The Contact ``expires`` parameter (section 20.10), if numeric."""
        value = self.params.get("expires")
        return int(value) if value is not None and value.isdigit() else None

    def with_tag(self, tag: str) -> NameAddr:
        """Return a copy carrying ``tag``."""
        return self.with_params(tag=tag)

    def with_params(self, **params: str | None) -> NameAddr:
        """Return a copy with header parameters added or replaced."""
        merged = dict(self.params)
        merged.update(params)
        return type(self)(self.uri, self.display_name, merged)

    def serialize(self) -> str:
        """Return the name-addr text (always in the ``<uri>`` form)."""
        head = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{head}<{self.uri.serialize()}>{serialize_params(self.params)}"


@dataclass(slots=True, frozen=True)
class AuthValue:
    """A challenge (WWW-/Proxy-Authenticate) or credentials (Authorization,
    Proxy-Authorization) value: ``scheme`` and ``params`` with quotes removed."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, header: str = "Authorization") -> AuthValue:
        """Parse ``scheme param=value, param="value"``; names are lower-cased."""
        m = AUTH_HEAD.fullmatch(text.strip())
        if m is None:
            raise SipParseError(f"malformed {header} value {text!r}", header=header)
        scheme, rest = m.groups()
        params: dict[str, str] = {}
        if rest:
            pos = 0
            while pos < len(rest):
                pm = AUTH_PARAM.match(rest, pos)
                if pm is None or pm.end() == pos:
                    raise SipParseError(f"malformed {header} parameter in {rest[pos:]!r}", header=header)
                params[pm.group(1).lower()] = unquote(pm.group(2))
                pos = pm.end()
        return cls(scheme, params)

    def get(self, name: str) -> str | None:
        """Return parameter ``name`` (case-insensitive) or ``None``."""
        return self.params.get(name.lower())

    def serialize(self) -> str:
        """Return the value; Digest's ``algorithm``, ``qop`` (credentials), ``nc`` and
        ``stale`` stay unquoted, everything else is quoted (RFC 3261 section 25.1)."""
        items = []
        for name, value in self.params.items():
            if name in _UNQUOTED_AUTH and "," not in value:
                items.append(f"{name}={value}")
            else:
                items.append(f"{name}={quote(value)}")
        return f"{self.scheme} {', '.join(items)}" if items else self.scheme
