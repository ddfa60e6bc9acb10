"""The temporary demo handler's RTP port allocator."""

from __future__ import annotations

import pytest

from trunkline.gateway.switch.demo_call import PortAllocator


def test_even_ports_round_robin_and_exhaustion() -> None:
    ports = PortAllocator(20001, 20008)
    got = [ports.reserve() for _ in range(3)]
    assert got == [20002, 20004, 20006]
    with pytest.raises(RuntimeError, match="exhausted"):
        ports.reserve()
    ports.release(20004)
    assert ports.reserve() == 20004 and len(ports) == 3
