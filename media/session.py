"""The per-call media API of a stream: playback, digits, recording, speech events, capture.

:class:`CallMedia` is the part of :class:`~trunkline.media.stream.RtpStream` that the
call core and the TwiML ``CallChannel`` implementation use (``<Play>``, ``<Say>``,
``<Pause>``, ``<Gather>``, ``<Record>``, ``sendDigits``).  Nothing here touches a
socket: audio goes in and out through the engine's 20 ms tick, which pulls
playback frames from :attr:`CallMedia.player` and pushes decoded input into the
recorders, the VAD endpointer and the capture buffer.

Slow work (HTTP fetch, file decoding, speech synthesis) runs off the event loop in
:func:`~trunkline.media.player.load_audio` / :class:`~trunkline.media.tts.TextToSpeech`
before the first frame is queued; barge-in (:meth:`CallMedia.stop_playback`) takes
effect at the next frame boundary.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from trunkline.codecs.base import PcmArray
from trunkline.codecs.resample import Resampler
from trunkline.media.player import AudioSource, PcmSource, Player
from trunkline.media.recorder import Recorder, RecordingResult
from trunkline.media.tones import SilenceSource, ToneSource, ToneSpec, dtmf_sequence, tone_source
from trunkline.media.vad import (
    BargeIn,
    Endpointer,
    SilenceTracker,
    SpeechEnded,
    SpeechStarted,
    VadEvent,
    VoiceActivityDetector,
)

if TYPE_CHECKING:
    from trunkline.media.engine import MediaEngine, MediaRoom
    from trunkline.media.rtp import RtpPacket
    from trunkline.media.stream import RtpStream

__all__ = [
    "CallMedia",
    "Digit",
    "Interrupt",
    "PlayItem",
    "PlayOutcome",
    "Recording",
]

# Untyped alias: numpy's stubs reject clip(int32 array, int, int) under strict mypy.
_xp: Any = np

#: Rate of the consumer domain: recordings, in-band DTMF, VAD and speech capture.
CONSUMER_RATE = 8000


class PlayOutcome(enum.Enum):
    """How a playback ended (same values as ``trunkline.gateway.twiml.channel.PlayOutcome``)."""

    COMPLETED = "completed"
    INTERRUPTED = "interrupted"


class Interrupt(enum.Flag):
    """What stops a playback early (``<Gather>`` barge-in)."""

    NONE = 0
    DTMF = enum.auto()
    SPEECH = enum.auto()


@dataclass(frozen=True, slots=True)
class Digit:
    """One key press, reported once whether it came as RFC 4733 events, in-band tones or both.

    ``time`` is the event loop time at which it was recognised.
    """

    digit: str
    source: Literal["rfc4733", "inband"]
    duration_ms: int
    time: float


#: What :meth:`CallMedia.play` accepts: a source (any rate, 20 ms frames), an 8 kHz int16
#: buffer, ``(buffer, rate)``, or a tone description.
PlayItem = AudioSource | PcmArray | tuple[PcmArray, int] | ToneSpec


class _ResampledSource:
    """An :class:`AudioSource` at another rate, resampled frame by frame (20 ms frames)."""

    def __init__(self, source: AudioSource, rate: int) -> None:
        if source.frame_samples * 50 != source.sample_rate:
            raise ValueError(
                "source frames must be 20 ms to resample, "
                f"got {source.frame_samples} at {source.sample_rate} Hz"
            )
        self.source = source
        self.sample_rate = rate
        self.frame_samples = rate // 50
        self._rs = Resampler(source.sample_rate, rate)

    def read_frame(self) -> PcmArray | None:
        frame = self.source.read_frame()
        return None if frame is None else self._rs.process(np.ascontiguousarray(frame))


def adapt_source(source: AudioSource, rate: int) -> AudioSource:
    """``source`` itself if it already runs at ``rate``, else a resampling wrapper."""
    if source.sample_rate == rate and source.frame_samples * 50 == rate:
        return source
    return _ResampledSource(source, rate)


class _Counting:
    """Counts the frames a source gave (to stop an endless loop of empty items)."""

    def __init__(self, source: AudioSource) -> None:
        self.source = source
        self.sample_rate = source.sample_rate
        self.frame_samples = source.frame_samples
        self.frames = 0

    def read_frame(self) -> PcmArray | None:
        frame = self.source.read_frame()
        if frame is not None:
            self.frames += 1
        return frame


class _Playback:
    """One :meth:`CallMedia.play` call: its items, loops left and the future to resolve."""

    def __init__(
        self,
        owner: CallMedia,
        factories: list[Callable[[], AudioSource]],
        loops: int,
        interrupt: Interrupt,
        future: asyncio.Future[PlayOutcome],
    ) -> None:
        self.owner = owner
        self.factories = factories
        self.loops = loops
        self.interrupt = interrupt
        self.future = future
        self.index = 0
        self.iteration = 0
        self.heard = False
        self._current: _Counting | None = None

    def start(self) -> None:
        if not self.factories:
            self.finish(PlayOutcome.COMPLETED)
            return
        self._enqueue()

    def _enqueue(self) -> None:
        source = adapt_source(self.factories[self.index](), self.owner.player.sample_rate)
        if not self.loops:
            source = self._current = _Counting(source)
        self.owner.player.enqueue(source, self._done)
        self.owner.media_changed()

    def _done(self, completed: bool) -> None:
        if not completed:
            self.finish(PlayOutcome.INTERRUPTED)
            return
        if not self.loops and self._current is not None and self._current.frames:
            self.heard = True
        self.index += 1
        if self.index == len(self.factories):
            self.index = 0
            self.iteration += 1
            if self.loops and self.iteration >= self.loops:
                self.finish(PlayOutcome.COMPLETED)
                return
            if not self.loops and not self.heard:
                # loop="0" over items that are all empty would spin forever in one tick.
                self.finish(PlayOutcome.COMPLETED)
                return
            self.heard = False
        self._enqueue()

    def finish(self, outcome: PlayOutcome) -> None:
        if self in self.owner.playbacks:
            self.owner.playbacks.remove(self)
        if not self.future.done():
            self.future.set_result(outcome)


class Recording:
    """A recording in progress on one leg; :meth:`stop` finishes the file.

    ``sources`` are the streams whose decoded input is recorded: one (mono), two
    mixed into one channel (``mix``), or two channels (this leg on channel 0 and
    the other leg on channel 1, time-aligned: both are pushed on the same tick).
    """

    def __init__(
        self,
        engine: MediaEngine,
        recorder: Recorder,
        sources: tuple[RtpStream | None, ...],
        *,
        mix: bool,
    ) -> None:
        self.engine = engine
        self.recorder = recorder
        self.sources = sources
        self.mix = mix
        self.stopped = False
        self._result: asyncio.Future[RecordingResult] | None = None

    @property
    def path(self) -> Path:
        """Where the file is written."""
        return self.recorder.path

    @property
    def duration_s(self) -> float:
        """Audio recorded so far."""
        return self.recorder.duration_s

    def pause(self, behavior: Literal["skip", "silence"] = "silence") -> None:
        """Pause (``skip`` drops the time, ``silence`` records zeros)."""
        self.recorder.pause(behavior)

    def resume(self) -> None:
        """Resume after :meth:`pause`."""
        self.recorder.resume()

    def push_tick(self) -> None:
        """Record this tick's frames (called by the engine)."""
        frames = [s.tick_in8k if s is not None and not s.closed else None for s in self.sources]
        if self.mix:
            present = [f for f in frames if f is not None]
            if not present:
                self.recorder.push(None)
                return
            if len(present) == 1:
                self.recorder.push(present[0])
                return
            total = present[0].astype(np.int32)
            for f in present[1:]:
                total += f
            self.recorder.push(_xp.clip(total, -32768, 32767).astype(np.int16))
            return
        self.recorder.push(*frames)

    def detach(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.engine.recordings.discard(self)
        for s in self.sources:
            if s is not None:
                s.taps -= 1

    async def stop(self) -> RecordingResult:
        """Stop recording and wait (off the loop) until the file is complete (idempotent)."""
        self.detach()
        if self._result is None:
            self._result = asyncio.wrap_future(self.recorder.finish_future())
        return await asyncio.shield(self._result)


class CallMedia:
    """Playback, digits, recording and speech detection of one leg (mixed into ``RtpStream``)."""

    if not TYPE_CHECKING:  # the slots are RtpStream's; mypy checks the mixin's own assignments
        __slots__ = ()

    # Provided by RtpStream.
    engine: MediaEngine
    loop: asyncio.AbstractEventLoop
    closed: bool
    sample_rate: int
    te_payload_type: int
    sending: bool
    rfc4733_seen: bool
    peer: RtpStream | None
    dtmf_tx: deque[RtpPacket | tuple[str, int, asyncio.Future[None] | None] | None]
    taps: int
    tick_in8k: PcmArray | None

    def __init__(self) -> None:
        self.player = Player(CONSUMER_RATE)
        self.playbacks: list[_Playback] = []
        # The queues and the event are made on first use (most legs never need them): fewer
        # objects per stream for the garbage collector to walk.
        self._digits: asyncio.Queue[Digit] | None = None
        self.digit_callbacks: list[Callable[[Digit], None]] = []
        self._last_inband: tuple[str, float] | None = None
        self.endpointer: Endpointer | None = None
        self._speech_events: asyncio.Queue[VadEvent] | None = None
        self.speech_callbacks: list[Callable[[VadEvent], None]] = []
        self._speech_started: asyncio.Event | None = None
        self.capture: list[PcmArray] | None = None
        self.room: MediaRoom | None = None

    @property
    def digits(self) -> asyncio.Queue[Digit]:
        """Digits received (RFC 4733 or in-band) and not read yet, oldest first."""
        if self._digits is None:
            self._digits = asyncio.Queue()
        return self._digits

    @property
    def speech_events(self) -> asyncio.Queue[VadEvent]:
        """Speech detection events (:meth:`start_speech_detection`) not read yet."""
        if self._speech_events is None:
            self._speech_events = asyncio.Queue()
        return self._speech_events

    @property
    def speech_started(self) -> asyncio.Event:
        """Set while the caller is speaking (from :class:`SpeechStarted` to :class:`SpeechEnded`)."""
        if self._speech_started is None:
            self._speech_started = asyncio.Event()
        return self._speech_started

    def media_changed(self) -> None:
        """Hook: this leg's consumers or own output changed (``RtpStream`` closes its relay gates)."""

    def reset_player(self, rate: int) -> None:
        """New codec rate: prompts in progress are cut (they resume with the next verb)."""
        if rate != self.player.sample_rate:
            self.player.stop()
            self.player = Player(rate)
            self.media_changed()

    # -- playback --------------------------------------------------------------------------------

    def _factory(self, item: PlayItem) -> Callable[[], AudioSource]:
        if isinstance(item, ToneSpec):
            spec = item
            return lambda: ToneSource(spec, self.player.sample_rate)
        if isinstance(item, np.ndarray):
            pcm = item
            return lambda: PcmSource(pcm, CONSUMER_RATE)
        if isinstance(item, tuple):
            buf, rate = item
            return lambda: PcmSource(buf, rate)
        if isinstance(item, AudioSource):
            source = item
            return lambda: source  # a stateful source plays once, whatever ``loop`` says
        raise TypeError(f"cannot play {type(item).__name__}")

    async def play(
        self,
        items: PlayItem | Sequence[PlayItem],
        *,
        loop: int = 1,
        interrupt: Interrupt = Interrupt.NONE,
    ) -> PlayOutcome:
        """Play ``items`` back to back ``loop`` times (0 = until stopped) to the far end.

        Returns :attr:`PlayOutcome.COMPLETED`, or :attr:`PlayOutcome.INTERRUPTED` when
        :meth:`stop_playback`, a digit (``Interrupt.DTMF``) or speech
        (``Interrupt.SPEECH``, VAD barge-in) cut it.  While a prompt plays it replaces
        the bridge/room audio this leg would otherwise hear.  Cancelling the
        awaiting task stops the playback.
        """
        if self.closed:
            return PlayOutcome.INTERRUPTED
        if loop < 0:
            raise ValueError(f"loop must be >= 0, got {loop}")
        single = isinstance(items, np.ndarray | ToneSpec | AudioSource) or (
            isinstance(items, tuple)
            and len(items) == 2
            and isinstance(items[0], np.ndarray)
            and isinstance(items[1], int)
        )
        seq: Sequence[PlayItem] = [items] if single else items  # type: ignore[list-item,assignment]
        future: asyncio.Future[PlayOutcome] = self.loop.create_future()
        playback = _Playback(self, [self._factory(i) for i in seq], loop, interrupt, future)
        self.playbacks.append(playback)
        playback.start()
        try:
            return await future
        except asyncio.CancelledError:
            if not future.done():
                self.stop_playback()
            raise

    async def play_url(
        self, url: str | os.PathLike[str], *, loop: int = 1, interrupt: Interrupt = Interrupt.NONE
    ) -> PlayOutcome:
        """``<Play>``: fetch (HTTP cache) and decode off the loop, then play.

        Raises :class:`~trunkline.media.player.AudioLoadError` (Twilio 11200/12300).
        """
        pcm = await self.engine.audio_loader.load(url, self.player.sample_rate)
        return await self.play((pcm, self.player.sample_rate), loop=loop, interrupt=interrupt)

    async def say(
        self,
        text: str,
        voice: str | None = "man",
        language: str | None = "en-US",
        *,
        loop: int = 1,
        interrupt: Interrupt = Interrupt.NONE,
    ) -> PlayOutcome:
        """``<Say>``: synthesise with espeak-ng off the loop (cached), then play."""
        rate = self.player.sample_rate
        pcm = await self.engine.tts.synthesize(text, voice=voice, language=language, sample_rate=rate)
        return await self.play((pcm, rate), loop=loop, interrupt=interrupt)

    async def play_tone(
        self, name: str, seconds: float | None = None, *, interrupt: Interrupt = Interrupt.NONE
    ) -> PlayOutcome:
        """A named tone (``beep``, ``ringback-us``, ``dtmf-5`` ...); endless ones need ``seconds``."""
        return await self.play(tone_source(name, self.player.sample_rate, seconds), interrupt=interrupt)

    async def pause(self, seconds: float, *, interrupt: Interrupt = Interrupt.NONE) -> PlayOutcome:
        """``<Pause>``: send silence for ``seconds`` (interruptible like a prompt)."""
        rate = self.player.sample_rate
        return await self.play(SilenceSource(rate, duration=seconds), interrupt=interrupt)

    def stop_playback(self) -> bool:
        """Barge-in: stop every queued prompt at the next frame boundary; True if one was playing."""
        return self.player.stop() > 0

    @property
    def playing(self) -> bool:
        """Whether a prompt is playing or queued."""
        return self.player.playing

    def _interrupt_on(self, what: Interrupt) -> None:
        if any(pb.interrupt & what for pb in self.playbacks):
            self.stop_playback()

    # -- digits ----------------------------------------------------------------------------------

    def digit_received(
        self, digit: str, source: Literal["rfc4733", "inband"], duration_ms: int, now: float
    ) -> None:
        """Report a digit (called by the stream and the engine), once per key press.

        A phone that sends RFC 4733 events usually leaves the tone in the audio too:
        once a telephone-event arrived on this leg, in-band detections are ignored,
        and an RFC 4733 digit that follows an in-band detection of the same key
        within its duration (+0.5 s) is the same press.
        """
        if source == "inband":
            if self.rfc4733_seen:
                return
            self._last_inband = (digit, now)
        else:
            last = self._last_inband
            self._last_inband = None
            if last is not None and last[0] == digit and now - last[1] < duration_ms / 1000 + 0.5:
                return
        event = Digit(digit, source, duration_ms, now)
        self.digits.put_nowait(event)
        for callback in list(self.digit_callbacks):
            callback(event)
        self._interrupt_on(Interrupt.DTMF)
        me: RtpStream = self  # type: ignore[assignment]
        self.engine.digit_from(me, event)

    def flush_digits(self) -> None:
        """Forget digits received and not read yet."""
        queue = self._digits
        while queue is not None and not queue.empty():
            queue.get_nowait()

    async def send_dtmf(self, digits: str, *, duration_ms: int = 100, gap_ms: int = 60) -> None:
        """Send ``digits`` (``0-9*#A-D``, ``w`` = 0.5 s and ``W`` = 1 s pause) to the far end.

        As RFC 4733 events when telephone-event was negotiated (audio is muted while
        an event is sent), else as in-band tones.  Returns when the last one was sent.
        """
        for ch in digits:
            if ch not in "0123456789*#ABCDabcdwW":
                raise ValueError(f"DTMF digit {ch!r} is not one of 0-9, *, #, A-D, w, W")
        if self.closed or not self.sending:
            return  # nothing reaches a held or inactive leg
        if self.te_payload_type < 0:
            keys = "".join(c.upper() if c in "abcd" else c for c in digits)
            pcm = dtmf_sequence(keys, CONSUMER_RATE, tone_ms=duration_ms, gap_ms=gap_ms)
            await self.play(pcm)
            return
        future: asyncio.Future[None] = self.loop.create_future()
        gap_ticks = max(1, round(gap_ms / 20))
        for ch in digits:
            if ch in "wW":
                self.dtmf_tx.append((ch, 25 if ch == "w" else 50, None))
            else:
                self.dtmf_tx.append((ch.upper(), duration_ms, None))
                self.dtmf_tx.extend([None] * gap_ticks)
        self.dtmf_tx.append(("done", 0, future))
        self.media_changed()
        await future

    # -- recording -------------------------------------------------------------------------------

    def start_recording(
        self,
        path: str | os.PathLike[str],
        *,
        dual: bool = False,
        other: RtpStream | None = None,
        mix: bool = False,
        trim: bool = False,
        file_format: Literal["wav", "flac"] = "wav",
    ) -> Recording:
        """Record this leg's incoming audio to ``path`` (8 kHz, 16-bit WAV or FLAC).

        ``dual``: two channels, this leg on 0 and ``other`` (default: the bridge
        peer) on 1, time-aligned.  ``mix``: one channel with both legs summed.
        ``trim`` drops leading/trailing silence (Twilio ``trim-silence``).
        Stop with ``await rec.stop()``, which returns the recorder's result.
        """
        me: RtpStream = self  # type: ignore[assignment]
        second = other if other is not None else self.peer
        sources: tuple[RtpStream | None, ...] = (me, second) if (dual or mix) else (me,)
        recorder = Recorder(path, CONSUMER_RATE, 2 if dual else 1, file_format=file_format, trim_silence=trim)
        rec = Recording(self.engine, recorder, sources, mix=mix and not dual)
        for s in sources:
            if s is not None:
                s.taps += 1
                s.media_changed()
        self.engine.recordings.add(rec)
        return rec

    # -- speech ------------------------------------------------------------------------------------

    def start_speech_detection(
        self,
        *,
        silence_timeout_s: float | None = None,
        speech_start_ms: int = 60,
        speech_end_ms: int = 600,
        barge_in_ms: int = 300,
        aggressiveness: int = 2,
    ) -> None:
        """Run VAD on this leg's input: events go to :attr:`speech_events` and callbacks.

        :attr:`speech_started` is set on the first :class:`SpeechStarted`; a
        :class:`BargeIn` stops prompts played with ``Interrupt.SPEECH``.
        """
        detector = VoiceActivityDetector(CONSUMER_RATE, aggressiveness)
        tracker = SilenceTracker(
            silence_timeout_s=silence_timeout_s,
            speech_start_ms=speech_start_ms,
            speech_end_ms=speech_end_ms,
            barge_in_ms=barge_in_ms,
        )
        self.endpointer = Endpointer(detector, tracker)
        self.media_changed()
        self.speech_started.clear()

    def stop_speech_detection(self) -> None:
        """Stop VAD on this leg."""
        self.endpointer = None

    def vad_frame(self, pcm8k: PcmArray) -> None:
        """Feed one 8 kHz frame to the endpointer (engine side)."""
        endpointer = self.endpointer
        if endpointer is None:
            return
        for event in endpointer.process(pcm8k):
            if isinstance(event, SpeechStarted):
                self.speech_started.set()
            elif isinstance(event, SpeechEnded):
                self.speech_started.clear()
            elif isinstance(event, BargeIn):
                self._interrupt_on(Interrupt.SPEECH)
            self.speech_events.put_nowait(event)
            for callback in list(self.speech_callbacks):
                callback(event)

    def start_capture(self) -> None:
        """Start keeping this leg's input (8 kHz) in memory, e.g. for speech recognition."""
        if self.capture is None:
            self.capture = []
            self.taps += 1
            self.media_changed()

    def captured_audio(self) -> PcmArray:
        """The audio captured so far (8 kHz mono int16)."""
        if not self.capture:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self.capture)

    def stop_capture(self) -> PcmArray:
        """Stop capturing and return the audio."""
        audio = self.captured_audio()
        if self.capture is not None:
            self.capture = None
            self.taps -= 1
        return audio

    def close_session(self) -> None:
        """Release the per-call state (the stream is closed)."""
        self.stop_playback()
        for pb in list(self.playbacks):
            pb.finish(PlayOutcome.INTERRUPTED)
        self.endpointer = None
        self.capture = None
