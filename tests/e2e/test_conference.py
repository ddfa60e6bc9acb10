"""E2E: five SIPp callers join ``<Dial><Conference>`` through a real customer app; each caller's
RTP is a test phone on 127.0.0.1 sending its own tone. Checked: what every phone hears (all the
others, never itself, not the muted one, the coach only by the coached, hold music before the
moderator), the status callbacks, the records and the room recording, and live control through the
real twilio library (mute, hold, kick, end).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from twilio.rest import Client

from tests.e2e.conftest import (
    ACCOUNT,
    AppRequest,
    CustomerApp,
    StartTrunkline,
    e2e_config,
    http_base,
    requires_sipp,
    sip_address,
)
from tests.media.rtp_phone import Phone
from tests.peers import audio
from tests.peers.sipp import Sipp, derive_scenario
from trunkline.gateway.server import Server
from trunkline.gateway.switch.conference_control import conference_control

pytestmark = [requires_sipp, pytest.mark.timeout(90)]

ROOM = "e2e-room"
RATE = 8000


class TonePhone:
    """The RTP side of one SIPp caller: once Trunkline's first packet arrives (symmetric RTP),
    send a continuous tone back to where it came from; keep everything received."""

    def __init__(self, freq: float) -> None:
        self.freq = freq
        self.phone = Phone(asyncio.get_running_loop(), 0)
        self.task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.phone.received:
            await asyncio.sleep(0.01)
        dest = self.phone.received[0].src
        tone = audio.tone(self.freq, 4.0, RATE, level_dbfs=-14.0)
        start = loop.time()
        i = 0
        while True:
            delay = start + i * 0.02 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            k = (i * 160) % tone.size
            self.phone.send_raw(self.phone.packet(audio.encode_pcmu(tone[k : k + 160])), dest)
            i += 1

    def heard(self, since: float, until: float | None = None) -> np.ndarray:
        packets = [
            r.packet
            for r in self.phone.received
            if r.time >= since and (until is None or r.time <= until) and r.packet.payload_type == 0
        ]
        packets.sort(key=lambda p: p.sequence)
        return audio.decode_pcmu(b"".join(p.payload for p in packets))

    def close(self) -> None:
        self.task.cancel()
        self.phone.close()


def share(samples: np.ndarray, freq: float) -> float:
    if samples.size < 800 or audio.rms_dbfs(samples) < -60:
        return 0.0
    return audio.band_energy(samples, RATE, freq, 60.0)


def caller(tmp_path: Path, server: Server, phone: TonePhone, number: str, name: str) -> Sipp:
    path = derive_scenario(
        "uac_bye_from_remote",
        tmp_path,
        {"m=audio [media_port] RTP/AVP 0 101": f"m=audio {phone.phone.port} RTP/AVP 0 101"},
        name=name,
    )
    return Sipp(path, remote=sip_address(server), workdir=tmp_path, service=number, timeout=60)


def rest_client(server: Server) -> Client:
    client = Client(ACCOUNT.sid, ACCOUNT.auth_token)
    client.api.base_url = http_base(server)
    return client


def conference_twiml(**attrs: str) -> web.Response:
    text = " ".join(f'{k}="{v}"' for k, v in attrs.items())
    body = f"<Response><Dial><Conference {text}>{ROOM}</Conference></Dial></Response>"
    return web.Response(text=body, content_type="text/xml")


async def start(tmp_path: Path, app: CustomerApp, trunkline: StartTrunkline) -> Server:
    server = await trunkline(e2e_config(tmp_path, voice_url=app.url("/voice")))
    assert server.switch is not None
    server.controls.conferences = conference_control(server.switch, calls=server.controls.calls)
    return server


async def test_five_callers_mix_mute_coach_wait_music_callbacks_rest_and_recording(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    freqs = {"+15550000001": 620.0, "+15550000002": 1100.0, "+15550000003": 1400.0,
             "+15550000004": 1700.0, "+15550000005": 2300.0}  # fmt: skip
    first, second, muted, moderator, coach = freqs
    events = "start end join leave mute hold speaker"

    def call_sid_of(number: str) -> str:
        return next(r.form["CallSid"] for r in customer_app.to("/voice") if r.form["To"] == number)

    def voice(request: AppRequest) -> web.Response:
        to = request.form["To"]
        if to == first:
            return conference_twiml(
                beep="false",
                startConferenceOnEnter="false",
                statusCallback=customer_app.url("/events"),
                statusCallbackEvent=events,
                record="record-from-start",
                recordingStatusCallback=customer_app.url("/recording"),
                participantLabel="first",
            )
        if to == muted:
            return conference_twiml(beep="false", muted="true", startConferenceOnEnter="false")
        if to == moderator:
            return conference_twiml(beep="false", endConferenceOnExit="true")
        if to == coach:
            return conference_twiml(beep="false", coach=call_sid_of(second))
        return conference_twiml(beep="false", startConferenceOnEnter="false", waitUrl="")

    customer_app.route("/voice", voice)
    for path in ("/events", "/recording"):
        customer_app.route(path, lambda r: web.Response(status=204))
    server = await start(tmp_path, customer_app, trunkline)
    client = rest_client(server)
    loop = asyncio.get_running_loop()
    phones = {number: TonePhone(f) for number, f in freqs.items()}
    sipps = {n: caller(tmp_path, server, phones[n], n, f"p{i}") for i, n in enumerate(freqs)}
    try:
        for n in (first, second, muted):
            await sipps[n].start()
        await customer_app.wait_for("/events", 3)  # three participant-join
        t0 = loop.time()
        await asyncio.sleep(1.5)
        waiting = phones[first].heard(t0 + 0.3)
        assert audio.rms_dbfs(waiting) > -40, "no hold music before the moderator joined"
        assert share(waiting, freqs[second]) < 0.01, "participants mixed before the conference started"
        assert audio.rms_dbfs(phones[second].heard(t0 + 0.3)) < -55  # waitUrl="" is silence

        await sipps[moderator].start()
        await customer_app.wait_for("/voice", 4)
        await sipps[coach].start()
        await customer_app.wait_for("/events", 6)  # + start + 2 joins
        await asyncio.sleep(1.0)
        t1 = loop.time()
        await asyncio.sleep(1.5)
        heard = {n: phones[n].heard(t1) for n in freqs}
        for n, pcm in heard.items():
            assert pcm.size > 8000, f"{n} heard nothing"
            assert share(pcm, freqs[n]) < 0.01, f"{n} hears its own tone"
            for talker in (first, second, moderator):
                if talker != n:
                    assert share(pcm, freqs[talker]) > 0.1, f"{n} does not hear {talker}"
            assert share(pcm, freqs[muted]) < 0.01, f"{n} hears the muted participant"
        assert share(heard[second], freqs[coach]) > 0.1, "the coached participant does not hear the coach"
        for n in (first, muted, moderator):
            assert share(heard[n], freqs[coach]) < 0.01, f"{n} hears the coach"

        # REST, through the twilio library.
        (conf,) = await asyncio.to_thread(client.conferences.list, friendly_name=ROOM, status="in-progress")
        participants = await asyncio.to_thread(client.conferences(conf.sid).participants.list)
        assert {p.call_sid for p in participants} == {call_sid_of(n) for n in freqs}
        labels = {p.call_sid: p.label for p in participants}
        assert labels[call_sid_of(first)] == "first"
        sid2 = call_sid_of(second)
        updated = await asyncio.to_thread(client.conferences(conf.sid).participants(sid2).update, muted=True)
        assert updated.muted is True
        await asyncio.to_thread(
            client.conferences(conf.sid).participants(call_sid_of(first)).update, hold=True
        )
        await asyncio.sleep(0.6)
        t2 = loop.time()
        await asyncio.sleep(1.2)
        on_moderator = phones[moderator].heard(t2)
        assert share(on_moderator, freqs[second]) < 0.01, "REST-muted participant still heard"
        assert share(on_moderator, freqs[first]) < 0.01, "held participant still heard"
        held = phones[first].heard(t2)
        assert share(held, freqs[moderator]) < 0.01 and audio.rms_dbfs(held) > -40  # hold music

        await asyncio.to_thread(client.conferences(conf.sid).participants(call_sid_of(muted)).delete)
        kicked = await asyncio.wait_for(sipps[muted].wait(), 10)
        kicked.check(calls=1)  # got our BYE
        left = await asyncio.to_thread(client.conferences(conf.sid).participants.list)
        assert call_sid_of(muted) not in {p.call_sid for p in left if p.status == "connected"}

        # Kicking the endConferenceOnExit participant ends the room: everybody gets a BYE.
        await asyncio.to_thread(client.conferences(conf.sid).participants(call_sid_of(moderator)).delete)
        for n in (first, second, moderator, coach):
            (await asyncio.wait_for(sipps[n].wait(), 10)).check(calls=1)
    finally:
        for s in sipps.values():
            if s.result is None:
                await s.stop()
        for p in phones.values():
            p.close()

    ended = await asyncio.to_thread(client.conferences(conf.sid).fetch)
    assert ended.status == "completed"
    assert ended.reason_conference_ended == "participant-with-end-conference-on-exit-kicked"
    assert ended.call_sid_ending_conference == call_sid_of(moderator)

    posted = await customer_app.wait_for("/events", 1)
    await asyncio.sleep(0.5)
    posted = customer_app.to("/events")
    assert all(p.signature_valid() for p in posted)
    forms = sorted((p.form for p in posted), key=lambda f: int(f["SequenceNumber"]))
    names = [f["StatusCallbackEvent"] for f in forms]
    assert names.count("participant-join") == 5 and names.count("participant-leave") == 5
    assert names.count("conference-start") == 1 and names[-1] == "conference-end"
    assert "participant-mute" in names and "participant-hold" in names
    assert "participant-speech-start" in names
    assert all(f["ConferenceSid"] == conf.sid and f["FriendlyName"] == ROOM for f in forms)
    join_first = next(f for f in forms if f["StatusCallbackEvent"] == "participant-join")
    for key in ("CallSid", "Muted", "Hold", "Coaching", "EndConferenceOnExit", "StartConferenceOnEnter"):
        assert key in join_first
    assert forms[-1]["ReasonConferenceEnded"] == "participant-with-end-conference-on-exit-kicked"
    assert forms[-1]["CallSidEndingConference"] == call_sid_of(moderator)

    (rec_cb,) = await customer_app.wait_for("/recording")
    assert rec_cb.signature_valid() and rec_cb.form["ConferenceSid"] == conf.sid
    recordings = await asyncio.to_thread(client.recordings.list, conference_sid=conf.sid)
    (recording,) = recordings
    assert recording.sid == rec_cb.form["RecordingSid"] and recording.status == "completed"
    stored = await server.store.get("recordings", sid=recording.sid)
    assert stored is not None
    pcm, rate = audio.read_wav(stored["_path"])
    assert rate == 8000 and pcm.size > 3 * 8000
    talking = pcm[8000 : 8000 + 16000]
    for n in (first, second, moderator):
        assert share(talking, freqs[n]) > 0.1, f"{freqs[n]} Hz missing from the room recording"
    assert share(talking, freqs[muted]) < 0.01 and share(talking, freqs[coach]) < 0.01  # not in the mix


def tone_wav(freq: float, seconds: float) -> bytes:
    import io

    import soundfile

    out = io.BytesIO()
    soundfile.write(
        out, audio.tone(freq, seconds, RATE, level_dbfs=-10.0), RATE, format="WAV", subtype="PCM_16"
    )
    return out.getvalue()


async def test_rest_dial_out_participant_announce_and_end(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    announce_hz = 2000.0
    wav = tone_wav(announce_hz, 1.0)
    customer_app.route(
        "/voice",
        lambda r: conference_twiml(
            beep="false",
            statusCallback=customer_app.url("/events"),
            statusCallbackEvent="start end join leave announcement",
        ),
    )
    customer_app.route(
        "/announce",
        lambda r: web.Response(
            text=f"<Response><Play>{customer_app.url('/tone.wav')}</Play></Response>", content_type="text/xml"
        ),
    )
    customer_app.route("/tone.wav", lambda r: web.Response(body=wav, content_type="audio/wav"))
    for path in ("/events", "/agent-status"):
        customer_app.route(path, lambda r: web.Response(status=204))
    server = await start(tmp_path, customer_app, trunkline)
    client = rest_client(server)
    loop = asyncio.get_running_loop()
    caller_phone, agent_phone = TonePhone(620.0), TonePhone(1400.0)
    uas_path = derive_scenario(
        "uas_answer",
        tmp_path,
        {"m=audio [media_port] RTP/AVP 0 8 101": f"m=audio {agent_phone.phone.port} RTP/AVP 0 8 101"},
        name="agent",
    )
    uas = Sipp(uas_path, workdir=tmp_path, timeout=60)
    uac = caller(tmp_path, server, caller_phone, "+15550000001", "caller")
    try:
        await uas.start()
        await uac.start()
        first_events = await customer_app.wait_for("/events", 2)  # join + start
        conf_sid = first_events[0].form["ConferenceSid"]
        participant = await asyncio.to_thread(
            client.conferences(conf_sid).participants.create,
            from_="+15550009999",
            to=f"sip:agent@127.0.0.1:{uas.local_port}",
            label="agent",
            beep="false",
            status_callback=customer_app.url("/agent-status"),
            status_callback_event=["initiated", "ringing", "answered", "completed"],
        )
        assert participant.status == "queued" and participant.label == "agent"
        assert participant.conference_sid == conf_sid
        await customer_app.wait_for("/events", 3)  # the agent's participant-join
        fetched = await asyncio.to_thread(
            client.conferences(conf_sid).participants(participant.call_sid).fetch
        )
        assert fetched.status == "connected" and fetched.label == "agent"
        await asyncio.sleep(0.8)
        t0 = loop.time()
        await asyncio.sleep(1.0)
        assert share(caller_phone.heard(t0), 1400.0) > 0.3, "the caller does not hear the dialled-out agent"
        assert share(agent_phone.heard(t0), 620.0) > 0.3, "the agent does not hear the caller"

        await asyncio.to_thread(
            client.conferences(conf_sid).update, announce_url=customer_app.url("/announce")
        )
        await customer_app.wait_for("/tone.wav")
        t1 = loop.time()
        await asyncio.sleep(1.2)
        assert share(caller_phone.heard(t1), announce_hz) > 0.2, "announcement not heard by the caller"
        assert share(agent_phone.heard(t1), announce_hz) > 0.2, "announcement not heard by the agent"

        ended = await asyncio.to_thread(client.conferences(conf_sid).update, status="completed")
        assert ended.status == "completed"
        (await asyncio.wait_for(uac.wait(), 10)).check(calls=1)  # BYE to the caller
        (await asyncio.wait_for(uas.wait(), 10)).check(calls=1)  # and to the agent
    finally:
        for s in (uas, uac):
            if s.result is None:
                await s.stop()
        caller_phone.close()
        agent_phone.close()

    await asyncio.sleep(0.3)
    forms = sorted((r.form for r in customer_app.to("/events")), key=lambda f: int(f["SequenceNumber"]))
    names = [f["StatusCallbackEvent"] for f in forms]
    assert "announcement-end" in names
    assert names[-1] == "conference-end" and forms[-1]["ReasonConferenceEnded"] == "conference-ended-via-api"
    agent_join = next(
        f
        for f in forms
        if f["StatusCallbackEvent"] == "participant-join" and f["CallSid"] == participant.call_sid
    )
    assert agent_join["ParticipantLabel"] == "agent"
    statuses = await customer_app.wait_for("/agent-status", 4)
    ordered = sorted(statuses, key=lambda r: int(r.form["SequenceNumber"]))
    assert [r.form["CallStatus"] for r in ordered] == ["queued", "ringing", "in-progress", "completed"]
    assert all(r.form["CallSid"] == participant.call_sid for r in ordered)
