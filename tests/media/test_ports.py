"""RTP/RTCP port pair allocation (media/ports.py)."""

from __future__ import annotations

import random
import socket

import pytest

from trunkline.gateway.config import RtpConfig
from trunkline.media.ports import PortAllocator, PortsExhaustedError


def _range(pairs: int) -> tuple[int, int]:
    base = random.randrange(40000, 60000, 2)
    return base, base + 2 * pairs - 1


def test_pairs_are_even_rtp_and_odd_rtcp_and_bound() -> None:
    low, high = _range(8)
    alloc = PortAllocator("127.0.0.1", low, high)
    pairs = [alloc.allocate() for _ in range(3)]
    try:
        for pair in pairs:
            assert pair.rtp_port % 2 == 0 and low <= pair.rtp_port < high
            assert pair.rtcp_port == pair.rtp_port + 1
            assert pair.rtp_sock.getsockname() == ("127.0.0.1", pair.rtp_port)
            assert pair.rtcp_sock is not None
            assert pair.rtcp_sock.getsockname() == ("127.0.0.1", pair.rtcp_port)
            assert pair.rtp_sock.getblocking() is False
        assert len({p.rtp_port for p in pairs}) == 3
        assert alloc.in_use == {p.rtp_port for p in pairs}
    finally:
        for pair in pairs:
            alloc.release(pair)
    assert alloc.in_use == set()


def test_odd_bounds_are_rounded_into_pairs() -> None:
    alloc = PortAllocator("127.0.0.1", 40001, 40006)  # pairs 40002/3 and 40004/5 only
    assert alloc.capacity == 2
    with pytest.raises(ValueError, match="no even/odd pair"):
        PortAllocator("127.0.0.1", 40001, 40002)


def test_ports_held_by_others_are_skipped() -> None:
    low, high = _range(2)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", low + 1))  # someone else holds the first pair's RTCP port
    try:
        alloc = PortAllocator("127.0.0.1", low, high, rng=random.Random(0))
        pair = alloc.allocate()
        assert pair.rtp_port == low + 2
        with pytest.raises(PortsExhaustedError) as info:
            alloc.allocate()
        assert f"{low}-{high}" in str(info.value)
        # The half-bound pair was not leaked: its RTP port is free.
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", low))
        probe.close()
        alloc.release(pair)
    finally:
        blocker.close()


def test_release_returns_the_pair_and_round_robin_avoids_immediate_reuse() -> None:
    low, high = _range(4)
    alloc = PortAllocator("127.0.0.1", low, high)
    first = alloc.allocate()
    alloc.release(first)
    second = alloc.allocate()
    assert second.rtp_port != first.rtp_port  # the next pair in turn, not the one just freed
    alloc.release(second)
    pairs = [alloc.allocate() for _ in range(4)]  # every pair usable again
    assert sorted(p.rtp_port for p in pairs) == list(range(low, high, 2))
    with pytest.raises(PortsExhaustedError):
        alloc.allocate()
    for pair in pairs:
        alloc.release(pair)
        alloc.release(pair)  # idempotent
    assert not alloc.in_use


def test_rtcp_mux_binds_only_rtp_but_reserves_the_pair() -> None:
    low, high = _range(2)
    alloc = PortAllocator.from_config(RtpConfig("127.0.0.1", low, high))
    pair = alloc.allocate(rtcp_mux=True)
    assert pair.rtcp_mux and pair.rtcp_sock is None and pair.rtcp_port == pair.rtp_port + 1
    other = alloc.allocate()
    assert other.rtp_port != pair.rtp_port and other.rtp_port % 2 == 0
    alloc.release(pair)
    alloc.release(other)
