"""SIPp as the carrier: outbound calls through trunks (answer, digest, 486 without failover,
503 with failover) and trunk registration (REGISTER, refresh, un-REGISTER)."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from tests.interop.conftest import LOOPBACK, StartServer, make_config, requires_sipp
from tests.peers.sipp import Sipp, derive_scenario, scenario
from trunkline.gateway.config import Trunk
from trunkline.gateway.server import Server
from trunkline.gateway.sip.sdp import LocalMedia, build_offer
from trunkline.gateway.switch.legs import Answered, Failed, LegState

pytestmark = [requires_sipp, pytest.mark.timeout(60)]

LOCAL = Trunk("local", LOOPBACK, inbound_ips=(ipaddress.ip_network("127.0.0.1/32"),), outbound=False)
OFFER = build_offer(LocalMedia(LOOPBACK, 30100)).serialize()


def carrier(name: str, port: int, **kwargs: object) -> Trunk:
    return Trunk(name, LOOPBACK, port=port, **kwargs)  # type: ignore[arg-type]


async def test_outbound_call_answered_and_hung_up(tmp_path: Path, start_server: StartServer) -> None:
    async with Sipp(scenario("uas_answer"), workdir=tmp_path, timeout=15) as uas:
        server: Server = await start_server(make_config(trunks=(LOCAL, carrier("c1", uas.local_port))))
        assert server.trunks is not None
        leg = await server.trunks.dial("+15551230000", from_user="+15550001111", sdp_offer=OFFER)
        assert leg.state is LegState.CONFIRMED
        answered = [e for e in _drain(leg.events) if isinstance(e, Answered)]
        assert len(answered) == 1 and b"m=audio" in answered[0].sdp
        await asyncio.sleep(0.2)
        leg.hangup()
        ended = await asyncio.wait_for(leg.wait_ended(), 2)
        assert not ended.by_remote
    assert uas.result is not None
    uas.result.check(calls=1)
    invite = next(m for m in uas.messages.split("\n\n") if "INVITE sip:+15551230000@127.0.0.1" in m)
    assert ";rport" in invite and "From: <sip:+15550001111@127.0.0.1>;tag=" in invite


async def test_outbound_call_answers_digest_challenge(tmp_path: Path, start_server: StartServer) -> None:
    variables = {"user": "trunkuser", "password": "trunk-secret"}
    async with Sipp(scenario("uas_invite_auth"), workdir=tmp_path, timeout=15, variables=variables) as uas:
        trunk = carrier("c1", uas.local_port, username="trunkuser", password="trunk-secret")
        server: Server = await start_server(make_config(trunks=(LOCAL, trunk)))
        assert server.trunks is not None
        leg = await server.trunks.dial("15551230000", from_user="trunkline", sdp_offer=OFFER)
        assert await leg.wait_answer() == 200
        leg.hangup()
        await asyncio.wait_for(leg.wait_ended(), 2)
    assert uas.result is not None
    uas.result.check(calls=1)


async def test_busy_does_not_fail_over(tmp_path: Path, start_server: StartServer) -> None:
    busy = Sipp(scenario("uas_busy"), workdir=tmp_path / "busy", timeout=10)
    second = Sipp(scenario("uas_answer"), workdir=tmp_path / "second", timeout=10)
    async with busy, second:
        trunks = (LOCAL, carrier("c1", busy.local_port), carrier("c2", second.local_port))
        server: Server = await start_server(make_config(trunks=trunks))
        assert server.trunks is not None
        leg = await server.trunks.dial("+15551230000", from_user="trunkline", sdp_offer=OFFER)
        assert await leg.wait_answer() == 486
        assert [e for e in _drain(leg.events) if isinstance(e, Failed)] == [Failed(486, "Busy Here")]
        await second.stop()
    assert busy.result is not None
    busy.result.check(calls=1)
    assert "INVITE sip:" not in second.messages


async def test_503_fails_over_to_the_next_trunk(tmp_path: Path, start_server: StartServer) -> None:
    unavailable = derive_scenario(
        "uas_busy", tmp_path, {"486 Busy Here": "503 Service Unavailable"}, name="uas_503"
    )
    first = Sipp(unavailable, workdir=tmp_path / "first", timeout=10)
    second = Sipp(scenario("uas_answer"), workdir=tmp_path / "second", timeout=10)
    async with first, second:
        trunks = (LOCAL, carrier("c1", first.local_port), carrier("c2", second.local_port))
        server: Server = await start_server(make_config(trunks=trunks))
        assert server.trunks is not None
        attempts: list[str] = []
        leg = await server.trunks.dial(
            "+15551230000",
            from_user="trunkline",
            sdp_offer=OFFER,
            on_attempt=lambda trunk, _leg: attempts.append(trunk.name),
        )
        assert attempts == ["c1", "c2"]
        assert await leg.wait_answer() == 200
        leg.hangup()
        await asyncio.wait_for(leg.wait_ended(), 2)
    assert first.result is not None and second.result is not None
    first.result.check(calls=1)
    second.result.check(calls=1)


async def test_trunk_register_refresh_and_unregister(tmp_path: Path, start_server: StartServer) -> None:
    variables = {"user": "trunkuser", "password": "trunk-secret"}
    registrar = Sipp(scenario("uas_register_refresh"), workdir=tmp_path, timeout=20, variables=variables)
    async with registrar:
        trunk = carrier(
            "c1",
            registrar.local_port,
            username="trunkuser",
            password="trunk-secret",
            register=True,
            expires=300,
        )
        server: Server = await start_server(make_config(trunks=(LOCAL, trunk)))
        trunks = server.trunks
        assert trunks is not None
        await asyncio.wait_for(trunks.wait_registered("c1"), 5)
        for _ in range(100):  # granted 2 s: the refresh comes after 1.0-1.6 s
            if trunks.status["c1"].registrations >= 2:
                break
            await asyncio.sleep(0.05)
        assert trunks.status["c1"].registrations == 2
        await trunks.stop()
        assert not trunks.status["c1"].registered
    assert registrar.result is not None
    registrar.result.check(calls=1)
    authorized = [
        m
        for m in registrar.messages.split("\n\n")
        if m.lstrip().startswith("REGISTER ") and "Authorization:" in m
    ]
    expires = [
        line.split(":", 1)[1].strip()
        for m in authorized
        for line in m.splitlines()
        if line.startswith("Expires:")
    ]
    assert expires == ["300", "300", "0"]


def _drain(queue: asyncio.Queue[object]) -> list[object]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out
