"""Audio playback sources, file/URL loading with an HTTP cache, and the per-leg player.

The media engine pulls one 20 ms frame per tick from each active source with
:meth:`AudioSource.read_frame`; that call only slices an in-memory buffer.  All
slow work - HTTP fetches, disk reads and decoding - happens up front in
:func:`load_audio`, which is a coroutine that fetches with aiohttp and decodes in
an executor, producing the int16 buffer a :class:`PcmSource` plays.

HTTP caching follows RFC 9111 in the small: responses are stored on disk under
``cache_dir`` keyed by URL, reused while fresh (``Cache-Control: max-age`` or
``Expires``), revalidated with ``If-None-Match`` / ``If-Modified-Since`` when
stale or marked ``no-cache`` (a 304 reuses the stored body), and never stored
when marked ``no-store``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

import aiohttp
import numpy as np
import numpy.typing as npt

from trunkline.media.audiofile import AudioDecodeError, decode_audio

__all__ = [
    "AudioLoadError",
    "AudioLoader",
    "AudioSource",
    "CacheControl",
    "PcmSource",
    "Player",
    "load_audio",
    "parse_cache_control",
]

PcmArray = npt.NDArray[np.int16]

#: Total time allowed for one HTTP fetch of a ``<Play>`` URL.
DEFAULT_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30.0, connect=10.0)


class AudioLoadError(Exception):
    """An audio file or URL could not be fetched or decoded.

    ``status`` is the HTTP status when the server answered with an error, else
    ``None``.  ``kind`` says what failed: ``"http"`` (error status),
    ``"network"`` (connection, timeout), ``"file"`` (local path), ``"decode"``
    (not audio we can decode) or ``"url"`` (unsupported scheme).
    :attr:`twilio_code` maps that onto Twilio's error codes.
    """

    def __init__(self, url: str, message: str, status: int | None = None, *, kind: str = "decode") -> None:
        self.url = url
        self.message = message
        self.status = status
        self.kind = "http" if status is not None else kind
        detail = f"HTTP {status}: {message}" if status is not None else message
        super().__init__(f"cannot load audio from {url}: {detail}")

    @property
    def twilio_code(self) -> int:
        """11200 (HTTP retrieval failure) for fetch errors, 12300 (invalid content) for undecodable audio."""
        return 12300 if self.kind == "decode" else 11200


@runtime_checkable
class AudioSource(Protocol):
    """Something the media engine can pull 20 ms int16 frames from."""

    sample_rate: int
    frame_samples: int

    def read_frame(self) -> PcmArray | None:
        """Exactly ``frame_samples`` samples (zero-padded at the end), or ``None`` when done.

        The frame may be a view of the source's buffer: callers must not modify it.
        """
        ...


class PcmSource:
    """Plays an in-memory int16 buffer ``loop`` times (0 = forever), seamlessly across loops."""

    def __init__(
        self,
        pcm: PcmArray,
        sample_rate: int,
        *,
        loop: int = 1,
        frame_samples: int | None = None,
    ) -> None:
        if loop < 0:
            raise ValueError(f"loop must be >= 0, got {loop}")
        if pcm.ndim != 1 or pcm.dtype != np.int16:
            raise ValueError(f"PcmSource needs a 1-D int16 buffer, got {pcm.dtype} shape {pcm.shape}")
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples if frame_samples is not None else sample_rate // 50
        if self.frame_samples <= 0:
            raise ValueError(f"frame_samples must be positive, got {self.frame_samples}")
        self.pcm = pcm
        self.loop = loop
        self._total: int | None = None if loop == 0 else pcm.size * loop
        self._pos = 0

    @property
    def position(self) -> int:
        """Samples played so far, across loops."""
        return self._pos

    @property
    def duration(self) -> float | None:
        """Total playing time in seconds, ``None`` when looping forever."""
        return None if self._total is None else self._total / self.sample_rate

    def read_frame(self) -> PcmArray | None:
        """The next frame, wrapping into the next loop mid-frame; ``None`` at the end."""
        size = self.pcm.size
        if size == 0:
            return None
        n = self.frame_samples
        end = self._pos + n
        if self._total is not None:
            if self._pos >= self._total:
                return None
            end = min(end, self._total)
        start = self._pos
        self._pos += n
        s0 = start % size
        if s0 + (end - start) <= size:
            chunk = self.pcm[s0 : s0 + (end - start)]
        else:
            chunk = np.take(self.pcm, np.arange(start, end) % size)
        if chunk.size == n:
            return chunk
        frame = np.zeros(n, dtype=np.int16)
        frame[: chunk.size] = chunk
        return frame


@dataclass(slots=True)
class _Queued:
    source: AudioSource
    on_done: Callable[[bool], None] | None


class Player:
    """A queue of sources for one leg: plays them back to back, stoppable at a frame boundary.

    ``read_frame`` returns the current source's frame; when a source ends it moves
    to the next one in the same tick (no gap).  ``None`` means the player is idle.
    Each ``on_done`` callback is called with ``True`` when its source played to the
    end and ``False`` when :meth:`stop` cut it (barge-in) or dropped it unplayed.
    """

    def __init__(self, sample_rate: int, frame_samples: int | None = None) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples if frame_samples is not None else sample_rate // 50
        self._queue: deque[_Queued] = deque()

    @property
    def playing(self) -> bool:
        """True while at least one source is queued or playing."""
        return bool(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    def enqueue(self, source: AudioSource, on_done: Callable[[bool], None] | None = None) -> None:
        """Append a source; its rate and frame size must match the player's."""
        if source.sample_rate != self.sample_rate or source.frame_samples != self.frame_samples:
            raise ValueError(
                f"source is {source.sample_rate} Hz / {source.frame_samples} samples per frame, "
                f"player is {self.sample_rate} Hz / {self.frame_samples}"
            )
        self._queue.append(_Queued(source, on_done))

    def read_frame(self) -> PcmArray | None:
        """Next frame of the current source, or ``None`` when nothing is left to play."""
        while self._queue:
            head = self._queue[0]
            frame = head.source.read_frame()
            if frame is not None:
                return frame
            self._queue.popleft()
            if head.on_done is not None:
                head.on_done(True)
        return None

    def stop(self) -> int:
        """Barge-in: drop the current and all queued sources; returns how many were dropped.

        Takes effect at the next :meth:`read_frame`, i.e. on a frame boundary.
        """
        dropped = list(self._queue)
        self._queue.clear()
        for item in dropped:
            if item.on_done is not None:
                item.on_done(False)
        return len(dropped)


