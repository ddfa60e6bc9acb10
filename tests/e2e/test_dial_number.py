"""E2E: ``<Dial><Number>`` through an outbound trunk (a SIPp UAS): sendDigits, whisper, status callbacks."""

from __future__ import annotations

import asyncio
import dataclasses
import struct
from pathlib import Path

import pytest
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from tests.e2e.conftest import (
    AppRequest,
    CustomerApp,
    StartTrunkline,
    e2e_config,
    requires_sipp,
    sip_address,
    twiml,
)
from tests.e2e.test_dial import callee, child_records, hangup
from tests.e2e.test_inbound_say_play import sipp_caller
from tests.media.rtp_phone import Phone
from trunkline.gateway.config import Trunk
from trunkline.gateway.switch import dial as dial_module

pytestmark = [requires_sipp, pytest.mark.timeout(60)]

CALLEE_NUMBER = "+15550009999"
EVENTS = "initiated ringing answered completed"


async def test_dial_number_via_trunk(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        dial = response.dial(action="/dialed", caller_id="+15550001234")
        dial.number(
            CALLEE_NUMBER,
            send_digits="1w2",
            url="/whisper",
            status_callback="/child-status",
            status_callback_event=EVENTS,
        )
        return twiml(response)

    def whisper(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.pause(length=1)
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/whisper", whisper)
    customer_app.route("/dialed", hangup)
    customer_app.route("/child-status", lambda r: web.Response(status=204))
    loop = asyncio.get_running_loop()
    caller_phone, callee_phone = Phone(loop), Phone(loop)
    uas = callee(tmp_path, callee_phone.port, hold_ms=3000)
    config = e2e_config(tmp_path, voice_url=customer_app.url("/voice"))
    carrier = Trunk("carrier", "127.0.0.1", port=uas.local_port, outbound=True)
    config = dataclasses.replace(config, trunks=(*config.trunks, carrier))
    server = await trunkline(config)
    assert server.switch is not None
    dial_module.install(server.switch, trunks=server.trunks, location=server.location)
    try:
        async with uas:
            result = await sipp_caller(tmp_path, sip_address(server), caller_phone.port).run()
        result.check(calls=1)
        assert uas.result is not None
        uas.result.check(calls=1)
    finally:
        caller_phone.close()
        callee_phone.close()

    invite = (tmp_path / next(p.name for p in tmp_path.glob("callee-*.messages.log"))).read_text()
    assert f"INVITE sip:{CALLEE_NUMBER}@127.0.0.1:{uas.local_port}" in invite
    assert "From: <sip:+15550001234@" in invite

    # sendDigits reached the callee as RFC 4733 events: 1, then 2 after the 'w' pause.
    events = [r.packet for r in callee_phone.received if r.packet.payload_type == 101]
    digits = []
    for packet in events:
        event, flags, _ = struct.unpack("!BBH", packet.payload[:4])
        if flags & 0x80 and (not digits or digits[-1][1] != packet.timestamp):
            digits.append(("0123456789*#"[event], packet.timestamp))
    assert [d for d, _ in digits] == ["1", "2"]

    (whisper_request,) = customer_app.to("/whisper")
    (voice_request,) = customer_app.to("/voice")
    form = whisper_request.form
    assert form["Direction"] == "outbound-dial"
    assert form["ParentCallSid"] == voice_request.form["CallSid"]
    assert form["To"] == CALLEE_NUMBER and form["From"] == "+15550001234"
    assert whisper_request.signature_valid()

    (action,) = await customer_app.wait_for("/dialed")
    assert action.form["DialCallStatus"] == "completed" and action.form["DialBridged"] == "true"
    assert "DialSipResponseCode" not in action.form
    callbacks = await customer_app.wait_for("/child-status", count=4)
    ordered = sorted(callbacks, key=lambda c: int(c.form["SequenceNumber"]))
    assert [c.form["StatusCallbackEvent"] for c in ordered] == EVENTS.split()
    assert all(c.form["CallSid"] == action.form["DialCallSid"] for c in ordered)
    assert ordered[-1].form["CallStatus"] == "completed"
    assert ordered[-1].form["ParentCallSid"] == voice_request.form["CallSid"]
    (child,) = await child_records(server, voice_request.form["CallSid"])
    assert child["to"] == CALLEE_NUMBER
