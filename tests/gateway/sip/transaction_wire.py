"""Shared by the transaction tests: a request builder and two transaction layers wired back
to back in memory with an explicit clock and a chosen loss pattern."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from trunkline.gateway.sip import SipRequest, SipResponse, make_response, parse_message
from trunkline.gateway.sip.timers import TimerConfig
from trunkline.gateway.sip.transaction import (
    Event,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rfc4475"
A_ADDR = ("127.0.0.1", 5060)
B_ADDR = ("127.0.0.1", 5070)


def request(
    method: str = "INVITE",
    *,
    branch: str = "z9hG4bKtest1",
    cseq: int = 1,
    cseq_method: str | None = None,
    call_id: str = "call-1@test",
    to_tag: str | None = None,
    transport: str = "UDP",
    extra: str = "",
) -> SipRequest:
    to = "<sip:bob@127.0.0.1:5070>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:bob@127.0.0.1:5070 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@127.0.0.1>;tag=alicetag\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


class Wire:
    """Two transaction layers back to back; ``drop(data)`` loses chosen datagrams."""

    def __init__(self, timers: TimerConfig | None = None, transport: str = "udp") -> None:
        config = timers or TimerConfig()
        self.uac = TransactionLayer(config)
        self.uas = TransactionLayer(config)
        self.a_peer = Peer(transport, A_ADDR)  # how B sees A
        self.b_peer = Peer(transport, B_ADDR)  # how A sees B
        self.drop: Callable[[bytes], bool] = lambda data: False
        self.log: list[tuple[float, str, str]] = []
        self.uac_events: list[Event] = []
        self.uas_events: list[Event] = []
        self.now = 0.0

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for src, dst, src_peer, name in (
                (self.uac, self.uas, self.a_peer, "A>B"),
                (self.uas, self.uac, self.b_peer, "B>A"),
            ):
                for transmit in src.datagrams_to_send():
                    moved = True
                    first_line = transmit.data.split(b"\r\n", 1)[0].decode()
                    self.log.append((self.now, name, first_line))
                    if not self.drop(transmit.data):
                        dst.receive(parse_message(transmit.data), src_peer, self.now)
        self.uac_events.extend(self.uac.events())
        self.uas_events.extend(self.uas.events())

    def run_until(self, end: float) -> None:
        self.pump()
        while True:
            deadlines = [d for d in (self.uac.next_deadline(), self.uas.next_deadline()) if d is not None]
            if not deadlines or min(deadlines) > end:
                break
            self.now = min(deadlines)
            self.uac.handle_timer(self.now)
            self.uas.handle_timer(self.now)
            self.pump()
        self.now = end

    def at(self, when: float) -> Wire:
        self.run_until(when)
        return self

    def sent(self, direction: str, prefix: str) -> list[float]:
        return [t for t, d, line in self.log if d == direction and line.startswith(prefix)]

    def uas_request(self) -> RequestReceived:
        events = [e for e in self.uas_events if isinstance(e, RequestReceived)]
        assert events
        return events[-1]

    def respond(self, status: int, req: SipRequest | None = None, to_tag: str = "bobtag") -> SipResponse:
        req = req or self.uas_request().request
        response = make_response(req, status, to_tag=to_tag)
        self.uas.send_response(response, self.now)
        self.pump()
        return response


E = TypeVar("E")


def of_type(events: list[Event], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def statuses(events: list[Event]) -> list[int]:
    return [e.response.status_code for e in events if isinstance(e, ResponseReceived)]
