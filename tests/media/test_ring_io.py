"""DatagramBatch (``media/ring_io.py``): batched receive and send over io_uring, real sockets on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any, cast

import pytest

from tests.media.test_relay_table import Cursor, World, _steady_spec, make_packet
from tests.peers.ports import ipv6_loopback_available
from trunkline.media import uring
from trunkline.media.ring_io import ROW, DatagramBatch, SendTarget, _address, sockaddr, source_key
from trunkline.media.stream_send import HEADER

pytestmark = pytest.mark.skipif(not uring.available(), reason="io_uring not available to this process")


def _udp(host: str = "127.0.0.1", blocking: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.setblocking(blocking)
    return s


def _handlers(fds: list[int], receivers: list[Any]) -> Any:
    """``receive``'s handlers for ``fds``: a dict by descriptor."""
    return dict(zip(fds, receivers, strict=True))


@pytest.fixture
def batch() -> Iterator[DatagramBatch]:
    b = DatagramBatch(16)
    yield b
    b.close()


class Log:
    """Handlers that record what each socket's datagrams were (copied out of the shared buffer)."""

    def __init__(self, batch: DatagramBatch) -> None:
        self.batch = batch
        self.seen: list[tuple[int, int, bytes, tuple[Any, ...], float]] = []

    def handler(self, index: int) -> Any:
        def on(offset: int, n: int, addr: tuple[Any, ...], now: float) -> None:
            self.seen.append((index, offset, bytes(self.batch.buffer[offset : offset + n]), addr, now))

        return on


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_each_datagram_reaches_its_handler_with_its_source(batch: DatagramBatch, host: str) -> None:
    if ":" in host and not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback")
    rxs = [_udp(host) for _ in range(5)]
    txs = [_udp(host) for _ in range(5)]
    log = Log(batch)
    # Sockets 0..4 each get a datagram from a different sender; socket order in the batch is shuffled.
    for k, (tx, rx) in enumerate(zip(txs, rxs, strict=True)):
        tx.sendto(b"datagram %d " % k + bytes(range(k * 10)), rx.getsockname())
    order = [3, 0, 4, 1, 2]
    fds = [rxs[k].fileno() for k in order]
    got = batch.receive(fds, _handlers(fds, [log.handler(k) for k in order]), 12.5)
    assert got == 5
    assert sorted(index for index, *_ in log.seen) == [0, 1, 2, 3, 4]
    offsets = set()
    for index, offset, data, addr, now in log.seen:
        assert data == b"datagram %d " % index + bytes(range(index * 10))
        assert addr == txs[index].getsockname()
        assert now == 12.5
        assert offset % ROW == 0 and offset == order.index(index) * ROW  # row k for fds[k]
        offsets.add(offset)
    assert len(offsets) == 5  # distinct rows
    assert batch.stray_completions == 0
    for s in rxs + txs:
        s.close()


def test_empty_sockets_are_skipped_without_blocking(batch: DatagramBatch) -> None:
    rxs = [_udp() for _ in range(3)]
    tx = _udp()
    tx.sendto(b"just one", rxs[1].getsockname())
    log = Log(batch)
    fds = [s.fileno() for s in rxs]
    handlers = _handlers(fds, [log.handler(k) for k in range(3)])
    assert batch.receive(fds, handlers, 0.0) == 1
    assert [(i, d) for i, _, d, _, _ in log.seen] == [(1, b"just one")]
    assert batch.receive(fds, handlers, 0.0) == 0
    for s in [*rxs, tx]:
        s.close()


class Owner:
    def __init__(self) -> None:
        self.failed: list[int] = []

    def send_failed(self, n: int) -> None:
        self.failed.append(n)


def test_queued_sends_leave_from_the_right_socket_to_the_right_destination(batch: DatagramBatch) -> None:
    rx_a, rx_b = _udp(), _udp()
    out_a, out_b = _udp(), _udp()
    far_a, far_b = _udp(blocking=True), _udp(blocking=True)
    far_a.settimeout(1.0)
    far_b.settimeout(1.0)
    tx = _udp()
    target_a = SendTarget(out_a, far_a.getsockname())
    target_b = SendTarget(out_b, far_b.getsockname())
    owner = Owner()

    def relay_to(target: SendTarget) -> Any:
        def on(offset: int, n: int, addr: tuple[Any, ...], now: float) -> None:
            batch.buffer[offset : offset + 3] = b"OUT"  # rewritten in place, sent from the row
            batch.queue_send((target.fd, offset, n, target.ptr, target.size))
            batch.queue_owner(owner)

        return on

    tx.sendto(b"xxx from a", rx_a.getsockname())
    tx.sendto(b"xxx from b, longer", rx_b.getsockname())
    fds = [rx_a.fileno(), rx_b.fileno()]
    assert batch.receive(fds, _handlers(fds, [relay_to(target_a), relay_to(target_b)]), 1.0) == 2
    assert batch.pending == [] and batch.owners == []  # flushed by receive()
    assert far_a.recvfrom(100) == (b"OUT from a", out_a.getsockname())
    assert far_b.recvfrom(100) == (b"OUT from b, longer", out_b.getsockname())
    assert owner.failed == [] and batch.send_failures == 0
    for s in (rx_a, rx_b, out_a, out_b, far_a, far_b, tx):
        s.close()


