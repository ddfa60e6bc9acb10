"""E2E: the built-in demo app (the default of ``trunkline serve``) with a pjsua2 caller: press 1, echo."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from tests.e2e.conftest import NUMBER, e2e_config, sip_address
from tests.peers import audio
from tests.peers.pjsua_phone import PjsuaPhone
from trunkline.gateway.server import Server
from trunkline.gateway.store import Filter

pytestmark = [pytest.mark.timeout(90)]


async def test_demo_app_echoes_digits(tmp_path: Path) -> None:
    server = Server(e2e_config(tmp_path, voice_url=None))
    seen: list[tuple[str, dict[str, str]]] = []

    async def remember(request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith("/demo/"):
            form = await request.post() if request.method == "POST" else request.query
            seen.append((request.path, {k: str(v) for k, v in form.items()}))

    server.app.on_response_prepare.append(remember)
    await server.start()

    async def demo_request(path: str, timeout: float = 15.0) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            for p, form in seen:
                if p == path:
                    return form
            await asyncio.sleep(0.05)
        raise AssertionError(f"the demo app never got {path}; saw {[p for p, _ in seen]}")

    try:
        async with PjsuaPhone(workdir=tmp_path, name="caller") as phone:
            call = await phone.call(f"sip:{NUMBER}@{sip_address(server)}")
            await phone.wait_for("call_state", state="CONFIRMED")
            await phone.record_to(tmp_path / "heard.wav", call=call)
            first = await demo_request("/demo/voice")
            await asyncio.sleep(1.0)
            await phone.send_dtmf("1", call=call)
            menu = await demo_request("/demo/menu")
            await asyncio.sleep(3.0)  # "Type some digits, then press pound." (not barge-in-able)
            await phone.send_dtmf("42#", call=call)
            echo = await demo_request("/demo/echo")
            await asyncio.sleep(2.5)  # "You typed 4 2."
            await phone.hangup(call=call)
            await phone.wait_for("call_state", state="DISCONNECTED")
            await phone.finished_wav(tmp_path / "heard.wav")
        assert first["Direction"] == "inbound" and first["To"] == NUMBER
        assert menu["Digits"] == "1"
        assert echo["Digits"] == "42" and echo["FinishedOnKey"] == "#"
        heard, rate = audio.read_wav(tmp_path / "heard.wav")
        assert heard.size > rate * 3
        assert audio.rms_dbfs(heard) > -40, "the caller heard no prompts"

        sid = first["CallSid"]
        for _ in range(60):
            records = (await server.store.select("calls", [Filter("sid", "=", sid)])).records
            if records and records[0]["status"] == "completed":
                break
            await asyncio.sleep(0.05)
        assert records[0]["status"] == "completed"
        assert (await server.store.select("notifications", [Filter("call_sid", "=", sid)])).records == []
    finally:
        await server.stop()
