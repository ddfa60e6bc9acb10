"""Asyncio SIP transports: UDP, TCP and TLS sockets that move bytes, and nothing more.

A transport hands every received message to a :class:`Receiver` as
``receiver(data, source, transport_name, oversize=False)`` and offers ``send(data, dest)``. It
never parses SIP: TCP and TLS byte streams are cut into messages by
:class:`trunkline.gateway.sip.framer.StreamFramer` (RFC 3261 section 18.3, Content-Length
framing); UDP datagrams are messages already (section 18.1).

UDP sockets are drained in batches per wake-up (``loop.add_reader`` on a non-blocking socket,
``recvfrom`` until ``BlockingIOError``), which is several times cheaper than a
``DatagramProtocol`` callback per packet. Stream connections are reused per remote address
(section 18.2.2: a response goes back over the connection the request came in on) and closed
after ``sip.connection_idle_timeout`` seconds without traffic.

A message larger than ``sip.max_message_size`` is delivered with ``oversize=True`` (the first
``max_message_size`` bytes) so that the SIP core can answer 513 Message Too Large (section 18.1.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from trunkline.gateway.config import ListenAddress, SipConfig, TlsConfig
from trunkline.gateway.sip.framer import StreamFramer
from trunkline.gateway.sip.grammar import SipParseError

__all__ = [
    "Address",
    "Framer",
    "Receiver",
    "StreamTransport",
    "Transport",
    "TransportSet",
    "TransportStats",
    "UdpTransport",
    "client_ssl_context",
    "server_ssl_context",
]

log = logging.getLogger("trunkline.sip.transport")

Address = tuple[str, int]

# Datagrams read per wake-up before yielding to the loop, so one busy socket cannot starve others.
UDP_BATCH = 256
# Datagrams queued while the kernel send buffer is full; beyond that they are dropped (SIP retransmits).
UDP_SEND_QUEUE = 4096
# A stream peer that does not read its responses is cut off past this much buffered output.
STREAM_WRITE_LIMIT = 1 << 20
STREAM_READ_CHUNK = 65536
# Largest payload of one UDP datagram over IPv4.
UDP_MAX_DATAGRAM = 65507


class Receiver(Protocol):
    """What a transport delivers messages to (the SIP core)."""

    def __call__(self, data: bytes, source: Address, transport: str, *, oversize: bool = False) -> None: ...


class Framer(Protocol):
    """Cuts a SIP byte stream into messages: ``StreamFramer(max_size)`` satisfies it."""

    def feed(self, data: bytes) -> list[bytes]: ...

    def take_pings(self) -> int: ...


@dataclass(slots=True)
class TransportStats:
    """Counters of one transport (read them for metrics; the transport only increments them)."""

    received: int = 0
    sent: int = 0
    oversize: int = 0
    dropped: int = 0
    errors: int = 0
    connections: int = 0


def server_ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """TLS server context from ``sip.tls.cert`` / ``sip.tls.key`` (``OSError`` / ``ssl.SSLError`` if bad)."""
    if tls.cert is None or tls.key is None:
        raise ValueError("sip.tls.cert and sip.tls.key are needed for a tls: listener")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise OSError(f"cannot load the TLS certificate {tls.cert} / key {tls.key}: {exc}") from exc
    return context


def client_ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """TLS client context for outbound connections (``sip.tls.ca_file``, ``sip.tls.verify_peer``)."""
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if not tls.verify_peer:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _address(addr: tuple[object, ...]) -> Address:
    """``(host, port)`` from a socket address (IPv6 addresses have four fields)."""
    return str(addr[0]), int(str(addr[1]))


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


class Transport:
    """Base of the SIP transports: name, addresses, statistics, ``send`` and ``close``."""

    protocol: str = ""
    reliable: bool = False

    def __init__(self, local: Address, receiver: Receiver, max_message_size: int, config: SipConfig) -> None:
        self.local_address = local
        self.name = str(ListenAddress(self.protocol, local[0], local[1]))
        self.stats = TransportStats()
        self._receiver = receiver
        self._max_size = max_message_size
        host = config.advertise_host or local[0]
        if config.advertise_host is None and _is_wildcard(local[0]):
            log.warning("%s listens on a wildcard address; set sip.advertise for Via/Contact", self.name)
        #: Address for Via and Contact: ``sip.advertise`` when set (its port, else the bound port).
        self.advertised: Address = (host, config.advertise_port or local[1])

    def _deliver(self, data: bytes, source: Address, *, oversize: bool = False) -> None:
        self.stats.received += 1
        if oversize:
            self.stats.oversize += 1
        try:
            self._receiver(data, source, self.name, oversize=oversize)
        except Exception:
            self.stats.errors += 1
            log.exception("%s: receiver failed on a message from %s:%d", self.name, *source)

    def send(self, data: bytes, dest: Address) -> None:
        """Send one SIP message to ``dest`` (never blocks; failures are counted and logged)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        raise NotImplementedError


