"""Voice activity detection (webrtcvad) and an endpointer for ``<Record>``, ``<Gather>`` and barge-in.

:class:`VoiceActivityDetector` classifies 10/20/30 ms int16 frames as speech or
not with the WebRTC GMM detector.  :class:`SilenceTracker` is a pure,
frame-counting state machine on top of those decisions (no clock: time is the
number of frames fed times the frame length) that reports:

* :class:`SpeechStarted` - ``speech_start_ms`` of consecutive speech;
* :class:`BargeIn` - ``barge_in_ms`` of speech, small gaps tolerated (stop prompts);
* :class:`SpeechEnded` - ``speech_end_ms`` of silence after speech (end of an utterance);
* :class:`SilenceTimeout` - ``silence_timeout_s`` of silence (``<Record timeout>``),
  flagged with whether any speech was heard before it.

:class:`Endpointer` wires the two together for one stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import webrtcvad

__all__ = [
    "BargeIn",
    "Endpointer",
    "SilenceTimeout",
    "SilenceTracker",
    "SpeechEnded",
    "SpeechStarted",
    "VadEvent",
    "VoiceActivityDetector",
]

PcmArray = npt.NDArray[np.int16]

#: Rates webrtcvad accepts.
SUPPORTED_RATES = (8000, 16000, 32000, 48000)


class VoiceActivityDetector:
    """webrtcvad wrapper: ``is_speech`` on one frame of ``frame_ms`` (10, 20 or 30) at ``sample_rate``.

    ``aggressiveness`` 0 (least) to 3 (most) trades missed speech for fewer
    false alarms on noise.  Frames whose RMS is below ``energy_floor_dbfs`` are
    never speech: webrtcvad alone calls faint white noise (line hiss) and even its
    first frames of digital silence speech, so this gate comes first.
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        aggressiveness: int = 2,
        frame_ms: int = 20,
        *,
        energy_floor_dbfs: float = -50.0,
    ) -> None:
        if sample_rate not in SUPPORTED_RATES:
            raise ValueError(f"webrtcvad supports {SUPPORTED_RATES} Hz, got {sample_rate}")
        if frame_ms not in (10, 20, 30):
            raise ValueError(f"frame_ms must be 10, 20 or 30, got {frame_ms}")
        if not 0 <= aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, got {aggressiveness}")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.frame_samples = sample_rate * frame_ms // 1000
        self.aggressiveness = aggressiveness
        self._vad = webrtcvad.Vad(aggressiveness)
        floor = 32767.0 * 10.0 ** (energy_floor_dbfs / 20.0)
        self._energy_floor = floor * floor * self.frame_samples  # sum of squares over a frame

    def is_speech(self, frame: PcmArray) -> bool:
        """True if the frame (exactly ``frame_samples`` int16 samples) contains speech."""
        if frame.dtype != np.int16 or frame.shape != (self.frame_samples,):
            raise ValueError(
                f"VAD frame must be int16 of shape ({self.frame_samples},), got {frame.dtype} {frame.shape}"
            )
        as_float = frame.astype(np.float64)
        if float(np.dot(as_float, as_float)) < self._energy_floor:
            return False
        return bool(self._vad.is_speech(frame.astype("<i2", copy=False).tobytes(), self.sample_rate))

    def classify(self, pcm: PcmArray) -> npt.NDArray[np.bool_]:
        """Speech decision for each whole frame of a longer buffer (a trailing partial frame is ignored)."""
        n = pcm.size // self.frame_samples
        frames = pcm[: n * self.frame_samples].reshape(n, self.frame_samples)
        return np.fromiter((self.is_speech(f) for f in frames), dtype=np.bool_, count=n)


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech began; ``t`` is seconds since the tracker started (end of the deciding frame)."""

    t: float


@dataclass(frozen=True, slots=True)
class BargeIn:
    """The caller has talked long enough to interrupt a prompt."""

    t: float


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """Enough silence followed speech to call the utterance finished."""

    t: float
    speech_s: float


@dataclass(frozen=True, slots=True)
class SilenceTimeout:
    """``silence_timeout_s`` of continuous silence; ``after_speech`` says whether speech came first."""

    t: float
    after_speech: bool


VadEvent = SpeechStarted | BargeIn | SpeechEnded | SilenceTimeout


class SilenceTracker:
    """Endpointing state machine over per-frame speech decisions.

    Feed one boolean per frame with :meth:`update`; it returns the events that
    frame triggered.  Each event fires once per occurrence: ``SpeechStarted`` and
    ``SpeechEnded`` alternate, ``BargeIn`` fires once until :meth:`reset`, and
    ``SilenceTimeout`` once per silent stretch.
    """

    def __init__(
        self,
        *,
        frame_ms: int = 20,
        silence_timeout_s: float | None = 5.0,
        speech_start_ms: int = 60,
        speech_end_ms: int = 600,
        barge_in_ms: int = 300,
        gap_tolerance_ms: int = 100,
    ) -> None:
        if frame_ms <= 0:
            raise ValueError(f"frame_ms must be positive, got {frame_ms}")
        self.frame_ms = frame_ms
        self._start_frames = max(1, -(-speech_start_ms // frame_ms))
        self._end_frames = max(1, -(-speech_end_ms // frame_ms))
        self._barge_frames = max(1, -(-barge_in_ms // frame_ms))
        self._gap_frames = max(0, gap_tolerance_ms // frame_ms)
        self._timeout_frames = (
            None if silence_timeout_s is None else max(1, round(silence_timeout_s * 1000 / frame_ms))
        )
        self.reset()

    def reset(self) -> None:
        """Forget everything (new prompt, new recording)."""
        self.frames = 0
        self.in_speech = False
        self.heard_speech = False
        self._speech_run = 0
        self._silence_run = 0
        self._talk_frames = 0  # speech in the current utterance, gaps below tolerance bridged
        self._gap = 0
        self._barged = False
        self._timed_out = False
        self._utterance_start = 0

    @property
    def silence_s(self) -> float:
        """Current run of silence in seconds."""
        return self._silence_run * self.frame_ms / 1000

    def update(self, speech: bool) -> list[VadEvent]:
        """Account for one frame's decision and return the events it triggers."""
        self.frames += 1
        t = self.frames * self.frame_ms / 1000
        events: list[VadEvent] = []
        if speech:
            self._speech_run += 1
            self._silence_run = 0
            self._timed_out = False
            self._talk_frames += 1
            self._gap = 0
            if not self.in_speech and self._speech_run >= self._start_frames:
                self.in_speech = True
                self.heard_speech = True
                self._utterance_start = self.frames - self._speech_run
                events.append(SpeechStarted(t))
        else:
            self._speech_run = 0
            self._silence_run += 1
            self._gap += 1
            if self._gap > self._gap_frames:
                self._talk_frames = 0
            if self.in_speech and self._silence_run >= self._end_frames:
                self.in_speech = False
                speech_frames = self.frames - self._silence_run - self._utterance_start
                events.append(SpeechEnded(t, speech_frames * self.frame_ms / 1000))
            if (
                self._timeout_frames is not None
                and not self._timed_out
                and self._silence_run >= self._timeout_frames
            ):
                self._timed_out = True
                events.append(SilenceTimeout(t, self.heard_speech))
        if not self._barged and self._talk_frames >= self._barge_frames:
            self._barged = True
            events.append(BargeIn(t))
        return events


class Endpointer:
    """A :class:`VoiceActivityDetector` feeding a :class:`SilenceTracker` for one stream."""

    def __init__(self, detector: VoiceActivityDetector, tracker: SilenceTracker | None = None) -> None:
        self.detector = detector
        self.tracker = tracker if tracker is not None else SilenceTracker(frame_ms=detector.frame_ms)
        if self.tracker.frame_ms != detector.frame_ms:
            raise ValueError("detector and tracker frame lengths differ")

    def process(self, frame: PcmArray) -> list[VadEvent]:
        """Classify one frame and return the endpointing events it triggers."""
        return self.tracker.update(self.detector.is_speech(frame))
