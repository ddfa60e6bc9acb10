"""The jitter buffer's short path for in-order packets behaves exactly like the general path."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.media.jitter import FrameKind, JitterBuffer
from trunkline.media.rtp import RtpPacket

# One event per 20 ms tick of the sender: what happens to that packet on the way.
EVENTS = st.sampled_from(
    ["ok"] * 12 + ["lost", "late", "dup", "swap", "marker", "ssrc", "jump", "burst", "stall"]
)


def _arrivals(events: list[str], seed: int) -> list[tuple[float, RtpPacket]]:
    """Turn per-tick events into (arrival time, packet) pairs in arrival order."""
    rng = random.Random(seed)
    seq, ts, ssrc = rng.getrandbits(16), rng.getrandbits(32), 0x1234
    out: list[tuple[float, RtpPacket]] = []
    shift = 0.0  # a network stall delays this packet and every later one
    for i, event in enumerate(events):
        if event == "stall":
            shift += 0.100
        t = shift + i * 0.020 + rng.uniform(0.0, 0.004)
        if event == "ssrc":
            ssrc += 1
            seq, ts = rng.getrandbits(16), rng.getrandbits(32)
        if event == "jump":
            ts = (ts + 160 * 400) & 0xFFFFFFFF
        packet = RtpPacket(0, seq, ts, ssrc, bytes([i & 0xFF]) * 160, event in ("marker", "stall"))
        if event == "lost":
            pass
        elif event == "late":
            out.append((t + 0.150, packet))
        elif event == "dup":
            out.append((t, packet))
            out.append((t + 0.001, packet))
        elif event == "swap" and out:
            out.insert(len(out) - 1, (t, packet))
        elif event == "burst":
            out.append((t + 0.060, packet))
        else:
            out.append((t, packet))
        seq = (seq + 1) & 0xFFFF
        ts = (ts + 160) & 0xFFFFFFFF
    out.sort(key=lambda item: item[0])
    return out


def _play(arrivals: list[tuple[float, RtpPacket]], steady: bool, ticks: int) -> list[object]:
    jb = JitterBuffer(8000, 20)
    jb.steady_path = steady
    trace: list[object] = []
    pending = list(arrivals)
    for tick in range(ticks):
        now = 0.010 + tick * 0.020
        while pending and pending[0][0] <= now:
            at, packet = pending.pop(0)
            jb.put(packet, at)
        frame = jb.get(now)
        trace.append(None if frame is None else (frame.kind, frame.timestamp, frame.payload, frame.marker))
    stats = jb.stats
    trace.append((jb.lost, jb.late, jb.duplicates, jb.reordered, jb.dropped, jb.resyncs, jb.target_frames))
    if stats is not None:
        trace.append((stats.received, stats.expected, stats.lost, stats.jitter, stats.max_seq, stats.cycles))
    return trace


@settings(max_examples=150, deadline=None)
@given(st.lists(EVENTS, min_size=5, max_size=120), st.integers(0, 2**16))
def test_steady_path_matches_general_path(events: list[str], seed: int) -> None:
    arrivals = _arrivals(events, seed)
    ticks = len(events) + 20 + 5 * events.count("stall")
    assert _play(arrivals, True, ticks) == _play(arrivals, False, ticks)


def test_steady_path_is_taken_and_plays_every_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean stream: every payload comes out once, in order, with no loss counted, and only
    the packets before playout starts go through the general path."""
    general = 0
    original = JitterBuffer._file

    def counting(self: JitterBuffer, *args: Any) -> None:
        nonlocal general
        general += 1
        original(self, *args)

    monkeypatch.setattr(JitterBuffer, "_file", counting)
    arrivals = _arrivals(["ok"] * 100, 7)
    trace = _play(arrivals, True, 110)
    payloads = [e[2][0] for e in trace[:110] if isinstance(e, tuple) and e[0] is FrameKind.OK]
    assert payloads == list(range(100))
    kinds = [e[0] for e in trace[:110] if isinstance(e, tuple)]
    last_ok = max(i for i, kind in enumerate(kinds) if kind is FrameKind.OK)
    assert FrameKind.LOST not in kinds[:last_ok]  # only the ticks after the stream ended conceal
    assert trace[-2][1:6] == (0, 0, 0, 0, 0)  # late, duplicates, reordered, dropped, resyncs
    assert general <= 3
