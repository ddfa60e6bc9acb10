"""Tests for trunkline.media.jitter: RFC 3550 A.1/A.3/A.8 statistics and the playout buffer."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.media.test_rtp import read_pcap_udp
from trunkline.media.jitter import Frame, FrameKind, JitterBuffer, ReceiveStats
from trunkline.media.rtp import RtpPacket

TICK = 0.020
SPF = 160


def pkt(i: int, *, seq0: int = 1000, ts0: int = 50_000, ssrc: int = 0xA, marker: bool = False) -> RtpPacket:
    """Packet number ``i`` of a 20 ms PCMU stream; the payload names it."""
    return RtpPacket(
        0,
        (seq0 + i) & 0xFFFF,
        (ts0 + SPF * i) & 0xFFFFFFFF,
        ssrc,
        f"p{i}".encode(),
        marker,
    )


def label(frame: Frame | None) -> str | None:
    if frame is None:
        return None
    if frame.kind is FrameKind.OK:
        return frame.payload.decode()
    return "L" if frame.lost else "D"


def run(
    jb: JitterBuffer, arrivals: dict[int, list[RtpPacket]], ticks: int, t0: float = 0.0
) -> tuple[list[str | None], list[Frame | None]]:
    """At each tick: put what arrives then, then get one frame."""
    labels = []
    frames = []
    for k in range(ticks):
        now = t0 + k * TICK
        for p in arrivals.get(k, []):
            jb.put(p, now)
        f = jb.get(now)
        frames.append(f)
        labels.append(label(f))
    return labels, frames


def steady(
    packets: Iterable[tuple[int, RtpPacket]], delay: dict[int, int] | None = None
) -> dict[int, list[RtpPacket]]:
    """Arrival schedule ``{tick: packets}``; ``delay`` moves packet index -> arrival tick."""
    out: dict[int, list[RtpPacket]] = {}
    for tick, p in packets:
        if delay:
            tick = delay.get(int(p.payload[1:]), tick)
        out.setdefault(tick, []).append(p)
    return out


def names(indices: Iterable[int | str]) -> list[str | None]:
    return [i if isinstance(i, str) else f"p{i}" for i in indices]


# -- ReceiveStats: RFC 3550 A.1 -----------------------------------------------------------------


def feed(stats: ReceiveStats, seqs: Iterable[int]) -> list[bool]:
    return [stats.update_seq(s) for s in seqs]


def test_a1_probation_then_valid() -> None:
    s = ReceiveStats(1, 8000)
    assert feed(s, [100, 101, 102]) == [False, True, True]
    assert (s.base_seq, s.max_seq, s.received, s.expected, s.lost) == (101, 102, 2, 2, 0)


def test_a1_probation_restarts_on_gap() -> None:
    s = ReceiveStats(1, 8000)
    assert feed(s, [100, 200, 201, 202]) == [False, False, True, True]
    assert (s.base_seq, s.received) == (201, 2)


def test_a1_wrap_counts_cycles() -> None:
    s = ReceiveStats(1, 8000)
    assert all(feed(s, [65533, 65534, 65535, 0, 1, 2])[1:])
    assert s.cycles == 65536
    assert s.extended_max == 65536 + 2
    assert s.expected == 5 and s.lost == 0


def test_a1_big_jump_needs_two_packets() -> None:
    s = ReceiveStats(1, 8000)
    feed(s, [10, 11, 12, 13])
    assert s.update_seq(40000) is False  # stray: bad_seq = 40001
    assert s.update_seq(14) is True  # stream goes on
    assert s.update_seq(30000) is False
    assert s.update_seq(30001) is True  # confirmed: re-sync
    assert (s.base_seq, s.max_seq, s.received, s.cycles) == (30001, 30001, 1, 0)


def test_a1_duplicates_and_misorder_are_counted() -> None:
    s = ReceiveStats(1, 8000)
    feed(s, [1, 2, 3, 5, 4, 5])
    # Duplicates count as received (A.3 notes the loss may then be negative).
    assert (s.received, s.expected, s.lost) == (5, 4, -1)


def test_a3_fraction_lost_per_interval() -> None:
    s = ReceiveStats(1, 8000)
    feed(s, [0, *range(1, 11)])  # 10 valid
    assert s.fraction_lost() == 0
    feed(s, [13, 14, 16, 17, 18, 19, 20])  # 11, 12, 15 lost out of 10 expected
    assert s.lost == 3
    assert s.fraction_lost() == (3 << 8) // 10 == 76
    assert s.fraction_lost() == 0


def test_a8_jitter_hand_computed() -> None:
    s = ReceiveStats(1, 8000)
    # Transit (arrival * 8000 - ts): 0, 0, 40, 0, 40  -> |D| = 0, 40, 40, 40
    for i, arrival in enumerate([0.0, 0.020, 0.045, 0.060, 0.085]):
        s.update(RtpPacket(0, 7 + i, SPF * i, 1, b""), arrival)
    j = 0.0
    for d in (0, 40, 40, 40):
        j += (d - j) / 16
    assert j == pytest.approx(7.041015625)
    assert s.jitter == 7
    assert s.jitter_seconds == pytest.approx(7.041015625 / 8000)


def test_a8_jitter_across_timestamp_wrap() -> None:
    s = ReceiveStats(1, 8000)
    for i in range(10):
        s.update(RtpPacket(0, i, (2**32 - 3 * SPF + SPF * i) & 0xFFFFFFFF, 1, b""), 5.0 + TICK * i)
    assert s.jitter == 0


# -- JitterBuffer ----------------------------------------------------------------------------


def test_clean_stream() -> None:
    jb = JitterBuffer()
    out, frames = run(jb, steady((i, pkt(i)) for i in range(50)), 51)
    assert out == [None, *names(range(50))]
    assert frames[1] is not None and frames[1].timestamp == 50_000 and frames[1].payload_type == 0
    assert (jb.lost, jb.late, jb.duplicates, jb.reordered) == (0, 0, 0, 0)
    assert jb.target_frames == 1


def test_drop_every_tenth_reports_lost_with_fec_hint() -> None:
    jb = JitterBuffer()
    out, frames = run(jb, steady((i, pkt(i)) for i in range(40) if i % 10 != 9), 41)
    assert out == [None, *names("L" if i % 10 == 9 else i for i in range(40))]
    lost = [f for f in frames if f is not None and f.lost]
    assert [f.timestamp for f in lost] == [50_000 + SPF * i for i in (9, 19, 29, 39)]
    # The packet after the gap was buffered: its payload is offered for Opus FEC.
    assert [f.next_payload for f in lost[:3]] == [b"p10", b"p20", b"p30"]
    assert jb.lost == 4


def test_pairwise_swaps() -> None:
    jb = JitterBuffer()
    order = []
    for i in range(0, 40, 2):
        order += [i + 1, i]
    out, _ = run(jb, steady((k, pkt(i)) for k, i in enumerate(order)), 42)
    # The first swap already raises the jitter estimate: playout starts one tick later.
    assert out == [None, None, *names(range(40))]
    assert jb.reordered == 20 and jb.lost == 0 and jb.late == 0
    assert jb.target_frames > 1


def test_five_packet_burst() -> None:
    jb = JitterBuffer()
    out, _ = run(jb, steady((i, pkt(i)) for i in range(40) if not 20 <= i < 25), 41)
    assert out == [None, *names("L" if 20 <= i < 25 else i for i in range(40))]
    assert jb.lost == 5 and jb.late == 0


def test_duplicate_storm() -> None:
    jb = JitterBuffer()
    arrivals = steady((i, pkt(i)) for i in range(30) for _ in range(4))
    # and old copies again three ticks later
    for i in range(27):
        arrivals[i + 3].append(pkt(i))
    out, _ = run(jb, arrivals, 31)
    assert out == [None, *names(range(30))]
    assert jb.duplicates == 30 * 3 + 27
    assert jb.lost == 0 and jb.late == 0


def test_ssrc_switch_mid_stream_is_spliced() -> None:
    jb = JitterBuffer()
    first = [(i, pkt(i)) for i in range(20)]
    second = [(20 + i, pkt(100 + i, seq0=7, ts0=4_000_000_000, ssrc=0xB, marker=i == 0)) for i in range(20)]
    # a straggler from the old source shows up after the switch
    late_old = [(22, pkt(19))]
    out, frames = run(jb, steady(first + second + late_old), 41)
    assert out == [None, *names(range(20)), *names(range(100, 120))]
    assert jb.resyncs == 1 and jb.late == 1
    # The new source continues the playout timeline.
    ts = [f.timestamp for f in frames if f is not None]
    assert ts == [(50_000 + SPF * i) & 0xFFFFFFFF for i in range(40)]
    assert jb.stats is not None and jb.stats.ssrc == 0xB


def test_sequence_and_timestamp_wrap() -> None:
    jb = JitterBuffer()
    seq0, ts0 = 65530, 2**32 - 4 * SPF
    out, frames = run(jb, steady((i, pkt(i, seq0=seq0, ts0=ts0)) for i in range(20) if i != 6), 21)
    assert out == [None, *names("L" if i == 6 else i for i in range(20))]
    assert [f.timestamp for f in frames[1:]] == [(ts0 + SPF * i) & 0xFFFFFFFF for i in range(20)]
    assert jb.resyncs == 0


def test_timestamp_jump_resyncs_without_gap() -> None:
    jb = JitterBuffer()
    arrivals = steady(
        (i, RtpPacket(0, 500 + i, SPF * i + (3_000_000 if i >= 10 else 0), 9, f"p{i}".encode()))
        for i in range(30)
    )
    out, _ = run(jb, arrivals, 31)
    assert out == [None, *names(range(30))]
    assert jb.resyncs == 1 and jb.lost == 0
    assert jb.target_frames == 1  # the jump did not pollute the jitter estimate


def test_sequence_restart_needs_confirmation() -> None:
    jb = JitterBuffer()
    arrivals = steady([(i, pkt(i)) for i in range(10)])
    arrivals[10] = [RtpPacket(0, 40_000, 50_000 + SPF * 10, 0xA, b"n0")]
    arrivals[11] = [RtpPacket(0, 40_001, 50_000 + SPF * 11, 0xA, b"n1")]
    arrivals[12] = [RtpPacket(0, 40_002, 50_000 + SPF * 12, 0xA, b"n2")]
    out, _ = run(jb, arrivals, 14)
    # n0 alone could be a stray packet (RFC 3550 A.1); n1 confirms the restart.
    # The restart is spliced right after p9, so n0 leaves no hole; then the stream ends.
    assert out == [None, *names(range(10)), "n1", "n2", "L"]
    assert jb.dropped == 1 and jb.resyncs == 1


def test_late_packet_is_dropped_and_counted() -> None:
    jb = JitterBuffer()
    arrivals = steady([(i, pkt(i)) for i in range(20) if i != 10] + [(13, pkt(10))])
    out, _ = run(jb, arrivals, 21)
    assert out == [None, *names("L" if i == 10 else i for i in range(20))]
    assert jb.late == 1 and jb.lost == 1


def test_dtx_gap_in_buffered_stream() -> None:
    jb = JitterBuffer(min_delay=0.060)
    # Frames 0-4 sent, then DTX for frames 5-7 (no packets), then frames 8-15 with seq continuing.
    arrivals = steady(
        (i, RtpPacket(0, 100 + (i if i < 5 else i - 3), 8000 + SPF * i, 3, f"p{i}".encode(), i == 8))
        for i in [*range(5), *range(8, 16)]
    )
    out, frames = run(jb, arrivals, 19)
    assert out == [
        None,
        None,
        None,
        *names(["p0", "p1", "p2", "p3", "p4", "D", "D", "D"] + [f"p{i}" for i in range(8, 16)]),
    ]
    assert jb.lost == 0
    assert frames[11] is not None and frames[11].marker


def test_talkspurt_restart_after_silence_reanchors() -> None:
    jb = JitterBuffer(conceal_limit=3)
    talk1 = [(i, pkt(i)) for i in range(10)]
    # Silence suppression: nothing for 10 frames, then a talkspurt with the marker bit.
    talk2 = [(i, pkt(i, seq0=1000 - 10, marker=i == 20)) for i in range(20, 30)]
    out, _ = run(jb, steady(talk1 + talk2), 31)
    assert out == [
        None,
        *names(range(10)),
        "L", "L", "L",  # conceal_limit frames of concealment
        "D", "D", "D", "D", "D", "D",  # then silence
        "D",  # re-anchoring on the marker packet (target delay 1 frame)
        *names(range(20, 30)),
    ]  # fmt: skip


def test_delay_spike_grows_the_buffer() -> None:
    jb = JitterBuffer()
    # Frames 10-15 are stuck in the network and arrive together at tick 16.
    arrivals = steady(
        [(i, pkt(i)) for i in range(16)] + [(i, pkt(i)) for i in range(16, 40)],
        delay={i: 16 for i in range(10, 16)},
    )
    out, _ = run(jb, arrivals, 41)
    target = jb.target_frames
    assert target > 1  # the spike raised the jitter estimate
    # Frames 10-15 were due at ticks 11-15: concealed, then the buffer re-anchors on
    # the late frame 10 and plays everything from there with a deeper buffer.
    # 5 ticks of concealment while starved, then 3 more while re-anchored (target 3 frames):
    # nothing is thrown away, the buffer is now 8 frames deep and drains slowly.
    assert out == [None, *names(range(10)), *["L"] * 8, *names(range(10, 32))]
    assert target == 2
    assert jb.late == 0 and jb.lost == 8
    assert jb.depth == 8


def test_depth_is_capped_at_max_delay() -> None:
    jb = JitterBuffer(max_delay=0.100)
    arrivals = steady([(0, pkt(0))] + [(1, pkt(i)) for i in range(1, 20)])
    out, _ = run(jb, arrivals, 8)
    # The burst raises the target to 3 frames; at start 20 frames are held, 5 are kept.
    assert jb.target_frames == 3
    assert out == [None, None, None, *names(range(15, 20))]
    assert jb.dropped == 15


def test_excess_depth_drains_slowly() -> None:
    jb = JitterBuffer()
    # Frames arrive in bursts of 5 every 100 ms at first (jitter), then smoothly.
    burst = [(5 * (i // 5) + 4, pkt(i)) for i in range(50)]
    smooth = [(i, pkt(i)) for i in range(50, 300)]
    out, _ = run(jb, steady(burst + smooth), 300)
    assert out[:6] == [None] * 6
    assert None not in out[6:]
    played = [x for x in out if x is not None and x.startswith("p")]
    # Everything played in order; some frames were dropped to shrink the buffer back.
    indices = [int(x[1:]) for x in played]
    assert indices == sorted(indices)
    skipped = set(range(indices[-1])) - set(indices)
    assert len(skipped) == jb.dropped >= 1
    assert jb.lost == 0
    assert jb.depth <= jb.target_frames + 2


@given(
    fates=st.lists(
        st.tuples(st.sampled_from(["ok", "ok", "ok", "lost", "dup", "late"]), st.integers(0, 12)),
        min_size=5,
        max_size=150,
    ),
    seq0=st.integers(0, 0xFFFF),
    ts0=st.integers(0, 0xFFFFFFFF),
)
@settings(max_examples=150, deadline=None)
def test_random_network_invariants(fates: list[tuple[str, int]], seq0: int, ts0: int) -> None:
    """Random loss, delay and duplication: one frame per tick, payloads in order, at most once."""
    jb = JitterBuffer()
    arrivals: dict[int, list[RtpPacket]] = {}
    for i, (fate, delay) in enumerate(fates):
        p = pkt(i, seq0=seq0, ts0=ts0)
        if fate == "lost":
            continue
        tick = i + (delay if fate == "late" else 0)
        arrivals.setdefault(tick, []).append(p)
        if fate == "dup":
            arrivals.setdefault(i + delay, []).append(p)
    out, frames = run(jb, arrivals, len(fates) + 40)
    first = next((k for k, f in enumerate(frames) if f is not None), len(frames))
    assert all(f is not None for f in frames[first:])
    played = [int(x[1:]) for x in out if x is not None and x.startswith("p")]
    assert played == sorted(set(played))
    assert jb.buffered == 0


@given(st.lists(st.booleans(), min_size=5, max_size=200), st.integers(0, 0xFFFF))
@settings(max_examples=100, deadline=None)
def test_pure_loss_plays_every_delivered_packet(delivered: list[bool], seq0: int) -> None:
    jb = JitterBuffer()
    arrivals = steady((i, pkt(i, seq0=seq0)) for i, ok in enumerate(delivered) if ok)
    out, _ = run(jb, arrivals, len(delivered) + 1)
    played = [int(x[1:]) for x in out if x is not None and x.startswith("p")]
    assert played == [i for i, ok in enumerate(delivered) if ok]
    assert jb.late == 0 and jb.dropped == 0


def test_new_ssrc_after_silence_reanchors_on_marker() -> None:
    jb = JitterBuffer(conceal_limit=2)
    talk1 = [(i, pkt(i)) for i in range(5)]
    talk2 = [(i, pkt(i, seq0=9, ts0=123, ssrc=0xB, marker=i == 15)) for i in range(15, 20)]
    out, _ = run(jb, steady(talk1 + talk2), 22)
    assert out == [None, *names(range(5)), "L", "L", *["D"] * 7, "D", *names(range(15, 20)), "L"]
    assert jb.resyncs == 1


def test_previous_ssrc_may_come_back_later() -> None:
    jb = JitterBuffer()
    a1 = [(i, pkt(i)) for i in range(10)]
    b = [(i, pkt(i, seq0=3000, ssrc=0xB)) for i in range(10, 20)]
    a2 = [(i, pkt(i)) for i in range(80, 90)]  # source A again, 1.2 s after the switch
    out, _ = run(jb, steady(a1 + b + a2), 91)
    played = [x for x in out if x is not None and x.startswith("p")]
    assert played == names([*range(20), *range(80, 90)])
    assert jb.stats is not None and jb.stats.ssrc == 0xA
    assert jb.resyncs == 2


def test_timestamp_collision_does_not_stall() -> None:
    """Telephone-event packets (same timestamp, own sequence numbers) mixed into the stream."""
    jb = JitterBuffer()
    arrivals = steady((i, pkt(i)) for i in range(10))
    for k in range(10, 14):
        arrivals[k] = [RtpPacket(101, 1000 + k, 50_000 + SPF * 10, 0xA, f"e{k}".encode())]
    arrivals.update(steady((i, pkt(i, seq0=1004)) for i in range(14, 20)))
    out, _ = run(jb, arrivals, 21)
    assert out[:11] == [None, *names(range(10))]
    assert out[11] == "e10"  # the first event packet holds the slot
    assert out[12:15] == ["L", "L", "L"]  # later event packets discarded: concealed
    assert out[15:] == names(range(14, 20))
    assert jb.dropped == 1  # e11 arrived while e10 held the timestamp
    assert jb.late == 2  # e12, e13 are older than audio already played


def test_opus_48k_fec_hint() -> None:
    jb = JitterBuffer(clock_rate=48000, frame_ms=20)
    arrivals = steady(
        (i, RtpPacket(111, i, 960 * i, 5, f"o{i}".encode())) for i in range(12) if i not in (4, 5)
    )
    _, frames = run(jb, arrivals, 13)
    lost = [f for f in frames if f is not None and f.lost]
    assert [f.timestamp for f in lost] == [960 * 4, 960 * 5]
    # Frame 4 is concealed by PLC (frame 5 is missing too); frame 5 can use FEC from frame 6.
    assert [f.next_payload for f in lost] == [None, b"o6"]


def test_real_capture_g711a_30ms() -> None:
    """SIPp's g711a.pcap (30 ms PCMA frames with real arrival jitter) through a 30 ms playout clock."""
    records = read_pcap_udp(Path("/usr/share/sip-tester/g711a.pcap"))
    t0 = records[0][0]
    jb = JitterBuffer(clock_rate=8000, frame_ms=30, min_delay=0.030)
    frames: list[Frame] = []
    pending = [(t - t0, RtpPacket.parse(payload)) for t, _, _, payload in records]
    tick = 0
    while pending or jb.buffered:
        now = tick * 0.030 + 0.005
        while pending and pending[0][0] <= now:
            arrival, packet = pending.pop(0)
            jb.put(packet, arrival)
        f = jb.get(now)
        if f is not None:
            frames.append(f)
        tick += 1
    assert [f.kind for f in frames] == [FrameKind.OK] * 236
    assert [f.timestamp for f in frames] == [240 * (i + 1) for i in range(236)]
    assert all(len(f.payload) == 240 for f in frames)
    assert (jb.lost, jb.late, jb.duplicates, jb.reordered) == (0, 0, 0, 0)
    assert jb.stats is not None and jb.stats.jitter < 24  # under 3 ms
