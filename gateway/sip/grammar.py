"""RFC 3261 section 25 grammar as compiled regular expressions, plus the parse error type.

Start lines, scalar headers, URIs (``SIP_URI``, ``TEL_SUBSCRIBER``, ``ABSOLUTE_URI``) and
header values (``VIA_PARM``, ``NAME_ADDR``, ``AUTH_PARAM``...) all live here, so the
syntax can be read in one place; ``uri``, ``headers`` and ``parser`` only use them.

Each pattern quotes the ABNF it implements.  The patterns work on *unfolded* header
values: the parser has already replaced every ``CRLF 1*WSP`` continuation with one SP
(RFC 3261 section 7.3.1), so ``LWS`` below is simply ``[ \\t]*``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "ABSOLUTE_URI",
    "ADDR_SPEC",
    "AUTH_HEAD",
    "AUTH_PARAM",
    "BAD_ESCAPE",
    "CALL_ID",
    "CSEQ",
    "DATE",
    "DELTA_SECONDS",
    "FAST_NAME_ADDR",
    "FAST_VIA",
    "GEN_PARAMS",
    "GEN_PARAM_ITER",
    "HEADER_NAME",
    "LIST_ITEM",
    "NAME_ADDR",
    "OPAQUE_PART",
    "QUOTED_STRING",
    "REQUEST_LINE",
    "SIP_URI",
    "SIP_VERSION",
    "STATUS_LINE",
    "TEL_SUBSCRIBER",
    "TOKEN",
    "VIA_PARM",
    "SipParseError",
    "unquote",
]


class SipParseError(ValueError):
    """A SIP message (or a piece of one) is malformed.

    ``status_code`` is the response a UAS should send: 400 by default, 505 for an
    unsupported SIP version (RFC 3261 section 8.1.3.5 and 21.5.6).  ``header`` names the
    offending header when there is one.  ``partial`` holds the message parsed so far when
    the start line and headers were readable, so a layer above can still build a 400
    response from its Via/From/To/Call-ID/CSeq (RFC 4475 section 3.3.1 ``insuf``).
    """

    def __init__(
        self, reason: str, status_code: int = 400, *, header: str | None = None, partial: Any = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code
        self.header = header
        self.partial = partial

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, status_code={self.status_code})"


# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN = re.compile(_TOKEN)

# quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# qdtext        = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
# quoted-pair   = "\" (%x00-09 / %x0B-0C / %x0E-7F)
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'
QUOTED_STRING = re.compile(_QUOTED)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)

# header-name = token ; HCOLON = *( SP / HTAB ) ":" SWS
HEADER_NAME = re.compile(_TOKEN)

# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT   (case-insensitive, section 7.1)
SIP_VERSION = re.compile(r"(?i:SIP)/\d+\.\d+")

# Request-Line = Method SP Request-URI SP SIP-Version CRLF
# Method       = INVITEm / ACKm / ... / extension-method ; extension-method = token
# The Request-URI may contain no SP, "<" or ">" (RFC 4475 ltgtruri, lwsruri, lwsstart).
REQUEST_LINE = re.compile(rf"({_TOKEN}) ([^ \t<>\"]+) ([^ \t]+)")

# Status-Line   = SIP-Version SP Status-Code SP Reason-Phrase CRLF
# Status-Code   = extension-code ; extension-code = 3DIGIT
# Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
STATUS_LINE = re.compile(r"((?i:SIP)/\d+\.\d+) ([0-9]+) ([^\x00-\x08\x0a-\x1f\x7f]*)")

# CSeq = "CSeq" HCOLON 1*DIGIT LWS Method
CSEQ = re.compile(rf"([0-9]+)[ \t]+({_TOKEN})")

# delta-seconds = 1*DIGIT   (Expires, Max-Forwards, Content-Length, Retry-After head)
DELTA_SECONDS = re.compile(r"[0-9]+")

# callid = word [ "@" word ]
# word   = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
#          "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}" )
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
CALL_ID = re.compile(rf"{_WORD}(?:@{_WORD})?")

# rfc1123-date = wkday "," SP date1 SP time SP "GMT"
# date1 = 2DIGIT SP month SP 4DIGIT ; time = 2DIGIT ":" 2DIGIT ":" 2DIGIT
DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)

# generic-param = token [ EQUAL gen-value ] ; gen-value = token / host / quoted-string
# The value class adds ":" "[" "]" to token so IPv6 hosts (RFC 5118 section 4.5) fit.
_GEN_VALUE = rf"(?:{_QUOTED}|[A-Za-z0-9\-.!%*_+`'~:\[\]]+)"
_GEN_PARAM = rf"[ \t]*;[ \t]*({_TOKEN})(?:[ \t]*=[ \t]*({_GEN_VALUE}))?"
# *( SEMI generic-param )  then optional trailing LWS
GEN_PARAMS = re.compile(rf"(?:{_GEN_PARAM})*[ \t]*")
GEN_PARAM_ITER = re.compile(_GEN_PARAM)


# ---- URIs (RFC 3261 section 19.1 and 25.1, RFC 3966) ----

# SIP-URI  = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
# SIPS-URI = "sips:" [ userinfo ] hostport uri-parameters [ headers ]
# userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
# user     = 1*( unreserved / escaped / user-unreserved )
# user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
# hostport = host [ ":" port ] ; host = hostname / IPv4address / IPv6reference
# uri-parameters = *( ";" uri-parameter ) ; headers = "?" header *( "&" header )
# Character classes include "%"; escapes are then checked once over the whole URI
# (escaped = "%" HEXDIG HEXDIG), which is much faster than an alternation per character.
_USER = r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+"
_PASSWORD = r"[A-Za-z0-9\-_.!~*'()&=+$,%]*"
# hostname = *( domainlabel "." ) toplabel [ "." ] ; IPv6reference = "[" IPv6address "]"
_HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+"
# paramchar = param-unreserved / unreserved / escaped
# param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
_PCHAR = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]"
_URI_PARAM = rf";{_PCHAR}+(?:={_PCHAR}+)?"
# hname/hvalue = 1*( hnv-unreserved / unreserved / escaped )
# hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"
_HCHAR = r"[A-Za-z0-9\-_.!~*'()\[\]/?:+$%]"
_HEADERS = rf"{_HCHAR}+={_HCHAR}*(?:&{_HCHAR}+={_HCHAR}*)*"
SIP_URI = re.compile(
    rf"(?:({_USER})(?::({_PASSWORD}))?@)?({_HOST})(?::([0-9]{{1,5}}))?((?:{_URI_PARAM})*)(?:\?({_HEADERS}))?"
)
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# telephone-subscriber (RFC 3966 section 3): global-number / local-number, then params
TEL_SUBSCRIBER = re.compile(rf"(\+?[0-9A-Fa-f*#.\-()pw]+)((?:{_URI_PARAM})*)")
# absoluteURI = scheme ":" ( hier-part / opaque-part ) ; scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
ABSOLUTE_URI = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):(.+)", re.DOTALL)
# uric = reserved / unreserved / escaped  (plus "#" fragments seen in the wild)
OPAQUE_PART = re.compile(r"[A-Za-z0-9\-_.!~*'();/?:@&=+$,\[\]%#]+")


# ---- Header values (RFC 3261 section 20 and 25.1) ----

# Via            = ( "Via" / "v" ) HCOLON via-parm *(COMMA via-parm)
# via-parm       = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol  = protocol-name SLASH protocol-version SLASH transport
# sent-by        = host [ COLON port ]
VIA_PARM = re.compile(
    rf"({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?[ \t]*(;.*)?",
    re.DOTALL,
)

# name-addr    = [ display-name ] LAQUOT addr-spec RAQUOT
# display-name = *(token LWS)/ quoted-string
# LAQUOT = SWS "<" ; RAQUOT = ">" SWS  (no whitespace *inside* the brackets: RFC 4475 badaspec)
NAME_ADDR = re.compile(
    rf"[ \t]*({_QUOTED}|(?:{_TOKEN}(?:[ \t]+{_TOKEN})*)?)[ \t]*<([^<>\s]+)>(.*)",
    re.DOTALL,
)
# addr-spec form: no ",", "?" or ";" in the URI itself (RFC 3261 section 20.10)
ADDR_SPEC = re.compile(r"[ \t]*([^\s;,?<>\"]+)(.*)", re.DOTALL)

# Fast paths for the everyday shapes (plain user, hostname/IP, token parameters).  A value
# they accept is always accepted by the full patterns too; anything else is checked in full.
_FAST_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)"
_FAST_PORT = r"(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
_FAST_PCHAR = r"[A-Za-z0-9\-_.!~*'+]"  # both a token and a paramchar character
_FAST_URI = rf"sips?:(?:[A-Za-z0-9\-_.!~*'()&=+$,]+@)?{_FAST_HOST}{_FAST_PORT}"
_FAST_URI_PARAMS = rf"(?:;{_FAST_PCHAR}+(?:={_FAST_PCHAR}+)?)*"
# header params other than expires/ttl, whose values need a range check
_FAST_HPARAMS = (
    rf"(?:[ \t]*;[ \t]*(?![Ee][Xx][Pp][Ii][Rr][Ee][Ss]|[Tt][Tt][Ll]){_FAST_PCHAR}+(?:={_FAST_PCHAR}+)?)*"
)
FAST_NAME_ADDR = re.compile(
    rf'(?:"[^"\\\x00-\x1f\x7f]*"[ \t]*|(?:{_TOKEN}[ \t]+)*)<{_FAST_URI}{_FAST_URI_PARAMS}>{_FAST_HPARAMS}'
    rf"|{_FAST_URI}{_FAST_HPARAMS}"
)
FAST_VIA = re.compile(rf"SIP/2\.0/[A-Za-z]+ {_FAST_HOST}{_FAST_PORT}{_FAST_HPARAMS}")

# Splitting a comma-separated header list while respecting quotes and angle brackets.
LIST_ITEM = re.compile(rf'(?:{_QUOTED}|<[^<>]*>|[^,"<>])+')

# challenge / credentials = auth-scheme LWS auth-param *(COMMA auth-param)
# auth-param = auth-param-name EQUAL ( token / quoted-string )
AUTH_HEAD = re.compile(rf"[ \t]*({_TOKEN})(?:[ \t]+(.*))?", re.DOTALL)
AUTH_PARAM = re.compile(rf"[ \t]*({_TOKEN})[ \t]*=[ \t]*({_QUOTED}|{_TOKEN})[ \t]*(?:,|$)")


def unquote(value: str) -> str:
    """Return the content of a quoted-string with quoted-pairs resolved (else ``value``)."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        if "\\" in inner:
            inner = _QUOTED_PAIR.sub(r"\1", inner)
        return inner
    return value


def quote(value: str) -> str:
    """Return ``value`` as a quoted-string, escaping ``"`` and ``\\`` (RFC 3261 section 25.1)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_gen_params(text: str, where: str) -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )``; names are lower-cased, values kept verbatim."""
    if not text:
        return {}
    if GEN_PARAMS.fullmatch(text) is None:
        raise SipParseError(f"malformed parameters {text!r} in {where}", header=where)
    # findall yields "" for an absent value; a present gen-value is never empty.
    return {name.lower(): (value or None) for name, value in GEN_PARAM_ITER.findall(text)}


def serialize_params(params: dict[str, str | None]) -> str:
    """Serialize generic parameters as ``;name=value`` / ``;name``."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())
