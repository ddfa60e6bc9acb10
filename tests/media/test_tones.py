"""Tests for trunkline.media.tones: cadences, phase continuity, DTMF pairs, durations."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from trunkline.media.dtmf import DtmfDetector
from trunkline.media.tones import (
    BEEP,
    BEEP_SECONDS,
    BUSY_US,
    DTMF_FREQUENCIES,
    RINGBACK_UK,
    RINGBACK_US,
    TONES,
    SilenceSource,
    ToneSource,
    ToneSpec,
    dtmf_sequence,
    dtmf_spec,
    generate_tone,
    tone_source,
)


def pull(src: ToneSource | SilenceSource, frames: int) -> npt.NDArray[np.int16]:
    out = []
    for _ in range(frames):
        f = src.read_frame()
        assert f is not None
        assert f.shape == (src.frame_samples,)
        assert f.dtype == np.int16
        out.append(f)
    return np.concatenate(out)


def frame_rms(pcm: npt.NDArray[np.int16], rate: int) -> npt.NDArray[np.float64]:
    n = rate // 50
    frames = pcm[: pcm.size // n * n].reshape(-1, n).astype(np.float64)
    return np.sqrt((frames**2).mean(axis=1))


def peak_freqs(pcm: npt.NDArray[np.int16], rate: int, count: int) -> list[float]:
    spec = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    freqs = np.fft.rfftfreq(pcm.size, 1 / rate)
    found: list[float] = []
    for idx in np.argsort(spec)[::-1]:
        f = float(freqs[idx])
        if all(abs(f - g) > 20 for g in found):
            found.append(f)
        if len(found) == count:
            break
    return sorted(found)


def test_ringback_us_cadence_and_frequencies() -> None:
    src = ToneSource(RINGBACK_US, 8000)
    pcm = pull(src, 300 + 100)  # 8 s: one 6 s cycle then 2 s of the next "on"
    rms = frame_rms(pcm, 8000)
    assert np.all(rms[1:99] > 1000)  # 2 s on
    assert np.all(rms[100:300] == 0)  # 4 s off: exact digital silence
    assert np.all(rms[301:399] > 1000)  # next cycle on
    on = pcm[800:15200]
    assert peak_freqs(on, 8000, 2) == pytest.approx([440, 480], abs=3)


def test_ringback_uk_double_ring_cadence() -> None:
    pcm = pull(ToneSource(RINGBACK_UK, 8000), 150)  # one 3 s cycle
    rms = frame_rms(pcm, 8000)
    # 0.4 on (frames 0-19), 0.2 off (20-29), 0.4 on (30-49), 2.0 off (50-149)
    assert np.all(rms[1:19] > 1000)
    assert np.all(rms[20:30] == 0)
    assert np.all(rms[31:49] > 1000)
    assert np.all(rms[50:150] == 0)
    assert peak_freqs(pcm[:3200], 8000, 2) == pytest.approx([400, 450], abs=4)


def test_busy_us_half_second_cadence() -> None:
    rms = frame_rms(pull(ToneSource(BUSY_US, 8000), 100), 8000)
    assert np.all(rms[1:24] > 1000) and np.all(rms[25:50] == 0) and np.all(rms[51:74] > 1000)


@pytest.mark.parametrize(
    "freqs",
    [(1000.0, 1633.0), (440.5, 1209.25)],  # whole Hz: precomputed table; fractional: per-frame synthesis
)
def test_phase_continuous_across_frames_matches_one_shot_sine(freqs: tuple[float, float]) -> None:
    spec = ToneSpec("t", freqs, level_dbfs=-12.0)
    framed = pull(ToneSource(spec, 16000, ramp_ms=0), 150)  # 3 s in 20 ms frames
    n = np.arange(48000)
    amp = 32767 * 10 ** (-12 / 20)
    expected = amp * (np.sin(2 * np.pi * freqs[0] * n / 16000) + np.sin(2 * np.pi * freqs[1] * n / 16000))
    assert np.max(np.abs(framed - expected)) <= 1.0
    # Sample-to-sample steps never exceed what the sine itself allows (no boundary click).
    max_step = amp * 2 * np.pi * (freqs[0] + freqs[1]) / 16000
    assert np.max(np.abs(np.diff(framed.astype(np.float64)))) <= max_step + 1


def test_cadenced_fractional_tone_matches_table_tone() -> None:
    whole = pull(ToneSource(ToneSpec("a", (440.0, 480.0), (0.3, 0.2)), 8000), 60)
    nearly = pull(ToneSource(ToneSpec("b", (440.0 + 1e-9, 480.0), (0.3, 0.2)), 8000), 60)
    assert np.max(np.abs(whole.astype(np.int32) - nearly)) <= 1


def test_beep_duration_frequency_and_end() -> None:
    src = ToneSource(BEEP, 8000, duration=BEEP_SECONDS)
    pcm = pull(src, 25)
    assert src.read_frame() is None
    assert src.done
    assert peak_freqs(pcm, 8000, 1) == pytest.approx([1000], abs=3)
    peak = np.abs(pcm).max()
    assert 32767 * 10 ** (-10.5 / 20) < peak <= 32767 * 10 ** (-10 / 20) + 1
    # Fade-in and fade-out ramps: first and last samples are near zero.
    assert abs(int(pcm[0])) < 600 and abs(int(pcm[-1])) < 600


def test_finite_tone_last_frame_zero_padded() -> None:
    src = ToneSource(BEEP, 8000, duration=0.51)  # 4080 samples = 25.5 frames
    frames = []
    while (f := src.read_frame()) is not None:
        frames.append(f)
    assert len(frames) == 26
    assert np.all(frames[-1][80:] == 0)
    assert np.abs(frames[-1][:70]).max() > 1000


def test_generate_tone_equals_framed_source() -> None:
    a = generate_tone(RINGBACK_UK, 1.0, 8000)
    b = pull(ToneSource(RINGBACK_UK, 8000), 50)
    assert a.size == 8000
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_dtmf_pairs(digit: str) -> None:
    pcm = generate_tone(dtmf_spec(digit), 0.1, 8000)
    low, high = DTMF_FREQUENCIES[digit]
    assert peak_freqs(pcm, 8000, 2) == pytest.approx([low, high], abs=12)


def test_dtmf_sequence_with_pauses() -> None:
    pcm = dtmf_sequence("1w#", 8000, tone_ms=80, gap_ms=60)
    # 1: 80 ms tone + 60 ms gap, w: 500 ms, #: 80 + 60
    assert pcm.size == round(8000 * (0.08 + 0.06 + 0.5 + 0.08 + 0.06))
    first = pcm[:640]
    pause = pcm[640 : 640 + 480 + 4000]
    last = pcm[5120 : 5120 + 640]
    assert peak_freqs(first, 8000, 2) == pytest.approx([697, 1209], abs=15)
    assert np.all(pause == 0)
    assert peak_freqs(last, 8000, 2) == pytest.approx([941, 1477], abs=15)


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="not a DTMF digit"):
        dtmf_sequence("1x2")
    with pytest.raises(ValueError, match="not a DTMF digit"):
        dtmf_spec("E")
    with pytest.raises(ValueError, match="Nyquist"):
        ToneSource(ToneSpec("hi", (5000.0,)), 8000)
    with pytest.raises(ValueError, match="no frequencies"):
        ToneSpec("empty", ())
    with pytest.raises(ValueError, match="multiple of 50"):
        ToneSource(BEEP, 8001)


def test_silence_source_duration_and_endless() -> None:
    src = SilenceSource(8000, duration=0.1)
    frames = [src.read_frame() for _ in range(6)]
    assert all(f is not None and not f.any() for f in frames[:5])
    assert frames[5] is None
    endless = SilenceSource(48000)
    assert pull(endless, 200).size == 200 * 960


def test_named_tones_table() -> None:
    assert TONES["ringback-us"] is RINGBACK_US
    assert TONES["beep"].frequencies == (1000.0,)


def test_dtmf_sequence_and_continuous_tone_are_detected_by_dtmf_detector() -> None:
    pcm = np.concatenate(
        [
            dtmf_sequence("159#", 8000, tone_ms=60, gap_ms=60),
            generate_tone(dtmf_spec("D"), 0.2, 8000),
            np.zeros(800, np.int16),
        ]
    )
    pcm = np.concatenate([pcm, np.zeros(-pcm.size % 160, np.int16)])
    detector = DtmfDetector(1)
    digits = [d for frame in pcm.reshape(-1, 1, 160) for _, d in detector.process(frame)]
    assert "".join(digits) == "159#D"


def test_tone_source_by_name() -> None:
    beep = tone_source("beep", 8000)
    frames = 0
    while beep.read_frame() is not None:
        frames += 1
    assert frames == round(BEEP_SECONDS * 50)
    ring = tone_source("ringback-uk", 16000)
    assert ring.spec is RINGBACK_UK and ring.sample_rate == 16000 and ring.read_frame() is not None
    assert tone_source("busy-us", seconds=1.0).spec is BUSY_US
    assert tone_source("dtmf-#").spec.frequencies == (941.0, 1477.0)
    with pytest.raises(ValueError, match="unknown tone"):
        tone_source("klaxon")
