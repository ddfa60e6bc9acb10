"""E2E: SIPp calls Trunkline, the customer's app answers ``<Say>`` + ``<Play>``, Trunkline hangs up."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from tests.e2e.conftest import (
    ACCOUNT,
    NUMBER,
    AppRequest,
    CustomerApp,
    StartTrunkline,
    e2e_config,
    requires_sipp,
    sip_address,
    twiml,
)
from tests.media.rtp_phone import Phone
from tests.peers import audio
from tests.peers.sipp import Sipp, derive_scenario
from trunkline.gateway.store import Filter

pytestmark = [requires_sipp, pytest.mark.timeout(60)]

TONE_HZ = 1000.0


def tone_wav() -> bytes:
    out = io.BytesIO()
    import soundfile

    soundfile.write(
        out, audio.tone(TONE_HZ, 1.0, 8000, level_dbfs=-6.0), 8000, format="WAV", subtype="PCM_16"
    )
    return out.getvalue()


def sipp_caller(tmp_path: Path, server_sip: str, media_port: int, name: str = "caller") -> Sipp:
    """SIPp UAC that waits for our BYE; its SDP points the audio at ``media_port`` (a test Phone)."""
    path = derive_scenario(
        "uac_bye_from_remote",
        tmp_path,
        {"m=audio [media_port] RTP/AVP 0 101": f"m=audio {media_port} RTP/AVP 0 101"},
        name=name,
    )
    return Sipp(path, remote=server_sip, workdir=tmp_path, service=NUMBER, timeout=20)


def windows(samples: np.ndarray, size: int = 4000, step: int = 800) -> list[np.ndarray]:
    return [samples[i : i + size] for i in range(0, max(1, samples.size - size), step)]


async def test_say_then_play_then_hangup(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    wav = tone_wav()

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say("Hello from Trunkline. This is a test of speech.")
        response.play(customer_app.url("/tone.wav"))
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/tone.wav", lambda r: web.Response(body=wav, content_type="audio/wav"))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    phone = Phone(asyncio.get_running_loop())
    try:
        result = await sipp_caller(tmp_path, sip_address(server), phone.port).run()
    finally:
        phone.close()
    result.check(calls=1)  # 200 OK, then our BYE answered
    assert result.row("BYE", direction="recv").messages == 1

    (webhook,) = customer_app.to("/voice")
    assert webhook.method == "POST"
    assert webhook.signature_valid(), "X-Twilio-Signature does not validate"
    form = webhook.form
    assert form["AccountSid"] == ACCOUNT.sid
    assert form["CallSid"].startswith("CA") and len(form["CallSid"]) == 34
    assert form["To"] == NUMBER and form["Called"] == NUMBER
    assert form["From"] == "sip:sipp@127.0.0.1"
    assert form["Direction"] == "inbound" and form["CallStatus"] == "ringing"
    assert form["ApiVersion"] == "2010-04-01"

    heard = phone.audio_from(0)
    assert heard.size > 8000, "no audio reached the caller"
    tone_windows = [
        i for i, w in enumerate(windows(heard)) if audio.contains_tone(w, 8000, TONE_HZ, min_fraction=0.8)
    ]
    assert tone_windows, "the <Play> WAV's tone was not heard"
    before_tone = heard[: tone_windows[0] * 800]
    assert audio.rms_dbfs(before_tone) > -45, "no speech energy before the tone"
    assert not audio.contains_tone(before_tone, 8000, TONE_HZ, min_fraction=0.5)

    records = (await server.store.select("calls", [Filter("sid", "=", form["CallSid"])])).records
    for _ in range(50):
        records = (await server.store.select("calls", [Filter("sid", "=", form["CallSid"])])).records
        if records and records[0]["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert records[0]["status"] == "completed"
    assert records[0]["direction"] == "inbound"
    assert int(records[0]["duration"]) >= 2
