"""SipCore without sockets: validation answers, guard, handlers, 2xx retransmission, fuzzing."""

from __future__ import annotations

import logging
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.gateway.config import SipConfig
from trunkline.gateway.sip.core import ALLOW, Admission, IncomingRequest, RateLimitedLog, SipCore
from trunkline.gateway.sip.message import SipRequest, SipResponse
from trunkline.gateway.sip.parser import parse_message
from trunkline.gateway.sip.transaction import Peer, ResponseReceived

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rfc4475"
UDP = "udp:127.0.0.1:5060"
SRC = Peer(UDP, ("127.0.0.1", 40000))


def make_core(**kwargs: object) -> SipCore:
    core = SipCore(SipConfig(advertise_host="203.0.113.5"), **kwargs)  # type: ignore[arg-type]
    core.set_transports({UDP: ("203.0.113.5", 5060)})
    return core


def request(
    method: str = "OPTIONS",
    *,
    extra: str = "",
    call_id: str = "c1",
    branch: str | None = None,
    to_tag: str | None = None,
    uri: str = "sip:service@127.0.0.1",
    body: bytes = b"",
) -> bytes:
    branch = branch or f"z9hG4bK{random.getrandbits(40):x}"
    to = "<sip:service@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.1:5070;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        "Contact: <sip:alice@10.0.0.1:5070>\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def feed(core: SipCore, data: bytes, now: float = 0.0, **kwargs: bool) -> list[SipResponse]:
    core.receive(data, SRC, now, **kwargs)
    return sent(core)


def sent(core: SipCore) -> list[SipResponse]:
    out = []
    for transmit in core.datagrams_to_send():
        message = parse_message(transmit.data)
        assert isinstance(message, SipResponse)
        out.append(message)
    return out


def test_options_answered_with_capabilities_and_rport() -> None:
    core = make_core()
    (response,) = feed(core, request("OPTIONS"))
    assert response.status_code == 200
    assert response.headers.get("Allow") == ALLOW
    assert response.headers.get("Accept") == "application/sdp"
    assert response.headers.get("Supported") == "timer"
    via = response.top_via
    assert via.params["rport"] == "40000" and via.received == "127.0.0.1"  # RFC 3581 section 4


def test_validation_status_codes() -> None:
    core = make_core()
    assert [r.status_code for r in feed(core, request("FOO"))] == [405]
    assert feed(core, request("FOO"))[0].headers.get("Allow") == ALLOW
    mf0 = request("INVITE", call_id="x").replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    assert [r.status_code for r in feed(core, mf0)] == [483]
    (unsupported,) = feed(core, request("OPTIONS", extra="Require: timer, foo, bar\r\n", call_id="r"))
    assert unsupported.status_code == 420 and unsupported.headers.get("Unsupported") == "foo, bar"
    (timer_ok,) = feed(core, request("OPTIONS", extra="Require: timer\r\n", call_id="t"))
    assert timer_ok.status_code == 200
    (scheme,) = feed(core, (FIXTURES / "unkscm.dat").read_bytes())
    assert scheme.status_code == 416
    (bye,) = feed(core, request("BYE", call_id="nodialog"))
    assert bye.status_code == 481
    (bye_tag,) = feed(core, request("BYE", call_id="nodialog2", to_tag="zz"))
    assert bye_tag.status_code == 481
    (cancel,) = feed(core, request("CANCEL", call_id="nothing"))
    assert cancel.status_code == 481
    assert feed(core, request("ACK", call_id="stray", to_tag="x")) == []


def test_oversize_gets_513_and_malformed_gets_parser_status() -> None:
    core = make_core()
    (big,) = feed(core, request("OPTIONS"), oversize=True)
    assert big.status_code == 513
    (version,) = feed(core, (FIXTURES / "badvers.dat").read_bytes())
    assert version.status_code == 505
    (bad,) = feed(core, request("OPTIONS").replace(b"Max-Forwards: 70", b"Max-Forwards: seventy"))
    assert bad.status_code == 400 and "Max-Forwards" in (bad.headers.get("Warning") or "")
    assert feed(core, (FIXTURES / "insuf.dat").read_bytes()) == []  # nothing to answer with
    assert core.stats.parse_errors == 3 and core.stats.dropped == 1


