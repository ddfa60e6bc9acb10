"""Registrar (RFC 3261 section 10.3) with the location service, digest and a clock passed in."""

from __future__ import annotations

from trunkline.gateway.config import Endpoint
from trunkline.gateway.sip.auth import answer_challenge, parse_challenge
from trunkline.gateway.sip.message import SipRequest
from trunkline.gateway.sip.parser import parse_message
from trunkline.gateway.sip.registrar import Registrar
from trunkline.gateway.sip.transaction import Peer
from trunkline.gateway.switch.location import LocationService
from trunkline.gateway.switch.security import InboundGuard

ALICE = Endpoint("alice", "alice-secret", "AC" + "0" * 32)
BOB = Endpoint("bob", "bob-secret", "AC" + "0" * 32)
SRC = Peer("udp:127.0.0.1:5060", ("198.51.100.7", 61000))


def register(
    user: str, contacts: str, *, expires: str | None = None, cseq: int = 1, call_id: str = "reg1"
) -> SipRequest:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKreg;rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@127.0.0.1>;tag=r1",
        f"To: <sip:{user}@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
    ]
    if contacts:
        lines.append(f"Contact: {contacts}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    request = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(request, SipRequest)
    return request


class Setup:
    def __init__(self) -> None:
        self.guard = InboundGuard((), (ALICE, BOB))
        self.location = LocationService()
        users = {"alice", "bob"}
        self.registrar = Registrar(
            self.location,
            users.__contains__,
            lambda req, now: self.guard.authenticate(req, now, proxy=False),
            min_expires=60,
            max_expires=3600,
        )

    def authorized(self, request: SipRequest, now: float, password: str = "alice-secret") -> SipRequest:
        result = self.registrar.handle(request, SRC, now)
        assert result.status == 401
        challenge = parse_challenge(dict(result.headers)["WWW-Authenticate"])
        user = request.to.uri.user or ""
        creds = answer_challenge(challenge, "REGISTER", request.uri.serialize(), user, password)
        request.headers.add("Authorization", creds.serialize())
        return request

    def do(
        self, request: SipRequest, now: float, password: str = "alice-secret"
    ) -> tuple[int, dict[str, str], list[str]]:
        result = self.registrar.handle(self.authorized(request, now, password), SRC, now)
        headers = dict(result.headers)
        contacts = [v for n, v in result.headers if n == "Contact"]
        return result.status, headers, contacts


def test_register_bindings_expiry_and_fetch() -> None:
    s = Setup()
    status, _, contacts = s.do(register("alice", "<sip:alice@10.0.0.5:5060>", expires="600"), 100.0)
    assert status == 200 and contacts == ["<sip:alice@10.0.0.5:5060>;expires=600"]
    status, _, contacts = s.do(register("alice", "<sip:alice@10.0.0.6:5062>;expires=120", cseq=2), 110.0)
    assert status == 200 and len(contacts) == 2 and "<sip:alice@10.0.0.6:5062>;expires=120" in contacts
    (binding,) = [b for b in s.location.lookup("alice", 110.0) if b.contact.port == 5062]
    assert binding.source == SRC  # NAT: requests go where the REGISTER came from
    # fetch (no Contact) lists both with their remaining time
    status, _, contacts = s.do(register("alice", "", cseq=3), 200.0)
    assert sorted(contacts) == [
        "<sip:alice@10.0.0.5:5060>;expires=500",
        "<sip:alice@10.0.0.6:5062>;expires=30",
    ]
    assert len(s.location.lookup("alice", 231.0)) == 1  # the 120 s binding expired on the clock
    assert s.location.lookup("alice", 701.0) == []


def test_interval_too_brief_clamp_and_removal() -> None:
    s = Setup()
    status, headers, _ = s.do(register("alice", "<sip:alice@10.0.0.5>", expires="10"), 0.0)
    assert status == 423 and headers["Min-Expires"] == "60"
    status, _, contacts = s.do(register("alice", "<sip:alice@10.0.0.5>", expires="99999", cseq=2), 0.0)
    assert status == 200 and contacts == ["<sip:alice@10.0.0.5>;expires=3600"]
    status, _, contacts = s.do(register("alice", "<sip:alice@10.0.0.5>;expires=0", cseq=3), 1.0)
    assert status == 200 and contacts == [] and len(s.location) == 0


def test_wildcard_removal_rules() -> None:
    s = Setup()
    s.do(register("alice", "<sip:alice@10.0.0.5>, <sip:alice@10.0.0.6>", expires="300"), 0.0)
    assert len(s.location.lookup("alice", 1.0)) == 2
    status, _, _ = s.do(register("alice", "*", expires="300", cseq=2), 1.0)
    assert status == 400
    status, _, _ = s.do(register("alice", "*", expires="0", cseq=3), 1.0)
    assert status == 200 and s.location.lookup("alice", 1.0) == []


def test_out_of_order_refresh_and_wrong_user() -> None:
    s = Setup()
    s.do(register("alice", "<sip:alice@10.0.0.5>", expires="300", cseq=5), 0.0)
    status, _, _ = s.do(register("alice", "<sip:alice@10.0.0.5>", expires="300", cseq=4), 1.0)
    assert status == 500
    # bob's credentials for alice's AOR are refused
    request = register("alice", "<sip:bob@10.0.0.9>", expires="300", call_id="x")
    result = s.registrar.handle(request, SRC, 0.0)
    challenge = parse_challenge(dict(result.headers)["WWW-Authenticate"])
    creds = answer_challenge(challenge, "REGISTER", "sip:127.0.0.1", "bob", "bob-secret")
    request.headers.add("Authorization", creds.serialize())
    assert s.registrar.handle(request, SRC, 0.0).status == 403
    status, _, _ = s.do(register("alice", "<sip:alice@10.0.0.5>", expires="300", call_id="y"), 0.0, "bad")
    assert status == 403
