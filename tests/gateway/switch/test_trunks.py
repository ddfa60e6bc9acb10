"""Trunks: failover statuses, trunk order, OPTIONS pings and registration (with back-off)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.interop.conftest import make_config
from trunkline.gateway.config import Endpoint, SipConfig, Trunk
from trunkline.gateway.server import Server
from trunkline.gateway.sip.core import SipCore
from trunkline.gateway.sip.useragent import UserAgent
from trunkline.gateway.switch.leg_manager import LegManager
from trunkline.gateway.switch.trunks import TrunkManager, is_failover_status


def test_failover_only_on_5xx_and_408() -> None:
    assert [s for s in (404, 408, 480, 486, 487, 500, 503, 504, 600, 603) if is_failover_status(s)] == [
        408,
        500,
        503,
        504,
    ]


async def test_trunks_marked_down_are_tried_last_and_inbound_only_skipped() -> None:
    ua = UserAgent(SipCore(SipConfig()))
    trunks = (Trunk("a", "192.0.2.1"), Trunk("b", "192.0.2.2"), Trunk("in", "192.0.2.3", outbound=False))
    manager = TrunkManager(ua, LegManager(ua), trunks)
    assert [t.name for t in manager.outbound_trunks()] == ["a", "b"]
    manager.status["a"].up = False
    assert [t.name for t in manager.outbound_trunks()] == ["b", "a"]


# --- against real sockets on 127.0.0.1: a second Trunkline plays the carrier ----------------


async def test_options_ping_up_and_down_and_register_against_trunkline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    carrier = Server(
        make_config(endpoints=(Endpoint("trunkuser", "trunk-secret", "AC" + "0" * 32),), t1_ms=20)
    )
    caller = Server(make_config(t1_ms=20), demo_hangup=None)
    await carrier.start()
    await caller.start()
    try:
        transport = carrier.sip.first("udp")
        assert transport is not None and caller.ua is not None and caller.legs is not None
        port = transport.local_address[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
            closed.bind(("127.0.0.1", 0))
            dead_port = closed.getsockname()[1]
        good = Trunk(
            "good", "127.0.0.1", port=port, username="trunkuser", password="trunk-secret", register=True
        )
        bad = Trunk("bad", "127.0.0.1", port=port, username="trunkuser", password="wrong", register=True)
        dead = Trunk("dead", "127.0.0.1", port=dead_port)
        manager = TrunkManager(caller.ua, caller.legs, (good, bad, dead), retry_base=0.05, retry_max=0.1)
        assert await manager.ping(good) is True
        assert await manager.ping(dead) is False  # Timer F = 64*T1 = 1.28 s
        assert [t.name for t in manager.outbound_trunks()] == ["good", "bad", "dead"]
        manager.start()
        await asyncio.wait_for(manager.wait_registered("good"), 3)
        binding = carrier.location.lookup("trunkuser", asyncio.get_running_loop().time())
        assert len(binding) == 1 and binding[0].contact.user == "trunkuser"
        for _ in range(100):
            if manager.status["bad"].failures >= 3:
                break
            await asyncio.sleep(0.02)
        assert (
            manager.status["bad"].failures >= 3 and not manager.status["bad"].registered
        )  # 403, backing off
        assert manager.status["bad"].last_status == 403
        await manager.stop()
        assert carrier.location.lookup("trunkuser", asyncio.get_running_loop().time()) == []  # un-REGISTER
    finally:
        await caller.stop()
        await carrier.stop()
