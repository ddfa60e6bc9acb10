"""RTP/RTCP UDP port allocation from the configured range (``rtp.address``, ``rtp.ports``).

RFC 3550 section 11: RTP uses an even port and RTCP the next (odd) one.  With RTCP
multiplexing (RFC 5761) a leg needs only the RTP socket, but the odd port of the
pair is still reserved so that a later re-INVITE without ``a=rtcp-mux`` can use it.

The allocator binds the sockets itself (binding is the only reliable "is it free"
test: other processes share the range), walks the range round-robin from a random
start so that a port just released is not reused at once (stray packets of the old
call would land in the new one), and skips pairs that fail to bind.
"""

from __future__ import annotations

import contextlib
import errno
import random
import socket
from dataclasses import dataclass

from trunkline.gateway.config import RtpConfig

__all__ = ["PortAllocator", "PortPair", "PortsExhaustedError"]


class PortsExhaustedError(RuntimeError):
    """No RTP/RTCP port pair in the configured range could be bound."""

    def __init__(self, address: str, port_min: int, port_max: int) -> None:
        self.address = address
        self.port_min = port_min
        self.port_max = port_max
        super().__init__(f"no free RTP port pair on {address} in {port_min}-{port_max}")


@dataclass(slots=True)
class PortPair:
    """Bound non-blocking UDP sockets of one call leg.

    ``rtcp_sock`` is ``None`` when the leg was allocated for RTCP multiplexing
    (RFC 5761); :attr:`rtcp_port` is then still ``rtp_port + 1`` (reserved, unbound).
    """

    address: str
    rtp_port: int
    rtp_sock: socket.socket
    rtcp_sock: socket.socket | None

    @property
    def rtcp_port(self) -> int:
        """RTCP port: RTP + 1 (RFC 3550 section 11)."""
        return self.rtp_port + 1

    @property
    def rtcp_mux(self) -> bool:
        """Whether RTCP shares the RTP socket."""
        return self.rtcp_sock is None


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


class PortAllocator:
    """Hands out even/odd UDP port pairs from ``[port_min, port_max]`` on ``address``.

    Ports held by this allocator are tracked in :attr:`in_use` (RTP ports); ports
    held by anyone else are found by a failing ``bind`` and skipped.
    """

    #: Receive/send buffer asked for each RTP socket (the kernel may cap it).
    SOCKET_BUFFER = 1 << 18

    def __init__(
        self, address: str, port_min: int, port_max: int, *, rng: random.Random | None = None
    ) -> None:
        first = port_min + (port_min & 1)  # RFC 3550 section 11: RTP on an even port
        last = port_max - 1 if port_max & 1 else port_max - 2  # RTCP (odd) must fit too
        if first > last or port_min < 1 or port_max > 65535:
            raise ValueError(f"RTP port range {port_min}-{port_max} holds no even/odd pair")
        self.address = address
        self.port_min = port_min
        self.port_max = port_max
        self._first = first
        self._count = (last - first) // 2 + 1
        self._rng = rng if rng is not None else random.Random()
        self._next = self._rng.randrange(self._count)
        self.in_use: set[int] = set()

    @classmethod
    def from_config(cls, config: RtpConfig) -> PortAllocator:
        """Allocator for the ``rtp:`` section of the configuration."""
        return cls(config.address, config.port_min, config.port_max)

    @property
    def capacity(self) -> int:
        """Number of port pairs in the range."""
        return self._count

    def _bind(self, port: int) -> socket.socket | None:
        sock = socket.socket(_family(self.address), socket.SOCK_DGRAM)
        try:
            sock.bind((self.address, port))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return None
            raise
        sock.setblocking(False)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, self.SOCKET_BUFFER)
        return sock

    def allocate(self, *, rtcp_mux: bool = False) -> PortPair:
        """Bind the next free pair; raise :class:`PortsExhaustedError` if none is left."""
        for _ in range(self._count):
            index = self._next
            self._next = (self._next + 1) % self._count
            port = self._first + 2 * index
            if port in self.in_use:
                continue
            rtp = self._bind(port)
            if rtp is None:
                continue
            rtcp: socket.socket | None = None
            if not rtcp_mux:
                rtcp = self._bind(port + 1)
                if rtcp is None:
                    rtp.close()
                    continue
            self.in_use.add(port)
            return PortPair(self.address, port, rtp, rtcp)
        raise PortsExhaustedError(self.address, self.port_min, self.port_max)

    def release(self, pair: PortPair) -> None:
        """Close the pair's sockets and return its ports to the range (idempotent)."""
        pair.rtp_sock.close()
        if pair.rtcp_sock is not None:
            pair.rtcp_sock.close()
        self.in_use.discard(pair.rtp_port)
