"""RtpStream behaviour with injected times: packets go in through ``handle_rtp(data, addr, now)``
and the engine's tick is run by hand (``engine.process_tick(now)``), so nothing here depends on
the real clock.  Audio is checked against ``audioop`` (``tests.peers.audio``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import numpy as np
import pytest

from tests.media.rtp_phone import Phone, negotiated, tone
from tests.peers import audio
from trunkline.gateway.config import RtpConfig
from trunkline.gateway.sip.sdp import PCMA, PCMU, RtpFormat
from trunkline.media.engine import MediaEngine
from trunkline.media.player import PcmSource
from trunkline.media.rtcp import RtcpReceiverReport, RtcpSenderReport, parse_rtcp
from trunkline.media.session import PlayOutcome
from trunkline.media.stream import RtpStream, StreamError

PHONE = ("127.0.0.1", 9)  # packets are injected; replies to the discard port are never read


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    base = random.randrange(30000, 60000, 2000)
    eng = MediaEngine(RtpConfig("127.0.0.1", base, base + 1999))  # clock not started: manual ticks
    yield eng
    await eng.stop()


async def configured(engine: MediaEngine, codec: RtpFormat = PCMU, **kw: object) -> RtpStream:
    stream = await engine.open_stream()
    stream.configure(negotiated(PHONE[1], codec, **kw))  # type: ignore[arg-type]
    return stream


def feed(
    stream: RtpStream, phone: Phone, packets: list[bytes], t0: float, addr: tuple[str, int] = PHONE
) -> None:
    for i, data in enumerate(packets):
        stream.handle_rtp(data, addr, t0 + 0.02 * i)


async def test_g711_batch_decode_matches_audioop(engine: MediaEngine) -> None:
    loop = asyncio.get_running_loop()
    phone_u, phone_a = Phone(loop, 0), Phone(loop, 8)
    su, sa = await configured(engine, PCMU), await configured(engine, PCMA)
    pcm = tone(700, 0.2) + tone(1900, 0.2, dbfs=-20)
    pu, pa = phone_u.audio_packets(pcm), phone_a.audio_packets(pcm)
    got_u, got_a = [], []
    for i in range(len(pu)):
        now = 100.0 + 0.02 * i
        su.handle_rtp(pu[i], PHONE, now)
        sa.handle_rtp(pa[i], PHONE, now)
        engine.process_tick(now + 0.001)
        for stream, got in ((su, got_u), (sa, got_a)):
            if stream.tick_in is not None:
                got.append(stream.tick_in.copy())
    assert len(got_u) >= len(pu) - 2
    ref_u = audio.decode_pcmu(b"".join(p[12:] for p in pu))
    ref_a = audio.decode_pcma(b"".join(p[12:] for p in pa))
    assert np.array_equal(np.concatenate(got_u), ref_u[: 160 * len(got_u)])
    assert np.array_equal(np.concatenate(got_a), ref_a[: 160 * len(got_a)])
    phone_u.close()
    phone_a.close()


async def test_lost_frame_is_concealed_not_silent(engine: MediaEngine) -> None:
    phone = Phone(asyncio.get_running_loop(), 0)
    stream = await configured(engine)
    packets = phone.audio_packets(tone(500, 0.4))
    frames = []
    for i, data in enumerate(packets):
        now = 50.0 + 0.02 * i
        if i != 10:
            stream.handle_rtp(data, PHONE, now)
        engine.process_tick(now + 0.001)
        frames.append(None if stream.tick_in is None else stream.tick_in.copy())
    lost_index = next(i for i, f in enumerate(frames) if i > 5 and f is not None and stream.jitter.lost)
    assert stream.jitter.lost == 1
    concealed = [f for f in frames[lost_index - 2 : lost_index + 12] if f is not None]
    rms = [float(np.sqrt(np.mean(f.astype(np.float64) ** 2))) for f in concealed]
    assert min(rms) > 500  # the gap was filled by G.711 concealment, not zeros
    phone.close()


async def test_30ms_packets_give_continuous_20ms_frames(engine: MediaEngine) -> None:
    phone = Phone(asyncio.get_running_loop(), 0)
    stream = await configured(engine, ptime=30)
    pcm = tone(440, 0.6)
    frames = pcm.reshape(-1, 240)
    packets = [phone.packet(audio.encode_pcmu(f), advance=240) for f in frames]
    out = []
    t = 10.0
    for i in range(45):
        if i % 3 != 2:  # a 30 ms packet every 1.5 ticks
            k = (i // 3) * 2 + (i % 3)
            if k < len(packets):
                stream.handle_rtp(packets[k], PHONE, t)
        engine.process_tick(t + 0.001)
        if stream.tick_in is not None:
            out.append(stream.tick_in.copy())
        t += 0.02
    assert stream.rx_frame_samples == 240
    got = np.concatenate(out)
    ref = audio.decode_pcmu(b"".join(p[12:] for p in packets))
    assert audio.correlation(ref, got, max_lag=800).coefficient > 0.99
    phone.close()


async def test_ptime_is_learnt_from_g711_payload_size(engine: MediaEngine) -> None:
    phone = Phone(asyncio.get_running_loop(), 0)
    stream = await configured(engine)  # SDP said 20 ms, the phone sends 40 ms
    packet = phone.packet(audio.encode_pcmu(tone(440, 0.04)), advance=320)
    stream.handle_rtp(packet, PHONE, 1.0)
    assert stream.rx_frame_samples == 320 and stream.jitter.samples_per_frame == 320
    phone.close()


async def test_malformed_unknown_and_foreign_packets_are_counted(engine: MediaEngine) -> None:
    phone = Phone(asyncio.get_running_loop(), 0)
    stream = await configured(engine)
    stream.handle_rtp(b"\x80\x00\x00", PHONE, 1.0)
    stream.handle_rtp(b"\x40" + bytes(20), PHONE, 1.0)  # RTP version 1
    stream.handle_rtp(phone.packet(bytes(160), payload_type=18), PHONE, 1.0)
    assert stream.stats.malformed == 2 and stream.stats.unknown_payload == 1
    assert not stream.latched
    stream.handle_rtp(phone.packet(bytes(160)), ("127.0.0.1", 5004), 1.02)
    assert stream.latched and stream.remote == ("127.0.0.1", 5004)
    other = Phone(asyncio.get_running_loop(), 0)
    stream.handle_rtp(other.packet(bytes(160)), ("127.0.0.1", 6000), 1.04)
    assert stream.remote == ("127.0.0.1", 5004) and stream.stats.foreign == 1
    # The latched SSRC moving to a new address (NAT rebinding) is followed.
    stream.handle_rtp(phone.packet(bytes(160)), ("127.0.0.1", 5006), 1.06)
    assert stream.remote == ("127.0.0.1", 5006)
    # A re-INVITE with a new address resets latching.
    stream.configure(negotiated(7000))
    assert stream.remote == ("127.0.0.1", 7000) and not stream.latched
    phone.close()
    other.close()


async def test_unknown_codec_is_rejected(engine: MediaEngine) -> None:
    stream = await engine.open_stream()
    with pytest.raises(StreamError, match="AMR"):
        stream.configure(negotiated(PHONE[1], RtpFormat(96, "AMR", 8000)))
    await stream.close()
    with pytest.raises(StreamError, match="closed"):
        stream.configure(negotiated(PHONE[1]))


async def test_relay_offsets_wrap_and_survive_prompts(engine: MediaEngine) -> None:
    loop = asyncio.get_running_loop()
    far = Phone(loop, 0)
    a = await configured(engine)
    b = await engine.open_stream()
    b.configure(negotiated(far.port))
    engine.bridge(a, b)
    src = Phone(loop, 0, seq=65534, ts=0xFFFFFF00)
    b.seq, b.ts = 100, 5000
    feed(a, src, src.audio_packets(tone(500, 0.1)), 1.0)
    await asyncio.sleep(0.05)
    got = [r.packet for r in far.received]
    assert [p.sequence for p in got] == [100, 101, 102, 103, 104]
    assert [p.timestamp for p in got] == [5000 + 160 * i for i in range(5)]
    # A prompt on b takes over its output; relay resumes afterwards without a seq gap.
    b.player.enqueue(PcmSource(tone(900, 0.04), 8000))
    feed(a, src, src.audio_packets(tone(500, 0.04)), 1.2)  # dropped: b is busy
    for t in (1.3, 1.32, 1.34):  # two prompt frames, then the player reports it is done
        engine.process_tick(t)
    assert not b.player.playing
    feed(a, src, src.audio_packets(tone(500, 0.04)), 1.4)
    await asyncio.sleep(0.05)
    seqs = [r.packet.sequence for r in far.received]
    assert seqs == list(range(100, 100 + len(seqs)))
    assert far.received[7].packet.marker  # relay restart after the prompt is a new talkspurt
    far.close()
    src.close()


async def test_inband_and_rfc4733_press_is_one_digit(engine: MediaEngine) -> None:
    stream = await configured(engine)
    stream.digit_received("5", "inband", 0, 10.0)
    stream.digit_received("5", "rfc4733", 120, 10.1)  # the same press, also sent as events
    assert stream.digits.qsize() == 1
    stream.digit_received("5", "rfc4733", 120, 11.0)  # a second press
    stream.rfc4733_seen = True
    stream.digit_received("6", "inband", 0, 12.0)  # in-band ignored once events are in use
    got = [stream.digits.get_nowait().digit for _ in range(stream.digits.qsize())]
    assert got == ["5", "5"]


async def test_inband_detector_slots_grow_and_are_reused(engine: MediaEngine) -> None:
    streams = [await configured(engine, telephone_event=None) for _ in range(20)]
    slots = [s.dtmf_slot for s in streams]
    assert sorted(slots) == list(range(20))  # type: ignore[type-var]
    await streams[3].close()
    again = await configured(engine, telephone_event=None)
    assert again.dtmf_slot == slots[3]
    with_te = await configured(engine)
    assert with_te.dtmf_slot is None
    with_te.set_inband_dtmf(True)
    assert with_te.dtmf_slot is not None


async def test_rtcp_report_is_rr_until_we_send_then_sr(engine: MediaEngine) -> None:
    phone = Phone(asyncio.get_running_loop(), 0)
    stream = await configured(engine)
    feed(stream, phone, phone.audio_packets(tone(500, 0.2)), 1.0)
    rr = parse_rtcp(stream.build_report())
    assert isinstance(rr[0], RtcpReceiverReport) and rr[0].reports[0].ssrc == phone.ssrc
    assert rr[0].reports[0].highest_sequence & 0xFFFF == (phone.seq - 1) & 0xFFFF
    stream.sending = True
    engine.process_tick(2.0)  # sends one frame of silence
    sr = parse_rtcp(stream.build_report())
    assert isinstance(sr[0], RtcpSenderReport) and sr[0].packet_count == 1
    assert sr[1].chunks[0].cname == stream.cname  # type: ignore[union-attr]
    phone.close()


async def test_timestamps_advance_by_codec_clock(engine: MediaEngine) -> None:
    from trunkline.gateway.sip.sdp import G722, OPUS

    for codec, step in ((PCMU, 160), (G722, 160), (OPUS, 960)):
        stream = await configured(engine, codec)
        ts0 = stream.ts
        for i in range(3):
            engine.process_tick(5.0 + 0.02 * i)
        assert (stream.ts - ts0) & 0xFFFFFFFF == 3 * step, codec
        await stream.close()


async def test_play_sequence_loops_in_order_then_silence(engine: MediaEngine) -> None:
    phone = Phone(asyncio.get_running_loop(), 0)
    stream = await engine.open_stream()
    stream.configure(negotiated(phone.port))
    a = np.full(320, 1000, dtype=np.int16)
    b = np.full(160, -2000, dtype=np.int16)
    task = asyncio.ensure_future(stream.play((a, b), loop=2))  # a tuple of two items
    await asyncio.sleep(0)
    for i in range(8):
        engine.process_tick(10.0 + 0.02 * i)
    await asyncio.sleep(0.05)
    assert task.done() and task.result() is PlayOutcome.COMPLETED
    levels = [int(np.median(audio.decode_pcmu(r.packet.payload))) for r in phone.received]
    signs = [0 if abs(v) < 50 else (1 if v > 0 else -1) for v in levels]
    assert signs == [1, 1, -1, 1, 1, -1, 0, 0]
    assert abs(levels[0] - 1000) < 40 and abs(levels[2] + 2000) < 80
    # loop=0 over nothing ends at once instead of spinning.
    empty = asyncio.ensure_future(stream.play(np.zeros(0, dtype=np.int16), loop=0))
    await asyncio.sleep(0)
    engine.process_tick(11.0)
    await asyncio.sleep(0)
    assert empty.done() and empty.result() is PlayOutcome.COMPLETED
    phone.close()
