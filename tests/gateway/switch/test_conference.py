"""Conferences on the real media engine with RTP phones on 127.0.0.1 (no SIP: fake legs).

Every participant's phone sends its own tone; assertions are on what each phone receives, decoded
with the test harness's independent G.711 decoder. Each ``Party`` is one call: a
:class:`~tests.media.rtp_phone.Phone` that keeps sending a tone of its own frequency and records
what it receives, plus the switch side (stream, a real ``SipCallChannel`` on a fake leg,
``ActiveCall``); ``party.join(noun)`` runs ``<Dial><Conference>`` through ``SipCallChannel.dial``
exactly as the TwiML interpreter would. Status callbacks are captured instead of posted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.media.rtp_phone import Phone, negotiated
from tests.peers import audio
from trunkline.gateway.api.control import ConferenceUpdate, ControlError, ParticipantUpdate
from trunkline.gateway.config import Account, Config, HttpConfig, RtpConfig, SipConfig, StorageConfig
from trunkline.gateway.store import Filter, SqliteStore
from trunkline.gateway.switch.calls import Call, CallStatus
from trunkline.gateway.switch.channel import SipCallChannel
from trunkline.gateway.switch.conference import service_for
from trunkline.gateway.switch.conference_audio import HOLD_MUSIC_NOTES, hold_music
from trunkline.gateway.switch.conference_control import conference_control
from trunkline.gateway.switch.conference_events import ConferenceCallback, EndReason, group_of
from trunkline.gateway.switch.legs import Ended
from trunkline.gateway.switch.switch import ActiveCall, Switch
from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.channel import CallEnded, DialResult
from trunkline.gateway.twiml.webhooks import WebhookClient
from trunkline.media.engine import MediaEngine

ACCOUNT = Account("AC" + "cf" * 16, "conference-test-token-0123456789", "conference tests")
RATE = 8000


class FakeLeg:
    """What ``SipCallChannel`` needs of a SIP leg: an event queue, re-INVITE hook and hangup."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.on_reinvite: Any = None
        self.hung_up = False

    def hangup(self) -> None:
        if not self.hung_up:
            self.hung_up = True
            self.events.put_nowait(Ended(by_remote=False, reason="bye"))

    def remote_bye(self) -> None:
        self.hung_up = True
        self.events.put_nowait(Ended(by_remote=True, reason="bye"))


@dataclass
class Callbacks:
    """Stands in for ``CallbackSender``: keeps every callback (url, method, params)."""

    sent: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def send(self, url: str, method: str, params: Any, auth_token: str) -> None:
        self.sent.append((url, method, dict(params)))

    async def drain(self, timeout: float | None = None) -> None:
        return None

    def events(self, name: str | None = None) -> list[dict[str, str]]:
        out = [p for _, _, p in self.sent if "StatusCallbackEvent" in p]
        return [p for p in out if name is None or p["StatusCallbackEvent"] == name]

    async def wait_for(self, name: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, str]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.events(name)) < count:
            if asyncio.get_running_loop().time() > deadline:
                got = [e["StatusCallbackEvent"] for e in self.events()]
                raise AssertionError(f"{name} x{count} not posted; got {got}")
            await asyncio.sleep(0.02)
        return self.events(name)


