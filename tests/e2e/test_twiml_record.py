"""E2E audit of ``<Record>`` against https://www.twilio.com/docs/voice/twiml/record.

* ``maxLength`` caps the recording; ``timeout`` ends it after that many seconds of silence;
* ``finishOnKey`` (default: any key) ends it and the key is posted as ``Digits``; a hangup posts
  ``Digits=hangup`` (and the answer is ignored);
* ``playBeep`` (default true) plays a beep before recording starts;
* ``trim="trim-silence"`` (default) removes leading and trailing silence, ``do-not-trim`` keeps it;
* the action gets ``RecordingUrl``, ``RecordingSid``, ``RecordingDuration``; the media is served
  at ``RecordingUrl`` as WAV and, with ``.mp3`` appended, as MP3;
* ``recordingStatusCallback`` (+ ``Method``) is requested when the recording is completed.

The caller is SIPp (signalling) plus a test RTP phone that speaks a 440 Hz tone (the record beep is
1000 Hz) and sends RFC 4733 events.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import aiohttp
import av
import numpy as np
import numpy.typing as npt
import pytest
import soundfile
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from tests.e2e.conftest import (
    CustomerApp,
    StartTrunkline,
    e2e_config,
    requires_sipp,
    sip_address,
    twiml,
)
from tests.e2e.test_inbound_say_play import sipp_caller
from tests.e2e.test_twiml_play import (
    audio_frames,
    hanging_up_caller,
    hangup_twiml,
    rtp_port_of,
    run_call,
    runs,
    send_rfc4733,
    signed,
    tone_mask,
)
from tests.media.rtp_phone import Phone
from tests.peers import audio
from trunkline.gateway.server import Server

pytestmark = [requires_sipp, pytest.mark.timeout(60)]

VOICE_HZ = 440.0
BEEP_HZ = 1000.0


def caller_audio(tone_s: float, *, lead_s: float = 0.0, tail_s: float = 6.0) -> npt.NDArray[np.int16]:
    """What the caller "says": ``lead_s`` of silence, a 440 Hz tone, then ``tail_s`` of silence."""
    return np.concatenate(
        [
            np.zeros(int(8000 * lead_s), np.int16),
            audio.tone(VOICE_HZ, tone_s, 8000, level_dbfs=-8.0),
            np.zeros(int(8000 * tail_s), np.int16),
        ]
    )


async def speak(
    customer_app: CustomerApp,
    server: Server,
    phone: Phone,
    pcm: npt.NDArray[np.int16],
    *,
    delay: float = 1.0,
    digits: str = "",
    digits_at: float = 0.0,
) -> None:
    """Once the call is up (and the beep is over), send ``pcm``; ``digits`` ``digits_at`` s later."""
    (first,) = await customer_app.wait_for("/voice")
    await asyncio.sleep(delay)
    port = rtp_port_of(server, first.form["CallSid"])
    dest = ("127.0.0.1", port)
    talking = asyncio.get_running_loop().create_task(phone.send_paced(phone.audio_packets(pcm), dest))
    if digits:
        await asyncio.sleep(digits_at)
        await send_rfc4733(phone, digits, dest)
    await talking


async def record_call(
    tmp_path: Path,
    customer_app: CustomerApp,
    trunkline: StartTrunkline,
    response: VoiceResponse,
    pcm: npt.NDArray[np.int16],
    *,
    hangup_ms: int | None = None,
    **speak_args: object,
) -> tuple[Server, Phone]:
    """One call running ``response``; the caller sends ``pcm`` (and maybe hangs up)."""
    customer_app.route("/voice", lambda r: twiml(response))
    customer_app.route("/recorded", lambda r: hangup_twiml())
    customer_app.route("/after", lambda r: hangup_twiml())
    customer_app.route("/recstatus", lambda r: web.Response(status=204))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    phone = Phone(asyncio.get_running_loop())
    if hangup_ms is None:
        sipp = sipp_caller(tmp_path, sip_address(server), phone.port)
    else:
        sipp = hanging_up_caller(tmp_path, sip_address(server), phone.port, hangup_ms)
    talk = speak(customer_app, server, phone, pcm, **speak_args)  # type: ignore[arg-type]
    result = await run_call(sipp, phone, [talk])
    result.check(calls=1)
    return server, phone


def first_channel(frame: av.AudioFrame) -> npt.NDArray[np.generic]:
    """Channel 0 of a decoded audio frame, planar or packed."""
    samples = frame.to_ndarray()
    if frame.format.is_planar:
        return np.asarray(samples[0])
    return np.asarray(samples.reshape(-1, len(frame.layout.channels))[:, 0])


async def download(url: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.content_type, await response.read()


async def test_max_length_caps_the_recording(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``maxLength="2"`` while the caller talks for 6 s: a 2 s recording, action right after."""
    response = VoiceResponse()
    response.record(action="/recorded", max_length=2, timeout=5, play_beep=False)
    await record_call(tmp_path, customer_app, trunkline, response, caller_audio(6.0), delay=0.3)
    (action,) = await customer_app.wait_for("/recorded")
    assert signed(action)
    assert action.form["RecordingDuration"] == "2"
    (first,) = customer_app.to("/voice")
    assert 1.8 <= action.time - first.time < 4.0
    status, kind, data = await download(action.form["RecordingUrl"])
    assert status == 200 and kind in ("audio/wav", "audio/x-wav")
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    # at most maxLength; leading silence before the talk reached us is trimmed (trim-silence)
    assert rate == 8000 and 1.3 <= samples.size / rate <= 2.1
    assert abs(audio.dominant_frequency(samples, rate) - VOICE_HZ) < 15


