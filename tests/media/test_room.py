"""Conference rooms end to end with real codecs: mix-minus, masks, shared encoding, mixed codecs."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import numpy as np
import pytest

from tests.media.rtp_phone import Phone, negotiated
from tests.media.rtp_phone import tone as phone_tone
from tests.peers import audio
from trunkline.codecs.g711 import ulaw_decode, ulaw_encode
from trunkline.codecs.g722 import G722Decoder, G722Encoder
from trunkline.codecs.opus import OpusDecoder, OpusEncoder
from trunkline.codecs.registry import get_codec
from trunkline.gateway.config import RtpConfig
from trunkline.gateway.sip.sdp import PCMA, PCMU
from trunkline.media.engine import MediaEngine
from trunkline.media.mixer import MixerError
from trunkline.media.player import PcmSource
from trunkline.media.room import ConferenceRoom, TickResult
from trunkline.media.room_engine import EngineRoom
from trunkline.media.tones import ToneSource, ToneSpec

TICK = 0.02


class Tone:
    """Phase-continuous sine, 20 ms at a time."""

    def __init__(self, freq: float, rate: int = 8000, amp: float = 3000.0) -> None:
        self.freq, self.rate, self.amp, self.pos = freq, rate, amp, 0

    def frame(self) -> np.ndarray:
        n = self.rate // 50
        t = np.arange(self.pos, self.pos + n) / self.rate
        self.pos += n
        return np.rint(self.amp * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)

    def ulaw(self) -> bytes:
        return ulaw_encode(self.frame()).tobytes()


def amplitude_at(pcm: np.ndarray, freq: float, rate: int = 8000) -> float:
    t = np.arange(pcm.size) / rate
    return float(2 * abs(np.dot(pcm.astype(np.float64), np.exp(-2j * np.pi * freq * t))) / pcm.size)


def run(
    room: ConferenceRoom, ticks: int, inputs: Callable[[int], dict[str, object]]
) -> tuple[list[TickResult], dict[str, np.ndarray]]:
    """Run ``ticks`` ticks; returns the results and each PCMU participant's decoded output."""
    results = [room.tick(inputs(k), k * TICK) for k in range(ticks)]  # type: ignore[arg-type]
    heard = {
        pid: np.concatenate([ulaw_decode(r.payloads[pid]) for r in results])
        for pid in results[-1].payloads
        if room.participants[pid].codec.encoding == "PCMU"
    }
    return results, heard


def test_five_tones_each_hears_the_others_not_itself() -> None:
    freqs = {"A": 300.0, "B": 500.0, "C": 700.0, "D": 900.0, "E": 1100.0}
    room = ConferenceRoom("five", top_k=8)
    tones = {pid: Tone(f) for pid, f in freqs.items()}
    for pid in freqs:
        room.join(pid, "PCMU/8000", beep=False)
    _, heard = run(room, 20, lambda k: {pid: t.ulaw() for pid, t in tones.items()})
    for pid, own in freqs.items():
        pcm = heard[pid][800:]  # skip the first 100 ms (gate opening); 300 ms left, whole cycles
        assert amplitude_at(pcm, own) < 60.0, pid
        for other, f in freqs.items():
            if other != pid:
                assert amplitude_at(pcm, f) == pytest.approx(3000.0, rel=0.05), (pid, other)


def test_muted_participant_is_not_heard_but_hears() -> None:
    room = ConferenceRoom()
    tones = {"A": Tone(400.0), "B": Tone(600.0), "M": Tone(1000.0)}
    for pid in tones:
        room.join(pid, "PCMU/8000", beep=False, muted=pid == "M")
    results, heard = run(room, 20, lambda k: {pid: t.ulaw() for pid, t in tones.items()})
    for pid in ("A", "B"):
        assert amplitude_at(heard[pid][800:], 1000.0) < 60.0
    assert amplitude_at(heard["M"][800:], 400.0) > 2800.0
    assert amplitude_at(heard["M"][800:], 600.0) > 2800.0
    assert amplitude_at(np.concatenate([r.mix for r in results if r.mix is not None])[800:], 1000.0) < 60.0
    assert set(results[-1].speakers) == {"A", "B"}
    # Unmuting makes M heard again.
    room.set_muted("M", False)
    _, heard = run(room, 20, lambda k: {pid: t.ulaw() for pid, t in tones.items()})
    assert amplitude_at(heard["A"][800:], 1000.0) > 2800.0


