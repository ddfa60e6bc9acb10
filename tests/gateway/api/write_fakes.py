"""Shared by the REST write tests: fake switch controls that do to the store what the switch
will do and remember every request, a fake SIP MESSAGE sender, and the API served on
127.0.0.1 for the official twilio library."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
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


@asynccontextmanager
async def running_api(tmp_path: Path) -> AsyncIterator[Api]:
    """Serve the API with fake controls on 127.0.0.1 and a customer web app; clean up after."""
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
