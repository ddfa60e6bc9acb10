"""Call leg events and small parsers shared by the legs (RFC 3261, RFC 4028, SIP INFO DTMF).

Events are what ``InboundLeg`` / ``OutboundLeg`` put on ``leg.events``; ``LegState`` is where
a leg is. ``parse_dtmf_info`` reads DTMF from an INFO body; ``session_expires`` reads an
RFC 4028 ``Session-Expires`` header.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from trunkline.gateway.sip.message import SipRequest, SipResponse

__all__ = [
    "Answered",
    "Cancelled",
    "Ended",
    "Failed",
    "InfoDtmf",
    "LegEvent",
    "LegState",
    "Message",
    "Provisional",
    "ReInvite",
    "Refer",
    "parse_dtmf_info",
    "session_expires",
]

_SIGNAL = re.compile(r"^\s*Signal\s*=\s*([0-9A-Da-d*#]|1[0-6])\s*$", re.MULTILINE | re.IGNORECASE)
_DURATION = re.compile(r"^\s*Duration\s*=\s*([0-9]+)\s*$", re.MULTILINE | re.IGNORECASE)
_EVENT_DIGITS = "0123456789*#ABCD"

# --------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Provisional:
    """A 1xx (180/183...) to our INVITE, with its early-media SDP if any."""

    status: int
    reason: str
    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class Answered:
    """The 2xx to our INVITE (first fork wins); ``sdp`` is the remote answer."""

    sdp: bytes


@dataclass(frozen=True, slots=True)
class Failed:
    """Our INVITE ended without a 2xx (408 on timeout, 503 on transport error)."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The caller cancelled the INVITE before we answered (487 was sent)."""


@dataclass(frozen=True, slots=True)
class Ended:
    """The leg is over. ``by_remote``: the peer hung up (BYE, CANCEL, error)."""

    by_remote: bool
    reason: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class ReInvite:
    """A re-INVITE or UPDATE offer was answered (hold/unhold, session refresh)."""

    offer: bytes | None
    answer: bytes | None
    method: str = "INVITE"


@dataclass(frozen=True, slots=True)
class InfoDtmf:
    """A DTMF digit by SIP INFO (``application/dtmf-relay`` or ``application/dtmf``)."""

    digit: str
    duration: int
    """milliseconds"""


@dataclass(frozen=True, slots=True)
class Refer:
    """The peer asked us to transfer the call (RFC 3515); 202 was answered."""

    refer_to: str
    referred_by: str | None


@dataclass(frozen=True, slots=True)
class Message:
    """An in-dialog MESSAGE (RFC 3428)."""

    content_type: str
    body: bytes


LegEvent = Provisional | Answered | Failed | Cancelled | Ended | ReInvite | InfoDtmf | Refer | Message


class LegState(enum.Enum):
    """Where a leg is."""

    CALLING = "calling"  # INVITE in progress, nothing back yet (outbound) / not rung (inbound)
    EARLY = "early"  # a provisional response with To tag
    ANSWERED = "answered"  # 2xx sent, no ACK yet (inbound)
    CONFIRMED = "confirmed"
    ENDED = "ended"


def parse_dtmf_info(content_type: str | None, body: bytes) -> tuple[str, int] | None:
    """``(digit, duration ms)`` from an INFO body, or ``None`` if it carries no DTMF.

    ``application/dtmf-relay``: ``Signal=5`` / ``Duration=160`` lines (de-facto Cisco
    format); ``application/dtmf``: the digit alone. Events 10-15 map to ``*#ABCD``.
    """
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", "replace")
    if kind == "application/dtmf-relay":
        m = _SIGNAL.search(text)
        if m is None:
            return None
        signal = m.group(1).upper()
        digit = _EVENT_DIGITS[int(signal)] if signal.isdigit() and len(signal) == 2 else signal
        d = _DURATION.search(text)
        return digit, int(d.group(1)) if d else 250
    if kind == "application/dtmf":
        value = text.strip().upper()
        if len(value) == 1 and value in _EVENT_DIGITS:
            return value, 250
        if value.isdigit() and int(value) < 16:
            return _EVENT_DIGITS[int(value)], 250
    return None


def session_expires(request: SipRequest | SipResponse) -> tuple[int, str | None] | None:
    """``(interval, refresher)`` from ``Session-Expires`` (RFC 4028 section 4), or ``None``."""
    value = request.headers.get("Session-Expires")
    if value is None:
        return None
    head, _, params = value.partition(";")
    if not head.strip().isdigit():
        return None
    refresher = None
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "refresher":
            refresher = val.strip().lower() or None
    return int(head.strip()), refresher
