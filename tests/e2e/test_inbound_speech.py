"""E2E: ``<Gather input="speech" hints=...>``: the caller says a menu word, the app gets ``SpeechResult``."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
from aiohttp import web
from twilio.twiml.voice_response import Gather, VoiceResponse

from tests.e2e.conftest import (
    AppRequest,
    CustomerApp,
    StartTrunkline,
    e2e_config,
    requires_sipp,
    sip_address,
    twiml,
)
from tests.e2e.test_inbound_record import rtp_port_of
from tests.e2e.test_inbound_say_play import sipp_caller
from tests.media.rtp_phone import Phone
from trunkline.media.audiofile import resample_pcm

pytestmark = [
    requires_sipp,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs the espeak-ng command"),
    pytest.mark.timeout(60),
]


def spoken(tmp_path: Path, text: str) -> np.ndarray:
    wav = tmp_path / "said.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, timeout=30)
    pcm, rate = soundfile.read(wav, dtype="int16")
    return np.asarray(resample_pcm(pcm, rate, 8000), dtype=np.int16)


async def test_gather_speech_with_hints(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.append(
            Gather(input="speech", action="/speech", hints="sales, customer support, billing", timeout=5)
        )
        response.say("Nothing heard.")
        return twiml(response)

    def heard(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.hangup()
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/speech", heard)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    loop = asyncio.get_running_loop()
    phone = Phone(loop)
    speech = spoken(tmp_path, "billing")

    async def say() -> None:
        (first,) = await customer_app.wait_for("/voice")
        await asyncio.sleep(0.3)
        port = rtp_port_of(server, first.form["CallSid"])
        pcm = np.concatenate([np.zeros(4000, np.int16), speech, np.zeros(8000 * 3, np.int16)])
        await phone.send_paced(phone.audio_packets(pcm), ("127.0.0.1", port))

    speaker = loop.create_task(say())
    try:
        result = await sipp_caller(tmp_path, sip_address(server), phone.port).run()
    finally:
        speaker.cancel()
        phone.close()
    result.check(calls=1)
    (action,) = await customer_app.wait_for("/speech")
    assert action.form["SpeechResult"] == "billing"
    assert 0.0 < float(action.form["Confidence"]) <= 1.0
