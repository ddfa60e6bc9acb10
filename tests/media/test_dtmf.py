"""In-band DTMF detector: Q.24 tolerances, timing, talk-off on speech and noise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from trunkline.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from trunkline.codecs.opus import OpusDecoder, OpusEncoder
from trunkline.codecs.resample import Resampler
from trunkline.media.dtmf import DTMF_COLS, DTMF_DIGITS, DTMF_ROWS, DtmfDetector, DtmfError, generate_dtmf

FS = 8000
ZERO_DBM0_PEAK = 32768 * 10 ** (-3.14 / 20)

Pcm = npt.NDArray[np.int16]


def dual_tone(f_low: float, f_high: float, ms: float, dbm0: float = -10.0, twist_db: float = 0.0) -> Pcm:
    t = np.arange(round(ms * FS / 1000)) / FS
    a_low = ZERO_DBM0_PEAK * 10 ** (dbm0 / 20)
    a_high = ZERO_DBM0_PEAK * 10 ** ((dbm0 + twist_db) / 20)
    wave = a_low * np.sin(2 * np.pi * f_low * t) + a_high * np.sin(2 * np.pi * f_high * t)
    return np.round(wave).astype(np.int16)


def detect(signals: list[Pcm], **kwargs: float) -> list[str]:
    """Run every signal as its own stream through one detector; return digits per stream."""
    n = max(len(s) for s in signals) + 480
    n += (-n) % 160
    block = np.zeros((len(signals), n), np.int16)
    for i, s in enumerate(signals):
        block[i, : len(s)] = s
    det = DtmfDetector(len(signals), **kwargs)  # type: ignore[arg-type]
    found = [""] * len(signals)
    for k in range(n // 160):
        for stream, digit in det.process(np.ascontiguousarray(block[:, k * 160 : (k + 1) * 160])):
            found[stream] += digit
    return found


def with_noise(x: Pcm, snr_db: float, seed: int) -> Pcm:
    signal_power = np.mean(x[x != 0].astype(np.float64) ** 2)
    noise = np.random.default_rng(seed).normal(0, np.sqrt(signal_power / 10 ** (snr_db / 10)), len(x))
    return np.clip(np.round(x + noise), -32768, 32767).astype(np.int16)


def sequence(digits: str, tone_ms: float, gap_ms: float, lead_samples: int = 0) -> Pcm:
    gap = np.zeros(round(gap_ms * 8), np.int16)
    parts: list[Pcm] = [np.zeros(lead_samples, np.int16)]
    for d in digits:
        parts += [generate_dtmf(d, tone_ms), gap]
    return np.concatenate(parts)


def test_generate_dtmf_frequencies_and_level() -> None:
    x = generate_dtmf("8", 100, amplitude_dbm0=-10.0)
    assert x.dtype == np.int16 and len(x) == 800
    n = np.arange(len(x))

    def level_dbm0(freq: float) -> float:
        amplitude = 2 * abs(np.dot(x, np.exp(-2j * np.pi * freq * n / FS))) / len(x)
        return float(20 * np.log10(amplitude / ZERO_DBM0_PEAK))

    assert abs(level_dbm0(852) - -10.0) < 0.1 and abs(level_dbm0(1336) - -10.0) < 0.1
    assert level_dbm0(697) < -40 and level_dbm0(1477) < -40
    wide = generate_dtmf("#", 20, sample_rate=16000, twist_db=2.0)
    assert len(wide) == 320
    with pytest.raises(DtmfError, match="not a DTMF digit"):
        generate_dtmf("E", 50)


def test_all_sixteen_digits_at_20db_snr_any_alignment() -> None:
    digits = "1234567890*#ABCD"
    signals = [with_noise(sequence(digits, 50, 50, lead), 20.0, seed=lead) for lead in range(0, 160, 20)]
    assert detect(signals) == [digits] * len(signals)


def test_digits_survive_g711_and_opus_transcoding() -> None:
    digits = "1234567890*#ABCD"
    x = sequence(digits, 50, 50)
    x = np.concatenate([x, np.zeros((-len(x)) % 160, np.int16)])
    up, down = Resampler(8000, 48000), Resampler(48000, 8000)
    enc, dec = OpusEncoder(bitrate=16000), OpusDecoder()
    via_opus = np.concatenate(
        [down.process(dec.decode(enc.encode(up.process(f)))) for f in x.reshape(-1, 160)]
    )
    via_g711 = [ulaw_decode(ulaw_encode(x)), alaw_decode(alaw_encode(with_noise(x, 20.0, seed=1)))]
    assert detect([*via_g711, via_opus]) == [digits] * 3


def test_repeated_digits_need_a_pause_of_40ms() -> None:
    signals = [sequence("5555", 50, 40, lead) for lead in (0, 37, 80, 123)]
    assert detect(signals) == ["5555"] * 4
    # A 10 ms dropout inside one key press is not a pause.
    long_tone = generate_dtmf("9", 120)
    long_tone[400:480] = 0
    assert detect([long_tone]) == ["9"]


def test_minimum_tone_duration() -> None:
    leads = range(0, 160, 8)
    assert detect([sequence("7", 40, 0, lead) for lead in leads]) == ["7"] * len(leads)
    assert detect([sequence("7", 30, 0, lead) for lead in leads]) == [""] * len(leads)
    assert detect([sequence("7", 20, 0, lead) for lead in leads]) == [""] * len(leads)


@pytest.mark.parametrize(
    ("deviation", "accepted"), [(0.015, True), (-0.015, True), (0.035, False), (-0.035, False)]
)
def test_frequency_tolerance(deviation: float, accepted: bool) -> None:
    signals = []
    for i in range(16):
        low, high = DTMF_ROWS[i // 4], DTMF_COLS[i % 4]
        signals.append(dual_tone(low * (1 + deviation), high, 60))
        signals.append(dual_tone(low, high * (1 + deviation), 60))
        signals.append(dual_tone(low * (1 + deviation), high * (1 + deviation), 60))
    expected = [d for d in DTMF_DIGITS for _ in range(3)] if accepted else [""] * 48
    assert detect(signals) == expected


@pytest.mark.parametrize(("twist_db", "accepted"), [(8.0, True), (-4.0, True), (10.0, False), (-6.0, False)])
def test_twist_limits(twist_db: float, accepted: bool) -> None:
    signals = [dual_tone(DTMF_ROWS[i // 4], DTMF_COLS[i % 4], 60, -12.0, twist_db) for i in range(16)]
    assert detect(signals) == (list(DTMF_DIGITS) if accepted else [""] * 16)


def test_level_threshold() -> None:
    assert detect([generate_dtmf("0", 60, amplitude_dbm0=lvl) for lvl in (-30, -20, 0, -40)]) == [
        "0",
        "0",
        "0",
        "",
    ]


def test_white_noise_gives_no_digits() -> None:
    rng = np.random.default_rng(11)
    signals = [
        np.clip(rng.normal(0, sd, FS * 10), -32768, 32767).astype(np.int16) for sd in (300, 3000, 12000)
    ]
    assert detect(signals) == ["", "", ""]


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please hold while we connect your call to the next available agent.",
    "Thank you for calling. Press one for sales, press two for support.",
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells.",
    "Eeeeee oooooo aaaaaa, la la la la la, singing a high note.",
]
VOICES = ["en", "en-us+f3", "en+m7"]


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> list[Pcm]:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed for the talk-off test")
    out_dir: Path = tmp_path_factory.mktemp("speech")
    clips: list[Pcm] = []
    for i, text in enumerate(SENTENCES):
        for voice in VOICES:
            wide, narrow = out_dir / f"{i}-{voice}.wav", out_dir / f"{i}-{voice}-8k.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(wide), text], check=True)
            subprocess.run(
                ["sox", "-V1", str(wide), "-r", "8000", "-b", "16", "-c", "1", str(narrow)], check=True
            )
            data, rate = sf.read(narrow, dtype="int16")
            assert rate == FS and len(data) > FS
            clips.append(data)
    return clips


def test_no_false_digits_on_speech(speech: list[Pcm]) -> None:
    louder = [np.clip(c.astype(np.int32) * 2, -32768, 32767).astype(np.int16) for c in speech]
    quieter = [(c // 4).astype(np.int16) for c in speech]
    clips = speech + louder + quieter
    assert detect(clips) == [""] * len(clips)


def test_speech_fools_a_detector_without_the_checks(speech: list[Pcm]) -> None:
    """The speech material is a real challenge: with the validity checks off it yields digits."""
    permissive = {
        "min_tone_ratio": 0.0,
        "min_group_margin_db": 0.0,
        "min_harmonic_margin_db": -100.0,
        "max_freq_deviation": 1.0,
        "max_forward_twist_db": 99.0,
        "max_reverse_twist_db": 99.0,
    }
    assert sum(len(d) for d in detect(speech, **permissive)) > 10


def test_digits_under_speech_level_noise_and_streams_are_independent() -> None:
    det = DtmfDetector(4)
    frames = np.zeros((4, 160), np.int16)
    tone = generate_dtmf("3", 80)
    events = []
    for k in range(6):
        frames[:] = 0
        if k < 4:
            frames[2] = tone[k * 160 : (k + 1) * 160]
        events += det.process(frames)
    assert events == [(2, "3")]
    det.reset(2)
    assert det.process(np.zeros((4, 160), np.int16)) == []


def test_resize_keeps_running_streams() -> None:
    det = DtmfDetector(1)
    tone = generate_dtmf("A", 100)
    assert det.process(tone[None, :160]) == []
    det.resize(3)
    frames = np.zeros((3, 160), np.int16)
    frames[0] = tone[160:320]
    frames[2] = tone[:160]
    events = det.process(frames)
    frames[2] = tone[160:320]
    frames[0] = tone[320:480]
    events += det.process(frames)
    frames[:] = 0
    frames[2] = tone[320:480]
    events += det.process(frames)
    assert sorted(events) == [(0, "A"), (2, "A")]
    det.resize(1)
    assert det.process(np.zeros((1, 160), np.int16)) == []


def test_bad_input() -> None:
    det = DtmfDetector(2)
    with pytest.raises(DtmfError, match="shape"):
        det.process(np.zeros((3, 160), np.int16))
    with pytest.raises(DtmfError, match="int16"):
        det.process(np.zeros((2, 160), np.float32))  # type: ignore[arg-type]
    with pytest.raises(DtmfError, match="positive"):
        DtmfDetector(0)
