"""Tests for trunkline.media.player: sources, the player queue, decoding and the HTTP cache."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import av
import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from aiohttp import web
from aiohttp.test_utils import TestServer

from trunkline.media.player import (
    AudioLoader,
    AudioLoadError,
    AudioSource,
    PcmSource,
    Player,
    load_audio,
    parse_cache_control,
)
from trunkline.media.tones import ToneSource, ToneSpec


def tone(freq: float, seconds: float, rate: int, amp: float = 0.5) -> npt.NDArray[np.float64]:
    n = np.arange(round(seconds * rate))
    return np.asarray(amp * np.sin(2 * np.pi * freq * n / rate))


def dominant_freq(x: npt.NDArray[np.integer] | npt.NDArray[np.floating], rate: int) -> float:
    spec = np.abs(np.fft.rfft(np.asarray(x, dtype=np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spec))])


def wav_bytes(data: npt.NDArray[np.float64], rate: int, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, rate, format=fmt, subtype="VORBIS" if fmt == "OGG" else "PCM_16")
    return buf.getvalue()


def mp3_bytes(data: npt.NDArray[np.float64], rate: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate, layout="mono")
        pcm = (data * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


# -- sources and player --------------------------------------------------------


def test_pcm_source_frames_and_zero_padding() -> None:
    pcm = np.arange(400, dtype=np.int16)
    src = PcmSource(pcm, 8000)
    assert isinstance(src, AudioSource)
    a, b, c = src.read_frame(), src.read_frame(), src.read_frame()
    assert a is not None and b is not None and c is not None
    np.testing.assert_array_equal(a, pcm[:160])
    np.testing.assert_array_equal(b, pcm[160:320])
    np.testing.assert_array_equal(c[:80], pcm[320:])
    assert not c[80:].any()
    assert src.read_frame() is None
    assert src.duration == pytest.approx(0.05)


def test_pcm_source_loops_seamlessly() -> None:
    pcm = np.arange(1, 251, dtype=np.int16)  # 250 samples: loops wrap mid-frame
    src = PcmSource(pcm, 8000, loop=3)
    out = []
    while (f := src.read_frame()) is not None:
        out.append(f)
    joined = np.concatenate(out)
    assert len(out) == 5  # 750 samples -> 4.7 frames
    np.testing.assert_array_equal(joined[:750], np.tile(pcm, 3))
    assert not joined[750:].any()


def test_pcm_source_loop_forever_and_validation() -> None:
    src = PcmSource(np.ones(100, np.int16), 8000, loop=0)
    for _ in range(1000):
        frame = src.read_frame()
        assert frame is not None and frame.all()
    assert src.duration is None
    with pytest.raises(ValueError, match="1-D int16"):
        PcmSource(np.ones(10, np.float32), 8000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="loop"):
        PcmSource(np.ones(10, np.int16), 8000, loop=-1)
    assert PcmSource(np.zeros(0, np.int16), 8000).read_frame() is None


def test_player_plays_queue_back_to_back_with_callbacks() -> None:
    done: list[tuple[str, bool]] = []
    player = Player(8000)
    player.enqueue(PcmSource(np.full(320, 1, np.int16), 8000), lambda ok: done.append(("a", ok)))
    player.enqueue(PcmSource(np.full(160, 2, np.int16), 8000), lambda ok: done.append(("b", ok)))
    frames = []
    while (f := player.read_frame()) is not None:
        frames.append(int(f[0]))
    assert frames == [1, 1, 2]
    assert done == [("a", True), ("b", True)]
    assert not player.playing


def test_player_stop_is_barge_in_at_frame_boundary() -> None:
    done: list[tuple[str, bool]] = []
    player = Player(8000)
    player.enqueue(ToneSource(ToneSpec("x", (500.0,)), 8000), lambda ok: done.append(("tone", ok)))
    player.enqueue(PcmSource(np.ones(1600, np.int16), 8000), lambda ok: done.append(("next", ok)))
    first = player.read_frame()
    assert first is not None and np.abs(first).max() > 0
    assert player.stop() == 2
    assert done == [("tone", False), ("next", False)]
    assert player.read_frame() is None
    # A new prompt after barge-in plays normally.
    player.enqueue(PcmSource(np.full(160, 7, np.int16), 8000))
    again = player.read_frame()
    assert again is not None and again[0] == 7


def test_player_rejects_mismatched_source() -> None:
    player = Player(8000)
    with pytest.raises(ValueError, match="16000 Hz"):
        player.enqueue(PcmSource(np.ones(10, np.int16), 16000))


# -- decoding from disk ----------------------------------------------------------


async def test_load_wav_stereo_downmixed_and_resampled(tmp_path: Path) -> None:
    left, right = tone(440, 1.0, 16000), tone(440, 1.0, 16000)
    path = tmp_path / "stereo.wav"
    path.write_bytes(wav_bytes(np.column_stack([left, right]), 16000))
    pcm = await load_audio(path, 8000)
    assert pcm.dtype == np.int16
    assert abs(pcm.size - 8000) <= 40
    assert dominant_freq(pcm, 8000) == pytest.approx(440, abs=3)
    assert 14000 < np.abs(pcm[400:-400]).max() < 18000  # 0.5 full scale survives the downmix


async def test_load_stereo_cancelling_channels_downmix_to_silence(tmp_path: Path) -> None:
    t = tone(300, 0.5, 8000)
    path = tmp_path / "cancel.wav"
    path.write_bytes(wav_bytes(np.column_stack([t, -t]), 8000))
    pcm = await load_audio(f"file://{path}", 8000)
    assert pcm.size == 4000 and np.abs(pcm).max() <= 1


@pytest.mark.parametrize("fmt", ["FLAC", "OGG"])
async def test_load_flac_and_ogg(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"t.{fmt.lower()}"
    path.write_bytes(wav_bytes(tone(1000, 0.8, 44100), 44100, fmt))
    pcm = await load_audio(path, 8000)
    assert abs(pcm.size - 6400) <= 100
    assert dominant_freq(pcm, 8000) == pytest.approx(1000, abs=4)


async def test_load_mp3_through_pyav(tmp_path: Path) -> None:
    path = tmp_path / "t.mp3"
    path.write_bytes(mp3_bytes(tone(600, 1.0, 22050), 22050))
    pcm = await load_audio(path, 16000)
    assert 15000 < pcm.size < 18500  # MP3 adds encoder delay and padding
    assert dominant_freq(pcm, 16000) == pytest.approx(600, abs=4)


async def test_load_errors_are_typed(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 20)
    with pytest.raises(AudioLoadError) as err:
        await load_audio(junk, 8000)
    assert err.value.url == str(junk) and err.value.status is None and err.value.message
    assert (err.value.kind, err.value.twilio_code) == ("decode", 12300)
    with pytest.raises(AudioLoadError, match="No such file") as missing:
        await load_audio(tmp_path / "missing.wav", 8000)
    assert (missing.value.kind, missing.value.twilio_code) == ("file", 11200)
    with pytest.raises(AudioLoadError, match="unsupported URL scheme"):
        await load_audio("ftp://example.com/a.wav", 8000)


def test_parse_cache_control() -> None:
    cc = parse_cache_control('public, max-age="120", no-cache')
    assert (cc.max_age, cc.no_cache, cc.no_store) == (120.0, True, False)
    assert parse_cache_control("no-store").no_store
    assert parse_cache_control("max-age=10, s-maxage=50").max_age == 50.0
    assert parse_cache_control('no-cache="Set-Cookie"').no_cache is False
    assert parse_cache_control("max-age=abc").max_age is None


# -- HTTP and the cache ----------------------------------------------------------------


@dataclass
class Origin:
    server: TestServer
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    body = wav_bytes(tone(800, 0.5, 8000), 8000)
    state: Origin

    async def handler(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        state.requests.append((name, dict(request.headers)))
        headers = {"Content-Type": "audio/wav"}
        if name == "etag":
            headers |= {"ETag": '"v1"', "Cache-Control": "max-age=60"}
            if request.headers.get("If-None-Match") == '"v1"':
                state.statuses.append(304)
                return web.Response(status=304, headers=headers)
        elif name == "lastmod":
            headers |= {"Last-Modified": "Wed, 21 Oct 2026 07:28:00 GMT", "Cache-Control": "no-cache"}
            if request.headers.get("If-Modified-Since") == headers["Last-Modified"]:
                state.statuses.append(304)
                return web.Response(status=304, headers=headers)
        elif name == "nostore":
            headers["Cache-Control"] = "no-store"
        elif name == "missing":
            state.statuses.append(404)
            return web.Response(status=404, text="nope")
        elif name == "text":
            return web.Response(text="<html>not audio</html>", content_type="text/html")
        state.statuses.append(200)
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/{name}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state = Origin(server)
    try:
        yield state
    finally:
        await server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_http_fetch_cached_within_max_age_then_revalidated_by_etag(
    origin: Origin, tmp_path: Path
) -> None:
    clock = Clock()
    url = origin.url("/etag")
    async with aiohttp.ClientSession() as session:
        first = await load_audio(url, 8000, http_session=session, cache_dir=tmp_path, clock=clock)
        assert first.size == 4000 and dominant_freq(first, 8000) == pytest.approx(800, abs=3)
        clock.now += 30  # still fresh: no request at all
        second = await load_audio(url, 8000, http_session=session, cache_dir=tmp_path, clock=clock)
        assert len(origin.requests) == 1
        clock.now += 60  # stale: conditional request, 304, body from cache
        third = await load_audio(url, 8000, http_session=session, cache_dir=tmp_path, clock=clock)
    assert len(origin.requests) == 2
    assert origin.requests[1][1].get("If-None-Match") == '"v1"'
    assert origin.statuses == [200, 304]
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, third)


async def test_http_no_cache_always_revalidates_with_last_modified(origin: Origin, tmp_path: Path) -> None:
    url = origin.url("/lastmod")
    for _ in range(3):
        pcm = await load_audio(url, 8000, cache_dir=tmp_path)  # own session each time
        assert dominant_freq(pcm, 8000) == pytest.approx(800, abs=3)
    assert origin.statuses == [200, 304, 304]
    assert all(h.get("If-Modified-Since") == "Wed, 21 Oct 2026 07:28:00 GMT" for _, h in origin.requests[1:])


async def test_http_no_store_is_never_cached(origin: Origin, tmp_path: Path) -> None:
    url = origin.url("/nostore")
    for _ in range(2):
        await load_audio(url, 8000, cache_dir=tmp_path)
    assert origin.statuses == [200, 200]
    assert "If-None-Match" not in origin.requests[1][1]
    assert list(tmp_path.iterdir()) == []


async def test_http_errors_carry_status_and_decoder_message(origin: Origin, tmp_path: Path) -> None:
    with pytest.raises(AudioLoadError) as err:
        await load_audio(origin.url("/missing"), 8000, cache_dir=tmp_path)
    assert err.value.status == 404 and err.value.url.endswith("/missing")
    assert (err.value.kind, err.value.twilio_code) == ("http", 11200)
    with pytest.raises(AudioLoadError) as err2:
        await load_audio(origin.url("/text"), 8000)
    assert err2.value.status is None and err2.value.kind == "decode"
    with pytest.raises(AudioLoadError, match=r"ClientConnectorError|Connect") as err3:
        await load_audio("http://127.0.0.1:9/none.wav", 8000)
    assert err3.value.kind == "network" and err3.value.twilio_code == 11200


async def test_audio_loader_coalesces_and_reuses_decoded_pcm(origin: Origin, tmp_path: Path) -> None:
    clock = Clock()
    loader = AudioLoader(tmp_path / "cache", clock=clock)
    try:
        url = origin.url("/etag")
        a, b = await asyncio.gather(loader.load(url, 8000), loader.load(url, 8000))
        assert a is b and len(origin.requests) == 1 and loader.decodes == 1
        assert not a.flags.writeable
        clock.now += 120  # stale: revalidated (304), same content -> no second decode
        c = await loader.load(url, 8000)
        assert origin.statuses == [200, 304] and loader.decodes == 1 and c is a
        d = await loader.load(url, 16000)  # another rate is another decode
        assert loader.decodes == 2 and d.size == 2 * a.size
    finally:
        await loader.close()


async def test_audio_loader_notices_changed_file_and_bounds_memory(tmp_path: Path) -> None:
    path = tmp_path / "prompt.wav"
    path.write_bytes(wav_bytes(tone(500, 0.5, 8000), 8000))
    loader = AudioLoader(memory_bytes=10_000)
    first = await loader.load(path, 8000)
    assert await loader.load(path, 8000) is first and loader.decodes == 1
    path.write_bytes(wav_bytes(tone(900, 0.6, 8000), 8000))
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    second = await loader.load(path, 8000)
    assert loader.decodes == 2 and second.size == 4800
    assert dominant_freq(second, 8000) == pytest.approx(900, abs=3)
    # The budget holds one 8-9 kB buffer: the first one was evicted.
    os.utime(path, ns=(2, 2))
    await loader.load(path, 8000)
    assert loader.decodes == 3
    with pytest.raises(AudioLoadError, match="No such file"):
        await loader.load(tmp_path / "gone.wav", 8000)
