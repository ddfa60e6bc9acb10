"""Opus (RFC 6716, RTP payload RFC 7587) through PyAV's libopus bindings.

Framing: every ``encode`` call takes exactly one 20 ms frame (960 samples per channel at
48 kHz) and returns exactly one packet; libopus reports 312 samples (6.5 ms) of algorithmic
delay as a negative first pts, which is absorbed here so timestamps stay frame-aligned. The
decoder returns 960 samples per channel per packet (no pre-skip trimming, since RTP has no
Ogg header), so the end-to-end delay is a constant ``OPUS_DELAY_SAMPLES``.

What the bundled FFmpeg exposes and what it does not:

* bitrate, ``application``, in-band FEC (``fec`` + ``packet_loss`` percentage) are libopusenc
  options and are passed through.
* DTX is *not* an option of this FFmpeg's libopusenc, so ``dtx=True`` is done here: after
  ``DTX_HANGOVER`` frames of digital near-silence the encoder returns ``b""`` (send nothing,
  RFC 7587 section 3.1.3), except one packet every ``DTX_REFRESH`` frames to refresh comfort
  noise at the far end.
* PLC: FFmpeg treats an empty packet as "flush", so ``conceal`` feeds the decoder a one-byte
  packet carrying only the last TOC byte: a zero-length frame, which libopus decodes as a lost
  frame (RFC 6716 section 3.2.1, "a 1-byte code 0 packet"), i.e. genuine Opus PLC.
* FEC decoding (``opus_decode(..., decode_fec=1)`` on the next packet) is not reachable
  through libopusdec in FFmpeg, so a lost packet is concealed with PLC and the FEC data in the
  following packet is ignored on receive.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.audio.frame import AudioFrame

from trunkline.codecs.base import CodecError, Decoder, Encoder, PcmArray

__all__ = ["OPUS_DELAY_SAMPLES", "OpusDecoder", "OpusEncoder"]

OPUS_RATE = 48000
OPUS_FRAME = 960
OPUS_DELAY_SAMPLES = 312
_LAYOUTS = {1: "mono", 2: "stereo"}
_APPLICATIONS = ("voip", "audio", "lowdelay")


def _layout(channels: int) -> str:
    try:
        return _LAYOUTS[channels]
    except KeyError:
        raise CodecError(f"Opus supports 1 or 2 channels here, got {channels}") from None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class OpusEncoder(Encoder):
    """One libopus encoder for one RTP stream (48 kHz, 20 ms frames).

    ``fec`` enables in-band forward error correction (RFC 6716 section 2.1.7), sized for the
    expected ``packet_loss`` percentage. Extra keyword arguments named like the RFC 7587
    section 7 fmtp parameters (``maxaveragebitrate``, ``useinbandfec``, ``usedtx``,
    ``stereo``) are understood so SDP fmtp can be passed straight through.
    """

    DTX_HANGOVER = 10
    DTX_REFRESH = 20
    DTX_THRESHOLD = 64  # peak magnitude below which a frame counts as silence

    def __init__(
        self,
        channels: int = 1,
        bitrate: int = 32000,
        *,
        fec: bool = False,
        packet_loss: int = 0,
        dtx: bool = False,
        application: str = "voip",
        **fmtp: Any,
    ) -> None:
        if "maxaveragebitrate" in fmtp:
            bitrate = int(fmtp.pop("maxaveragebitrate"))
        if "useinbandfec" in fmtp:
            fec = _truthy(fmtp.pop("useinbandfec"))
        if "usedtx" in fmtp:
            dtx = _truthy(fmtp.pop("usedtx"))
        for ignored in ("stereo", "sprop-stereo", "minptime", "ptime", "maxplaybackrate"):
            fmtp.pop(ignored, None)
        if fmtp:
            raise CodecError(f"unknown Opus parameters: {sorted(fmtp)}")
        if application not in _APPLICATIONS:
            raise CodecError(f"Opus application must be one of {_APPLICATIONS}, got {application!r}")
        if not 6000 <= bitrate <= 510000:
            raise CodecError(f"Opus bitrate must be 6000..510000 bit/s, got {bitrate}")
        if not 0 <= packet_loss <= 100:
            raise CodecError(f"packet_loss must be a percentage, got {packet_loss}")
        super().__init__(OPUS_RATE, channels, OPUS_FRAME)
        self._layout = _layout(channels)
        ctx: Any = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = OPUS_RATE
        ctx.layout = self._layout
        ctx.format = "s16"
        ctx.bit_rate = bitrate
        ctx.time_base = Fraction(1, OPUS_RATE)
        ctx.options = {
            "application": application,
            "frame_duration": "20",
            "fec": "1" if fec else "0",
            "packet_loss": str(packet_loss),
        }
        ctx.open()
        self._ctx = ctx
        self._pts = 0
        self.dtx = dtx
        self.bitrate = bitrate
        self._silent_frames = 0

    def encode(self, pcm: PcmArray) -> bytes:
        """Encode one 20 ms frame; returns one packet, or ``b""`` for a DTX frame."""
        pcm = self._check_pcm(pcm)
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=self._layout)
        frame.sample_rate = OPUS_RATE
        frame.pts = self._pts
        self._pts += OPUS_FRAME
        packets = self._ctx.encode(frame)
        if len(packets) != 1:
            raise CodecError(f"libopus returned {len(packets)} packets for one frame")
        payload = bytes(packets[0])
        if self.dtx:
            if int(np.abs(pcm.astype(np.int32)).max()) < self.DTX_THRESHOLD:
                self._silent_frames += 1
            else:
                self._silent_frames = 0
            quiet = self._silent_frames - self.DTX_HANGOVER
            if quiet > 0 and quiet % self.DTX_REFRESH != 0:
                return b""
        return payload


class OpusDecoder(Decoder):
    """One libopus decoder for one RTP stream; returns 960 samples per channel per packet."""

    def __init__(self, channels: int = 1, **fmtp: Any) -> None:
        for ignored in (
            "stereo",
            "sprop-stereo",
            "useinbandfec",
            "usedtx",
            "maxaveragebitrate",
            "minptime",
            "ptime",
            "maxplaybackrate",
            "sprop-maxcapturerate",
        ):
            fmtp.pop(ignored, None)
        if fmtp:
            raise CodecError(f"unknown Opus parameters: {sorted(fmtp)}")
        super().__init__(OPUS_RATE, channels, OPUS_FRAME)
        self._layout = _layout(channels)
        ctx: Any = av.CodecContext.create("libopus", "r")
        ctx.sample_rate = OPUS_RATE
        ctx.layout = self._layout
        ctx.format = "s16"
        ctx.open()
        self._ctx = ctx
        self._toc: int | None = None

    def decode(self, payload: bytes) -> PcmArray:
        """Decode one Opus packet (RFC 6716 section 3) to interleaved int16 PCM."""
        if not payload:
            raise CodecError("empty Opus packet (use conceal() for a lost packet)")
        try:
            pcm = self._run(payload)
        except av.error.FFmpegError as exc:
            raise CodecError(f"invalid Opus packet ({len(payload)} bytes): {exc}") from exc
        self._toc = payload[0] & 0xFC  # keep config + stereo bit, code 0 (one frame)
        return pcm

    def conceal(self, n_samples: int) -> PcmArray:
        """Run libopus packet-loss concealment for ``n_samples`` per channel (20 ms steps)."""
        if n_samples <= 0:
            return np.zeros(self._pcm_shape(0), dtype=np.int16)
        if self._toc is None:
            return np.zeros(self._pcm_shape(n_samples), dtype=np.int16)
        parts: list[PcmArray] = []
        have = 0
        while have < n_samples:
            part = self._run(bytes([self._toc]))
            parts.append(part)
            have += part.shape[0]
        return np.concatenate(parts)[:n_samples]

    def _run(self, payload: bytes) -> PcmArray:
        frames = self._ctx.decode(av.Packet(payload))
        if not frames:
            return np.zeros(self._pcm_shape(0), dtype=np.int16)
        data = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
        if data.dtype != np.int16:
            raise CodecError(f"libopus produced {data.dtype} instead of s16")
        return data.reshape(self._pcm_shape(data.size // self.channels))
