"""PyAV resampling: exact frame sizes, constant delay, continuity across frames."""

from __future__ import annotations

import numpy as np
import pytest

from tests.codecs._signals import sine
from trunkline.codecs.base import CodecError
from trunkline.codecs.resample import Resampler

PAIRS = [(8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000), (16000, 48000), (48000, 16000)]


def sine_fit_residual(y: np.ndarray, freq: float, rate: int) -> float:
    """RMS of what is left after the best least-squares fit of a sine of ``freq``."""
    t = np.arange(len(y)) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t), np.ones_like(t)], 1)
    coef, *_ = np.linalg.lstsq(basis, y.astype(np.float64), rcond=None)
    return float(np.sqrt(np.mean((y - basis @ coef) ** 2)))


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_exact_frames_and_continuous_sine(src: int, dst: int) -> None:
    r = Resampler(src, dst)
    n_in, n_out = src // 50, dst // 50
    pcm = sine(440, n_in * 40, src, amplitude=10000)
    frames = [r.process(pcm[i * n_in : (i + 1) * n_in]) for i in range(40)]
    assert all(f.shape == (n_out,) and f.dtype == np.int16 for f in frames)
    out = np.concatenate(frames[3:])  # past the zero priming and filter start-up
    # A click at any frame boundary would leave a residual far above rounding noise.
    assert sine_fit_residual(out, 440, dst) < 5  # measured ~0.3; a one-sample slip gives >100
    assert abs(np.sqrt(2) * out.astype(float).std() - 10000) < 200
    assert 0 <= r.delay_samples < n_out


def test_delay_matches_priming() -> None:
    r = Resampler(8000, 48000)
    pulse = np.zeros(160, np.int16)
    pulse[0] = 20000
    out = np.concatenate([r.process(pulse), r.process(np.zeros(160, np.int16))])
    # The impulse appears after the priming zeros plus the filter's own group delay.
    assert int(np.argmax(np.abs(out))) >= r.delay_samples


def test_stereo_and_passthrough() -> None:
    r = Resampler(48000, 16000, channels=2)
    pcm = np.stack([sine(300, 960, 48000), sine(900, 960, 48000)], 1)
    assert r.process(pcm).shape == (320, 2)
    same = Resampler(8000, 8000)
    x = sine(300, 160, 8000)
    assert np.array_equal(same.process(x), x)


def test_errors() -> None:
    with pytest.raises(CodecError, match="unsupported sample rate"):
        Resampler(44100, 8000)
    with pytest.raises(CodecError, match="shape"):
        Resampler(8000, 16000).process(np.zeros(320, np.int16))
