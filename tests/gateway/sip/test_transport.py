"""SIP transports, response routing and the in-process server, on 127.0.0.1.

Every socket is bound to 127.0.0.1 on an ephemeral port; SIPp (when installed) runs against the
server for five calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.peers.ports import ipv6_loopback_available
from trunkline.gateway.config import Config, HttpConfig, ListenAddress, SipConfig, TlsConfig
from trunkline.gateway.server import Server
from trunkline.gateway.sip.framer import StreamFramer
from trunkline.gateway.sip.headers import Via
from trunkline.gateway.sip.message import SipResponse
from trunkline.gateway.sip.parser import parse_message
from trunkline.gateway.sip.response_routing import response_destination
from trunkline.gateway.sip.transport import Address, StreamTransport, TransportSet, UdpTransport

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rfc4475"
LOOPBACK = "127.0.0.1"


def request(
    method: str,
    via_port: int,
    *,
    transport: str = "UDP",
    rport: bool = True,
    call_id: str = "call-1",
    extra: str = "",
    via_host: str = LOOPBACK,
    body: bytes = b"",
) -> bytes:
    """A well-formed SIP request from a UA at ``via_host:via_port``."""
    head = (
        f"{method} sip:service@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {via_host}:{via_port};branch=z9hG4bK{random.getrandbits(40):x}"
        f"{';rport' if rport else ''}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:service@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def response_of(data: bytes) -> SipResponse:
    message = parse_message(data)
    assert isinstance(message, SipResponse), data
    return message


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.setblocking(False)
    return sock


async def udp_exchange(sock: socket.socket, data: bytes, dest: Address, expect: int = 1) -> list[SipResponse]:
    loop = asyncio.get_running_loop()
    sock.sendto(data, dest)  # loopback, never blocks (uvloop has no sock_sendto)
    return [response_of(await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)) for _ in range(expect)]


async def no_datagram(sock: socket.socket, wait: float = 0.2) -> bool:
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_recv(sock, 65536), wait)
    except TimeoutError:
        return True
    return False


class StreamClient:
    """A TCP/TLS SIP client that frames what it reads."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer(65535)
        self.pending: list[bytes] = []

    @classmethod
    async def connect(cls, address: Address, **kwargs: object) -> StreamClient:
        reader, writer = await asyncio.open_connection(address[0], address[1], **kwargs)  # type: ignore[arg-type]
        return cls(reader, writer)

    @property
    def local_port(self) -> int:
        return int(self.writer.get_extra_info("sockname")[1])

    async def receive(self) -> SipResponse:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            assert data, "connection closed"
            self.pending.extend(self.framer.feed(data))
        return response_of(self.pending.pop(0))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def make_config(
    *listen: str, idle: float = 120.0, max_size: int = 65535, tls: TlsConfig | None = None
) -> Config:
    addresses = tuple(ListenAddress(t, LOOPBACK, 0) for t in listen)
    sip = SipConfig(
        listen=addresses, connection_idle_timeout=idle, max_message_size=max_size, tls=tls or TlsConfig()
    )
    return dataclasses.replace(Config.default(), sip=sip, http=HttpConfig(port=0))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the demo account goes to ./var


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server(make_config("udp", "tcp"))
    await srv.start()
    yield srv
    await srv.stop()


def address_of(srv: Server, protocol: str) -> Address:
    transport = srv.sip.first(protocol)
    assert transport is not None
    return transport.local_address


# --- response routing (RFC 3261 section 18.2, RFC 3581) -------------------------------------


def test_response_destination_rules() -> None:
    via = Via.parse("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport")
    out, dest = response_destination(via, ("192.0.2.7", 40000), reliable=False)
    assert dest == ("192.0.2.7", 40000)
    assert out.params["rport"] == "40000" and out.received == "192.0.2.7"
    # RFC 3581 section 4: received is added with rport even when it equals sent-by.
    same = Via.parse("SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK1;rport")
    assert response_destination(same, ("192.0.2.7", 1), reliable=False)[0].received == "192.0.2.7"

    plain = Via.parse("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1")
    out, dest = response_destination(plain, ("192.0.2.7", 40000), reliable=False)
    assert dest == ("192.0.2.7", 5070) and out.received == "192.0.2.7" and "rport" not in out.params
    default_port = Via.parse("SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK1")
    out, dest = response_destination(default_port, ("192.0.2.7", 40000), reliable=False)
    assert dest == ("192.0.2.7", 5060) and out.received is None
    out, dest = response_destination(plain, ("192.0.2.7", 40000), reliable=True)
    assert dest == ("192.0.2.7", 40000)
    v6 = Via.parse("SIP/2.0/UDP [::1]:5070;branch=z9hG4bK1")
    assert response_destination(v6, ("::1", 5070), reliable=False) == (v6, ("::1", 5070))