def test_flush_sends_more_than_one_batch_of_rows(batch: DatagramBatch) -> None:
    out, far = _udp(), _udp(blocking=True)
    far.settimeout(1.0)
    target = SendTarget(out, far.getsockname())
    owner = Owner()
    count = batch.rows * 2 + 3  # three chunks
    for k in range(count):
        batch.buffer[k * 4 : k * 4 + 4] = k.to_bytes(4, "big")
        batch.queue_send((target.fd, k * 4, 4, target.ptr, target.size))
        batch.queue_owner(owner)
    batch.flush()
    received = sorted(int.from_bytes(far.recv(10), "big") for _ in range(count))
    assert received == list(range(count))
    assert owner.failed == [] and batch.pending == []
    out.close()
    far.close()


def test_a_failed_send_tells_its_owner(batch: DatagramBatch) -> None:
    good_out, doomed, far = _udp(), _udp(), _udp(blocking=True)
    far.settimeout(1.0)
    good = SendTarget(good_out, far.getsockname())
    bad = SendTarget(doomed, far.getsockname())
    doomed.close()  # its descriptor is gone: the send fails with EBADF
    ok_owner, bad_owner = Owner(), Owner()
    batch.buffer[0:5] = b"first"
    batch.buffer[100:107] = b"dropped"
    batch.buffer[200:204] = b"last"
    for target, offset, n, owner in (
        (good, 0, 5, ok_owner),
        (bad, 100, 7, bad_owner),
        (good, 200, 4, ok_owner),
    ):
        batch.queue_send((target.fd, offset, n, target.ptr, target.size))
        batch.queue_owner(owner)
    batch.flush()
    assert bad_owner.failed == [7] and ok_owner.failed == []
    assert batch.send_failures == 1
    assert sorted([far.recv(10), far.recv(10)]) == [b"first", b"last"]
    good_out.close()
    far.close()


@pytest.mark.parametrize(
    "addr",
    [("127.0.0.1", 5004), ("10.1.2.3", 65535), ("0.0.0.0", 1), ("::1", 6000, 0, 0), ("fe80::1", 7, 0, 3)],
)
def test_sockaddr_round_trips(addr: tuple[Any, ...]) -> None:
    raw = sockaddr(addr)
    assert len(raw) == (28 if ":" in addr[0] else 16)
    assert _address(raw.ljust(32, b"\0")) == addr
    key = source_key(addr)
    if ":" in addr[0]:
        assert key is None
    else:
        assert key is not None
        assert key.to_bytes(8, "little") == raw[:8]
        assert key & 0xFFFF == socket.AF_INET and (key >> 16) & 0xFFFF == int.from_bytes(
            addr[1].to_bytes(2, "big"), "little"
        )


def test_source_key_is_what_the_batch_reads(batch: DatagramBatch) -> None:
    rx, tx = _udp(), _udp()
    tx.sendto(b"k", rx.getsockname())
    assert batch.receive([rx.fileno()], _handlers([rx.fileno()], [lambda *a: None]), 0.0) == 1
    assert int(batch._name_keys[0]) == source_key(tx.getsockname())
    # A different source port is a different key.
    assert source_key(("127.0.0.1", tx.getsockname()[1] ^ 1)) != source_key(tx.getsockname())
    rx.close()
    tx.close()


def test_relayed_packets_leave_rewritten_and_a_failed_one_is_counted(batch: DatagramBatch) -> None:
    """A gate in the batch's table: its packets go out of the gate's socket with the peer's header;
    when that send fails the table counts a drop instead of a relayed packet."""
    rx, out, far, phone = _udp(), _udp(), _udp(blocking=True), _udp()
    far.settimeout(1.0)
    spec = _steady_spec(first_seq=100, first_ts=5000, seq_offset=7, ts_offset=11, out_ssrc=0xABCD)
    world = World([spec], batch.buffer)
    gate = world.gates[0]
    gate.source = phone.getsockname()
    gate.out_target = cast(Any, SendTarget(out, far.getsockname()))
    key = source_key(gate.source)
    assert key is not None
    batch.table.add(rx.fileno(), gate, key)
    cursor = Cursor(spec.first_seq - 1, spec.first_ts - 160)
    never: list[Any] = []
    handlers = _handlers([rx.fileno()], [lambda *a: never.append(a)])
    packet = make_packet(spec, cursor, 0, 1, 0, "none", False, 160)
    phone.sendto(packet.data, rx.getsockname())
    assert batch.receive([rx.fileno()], handlers, 1.0) == 1
    data, addr = far.recvfrom(2048)
    assert addr == out.getsockname() and data[12:] == packet.data[12:]
    assert data[:12] == HEADER.pack(0x80, 0, 100 + 7, 5000 + 11, 0xABCD)
    # The gate's socket is gone: the next relayed send fails.
    doomed = _udp()
    gate.out_target = cast(Any, SendTarget(doomed, far.getsockname()))
    batch.table.add(rx.fileno(), gate, key)  # re-read (the table keeps the target's fd)
    doomed.close()
    phone.sendto(make_packet(spec, cursor, 0, 1, 0, "none", False, 160).data, rx.getsockname())
    assert batch.receive([rx.fileno()], handlers, 1.02) == 1
    assert batch.send_failures == 1 and never == []
    batch.table.remove(rx.fileno())
    counters = gate.out_counters
    assert (counters.packets_relayed, counters.send_drops, counters.packets_sent) == (3 + 1, 1, 7 + 1)
    assert gate.stats.received == 1 + 2  # both were received
    for s in (rx, out, far, phone):
        s.close()