def test_coach_is_heard_only_by_the_coached() -> None:
    room = ConferenceRoom()
    tones = {"agent": Tone(400.0), "customer": Tone(600.0), "coach": Tone(1000.0)}
    room.join("agent", "PCMU/8000", beep=False)
    room.join("customer", "PCMU/8000", beep=False)
    room.join("coach", "PCMU/8000", beep=False, coach_of="agent")
    _, heard = run(room, 20, lambda k: {pid: t.ulaw() for pid, t in tones.items()})
    assert amplitude_at(heard["agent"][800:], 1000.0) > 2800.0
    assert amplitude_at(heard["agent"][800:], 600.0) > 2800.0
    assert amplitude_at(heard["customer"][800:], 1000.0) < 60.0
    assert amplitude_at(heard["coach"][800:], 400.0) > 2800.0
    assert amplitude_at(heard["coach"][800:], 600.0) > 2800.0
    assert amplitude_at(heard["coach"][800:], 1000.0) < 60.0
    # Ending the coaching makes the coach an ordinary participant.
    room.set_coach("coach", None)
    _, heard = run(room, 20, lambda k: {pid: t.ulaw() for pid, t in tones.items()})
    assert amplitude_at(heard["customer"][800:], 1000.0) > 2800.0


def test_on_hold_participant_hears_hold_source_and_is_not_heard() -> None:
    hold = ToneSource(ToneSpec("hold", (1500.0,), level_dbfs=-20.0), 8000)
    room = ConferenceRoom(hold_source=hold)
    tones = {"A": Tone(400.0), "B": Tone(600.0), "H": Tone(1000.0)}
    for pid in tones:
        room.join(pid, "PCMU/8000", beep=False)
    room.set_hold("H", True)
    results, heard = run(room, 20, lambda k: {pid: t.ulaw() for pid, t in tones.items()})
    assert amplitude_at(heard["H"][800:], 1500.0) == pytest.approx(3276.7, rel=0.05)
    assert amplitude_at(heard["H"][800:], 400.0) < 60.0
    assert amplitude_at(heard["A"][800:], 1000.0) < 60.0
    assert amplitude_at(heard["A"][800:], 1500.0) < 60.0
    assert amplitude_at(heard["A"][800:], 600.0) > 2800.0
    assert "H" not in results[-1].speakers


def test_clipping_saturates_at_full_scale() -> None:
    room = ConferenceRoom()
    for pid in "ABCD":
        room.join(pid, "PCMU/8000", encode=False, beep=False)
    loud = np.full(160, 30000, dtype=np.int16)
    quiet = np.full(160, -30000, dtype=np.int16)
    for k in range(3):
        res = room.tick({"A": loud, "B": loud, "C": loud, "D": quiet}, k * TICK)
    assert np.all(res.pcm["A"] == 30000)  # 60000 - 30000
    assert np.all(res.pcm["D"] == 32767)  # 90000: saturated, not wrapped to 24464
    assert res.mix is not None and np.all(res.mix == 32767)  # 60000 would wrap to -5536


def test_non_contributors_share_one_encode_per_codec() -> None:
    room = ConferenceRoom(top_k=8)
    for i in range(10):
        room.join(f"P{i}", "PCMU/8000", beep=False)
    for i in range(4):
        room.join(f"Q{i}", "PCMA/8000", beep=False)
    tones = {"P0": Tone(400.0), "P1": Tone(700.0)}
    silence = ulaw_encode(np.zeros(160, np.int16)).tobytes()

    def inputs(k: int) -> dict[str, object]:
        frame = {f"P{i}": silence for i in range(10)}
        frame.update({pid: t.ulaw() for pid, t in tones.items()})
        return frame

    results, _ = run(room, 5, inputs)
    last = results[-1]
    assert set(last.speakers) == {"P0", "P1"}
    listeners = [last.payloads[f"P{i}"] for i in range(2, 10)]
    assert all(p is listeners[0] for p in listeners)  # one encode, same object for everyone
    alaw = [last.payloads[f"Q{i}"] for i in range(4)]
    assert all(p is alaw[0] for p in alaw) and alaw[0] != listeners[0]
    assert last.payloads["P0"] != listeners[0] != last.payloads["P1"]
    assert last.encodes == 4  # two talkers + one shared PCMU + one shared PCMA
    assert last.mix is not None and ulaw_encode(last.mix).tobytes() == listeners[0]


