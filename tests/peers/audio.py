"""Audio assertions for end-to-end tests, independent of Trunkline's own codecs.

G.711 is decoded with the standard library's ``audioop`` (deprecated but present in 3.11), so a
test never trusts the product's codec tables to check the product.  Spectra use numpy.

Usage::

    from tests.peers import audio
    from tests.peers.pcap import rtp_payloads

    pcm = audio.decode_pcmu(b"".join(p.payload for p in rtp_payloads("call.pcap") if p.payload_type == 0))
    assert audio.contains_tone(pcm, 8000, 1000.0)
    assert abs(audio.dominant_frequency(pcm, 8000) - 1000.0) < 10
    assert audio.rms_dbfs(pcm) > -30
    samples, rate = audio.read_wav("recording.wav")
    match = audio.correlation(reference, samples)     # best-lag normalised cross-correlation
    assert match.coefficient > 0.9

All sample arrays are mono ``numpy.int16`` (or any numeric array; they are converted to float).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import soundfile

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

Samples = npt.NDArray[np.int16]
ArrayLike = npt.ArrayLike

# ITU-T Q.23: DTMF row and column frequencies.
DTMF_ROWS = (697.0, 770.0, 852.0, 941.0)
DTMF_COLS = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")


class Correlation(NamedTuple):
    """Result of :func:`correlation`: the peak normalised coefficient and the lag of ``b``."""

    coefficient: float
    lag: int


# --- G.711 (independent of trunkline.codecs) --------------------------------------------------


def decode_pcmu(data: bytes) -> Samples:
    """Decode G.711 mu-law bytes to int16 samples."""
    return np.frombuffer(audioop.ulaw2lin(bytes(data), 2), dtype="<i2").astype(np.int16)


def decode_pcma(data: bytes) -> Samples:
    """Decode G.711 A-law bytes to int16 samples."""
    return np.frombuffer(audioop.alaw2lin(bytes(data), 2), dtype="<i2").astype(np.int16)


def encode_pcmu(samples: ArrayLike) -> bytes:
    """Encode int16 samples to G.711 mu-law."""
    return audioop.lin2ulaw(np.asarray(samples, dtype="<i2").tobytes(), 2)


def encode_pcma(samples: ArrayLike) -> bytes:
    """Encode int16 samples to G.711 A-law."""
    return audioop.lin2alaw(np.asarray(samples, dtype="<i2").tobytes(), 2)


def decode_g711(data: bytes, payload_type: int) -> Samples:
    """Decode by static RTP payload type (RFC 3551 section 6): 0 = PCMU, 8 = PCMA."""
    if payload_type == 0:
        return decode_pcmu(data)
    if payload_type == 8:
        return decode_pcma(data)
    raise ValueError(f"payload type {payload_type} is not G.711 (expected 0 or 8)")


# --- generation and files -----------------------------------------------------------------------


def tone(
    freq: float | tuple[float, ...], seconds: float, rate: int = 8000, level_dbfs: float = -10.0
) -> Samples:
    """A sine (or a sum of sines, e.g. a DTMF pair) at ``level_dbfs`` peak, as int16."""
    freqs = (freq,) if isinstance(freq, int | float) else tuple(freq)
    t = np.arange(round(seconds * rate)) / rate
    wave: npt.NDArray[np.float64] = np.zeros_like(t)
    for f in freqs:
        wave += np.sin(2 * np.pi * f * t) / len(freqs)
    peak = 32767 * 10 ** (level_dbfs / 20)
    return np.asarray(np.round(wave * peak), dtype=np.int16)


def dtmf_tone(digit: str, seconds: float = 0.1, rate: int = 8000, level_dbfs: float = -10.0) -> Samples:
    """The in-band DTMF pair for ``digit`` (ITU-T Q.23)."""
    for row, keys in enumerate(DTMF_KEYS):
        col = keys.find(digit.upper())
        if col >= 0:
            return tone((DTMF_ROWS[row], DTMF_COLS[col]), seconds, rate, level_dbfs)
    raise ValueError(f"not a DTMF digit: {digit!r}")


def read_wav(path: str | Path) -> tuple[Samples, int]:
    """Read a WAV/FLAC file as mono int16 samples (channels averaged) and its sample rate."""
    data, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.asarray(mono, dtype=np.int16), int(rate)


def write_wav(path: str | Path, samples: ArrayLike, rate: int = 8000) -> None:
    """Write mono int16 PCM WAV."""
    soundfile.write(str(path), np.asarray(samples, dtype=np.int16), rate, subtype="PCM_16")


# --- measurements -------------------------------------------------------------------------------


def _float(samples: ArrayLike) -> npt.NDArray[np.float64]:
    arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {arr.shape}")
    return arr


def rms_dbfs(samples: ArrayLike) -> float:
    """RMS level in dB relative to int16 full scale (20*log10(rms/32768)); -inf for silence."""
    x = _float(samples)
    if x.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(x * x)))
    return 20 * math.log10(rms / 32768.0) if rms > 0 else -math.inf


def _spectrum(samples: ArrayLike, rate: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    x = _float(samples)
    if x.size < 2:
        raise ValueError("need at least 2 samples for a spectrum")
    x = x - x.mean()
    power = np.asarray(np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2, dtype=np.float64)
    freqs = np.asarray(np.fft.rfftfreq(x.size, 1.0 / rate), dtype=np.float64)
    return freqs, power


def dominant_frequency(samples: ArrayLike, rate: int) -> float:
    """Frequency (Hz) of the strongest spectral peak, refined by parabolic interpolation."""
    freqs, power = _spectrum(samples, rate)
    k = int(np.argmax(power[1:])) + 1
    if 1 <= k < power.size - 1:
        a, b, c = np.log(power[k - 1 : k + 2] + 1e-12)
        denom = a - 2 * b + c
        offset = 0.5 * (a - c) / denom if denom != 0 else 0.0
        return float(freqs[k] + offset * (freqs[1] - freqs[0]))
    return float(freqs[k])


def band_energy(samples: ArrayLike, rate: int, f: float, width: float = 50.0) -> float:
    """Fraction (0..1) of the signal's energy within ``f +- width/2`` Hz."""
    freqs, power = _spectrum(samples, rate)
    total = float(power.sum())
    if total <= 0:
        return 0.0
    band = (freqs >= f - width / 2) & (freqs <= f + width / 2)
    return float(power[band].sum()) / total


