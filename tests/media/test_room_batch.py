"""Rooms ticked together by ``tick_rooms`` give bit-identical results to rooms ticked one by one."""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass, field

import numpy as np
import pytest

from trunkline.codecs.g711 import alaw_encode, ulaw_decode, ulaw_encode
from trunkline.media.mixer import MixerError, PcmArray
from trunkline.media.player import PcmSource
from trunkline.media.room import ConferenceRoom, TickResult
from trunkline.media.room_batch import tick_rooms
from trunkline.media.tones import ToneSource, ToneSpec

TICK = 0.02
HOLD = ToneSpec("hold", (330.0,), level_dbfs=-20.0)
NOTICE = ToneSpec("notice", (1750.0,), level_dbfs=-12.0)


def amplitude_at(pcm: np.ndarray, freq: float, rate: int = 8000) -> float:
    t = np.arange(pcm.size) / rate
    return float(2 * abs(np.dot(pcm.astype(np.float64), np.exp(-2j * np.pi * freq * t))) / pcm.size)


@dataclass
class World:
    """One copy of the scenario's rooms, plus what their taps and callbacks saw."""

    rooms: list[ConferenceRoom]
    taps: list[PcmArray] = field(default_factory=list)
    done: list[tuple[str, bool]] = field(default_factory=list)


# (room name, codec, participants, top_k, extra ConferenceRoom options)
LAYOUT: list[tuple[str, str, int, int | None, dict[str, object]]] = [
    ("u0", "PCMU/8000", 10, 8, {}),
    ("u1", "PCMU/8000", 6, 2, {}),
    ("u2", "PCMU/8000", 9, None, {}),
    ("u3", "PCMU/8000", 3, 8, {}),
    ("u4", "PCMU/8000", 12, 3, {}),
    ("u5", "PCMU/8000", 5, 8, {}),
    ("a0", "PCMA/8000", 7, 8, {}),
    ("a1", "PCMA/8000", 4, 1, {}),
    ("opus", "opus/48000/2", 3, 8, {}),  # stateful codec: ticked on its own
    ("vad", "PCMU/8000", 4, 8, {"vad_aggressiveness": 1}),  # webrtcvad: ticked on its own
    ("gate", "PCMU/8000", 5, 8, {"gate_dbfs": -45.0}),  # other gate settings: a batch of its own
    ("wait", "PCMU/8000", 3, 8, {}),  # not started until tick 50
    ("laws", "PCMU/8000|PCMA/8000", 7, 8, {}),  # both G.711 laws in one room
    ("g722", "PCMU/8000|G722/8000", 4, 8, {}),  # a 16 kHz room: ticked on its own
]


def pid(room: str, i: int) -> str:
    return f"{room}-{i}"


def build() -> World:
    world = World([])
    for name, codec, n, top_k, options in LAYOUT:
        room = ConferenceRoom(
            name,
            top_k=top_k,
            hold_source=ToneSource(HOLD, 8000),
            wait_source=ToneSource(HOLD, 8000),
            **options,  # type: ignore[arg-type]
        )
        codecs = codec.split("|")
        for i in range(n):
            room.join(
                pid(name, i),
                codecs[i % len(codecs)],
                beep=False,
                start_conference_on_enter=name != "wait",
                listen_only=(name == "a0" and i == 6),
            )
        world.rooms.append(room)
    world.rooms[5].add_mix_tap(world.taps.append)
    return world


def change(world: World, k: int) -> None:
    """The scenario's state changes at tick ``k`` (the same in both worlds)."""
    room = {r.name: r for r in world.rooms}
    if k == 10:
        room["u1"].set_muted(pid("u1", 0), True)
        room["u2"].set_hold(pid("u2", 1), True)
        room["u4"].set_hold(pid("u4", 2), True, source=ToneSource(NOTICE, 8000))
    if k == 20:
        room["u3"].announce(ToneSource(NOTICE, 8000, duration=0.3), lambda ok: world.done.append(("u3", ok)))
    if k == 30:
        room["u0"].leave(pid("u0", 0))  # a talker: its stop event is pending for the next tick
        room["u5"].join(pid("u5", 9), "PCMU/8000")  # with the enter beep
    if k == 35:
        room["a1"].set_coach(pid("a1", 0), pid("a1", 1))  # a coach: the room leaves the batch
    if k == 40:
        room["u1"].set_muted(pid("u1", 0), False)
        room["u2"].set_hold(pid("u2", 1), False)
    if k == 45:
        room["a1"].set_coach(pid("a1", 0), None)
    if k == 50:
        room["wait"].start()
        room["u3"].announce(ToneSource(NOTICE, 8000, duration=1.0), lambda ok: world.done.append(("u3", ok)))
    if k == 55:
        room["u3"].stop_announcements()


