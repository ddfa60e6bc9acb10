"""The engine adapter's ``mix_many``: several rooms mixed in one call, as ``mix`` room by room."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from tests.media.rtp_phone import Phone, negotiated
from tests.media.rtp_phone import tone as phone_tone
from tests.peers import audio
from trunkline.codecs.g711 import ulaw_decode
from trunkline.codecs.registry import get_codec
from trunkline.gateway.config import RtpConfig
from trunkline.gateway.sip.sdp import PCMA, PCMU
from trunkline.media.engine import MediaEngine
from trunkline.media.mixer import PcmArray, SpeakerEvent
from trunkline.media.room import ConferenceRoom
from trunkline.media.room_engine import EngineRoom

TICK = 0.02


class FakeStream:
    """What the engine and the adapter see of an RtpStream."""

    def __init__(self, codec: str) -> None:
        self.codec = get_codec(codec)
        self.tick_in: PcmArray | None = None
        self.room_out: object = None


def tone(freq: float, k: int, amp: float = 3000.0) -> PcmArray:
    t = np.arange(k * 160, (k + 1) * 160) / 8000
    return np.rint(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def amplitude_at(pcm: np.ndarray, freq: float, rate: int = 8000) -> float:
    t = np.arange(pcm.size) / rate
    return float(2 * abs(np.dot(pcm.astype(np.float64), np.exp(-2j * np.pi * freq * t))) / pcm.size)


def make_rooms(events: list[SpeakerEvent]) -> tuple[list[EngineRoom], list[list[FakeStream]]]:
    adapters, members = [], []
    for r in range(3):
        adapter = EngineRoom(ConferenceRoom(f"room{r}"), on_events=events.extend)
        streams = [FakeStream("PCMU/8000") for _ in range(4)]
        for i, s in enumerate(streams):
            adapter.join(s, f"CA{r}{i}", beep=False, muted=(r == 1 and i == 0))
        adapters.append(adapter)
        members.append(streams)
    return adapters, members


def test_mix_many_equals_mix_room_by_room() -> None:
    events_alone: list[SpeakerEvent] = []
    events_many: list[SpeakerEvent] = []
    alone, alone_streams = make_rooms(events_alone)
    many, many_streams = make_rooms(events_many)
    for k in range(40):
        if k == 20:  # a re-INVITE to PCMA in room 2: the adapter re-joins the stream
            alone_streams[2][1].codec = many_streams[2][1].codec = get_codec("PCMA/8000")
        feeds = [
            {i: tone(300.0 + 150 * i + 50 * r, k) if (k // 10 + i) % 2 else None for i in range(4)}
            for r in range(3)
        ]
        expected = [
            a.mix({s: feeds[r][i] for i, s in enumerate(alone_streams[r])}, k * TICK)
            for r, a in enumerate(alone)
        ]
        got = EngineRoom.mix_many(
            [(a, {s: feeds[r][i] for i, s in enumerate(many_streams[r])}) for r, a in enumerate(many)],
            k * TICK,
        )
        for r in range(3):
            assert [expected[r][s] for s in alone_streams[r]] == [got[r][s] for s in many_streams[r]], (k, r)
            assert many[r].last is not None and many[r].last.payloads is got[r]
    assert [(e.participant, e.speaking, e.t) for e in events_alone] == [
        (e.participant, e.speaking, e.t) for e in events_many
    ]
    assert len(events_many) >= 6
    assert many[2].room.participants[many_streams[2][1]].codec.encoding == "PCMA"  # type: ignore[index]
    assert many[0].room._batch is not None  # the rooms were mixed together


class CountingRoom(EngineRoom):
    calls: list[int] = []

    @staticmethod
    def mix_many(rooms: Sequence[tuple[EngineRoom, Any]], now: float) -> list[dict[Any, PcmArray | bytes]]:
        CountingRoom.calls.append(len(rooms))
        return EngineRoom.mix_many(rooms, now)


class SumRoom:
    """A room without ``mix_many``: everybody hears the sum of the others."""

    def mix(self, inputs: dict[Any, PcmArray | None], now: float) -> dict[Any, PcmArray]:
        present = {s: f.astype(np.int32) for s, f in inputs.items() if f is not None}
        total = sum(present.values(), np.zeros(160, dtype=np.int32))
        return {s: np.clip(total - present.get(s, 0), -32767, 32767).astype(np.int16) for s in inputs}


def test_engine_calls_mix_many_once_per_tick_for_all_rooms_of_a_class() -> None:
    engine = MediaEngine(RtpConfig("127.0.0.1", 40000, 40100))
    freqs = [[400.0, 600.0], [500.0, 700.0], [450.0, 650.0]]
    rooms: dict[Any, list[FakeStream]] = {}
    for r in range(3):
        adapter = CountingRoom(ConferenceRoom(f"room{r}"))
        streams = [FakeStream("PCMU/8000") for _ in range(3)]
        for i, s in enumerate(streams):
            adapter.join(s, f"CA{r}{i}", beep=False)
        rooms[adapter] = streams
    plain = [FakeStream("PCMU/8000") for _ in range(2)]
    rooms[SumRoom()] = plain
    engine.rooms = rooms  # type: ignore[assignment]
    heard: dict[FakeStream, list[PcmArray]] = {}
    CountingRoom.calls.clear()
    for k in range(15):
        for streams, fs in zip(rooms.values(), [*freqs, [900.0]], strict=True):
            for s, f in zip(streams, fs, strict=False):
                s.tick_in = tone(f, k)
        engine._mix_rooms(k * TICK)
        for s in [s for streams in rooms.values() for s in streams]:
            out = s.room_out
            heard.setdefault(s, []).append(ulaw_decode(out) if isinstance(out, bytes) else out)  # type: ignore[arg-type]
    assert CountingRoom.calls == [3] * 15
    for streams, fs in zip(list(rooms.values())[:3], freqs, strict=True):
        listener = np.concatenate(heard[streams[2]][5:])  # the silent third member hears both tones
        assert all(amplitude_at(listener, f) > 2500.0 for f in fs)
        assert amplitude_at(np.concatenate(heard[streams[0]][5:]), fs[0]) < 60.0
        assert amplitude_at(listener, 900.0) < 60.0  # nothing from another room
    assert amplitude_at(np.concatenate(heard[plain[1]][5:]), 900.0) > 2900.0  # the plain room's mix()


async def test_two_rooms_over_udp_through_the_engine() -> None:
    """Two rooms of three RTP phones on 127.0.0.1, mixed together by the engine: no crosstalk."""
    loop = asyncio.get_running_loop()
    base = random.randrange(30000, 60000, 2000)
    engine = MediaEngine(RtpConfig("127.0.0.1", base, base + 1999))
    await engine.start()
    try:
        phones = [
            Phone(loop, 8),
            Phone(loop, 8),
            Phone(loop, 8),
            Phone(loop, 0),
            Phone(loop, 0),
            Phone(loop, 0),
        ]
        streams = []
        for phone, codec in zip(phones, (PCMA, PCMA, PCMA, PCMU, PCMU, PCMU), strict=True):
            stream = await engine.open_stream()
            stream.configure(negotiated(phone.port, codec, telephone_event=None))
            streams.append(stream)
        adapters = [EngineRoom(ConferenceRoom("left")), EngineRoom(ConferenceRoom("right"))]
        for i, s in enumerate(streams):
            adapters[i // 3].join(s, f"CA{i}", beep=False)
            engine.join_room(s, adapters[i // 3])  # type: ignore[arg-type]

        def dest(i: int) -> tuple[str, int]:
            return (streams[i].local_address, streams[i].local_port)

        await asyncio.gather(
            *(
                phones[i].send_paced(phones[i].audio_packets(phone_tone(f, 1.0)), dest(i))
                for i, f in ((0, 500), (1, 1300), (3, 700), (4, 1700))
            )
        )
        await asyncio.sleep(0.1)
        left = phones[0].audio_from(8, skip=15)
        assert audio.contains_tone(left, 8000, 1300) and audio.band_energy(left, 8000, 500) < 0.01
        listener = phones[2].audio_from(8, skip=15)
        assert audio.band_energy(listener, 8000, 500) > 0.3 and audio.band_energy(listener, 8000, 1300) > 0.3
        right = phones[5].audio_from(0, skip=15)
        assert audio.band_energy(right, 8000, 700) > 0.3 and audio.band_energy(right, 8000, 1700) > 0.3
        for heard in (listener, right):
            others = (700, 1700) if heard is listener else (500, 1300)
            assert all(audio.band_energy(heard, 8000, f) < 0.01 for f in others)
        batch = adapters[0].room._batch  # the A-law and the µ-law room were mixed together
        assert batch is not None and adapters[1].room._batch is batch
        # A third room joins them in a new batch.
        third = [await engine.open_stream() for _ in range(2)]
        extra_phones = [Phone(loop, 8), Phone(loop, 8)]
        adapter = EngineRoom(ConferenceRoom("third"))
        for i, (s, phone) in enumerate(zip(third, extra_phones, strict=True)):
            s.configure(negotiated(phone.port, PCMA, telephone_event=None))
            adapter.join(s, f"CX{i}", beep=False)
            engine.join_room(s, adapter)  # type: ignore[arg-type]
        await extra_phones[0].send_paced(
            extra_phones[0].audio_packets(phone_tone(900, 0.5)), (third[0].local_address, third[0].local_port)
        )
        await asyncio.sleep(0.1)
        assert adapter.room._batch not in (None, batch) and adapter.room._batch is adapters[0].room._batch
        assert audio.band_energy(extra_phones[1].audio_from(8, skip=10), 8000, 900) > 0.3
        for p in extra_phones:
            p.close()
        for p in phones:
            p.close()
    finally:
        await engine.stop()
