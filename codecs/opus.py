"""Opus (RFC 6716, RTP payload RFC 7587) through the libopus that PyAV bundles.

Why not PyAV's codec contexts: FFmpeg's libopus decoder always outputs 48 kHz, and wrapping
every 20 ms frame in an ``AudioFrame`` costs about as much as a narrowband encode.  So this
module calls the very ``libopus.so`` shipped in PyAV's wheel (``av.libs/``; a system libopus
as a fallback) through :mod:`ctypes`: ``opus_encode``/``opus_decode`` straight from and into
preallocated int16 buffers.  No codec code is written here.

Sample rate: libopus encodes and decodes 8, 12, 16, 24 and 48 kHz natively (RFC 6716
section 2: the coded bandwidth follows the input rate), and RFC 7587 section 4.1 keeps the
RTP clock at 48000 whatever the audio bandwidth.  A leg bridged to G.711 therefore runs its
encoder and decoder at 8 kHz (16 kHz against G.722) and needs no resampling at all; the
packets and RTP timestamps on the wire are valid Opus at the 48 kHz clock either way (960
timestamp units per 20 ms).  ``sample_rate`` picks the PCM rate (8000, 16000 or 48000).

Framing: every ``encode`` call takes exactly one 20 ms frame (``sample_rate / 50`` samples
per channel) and returns exactly one packet.  The decoder returns one frame per packet (no
pre-skip trimming, since RTP has no Ogg header), so the end-to-end delay is the encoder's
6.5 ms look-ahead: ``opus_delay_samples(rate)`` (``OPUS_DELAY_SAMPLES`` = 312 at 48 kHz).

Settings: bitrate, ``application`` (voip/audio/lowdelay), unconstrained VBR, in-band FEC
(``fec`` + ``packet_loss`` percentage, RFC 6716 section 2.1.7) and ``complexity`` (0-10,
FFmpeg's ``compression_level``).  The default complexity 5 costs about 20-40 % less CPU
than libopus's default 10 for voice at a barely audible difference (WebRTC uses 5-9 on
desktops, lower on mobiles).

* ``dtx=True`` is done here, as before: after ``DTX_HANGOVER`` frames of digital
  near-silence the encoder returns ``b""`` (send nothing, RFC 7587 section 3.1.3), except one
  packet every ``DTX_REFRESH`` frames to refresh comfort noise at the far end.
* PLC: ``conceal`` calls ``opus_decode`` with no data (RFC 6716 section 4.4), genuine Opus
  packet-loss concealment.
* In-band FEC data in the packet after a loss is not used on receive (a lost packet is
  concealed with PLC).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from functools import cache
from typing import Any

import av
import numpy as np

from trunkline.codecs.base import CodecError, Decoder, Encoder, PcmArray

__all__ = [
    "OPUS_DELAY_SAMPLES",
    "OPUS_RATES",
    "OpusDecoder",
    "OpusEncoder",
    "opus_delay_samples",
]

OPUS_RATE = 48000
OPUS_FRAME = 960
OPUS_DELAY_SAMPLES = 312
#: PCM rates the encoder/decoder run at here (RFC 6716 section 2 allows 12 and 24 kHz too).
OPUS_RATES = (8000, 16000, 48000)
DEFAULT_COMPLEXITY = 5
_LAYOUTS = {1: "mono", 2: "stereo"}
_MAX_FRAME_48K = 5760  # 120 ms, the longest Opus packet (RFC 6716 section 3.2.5)
_MAX_PACKET = 1500  # bytes; 20 ms at 510 kbit/s is 1275
# opus_defines.h: applications and encoder CTL requests.
_APPLICATION_CODES = {"voip": 2048, "audio": 2049, "lowdelay": 2051}
_SET_BITRATE = 4002
_SET_COMPLEXITY = 4010
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_SET_VBR_CONSTRAINT = 4020


def opus_delay_samples(sample_rate: int) -> int:
    """End-to-end encode+decode delay in samples at ``sample_rate`` (6.5 ms encoder lookahead)."""
    return OPUS_DELAY_SAMPLES * sample_rate // OPUS_RATE


def _layout(channels: int) -> str:
    try:
        return _LAYOUTS[channels]
    except KeyError:
        raise CodecError(f"Opus supports 1 or 2 channels here, got {channels}") from None


def _check_rate(sample_rate: int) -> int:
    if sample_rate not in OPUS_RATES:
        raise CodecError(f"Opus sample rate must be one of {OPUS_RATES}, got {sample_rate}")
    return sample_rate


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@cache
def _libopus() -> Any:
    """The libopus shared library PyAV links against (or the system's as a fallback)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(av.__file__)))
    candidates = sorted(glob.glob(os.path.join(here, "av.libs", "libopus*.so*")))
    system = ctypes.util.find_library("opus")
    if system:
        candidates.append(system)
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        lib.opus_decoder_create.restype = ctypes.c_void_p
        lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.opus_decoder_destroy.restype = None
        lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
        lib.opus_decode.restype = ctypes.c_int
        lib.opus_decode.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int32,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.opus_encoder_create.restype = ctypes.c_void_p
        lib.opus_encoder_create.argtypes = [
            ctypes.c_int32,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
        ]
        lib.opus_encoder_destroy.restype = None
        lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
        lib.opus_encode.restype = ctypes.c_int32
        lib.opus_encode.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int32,
        ]
        lib.opus_encoder_ctl.restype = ctypes.c_int  # variadic: arguments passed as c_int
        lib.opus_strerror.restype = ctypes.c_char_p
        lib.opus_strerror.argtypes = [ctypes.c_int]
        return lib
    raise CodecError("libopus not found (neither PyAV's bundled copy nor a system library)")


