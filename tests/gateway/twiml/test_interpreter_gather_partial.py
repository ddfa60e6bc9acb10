"""``<Gather input="speech" partialResultCallback=...>`` against the fake channel.

https://www.twilio.com/docs/voice/twiml/gather#partialresultcallback: while the caller speaks,
each interim transcript is posted to ``partialResultCallback`` (``partialResultCallbackMethod``)
with the call's standard parameters plus ``SequenceNumber`` (from 0), ``UnstableSpeechResult``
(the interim transcript), ``StableSpeechResult`` and ``Stability``; the final result then goes to
the ``action`` as ``SpeechResult``/``Confidence``.

Trunkline's recogniser has no stability estimate of its own: ``StableSpeechResult`` is the leading
words the last two interim transcripts agree on, and ``Stability`` the share of the interim
transcript's words that are stable in that sense.
"""

from __future__ import annotations

from twilio.twiml.voice_response import Gather, VoiceResponse

from trunkline.gateway.twiml.channel import SpeechOptions, SpeechResult

from .interpreter_support import (
    ACCOUNT_SID,
    CALLED,
    CALLER,
    STANDARD_PARAMS,
    App,
    ScriptedChannel,
    channel_kinds,
    run_session,
)

PARTIAL_PARAMS = {"SequenceNumber", "UnstableSpeechResult", "StableSpeechResult", "Stability"}


def speech_document(then: str = "", **attributes: object) -> str:
    response = VoiceResponse()
    response.append(Gather(input="speech", **attributes))
    if then:
        response.say(then)
    return str(response)


async def test_partials_are_posted_in_order_before_the_action(twiml_app: App) -> None:
    twiml_app.serve("/voice", speech_document(action="/done", partial_result_callback="/partial"))
    twiml_app.serve("/done", "<Response/>")
    twiml_app.accept("/partial")
    channel = ScriptedChannel(
        partials=["sales", "sales please", "sales please now"], speech=SpeechResult("sales please now", 0.91)
    )
    outcome = await run_session(twiml_app, channel)

    assert [sent.url for sent in outcome.sent] == [twiml_app.url + "/partial"] * 3
    assert {sent.method for sent in outcome.sent} == {"POST"}
    forms = [sent.form for sent in outcome.sent]
    assert [form["SequenceNumber"] for form in forms] == ["0", "1", "2"]
    assert [form["UnstableSpeechResult"] for form in forms] == ["sales", "sales please", "sales please now"]
    assert [form["StableSpeechResult"] for form in forms] == ["", "sales", "sales please"]
    assert [float(form["Stability"]) for form in forms] == [0.0, 0.5, round(2 / 3, 8)]
    for sent in outcome.sent:
        assert sorted(sent.names()) == sorted(STANDARD_PARAMS | PARTIAL_PARAMS)
        assert sent.form["CallSid"] == channel.call_sid and sent.form["AccountSid"] == ACCOUNT_SID
        assert (sent.form["From"], sent.form["To"]) == (CALLER, CALLED)
        assert sent.form["CallStatus"] == "in-progress"

    # Every partial left before the action was requested.
    order = [entry for kind, entry in channel.log if kind == "callback" or entry == "/done"]
    assert order == [twiml_app.url + "/partial"] * 3 + ["/done"]
    [action] = twiml_app.to("/done")
    assert action.form["SpeechResult"] == "sales please now" and action.form["Confidence"] == "0.91000000"
    assert not PARTIAL_PARAMS & set(action.form)
    # All three were delivered, signed, with the same parameters.
    delivered = sorted(twiml_app.to("/partial"), key=lambda request: int(request.form["SequenceNumber"]))
    assert [request.form for request in delivered] == forms
    assert all(request.signed for request in delivered)


async def test_stable_prefix_restarts_when_the_recogniser_changes_its_mind(twiml_app: App) -> None:
    twiml_app.serve("/voice", speech_document(action="/done", partial_result_callback="/partial"))
    twiml_app.serve("/done", "<Response/>")
    twiml_app.accept("/partial")
    channel = ScriptedChannel(
        partials=["I want", "I won't", "I won't pay", "I want to pay"],
        speech=SpeechResult("I want to pay", 0.8),
    )
    outcome = await run_session(twiml_app, channel)
    forms = [sent.form for sent in outcome.sent]
    assert [form["StableSpeechResult"] for form in forms] == ["", "I", "I won't", "I"]
    assert [float(form["Stability"]) for form in forms] == [0.0, 0.5, round(2 / 3, 8), 0.25]
    assert [form["SequenceNumber"] for form in forms] == ["0", "1", "2", "3"]


async def test_no_partial_callback_no_interim_reporting(twiml_app: App) -> None:
    twiml_app.serve("/voice", speech_document(action="/done"))
    twiml_app.serve("/done", "<Response/>")
    channel = ScriptedChannel(partials=["sales"], speech=SpeechResult("sales", 0.9))
    outcome = await run_session(twiml_app, channel)
    options = next(entry for kind, entry in channel.log if kind == "recognize")
    assert isinstance(options, SpeechOptions) and options.on_partial is None
    assert outcome.sent == [] and "partial" not in channel.kinds()
    assert twiml_app.paths() == ["/voice", "/done"]


async def test_get_method_and_url_relative_to_the_document(twiml_app: App) -> None:
    twiml_app.serve(
        "/app/voice",
        speech_document(
            action="done", partial_result_callback="partial", partial_result_callback_method="GET"
        ),
    )
    twiml_app.serve("/app/done", "<Response/>")
    twiml_app.accept("/app/partial")
    channel = ScriptedChannel(partials=["billing"], speech=SpeechResult("billing", 0.7))
    outcome = await run_session(twiml_app, channel, "/app/voice")
    [sent] = outcome.sent
    assert (sent.url, sent.method) == (twiml_app.url + "/app/partial", "GET")
    [delivered] = twiml_app.to("/app/partial")
    assert delivered.method == "GET" and delivered.signed
    assert delivered.form["UnstableSpeechResult"] == "billing" and delivered.form["SequenceNumber"] == "0"


async def test_partials_then_no_final_result_fall_through(twiml_app: App) -> None:
    twiml_app.serve(
        "/voice", speech_document(then="nothing heard", action="/done", partial_result_callback="/partial")
    )
    twiml_app.accept("/partial")
    channel = ScriptedChannel(partials=["uh", "uh um"], speech=None)
    outcome = await run_session(twiml_app, channel)
    assert [sent.form["SequenceNumber"] for sent in outcome.sent] == ["0", "1"]
    assert "/done" not in twiml_app.paths()
    assert channel_kinds(channel)[-2:] == ["play", "hangup"]


async def test_sequence_numbers_start_again_for_each_gather(twiml_app: App) -> None:
    twiml_app.serve("/voice", speech_document(action="/again", partial_result_callback="/partial"))
    twiml_app.serve("/again", speech_document(action="/done", partial_result_callback="/partial"))
    twiml_app.serve("/done", "<Response/>")
    twiml_app.accept("/partial")
    channel = ScriptedChannel(partials=["one", "one two"], speech=SpeechResult("one two", 0.9))
    outcome = await run_session(twiml_app, channel)
    assert [sent.form["SequenceNumber"] for sent in outcome.sent] == ["0", "1", "0", "1"]
    assert twiml_app.paths()[:1] == ["/voice"] and twiml_app.to("/done")
