"""E2E: the twilio library places a call through Trunkline's REST API to a SIPp UAS, then redirects it."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import aiohttp
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
    twiml,
)
from tests.peers import audio
from tests.peers.sipp import Sipp, scenario
from trunkline.gateway.server import Server

pytestmark = [requires_sipp, pytest.mark.timeout(60)]

EVENTS = ["initiated", "ringing", "answered", "completed"]


def rest_client(server: Server) -> Client:
    client = Client(ACCOUNT.sid, ACCOUNT.auth_token)
    client.api.base_url = http_base(server)
    return client


async def test_create_call_runs_twiml_and_update_redirects(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def outbound(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say("Hello, this is an outbound call.")
        response.pause(length=20)
        return twiml(response)

    customer_app.route("/outbound", outbound)
    customer_app.route("/status", lambda r: web.Response(status=204))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    client = rest_client(server)
    async with Sipp(scenario("uas_answer"), workdir=tmp_path, timeout=20) as uas:
        call = await asyncio.to_thread(
            client.calls.create,
            to=f"sip:test@127.0.0.1:{uas.local_port}",
            from_="+15550001111",
            url=customer_app.url("/outbound"),
            status_callback=customer_app.url("/status"),
            status_callback_event=EVENTS,
        )
        assert call.status == "queued" and call.direction == "outbound-api"
        (first,) = await customer_app.wait_for("/outbound")
        assert first.signature_valid()
        assert first.form["CallSid"] == call.sid
        assert first.form["Direction"] == "outbound-api"
        assert first.form["CallStatus"] == "in-progress"
        assert first.form["To"] == f"sip:test@127.0.0.1:{uas.local_port}"
        await asyncio.sleep(1.0)
        updated = await asyncio.to_thread(
            client.calls(call.sid).update, twiml="<Response><Say>bye</Say><Hangup/></Response>"
        )
        assert updated.sid == call.sid
    assert uas.result is not None
    uas.result.check(calls=1)  # the UAS got our BYE

    callbacks = await customer_app.wait_for("/status", count=4)
    assert all(c.signature_valid() for c in callbacks)
    ordered = sorted(callbacks, key=lambda c: int(c.form["SequenceNumber"]))
    assert [c.form["StatusCallbackEvent"] for c in ordered] == EVENTS
    assert [c.form["CallStatus"] for c in ordered[1:]] == ["ringing", "in-progress", "completed"]
    last = ordered[-1].form
    assert 1 <= int(last["CallDuration"]) <= 5
    assert last["CallSid"] == call.sid

    calls = await asyncio.to_thread(client.calls.list)
    (listed,) = [c for c in calls if c.sid == call.sid]
    assert listed.status == "completed"
    assert listed.direction == "outbound-api"
    assert int(listed.duration) == int(last["CallDuration"])


async def test_busy_callee(tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline) -> None:
    customer_app.route("/status", lambda r: web.Response(status=204))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    client = rest_client(server)
    async with Sipp(scenario("uas_busy"), workdir=tmp_path, timeout=10) as uas:
        call = await asyncio.to_thread(
            client.calls.create,
            to=f"sip:test@127.0.0.1:{uas.local_port}",
            from_="+15550001111",
            twiml="<Response><Say>never heard</Say></Response>",
            status_callback=customer_app.url("/status"),
        )
        (done,) = await customer_app.wait_for("/status")
    assert done.form["CallStatus"] == "busy"
    assert done.form["StatusCallbackEvent"] == "completed"
    assert done.form["SipResponseCode"] == "486"
    fetched = await asyncio.to_thread(client.calls(call.sid).fetch)
    assert fetched.status == "busy"


async def test_outbound_record_and_recordings_api(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def outbound(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say("This call is being recorded by the switch. " * 2)
        response.pause(length=10)
        return twiml(response)

    customer_app.route("/outbound", outbound)
    customer_app.route("/recording", lambda r: web.Response(status=204))
    customer_app.route("/api-recording", lambda r: web.Response(status=204))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    client = rest_client(server)
    # The UAS echoes our RTP, so what it "says" is our own <Say>.
    async with Sipp(scenario("uas_answer"), workdir=tmp_path, timeout=20, rtp_echo=True) as uas:
        call = await asyncio.to_thread(
            client.calls.create,
            to=f"sip:test@127.0.0.1:{uas.local_port}",
            from_="+15550001111",
            url=customer_app.url("/outbound"),
            record=True,
            recording_status_callback=customer_app.url("/recording"),
        )
        await customer_app.wait_for("/outbound")
        started = await asyncio.to_thread(
            client.calls(call.sid).recordings.create,
            recording_status_callback=customer_app.url("/api-recording"),
        )
        assert started.sid.startswith("RE") and started.status == "in-progress"
        await asyncio.sleep(2.0)
        stopped = await asyncio.to_thread(
            client.calls(call.sid).recordings(started.sid).update, status="stopped"
        )
        assert stopped.status == "completed"
        await asyncio.to_thread(client.calls(call.sid).update, status="completed")
    assert uas.result is not None
    uas.result.check(calls=1)

    (api_done,) = await customer_app.wait_for("/api-recording")
    assert api_done.form["RecordingStatus"] == "completed"
    assert api_done.form["RecordingSource"] == "StartCallRecordingAPI"
    (whole,) = await customer_app.wait_for("/recording")
    assert whole.signature_valid()
    assert whole.form["RecordingStatus"] == "completed"
    assert whole.form["RecordingSource"] == "OutboundAPI"
    assert int(whole.form["RecordingDuration"]) >= 2
    recordings = await asyncio.to_thread(client.recordings.list, call_sid=call.sid)
    assert {r.sid for r in recordings} == {started.sid, whole.form["RecordingSid"]}
    async with (
        aiohttp.ClientSession() as session,
        session.get(whole.form["RecordingUrl"] + ".wav") as response,
    ):
        assert response.status == 200
        samples, rate = soundfile.read(io.BytesIO(await response.read()), dtype="int16")
    assert rate == 8000 and samples.size >= 2 * rate
    assert audio.rms_dbfs(samples) > -45  # our echoed speech
