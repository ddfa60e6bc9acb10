"""Inbound guard: trunk ACL, endpoint digest (407), 403, loopback default, rate-limited logs."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from trunkline.gateway.config import Endpoint, Trunk
from trunkline.gateway.sip.auth import answer_challenge, parse_challenge
from trunkline.gateway.sip.message import SipRequest
from trunkline.gateway.sip.parser import parse_message
from trunkline.gateway.sip.transaction import Peer
from trunkline.gateway.switch.security import InboundGuard, is_loopback

TRUNK = Trunk("carrier", "203.0.113.10", inbound_ips=(ipaddress.ip_network("203.0.113.0/28"),))
ALICE = Endpoint("alice", "alice-secret", "AC" + "0" * 32)


def invite(extra: str = "") -> SipRequest:
    text = (
        "INVITE sip:+15550001@trunkline SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n"
        "From: <sip:alice@trunkline>;tag=1\r\nTo: <sip:+15550001@trunkline>\r\n"
        f"Call-ID: sec\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    request = parse_message(text.encode())
    assert isinstance(request, SipRequest)
    return request


def peer(ip: str) -> Peer:
    return Peer("udp:0.0.0.0:5060", (ip, 5060))


def test_trunk_address_admitted_with_trunk_identity() -> None:
    guard = InboundGuard((TRUNK,), (ALICE,))
    verdict = guard(invite(), peer("203.0.113.5"), 0.0)
    assert verdict.admitted and verdict.identity is TRUNK


def test_endpoint_challenge_then_admitted_then_wrong_password() -> None:
    guard = InboundGuard((TRUNK,), (ALICE,))
    first = guard(invite(), peer("192.0.2.1"), 0.0)
    assert first.status == 407
    challenge = parse_challenge(dict(first.headers)["Proxy-Authenticate"])
    good = answer_challenge(challenge, "INVITE", "sip:+15550001@trunkline", "alice", "alice-secret")
    verdict = guard(invite(f"Proxy-Authorization: {good.serialize()}\r\n"), peer("192.0.2.1"), 1.0)
    assert verdict.admitted and verdict.identity is ALICE
    bad = answer_challenge(challenge, "INVITE", "sip:+15550001@trunkline", "alice", "nope")
    assert guard(invite(f"Proxy-Authorization: {bad.serialize()}\r\n"), peer("192.0.2.1"), 1.0).status == 403
    stale = guard(invite(f"Proxy-Authorization: {good.serialize()}\r\n"), peer("192.0.2.1"), 400.0)
    assert stale.status == 407 and "stale=true" in dict(stale.headers)["Proxy-Authenticate"].lower()
    assert guard.stats.endpoint == 1 and guard.stats.forbidden == 1


def test_everything_else_forbidden_and_logged_with_a_limit(caplog: pytest.LogCaptureFixture) -> None:
    guard = InboundGuard((TRUNK,), ())
    with caplog.at_level(logging.WARNING, "trunkline.switch.security"):
        verdicts = [guard(invite(), peer("198.51.100.1"), i / 1000) for i in range(1000)]
    assert {v.status for v in verdicts} == {403}
    assert guard.stats.forbidden == 1000
    assert len(caplog.records) <= 11


def test_loopback_only_on_a_fresh_install() -> None:
    assert InboundGuard((), ())(invite(), peer("127.0.0.1"), 0.0).admitted
    assert InboundGuard((), ())(invite(), peer("192.0.2.1"), 0.0).status == 403
    assert InboundGuard((TRUNK,), ())(invite(), peer("127.0.0.1"), 0.0).status == 403
    assert is_loopback("::1") and is_loopback("::ffff:127.0.0.1") and not is_loopback("10.0.0.1")