class OpusEncoder(Encoder):
    """One libopus encoder for one RTP stream (20 ms frames at 8, 16 or 48 kHz).

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
        sample_rate: int = OPUS_RATE,
        complexity: int = DEFAULT_COMPLEXITY,
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
        if application not in _APPLICATION_CODES:
            raise CodecError(
                f"Opus application must be one of {tuple(_APPLICATION_CODES)}, got {application!r}"
            )
        if not 6000 <= bitrate <= 510000:
            raise CodecError(f"Opus bitrate must be 6000..510000 bit/s, got {bitrate}")
        if not 0 <= packet_loss <= 100:
            raise CodecError(f"packet_loss must be a percentage, got {packet_loss}")
        if not 0 <= complexity <= 10:
            raise CodecError(f"Opus complexity must be 0..10, got {complexity}")
        rate = _check_rate(sample_rate)
        frame = rate // 50
        super().__init__(rate, channels, frame)
        _layout(channels)
        self._lib = lib = _libopus()
        err = ctypes.c_int(0)
        handle = lib.opus_encoder_create(rate, channels, _APPLICATION_CODES[application], ctypes.byref(err))
        if err.value != 0 or not handle:
            raise CodecError(f"opus_encoder_create failed: {lib.opus_strerror(err.value).decode()}")
        self._handle: int | None = handle
        # The settings FFmpeg's libopusenc applied before: bitrate, unconstrained VBR (its
        # "vbr=on"), in-band FEC with the expected loss, and the complexity.
        for request, value in (
            (_SET_BITRATE, bitrate),
            (_SET_VBR_CONSTRAINT, 0),
            (_SET_INBAND_FEC, 1 if fec else 0),
            (_SET_PACKET_LOSS_PERC, packet_loss),
            (_SET_COMPLEXITY, complexity),
        ):
            status = lib.opus_encoder_ctl(
                ctypes.c_void_p(handle), ctypes.c_int(request), ctypes.c_int32(value)
            )
            if status != 0:
                raise CodecError(
                    f"opus_encoder_ctl({request}, {value}) failed: {lib.opus_strerror(status).decode()}"
                )
        self._out = ctypes.create_string_buffer(_MAX_PACKET)
        self._out_ptr = ctypes.addressof(self._out)
        self._frame = frame
        self.dtx = dtx
        self.bitrate = bitrate
        self.complexity = complexity
        self._silent_frames = 0

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle:
            self._handle = None
            self._lib.opus_encoder_destroy(handle)

    def encode(self, pcm: PcmArray) -> bytes:
        """Encode one 20 ms frame; returns one packet, or ``b""`` for a DTX frame."""
        pcm = np.ascontiguousarray(self._check_pcm(pcm))
        n = self._lib.opus_encode(self._handle, pcm.ctypes.data, self._frame, self._out_ptr, _MAX_PACKET)
        if n <= 0:
            raise CodecError(f"opus_encode failed: {self._lib.opus_strerror(n).decode()}")
        payload = self._out.raw[:n]
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
    """One libopus decoder for one RTP stream; returns one 20 ms frame per 20 ms packet."""

    def __init__(self, channels: int = 1, *, sample_rate: int = OPUS_RATE, **fmtp: Any) -> None:
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
        rate = _check_rate(sample_rate)
        super().__init__(rate, channels, rate // 50)
        _layout(channels)
        self._lib = _libopus()
        err = ctypes.c_int(0)
        handle = self._lib.opus_decoder_create(rate, channels, ctypes.byref(err))
        if err.value != 0 or not handle:
            raise CodecError(f"opus_decoder_create failed: {self._lib.opus_strerror(err.value).decode()}")
        self._handle: int | None = handle
        # Room for the longest packet (120 ms) at this rate.
        self._max_frame = _MAX_FRAME_48K * rate // OPUS_RATE
        self._buf = np.zeros(self._max_frame * channels, dtype=np.int16)
        self._buf_ptr = self._buf.ctypes.data
        self._decoded_any = False
        self._last_samples = rate // 50

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle:
            self._handle = None
            self._lib.opus_decoder_destroy(handle)

    def decode(self, payload: bytes) -> PcmArray:
        """Decode one Opus packet (RFC 6716 section 3) to interleaved int16 PCM."""
        if not payload:
            raise CodecError("empty Opus packet (use conceal() for a lost packet)")
        n = self._lib.opus_decode(self._handle, payload, len(payload), self._buf_ptr, self._max_frame, 0)
        if n < 0:
            reason = self._lib.opus_strerror(n).decode()
            raise CodecError(f"invalid Opus packet ({len(payload)} bytes): {reason}")
        self._decoded_any = True
        self._last_samples = n
        return self._copy(n)

    def conceal(self, n_samples: int) -> PcmArray:
        """Run libopus packet-loss concealment for ``n_samples`` per channel (20 ms steps)."""
        if n_samples <= 0:
            return np.zeros(self._pcm_shape(0), dtype=np.int16)
        if not self._decoded_any:
            return np.zeros(self._pcm_shape(n_samples), dtype=np.int16)
        parts: list[PcmArray] = []
        have = 0
        step = min(self._last_samples, self._max_frame) or self._frame_samples
        while have < n_samples:
            # RFC 6716 section 4.4: a NULL packet asks the decoder to conceal one frame.
            n = self._lib.opus_decode(self._handle, None, 0, self._buf_ptr, step, 0)
            if n <= 0:
                parts.append(np.zeros(self._pcm_shape(n_samples - have), dtype=np.int16))
                break
            parts.append(self._copy(n))
            have += n
        return np.concatenate(parts)[:n_samples]

    def _copy(self, n: int) -> PcmArray:
        data = self._buf[: n * self._channels].copy()
        return data if self._channels == 1 else data.reshape(n, self._channels)