class Party:
    """One participant call: phone + stream + channel (see the module docstring)."""

    def __init__(
        self, world: World, freq: float, phone: Phone, channel: SipCallChannel, leg: FakeLeg
    ) -> None:
        self.world = world
        self.freq = freq
        self.phone = phone
        self.channel = channel
        self.leg = leg
        self.talking = True
        self.inband: list[np.ndarray] = []  # frames sent instead of the tone (in-band DTMF)
        self.dial_task: asyncio.Task[DialResult] | None = None
        self._sender = asyncio.get_running_loop().create_task(self._send())

    @property
    def call_sid(self) -> str:
        return self.channel.call_sid

    async def _send(self) -> None:
        """20 ms G.711 packets of a continuous tone (or silence while ``talking`` is False)."""
        loop = asyncio.get_running_loop()
        stream = self.channel.stream
        dest = (stream.local_address, stream.local_port)
        tone = audio.tone(self.freq, 4.0, RATE, level_dbfs=-14.0)
        silence = audio.encode_pcmu(np.zeros(160, dtype=np.int16))
        start = loop.time()
        i = 0
        while True:
            delay = start + i * 0.02 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            k = (i * 160) % tone.size
            if self.inband:
                payload = audio.encode_pcmu(self.inband.pop(0))
            else:
                payload = audio.encode_pcmu(tone[k : k + 160]) if self.talking else silence
            self.phone.send_raw(self.phone.packet(payload), dest)
            i += 1

    def send_dtmf(self, digit: str, payload_type: int = 101) -> None:
        """One RFC 4733 key press (start, updates, three end packets) on the phone's stream."""
        stream = self.channel.stream
        dest = (stream.local_address, stream.local_port)
        event = "0123456789*#ABCD".index(digit)
        ts = self.phone.ts
        for i, dur in enumerate([160, 320, 480, 640, 640, 640]):
            end = i >= 3
            payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, dur)
            head = struct.pack(
                "!BBHII", 0x80, (0x80 if i == 0 else 0) | payload_type, self.phone.seq, ts, self.phone.ssrc
            )
            self.phone.seq = (self.phone.seq + 1) & 0xFFFF
            self.phone.send_raw(head + payload, dest)

    def join(self, noun: v.Conference, **dial: Any) -> asyncio.Task[DialResult]:
        self.dial_task = asyncio.get_running_loop().create_task(self.channel.dial(v.Dial((noun,), **dial)))
        return self.dial_task

    def heard(self, since: float, until: float | None = None) -> np.ndarray:
        """Decoded audio the phone received between two loop times."""
        packets = [
            r.packet
            for r in self.phone.received
            if r.time >= since and (until is None or r.time <= until) and r.packet.payload_type == 0
        ]
        packets.sort(key=lambda p: p.sequence)
        return audio.decode_pcmu(b"".join(p.payload for p in packets))

    async def close(self) -> None:
        self._sender.cancel()
        if self.dial_task is not None and not self.dial_task.done():
            self.leg.remote_bye()
            await asyncio.wait({self.dial_task}, timeout=3)
        if self.dial_task is not None and self.dial_task.done() and not self.dial_task.cancelled():
            self.dial_task.exception()  # retrieved: CallEnded after a hangup is expected
        await self.channel.close()
        self.phone.close()


class World:
    """The switch, engine, store and callbacks one test works with."""

    def __init__(self, switch: Switch, callbacks: Callbacks, tmp_path: Path) -> None:
        self.switch = switch
        self.callbacks = callbacks
        self.tmp_path = tmp_path
        self.parties: list[Party] = []

    @property
    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def party(self, freq: float, *, telephone_event: bool = True) -> Party:
        loop = asyncio.get_running_loop()
        phone = Phone(loop, 0)
        stream = await self.switch.engine.open_stream()
        if telephone_event:
            stream.configure(negotiated(phone.port))
        else:
            stream.configure(negotiated(phone.port, telephone_event=None))  # in-band DTMF detection
        call = Call(ACCOUNT.sid, "+15550001000", "+15550002000", "inbound", status=CallStatus.IN_PROGRESS)
        leg = FakeLeg()
        channel = SipCallChannel(
            call.sid,
            leg,  # type: ignore[arg-type]
            stream,
            self.switch,
            recordings_dir=self.switch.recordings_dir,
            answered=True,
        )
        self.switch.calls[call.sid] = ActiveCall(call, ACCOUNT, channel=channel)
        party = Party(self, freq, phone, channel, leg)
        self.parties.append(party)
        return party


