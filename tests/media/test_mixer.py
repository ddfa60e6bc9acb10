"""Mixing arithmetic, speaker selection and talker detection (pure numpy, explicit ticks)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from trunkline.codecs.g711 import ulaw_decode, ulaw_encode
from trunkline.media.mixer import (
    MixerError,
    SpeakerEvent,
    SpeakerSelector,
    TalkerDetector,
    frame_power,
    loudest,
    mix_minus,
    mix_minus_rooms,
    power_to_dbfs,
    reindex,
    saturate,
    stack_frames,
)

RATE = 8000
FRAME = 160


def sine(freq: float, amp: float = 3000.0, samples: int = FRAME, start: int = 0) -> np.ndarray:
    t = np.arange(start, start + samples) / RATE
    return np.rint(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def amplitude_at(pcm: np.ndarray, freq: float, rate: int = RATE) -> float:
    """Amplitude of the ``freq`` component (exact for whole cycles in the window)."""
    t = np.arange(pcm.size) / rate
    return float(2 * abs(np.dot(pcm.astype(np.float64), np.exp(-2j * np.pi * freq * t))) / pcm.size)


def test_each_participant_hears_everyone_but_itself() -> None:
    freqs = [300.0, 500.0, 700.0, 900.0, 1100.0]
    frames = np.stack([sine(f, samples=1600) for f in freqs])  # 200 ms: whole cycles of each tone
    res = mix_minus(frames, np.ones(5, dtype=np.bool_))
    assert list(res.rows) == [0, 1, 2, 3, 4]
    total = frames.astype(np.int32).sum(axis=0)
    assert np.array_equal(res.mix, total.astype(np.int16))
    for i, own in enumerate(freqs):
        assert np.array_equal(res.outputs[i], (total - frames[i]).astype(np.int16))
        assert amplitude_at(res.outputs[i], own) < 5.0
        for other in freqs:
            if other != own:
                assert amplitude_at(res.outputs[i], other) == pytest.approx(3000.0, rel=0.01)


def test_non_contributors_get_no_row_and_muted_tone_is_absent() -> None:
    frames = np.stack([sine(400.0, samples=1600), sine(600.0, samples=1600), sine(800.0, samples=1600)])
    contributing = np.array([True, True, False])  # participant 2 is muted
    res = mix_minus(frames, contributing)
    assert list(res.rows) == [0, 1]
    assert amplitude_at(res.mix, 800.0) < 1.0
    assert amplitude_at(res.outputs[0], 600.0) == pytest.approx(3000.0, rel=0.01)
    assert amplitude_at(res.outputs[0], 400.0) < 1.0


def test_coach_is_heard_only_by_the_coached_participant() -> None:
    frames = np.stack([sine(f, samples=1600) for f in (300.0, 500.0, 700.0)])
    coach_target = np.array([-1, -1, 0], dtype=np.intp)  # 2 coaches 0
    res = mix_minus(frames, np.ones(3, dtype=np.bool_), coach_target=coach_target)
    assert list(res.rows) == [0, 1]
    out0, out1 = res.outputs
    assert amplitude_at(out0, 700.0) == pytest.approx(3000.0, rel=0.01)  # coached hears coach
    assert amplitude_at(out0, 500.0) == pytest.approx(3000.0, rel=0.01)
    assert amplitude_at(out1, 700.0) < 1.0  # others don't
    assert amplitude_at(res.mix, 700.0) < 1.0  # nor does the coach itself / the recording
    assert amplitude_at(res.mix, 300.0) == pytest.approx(3000.0, rel=0.01)


def test_clipping_saturates_instead_of_wrapping() -> None:
    loud = np.full((4, FRAME), 30000, dtype=np.int16)
    loud[3] = -30000
    res = mix_minus(loud, np.ones(4, dtype=np.bool_))
    # total = 60000 (int16 wrap would give -5536); participant 3 hears 90000 (wrap: 24464).
    assert np.all(res.mix == 32767)
    assert np.all(res.outputs[0] == 30000)
    assert np.all(res.outputs[3] == 32767)
    neg = mix_minus(np.full((3, FRAME), -30000, dtype=np.int16), np.ones(3, dtype=np.bool_))
    assert np.all(neg.mix == -32767) and np.all(neg.outputs == -32767)
    assert saturate(np.array([70000, -70000, 5], dtype=np.int32)).tolist() == [32767, -32767, 5]


def test_extra_and_individual_rows() -> None:
    frames = np.stack([sine(300.0), sine(500.0)])
    beep = sine(1000.0, amp=1000.0)
    res = mix_minus(
        frames, np.array([True, False]), individual=np.array([False, True]), extra=beep.astype(np.int32)
    )
    assert list(res.rows) == [0, 1]
    assert np.array_equal(res.outputs[0], beep)  # total - own leaves only the announcement
    assert np.array_equal(res.outputs[1], res.mix)


def test_mix_minus_rejects_bad_shapes() -> None:
    with pytest.raises(MixerError, match="int16"):
        mix_minus(np.zeros((2, FRAME), dtype=np.int32), np.ones(2, dtype=np.bool_))  # type: ignore[arg-type]
    with pytest.raises(MixerError, match="contributing"):
        mix_minus(np.zeros((2, FRAME), dtype=np.int16), np.ones(3, dtype=np.bool_))
    with pytest.raises(MixerError, match="extra"):
        mix_minus(
            np.zeros((2, FRAME), dtype=np.int16), np.ones(2, dtype=np.bool_), extra=np.zeros(5, np.int16)
        )


def test_levels_in_dbfs() -> None:
    full = np.stack([sine(1000.0, amp=32767.0), np.zeros(FRAME, np.int16), sine(1000.0, amp=3276.7)])
    levels = power_to_dbfs(frame_power(full))
    assert levels[0] == pytest.approx(-3.01, abs=0.05)
    assert levels[1] == -120.0
    assert levels[2] == pytest.approx(-23.01, abs=0.05)


def test_selector_keeps_the_top_k_loudest_and_holds_the_gate() -> None:
    n = 20
    sel = SpeakerSelector(n, top_k=8, gate_dbfs=-55.0, hold_ms=100)
    amps = np.linspace(500, 10000, n)
    power = amps**2 / 2
    chosen = sel.select(power, np.ones(n, dtype=np.bool_))
    assert sorted(np.flatnonzero(chosen)) == list(range(12, 20))
    candidates = np.ones(n, dtype=np.bool_)
    candidates[19] = False  # muted: never chosen, the next loudest takes its place
    chosen = sel.select(power, candidates)
    assert sorted(np.flatnonzero(chosen)) == list(range(11, 19))
    # Silence: the gate stays open for hold_ms (5 frames) then closes.
    silent = np.zeros(n)
    assert SpeakerSelector(1, top_k=None, hold_ms=100).select(silent[:1], candidates[:1]).sum() == 0
    held = [int(sel.select(silent, candidates).sum()) for _ in range(6)]
    assert held == [8, 8, 8, 8, 0, 0]


def test_talker_detection_debounce_is_frame_exact() -> None:
    det = TalkerDetector(2, on_dbfs=-40.0, off_dbfs=-48.0, start_ms=100, stop_ms=500)
    loud, quiet = -20.0, -90.0
    starts: list[int] = []
    stops: list[int] = []
    for tick in range(120):
        speaking = 10 <= tick < 60
        levels = np.array([loud if speaking else quiet, quiet])
        started, stopped = det.update(levels)
        starts += [tick for i in started if i == 0]
        stops += [tick for i in stopped if i == 0]
        assert 1 not in started
    assert starts == [14]  # 5th voiced frame = 100 ms of speech
    assert stops == [84]  # 25th silent frame = 500 ms of silence


def test_talker_hysteresis_and_gaps() -> None:
    det = TalkerDetector(1, start_ms=100, stop_ms=500)
    # -44 dBFS is between off (-48) and on (-40): it cannot start a spurt...
    for _ in range(10):
        started, _ = det.update(np.array([-44.0]))
        assert not started.size
    # ...but keeps one going once the level went above -40.
    events = [det.update(np.array([-30.0 if t < 5 else -44.0])) for t in range(40)]
    assert [t for t, (s, _) in enumerate(events) if s.size] == [4]
    assert not any(stop.size for _, stop in events)
    # A 200 ms pause does not stop the spurt; an ineligible (muted) participant counts as silent.
    for _ in range(10):
        assert not det.update(np.array([-90.0]))[1].size
    det.update(np.array([-30.0]))
    stops = [t for t in range(30) if det.update(np.array([-30.0]), eligible=np.array([False]))[1].size]
    assert stops == [24]


def test_speaker_event_callback_names() -> None:
    assert SpeakerEvent("CA1", True, 1.0, -20.0).callback_event == "participant-speech-start"
    assert SpeakerEvent("CA1", False, 1.0, -90.0).callback_event == "participant-speech-stop"


def test_reindex_carries_state_and_fills_newcomers() -> None:
    old = np.array([10, 20, 30])
    assert reindex(old, np.array([2, -1, 0], dtype=np.intp), 0).tolist() == [30, 0, 10]
    det = TalkerDetector(2)
    det.speaking[:] = [True, False]
    det.reindex(np.array([-1, 0], dtype=np.intp))
    assert det.speaking.tolist() == [False, True]


def test_stack_frames_fast_paths_and_refusals() -> None:
    pcm = np.stack([sine(300.0), sine(500.0)])
    payloads = [ulaw_encode(row).tobytes() for row in pcm]
    assert np.array_equal(stack_frames(payloads, FRAME, ulaw_decode), ulaw_decode(ulaw_encode(pcm)))
    assert np.array_equal(stack_frames(list(pcm), FRAME, ulaw_decode), pcm)
    assert stack_frames([payloads[0], None], FRAME, ulaw_decode) is None  # nothing arrived
    assert stack_frames([payloads[0], pcm[1]], FRAME, ulaw_decode) is None  # mixed kinds
    assert stack_frames([pcm[0], payloads[1]], FRAME, ulaw_decode) is None
    assert stack_frames([payloads[0], payloads[1][:80]], FRAME, ulaw_decode) is None  # short payload
    assert stack_frames([pcm[0].astype(np.int32), pcm[1]], FRAME, ulaw_decode) is None  # wrong dtype


@pytest.mark.parametrize(
    ("sizes", "share"),
    [
        ([3, 1, 4, 2, 5], 0.6),  # many talkers in few rooms: one segment sum per room
        ([3, 1, 4, 2, 5, 6, 2, 3, 4, 5, 2, 3, 3, 4, 2, 2, 3, 3], 0.25),  # few talkers, many rooms
    ],
)
def test_mix_minus_rooms_equals_mix_minus_room_by_room(sizes: list[int], share: float) -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(-20000, 20000, (sum(sizes), FRAME)).astype(np.int16)  # clipping happens
    contributing = rng.random(sum(sizes)) < share
    contributing[3] = False  # room 1 (one member) has no contributor
    room_of = np.repeat(np.arange(len(sizes)), sizes)
    extra = {2: sine(440.0), 4: sine(880.0)}  # announcements of rooms 2 and 4
    res = mix_minus_rooms(frames, contributing, room_of, len(sizes), extra)
    assert res.rows.tolist() == np.flatnonzero(contributing).tolist()
    assert res.mix.shape == (len(sizes), FRAME) and res.outputs.shape == (res.rows.size, FRAME)
    bounds = np.cumsum([0, *sizes])
    for r, (a, b) in enumerate(itertools.pairwise(bounds)):
        alone = mix_minus(frames[a:b], contributing[a:b], extra=extra.get(r))
        assert np.array_equal(res.mix[r], alone.mix), r
        assert np.array_equal(res.total[r], alone.total), r
        mine = (res.rows >= a) & (res.rows < b)
        assert np.array_equal(res.rows[mine] - a, alone.rows), r
        assert np.array_equal(res.outputs[mine], alone.outputs), r
    assert not res.mix[1].any()
    with pytest.raises(MixerError, match="extra must have shape"):
        mix_minus_rooms(frames, contributing, room_of, len(sizes), {0: sine(440.0, samples=80)})
    with pytest.raises(MixerError, match="room_of must have shape"):
        mix_minus_rooms(frames, contributing, room_of[:-1], len(sizes))


def test_merged_detector_and_selector_share_the_parts_state() -> None:
    parts = [TalkerDetector(2, start_ms=40), TalkerDetector(3, start_ms=40)]
    whole = TalkerDetector.merged(parts)
    assert whole.settings == parts[0].settings and whole.speaking.shape == (5,)
    loud = np.array([-20.0, -90.0, -90.0, -20.0, -20.0])
    started = [whole.update(loud)[0].tolist() for _ in range(2)]
    assert started == [[], [0, 3, 4]]
    assert parts[0].speaking.tolist() == [True, False]
    assert parts[1].speaking.tolist() == [False, True, True]
    # A part ticked on its own updates the merged state too (its arrays are views).
    parts[1].update(np.full(3, -90.0), eligible=np.zeros(3, dtype=np.bool_))
    assert whole._silence_run.tolist() == [0, 2, 3, 1, 1]
    selectors = [SpeakerSelector(2, top_k=1), SpeakerSelector(1, top_k=1)]
    sel = SpeakerSelector.merged(selectors)
    gated = sel.gate(np.array([1e6, 4e6, 9e6]), np.ones(3, dtype=np.bool_))
    assert gated.tolist() == [True, True, True]
    assert selectors[0].score.tolist() == [1e6, 4e6] and selectors[1].hold.tolist() == [sel.hold[2]]
    assert loudest(gated[:2], sel.score[:2], 1).tolist() == [False, True]
    assert loudest(gated, sel.score, 5) is gated
