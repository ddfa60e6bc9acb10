"""The REST write side driven by the official twilio library against a real aiohttp server, with
fake switch controls that record what they were asked and a fake SIP MESSAGE sender."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from trunkline.gateway.api.app import create_api_app
from trunkline.gateway.api.control import (
    CallUpdate,
    ConferenceUpdate,
    ControlError,
    OutboundCall,
    ParticipantRequest,
    ParticipantUpdate,
    QueueMember,
    RecordingRequest,
    participant_json,
    recording_json,
)
from trunkline.gateway.api.envelope import rfc2822
from trunkline.gateway.api.writes import WriteControls
from trunkline.gateway.config import (
    Account,
    Config,
    HttpConfig,
    NumberRoute,
    RtpConfig,
    SipConfig,
)
from trunkline.gateway.messaging.service import MessagingService
from trunkline.gateway.store import SqliteStore
from trunkline.gateway.switch.calls import Call, CallStatus, new_sid
from trunkline.gateway.twiml.webhooks import CallbackSender, WebhookClient

from ..messaging.fakes import FakeSender, WebApp, web_app

ACCOUNT = "AC" + "a" * 32
TOKEN = "secret-token"
OTHER = "AC" + "b" * 32
NOW = 1_800_000_000.0
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Fake controls: they do what the switch will do to the store, and remember every request.
# ---------------------------------------------------------------------------------------------


@dataclass
class FakeCalls:
    store: SqliteStore
    created: list[OutboundCall] = field(default_factory=list)
    updates: list[tuple[str, CallUpdate]] = field(default_factory=list)
    recordings: list[tuple[str, RecordingRequest]] = field(default_factory=list)
    recording_updates: list[tuple[str, str, str]] = field(default_factory=list)
    calls: dict[str, Call] = field(default_factory=dict)

    async def add(self, status: CallStatus) -> Call:
        call = Call(ACCOUNT, "+14155550199", "+14155550100", "outbound-api", created=NOW, updated=NOW)
        if status != CallStatus.QUEUED:
            call.transition(status, NOW + 1)
        self.calls[call.sid] = call
        await self.store.put("calls", call.to_json())
        return call

    async def create_call(self, request: OutboundCall) -> Call:
        self.created.append(request)
        call = Call(request.account_sid, request.from_, str(request.to), "outbound-api", created=NOW)
        self.calls[call.sid] = call
        await self.store.put("calls", call.to_json())
        return call

    async def update_call(self, account_sid: str, call_sid: str, update: CallUpdate) -> Call:
        self.updates.append((call_sid, update))
        call = self.calls[call_sid]
        if update.status == "completed" and call.status == CallStatus.IN_PROGRESS:
            call.transition(CallStatus.COMPLETED, NOW + 5)
        elif update.status is not None and call.status in (CallStatus.QUEUED, CallStatus.RINGING):
            call.transition(CallStatus.CANCELED, NOW + 5)
        await self.store.put("calls", call.to_json())
        return call

    async def start_recording(
        self, account_sid: str, call_sid: str, request: RecordingRequest
    ) -> dict[str, Any]:
        self.recordings.append((call_sid, request))
        record = recording_json(
            account_sid,
            new_sid("RE"),
            created=NOW,
            call_sid=call_sid,
            channels=2 if request.channels == "dual" else 1,
        )
        await self.store.put("recordings", record)
        return record

    async def update_recording(
        self, account_sid: str, call_sid: str, recording_sid: str, status: str, pause_behavior: str
    ) -> dict[str, Any]:
        self.recording_updates.append((recording_sid, status, pause_behavior))
        record = await self.store.get("recordings", sid=recording_sid)
        assert record is not None
        record["status"] = status
        await self.store.put("recordings", record)
        return record


@dataclass
class FakeConferences:
    store: SqliteStore
    asked: list[tuple[str, Any]] = field(default_factory=list)

    async def update_conference(
        self, account_sid: str, conference_sid: str, update: ConferenceUpdate
    ) -> dict[str, Any]:
        self.asked.append(("update_conference", update))
        record = await self.store.get("conferences", sid=conference_sid)
        assert record is not None
        if update.status == "completed":
            record["status"] = "completed"
            await self.store.put("conferences", record)
        return record

    async def add_participant(
        self, account_sid: str, conference: str, request: ParticipantRequest
    ) -> dict[str, Any]:
        self.asked.append(("add_participant", (conference, request)))
        if conference == "missing-room":
            raise ControlError.not_found(f"Conference {conference}")
        record = participant_json(
            account_sid, conference, new_sid("CA"), created=NOW, status="queued", label=request.label
        )
        await self.store.put("participants", record)
        return record

    async def update_participant(
        self, account_sid: str, conference_sid: str, call_sid: str, update: ParticipantUpdate
    ) -> dict[str, Any]:
        self.asked.append(("update_participant", (call_sid, update)))
        record = await self.store.get("participants", conference_sid=conference_sid, call_sid=call_sid)
        assert record is not None
        for name in ("muted", "hold", "coaching", "call_sid_to_coach"):
            if getattr(update, name) is not None:
                record[name] = getattr(update, name)
        await self.store.put("participants", record)
        return record

    async def remove_participant(self, account_sid: str, conference_sid: str, call_sid: str) -> None:
        self.asked.append(("remove_participant", call_sid))
        await self.store.delete("participants", conference_sid=conference_sid, call_sid=call_sid)


@dataclass
class FakeQueues:
    waiting: dict[str, list[QueueMember]] = field(default_factory=dict)
    dequeued: list[tuple[str, str | None, str, str]] = field(default_factory=list)

    async def members(self, account_sid: str, queue_sid: str) -> list[QueueMember]:
        return list(self.waiting.get(queue_sid, []))

    async def dequeue(
        self, account_sid: str, queue_sid: str, call_sid: str | None, url: str, method: str
    ) -> QueueMember:
        self.dequeued.append((queue_sid, call_sid, url, method))
        members = self.waiting.get(queue_sid, [])
        for member in members:
            if call_sid is None or member.call_sid == call_sid:
                members.remove(member)
                return member
        raise ControlError.not_found(f"Queue member {call_sid or 'Front'}")


@dataclass
class Api:
    url: str
    store: SqliteStore
    calls: FakeCalls
    conferences: FakeConferences
    queues: FakeQueues
    sender: FakeSender
    messaging: MessagingService
    callbacks: CallbackSender
    web: WebApp

    def client(self, sid: str = ACCOUNT, token: str = TOKEN) -> Client:
        client = Client(sid, token)
        client.api.base_url = self.url
        return client

    async def run(self, action: Callable[[Client], T]) -> T:
        client = self.client()
        return await asyncio.to_thread(action, client)

    async def error(self, action: Callable[[Client], object]) -> tuple[int, int]:
        with pytest.raises(TwilioRestException) as info:
            await self.run(action)
        return info.value.status, info.value.code

    async def post(self, path: str, data: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
        auth = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
        async with aiohttp.ClientSession(headers={"Authorization": f"Basic {auth}"}) as session:
            url = f"{self.url}/2010-04-01/Accounts/{ACCOUNT}/{path}"
            async with session.post(url, data=data) as response:
                return response.status, await response.json()


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = await SqliteStore(tmp_path / "api.sqlite").open()
    config = Config(
        sip=SipConfig(),
        rtp=RtpConfig(),
        http=HttpConfig(),
        accounts=(Account(ACCOUNT, TOKEN), Account(OTHER, "other-token")),
        numbers=(NumberRoute(match="*", account=ACCOUNT),),
    )
    webhooks = WebhookClient(timeout=5)
    callbacks = CallbackSender(webhooks, retries=0)
    sender = FakeSender()
    messaging = MessagingService(config, store, sender, webhooks, callbacks)
    calls, conferences, queues = FakeCalls(store), FakeConferences(store), FakeQueues()
    controls = WriteControls(calls=calls, conferences=conferences, queues=queues, messaging=messaging)
    app = create_api_app({ACCOUNT: TOKEN, OTHER: "other-token"}, store, str(tmp_path), controls)
    runner, url = await serve(app)
    async with web_app() as customer:
        yield Api(url, store, calls, conferences, queues, sender, messaging, callbacks, customer)
    await runner.cleanup()
    await messaging.drain(5)
    await webhooks.close()
    await store.close()


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


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------

CYRILLIC = "Здравствуйте! Это сообщение проверяет кириллицу: ёжик, щука, объём. Конец связи, до встречи."


async def test_message_cyrillic_end_to_end(api: Api) -> None:
    status_url = f"{api.web.url}/status"
    message = await api.run(
        lambda c: c.messages.create(
            to="client:alice", from_="+14155550100", body=CYRILLIC, status_callback=status_url
        )
    )
    assert message.sid.startswith("SM") and message.status == "queued" and message.direction == "outbound-api"
    assert message.body == CYRILLIC and message.num_segments == "2"  # 90 UCS-2 units: two segments
    await api.messaging.drain(5)
    await api.callbacks.drain(5)
    [sent] = api.sender.sent
    assert sent.parsed.method == "MESSAGE" and str(sent.parsed.uri) == "sip:alice@127.0.0.1"
    assert sent.parsed.content_type == "text/plain;charset=UTF-8"
    assert sent.parsed.body == CYRILLIC.encode("utf-8") and sent.wire.endswith(CYRILLIC.encode("utf-8"))
    callbacks = await api.web.wait_for("/status", 3)
    assert [c.form["MessageStatus"] for c in callbacks] == ["sending", "sent", "delivered"]
    validator = RequestValidator(TOKEN)
    assert all(validator.validate(c.url, c.form, c.headers["X-Twilio-Signature"]) for c in callbacks)
    fetched = await api.run(lambda c: c.messages(message.sid).fetch())
    assert fetched.status == "delivered" and fetched.body == CYRILLIC and fetched.date_sent is not None
    listed = await api.run(lambda c: c.messages.list(to="client:alice"))
    assert [m.sid for m in listed] == [message.sid]


async def test_message_undelivered_reported(api: Api) -> None:
    api.sender.answers["+14155550142"] = 404
    message = await api.run(lambda c: c.messages.create(to="+14155550142", from_="+14155550100", body="hi"))
    await api.messaging.drain(5)
    fetched = await api.run(lambda c: c.messages(message.sid).fetch())
    assert fetched.status == "undelivered" and fetched.error_code == 30003
    assert fetched.error_message == "Unreachable destination handset"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"to": "", "from_": "+14155550100", "body": "x"}, 21604),
        ({"to": "+12", "from_": "+14155550100", "body": "x"}, 21211),
        ({"to": "+14155550142", "from_": "", "body": "x"}, 21603),
        ({"to": "+14155550142", "from_": "not valid!", "body": "x"}, 21212),
        ({"to": "+14155550142", "from_": "+14155550100", "body": ""}, 21602),
        ({"to": "+14155550142", "from_": "+14155550100", "body": "   "}, 21602),
        ({"to": "+14155550142", "from_": "+14155550100", "body": "x" * 1601}, 21617),
        ({"to": "+14155550142", "from_": "+14155550100", "body": "x", "status_callback": "nope"}, 21609),
    ],
)
async def test_message_validation(api: Api, params: dict[str, str], code: int) -> None:
    assert await api.error(lambda c: c.messages.create(**params)) == (400, code)
    assert api.sender.sent == []


async def test_message_limits_accepted(api: Api) -> None:
    longest = await api.run(
        lambda c: c.messages.create(to="+14155550142", from_="Trunkline", body="я" * 1600)
    )
    assert longest.from_ == "Trunkline" and longest.num_segments == "24"  # 1,600 UCS-2 units / 67
    await api.messaging.drain(5)
    assert api.sender.sent[0].from_ == "Trunkline" and len(api.sender.sent[0].body) == 1600
