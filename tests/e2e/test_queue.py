"""E2E: a caller waits in a queue hearing the waitUrl music; an agent's ``<Dial><Queue>`` bridges them."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
import soundfile
from aiohttp import web
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from tests.e2e.conftest import (
    ACCOUNT,
    AppRequest,
    CustomerApp,
    StartTrunkline,
    e2e_config,
    http_base,
    requires_sipp,
    sip_address,
    twiml,
)
from tests.e2e.test_dial import heard
from tests.media.rtp_phone import Phone
from tests.peers import audio
from tests.peers.sipp import Sipp, derive_scenario
from trunkline.gateway.server import Server
from trunkline.gateway.switch.queues import queue_manager

pytestmark = [requires_sipp, pytest.mark.timeout(60)]

AGENT_NUMBER = "+15557770000"
MUSIC_HZ = 500.0
MEMBER_HZ = 700.0
AGENT_HZ = 1300.0


def music_wav() -> bytes:
    out = io.BytesIO()
    soundfile.write(
        out, audio.tone(MUSIC_HZ, 1.5, 8000, level_dbfs=-8.0), 8000, format="WAV", subtype="PCM_16"
    )
    return out.getvalue()


def caller(tmp_path: Path, server: Server, media_port: int, service: str, name: str) -> Sipp:
    path = derive_scenario(
        "uac_bye_from_remote",
        tmp_path,
        {"m=audio [media_port] RTP/AVP 0 101": f"m=audio {media_port} RTP/AVP 0 101"},
        name=name,
    )
    return Sipp(path, remote=sip_address(server), workdir=tmp_path, service=service, timeout=30)


def rtp_port(server: Server, app: CustomerApp, to: str) -> int | None:
    assert server.switch is not None
    for request in app.to("/voice"):
        if request.form["To"] != to:
            continue
        active = server.switch.calls.get(request.form["CallSid"])
        if active is not None and active.channel is not None:
            return active.channel.stream.local_port
    return None


async def talk(phone: Phone, server: Server, app: CustomerApp, to: str, freq: float, seconds: float) -> None:
    for _ in range(1000):
        port = rtp_port(server, app, to)
        if port is not None:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"no RTP port for the call to {to}")
    await phone.send_paced(
        phone.audio_packets(audio.tone(freq, seconds, 8000, level_dbfs=-10.0)), ("127.0.0.1", port)
    )


async def test_enqueue_wait_music_then_agent_bridges(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    wav = music_wav()

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        if request.form["To"] == AGENT_NUMBER:
            dial = response.dial(action="/agent-done", time_limit=3)
            dial.queue("support", url="/connecting")
        else:
            response.enqueue("support", wait_url="/wait", action="/queued")
        return twiml(response)

    def wait(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.play("/music.wav")
        return twiml(response)

    def hangup(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.hangup()
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/wait", wait)
    customer_app.route("/music.wav", lambda r: web.Response(body=wav, content_type="audio/wav"))

    def connecting(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say("Connecting you to an agent.")
        return twiml(response)

    customer_app.route("/connecting", connecting)
    customer_app.route("/queued", hangup)
    customer_app.route("/agent-done", hangup)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    assert server.switch is not None
    server.controls.queues = queue_manager(server.switch)
    client = Client(ACCOUNT.sid, ACCOUNT.auth_token)
    client.api.base_url = http_base(server)
    loop = asyncio.get_running_loop()
    member_phone, agent_phone = Phone(loop), Phone(loop)
    member_number = "+15551230000"
    try:
        member = loop.create_task(caller(tmp_path, server, member_phone.port, member_number, "member").run())
        (first_wait,) = await customer_app.wait_for("/wait", timeout=15)
        form = first_wait.form
        assert form["QueuePosition"] == "1" and form["CurrentQueueSize"] == "1"
        assert form["MaxQueueSize"] == "100" and form["QueueSid"].startswith("QU")
        queue_sid = form["QueueSid"]
        await asyncio.sleep(2.0)  # the member hears the music (and /wait is requested again)
        members = await asyncio.to_thread(client.queues(queue_sid).members.list)
        assert [m.call_sid for m in members] == [form["CallSid"]]
        assert members[0].position == 1
        fetched = await asyncio.to_thread(client.queues(queue_sid).fetch)
        assert fetched.friendly_name == "support" and fetched.current_size == 1

        async def member_talks() -> None:
            while rtp_port(server, customer_app, AGENT_NUMBER) is None:
                await asyncio.sleep(0.02)
            await talk(member_phone, server, customer_app, member_number, MEMBER_HZ, 5.0)

        talkers = [
            loop.create_task(member_talks()),
            loop.create_task(talk(agent_phone, server, customer_app, AGENT_NUMBER, AGENT_HZ, 5.0)),
        ]
        agent_result = await caller(tmp_path, server, agent_phone.port, AGENT_NUMBER, "agent").run()
        member_result = await member
        for task in talkers:
            task.cancel()
    finally:
        member_phone.close()
        agent_phone.close()
    agent_result.check(calls=1)
    member_result.check(calls=1)

    assert heard(member_phone, MUSIC_HZ), "the waiting caller did not hear the wait music"
    assert len(customer_app.to("/wait")) >= 2, "the waitUrl document is looped"
    assert heard(member_phone, AGENT_HZ), "the caller did not hear the agent"
    assert heard(agent_phone, MEMBER_HZ), "the agent did not hear the caller"

    (queued,) = await customer_app.wait_for("/queued")
    assert queued.signature_valid()
    assert queued.form["QueueResult"] == "bridged"
    assert queued.form["QueueSid"] == queue_sid
    assert 1 <= int(queued.form["QueueTime"]) <= 10
    (connect,) = customer_app.to("/connecting")
    (agent_voice,) = [r for r in customer_app.to("/voice") if r.form["To"] == AGENT_NUMBER]
    assert connect.form["CallSid"] == form["CallSid"]  # played to the dequeued caller
    assert connect.form["QueueSid"] == queue_sid
    assert connect.form["DequeingCallSid"] == agent_voice.form["CallSid"]
    (agent_done,) = await customer_app.wait_for("/agent-done")
    assert agent_done.form["DialCallStatus"] == "completed"
    assert agent_done.form["DialCallSid"] == form["CallSid"]
    record = await server.store.get("queues", sid=queue_sid)
    assert record is not None and record["current_size"] == 0


async def test_leave_and_queue_full(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.enqueue("sales", wait_url="/wait", action="/queued")
        return twiml(response)

    def wait(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say("Sorry, nobody is available.")
        response.leave()
        return twiml(response)

    def queued(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.hangup()
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/wait", wait)
    customer_app.route("/queued", queued)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    phone = Phone(asyncio.get_running_loop())
    try:
        result = await caller(tmp_path, server, phone.port, "+15551230000", "leaver").run()
    finally:
        phone.close()
    result.check(calls=1)
    (action,) = await customer_app.wait_for("/queued")
    assert action.form["QueueResult"] == "leave"
    assert server.switch is not None
    manager = queue_manager(server.switch)
    (state,) = manager.queues.values()
    assert state.friendly_name == "sales" and not state.members

    # A full queue answers queue-full at once.
    record = await server.store.get("queues", sid=state.sid)
    assert record is not None
    record["max_size"] = 0
    await server.store.put("queues", record)
    phone = Phone(asyncio.get_running_loop())
    try:
        result = await caller(tmp_path, server, phone.port, "+15551230000", "full").run()
    finally:
        phone.close()
    result.check(calls=1)
    actions = await customer_app.wait_for("/queued", count=2)
    assert actions[1].form["QueueResult"] == "queue-full"
    assert actions[1].form["QueueTime"] == "0"
