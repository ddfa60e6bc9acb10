"""Signal helpers shared by the codec tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def sine(freq: float, n: int, rate: int, amplitude: float = 8000.0) -> npt.NDArray[np.int16]:
    t = np.arange(n) / rate
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def chirp(n: int, rate: int, amplitude: float = 6000.0) -> npt.NDArray[np.int16]:
    t = np.arange(n) / rate
    return np.round(amplitude * np.sin(2 * np.pi * (200 * t + 1500 * t**2))).astype(np.int16)


def peak_hz(x: npt.NDArray[np.generic], rate: int) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


def rms(x: npt.NDArray[np.generic]) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def best_lag(y: npt.NDArray[np.generic], x: npt.NDArray[np.generic], max_lag: int, n: int) -> int:
    scores = [float(np.dot(y[k : k + n].astype(np.float64), x[:n])) for k in range(max_lag)]
    return int(np.argmax(scores))