# --- UDP transport ----------------------------------------------------------------------------


async def test_udp_batches_oversize_and_send() -> None:
    received: list[tuple[bytes, Address, str, bool]] = []

    def receiver(data: bytes, source: Address, transport: str, *, oversize: bool = False) -> None:
        received.append((data, source, transport, oversize))

    config = SipConfig(max_message_size=1500)
    udp = await UdpTransport.open(ListenAddress("udp", LOOPBACK, 0), receiver, config)
    client = udp_socket()
    try:
        assert udp.name == f"udp:127.0.0.1:{udp.local_address[1]}"
        assert udp.advertised == udp.local_address
        for i in range(300):
            client.sendto(b"msg %d" % i, udp.local_address)
        client.sendto(b"x" * 2000, udp.local_address)
        for _ in range(200):
            if len(received) == 301:
                break
            await asyncio.sleep(0.01)
        assert [d for d, _, _, _ in received[:300]] == [b"msg %d" % i for i in range(300)]
        data, source, name, oversize = received[300]
        assert oversize and len(data) == 1500 and name == udp.name
        assert source == client.getsockname()
        assert udp.stats.received == 301 and udp.stats.oversize == 1
        udp.send(b"hello", source)
        assert await asyncio.wait_for(asyncio.get_running_loop().sock_recv(client, 100), 2) == b"hello"
        assert udp.stats.sent == 1
    finally:
        client.close()
        await udp.close()
    udp.send(b"late", ("127.0.0.1", 9))
    assert udp.stats.dropped == 1


async def test_udp_receiver_exception_is_contained() -> None:
    calls: list[bytes] = []

    def receiver(data: bytes, source: Address, transport: str, *, oversize: bool = False) -> None:
        calls.append(data)
        raise RuntimeError("bug")

    udp = await UdpTransport.open(
        ListenAddress("udp", LOOPBACK, 0), receiver, SipConfig(advertise_host="192.0.2.1")
    )
    client = udp_socket()
    try:
        assert udp.advertised == ("192.0.2.1", udp.local_address[1])
        client.sendto(b"a", udp.local_address)
        client.sendto(b"b", udp.local_address)
        for _ in range(100):
            if len(calls) == 2:
                break
            await asyncio.sleep(0.01)
        assert calls == [b"a", b"b"] and udp.stats.errors == 2
    finally:
        client.close()
        await udp.close()


async def test_bind_conflict_closes_what_was_opened() -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind((LOOPBACK, 0))
    port = blocker.getsockname()[1]
    config = SipConfig(listen=(ListenAddress("tcp", LOOPBACK, 0), ListenAddress("udp", LOOPBACK, port)))
    try:
        with pytest.raises(OSError, match="already in use"):
            await TransportSet.open(config, lambda *a, **k: None)
    finally:
        blocker.close()


# --- TCP / TLS transports ---------------------------------------------------------------------


