"""Free-port helpers for tests that start real peers on 127.0.0.1.

Usage::

    from tests.peers.ports import free_udp_port, free_port_pair

    sip_port = free_udp_port()            # for SIPp's -p or a pjsua phone's transport
    rtp, rtcp = free_port_pair()          # even RTP port and RTP+1 for RTCP (RFC 3550 section 11)

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
    for _ in range(200):
        port = _bind_any(socket.SOCK_DGRAM)
        if port is None:
            continue
        even = port & ~1
        if even < 1024 or even + 1 > 65535:
            continue
        # Hold both sockets at once so the pair is known free together.
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
        ):
            try:
                a.bind((LOOPBACK, even))
                b.bind((LOOPBACK, even + 1))
            except OSError:
                continue
        with _lock:
            kind = socket.SOCK_DGRAM
            if (kind, even) in _issued or (kind, even + 1) in _issued:
                continue
            _issued.add((kind, even))
            _issued.add((kind, even + 1))
        return even, even + 1
    raise RuntimeError("no free even/odd UDP port pair found on 127.0.0.1")
