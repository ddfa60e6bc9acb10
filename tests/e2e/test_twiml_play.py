"""E2E audit of ``<Play>`` (loop, ``digits`` with ``w`` pauses), ``<Say loop="0">`` and ``<Pause>``.

Twilio's documented behaviour (https://www.twilio.com/docs/voice/twiml/play,
https://www.twilio.com/docs/voice/twiml/say, https://www.twilio.com/docs/voice/twiml/pause):

* ``loop`` plays the audio that many times; ``loop="0"`` repeats until the call is hung up;
* ``digits`` plays DTMF tones, ``w`` pausing 0.5 s before the next tone (``ww`` is one second);
* ``<Pause length="n">`` waits silently for ``n`` seconds (default 1).

The caller is SIPp for signalling and a test RTP phone (``tests.media.rtp_phone``) for media, which
decodes what it receives with the independent parsers of ``tests.peers``. This module also holds
the helpers the other ``test_twiml_*`` files share.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt
import pytest
import soundfile
from aiohttp import web
from twilio.request_validator import RequestValidator
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
from tests.e2e.test_inbound_say_play import sipp_caller
from tests.media.rtp_phone import Phone
from tests.peers import audio
from tests.peers.pcap import DtmfEvent
from tests.peers.sipp import Sipp, SippResult, derive_scenario
from trunkline.gateway.server import Server
from trunkline.gateway.store import Filter

pytestmark = [requires_sipp, pytest.mark.timeout(60)]

FIXTURES = Path(__file__).parent.parent / "fixtures" / "twiml"
TONE_HZ = 1000.0
TELEPHONE_EVENT = 101
FRAME = 160  # 20 ms at 8 kHz


# -- shared helpers --------------------------------------------------------------------------------


def hanging_up_caller(
    tmp_path: Path, server_sip: str, media_port: int, hangup_ms: int, name: str = "hangup"
) -> Sipp:
    """SIPp UAC that hangs up ``hangup_ms`` after its ACK; audio goes to ``media_port``."""
    path = derive_scenario(
        FIXTURES / "uac_hangup.xml",
        tmp_path,
        {
            "m=audio [media_port] RTP/AVP 0 101": f"m=audio {media_port} RTP/AVP 0 101",
            'pause milliseconds="HANGUP_MS"': f'pause milliseconds="{hangup_ms}"',
        },
        name=name,
    )
    return Sipp(path, remote=server_sip, workdir=tmp_path, service=NUMBER, timeout=25)


def rejected_caller(tmp_path: Path, server_sip: str, status: int) -> Sipp:
    """SIPp UAC that expects the final response ``status`` (a 200 fails the call)."""
    path = derive_scenario(
        FIXTURES / "uac_rejected.xml",
        tmp_path,
        {'response="FINAL_STATUS"': f'response="{status}"'},
        name=f"rejected_{status}",
    )
    return Sipp(path, remote=server_sip, workdir=tmp_path, service=NUMBER, timeout=15)


def tone_wav(seconds: float, silence: float = 0.0, freq: float = TONE_HZ) -> bytes:
    """A WAV of ``seconds`` of tone followed by ``silence`` seconds of silence."""
    pcm = np.concatenate(
        [audio.tone(freq, seconds, 8000, level_dbfs=-6.0), np.zeros(int(8000 * silence), np.int16)]
    )
    out = io.BytesIO()
    soundfile.write(out, pcm, 8000, format="WAV", subtype="PCM_16")
    return out.getvalue()


def rtp_port_of(server: Server, call_sid: str) -> int:
    """Trunkline's RTP port for the call (the phone sends its audio there)."""
    assert server.switch is not None
    channel = server.switch.calls[call_sid].channel
    assert channel is not None
    return channel.stream.local_port


def audio_frames(phone: Phone) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int16]]:
    """Arrival times and decoded 20 ms PCMU frames the phone received, in arrival order."""
    packets = [r for r in phone.received if r.packet.payload_type == 0 and len(r.packet.payload) == FRAME]
    times = np.array([r.time for r in packets], dtype=np.float64)
    if not packets:
        return times, np.zeros((0, FRAME), np.int16)
    pcm = audio.decode_pcmu(b"".join(r.packet.payload for r in packets))
    return times, pcm.reshape(-1, FRAME)


