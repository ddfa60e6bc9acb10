"""pjsua2 as a local endpoint: registers with digest, calls in (407 challenge), is called."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.interop.conftest import LOOPBACK, StartServer, make_config, sip_address
from trunkline.gateway.server import Server
from trunkline.gateway.sip.sdp import LocalMedia, build_offer
from trunkline.gateway.sip.uri import SipUri

pjsua2 = pytest.importorskip("pjsua2")
from tests.peers.pjsua_phone import PjsuaPhone  # noqa: E402

pytestmark = [pytest.mark.timeout(60)]


async def test_phone_registers_and_calls_in(tmp_path: Path, start_server: StartServer) -> None:
    server: Server = await start_server(make_config(trunks=()), demo_hangup=1.0)
    async with PjsuaPhone(workdir=tmp_path, name="alice") as phone:
        reg = await phone.register(sip_address(server), "alice", "alice-secret")
        assert reg is not None and int(reg["code"]) == 200
        loop = asyncio.get_running_loop()
        bindings = server.location.lookup("alice", loop.time())
        assert len(bindings) == 1 and bindings[0].contact.port == phone.port
        await phone.call(f"sip:+15551230000@{sip_address(server)}")
        await phone.wait_for("call_state", state="CONFIRMED")
        # The demo handler hangs up after 1 s: the phone sees our BYE.
        await phone.wait_for("call_state", state="DISCONNECTED", timeout=5)
    assert server.guard is not None and server.guard.stats.endpoint == 1
    assert server.guard.stats.challenged >= 1


async def test_phone_is_called_at_its_registered_contact(tmp_path: Path, start_server: StartServer) -> None:
    server: Server = await start_server(make_config(trunks=()))
    async with PjsuaPhone(workdir=tmp_path, name="alice", auto_answer=200) as phone:
        await phone.register(sip_address(server), "alice", "alice-secret")
        loop = asyncio.get_running_loop()
        binding = server.location.lookup("alice", loop.time())[0]
        assert server.legs is not None
        offer = build_offer(LocalMedia(LOOPBACK, 30200)).serialize()
        leg = server.legs.call(
            binding.contact,
            binding.source,
            from_uri=SipUri("sip", "+15550001111", None, LOOPBACK),
            sdp_offer=offer,
        )
        assert await asyncio.wait_for(leg.wait_answer(), 10) == 200
        await phone.wait_for("call_state", state="CONFIRMED")
        leg.hangup()
        event = await phone.wait_for("call_state", state="DISCONNECTED")
        assert event["state"] == "DISCONNECTED"
        ended = await leg.wait_ended()
        assert not ended.by_remote
