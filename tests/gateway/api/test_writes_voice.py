"""The REST write side for voice (calls, call recordings, conferences, participants, queues)
driven by the official twilio library against a real aiohttp server with fake switch controls.

Messages are in test_writes_messages.py; the fakes in write_fakes.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from trunkline.gateway.api.app import create_api_app
from trunkline.gateway.api.control import (
    ConferenceUpdate,
    QueueMember,
)
from trunkline.gateway.api.envelope import rfc2822
from trunkline.gateway.store import SqliteStore
from trunkline.gateway.switch.calls import CallStatus, new_sid

from .write_fakes import ACCOUNT, NOW, OTHER, TOKEN, Api, running_api, serve


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as running:
        yield running


# ---------------------------------------------------------------------------------------------
# Calls
# ---------------------------------------------------------------------------------------------


async def test_create_call_passes_every_parameter(api: Api) -> None:
    call = await api.run(
        lambda c: c.calls.create(
            to="+1 415 555 0100",
            from_="+14155550199",
            url="https://app.example.com/voice",
            method="GET",
            fallback_url="https://app.example.com/fallback",
            status_callback="https://app.example.com/status",
            status_callback_event=["initiated", "answered completed"],
            status_callback_method="GET",
            send_digits="ww1234#",
            timeout=25,
            record=True,
            recording_channels="dual",
            recording_status_callback="https://app.example.com/rec",
            time_limit=600,
            sip_auth_username="user",
            sip_auth_password="pass",
        )
    )
    assert call.sid.startswith("CA") and call.status == "queued" and call.direction == "outbound-api"
    assert call.to == "+14155550100" and call._from == "+14155550199"
    [request] = api.calls.created
    assert request.account_sid == ACCOUNT
    assert (request.to.kind, request.to.address) == ("number", "+14155550100")
    assert (request.url, request.method) == ("https://app.example.com/voice", "GET")
    assert request.fallback_url == "https://app.example.com/fallback"
    assert request.status_callback is not None
    assert request.status_callback.events == frozenset({"initiated", "answered", "completed"})
    assert request.status_callback.method == "GET"
    assert (request.send_digits, request.timeout, request.record) == ("ww1234#", 25, True)
    assert (request.recording_channels, request.time_limit) == ("dual", 600)
    assert request.sip_auth == ("user", "pass")
    fetched = await api.run(lambda c: c.calls(call.sid).fetch())
    assert fetched.status == "queued"


async def test_call_targets_sip_and_client(api: Api) -> None:
    sip = await api.run(
        lambda c: c.calls.create(
            to="sip:bob@pbx.example.com;transport=tcp", from_="alice", twiml="<Response/>"
        )
    )
    client = await api.run(
        lambda c: c.calls.create(
            to="client:agent_7", from_="+14155550199", application_sid="AP" + "1" * 32, timeout=9999
        )
    )
    first, second = api.calls.created
    assert (first.to.kind, first.to.address, first.from_) == (
        "sip",
        "sip:bob@pbx.example.com;transport=tcp",
        "alice",
    )
    assert first.twiml == "<Response/>" and first.url is None
    assert (second.to.kind, second.to.address) == ("client", "agent_7")
    assert second.application_sid == "AP" + "1" * 32 and second.timeout == 600  # capped as Twilio does
    assert sip.to == "sip:bob@pbx.example.com;transport=tcp" and client.to == "client:agent_7"


async def test_status_callback_event_repeated_and_space_separated(api: Api) -> None:
    status, body = await api.post(
        "Calls.json",
        [
            ("To", "+14155550100"),
            ("From", "+14155550199"),
            ("Url", "http://127.0.0.1/voice"),
            ("StatusCallback", "http://127.0.0.1/status"),
            ("StatusCallbackEvent", "initiated ringing"),
            ("StatusCallbackEvent", "completed"),
        ],
    )
    assert status == 201 and body["status"] == "queued"
    callback = api.calls.created[0].status_callback
    assert callback is not None and callback.events == frozenset({"initiated", "ringing", "completed"})


GOOD = {"to": "+14155550100", "from_": "+14155550199", "url": "https://app.example.com/voice"}


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"to": ""}, 21201),
        ({"to": "+1234"}, 21211),
        ({"to": "bob"}, 21211),
        ({"to": "sip:"}, 21211),
        ({"from_": ""}, 21213),
        ({"from_": "alice"}, 21212),  # calling a number needs a number as caller ID
        ({"url": ""}, 21205),
        ({"url": "ftp://app.example.com/voice"}, 21205),
        ({"url": "not a url"}, 21205),
        ({"method": "PUT"}, 21209),
        ({"fallback_url": "nope"}, 21205),
        ({"status_callback_method": "DELETE"}, 21209),
        ({"status_callback": "x", "status_callback_event": ["initiated", "bogus"]}, 21205),
        ({"status_callback": "https://a.example/s", "status_callback_event": ["bogus"]}, 21626),
        ({"timeout": 0}, 21208),
        ({"timeout": "soon"}, 21208),
        ({"twiml": "<Response><Say>hi</Say></Response>"}, 21200),  # Url and Twiml together
        ({"url": "", "twiml": "<Response><Bogus/></Response>"}, 12200),
        ({"url": "", "twiml": "<Response>"}, 12100),
        ({"url": "", "application_sid": "APnope"}, 21218),
        ({"send_digits": "12x"}, 21200),
        ({"recording_channels": "stereo"}, 21200),
        ({"record": "maybe"}, 21200),
        ({"sip_auth_username": "only-user"}, 21200),
    ],
)
async def test_create_call_validation(api: Api, changes: dict[str, Any], code: int) -> None:
    params = {**GOOD, **changes}
    assert await api.error(lambda c: c.calls.create(**params)) == (400, code)
    assert api.calls.created == []


async def test_update_call_redirect_hangup_and_errors(api: Api) -> None:
    live = await api.calls.add(CallStatus.IN_PROGRESS)
    ringing = await api.calls.add(CallStatus.RINGING)
    ended = await api.calls.add(CallStatus.IN_PROGRESS)
    ended.transition(CallStatus.COMPLETED, NOW + 2)
    await api.store.put("calls", ended.to_json())

    redirected = await api.run(
        lambda c: c.calls(live.sid).update(url="https://app.example.com/next", method="GET")
    )
    assert redirected.status == "in-progress"
    sid, update = api.calls.updates[-1]
    assert (sid, update.url, update.method, update.status) == (
        live.sid,
        "https://app.example.com/next",
        "GET",
        None,
    )
    inline = "<Response><Say>Goodbye</Say><Hangup/></Response>"
    await api.run(lambda c: c.calls(live.sid).update(twiml=inline))
    assert api.calls.updates[-1][1].twiml == inline
    hung_up = await api.run(lambda c: c.calls(live.sid).update(status="completed"))
    assert hung_up.status == "completed" and hung_up.end_time is not None
    canceled = await api.run(lambda c: c.calls(ringing.sid).update(status="canceled"))
    assert canceled.status == "canceled"

    count = len(api.calls.updates)
    assert await api.error(lambda c: c.calls(ended.sid).update(url="https://app.example.com/x")) == (
        400,
        21220,
    )
    assert await api.error(lambda c: c.calls("CA" + "0" * 32).update(status="completed")) == (404, 20404)
    assert await api.error(lambda c: c.calls(ringing.sid).update(status="paused")) == (400, 21200)
    assert await api.error(lambda c: c.calls(ringing.sid).update(method="GET")) == (400, 21205)
    assert await api.error(lambda c: c.calls(ringing.sid).update(url="https://a.example", method="PUT")) == (
        400,
        21209,
    )
    other = api.client(OTHER, "other-token")  # another account never reaches this call
    with pytest.raises(TwilioRestException) as foreign:
        await asyncio.to_thread(lambda: other.calls(live.sid).update(status="completed"))
    assert (foreign.value.status, foreign.value.code) == (404, 20404)
    assert len(api.calls.updates) == count


async def test_start_recording_on_live_call_only(api: Api) -> None:
    live = await api.calls.add(CallStatus.IN_PROGRESS)
    queued = await api.calls.add(CallStatus.QUEUED)
    recording = await api.run(
        lambda c: c.calls(live.sid).recordings.create(
            recording_channels="dual",
            recording_status_callback="https://app.example.com/rec",
            recording_status_callback_event=["in-progress", "completed"],
        )
    )
    assert recording.sid.startswith("RE") and recording.call_sid == live.sid
    assert recording.status == "in-progress" and recording.channels == 2 and recording.duration == "-1"
    [(sid, request)] = api.calls.recordings
    assert sid == live.sid and request.channels == "dual"
    assert request.status_callback == "https://app.example.com/rec"
    assert request.status_callback_events == frozenset({"in-progress", "completed"})
    listed = await api.run(lambda c: c.calls(live.sid).recordings.list())
    assert [r.sid for r in listed] == [recording.sid]
    paused = await api.run(
        lambda c: c.calls(live.sid).recordings(recording.sid).update(status="paused", pause_behavior="skip")
    )
    assert paused.status == "paused" and api.calls.recording_updates == [(recording.sid, "paused", "skip")]
    stopped = await api.run(lambda c: c.calls(live.sid).recordings(recording.sid).update(status="stopped"))
    assert stopped.status == "stopped" and api.calls.recording_updates[-1] == (
        recording.sid,
        "stopped",
        "silence",
    )
    bad = lambda c: c.calls(live.sid).recordings(recording.sid).update(status="rewound")  # noqa: E731
    assert await api.error(bad) == (400, 20001)
    elsewhere = lambda c: c.calls(queued.sid).recordings(recording.sid).update(status="paused")  # noqa: E731
    assert await api.error(elsewhere) == (404, 20404)
    assert await api.error(lambda c: c.calls(queued.sid).recordings.create()) == (400, 21220)
    assert await api.error(lambda c: c.calls(live.sid).recordings.create(recording_track="left")) == (
        400,
        20001,
    )


# ---------------------------------------------------------------------------------------------
# Conferences, participants, queues
# ---------------------------------------------------------------------------------------------


async def add_conference(store: SqliteStore, account: str = ACCOUNT) -> str:
    sid = new_sid("CF")
    await store.put(
        "conferences",
        {
            "sid": sid,
            "account_sid": account,
            "friendly_name": "standup",
            "status": "in-progress",
            "date_created": rfc2822(NOW),
            "date_updated": rfc2822(NOW),
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account}/Conferences/{sid}.json",
        },
    )
    return sid


async def test_participants_create_update_kick(api: Api) -> None:
    room = await add_conference(api.store)
    created = await api.run(
        lambda c: c.conferences(room).participants.create(
            from_="+14155550199",
            to="client:carol",
            label="customer",
            muted=True,
            early_media=False,
            status_callback="https://app.example.com/p",
            status_callback_event=["ringing", "answered"],
        )
    )
    assert created.call_sid.startswith("CA") and created.conference_sid == room
    assert created.status == "queued" and created.label == "customer"
    kind, (conference, request) = api.conferences.asked[-1]
    assert kind == "add_participant" and conference == room
    assert (request.to.kind, request.to.address, request.muted, request.early_media) == (
        "client",
        "carol",
        True,
        False,
    )
    assert request.status_callback is not None and request.status_callback.events == {"ringing", "answered"}

    coach = new_sid("CA")
    updated = await api.run(
        lambda c: (
            c.conferences(room)
            .participants(created.call_sid)
            .update(
                muted=True,
                hold=True,
                hold_url="https://app.example.com/hold",
                hold_method="GET",
                announce_url="https://app.example.com/announce",
                coaching=True,
                call_sid_to_coach=coach,
            )
        )
    )
    assert updated.muted is True and updated.hold is True and updated.coaching is True
    assert updated.call_sid_to_coach == coach
    _, (call_sid, update) = api.conferences.asked[-1]
    assert call_sid == created.call_sid
    assert (update.hold_url, update.hold_method, update.announce_url) == (
        "https://app.example.com/hold",
        "GET",
        "https://app.example.com/announce",
    )
    assert update.wait_url is None and update.end_conference_on_exit is None  # untouched settings

    assert await api.run(lambda c: c.conferences(room).participants(created.call_sid).delete()) is True
    assert api.conferences.asked[-1] == ("remove_participant", created.call_sid)
    assert await api.run(lambda c: c.conferences(room).participants.list()) == []
    missing = lambda c: c.conferences(room).participants(created.call_sid).update(muted=False)  # noqa: E731
    assert await api.error(missing) == (404, 20404)
    assert await api.error(lambda c: c.conferences(room).participants(created.call_sid).delete()) == (
        404,
        20404,
    )
    assert await api.error(
        lambda c: c.conferences("missing-room").participants.create(from_="a", to="client:x")
    ) == (
        404,
        20404,
    )
    assert await api.error(
        lambda c: c.conferences(room).participants.create(from_="+14155550199", to="")
    ) == (
        400,
        21201,
    )


async def test_conference_end(api: Api) -> None:
    room = await add_conference(api.store)
    ended = await api.run(lambda c: c.conferences(room).update(status="completed"))
    assert ended.status == "completed" and ended.sid == room
    assert api.conferences.asked[-1] == ("update_conference", ConferenceUpdate(status="completed"))
    assert await api.error(lambda c: c.conferences(room).update(status="paused")) == (400, 20001)
    assert await api.error(lambda c: c.conferences("CF" + "0" * 32).update(status="completed")) == (
        404,
        20404,
    )
    foreign = await add_conference(api.store, OTHER)
    assert await api.error(lambda c: c.conferences(foreign).update(status="completed")) == (404, 20404)


async def test_queues_members_and_dequeue(api: Api) -> None:
    queue = await api.run(lambda c: c.queues.create(friendly_name="support", max_size=20))
    assert queue.sid.startswith("QU") and queue.friendly_name == "support" and queue.max_size == 20
    assert queue.current_size == 0
    assert await api.error(lambda c: c.queues.create(friendly_name="support")) == (400, 20001)
    assert await api.error(lambda c: c.queues.create(friendly_name="big", max_size=5001)) == (400, 20001)
    listed = await api.run(lambda c: c.queues.list())
    assert [q.friendly_name for q in listed] == ["support"]

    first, second = new_sid("CA"), new_sid("CA")
    api.queues.waiting[queue.sid] = [
        QueueMember(ACCOUNT, queue.sid, first, NOW - 60, 1, 60),
        QueueMember(ACCOUNT, queue.sid, second, NOW - 10, 2, 10),
    ]
    members = await api.run(lambda c: c.queues(queue.sid).members.list())
    assert [(m.call_sid, m.position, m.wait_time) for m in members] == [(first, 1, 60), (second, 2, 10)]
    front = await api.run(lambda c: c.queues(queue.sid).members("Front").fetch())
    assert front.call_sid == first
    dequeued = await api.run(
        lambda c: (
            c.queues(queue.sid).members("Front").update(url="https://app.example.com/agent", method="GET")
        )
    )
    assert dequeued.call_sid == first
    assert api.queues.dequeued == [(queue.sid, None, "https://app.example.com/agent", "GET")]
    by_sid = await api.run(
        lambda c: c.queues(queue.sid).members(second).update(url="https://app.example.com/a")
    )
    assert by_sid.call_sid == second and api.queues.dequeued[-1][1:] == (
        second,
        "https://app.example.com/a",
        "POST",
    )
    assert await api.error(
        lambda c: c.queues(queue.sid).members("Front").update(url="https://a.example/x")
    ) == (
        404,
        20404,
    )
    assert await api.error(lambda c: c.queues(queue.sid).members("Front").update(url="nope")) == (400, 21205)

    renamed = await api.run(lambda c: c.queues(queue.sid).update(friendly_name="sales", max_size=30))
    assert (renamed.friendly_name, renamed.max_size) == ("sales", 30)
    assert await api.run(lambda c: c.queues(queue.sid).delete()) is True
    assert await api.error(lambda c: c.queues(queue.sid).fetch()) == (404, 20404)


async def test_missing_controls_answer_503(tmp_path: Path) -> None:
    store = await SqliteStore(tmp_path / "bare.sqlite").open()
    runner, url = await serve(create_api_app({ACCOUNT: TOKEN}, store, str(tmp_path)))
    try:
        client = Client(ACCOUNT, TOKEN)
        client.api.base_url = url
        with pytest.raises(TwilioRestException) as info:
            await asyncio.to_thread(
                lambda: client.calls.create(to="+14155550100", from_="+14155550199", url=GOOD["url"])
            )
        assert (info.value.status, info.value.code) == (503, 20503)
        with pytest.raises(TwilioRestException) as invalid:
            await asyncio.to_thread(lambda: client.calls.create(to="", from_="+14155550199", url=GOOD["url"]))
        assert (invalid.value.status, invalid.value.code) == (400, 21201)  # validation still applies
    finally:
        await runner.cleanup()
        await store.close()
