"""Conference mixing arithmetic, speaker selection and talker detection, vectorised across a room.

This is the pure-numpy core of a conference room (:mod:`trunkline.media.room` wires it to codecs,
sources and the media engine). Everything works on one 20 ms tick of every participant at once:
an ``(n, samples)`` int16 array of decoded frames at the room's internal rate, and per-participant
state held in numpy vectors, so a tick costs a handful of array operations whatever ``n`` is.

Mixing (DESIGN.md section 6, "mix-minus"): the contributing participants are summed once in int32
(``total``); each of them hears ``total - own`` and every other participant hears ``total`` itself,
saturated to int16 (symmetric clip to +/-32767, never a wrap). Coaches (Twilio's ``coach``) are kept
out of ``total``; a coach's frame is added only to the output of the participant being coached.

Speaker selection: only participants whose frame energy opened a noise gate (with a hold time, so
word gaps don't chop) are summed, and of those only the ``top_k`` loudest by a decaying peak level.
Beyond three or four simultaneous talkers speech is unintelligible anyway; bounding the set keeps the
summed line noise of hundreds of open microphones out of the mix and, more importantly for cost,
means that in a large room almost everybody is a *non-contributor* hearing the identical ``total``,
which the room encodes once per codec instead of once per participant. Per-tick cost is therefore
O(n) for decoding and levels plus O(top_k) for the mix-minus outputs.

Talker detection (Twilio's ``speaker`` conference events): a frame is voiced when its level over
the 20 ms frame is above ``on_dbfs`` (or, if the previous frame was voiced, above the lower
``off_dbfs``: hysteresis); ``start_ms`` of consecutive voiced frames start a talk spurt and
``stop_ms`` of consecutive unvoiced frames end it. An optional per-frame speech decision (webrtcvad,
computed by the caller) can further veto voiced frames.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from trunkline.codecs.resample import Resampler
from trunkline.media.player import AudioSource

__all__ = [
    "FULL_SCALE",
    "MixResult",
    "MixTap",
    "MixerError",
    "SourceTap",
    "SpeakerEvent",
    "SpeakerSelector",
    "TalkerDetector",
    "fit_frame",
    "frame_power",
    "loudest",
    "mix_minus",
    "mix_minus_rooms",
    "power_to_dbfs",
    "reindex",
    "saturate",
    "stack_frames",
]

PcmArray = npt.NDArray[np.int16]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

#: Largest int16 magnitude; outputs saturate symmetrically to +/- this value.
FULL_SCALE = 32767
_FULL_POWER = float(FULL_SCALE) ** 2
_MIN_DBFS = -120.0
_NO_ROWS: IndexArray = np.zeros(0, dtype=np.intp)
_xp: Any = np  # untyped alias for calls numpy's stubs reject under strict mypy (clip with scalars)


class MixerError(ValueError):
    """Frames or masks of the wrong shape or type were handed to the mixer."""


def saturate(samples: npt.NDArray[np.int32]) -> PcmArray:
    """Clip int32 sums to +/-32767 and narrow to int16 (saturation, never wrap-around)."""
    # Two ufunc calls instead of np.clip: same result, a fraction of the per-call overhead.
    clipped: Any = np.minimum(samples, FULL_SCALE)
    np.maximum(clipped, -FULL_SCALE, out=clipped)
    out: PcmArray = clipped.astype(np.int16)
    return out


def frame_power(frames: PcmArray) -> FloatArray:
    """Mean square of each row of an ``(n, samples)`` int16 array (one value per participant)."""
    if frames.ndim != 2 or frames.dtype != np.int16:
        raise MixerError(f"frames must be an (n, samples) int16 array, got {frames.dtype} {frames.shape}")
    if frames.shape[1] == 0:
        return np.zeros(frames.shape[0], dtype=np.float64)
    # int16 squares summed exactly in int64 (no float copy of the frames).
    energy: Any = np.einsum("ij,ij->i", frames, frames, dtype=np.int64)
    power: FloatArray = energy / float(frames.shape[1])
    return power


def power_to_dbfs(power: FloatArray) -> FloatArray:
    """Mean square to dBFS (a full-scale square wave is 0 dBFS, a full-scale sine -3 dBFS)."""
    floor = _FULL_POWER * 10.0 ** (_MIN_DBFS / 10.0)
    dbfs: FloatArray = 10.0 * np.log10(np.maximum(power, floor) / _FULL_POWER)
    return dbfs


def _dbfs_to_power(dbfs: float) -> float:
    return float(_FULL_POWER * 10.0 ** (dbfs / 10.0))


def reindex(values: npt.NDArray[Any], mapping: IndexArray, fill: Any) -> npt.NDArray[Any]:
    """Per-participant state after the room's slots changed.

    ``mapping[i]`` is the old slot of new slot ``i``, or -1 for a newcomer (who gets ``fill``).
    """
    out = np.full(mapping.shape[0], fill, dtype=values.dtype)
    known = mapping >= 0
    out[known] = values[mapping[known]]
    return out


@dataclass(frozen=True, slots=True)
class MixResult:
    """One tick's mix.

    ``mix`` is what every non-contributing listener hears (the saturated ``total``); ``rows`` are
    the participant indices that need an individual output and ``outputs[j]`` is the frame for
    participant ``rows[j]`` (``total - own``, plus their coach).
    """

    total: npt.NDArray[np.int32]
    mix: PcmArray
    rows: IndexArray
    outputs: PcmArray


def mix_minus(
    frames: PcmArray,
    contributing: BoolArray,
    *,
    coach_target: IndexArray | None = None,
    individual: BoolArray | None = None,
    extra: npt.NDArray[np.int32] | PcmArray | None = None,
) -> MixResult:
    """Sum the contributors once and derive every individual output in one vectorised pass.

    ``frames`` is ``(n, samples)`` int16 at the room rate and ``contributing`` a boolean mask of
    the participants summed into ``total``. ``coach_target[i] >= 0`` makes participant ``i`` a
    coach of participant ``coach_target[i]``: when ``contributing[i]`` is set, their frame goes
    to that participant only, never into ``total``. ``individual`` asks for extra rows (e.g. to
    keep a stateful encoder fed); ``extra`` (room announcements) is added to ``total`` and so is
    heard by everyone.
    """
    n = frames.shape[0]
    if frames.ndim != 2 or frames.dtype != np.int16:
        raise MixerError(f"frames must be an (n, samples) int16 array, got {frames.dtype} {frames.shape}")
    if contributing.shape != (n,) or contributing.dtype != np.bool_:
        raise MixerError(f"contributing must be a bool mask of shape ({n},), got {contributing.shape}")
    samples = frames.shape[1]
    if coach_target is not None:
        if coach_target.shape != (n,):
            raise MixerError(f"coach_target must have shape ({n},), got {coach_target.shape}")
        coaching = contributing & (coach_target >= 0)
        regular = contributing & ~coaching
        coach_rows = coaching.nonzero()[0]
    else:
        regular = contributing
        coach_rows = _NO_ROWS
    summed = regular.nonzero()[0]
    total: npt.NDArray[np.int32] = frames[summed].sum(axis=0, dtype=np.int32)
    if extra is not None:
        if extra.shape != (samples,):
            raise MixerError(f"extra must have shape ({samples},), got {extra.shape}")
        total += extra
    need = regular if individual is None else regular | individual
    if coach_rows.size:
        assert coach_target is not None
        targets = coach_target[coach_rows]
        need = need.copy()
        need[targets] = True
    rows = need.nonzero()[0]
    # The individual outputs and, as the last row, the plain mix: saturated in one call.
    out = np.empty((rows.size + 1, samples), dtype=np.int32)
    out[:] = total
    own = regular[rows]
    if own.all():
        out[:-1] -= frames[rows]
    elif own.any():
        out[:-1][own] -= frames[rows[own]]
    if coach_rows.size:
        np.add.at(out, np.searchsorted(rows, targets), frames[coach_rows].astype(np.int32))
    both = saturate(out)
    return MixResult(total=total, mix=both[-1], rows=rows, outputs=both[:-1])


def mix_minus_rooms(
    frames: PcmArray,
    contributing: BoolArray,
    room_of: IndexArray,
    rooms: int,
    extra: Mapping[int, PcmArray] | None = None,
) -> MixResult:
    """:func:`mix_minus` for several rooms stacked in one array (no coaches, no ``individual``).

    ``frames`` holds the rooms' participants one room after the other and ``room_of[i]`` is the
    room of row ``i`` (non-decreasing, below ``rooms``). Each room's contributors are summed into
    that room's own total; ``extra[r]`` (room ``r``'s announcement) is added to it. The result's
    ``total`` and ``mix`` are ``(rooms, samples)`` (row ``r``: room ``r``), ``rows`` the
    contributing rows (ascending) and ``outputs[j]`` row ``rows[j]``'s ``total - own``, all
    saturated in one call.
    """
    if frames.ndim != 2 or frames.dtype != np.int16:
        raise MixerError(f"frames must be an (n, samples) int16 array, got {frames.dtype} {frames.shape}")
    n, samples = frames.shape
    if contributing.shape != (n,) or room_of.shape != (n,):
        raise MixerError(f"contributing and room_of must have shape ({n},)")
    rows = contributing.nonzero()[0]
    k = rows.size
    out = np.zeros((k + rooms, samples), dtype=np.int32)
    totals = out[k:]
    if k:
        owners = room_of[rows]
        own = frames[rows]
        # Contributors of a room are adjacent (rows ascending): sum each room's run.
        first = np.flatnonzero(np.concatenate(([True], owners[1:] != owners[:-1])))
        rank = np.arange(k) - np.repeat(first, np.diff(np.append(first, k)))
        steps = int(rank.max()) + 1
        if steps * 4 <= first.size:
            # Many rooms, few talkers each: add every room's first talker at once, then the
            # second... (np.add.reduceat along axis 0 costs about 2 us per segment).
            for step in range(steps):
                pick = rank == step
                totals[owners[pick]] += own[pick]
        else:
            totals[owners[first]] = np.add.reduceat(own, first, axis=0, dtype=np.int32)
    if extra:
        for r, frame in extra.items():
            if frame.shape != (samples,):
                raise MixerError(f"extra must have shape ({samples},), got {frame.shape}")
            totals[r] += frame
    if k:
        np.subtract(totals[owners], own, out=out[:k])
    both = saturate(out)
    return MixResult(total=totals, mix=both[k:], rows=rows, outputs=both[:k])


class SpeakerSelector:
    """Chooses, each tick, which participants are summed: noise gate with hold, then top-K.

    A participant passes the gate while its frame power is above ``gate_dbfs`` and for
    ``hold_ms`` afterwards. Of the gated candidates, the ``top_k`` with the highest decaying peak
    level (it follows a rise at once and falls by ``decay_db_per_s``) are selected, so the choice
    is stable across syllables. ``top_k=None`` sums every gated candidate.
    """

    def __init__(
        self,
        n: int = 0,
        *,
        top_k: int | None = 8,
        gate_dbfs: float = -55.0,
        hold_ms: int = 200,
        decay_db_per_s: float = 20.0,
        frame_ms: int = 20,
    ) -> None:
        if top_k is not None and top_k < 1:
            raise MixerError(f"top_k must be at least 1 (or None), got {top_k}")
        self.top_k = top_k
        self._gate_power = _dbfs_to_power(gate_dbfs)
        self._hold_frames = max(1, -(-hold_ms // frame_ms))
        self._decay = 10.0 ** (-decay_db_per_s * frame_ms / 1000.0 / 10.0)
        self.hold = np.zeros(n, dtype=np.int32)
        self.score = np.zeros(n, dtype=np.float64)

    def reindex(self, mapping: IndexArray) -> None:
        """Follow a change of the room's slots (see :func:`reindex`)."""
        self.hold = reindex(self.hold, mapping, 0)
        self.score = reindex(self.score, mapping, 0.0)

    @property
    def settings(self) -> tuple[float, int, float]:
        """The gate settings (selectors with equal settings can be :meth:`merged`)."""
        return (self._gate_power, self._hold_frames, self._decay)

    @classmethod
    def merged(cls, parts: Sequence[SpeakerSelector]) -> SpeakerSelector:
        """One selector over the participants of ``parts`` laid end to end, sharing their state.

        The parts' state arrays become views of the merged selector's, so a tick of either
        updates both. ``top_k`` is the first part's; the caller applies each part's own with
        :func:`loudest`. All parts must have the same :attr:`settings`.
        """
        whole = copy.copy(parts[0])
        _share(whole, parts, ("hold", "score"))
        return whole

    def select(self, power: FloatArray, candidates: BoolArray) -> BoolArray:
        """The contributing mask for this tick, given each frame's power and who may talk."""
        gated = self.gate(power, candidates)
        return gated if self.top_k is None else loudest(gated, self.score, self.top_k)

    def gate(self, power: FloatArray, candidates: BoolArray) -> BoolArray:
        """Advance the gate and peak levels by one tick; the candidates whose gate is open."""
        if power.shape != self.hold.shape or candidates.shape != self.hold.shape:
            raise MixerError(f"expected {self.hold.shape[0]} participants, got {power.shape}")
        hold = self.hold
        np.subtract(hold, 1, out=hold)
        np.maximum(hold, 0, out=hold)
        hold[power > self._gate_power] = self._hold_frames
        self.score *= self._decay
        np.maximum(self.score, power, out=self.score)
        gated: BoolArray = candidates & (hold > 0)
        return gated


