"""Stateful per-stream resampling between 8, 16 and 48 kHz through PyAV (libswresample).

A :class:`Resampler` takes one 20 ms frame at ``in_rate`` and returns exactly one 20 ms
frame at ``out_rate``. libswresample keeps its filter history between calls, so a signal is
continuous across frame boundaries. Its filter delay means the first call yields fewer
samples than a full frame; the shortfall is primed with zeros once, at the start, so the
stream is delayed by a constant ``delay_samples`` (output-rate samples, measured on the
first frame) and every later frame is exact.
"""

from __future__ import annotations

import numpy as np
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler

from trunkline.codecs.base import CodecError, PcmArray

__all__ = ["SUPPORTED_RATES", "Resampler"]

SUPPORTED_RATES = (8000, 16000, 48000)
_LAYOUTS = {1: "mono", 2: "stereo"}


class Resampler:
    """Resample one mono or stereo int16 stream frame by frame, without clicks."""

    def __init__(self, in_rate: int, out_rate: int, channels: int = 1, frame_ms: int = 20) -> None:
        for rate in (in_rate, out_rate):
            if rate not in SUPPORTED_RATES:
                raise CodecError(f"unsupported sample rate {rate} (expected one of {SUPPORTED_RATES})")
        if channels not in _LAYOUTS:
            raise CodecError(f"channels must be 1 or 2, got {channels}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.channels = channels
        self.in_samples = in_rate * frame_ms // 1000
        self.out_samples = out_rate * frame_ms // 1000
        self._layout = _LAYOUTS[channels]
        self._resampler = (
            AudioResampler(format="s16", layout=self._layout, rate=out_rate) if in_rate != out_rate else None
        )
        self._fifo = np.zeros((0, channels), dtype=np.int16)
        self._primed = False
        self.delay_samples = 0

    def process(self, pcm: PcmArray) -> PcmArray:
        """Resample one frame; returns ``out_samples`` (per channel) int16 samples."""
        expected = (self.in_samples,) if self.channels == 1 else (self.in_samples, self.channels)
        if pcm.dtype != np.int16 or pcm.shape != expected:
            raise CodecError(f"expected int16 PCM of shape {expected}, got {pcm.dtype} {pcm.shape}")
        if self._resampler is None:
            return pcm.copy()
        frame = AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm).reshape(1, -1), format="s16", layout=self._layout
        )
        frame.sample_rate = self.in_rate
        frame.pts = None
        chunks = [self._fifo]
        for out in self._resampler.resample(frame):
            chunks.append(out.to_ndarray().reshape(-1, self.channels).astype(np.int16, copy=False))
        fifo = np.concatenate(chunks)
        if not self._primed:
            self._primed = True
            self.delay_samples = max(0, self.out_samples - fifo.shape[0])
            fifo = np.concatenate([np.zeros((self.delay_samples, self.channels), np.int16), fifo])
        if fifo.shape[0] < self.out_samples:
            # Never expected after priming; pad rather than return a short frame.
            fifo = np.concatenate(
                [fifo, np.zeros((self.out_samples - fifo.shape[0], self.channels), np.int16)]
            )
        out_frame, self._fifo = fifo[: self.out_samples], fifo[self.out_samples :]
        return out_frame.reshape(-1) if self.channels == 1 else out_frame
