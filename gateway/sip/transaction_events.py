"""Addresses, outgoing messages and events of the SIP transaction layer.

Events are frozen dataclasses the TU pops with ``TransactionLayer.next_event()``;
``Transmit`` is what the I/O shell sends (and hands back on a transport error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from trunkline.gateway.sip.message import SipRequest, SipResponse

__all__ = [
    "AckReceived",
    "AckTimeout",
    "Address",
    "CancelReceived",
    "Event",
    "Peer",
    "RequestReceived",
    "ResponseReceived",
    "TransactionTerminated",
    "TransactionTimeout",
    "Transmit",
    "TransportError",
]

Address = tuple[str, int]


# --------------------------------------------------------------------------------------
# Addresses, outgoing data, events
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes to.

    ``transport`` is the transport's name as ``TransportSet`` knows it
    (``udp:127.0.0.1:5060``) or a bare protocol (``udp``, ``tcp``, ``tls``, ``ws``).
    """

    transport: str
    address: Address

    @property
    def protocol(self) -> str:
        """Lower-case protocol part of ``transport``."""
        return self.transport.split(":", 1)[0].lower()

    @property
    def reliable(self) -> bool:
        """True for every transport but UDP (section 17.1.1.1: reliable transports)."""
        return self.protocol != "udp"


class Transmit(NamedTuple):
    """One message to send: ``data`` to ``dest``; ``transaction_id`` is ``None`` for
    stateless sends (ACK for a 2xx, 2xx retransmissions). Hand it back to
    ``TransactionLayer.transport_error`` if sending fails."""

    data: bytes
    dest: Peer
    transaction_id: str | None


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request created a server transaction; the TU must answer it with
    ``send_response`` (whose Via/CSeq locate the transaction)."""

    transaction_id: str
    request: SipRequest
    source: Peer


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK for a 2xx: it matched an Accepted INVITE server transaction (RFC 6026
    section 8.7, ``transaction_id`` set) or no transaction at all (the usual 2xx ACK
    with its own branch, ``transaction_id`` is ``None``). The dialog layer takes it."""

    request: SipRequest
    source: Peer
    transaction_id: str | None


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched INVITE server transaction ``transaction_id`` before its final
    response (section 9.2). The layer already answered 200 to the CANCEL; the TU should
    now send 487 to the INVITE."""

    transaction_id: str
    request: SipRequest
    source: Peer


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for client transaction ``transaction_id``. ``retransmission`` is true
    for a 2xx seen again in the Accepted state (the core re-sends its ACK)."""

    transaction_id: str
    response: SipResponse
    retransmission: bool = False


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer ``timer`` expired: ``B``/``F`` (no final response, the TU acts as for a 408,
    section 8.1.3.1), ``H`` (no ACK for our non-2xx) or ``CANCEL`` (no final response
    64*T1 after a CANCEL, section 9.1)."""

    transaction_id: str
    timer: str


@dataclass(frozen=True, slots=True)
class TransportError:
    """Sending failed (sections 17.1.4 and 17.2.4); the TU acts as for a 503."""

    transaction_id: str | None
    dest: Peer
    reason: str


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """The transaction reached the Terminated state and was forgotten."""

    transaction_id: str


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """No ACK came for our 2xx within 64*T1 (section 13.3.1.4): the core should end the
    session with a BYE."""

    response: SipResponse
    dest: Peer


Event = (
    RequestReceived
    | AckReceived
    | CancelReceived
    | ResponseReceived
    | TransactionTimeout
    | TransportError
    | TransactionTerminated
    | AckTimeout
)
