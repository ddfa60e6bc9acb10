"""E2E: ``<Dial><Client>`` rings a pjsua2 phone registered as a local endpoint and bridges it."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from tests.e2e.conftest import (
    ACCOUNT,
    AppRequest,
    CustomerApp,
    StartTrunkline,
    e2e_config,
    requires_sipp,
    sip_address,
    twiml,
)
from tests.e2e.test_dial import CALLER_HZ, caller_port, child_records, hangup, talk
from tests.e2e.test_inbound_say_play import sipp_caller
from tests.media.rtp_phone import Phone
from tests.peers import audio
from trunkline.gateway.config import Endpoint
from trunkline.gateway.switch import dial as dial_module

pjsua2 = pytest.importorskip("pjsua2")
from tests.peers.pjsua_phone import PjsuaPhone  # noqa: E402

pytestmark = [requires_sipp, pytest.mark.timeout(60)]


async def test_dial_client_rings_registered_phone(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        dial = response.dial(action="/dialed", timeout=10)
        dial.client("alice")
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/dialed", hangup)
    config = e2e_config(tmp_path, voice_url=customer_app.url("/voice"))
    config = dataclasses.replace(config, endpoints=(Endpoint("alice", "alice-secret", ACCOUNT.sid),))
    server = await trunkline(config)
    assert server.switch is not None
    dial_module.install(server.switch, trunks=server.trunks, location=server.location)
    loop = asyncio.get_running_loop()
    caller_phone = Phone(loop)
    heard_wav = tmp_path / "alice-heard.wav"
    try:
        async with PjsuaPhone(workdir=tmp_path, name="alice", auto_answer=200) as alice:
            reg = await alice.register(sip_address(server), "alice", "alice-secret")
            assert reg is not None and int(reg["code"]) == 200
            talker = loop.create_task(
                talk(caller_phone, CALLER_HZ, 5.0, lambda: caller_port(server, customer_app))
            )
            caller = loop.create_task(sipp_caller(tmp_path, sip_address(server), caller_phone.port).run())
            incoming = await alice.wait_for("incoming_call", timeout=15)
            assert "client:alice" not in incoming["remote_uri"]
            await alice.wait_for("call_state", state="CONFIRMED", timeout=10)
            await alice.record_to(heard_wav)
            await asyncio.sleep(2.5)
            await alice.hangup()
            await alice.wait_for("call_state", state="DISCONNECTED", timeout=10)
            await alice.finished_wav(heard_wav)
            result = await caller
            talker.cancel()
    finally:
        caller_phone.close()
    result.check(calls=1)
    samples, rate = audio.read_wav(heard_wav)
    assert audio.contains_tone(samples[rate // 2 :], rate, CALLER_HZ, min_fraction=0.5), (
        "alice did not hear the caller"
    )

    (action,) = await customer_app.wait_for("/dialed")
    assert action.form["DialCallStatus"] == "completed"
    assert action.form["DialBridged"] == "true"
    assert "DialSipResponseCode" not in action.form
    (voice_request,) = customer_app.to("/voice")
    (child,) = await child_records(server, voice_request.form["CallSid"])
    assert child["to"] == "client:alice" and child["direction"] == "outbound-dial"
    assert child["sid"] == action.form["DialCallSid"] and child["status"] == "completed"


async def test_dial_unregistered_client_is_no_answer(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        dial = response.dial(action="/dialed", timeout=5)
        dial.client("bob")
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/dialed", hangup)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    assert server.switch is not None
    dial_module.install(server.switch, trunks=server.trunks, location=server.location)
    phone = Phone(asyncio.get_running_loop())
    try:
        result = await sipp_caller(tmp_path, sip_address(server), phone.port).run()
    finally:
        phone.close()
    result.check(calls=1)
    (action,) = await customer_app.wait_for("/dialed")
    assert action.form["DialCallStatus"] == "no-answer"
