"""A minimal io_uring through ctypes and numpy, for batched datagram I/O.

The media engine's relay moves one datagram in and one out per packet; with a system call
each, two thousand RTP sockets at 50 packets a second cost more in system-call entry, socket
lookups and interpreter overhead than in the network stack itself.  io_uring takes a whole
batch of ``recvmsg``/``send`` operations, on as many sockets as there are, in one
``io_uring_enter`` call.  Submission and completion queues are memory shared with the
kernel; here they are numpy arrays, so a batch of operations is written and its results read
with a few vectorised operations, not a Python statement per packet.

Only what the engine needs is here: a ring (:class:`Ring`) and submission of prepared
64-octet entries (:meth:`Ring.submit`), which returns what completed.  The entries are written
with numpy (:data:`SQE`), a batch at a time.  Operations on non-blocking datagram sockets with
``MSG_DONTWAIT`` complete inside the ``io_uring_enter`` call that submits them (or fail with
``-EAGAIN``), so the caller gets every result back from that call and never waits.  A send
with a destination address (``sendto``) needs Linux 6.0.

:func:`available` says whether the kernel offers io_uring to this process (it may be
missing, or switched off by ``kernel.io_uring_disabled`` or a seccomp filter); the engine
falls back to one ``recvfrom_into``/``sendto`` per datagram where it does not.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import mmap
import os
import socket
import struct
import sys

import numpy as np
import numpy.typing as npt

__all__ = [
    "CQE",
    "MSG_DONTWAIT",
    "OP_RECVMSG",
    "OP_SEND",
    "SQE",
    "Ring",
    "available",
]

_SYS_IO_URING_SETUP = 425
_SYS_IO_URING_ENTER = 426
_ENTER_GETEVENTS = 1
_OFF_SQ_RING = 0
_OFF_CQ_RING = 0x8000000
_OFF_SQES = 0x10000000
_FEAT_SINGLE_MMAP = 1
_SETUP_SUBMIT_ALL = 1 << 7  # 5.18: an entry that fails does not stop the rest of the batch
_SETUP_COOP_TASKRUN = 1 << 8  # 5.19: no interrupts for completions run as task work

OP_RECVMSG = 10
OP_SEND = 26
MSG_DONTWAIT = 0x40

# addr_len: in the union at offset 44 (a send with a destination address).
_SQE_FIELDS = (
    "opcode", "flags", "ioprio", "fd", "off", "addr", "len", "msg_flags", "user_data", "addr_len",
)  # fmt: skip
#: ``struct io_uring_sqe`` (64 octets), the fields the socket operations use.
SQE = np.dtype(
    {
        "names": list(_SQE_FIELDS),
        "formats": ["u1", "u1", "<u2", "<i4", "<u8", "<u8", "<u4", "<u4", "<u8", "<u2"],
        "offsets": [0, 1, 2, 4, 8, 16, 24, 28, 32, 44],
        "itemsize": 64,
    }
)
#: ``struct io_uring_cqe`` (16 octets).
CQE = np.dtype({"names": ["user_data", "res", "flags"], "formats": ["<u8", "<i4", "<u4"], "itemsize": 16})

_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    _libc.syscall.restype = ctypes.c_long


class Ring:
    """One io_uring instance: ``entries`` submission slots (a power of two), twice as many completions.

    Not thread-safe; one event loop owns it.  :meth:`close` unmaps and closes it.
    """

    def __init__(self, entries: int = 4096) -> None:
        if _libc is None:
            raise OSError("io_uring needs Linux")
        for setup_flags in (_SETUP_SUBMIT_ALL | _SETUP_COOP_TASKRUN, 0):  # older kernels: neither
            params = np.zeros(120, dtype=np.uint8)
            params[8:12].view("<u4")[0] = setup_flags
            fd = _libc.syscall(
                _SYS_IO_URING_SETUP, ctypes.c_uint(entries), ctypes.c_void_p(params.ctypes.data)
            )
            if fd >= 0:
                break
            err = ctypes.get_errno()
            if err != errno.EINVAL or setup_flags == 0:
                raise OSError(err, f"io_uring_setup: {os.strerror(err)}")
        self.fd = int(fd)
        words = params.view("<u4")
        sq_entries, cq_entries, features = int(words[0]), int(words[1]), int(words[5])
        sq_off = words[10:20]  # struct io_sqring_offsets
        cq_off = words[20:30]  # struct io_cqring_offsets
        sq_size = int(sq_off[6]) + sq_entries * 4
        cq_size = int(cq_off[5]) + cq_entries * CQE.itemsize
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        try:
            if features & _FEAT_SINGLE_MMAP:
                size = max(sq_size, cq_size)
                self._sq_map = self._cq_map = mmap.mmap(self.fd, size, flags, prot, offset=_OFF_SQ_RING)
            else:
                self._sq_map = mmap.mmap(self.fd, sq_size, flags, prot, offset=_OFF_SQ_RING)
                self._cq_map = mmap.mmap(self.fd, cq_size, flags, prot, offset=_OFF_CQ_RING)
            self._sqe_map = mmap.mmap(self.fd, sq_entries * SQE.itemsize, flags, prot, offset=_OFF_SQES)
        except OSError:
            os.close(self.fd)
            raise
        sq_words = np.frombuffer(self._sq_map, dtype="<u4")
        cq_words = np.frombuffer(self._cq_map, dtype="<u4")
        self._sq_tail = sq_words[int(sq_off[1]) // 4 : int(sq_off[1]) // 4 + 1]
        self._sq_mask = int(sq_words[int(sq_off[2]) // 4])
        array = sq_words[int(sq_off[6]) // 4 : int(sq_off[6]) // 4 + sq_entries]
        array[:] = np.arange(sq_entries, dtype="<u4")  # entry i of the queue is SQE i
        self._cq_head = cq_words[int(cq_off[0]) // 4 : int(cq_off[0]) // 4 + 1]
        self._cq_tail = cq_words[int(cq_off[1]) // 4 : int(cq_off[1]) // 4 + 1]
        self._cq_mask = int(cq_words[int(cq_off[2]) // 4])
        self.sqes: npt.NDArray[np.void] = np.frombuffer(self._sqe_map, dtype=SQE)
        self.cqes: npt.NDArray[np.void] = np.frombuffer(
            self._cq_map, dtype=CQE, count=cq_entries, offset=int(cq_off[5])
        )
        self._raw_sqes = np.frombuffer(self._sqe_map, dtype=np.uint8).reshape(sq_entries, SQE.itemsize)
        self.entries = sq_entries
        self._tail = int(self._sq_tail[0])
        self._enter = _libc.syscall

    def submit(self, prepared: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int32]]:
        """Submit the rows of ``prepared`` (``(n, 64)`` uint8, n <= entries); return what completed.

        Returns the completions' ``user_data`` and ``res`` (octets moved, or ``-errno``), in
        completion order.  Meant for ``MSG_DONTWAIT`` socket operations, which complete (or
        fail with ``-EAGAIN``) within the call: it never blocks.  Anything that still completes
        later is returned by a later call.
        """
        n = len(prepared)
        if n == 0:
            return np.zeros(0, np.uint64), np.zeros(0, np.int32)
        tail = self._tail
        mask = self._sq_mask
        start = tail & mask
        end = start + n
        if end <= self.entries:
            self._raw_sqes[start:end] = prepared
        else:
            split = self.entries - start
            self._raw_sqes[start:] = prepared[:split]
            self._raw_sqes[: n - split] = prepared[split:]
        self._tail = tail = (tail + n) & 0xFFFFFFFF
        self._sq_tail[0] = tail  # x86 and ARM64 kernels read the tail with acquire semantics
        ret = self._enter(_SYS_IO_URING_ENTER, self.fd, n, 0, _ENTER_GETEVENTS, None, 0)
        if ret < 0:
            err = ctypes.get_errno()
            if err not in (errno.EINTR, errno.EAGAIN, errno.EBUSY):  # else: what completed is reaped
                raise OSError(err, f"io_uring_enter: {os.strerror(err)}")
        if self._pending() < n:  # completions queued as task work: run them, without waiting
            self._enter(_SYS_IO_URING_ENTER, self.fd, 0, 0, _ENTER_GETEVENTS, None, 0)
        return self._reap()

    def _pending(self) -> int:
        return (int(self._cq_tail[0]) - int(self._cq_head[0])) & 0xFFFFFFFF

    def _reap(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int32]]:
        head = int(self._cq_head[0])
        tail = int(self._cq_tail[0])
        mask = self._cq_mask
        count = (tail - head) & 0xFFFFFFFF
        start = head & mask
        end = start + count
        if end <= len(self.cqes):
            done = self.cqes[start:end]
        else:
            done = np.concatenate([self.cqes[start:], self.cqes[: end - len(self.cqes)]])
        user_data = done["user_data"].copy()
        res = done["res"].copy()
        self._cq_head[0] = tail
        return user_data, res

    def close(self) -> None:
        """Unmap the queues and close the ring."""
        if self.fd < 0:
            return
        del self.sqes, self.cqes, self._raw_sqes, self._sq_tail, self._cq_head, self._cq_tail
        for m in {id(self._sq_map): self._sq_map, id(self._cq_map): self._cq_map, 0: self._sqe_map}.values():
            with contextlib.suppress(BufferError):  # a view still alive: unmapped when it goes
                m.close()
        os.close(self.fd)
        self.fd = -1


_AVAILABLE: bool | None = None


def available() -> bool:
    """Whether io_uring works for this process as the engine uses it (checked once).

    A ring can exist on kernels that lack what the engine needs (a send with a destination
    address came in Linux 6.0), so the check sends one datagram through a small ring from one
    loopback socket to another and reads it back.
    """
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            _AVAILABLE = _probe()
        except (OSError, ValueError):
            _AVAILABLE = False
    return _AVAILABLE


def _probe() -> bool:
    ring = Ring(8)
    try:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        ):
            tx.bind(("127.0.0.1", 0))
            rx.bind(("127.0.0.1", 0))
            rx.setblocking(False)
            payload = np.frombuffer(b"trunkline", dtype=np.uint8).copy()
            dest = np.zeros(16, dtype=np.uint8)  # struct sockaddr_in
            dest[:8] = np.frombuffer(
                struct.pack("=H", socket.AF_INET)
                + struct.pack("!H", rx.getsockname()[1])
                + socket.inet_aton("127.0.0.1"),
                dtype=np.uint8,
            )
            entry = np.zeros(1, dtype=SQE)
            entry["opcode"] = OP_SEND
            entry["fd"] = tx.fileno()
            entry["addr"] = payload.ctypes.data
            entry["len"] = len(payload)
            entry["off"] = dest.ctypes.data
            entry["addr_len"] = len(dest)
            entry["msg_flags"] = MSG_DONTWAIT
            _, res = ring.submit(entry.view(np.uint8).reshape(1, SQE.itemsize))
            if len(res) != 1 or int(res[0]) != len(payload):
                return False
            return rx.recv(64) == payload.tobytes()
    finally:
        ring.close()