class UdpTransport(Transport):
    """SIP over UDP on one non-blocking socket drained in batches (RFC 3261 section 18.1)."""

    protocol = "udp"
    reliable = False

    def __init__(
        self,
        sock: socket.socket,
        receiver: Receiver,
        max_message_size: int,
        advertise: SipConfig,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(_address(sock.getsockname()), receiver, max_message_size, advertise)
        self._sock = sock
        self._loop = loop
        self._bufsize = min(max_message_size + 1, UDP_MAX_DATAGRAM + 1)
        self._queue: deque[tuple[bytes, Address]] = deque()
        self._writing = False
        self._closed = False
        loop.add_reader(sock.fileno(), self._on_readable)

    @classmethod
    async def open(cls, listen: ListenAddress, receiver: Receiver, config: SipConfig) -> UdpTransport:
        """Bind ``listen`` (port 0 picks a free port) and start reading."""
        family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((listen.host, listen.port))
        except OSError:
            sock.close()
            raise
        return cls(sock, receiver, config.max_message_size, config, asyncio.get_running_loop())

    def _on_readable(self) -> None:
        for _ in range(UDP_BATCH):
            try:
                data, addr = self._sock.recvfrom(self._bufsize)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ICMP port unreachable and friends surface here on Linux; the socket stays usable.
                self.stats.errors += 1
                log.debug("%s: recvfrom: %s", self.name, exc)
                continue
            if not data:
                continue
            if len(data) > self._max_size:
                self._deliver(data[: self._max_size], _address(addr), oversize=True)
            else:
                self._deliver(data, _address(addr))

    def send(self, data: bytes, dest: Address) -> None:
        """Send one datagram; queued while the socket buffer is full, dropped past ``UDP_SEND_QUEUE``."""
        if self._closed:
            self.stats.dropped += 1
            return
        if self._queue:
            self._enqueue(data, dest)
            return
        try:
            self._sock.sendto(data, dest)
            self.stats.sent += 1
        except (BlockingIOError, InterruptedError):
            self._enqueue(data, dest)
        except OSError as exc:
            self.stats.dropped += 1
            log.warning("%s: cannot send %d bytes to %s:%d: %s", self.name, len(data), dest[0], dest[1], exc)

    def _enqueue(self, data: bytes, dest: Address) -> None:
        if len(self._queue) >= UDP_SEND_QUEUE:
            self.stats.dropped += 1
            return
        self._queue.append((data, dest))
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._sock.fileno(), self._on_writable)

    def _on_writable(self) -> None:
        while self._queue:
            data, dest = self._queue[0]
            try:
                self._sock.sendto(data, dest)
                self.stats.sent += 1
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.stats.dropped += 1
                log.warning("%s: cannot send to %s:%d: %s", self.name, dest[0], dest[1], exc)
            self._queue.popleft()
        self._writing = False
        self._loop.remove_writer(self._sock.fileno())

    async def close(self) -> None:
        """Stop reading and close the socket (queued datagrams are dropped)."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        if self._writing:
            self._loop.remove_writer(self._sock.fileno())
        self.stats.dropped += len(self._queue)
        self._queue.clear()
        self._sock.close()


class _Connection:
    """One TCP/TLS connection: its framer, writer, reader task and last activity time."""

    __slots__ = ("framer", "last_activity", "pending", "remote", "task", "writer")

    def __init__(self, remote: Address, framer: Framer, now: float) -> None:
        self.remote = remote
        self.framer = framer
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.pending: list[bytes] = []
        self.last_activity = now


class StreamTransport(Transport):
    """SIP over TCP or TLS (RFC 3261 section 18.2.2 and 26.2): one server, connections by remote address."""

    reliable = True

    def __init__(
        self,
        protocol: str,
        local: Address,
        receiver: Receiver,
        config: SipConfig,
        client_ssl: ssl.SSLContext | None,
        framer_factory: Callable[[int], Framer],
    ) -> None:
        self.protocol = protocol
        super().__init__(local, receiver, config.max_message_size, config)
        self._loop = asyncio.get_running_loop()
        self._client_ssl = client_ssl
        self._framer_factory = framer_factory
        self._idle_timeout = config.connection_idle_timeout
        self._connections: dict[Address, _Connection] = {}
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    @classmethod
    async def open(
        cls,
        listen: ListenAddress,
        receiver: Receiver,
        config: SipConfig,
        *,
        framer_factory: Callable[[int], Framer] | None = None,
    ) -> StreamTransport:
        """Listen on ``listen`` (``tcp`` or ``tls``; port 0 picks a free port)."""
        server_ssl = server_ssl_context(config.tls) if listen.transport == "tls" else None
        client_ssl = client_ssl_context(config.tls) if listen.transport == "tls" else None
        factory: Callable[[int], Framer] = framer_factory or StreamFramer
        holder: list[StreamTransport] = []

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await holder[0]._accepted(reader, writer)

        server = await asyncio.start_server(
            accept, listen.host, listen.port, ssl=server_ssl, reuse_address=True, limit=STREAM_READ_CHUNK
        )
        local = _address(server.sockets[0].getsockname())
        transport = cls(listen.transport, local, receiver, config, client_ssl, factory)
        transport._server = server
        holder.append(transport)
        transport._arm_sweeper()
        return transport

    @property
    def connection_count(self) -> int:
        """Open (or opening) connections."""
        return len(self._connections)

    def _arm_sweeper(self) -> None:
        interval = max(0.5, min(self._idle_timeout / 4, 30.0))
        self._sweeper = self._loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        limit = self._loop.time() - self._idle_timeout
        for conn in list(self._connections.values()):
            if conn.last_activity < limit:
                log.debug("%s: closing idle connection to %s:%d", self.name, *conn.remote)
                self._drop(conn)
        if not self._closed:
            self._arm_sweeper()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        remote = _address(writer.get_extra_info("peername"))
        if self._closed:
            writer.close()
            return
        conn = _Connection(remote, self._framer_factory(self._max_size), self._loop.time())
        conn.writer = writer
        conn.task = asyncio.current_task()
        old = self._connections.get(remote)
        if old is not None:
            self._drop(old)
        self._connections[remote] = conn
        self.stats.connections += 1
        await self._read_loop(conn, reader)

    async def _read_loop(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(STREAM_READ_CHUNK)
                if not data:
                    break
                conn.last_activity = self._loop.time()
                try:
                    messages = conn.framer.feed(data)
                except SipParseError as exc:
                    self._framing_failed(conn, data, exc)
                    break
                for message in messages:
                    self._deliver(message, conn.remote)
                pings = conn.framer.take_pings()
                if pings and conn.writer is not None:
                    # RFC 5626 section 3.5.1: answer each double-CRLF ping with a single CRLF pong.
                    conn.writer.write(b"\r\n" * pings)
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            log.debug("%s: connection from %s:%d failed: %s", self.name, *conn.remote, exc)
        except asyncio.CancelledError:
            pass
        finally:
            self._forget(conn)
            self._close_writer(conn)

    def _framing_failed(self, conn: _Connection, data: bytes, exc: SipParseError) -> None:
        if exc.status_code in (413, 513):
            # Section 18.1.1 / 21.5.14: let the core answer 513 from the head of the message, then close.
            self._deliver(data[: self._max_size], conn.remote, oversize=True)
        else:
            self.stats.errors += 1
            log.info(
                "%s: closing stream from %s:%d: %s", self.name, conn.remote[0], conn.remote[1], exc.reason
            )

    def send(self, data: bytes, dest: Address) -> None:
        """Write to the connection with ``dest``, opening one in the background when there is none."""
        if self._closed:
            self.stats.dropped += 1
            return
        conn = self._connections.get(dest)
        if conn is None:
            conn = _Connection(dest, self._framer_factory(self._max_size), self._loop.time())
            conn.pending.append(data)
            self._connections[dest] = conn
            conn.task = self._loop.create_task(self._connect(conn))
            return
        if conn.writer is None:
            conn.pending.append(data)
            return
        self._write(conn, data)

    def _write(self, conn: _Connection, data: bytes) -> None:
        writer = conn.writer
        assert writer is not None
        if writer.is_closing():
            self.stats.dropped += 1
            return
        if writer.transport.get_write_buffer_size() > STREAM_WRITE_LIMIT:
            self.stats.dropped += 1
            log.warning("%s: %s:%d does not read; closing the connection", self.name, *conn.remote)
            self._drop(conn)
            return
        writer.write(data)
        conn.last_activity = self._loop.time()
        self.stats.sent += 1

    async def _connect(self, conn: _Connection) -> None:
        host, port = conn.remote
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host,
                    port,
                    ssl=self._client_ssl,
                    server_hostname=host if self._client_ssl is not None else None,
                    limit=STREAM_READ_CHUNK,
                ),
                timeout=32.0,  # RFC 3261 section 17.1.1.2: 64*T1, the transaction would be dead by then
            )
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            self.stats.dropped += len(conn.pending)
            log.warning("%s: cannot connect to %s:%d: %s", self.name, host, port, exc or "timeout")
            self._forget(conn)
            return
        if self._closed or self._connections.get(conn.remote) is not conn:
            writer.close()
            return
        conn.writer = writer
        self.stats.connections += 1
        pending, conn.pending = conn.pending, []
        for data in pending:
            self._write(conn, data)
        await self._read_loop(conn, reader)

    def _forget(self, conn: _Connection) -> None:
        if self._connections.get(conn.remote) is conn:
            del self._connections[conn.remote]

    def _close_writer(self, conn: _Connection) -> None:
        if conn.writer is not None and not conn.writer.is_closing():
            conn.writer.close()

    def _drop(self, conn: _Connection) -> None:
        self._forget(conn)
        self._close_writer(conn)
        if conn.task is not None and conn.task is not asyncio.current_task():
            conn.task.cancel()

    async def close(self) -> None:
        """Stop accepting, close every connection and wait for their tasks to end."""
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        tasks = [c.task for c in self._connections.values() if c.task is not None]
        for conn in list(self._connections.values()):
            self._drop(conn)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)


class TransportSet:
    """Every SIP transport of the server, by name (``udp:127.0.0.1:5060``)."""

    def __init__(self, transports: list[Transport]) -> None:
        self._by_name = {t.name: t for t in transports}

    @classmethod
    async def open(
        cls,
        config: SipConfig,
        receiver: Receiver,
        *,
        framer_factory: Callable[[int], Framer] | None = None,
    ) -> TransportSet:
        """Open a transport per ``sip.listen`` entry; on any failure, close those already open."""
        opened: list[Transport] = []
        try:
            for listen in config.listen:
                if listen.transport == "udp":
                    opened.append(await UdpTransport.open(listen, receiver, config))
                else:
                    opened.append(
                        await StreamTransport.open(listen, receiver, config, framer_factory=framer_factory)
                    )
        except BaseException as exc:
            for transport in opened:
                await transport.close()
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                raise OSError(exc.errno, f"SIP address {listen} is already in use") from exc
            raise
        return cls(opened)

    def __iter__(self) -> Iterator[Transport]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Transport:
        """The transport called ``name`` (``KeyError`` if unknown)."""
        return self._by_name[name]

    def first(self, protocol: str) -> Transport | None:
        """The first transport of ``protocol`` (``udp``, ``tcp`` or ``tls``), if any."""
        return next((t for t in self._by_name.values() if t.protocol == protocol), None)

    def send(self, transport: str, data: bytes, dest: Address) -> None:
        """Send ``data`` to ``dest`` over the transport called ``transport``."""
        self._by_name[transport].send(data, dest)

    async def close(self) -> None:
        """Close every transport."""
        for transport in self._by_name.values():
            await transport.close()
