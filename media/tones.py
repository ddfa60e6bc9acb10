"""Call-progress tones, the record beep, DTMF and silence as pull sources.

A :class:`ToneSource` yields one 20 ms frame of int16 PCM per :meth:`read_frame`
call, endlessly or for a fixed duration.  Each frequency component keeps its own
phase accumulator, so the waveform is phase-continuous across frames (no clicks
at frame boundaries); cadenced tones (ringback, busy) are gated by a
precomputed one-cycle envelope with short raised-cosine ramps at every on/off
edge.  All generation is vectorised with numpy; there is no per-sample loop.

Tone plans:

* US ringback: 440 + 480 Hz, 2 s on / 4 s off (ANSI T1.401 / "precise tone plan").
* UK ringback: 400 + 450 Hz, 0.4 on, 0.2 off, 0.4 on, 2.0 off (BT SIN 350).
* US busy: 480 + 620 Hz, 0.5 on / 0.5 off; UK busy: 400 Hz, 0.375 on / 0.375 off.
* Record beep: **1000 Hz for 0.5 s at -10 dBFS** (our choice, close to the beep
  Twilio plays before ``<Record>``).
* DTMF: the ITU-T Q.23 row/column pairs at -10 dBm0 per tone; fixed-length
  digits come from :func:`trunkline.media.dtmf.generate_dtmf`, continuous ones
  from :func:`dtmf_spec`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from trunkline.media.dtmf import DTMF_COLS, DTMF_DIGITS, DTMF_ROWS, DtmfError, generate_dtmf

__all__ = [
    "BEEP",
    "BUSY_UK",
    "BUSY_US",
    "CONGESTION_US",
    "DIAL_UK",
    "DIAL_US",
    "DTMF_FREQUENCIES",
    "RINGBACK_UK",
    "RINGBACK_US",
    "TONES",
    "SilenceSource",
    "ToneSource",
    "ToneSpec",
    "dtmf_sequence",
    "dtmf_spec",
    "generate_tone",
    "silence",
    "tone_source",
]

PcmArray = npt.NDArray[np.int16]

_FULL_SCALE = 32767.0
# numpy scalars as clip bounds: plain ints trip numpy's stubs when mypy runs from the repo root.
_ZERO = np.float64(0.0)
_INT16_MIN = np.float64(-32768.0)
_INT16_MAX = np.float64(32767.0)


@dataclass(frozen=True, slots=True)
class ToneSpec:
    """A (multi-)frequency tone with an optional repeating on/off cadence.

    ``cadence`` alternates on and off durations in seconds, starting with "on";
    an empty cadence means a continuous tone.  ``level_dbfs`` is the peak level of
    each component (relative to int16 full scale), so a dual tone at -16 dBFS per
    component peaks at about -10 dBFS.
    """

    name: str
    frequencies: tuple[float, ...]
    cadence: tuple[float, ...] = ()
    level_dbfs: float | tuple[float, ...] = -16.0

    def __post_init__(self) -> None:
        if not self.frequencies:
            raise ValueError(f"tone {self.name!r} has no frequencies")
        if any(f <= 0 for f in self.frequencies):
            raise ValueError(f"tone {self.name!r} has a non-positive frequency: {self.frequencies}")
        if any(d < 0 for d in self.cadence) or (self.cadence and sum(self.cadence) <= 0):
            raise ValueError(f"tone {self.name!r} has an invalid cadence: {self.cadence}")
        if isinstance(self.level_dbfs, tuple) and len(self.level_dbfs) != len(self.frequencies):
            raise ValueError(f"tone {self.name!r}: one level per frequency expected")

    def amplitudes(self) -> npt.NDArray[np.float64]:
        """Peak amplitude of each component in int16 units."""
        levels = (
            self.level_dbfs
            if isinstance(self.level_dbfs, tuple)
            else (self.level_dbfs,) * len(self.frequencies)
        )
        return np.array([_FULL_SCALE * 10.0 ** (lv / 20.0) for lv in levels], dtype=np.float64)


BEEP = ToneSpec("beep", (1000.0,), level_dbfs=-10.0)
#: Duration of the record beep in seconds (use with ``ToneSource(BEEP, rate, duration=BEEP_SECONDS)``).
BEEP_SECONDS = 0.5
RINGBACK_US = ToneSpec("ringback-us", (440.0, 480.0), (2.0, 4.0), level_dbfs=-19.0)
RINGBACK_UK = ToneSpec("ringback-uk", (400.0, 450.0), (0.4, 0.2, 0.4, 2.0), level_dbfs=-19.0)
BUSY_US = ToneSpec("busy-us", (480.0, 620.0), (0.5, 0.5), level_dbfs=-19.0)
BUSY_UK = ToneSpec("busy-uk", (400.0,), (0.375, 0.375), level_dbfs=-16.0)
CONGESTION_US = ToneSpec("congestion-us", (480.0, 620.0), (0.25, 0.25), level_dbfs=-19.0)
DIAL_US = ToneSpec("dial-us", (350.0, 440.0), level_dbfs=-19.0)
DIAL_UK = ToneSpec("dial-uk", (350.0, 450.0), level_dbfs=-19.0)

#: Named tones, as configuration and the switch refer to them.
TONES: Mapping[str, ToneSpec] = {
    t.name: t for t in (BEEP, RINGBACK_US, RINGBACK_UK, BUSY_US, BUSY_UK, CONGESTION_US, DIAL_US, DIAL_UK)
}

#: Digit -> (low, high) frequency pair in Hz (ITU-T Q.23, as in :mod:`trunkline.media.dtmf`).
DTMF_FREQUENCIES: Mapping[str, tuple[float, float]] = {
    key: (DTMF_ROWS[i // 4], DTMF_COLS[i % 4]) for i, key in enumerate(DTMF_DIGITS)
}

# -10 dBm0 per tone (Q.23), with a full-scale sine at +3.14 dBm0 as in trunkline.media.dtmf.
_DTMF_LEVEL_DBFS = -10.0 - 3.14


def dtmf_spec(digit: str) -> ToneSpec:
    """The continuous dual tone for one DTMF key (``0-9``, ``*``, ``#``, ``A-D``)."""
    key = digit.upper()
    if key not in DTMF_FREQUENCIES:
        raise DtmfError(f"not a DTMF digit: {digit!r}")
    return ToneSpec(f"dtmf-{key}", DTMF_FREQUENCIES[key], level_dbfs=_DTMF_LEVEL_DBFS)


def _default_frame(sample_rate: int) -> int:
    if sample_rate <= 0 or sample_rate % 50:
        raise ValueError(f"sample rate must be a positive multiple of 50 Hz, got {sample_rate}")
    return sample_rate // 50


def _cycle_envelope(cadence: tuple[float, ...], sample_rate: int, ramp: int) -> npt.NDArray[np.float64]:
    """One cadence cycle of gain (0..1), raised-cosine ramps inside every "on" segment."""
    bounds = np.rint(np.cumsum((0.0, *cadence)) * sample_rate).astype(np.int64)
    env = np.zeros(int(bounds[-1]), dtype=np.float64)
    for i in range(0, len(cadence), 2):  # loop over segments, not samples
        start, end = int(bounds[i]), int(bounds[i + 1])
        length = end - start
        if length <= 0:
            continue
        seg = np.ones(length, dtype=np.float64)
        r = min(ramp, length // 2)
        if r > 0:
            rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
            seg[:r] = rise
            seg[length - r :] = rise[::-1]
        env[start:end] = seg
    return env


@lru_cache(maxsize=128)
def _tone_table(spec: ToneSpec, sample_rate: int, ramp: int) -> PcmArray | None:
    """One whole repetition of a tone (a cadence cycle, or >= 1 s of waveform), shared read-only.

    Only possible when every frequency is a whole number of Hz, so the waveform
    repeats every ``sample_rate / gcd(freqs, sample_rate)`` samples, and that period
    divides the cadence cycle; otherwise ``None`` and the source synthesises per frame.
    """
    if not all(float(f).is_integer() for f in spec.frequencies):
        return None
    period = sample_rate // math.gcd(sample_rate, *(int(f) for f in spec.frequencies))
    env = _cycle_envelope(spec.cadence, sample_rate, ramp) if spec.cadence else None
    if env is not None:
        if env.size % period:
            return None
        length = env.size
    else:
        length = period * -(-sample_rate // period)
    n = np.arange(length, dtype=np.float64)
    freqs = np.asarray(spec.frequencies, dtype=np.float64)[:, None]
    wave = (spec.amplitudes()[:, None] * np.sin(2.0 * math.pi * freqs * n / sample_rate)).sum(axis=0)
    if env is not None:
        wave *= env
    table: PcmArray = np.rint(wave).clip(_INT16_MIN, _INT16_MAX).astype(np.int16)
    table.setflags(write=False)
    return table


class ToneSource:
    """Pull source of a :class:`ToneSpec`: 20 ms int16 frames, phase-continuous.

    With ``duration=None`` the tone runs until the caller stops pulling; with a
    duration, the last frame is zero-padded and :meth:`read_frame` then returns
    ``None``.  Continuous tones fade in (and out, when a duration is given) over
    ``ramp_ms`` to avoid clicks.  Tones with whole-Hz frequencies (all the
    standard ones) are served from a precomputed, shared cadence cycle, so a
    frame costs a slice; frames may be read-only views.
    """

    def __init__(
        self,
        spec: ToneSpec,
        sample_rate: int = 8000,
        *,
        duration: float | None = None,
        frame_samples: int | None = None,
        ramp_ms: float = 2.0,
    ) -> None:
        self.spec = spec
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples if frame_samples is not None else _default_frame(sample_rate)
        if self.frame_samples <= 0:
            raise ValueError(f"frame_samples must be positive, got {self.frame_samples}")
        if duration is not None and duration < 0:
            raise ValueError(f"duration must be >= 0, got {duration}")
        nyquist = sample_rate / 2
        if any(f >= nyquist for f in spec.frequencies):
            raise ValueError(f"tone {spec.name!r} frequency above Nyquist ({nyquist} Hz) at {sample_rate} Hz")
        self._total = None if duration is None else round(duration * sample_rate)
        self._ramp = max(0, round(ramp_ms * sample_rate / 1000))
        self._amps = spec.amplitudes()[:, None]
        self._inc = (2.0 * math.pi * np.asarray(spec.frequencies, dtype=np.float64) / sample_rate)[:, None]
        self._phase = np.zeros((len(spec.frequencies), 1), dtype=np.float64)
        self._env = _cycle_envelope(spec.cadence, sample_rate, self._ramp) if spec.cadence else None
        self._table = _tone_table(spec, sample_rate, self._ramp)
        self._pos = 0

    @property
    def samples_emitted(self) -> int:
        """Number of samples produced so far (including padding)."""
        return self._pos

    @property
    def done(self) -> bool:
        """True once a finite tone has been fully emitted."""
        return self._total is not None and self._pos >= self._total

    def _from_table(self, table: PcmArray, n: int) -> PcmArray:
        start = self._pos % table.size
        if start + n <= table.size:
            return table[start : start + n]
        return np.take(table, (start + np.arange(n)) % table.size)

    def read(self, n: int) -> PcmArray:
        """Generate the next ``n`` samples (no padding, no end-of-tone handling).

        The result may be a read-only view of a shared precomputed period.
        """
        ramp_in = self._env is None and self._ramp > 0 and self._pos < self._ramp
        ramp_out = (
            self._env is None
            and self._ramp > 0
            and self._total is not None
            and self._pos + n > self._total - self._ramp
        )
        if self._table is not None:
            chunk = self._from_table(self._table, n)
            if not (ramp_in or ramp_out):
                self._pos += n
                return chunk
            wave = chunk.astype(np.float64)
        else:
            phases = self._phase + self._inc * np.arange(n, dtype=np.float64)
            wave = (self._amps * np.sin(phases)).sum(axis=0)
            self._phase = (self._phase + self._inc * n) % (2.0 * math.pi)
            if self._env is not None:
                wave *= self._env[(self._pos + np.arange(n, dtype=np.int64)) % self._env.size]
        abs_idx = self._pos + np.arange(n, dtype=np.int64)
        if ramp_in:
            rising = (abs_idx + 0.5).clip(_ZERO, np.float64(self._ramp)) / self._ramp
            wave *= 0.5 - 0.5 * np.cos(np.pi * rising)
        if ramp_out and self._total is not None:
            left = (self._total - abs_idx - 0.5).clip(_ZERO, np.float64(self._ramp))
            wave *= 0.5 - 0.5 * np.cos(np.pi * left / self._ramp)
        self._pos += n
        out: PcmArray = np.rint(wave).clip(_INT16_MIN, _INT16_MAX).astype(np.int16)
        return out

    def read_frame(self) -> PcmArray | None:
        """Next 20 ms frame, or ``None`` when a finite tone has ended."""
        if self._total is None:
            return self.read(self.frame_samples)
        remaining = self._total - self._pos
        if remaining <= 0:
            return None
        if remaining >= self.frame_samples:
            return self.read(self.frame_samples)
        frame = np.zeros(self.frame_samples, dtype=np.int16)
        frame[:remaining] = self.read(remaining)
        self._pos += self.frame_samples - remaining
        return frame


class SilenceSource:
    """Pull source of digital silence, endless or for ``duration`` seconds (``<Pause>``)."""

    def __init__(
        self, sample_rate: int = 8000, *, duration: float | None = None, frame_samples: int | None = None
    ) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples if frame_samples is not None else _default_frame(sample_rate)
        self._frames_left = (
            None if duration is None else math.ceil(round(duration * sample_rate) / self.frame_samples)
        )
        self._zero = np.zeros(self.frame_samples, dtype=np.int16)
        self._zero.setflags(write=False)

    def read_frame(self) -> PcmArray | None:
        """Next frame of zeros (shared, read-only), or ``None`` once the duration is over."""
        if self._frames_left is not None:
            if self._frames_left <= 0:
                return None
            self._frames_left -= 1
        return self._zero


def generate_tone(
    spec: ToneSpec, duration: float, sample_rate: int = 8000, *, ramp_ms: float = 2.0
) -> PcmArray:
    """The first ``duration`` seconds of a tone as one int16 array."""
    src = ToneSource(spec, sample_rate, duration=duration, ramp_ms=ramp_ms, frame_samples=1)
    total = round(duration * sample_rate)
    return src.read(total) if total else np.zeros(0, dtype=np.int16)


def silence(duration: float, sample_rate: int = 8000) -> PcmArray:
    """``duration`` seconds of zeros."""
    return np.zeros(round(duration * sample_rate), dtype=np.int16)


def dtmf_sequence(
    digits: str,
    sample_rate: int = 8000,
    *,
    tone_ms: float = 100.0,
    gap_ms: float = 100.0,
) -> PcmArray:
    """Render a DTMF digit string (Twilio ``<Play digits>`` / ``sendDigits``) as in-band int16 PCM.

    Each key sounds for ``tone_ms`` (generated by :func:`trunkline.media.dtmf.generate_dtmf`)
    followed by ``gap_ms`` of silence (Q.24 asks for at least 40 ms of each).  ``w``
    inserts a 0.5 s pause and ``W`` a 1 s pause, as in Twilio.  Unknown characters
    raise :class:`~trunkline.media.dtmf.DtmfError` (a ``ValueError``).
    """
    parts: list[PcmArray] = []
    gap = silence(gap_ms / 1000.0, sample_rate)
    for ch in digits:
        if ch == "w":
            parts.append(silence(0.5, sample_rate))
        elif ch == "W":
            parts.append(silence(1.0, sample_rate))
        else:
            parts.append(generate_dtmf(ch, tone_ms, sample_rate))
            parts.append(gap)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def tone_source(name: str, sample_rate: int = 8000, seconds: float | None = None) -> ToneSource:
    """A source for a named tone from :data:`TONES` (or ``dtmf-<key>``), as TwiML's channel names them.

    ``beep`` lasts :data:`BEEP_SECONDS` unless ``seconds`` says otherwise; other
    tones run until stopped when ``seconds`` is ``None``.  Unknown names raise ``ValueError``.
    """
    if name.startswith("dtmf-"):
        spec = dtmf_spec(name[5:])
    elif name in TONES:
        spec = TONES[name]
    else:
        raise ValueError(f"unknown tone {name!r}; known: {', '.join(sorted(TONES))}, dtmf-<key>")
    if seconds is None and spec is BEEP:
        seconds = BEEP_SECONDS
    return ToneSource(spec, sample_rate, duration=seconds)
