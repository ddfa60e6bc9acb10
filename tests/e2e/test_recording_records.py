"""Recording records are stored when a recording starts (``in-progress``, duration -1) and finished
when it ends, so that a live recording is listed and a crash loses no record.

Every ``store.put`` of the ``recordings`` table is spied on (a copy of the record as written), for
``<Record>``, ``<Dial record>`` and REST (``Calls/{sid}/Recordings``) recordings of calls through SIPp.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from tests.e2e.conftest import (
    AppRequest,
    CustomerApp,
    StartTrunkline,
    e2e_config,
    requires_sipp,
    twiml,
)
from tests.e2e.test_dial import (
    call_with_talkers,
    callee,
    dial_twiml,
    hangup,
    start,
)
from tests.e2e.test_outbound_rest import rest_client
from tests.e2e.test_twiml_record import caller_audio, record_call
from tests.media.rtp_phone import Phone
from tests.peers.sipp import Sipp, scenario
from trunkline.gateway.store import SqliteStore

pytestmark = [requires_sipp, pytest.mark.timeout(60)]

Written = list[dict[str, Any]]


@pytest.fixture
def recording_writes(monkeypatch: pytest.MonkeyPatch) -> Written:
    """Copies of every recording record the store is asked to write, in order."""
    written: Written = []
    put = SqliteStore.put

    async def spy(self: SqliteStore, table: str, record: Mapping[str, Any]) -> None:
        if table == "recordings":
            written.append(dict(record))
        await put(self, table, record)

    monkeypatch.setattr(SqliteStore, "put", spy)
    return written


def history(written: Written, sid: str) -> list[tuple[str, str]]:
    return [(w["status"], w["duration"]) for w in written if w["sid"] == sid]


async def test_record_verb_record_is_in_progress_from_the_start(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline, recording_writes: Written
) -> None:
    response = VoiceResponse()
    response.record(action="/recorded", max_length=2, timeout=5, play_beep=False)
    server, _ = await record_call(tmp_path, customer_app, trunkline, response, caller_audio(6.0), delay=0.3)
    (action,) = await customer_app.wait_for("/recorded")
    sid = action.form["RecordingSid"]
    assert history(recording_writes, sid) == [("in-progress", "-1"), ("completed", "2")]
    first, last = (w for w in recording_writes if w["sid"] == sid)
    assert last["date_created"] == last["start_time"] == first["date_created"]  # when it started
    assert first["source"] == last["source"] == "RecordVerb"
    assert first["_path"] == last["_path"] and last["_path"].endswith(f"{sid}.wav")
    stored = await server.store.get("recordings", sid=sid)
    assert stored is not None and (stored["status"], stored["duration"]) == ("completed", "2")


async def test_silent_record_verb_record_ends_absent(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline, recording_writes: Written
) -> None:
    """As its status callback says (``absent``), not ``completed`` with 0 s."""
    response = VoiceResponse()
    response.record(action="/recorded", timeout=1, max_length=10, play_beep=False)
    response.redirect("/after")
    await record_call(tmp_path, customer_app, trunkline, response, np.zeros(8000 * 3, np.int16), delay=0.1)
    await customer_app.wait_for("/after")
    (sid,) = {w["sid"] for w in recording_writes}
    assert history(recording_writes, sid) == [("in-progress", "-1"), ("absent", "0")]


async def test_dial_record_is_in_progress_from_the_answer(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline, recording_writes: Written
) -> None:
    server = await start(tmp_path, customer_app, trunkline)
    loop = asyncio.get_running_loop()
    caller_phone, callee_phone = Phone(loop), Phone(loop)
    try:
        async with callee(tmp_path, callee_phone.port, hold_ms=3000) as uas:
            customer_app.route(
                "/voice", dial_twiml(f"sip:bob@127.0.0.1:{uas.local_port}", record="record-from-answer")
            )
            customer_app.route("/dialed", hangup)
            result = await call_with_talkers(tmp_path, server, customer_app, caller_phone, callee_phone, 3.5)
        result.check(calls=1)
    finally:
        caller_phone.close()
        callee_phone.close()
    (action,) = await customer_app.wait_for("/dialed")
    sid = action.form["RecordingSid"]
    duration = action.form["RecordingDuration"]
    assert 2 <= int(duration) <= 5
    assert history(recording_writes, sid) == [("in-progress", "-1"), ("completed", duration)]
    first, last = (w for w in recording_writes if w["sid"] == sid)
    assert first["source"] == "DialVerb" and first["call_sid"] == action.form["CallSid"]
    assert last["date_created"] == first["date_created"] and last["channels"] == first["channels"] == 1


async def test_rest_recording_is_listed_in_progress_then_paused_then_completed(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline, recording_writes: Written
) -> None:
    def outbound(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.pause(length=10)
        return twiml(response)

    customer_app.route("/outbound", outbound)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    client = rest_client(server)
    async with Sipp(scenario("uas_answer"), workdir=tmp_path, timeout=20, rtp_echo=True) as uas:
        call = await asyncio.to_thread(
            client.calls.create,
            to=f"sip:test@127.0.0.1:{uas.local_port}",
            from_="+15550001111",
            url=customer_app.url("/outbound"),
        )
        await customer_app.wait_for("/outbound")
        started = await asyncio.to_thread(client.calls(call.sid).recordings.create)
        (listed,) = await asyncio.to_thread(client.recordings.list, call_sid=call.sid)
        assert (listed.sid, listed.status, listed.duration) == (started.sid, "in-progress", "-1")
        live = client.calls(call.sid).recordings(started.sid)
        await asyncio.to_thread(live.update, status="paused")
        await asyncio.sleep(0.1)  # the paused record is written off the request's path
        paused = await asyncio.to_thread(client.recordings(started.sid).fetch)
        assert (paused.status, paused.duration) == ("paused", "-1")
        await asyncio.to_thread(live.update, status="in-progress")
        await asyncio.sleep(1.2)
        stopped = await asyncio.to_thread(live.update, status="stopped")
        assert stopped.status == "completed"
        await asyncio.to_thread(client.calls(call.sid).update, status="completed")
    statuses = [status for status, _ in history(recording_writes, started.sid)]
    assert statuses == ["in-progress", "paused", "in-progress", "completed"]
    fetched = await asyncio.to_thread(client.recordings(started.sid).fetch)
    assert fetched.status == "completed" and int(fetched.duration) >= 1