def config(tmp_path: Path) -> Config:
    base = random.randrange(20000, 60000, 1000)
    storage = StorageConfig(
        data_dir=tmp_path / "var",
        database=tmp_path / "var" / "trunkline.db",
        recordings_dir=tmp_path / "var" / "recordings",
        cache_dir=tmp_path / "var" / "cache",
    )
    return Config(
        sip=SipConfig(),
        rtp=RtpConfig("127.0.0.1", base, base + 999),
        http=HttpConfig(port=0),
        accounts=(ACCOUNT,),
        numbers=(),
        storage=storage,
    )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    cfg = config(tmp_path)
    (tmp_path / "var").mkdir()
    store = await SqliteStore(cfg.storage.database).open()
    engine = MediaEngine(cfg.rtp)
    await engine.start()
    webhooks = WebhookClient()
    callbacks = Callbacks()
    switch = Switch(cfg, store, engine, None, webhooks, callbacks=callbacks)  # type: ignore[arg-type]
    w = World(switch, callbacks, tmp_path)
    try:
        yield w
    finally:
        for party in w.parties:
            await party.close()
        await engine.stop()
        await webhooks.close()
        await store.close()


def tone_share(samples: np.ndarray, freq: float) -> float:
    """Fraction of the energy of ``samples`` at ``freq`` (0 for silence)."""
    if samples.size < 800 or audio.rms_dbfs(samples) < -60:
        return 0.0
    return audio.band_energy(samples, RATE, freq, 60.0)


pytestmark = pytest.mark.timeout(30)

CB = "http://127.0.0.1:9/conference-events"
ALL_EVENTS = ("start", "end", "join", "leave", "mute", "hold", "modify", "speaker", "announcement")


def room(name: str = "standup", **kw: object) -> v.Conference:
    return v.Conference(name, beep="false", **kw)  # type: ignore[arg-type]


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)


def test_hold_music_is_the_phrase_and_loops_cleanly() -> None:
    pcm = hold_music(8000)
    assert pcm.dtype == np.int16 and not pcm.flags.writeable
    assert pcm.size == round(sum(s for _, s in HOLD_MUSIC_NOTES) * 8000)
    assert -30 < audio.rms_dbfs(pcm) < -15
    first = pcm[400:3200]  # inside the first note (C4)
    assert abs(audio.dominant_frequency(first, 8000) - 261.63) < 5
    assert abs(int(pcm[0])) < 200 and abs(int(pcm[-1])) < 200  # no click at the loop point
    assert hold_music(16000).size == 2 * pcm.size


def test_event_groups_and_subscription() -> None:
    assert group_of("participant-unmute") == "mute"
    assert group_of("participant-speech-stop") == "speaker"
    with pytest.raises(ValueError, match="unknown conference event"):
        group_of("participant-dance")
    cb = ConferenceCallback(CB, "POST", frozenset({"join", "speaker"}))
    assert cb.wants("participant-join") and cb.wants("participant-dtmf")
    assert not cb.wants("conference-start")
    assert ConferenceCallback(CB, groups=frozenset({"dtmf"})).wants("participant-dtmf")
    assert EndReason.text(EndReason.MODERATOR_LEFT, "CA1") == (
        "Participant CA1 with endConferenceOnExit left the conference"
    )