def test_mixed_codecs_hear_each_other_at_the_right_frequency() -> None:
    room = ConferenceRoom()
    room.join("ulaw", "PCMU/8000", beep=False)
    room.join("opus", "opus/48000/2", beep=False)
    room.join("g722", "G722/8000", beep=False)
    assert room.rate == 48000
    t_ulaw, t_opus, t_g722 = Tone(400.0), Tone(1000.0, 48000), Tone(700.0, 16000)
    opus_enc, g722_enc = OpusEncoder(), G722Encoder()
    opus_dec, g722_dec = OpusDecoder(), G722Decoder()
    out: dict[str, list[np.ndarray]] = {"ulaw": [], "opus": [], "g722": []}
    for k in range(35):
        res = room.tick(
            {
                "ulaw": t_ulaw.ulaw(),
                "opus": opus_enc.encode(t_opus.frame()),
                "g722": g722_enc.encode(t_g722.frame()),
            },
            k * TICK,
        )
        out["ulaw"].append(ulaw_decode(res.payloads["ulaw"]))
        out["opus"].append(opus_dec.decode(res.payloads["opus"]))
        out["g722"].append(g722_dec.decode(res.payloads["g722"]))
    heard = {pid: np.concatenate(frames[15:]) for pid, frames in out.items()}  # last 400 ms
    assert amplitude_at(heard["ulaw"], 1000.0) > 2000.0
    assert amplitude_at(heard["ulaw"], 700.0) > 2000.0
    assert amplitude_at(heard["ulaw"], 400.0) < 100.0
    assert amplitude_at(heard["opus"], 400.0, 48000) > 2000.0
    assert amplitude_at(heard["opus"], 700.0, 48000) > 2000.0
    assert amplitude_at(heard["opus"], 1000.0, 48000) < 150.0
    assert amplitude_at(heard["g722"], 400.0, 16000) > 2000.0
    assert amplitude_at(heard["g722"], 1000.0, 16000) > 2000.0
    assert amplitude_at(heard["g722"], 700.0, 16000) < 100.0


def test_speaker_events_with_exact_debounce() -> None:
    room = ConferenceRoom(speech_start_ms=100, speech_stop_ms=500)
    room.join("A", "PCMU/8000", beep=False)
    room.join("B", "PCMU/8000", beep=False)
    tone, silence = Tone(500.0), ulaw_encode(np.zeros(160, np.int16)).tobytes()
    events = []
    for k in range(100):
        res = room.tick({"A": tone.ulaw() if 10 <= k < 60 else silence, "B": silence}, k * TICK)
        events += [(k, e.participant, e.callback_event, e.t) for e in res.events]
    assert events == [
        (14, "A", "participant-speech-start", pytest.approx(14 * TICK)),
        (84, "A", "participant-speech-stop", pytest.approx(84 * TICK)),
    ]


def test_leaving_while_speaking_closes_the_spurt() -> None:
    room = ConferenceRoom()
    room.join("A", "PCMU/8000", beep=False)
    room.join("B", "PCMU/8000", beep=False)
    tone = Tone(500.0)
    for k in range(10):
        room.tick({"A": tone.ulaw()}, k * TICK)
    room.leave("A", beep=False)
    res = room.tick({}, 0.2)
    assert [(e.participant, e.speaking) for e in res.events] == [("A", False)]
    assert set(res.payloads) == {"B"}


@pytest.mark.parametrize(("aggressiveness", "expect_start"), [(None, True), (3, False)])
def test_vad_vetoes_line_noise(aggressiveness: int | None, expect_start: bool) -> None:
    # White noise at -40.7 dBFS passes a -45 dBFS energy threshold but webrtcvad (mode 3) rejects it.
    room = ConferenceRoom(speech_on_dbfs=-45.0, speech_off_dbfs=-50.0, vad_aggressiveness=aggressiveness)
    room.join("A", "PCMU/8000", beep=False)
    noise = ulaw_encode(np.random.default_rng(1).normal(0, 300, (20, 160)).astype(np.int16))
    events = [e for k in range(20) for e in room.tick({"A": noise[k].tobytes()}, k * TICK).events]
    assert [(e.participant, e.speaking, e.t) for e in events] == (
        [("A", True, 4 * TICK)] if expect_start else []
    )


