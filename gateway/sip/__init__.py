"""SIP syntax layer: grammar, URIs, typed headers, message model, parser and stream framer.

Entry points: ``parse_message(data) -> SipRequest | SipResponse`` (raises only
``SipParseError``), ``StreamFramer`` for TCP/TLS, and the ``SipRequest`` /
``SipResponse`` / ``Headers`` model with ``make_response``.
"""

from trunkline.gateway.sip.framer import FramingError, StreamFramer
from trunkline.gateway.sip.grammar import SipParseError
from trunkline.gateway.sip.headers import MAGIC_COOKIE, AuthValue, CSeq, NameAddr, Via
from trunkline.gateway.sip.message import (
    REASON_PHRASES,
    Headers,
    SipMessage,
    SipRequest,
    SipResponse,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
)
from trunkline.gateway.sip.parser import has_trailing_bytes, parse_message, parse_prefix
from trunkline.gateway.sip.uri import SipUri, parse_uri

__all__ = [
    "MAGIC_COOKIE",
    "REASON_PHRASES",
    "AuthValue",
    "CSeq",
    "FramingError",
    "Headers",
    "NameAddr",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "StreamFramer",
    "Via",
    "has_trailing_bytes",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_message",
    "parse_prefix",
    "parse_uri",
]
