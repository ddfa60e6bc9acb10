"""``sendmmsg``/``recvmmsg`` (Linux) through ctypes, for the load generators only.

A Python load generator that calls ``sendto`` once per packet spends most of its core in the
interpreter and becomes the limit long before the server does.  Here a whole batch of
datagrams, each with its own destination, leaves in one system call, and arrivals are read a
batch at a time into one numpy array, so the generator's cost is mostly the kernel's.
IPv4 only; :func:`available` says whether the calls exist on this system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import sys

import numpy as np

__all__ = ["MsgBatch", "RecvBatch", "available"]

MSG_DONTWAIT = 0x40


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_IoVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


class _SockAddrIn(ctypes.Structure):
    _fields_ = [
        ("sin_family", ctypes.c_ushort),
        ("sin_port", ctypes.c_uint16),  # network byte order
        ("sin_addr", ctypes.c_uint32),  # network byte order
        ("sin_zero", ctypes.c_char * 8),
    ]


_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    _libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    _libc.sendmmsg.restype = ctypes.c_int
    _libc.recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    _libc.recvmmsg.restype = ctypes.c_int


def available() -> bool:
    """Whether ``sendmmsg``/``recvmmsg`` can be called here."""
    return _libc is not None and hasattr(_libc, "sendmmsg") and hasattr(_libc, "recvmmsg")


class MsgBatch:
    """Datagrams kept in the rows of ``packets`` (a C-contiguous ``(n, size)`` uint8 array),
    row ``k`` sent to ``("127.0.0.1", ports[k])``; :meth:`send` sends a contiguous range of rows
    in one ``sendmmsg`` call.  Edit the rows in place (numpy) between sends."""

    def __init__(self, packets: np.ndarray, ports: list[int], address: str = "127.0.0.1") -> None:
        assert packets.flags.c_contiguous and packets.dtype == np.uint8
        self.packets = packets
        n, size = packets.shape
        self._addrs = (_SockAddrIn * n)()
        self._iov = (_IoVec * n)()
        self._msgs = (_MMsgHdr * n)()
        addr = int.from_bytes(socket.inet_aton(address), "little")  # already network order in memory
        base = packets.ctypes.data
        for k, port in enumerate(ports):
            sa = self._addrs[k]
            sa.sin_family = socket.AF_INET
            sa.sin_port = socket.htons(port)
            sa.sin_addr = addr
            self._iov[k].iov_base = base + k * size
            self._iov[k].iov_len = size
            hdr = self._msgs[k].msg_hdr
            hdr.msg_name = ctypes.addressof(sa)
            hdr.msg_namelen = ctypes.sizeof(_SockAddrIn)
            hdr.msg_iov = ctypes.pointer(self._iov[k])
            hdr.msg_iovlen = 1
        self._base = ctypes.addressof(self._msgs)
        self._stride = ctypes.sizeof(_MMsgHdr)

    def send(self, sock: socket.socket, start: int, stop: int) -> int:
        """Send rows ``start:stop`` from ``sock``; returns how many left (a full buffer stops early)."""
        assert _libc is not None
        sent_total = 0
        fd = sock.fileno()
        while start + sent_total < stop:
            left = stop - start - sent_total
            sent = _libc.sendmmsg(fd, self._base + (start + sent_total) * self._stride, left, MSG_DONTWAIT)
            if sent <= 0:
                break
            sent_total += sent
        return sent_total


class RecvBatch:
    """Up to ``capacity`` datagrams per ``recvmmsg`` call, each truncated to ``size`` bytes
    (enough for the header and stamp the generator reads) in the rows of :attr:`buffer`."""

    def __init__(self, capacity: int = 1024, size: int = 64) -> None:
        self.buffer = np.zeros((capacity, size), dtype=np.uint8)
        self.capacity = capacity
        self._iov = (_IoVec * capacity)()
        self._msgs = (_MMsgHdr * capacity)()
        base = self.buffer.ctypes.data
        for k in range(capacity):
            self._iov[k].iov_base = base + k * size
            self._iov[k].iov_len = size
            hdr = self._msgs[k].msg_hdr
            hdr.msg_iov = ctypes.pointer(self._iov[k])
            hdr.msg_iovlen = 1
        self._base = ctypes.addressof(self._msgs)

    def recv(self, sock: socket.socket) -> int:
        """Read what is queued on ``sock`` (up to ``capacity``); rows ``:n`` hold the datagrams."""
        assert _libc is not None
        n = _libc.recvmmsg(sock.fileno(), self._base, self.capacity, MSG_DONTWAIT, None)
        return max(n, 0)  # -1: EAGAIN (nothing queued) or an ICMP error reported on the socket