async def test_tcp_reuse_ping_framing_error_and_idle_timeout() -> None:
    received: list[tuple[bytes, Address]] = []

    def receiver(data: bytes, source: Address, transport: str, *, oversize: bool = False) -> None:
        received.append((data, source))

    config = SipConfig(connection_idle_timeout=1.0)
    tcp = await StreamTransport.open(ListenAddress("tcp", LOOPBACK, 0), receiver, config)
    try:
        client = await StreamClient.connect(tcp.local_address)
        first, second = (
            request("OPTIONS", client.local_port, transport="TCP"),
            request("INFO", 1, transport="TCP"),
        )
        client.writer.write(first + second[:50])
        client.writer.write(second[50:] + b"\r\n\r\n")
        for _ in range(100):
            if len(received) == 2:
                break
            await asyncio.sleep(0.01)
        assert [d for d, _ in received] == [first, second]
        source = received[0][1]
        assert source == ("127.0.0.1", client.local_port)
        assert await asyncio.wait_for(client.reader.readexactly(2), 2) == b"\r\n"  # RFC 5626 pong
        assert tcp.connection_count == 1
        tcp.send(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", source)  # same connection
        assert (await client.receive()).status_code == 200
        assert tcp.connection_count == 1
        # Idle for more than connection_idle_timeout: the server closes the connection.
        assert await asyncio.wait_for(client.reader.read(100), 5) == b""
        assert tcp.connection_count == 0
        await client.close()

        bad = await StreamClient.connect(tcp.local_address)
        bad.writer.write(b"OPTIONS sip:x SIP/2.0\r\nVia: x\r\n\r\n")  # no Content-Length on a stream
        assert await asyncio.wait_for(bad.reader.read(100), 5) == b""
        await bad.close()
    finally:
        await tcp.close()


async def test_tcp_outbound_connection_is_opened_and_reused() -> None:
    got: list[bytes] = []
    peer_done = asyncio.Event()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer(65535)
        while len(got) < 2:
            data = await reader.read(65536)
            if not data:
                break
            got.extend(framer.feed(data))
        writer.write(request("OPTIONS", 1, transport="TCP"))
        await writer.drain()
        peer_done.set()

    listener = await asyncio.start_server(peer, LOOPBACK, 0)
    dest = listener.sockets[0].getsockname()[:2]
    received: list[bytes] = []

    def receiver(data: bytes, source: Address, transport: str, *, oversize: bool = False) -> None:
        received.append(data)

    tcp = await StreamTransport.open(ListenAddress("tcp", LOOPBACK, 0), receiver, SipConfig())
    try:
        one = request("OPTIONS", 5, transport="TCP", call_id="x1")
        two = request("OPTIONS", 5, transport="TCP", call_id="x2")
        tcp.send(one, dest)
        tcp.send(two, dest)  # queued while connecting, same connection
        await asyncio.wait_for(peer_done.wait(), 5)
        assert got == [one, two]
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.01)
        assert len(received) == 1 and tcp.stats.connections == 1
        tcp.send(b"x", ("127.0.0.1", 1))  # nothing listens there: counted as dropped
        for _ in range(200):
            if tcp.stats.dropped:
                break
            await asyncio.sleep(0.01)
        assert tcp.stats.dropped == 1
    finally:
        await tcp.close()
        listener.close()


def make_certificate(directory: Path) -> TlsConfig:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return TlsConfig(cert=cert, key=key, ca_file=cert)


async def test_tls_options(tmp_path: Path) -> None:
    import ssl

    tls = make_certificate(tmp_path)
    srv = Server(make_config("tls", tls=tls))
    await srv.start()
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file))
        client = await StreamClient.connect(address_of(srv, "tls"), ssl=context, server_hostname="127.0.0.1")
        client.writer.write(request("OPTIONS", client.local_port, transport="TLS"))
        response = await client.receive()
        assert response.status_code == 200 and response.top_via.transport == "TLS"
        await client.close()
    finally:
        await srv.stop()


# --- the server, in process -------------------------------------------------------------------


async def test_healthz(server: Server) -> None:
    assert server.http_address is not None
    host, port = server.http_address
    async with aiohttp.ClientSession() as session, session.get(f"http://{host}:{port}/healthz") as reply:
        assert reply.status == 200
        assert (await reply.json())["status"] == "ok"


async def test_options_udp_and_tcp(server: Server) -> None:
    sock = udp_socket()
    try:
        port = sock.getsockname()[1]
        (response,) = await udp_exchange(sock, request("OPTIONS", port), address_of(server, "udp"))
        assert response.status_code == 200
        assert response.top_via.params["rport"] == str(port) and response.top_via.received == LOOPBACK
    finally:
        sock.close()
    client = await StreamClient.connect(address_of(server, "tcp"))
    try:
        client.writer.write(request("OPTIONS", client.local_port, transport="TCP", rport=False))
        client.writer.write(request("OPTIONS", client.local_port, transport="TCP", call_id="second"))
        first, second = await client.receive(), await client.receive()
        assert (first.status_code, second.status_code) == (200, 200)
        assert second.call_id == "second"
    finally:
        await client.close()