# ---------------------------------------------------------------------------
# Loading and HTTP caching


@dataclass(frozen=True, slots=True)
class CacheControl:
    """The parts of ``Cache-Control`` a media cache needs (RFC 9111 section 5.2.2)."""

    max_age: float | None = None
    no_store: bool = False
    no_cache: bool = False


def parse_cache_control(value: str | None) -> CacheControl:
    """Parse a ``Cache-Control`` response header; unknown or malformed directives are ignored."""
    if not value:
        return CacheControl()
    max_age: float | None = None
    no_store = no_cache = False
    for part in value.split(","):
        name, _, arg = part.strip().partition("=")
        name = name.strip().lower()
        arg = arg.strip().strip('"')
        if name == "no-store":
            no_store = True
        elif name == "no-cache":
            # RFC 9111 5.2.2.4: no-cache with a field list only restricts those fields.
            no_cache = no_cache or not arg
        elif name in ("max-age", "s-maxage") and arg.isdigit() and (name == "s-maxage" or max_age is None):
            # s-maxage (5.2.2.10) overrides max-age for shared caches, which we are.
            max_age = float(arg)
    return CacheControl(max_age=max_age, no_store=no_store, no_cache=no_cache)


@dataclass(slots=True)
class _CacheMeta:
    url: str
    fetched_at: float
    max_age: float | None
    no_cache: bool
    etag: str | None
    last_modified: str | None

    def fresh(self, now: float) -> bool:
        return not self.no_cache and self.max_age is not None and now - self.fetched_at < self.max_age


