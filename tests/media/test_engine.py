"""End-to-end tests of the media engine over real UDP sockets on 127.0.0.1.

Each test drives the engine on its real 20 ms clock for a second or two, with test "phones"
(``tests/media/rtp_phone.py``) sending paced RTP; audio is checked with ``tests.peers.audio``
(audioop and numpy spectra), never with the product's own codecs.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.media.rtp_phone import Phone, negotiated, tone
from tests.peers import audio
from tests.peers.pcap import rtp_payloads
from trunkline.codecs.opus import OpusDecoder, OpusEncoder
from trunkline.gateway.config import RtpConfig
from trunkline.gateway.sip.sdp import OPUS, PCMA, PCMU, TELEPHONE_EVENT_8000, TELEPHONE_EVENT_48000, RtpFormat
from trunkline.media.dtmf import generate_dtmf
from trunkline.media.engine import MediaEngine
from trunkline.media.jitter import ReceiveStats
from trunkline.media.rtp import RtpPacket
from trunkline.media.session import Interrupt, PlayOutcome
from trunkline.media.stream import RtpStream

SIPP = Path("/usr/share/sip-tester")


@pytest.fixture
async def loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


async def leg(
    engine: MediaEngine, phone: Phone, codec: RtpFormat = PCMU, te: RtpFormat | None = TELEPHONE_EVENT_8000
) -> RtpStream:
    stream = await engine.open_stream()
    stream.configure(negotiated(phone.port, codec, telephone_event=te))
    return stream


def dest(stream: RtpStream) -> tuple[str, int]:
    return (stream.local_address, stream.local_port)


async def test_bridge_transcodes_pcmu_to_pcma(engine: MediaEngine, loop: asyncio.AbstractEventLoop) -> None:
    p1, p2 = Phone(loop, 0), Phone(loop, 8)
    a, b = await leg(engine, p1, PCMU), await leg(engine, p2, PCMA)
    engine.bridge(a, b)
    assert not a.relay and not b.relay
    await asyncio.gather(
        p1.send_paced(p1.audio_packets(tone(1000, 1.2)), dest(a)),
        p2.send_paced(p2.audio_packets(tone(600, 1.2)), dest(b)),
    )
    await asyncio.sleep(0.1)
    heard_by_2 = p2.audio_from(8, skip=10)
    heard_by_1 = p1.audio_from(0, skip=10)
    assert heard_by_2.size > 8000 * 0.8
    assert abs(audio.dominant_frequency(heard_by_2, 8000) - 1000) < 10
    assert audio.contains_tone(heard_by_2, 8000, 1000)
    assert abs(audio.dominant_frequency(heard_by_1, 8000) - 600) < 10
    # Every packet is ours: one SSRC per leg, consecutive sequence numbers.
    for phone, stream in ((p1, a), (p2, b)):
        assert {r.packet.ssrc for r in phone.received} == {stream.ssrc}
        seqs = [r.packet.sequence for r in phone.received]
        assert all((y - x) & 0xFFFF == 1 for x, y in itertools.pairwise(seqs))
    p1.close()
    p2.close()


async def test_same_codec_bridge_relays_payloads(
    engine: MediaEngine, loop: asyncio.AbstractEventLoop
) -> None:
    p1, p2 = Phone(loop, 0), Phone(loop, 0)
    a, b = await leg(engine, p1), await leg(engine, p2)
    engine.bridge(a, b)
    assert a.relay and b.relay
    first = p1.audio_packets(tone(1000, 0.4))
    p1.ssrc = (p1.ssrc + 1) & 0xFFFFFFFF  # the phone restarts its stream mid-call
    p1.seq = (p1.seq + 5000) & 0xFFFF
    second = p1.audio_packets(tone(700, 0.4))
    await p1.send_paced(first + second, dest(a))
    await asyncio.sleep(0.05)
    got = [r.packet for r in p2.received]
    sent_payloads = [d[12:] for d in first + second]
    assert [p.payload for p in got] == sent_payloads  # byte-identical, no decode/encode
    assert {p.ssrc for p in got} == {b.ssrc} and b.ssrc not in (p1.ssrc, p1.ssrc - 1)
    seqs = [p.sequence for p in got]
    assert all((y - x) & 0xFFFF == 1 for x, y in itertools.pairwise(seqs))
    stamps = [p.timestamp for p in got]
    assert all((y - x) & 0xFFFFFFFF == 160 for x, y in itertools.pairwise(stamps))
    assert got[0].marker and got[len(first)].marker
    b.sync_relay()  # counters of a batched relay are written back at least once a second
    assert b.stats.packets_relayed == len(got)
    p1.close()
    p2.close()


async def test_relay_fast_path_rewrites_in_place_and_keeps_receive_stats(
    engine: MediaEngine, loop: asyncio.AbstractEventLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p1, p2 = Phone(loop, 0), Phone(loop, 0)
    a, b = await leg(engine, p1), await leg(engine, p2)
    engine.bridge(a, b)
    slow: list[int] = []
    original = RtpStream.handle_rtp

    def counting(self: RtpStream, data: bytes, addr: tuple[str, int], now: float) -> None:
        if self is a:
            slow.append(len(data))
        original(self, data, addr, now)

    monkeypatch.setattr(RtpStream, "handle_rtp", counting)  # streams have __slots__: patch the class
    packets = p1.audio_packets(tone(1000, 0.6))
    del packets[10]  # one lost packet: the gap must pass through
    packets[20], packets[21] = packets[21], packets[20]  # and one reordering
    await p1.send_paced(packets, dest(a))
    await asyncio.sleep(0.05)
    # Only the first packets (latching; a new source on RFC 3550 A.1 probation, MIN_SEQUENTIAL=2,
    # in the batched relay) took the slow path: not the gap, nor the reordering.
    assert 1 <= len(slow) <= 2
    first_slow = len(slow)
    got = [r.packet for r in p2.received]
    assert [p.payload for p in got] == [d[12:] for d in packets]
    assert {p.ssrc for p in got} == {b.ssrc} and {p.payload_type for p in got} == {0}
    in_seq = [struct.unpack_from("!H", d, 2)[0] for d in packets]
    out_seq = [p.sequence for p in got]
    assert {(o - i) & 0xFFFF for i, o in zip(in_seq, out_seq, strict=True)} == {
        (out_seq[0] - in_seq[0]) & 0xFFFF
    }
    assert got[0].marker and not any(p.marker for p in got[1:])
    reference = ReceiveStats(p1.ssrc, 8000, struct.unpack_from("!H", packets[0], 2)[0])
    for d in packets:
        reference.update(RtpPacket.parse(d), 0.0)
    a.sync_relay()
    stats = a.rx_stats
    assert stats is not None and stats.lost == 1
    assert (stats.received, stats.lost, stats.extended_max, stats.octets) == (
        reference.received,
        reference.lost,
        reference.extended_max,
        reference.octets,
    )
    assert a.stats.packets_received == len(packets) and b.stats.packets_relayed == len(packets)
    # A consumer of a relayed leg's audio (recording) sends its packets down the slow path.
    rec = a.start_recording(tmp_path / "relayed.wav")
    more = p1.audio_packets(tone(500, 0.2))
    await p1.send_paced(more, dest(a))
    await asyncio.sleep(0.05)
    assert len(slow) == first_slow + len(more)
    assert b.stats.packets_relayed == len(packets) + len(more)
    await rec.stop()
    p1.close()
    p2.close()


async def test_relay_maps_dynamic_payload_types_between_legs(
    engine: MediaEngine, loop: asyncio.AbstractEventLoop
) -> None:
    p1, p2 = Phone(loop, 111), Phone(loop, 96)
    a = await leg(engine, p1, OPUS, TELEPHONE_EVENT_48000)
    b = await leg(engine, p2, RtpFormat(96, "opus", 48000, 2, {}), TELEPHONE_EVENT_48000)
    engine.bridge(a, b)
    assert a.relay and b.relay and b.payload_type == 96
    packets = opus_packets(p1, tone(1000, 0.4, 48000))
    await p1.send_paced(packets, dest(a))
    await asyncio.sleep(0.05)
    got = [r.packet for r in p2.received]
    assert [p.payload for p in got] == [d[12:] for d in packets]  # Opus relayed untouched
    assert {p.payload_type for p in got} == {96} and {p.ssrc for p in got} == {b.ssrc}
    b.sync_relay()
    assert b.stats.packets_relayed == len(packets)
    p1.close()
    p2.close()


async def test_prompt_on_a_relayed_leg_takes_over_then_relay_resumes(
    engine: MediaEngine, loop: asyncio.AbstractEventLoop
) -> None:
    p1, p2 = Phone(loop, 0), Phone(loop, 0)
    a, b = await leg(engine, p1), await leg(engine, p2)
    engine.bridge(a, b)
    relayed = p1.audio_packets(tone(1000, 1.0))
    sending = asyncio.ensure_future(p1.send_paced(relayed, dest(a)))
    await asyncio.sleep(0.2)
    assert await b.play((tone(400, 0.4), 8000)) is PlayOutcome.COMPLETED
    await sending
    await asyncio.sleep(0.05)
    payloads = {d[12:] for d in relayed}
    kinds = ["relay" if r.packet.payload in payloads else "prompt" for r in p2.received]
    first_prompt, last_prompt = kinds.index("prompt"), len(kinds) - 1 - kinds[::-1].index("prompt")
    assert kinds[:first_prompt] == ["relay"] * first_prompt and first_prompt >= 5
    assert 15 <= last_prompt - first_prompt + 1 <= 25  # 0.4 s of prompt, nothing relayed meanwhile
    assert set(kinds[first_prompt : last_prompt + 1]) == {"prompt"}
    assert kinds[last_prompt + 1 :] and set(kinds[last_prompt + 1 :]) == {"relay"}  # relaying resumed
    prompt = audio.decode_pcmu(
        b"".join(r.packet.payload for r in p2.received[first_prompt + 2 : last_prompt - 1])
    )
    assert abs(audio.dominant_frequency(prompt, 8000) - 400) < 10
    seqs = [r.packet.sequence for r in p2.received]
    assert all((y - x) & 0xFFFF == 1 for x, y in itertools.pairwise(seqs))  # one sequence space
    p1.close()
    p2.close()


async def test_relay_passes_rfc4733_events_and_reports_digit(
    engine: MediaEngine, loop: asyncio.AbstractEventLoop
) -> None:
    p1, p2 = Phone(loop, 0), Phone(loop, 0)
    a, b = await leg(engine, p1), await leg(engine, p2)
    engine.bridge(a, b)
    packets = rtp_payloads(SIPP / "dtmf_2833_5.pcap")
    await p1.send_paced([p.serialize() for p in packets], dest(a))
    digit = await asyncio.wait_for(a.digits.get(), 1.0)
    assert digit.digit == "5" and digit.source == "rfc4733"
    events = [r.packet for r in p2.received if r.packet.payload_type == 101]
    assert len(events) == len(packets)
    assert [e.payload for e in events] == [p.payload for p in packets]
    assert {e.ssrc for e in events} == {b.ssrc}
    assert a.digits.empty()
    p1.close()
    p2.close()


def opus_packets(phone: Phone, pcm48: np.ndarray) -> list[bytes]:
    enc = OpusEncoder()
    frames = pcm48[: pcm48.size // 960 * 960].reshape(-1, 960)
    return [
        phone.packet(enc.encode(f), payload_type=111, marker=i == 0, advance=960)
        for i, f in enumerate(frames)
    ]


async def test_opus_leg_bridged_to_pcmu(engine: MediaEngine, loop: asyncio.AbstractEventLoop) -> None:
    p1, p2 = Phone(loop, 111), Phone(loop, 0)
    a = await leg(engine, p1, OPUS, TELEPHONE_EVENT_48000)
    b = await leg(engine, p2, PCMU)
    engine.bridge(a, b)
    assert not a.relay
    # RFC 7587: libopus runs at the G.711 peer's 8 kHz, the RTP clock stays 48000.
    assert (a.sample_rate, a.frame_samples, a.ts_step) == (8000, 160, 960)
    await asyncio.gather(
        p1.send_paced(opus_packets(p1, tone(1000, 1.2, 48000)), dest(a)),
        p2.send_paced(p2.audio_packets(tone(440, 1.2)), dest(b)),
    )
    await asyncio.sleep(0.1)
    heard = p2.audio_from(0, skip=15)
    assert abs(audio.dominant_frequency(heard, 8000) - 1000) < 10
    assert audio.contains_tone(heard, 8000, 1000)
    dec = OpusDecoder()
    opus_rx = [r.packet for r in p1.received if r.packet.payload_type == 111]
    assert len(opus_rx) > 40
    assert {p.timestamp - opus_rx[0].timestamp for p in opus_rx[:3]} == {0, 960, 1920}
    pcm48 = np.concatenate([dec.decode(p.payload) for p in opus_rx[15:]])
    assert abs(audio.dominant_frequency(pcm48, 48000) - 440) < 10
    assert not a._resamplers and not b._resamplers  # no resampling on the bridge
    engine.unbridge(a)
    engine.join_room(a, object())  # type: ignore[arg-type]
    assert a.sample_rate == 48000 and a.frame_samples == 960  # rooms mix at the codec's rate
    engine.leave_room(a)
    p1.close()
    p2.close()


async def test_pcap_replay_recorded_matches_audioop(
    engine: MediaEngine, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    packets = rtp_payloads(SIPP / "g711a.pcap")[:100]  # 30 ms packets: 3 s of speech
    phone = Phone(loop, 8)
    stream = await leg(engine, phone, PCMA)
    rec = stream.start_recording(tmp_path / "pcap.wav")
    await phone.send_paced([p.serialize() for p in packets], dest(stream), interval=0.03)
    await asyncio.sleep(0.2)
    result = await rec.stop()
    recorded, rate = audio.read_wav(result.path)
    assert rate == 8000
    reference = audio.decode_pcma(b"".join(p.payload for p in packets))
    assert abs(recorded.size - reference.size) < 8000 * 0.5
    match = audio.correlation(reference, recorded, max_lag=8000)
    assert match.coefficient > 0.9
    phone.close()


async def test_rfc4733_pcaps_each_digit_once(engine: MediaEngine, loop: asyncio.AbstractEventLoop) -> None:
    phone = Phone(loop, 0)
    stream = await leg(engine, phone)
    names = [*"0123456789", "star", "pound"]
    datagrams: list[bytes | None] = []
    for name in names:
        datagrams += [p.serialize() for p in rtp_payloads(SIPP / f"dtmf_2833_{name}.pcap")]
        datagrams += [None] * 3
    await phone.send_paced(datagrams, dest(stream), interval=0.01)
    await asyncio.sleep(0.1)
    got = []
    while not stream.digits.empty():
        got.append(stream.digits.get_nowait())
    assert "".join(d.digit for d in got) == "0123456789*#"
    assert all(d.source == "rfc4733" and d.duration_ms == 280 for d in got)
    phone.close()


async def test_inband_dtmf_with_noise_detected_exactly(
    engine: MediaEngine, loop: asyncio.AbstractEventLoop
) -> None:
    phone = Phone(loop, 0)
    stream = await leg(engine, phone, PCMU, te=None)  # no telephone-event: in-band detection is on
    assert stream.dtmf_slot is not None
    rng = np.random.default_rng(7)
    parts = [np.zeros(800)]
    for key in "19#*":
        parts += [generate_dtmf(key, 80).astype(np.float64), np.zeros(720)]
    signal = np.concatenate(parts)
    tone_power = np.mean(generate_dtmf("1", 80).astype(np.float64) ** 2)
    noise = rng.normal(0, np.sqrt(tone_power / 100), signal.size)  # 20 dB SNR
    pcm = np.clip(np.round(signal + noise), -32768, 32767).astype(np.int16)
    await phone.send_paced(phone.audio_packets(pcm), dest(stream))
    await asyncio.sleep(0.15)
    got = []
    while not stream.digits.empty():
        got.append(stream.digits.get_nowait())
    assert "".join(d.digit for d in got) == "19#*"
    assert all(d.source == "inband" for d in got)
    phone.close()


async def test_play_wav_and_tone_reach_far_end(
    engine: MediaEngine, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    phone = Phone(loop, 0)
    stream = await leg(engine, phone)
    wav = tmp_path / "prompt.wav"
    audio.write_wav(wav, tone(440, 0.6, 16000), 16000)
    outcome = await stream.play_url(wav)
    assert outcome is PlayOutcome.COMPLETED
    first = len(phone.received)
    outcome = await stream.play(tone(1000, 0.5))
    assert outcome is PlayOutcome.COMPLETED
    await asyncio.sleep(0.06)
    pcm = audio.decode_pcmu(b"".join(r.packet.payload for r in phone.received[:first]))
    assert abs(audio.dominant_frequency(pcm, 8000) - 440) < 10
    pcm = audio.decode_pcmu(b"".join(r.packet.payload for r in phone.received[first:]))
    assert abs(audio.dominant_frequency(pcm, 8000) - 1000) < 10
    # Barge-in: stop_playback ends an endless prompt at the next frame.
    task = asyncio.ensure_future(stream.play(tone(700, 5.0), interrupt=Interrupt.DTMF))
    await asyncio.sleep(0.2)
    assert stream.stop_playback()
    assert await asyncio.wait_for(task, 0.1) is PlayOutcome.INTERRUPTED
    phone.close()


async def test_digit_interrupts_prompt(engine: MediaEngine, loop: asyncio.AbstractEventLoop) -> None:
    phone = Phone(loop, 0)
    stream = await leg(engine, phone)
    task = asyncio.ensure_future(stream.play(tone(700, 5.0), interrupt=Interrupt.DTMF))
    await asyncio.sleep(0.1)
    await phone.send_paced([p.serialize() for p in rtp_payloads(SIPP / "dtmf_2833_7.pcap")], dest(stream))
    assert await asyncio.wait_for(task, 0.5) is PlayOutcome.INTERRUPTED
    assert (await stream.digits.get()).digit == "7"
    phone.close()


async def test_send_dtmf_rfc4733(engine: MediaEngine, loop: asyncio.AbstractEventLoop) -> None:
    phone = Phone(loop, 0)
    stream = await leg(engine, phone)
    await asyncio.wait_for(stream.send_dtmf("1#"), 2.0)
    await asyncio.sleep(0.05)
    events = [r.packet for r in phone.received if r.packet.payload_type == 101]
    by_ts: dict[int, list[bytes]] = {}
    for e in events:
        by_ts.setdefault(e.timestamp, []).append(e.payload)
    assert [v[0][0] for v in by_ts.values()] == [1, 11]
    assert all(sum(1 for p in v if p[1] & 0x80) == 3 for v in by_ts.values())  # end sent 3 times
    seqs = [r.packet.sequence for r in phone.received]
    assert all((y - x) & 0xFFFF == 1 for x, y in itertools.pairwise(seqs))
    phone.close()


async def test_dual_recording_of_a_bridge(
    engine: MediaEngine, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    p1, p2 = Phone(loop, 0), Phone(loop, 0)
    a, b = await leg(engine, p1), await leg(engine, p2)
    engine.bridge(a, b)
    rec = a.start_recording(tmp_path / "dual.wav", dual=True)
    await asyncio.gather(
        p1.send_paced(p1.audio_packets(tone(1000, 1.0)), dest(a)),
        p2.send_paced(p2.audio_packets(tone(600, 1.0)), dest(b)),
    )
    result = await rec.stop()
    assert result.channels == 2
    import soundfile

    data, rate = soundfile.read(result.path, dtype="int16")
    assert data.shape[1] == 2 and rate == 8000
    assert abs(audio.dominant_frequency(data[:, 0], 8000) - 1000) < 10
    assert abs(audio.dominant_frequency(data[:, 1], 8000) - 600) < 10
    b.sync_relay()
    assert b.stats.packets_relayed > 40  # still a relay: decoding only feeds the recorder
    p1.close()
    p2.close()


async def test_jitter_reorder_and_loss_give_continuous_audio(
    engine: MediaEngine, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    phone = Phone(loop, 0)
    stream = await leg(engine, phone)
    rec = stream.start_recording(tmp_path / "jitter.wav")
    pkts: list[bytes | None] = list(phone.audio_packets(tone(800, 1.5)))
    for i in range(10, len(pkts) - 2, 12):
        pkts[i], pkts[i + 1] = pkts[i + 1], pkts[i]  # reordered pair
    for i in range(16, len(pkts), 20):
        pkts[i] = None  # lost
    await phone.send_paced(pkts, dest(stream))
    await asyncio.sleep(0.1)
    result = await rec.stop()
    pcm, _ = audio.read_wav(result.path)
    start = int(np.argmax(np.abs(pcm) > 1000))
    body = pcm[start : start + 10400].astype(np.float64)
    blocks = body[: body.size // 160 * 160].reshape(-1, 160)
    rms = np.sqrt((blocks**2).mean(axis=1))
    assert rms.min() > 300, "a lost or reordered frame left a hole (PLC missing)"
    assert stream.jitter.lost >= 3 and stream.jitter.reordered >= 3
    phone.close()


async def test_symmetric_rtp_latching(engine: MediaEngine, loop: asyncio.AbstractEventLoop) -> None:
    decoy, phone, intruder = Phone(loop, 0), Phone(loop, 0), Phone(loop, 0)
    stream = await leg(engine, decoy)  # SDP says "decoy", packets come from "phone" (NAT)
    await phone.send_paced(phone.audio_packets(tone(500, 0.3)), dest(stream))
    intruder.ssrc = phone.ssrc + 1
    await intruder.send_paced(intruder.audio_packets(tone(500, 0.2)), dest(stream))
    await asyncio.sleep(0.1)
    assert stream.latched and stream.remote == ("127.0.0.1", phone.port)
    assert len(phone.received) > 10 and not intruder.received
    assert len(decoy.received) <= 3  # silence sent before the first packet latched
    assert stream.stats.foreign == 10
    for p in (decoy, phone, intruder):
        p.close()


async def test_hold_stops_sending(engine: MediaEngine, loop: asyncio.AbstractEventLoop) -> None:
    phone = Phone(loop, 0)
    stream = await leg(engine, phone)
    await asyncio.sleep(0.2)
    assert len(phone.received) >= 5
    stream.configure(negotiated(phone.port, on_hold=True, direction="sendonly"))
    await asyncio.sleep(0.05)
    count = len(phone.received)
    await phone.send_paced(phone.audio_packets(tone(500, 0.4)), dest(stream))
    assert len(phone.received) == count  # nothing sent while on hold
    assert stream.rx_stats is None or stream.rx_stats.received == 0  # held phone's audio ignored
    stream.configure(negotiated(phone.port))
    await asyncio.sleep(0.2)
    resumed = [r.packet for r in phone.received[count:]]
    assert len(resumed) >= 5 and resumed[0].marker
    phone.close()


async def test_rtcp_reports_rtt_and_bye(engine: MediaEngine, loop: asyncio.AbstractEventLoop) -> None:
    phone = Phone(loop, 0)
    stream = await leg(engine, phone)
    await phone.send_paced(phone.audio_packets(tone(500, 0.3)), dest(stream))
    await asyncio.sleep(0.02)
    stream.send_rtcp_report()
    await asyncio.sleep(0.05)
    assert phone.rtcp, "no RTCP report"
    sr_arrival, sr = phone.rtcp[-1]
    assert sr[1] == 200  # SR (RFC 3550 section 6.4.1)
    ssrc, ntp_hi, ntp_lo = struct.unpack_from("!III", sr, 4)
    assert ssrc == stream.ssrc
    block_ssrc, lost_word, highest = struct.unpack_from("!III", sr, 28)
    assert block_ssrc == phone.ssrc and lost_word & 0xFFFFFF == 0
    assert highest & 0xFFFF == (phone.seq - 1) & 0xFFFF
    # The phone answers with an RR quoting LSR and DLSR: the RTT on loopback is tiny.
    lsr = ((ntp_hi & 0xFFFF) << 16) | (ntp_lo >> 16)
    await asyncio.sleep(0.05)
    held = loop.time() - sr_arrival  # DLSR: how long the phone sat on the SR
    block = struct.pack("!IIIIII", stream.ssrc, 0, 0, 0, lsr, int(held * 65536))
    rr = struct.pack("!BBHI", 0x81, 201, 7, phone.ssrc) + block
    phone.rtcp_sock.sendto(rr, (stream.local_address, stream.local_rtcp_port))
    await asyncio.sleep(0.05)
    assert stream.rtt is not None and stream.rtt < 0.02
    await stream.close()
    await asyncio.sleep(0.05)
    assert any(data[1] == 201 and b"\xcb" in data[:64] for _, data in phone.rtcp[-1:])
    assert any(data[i + 1] == 203 for _, data in phone.rtcp[-1:] for i in range(0, len(data) - 1, 4)), (
        "no BYE"
    )
    phone.close()


async def test_close_releases_ports_and_light_load_has_no_late_ticks(
    engine: MediaEngine, loop: asyncio.AbstractEventLoop
) -> None:
    phone = Phone(loop, 0)
    streams = [await leg(engine, phone) for _ in range(4)]
    ports = {s.local_port for s in streams}
    assert len(engine.ports.in_use) == 4 and all(p % 2 == 0 for p in ports)
    await asyncio.sleep(0.5)
    for s in streams:
        await s.close()
    assert not engine.ports.in_use and not engine.streams
    import socket

    for p in ports:
        for port in (p, p + 1):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", port))  # free again
            sock.close()
    assert engine.ticks >= 20 and engine.late_ticks == 0
    phone.close()


async def test_speech_detection_and_capture(engine: MediaEngine, loop: asyncio.AbstractEventLoop) -> None:
    from trunkline.media.tts import TextToSpeech

    speech = TextToSpeech().synthesize_sync("hello there, this is a test", sample_rate=8000)
    phone = Phone(loop, 0)
    stream = await leg(engine, phone)
    stream.start_speech_detection(speech_end_ms=300)
    stream.start_capture()
    pcm = np.concatenate([np.zeros(4000, dtype=np.int16), speech, np.zeros(6000, dtype=np.int16)])
    await phone.send_paced(phone.audio_packets(pcm), dest(stream))
    assert stream.speech_started.is_set() or not stream.speech_events.empty()
    kinds = []
    while not stream.speech_events.empty():
        kinds.append(type(stream.speech_events.get_nowait()).__name__)
    assert kinds[0] == "SpeechStarted" and "SpeechEnded" in kinds
    captured = stream.stop_capture()
    assert audio.correlation(speech, captured, max_lag=8000).coefficient > 0.9
    phone.close()


class SumRoom:
    """A stand-in conference room: everybody hears the sum of the others."""

    def mix(self, inputs, now):  # type: ignore[no-untyped-def]
        present = {s: f.astype(np.int32) for s, f in inputs.items() if f is not None}
        total = sum(present.values(), np.zeros(160, dtype=np.int32))
        return {s: np.clip(total - present.get(s, 0), -32768, 32767).astype(np.int16) for s in inputs}


async def test_room_hook_feeds_every_member(engine: MediaEngine, loop: asyncio.AbstractEventLoop) -> None:
    phones = [Phone(loop, 0) for _ in range(3)]
    streams = [await leg(engine, p) for p in phones]
    room = SumRoom()
    for s in streams:
        engine.join_room(s, room)
    await asyncio.gather(
        phones[0].send_paced(phones[0].audio_packets(tone(500, 1.0)), dest(streams[0])),
        phones[1].send_paced(phones[1].audio_packets(tone(1300, 1.0)), dest(streams[1])),
    )
    heard = phones[2].audio_from(0, skip=10)
    assert audio.band_energy(heard, 8000, 500) > 0.3 and audio.band_energy(heard, 8000, 1300) > 0.3
    assert audio.contains_tone(phones[0].audio_from(0, skip=10), 8000, 1300)
    for p in phones:
        p.close()


async def test_say_and_inband_send_dtmf(engine: MediaEngine, loop: asyncio.AbstractEventLoop) -> None:
    phone = Phone(loop, 0)
    stream = await leg(engine, phone, te=None)  # no telephone-event: digits go in-band
    assert await stream.say("one two three") is PlayOutcome.COMPLETED
    spoken = phone.audio_from(0)
    assert audio.rms_dbfs(spoken) > -40 and spoken.size > 8000 * 0.8
    first = len(phone.received)
    await asyncio.wait_for(stream.send_dtmf("4#", duration_ms=100, gap_ms=100), 2.0)
    await asyncio.sleep(0.05)
    tones = audio.decode_pcmu(b"".join(r.packet.payload for r in phone.received[first:]))
    loud = np.flatnonzero(np.abs(tones) > 2000)
    first_key = tones[loud[0] : loud[0] + 640]
    second_key = tones[loud[-1] - 640 : loud[-1]]
    assert audio.detect_dtmf(first_key) == "4" and audio.detect_dtmf(second_key) == "#"
    assert not any(r.packet.payload_type == 101 for r in phone.received)
    phone.close()


async def test_unbridge_returns_legs_to_silence(engine: MediaEngine, loop: asyncio.AbstractEventLoop) -> None:
    p1, p2 = Phone(loop, 0), Phone(loop, 8)
    a, b = await leg(engine, p1, PCMU), await leg(engine, p2, PCMA)
    engine.bridge(a, b)
    await p1.send_paced(p1.audio_packets(tone(1000, 0.5)), dest(a))
    engine.unbridge(a)
    assert a.peer is None and b.peer is None
    first = len(p2.received)
    await p1.send_paced(p1.audio_packets(tone(1000, 0.5)), dest(a))
    after = p2.audio_from(8, skip=first + 3)
    assert after.size >= 160 * 15 and audio.rms_dbfs(after) < -60  # only silence now
    p1.close()
    p2.close()


async def test_g722_leg_bridged_to_pcmu(engine: MediaEngine, loop: asyncio.AbstractEventLoop) -> None:
    from trunkline.codecs.g722 import G722Encoder
    from trunkline.gateway.sip.sdp import G722

    p1, p2 = Phone(loop, 9), Phone(loop, 0)
    a, b = await leg(engine, p1, G722), await leg(engine, p2, PCMU)
    engine.bridge(a, b)
    enc = G722Encoder()
    wide = tone(1000, 1.0, 16000).reshape(-1, 320)
    packets = [p1.packet(enc.encode(f), payload_type=9, marker=i == 0) for i, f in enumerate(wide)]
    await p1.send_paced(packets, dest(a))
    await asyncio.sleep(0.1)
    heard = p2.audio_from(0, skip=10)
    assert abs(audio.dominant_frequency(heard, 8000) - 1000) < 10
    g722_out = [r.packet for r in p1.received if r.packet.payload_type == 9]
    assert len(g722_out) > 40 and all(len(p.payload) == 160 for p in g722_out)
    p1.close()
    p2.close()


class FakeLoop:
    """Just enough of an event loop to drive the engine's clock by hand."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.scheduled: list[float] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: object) -> asyncio.TimerHandle:
        self.scheduled.append(when)
        return asyncio.TimerHandle(when, lambda: None, (), asyncio.get_running_loop())


async def test_clock_uses_absolute_deadlines_and_counts_late_and_missed_ticks() -> None:
    fake = FakeLoop()
    eng = MediaEngine(RtpConfig("127.0.0.1", 50000, 50099), fake)  # type: ignore[arg-type]
    await eng.start()
    t0 = fake.now
    for _ in range(180_000):  # one hour of ticks, each run 1 ms after its deadline
        fake.now = fake.scheduled[-1] + 0.001
        eng._on_tick()
    assert eng.ticks == 180_000 and eng.late_ticks == 0 and eng.missed_ticks == 0
    assert abs(fake.scheduled[-1] - (t0 + 180_001 * 0.02)) < 1e-6  # no drift after an hour
    fake.now = fake.scheduled[-1] + 0.008  # 8 ms late: counted
    eng._on_tick()
    assert eng.late_ticks == 1 and eng.missed_ticks == 0
    fake.now = fake.scheduled[-1] + 0.065  # stalled for 3+ periods: those ticks are skipped
    eng._on_tick()
    assert eng.missed_ticks == 3 and eng.late_ticks == 2
    assert abs(fake.scheduled[-1] - (t0 + 180_006 * 0.02)) < 1e-6  # the next deadline on the grid
    eng._handle = None
