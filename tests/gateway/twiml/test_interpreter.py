"""TwiML interpreter: a real aiohttp app serving twilio-library TwiML, a scripted fake call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.channel import (
    AudioUrl,
    DialResult,
    Interrupt,
    RecordResult,
    Silence,
    Speech,
    SpeechResult,
    Tone,
)
from trunkline.gateway.twiml.interpreter import (
    APPLICATION_ERROR_PROMPT,
    CallContext,
    DebuggerEvent,
    TwimlSession,
)
from trunkline.gateway.twiml.webhooks import WebhookClient

from .fake_channel import FakeChannel

TOKEN = "tok"


@dataclass
class App:
    url: str = ""
    documents: dict[str, Callable[[dict[str, str]], str | web.Response]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
async def app() -> AsyncIterator[App]:
    state = App()
    validator = RequestValidator(TOKEN)

    async def handler(request: web.Request) -> web.StreamResponse:
        form = {k: str(val) for k, val in (await request.post()).items()}
        assert validator.validate(str(request.url), form, request.headers["X-Twilio-Signature"])
        state.requests.append((request.path, form))
        make = state.documents.get(request.path)
        if make is None:
            return web.Response(status=404)
        answer = make(form)
        if isinstance(answer, web.Response):
            return answer
        return web.Response(text=answer, content_type="text/xml")

    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield state
    await runner.cleanup()


class Debugger:
    def __init__(self) -> None:
        self.events: list[DebuggerEvent] = []

    async def report(self, event: DebuggerEvent) -> None:
        self.events.append(event)


async def run(app: App, channel: FakeChannel, path: str = "/voice", **kwargs: object) -> Debugger:
    debugger = Debugger()
    client = WebhookClient(timeout=2)
    context = CallContext("AC" + "1" * 32, TOKEN, channel.call_sid, "+15550001111", "+15552223333")
    session = TwimlSession(channel, context, client, url=app.url + path, debugger=debugger, **kwargs)  # type: ignore[arg-type]
    try:
        await session.run()
        await session.callbacks.drain(timeout=5)
    finally:
        await client.close()
    return debugger


async def test_say_play_pause_then_end_of_document_hangs_up(app: App) -> None:
    response = VoiceResponse()
    response.say("Welcome", voice="alice", language="en-GB", loop=2)
    response.play("/audio/hello.wav", digits="w1")
    response.pause(length=3)
    app.documents["/voice"] = lambda form: str(response)
    channel = FakeChannel()
    await run(app, channel)
    assert channel.kinds() == ["answer", "play", "send_digits", "play", "play", "hangup"]
    plays = [entry for kind, entry in channel.log if kind == "play"]
    assert plays[0] == ((Speech("Welcome", "alice", "en-GB"),), 2, Interrupt.NONE)
    assert plays[1] == ((AudioUrl(app.url + "/audio/hello.wav"),), 1, Interrupt.NONE)
    assert plays[2] == ((Silence(3.0),), 1, Interrupt.NONE)
    _path, form = app.requests[0]
    assert form["CallStatus"] == "ringing" and form["Direction"] == "inbound"
    assert form["From"] == "+15550001111" and form["ApiVersion"] == "2010-04-01"


async def test_gather_barge_in_posts_digits_to_action(app: App) -> None:
    response = VoiceResponse()
    gather = Gather(num_digits=3, action="/gathered", timeout=2)
    gather.say("Enter your code")
    gather.play("/long.wav")
    response.append(gather)
    response.say("never reached")
    app.documents["/voice"] = lambda form: str(response)
    app.documents["/gathered"] = lambda form: f"<Response><Say>You typed {form['Digits']}</Say></Response>"
    channel = FakeChannel(digits_during_play="4", digits=["2", "7", "9"])
    await run(app, channel)
    plays = [entry for kind, entry in channel.log if kind == "play"]
    # The first digit interrupted the first prompt, so the second was never played.
    assert len(plays) == 2
    assert plays[1][0] == (Speech("You typed 427"),)
    assert app.requests[1][0] == "/gathered"
    assert app.requests[1][1]["Digits"] == "427" and app.requests[1][1]["CallStatus"] == "in-progress"


async def test_gather_finish_on_key_and_fall_through_on_no_input(app: App) -> None:
    first = VoiceResponse()
    first.append(Gather(action="/g"))
    first.say("no input")
    app.documents["/voice"] = lambda form: str(first)
    app.documents["/g"] = lambda form: "<Response/>"
    channel = FakeChannel(digits=[None])
    await run(app, channel)
    assert [p[0] for kind, p in channel.log if kind == "play"] == [(Speech("no input"),)]
    assert [path for path, _ in app.requests] == ["/voice"]

    app.requests.clear()
    channel = FakeChannel(digits=["1", "2", "#", "5"])
    await run(app, channel)
    assert app.requests[1][1]["Digits"] == "12" and app.requests[1][1]["FinishedOnKey"] == "#"


async def test_gather_speech(app: App) -> None:
    response = VoiceResponse()
    response.append(Gather(input="speech", action="/s", hints="sales, support", language="en-GB"))
    app.documents["/voice"] = lambda form: str(response)
    app.documents["/s"] = lambda form: "<Response><Hangup/></Response>"
    channel = FakeChannel(speech=SpeechResult("sales please", 0.87))
    await run(app, channel)
    options = next(entry for kind, entry in channel.log if kind == "recognize")
    assert options.hints == ("sales", "support") and options.language == "en-GB"  # type: ignore[attr-defined]
    form = app.requests[1][1]
    assert form["SpeechResult"] == "sales please" and form["Confidence"].startswith("0.87")
    assert "Digits" not in form


async def test_record_posts_recording_and_status_callback(app: App) -> None:
    response = VoiceResponse()
    response.record(
        max_length=30, timeout=3, finish_on_key="#", action="/rec", recording_status_callback="/rs"
    )
    app.documents["/voice"] = lambda form: str(response)
    app.documents["/rec"] = lambda form: "<Response><Say>Thanks</Say></Response>"
    app.documents["/rs"] = lambda form: web.Response(status=204)
    channel = FakeChannel(record_result=RecordResult("RE" + "2" * 32, "/tmp/x.wav", 4.4, digits="#"))
    await run(app, channel)
    assert channel.log[1][0] == "flush" and channel.log[2] == ("play", ((Tone("beep"),), 1, Interrupt.NONE))
    options = next(entry for kind, entry in channel.log if kind == "record")
    assert (options.max_length, options.silence_timeout, options.finish_on_key) == (30.0, 3.0, "#")  # type: ignore[attr-defined]
    rec = dict(app.requests)["/rec"]
    assert rec["RecordingSid"] == "RE" + "2" * 32 and rec["RecordingDuration"] == "4" and rec["Digits"] == "#"
    assert rec["RecordingUrl"].endswith(f"/Accounts/{'AC' + '1' * 32}/Recordings/RE{'2' * 32}")
    status = dict(app.requests)["/rs"]
    assert status["RecordingStatus"] == "completed" and status["RecordingSid"] == "RE" + "2" * 32


async def test_record_hangup_still_posts_action(app: App) -> None:
    response = VoiceResponse()
    response.record(action="/rec")
    app.documents["/voice"] = lambda form: str(response)
    app.documents["/rec"] = lambda form: "<Response><Say>ignored</Say></Response>"
    channel = FakeChannel(record_result=RecordResult("RE" + "3" * 32, "/tmp/x.wav", 2.0, hung_up=True))
    await run(app, channel)
    assert dict(app.requests)["/rec"]["Digits"] == "hangup"
    assert not any(kind == "play" and entry[0] == (Speech("ignored"),) for kind, entry in channel.log)


async def test_dial_action_parameters(app: App) -> None:
    response = VoiceResponse()
    dial = Dial(action="/dialed", timeout=10)
    dial.sip("sip:bob@127.0.0.1:5090")
    response.append(dial)
    app.documents["/voice"] = lambda form: str(response)
    app.documents["/dialed"] = lambda form: "<Response/>"
    channel = FakeChannel(dial_result=DialResult("busy", "CA" + "4" * 32, 0, 486))
    await run(app, channel)
    dialed = next(entry for kind, entry in channel.log if kind == "dial")
    assert isinstance(dialed, v.Dial) and dialed.nouns == (v.Sip(uri="sip:bob@127.0.0.1:5090"),)
    form = dict(app.requests)["/dialed"]
    assert form["DialCallStatus"] == "busy" and form["DialSipResponseCode"] == "486"
    assert form["DialCallSid"] == "CA" + "4" * 32


async def test_reject_first_never_answers(app: App) -> None:
    app.documents["/voice"] = lambda form: '<Response><Reject reason="busy"/></Response>'
    channel = FakeChannel()
    await run(app, channel)
    assert channel.log == [("reject", 486)]


async def test_redirect_is_relative_to_the_document(app: App) -> None:
    app.documents["/app/voice"] = lambda form: '<Response><Redirect method="POST">next</Redirect></Response>'
    app.documents["/app/next"] = lambda form: "<Response><Say>moved</Say></Response>"
    channel = FakeChannel()
    await run(app, channel, path="/app/voice")
    assert [path for path, _ in app.requests] == ["/app/voice", "/app/next"]


@pytest.mark.parametrize(
    ("document", "code"),
    [
        (lambda form: "<Response><Say>unclosed</Response>", 12100),
        (lambda form: "<Response><Dance/></Response>", 12200),
        (lambda form: web.Response(status=500), 11200),
        (lambda form: web.Response(text="hello", content_type="application/json"), 12300),
    ],
)
async def test_application_error_prompt_and_debugger_event(
    app: App, document: Callable[[dict[str, str]], str | web.Response], code: int
) -> None:
    app.documents["/voice"] = document
    channel = FakeChannel()
    debugger = await run(app, channel)
    assert [event.code for event in debugger.events] == [code]
    assert channel.kinds() == ["answer", "play", "hangup"]
    assert channel.log[1][1] == ((Speech(APPLICATION_ERROR_PROMPT, "woman", "en-US"),), 1, Interrupt.NONE)


async def test_fallback_url_rescues_a_broken_app(app: App) -> None:
    app.documents["/voice"] = lambda form: web.Response(status=500)
    app.documents["/fallback"] = lambda form: "<Response><Say>fallback</Say></Response>"
    channel = FakeChannel()
    debugger = await run(app, channel, fallback_url=app.url + "/fallback")
    assert [event.code for event in debugger.events] == [11200]
    assert [p[0] for kind, p in channel.log if kind == "play"] == [(Speech("fallback"),)]
    assert dict(app.requests)["/fallback"]["ErrorCode"] == "11200"


async def test_caller_hangup_stops_the_document(app: App) -> None:
    app.documents["/voice"] = lambda form: "<Response><Say>one</Say><Say>two</Say><Say>three</Say></Response>"
    channel = FakeChannel(hangup_after_plays=2)
    await run(app, channel)
    assert channel.plays == 2


async def test_answer_on_bridge_leaves_the_caller_unanswered_until_dial(app: App) -> None:
    response = VoiceResponse()
    dial = Dial(answer_on_bridge=True, action="/after")
    dial.sip("sip:bob@127.0.0.1:5090")
    response.append(dial)
    app.documents["/voice"] = lambda form: str(response)
    app.documents["/after"] = lambda form: "<Response><Say>after</Say></Response>"
    channel = FakeChannel(dial_result=DialResult("no-answer"))
    await run(app, channel)
    # Not answered before the Dial; answered for the <Say> that follows the failed Dial.
    assert channel.kinds()[:3] == ["dial", "answer", "play"]
