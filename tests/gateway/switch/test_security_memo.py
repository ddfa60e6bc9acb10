"""InboundGuard.trunk_for remembers the trunk of each source address, and forgets when the
trunk list is replaced."""

from __future__ import annotations

import ipaddress

import pytest

from trunkline.gateway.config import Trunk
from trunkline.gateway.switch import security
from trunkline.gateway.switch.security import InboundGuard

CARRIER = Trunk("carrier", "203.0.113.10", inbound_ips=(ipaddress.ip_network("203.0.113.0/28"),))
OTHER = Trunk("other", "198.51.100.1", inbound_ips=(ipaddress.ip_network("198.51.100.0/24"),))


def test_trunk_for_is_memoised_and_matches_the_acl(monkeypatch: pytest.MonkeyPatch) -> None:
    guard = InboundGuard((CARRIER, OTHER), ())
    checks: list[str] = []
    real = Trunk.accepts_from

    def counting(trunk: Trunk, address: str) -> bool:
        checks.append(trunk.name)
        return real(trunk, address)

    monkeypatch.setattr(Trunk, "accepts_from", counting)
    assert guard.trunk_for("198.51.100.7") is OTHER
    assert guard.trunk_for("203.0.113.20") is None  # outside the /28
    assert checks == ["carrier", "other", "carrier", "other"]
    assert guard.trunk_for("198.51.100.7") is OTHER and guard.trunk_for("203.0.113.20") is None
    assert len(checks) == 4  # answered from the memo
    guard.trunks = (CARRIER,)
    assert guard.trunk_for("198.51.100.7") is None  # a new trunk list is asked again
    assert checks[4:] == ["carrier"]


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "_TRUNK_MEMO_SIZE", 3)
    guard = InboundGuard((CARRIER,), ())
    for n in range(10):
        assert guard.trunk_for(f"203.0.113.{n}") is CARRIER
        assert len(guard._trunk_memo) <= 3