def _freshness(headers: Mapping[str, str], now: float) -> tuple[CacheControl, float | None]:
    """Cache-Control directives and the freshness lifetime in seconds (``None``: unknown)."""
    cc = parse_cache_control(headers.get("Cache-Control"))
    max_age = cc.max_age
    expires = headers.get("Expires")
    if max_age is None and expires is not None:
        # RFC 9111 5.3 / 4.2.1: Expires minus Date; an invalid Expires means "already expired".
        try:
            date_hdr = headers.get("Date")
            date = parsedate_to_datetime(date_hdr).timestamp() if date_hdr else now
            max_age = max(0.0, parsedate_to_datetime(expires).timestamp() - date)
        except (TypeError, ValueError, IndexError):
            max_age = 0.0
    return cc, max_age


class _HttpCache:
    """On-disk store of fetched bodies: ``<sha256(url)>.body`` plus ``.json`` metadata."""

    def __init__(self, cache_dir: Path) -> None:
        self.dir = cache_dir

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()
        return self.dir / f"{key}.body", self.dir / f"{key}.json"

    def load(self, url: str) -> tuple[_CacheMeta, Path] | None:
        body, meta_path = self._paths(url)
        try:
            raw = json.loads(meta_path.read_text("utf-8"))
            meta = _CacheMeta(**raw)
        except (OSError, ValueError, TypeError):
            return None
        if meta.url != url or not body.exists():
            return None
        return meta, body

    def store(self, meta: _CacheMeta, data: bytes | None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        body, meta_path = self._paths(meta.url)
        if data is not None:
            _atomic_write(body, data)
        _atomic_write(meta_path, json.dumps(asdict(meta)).encode("utf-8"))

    def delete(self, url: str) -> None:
        for path in self._paths(url):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def _fetch_http(
    url: str,
    session: aiohttp.ClientSession,
    cache: _HttpCache | None,
    clock: Callable[[], float],
) -> bytes:
    loop = asyncio.get_running_loop()
    cached = await loop.run_in_executor(None, cache.load, url) if cache is not None else None
    now = clock()
    if cached is not None and cached[0].fresh(now):
        return await loop.run_in_executor(None, cached[1].read_bytes)
    headers: dict[str, str] = {}
    if cached is not None:
        # RFC 9110 13.1.2 / 13.1.3: conditional request on the stored validators.
        if cached[0].etag:
            headers["If-None-Match"] = cached[0].etag
        if cached[0].last_modified:
            headers["If-Modified-Since"] = cached[0].last_modified
    try:
        async with session.get(url, headers=headers, timeout=DEFAULT_HTTP_TIMEOUT) as resp:
            now = clock()
            cc, max_age = _freshness(resp.headers, now)
            if resp.status == 304 and cached is not None and cache is not None:
                meta, body_path = cached
                data = await loop.run_in_executor(None, body_path.read_bytes)
                # RFC 9111 4.3.4: update the stored response with the 304's headers.
                meta.fetched_at = now
                meta.max_age = max_age
                meta.no_cache = cc.no_cache
                meta.etag = resp.headers.get("ETag", meta.etag)
                meta.last_modified = resp.headers.get("Last-Modified", meta.last_modified)
                if cc.no_store:
                    await loop.run_in_executor(None, cache.delete, url)
                else:
                    await loop.run_in_executor(None, cache.store, meta, None)
                return data
            if resp.status != 200:
                raise AudioLoadError(url, resp.reason or "unexpected status", status=resp.status)
            data = await resp.read()
            etag = resp.headers.get("ETag")
            last_modified = resp.headers.get("Last-Modified")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise AudioLoadError(url, f"{type(exc).__name__}: {exc}", kind="network") from exc
    if cache is not None:
        if cc.no_store:
            await loop.run_in_executor(None, cache.delete, url)
        else:
            meta = _CacheMeta(url, now, max_age, cc.no_cache, etag, last_modified)
            await loop.run_in_executor(None, cache.store, meta, data)
    return data


def _local_path(url_or_path: str) -> str:
    parts = urlsplit(url_or_path)
    if parts.scheme == "file":
        return unquote(parts.path)
    return url_or_path


async def _fetch(
    url: str,
    http_session: aiohttp.ClientSession | None,
    cache_dir: str | os.PathLike[str] | None,
    clock: Callable[[], float],
) -> bytes | str:
    """The body of an HTTP(S) URL (through the cache), or the local path to read."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        cache = _HttpCache(Path(cache_dir)) if cache_dir is not None else None
        if http_session is None:
            async with aiohttp.ClientSession() as session:
                return await _fetch_http(url, session, cache, clock)
        return await _fetch_http(url, http_session, cache, clock)
    if scheme in ("", "file") or len(scheme) == 1:  # one letter: a Windows drive
        return _local_path(url)
    raise AudioLoadError(url, f"unsupported URL scheme {scheme!r}", kind="url")


async def _decode(url: str, data: bytes | str, target_rate: int, executor: Executor | None) -> PcmArray:
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(executor, decode_audio, data, target_rate)
    except AudioDecodeError as exc:
        raise AudioLoadError(url, str(exc)) from exc
    except OSError as exc:
        raise AudioLoadError(url, f"{exc.strerror or exc}", kind="file") from exc


async def load_audio(
    url_or_path: str | os.PathLike[str],
    target_rate: int,
    *,
    http_session: aiohttp.ClientSession | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    executor: Executor | None = None,
    clock: Callable[[], float] = time.time,
) -> PcmArray:
    """Fetch (HTTP(S), ``file://`` or a path) and decode audio to mono int16 at ``target_rate``.

    HTTP responses are cached under ``cache_dir`` (``None`` disables caching).
    Decoding runs in ``executor`` (the loop's default when ``None``).  Raises
    :class:`AudioLoadError` carrying the URL and the HTTP status or decoder message.
    """
    url = os.fspath(url_or_path)
    data = await _fetch(url, http_session, cache_dir, clock)
    return await _decode(url, data, target_rate, executor)


def _content_key(data: bytes | str) -> str:
    """Identity of fetched content: a digest of a body, or path + mtime + size of a file."""
    if isinstance(data, bytes):
        return "sha256:" + hashlib.sha256(data).hexdigest()
    st = os.stat(data)
    return f"file:{os.path.abspath(data)}:{st.st_mtime_ns}:{st.st_size}"


class AudioLoader:
    """:func:`load_audio` with a shared HTTP session, request coalescing and a decoded-PCM LRU.

    Concurrent loads of the same URL and rate share one fetch and decode.  Every
    load still goes through the HTTP cache rules (so a changed file is noticed),
    but identical content is decoded only once while it stays in the
    ``memory_bytes``-bounded LRU.  Returned arrays are shared and read-only.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        http_session: aiohttp.ClientSession | None = None,
        executor: Executor | None = None,
        memory_bytes: int = 64 << 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache_dir = cache_dir
        self.executor = executor
        self.memory_bytes = memory_bytes
        self.clock = clock
        self._session = http_session
        self._own_session = http_session is None
        self._lru: OrderedDict[tuple[str, int], PcmArray] = OrderedDict()
        self._lru_bytes = 0
        self._inflight: dict[tuple[str, int], asyncio.Future[PcmArray]] = {}
        self.decodes = 0

    async def load(self, url_or_path: str | os.PathLike[str], target_rate: int) -> PcmArray:
        """Fetch and decode like :func:`load_audio`; raises :class:`AudioLoadError`."""
        url = os.fspath(url_or_path)
        key = (url, target_rate)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(url, target_rate))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _load(self, url: str, target_rate: int) -> PcmArray:
        if urlsplit(url).scheme.lower() in ("http", "https") and self._session is None:
            self._session = aiohttp.ClientSession()
        data = await _fetch(url, self._session, self.cache_dir, self.clock)
        loop = asyncio.get_running_loop()
        try:
            ckey = (await loop.run_in_executor(self.executor, _content_key, data), target_rate)
        except OSError as exc:
            raise AudioLoadError(url, f"{exc.strerror or exc}", kind="file") from exc
        cached = self._lru.get(ckey)
        if cached is not None:
            self._lru.move_to_end(ckey)
            return cached
        pcm = await _decode(url, data, target_rate, self.executor)
        self.decodes += 1
        pcm.setflags(write=False)
        self._lru[ckey] = pcm
        self._lru_bytes += pcm.nbytes
        while self._lru_bytes > self.memory_bytes and len(self._lru) > 1:
            _, old = self._lru.popitem(last=False)
            self._lru_bytes -= old.nbytes
        return pcm

    async def close(self) -> None:
        """Close the HTTP session if this loader created it."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