def test_merged_invite_gets_482() -> None:
    core = make_core()
    seen: list[IncomingRequest] = []
    core.on("INVITE", lambda incoming, now: seen.append(incoming))
    assert feed(core, request("INVITE", branch="z9hG4bKone")) == []
    (merged,) = feed(core, request("INVITE", branch="z9hG4bKtwo"))
    assert merged.status_code == 482 and len(seen) == 1


def test_guard_rejects_and_admits() -> None:
    verdicts = {"10.0.0.1": Admission(403, "Forbidden")}

    def guard(req: SipRequest, source: Peer, now: float) -> Admission:
        return verdicts.get(req.top_via.host, Admission(identity="trunk"))

    core = make_core(guard=guard)
    seen: list[IncomingRequest] = []
    core.on("MESSAGE", lambda incoming, now: seen.append(incoming))
    (rejected,) = feed(core, request("MESSAGE", call_id="m1"))
    assert rejected.status_code == 403 and not seen
    verdicts.clear()
    assert feed(core, request("MESSAGE", call_id="m2")) == []
    assert seen[0].identity == "trunk"
    (options,) = feed(core, request("OPTIONS", call_id="o"))  # OPTIONS is never guarded
    assert options.status_code == 200


def test_2xx_retransmitted_until_ack() -> None:
    core = make_core()
    incoming: list[IncomingRequest] = []
    core.on("INVITE", lambda inc, now: incoming.append(inc))
    feed(core, request("INVITE", call_id="call"))
    inc = incoming[0]
    core.respond(inc.transaction_id, inc.request, 200, 0.0, to_tag="ourtag", body=b"v=0\r\n")
    assert [r.status_code for r in sent(core)] == [200]
    core.handle_timer(0.5)  # T1
    assert [r.status_code for r in sent(core)] == [200]
    core.handle_timer(1.5)  # 2*T1 later
    assert [r.status_code for r in sent(core)] == [200]
    ack = request("ACK", call_id="call", to_tag="ourtag").replace(b"CSeq: 1 ACK", b"CSeq: 1 ACK")
    feed(core, ack, 1.6)
    core.handle_timer(10.0)
    assert sent(core) == []


def test_send_request_adds_rport_via_with_advertised_address() -> None:
    core = make_core()
    events: list[object] = []
    req = parse_message(request("OPTIONS"))
    assert isinstance(req, SipRequest)
    req.headers.remove("Via")
    tx = core.send_request(req, Peer(UDP, ("192.0.2.9", 5060)), 0.0, lambda e, now: events.append(e))
    (transmit,) = core.datagrams_to_send()
    out = parse_message(transmit.data)
    via = out.top_via
    assert (via.host, via.port) == ("203.0.113.5", 5060) and via.has_rport and via.rfc3261_branch
    assert out.headers.get("User-Agent") == core.user_agent
    reply = transmit.data.decode().replace("OPTIONS sip:service@127.0.0.1 SIP/2.0", "SIP/2.0 200 OK", 1)
    core.receive(reply.encode(), Peer(UDP, ("192.0.2.9", 5060)), 0.1)
    assert len(events) == 1 and isinstance(events[0], ResponseReceived)
    assert events[0].transaction_id == tx and events[0].response.status_code == 200


def test_keepalive_and_responses_without_transaction_are_ignored() -> None:
    core = make_core()
    assert feed(core, b"\r\n\r\n") == []
    assert feed(core, b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n\r\n") == []
    assert core.stats.internal_errors == 0


def test_rate_limited_log(caplog: object) -> None:
    limited = RateLimitedLog(logging.getLogger("test.ratelimit"), burst=3, window=10.0)
    logged = [limited.warning(0.1 * i, "problem %d", i) for i in range(50)]
    assert logged.count(True) == 3 and limited.suppressed_total == 47
    assert limited.warning(10.5, "again")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    core = make_core()
    core.receive(data, SRC, 0.0)
    core.receive(request("OPTIONS")[: len(data) % 300] + data, SRC, 0.0)
    core.datagrams_to_send()
    assert core.stats.internal_errors == 0