def loudest(gated: BoolArray, score: FloatArray, top_k: int) -> BoolArray:
    """``gated`` narrowed to its ``top_k`` members of highest ``score`` (itself if no more than that)."""
    idx = gated.nonzero()[0]
    if idx.size <= top_k:
        return gated
    best = idx[np.argpartition(-score[idx], top_k - 1)[:top_k]]
    chosen = np.zeros_like(gated)
    chosen[best] = True
    return chosen


def _share(whole: Any, parts: Sequence[Any], names: tuple[str, ...]) -> None:
    """Concatenate the parts' state arrays ``names`` into ``whole`` and make the parts' views of it."""
    sizes = [getattr(p, names[0]).shape[0] for p in parts]
    bounds = np.cumsum([0, *sizes]).tolist()
    for name in names:
        array = np.concatenate([getattr(p, name) for p in parts])
        setattr(whole, name, array)
        for p, a, b in zip(parts, bounds[:-1], bounds[1:], strict=True):
            setattr(p, name, array[a:b])


@dataclass(frozen=True, slots=True)
class SpeakerEvent:
    """A participant started or stopped talking (Twilio ``speaker`` status-callback event).

    ``t`` is the ``now`` of the tick that decided it; ``level_dbfs`` the frame level at that tick.
    """

    participant: str
    speaking: bool
    t: float
    level_dbfs: float

    @property
    def callback_event(self) -> str:
        """Twilio's ``StatusCallbackEvent`` value for this event."""
        return "participant-speech-start" if self.speaking else "participant-speech-stop"


