"""G.722 (ITU-T G.722 SB-ADPCM, 64 kbit/s) through PyAV's FFmpeg ``g722`` codec.

The codec samples at 16 kHz, but RFC 3551 section 4.5.2 fixes its RTP clock rate at 8000
for historical reasons: one 20 ms frame is 320 PCM samples, 160 payload bytes and an RTP
timestamp step of 160. FFmpeg's encoder is sample-exact (one 160-byte packet per 320
samples); the SB-ADPCM QMF filters delay the decoded signal by 22 samples.

``conceal`` has no codec-level PLC to call (G.722 Appendix III/IV are not in FFmpeg): it
repeats the last 10 ms of decoded audio with a fade to silence over 60 ms, like the G.711
concealment, and the ADPCM state simply continues with the next packet.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.audio.frame import AudioFrame

from trunkline.codecs.base import CodecError, Decoder, Encoder, PcmArray

__all__ = ["G722_DELAY_SAMPLES", "G722Decoder", "G722Encoder"]

_xp: Any = np  # untyped alias: numpy stubs reject clip(array, float, float) under strict mypy

G722_RATE = 16000
G722_FRAME = 320
G722_DELAY_SAMPLES = 22


class G722Encoder(Encoder):
    """Per-stream G.722 encoder: 320 int16 samples at 16 kHz -> 160 bytes."""

    def __init__(self, **fmtp: Any) -> None:
        if fmtp:
            raise CodecError(f"G.722 takes no parameters, got {sorted(fmtp)}")
        super().__init__(G722_RATE, 1, G722_FRAME)
        ctx: Any = av.CodecContext.create("g722", "w")
        ctx.sample_rate = G722_RATE
        ctx.layout = "mono"
        ctx.format = "s16"
        ctx.time_base = Fraction(1, G722_RATE)
        ctx.open()
        self._ctx = ctx
        self._pts = 0

    def encode(self, pcm: PcmArray) -> bytes:
        """Encode one 20 ms frame (320 samples) into 160 bytes."""
        pcm = self._check_pcm(pcm)
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = G722_RATE
        frame.pts = self._pts
        self._pts += G722_FRAME
        return b"".join(bytes(p) for p in self._ctx.encode(frame))


class G722Decoder(Decoder):
    """Per-stream G.722 decoder: each payload byte yields two 16 kHz samples."""

    HISTORY_SAMPLES = 160  # 10 ms at 16 kHz
    FADE_SAMPLES = 960  # 60 ms at 16 kHz

    def __init__(self, **fmtp: Any) -> None:
        if fmtp:
            raise CodecError(f"G.722 takes no parameters, got {sorted(fmtp)}")
        super().__init__(G722_RATE, 1, G722_FRAME)
        ctx: Any = av.CodecContext.create("g722", "r")
        ctx.sample_rate = G722_RATE
        ctx.layout = "mono"
        ctx.open()
        self._ctx = ctx
        self._history = np.zeros(self.HISTORY_SAMPLES, dtype=np.int16)
        self._erased = 0

    def decode(self, payload: bytes) -> PcmArray:
        """Decode a payload of any length into ``2 * len(payload)`` samples."""
        if not payload:
            raise CodecError("empty G.722 payload (use conceal() for a lost packet)")
        frames = self._ctx.decode(av.Packet(payload))
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)
        if pcm.size != 2 * len(payload):
            raise CodecError(f"G.722 decoder returned {pcm.size} samples for {len(payload)} bytes")
        self._erased = 0
        h = self.HISTORY_SAMPLES
        self._history = pcm[-h:].copy() if pcm.size >= h else np.concatenate([self._history[pcm.size :], pcm])
        return pcm

    def conceal(self, n_samples: int) -> PcmArray:
        """Faded repetition of the last 10 ms of decoded audio."""
        pos: Any = self._erased + np.arange(n_samples)
        gain: Any = _xp.clip(1.0 - pos / self.FADE_SAMPLES, 0.0, 1.0)
        self._erased += n_samples
        wave: Any = self._history[pos % self.HISTORY_SAMPLES].astype(np.float32)
        out: PcmArray = np.round(wave * gain).astype(np.int16)
        return out
