"""``<Record>`` status events against the fake channel.

https://www.twilio.com/docs/voice/twiml/record#recordingstatuscallbackevent: the events sent are the
ones asked for (``in-progress``, ``completed``, ``absent``; default ``completed``), each to
``recordingStatusCallback`` with ``recordingStatusCallbackMethod``. The request's parameters:
``AccountSid``, ``CallSid``, ``RecordingSid``, ``RecordingUrl``, ``RecordingStatus``,
``RecordingDuration``, ``RecordingChannels`` (only ``1`` for ``<Record>``), ``RecordingStartTime``
(RFC 2822, GMT) and ``RecordingSource`` (``RecordVerb``); ``in-progress`` has no duration yet.
"""

from __future__ import annotations

import re

from twilio.twiml.voice_response import VoiceResponse

from trunkline.gateway.twiml.channel import Interrupt, RecordOptions, RecordResult, Speech, Tone

from .interpreter_support import (
    ACCOUNT_SID,
    App,
    ScriptedChannel,
    played,
    recording_url,
    run_session,
)

DOCUMENTED = {
    "AccountSid",
    "CallSid",
    "RecordingSid",
    "RecordingUrl",
    "RecordingStatus",
    "RecordingDuration",
    "RecordingChannels",
    "RecordingStartTime",
    "RecordingSource",
}
STARTED = "Fri, 15 Oct 2021 19:04:32 +0000"  # interpreter_support.NOW
RECORDING_SID = re.compile(r"RE[0-9a-f]{32}")


def recorder(duration: float, *, digits: str = "", hung_up: bool = False) -> ScriptedChannel:
    """A channel whose ``record`` returns a recording of ``duration`` seconds."""
    result = RecordResult("RE" + "f" * 32, "/tmp/rec.wav", duration, digits=digits, hung_up=hung_up)
    return ScriptedChannel(record_result=result)


def record_document(**attributes: object) -> str:
    response = VoiceResponse()
    response.record(**attributes)
    response.say("after the recording")
    return str(response)


def asked_sid(channel: ScriptedChannel) -> str:
    options = next(entry for kind, entry in channel.log if kind == "record")
    assert isinstance(options, RecordOptions) and options.recording_sid is not None
    return options.recording_sid


async def test_completed_by_default_with_exactly_twilios_parameters(twiml_app: App) -> None:
    twiml_app.serve("/voice", record_document(action="/rec", recording_status_callback="/rs"))
    twiml_app.serve("/rec", "<Response/>")
    twiml_app.accept("/rs")
    channel = recorder(4.4, digits="#")
    outcome = await run_session(twiml_app, channel)

    sid = asked_sid(channel)
    assert RECORDING_SID.fullmatch(sid)
    [sent] = outcome.sent
    assert (sent.url, sent.method) == (twiml_app.url + "/rs", "POST")
    assert sorted(sent.names()) == sorted(DOCUMENTED)  # each once, nothing undocumented
    assert sent.form == {
        "AccountSid": ACCOUNT_SID,
        "CallSid": channel.call_sid,
        "RecordingSid": sid,
        "RecordingUrl": recording_url(sid),
        "RecordingStatus": "completed",
        "RecordingDuration": "4",
        "RecordingChannels": "1",
        "RecordingStartTime": STARTED,
        "RecordingSource": "RecordVerb",
    }
    # Delivered as a signed POST, and the action names the same recording.
    [delivered] = twiml_app.to("/rs")
    assert delivered.method == "POST" and delivered.signed and delivered.form == sent.form
    [action] = twiml_app.to("/rec")
    assert action.form["RecordingSid"] == sid and action.form["RecordingUrl"] == recording_url(sid)
    assert action.form["RecordingDuration"] == "4" and action.form["Digits"] == "#"


async def test_in_progress_is_sent_when_recording_starts_then_completed(twiml_app: App) -> None:
    twiml_app.serve(
        "/voice",
        record_document(
            action="/rec",
            recording_status_callback="/rs",
            recording_status_callback_event="in-progress completed",
        ),
    )
    twiml_app.serve("/rec", "<Response/>")
    twiml_app.accept("/rs")
    channel = recorder(7.6)
    outcome = await run_session(twiml_app, channel)

    sid = asked_sid(channel)
    started, finished = outcome.sent
    assert started.form == {
        "AccountSid": ACCOUNT_SID,
        "CallSid": channel.call_sid,
        "RecordingSid": sid,
        "RecordingUrl": recording_url(sid),
        "RecordingStatus": "in-progress",
        "RecordingChannels": "1",
        "RecordingStartTime": STARTED,
        "RecordingSource": "RecordVerb",
    }
    assert finished.form["RecordingStatus"] == "completed" and finished.form["RecordingSid"] == sid
    assert finished.form["RecordingDuration"] == "8" and finished.form["RecordingStartTime"] == STARTED
    # in-progress after the beep and before recording; completed once the recording is done.
    steps = [(kind, entry) for kind, entry in channel.log if kind in ("play", "record", "callback")]
    assert steps[0] == ("play", ((Tone("beep"),), 1, Interrupt.NONE))
    assert [kind for kind, _ in steps[1:]] == ["callback", "record", "callback"]
    assert {request.form["RecordingStatus"] for request in twiml_app.to("/rs")} == {
        "in-progress",
        "completed",
    }


