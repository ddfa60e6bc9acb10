"""SDP session descriptions (RFC 4566): model, grammar, parser and serializer.

Sans-I/O: ``parse_sdp`` turns a body (str or bytes) into frozen dataclasses and
``SessionDescription.serialize`` turns them back into CRLF-terminated bytes, so that
``parse_sdp(sdp.serialize()) == sdp``.  Import these names from
``trunkline.gateway.sip.sdp``, which re-exports them beside the offer/answer rules.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Literal, cast

__all__ = [
    "DEFAULT_CODECS",
    "G722",
    "OPUS",
    "PCMA",
    "PCMU",
    "STATIC_PAYLOAD_TYPES",
    "TELEPHONE_EVENT_8000",
    "TELEPHONE_EVENT_48000",
    "Attribute",
    "Bandwidth",
    "Connection",
    "Direction",
    "MediaDescription",
    "Origin",
    "RtcpAttribute",
    "RtpFormat",
    "SdpError",
    "SessionDescription",
    "Timing",
    "parse_fmtp",
    "parse_sdp",
]

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: Final[frozenset[str]] = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})

# RFC 4566 §9: token = 1*(token-char); token-char = %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39
#   / %x41-5A / %x5E-7E
_TOKEN = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
_TOKEN_RE: Final = re.compile(_TOKEN)
# media-field = %x6d "=" media SP port ["/" integer] SP proto 1*(SP fmt) CRLF
_MEDIA_RE: Final = re.compile(rf"({_TOKEN}) ([0-9]+)(?:/([0-9]+))? ({_TOKEN}(?:/{_TOKEN})*)((?: {_TOKEN})*)")
# origin-field = %x6f "=" username SP sess-id SP sess-version SP nettype SP addrtype SP unicast-address
_ORIGIN_RE: Final = re.compile(r"(\S+) ([0-9]+) ([0-9]+) (" + _TOKEN + ") (" + _TOKEN + r") (\S+)")
# rtpmap (RFC 4566 §6): a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
_RTPMAP_RE: Final = re.compile(r"([0-9]{1,3}) +([^/\s]+)/([0-9]+)(?:/([0-9]+))?\s*")
_DIGITS_RE: Final = re.compile(r"[0-9]{1,18}")
_IP4_RE: Final = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
# Session-level and media-level line types (RFC 4566 §5, in canonical order).
_SESSION_TYPES: Final = "vosiuepcbtrzka"
_MEDIA_TYPES: Final = "micbka"


class SdpError(ValueError):
    """Malformed or unacceptable SDP.

    ``status_code`` is the SIP response to send (400 for syntax, 488 for negotiation
    failure) and ``warning`` the matching ``Warning`` header value (RFC 3261 §20.43).
    """

    def __init__(self, message: str, status_code: int = 400, warning: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.warning = warning


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=`` line (RFC 4566 §5.2)."""

    username: str
    sess_id: str
    sess_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=`` line (RFC 4566 §5.7); ``ttl`` and ``count`` only for multicast."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"
    ttl: int | None = None
    count: int | None = None

    @property
    def is_null(self) -> bool:
        """True for the RFC 2543 hold address ``0.0.0.0`` (RFC 3264 §8.4)."""
        return self.address in ("0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (RFC 4566 §5.8)."""

    bwtype: str
    bandwidth: int


@dataclass(frozen=True, slots=True)
class Timing:
    """``t=`` line with its ``r=`` lines kept verbatim (RFC 4566 §5.9, §5.10)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Attribute:
    """A generic ``a=name[:value]`` line (RFC 4566 §5.13)."""

    name: str
    value: str | None = None


@dataclass(frozen=True, slots=True)
class RtcpAttribute:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605 §2.1)."""

    port: int
    address: str | None = None
    addrtype: str | None = None
    nettype: str | None = None


@dataclass(frozen=True, slots=True)
class RtpFormat:
    """One RTP payload format: payload type, encoding, clock rate, channels and fmtp."""

    payload_type: int
    encoding_name: str
    clock_rate: int
    channels: int = 1
    fmtp: Mapping[str, str] = field(default_factory=dict)

    @property
    def rtpmap(self) -> str:
        """The ``a=rtpmap`` value without the payload type, e.g. ``opus/48000/2``."""
        base = f"{self.encoding_name}/{self.clock_rate}"
        return f"{base}/{self.channels}" if self.channels != 1 else base

    @property
    def fmtp_value(self) -> str | None:
        """The ``a=fmtp`` parameter string, or None when there are no parameters."""
        if not self.fmtp:
            return None
        return ";".join(k if v == "" else f"{k}={v}" for k, v in self.fmtp.items())

    @property
    def is_telephone_event(self) -> bool:
        """RFC 4733 named telephone events."""
        return self.encoding_name.lower() == "telephone-event"

    @property
    def sample_rate(self) -> int:
        """Audio sampling rate: G.722 is 16 kHz audio on an 8 kHz RTP clock (RFC 3551 §4.5.2)."""
        return 16000 if self.encoding_name.upper() == "G722" else self.clock_rate

    def __hash__(self) -> int:
        key = (self.payload_type, self.encoding_name, self.clock_rate, self.channels)
        return hash((*key, tuple(self.fmtp.items())))

    def matches(self, other: RtpFormat) -> bool:
        """Same codec ignoring payload type and fmtp (encoding names are case-insensitive)."""
        if self.encoding_name.lower() != other.encoding_name.lower() or self.channels != other.channels:
            return False
        if self.encoding_name.upper() == "G722":  # some UAs wrongly advertise G722/16000
            return True
        return self.clock_rate == other.clock_rate


# RFC 3551 §6 table 4 and 5: static payload types (name, clock rate, channels).
STATIC_PAYLOAD_TYPES: Final[Mapping[int, tuple[str, int, int]]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
    25: ("CelB", 90000, 1),
    26: ("JPEG", 90000, 1),
    28: ("nv", 90000, 1),
    31: ("H261", 90000, 1),
    32: ("MPV", 90000, 1),
    33: ("MP2T", 90000, 1),
    34: ("H263", 90000, 1),
}

PCMU: Final = RtpFormat(0, "PCMU", 8000)
PCMA: Final = RtpFormat(8, "PCMA", 8000)
G722: Final = RtpFormat(9, "G722", 8000)
OPUS: Final = RtpFormat(111, "opus", 48000, 2, {"useinbandfec": "1"})
TELEPHONE_EVENT_8000: Final = RtpFormat(101, "telephone-event", 8000, 1, {"0-16": ""})
TELEPHONE_EVENT_48000: Final = RtpFormat(102, "telephone-event", 48000, 1, {"0-16": ""})
DEFAULT_CODECS: Final[tuple[RtpFormat, ...]] = (
    PCMU,
    PCMA,
    OPUS,
    G722,
    TELEPHONE_EVENT_8000,
    TELEPHONE_EVENT_48000,
)


def parse_fmtp(value: str) -> dict[str, str]:
    """Split an fmtp parameter string (``a=1;b=2`` or ``0-16``) into an ordered dict."""
    params: dict[str, str] = {}
    for item in value.split(";"):
        item = item.strip()
        if not item:
            continue
        key, sep, val = item.partition("=")
        params[key.strip()] = val.strip() if sep else ""
    return params


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section (RFC 4566 §5.14) with the RTP attributes broken out.

    ``direction`` is already resolved: the media-level attribute, else the session-level
    one, else ``sendrecv`` (RFC 3264 §5.1).  ``rtpmap`` and ``fmtp`` map a format string to
    the attribute value after the payload type; other attributes stay in ``attributes``.
    """

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    information: str | None = None
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    rtpmap: Mapping[str, str] = field(default_factory=dict)
    fmtp: Mapping[str, str] = field(default_factory=dict)
    direction: Direction = "sendrecv"
    ptime: int | None = None
    maxptime: int | None = None
    rtcp: RtcpAttribute | None = None
    attributes: tuple[Attribute, ...] = ()

    def rtp_format(self, fmt: str) -> RtpFormat | None:
        """Resolve one format through ``a=rtpmap`` or the static table; None if unknown."""
        if not (fmt.isascii() and fmt.isdigit()):
            return None
        pt = int(fmt)
        params = parse_fmtp(self.fmtp[fmt]) if fmt in self.fmtp else {}
        mapped = self.rtpmap.get(fmt)
        if mapped is not None:
            name, rate, *extra = mapped.split("/")
            channels = int(extra[0]) if extra and self.media == "audio" else 1
            return RtpFormat(pt, name, int(rate), channels, params)
        if pt in STATIC_PAYLOAD_TYPES:
            return RtpFormat(pt, *STATIC_PAYLOAD_TYPES[pt], params)
        return None

    def rtp_formats(self) -> tuple[RtpFormat, ...]:
        """All resolvable formats in the order of the ``m=`` line."""
        resolved = (self.rtp_format(f) for f in self.formats)
        return tuple(f for f in resolved if f is not None)

    def attribute(self, name: str) -> str | None:
        """Value of the first other attribute called ``name`` ("" for a flag), else None."""
        for attr in self.attributes:
            if attr.name == name:
                return attr.value if attr.value is not None else ""
        return None


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole SDP body (RFC 4566 §5).  ``parse_sdp(x.serialize()) == x`` holds."""

    origin: Origin
    session_name: str = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    timings: tuple[Timing, ...] = (Timing(),)
    time_zones: str | None = None
    key: str | None = None
    direction: Direction | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()

    def serialize(self) -> bytes:
        """Wire form with CRLF line ends in the RFC 4566 §5 order."""
        o = self.origin
        lines = [
            f"v={self.version}",
            f"o={o.username} {o.sess_id} {o.sess_version} {o.nettype} {o.addrtype} {o.address}",
            f"s={self.session_name}",
        ]
        _opt(lines, "i", self.information)
        _opt(lines, "u", self.uri)
        lines += [f"e={e}" for e in self.emails]
        lines += [f"p={p}" for p in self.phones]
        _connection_line(lines, self.connection)
        lines += [f"b={b.bwtype}:{b.bandwidth}" for b in self.bandwidths]
        for t in self.timings:
            lines.append(f"t={t.start} {t.stop}")
            lines += [f"r={r}" for r in t.repeats]
        _opt(lines, "z", self.time_zones)
        _opt(lines, "k", self.key)
        if self.direction is not None:
            lines.append(f"a={self.direction}")
        lines += [_attr_line(a) for a in self.attributes]
        for m in self.media:
            _media_lines(lines, m)
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The connection data of a stream: media-level ``c=`` else session-level."""
        return media.connection or self.connection


def _opt(lines: list[str], letter: str, value: str | None) -> None:
    if value is not None:
        lines.append(f"{letter}={value}")


def _attr_line(attr: Attribute) -> str:
    return f"a={attr.name}" if attr.value is None else f"a={attr.name}:{attr.value}"


def _connection_line(lines: list[str], c: Connection | None) -> None:
    if c is None:
        return
    addr = c.address
    if c.ttl is not None:
        addr += f"/{c.ttl}"
    if c.count is not None:
        addr += f"/{c.count}"
    lines.append(f"c={c.nettype} {c.addrtype} {addr}")


def _media_lines(lines: list[str], m: MediaDescription) -> None:
    port = f"{m.port}/{m.port_count}" if m.port_count is not None else str(m.port)
    lines.append(" ".join(["m=" + m.media, port, m.proto, *m.formats]))
    _opt(lines, "i", m.information)
    _connection_line(lines, m.connection)
    lines += [f"b={b.bwtype}:{b.bandwidth}" for b in m.bandwidths]
    _opt(lines, "k", m.key)
    listed = list(m.formats) + [f for f in (*m.rtpmap, *m.fmtp) if f not in m.formats]
    for fmt in dict.fromkeys(listed):
        if fmt in m.rtpmap:
            lines.append(f"a=rtpmap:{fmt} {m.rtpmap[fmt]}")
        if fmt in m.fmtp:
            lines.append(f"a=fmtp:{fmt} {m.fmtp[fmt]}")
    if m.ptime is not None:
        lines.append(f"a=ptime:{m.ptime}")
    if m.maxptime is not None:
        lines.append(f"a=maxptime:{m.maxptime}")
    if m.rtcp is not None:
        r = m.rtcp
        tail = f" {r.nettype} {r.addrtype} {r.address}" if r.address is not None else ""
        lines.append(f"a=rtcp:{r.port}{tail}")
    lines += [_attr_line(a) for a in m.attributes]
    lines.append(f"a={m.direction}")


# --------------------------------------------------------------------------- parsing


def _int(value: str, what: str) -> int:
    if not _DIGITS_RE.fullmatch(value):
        raise SdpError(f"{what} is not a number: {value!r}")
    return int(value)


def _parse_connection(value: str) -> Connection:
    # connection-field = [%x63 "=" nettype SP addrtype SP connection-address CRLF]
    parts = value.split(" ")
    if len(parts) != 3 or not all(_TOKEN_RE.fullmatch(p) for p in parts[:2]) or not parts[2]:
        raise SdpError(f"malformed c= line: {value!r}")
    nettype, addrtype, spec = parts
    address, *suffix = spec.split("/")
    ttl = count = None
    if addrtype == "IP4":
        # IP4-multicast = m1 3( "." decimal-uchar ) "/" ttl [ "/" integer ]
        if ":" in address:
            raise SdpError(f"IPv6 address in an IP4 c= line: {address!r}")
        if _IP4_RE.fullmatch(address):
            try:
                ipaddress.IPv4Address(address)
            except ValueError:
                raise SdpError(f"invalid IPv4 address in c= line: {address!r}") from None
        if len(suffix) > 2:
            raise SdpError(f"malformed multicast suffix in c= line: {value!r}")
        ttl = _int(suffix[0], "c= TTL") if suffix else None
        count = _int(suffix[1], "c= address count") if len(suffix) > 1 else None
    elif addrtype == "IP6":
        # IP6-multicast = hexpart [ "/" integer ]
        if ":" in address:
            try:
                ipaddress.IPv6Address(address)
            except ValueError:
                raise SdpError(f"invalid IPv6 address in c= line: {address!r}") from None
        elif _IP4_RE.fullmatch(address):
            raise SdpError(f"IPv4 address in an IP6 c= line: {address!r}")
        if len(suffix) > 1:
            raise SdpError(f"malformed multicast suffix in c= line: {value!r}")
        count = _int(suffix[0], "c= address count") if suffix else None
    return Connection(address, addrtype, nettype, ttl, count)


def _parse_rtcp(value: str) -> RtcpAttribute:
    # rtcp-attribute = "a=rtcp:" port [nettype space addrtype space connection-address] CRLF
    parts = value.split()
    if len(parts) == 1:
        return RtcpAttribute(_int(parts[0], "a=rtcp port"))
    if len(parts) == 4:
        return RtcpAttribute(_int(parts[0], "a=rtcp port"), parts[3], parts[2], parts[1])
    raise SdpError(f"malformed a=rtcp: {value!r}")


class _MediaBuilder:
    """Mutable accumulator for one ``m=`` section while parsing."""

    def __init__(self, value: str) -> None:
        match = _MEDIA_RE.fullmatch(value)
        if match is None:
            raise SdpError(f"malformed m= line: {value!r}")
        self.media, port, count, self.proto, fmts = match.groups()
        self.port = int(port)
        if self.port > 65535:
            raise SdpError(f"m= port out of range: {port}")
        self.port_count = int(count) if count is not None else None
        self.formats = tuple(fmts.split())
        if not self.formats and self.port != 0:
            raise SdpError(f"m= line without formats: {value!r}")
        self.information: str | None = None
        self.connection: Connection | None = None
        self.bandwidths: list[Bandwidth] = []
        self.key: str | None = None
        self.rtpmap: dict[str, str] = {}
        self.fmtp: dict[str, str] = {}
        self.direction: str | None = None
        self.ptime: int | None = None
        self.maxptime: int | None = None
        self.rtcp: RtcpAttribute | None = None
        self.attributes: list[Attribute] = []

    def attribute(self, name: str, value: str | None) -> None:
        if name in DIRECTIONS:
            if self.direction is not None:
                raise SdpError(f"more than one direction attribute in m={self.media}")
            self.direction = name
        elif name == "rtpmap" and value is not None:
            match = _RTPMAP_RE.fullmatch(value)
            if match is None:
                raise SdpError(f"malformed a=rtpmap: {value!r}")
            pt, name_, rate, params = match.groups()
            if pt in self.rtpmap:
                raise SdpError(f"duplicate a=rtpmap for payload type {pt}")
            self.rtpmap[pt] = f"{name_}/{rate}" + (f"/{params}" if params else "")
        elif name == "fmtp" and value is not None:
            fmt, _, params = value.partition(" ")
            if not _TOKEN_RE.fullmatch(fmt):
                raise SdpError(f"malformed a=fmtp: {value!r}")
            if fmt in self.fmtp:
                raise SdpError(f"duplicate a=fmtp for format {fmt}")
            self.fmtp[fmt] = params.strip()
        elif name in ("ptime", "maxptime") and value is not None:
            # a=ptime:<packet time> in milliseconds (RFC 4566 §6); "20.0" is seen in the wild
            text = value.strip()
            if text.endswith(".0"):
                text = text[:-2]
            setattr(self, name, _int(text, f"a={name}"))
        elif name == "rtcp" and value is not None:
            self.rtcp = _parse_rtcp(value)
        else:
            self.attributes.append(Attribute(name, value))

    def build(self, session_direction: str | None) -> MediaDescription:
        direction = self.direction or session_direction or "sendrecv"
        return MediaDescription(
            media=self.media,
            port=self.port,
            proto=self.proto,
            formats=self.formats,
            port_count=self.port_count,
            information=self.information,
            connection=self.connection,
            bandwidths=tuple(self.bandwidths),
            key=self.key,
            rtpmap=self.rtpmap,
            fmtp=self.fmtp,
            direction=cast(Direction, direction),
            ptime=self.ptime,
            maxptime=self.maxptime,
            rtcp=self.rtcp,
            attributes=tuple(self.attributes),
        )


class _SessionBuilder:
    """Mutable accumulator for the session-level lines while parsing."""

    def __init__(self) -> None:
        self.single: dict[str, str] = {}
        self.origin: Origin | None = None
        self.connection: Connection | None = None
        self.emails: list[str] = []
        self.phones: list[str] = []
        self.bandwidths: list[Bandwidth] = []
        self.timings: list[Timing] = []
        self.direction: str | None = None
        self.attributes: list[Attribute] = []
        self.media: list[_MediaBuilder] = []

    def line(self, kind: str, value: str, number: int) -> None:
        if kind in "vosiuczk":
            if kind in self.single:
                raise SdpError(f"duplicate {kind}= line on line {number}")
            self.single[kind] = value
        if kind == "v" and value != "0":
            raise SdpError(f"unsupported SDP version {value!r}")
        if kind == "o":
            match = _ORIGIN_RE.fullmatch(value)
            if match is None:
                raise SdpError(f"malformed o= line: {value!r}")
            user, sess_id, sess_version, nettype, addrtype, address = match.groups()
            self.origin = Origin(user, sess_id, int(sess_version), nettype, addrtype, address)
        elif kind == "c":
            self.connection = _parse_connection(value)
        elif kind == "b":
            self.bandwidths.append(_parse_bandwidth(value))
        elif kind == "t":
            parts = value.split(" ")
            if len(parts) != 2:
                raise SdpError(f"malformed t= line: {value!r}")
            self.timings.append(Timing(_int(parts[0], "t= start"), _int(parts[1], "t= stop")))
        elif kind == "r":
            if not self.timings:
                raise SdpError(f"r= line before any t= line on line {number}")
            last = self.timings[-1]
            self.timings[-1] = replace(last, repeats=(*last.repeats, value))
        elif kind == "e":
            self.emails.append(value)
        elif kind == "p":
            self.phones.append(value)
        elif kind == "a":
            name, sep, val = value.partition(":")
            if not _TOKEN_RE.fullmatch(name):
                raise SdpError(f"malformed attribute on line {number}: a={value}")
            if name in DIRECTIONS:
                if self.direction is not None:
                    raise SdpError("more than one session-level direction attribute")
                self.direction = name
            else:
                self.attributes.append(Attribute(name, val if sep else None))

    def build(self) -> SessionDescription:
        if self.origin is None:
            raise SdpError("SDP lacks the mandatory o= line")
        if "s" not in self.single:
            raise SdpError("SDP lacks the mandatory s= line")
        return SessionDescription(
            origin=self.origin,
            session_name=self.single["s"],
            information=self.single.get("i"),
            uri=self.single.get("u"),
            emails=tuple(self.emails),
            phones=tuple(self.phones),
            connection=self.connection,
            bandwidths=tuple(self.bandwidths),
            timings=tuple(self.timings) or (Timing(),),
            time_zones=self.single.get("z"),
            key=self.single.get("k"),
            direction=cast(Direction | None, self.direction),
            attributes=tuple(self.attributes),
            media=tuple(m.build(self.direction) for m in self.media),
        )


def parse_sdp(text: str | bytes) -> SessionDescription:
    """Parse an SDP body (CRLF or bare LF line ends).  Raises ``SdpError`` (status 400)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError(f"SDP is not valid UTF-8: {exc}") from None
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    while lines and lines[-1] == "":
        lines.pop()
    if not lines or not lines[0].startswith("v="):
        raise SdpError("SDP must start with a v= line")
    session = _SessionBuilder()
    for number, line in enumerate(lines, 1):
        # RFC 4566 §5: <type>=<value>, no whitespace either side of "="
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SdpError(f"line {number} is not <type>=<value>: {line!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            session.media.append(_MediaBuilder(value))
        elif session.media:
            _media_line(session.media[-1], kind, value, number)
        elif kind not in _SESSION_TYPES:
            # RFC 4566 §5: a description with an unknown type letter must not be used
            raise SdpError(f"unknown SDP line type {kind!r} on line {number}")
        else:
            session.line(kind, value, number)
    return session.build()


def _parse_bandwidth(value: str) -> Bandwidth:
    # bandwidth-fields = *(%x62 "=" bwtype ":" bandwidth CRLF)
    bwtype, sep, amount = value.partition(":")
    if not sep or not _TOKEN_RE.fullmatch(bwtype):
        raise SdpError(f"malformed b= line: {value!r}")
    return Bandwidth(bwtype, _int(amount, "b= bandwidth"))


def _media_line(m: _MediaBuilder, kind: str, value: str, number: int) -> None:
    if kind not in _MEDIA_TYPES:
        raise SdpError(f"{kind}= line is not allowed inside m={m.media} (line {number})")
    if kind == "a":
        name, sep, val = value.partition(":")
        if not _TOKEN_RE.fullmatch(name):
            raise SdpError(f"malformed attribute on line {number}: {value!r}")
        m.attribute(name, val if sep else None)
    elif kind == "c":
        if m.connection is not None:
            raise SdpError(f"more than one c= line in m={m.media} is not supported")
        m.connection = _parse_connection(value)
    elif kind == "b":
        m.bandwidths.append(_parse_bandwidth(value))
    elif kind == "i":
        m.information = value
    elif kind == "k":
        m.key = value
    # "m" lines are handled by the caller
