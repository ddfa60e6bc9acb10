"""When the interpreter answers the call, against the fake channel (no sleeping: the pre-answer wait
is injected and logged as ``("wait", seconds)``).

Trunkline's rule (``gateway/twiml/interpreter.py``): the call is answered on the first verb other
than ``<Reject>``; ``<Reject>`` first never answers; every ``<Pause>`` met before the answer delays
it by its length instead of playing silence (https://www.twilio.com/docs/voice/twiml/pause: "If
``<Pause>`` is the first verb in a TwiML document, Twilio will wait the specified number of seconds
before picking up the call"); ``<Dial answerOnBridge="true">`` leaves the answer to the dial.
"""

from __future__ import annotations

import pytest

from trunkline.gateway.twiml.channel import (
    DialResult,
    Interrupt,
    RecordResult,
    Silence,
    Speech,
)

from .interpreter_support import App, ScriptedChannel, channel_kinds, played, run_session


async def test_leading_pause_delays_the_answer_instead_of_playing_silence(twiml_app: App) -> None:
    twiml_app.serve("/voice", '<Response><Pause length="3"/><Say>Hello</Say></Response>')
    channel = ScriptedChannel()
    outcome = await run_session(twiml_app, channel)
    assert channel_kinds(channel) == ["wait", "answer", "play", "hangup"]
    assert channel.log[1] == ("wait", 3)
    plays = [entry for kind, entry in channel.log if kind == "play"]
    assert plays == [((Speech("Hello"),), 1, Interrupt.NONE)]
    assert outcome.debugger.events == []


async def test_pause_after_the_answer_is_silence(twiml_app: App) -> None:
    twiml_app.serve("/voice", '<Response><Say>Hello</Say><Pause length="2"/><Say>Bye</Say></Response>')
    channel = ScriptedChannel()
    await run_session(twiml_app, channel)
    assert "wait" not in channel.kinds()
    assert played(channel) == [(Speech("Hello"),), (Silence(2.0),), (Speech("Bye"),)]


async def test_every_pause_before_the_answer_delays_it(twiml_app: App) -> None:
    # Twilio documents the first verb only; Trunkline keeps the call unanswered through a run of
    # leading pauses (the answer happens on the first verb that needs the call up).
    twiml_app.serve("/voice", '<Response><Pause length="1"/><Pause length="2"/><Say>Hi</Say></Response>')
    channel = ScriptedChannel()
    await run_session(twiml_app, channel)
    assert channel_kinds(channel) == ["wait", "wait", "answer", "play", "hangup"]
    assert [entry for kind, entry in channel.log if kind == "wait"] == [1, 2]


async def test_default_length_is_one_second(twiml_app: App) -> None:
    twiml_app.serve("/voice", "<Response><Pause/><Say>Hi</Say></Response>")
    channel = ScriptedChannel()
    await run_session(twiml_app, channel)
    assert [entry for kind, entry in channel.log if kind == "wait"] == [1]


async def test_a_document_of_pauses_never_answers(twiml_app: App) -> None:
    twiml_app.serve("/voice", '<Response><Pause length="4"/></Response>')
    channel = ScriptedChannel()
    await run_session(twiml_app, channel)
    assert channel_kinds(channel) == ["wait", "hangup"]
    assert not channel.answered


async def test_pause_then_reject_rejects_without_answering(twiml_app: App) -> None:
    twiml_app.serve("/voice", '<Response><Pause length="2"/><Reject reason="busy"/><Say>no</Say></Response>')
    channel = ScriptedChannel()
    await run_session(twiml_app, channel)
    assert channel_kinds(channel) == ["wait", "reject"]
    assert channel.log[-1] == ("reject", 486)
    assert not channel.answered


async def test_caller_hangs_up_during_the_leading_pause(twiml_app: App) -> None:
    twiml_app.serve("/voice", '<Response><Pause length="5"/><Say>too late</Say></Response>')
    channel = ScriptedChannel()

    def caller_gives_up(seconds: float) -> None:
        channel.ended = True

    outcome = await run_session(twiml_app, channel, on_wait=caller_gives_up)
    # Nothing after the wait: no answer, no prompt, no hangup of an already ended call, no error.
    assert channel_kinds(channel) == ["wait"]
    assert outcome.debugger.events == []
    assert twiml_app.paths() == ["/voice"]


async def test_requests_after_a_delayed_answer_say_in_progress(twiml_app: App) -> None:
    twiml_app.serve("/voice", '<Response><Pause length="1"/><Redirect>/next</Redirect></Response>')
    twiml_app.serve("/next", "<Response><Hangup/></Response>")
    channel = ScriptedChannel()
    await run_session(twiml_app, channel)
    first, second = twiml_app.requests
    assert first.form["CallStatus"] == "ringing" and second.form["CallStatus"] == "in-progress"
    assert channel_kinds(channel) == ["wait", "answer", "hangup"]


@pytest.mark.parametrize(
    ("verb", "first_step"),
    [
        ("<Say>Hi</Say>", "play"),
        ("<Play>http://127.0.0.1:9/a.wav</Play>", "play"),
        ('<Play digits="1"/>', "send_digits"),
        ("<Gather/>", "flush"),
        ('<Record action="/done"/>', "flush"),
        ("<Dial><Sip>sip:bob@127.0.0.1:5090</Sip></Dial>", "dial"),
        ("<Hangup/>", "hangup"),
        ("<Redirect>/done</Redirect>", None),
    ],
)
async def test_the_first_other_verb_answers_before_it_runs(
    twiml_app: App, verb: str, first_step: str | None
) -> None:
    twiml_app.serve("/voice", f"<Response>{verb}</Response>")
    twiml_app.serve("/done", "<Response/>")
    channel = ScriptedChannel(
        dial_result=DialResult("completed"), record_result=RecordResult("RE" + "0" * 32, "/tmp/r.wav", 1.0)
    )
    await run_session(twiml_app, channel)
    kinds = channel_kinds(channel)
    assert kinds[0] == "answer"
    if first_step is not None:
        assert kinds[1] == first_step


async def test_answer_on_bridge_after_a_leading_pause_leaves_the_answer_to_the_dial(twiml_app: App) -> None:
    twiml_app.serve(
        "/voice",
        '<Response><Pause length="2"/><Dial answerOnBridge="true"><Sip>sip:bob@127.0.0.1:5090</Sip></Dial>'
        "</Response>",
    )
    channel = ScriptedChannel(dial_result=DialResult("no-answer"))
    await run_session(twiml_app, channel)
    # The fake dial does not answer, so the call is never answered and ends unanswered.
    assert channel_kinds(channel) == ["wait", "dial", "hangup"]
    assert not channel.answered


async def test_reject_after_the_answer_hangs_up(twiml_app: App) -> None:
    twiml_app.serve("/voice", "<Response><Say>Hi</Say><Reject/><Say>never</Say></Response>")
    channel = ScriptedChannel()
    await run_session(twiml_app, channel)
    assert channel_kinds(channel) == ["answer", "play", "hangup"]


async def test_reject_reasons_map_to_sip_statuses(twiml_app: App) -> None:
    for twiml, status in [
        ("<Reject/>", 603),
        ('<Reject reason="rejected"/>', 603),
        ('<Reject reason="busy"/>', 486),
    ]:
        twiml_app.serve("/voice", f"<Response>{twiml}</Response>")
        channel = ScriptedChannel()
        await run_session(twiml_app, channel)
        assert channel_kinds(channel) == ["reject"] and channel.log[-1] == ("reject", status)