class TalkerDetector:
    """Debounced energy talker detection with hysteresis for every participant of a room at once.

    With the defaults a talk spurt starts on the 5th consecutive voiced 20 ms frame (100 ms of
    speech) and stops on the 25th consecutive unvoiced frame (500 ms of silence).
    """

    def __init__(
        self,
        n: int = 0,
        *,
        on_dbfs: float = -40.0,
        off_dbfs: float = -48.0,
        start_ms: int = 100,
        stop_ms: int = 500,
        frame_ms: int = 20,
    ) -> None:
        if off_dbfs > on_dbfs:
            raise MixerError(f"off_dbfs ({off_dbfs}) must not exceed on_dbfs ({on_dbfs})")
        if frame_ms <= 0:
            raise MixerError(f"frame_ms must be positive, got {frame_ms}")
        self.on_dbfs = on_dbfs
        self.off_dbfs = off_dbfs
        self.frame_ms = frame_ms
        self.start_frames = max(1, -(-start_ms // frame_ms))
        self.stop_frames = max(1, -(-stop_ms // frame_ms))
        self.speaking = np.zeros(n, dtype=np.bool_)
        self._voiced = np.zeros(n, dtype=np.bool_)
        self._speech_run = np.zeros(n, dtype=np.int32)
        self._silence_run = np.zeros(n, dtype=np.int32)

    @property
    def settings(self) -> tuple[float, float, int, int]:
        """The thresholds and debounce lengths (detectors with equal settings can be :meth:`merged`)."""
        return (self.on_dbfs, self.off_dbfs, self.start_frames, self.stop_frames)

    @classmethod
    def merged(cls, parts: Sequence[TalkerDetector]) -> TalkerDetector:
        """One detector over the participants of ``parts`` laid end to end, sharing their state.

        The parts' state arrays become views of the merged detector's (see
        :meth:`SpeakerSelector.merged`). All parts must have the same :attr:`settings`.
        """
        whole = copy.copy(parts[0])
        _share(whole, parts, ("speaking", "_voiced", "_speech_run", "_silence_run"))
        return whole

    def reindex(self, mapping: IndexArray) -> None:
        """Follow a change of the room's slots (see :func:`reindex`)."""
        self.speaking = reindex(self.speaking, mapping, False)
        self._voiced = reindex(self._voiced, mapping, False)
        self._speech_run = reindex(self._speech_run, mapping, 0)
        self._silence_run = reindex(self._silence_run, mapping, 0)

    def voiced(self, levels_dbfs: FloatArray) -> BoolArray:
        """Per-frame energy decision with hysteresis (before debouncing); does not change state."""
        threshold = _xp.where(self._voiced, self.off_dbfs, self.on_dbfs)
        result: BoolArray = levels_dbfs > threshold
        return result

    def update(
        self,
        levels_dbfs: FloatArray,
        eligible: BoolArray | None = None,
        speech: BoolArray | None = None,
    ) -> tuple[IndexArray, IndexArray]:
        """Account for one tick; returns the indices that started and that stopped talking.

        ``eligible`` masks participants who cannot talk this tick (muted, on hold): their frames
        count as silence. ``speech`` is an optional VAD decision that must also be true.
        """
        if levels_dbfs.shape != self.speaking.shape:
            raise MixerError(f"expected {self.speaking.shape[0]} levels, got {levels_dbfs.shape}")
        voiced = self.voiced(levels_dbfs)
        if eligible is not None:
            voiced &= eligible
        if speech is not None:
            voiced &= speech
        self._voiced[...] = voiced  # in place: the state may be a view of a merged detector's
        self._speech_run += 1
        self._speech_run *= voiced
        self._silence_run += 1
        self._silence_run *= ~voiced
        started = ~self.speaking & (self._speech_run >= self.start_frames)
        stopped = self.speaking & (self._silence_run >= self.stop_frames)
        self.speaking ^= started | stopped
        return started.nonzero()[0], stopped.nonzero()[0]


class SourceTap:
    """Pulls a room source (an :class:`AudioSource`) at the room rate, resampling if needed."""

    def __init__(self, source: AudioSource, rate: int) -> None:
        self.source = source
        self.done = False
        self.tick = -1  # the room's tick of ``frame`` (a source is pulled once per tick)
        self.frame: PcmArray | None = None
        self._samples = rate // 50
        self._resampler = Resampler(source.sample_rate, rate) if source.sample_rate != rate else None
        if source.frame_samples != source.sample_rate // 50:
            raise MixerError(f"room sources must deliver 20 ms frames, got {source.frame_samples} samples")

    def read(self) -> PcmArray | None:
        """The next frame at the room rate, or ``None`` once the source has ended."""
        frame = None if self.done else self.source.read_frame()
        if frame is None:
            self.done = True
            return None
        return frame if self._resampler is None else self._resampler.process(frame)

    def read_or_silence(self) -> PcmArray:
        """The next frame, or silence once the source has ended."""
        frame = self.read()
        return np.zeros(self._samples, dtype=np.int16) if frame is None else frame


@dataclass(slots=True)
class MixTap:
    """A recording hook: receives the room mix every tick, resampled to ``rate`` (0: room rate)."""

    callback: Callable[[PcmArray], object]
    rate: int
    resampler: Resampler | None = None

    def push(self, mix: PcmArray, room_rate: int) -> None:
        """Hand one tick of the mix (at ``room_rate``) to the callback."""
        if not self.rate or self.rate == room_rate:
            self.callback(mix)
            return
        if self.resampler is None or self.resampler.in_rate != room_rate:
            self.resampler = Resampler(room_rate, self.rate)
        self.callback(self.resampler.process(mix))


def fit_frame(pcm: PcmArray, size: int) -> PcmArray:
    """Trim or zero-pad a decoded frame to exactly ``size`` samples."""
    if pcm.shape == (size,):
        return pcm
    flat = pcm.reshape(-1)
    if flat.size >= size:
        return flat[:size]
    return np.concatenate([flat, np.zeros(size - flat.size, dtype=np.int16)])


def stack_frames(values: list[Any], size: int, decode: Callable[[Any], PcmArray]) -> PcmArray | None:
    """Stack one tick of G.711 inputs into an ``(n, size)`` int16 array in one pass.

    Every value must be a ``size``-byte payload (all decoded by ``decode`` in one table lookup) or
    an int16 frame the engine already decoded; ``None`` when the values are mixed, missing or
    malformed (the caller then decodes them one by one).
    The checks are C-level (``map(len)``, ``join``, ``concatenate``) to stay cheap for 1000 rows.
    """
    try:
        if set(map(len, values)) != {size}:
            return None
        if type(values[0]) is bytes:
            data = b"".join(values)  # an int16 array among them makes the total too long
            if len(data) != size * len(values):
                return None
            return decode(np.frombuffer(data, np.uint8).reshape(-1, size))
        flat = np.concatenate(values)  # a bytes payload among them raises ValueError
    except (TypeError, ValueError):  # None (nothing arrived) has no len()
        return None
    if flat.dtype != np.int16 or flat.ndim != 1:
        return None
    rows: PcmArray = flat.reshape(-1, size)  # frames the engine already decoded
    return rows
