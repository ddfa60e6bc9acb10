"""The interpreter's flow rules against the fake channel: where each verb's outcome goes (action,
the current document, or nowhere), what falls through, and how errors and loops end.

https://www.twilio.com/docs/voice/twiml/gather#action and .../record#action: without ``action``
Twilio requests the current document's URL again; ``<Dial>`` and ``<Enqueue>`` without ``action``
continue with the next verb; a verb with ``action`` ends the document.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.cache import TwimlCache
from trunkline.gateway.twiml.channel import (
    AudioUrl,
    CallEnded,
    DialResult,
    RecordResult,
    Silence,
    Speech,
    SpeechResult,
)
from trunkline.gateway.twiml.interpreter import (
    APPLICATION_ERROR_PROMPT,
    CallContext,
    DebuggerEvent,
    TwimlSession,
)
from trunkline.gateway.twiml.webhooks import WebhookClient

from .interpreter_support import (
    ACCOUNT_SID,
    CALLED,
    CALLER,
    TOKEN,
    App,
    ScriptedChannel,
    channel_kinds,
    played,
    run_session,
)

SIP_BOB = "sip:bob@127.0.0.1:5090"


def dial_document(then: str = "after", **attributes: object) -> str:
    response = VoiceResponse()
    dial = Dial(**attributes)
    dial.sip(SIP_BOB)
    response.append(dial)
    response.say(then)
    return str(response)


# -- where outcomes go ---------------------------------------------------------------------------


async def test_gather_without_action_posts_back_to_the_current_document(twiml_app: App) -> None:
    def voice(form: dict[str, str]) -> str:
        if "Digits" in form:
            return f"<Response><Say>got {form['Digits']}</Say></Response>"
        return '<Response><Gather numDigits="2"/><Say>fell through</Say></Response>'

    twiml_app.documents["/app/voice"] = voice
    channel = ScriptedChannel(digits=["4", "2"])
    await run_session(twiml_app, channel, "/app/voice")
    assert twiml_app.paths() == ["/app/voice", "/app/voice"]
    assert played(channel) == [(Speech("got 42"),)]


async def test_record_without_action_posts_back_to_the_current_document(twiml_app: App) -> None:
    def voice(form: dict[str, str]) -> str:
        if "RecordingSid" in form:
            return f"<Response><Say>saved {form['RecordingDuration']}</Say></Response>"
        return '<Response><Record playBeep="false"/></Response>'

    twiml_app.documents["/voice"] = voice
    channel = ScriptedChannel(record_result=RecordResult("RE" + "a" * 32, "/tmp/r.wav", 3.2, digits="#"))
    await run_session(twiml_app, channel)
    second = twiml_app.requests[1]
    assert second.path == "/voice" and second.form["Digits"] == "#"
    assert played(channel) == [(Speech("saved 3"),)]


async def test_empty_recording_neither_posts_nor_stops_the_document(twiml_app: App) -> None:
    twiml_app.serve("/voice", '<Response><Record action="/rec" playBeep="false"/><Say>next</Say></Response>')
    channel = ScriptedChannel(record_result=RecordResult("RE" + "a" * 32, "/tmp/r.wav", 0.0))
    await run_session(twiml_app, channel)
    assert twiml_app.paths() == ["/voice"]
    assert played(channel) == [(Speech("next"),)]


async def test_dial_without_action_continues_with_the_next_verb(twiml_app: App) -> None:
    twiml_app.serve("/voice", dial_document())
    channel = ScriptedChannel(dial_result=DialResult("completed", "CA" + "4" * 32, 12, bridged=True))
    await run_session(twiml_app, channel)
    assert channel_kinds(channel) == ["answer", "dial", "play", "hangup"]
    assert played(channel) == [(Speech("after"),)]
    assert twiml_app.paths() == ["/voice"]


async def test_dial_with_action_ends_the_document_and_posts_its_outcome(twiml_app: App) -> None:
    twiml_app.serve("/voice", dial_document(action="/dialed"))
    twiml_app.serve("/dialed", "<Response><Say>dialed</Say></Response>")
    recording = RecordResult("RE" + "5" * 32, "/tmp/d.wav", 11.6)
    channel = ScriptedChannel(
        dial_result=DialResult("completed", "CA" + "4" * 32, 12, bridged=True, recording=recording)
    )
    await run_session(twiml_app, channel)
    assert played(channel) == [(Speech("dialed"),)]
    [dialed] = twiml_app.to("/dialed")
    assert dialed.form["DialCallStatus"] == "completed" and dialed.form["DialBridged"] == "true"
    assert dialed.form["DialCallSid"] == "CA" + "4" * 32 and dialed.form["DialCallDuration"] == "12"
    assert dialed.form["RecordingSid"] == "RE" + "5" * 32 and dialed.form["RecordingDuration"] == "12"
    assert "DialSipResponseCode" not in dialed.form


class HangupDuringDial(ScriptedChannel):
    """The caller hangs up while the dial rings."""

    async def dial(self, dial: v.Dial) -> DialResult:
        self.log.append(("dial", dial))
        self.ended = True
        raise CallEnded


async def test_caller_hangup_during_dial_posts_canceled_and_ignores_the_answer(twiml_app: App) -> None:
    twiml_app.serve("/voice", dial_document(action="/dialed"))
    twiml_app.serve("/dialed", "<Response><Say>ignored</Say></Response>")
    channel = HangupDuringDial()
    outcome = await run_session(twiml_app, channel)
    [dialed] = twiml_app.to("/dialed")
    assert dialed.form["DialCallStatus"] == "canceled"
    assert channel_kinds(channel) == ["answer", "dial"]
    assert outcome.debugger.events == []


async def test_enqueue_without_action_continues_with_action_posts_the_queue_result(twiml_app: App) -> None:
    twiml_app.serve("/voice", "<Response><Enqueue>support</Enqueue><Say>left the queue</Say></Response>")
    channel = ScriptedChannel()
    await run_session(twiml_app, channel)
    assert played(channel) == [(Speech("left the queue"),)]

    twiml_app.serve(
        "/voice", '<Response><Enqueue action="/queued">support</Enqueue><Say>never</Say></Response>'
    )
    twiml_app.serve("/queued", "<Response/>")
    channel = ScriptedChannel()
    await run_session(twiml_app, channel)
    assert played(channel) == []
    [queued] = twiml_app.to("/queued")
    assert (queued.form["QueueResult"], queued.form["QueueSid"], queued.form["QueueTime"]) == (
        "hangup",
        "QU" + "0" * 32,
        "3",
    )


async def test_refer_posts_its_outcome(twiml_app: App) -> None:
    twiml_app.serve(
        "/voice", '<Response><Refer action="/referred"><Sip>sip:alice@127.0.0.1</Sip></Refer></Response>'
    )
    twiml_app.serve("/referred", "<Response/>")
    channel = ScriptedChannel()
    await run_session(twiml_app, channel)
    [referred] = twiml_app.to("/referred")
    assert referred.form["ReferCallStatus"] == "completed" and referred.form["ReferSipResponseCode"] == "202"


# -- Gather input rules --------------------------------------------------------------------------


async def test_action_on_empty_result_posts_empty_digits(twiml_app: App) -> None:
    response = VoiceResponse()
    response.append(Gather(action="/g", action_on_empty_result=True, timeout=1))
    response.say("not reached")
    twiml_app.serve("/voice", str(response))
    twiml_app.serve("/g", "<Response/>")
    channel = ScriptedChannel(digits=[None])
    await run_session(twiml_app, channel)
    [gathered] = twiml_app.to("/g")
    assert gathered.form["Digits"] == "" and "FinishedOnKey" not in gathered.form
    assert played(channel) == []


async def test_action_on_empty_result_for_speech_posts_no_result(twiml_app: App) -> None:
    response = VoiceResponse()
    response.append(Gather(input="speech", action="/g", action_on_empty_result=True))
    twiml_app.serve("/voice", str(response))
    twiml_app.serve("/g", "<Response/>")
    await run_session(twiml_app, ScriptedChannel(speech=None))
    [gathered] = twiml_app.to("/g")
    assert not {"Digits", "SpeechResult", "Confidence"} & set(gathered.form)


async def test_digits_win_over_speech(twiml_app: App) -> None:
    response = VoiceResponse()
    response.append(Gather(input="dtmf speech", action="/g", num_digits=1))
    twiml_app.serve("/voice", str(response))
    twiml_app.serve("/g", "<Response/>")
    channel = ScriptedChannel(digits=["7"], speech=SpeechResult("never asked", 0.9))
    await run_session(twiml_app, channel)
    assert "recognize" not in channel.kinds()
    [gathered] = twiml_app.to("/g")
    assert gathered.form["Digits"] == "7" and "SpeechResult" not in gathered.form


async def test_speech_when_no_digits_carries_empty_digits(twiml_app: App) -> None:
    response = VoiceResponse()
    response.append(Gather(input="dtmf speech", action="/g"))
    twiml_app.serve("/voice", str(response))
    twiml_app.serve("/g", "<Response/>")
    channel = ScriptedChannel(digits=[None], speech=SpeechResult("agent", 0.5))
    await run_session(twiml_app, channel)
    [gathered] = twiml_app.to("/g")
    assert gathered.form["SpeechResult"] == "agent" and gathered.form["Confidence"] == "0.50000000"
    assert gathered.form["Digits"] == ""


async def test_finish_on_key_alone_is_an_answer(twiml_app: App) -> None:
    response = VoiceResponse()
    response.append(Gather(action="/g"))
    response.say("not reached")
    twiml_app.serve("/voice", str(response))
    twiml_app.serve("/g", "<Response/>")
    await run_session(twiml_app, ScriptedChannel(digits=["#"]))
    [gathered] = twiml_app.to("/g")
    assert gathered.form["Digits"] == "" and gathered.form["FinishedOnKey"] == "#"


# -- verbs that end or do nothing ----------------------------------------------------------------


async def test_hangup_ends_the_document(twiml_app: App) -> None:
    twiml_app.serve("/voice", "<Response><Say>bye</Say><Hangup/><Say>never</Say></Response>")
    channel = ScriptedChannel()
    await run_session(twiml_app, channel)
    assert channel_kinds(channel) == ["answer", "play", "hangup"]


async def test_message_in_a_voice_document_is_a_warning_and_the_call_goes_on(twiml_app: App) -> None:
    twiml_app.serve("/voice", "<Response><Message>hi</Message><Leave/><Say>still here</Say></Response>")
    channel = ScriptedChannel()
    outcome = await run_session(twiml_app, channel)
    assert [(event.code, event.level) for event in outcome.debugger.events] == [(12200, "WARNING")]
    assert outcome.debugger.events[0].url == twiml_app.url + "/voice"
    assert played(channel) == [(Speech("still here"),)]


async def test_invalid_attribute_is_a_warning_and_the_default_is_used(twiml_app: App) -> None:
    twiml_app.serve("/voice", '<Response><Say>Hi</Say><Pause length="soon"/></Response>')
    channel = ScriptedChannel()
    outcome = await run_session(twiml_app, channel)
    [event] = outcome.debugger.events
    assert (event.code, event.level, event.url) == (13910, "WARNING", twiml_app.url + "/voice")
    assert event.account_sid == ACCOUNT_SID and event.call_sid == channel.call_sid
    assert played(channel) == [(Speech("Hi"),), (Silence(1.0),)]


async def test_audio_response_is_played(twiml_app: App) -> None:
    twiml_app.documents["/voice"] = lambda form: web.Response(body=b"RIFF....", content_type="audio/wav")
    channel = ScriptedChannel()
    outcome = await run_session(twiml_app, channel)
    assert played(channel) == [(AudioUrl(twiml_app.url + "/voice"),)]
    assert channel_kinds(channel) == ["answer", "play", "hangup"]
    assert outcome.debugger.events == []


# -- application errors --------------------------------------------------------------------------


async def test_invalid_document_after_the_answer(twiml_app: App) -> None:
    twiml_app.serve("/voice", '<Response><Gather numDigits="1" action="/menu"/></Response>')
    twiml_app.serve("/menu", "<Response><Say>unclosed</Response>")
    channel = ScriptedChannel(digits=["1"])
    outcome = await run_session(twiml_app, channel)
    [event] = outcome.debugger.events
    assert (event.code, event.level, event.url) == (12100, "ERROR", twiml_app.url + "/menu")
    # Answered once; the prompt in Twilio's words, then the call ends.
    assert channel_kinds(channel) == ["answer", "flush", "play", "hangup"]
    assert played(channel) == [(Speech(APPLICATION_ERROR_PROMPT, "woman", "en-US"),)]


async def test_failed_action_is_not_retried_on_the_fallback_url(twiml_app: App) -> None:
    # Trunkline tries the fallback URL for the call's first document only.
    twiml_app.serve("/voice", "<Response><Redirect>/missing</Redirect></Response>")
    twiml_app.serve("/fallback", "<Response><Say>fallback</Say></Response>")
    channel = ScriptedChannel()
    outcome = await run_session(twiml_app, channel, fallback_url=twiml_app.url + "/fallback")
    assert twiml_app.paths() == ["/voice", "/missing"]
    assert [(event.code, event.url) for event in outcome.debugger.events] == [
        (11200, twiml_app.url + "/missing")
    ]
    assert played(channel) == [(Speech(APPLICATION_ERROR_PROMPT, "woman", "en-US"),)]


class BrokenDebugger:
    async def report(self, event: DebuggerEvent) -> None:
        raise RuntimeError("store is down")


async def test_a_failing_debugger_sink_does_not_stop_the_prompt(twiml_app: App) -> None:
    twiml_app.serve("/voice", "<Response><Dance/></Response>")
    channel = ScriptedChannel()
    client = WebhookClient(timeout=2)
    context = CallContext(ACCOUNT_SID, TOKEN, channel.call_sid, CALLER, CALLED)
    session = TwimlSession(channel, context, client, url=twiml_app.url + "/voice", debugger=BrokenDebugger())
    try:
        await session.run()
    finally:
        await client.close()
    assert channel_kinds(channel) == ["answer", "play", "hangup"]
    assert played(channel) == [(Speech(APPLICATION_ERROR_PROMPT, "woman", "en-US"),)]


# -- redirect loops ------------------------------------------------------------------------------


@pytest.mark.timeout(20)
async def test_a_redirect_loop_over_a_cached_document_yields_and_can_be_cancelled(twiml_app: App) -> None:
    # Twilio documents no limit for <Redirect> loops in a call (nor does Trunkline have one), but
    # a loop answered from the GET cache makes no request: without a yield per document it would
    # never suspend, starving every other call on the node and ignoring cancellation (BYE, REST).
    twiml_app.documents["/loop"] = lambda form: web.Response(
        text='<Response><Redirect method="GET">/loop</Redirect></Response>',
        content_type="text/xml",
        headers={"Cache-Control": "max-age=60"},
    )
    channel = ScriptedChannel()
    cache = TwimlCache()
    client = WebhookClient(timeout=2, cache=cache)
    context = CallContext(ACCOUNT_SID, TOKEN, channel.call_sid, CALLER, CALLED)
    session = TwimlSession(channel, context, client, url=twiml_app.url + "/loop", method="GET")
    task = asyncio.get_running_loop().create_task(session.run())
    try:
        while cache.hits < 50:
            assert not task.done()
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await client.close()
    assert session.documents >= 50
    assert twiml_app.paths() == ["/loop"]  # one request, every later document from the cache
    assert channel_kinds(channel) == ["answer"]


# -- where the first document comes from ---------------------------------------------------------


async def test_inline_twiml_runs_without_a_request(twiml_app: App) -> None:
    channel = ScriptedChannel()
    client = WebhookClient(timeout=2)
    context = CallContext(ACCOUNT_SID, TOKEN, channel.call_sid, CALLER, CALLED)
    session = TwimlSession(channel, context, client, twiml="<Response><Say>inline</Say></Response>")
    try:
        await session.run()
    finally:
        await client.close()
    assert played(channel) == [(Speech("inline"),)]
    assert twiml_app.requests == [] and session.documents == 1


async def test_no_url_and_no_twiml_is_an_application_error() -> None:
    channel = ScriptedChannel()
    client = WebhookClient(timeout=2)
    context = CallContext(ACCOUNT_SID, TOKEN, channel.call_sid, CALLER, CALLED)
    events: list[DebuggerEvent] = []

    class Sink:
        async def report(self, event: DebuggerEvent) -> None:
            events.append(event)

    session = TwimlSession(channel, context, client, debugger=Sink())
    try:
        await session.run()
    finally:
        await client.close()
    assert [(event.code, event.url) for event in events] == [(11200, None)]
    assert played(channel) == [(Speech(APPLICATION_ERROR_PROMPT, "woman", "en-US"),)]


def test_call_context_parameters() -> None:
    context = CallContext(
        ACCOUNT_SID,
        TOKEN,
        "CA" + "9" * 32,
        CALLER,
        CALLED,
        direction="outbound-api",
        parent_call_sid="CA" + "8" * 32,
        forwarded_from="+15559990000",
        caller_name="ALICE",
        extra={"SipHeader_X-Test": "1"},
    )
    assert context.params() == [
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", "CA" + "9" * 32),
        ("CallStatus", "ringing"),
        ("Called", CALLED),
        ("Caller", CALLER),
        ("Direction", "outbound-api"),
        ("From", CALLER),
        ("To", CALLED),
        ("ParentCallSid", "CA" + "8" * 32),
        ("ForwardedFrom", "+15559990000"),
        ("CallerName", "ALICE"),
        ("SipHeader_X-Test", "1"),
    ]
    minimal = CallContext(ACCOUNT_SID, TOKEN, "CA" + "9" * 32, CALLER, CALLED)
    assert [name for name, _ in minimal.params()] == [
        "AccountSid",
        "ApiVersion",
        "CallSid",
        "CallStatus",
        "Called",
        "Caller",
        "Direction",
        "From",
        "To",
    ]
