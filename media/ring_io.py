"""Datagrams read and sent a batch at a time through io_uring (:mod:`trunkline.media.uring`).

:class:`DatagramBatch` is the engine poller's batched I/O: for the sockets ``epoll`` reported
readable it submits one ``recvmsg`` each, all in one ``io_uring_enter`` call, into the rows of
one receive buffer (row ``k`` at offset ``k * ROW``, with its source address beside it); the
relay's forwarded packets are queued with :meth:`DatagramBatch.queue_send` while the batch is
handled and leave together, again in one call, each with its own socket and destination
(``sendto`` semantics, Linux 6.0+).  A relayed packet is sent from the row it arrived in,
rewritten in place: nothing is copied.

The submission entries are prepared with numpy (one assignment per field for the whole
batch), the source addresses are turned into ``(host, port)`` tuples through a cache, so the
per-datagram cost left in Python is the handler's own.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from trunkline.media.relay_table import DEST_PTR, DEST_SIZE, OUT_FD, RelayTable
from trunkline.media.uring import MSG_DONTWAIT, OP_RECVMSG, OP_SEND, SQE, Ring

__all__ = ["ROW", "DatagramBatch", "Receiver", "SendTarget", "sockaddr", "source_key"]

#: Octets per receive row (a datagram longer than this is truncated, as with ``recv_into``).
ROW = 2048
_ROW_SHIFT = 11
_NAME = 32  # room for a sockaddr_in6 (28 octets)
_SEND_BIT = 1 << 32

_MSGHDR = np.dtype(
    {
        "names": ["name", "namelen", "iov", "iovlen", "control", "controllen", "flags"],
        "formats": ["<u8", "<u4", "<u8", "<u8", "<u8", "<u8", "<i4"],
        "offsets": [0, 8, 16, 24, 32, 40, 48],
        "itemsize": 56,
    }
)
_IOVEC = np.dtype({"names": ["base", "len"], "formats": ["<u8", "<u8"], "itemsize": 16})
_FAMILY = struct.Struct("=H")
log = logging.getLogger(__name__)

#: ``receiver(offset, n, address, now)``: a datagram of ``n`` octets at ``buffer[offset:]``.
Receiver = Callable[[int, int, tuple[Any, ...], float], object]


def sockaddr(addr: tuple[Any, ...]) -> bytes:
    """The ``struct sockaddr_in``/``sockaddr_in6`` of an address tuple (numeric hosts only)."""
    host: str = addr[0]
    port: int = addr[1]
    if ":" in host:
        return (
            _FAMILY.pack(socket.AF_INET6)
            + port.to_bytes(2, "big")
            + bytes(4)
            + socket.inet_pton(socket.AF_INET6, host)
            + (addr[3] if len(addr) > 3 else 0).to_bytes(4, "little")
        )
    return _FAMILY.pack(socket.AF_INET) + port.to_bytes(2, "big") + socket.inet_aton(host) + bytes(8)


def source_key(addr: tuple[Any, ...]) -> int | None:
    """How :class:`DatagramBatch` identifies an IPv4 source: its sockaddr's first 8 octets
    (family, port, address) as a little-endian integer; None for IPv6 (not identified so)."""
    raw = sockaddr(addr)
    if len(raw) != 16:
        return None
    return int.from_bytes(raw[:8], "little")


def _address(raw: bytes) -> tuple[Any, ...]:
    family = _FAMILY.unpack_from(raw)[0]
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET6:
        return (socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, 0, int.from_bytes(raw[24:28], "little"))
    return (socket.inet_ntoa(raw[4:8]), port)


class SendTarget:
    """Where a relayed direction's packets go: the sending socket and a destination kept in
    C memory for the kernel to read (build one per relay gate; it must outlive its sends)."""

    __slots__ = ("_dest", "fd", "ptr", "size")

    def __init__(self, sock: socket.socket, remote: tuple[Any, ...]) -> None:
        raw = sockaddr(remote)
        self._dest = (ctypes.c_ubyte * 28).from_buffer_copy(raw.ljust(28, b"\0"))
        self.fd = sock.fileno()
        self.ptr = ctypes.addressof(self._dest)
        self.size = len(raw)


class DatagramBatch:
    """Batched ``recvmsg``/``sendto`` for up to ``rows`` datagrams per batch, over one :class:`Ring`."""

    def __init__(self, rows: int = 128) -> None:
        self.rows = rows
        self.ring = Ring(max(256, 1 << (2 * rows - 1).bit_length()))
        #: The receive rows; handlers read ``buffer[offset:offset + n]`` (and may rewrite it).
        self.buffer = bytearray(rows * ROW)
        self.view = memoryview(self.buffer)
        self._packets = np.frombuffer(self.buffer, dtype=np.uint8).reshape(rows, ROW)
        #: The open relay gates whose packets are relayed a batch at a time.
        self.table = RelayTable()
        base = ctypes.addressof((ctypes.c_char * len(self.buffer)).from_buffer(self.buffer))
        self._base = base
        self._names = np.zeros((rows, _NAME), dtype=np.uint8)
        self._name_keys = self._names.view("<u8")[:, 0]  # family, port, IPv4 address
        idx = np.arange(rows, dtype=np.uint64)
        self._iov = np.zeros(rows, dtype=_IOVEC)
        self._iov["base"] = base + idx * ROW
        self._iov["len"] = ROW
        self._msg = np.zeros(rows, dtype=_MSGHDR)
        self._msg["name"] = self._names.ctypes.data + idx * _NAME
        self._msg["namelen"] = 28
        self._msg["iov"] = self._iov.ctypes.data + idx * _IOVEC.itemsize
        self._msg["iovlen"] = 1
        self._namelen = self._msg["namelen"]
        recv = np.zeros(rows, dtype=SQE)  # zeros: the fields not named stay 0
        recv["opcode"] = OP_RECVMSG
        recv["addr"] = self._msg.ctypes.data + idx * _MSGHDR.itemsize
        recv["msg_flags"] = MSG_DONTWAIT  # never wait: complete within the submitting call
        recv["user_data"] = idx
        self._recv = recv
        self._recv_raw = recv.view(np.uint8).reshape(rows, SQE.itemsize)
        send = np.zeros(rows, dtype=SQE)
        send["opcode"] = OP_SEND
        send["msg_flags"] = MSG_DONTWAIT
        send["user_data"] = _SEND_BIT | idx
        self._send_sqes = send
        self._send_raw = send.view(np.uint8).reshape(rows, SQE.itemsize)
        self._addresses: dict[int, tuple[Any, ...]] = {}
        #: Sends queued by handlers during a batch: (socket fd, offset, length, dest ptr, dest size).
        self.pending: list[tuple[int, int, int, int, int]] = []
        #: Who queued each pending send (told of a failed send through ``send_failed(n)``).
        self.owners: list[Any] = []
        self.queue_send = self.pending.append
        self.queue_owner = self.owners.append
        self.send_failures = 0
        self.stray_completions = 0
        #: Handlers that raised (logged; the batch goes on).
        self.handler_errors = 0

    def receive(self, fds: list[int], handlers: dict[int, Receiver], now: float) -> int:
        """Read one datagram from each of ``fds`` (at most :attr:`rows`) and handle them.

        Datagrams that are the next packet of an open relay gate (:attr:`table`) are relayed
        here, a batch at a time, and leave in one more system call.  Every other one is given
        to its socket's handler, ``handlers[fd]``: ``handler(offset, n, address, now)`` (a
        gated socket's gate is closed first: the packet is not its steady state).  Then the
        sends the handlers queued are flushed.  Returns the number of datagrams read.
        """
        count = len(fds)
        recv = self._recv
        recv["fd"][:count] = fds
        self._namelen[:count] = 28
        user_data, res = self.ring.submit(self._recv_raw[:count])
        done = (user_data < count) & (res > 0)
        if len(user_data) and not done.all():
            self.stray_completions += int((user_data >= count).sum())
            user_data, res = user_data[done], res[done]
        rows = user_data.astype(np.int64)
        got = len(rows)
        table = self.table
        gate_rows: list[int] | None = None
        if table.count and got:
            sizes = res.astype(np.int64)
            fast, gates = table.relay(
                self._packets, rows, recv["fd"][rows].astype(np.int64), sizes, self._name_keys[rows], now
            )
            if fast.any():
                self._send_relayed(rows[fast], sizes[fast], gates[fast])
                slow = ~fast
                rows, res, gates = rows[slow], res[slow], gates[slow]
            gate_rows = gates.tolist()
        if not len(rows):
            return got
        keys = self._name_keys[rows].tolist()
        sizes_list = res.tolist()
        row_fds = recv["fd"][rows].tolist()
        if gate_rows is None or max(gate_rows) < 0:
            gate_rows = None
        addresses = self._addresses
        get_handler = handlers.get
        try:
            for i, row in enumerate(rows.tolist()):
                if gate_rows is not None and gate_rows[i] >= 0:
                    gate = table.gates[gate_rows[i]]
                    if gate is not None:
                        gate.leg.close_relay_gate()  # not the steady state: the general path decides
                key = keys[i]
                addr = addresses.get(key)
                if addr is None:
                    addr = _address(self._names[row].tobytes())
                    if key & 0xFFFF == socket.AF_INET and len(addresses) < 65536:  # the key is all of it
                        addresses[key] = addr
                handler = get_handler(row_fds[i])
                if handler is None:  # removed by an earlier handler of this batch
                    continue
                try:
                    handler(row << _ROW_SHIFT, sizes_list[i], addr, now)
                except Exception:
                    # The rest of the batch is already read: one broken stream must not lose
                    # the other streams' datagrams (without io_uring they would stay queued).
                    self.handler_errors += 1
                    log.exception("datagram handler failed")
        finally:
            if self.pending:
                self.flush()
        return got

    def _send(
        self,
        fds: npt.NDArray[np.int64],
        offsets: npt.NDArray[np.int64],
        sizes: npt.NDArray[np.int64],
        dest_ptrs: npt.NDArray[np.int64],
        dest_sizes: npt.NDArray[np.int64],
    ) -> list[int]:
        """Send ``buffer[offsets[i]:offsets[i] + sizes[i]]`` from socket ``fds[i]`` to the
        sockaddr at ``dest_ptrs[i]`` for every ``i`` (one ``io_uring_enter``, at most :attr:`rows`);
        return the indices of the sends that failed (a full socket buffer)."""
        count = len(fds)
        send = self._send_sqes
        send["fd"][:count] = fds
        send["addr"][:count] = self._base + offsets
        send["len"][:count] = sizes
        send["off"][:count] = dest_ptrs
        send["addr_len"][:count] = dest_sizes
        user_data, res = self.ring.submit(self._send_raw[:count])
        self.stray_completions += int(((user_data & _SEND_BIT) == 0).sum())
        failed = [
            value & 0xFFFF
            for value in user_data[res < 0].tolist()
            if value & _SEND_BIT and value & 0xFFFF < count
        ]
        self.send_failures += len(failed)
        return failed

    def _send_relayed(
        self, rows: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64], gates: npt.NDArray[np.int64]
    ) -> None:
        """Send the packets the relay table rewrote in ``rows`` to their gates' peers (one call)."""
        table = self.table
        state = table.ints[gates]
        failed = self._send(
            state[:, OUT_FD], rows << _ROW_SHIFT, sizes, state[:, DEST_PTR], state[:, DEST_SIZE]
        )
        for index in failed:
            row = int(gates[index])
            gate = table.gates[row]
            if gate is not None:
                table.send_failed(row, gate, int(sizes[index]))

    def flush(self) -> None:
        """Send the packets handlers queued (one ``io_uring_enter``); tell the owners of those that failed."""
        pending = self.pending
        owners = self.owners
        while pending:
            count = min(len(pending), self.rows)
            queued = np.array(pending[:count], dtype=np.int64)
            for index in self._send(queued[:, 0], queued[:, 1], queued[:, 2], queued[:, 3], queued[:, 4]):
                owners[index].send_failed(int(queued[index, 2]))
            del pending[:count]
            del owners[:count]

    def close(self) -> None:
        """Close the ring (the buffer stays usable until it is dropped)."""
        self.pending.clear()
        self.owners.clear()
        self.ring.close()
