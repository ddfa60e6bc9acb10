"""Free-port helpers for tests that start real peers on 127.0.0.1.

Usage::

    from tests.peers.ports import free_udp_port, free_port_pair, free_port_block

    sip_port = free_udp_port()            # for SIPp's -p or a pjsua phone's transport
    rtp, rtcp = free_port_pair()          # even RTP port and RTP+1 for RTCP (RFC 3550 section 11)
    media = free_port_block(4)[0]         # SIPp -mp: it binds mp .. mp+3 (audio and video RTP/RTCP)

The kernel picks the port (bind to port 0); the socket is closed before returning, so there is a
small window in which another process could take it.  Ports handed out by this process are
remembered and never handed out twice, which removes collisions between peers of one test run.
"""

from __future__ import annotations

import socket
import threading

LOOPBACK = "127.0.0.1"

_lock = threading.Lock()
_issued: set[tuple[int, int]] = set()


def _claim(kind: int, port: int) -> bool:
    with _lock:
        if (kind, port) in _issued:
            return False
        _issued.add((kind, port))
        return True


def _bind_any(kind: int, port: int = 0) -> int | None:
    """Bind a socket of ``kind`` to ``127.0.0.1:port``; return the bound port or None if taken."""
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return None
        bound: int = sock.getsockname()[1]
        return bound


def _free_port(kind: int) -> int:
    for _ in range(200):
        port = _bind_any(kind)
        if port is not None and _claim(kind, port):
            return port
    raise RuntimeError("no free port found on 127.0.0.1")


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free at the time of the call."""
    return _free_port(socket.SOCK_DGRAM)


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free at the time of the call."""
    return _free_port(socket.SOCK_STREAM)


def free_port_pair() -> tuple[int, int]:
    """An even UDP port and the next odd one (RTP and RTCP, RFC 3550 section 11), both free."""
    even, odd = free_port_block(2)
    return even, odd


def free_port_block(count: int) -> list[int]:
    """``count`` consecutive UDP ports starting at an even one, all free together.

    SIPp binds four from its ``-mp`` port (audio RTP/RTCP, then video RTP/RTCP), so its media
    port needs a block of four, not a pair.
    """
    kind = socket.SOCK_DGRAM
    for _ in range(200):
        port = _bind_any(kind)
        if port is None:
            continue
        first = port & ~1
        if first < 1024 or first + count - 1 > 65535:
            continue
        block = list(range(first, first + count))
        # Hold every socket at once so the block is known free together.
        socks = [socket.socket(socket.AF_INET, kind) for _ in block]
        try:
            for sock, p in zip(socks, block, strict=True):
                sock.bind((LOOPBACK, p))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        with _lock:
            if any((kind, p) in _issued for p in block):
                continue
            _issued.update((kind, p) for p in block)
        return block
    raise RuntimeError(f"no block of {count} free UDP ports found on 127.0.0.1")


def ipv6_loopback_available() -> bool:
    """Whether this machine can bind a UDP socket to ``::1`` (IPv6 tests skip otherwise)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def bound_udp_sockets(count: int) -> list[socket.socket]:
    """``count`` non-blocking UDP sockets bound to 127.0.0.1 on ports the kernel picks (close them)."""
    made = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK, 0))
        sock.setblocking(False)
        made.append(sock)
    return made