def contains_tone(
    samples: ArrayLike,
    rate: int,
    f: float,
    *,
    width: float = 60.0,
    min_fraction: float = 0.5,
    min_dbfs: float = -50.0,
) -> bool:
    """True if the signal is louder than ``min_dbfs`` and ``f`` holds ``min_fraction`` of its energy."""
    if rms_dbfs(samples) < min_dbfs:
        return False
    return band_energy(samples, rate, f, width) >= min_fraction


def detect_dtmf(samples: ArrayLike, rate: int = 8000, *, min_fraction: float = 0.6) -> str | None:
    """The DTMF digit whose two frequencies carry ``min_fraction`` of the energy, or None."""
    best: tuple[float, str] | None = None
    for row, keys in enumerate(DTMF_KEYS):
        for col, key in enumerate(keys):
            share = band_energy(samples, rate, DTMF_ROWS[row], 40) + band_energy(
                samples, rate, DTMF_COLS[col], 40
            )
            if best is None or share > best[0]:
                best = (share, key)
    if best is None or best[0] < min_fraction:
        return None
    return best[1]


def correlation(a: ArrayLike, b: ArrayLike, max_lag: int | None = None) -> Correlation:
    """Normalised cross-correlation of ``a`` and ``b`` at the best lag.

    ``lag`` > 0 means ``b`` is delayed by ``lag`` samples relative to ``a``.  The coefficient is
    computed over the overlapping part only (Pearson correlation, -1..1), so a delayed copy of the
    same audio scores close to 1 regardless of the delay.
    """
    x = _float(a)
    y = _float(b)
    if x.size == 0 or y.size == 0:
        raise ValueError("correlation needs two non-empty signals")
    n = x.size + y.size - 1
    size = 1 << (n - 1).bit_length()
    xc = x - x.mean()
    yc = y - y.mean()
    raw = np.fft.irfft(np.conj(np.fft.rfft(xc, size)) * np.fft.rfft(yc, size), size)
    # raw[k] = sum_i x[i] * y[i + k]; negative lags wrap to the end.
    lags: npt.NDArray[np.int64] = np.concatenate(
        [np.arange(0, y.size, dtype=np.int64), np.arange(-(x.size - 1), 0, dtype=np.int64)]
    )
    values = np.concatenate([raw[: y.size], raw[size - (x.size - 1) :]])
    # Normalise by the energies of the overlapping segments (cumulative sums).
    cx = np.concatenate([[0.0], np.cumsum(xc * xc)])
    cy = np.concatenate([[0.0], np.cumsum(yc * yc)])
    start_x = np.minimum(np.maximum(-lags, 0), x.size)
    start_y = np.minimum(np.maximum(lags, 0), y.size)
    overlap = np.minimum(x.size - start_x, y.size - start_y)
    ex = cx[start_x + overlap] - cx[start_x]
    ey = cy[start_y + overlap] - cy[start_y]
    # Ignore tiny overlaps, which correlate by chance.
    min_overlap = max(1, min(x.size, y.size) // 4)
    valid = (overlap >= min_overlap) & (ex > 0) & (ey > 0)
    if max_lag is not None:
        valid &= np.abs(lags) <= max_lag
    if not valid.any():
        return Correlation(0.0, 0)
    coef = np.zeros_like(values)
    coef[valid] = values[valid] / np.sqrt(ex[valid] * ey[valid])
    coef[~valid] = -np.inf
    best = int(np.argmax(coef))
    return Correlation(float(coef[best]), int(lags[best]))
