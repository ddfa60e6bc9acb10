"""In-band DTMF detection (ITU-T Q.23 / Q.24) for many 8 kHz streams at once, and generation.

Detection runs a Goertzel-equivalent filter bank (one matrix product per 20 ms tick for all
streams) over Hann-windowed 20 ms analysis windows advanced every 5 ms (four per frame). For
each window and stream it measures the 8 DTMF frequencies and their second harmonics, then a
window "shows digit d" when all of these hold:

* each of the strongest row and column tones is at least ``min_level_dbm0``;
* the frequency of both tones, estimated from the phase advance between consecutive windows
  (unambiguous within +-100 Hz), is within ``max_freq_deviation`` of nominal: Q.24 requires
  accepting 1.5 % and rejecting 3.5 %, the default threshold is 2.5 %;
* twist (column level minus row level) is at most ``max_forward_twist_db`` (high group
  louder, Q.24: accept 8 dB) and at least ``-max_reverse_twist_db`` (Q.24: accept 4 dB); the
  defaults add a 0.5 dB guard to both;
* the two tones carry at least ``min_tone_ratio`` of the window's energy (speech and noise
  spread energy elsewhere), the runner-up in each group is ``min_group_margin_db`` weaker, and
  the second harmonics are ``min_harmonic_margin_db`` below their fundamentals (a harmonic
  probe that falls within 150 Hz of the column tone is skipped, because that tone leaks into it).

Timing: consecutive windows showing the same digit form a run. Because periodic Hann windows
at a quarter-window hop sum to a constant, the sum of the window amplitudes over a run divided
by the peak amplitude measures the tone's duration almost exactly, independently of how the
tone is aligned with frames. A run is **reported once, as soon as its duration reaches**
``min_tone_ms`` (35 ms by default, so tones of 40 ms or more are always accepted as Q.24
requires and tones of 30 ms or less are always rejected; the edge windows that only partly
overlap a tone are excluded and compensated for). A run ends after ``pause_windows``
consecutive windows (20 ms) not showing its digit, so a 40 ms pause always separates two
presses of the same key while a 10 ms dropout does not. An event is returned by the
``process`` call whose frame ends 39-59 ms after the tone started (measured over alignments).

Levels are in dBm0 with a full-scale int16 sine at +3.14 dBm0 (ITU-T G.711 A-law overload).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DTMF_COLS", "DTMF_DIGITS", "DTMF_ROWS", "DtmfDetector", "DtmfError", "generate_dtmf"]

# ITU-T Q.23 section 2: low (row) and high (column) group frequencies in Hz.
DTMF_ROWS = (697.0, 770.0, 852.0, 941.0)
DTMF_COLS = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_DIGITS = "123A456B789C*0#D"  # index = row * 4 + column
_DIGIT_POS = {d: (i // 4, i % 4) for i, d in enumerate(DTMF_DIGITS)}

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160
WINDOW = 160  # 20 ms analysis window
HOP = 40  # 5 ms
_HOPS_PER_FRAME = FRAME_SAMPLES // HOP
_FULL_SCALE_DBM0 = 3.14  # G.711 A-law: a full-scale sine is +3.14 dBm0
_DBM0_AMPLITUDE = 32768.0 * 10.0 ** (-_FULL_SCALE_DBM0 / 20.0)  # peak of a 0 dBm0 sine
_HARMONIC_GUARD_HZ = 150.0
# Windows that only partly overlap a tone fail the energy-ratio test, so a run's measured
# duration falls 6-10 ms short of the tone's true duration (measured over all alignments).
_EDGE_LOSS_MS = 10.0

# Untyped alias: numpy's stubs reject several mixed scalar/array calls under strict mypy.
_xp: Any = np


class DtmfError(ValueError):
    """Raised for an unknown digit or frames of the wrong shape or type."""


def _dbm0_to_amplitude(dbm0: float) -> float:
    return float(_DBM0_AMPLITUDE * 10.0 ** (dbm0 / 20.0))


def generate_dtmf(
    digit: str,
    duration_ms: float,
    sample_rate: int = 8000,
    amplitude_dbm0: float = -10.0,
    twist_db: float = 0.0,
) -> npt.NDArray[np.int16]:
    """Synthesize one DTMF digit (``0-9 * # A-D``) as int16 PCM.

    ``amplitude_dbm0`` is the level of *each* of the two tones (Q.23 recommends about -10 dBm0
    or less per frequency); ``twist_db`` raises the high-group tone above the low-group one.
    """
    try:
        row, col = _DIGIT_POS[digit.upper()]
    except KeyError:
        raise DtmfError(f"not a DTMF digit: {digit!r}") from None
    if duration_ms < 0 or sample_rate <= 0:
        raise DtmfError(f"invalid duration {duration_ms} ms or sample rate {sample_rate}")
    n = round(duration_ms * sample_rate / 1000.0)
    t = np.arange(n, dtype=np.float64) / sample_rate
    low = _dbm0_to_amplitude(amplitude_dbm0)
    high = _dbm0_to_amplitude(amplitude_dbm0 + twist_db)
    wave = low * np.sin(2 * np.pi * DTMF_ROWS[row] * t) + high * np.sin(2 * np.pi * DTMF_COLS[col] * t)
    out: npt.NDArray[np.int16] = _xp.clip(np.round(wave), -32768, 32767).astype(np.int16)
    return out


def _hann_response(delta_bins: Any) -> Any:
    """Magnitude of the Hann window's spectrum ``delta_bins`` bins off centre (1 at 0)."""
    d = _xp.asarray(delta_bins, dtype=np.float64)
    denom = 1.0 - d * d
    safe = _xp.where(_xp.abs(denom) < 1e-9, 1.0, denom)
    return _xp.where(_xp.abs(denom) < 1e-9, 0.5, _xp.abs(_xp.sinc(d) / safe))


class DtmfDetector:
    """DTMF detector holding state for ``n_streams`` independent 8 kHz streams.

    Call :meth:`process` once per 20 ms tick with one frame per stream; it returns
    ``(stream_index, digit)`` pairs, each key press reported once (see module docstring).
    """

    def __init__(
        self,
        n_streams: int,
        *,
        min_level_dbm0: float = -32.0,
        max_freq_deviation: float = 0.025,
        max_forward_twist_db: float = 8.5,
        max_reverse_twist_db: float = 4.5,
        min_tone_ratio: float = 0.75,
        min_group_margin_db: float = 6.0,
        min_harmonic_margin_db: float = 10.0,
        min_tone_ms: float = 35.0,
        pause_windows: int = 4,
    ) -> None:
        if n_streams < 1:
            raise DtmfError(f"n_streams must be positive, got {n_streams}")
        self.n_streams = n_streams
        self.min_amplitude = _dbm0_to_amplitude(min_level_dbm0)
        self.max_freq_deviation = max_freq_deviation
        self.max_forward_twist_db = max_forward_twist_db
        self.max_reverse_twist_db = max_reverse_twist_db
        self.min_tone_ratio = min_tone_ratio
        self.min_group_margin = 10.0 ** (min_group_margin_db / 10.0)
        self.min_harmonic_margin = 10.0 ** (min_harmonic_margin_db / 10.0)
        self.min_tone_samples = max(min_tone_ms - _EDGE_LOSS_MS, 5.0) * SAMPLE_RATE / 1000.0
        self.pause_windows = pause_windows

        fundamentals = np.array(DTMF_ROWS + DTMF_COLS)
        n = np.arange(WINDOW)
        self._window = (0.5 - 0.5 * np.cos(2 * np.pi * n / WINDOW)).astype(np.float64)  # periodic Hann
        self._win_sum = float(self._window.sum())  # 80
        self._win_sq_sum = float((self._window**2).sum())  # 60
        self._window32 = self._window.astype(np.float32)
        # X(f) = sum x[n] w[n] exp(-j 2 pi f n / fs): cosine part then (negated) sine part; the
        # window is applied to the samples, once for the spectrum and the energy. Second
        # harmonics are only evaluated for the few windows that pass every other check.
        self._basis = self._dft_basis(fundamentals)
        self._harm_basis = self._dft_basis(2.0 * fundamentals)
        self._hop_phase = 2 * np.pi * fundamentals * HOP / SAMPLE_RATE
        self._bin_hz = SAMPLE_RATE / WINDOW  # 50 Hz
        # Harmonic probes usable for each (row, col): those far from the column tone.
        row_h = 2.0 * np.array(DTMF_ROWS)
        self._row_harm_ok = np.abs(row_h[:, None] - np.array(DTMF_COLS)[None, :]) >= _HARMONIC_GUARD_HZ

        self._history = np.zeros((n_streams, WINDOW - HOP), dtype=np.float32)
        self._prev = np.zeros((n_streams, 8), dtype=np.complex64)
        self._cur = np.full(n_streams, -1, dtype=np.int16)
        self._run_sum = np.zeros(n_streams)
        self._run_max = np.zeros(n_streams)
        self._reported = np.zeros(n_streams, dtype=bool)
        self._miss = np.zeros(n_streams, dtype=np.int32)

    def reset(self, stream: int | None = None) -> None:
        """Forget the state of one stream (e.g. when its slot is reused), or of all streams."""
        idx: Any = slice(None) if stream is None else stream
        self._history[idx] = 0.0
        self._prev[idx] = 0.0
        self._cur[idx] = -1
        self._run_sum[idx] = 0.0
        self._run_max[idx] = 0.0
        self._reported[idx] = False
        self._miss[idx] = 0

    def resize(self, n_streams: int) -> None:
        """Change the number of streams; existing streams keep their state, new ones start clean."""
        if n_streams < 1:
            raise DtmfError(f"n_streams must be positive, got {n_streams}")
        keep = min(n_streams, self.n_streams)

        def grow(old: Any, fill: Any) -> Any:
            new = _xp.full((n_streams, *old.shape[1:]), fill, dtype=old.dtype)
            new[:keep] = old[:keep]
            return new

        self._history = grow(self._history, 0.0)
        self._prev = grow(self._prev, 0.0)
        self._cur = grow(self._cur, -1)
        self._run_sum = grow(self._run_sum, 0.0)
        self._run_max = grow(self._run_max, 0.0)
        self._reported = grow(self._reported, False)
        self._miss = grow(self._miss, 0)
        self.n_streams = n_streams

    @staticmethod
    def _dft_basis(freqs: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        phase = 2 * np.pi * np.outer(np.arange(WINDOW), freqs) / SAMPLE_RATE
        return np.concatenate([np.cos(phase), -np.sin(phase)], axis=1).astype(np.float32)

    def process(self, frames: npt.NDArray[np.int16]) -> list[tuple[int, str]]:
        """Analyse one 20 ms frame per stream, shape ``(n_streams, 160)`` int16.

        Returns the digits confirmed during this frame as ``(stream_index, digit)`` in time
        order.
        """
        if frames.dtype != np.int16 or frames.shape != (self.n_streams, FRAME_SAMPLES):
            raise DtmfError(
                f"expected int16 frames of shape ({self.n_streams}, {FRAME_SAMPLES}), "
                f"got {frames.dtype} {frames.shape}"
            )
        s = self.n_streams
        buf = np.concatenate([self._history, frames.astype(np.float32)], axis=1)
        self._history = buf[:, -(WINDOW - HOP) :].copy()
        # (n, 4, 160): windows ending 40, 80, 120 and 160 samples into this frame.
        windows = np.lib.stride_tricks.sliding_window_view(buf, WINDOW, axis=1)[:, ::HOP]
        weighted = (windows * self._window32).reshape(-1, WINDOW)
        y = weighted @ self._basis
        spec = (y[:, :8] + 1j * y[:, 8:]).reshape(s, _HOPS_PER_FRAME, 8)
        prev = np.concatenate([self._prev[:, None, :], spec[:, :-1, :]], axis=1)
        self._prev = spec[:, -1, :].copy()
        energy = np.einsum("ij,ij->i", weighted, weighted)
        digit, amp = self._classify(spec.reshape(-1, 8), prev.reshape(-1, 8), energy, weighted)
        digit = digit.reshape(s, _HOPS_PER_FRAME)
        amp = amp.reshape(s, _HOPS_PER_FRAME)

        events: list[tuple[int, str]] = []
        for w in range(_HOPS_PER_FRAME):
            for stream in self._advance(digit[:, w], amp[:, w]):
                events.append((int(stream), DTMF_DIGITS[int(self._cur[stream])]))
        return events

    def _classify(self, spec: Any, prev: Any, energy: Any, weighted: Any) -> tuple[Any, Any]:
        """Per window: digit index shown (-1 if none) and its tone amplitude."""
        power = (spec.real**2 + spec.imag**2).astype(np.float64)
        low, high = power[:, 0:4], power[:, 4:8]
        row = _xp.argmax(low, axis=1)
        col = _xp.argmax(high, axis=1)
        ar = _xp.arange(power.shape[0])
        p_row, p_col = low[ar, row], high[ar, col]
        second_row = _xp.sort(low, axis=1)[:, -2]
        second_col = _xp.sort(high, axis=1)[:, -2]

        # Frequency from the phase advance over one hop (40 samples), unambiguous to +-100 Hz.
        ri, ci = row, col + 4
        adv_r = _xp.angle(spec[ar, ri] * _xp.conj(prev[ar, ri])) - self._hop_phase[ri]
        adv_c = _xp.angle(spec[ar, ci] * _xp.conj(prev[ar, ci])) - self._hop_phase[ci]
        hz_per_rad = SAMPLE_RATE / (2 * np.pi * HOP)
        off_r = _xp.angle(_xp.exp(1j * adv_r)) * hz_per_rad
        off_c = _xp.angle(_xp.exp(1j * adv_c)) * hz_per_rad
        f_row = _xp.asarray(DTMF_ROWS)[row]
        f_col = _xp.asarray(DTMF_COLS)[col]
        freq_ok = (_xp.abs(off_r) <= self.max_freq_deviation * f_row) & (
            _xp.abs(off_c) <= self.max_freq_deviation * f_col
        )

        # Tone amplitudes, corrected for the window response at the estimated offset.
        amp_r = 2 * _xp.sqrt(p_row) / (self._win_sum * _hann_response(off_r / self._bin_hz))
        amp_c = 2 * _xp.sqrt(p_col) / (self._win_sum * _hann_response(off_c / self._bin_hz))
        level_ok = (amp_r >= self.min_amplitude) & (amp_c >= self.min_amplitude)
        twist_db = 20 * _xp.log10(_xp.maximum(amp_c, 1e-9) / _xp.maximum(amp_r, 1e-9))
        twist_ok = (twist_db <= self.max_forward_twist_db) & (twist_db >= -self.max_reverse_twist_db)

        tone_energy = (amp_r**2 + amp_c**2) / 2 * self._win_sq_sum
        ratio_ok = tone_energy >= self.min_tone_ratio * _xp.maximum(energy, 1e-9)
        group_ok = (second_row * self.min_group_margin <= p_row) & (
            second_col * self.min_group_margin <= p_col
        )
        valid = freq_ok & level_ok & twist_ok & ratio_ok & group_ok

        # Second harmonics (speech is rich in them), only where everything else passed.
        cand = _xp.nonzero(valid)[0]
        if cand.size:
            hy = weighted[cand] @ self._harm_basis
            hpow = hy[:, :8].astype(np.float64) ** 2 + hy[:, 8:].astype(np.float64) ** 2
            r, c = row[cand], col[cand]
            sub = _xp.arange(cand.size)
            harm_row, harm_col = hpow[sub, r], hpow[sub, 4 + c]
            harm_ok = (harm_col * self.min_harmonic_margin <= p_col[cand]) & (
                ~self._row_harm_ok[r, c] | (harm_row * self.min_harmonic_margin <= p_row[cand])
            )
            valid[cand] = harm_ok
        digit = _xp.where(valid, row * 4 + col, -1)
        return digit, amp_r + amp_c

    def _advance(self, digit: Any, amp: Any) -> Any:
        """Update the per-stream run state with one window; return streams confirmed now."""
        active = self._cur >= 0
        same = active & (digit == self._cur)
        self._run_sum[same] += amp[same]
        self._run_max[same] = _xp.maximum(self._run_max[same], amp[same])
        self._miss[same] = 0
        self._miss[active & ~same] += 1
        ended = active & (self._miss >= self.pause_windows)
        self._cur[ended] = -1
        start = (self._cur < 0) & (digit >= 0)
        self._cur[start] = digit[start]
        self._run_sum[start] = amp[start]
        self._run_max[start] = amp[start]
        self._reported[start] = False
        self._miss[start] = 0
        active = self._cur >= 0
        duration = HOP * self._run_sum / _xp.maximum(self._run_max, 1e-9)
        confirm = active & ~self._reported & (duration >= self.min_tone_samples)
        self._reported[confirm] = True
        return _xp.nonzero(confirm)[0]
