"""E2E: a broken TwiML document and a failing webhook, as the caller and the account's debugger see them."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from tests.e2e.conftest import (
    ACCOUNT,
    AppRequest,
    CustomerApp,
    StartTrunkline,
    e2e_config,
    http_base,
    requires_sipp,
    sip_address,
    twiml,
)
from tests.e2e.test_inbound_say_play import sipp_caller
from tests.media.rtp_phone import Phone
from tests.peers import audio
from trunkline.gateway.server import Server

pytestmark = [requires_sipp, pytest.mark.timeout(60)]


async def notifications(server: Server) -> list[dict[str, Any]]:
    url = f"{http_base(server)}/2010-04-01/Accounts/{ACCOUNT.sid}/Notifications.json"
    token = base64.b64encode(f"{ACCOUNT.sid}:{ACCOUNT.auth_token}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        assert response.status == 200
        body = await response.json()
    records: list[dict[str, Any]] = body["notifications"]
    return records


async def test_broken_twiml_plays_error_prompt_and_is_reported(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    customer_app.route(
        "/voice", lambda r: web.Response(text="<Response><Say>unclosed", content_type="text/xml")
    )
    customer_app.route("/debugger", lambda r: web.Response(status=204))
    config = e2e_config(
        tmp_path, voice_url=customer_app.url("/voice"), debugger_webhook=customer_app.url("/debugger")
    )
    server = await trunkline(config)
    phone = Phone(asyncio.get_running_loop())
    try:
        result = await sipp_caller(tmp_path, sip_address(server), phone.port).run()
    finally:
        phone.close()
    result.check(calls=1)  # answered, then BYE from us after the prompt
    heard = phone.audio_from(0)
    assert heard.size > 8000 * 2, "the application-error prompt was not played"
    assert audio.rms_dbfs(heard) > -45

    (webhook,) = customer_app.to("/voice")
    found = await notifications(server)
    assert [n["error_code"] for n in found] == ["12100"]
    assert found[0]["call_sid"] == webhook.form["CallSid"]
    assert found[0]["log"] == "0"
    assert found[0]["request_url"] == customer_app.url("/voice")

    (debugger,) = await customer_app.wait_for("/debugger")
    assert debugger.signature_valid()
    assert debugger.form["Level"] == "ERROR"
    payload = json.loads(debugger.form["Payload"])
    assert payload["error_code"] == "12100" and payload["resource_sid"] == webhook.form["CallSid"]


async def test_webhook_500_uses_fallback_url(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def fallback(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say("This is the fallback.")
        return twiml(response)

    customer_app.route("/voice", lambda r: web.Response(status=500, text="boom"))
    customer_app.route("/fallback", fallback)
    config = e2e_config(
        tmp_path, voice_url=customer_app.url("/voice"), fallback_url=customer_app.url("/fallback")
    )
    server = await trunkline(config)
    phone = Phone(asyncio.get_running_loop())
    try:
        result = await sipp_caller(tmp_path, sip_address(server), phone.port).run()
    finally:
        phone.close()
    result.check(calls=1)
    (primary,) = customer_app.to("/voice")
    (second,) = customer_app.to("/fallback")
    assert second.signature_valid()
    assert second.form["ErrorCode"] == "11200"
    assert second.form["ErrorUrl"] == customer_app.url("/voice")
    assert second.form["CallSid"] == primary.form["CallSid"]
    assert audio.rms_dbfs(phone.audio_from(0)) > -45  # the fallback's <Say> was heard
    assert [n["error_code"] for n in await notifications(server)] == ["11200"]
