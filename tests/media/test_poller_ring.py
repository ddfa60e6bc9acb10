"""DatagramPoller with batched I/O (io_uring) and without: receivers, timer mode, relay gates.

Real UDP sockets on 127.0.0.1, on the test's event loop.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any, cast

import numpy as np
import pytest

from tests.media.test_relay_table import Cursor, World, _steady_spec, make_packet, state_of
from trunkline.media import uring
from trunkline.media.poller import DatagramPoller, SendTarget
from trunkline.media.stream_send import RelayGate

RING = pytest.param(
    True, id="io_uring", marks=pytest.mark.skipif(not uring.available(), reason="io_uring not available")
)
needs_ring = pytest.mark.skipif(not uring.available(), reason="io_uring not available")


def _udp(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.setblocking(False)
    return s


@pytest.fixture
def socks() -> Iterator[list[socket.socket]]:
    made = [_udp() for _ in range(12)]
    yield made
    for s in made:
        s.close()


Log = list[tuple[int, bytes, tuple[Any, ...], float]]


def _receiver(
    poller: DatagramPoller, log: Log, index: int
) -> Callable[[int, int, tuple[Any, ...], float], None]:
    def on(offset: int, n: int, addr: tuple[Any, ...], now: float) -> None:
        log.append((index, bytes(poller.buffer[offset : offset + n]), addr, now))

    return on


async def _until(predicate: Callable[[], bool], timeout: float = 1.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate() and loop.time() < end:
        await asyncio.sleep(0.002)


def _loop_watches(loop: asyncio.AbstractEventLoop, fd: int) -> bool:
    selector = getattr(loop, "_selector", None)
    if selector is None:
        pytest.skip("not a selector event loop")
    return fd in selector.get_map()


@pytest.mark.parametrize("ring", [RING, False])
async def test_receivers_get_every_datagram(socks: list[socket.socket], ring: bool) -> None:
    loop = asyncio.get_running_loop()
    poller = DatagramPoller(loop, ring=ring)
    assert poller.ring is ring
    log: Log = []
    for i, s in enumerate(socks[:4]):
        poller.add_receiver(s, _receiver(poller, log, i))
    tx = _udp()
    for n in range(6):
        for i, s in enumerate(socks[:4]):
            tx.sendto(b"%d:%d" % (i, n) + bytes(n * 30), s.getsockname())
    await _until(lambda: len(log) >= 24)
    assert len(log) == 24
    for i in range(4):
        assert [d for j, d, _, _ in log if j == i] == [b"%d:%d" % (i, n) + bytes(n * 30) for n in range(6)]
    assert {addr for _, _, addr, _ in log} == {tx.getsockname()}
    # replace_receiver: the next datagram goes to the new receiver only.
    other: Log = []
    poller.replace_receiver(socks[0], _receiver(poller, other, 0))
    tx.sendto(b"later", socks[0].getsockname())
    await _until(lambda: len(other) >= 1)
    assert [d for _, d, _, _ in other] == [b"later"] and len(log) == 24
    poller.close()
    tx.close()


@needs_ring
async def test_timer_mode_under_a_burst_and_back_to_waking_on_data(socks: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()
    poller = DatagramPoller(loop, ring=True, coalesce=0.05)
    assert poller.coalesce == 0.05
    log: Log = []
    for i, s in enumerate(socks):
        poller.add_receiver(s, _receiver(poller, log, i))
    epoll_fd = cast(Any, poller)._epoll.fileno()
    assert _loop_watches(loop, epoll_fd)
    tx = _udp()
    for s in socks[:10]:  # >= 8 sockets ready at one wake-up
        tx.sendto(b"burst", s.getsockname())
    await _until(lambda: len(log) >= 10)
    assert len(log) == 10
    assert poller._pause is not None  # timer mode: polling every `coalesce` seconds
    assert not _loop_watches(loop, epoll_fd)
    # Still busy: what arrives is read by the timer's polls, a batch at a time.
    tx.sendto(b"during", socks[11].getsockname())
    await _until(lambda: len(log) >= 11)
    assert log[-1][:2] == (11, b"during")
    # Traffic stopped: a poll that finds nothing goes back to waking on data.
    await _until(lambda: poller._pause is None, 0.5)
    assert poller._pause is None and _loop_watches(loop, epoll_fd)
    await asyncio.sleep(0.05)
    sent_at = loop.time()
    tx.sendto(b"after a pause", socks[3].getsockname())
    await _until(lambda: len(log) >= 12)
    assert log[-1][:2] == (3, b"after a pause")
    assert log[-1][3] - sent_at < 0.05  # promptly: not left waiting for a timer
    assert poller._pause is None  # one datagram does not start timer mode
    poller.close()
    tx.close()


@needs_ring
async def test_close_in_timer_mode_cancels_the_timer(socks: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    poller = DatagramPoller(loop, ring=True, coalesce=0.05)
    log: Log = []
    for i, s in enumerate(socks):
        poller.add_receiver(s, _receiver(poller, log, i))
    tx = _udp()
    for s in socks:
        tx.sendto(b"burst", s.getsockname())
    await _until(lambda: len(log) >= 12)
    timer = poller._pause
    assert timer is not None
    calls: list[float] = []
    original = poller._on_timer

    def counted() -> None:
        calls.append(loop.time())
        original()

    poller._on_timer = counted  # type: ignore[method-assign]
    poller.close()
    assert timer.cancelled() and poller._pause is None
    for s in socks:
        tx.sendto(b"after close", s.getsockname())
    await asyncio.sleep(0.15)  # three timer periods
    assert calls == [] and len(log) == 12 and errors == []
    assert socks[0].recv(100) == b"after close"  # nobody read it
    loop.set_exception_handler(None)
    tx.close()


class Leg:
    """The receiving stream as far as the poller and the batch see it."""

    def __init__(self, poller: DatagramPoller, sock: socket.socket, receiver: Any) -> None:
        self.poller, self.sock, self.receiver = poller, sock, receiver
        self.closed = 0

    def close_relay_gate(self) -> None:
        self.closed += 1
        self.poller.close_gate(self.sock, self.receiver)


def _gate(poller: DatagramPoller, world: World, sock: socket.socket, out: socket.socket,
          far: socket.socket, leg: Leg) -> RelayGate:  # fmt: skip
    """World's gate 0, re-pointed at real sockets: source SOURCE, out of ``out`` to ``far``."""
    gate = world.gates[0]
    gate.leg = cast(Any, leg)
    gate.buffer, gate.view = poller.buffer, poller.view
    gate.queue_send = poller.queue_send
    gate.out_sock, gate.out_remote = out, far.getsockname()
    gate.out_target = SendTarget(out, far.getsockname())
    return gate