def inputs(world: World, k: int, rng: np.random.Generator) -> list[dict[str, object]]:
    """Tick ``k``'s input of every room: talk spurts of tones, hiss, gaps, bad payloads, PCM rows."""
    out = []
    for r, room in enumerate(world.rooms):
        values: dict[str, object] = {}
        for i, p in enumerate(room.participants.values()):
            rate = p.codec.sample_rate
            n = rate // 50
            t = np.arange(k * n, (k + 1) * n) / rate
            talking = ((k + 7 * i + 3 * r) // 25) % 2 == 0 and i % 3 != 2
            amp = 2000.0 + 300.0 * i if talking else 0.0
            pcm = amp * np.sin(2 * np.pi * (250.0 + 60.0 * i + 20.0 * r) * t) + rng.normal(0, 8, n)
            frame = np.clip(np.rint(pcm), -32767, 32767).astype(np.int16)
            if p.codec.encoding not in ("PCMU", "PCMA") or rate != 8000 or (k // 8) % 4 == 1:
                values[p.id] = frame  # decoded by the engine already
            elif p.codec.encoding == "PCMU":
                values[p.id] = ulaw_encode(frame).tobytes()
            else:
                values[p.id] = alaw_encode(frame).tobytes()
            if k % 17 == 5 and i == 1:
                values[p.id] = None  # nothing arrived
            if k % 23 == 11 and i == 2 and r % 2 == 0:
                values[p.id] = b"\xff" * 80  # a payload the codec rejects
        out.append(values)
    return out


def assert_same(a: TickResult, b: TickResult, where: str) -> None:
    assert a.payloads == b.payloads, where
    assert a.pcm.keys() == b.pcm.keys(), where
    for key, frame in a.pcm.items():
        assert np.array_equal(frame, b.pcm[key]), where
    assert a.events == b.events, where
    assert a.speakers == b.speakers, where
    assert a.encodes == b.encodes, where
    assert a.rate == b.rate, where
    assert (a.mix is None) == (b.mix is None), where
    if a.mix is not None:
        assert b.mix is not None and np.array_equal(a.mix, b.mix), where


def test_batched_ticks_equal_room_by_room_ticks() -> None:
    alone, batched = build(), build()
    rng = np.random.default_rng(7)
    events = speakers = 0
    for k in range(90):
        change(alone, k)
        change(batched, k)
        tick_inputs = inputs(alone, k, rng)
        expected = [
            room.tick(values, k * TICK) for room, values in zip(alone.rooms, tick_inputs, strict=True)
        ]  # type: ignore[arg-type]
        got = tick_rooms(batched.rooms, tick_inputs, k * TICK)  # type: ignore[arg-type]
        assert len(got) == len(expected)
        for room, a, b in zip(alone.rooms, expected, got, strict=True):
            assert_same(a, b, f"room {room.name} tick {k}")
            events += len(a.events)
            speakers += len(a.speakers)
    for a, b in zip(alone.rooms, batched.rooms, strict=True):
        assert a.decode_errors == b.decode_errors, a.name
        assert np.array_equal(a.detector.speaking, b.detector.speaking), a.name
        assert np.array_equal(a.selector.score, b.selector.score), a.name
    assert len(alone.taps) == len(batched.taps) == 90
    assert all(np.array_equal(x, y) for x, y in zip(alone.taps, batched.taps, strict=True))
    assert alone.done == batched.done == [("u3", True), ("u3", False)]
    # The scenario really exercised what it compares: G.711 rooms of both laws in one batch...
    room = {r.name: r for r in batched.rooms}
    batch = room["u0"]._batch
    assert batch is not None and batch.laws == ["pcma", "pcmu"]
    assert all(room[name]._batch is batch for name in ("u1", "u5", "a0", "a1", "laws", "wait"))
    assert all(room[name]._batch is None for name in ("opus", "vad", "g722"))
    assert room["gate"]._batch is None  # alone with its settings: ticked on its own
    assert events > 50 and speakers > 500
    assert sum(r.decode_errors for r in alone.rooms) > 0


def random_change(world: World, k: int, choice: np.ndarray) -> None:
    """Tick ``k``'s random state change, drawn once (``choice``) and applied to both worlds."""
    op, which, who, flag = (int(v) for v in choice)
    room = world.rooms[which % 8]  # the G.711 rooms u0..a1
    ids = list(room.participants)
    pid_ = ids[who % len(ids)]
    if op == 0:
        room.set_muted(pid_, not room.participants[pid_].muted)
    elif op == 1:
        room.set_hold(pid_, not room.participants[pid_].hold)
    elif op == 2 and len(ids) > 2:
        room.leave(pid_, beep=bool(flag))
    elif op == 3:
        room.join(f"{room.name}-new{k}", ("PCMU/8000", "PCMA/8000")[flag], beep=bool(flag))
    elif op == 4:
        room.announce(ToneSource(NOTICE, 8000, duration=0.1), lambda ok: world.done.append((room.name, ok)))
    elif op == 5:
        other = ids[(who + 1) % len(ids)]
        room.set_coach(pid_, other if flag else None)
    elif op == 6:
        room.set_coach(pid_, None)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_random_state_changes_keep_batched_ticks_equal(seed: int) -> None:
    alone, batched = build(), build()
    rng = np.random.default_rng(seed)
    for k in range(60):
        choice = rng.integers(0, [8, 8, 20, 2])
        random_change(alone, k, choice)
        random_change(batched, k, choice)
        tick_inputs = inputs(alone, k, rng)
        expected = [room.tick(v, k * TICK) for room, v in zip(alone.rooms, tick_inputs, strict=True)]  # type: ignore[arg-type]
        got = tick_rooms(batched.rooms, tick_inputs, k * TICK)  # type: ignore[arg-type]
        for room, a, b in zip(alone.rooms, expected, got, strict=True):
            assert_same(a, b, f"seed {seed} room {room.name} tick {k} after {choice.tolist()}")
    # Announcements end in the same ticks; only the order across rooms may differ.
    assert sorted(alone.done, key=lambda d: d[0]) == sorted(batched.done, key=lambda d: d[0])
    assert len(alone.done) >= 3
    assert alone.taps and all(np.array_equal(x, y) for x, y in zip(alone.taps, batched.taps, strict=True))


def test_rooms_share_one_batch_until_a_layout_changes() -> None:
    rooms = [ConferenceRoom(f"r{r}") for r in range(3)]
    for r, room in enumerate(rooms):
        for i in range(4):
            room.join(f"{r}-{i}", "PCMU/8000", beep=False)
    silence = b"\xff" * 160
    feeds = [dict.fromkeys(room.participants, silence) for room in rooms]
    tick_rooms(rooms, feeds, 0.0)
    first = rooms[0]._batch
    assert first is not None and all(room._batch is first for room in rooms)
    tick_rooms(rooms, feeds, TICK)
    assert all(room._batch is first for room in rooms)
    rooms[1].join("1-new", "PCMU/8000", beep=False)
    feeds[1]["1-new"] = silence
    tick_rooms(rooms, feeds, 2 * TICK)
    second = rooms[0]._batch
    assert second is not first and all(room._batch is second for room in rooms)
    # State lives in the batch: the rooms' arrays are views of the merged ones.
    assert all(np.shares_memory(room.detector.speaking, second.detector.speaking) for room in rooms)


def test_batched_rooms_hear_their_own_room_only() -> None:
    freqs = [[300.0, 500.0, 700.0], [400.0, 600.0, 800.0], [450.0, 650.0, 850.0]]
    rooms = [ConferenceRoom(f"r{r}") for r in range(3)]
    for r, room in enumerate(rooms):
        for i in range(3):
            room.join(f"{r}-{i}", "PCMU/8000", beep=False)
    heard: dict[str, list[PcmArray]] = {}
    for k in range(20):
        t = np.arange(k * 160, (k + 1) * 160) / 8000
        feeds = [
            {
                f"{r}-{i}": ulaw_encode(np.rint(3000 * np.sin(2 * np.pi * f * t)).astype(np.int16)).tobytes()
                for i, f in enumerate(fs)
            }
            for r, fs in enumerate(freqs)
        ]
        for result in tick_rooms(rooms, feeds, k * TICK):
            for key, payload in result.payloads.items():
                heard.setdefault(key, []).append(ulaw_decode(payload))
    assert rooms[0]._batch is not None
    for r, fs in enumerate(freqs):
        for i, own in enumerate(fs):
            pcm = np.concatenate(heard[f"{r}-{i}"])[800:]  # after the gate opened: 300 ms
            assert amplitude_at(pcm, own) < 60.0
            for other in fs:
                if other != own:
                    assert amplitude_at(pcm, other) == pytest.approx(3000.0, rel=0.05)
            for rr, others in enumerate(freqs):
                if rr != r:
                    assert all(amplitude_at(pcm, f) < 60.0 for f in others)


def test_one_room_and_empty_rooms_are_ticked_alone() -> None:
    small = ConferenceRoom("small")
    small.join("A", "PCMU/8000", beep=False)
    empty = ConferenceRoom("empty")
    source = PcmSource(np.full(160 * 5, 1000, dtype=np.int16), 8000)
    waiting = ConferenceRoom("waiting", wait_source=source)
    waiting.join("W", "PCMU/8000", beep=False, start_conference_on_enter=False)
    res = tick_rooms([small, empty, waiting], [{"A": b"\xff" * 160}, {}, {}], 0.0)
    assert res[0].payloads.keys() == {"A"} and res[0].mix is not None
    assert res[1].payloads == {} and res[1].mix is None
    assert np.all(ulaw_decode(res[2].payloads["W"]) > 900) and res[2].mix is None
    assert small._batch is None  # nothing to share with


def test_tick_rooms_rejects_mismatched_inputs_and_repeated_rooms() -> None:
    with pytest.raises(MixerError, match="2 rooms but 1 inputs"):
        tick_rooms([ConferenceRoom("a"), ConferenceRoom("b")], [{}], 0.0)
    room = ConferenceRoom("a")
    room.join("A", "PCMU/8000", beep=False)
    with pytest.raises(MixerError, match="passed twice"):
        tick_rooms([room, room], [{}, {}], 0.0)


def test_a_finished_room_is_freed_without_the_cycle_collector() -> None:
    rooms = [ConferenceRoom(f"r{r}") for r in range(3)]
    for r, room in enumerate(rooms):
        for i in range(3):
            room.join(f"{r}-{i}", "PCMU/8000", beep=False)
    tick_rooms(rooms, [{} for _ in rooms], 0.0)
    assert rooms[0]._batch is not None
    del room  # the loop variable
    gone = weakref.ref(rooms.pop())
    gc.disable()
    try:
        tick_rooms(rooms, [{} for _ in rooms], TICK)
        assert gone() is None
    finally:
        gc.enable()


def test_rooms_moving_between_batches_keep_their_state() -> None:
    def rooms() -> list[ConferenceRoom]:
        made = [ConferenceRoom(name) for name in "XYZ"]
        for room in made:
            for i in range(3):
                room.join(f"{room.name}{i}", "PCMU/8000", beep=False)
        return made

    alone, batched = rooms(), rooms()
    # X and Y together, then Y and Z (Y's state moves to a new batch), then X and Y again.
    for k, names in enumerate(["XY"] * 10 + ["YZ"] * 10 + ["XY"] * 20):
        picks = [i for i, room in enumerate(alone) if room.name in names]
        feeds = [
            {
                f"{alone[i].name}{j}": ulaw_encode(tone_frame(300.0 + 200 * j + 50 * i, k)).tobytes()
                for j in range(3)
            }
            for i in picks
        ]
        expected = [alone[i].tick(f, k * TICK) for i, f in zip(picks, feeds, strict=True)]  # type: ignore[arg-type]
        got = tick_rooms([batched[i] for i in picks], feeds, k * TICK)  # type: ignore[arg-type]
        for a, b in zip(expected, got, strict=True):
            assert_same(a, b, f"tick {k} {names}")
    assert batched[0]._batch is batched[1]._batch is not batched[2]._batch
    assert all(r.speakers for r in expected)  # the last tick still mixes everyone's voice
    assert alone[1].detector.speaking.tolist() == batched[1].detector.speaking.tolist() == [True] * 3


def tone_frame(freq: float, k: int) -> np.ndarray:
    t = np.arange(k * 160, (k + 1) * 160) / 8000
    talking = (k // 7) % 2 == 0
    return np.rint((3000.0 if talking else 10.0) * np.sin(2 * np.pi * freq * t)).astype(np.int16)