def test_large_room_of_500_is_exact() -> None:
    room = ConferenceRoom(top_k=8)
    n = 500
    ids = [f"CA{i:03d}" for i in range(n)]
    for pid in ids:
        room.join(pid, "PCMU/8000", beep=False)
    talkers = {ids[i]: Tone(300.0 + 100 * j) for j, i in enumerate((3, 77, 150, 260, 311, 499))}
    rng = np.random.default_rng(7)
    hiss = ulaw_encode(rng.normal(0, 10, (n, 160)).astype(np.int16))  # -70 dBFS line noise
    for k in range(6):
        inbound = {pid: hiss[i].tobytes() for i, pid in enumerate(ids)}
        inbound.update({pid: t.ulaw() for pid, t in talkers.items()})
        res = room.tick(inbound, k * TICK)
    assert set(res.speakers) == set(talkers)
    decoded = {pid: ulaw_decode(inbound[pid]).astype(np.int32) for pid in talkers}
    total = sum(decoded.values())
    assert isinstance(total, np.ndarray)
    listener = ulaw_encode(np.clip(total, -32767, 32767).astype(np.int16)).tobytes()
    for pid in (ids[0], ids[1], ids[250], ids[498]):
        assert res.payloads[pid] == listener
    for pid in (ids[3], ids[311], ids[499]):
        expected = ulaw_encode(np.clip(total - decoded[pid], -32767, 32767).astype(np.int16)).tobytes()
        assert res.payloads[pid] == expected
    assert len(res.payloads) == n
    assert res.encodes == 1 + len(talkers)


def test_top_k_limits_the_summed_talkers() -> None:
    room = ConferenceRoom(top_k=3)
    amps = [1000.0, 8000.0, 2000.0, 6000.0, 500.0, 7000.0]
    tones = {f"P{i}": Tone(300.0 + 100 * i, amp=a) for i, a in enumerate(amps)}
    for pid in tones:
        room.join(pid, "PCMU/8000", beep=False)
    for k in range(3):
        res = room.tick({pid: t.ulaw() for pid, t in tones.items()}, k * TICK)
    assert set(res.speakers) == {"P1", "P3", "P5"}
    assert res.mix is not None and amplitude_at(res.mix, 300.0) < 50.0


def test_wait_music_until_the_moderator_joins() -> None:
    wait = ToneSource(ToneSpec("wait", (1200.0,), level_dbfs=-20.0), 8000)
    room = ConferenceRoom(wait_source=wait)
    tone_a, tone_b = Tone(400.0), Tone(600.0)
    room.join("A", "PCMU/8000", start_conference_on_enter=False)
    room.join("B", "PCMU/8000", start_conference_on_enter=False)
    assert not room.started
    results, heard = run(room, 10, lambda k: {"A": tone_a.ulaw(), "B": tone_b.ulaw()})
    assert results[-1].payloads["A"] is results[-1].payloads["B"]
    assert results[-1].mix is None and results[-1].encodes == 1
    assert amplitude_at(heard["A"][400:], 1200.0) > 3000.0
    assert amplitude_at(heard["A"][400:], 600.0) < 60.0
    room.join("mod", "PCMU/8000", start_conference_on_enter=True, beep=False)
    _, heard = run(room, 20, lambda k: {"A": tone_a.ulaw(), "B": tone_b.ulaw()})
    assert amplitude_at(heard["A"][800:], 600.0) > 2800.0
    assert amplitude_at(heard["A"][800:], 1200.0) < 60.0


