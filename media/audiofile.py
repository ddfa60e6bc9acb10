"""Shared audio decode and resample helpers for the media engine.

Everything here is blocking CPU work meant to run in an executor, never on the
event loop: callers (:mod:`trunkline.media.player`, :mod:`trunkline.media.tts`)
wrap these functions with ``loop.run_in_executor``.

The engine's canonical audio is mono 16-bit linear PCM (``numpy.int16``) at the
stream's rate.  WAV/FLAC/OGG are decoded by libsndfile (``soundfile``); MP3 and
every other container/codec go through FFmpeg (PyAV).  Resampling uses PyAV's
``AudioResampler`` (libswresample).
"""

from __future__ import annotations

import io
import os
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import soundfile as sf

__all__ = [
    "SOUNDFILE_FORMATS",
    "AudioDecodeError",
    "decode_audio",
    "downmix_to_int16",
    "resample_pcm",
]

PcmArray = npt.NDArray[np.int16]

#: libsndfile major formats we decode with soundfile; anything else (MP3 included) goes to PyAV.
SOUNDFILE_FORMATS = frozenset({"WAV", "WAVEX", "FLAC", "OGG", "AIFF", "AU", "W64", "RF64", "CAF"})


class AudioDecodeError(ValueError):
    """The data is not audio any decoder understands, or decoding failed midway."""


def downmix_to_int16(samples: npt.NDArray[Any]) -> PcmArray:
    """Average the channels of a ``(frames, channels)`` array (or pass a 1-D one) into mono int16.

    Float input is taken as full scale at 1.0; integer input is treated as int16-range.
    """
    arr = np.asarray(samples)
    if arr.ndim == 2:
        arr = arr.mean(axis=1) if arr.shape[1] > 1 else arr[:, 0]
    elif arr.ndim != 1:
        raise AudioDecodeError(f"expected 1-D or 2-D sample array, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        arr = np.rint(arr * 32767.0).clip(np.float64(-32768.0), np.float64(32767.0))
    return np.ascontiguousarray(arr, dtype=np.int16)


def resample_pcm(pcm: PcmArray, from_rate: int, to_rate: int) -> PcmArray:
    """Resample mono int16 PCM from ``from_rate`` to ``to_rate`` Hz with libswresample.

    Returns the input unchanged (not copied) when the rates are equal.
    """
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    if from_rate == to_rate or pcm.size == 0:
        return pcm
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = from_rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
    out = list(resampler.resample(frame)) + list(resampler.resample(None))
    return _concat_frames(out)


def _concat_frames(frames: list[Any]) -> PcmArray:
    if not frames:
        return np.zeros(0, dtype=np.int16)
    parts = [np.asarray(f.to_ndarray(), dtype=np.int16).reshape(-1) for f in frames]
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.int16)


def _decode_with_soundfile(data: bytes, target_rate: int) -> PcmArray | None:
    """Decode with libsndfile if it recognises the format; ``None`` hands over to PyAV."""
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    if info.format not in SOUNDFILE_FORMATS:
        return None
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioDecodeError(f"{info.format} decode failed: {exc}") from exc
    if samples.shape[1] > 1:
        mono = np.rint(samples.astype(np.int32).mean(axis=1)).astype(np.int16)
    else:
        mono = np.ascontiguousarray(samples[:, 0])
    return resample_pcm(mono, int(rate), target_rate)


def _decode_with_pyav(data: bytes, target_rate: int) -> PcmArray:
    """Decode the first audio stream of any container FFmpeg knows, downmixed and resampled."""
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError) as exc:
        raise AudioDecodeError(f"unrecognised audio data: {exc}") from exc
    try:
        if not container.streams.audio:
            raise AudioDecodeError("container has no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=target_rate)
        frames: list[Any] = []
        for frame in container.decode(audio=0):
            frames.extend(resampler.resample(frame))
        frames.extend(resampler.resample(None))
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"decode failed: {exc}") from exc
    finally:
        container.close()
    if not frames:
        raise AudioDecodeError("no audio frames decoded")
    return _concat_frames(frames)


def decode_audio(source: bytes | str | os.PathLike[str], target_rate: int) -> PcmArray:
    """Decode an audio file (bytes or path) to mono int16 PCM at ``target_rate`` Hz.

    Stereo and multichannel audio is averaged to mono.  Raises
    :class:`AudioDecodeError` with the decoder's message on failure and
    :class:`OSError` if a path cannot be read.  Blocking: run it in an executor.
    """
    if target_rate <= 0:
        raise ValueError(f"target_rate must be positive, got {target_rate}")
    if isinstance(source, bytes):
        data = source
    else:
        with open(source, "rb") as fh:
            data = fh.read()
    if not data:
        raise AudioDecodeError("empty audio data")
    pcm = _decode_with_soundfile(data, target_rate)
    if pcm is None:
        pcm = _decode_with_pyav(data, target_rate)
    return pcm