def tone_mask(
    frames: npt.NDArray[np.int16], freq: float = TONE_HZ, min_fraction: float = 0.6
) -> npt.NDArray[np.bool_]:
    """Per 20 ms frame: does ``freq`` hold most of a clearly audible frame's energy? (vectorised)"""
    x = frames.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(FRAME), axis=1)) ** 2
    freqs = np.fft.rfftfreq(FRAME, 1 / 8000)
    band = np.abs(freqs - freq) <= 75
    total = spectrum.sum(axis=1)
    share = np.divide(spectrum[:, band].sum(axis=1), total, out=np.zeros_like(total), where=total > 0)
    rms = np.sqrt((x * x).mean(axis=1))
    return np.asarray((share >= min_fraction) & (rms > 300), dtype=np.bool_)


def runs(mask: npt.NDArray[np.bool_], min_len: int = 3) -> list[tuple[int, int]]:
    """``(start, length)`` of each run of True at least ``min_len`` frames long."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return [(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True) if e - s >= min_len]


def received_events(phone: Phone) -> list[tuple[str, float, int]]:
    """RFC 4733 events the phone received: ``(digit, first packet time, RTP timestamp)`` each."""
    events: dict[int, tuple[str, float, int]] = {}
    for r in phone.received:
        if r.packet.payload_type != TELEPHONE_EVENT:
            continue
        event = DtmfEvent.parse(r.packet.payload)
        # RFC 4733 section 2.5.1.2: every packet of one event carries the event's start timestamp.
        events.setdefault(r.packet.timestamp, (event.digit, r.time, r.packet.timestamp))
    return sorted(events.values(), key=lambda e: e[1])


async def send_rfc4733(phone: Phone, digits: str, dest: tuple[str, int], gap: float = 0.3) -> None:
    """Send ``digits`` as RFC 4733 events (120 ms each, end packet sent three times)."""
    for digit in digits:
        code = "0123456789*#ABCD".index(digit)
        packets: list[bytes | None] = []
        durations = [160, 320, 480, 640, 800, 960]
        for i, duration in enumerate(durations):
            payload = bytes([code, 10]) + duration.to_bytes(2, "big")
            packets.append(phone.packet(payload, payload_type=TELEPHONE_EVENT, marker=i == 0, advance=0))
        end = bytes([code, 0x80 | 10]) + durations[-1].to_bytes(2, "big")
        for i in range(3):
            packets.append(
                phone.packet(end, payload_type=TELEPHONE_EVENT, advance=durations[-1] if i == 2 else 0)
            )
        await phone.send_paced(packets, dest)
        await asyncio.sleep(gap)


async def final_call(server: Server, call_sid: str, timeout: float = 5.0) -> dict[str, Any]:
    """The call's stored record once its status is final."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        records = (await server.store.select("calls", [Filter("sid", "=", call_sid)])).records
        if records and records[0]["status"] in ("completed", "busy", "no-answer", "failed", "canceled"):
            return dict(records[0])
        assert loop.time() < deadline, f"call {call_sid} did not end: {records}"
        await asyncio.sleep(0.05)


