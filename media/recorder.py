"""Crash-safe call recording to 16-bit PCM WAV (mono or one channel per leg), optionally FLAC.

The media engine calls :meth:`Recorder.push` once per 20 ms tick with one frame
per channel (``None`` when that leg sent nothing, recorded as silence, so the
channels stay time-aligned).  ``push`` only interleaves and buffers; every
``batch_frames`` ticks the bytes go to a :class:`RecordingWriter` thread, which
appends them to the file with plain ``os.write`` (no user-space buffer) and,
every ``header_interval_s`` of audio, rewrites the RIFF and ``data`` sizes in
the header and calls ``os.fsync``.  A ``kill -9`` therefore leaves a valid WAV
holding at least everything up to the last header update; :func:`repair_wav`
(run by the gateway at start-up) extends the header over any audio written
after it.

FLAC recordings are made as ``<path>.partial.wav`` the same way and converted
with soundfile at :meth:`Recorder.finish`, so they are crash-safe too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import soundfile as sf

__all__ = [
    "Recorder",
    "RecorderError",
    "RecordingResult",
    "RecordingWriter",
    "RepairResult",
    "WavRepairError",
    "partial_path",
    "repair_wav",
]

PcmArray = npt.NDArray[np.int16]

_HEADER_SIZE = 44
_SAMPLE_BYTES = 2


class RecorderError(RuntimeError):
    """Recording failed (disk error in the writer thread) or the recorder was misused."""


class WavRepairError(ValueError):
    """The file is not a RIFF/WAVE file whose header can be repaired."""


@dataclass(frozen=True, slots=True)
class RecordingResult:
    """What :meth:`Recorder.finish` produced."""

    path: Path
    duration_s: float
    channels: int
    sample_rate: int
    bytes: int


@dataclass(frozen=True, slots=True)
class RepairResult:
    """Outcome of :func:`repair_wav`: audio frames now described and whether the header changed."""

    path: Path
    frames: int
    repaired: bool


def _wav_header(channels: int, sample_rate: int, data_bytes: int) -> bytes:
    # RIFF/WAVE canonical PCM header (Microsoft Multimedia Programming Interface, "WAVE Form").
    block_align = channels * _SAMPLE_BYTES
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", 36 + data_bytes),
            b"WAVEfmt ",
            struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block_align, block_align, 16),
            b"data",
            struct.pack("<I", data_bytes),
        )
    )


class _WavFile:
    """Incremental WAV writer with in-place header updates; used only from the writer thread."""

    def __init__(self, path: Path, channels: int, sample_rate: int) -> None:
        self.path = path
        self.channels = channels
        self.sample_rate = sample_rate
        self.data_bytes = 0
        self.header_bytes = 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._write(_wav_header(channels, sample_rate, 0))

    def _write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def append(self, data: bytes) -> None:
        if self.data_bytes + len(data) > 0xFFFFFFFF - 36:
            raise RecorderError(f"{self.path}: WAV size limit (4 GiB) reached")
        self._write(data)
        self.data_bytes += len(data)

    def update_header(self) -> None:
        """Rewrite the RIFF and data chunk sizes, then fsync (the crash-safety point)."""
        os.pwrite(self._fd, struct.pack("<I", 36 + self.data_bytes), 4)
        os.pwrite(self._fd, struct.pack("<I", self.data_bytes), 40)
        os.fsync(self._fd)
        self.header_bytes = self.data_bytes

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.update_header()
            finally:
                os.close(self._fd)
                self._fd = -1


class RecordingWriter:
    """A daemon thread that performs recorders' file writes in submission order.

    One writer serves many recorders; the default shared one is created on first
    use.  Jobs are plain callables, so ordering per recorder is preserved.
    """

    def __init__(self, name: str = "trunkline-recorder") -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job`` for the writer thread (never blocks)."""
        self._queue.put(job)

    def close(self) -> None:
        """Stop the thread after the queued jobs have run."""
        self._queue.put(None)
        self._thread.join()


_shared_writer: RecordingWriter | None = None
_shared_lock = threading.Lock()


def _default_writer() -> RecordingWriter:
    global _shared_writer
    with _shared_lock:
        if _shared_writer is None:
            _shared_writer = RecordingWriter()
        return _shared_writer


def partial_path(path: str | os.PathLike[str]) -> Path:
    """Where a FLAC recording's crash-safe WAV lives while it is being made."""
    p = Path(path)
    return p.with_name(p.name + ".partial.wav")


