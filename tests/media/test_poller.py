"""DatagramPoller: many UDP sockets behind one event-loop reader (real sockets on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Callable, Iterator

import pytest

from tests.peers.ports import bound_udp_sockets
from trunkline.media.poller import DatagramPoller


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    socks = bound_udp_sockets(4)
    yield socks
    for s in socks:
        s.close()


def _sender() -> socket.socket:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    return tx


def _reader(log: list[tuple[int, bytes]], index: int, sock: socket.socket) -> Callable[[float], None]:
    def handler(now: float) -> None:
        assert isinstance(now, float)
        log.append((index, sock.recv(2048)))  # exactly one datagram per call

    return handler


async def _settle(poller: DatagramPoller, until: int, log: list[tuple[int, bytes]]) -> None:
    for _ in range(100):
        if len(log) >= until:
            return
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("batched", [True, False], ids=["epoll", "one-reader-each"])
async def test_every_datagram_reaches_its_handler_in_order(
    sockets: list[socket.socket], batched: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not batched:
        monkeypatch.delattr(select, "epoll", raising=False)  # the portable path
    poller = DatagramPoller(asyncio.get_running_loop())
    assert poller.batched is batched
    log: list[tuple[int, bytes]] = []
    for i, s in enumerate(sockets):
        poller.add(s.fileno(), _reader(log, i, s))
    tx = _sender()
    for n in range(5):  # five queued per socket: read one at a time, none lost
        for s in sockets:
            tx.sendto(b"%d" % n, s.getsockname())
    await _settle(poller, 20, log)
    assert len(log) == 20
    for i in range(len(sockets)):
        assert [d for j, d in log if j == i] == [b"0", b"1", b"2", b"3", b"4"]
    poller.close()
    tx.close()


async def test_a_flooded_socket_cannot_starve_the_others(sockets: list[socket.socket]) -> None:
    poller = DatagramPoller(asyncio.get_running_loop(), rounds=2)
    log: list[tuple[int, bytes]] = []
    for i, s in enumerate(sockets):
        poller.add(s.fileno(), _reader(log, i, s))
    tx = _sender()
    for _ in range(50):
        tx.sendto(b"flood", sockets[0].getsockname())
    tx.sendto(b"quiet", sockets[3].getsockname())
    poller._on_ready()  # one wake-up: at most `rounds` reads per socket
    assert log.count((0, b"flood")) == 2 and (3, b"quiet") in log
    await _settle(poller, 51, log)
    assert log.count((0, b"flood")) == 50  # the rest on later wake-ups
    assert poller.wakeups >= 2 and poller.dispatched == 51
    poller.close()
    tx.close()


async def test_replace_and_remove(sockets: list[socket.socket]) -> None:
    poller = DatagramPoller(asyncio.get_running_loop())
    first: list[tuple[int, bytes]] = []
    second: list[tuple[int, bytes]] = []
    a, b = sockets[0], sockets[1]
    poller.add(a.fileno(), _reader(first, 0, a))
    poller.add(b.fileno(), _reader(first, 1, b))
    with pytest.raises(ValueError, match="already polled"):
        poller.add(a.fileno(), _reader(first, 0, a))
    poller.replace(a.fileno(), _reader(second, 0, a))
    poller.remove(b.fileno())
    poller.remove(b.fileno())  # idempotent
    poller.replace(b.fileno(), _reader(second, 1, b))  # not polled: ignored
    assert len(poller) == 1
    tx = _sender()
    tx.sendto(b"x", a.getsockname())
    tx.sendto(b"y", b.getsockname())
    await _settle(poller, 1, second)
    await asyncio.sleep(0.02)
    assert second == [(0, b"x")] and first == []
    assert b.recv(10) == b"y"  # b was not read by anyone
    poller.close()
    assert len(poller) == 0
    tx.close()