async def run_call(sipp: Sipp, phone: Phone, talk: Sequence[Coroutine[Any, Any, None]] = ()) -> SippResult:
    """Run ``sipp`` to its end with side tasks ``talk`` (coroutines), then close ``phone``."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(t) for t in talk]
    try:
        result = await sipp.run()
    finally:
        for task in tasks:
            task.cancel()
        phone.close()
    for task in tasks:
        error = task.exception() if task.done() and not task.cancelled() else None
        if error is not None:
            raise error  # a helper failed (an assertion in it, a socket error)
    return result


def signed(request: AppRequest) -> bool:
    """``X-Twilio-Signature`` checked by the twilio library, GET requests included.

    ``AppRequest.url`` of a GET is rebuilt from aiohttp's normalised ``path_qs`` (yarl decodes
    ``%3A`` to ``:``), which is not the URL Trunkline signed; the query is re-encoded here the way
    it went on the wire (``application/x-www-form-urlencoded``, like Twilio's).
    """
    if request.method != "GET":
        return request.signature_valid()
    url = request.url.split("?", 1)[0] + "?" + urlencode(list(request.form.items()))
    return bool(RequestValidator(ACCOUNT.auth_token).validate(url, {}, request.signature or ""))


def hangup_twiml() -> web.Response:
    """``<Response><Hangup/></Response>``."""
    response = VoiceResponse()
    response.hangup()
    return twiml(response)


# -- tests -----------------------------------------------------------------------------------------


async def test_play_digits_with_w_pauses_sends_rfc4733_events(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``<Play digits="1w2ww#">``: the far end gets one RFC 4733 event per key, 0.5 s per ``w``."""

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.play(digits="1w2ww#")
        response.pause(length=1)
        return twiml(response)

    customer_app.route("/voice", voice)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    phone = Phone(asyncio.get_running_loop())
    result = await run_call(sipp_caller(tmp_path, sip_address(server), phone.port), phone)
    result.check(calls=1)
    events = received_events(phone)
    assert [e[0] for e in events] == ["1", "2", "#"]
    gaps = np.diff([e[1] for e in events])
    # Each gap is the key's own tone plus its pauses: "w" adds 0.5 s, "ww" one second.
    assert gaps[1] - gaps[0] == pytest.approx(0.5, abs=0.2), gaps
    assert 0.5 <= gaps[0] < 1.3, gaps
    assert 1.0 <= gaps[1] < 1.8, gaps


async def test_play_loop_repeats_the_file(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``<Play loop="3">`` of 0.4 s of tone + 0.4 s of silence: three separate tone bursts."""
    wav = tone_wav(0.4, silence=0.4)

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.play(customer_app.url("/beep.wav"), loop=3)
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/beep.wav", lambda r: web.Response(body=wav, content_type="audio/wav"))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    phone = Phone(asyncio.get_running_loop())
    result = await run_call(sipp_caller(tmp_path, sip_address(server), phone.port), phone)
    result.check(calls=1)
    _, frames = audio_frames(phone)
    bursts = runs(tone_mask(frames))
    assert len(bursts) == 3, bursts
    assert all(15 <= length <= 25 for _, length in bursts), bursts  # 0.4 s = 20 frames each
    # The file (tone + silence) repeats back to back: bursts start 0.8 s = 40 frames apart.
    starts = [s for s, _ in bursts]
    assert all(abs(d - 40) <= 4 for d in np.diff(starts)), starts
    # Only Play fetches the audio; Twilio sends no call parameters to <Play> URLs.
    fetches = customer_app.to("/beep.wav")
    assert fetches and fetches[0].method == "GET" and "CallSid" not in fetches[0].form


async def test_say_loop_zero_repeats_until_the_caller_hangs_up(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``<Say loop="0">`` keeps speaking until the caller's BYE; the next verb never runs."""

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say("One.", loop=0)
        response.redirect("/never")
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/never", lambda r: twiml(VoiceResponse()))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    phone = Phone(asyncio.get_running_loop())
    result = await run_call(hanging_up_caller(tmp_path, sip_address(server), phone.port, 6000), phone)
    result.check(calls=1)  # the BYE was ours (the caller's): Trunkline never hung up
    assert customer_app.to("/never") == []
    times, frames = audio_frames(phone)
    assert times.size and times[-1] - times[0] > 5.0
    # "One." is well under a second, so six seconds of speech means it was repeated: speech energy
    # in every second of the call, with short silences between the repetitions.
    level = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    loud = level > 300
    per_second = loud[: loud.size // 50 * 50].reshape(-1, 50).any(axis=1)
    assert per_second.size >= 5 and per_second.all(), per_second
    assert len(runs(loud, min_len=5)) >= 4
    (webhook,) = customer_app.to("/voice")
    record = await final_call(server, webhook.form["CallSid"])
    assert record["status"] == "completed"


async def test_pause_length_waits_that_long(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``<Pause length="3">`` then ``<Redirect>``: the next request comes ~3 s after the first.

    A ``<Pause>`` first also delays the pickup ("If <Pause> is the first verb in a TwiML document,
    Twilio will wait the specified number of seconds before picking up the call"): no media reaches
    the caller before then. The second document's ``<Pause>`` runs on the answered call.
    """

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.pause(length=3)
        response.redirect("/after")
        return twiml(response)

    def after(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.pause()  # default length 1 s
        response.redirect("/end")
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/after", after)
    customer_app.route("/end", lambda r: hangup_twiml())
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    phone = Phone(asyncio.get_running_loop())
    result = await run_call(sipp_caller(tmp_path, sip_address(server), phone.port), phone)
    result.check(calls=1)
    (first,) = customer_app.to("/voice")
    (second,) = customer_app.to("/after")
    (third,) = customer_app.to("/end")
    assert 2.9 <= second.time - first.time < 3.6
    assert 0.9 <= third.time - second.time < 1.6
    times, frames = audio_frames(phone)
    assert frames.size and audio.rms_dbfs(frames.ravel()) < -50  # silence was sent, not noise
    assert times[0] - first.time >= 2.9  # answered (media flowing) only after the first Pause
    assert times[0] - second.time < 0.5  # ... and at once when the next document's verbs start


def pitch_hz(frames: npt.NDArray[np.int16]) -> float:
    """Median fundamental frequency (autocorrelation, 60-400 Hz) over the loud 40 ms windows."""
    x = frames.astype(np.float64).reshape(-1)
    windows = x[: x.size // 320 * 320].reshape(-1, 320)
    windows = windows[np.sqrt((windows**2).mean(axis=1)) > 1000]
    assert windows.shape[0] >= 5, "too little speech to measure"
    windows = windows - windows.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(windows, 1024, axis=1)
    corr = np.fft.irfft(np.abs(spectrum) ** 2, 1024, axis=1)[:, :320]
    lo, hi = 8000 // 400, 8000 // 60
    lags = lo + np.argmax(corr[:, lo:hi], axis=1)
    return float(np.median(8000 / lags))


async def test_say_voice_man_and_woman(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``<Say voice="man">`` then ``<Say voice="woman">``: the second voice is clearly higher."""
    text = "Hello, this is a test of the voice attribute."

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say(text, voice="man", language="en-US")
        response.pause(length=1)
        response.say(text, voice="woman", language="en-US")
        return twiml(response)

    customer_app.route("/voice", voice)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    phone = Phone(asyncio.get_running_loop())
    result = await run_call(sipp_caller(tmp_path, sip_address(server), phone.port), phone)
    result.check(calls=1)
    _, frames = audio_frames(phone)
    level = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    quiet = runs(level < 50, min_len=40)  # the 1 s <Pause> (0.8 s or more of silence)
    assert quiet, "no pause between the two <Say> verbs"
    split = quiet[0][0]
    man, woman = pitch_hz(frames[:split]), pitch_hz(frames[split:])
    assert 70 <= man <= 180, man
    assert woman > man * 1.3, (man, woman)


async def test_play_loop_zero_until_hangup(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``<Play loop="0">`` repeats the file until the caller hangs up (here after 4 s)."""
    wav = tone_wav(0.4, silence=0.4)

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.play(customer_app.url("/beep.wav"), loop=0)
        response.redirect("/never")
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/beep.wav", lambda r: web.Response(body=wav, content_type="audio/wav"))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    phone = Phone(asyncio.get_running_loop())
    result = await run_call(hanging_up_caller(tmp_path, sip_address(server), phone.port, 4000), phone)
    result.check(calls=1)
    assert customer_app.to("/never") == []
    _, frames = audio_frames(phone)
    bursts = runs(tone_mask(frames))
    assert 4 <= len(bursts) <= 6, bursts  # 4 s / 0.8 s per repetition
    assert all(15 <= length <= 25 for _, length in bursts[:-1]), bursts