def test_announcements_and_beeps_reach_everyone() -> None:
    room = ConferenceRoom()
    room.join("A", "PCMU/8000", beep=False)
    room.join("B", "PCMU/8000", beep=False)
    done: list[bool] = []
    clip = ToneSource(ToneSpec("note", (1000.0,), level_dbfs=-20.0), 8000).read(1600)
    room.announce(PcmSource(clip.copy(), 8000), on_done=done.append)
    tone = Tone(400.0)
    _, heard = run(room, 12, lambda k: {"A": tone.ulaw()})
    assert done == [True]
    assert amplitude_at(heard["B"][:1600], 1000.0) > 3000.0  # announcement
    assert amplitude_at(heard["B"][:1600], 400.0) > 2500.0  # mixed with the talker
    assert amplitude_at(heard["A"][:1600], 1000.0) > 3000.0  # the talker hears it too
    assert amplitude_at(heard["B"][1600:], 1000.0) < 60.0  # and it has ended
    room.join("C", "PCMU/8000", beep="onEnter")  # enter beep: 880 Hz, 250 ms
    _, heard = run(room, 15, lambda k: {})
    assert amplitude_at(heard["A"][:2000], 880.0) > 4000.0
    assert not heard["A"][2000:].any()
    room.leave("C", beep="onEnter")  # no exit beep
    _, heard = run(room, 5, lambda k: {})
    assert amplitude_at(heard["A"], 440.0) < 20.0
    room.leave("B", beep=True)
    _, heard = run(room, 10, lambda k: {})
    assert amplitude_at(heard["A"][:2000], 440.0) > 4000.0


def test_recording_tap_gets_the_full_mix() -> None:
    room = ConferenceRoom()
    room.join("A", "PCMU/8000", beep=False)
    room.join("B", "G722/8000", beep=False)
    taps: list[np.ndarray] = []
    wide: list[np.ndarray] = []
    room.add_mix_tap(taps.append)
    room.add_mix_tap(wide.append, rate=8000)
    tone, g722 = Tone(500.0), G722Encoder()
    results = [
        room.tick({"A": tone.ulaw(), "B": g722.encode(np.zeros(320, np.int16))}, k * TICK) for k in range(20)
    ]
    assert all(t is r.mix for t, r in zip(taps, results, strict=True))
    assert taps[0].shape == (320,) and wide[0].shape == (160,)
    assert amplitude_at(np.concatenate(wide[5:]), 500.0) > 2500.0
    room.remove_mix_tap(taps.append)
    room.tick({}, 1.0)
    assert len(taps) == 20 and len(wide) == 21


def test_bad_payloads_count_as_lost_and_bad_pcm_raises() -> None:
    room = ConferenceRoom()
    room.join("A", "PCMU/8000", beep=False)
    room.join("B", "PCMU/8000", beep=False)
    room.join("C", "opus/48000/2", beep=False)
    res = room.tick({"A": b"\x00" * 80, "B": None, "C": b"\xff\xff\xff"}, 0.0)
    assert room.decode_errors == 2 and set(res.payloads) == {"A", "B", "C"}
    with pytest.raises(MixerError, match="int16"):
        room.tick({"A": np.zeros(100, np.int16)}, 0.02)
    with pytest.raises(MixerError, match="already"):
        room.join("A", "PCMU/8000")
    with pytest.raises(MixerError, match="no participant"):
        room.set_muted("Z", True)
    with pytest.raises(MixerError, match="beep"):
        room.join("D", "PCMU/8000", beep="sometimes")


class FakeStream:
    """What the engine adapter sees of an RtpStream: a hashable object with a negotiated codec."""

    def __init__(self, codec: str) -> None:
        self.codec = get_codec(codec)


def test_engine_adapter_maps_streams_and_follows_codec_changes() -> None:
    events: list[object] = []
    adapter = EngineRoom(ConferenceRoom(), on_events=events.extend)
    a, b, c = FakeStream("PCMU/8000"), FakeStream("PCMA/8000"), FakeStream("PCMU/8000")
    adapter.join(a, "CA-a", beep=False)
    adapter.join(b, "CA-b", beep=False, muted=True)
    adapter.join(c, "CA-c", beep=False)
    tone = Tone(500.0)
    for k in range(8):
        out = adapter.mix({a: tone.frame(), b: Tone(900.0).frame(), c: None}, k * TICK)
    assert set(out) == {a, b, c}
    assert out[b] is not out[c] and isinstance(out[c], bytes)
    assert amplitude_at(ulaw_decode(out[c]), 500.0) > 2500.0  # engine-decoded PCM in, PCMU out
    assert [(e.participant, e.speaking) for e in events] == [("CA-a", True)]  # type: ignore[attr-defined]
    adapter.room.set_muted(c, True)  # type: ignore[arg-type]
    c.codec = get_codec("G722/8000")  # re-INVITE to G.722
    out = adapter.mix({a: tone.frame()}, 0.2)
    assert adapter.room.rate == 16000 and len(out[c]) == 160
    assert adapter.room.participants[c].codec.encoding == "G722"  # type: ignore[index]
    assert adapter.room.participants[c].muted  # type: ignore[index]  # state survives the re-join
    assert adapter.participant_id(c) == "CA-c"
    adapter.leave(b, beep=False)
    assert set(adapter.mix({}, 0.22)) == {a, c}
    assert adapter.last is not None and adapter.last.rate == 16000


