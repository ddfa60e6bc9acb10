"""Call legs in memory: a UserAgent over fake transports, SIP messages written by hand."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import pytest

from trunkline.gateway.config import SipConfig
from trunkline.gateway.sip.core import SipCore
from trunkline.gateway.sip.message import SipRequest, SipResponse
from trunkline.gateway.sip.parser import parse_message
from trunkline.gateway.sip.sdp import LocalMedia, build_offer, make_hold_offer, negotiate_answer, parse_sdp
from trunkline.gateway.sip.transaction import Peer
from trunkline.gateway.sip.uri import SipUri
from trunkline.gateway.sip.useragent import UserAgent
from trunkline.gateway.switch.leg_manager import LegManager
from trunkline.gateway.switch.legs import (
    Answered,
    Cancelled,
    Ended,
    Failed,
    InboundLeg,
    InfoDtmf,
    LegState,
    Provisional,
    ReInvite,
    parse_dtmf_info,
)

UDP = "udp:127.0.0.1:5060"
PHONE = ("127.0.0.1", 5070)
OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)


@dataclass
class FakeTransport:
    name: str = UDP
    advertised: tuple[str, int] = ("127.0.0.1", 5060)


@dataclass
class FakeTransports:
    sent: list[tuple[bytes, tuple[str, int]]] = field(default_factory=list)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter([FakeTransport()])

    def send(self, transport: str, data: bytes, dest: tuple[str, int]) -> None:
        self.sent.append((data, dest))

    def take(self) -> list[SipRequest | SipResponse]:
        out = [parse_message(d) for d, _ in self.sent]
        self.sent.clear()
        return out


class World:
    def __init__(self) -> None:
        self.core = SipCore(SipConfig())
        self.ua = UserAgent(self.core)
        self.net = FakeTransports()
        self.ua.attach(self.net)  # type: ignore[arg-type]
        self.legs: list[InboundLeg] = []
        self.manager = LegManager(self.ua, on_inbound=self.legs.append)

    def deliver(self, text: str, body: bytes = b"") -> list[SipRequest | SipResponse]:
        data = text.replace("\n", "\r\n").encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        self.ua(data, PHONE, UDP)
        return self.net.take()


def invite(
    call_id: str = "call1", extra: str = "", cseq: int = 1, method: str = "INVITE", to_tag: str = ""
) -> str:
    to = "<sip:+15550001@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:+15550001@127.0.0.1 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{call_id}{cseq}{method};rport\n"
        "Max-Forwards: 70\n"
        "From: <sip:alice@127.0.0.1>;tag=ftag\n"
        f"To: {to}\n"
        f"Call-ID: {call_id}\n"
        f"CSeq: {cseq} {method}\n"
        "Contact: <sip:alice@127.0.0.1:5070>\n"
        + ("Content-Type: application/sdp\n" if method == "INVITE" else "")
        + extra
    )


def statuses(messages: list[SipRequest | SipResponse]) -> list[int]:
    return [m.status_code for m in messages if isinstance(m, SipResponse)]


def drain(leg: InboundLeg) -> list[object]:
    out = []
    while not leg.events.empty():
        out.append(leg.events.get_nowait())
    return out


async def test_inbound_ring_answer_reinvite_info_bye() -> None:
    w = World()
    assert statuses(w.deliver(invite(), OFFER)) == [100]  # 100 Trying at once
    (leg,) = w.legs
    assert leg.from_.uri.user == "alice" and leg.request_uri.user == "+15550001" and leg.offer == OFFER
    leg.ring()
    (ringing,) = w.net.take()
    assert isinstance(ringing, SipResponse) and ringing.status_code == 180 and ringing.to.tag == leg.local_tag
    local = LocalMedia("127.0.0.1", 30000)
    answer, _ = negotiate_answer(parse_sdp(OFFER), local)
    leg.answer(answer.serialize(), local_media=local)
    (ok,) = w.net.take()
    assert isinstance(ok, SipResponse) and ok.status_code == 200 and ok.body.startswith(b"v=0")
    assert ok.headers.get("Contact") == "<sip:+15550001@127.0.0.1:5060>"
    tag = leg.local_tag
    w.deliver(invite(method="ACK", to_tag=tag))
    assert leg.state is LegState.CONFIRMED
    hold = OFFER.replace(b"telephone-event/8000\r\n", b"telephone-event/8000\r\na=sendonly\r\n")
    (reok,) = w.deliver(invite(cseq=2, to_tag=tag), hold)
    assert isinstance(reok, SipResponse) and reok.status_code == 200 and b"a=recvonly" in reok.body
    w.deliver(invite(method="ACK", cseq=2, to_tag=tag))
    info = invite(method="INFO", cseq=3, to_tag=tag, extra="Content-Type: application/dtmf-relay\n")
    assert statuses(w.deliver(info, b"Signal=#\r\nDuration=200\r\n")) == [200]
    assert statuses(w.deliver(invite(method="BYE", cseq=4, to_tag=tag))) == [200]
    events = drain(leg)
    assert [type(e) for e in events] == [ReInvite, InfoDtmf, Ended]
    assert events[1] == InfoDtmf("#", 200) and events[2] == Ended(True, "bye")
    assert w.core.dialog_count() == 0
    # Requests in the ended dialog now get 481.
    assert statuses(w.deliver(invite(method="INFO", cseq=5, to_tag=tag))) == [481]


async def test_cancel_gets_487_and_event() -> None:
    w = World()
    w.deliver(invite(), OFFER)
    (leg,) = w.legs
    leg.ring()
    w.net.take()
    cancel = invite(method="CANCEL").replace("branch=z9hG4bKcall11CANCEL", "branch=z9hG4bKcall11INVITE")
    assert sorted(statuses(w.deliver(cancel))) == [200, 487]
    assert [type(e) for e in drain(leg)] == [Cancelled, Ended]


async def test_session_timer_negotiation_and_422() -> None:
    w = World()
    extra = "Session-Expires: 30\nSupported: timer\n"
    assert statuses(w.deliver(invite("short", extra), OFFER)) == [100, 422]
    extra = "Session-Expires: 120;refresher=uac\nSupported: timer\n"
    w.deliver(invite("st", extra), OFFER)
    (leg,) = w.legs
    leg.answer(OFFER)
    (ok,) = w.net.take()
    assert isinstance(ok, SipResponse)
    assert ok.headers.get("Session-Expires") == "120;refresher=uac" and ok.headers.get("Require") == "timer"


async def test_hangup_before_ack_waits_for_it() -> None:
    w = World()
    w.deliver(invite(), OFFER)
    (leg,) = w.legs
    leg.answer(OFFER)
    w.net.take()
    leg.hangup()
    assert w.net.take() == []  # RFC 3261 section 15: no BYE before the ACK
    out = w.deliver(invite(method="ACK", to_tag=leg.local_tag))
    assert [m.method for m in out if isinstance(m, SipRequest)] == ["BYE"]
    assert leg.ended == Ended(False, "hangup")


def response_to(request: SipRequest, status: int, tag: str, body: bytes = b"", extra: str = "") -> str:
    head = f"SIP/2.0 {status} X\n" + "".join(
        f"{n}: {v}\n" for n, v in request.headers if n in ("Via", "From", "Call-ID", "CSeq")
    )
    return head + f"To: {request.headers.get('To')};tag={tag}\nContact: <sip:callee@127.0.0.1:5070>\n" + extra


async def test_outbound_forks_first_2xx_wins_others_acked_and_byed() -> None:
    w = World()
    offer = build_offer(LocalMedia("127.0.0.1", 30002)).serialize()
    leg = w.manager.call(
        SipUri("sip", "bob", None, "127.0.0.1", 5070),
        Peer(UDP, PHONE),
        from_uri=SipUri("sip", "+1555", None, "127.0.0.1"),
        sdp_offer=offer,
    )
    (inv,) = w.net.take()
    assert isinstance(inv, SipRequest) and inv.method == "INVITE" and inv.top_via.has_rport
    w.deliver(response_to(inv, 180, "forkA"))
    out = w.deliver(response_to(inv, 200, "forkA", extra="Content-Type: application/sdp\n"), OFFER)
    assert [m.method for m in out if isinstance(m, SipRequest)] == ["ACK"]
    assert await leg.wait_answer() == 200 and leg.state is LegState.CONFIRMED
    out = w.deliver(response_to(inv, 200, "forkB", extra="Content-Type: application/sdp\n"), OFFER)
    assert [(m.method, m.to.tag) for m in out if isinstance(m, SipRequest)] == [
        ("ACK", "forkB"),
        ("BYE", "forkB"),
    ]
    events = []
    while not leg.events.empty():
        events.append(leg.events.get_nowait())
    assert [type(e) for e in events] == [Provisional, Answered]
    leg.hangup()
    (bye,) = w.net.take()
    assert isinstance(bye, SipRequest) and bye.method == "BYE" and bye.to.tag == "forkA"


async def test_outbound_digest_retry_and_failure() -> None:
    w = World()
    leg = w.manager.call(
        SipUri("sip", "bob", None, "127.0.0.1", 5070),
        Peer(UDP, PHONE),
        from_uri=SipUri("sip", "trunkuser", None, "127.0.0.1"),
        auth=("trunkuser", "secret"),
    )
    (inv,) = w.net.take()
    challenge = 'Proxy-Authenticate: Digest realm="carrier", nonce="abc", algorithm=MD5, qop="auth"\n'
    out = w.deliver(response_to(inv, 407, "t1", extra=challenge))
    methods = [(m.method, m.cseq.seq) for m in out if isinstance(m, SipRequest)]
    assert methods == [("ACK", 1), ("INVITE", 2)]
    retry = out[-1]
    assert isinstance(retry, SipRequest) and 'username="trunkuser"' in (
        retry.headers.get("Proxy-Authorization") or ""
    )
    assert retry.call_id == inv.call_id and retry.from_.tag == inv.from_.tag
    w.deliver(response_to(retry, 486, "t2"))
    assert await leg.wait_answer() == 486
    assert Failed(486, "X") in [leg.events.get_nowait() for _ in range(leg.events.qsize())]


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", ("5", 160)),
        ("application/dtmf-relay", b"Signal= 11\r\n", ("#", 250)),
        ("application/dtmf", b"*", ("*", 250)),
        ("application/dtmf", b"10", ("*", 250)),
        ("text/plain", b"Signal=5", None),
        ("application/dtmf-relay", b"nothing", None),
    ],
)
def test_parse_dtmf_info(content_type: str, body: bytes, expected: tuple[str, int] | None) -> None:
    assert parse_dtmf_info(content_type, body) == expected


async def test_our_reinvite_retries_after_491_glare_and_acks() -> None:
    w = World()
    w.deliver(invite(), OFFER)
    (leg,) = w.legs
    leg.answer(OFFER)
    w.net.take()
    w.deliver(invite(method="ACK", to_tag=leg.local_tag))
    assert leg.dialog is not None
    hold = make_hold_offer(parse_sdp(OFFER)).serialize()
    task = asyncio.get_running_loop().create_task(leg.reinvite(hold))
    await asyncio.sleep(0)
    (first,) = w.net.take()
    assert isinstance(first, SipRequest) and first.method == "INVITE" and b"a=sendonly" in first.body
    assert first.to.tag == "ftag" and first.from_.tag == leg.local_tag
    leg.dialog.rng = random.Random(139)  # glare delay 0 s (section 14.1: 0-2 s for the callee)
    out = w.deliver(response_to(first, 491, "ftag").replace(";tag=ftag;tag=ftag", ";tag=ftag"))
    assert [m.method for m in out if isinstance(m, SipRequest)] == ["ACK"]  # ACK of the 491
    for _ in range(20):
        await asyncio.sleep(0.01)
        retry = [m for m in w.net.take() if isinstance(m, SipRequest)]
        if retry:
            break
    (second,) = retry
    assert second.method == "INVITE" and second.cseq.seq == first.cseq.seq + 1
    answer = OFFER.replace(b"telephone-event/8000\r\n", b"telephone-event/8000\r\na=recvonly\r\n")
    ok = response_to(second, 200, "ftag", extra="Content-Type: application/sdp\n")
    out = w.deliver(ok.replace(";tag=ftag;tag=ftag", ";tag=ftag"), answer)
    assert [(m.method, m.cseq.seq) for m in out if isinstance(m, SipRequest)] == [("ACK", second.cseq.seq)]
    assert await asyncio.wait_for(task, 1) == answer