@needs_ring
async def test_gated_packets_are_relayed_and_others_close_the_gate() -> None:
    loop = asyncio.get_running_loop()
    poller = DatagramPoller(loop, ring=True, coalesce=0.0)
    rx, out, far = _udp(), _udp(), _udp()
    src = _udp()  # the phone
    log: Log = []
    receiver = _receiver(poller, log, 0)
    poller.add_receiver(rx, receiver)
    spec = _steady_spec()
    world = World([spec], bytearray(64))
    reference = World([spec], bytearray(2048))
    leg = Leg(poller, rx, receiver)
    gate = _gate(poller, world, rx, out, far, leg)
    gate.source = src.getsockname()
    poller.open_gate(rx, gate)
    table = cast(Any, poller)._batch.table
    assert len(table) == 1
    cursor, ref_cursor = (
        Cursor(spec.first_seq - 1, 0xFFFFFF00 - 160),
        Cursor(spec.first_seq - 1, 0xFFFFFF00 - 160),
    )
    sent = []
    for k in range(3):
        p = make_packet(spec, cursor, 0, 1, 0, "none", k == 0, 160)
        make_packet(spec, ref_cursor, 0, 1, 0, "none", k == 0, 160)
        sent.append(p)
        src.sendto(p.data, rx.getsockname())
        got = far.recv(2048) if await _readable(far) else b""
        reference.buffer[: len(p.data)] = p.data
        reference.gates[0].on_datagram(0, p.n, p.addr, 1.0)
        assert got == reference.sent[-1][1]  # the rewritten header, the same payload
    assert log == [] and leg.closed == 0 and len(table) == 1
    # A packet with another payload type is not the steady state: gate closed, receiver called.
    odd = make_packet(spec, cursor, 0, 1, 0, "pt", False, 160)
    src.sendto(odd.data, rx.getsockname())
    await _until(lambda: len(log) >= 1)
    assert [d for _, d, _, _ in log] == [odd.data] and log[0][2] == src.getsockname()
    assert leg.closed == 1 and len(table) == 0
    # Closing wrote the table's counts back: three packets relayed.
    assert gate.out_counters.packets_relayed == 3 + 3 and gate.in_counters.packets_received == 5 + 3
    assert gate.stats.max_seq == (spec.first_seq + 2) & 0xFFFF
    poller.close()
    for s in (rx, out, far, src):
        s.close()