def test_a_burst_of_joins_beeps_once() -> None:
    room = ConferenceRoom()
    for i in range(20):
        room.join(f"P{i}", "PCMU/8000")
    _, heard = run(room, 30, lambda k: {})
    beep = heard["P0"]
    assert amplitude_at(beep[:2000], 880.0) > 4000.0
    assert not beep[2000:].any()  # 250 ms of beep, then silence


async def test_end_to_end_through_the_media_engine_over_udp() -> None:
    """Four RTP phones on 127.0.0.1 in one room through the real engine (PCMU and PCMA legs)."""
    loop = asyncio.get_running_loop()
    base = random.randrange(30000, 60000, 2000)
    engine = MediaEngine(RtpConfig("127.0.0.1", base, base + 1999))
    await engine.start()
    try:
        phones = [Phone(loop, 0), Phone(loop, 0), Phone(loop, 8), Phone(loop, 0)]
        streams = []
        for phone, codec in zip(phones, (PCMU, PCMU, PCMA, PCMU), strict=True):
            stream = await engine.open_stream()
            stream.configure(negotiated(phone.port, codec, telephone_event=None))
            streams.append(stream)
        adapter = EngineRoom(ConferenceRoom("e2e"))
        for i, s in enumerate(streams):
            adapter.join(s, f"CA{i}", beep=False, muted=i == 3)
            engine.join_room(s, adapter)  # type: ignore[arg-type]

        def dest(i: int) -> tuple[str, int]:
            return (streams[i].local_address, streams[i].local_port)

        await asyncio.gather(
            phones[0].send_paced(phones[0].audio_packets(phone_tone(500, 1.0)), dest(0)),
            phones[1].send_paced(phones[1].audio_packets(phone_tone(1300, 1.0)), dest(1)),
            phones[3].send_paced(phones[3].audio_packets(phone_tone(2000, 1.0)), dest(3)),  # muted
        )
        await asyncio.sleep(0.1)
        heard0 = phones[0].audio_from(0, skip=15)
        heard2 = phones[2].audio_from(8, skip=15)  # the PCMA leg
        assert audio.contains_tone(heard0, 8000, 1300)
        assert audio.band_energy(heard0, 8000, 500) < 0.01
        assert audio.band_energy(heard2, 8000, 500) > 0.3 and audio.band_energy(heard2, 8000, 1300) > 0.3
        assert audio.band_energy(heard2, 8000, 2000) < 0.01  # the muted phone is not heard
        assert audio.band_energy(phones[3].audio_from(0, skip=15), 8000, 500) > 0.3  # but hears
        for p in phones:
            p.close()
    finally:
        await engine.stop()


@pytest.mark.parametrize("form", ["bytes", "pcm", "mixed"])
def test_inputs_as_payloads_or_decoded_pcm_mix_identically(form: str) -> None:
    room = ConferenceRoom()
    ids = [f"P{i}" for i in range(6)]
    for pid in ids:
        room.join(pid, "PCMU/8000", beep=False)
    tones = [Tone(300.0 + 200 * i) for i in range(6)]
    for k in range(4):
        payloads = [t.ulaw() for t in tones]
        if form == "bytes":
            inbound: dict[str, object] = dict(zip(ids, payloads, strict=True))
        elif form == "pcm":
            inbound = {pid: ulaw_decode(p) for pid, p in zip(ids, payloads, strict=True)}
        else:
            inbound = {
                pid: ulaw_decode(p) if i % 2 else p
                for i, (pid, p) in enumerate(zip(ids, payloads, strict=True))
            }
        res = room.tick(inbound, k * TICK)  # type: ignore[arg-type]
    frames = ulaw_decode(b"".join(payloads)).reshape(6, 160).astype(np.int32)
    for i, pid in enumerate(ids):
        expected = np.clip(frames.sum(axis=0) - frames[i], -32767, 32767).astype(np.int16)
        assert res.payloads[pid] == ulaw_encode(expected).tobytes()