async def test_participants_hear_everyone_but_themselves_muted_and_coach(world: World) -> None:
    a, b, c, d, e = [await world.party(f) for f in (500.0, 900.0, 1300.0, 1700.0, 2300.0)]
    a.join(room(status_callback=CB, status_callback_event=ALL_EVENTS))
    b.join(room())
    c.join(room())
    d.join(room(muted=True))
    await settle(0.3)
    e.join(room(coach=a.call_sid))  # coaches a: only a hears e
    await settle(0.6)
    t0 = world.now
    await settle(1.2)
    heard = {p.freq: p.heard(t0) for p in (a, b, c, d, e)}
    for p in (a, b, c, d, e):
        assert heard[p.freq].size > 6000, f"{p.freq} Hz phone heard nothing"
        assert tone_share(heard[p.freq], p.freq) < 0.01, f"{p.freq} Hz phone hears itself"
    for listener in (a, b, c, d, e):
        for talker in (a, b, c):
            if talker is not listener:
                assert tone_share(heard[listener.freq], talker.freq) > 0.12, (listener.freq, talker.freq)
        assert tone_share(heard[listener.freq], d.freq) < 0.01  # muted: nobody hears d
    assert tone_share(heard[a.freq], e.freq) > 0.12  # the coached participant hears the coach
    for p in (b, c, d):
        assert tone_share(heard[p.freq], e.freq) < 0.01  # nobody else does

    service = service_for(world.switch)
    (conf,) = service.rooms.values()
    record = await world.switch.store.get("conferences", sid=conf.sid)
    assert record is not None and record["status"] == "in-progress"
    assert record["friendly_name"] == "standup" and record["sid"].startswith("CF")
    assert record["subresource_uris"]["participants"].endswith(f"/Conferences/{conf.sid}/Participants.json")
    parts = await world.switch.store.select("participants", [Filter("conference_sid", "=", conf.sid)])
    by_sid = {r["call_sid"]: r for r in parts.records}
    assert set(by_sid) == {p.call_sid for p in (a, b, c, d, e)}
    assert by_sid[d.call_sid]["muted"] is True and by_sid[a.call_sid]["muted"] is False
    assert by_sid[e.call_sid]["coaching"] is True and by_sid[e.call_sid]["call_sid_to_coach"] == a.call_sid
    assert all(r["status"] == "connected" for r in parts.records)

    joins = {j["CallSid"]: j for j in world.callbacks.events("participant-join")}
    assert set(joins) == {p.call_sid for p in (a, b, c, d, e)}
    assert joins[d.call_sid]["Muted"] == "true" and joins[a.call_sid]["Muted"] == "false"
    assert joins[e.call_sid]["Coaching"] == "true" and joins[e.call_sid]["CallSidToCoach"] == a.call_sid
    assert joins[a.call_sid]["StartConferenceOnEnter"] == "true" and joins[a.call_sid]["Hold"] == "false"
    (start,) = world.callbacks.events("conference-start")
    assert start["ConferenceSid"] == conf.sid and start["FriendlyName"] == "standup"
    assert start["AccountSid"] == ACCOUNT.sid and start["Timestamp"].endswith("+0000")
    seqs = [int(p["SequenceNumber"]) for p in world.callbacks.events()]
    assert seqs == list(range(1, len(seqs) + 1))
    # Speaker detection: every talker started speaking (the muted one is not detected).
    speech = {s["CallSid"] for s in world.callbacks.events("participant-speech-start")}
    assert {a.call_sid, b.call_sid, c.call_sid} <= speech and d.call_sid not in speech
    b.talking = False  # silence: the talk spurt ends after the detector's hang-over
    stop = await world.callbacks.wait_for("participant-speech-stop")
    assert [x["CallSid"] for x in stop] == [b.call_sid]