async def _readable(sock: socket.socket, timeout: float = 1.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        try:
            sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            await asyncio.sleep(0.002)
            continue
        return True
    return False


@needs_ring
async def test_remove_of_a_gated_socket_drops_its_row(socks: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()
    poller = DatagramPoller(loop, ring=True)
    table = cast(Any, poller)._batch.table
    gates = []
    for k in range(3):
        world = World([_steady_spec(ssrc=k)], bytearray(64))
        log: Log = []
        receiver = _receiver(poller, log, k)
        poller.add_receiver(socks[k], receiver)
        gate = _gate(poller, world, socks[k], socks[10], socks[11], Leg(poller, socks[k], receiver))
        poller.open_gate(socks[k], gate)
        gates.append(gate)
    assert len(table) == 3
    fd = socks[1].fileno()
    row = int(table.gate_of_fd[fd])
    table.ints[row, 8] += 4  # RECEIVED, as if four packets were relayed
    poller.sync_gate(socks[1])
    assert gates[1].stats.received == 1 + 4
    table.ints[row, 8] += 1
    poller.sync_gates(row % 5, 5)
    assert gates[1].stats.received == 1 + 5
    table.ints[row, 8] += 1
    poller.remove(fd)
    assert len(table) == 2 and table.gate_of_fd[fd] == -1 and table.gates[row] is None
    assert gates[1].stats.received == 1 + 6  # written back on the way out
    assert state_of(gates[0])["received"] == 1
    poller.remove(fd)  # again: nothing happens
    assert len(table) == 2
    # close_gate: the row goes, the receiver stays.
    poller.close_gate(socks[0], _receiver(poller, [], 0))
    assert len(table) == 1 and int(table.gate_of_fd[socks[2].fileno()]) >= 0
    assert np.count_nonzero(table.gate_of_fd >= 0) == 1
    poller.close()


@pytest.mark.parametrize("ring", [RING])
async def test_a_receiver_that_raises_does_not_lose_the_others_datagrams(
    socks: list[socket.socket], ring: bool
) -> None:
    loop = asyncio.get_running_loop()
    errors: list[Any] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context.get("exception")))
    poller = DatagramPoller(loop, ring=ring, coalesce=0.0)
    log: Log = []

    def broken(offset: int, n: int, addr: tuple[Any, ...], now: float) -> None:
        raise RuntimeError("a broken stream")

    for i, s in enumerate(socks[:4]):
        poller.add_receiver(s, _receiver(poller, log, i) if i else broken)
    tx = _udp()
    for s in socks[:4]:
        tx.sendto(b"x", s.getsockname())
    await _until(lambda: len(log) >= 3, 0.2)
    loop.set_exception_handler(None)
    poller.close()
    tx.close()
    assert all(isinstance(e, RuntimeError) for e in errors)  # reported (by the loop or a log), nothing else
    assert sorted(i for i, *_ in log) == [1, 2, 3]