async def test_absent_when_nothing_was_recorded_and_the_document_goes_on(twiml_app: App) -> None:
    twiml_app.serve(
        "/voice",
        record_document(
            action="/rec",
            recording_status_callback="/rs",
            recording_status_callback_event="in-progress completed absent",
        ),
    )
    twiml_app.accept("/rs")
    channel = recorder(0.0)
    outcome = await run_session(twiml_app, channel)

    sid = asked_sid(channel)
    assert [sent.form["RecordingStatus"] for sent in outcome.sent] == ["in-progress", "absent"]
    absent = outcome.sent[1].form
    assert sorted(absent) == sorted(DOCUMENTED)
    assert absent["RecordingSid"] == sid and absent["RecordingDuration"] == "0"
    # An empty recording does not request the action: the next verb runs instead.
    assert "/rec" not in twiml_app.paths()
    assert played(channel)[-1] == (Speech("after the recording"),)


async def test_only_the_events_asked_for_are_sent(twiml_app: App) -> None:
    # Default events (completed only): an empty recording sends nothing.
    twiml_app.serve("/voice", record_document(recording_status_callback="/rs"))
    twiml_app.accept("/rs")
    outcome = await run_session(twiml_app, recorder(0.0))
    assert outcome.sent == [] and twiml_app.to("/rs") == []

    # in-progress only: the finished recording sends nothing more.
    twiml_app.requests.clear()
    twiml_app.serve(
        "/voice",
        record_document(
            action="/rec", recording_status_callback="/rs", recording_status_callback_event="in-progress"
        ),
    )
    twiml_app.serve("/rec", "<Response/>")
    outcome = await run_session(twiml_app, recorder(3.0))
    assert [sent.form["RecordingStatus"] for sent in outcome.sent] == ["in-progress"]

    # absent only: a real recording sends nothing.
    twiml_app.requests.clear()
    twiml_app.serve(
        "/voice",
        record_document(
            action="/rec", recording_status_callback="/rs", recording_status_callback_event="absent"
        ),
    )
    outcome = await run_session(twiml_app, recorder(3.0))
    assert outcome.sent == []
    assert [request.path for request in twiml_app.requests] == ["/voice", "/rec"]


async def test_no_callback_url_no_events(twiml_app: App) -> None:
    twiml_app.serve(
        "/voice",
        record_document(action="/rec", recording_status_callback_event="in-progress completed absent"),
    )
    twiml_app.serve("/rec", "<Response/>")
    outcome = await run_session(twiml_app, recorder(2.0))
    assert outcome.sent == []
    assert twiml_app.paths() == ["/voice", "/rec"]


async def test_get_method_and_url_relative_to_the_document(twiml_app: App) -> None:
    twiml_app.serve(
        "/app/voice",
        record_document(
            action="done", recording_status_callback="status/rec", recording_status_callback_method="GET"
        ),
    )
    twiml_app.serve("/app/done", "<Response/>")
    twiml_app.accept("/app/status/rec")
    channel = recorder(2.2)
    outcome = await run_session(twiml_app, channel, "/app/voice")
    [sent] = outcome.sent
    assert (sent.url, sent.method) == (twiml_app.url + "/app/status/rec", "GET")
    [delivered] = twiml_app.to("/app/status/rec")
    assert delivered.method == "GET"
    assert delivered.form == sent.form  # every parameter in the query string
    assert delivered.form["RecordingStatus"] == "completed" and delivered.form["RecordingDuration"] == "2"
    assert delivered.form["RecordingSid"] == asked_sid(channel)


async def test_get_status_callback_signature_matches_the_url_on_the_wire(twiml_app: App) -> None:
    twiml_app.serve(
        "/voice",
        record_document(
            action="/done", recording_status_callback="/rs", recording_status_callback_method="GET"
        ),
    )
    twiml_app.serve("/done", "<Response/>")
    twiml_app.accept("/rs")
    await run_session(twiml_app, recorder(2.0))
    [delivered] = twiml_app.to("/rs")
    assert delivered.signed


async def test_caller_hangup_still_reports_completed_and_posts_the_action(twiml_app: App) -> None:
    twiml_app.serve("/voice", record_document(action="/rec", recording_status_callback="/rs"))
    twiml_app.serve("/rec", "<Response><Say>never heard</Say></Response>")
    twiml_app.accept("/rs")
    channel = recorder(5.0, hung_up=True)
    outcome = await run_session(twiml_app, channel)
    sid = asked_sid(channel)
    [sent] = outcome.sent
    assert sent.form["RecordingStatus"] == "completed" and sent.form["RecordingSid"] == sid
    assert sent.form["RecordingDuration"] == "5"
    [action] = twiml_app.to("/rec")
    assert action.form["Digits"] == "hangup" and action.form["RecordingSid"] == sid
    # The action's answer is ignored: nothing is played after the recording.
    assert played(channel) == [(Tone("beep"),)]