async def test_wait_music_until_moderator_then_end_on_exit(world: World) -> None:
    a, b, mod = [await world.party(f) for f in (600.0, 1100.0, 1500.0)]
    a.talking = b.talking = mod.talking = True
    cb = {"status_callback": CB, "status_callback_event": ALL_EVENTS}
    ta = a.join(room(start_conference_on_enter=False, **cb))  # type: ignore[arg-type]
    tb = b.join(room(start_conference_on_enter=False, wait_url=""))  # silence while waiting
    t0 = world.now
    await settle(1.0)
    waiting_a, waiting_b = a.heard(t0 + 0.2), b.heard(t0 + 0.2)
    assert audio.rms_dbfs(waiting_a) > -40, "no hold music before the moderator joined"
    assert tone_share(waiting_a, b.freq) < 0.01 and tone_share(waiting_b, a.freq) < 0.01  # not mixed
    assert audio.rms_dbfs(waiting_b) < -60  # empty waitUrl: silence
    assert not world.callbacks.events("conference-start")
    conf = next(iter(service_for(world.switch).rooms.values()))
    assert (await world.switch.store.get("conferences", sid=conf.sid))["status"] == "init"  # type: ignore[index]

    tm = mod.join(room(end_conference_on_exit=True))
    await world.callbacks.wait_for("conference-start")
    await settle(0.8)
    t1 = world.now
    await settle(0.8)
    assert tone_share(a.heard(t1), b.freq) > 0.2 and tone_share(a.heard(t1), mod.freq) > 0.2
    assert tone_share(a.heard(t1), 523.25) < 0.01, "hold music still playing after the start"

    mod.leg.remote_bye()  # the moderator hangs up: the room ends for everybody
    with pytest.raises(CallEnded):
        await tm
    ra, rb = await asyncio.wait_for(asyncio.gather(ta, tb), 5)
    assert ra.status == rb.status == "completed" and ra.extra["ConferenceSid"] == conf.sid
    (end,) = await world.callbacks.wait_for("conference-end")
    assert end["ReasonConferenceEnded"] == "participant-with-end-conference-on-exit-left"
    assert end["CallSidEndingConference"] == mod.call_sid
    assert end["Reason"] == f"Participant {mod.call_sid} with endConferenceOnExit left the conference"
    leaves = world.callbacks.events("participant-leave")
    assert {x["CallSid"] for x in leaves} == {a.call_sid, b.call_sid, mod.call_sid}
    record = await world.switch.store.get("conferences", sid=conf.sid)
    assert record is not None and record["status"] == "completed"
    assert record["reason_conference_ended"] == "participant-with-end-conference-on-exit-left"
    assert record["call_sid_ending_conference"] == mod.call_sid
    part = await world.switch.store.get("participants", conference_sid=conf.sid, call_sid=a.call_sid)
    assert part is not None and part["status"] == "complete"
    # The name makes a new room now.
    a2 = await world.party(700.0)
    a2.join(room())
    await settle(0.2)
    assert next(iter(service_for(world.switch).rooms.values())).sid != conf.sid


async def test_rest_mute_hold_coach_kick_announce_and_end(world: World) -> None:
    a, b, c = [await world.party(f) for f in (620.0, 1100.0, 1700.0)]  # clear of the hold music notes
    cb = {"status_callback": CB, "status_callback_event": ALL_EVENTS}
    ta = a.join(room(**cb))  # type: ignore[arg-type]
    tb = b.join(room())
    tc = c.join(room())
    await world.callbacks.wait_for("participant-join", 3)
    conf = next(iter(service_for(world.switch).rooms.values()))
    service = conference_control(world.switch)

    record = await service.update_participant(
        ACCOUNT.sid, conf.sid, b.call_sid, ParticipantUpdate(muted=True)
    )
    assert record["muted"] is True
    await service.update_participant(ACCOUNT.sid, conf.sid, c.call_sid, ParticipantUpdate(hold=True))
    await settle(0.6)
    t0 = world.now
    await settle(1.0)
    assert tone_share(a.heard(t0), b.freq) < 0.01, "muted participant heard"
    assert tone_share(a.heard(t0), c.freq) < 0.01, "held participant heard"
    held = c.heard(t0)
    assert tone_share(held, a.freq) < 0.01 and audio.rms_dbfs(held) > -40  # hold music instead
    assert tone_share(b.heard(t0), a.freq) > 0.3  # muted still hears
    (mute,) = world.callbacks.events("participant-mute")
    assert mute["CallSid"] == b.call_sid and mute["Muted"] == "true"
    (hold,) = world.callbacks.events("participant-hold")
    assert hold["CallSid"] == c.call_sid and hold["Hold"] == "true"
    stored = await world.switch.store.get("participants", conference_sid=conf.sid, call_sid=c.call_sid)
    assert stored is not None and stored["hold"] is True

    await service.update_participant(ACCOUNT.sid, conf.sid, c.call_sid, ParticipantUpdate(hold=False))
    await service.update_participant(ACCOUNT.sid, conf.sid, b.call_sid, ParticipantUpdate(muted=False))
    await service.update_participant(
        ACCOUNT.sid, conf.sid, c.call_sid, ParticipantUpdate(coaching=True, call_sid_to_coach=a.call_sid)
    )
    await settle(0.6)
    t1 = world.now
    await settle(1.0)
    assert tone_share(a.heard(t1), c.freq) > 0.2 and tone_share(b.heard(t1), c.freq) < 0.01
    assert tone_share(a.heard(t1), b.freq) > 0.2
    assert world.callbacks.events("participant-unhold") and world.callbacks.events("participant-unmute")
    (modify,) = world.callbacks.events("participant-modify")
    assert modify["Coaching"] == "true" and modify["CallSidToCoach"] == a.call_sid

    with pytest.raises(ControlError) as missing:
        await service.update_participant(
            ACCOUNT.sid, conf.sid, "CA" + "0" * 32, ParticipantUpdate(muted=True)
        )
    assert missing.value.status == 404 and missing.value.code == 20404

    await service.remove_participant(ACCOUNT.sid, conf.sid, b.call_sid)
    rb = await asyncio.wait_for(tb, 2)
    assert rb.status == "completed"
    leave = world.callbacks.events("participant-leave")[-1]
    assert leave["CallSid"] == b.call_sid and leave["ReasonParticipantLeft"] == "participant_updated_via_api"
    assert b.call_sid not in conf.members and conf.live

    result = await service.update_conference(ACCOUNT.sid, conf.sid, ConferenceUpdate(status="completed"))
    assert result["status"] == "completed" and result["reason_conference_ended"] == "conference-ended-via-api"
    ra, rc = await asyncio.wait_for(asyncio.gather(ta, tc), 3)
    assert ra.status == rc.status == "completed"
    (end,) = world.callbacks.events("conference-end")
    assert end["ReasonConferenceEnded"] == "conference-ended-via-api"
    with pytest.raises(ControlError):
        await service.update_conference(ACCOUNT.sid, conf.sid, ConferenceUpdate(status="completed"))


