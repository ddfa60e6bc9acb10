"""The minimal io_uring (``media/uring.py``) on real UDP sockets on 127.0.0.1.

Every test builds its own submission entries (the ``SQE`` dtype) and ``msghdr``/``iovec``
structures, independently of ``ring_io``, so these check the ring itself: batches, the
non-blocking contract, sends with a destination, wrap-around of the submission and
completion queues and per-entry failures.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from tests.peers.ports import bound_udp_sockets
from trunkline.media import uring
from trunkline.media.ring_io import sockaddr
from trunkline.media.uring import MSG_DONTWAIT, OP_RECVMSG, OP_SEND, SQE, Ring

pytestmark = pytest.mark.skipif(not uring.available(), reason="io_uring not available to this process")

_MSGHDR = np.dtype(
    {
        "names": ["name", "namelen", "iov", "iovlen"],
        "formats": ["<u8", "<u4", "<u8", "<u8"],
        "offsets": [0, 8, 16, 24],
        "itemsize": 56,
    }
)
_IOVEC = np.dtype({"names": ["base", "len"], "formats": ["<u8", "<u8"], "itemsize": 16})
_ROW = 256


class Receives:
    """``count`` prepared RECVMSG entries, entry ``k`` into row ``k`` with its source in ``names[k]``."""

    def __init__(self, fds: list[int]) -> None:
        count = len(fds)
        self.data = np.zeros((count, _ROW), np.uint8)
        self.names = np.zeros((count, 32), np.uint8)
        self.iov = np.zeros(count, _IOVEC)
        self.iov["base"] = self.data.ctypes.data + np.arange(count, dtype=np.uint64) * _ROW
        self.iov["len"] = _ROW
        self.msg = np.zeros(count, _MSGHDR)
        self.msg["name"] = self.names.ctypes.data + np.arange(count, dtype=np.uint64) * 32
        self.msg["namelen"] = 28
        self.msg["iov"] = self.iov.ctypes.data + np.arange(count, dtype=np.uint64) * _IOVEC.itemsize
        self.msg["iovlen"] = 1
        sqes = np.zeros(count, SQE)
        sqes["opcode"] = OP_RECVMSG
        sqes["fd"] = fds
        sqes["addr"] = self.msg.ctypes.data + np.arange(count, dtype=np.uint64) * _MSGHDR.itemsize
        sqes["msg_flags"] = MSG_DONTWAIT
        sqes["user_data"] = np.arange(count, dtype=np.uint64) + 1000
        self.sqes = sqes

    @property
    def raw(self) -> npt.NDArray[np.uint8]:
        return self.sqes.view(np.uint8).reshape(len(self.sqes), SQE.itemsize)

    def source(self, k: int) -> tuple[str, int]:
        raw = self.names[k].tobytes()
        assert int.from_bytes(raw[:2], "little") == socket.AF_INET
        return socket.inet_ntoa(raw[4:8]), int.from_bytes(raw[2:4], "big")


@pytest.fixture
def ring() -> Iterator[Ring]:
    r = Ring(8)
    yield r
    r.close()


@pytest.fixture
def socks() -> Iterator[list[socket.socket]]:
    made = bound_udp_sockets(6)
    yield made
    for s in made:
        s.close()


def _senders(n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        out.append(s)
    return out


def test_ring_geometry(ring: Ring) -> None:
    assert ring.entries == 8
    assert SQE.itemsize == 64 and uring.CQE.itemsize == 16
    assert len(ring.cqes) >= 16  # twice the submission entries
    ud, res = ring.submit(np.zeros((0, 64), np.uint8))
    assert len(ud) == 0 and len(res) == 0


def test_recvmsg_batch_returns_every_datagram_with_length_and_source(
    ring: Ring, socks: list[socket.socket]
) -> None:
    txs = _senders(len(socks))
    payloads = [bytes([k]) * (20 + 7 * k) for k in range(len(socks))]
    for k, (tx, rx) in enumerate(zip(txs, socks, strict=True)):
        tx.sendto(payloads[k], rx.getsockname())
    rec = Receives([s.fileno() for s in socks])
    user_data, res = ring.submit(rec.raw)
    assert sorted(user_data.tolist()) == [1000 + k for k in range(len(socks))]
    got = dict(zip(user_data.tolist(), res.tolist(), strict=True))
    for k, tx in enumerate(txs):
        assert got[1000 + k] == len(payloads[k])
        assert rec.data[k, : len(payloads[k])].tobytes() == payloads[k]
        assert rec.source(k) == tx.getsockname()
    for tx in txs:
        tx.close()


def test_recvmsg_on_an_empty_socket_fails_with_eagain_at_once(ring: Ring, socks: list[socket.socket]) -> None:
    tx = _senders(1)[0]
    tx.sendto(b"only one", socks[1].getsockname())
    rec = Receives([s.fileno() for s in socks[:3]])
    user_data, res = ring.submit(rec.raw)  # must not block on sockets 0 and 2
    got = dict(zip(user_data.tolist(), res.tolist(), strict=True))
    assert got == {1000: -errno.EAGAIN, 1001: 8, 1002: -errno.EAGAIN}
    assert rec.data[1, :8].tobytes() == b"only one"
    tx.close()


def _send_entries(
    sock: socket.socket, payloads: list[bytes], dests: list[tuple[str, int]]
) -> tuple[npt.NDArray[np.void], list[npt.NDArray[np.uint8]]]:
    keep: list[npt.NDArray[np.uint8]] = []
    sqes = np.zeros(len(payloads), SQE)
    for k, (payload, dest) in enumerate(zip(payloads, dests, strict=True)):
        buf = np.frombuffer(payload, np.uint8).copy()
        name = np.frombuffer(sockaddr(dest), np.uint8).copy()
        keep += [buf, name]
        sqes[k]["opcode"] = OP_SEND
        sqes[k]["fd"] = sock.fileno()
        sqes[k]["addr"] = buf.ctypes.data
        sqes[k]["len"] = len(payload)
        sqes[k]["msg_flags"] = MSG_DONTWAIT
        sqes[k]["off"] = name.ctypes.data  # addr2: the destination
        sqes[k]["addr_len"] = len(name)
        sqes[k]["user_data"] = 7000 + k
    return sqes, keep


def test_send_with_a_destination_delivers(ring: Ring, socks: list[socket.socket]) -> None:
    out = socks[0]
    dests = [socks[k].getsockname() for k in (1, 2, 3)]
    payloads = [b"to one", b"to two!", b"to three"]
    sqes, _keep = _send_entries(out, payloads, dests)
    user_data, res = ring.submit(sqes.view(np.uint8).reshape(len(sqes), 64))
    assert dict(zip(user_data.tolist(), res.tolist(), strict=True)) == {7000: 6, 7001: 7, 7002: 8}
    for k, payload in zip((1, 2, 3), payloads, strict=True):
        data, addr = socks[k].recvfrom(100)
        assert data == payload and addr == out.getsockname()


def test_batches_wrap_around_the_rings(ring: Ring, socks: list[socket.socket]) -> None:
    # 8 submission slots, 16 completion slots: 40 batches of 1..8 entries (hundreds in all)
    # cross the end of both queues many times and at every offset.
    tx = _senders(1)[0]
    total = 0
    for round_ in range(40):
        size = 1 + round_ % 8 if round_ % 5 else 8
        fds = [socks[k % len(socks)].fileno() for k in range(size)]
        expect = {}
        for k in range(min(size, len(socks))):
            payload = b"%d/%d" % (round_, k)
            tx.sendto(payload, socks[k].getsockname())
            expect[1000 + k] = payload
        rec = Receives(fds)
        user_data, res = ring.submit(rec.raw)
        assert len(user_data) == size  # every entry completed within the call
        got = dict(zip(user_data.tolist(), res.tolist(), strict=True))
        # A socket named twice in one batch has one datagram: one read gets it, the other -EAGAIN.
        for k, payload in expect.items():
            assert got[k] == len(payload)
            assert rec.data[k - 1000, : len(payload)].tobytes() == payload
        assert all(got[1000 + k] == -errno.EAGAIN for k in range(len(socks), size))
        total += size
    assert total > 5 * ring.entries
    tx.close()


def test_a_bad_entry_fails_alone(ring: Ring, socks: list[socket.socket]) -> None:
    tx = _senders(1)[0]
    for k in (0, 2):
        tx.sendto(b"fine %d" % k, socks[k].getsockname())
    spare = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bad_fd = spare.fileno()
    spare.close()  # a descriptor number nobody has open
    with pytest.raises(OSError):
        os.fstat(bad_fd)
    rec = Receives([socks[0].fileno(), bad_fd, socks[2].fileno()])
    user_data, res = ring.submit(rec.raw)
    got = dict(zip(user_data.tolist(), res.tolist(), strict=True))
    assert got == {1000: 6, 1001: -errno.EBADF, 1002: 6}
    assert rec.data[2, :6].tobytes() == b"fine 2"
    # The ring is still usable afterwards.
    tx.sendto(b"after", socks[1].getsockname())
    rec = Receives([socks[1].fileno()])
    user_data, res = ring.submit(rec.raw)
    assert res.tolist() == [5]
    tx.close()


def test_close_is_idempotent() -> None:
    r = Ring(8)
    fd = r.fd
    r.close()
    r.close()
    assert r.fd == -1
    with pytest.raises(OSError):
        os.fstat(fd)


def test_availability_probes_the_send_the_engine_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    # The probe sends a datagram through a ring; a kernel without the operation (older than
    # 6.0 for a send with a destination) answers -EINVAL, which an unknown opcode stands in for.
    assert uring._probe() is True
    monkeypatch.setattr(uring, "OP_SEND", 250)
    assert uring._probe() is False
