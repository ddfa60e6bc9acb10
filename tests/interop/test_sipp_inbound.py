"""SIPp calls Trunkline (UAC side): basic calls, BYE from us, CANCEL, digest, hold, INFO DTMF."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.interop.conftest import StartServer, make_config, requires_sipp, sip_address
from tests.peers.sipp import Sipp, scenario
from trunkline.gateway.server import Server
from trunkline.gateway.switch.legs import InboundLeg, InfoDtmf, LegEvent, ReInvite

pytestmark = [requires_sipp, pytest.mark.timeout(60)]


async def test_basic_calls_bye_from_sipp(tmp_path: Path, start_server: StartServer) -> None:
    server: Server = await start_server(demo_hangup=None)
    result = await Sipp(
        "uac", remote=sip_address(server), workdir=tmp_path, calls=5, rate=20, timeout=15
    ).run()
    result.check(calls=5, retransmissions=0)
    assert server.demo is not None and server.demo.answered == 5
    assert server.core is not None and server.core.stats.internal_errors == 0
    await asyncio.sleep(0.05)
    assert server.core.dialog_count() == 0  # every BYE ended its dialog


async def test_bye_from_us(tmp_path: Path, start_server: StartServer) -> None:
    server: Server = await start_server(demo_hangup=0.3)
    uac = Sipp(scenario("uac_bye_from_remote"), remote=sip_address(server), workdir=tmp_path, timeout=10)
    result = (await uac.run()).check(calls=1)
    assert result.row("BYE", direction="recv").messages == 1
    bye = [m for m in uac.messages.split("\n\n") if m.lstrip().startswith("BYE sip:")]
    assert bye, uac.messages
    assert "CSeq: " in bye[0] and "User-Agent: Trunkline" in bye[0]


async def test_cancel_before_answer_gets_487(tmp_path: Path, start_server: StartServer) -> None:
    server: Server = await start_server()
    assert server.legs is not None
    legs: list[InboundLeg] = []

    def ring_only(leg: InboundLeg) -> None:
        legs.append(leg)
        leg.ring()

    server.legs.on_inbound = ring_only
    result = await Sipp(
        scenario("uac_cancel"), remote=sip_address(server), workdir=tmp_path, timeout=10
    ).run()
    result.check(calls=1)
    assert result.row("487", direction="recv").messages == 1
    ended = await asyncio.wait_for(legs[0].wait_ended(), 2)
    assert ended.by_remote and ended.status == 487 and ended.reason == "cancelled"


async def test_endpoint_digest_caller(tmp_path: Path, start_server: StartServer) -> None:
    # No trusted trunk address: the caller must authenticate as endpoint alice (407).
    server: Server = await start_server(make_config(trunks=()), demo_hangup=None)
    uac = Sipp(
        scenario("uac_auth"),
        remote=sip_address(server),
        workdir=tmp_path,
        timeout=10,
        auth_user="alice",
        auth_password="alice-secret",
    )
    (await uac.run()).check(calls=1)
    assert "SIP/2.0 407 Proxy Authentication Required" in uac.messages
    assert server.guard is not None and server.guard.stats.endpoint == 1


async def test_wrong_password_is_forbidden(tmp_path: Path, start_server: StartServer) -> None:
    server: Server = await start_server(make_config(trunks=()), demo_hangup=None)
    uac = Sipp(
        scenario("uac_auth"),
        remote=sip_address(server),
        workdir=tmp_path,
        timeout=5,
        auth_user="alice",
        auth_password="wrong",
    )
    result = await uac.run()
    assert result.failed == 1 and result.successful == 0
    assert "SIP/2.0 403 Forbidden" in uac.messages
    assert server.guard is not None and server.guard.stats.forbidden == 1


async def test_hold_and_resume_reinvite(tmp_path: Path, start_server: StartServer) -> None:
    server: Server = await start_server(demo_hangup=None)
    assert server.legs is not None and server.demo is not None
    events: list[LegEvent] = []
    demo = server.demo

    def answer(leg: InboundLeg) -> None:
        demo(leg)
        asyncio.get_running_loop().create_task(_collect(leg, events))

    server.legs.on_inbound = answer
    uac = Sipp(scenario("uac_hold"), remote=sip_address(server), workdir=tmp_path, timeout=10)
    (await uac.run()).check(calls=1)
    await asyncio.sleep(0.05)
    reinvites = [e for e in events if isinstance(e, ReInvite)]
    assert len(reinvites) == 2
    assert reinvites[0].answer is not None and b"a=recvonly" in reinvites[0].answer
    assert reinvites[1].answer is not None and b"a=sendrecv" in reinvites[1].answer


async def test_info_dtmf(tmp_path: Path, start_server: StartServer) -> None:
    server: Server = await start_server(demo_hangup=None)
    assert server.legs is not None and server.demo is not None
    events: list[LegEvent] = []
    demo = server.demo

    def answer(leg: InboundLeg) -> None:
        demo(leg)
        asyncio.get_running_loop().create_task(_collect(leg, events))

    server.legs.on_inbound = answer
    uac = Sipp(scenario("uac_info_dtmf"), remote=sip_address(server), workdir=tmp_path, timeout=10)
    (await uac.run()).check(calls=1)
    await asyncio.sleep(0.05)
    assert [e for e in events if isinstance(e, InfoDtmf)] == [InfoDtmf("5", 160)]


async def _collect(leg: InboundLeg, events: list[LegEvent]) -> None:
    while True:
        event = await leg.events.get()
        events.append(event)
        if type(event).__name__ == "Ended":
            return


async def test_malformed_in_dialog_requests(tmp_path: Path, start_server: StartServer) -> None:
    server: Server = await start_server(demo_hangup=None)
    uac = Sipp(scenario("uac_malformed_in_dialog"), remote=sip_address(server), workdir=tmp_path, timeout=10)
    result = (await uac.run()).check(calls=1)
    for status in ("481", "500", "400", "483", "420"):
        assert result.row(status, direction="recv").messages == 1, status
    assert server.core is not None and server.core.stats.internal_errors == 0
    assert server.core.stats.parse_errors == 1  # the CSeq "twelve" request
