# ruff: noqa: F811  (pytest fixtures imported from tests.e2e.conftest are redefined as parameters)
"""Many short TwiML calls in a row: every one answered, hung up by us, stored completed, nothing leaks."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web

from tests.e2e.conftest import (  # noqa: F401 (fixtures)
    NUMBER,
    AppRequest,
    CustomerApp,
    StartTrunkline,
    _in_tmp,
    customer_app,
    e2e_config,
    requires_sipp,
    sip_address,
    trunkline,
)
from tests.peers.sipp import Sipp, scenario
from trunkline.gateway.store import Filter

pytestmark = [requires_sipp, pytest.mark.timeout(90)]

CALLS = 60


async def test_sixty_calls_at_30_cps(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    document = '<?xml version="1.0"?><Response><Pause length="1"/><Hangup/></Response>'

    def voice(request: AppRequest) -> web.Response:
        return web.Response(text=document, content_type="text/xml")

    customer_app.route("/voice", voice)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    uac = Sipp(
        scenario("uac_bye_from_remote"),
        remote=sip_address(server),
        workdir=tmp_path,
        service=NUMBER,
        calls=CALLS,
        rate=30,
        limit=CALLS,
        timeout=40,
    )
    started = time.perf_counter()
    result = await uac.run()
    elapsed = time.perf_counter() - started
    result.check(calls=CALLS)
    assert len(customer_app.to("/voice")) == CALLS
    for _ in range(100):
        if server.switch is not None and not server.switch.calls:
            break
        await asyncio.sleep(0.05)
    assert server.switch is not None and server.switch.calls == {}
    assert server.engine is not None and server.engine.streams == []
    page = await server.store.select("calls", [Filter("status", "=", "completed")], limit=1000)
    assert len(page.records) == CALLS
    assert elapsed < 30, f"{CALLS} calls took {elapsed:.1f} s"
