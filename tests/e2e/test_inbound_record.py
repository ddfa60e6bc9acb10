"""E2E: ``<Record>`` of a caller playing a tone; the recording is downloadable and holds the tone."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile
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
from tests.e2e.test_inbound_say_play import sipp_caller
from tests.media.rtp_phone import Phone
from tests.peers import audio
from trunkline.gateway.server import Server

pytestmark = [requires_sipp, pytest.mark.timeout(60)]

TONE_HZ = 440.0


def rtp_port_of(server: Server, call_sid: str) -> int:
    assert server.switch is not None
    channel = server.switch.calls[call_sid].channel
    assert channel is not None
    return channel.stream.local_port


async def test_record_tone_then_download(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.record(
            action="/recorded",
            timeout=3,
            max_length=10,
            recording_status_callback="/recstatus",
        )
        return twiml(response)

    def recorded(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.hangup()
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/recorded", recorded)
    customer_app.route("/recstatus", lambda r: web.Response(status=204))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    loop = asyncio.get_running_loop()
    phone = Phone(loop)

    async def speak() -> None:
        (first,) = await customer_app.wait_for("/voice")
        await asyncio.sleep(0.2)
        port = rtp_port_of(server, first.form["CallSid"])
        await asyncio.sleep(0.8)  # the beep plays first
        pcm = np.concatenate([audio.tone(TONE_HZ, 2.0, 8000, level_dbfs=-8.0), np.zeros(8000 * 5, np.int16)])
        await phone.send_paced(phone.audio_packets(pcm), ("127.0.0.1", port))

    speaker = loop.create_task(speak())
    try:
        result = await sipp_caller(tmp_path, sip_address(server), phone.port).run()
    finally:
        speaker.cancel()
        phone.close()
    result.check(calls=1)

    (action,) = await customer_app.wait_for("/recorded")
    assert action.signature_valid()
    form = action.form
    assert form["RecordingSid"].startswith("RE")
    duration = int(form["RecordingDuration"])
    assert 1 <= duration <= 6, duration
    assert form["RecordingUrl"].endswith(f"/Recordings/{form['RecordingSid']}")
    assert "Digits" not in form or form["Digits"] == ""

    (status,) = await customer_app.wait_for("/recstatus")
    assert status.form["RecordingStatus"] == "completed"
    assert status.form["RecordingSid"] == form["RecordingSid"]
    assert status.signature_valid()

    async with aiohttp.ClientSession() as session, session.get(form["RecordingUrl"]) as response:
        assert response.status == 200
        data = await response.read()
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    assert rate == 8000
    assert abs(samples.size / rate - float(duration)) < 1.0
    assert abs(audio.dominant_frequency(samples, rate) - TONE_HZ) < 15