class Recorder:
    """Records one call (mono) or two legs (``channels=2``, one leg per channel) to disk.

    ``trim_silence`` drops leading and trailing frames whose RMS stays below
    ``silence_dbfs`` on every channel (Twilio ``trim="trim-silence"``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sample_rate: int = 8000,
        channels: int = 1,
        *,
        file_format: Literal["wav", "flac"] = "wav",
        frame_samples: int | None = None,
        header_interval_s: float = 1.0,
        batch_frames: int = 5,
        trim_silence: bool = False,
        silence_dbfs: float = -50.0,
        writer: RecordingWriter | None = None,
    ) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {channels}")
        if file_format not in ("wav", "flac"):
            raise ValueError(f"file_format must be 'wav' or 'flac', got {file_format!r}")
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self.file_format = file_format
        self.frame_samples = frame_samples if frame_samples is not None else sample_rate // 50
        if self.frame_samples <= 0:
            raise ValueError(f"frame_samples must be positive, got {self.frame_samples}")
        self.trim_silence = trim_silence
        self._silence_energy = (32767.0 * 10.0 ** (silence_dbfs / 20.0)) ** 2 * self.frame_samples
        self._batch = max(1, batch_frames)
        self._interval_bytes = max(1, round(header_interval_s * sample_rate)) * channels * _SAMPLE_BYTES
        self._writer = writer if writer is not None else _default_writer()
        self._pending: list[bytes] = []
        self._frames = 0
        self._first_voiced: int | None = None
        self._last_voiced = -1
        self._finished = False
        self._error: BaseException | None = None
        self._zero = np.zeros(self.frame_samples, dtype=np.int16)
        self._work_path = partial_path(self.path) if file_format == "flac" else self.path
        self._file: _WavFile | None = None
        self.paused = False
        self.pause_behavior: Literal["skip", "silence"] = "silence"
        self._writer.submit(self._open)

    # -- writer-thread side --------------------------------------------------

    def _open(self) -> None:
        try:
            self._work_path.parent.mkdir(parents=True, exist_ok=True)
            self._file = _WavFile(self._work_path, self.channels, self.sample_rate)
        except OSError as exc:
            self._error = exc

    def _write(self, chunk: bytes) -> None:
        f = self._file
        if f is None or self._error is not None:
            return
        try:
            f.append(chunk)
            if f.data_bytes - f.header_bytes >= self._interval_bytes:
                f.update_header()
        except (OSError, RecorderError) as exc:
            self._error = exc

    def _finalize(self) -> RecordingResult:
        f = self._file
        if self._error is not None or f is None:
            raise RecorderError(f"recording {self.path} failed: {self._error}")
        f.close()
        frame_bytes = self.frame_samples * self.channels * _SAMPLE_BYTES
        start, stop = 0, f.data_bytes
        if self.trim_silence:
            if self._first_voiced is None:
                start = stop = 0
            else:
                start = self._first_voiced * frame_bytes
                stop = min(f.data_bytes, (self._last_voiced + 1) * frame_bytes)
        if self.file_format == "wav" and (start, stop) != (0, f.data_bytes):
            self._rewrite_wav(start, stop)
        elif self.file_format == "flac":
            self._convert_flac(start, stop)
        frames = (stop - start) // (self.channels * _SAMPLE_BYTES)
        return RecordingResult(
            path=self.path,
            duration_s=frames / self.sample_rate,
            channels=self.channels,
            sample_rate=self.sample_rate,
            bytes=self.path.stat().st_size,
        )

    def _read_pcm(self, start: int, stop: int) -> bytes:
        with open(self._work_path, "rb") as fh:
            fh.seek(_HEADER_SIZE + start)
            return fh.read(stop - start)

    def _rewrite_wav(self, start: int, stop: int) -> None:
        data = self._read_pcm(start, stop)
        tmp = self.path.with_name(self.path.name + ".trim.tmp")
        with open(tmp, "wb") as fh:
            fh.write(_wav_header(self.channels, self.sample_rate, len(data)))
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def _convert_flac(self, start: int, stop: int) -> None:
        pcm = np.frombuffer(self._read_pcm(start, stop), dtype="<i2").reshape(-1, self.channels)
        tmp = self.path.with_name(self.path.name + ".tmp.flac")
        sf.write(tmp, pcm, self.sample_rate, format="FLAC", subtype="PCM_16")
        os.replace(tmp, self.path)
        with contextlib.suppress(FileNotFoundError):
            self._work_path.unlink()

    # -- engine side -----------------------------------------------------------

    @property
    def duration_s(self) -> float:
        """Audio pushed so far, in seconds."""
        return self._frames * self.frame_samples / self.sample_rate

    def _check(self, frame: PcmArray | None) -> PcmArray:
        if frame is None:
            return self._zero
        if frame.dtype != np.int16 or frame.shape != (self.frame_samples,):
            raise ValueError(
                f"recorder frame must be int16 of shape ({self.frame_samples},), "
                f"got {frame.dtype} {frame.shape}"
            )
        return frame

    def pause(self, behavior: Literal["skip", "silence"] = "silence") -> None:
        """Pause (Twilio ``Status=paused``): ticks are dropped (``skip``) or recorded as ``silence``."""
        self.paused = True
        self.pause_behavior = behavior

    def resume(self) -> None:
        """Resume recording after :meth:`pause`."""
        self.paused = False

    def push(self, *frames: PcmArray | None) -> None:
        """Record one tick: one frame (or ``None`` for silence) per channel.  Never blocks."""
        if self._finished:
            raise RecorderError(f"recording {self.path} already finished")
        if len(frames) != self.channels:
            raise ValueError(f"expected {self.channels} frame(s) per tick, got {len(frames)}")
        checked = [self._check(f) for f in frames]
        if self.paused:
            if self.pause_behavior == "skip":
                return
            checked = [self._zero] * self.channels
        if self.channels == 1:
            data = checked[0].astype("<i2", copy=False).tobytes()
        else:
            data = np.column_stack(checked).astype("<i2", copy=False).tobytes()
        if self.trim_silence:
            energy = max(float(np.dot(f.astype(np.float64), f.astype(np.float64))) for f in checked)
            if energy > self._silence_energy:
                if self._first_voiced is None:
                    self._first_voiced = self._frames
                self._last_voiced = self._frames
        self._frames += 1
        self._pending.append(data)
        if len(self._pending) >= self._batch:
            self._flush_pending()

    def _flush_pending(self) -> None:
        if self._pending:
            chunk = b"".join(self._pending)
            self._pending = []
            self._writer.submit(lambda: self._write(chunk))

    def finish_future(self) -> Future[RecordingResult]:
        """Stop recording; the future resolves once the file is complete (and trimmed/converted)."""
        if self._finished:
            raise RecorderError(f"recording {self.path} already finished")
        self._flush_pending()
        self._finished = True
        fut: Future[RecordingResult] = Future()

        def job() -> None:
            try:
                fut.set_result(self._finalize())
            except BaseException as exc:  # handed to the waiting caller
                fut.set_exception(exc)

        self._writer.submit(job)
        return fut

    def finish(self) -> RecordingResult:
        """Blocking :meth:`finish_future` (for tools and threads, not the event loop)."""
        return self.finish_future().result()

    async def finish_async(self) -> RecordingResult:
        """Stop recording and await the completed file without blocking the event loop."""
        return await asyncio.wrap_future(self.finish_future())


def repair_wav(path: str | os.PathLike[str]) -> RepairResult:
    """Fix the RIFF and ``data`` sizes of a WAV whose writer died, so it covers all audio on disk.

    Any trailing partial sample frame is cut off.  Raises :class:`WavRepairError`
    when the file is not RIFF/WAVE or has no ``fmt``/``data`` chunk, and
    :class:`OSError` if it cannot be opened.
    """
    p = Path(path)
    with open(p, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise WavRepairError(f"{p}: not a RIFF/WAVE file")
        pos = 12
        block_align = 0
        while True:
            fh.seek(pos)
            chunk = fh.read(8)
            if len(chunk) < 8:
                raise WavRepairError(f"{p}: no data chunk found")
            cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = fh.read(min(csize, 16))
                if len(fmt) < 16:
                    raise WavRepairError(f"{p}: fmt chunk is truncated")
                block_align = struct.unpack("<H", fmt[12:14])[0]
            elif cid == b"data":
                break
            pos += 8 + csize + (csize & 1)  # RIFF chunks are word-aligned
        if block_align <= 0:
            raise WavRepairError(f"{p}: data chunk before a valid fmt chunk")
        data_start = pos + 8
        data_bytes = max(0, size - data_start)
        data_bytes -= data_bytes % block_align
        riff_size = data_start + data_bytes - 8
        repaired = csize != data_bytes or struct.unpack("<I", head[4:8])[0] != riff_size
        if data_start + data_bytes != size:
            fh.truncate(data_start + data_bytes)
            repaired = True
        if repaired:
            fh.seek(4)
            fh.write(struct.pack("<I", riff_size))
            fh.seek(pos + 4)
            fh.write(struct.pack("<I", data_bytes))
            fh.flush()
            os.fsync(fh.fileno())
    return RepairResult(path=p, frames=data_bytes // block_align, repaired=repaired)