async def test_recording_dtmf_and_last_participant_leaves(world: World) -> None:
    a, b, c = [await world.party(f) for f in (500.0, 1100.0, 1700.0)]
    callback = {"recording_status_callback": "http://127.0.0.1:9/rec"}
    a.join(
        room(
            record="record-from-start",
            status_callback=CB,
            status_callback_event=("speaker", "end"),
            **callback,
        )
    )  # type: ignore[arg-type]
    b.join(room())
    tc = c.join(room(), hangup_on_star=True)
    await settle(1.5)
    a.send_dtmf("5")
    await world.callbacks.wait_for("participant-dtmf")
    (dtmf,) = world.callbacks.events("participant-dtmf")
    assert dtmf["CallSid"] == a.call_sid and dtmf["Digits"] == "5" and dtmf["DtmfSource"] == "rfc4733"
    c.send_dtmf("*")  # hangupOnStar: c leaves the room, its TwiML goes on
    rc = await asyncio.wait_for(tc, 2)
    assert rc.status == "completed"
    for p in (a, b):
        p.leg.remote_bye()
        with pytest.raises(CallEnded):
            await asyncio.wait_for(p.dial_task, 3)  # type: ignore[arg-type]
    (end,) = await world.callbacks.wait_for("conference-end")
    assert end["ReasonConferenceEnded"] == "last-participant-left"
    sent = [p for url, _, p in world.callbacks.sent if url.endswith("/rec")]
    assert [p["RecordingStatus"] for p in sent] == ["completed"]
    rec = sent[0]
    stored = await world.switch.store.get("recordings", sid=rec["RecordingSid"])
    assert stored is not None and stored["conference_sid"] == end["ConferenceSid"]
    assert stored["status"] == "completed" and stored["source"] == "Conference"
    assert int(stored["duration"]) >= 1 and int(rec["RecordingDuration"]) == int(stored["duration"])
    pcm, rate = audio.read_wav(stored["_path"])
    assert rate == 8000 and pcm.size > 8000
    middle = pcm[4000:12000]
    for f in (500.0, 1100.0, 1700.0):
        assert tone_share(middle, f) > 0.15, f"{f} Hz missing from the recording"