class CountingSource:
    """An endless 1500 Hz source that counts how often it is pulled."""

    def __init__(self) -> None:
        self.sample_rate, self.frame_samples, self.reads = 8000, 160, 0
        self._tone = Tone(1500.0)

    def read_frame(self) -> np.ndarray:
        self.reads += 1
        return self._tone.frame()


def test_hold_source_is_pulled_once_per_tick_for_all_codecs() -> None:
    music = CountingSource()
    room = ConferenceRoom(hold_source=music)
    room.join("U", "PCMU/8000", beep=False, hold=True)
    room.join("A", "PCMA/8000", beep=False, hold=True)
    room.join("X", "PCMU/8000", beep=False)
    results = [room.tick({}, k * TICK) for k in range(10)]
    assert music.reads == 10
    heard = np.concatenate([ulaw_decode(r.payloads["U"]) for r in results])
    assert amplitude_at(heard, 1500.0) > 2800.0
    assert results[-1].payloads["U"] != results[-1].payloads["A"]  # same audio, two encodings
    assert not ulaw_decode(results[-1].payloads["X"]).any()  # the others don't hear it


def test_opus_listeners_share_one_encoder_and_talkers_hand_over_after_a_spurt() -> None:
    room = ConferenceRoom(share_after_ticks=10)
    room.join("ulaw", "PCMU/8000", beep=False)
    for pid in ("o1", "o2", "o3"):
        room.join(pid, "opus/48000/2", beep=False)
    assert room.rate == 48000
    enc, talker, decoder = OpusEncoder(), Tone(700.0, 48000), OpusDecoder()
    silent = OpusEncoder()
    zero = np.zeros(960, np.int16)
    results = []
    for k in range(40):
        inbound: dict[str, object] = {"ulaw": Tone(400.0).ulaw()}
        inbound["o1"] = enc.encode(talker.frame() if k < 15 else zero)  # o1 talks for 300 ms
        inbound["o2"] = inbound["o3"] = silent.encode(zero)
        results.append(room.tick(inbound, k * TICK))  # type: ignore[arg-type]
    # o2 and o3 never talk: one shared Opus encode, the same packet for both, decodable.
    assert all(r.payloads["o2"] is r.payloads["o3"] for r in results)
    assert decoder.decode(results[-1].payloads["o2"]).shape == (960,)
    # o1 is individual while talking and for share_after_ticks after its last contribution.
    spurt_end = max(k for k, r in enumerate(results) if "o1" in r.speakers)
    assert spurt_end >= 14
    assert results[spurt_end + 5].payloads["o1"] is not results[spurt_end + 5].payloads["o2"]
    assert results[spurt_end + 11].payloads["o1"] is results[spurt_end + 11].payloads["o2"]
    assert results[-1].encodes == 2  # the PCMU talker's own encode + one shared Opus encode


def test_listen_only_participants_are_never_decoded_or_heard() -> None:
    room = ConferenceRoom()
    room.join("A", "PCMU/8000", beep=False)
    room.join("L", "PCMU/8000", beep=False, listen_only=True)
    room.join("O", "opus/48000/2", beep=False, listen_only=True)
    tone_a, tone_l = Tone(400.0), Tone(1000.0)
    results = [
        room.tick({"A": tone_a.ulaw(), "L": tone_l.ulaw(), "O": b"\xff\xfe garbage"}, k * TICK)
        for k in range(20)
    ]
    assert room.decode_errors == 0  # the listen-only Opus leg was not even decoded
    heard_l = np.concatenate([ulaw_decode(r.payloads["L"]) for r in results])[800:]
    heard_a = np.concatenate([ulaw_decode(r.payloads["A"]) for r in results])[800:]
    assert amplitude_at(heard_l, 400.0) > 2800.0
    assert amplitude_at(heard_a, 1000.0) < 60.0
    assert results[-1].speakers == ("A",)


def test_stopped_announcements_report_not_played() -> None:
    room = ConferenceRoom()
    room.join("A", "PCMU/8000", beep=False)
    done: list[bool] = []
    room.announce(ToneSource(ToneSpec("a", (500.0,)), 8000, duration=1.0), on_done=done.append)
    room.announce(ToneSource(ToneSpec("b", (600.0,)), 8000, duration=1.0), on_done=done.append)
    room.tick({}, 0.0)
    assert room.stop_announcements() == 2 and done == [False, False]
    assert not ulaw_decode(room.tick({}, 0.02).payloads["A"]).any()
