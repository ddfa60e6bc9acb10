"""Tests for trunkline.media.recorder: WAV/FLAC output, dual channel, trimming, crash safety."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from trunkline.media.recorder import (
    Recorder,
    RecorderError,
    RecordingWriter,
    WavRepairError,
    partial_path,
    repair_wav,
)
from trunkline.media.tones import ToneSource, ToneSpec

RATE = 8000
FRAME = 160


def tone(freq: float, seconds: float, rate: int = RATE) -> npt.NDArray[np.int16]:
    n = np.arange(round(seconds * rate))
    return (8000 * np.sin(2 * np.pi * freq * n / rate)).astype(np.int16)


def frames_of(pcm: npt.NDArray[np.int16], n: int = FRAME) -> list[npt.NDArray[np.int16]]:
    return [pcm[i : i + n] for i in range(0, pcm.size, n)]


def dominant_freq(x: npt.NDArray[np.floating] | npt.NDArray[np.integer], rate: int = RATE) -> float:
    spec = np.abs(np.fft.rfft(np.asarray(x, dtype=np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spec))])


@pytest.fixture
def writer() -> Iterator[RecordingWriter]:
    w = RecordingWriter("test-recorder")
    yield w
    w.close()


def test_mono_wav_round_trip(tmp_path: Path, writer: RecordingWriter) -> None:
    pcm = tone(440, 1.0)
    rec = Recorder(tmp_path / "a.wav", RATE, 1, writer=writer)
    for f in frames_of(pcm):
        rec.push(f)
    assert rec.duration_s == pytest.approx(1.0)
    res = rec.finish()
    assert res.path == tmp_path / "a.wav"
    assert (res.duration_s, res.channels, res.sample_rate) == (1.0, 1, RATE)
    assert res.bytes == 44 + 16000 == os.path.getsize(res.path)
    data, rate = sf.read(res.path, dtype="int16")
    assert rate == RATE
    np.testing.assert_array_equal(data, pcm)


def test_dual_channel_time_aligned_with_gaps(tmp_path: Path, writer: RecordingWriter) -> None:
    left_src = ToneSource(ToneSpec("l", (440.0,)), RATE)
    right_src = ToneSource(ToneSpec("r", (1200.0,)), RATE)
    rec = Recorder(tmp_path / "dual.wav", RATE, 2, writer=writer)
    for tick in range(100):  # 2 s
        left = left_src.read_frame() if not 25 <= tick < 50 else None  # gap 0.5-1.0 s
        right = right_src.read_frame() if tick >= 60 else None  # silent until 1.2 s
        rec.push(left, right)
    res = rec.finish()
    assert res.channels == 2 and res.duration_s == pytest.approx(2.0)
    data, _ = sf.read(res.path, dtype="int16", always_2d=True)
    assert data.shape == (16000, 2)
    left_ch, right_ch = data[:, 0], data[:, 1]
    assert not left_ch[4000:8000].any()  # the left gap is silence
    assert np.abs(left_ch[200:3800]).max() > 3000 and np.abs(left_ch[8200:]).max() > 3000
    assert not right_ch[: 60 * FRAME].any()
    assert dominant_freq(left_ch[:4000]) == pytest.approx(440, abs=4)
    assert dominant_freq(right_ch[60 * FRAME :]) == pytest.approx(1200, abs=4)
    # No leakage between channels.
    assert dominant_freq(left_ch[8000:]) == pytest.approx(440, abs=4)


def test_trim_silence_drops_leading_and_trailing_silence(tmp_path: Path, writer: RecordingWriter) -> None:
    pcm = np.concatenate([np.zeros(4000, np.int16), tone(600, 1.0), np.zeros(5600, np.int16)])
    pcm[:4000] = np.random.default_rng(1).normal(0, 3, 4000).astype(np.int16)  # faint line noise
    rec = Recorder(tmp_path / "t.wav", RATE, 1, trim_silence=True, writer=writer)
    for f in frames_of(pcm):
        rec.push(f)
    res = rec.finish()
    assert res.duration_s == pytest.approx(1.0)
    data, _ = sf.read(res.path, dtype="int16")
    np.testing.assert_array_equal(data, tone(600, 1.0))


def test_trim_silence_of_all_silent_recording_is_empty(tmp_path: Path, writer: RecordingWriter) -> None:
    rec = Recorder(tmp_path / "s.wav", RATE, 2, trim_silence=True, writer=writer)
    for _ in range(20):
        rec.push(None, None)
    res = rec.finish()
    assert res.duration_s == 0 and res.bytes == 44
    assert sf.info(res.path).frames == 0


def test_flac_output_is_converted_and_partial_removed(tmp_path: Path, writer: RecordingWriter) -> None:
    pcm = tone(900, 0.6, 16000)
    rec = Recorder(tmp_path / "c.flac", 16000, 1, file_format="flac", writer=writer)
    for f in frames_of(pcm, 320):
        rec.push(f)
    res = rec.finish()
    assert sf.info(res.path).format == "FLAC"
    data, rate = sf.read(res.path, dtype="int16")
    assert rate == 16000
    np.testing.assert_array_equal(data, pcm)
    assert not partial_path(res.path).exists()


async def test_finish_async_and_misuse_errors(tmp_path: Path, writer: RecordingWriter) -> None:
    rec = Recorder(tmp_path / "m.wav", RATE, 2, writer=writer)
    with pytest.raises(ValueError, match="2 frame"):
        rec.push(np.zeros(FRAME, np.int16))
    with pytest.raises(ValueError, match="int16"):
        rec.push(np.zeros(FRAME, np.float32), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        rec.push(np.zeros(100, np.int16), None)
    rec.push(tone(300, 0.02), None)
    res = await rec.finish_async()
    assert res.duration_s == pytest.approx(0.02)
    with pytest.raises(RecorderError, match="already finished"):
        rec.push(None, None)


def test_unwritable_path_reports_error_at_finish(tmp_path: Path, writer: RecordingWriter) -> None:
    target = tmp_path / "dir-not-file"
    target.mkdir()
    rec = Recorder(target, RATE, 1, writer=writer)
    rec.push(None)
    with pytest.raises(RecorderError, match="failed"):
        rec.finish()


def _broken_wav(path: Path, pcm: npt.NDArray[np.int16], channels: int, header_frames: int) -> None:
    block = 2 * channels
    header = b"RIFF" + struct.pack("<I", 36 + header_frames * block) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, channels, RATE, RATE * block, block, 16)
    header += b"data" + struct.pack("<I", header_frames * block)
    path.write_bytes(header + pcm.tobytes() + b"\x01")  # plus half a sample of junk


def test_repair_wav_extends_header_to_all_audio(tmp_path: Path) -> None:
    pcm = tone(500, 1.5)
    path = tmp_path / "crashed.wav"
    _broken_wav(path, pcm, 1, header_frames=RATE // 2)
    assert sf.info(path).frames == RATE // 2
    result = repair_wav(path)
    assert result.repaired and result.frames == pcm.size
    data, _ = sf.read(path, dtype="int16")
    np.testing.assert_array_equal(data, pcm)
    again = repair_wav(path)
    assert not again.repaired and again.frames == pcm.size


def test_repair_wav_rejects_non_wav(tmp_path: Path) -> None:
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"OggS" + bytes(100))
    with pytest.raises(WavRepairError, match="not a RIFF"):
        repair_wav(bad)
    nodata = tmp_path / "y.wav"
    nodata.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(WavRepairError, match="no data chunk"):
        repair_wav(nodata)


_CHILD = textwrap.dedent(
    """
    import sys, time
    from trunkline.media.recorder import Recorder
    from trunkline.media.tones import ToneSource, ToneSpec
    rec = Recorder(sys.argv[1], 8000, 1, header_interval_s=1.0)
    src = ToneSource(ToneSpec("t", (770.0,)), 8000)
    start = time.monotonic()
    for tick in range(100000):
        rec.push(src.read_frame())
        if tick % 5 == 4:
            print(tick + 1, flush=True)
        delay = start + (tick + 1) * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    """
)


def test_sigkill_mid_recording_leaves_playable_wav(tmp_path: Path) -> None:
    path = tmp_path / "killed.wav"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        pushed = 0
        while pushed < 125 and time.monotonic() < deadline:  # 125 ticks = 2.5 s of audio
            line = proc.stdout.readline()
            assert line, "recorder child exited early"
            pushed = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # The header was last rewritten at 2.0 s of audio: soundfile sees at least that much.
    data, rate = sf.read(path, dtype="int16")
    assert rate == RATE
    assert 2 * RATE <= data.size <= pushed * FRAME + 5 * FRAME
    assert dominant_freq(data) == pytest.approx(770, abs=3)
    assert np.abs(data[RATE : 2 * RATE]).max() > 4000  # the tone, not silence, up to 2 s
    # repair_wav recovers whatever reached the file after the last header update.
    result = repair_wav(path)
    assert result.frames >= data.size
    repaired, _ = sf.read(path, dtype="int16")
    np.testing.assert_array_equal(repaired[: data.size], data)
    assert dominant_freq(repaired) == pytest.approx(770, abs=3)


def test_pause_skip_and_silence(tmp_path: Path, writer: RecordingWriter) -> None:
    rec = Recorder(tmp_path / "sub" / "p.wav", RATE, 1, writer=writer)  # parent made by the writer
    loud = np.full(FRAME, 1000, np.int16)
    rec.push(loud)
    rec.pause("skip")
    rec.push(loud)  # dropped
    rec.pause("silence")
    rec.push(loud)  # recorded as zeros
    rec.resume()
    rec.push(loud)
    res = rec.finish()
    data, _ = sf.read(res.path, dtype="int16")
    assert data.size == 3 * FRAME and res.duration_s == pytest.approx(0.06)
    assert (
        (data[:FRAME] == 1000).all()
        and not data[FRAME : 2 * FRAME].any()
        and (data[2 * FRAME :] == 1000).all()
    )
