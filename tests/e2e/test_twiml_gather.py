"""E2E audit of ``<Gather>`` attributes against https://www.twilio.com/docs/voice/twiml/gather.

* ``finishOnKey``: one of ``0-9 # *`` or ``''`` (the empty string turns the finishing key off, so
  ``#`` is an ordinary digit); the key that ended input is posted as ``FinishedOnKey``;
* ``timeout``: seconds of no input before the Gather ends; with no input and without
  ``actionOnEmptyResult="true"`` "Twilio will fall through to the next verb", with it the action is
  requested anyway;
* nested ``<Say>``/``<Play>``/``<Pause>`` are interrupted by the first digit (barge-in);
* ``method`` GET/POST for the action, relative ``action`` URLs resolve against the document URL;
* ``speechTimeout``: seconds of silence after speech before the result is posted (``auto`` ends
  at the first natural pause).

The caller is SIPp (signalling) plus a test RTP phone that sends RFC 4733 events and speech.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest
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
from tests.e2e.test_inbound_say_play import sipp_caller
from tests.e2e.test_twiml_play import (
    audio_frames,
    hangup_twiml,
    rtp_port_of,
    run_call,
    runs,
    send_rfc4733,
    signed,
    tone_mask,
    tone_wav,
)
from tests.media.rtp_phone import Phone
from trunkline.gateway.server import Server

pytestmark = [requires_sipp, pytest.mark.timeout(60)]


async def press(
    customer_app: CustomerApp, server: Server, phone: Phone, digits: str, delay: float = 0.5, gap: float = 0.3
) -> None:
    """Once the call is up, send ``digits`` as RFC 4733 events to Trunkline's RTP port."""
    (first,) = await customer_app.wait_for("/voice")
    await asyncio.sleep(delay)
    port = rtp_port_of(server, first.form["CallSid"])
    await send_rfc4733(phone, digits, ("127.0.0.1", port), gap=gap)


async def gather_call(
    tmp_path: Path,
    customer_app: CustomerApp,
    trunkline: StartTrunkline,
    gather: Gather,
    digits: str = "",
    *,
    after: str = "/after",
    delay: float = 0.5,
) -> tuple[Server, Phone]:
    """Run one call whose document is ``gather`` then ``<Redirect>`` to ``after``."""

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.append(gather)
        response.redirect(after)
        return twiml(response)

    customer_app.route("/voice", voice)
    for path in ("/gather", "/app/gather", after):
        customer_app.route(path, lambda r: hangup_twiml())
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    phone = Phone(asyncio.get_running_loop())
    talk = [press(customer_app, server, phone, digits, delay)] if digits else []
    result = await run_call(sipp_caller(tmp_path, sip_address(server), phone.port), phone, talk)
    result.check(calls=1)
    return server, phone