async def test_silence_timeout_ends_the_recording(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``timeout="2"``: 1.5 s of talk then silence ends the recording ~2 s after the talk."""
    response = VoiceResponse()
    response.record(action="/recorded", timeout=2, max_length=20, play_beep=False)
    await record_call(tmp_path, customer_app, trunkline, response, caller_audio(1.5), delay=0.3)
    (action,) = await customer_app.wait_for("/recorded")
    (first,) = customer_app.to("/voice")
    # 0.3 s + 1.5 s of talk + 2 s of silence (VAD hangover allowed)
    assert 3.3 <= action.time - first.time < 6.0, action.time - first.time
    assert 1 <= int(action.form["RecordingDuration"]) <= 3  # trimmed: about the 1.5 s of talk
    assert "Digits" not in action.form or action.form["Digits"] == ""


@pytest.mark.parametrize("play_beep", [True, False])
async def test_play_beep(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline, play_beep: bool
) -> None:
    """The 1000 Hz beep before recording is heard by default and not with ``playBeep="false"``."""
    response = VoiceResponse()
    response.record(action="/recorded", timeout=2, max_length=3, play_beep=play_beep)
    _, phone = await record_call(tmp_path, customer_app, trunkline, response, caller_audio(1.0), delay=0.8)
    await customer_app.wait_for("/recorded")
    _, frames = audio_frames(phone)
    beeps = runs(tone_mask(frames, BEEP_HZ))
    if play_beep:
        assert len(beeps) == 1 and 20 <= beeps[0][1] <= 30, beeps  # one 0.5 s beep
        assert beeps[0][0] < 15  # at the start of the call
    else:
        assert beeps == []


@pytest.mark.parametrize(("trim", "low", "high"), [("trim-silence", 1, 2), ("do-not-trim", 5, 7)])
async def test_trim(
    tmp_path: Path,
    customer_app: CustomerApp,
    trunkline: StartTrunkline,
    trim: str,
    low: int,
    high: int,
) -> None:
    """2 s of silence, 1 s of talk, 3 s of silence: ``trim-silence`` keeps ~1 s, ``do-not-trim`` ~6 s."""
    response = VoiceResponse()
    response.record(action="/recorded", timeout=3, max_length=20, play_beep=False, trim=trim)
    await record_call(tmp_path, customer_app, trunkline, response, caller_audio(1.0, lead_s=2.0), delay=0.2)
    (action,) = await customer_app.wait_for("/recorded")
    duration = int(action.form["RecordingDuration"])
    assert low <= duration <= high, duration
    _, _, data = await download(action.form["RecordingUrl"])
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    assert abs(samples.size / rate - duration) < 1.0
    assert abs(audio.dominant_frequency(samples, rate) - VOICE_HZ) < 15


async def test_finish_on_key(tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline) -> None:
    """``finishOnKey="#"``: ``5`` does not stop the recording, ``#`` does and is posted as Digits."""
    response = VoiceResponse()
    response.record(action="/recorded", timeout=10, max_length=20, finish_on_key="#", play_beep=False)
    await record_call(
        tmp_path,
        customer_app,
        trunkline,
        response,
        caller_audio(4.0, tail_s=0.5),
        delay=0.2,
        digits="5#",
        digits_at=1.0,
    )
    (action,) = await customer_app.wait_for("/recorded")
    assert action.form["Digits"] == "#"
    (first,) = customer_app.to("/voice")
    assert action.time - first.time < 4.0  # ended by the key, not the 10 s silence timeout
    assert 1 <= int(action.form["RecordingDuration"]) <= 3


async def test_default_finish_on_key_any_digit(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """The default ``finishOnKey`` is every key: ``7`` ends the recording."""
    response = VoiceResponse()
    response.record(action="/recorded", timeout=10, max_length=20, play_beep=False)
    await record_call(
        tmp_path, customer_app, trunkline, response, caller_audio(4.0), delay=0.2, digits="7", digits_at=1.5
    )
    (action,) = await customer_app.wait_for("/recorded")
    assert action.form["Digits"] == "7"


async def test_hangup_posts_digits_hangup_and_serves_mp3(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """The caller hangs up mid-recording: the action still gets ``Digits=hangup``; WAV and MP3."""
    response = VoiceResponse()
    response.record(
        action="/recorded",
        method="GET",
        timeout=10,
        max_length=20,
        play_beep=False,
        recording_status_callback="/recstatus",
        recording_status_callback_method="GET",
        recording_status_callback_event="in-progress completed",
    )
    response.redirect("/after")
    await record_call(
        tmp_path, customer_app, trunkline, response, caller_audio(5.0), hangup_ms=3000, delay=0.2
    )
    (action,) = await customer_app.wait_for("/recorded")
    assert action.method == "GET" and signed(action)
    form = action.form
    assert form["Digits"] == "hangup"
    assert form["RecordingSid"].startswith("RE") and len(form["RecordingSid"]) == 34
    assert form["RecordingUrl"].endswith(f"/Recordings/{form['RecordingSid']}")
    assert 2 <= int(form["RecordingDuration"]) <= 4
    assert customer_app.to("/after") == []

    started, status = await customer_app.wait_for("/recstatus", count=2)
    assert started.form["RecordingStatus"] == "in-progress"
    assert started.form["RecordingSid"] == form["RecordingSid"]
    assert started.time <= action.time
    assert status.method == "GET" and signed(status)
    assert status.form["RecordingStatus"] == "completed"
    assert status.form["RecordingSid"] == form["RecordingSid"]
    assert status.form["RecordingUrl"] == form["RecordingUrl"]
    assert status.form["RecordingDuration"] == form["RecordingDuration"]

    code, kind, data = await download(form["RecordingUrl"] + ".mp3")
    assert code == 200 and kind == "audio/mpeg"
    with av.open(io.BytesIO(data), "r") as container:
        # first channel of each frame (planar or packed layouts alike)
        chunks = [first_channel(frame) for frame in container.decode(audio=0)]
        rate = container.streams.audio[0].rate
    pcm = np.concatenate(chunks)
    if pcm.dtype.kind == "f":
        pcm = (pcm * 32767).astype(np.int16)
    assert abs(pcm.size / rate - int(form["RecordingDuration"])) < 1.0
    assert abs(audio.dominant_frequency(pcm, rate) - VOICE_HZ) < 15


async def test_silent_caller_falls_through_and_reports_absent(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """Nothing said before ``timeout``: no action request, the next verb runs; status ``absent``."""
    response = VoiceResponse()
    response.record(
        action="/recorded",
        timeout=1,
        max_length=10,
        play_beep=False,
        recording_status_callback="/recstatus",
        recording_status_callback_event="in-progress completed absent",
    )
    response.redirect("/after")
    silence = np.zeros(8000 * 4, np.int16)
    await record_call(tmp_path, customer_app, trunkline, response, silence, delay=0.1)
    await customer_app.wait_for("/after")
    assert customer_app.to("/recorded") == []
    started, absent = await customer_app.wait_for("/recstatus", count=2)
    statuses = sorted([started.form["RecordingStatus"], absent.form["RecordingStatus"]])
    assert statuses == ["absent", "in-progress"]
    assert started.form["RecordingSid"] == absent.form["RecordingSid"]
    assert signed(absent)