async def test_max_participants_and_unknown_resources(world: World) -> None:
    a, b, c = [await world.party(f) for f in (500.0, 900.0, 1300.0)]
    a.join(room(max_participants=2))
    b.join(room())
    await settle(0.3)
    rc = await asyncio.wait_for(c.join(room()), 2)
    assert rc.status == "failed"
    with pytest.raises(ControlError) as exc:
        await conference_control(world.switch).update_conference(
            ACCOUNT.sid, "CF" + "0" * 32, ConferenceUpdate(status="completed")
        )
    assert exc.value.code == 20404
    other = dataclasses.replace(ACCOUNT, sid="AC" + "1" * 32)
    service = service_for(world.switch)
    conf = next(iter(service.rooms.values()))
    assert service.find(other.sid, conf.sid) is None and service.find(ACCOUNT.sid, "standup") is conf


@pytest.fixture
async def media_app() -> AsyncIterator[tuple[str, list[str]]]:
    """An aiohttp app on 127.0.0.1 serving hold/announce documents and a tone WAV; logs paths."""
    import io

    import soundfile
    from aiohttp import web

    seen: list[str] = []
    wav = io.BytesIO()
    soundfile.write(
        wav, audio.tone(2000.0, 1.0, RATE, level_dbfs=-10.0), RATE, format="WAV", subtype="PCM_16"
    )

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path)
        base = f"http://{request.host}"
        if request.path == "/tone.wav":
            return web.Response(body=wav.getvalue(), content_type="audio/wav")
        if request.path == "/hold":
            return web.Response(
                text=f"<Response><Play loop='0'>{base}/tone.wav</Play></Response>", content_type="text/xml"
            )
        if request.path == "/first":
            body = (
                "<Response><Say>hi</Say><Pause length='2'/><Dial>+1555</Dial>"
                "<Redirect>/second</Redirect><Say>never</Say></Response>"
            )
            return web.Response(text=body, content_type="text/xml")
        if request.path == "/second":
            return web.Response(
                text="<Response><Play loop='3'>/tone.wav</Play></Response>", content_type="text/xml"
            )
        if request.path == "/loop":
            return web.Response(
                text="<Response><Redirect>/loop</Redirect></Response>", content_type="text/xml"
            )
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    await runner.cleanup()


async def test_resolve_audio_follows_twiml_and_audio(world: World, media_app: tuple[str, list[str]]) -> None:
    from trunkline.gateway.switch.conference_audio import resolve_audio
    from trunkline.gateway.twiml.channel import AudioUrl, Silence, Speech
    from trunkline.gateway.twiml.parser import TwimlError
    from trunkline.gateway.twiml.webhooks import WebhookError

    base, _ = media_app
    hooks = world.switch.webhooks
    token = ACCOUNT.auth_token
    items = await resolve_audio(hooks, f"{base}/first", "POST", [("CallSid", "CA1")], token)
    assert items == [
        (Speech("hi", "man", "en-US"), 1),
        (Silence(2.0), 1),  # <Dial> is skipped, <Redirect> continues, the <Say> after it is not read
        (AudioUrl(f"{base}/tone.wav"), 3),
    ]
    assert await resolve_audio(hooks, f"{base}/tone.wav", "GET", [], token) == [
        (AudioUrl(f"{base}/tone.wav"), 1)
    ]
    with pytest.raises(TwimlError, match="Redirect"):
        await resolve_audio(hooks, f"{base}/loop", "POST", [], token)
    with pytest.raises(WebhookError):
        await resolve_audio(hooks, f"{base}/missing", "POST", [], token)