def garbage() -> list[bytes]:
    rng = random.Random(4475)
    valid = request("INVITE", 5099, body=b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n")
    out = [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 1400))) for _ in range(30)]
    out += [valid[:cut] for cut in range(0, len(valid), 17)]
    out += [b"\x00" * 64, b"SIP/2.0", b"INVITE", b"\r\n" * 40, b"\xff" * 2000, valid.replace(b"\r\n", b"\n")]
    out += [path.read_bytes() for path in sorted(FIXTURES.glob("*.dat"))]
    return out


async def test_garbage_never_kills_the_server(server: Server) -> None:
    sink = udp_socket()  # responses that go to the fixtures' Via addresses are not read
    target = address_of(server, "udp")
    for data in garbage():
        sink.sendto(data[:65000], target)
        await asyncio.sleep(0)
    client = await StreamClient.connect(address_of(server, "tcp"))
    client.writer.write(b"\x16\x03\x01 not sip at all\r\n\r\n")
    assert await asyncio.wait_for(client.reader.read(100), 5) == b""  # framing error closes it
    await client.close()
    await asyncio.sleep(0.2)
    assert server.core is not None and server.core.stats.internal_errors == 0
    assert server.core.stats.parse_errors > 20
    sock = udp_socket()
    try:
        (response,) = await udp_exchange(sock, request("OPTIONS", sock.getsockname()[1]), target)
        assert response.status_code == 200
    finally:
        sock.close()
        sink.close()


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback")
async def test_ipv6_udp_and_tcp_options() -> None:
    sip = SipConfig(listen=(ListenAddress("udp", "::1", 0), ListenAddress("tcp", "::1", 0)))
    srv = Server(dataclasses.replace(Config.default(), sip=sip, http=HttpConfig(port=0)))
    await srv.start()
    try:
        assert [t.name.split(":", 1)[1].rsplit(":", 1)[0] for t in srv.sip] == ["[::1]", "[::1]"]
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind(("::1", 0))
        sock.setblocking(False)
        try:
            port = sock.getsockname()[1]
            (response,) = await udp_exchange(
                sock, request("OPTIONS", port, via_host="[::1]"), address_of(srv, "udp")
            )
            assert response.status_code == 200 and response.top_via.params["rport"] == str(port)
        finally:
            sock.close()
        client = await StreamClient.connect(address_of(srv, "tcp"))
        client.writer.write(request("OPTIONS", client.local_port, transport="TCP", via_host="[::1]"))
        assert (await client.receive()).status_code == 200
        await client.close()
    finally:
        await srv.stop()


async def test_server_start_failure_releases_everything() -> None:
    blocker = socket.socket()
    blocker.bind((LOOPBACK, 0))
    blocker.listen()
    busy_port = blocker.getsockname()[1]
    sip = SipConfig(listen=(ListenAddress("udp", LOOPBACK, 0), ListenAddress("tcp", LOOPBACK, busy_port)))
    srv = Server(dataclasses.replace(Config.default(), sip=sip, http=HttpConfig(port=0)))
    try:
        with pytest.raises(OSError, match="already in use"):
            await srv.start()
        assert srv.transports is None and srv.http_address is not None
        with socket.socket() as probe:
            probe.bind(srv.http_address)  # the HTTP listener was closed too
        with pytest.raises(RuntimeError):
            _ = srv.sip
    finally:
        blocker.close()


def test_options_over_udp_and_tcp_on_uvloop() -> None:
    pytest.importorskip("uvloop")
    from trunkline.gateway.server import new_event_loop

    async def scenario() -> list[int]:
        loop_module = type(asyncio.get_running_loop()).__module__
        assert loop_module.startswith("uvloop"), loop_module
        srv = Server(make_config("udp", "tcp"))
        await srv.start()
        try:
            sock = udp_socket()
            try:
                request_bytes = request("OPTIONS", sock.getsockname()[1])
                (over_udp,) = await udp_exchange(sock, request_bytes, address_of(srv, "udp"))
            finally:
                sock.close()
            client = await StreamClient.connect(address_of(srv, "tcp"))
            client.writer.write(request("OPTIONS", client.local_port, transport="TCP"))
            over_tcp = await client.receive()
            await client.close()
            return [over_udp.status_code, over_tcp.status_code]
        finally:
            await srv.stop()

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        assert runner.run(scenario()) == [200, 200]
