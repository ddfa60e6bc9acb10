"""Tests for trunkline.media.vad: speech vs silence vs noise, and the endpointer state machine."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from trunkline.media.tones import ToneSpec, generate_tone
from trunkline.media.tts import TextToSpeech
from trunkline.media.vad import (
    BargeIn,
    Endpointer,
    SilenceTimeout,
    SilenceTracker,
    SpeechEnded,
    SpeechStarted,
    VadEvent,
    VoiceActivityDetector,
)

SENTENCE = "Please leave a message after the tone, then press the pound key."


@pytest.fixture(scope="module")
def speech8k() -> npt.NDArray[np.int16]:
    return TextToSpeech().synthesize_sync(SENTENCE, sample_rate=8000)


@pytest.fixture(scope="module")
def speech16k() -> npt.NDArray[np.int16]:
    return TextToSpeech().synthesize_sync(SENTENCE, sample_rate=16000)


@pytest.mark.parametrize("aggressiveness", [0, 2, 3])
def test_speech_detected_silence_and_low_noise_rejected(
    speech8k: npt.NDArray[np.int16], aggressiveness: int
) -> None:
    vad = VoiceActivityDetector(8000, aggressiveness)
    rng = np.random.default_rng(7)
    assert vad.classify(speech8k).mean() > 0.8
    assert not vad.classify(np.zeros(16000, np.int16)).any()
    hiss = rng.normal(0, 30, 24000).astype(np.int16)  # about -61 dBFS line noise
    assert vad.classify(hiss).mean() < 0.05


def test_speech_at_16khz_and_quiet_speech(speech16k: npt.NDArray[np.int16]) -> None:
    vad = VoiceActivityDetector(16000, 2)
    assert vad.frame_samples == 320
    assert vad.classify(speech16k).mean() > 0.8
    quiet = (speech16k // 8).astype(np.int16)  # -18 dB: still speech
    assert vad.classify(quiet).mean() > 0.7


def test_is_speech_validates_frames() -> None:
    vad = VoiceActivityDetector(8000)
    with pytest.raises(ValueError, match="shape"):
        vad.is_speech(np.zeros(100, np.int16))
    with pytest.raises(ValueError, match="webrtcvad supports"):
        VoiceActivityDetector(22050)
    with pytest.raises(ValueError, match="aggressiveness"):
        VoiceActivityDetector(8000, 4)
    assert VoiceActivityDetector(48000, frame_ms=10).frame_samples == 480


def run(tracker: SilenceTracker, pattern: list[tuple[bool, int]]) -> list[VadEvent]:
    events: list[VadEvent] = []
    for speech, frames in pattern:
        for _ in range(frames):
            events.extend(tracker.update(speech))
    return events


def test_tracker_speech_start_end_timeout() -> None:
    tracker = SilenceTracker(silence_timeout_s=2.0, speech_start_ms=60, speech_end_ms=600, barge_in_ms=300)
    events = run(tracker, [(False, 25), (True, 50), (False, 150)])
    assert events == [
        SpeechStarted(pytest.approx(0.56)),  # third consecutive speech frame ends at 0.56 s
        BargeIn(pytest.approx(0.80)),  # 15 frames = 300 ms of speech
        SpeechEnded(pytest.approx(2.10), pytest.approx(1.0)),  # 30 silent frames after 1.0 s of speech
        SilenceTimeout(pytest.approx(3.50), True),  # 100 silent frames = 2 s
    ]
    assert tracker.heard_speech and not tracker.in_speech


def test_tracker_timeout_without_speech_and_blips_ignored() -> None:
    tracker = SilenceTracker(silence_timeout_s=1.0, speech_start_ms=60, barge_in_ms=200, gap_tolerance_ms=0)
    # Isolated one- and two-frame blips (clicks, noise) neither start speech nor barge in,
    # but they do restart the silence count.
    events = run(tracker, [(False, 10), (True, 1), (False, 5), (True, 2), (False, 60)])
    assert events == [SilenceTimeout(pytest.approx(1.36), False)]
    assert not tracker.heard_speech
    # One timeout per silent stretch.
    assert run(tracker, [(False, 100)]) == []


def test_barge_in_bridges_short_gaps_once() -> None:
    tracker = SilenceTracker(silence_timeout_s=None, barge_in_ms=200, gap_tolerance_ms=60)
    pattern = [(True, 4), (False, 2), (True, 4), (False, 2), (True, 3)]  # 11 speech frames, short gaps
    events = run(tracker, pattern)
    assert [type(e) for e in events] == [SpeechStarted, BargeIn]
    assert events[1].t == pytest.approx(0.28)  # 10th speech frame is frame 14
    assert run(tracker, [(True, 50)]) == []  # barge-in fires once until reset
    tracker.reset()
    assert [type(e) for e in run(tracker, [(True, 10)])] == [SpeechStarted, BargeIn]


def test_barge_in_not_triggered_when_gaps_too_long() -> None:
    tracker = SilenceTracker(silence_timeout_s=None, barge_in_ms=200, gap_tolerance_ms=20)
    events = run(tracker, [(True, 4), (False, 3)] * 5)
    assert not any(isinstance(e, BargeIn) for e in events)


def test_endpointer_on_real_speech(speech8k: npt.NDArray[np.int16]) -> None:
    """<Record timeout="2">: caller silent 1 s, speaks, then silent; recording ends 2 s after speech."""
    pcm = np.concatenate([np.zeros(8000, np.int16), speech8k, np.zeros(8000 * 3, np.int16)])
    ep = Endpointer(VoiceActivityDetector(8000, 2), SilenceTracker(silence_timeout_s=2.0))
    events: list[VadEvent] = []
    for i in range(0, pcm.size - 159, 160):
        events.extend(ep.process(pcm[i : i + 160]))
    kinds = [type(e) for e in events]
    assert kinds[:2] == [SpeechStarted, BargeIn]
    assert kinds[-1] is SilenceTimeout
    started = events[0].t
    timeout = events[-1]
    assert isinstance(timeout, SilenceTimeout) and timeout.after_speech
    speech_end = 1.0 + speech8k.size / 8000
    assert 1.0 <= started < 1.3
    assert speech_end + 1.5 < timeout.t < speech_end + 2.2
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert ended and ended[-1].t < timeout.t


def test_tone_is_not_speech_for_long() -> None:
    """A steady beep should not look like talking (webrtcvad rejects most pure tones)."""
    beep = generate_tone(ToneSpec("b", (1000.0,), level_dbfs=-10.0), 1.0, 8000)
    frac = VoiceActivityDetector(8000, 3).classify(beep).mean()
    assert frac < 0.5
