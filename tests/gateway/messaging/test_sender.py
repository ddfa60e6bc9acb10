"""SipMessageSender: routing (registrations, URIs, trunks), digest, failover, timeouts, TCP for big
messages, over the real UA core and transports on 127.0.0.1 against scripted in-process peers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

import pytest

from trunkline.gateway.api.control import NoRouteError
from trunkline.gateway.config import ListenAddress, SipConfig, Trunk
from trunkline.gateway.messaging.sender import MessageRoute, SipMessageSender, is_number
from trunkline.gateway.messaging.sip import UDP_SIZE_LIMIT, read_message
from trunkline.gateway.sip.auth import DigestServer, parse_credentials
from trunkline.gateway.sip.core import SipCore
from trunkline.gateway.sip.framer import StreamFramer
from trunkline.gateway.sip.message import SipRequest, make_response
from trunkline.gateway.sip.parser import parse_message
from trunkline.gateway.sip.transaction import Peer
from trunkline.gateway.sip.transport import TransportSet
from trunkline.gateway.sip.uri import SipUri
from trunkline.gateway.sip.useragent import UserAgent
from trunkline.gateway.switch.leg_manager import LegManager
from trunkline.gateway.switch.location import Binding, LocationService
from trunkline.gateway.switch.trunks import TrunkManager

pytestmark = pytest.mark.timeout(20)

LOOPBACK = "127.0.0.1"
ACCOUNT = "AC" + "5e" * 16
# A handler answers one request with (status, extra headers), or None to stay silent.
Answer = tuple[int, tuple[tuple[str, str], ...]] | None
Handler = Callable[[SipRequest], Answer]


def ok(request: SipRequest) -> Answer:
    return 200, ()


@dataclass
class PeerUdp(asyncio.DatagramProtocol):
    """A scripted SIP peer on UDP: records every request and answers what ``handler`` says."""

    handler: Handler = ok
    requests: list[SipRequest] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = parse_message(data)
        if not isinstance(request, SipRequest) or request.method == "ACK":
            return
        self.requests.append(request)
        answer = self.handler(request)
        if answer is not None and self.transport is not None:
            status, headers = answer
            self.transport.sendto(make_response(request, status, headers=headers).serialize(), addr)


@dataclass
class World:
    ua: UserAgent
    location: LocationService
    peers: list[PeerUdp]

    async def peer(self, handler: Handler = ok) -> PeerUdp:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(lambda: PeerUdp(handler), local_addr=(LOOPBACK, 0))
        self.peers.append(protocol)
        return protocol

    def udp(self, port: int) -> Peer:
        return self.ua.core.peer_for(LOOPBACK, port, "udp")

    def register(self, user: str, peer: PeerUdp, q: float = 1.0) -> Binding:
        contact = SipUri("sip", user, None, LOOPBACK, peer.port, {"ob": None})
        binding = Binding(user, contact, self.ua.now() + 300, self.udp(peer.port), "reg-" + user, 1, q=q)
        return self.location.update(binding, self.ua.now())

    def sender(self, trunks: tuple[Trunk, ...] = ()) -> SipMessageSender:
        manager = TrunkManager(self.ua, LegManager(self.ua), trunks) if trunks else None
        return SipMessageSender(
            self.ua, self.location, manager, local_addresses=lambda: [self.ua.core.advertised("udp")]
        )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    sip = dataclasses.replace(
        SipConfig(), listen=(ListenAddress("udp", LOOPBACK, 0), ListenAddress("tcp", LOOPBACK, 0))
    )
    sip = dataclasses.replace(sip, timers=dataclasses.replace(sip.timers, t1=10))  # Timer F 0.64 s
    ua = UserAgent(SipCore(sip))
    transports = await TransportSet.open(sip, ua)
    ua.attach(transports)
    state = World(ua, LocationService(), [])
    yield state
    for peer in state.peers:
        assert peer.transport is not None
        peer.transport.close()
    ua.close()
    await transports.close()


def test_numbers_are_recognised() -> None:
    assert is_number("+15551230000") and is_number("5551230000")
    assert not is_number("client:bob") and not is_number("+1555abc") and not is_number("+")


async def test_client_goes_to_its_registration_with_the_text(world: World) -> None:
    phone = await world.peer()
    world.register("bob", phone)
    text = "Привет, Боб! 👋"
    status = await world.sender().send_message(ACCOUNT, "+15550001111", "client:bob", text)
    assert status == 200
    (request,) = phone.requests
    assert request.method == "MESSAGE"
    assert request.uri == SipUri("sip", "bob", None, LOOPBACK, phone.port, {"ob": None})
    host, port = world.ua.core.advertised("udp")
    assert request.to.uri.user == "bob" and (request.to.uri.host, request.to.uri.port) == (host, port)
    assert request.from_.uri.user == "+15550001111" and request.from_.uri.params.get("user") == "phone"
    assert request.headers.get("Content-Type") == "text/plain;charset=UTF-8"
    assert request.top_via.transport.upper() == "UDP"
    message = read_message(request)
    assert message.body == text and message.from_ == "+15550001111" and message.to == "client:bob"


async def test_bare_user_and_local_sip_uri_use_the_location_service(world: World) -> None:
    phone = await world.peer()
    world.register("carol", phone)
    sender = world.sender()
    host, port = world.ua.core.advertised("udp")
    assert await sender.send_message(ACCOUNT, "client:alice", "carol", "one") == 200
    assert await sender.send_message(ACCOUNT, "client:alice", f"sip:carol@{host}:{port}", "two") == 200
    assert [read_message(r).body for r in phone.requests] == ["one", "two"]
    assert all(r.uri.port == phone.port for r in phone.requests)
    assert phone.requests[0].from_.uri.user == "alice"


async def test_unregistered_users_have_no_route(world: World) -> None:
    sender = world.sender()
    host, port = world.ua.core.advertised("udp")
    for to in ("client:nobody", "nobody", f"sip:nobody@{host}:{port}", "+15550009999", "mailto:x@y"):
        with pytest.raises(NoRouteError):
            await sender.send_message(ACCOUNT, "+15550001111", to, "hello")


async def test_foreign_sip_uri_is_sent_directly(world: World) -> None:
    far = await world.peer(lambda r: (202, ()))
    status = await world.sender().send_message(
        ACCOUNT, "+15550001111", f"sip:someone@{LOOPBACK}:{far.port}", "direct"
    )
    assert status == 202
    (request,) = far.requests
    assert request.uri.user == "someone" and request.to.uri.user == "someone"


async def test_next_registration_when_one_is_not_there(world: World) -> None:
    away = await world.peer(lambda r: (480, ()))
    here = await world.peer()
    world.register("dave", away, q=1.0)
    world.register("dave", here, q=0.5)
    assert await world.sender().send_message(ACCOUNT, "+15550001111", "client:dave", "hi") == 200
    assert len(away.requests) == 1 and len(here.requests) == 1


async def test_number_fails_over_and_answers_the_digest_challenge(world: World) -> None:
    digest = DigestServer("carrier", b"k" * 32, algorithms=("MD5",))
    verdicts: list[bool] = []

    def carrier(request: SipRequest) -> Answer:
        value = request.headers.get("Proxy-Authorization")
        now = world.ua.now()
        if value is None:
            return 407, tuple(("Proxy-Authenticate", c.serialize()) for c in digest.challenges(now))
        result = digest.verify(
            parse_credentials(value),
            "MESSAGE",
            now=now,
            password_lookup={"acct": "pw"}.get,
            body=request.body,
        )
        verdicts.append(result.ok)
        return (200, ()) if result.ok else (403, ())

    broken = await world.peer(lambda r: (503, ()))
    good = await world.peer(carrier)
    trunks = (
        Trunk("broken", LOOPBACK, broken.port),
        Trunk("good", LOOPBACK, good.port, username="acct", password="pw", from_domain="example.net"),
    )
    status = await world.sender(trunks).send_message(ACCOUNT, "+15550001111", "+15557654321", "code 4711")
    assert status == 200 and verdicts == [True]
    assert len(broken.requests) == 1
    first, second = good.requests
    assert first.uri == SipUri("sip", "+15557654321", None, LOOPBACK, good.port, {"user": "phone"})
    assert second.call_id == first.call_id and second.cseq.seq == first.cseq.seq + 1
    assert second.from_.tag == first.from_.tag and second.from_.uri.host == "example.net"
    assert second.top_via.branch != first.top_via.branch
    assert read_message(second).body == "code 4711"


async def test_callee_answers_stop_the_failover(world: World) -> None:
    busy = await world.peer(lambda r: (486, ()))
    spare = await world.peer()
    trunks = (Trunk("a", LOOPBACK, busy.port), Trunk("b", LOOPBACK, spare.port))
    assert await world.sender(trunks).send_message(ACCOUNT, "+15550001111", "+15557654321", "x") == 486
    assert spare.requests == []


async def test_silence_and_408_are_timeouts(world: World) -> None:
    silent = await world.peer(lambda r: None)
    world.register("erin", silent)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await world.sender().send_message(ACCOUNT, "+15550001111", "client:erin", "anyone?")
    assert 0.5 < loop.time() - started < 3.0  # Timer F = 64 * T1
    assert len(silent.requests) > 3  # retransmitted (RFC 3261 section 17.1.2.2, Timer E)

    timing_out = await world.peer(lambda r: (408, ()))
    with pytest.raises(TimeoutError):
        await world.sender().send_message(ACCOUNT, "+1", f"sip:x@{LOOPBACK}:{timing_out.port}", "late")


async def test_big_message_goes_over_tcp(world: World) -> None:
    received: list[SipRequest] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer()
        while data := await reader.read(65536):
            for raw in framer.feed(data):
                request = parse_message(raw)
                assert isinstance(request, SipRequest)
                received.append(request)
                writer.write(make_response(request, 200).serialize())
                await writer.drain()

    server = await asyncio.start_server(serve, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    udp = await world.peer()
    big = "Ж" * 1000  # 2,000 bytes of UTF-8
    small = "small enough for UDP"
    sender = world.sender()
    async with server:
        for body in (big, small):
            # The same host:port over UDP (the small one) and TCP (the big one).
            status = await sender.attempt(
                _route(world, port if body is big else udp.port), "+15550001111", body
            )
            assert status == 200
    (over_tcp,) = received
    assert read_message(over_tcp).body == big and len(over_tcp.serialize()) > UDP_SIZE_LIMIT
    assert over_tcp.top_via.transport.upper() == "TCP"
    (over_udp,) = udp.requests
    assert read_message(over_udp).body == small


async def test_big_message_falls_back_to_udp_when_tcp_is_refused(world: World) -> None:
    phone = await world.peer()  # nothing listens on TCP at this port
    world.register("frank", phone)
    big = "😀" * 400
    assert await world.sender().send_message(ACCOUNT, "+15550001111", "client:frank", big) == 200
    (request,) = phone.requests
    assert read_message(request).body == big


def _route(world: World, port: int) -> MessageRoute:
    target = SipUri("sip", "x", None, LOOPBACK, port)
    return MessageRoute(target, target, world.udp(port), LOOPBACK, f"test {port}")