async def test_empty_finish_on_key_makes_pound_a_digit(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``finishOnKey=""``: ``1#2`` are all digits and input ends on the 2 s timeout."""
    gather = Gather(finish_on_key="", timeout=2, action="/gather")
    await gather_call(tmp_path, customer_app, trunkline, gather, "1#2")
    (action,) = await customer_app.wait_for("/gather")
    assert signed(action)
    assert action.form["Digits"] == "1#2"
    assert "FinishedOnKey" not in action.form
    (first,) = customer_app.to("/voice")
    # three digits (~0.5 s each) after 0.5 s, then the 2 s timeout
    assert 3.0 <= action.time - first.time < 5.5
    assert customer_app.to("/after") == []


async def test_finish_on_key_star_with_get_action(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``finishOnKey="*"`` ends input at once and is posted as ``FinishedOnKey``; GET action."""
    gather = Gather(finish_on_key="*", timeout=10, action="gather", method="GET")
    await gather_call(tmp_path, customer_app, trunkline, gather, "42*")
    (action,) = await customer_app.wait_for("/gather")
    assert action.method == "GET"
    assert signed(action)
    assert action.form["Digits"] == "42"
    assert action.form["FinishedOnKey"] == "*"
    (first,) = customer_app.to("/voice")
    assert action.time - first.time < 4.0  # not the 10 s timeout


async def test_num_digits_ends_input(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``numDigits="2"``: the action comes after the second digit, with exactly two digits."""
    gather = Gather(num_digits=2, timeout=10, action="/gather")
    await gather_call(tmp_path, customer_app, trunkline, gather, "789")
    (action,) = await customer_app.wait_for("/gather")
    assert action.form["Digits"] == "78"
    (first,) = customer_app.to("/voice")
    assert action.time - first.time < 4.0


async def test_no_input_falls_through_to_next_verb(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """No digits, no ``actionOnEmptyResult``: the action is not requested; the next verb runs."""
    gather = Gather(timeout=2, action="/gather")
    gather.say("Press a key.")
    await gather_call(tmp_path, customer_app, trunkline, gather)
    (after,) = await customer_app.wait_for("/after")
    assert customer_app.to("/gather") == []
    (first,) = customer_app.to("/voice")
    assert 2.0 <= after.time - first.time < 5.0  # the prompt (~1 s), then the 2 s timeout


async def test_action_on_empty_result(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``actionOnEmptyResult="true"``: the action is requested after the timeout with no digits."""
    gather = Gather(timeout=1, action="/gather", action_on_empty_result=True)
    await gather_call(tmp_path, customer_app, trunkline, gather)
    (action,) = await customer_app.wait_for("/gather")
    assert signed(action)
    assert action.form.get("Digits", "") == ""
    assert "SpeechResult" not in action.form
    assert customer_app.to("/after") == []
    (first,) = customer_app.to("/voice")
    assert 0.9 <= action.time - first.time < 3.0


async def test_digit_barges_in_on_nested_play(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """A digit stops a nested ``<Play loop="20">`` at once; the tone stops reaching the caller."""
    wav = tone_wav(0.5)
    customer_app.route("/tone.wav", lambda r: web.Response(body=wav, content_type="audio/wav"))
    gather = Gather(num_digits=1, action="/gather")
    gather.play(customer_app.url("/tone.wav"), loop=20)  # 10 s of tone
    _, phone = await gather_call(tmp_path, customer_app, trunkline, gather, "5", delay=1.5)
    (action,) = await customer_app.wait_for("/gather")
    assert action.form["Digits"] == "5"
    times, frames = audio_frames(phone)
    bursts = runs(tone_mask(frames))
    assert bursts, "the nested <Play> was not heard"
    heard = sum(length for _, length in bursts) * 0.02
    assert 1.0 <= heard < 3.5, heard  # from the answer to the digit, not 10 s
    tone_end = times[bursts[-1][0] + bursts[-1][1] - 1]
    assert tone_end < action.time + 0.5


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs the espeak-ng command")
@pytest.mark.parametrize(("speech_timeout", "low", "high"), [("auto", 0.3, 2.4), ("3", 2.8, 5.0)])
async def test_speech_timeout(
    tmp_path: Path,
    customer_app: CustomerApp,
    trunkline: StartTrunkline,
    speech_timeout: str,
    low: float,
    high: float,
) -> None:
    """``speechTimeout``: the result is posted that long after the caller stops talking."""
    from tests.e2e.test_inbound_speech import spoken

    speech = spoken(tmp_path, "billing")
    gather = Gather(
        input="speech", action="/gather", hints="sales, billing", timeout=5, speech_timeout=speech_timeout
    )
    ended: list[float] = []

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.append(gather)
        response.redirect("/after")
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/gather", lambda r: hangup_twiml())
    customer_app.route("/after", lambda r: hangup_twiml())
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    loop = asyncio.get_running_loop()
    phone = Phone(loop)

    async def say() -> None:
        (first,) = await customer_app.wait_for("/voice")
        await asyncio.sleep(0.3)
        port = rtp_port_of(server, first.form["CallSid"])
        pcm = np.concatenate([np.zeros(4000, np.int16), speech])
        await phone.send_paced(phone.audio_packets(pcm), ("127.0.0.1", port))
        ended.append(loop.time())
        silence = np.zeros(8000 * 8, np.int16)
        await phone.send_paced(phone.audio_packets(silence), ("127.0.0.1", port))

    result = await run_call(sipp_caller(tmp_path, sip_address(server), phone.port), phone, [say()])
    result.check(calls=1)
    (action,) = await customer_app.wait_for("/gather")
    assert action.form["SpeechResult"] == "billing"
    assert ended
    assert low <= action.time - ended[0] < high, action.time - ended[0]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs the espeak-ng command")
async def test_partial_result_callback(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``partialResultCallback``: interim transcripts arrive while the caller talks, then the action."""
    from tests.e2e.test_inbound_speech import spoken

    speech = spoken(tmp_path, "I would like to speak to someone in customer support about my billing please")
    gather = Gather(input="speech", action="/gather", partial_result_callback="/partial", timeout=5)

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.append(gather)
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/gather", lambda r: hangup_twiml())
    customer_app.route("/partial", lambda r: web.Response(status=204))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    phone = Phone(asyncio.get_running_loop())

    async def say() -> None:
        (first,) = await customer_app.wait_for("/voice")
        await asyncio.sleep(0.3)
        port = rtp_port_of(server, first.form["CallSid"])
        pcm = np.concatenate([np.zeros(4000, np.int16), speech, np.zeros(8000 * 4, np.int16)])
        await phone.send_paced(phone.audio_packets(pcm), ("127.0.0.1", port))

    result = await run_call(sipp_caller(tmp_path, sip_address(server), phone.port), phone, [say()])
    result.check(calls=1)
    (action,) = await customer_app.wait_for("/gather")
    assert action.form["SpeechResult"]
    partials = customer_app.to("/partial")
    assert partials, "no partial result was posted"
    assert sorted(int(p.form["SequenceNumber"]) for p in partials) == list(range(len(partials)))
    first_partial = partials[0]
    assert signed(first_partial)
    assert first_partial.form["CallSid"] == action.form["CallSid"]
    assert first_partial.form["UnstableSpeechResult"]
    assert "StableSpeechResult" in first_partial.form
    assert first_partial.time < action.time  # interim results come while the caller talks


async def test_dtmf_speech_input_takes_digits(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``input="dtmf speech"``: a key press ends the Gather with ``Digits`` and no speech result."""
    gather = Gather(input="dtmf speech", num_digits=1, timeout=5, action="/gather")
    gather.say("Say or press something.")
    await gather_call(tmp_path, customer_app, trunkline, gather, "3")
    (action,) = await customer_app.wait_for("/gather")
    assert action.form["Digits"] == "3"
    assert "SpeechResult" not in action.form
