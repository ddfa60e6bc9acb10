"""Bytes -> ``SipRequest`` / ``SipResponse`` (RFC 3261 sections 7 and 25).

The parser checks the syntax that RFC 4475's invalid messages (section 3.1.2) exercise
and leaves meaning (unknown schemes, Require, duplicated single-valued headers...) to
the layers above.  Typed headers validated here are cached on the message, so later
accessors cost nothing.  ``parse_message`` raises ``SipParseError`` and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from trunkline.gateway.sip.grammar import (
    CALL_ID,
    CSEQ,
    DATE,
    HEADER_NAME,
    REQUEST_LINE,
    SIP_VERSION,
    STATUS_LINE,
    SipParseError,
    parse_gen_params,
)
from trunkline.gateway.sip.headers import NameAddr, Via, split_list
from trunkline.gateway.sip.message import Headers, SipMessage, SipRequest, SipResponse, canonical_name
from trunkline.gateway.sip.uri import parse_uri

__all__ = ["has_trailing_bytes", "parse_message", "parse_prefix"]

_MAX_32 = 0xFFFFFFFF
# LWS = [*WSP CRLF] 1*WSP : a continuation line is replaced by one SP (section 7.3.1).
# Whitespace before the CRLF stays (equivalent LWS); a leading [ \t]* would make sub()
# quadratic on long runs of blanks.
_FOLD = re.compile(r"\r\n[ \t]+")
# Retry-After = "Retry-After" HCOLON delta-seconds [ comment ] *( SEMI retry-param )
_RETRY_AFTER = re.compile(r"([0-9]+)(?:[ \t]*\(.*\))?[ \t]*(?:;.*)?", re.DOTALL)
# Required in every request (section 8.1.1); Max-Forwards is tolerated missing (RFC 2543 peers).
_MANDATORY = ("Via", "To", "From", "Call-ID", "CSeq")
_MANDATORY_KEYS = frozenset(name.lower() for name in _MANDATORY)

# raw header name -> (key, canonical name); bounded cache of names seen on the wire
_NAMES: dict[str, tuple[str, str]] = {}


def _header_key(raw: str) -> tuple[str, str]:
    cached = _NAMES.get(raw)
    if cached is not None:
        return cached
    name = raw.rstrip(" \t")
    if HEADER_NAME.fullmatch(name) is None:
        raise SipParseError(f"invalid header name {raw!r}")
    canon = canonical_name(name)
    entry = (canon.lower(), canon)
    if len(_NAMES) < 2048:
        _NAMES[raw] = entry
    return entry


def _scalar(value: str, name: str, limit: int) -> int:
    if not (value.isdigit() and value.isascii()):
        raise SipParseError(f"{name} {value!r} is not a number", header=name)
    number = int(value)
    if number > limit:
        raise SipParseError(f"{name} {value} exceeds {limit}", header=name)
    return number


def _check_via(value: str, name: str) -> None:
    # Via = ( "Via" / "v" ) HCOLON via-parm *(COMMA via-parm)
    for part in split_list(value, "Via") if "," in value else (value,):
        if not part:
            raise SipParseError(f"empty Via element in {value!r}", header="Via")
        Via.validate(part)


def _check_name_addr(value: str, name: str) -> None:
    # From / To = ( name-addr / addr-spec ) *( SEMI from-param / to-param )
    NameAddr.validate(value, name)


def _check_contact(value: str, name: str) -> None:
    # Contact = ("Contact" / "m" ) HCOLON ( STAR / (contact-param *(COMMA contact-param)))
    for part in split_list(value, "Contact") if "," in value else (value,):
        if part == "*":
            continue
        if not part:
            raise SipParseError(f"empty Contact element in {value!r}", header="Contact")
        params = NameAddr.validate(part, "Contact")
        if params and "expires" in params.lower():
            expires = parse_gen_params(params, "Contact").get("expires")
            if expires is not None:
                # contact-params-expires = "expires" EQUAL delta-seconds (RFC 4475 scalar02)
                _scalar(expires, "Contact expires", _MAX_32)


def _check_cseq(value: str, name: str) -> None:
    m = CSEQ.fullmatch(value)
    if m is None:
        raise SipParseError(f"malformed CSeq {value!r}", header="CSeq")
    _scalar(m.group(1), "CSeq number", _MAX_32)


def _check_call_id(value: str, name: str) -> None:
    if CALL_ID.fullmatch(value) is None:
        raise SipParseError(f"malformed Call-ID {value!r}", header="Call-ID")


def _check_content_length(value: str, name: str) -> None:
    _scalar(value, "Content-Length", _MAX_32)


def _check_max_forwards(value: str, name: str) -> None:
    # Max-Forwards = "Max-Forwards" HCOLON 1*DIGIT ; 0-255 (section 8.1.1.6)
    _scalar(value, "Max-Forwards", 255)


def _check_expires(value: str, name: str) -> None:
    _scalar(value, "Expires", _MAX_32)


def _check_date(value: str, name: str) -> None:
    if DATE.fullmatch(value) is None:
        raise SipParseError(f"malformed Date {value!r} (RFC 1123 date in GMT required)", header="Date")


def _check_retry_after(value: str, name: str) -> None:
    m = _RETRY_AFTER.fullmatch(value)
    if m is None:
        raise SipParseError(f"malformed Retry-After {value!r}", header="Retry-After")
    _scalar(m.group(1), "Retry-After", _MAX_32)


# Headers checked at parse time: the ones RFC 4475's invalid messages exercise.  Others
# (Route, Authorization...) are parsed, and may fail, only when accessed.
_CHECKS: dict[str, Callable[[str, str], None]] = {
    "via": _check_via,
    "from": _check_name_addr,
    "to": _check_name_addr,
    "contact": _check_contact,
    "cseq": _check_cseq,
    "call-id": _check_call_id,
    "content-length": _check_content_length,
    "max-forwards": _check_max_forwards,
    "expires": _check_expires,
    "date": _check_date,
    "retry-after": _check_retry_after,
}


def _validate(triples: list[tuple[str, str, str]]) -> tuple[str | None, str | None]:
    """Check the headers in ``_CHECKS`` (regexes only, no objects built).

    Return the first Content-Length text and the first CSeq method.
    """
    checks = _CHECKS
    for key, name, value in triples:
        check = checks.get(key)
        if check is not None:
            check(value, name)
    content_length: str | None = None
    cseq: str | None = None
    for key, _, value in triples:
        if key == "content-length":
            if content_length is None:
                content_length = value
        elif key == "cseq" and cseq is None:
            cseq = value
    return content_length, None if cseq is None else cseq.rsplit(None, 1)[-1]


def _parse(data: bytes) -> tuple[SipMessage, int]:
    if not isinstance(data, bytes):
        data = bytes(data)  # bytearray / memoryview from recv_into
    # Section 7.5: CRLFs before the start-line are ignored.
    start = len(data) - len(data.lstrip(b"\r\n"))
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        raise SipParseError("message head is not terminated by an empty line")
    head = data[start:end].decode("utf-8", "surrogateescape")
    if "\r\n " in head or "\r\n\t" in head:
        head = _FOLD.sub(" ", head)
    lines = head.split("\r\n")
    breaks = len(lines) - 1
    if head.count("\n") != breaks or head.count("\r") != breaks:
        raise SipParseError("bare CR or LF inside the message head")
    first = lines[0]

    # message-header = field-name HCOLON field-value CRLF (section 7.3)
    names = _NAMES
    try:
        triples = [
            (names.get(n) or _header_key(n)) + (v.strip(" \t"),)
            for n, v in (line.split(":", 1) for line in lines[1:])
        ]
    except SipParseError:
        raise
    except ValueError:  # a line without ":" does not unpack into two parts
        bad = next(line for line in lines[1:] if ":" not in line)
        raise SipParseError(f"header line without a colon: {bad[:60]!r}") from None
    headers = Headers._from_triples(triples)

    message: SipMessage
    if first[:4].upper() == "SIP/":
        m = STATUS_LINE.fullmatch(first)
        if m is None:
            raise SipParseError(f"malformed Status-Line {first[:80]!r}")
        version, code, reason = m.groups()
        if version.upper() != "SIP/2.0":
            raise SipParseError(f"unsupported SIP version {version!r}", 505)
        # Status-Code = 3DIGIT; classes 1xx-6xx (section 7.2)
        if len(code) != 3 or not "100" <= code <= "699":
            raise SipParseError(f"status code {code} out of range 100-699")
        message = SipResponse(int(code), reason, headers, b"", "SIP/2.0")
    else:
        m = REQUEST_LINE.fullmatch(first)
        if m is None:
            raise SipParseError(f"malformed Request-Line {first[:80]!r}")
        method, uri_text, version = m.groups()
        if SIP_VERSION.fullmatch(version) is None:
            raise SipParseError(f"malformed SIP-Version {version!r} in Request-Line")
        if version.upper() != "SIP/2.0":
            raise SipParseError(f"unsupported SIP version {version!r}", 505)
        try:
            uri = parse_uri(uri_text)
        except SipParseError as exc:
            raise SipParseError(f"Request-URI: {exc.reason}") from None
        if uri.headers:
            # Section 19.1.1, table 1: the headers component is not allowed in a Request-URI.
            raise SipParseError(f"Request-URI {uri_text!r} carries headers")
        message = SipRequest(method, uri, headers, b"", "SIP/2.0")

    try:
        content_length, cseq_method = _validate(triples)
        if isinstance(message, SipRequest):
            present = {t[0] for t in triples}
            if not present >= _MANDATORY_KEYS:
                missing = next(name for name in _MANDATORY if name.lower() not in present)
                raise SipParseError(f"missing mandatory {missing} header", header=missing)
            if cseq_method != message.method:
                # Section 8.1.1.5: the CSeq method MUST match the request method.
                raise SipParseError(
                    f"CSeq method {cseq_method!r} does not match request method {message.method!r}",
                    header="CSeq",
                )
        body_start = end + 4
        if content_length is None:
            # Datagram without Content-Length: the body runs to the end (section 18.3).
            message.body = bytes(data[body_start:])
            consumed = len(data)
        else:
            length = int(content_length)
            available = len(data) - body_start
            if length > available:
                raise SipParseError(
                    f"Content-Length {length} exceeds the {available} body bytes received",
                    header="Content-Length",
                )
            message.body = bytes(data[body_start : body_start + length])
            consumed = body_start + length
    except SipParseError as exc:
        if exc.partial is None:
            exc.partial = message
        raise
    return message, consumed


def parse_prefix(data: bytes) -> tuple[SipMessage, int]:
    """Parse the first message in ``data``; return it and the number of bytes it used.

    Bytes after the message (RFC 4475 ``dblreq``: a second request in one datagram, or
    bytes beyond Content-Length) are not parsed; on UDP they are ignored (section 18.3).
    """
    try:
        return _parse(data)
    except SipParseError:
        raise
    except Exception as exc:  # anything unexpected becomes a typed 400
        raise SipParseError(f"unparseable message: {type(exc).__name__}: {exc}") from exc


def parse_message(data: bytes) -> SipMessage:
    """Parse one SIP message from a datagram or a framed stream message.

    Raises ``SipParseError`` (``status_code`` 400, or 505 for a SIP version other than
    2.0) and no other exception, whatever the input.
    """
    return parse_prefix(data)[0]


def has_trailing_bytes(data: bytes) -> bool:
    """True when ``data`` holds bytes after its first message (other than padding CRLFs)."""
    _, used = parse_prefix(data)
    return bool(data[used:].strip(b"\r\n"))
