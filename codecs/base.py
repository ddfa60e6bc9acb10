"""Abstract encoder/decoder base shared by every codec, and the static codec description.

Audio crossing this interface is always 16-bit linear PCM held in numpy ``int16`` arrays:
shape ``(frame_samples,)`` for mono and ``(frame_samples, channels)`` (interleaved order) for
stereo. Payloads are the bytes carried in one RTP packet.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

PcmArray = npt.NDArray[np.int16]

__all__ = ["CodecError", "CodecInfo", "Decoder", "Encoder", "PcmArray"]


class CodecError(ValueError):
    """Raised for malformed payloads, PCM of the wrong shape or an unknown codec name."""


def _frozen_fmtp(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """What SDP negotiation and the media engine need to know about one codec.

    ``sdp_name`` is the canonical ``encoding/clock[/channels]`` string of an ``a=rtpmap`` line
    (RFC 4566 section 6), ``clock_rate`` the RTP timestamp rate and ``sample_rate`` the rate of
    the PCM the codec consumes; they differ for G.722 (RFC 3551 section 4.5.2).
    """

    sdp_name: str
    encoding: str
    clock_rate: int
    sample_rate: int
    channels: int
    payload_type: int | None
    frame_ms: int = 20
    default_fmtp: Mapping[str, str] = field(default_factory=lambda: _frozen_fmtp({}))

    @property
    def frame_samples(self) -> int:
        """PCM samples per channel in one frame at ``sample_rate``."""
        return self.sample_rate * self.frame_ms // 1000

    @property
    def timestamp_step(self) -> int:
        """RTP timestamp increment per frame (at ``clock_rate``)."""
        return self.clock_rate * self.frame_ms // 1000

    def fmtp_line(self) -> str:
        """The default parameters formatted for an ``a=fmtp`` attribute (empty if none)."""
        return ";".join(f"{k}={v}" if v else k for k, v in self.default_fmtp.items())


class _CodecShape:
    """Sample rate / channels / frame size shared by encoders and decoders."""

    def __init__(self, sample_rate: int, channels: int, frame_samples: int) -> None:
        self._sample_rate = sample_rate
        self._channels = channels
        self._frame_samples = frame_samples

    @property
    def sample_rate(self) -> int:
        """PCM sample rate in Hz."""
        return self._sample_rate

    @property
    def channels(self) -> int:
        """Number of interleaved channels."""
        return self._channels

    @property
    def frame_samples(self) -> int:
        """Samples per channel in one 20 ms frame."""
        return self._frame_samples

    def _pcm_shape(self, n_samples: int) -> tuple[int, ...]:
        return (n_samples,) if self._channels == 1 else (n_samples, self._channels)

    def _check_pcm(self, pcm: npt.NDArray[np.generic]) -> PcmArray:
        expected = self._pcm_shape(self._frame_samples)
        if pcm.dtype != np.int16:
            raise CodecError(f"PCM must be int16, got {pcm.dtype}")
        if pcm.shape != expected:
            raise CodecError(f"PCM frame must have shape {expected}, got {pcm.shape}")
        return pcm  # type: ignore[return-value]


class Encoder(_CodecShape, abc.ABC):
    """Turns one frame of PCM into one RTP payload."""

    @abc.abstractmethod
    def encode(self, pcm: PcmArray) -> bytes:
        """Encode exactly one frame (``frame_samples`` per channel) into a payload.

        An empty result means "nothing to send for this frame" (discontinuous transmission).
        """


class Decoder(_CodecShape, abc.ABC):
    """Turns RTP payloads back into PCM and hides lost packets."""

    @abc.abstractmethod
    def decode(self, payload: bytes) -> PcmArray:
        """Decode one payload into PCM (normally one frame)."""

    @abc.abstractmethod
    def conceal(self, n_samples: int) -> PcmArray:
        """Produce ``n_samples`` per channel of packet-loss concealment for a missing payload."""