async def test_hold_url_twiml_and_announce_to_one_participant(
    world: World, media_app: tuple[str, list[str]]
) -> None:
    base, seen = media_app
    a, b = [await world.party(f) for f in (620.0, 1100.0)]
    a.join(room(status_callback=CB, status_callback_event=ALL_EVENTS))
    b.join(room())
    await world.callbacks.wait_for("participant-join", 2)
    conf = next(iter(service_for(world.switch).rooms.values()))
    control = conference_control(world.switch)
    await control.update_participant(
        ACCOUNT.sid,
        conf.sid,
        b.call_sid,
        ParticipantUpdate(hold=True, hold_url=f"{base}/hold", hold_method="GET"),
    )
    await settle(0.8)
    t0 = world.now
    await settle(0.8)
    assert tone_share(b.heard(t0), 2000.0) > 0.8, "HoldUrl TwiML <Play> not heard on hold"
    assert tone_share(a.heard(t0), 1100.0) < 0.01
    assert "/hold" in seen

    await control.update_participant(ACCOUNT.sid, conf.sid, b.call_sid, ParticipantUpdate(hold=False))
    await control.update_participant(
        ACCOUNT.sid, conf.sid, a.call_sid, ParticipantUpdate(announce_url=f"{base}/tone.wav")
    )
    (done,) = await world.callbacks.wait_for("announcement-end")
    assert done["CallSid"] == a.call_sid
    t1 = world.now
    await settle(0.8)
    assert tone_share(b.heard(t1), 620.0) > 0.5 and tone_share(b.heard(t1), 2000.0) < 0.01  # only a heard it


async def test_dial_out_needs_call_control_and_room_space(world: World) -> None:
    from trunkline.gateway.api.control import ParticipantRequest, Target

    request = ParticipantRequest(ACCOUNT.sid, Target("sip", "sip:agent@127.0.0.1:9"), "+15550001111")
    with pytest.raises(ControlError) as exc:
        await conference_control(world.switch).add_participant(ACCOUNT.sid, "standup", request)
    assert exc.value.status == 503

    class Calls:
        created: list[object] = []

        async def create_call(self, outbound: object) -> object:
            self.created.append(outbound)
            from trunkline.gateway.switch.calls import Call

            return Call(ACCOUNT.sid, "+15550001111", "sip:agent@127.0.0.1:9", "outbound-api")

    control = conference_control(world.switch, calls=Calls())  # type: ignore[arg-type]
    record = await control.add_participant(
        ACCOUNT.sid, "standup", dataclasses.replace(request, label="agent")
    )
    assert record["status"] == "queued" and record["label"] == "agent"
    (outbound,) = Calls.created
    assert "<Conference>standup</Conference>" in outbound.twiml  # type: ignore[attr-defined]
    stored = await world.switch.store.get(
        "participants", conference_sid=record["conference_sid"], call_sid=record["call_sid"]
    )
    assert stored is not None
    for _ in range(50):  # the call never exists on the switch: the participant fails
        stored = await world.switch.store.get(
            "participants", conference_sid=record["conference_sid"], call_sid=record["call_sid"]
        )
        if stored is not None and stored["status"] == "failed":
            break
        await asyncio.sleep(0.02)
    assert stored is not None and stored["status"] == "failed"
    for _ in range(50):
        room_record = await world.switch.store.get("conferences", sid=record["conference_sid"])
        if room_record is not None and room_record["status"] == "completed":
            break
        await asyncio.sleep(0.02)
    assert room_record is not None and room_record["status"] == "completed"  # the empty room is gone
    assert service_for(world.switch).find(ACCOUNT.sid, "standup") is None
    with pytest.raises(ControlError) as missing:
        await control.add_participant(ACCOUNT.sid, "CF" + "0" * 32, request)
    assert missing.value.code == 20404


async def test_inband_dtmf_is_reported(world: World) -> None:
    a = await world.party(620.0, telephone_event=False)
    b = await world.party(1100.0)
    a.join(room(status_callback=CB, status_callback_event=("speaker",)))
    b.join(room())
    await settle(0.6)
    key = audio.dtmf_tone("7", 0.12, RATE, level_dbfs=-10.0)
    gap = np.zeros(800, dtype=np.int16)
    a.inband.extend(np.concatenate([gap, key, gap]).reshape(-1, 160))
    (dtmf,) = await world.callbacks.wait_for("participant-dtmf")
    assert dtmf["CallSid"] == a.call_sid and dtmf["Digits"] == "7" and dtmf["DtmfSource"] == "inband"
