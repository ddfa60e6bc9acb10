"""``SipCallChannel``: the TwiML ``CallChannel`` on one SIP leg and its RTP stream.

The interpreter (``trunkline.gateway.twiml.interpreter``) drives a call only through
:class:`~trunkline.gateway.twiml.channel.CallChannel`; this module implements it on an
:class:`~trunkline.gateway.switch.legs.InboundLeg` or answered
:class:`~trunkline.gateway.switch.legs.OutboundLeg` plus the leg's
:class:`~trunkline.media.stream.RtpStream`:

* ``answer`` negotiates the SDP answer (RFC 3264 section 6) on the stream's port and sends 200
  (a late-offer INVITE gets our offer in the 200 and its answer is read from the ACK);
* ``play`` synthesises / fetches off the event loop, then plays through the media engine,
  stopping early on a digit or speech (barge-in) when asked;
* digits come from RFC 4733 events, in-band tones (both deduplicated by the media session) and
  SIP INFO (``application/dtmf-relay``), are buffered from the start of the call, and an INFO
  digit repeating an RTP one within its duration is dropped;
* ``record`` writes a crash-safe WAV under ``storage.recordings_dir`` and stops on a finish key,
  ``silence_timeout`` of silence (VAD), ``max_length`` or hangup; its Recording record is stored
  ``in-progress`` when it starts and ``completed`` when it ends;
* ``recognize`` endpoints an utterance with the VAD and transcribes it with pocketsphinx.

``dial``/``enqueue``/``refer`` are delegated to ``gateway/switch/dial.py``, ``queues.py`` and
``refer.py``; until those exist they raise :class:`FeatureUnavailable`.

Every coroutine raises :class:`~trunkline.gateway.twiml.channel.CallEnded` when the leg ends
while it waits (``record`` returns with ``hung_up`` instead, as the protocol says).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from trunkline.gateway.sip.sdp import (
    LocalMedia,
    SdpError,
    SessionDescription,
    build_offer,
    negotiate_answer,
    parse_sdp,
    process_answer,
)
from trunkline.gateway.switch.calls import new_sid
from trunkline.gateway.switch.legs import Ended, InboundLeg, InfoDtmf, OutboundLeg
from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.channel import (
    AudioUrl,
    CallEnded,
    DialResult,
    Interrupt,
    PlayItem,
    PlayOutcome,
    QueueResult,
    RecordOptions,
    RecordResult,
    ReferResult,
    Silence,
    Speech,
    SpeechOptions,
    SpeechResult,
    Tone,
)
from trunkline.media import session as media_session
from trunkline.media.player import AudioLoadError
from trunkline.media.tones import SilenceSource, tone_source
from trunkline.media.vad import SilenceTimeout, SpeechEnded, VadEvent

if TYPE_CHECKING:
    from trunkline.media.speech import SpeechRecognizer
    from trunkline.media.stream import RtpStream

__all__ = ["ChannelHost", "FeatureUnavailable", "SipCallChannel"]

log = logging.getLogger("trunkline.switch.channel")

T = TypeVar("T")

#: An INFO digit this close (s) after the same RTP digit is the same key press.
DUPLICATE_WINDOW = 0.5
#: How often (s) the utterance heard so far is re-transcribed for ``partialResultCallback``.
PARTIAL_INTERVAL = 0.5
#: How long to wait for the ACK carrying the SDP answer of a late-offer call (RFC 3261 timer H).
LATE_ANSWER_TIMEOUT = 32.0


class FeatureUnavailable(NotImplementedError):
    """A verb whose switch module is not there yet (``<Dial>``, ``<Enqueue>``, ``<Refer>``)."""

    def __init__(self, verb: str, module: str) -> None:
        super().__init__(f"<{verb}> is not available: trunkline.gateway.switch.{module} is not installed")
        self.verb = verb
        self.module = module


class ChannelHost(Protocol):
    """What the channel reports to the switch that owns the call."""

    async def channel_answered(self, channel: SipCallChannel) -> None:
        """The call was answered (200 OK sent)."""

    async def channel_rejected(self, channel: SipCallChannel, sip_status: int) -> None:
        """The call was refused before answer with ``sip_status``."""

    async def recording_started(self, channel: SipCallChannel, sid: str, path: Path) -> None:
        """A ``<Record>`` is about to write ``path``: store its Recording record ``in-progress``."""

    async def recording_finished(
        self, channel: SipCallChannel, sid: str, path: Path, duration: float
    ) -> None:
        """A ``<Record>`` file is complete: store its Recording record."""

    async def warning(self, channel: SipCallChannel, code: int, message: str, url: str | None) -> None:
        """A non-fatal problem (a ``<Play>`` URL that cannot be fetched) for the debugger."""


@dataclass(frozen=True, slots=True)
class _Key:
    digit: str
    time: float
    source: str


class SipCallChannel:
    """One call leg as the TwiML interpreter drives it (see the module docstring)."""

    def __init__(
        self,
        call_sid: str,
        leg: InboundLeg | OutboundLeg,
        stream: RtpStream,
        host: ChannelHost,
        *,
        recordings_dir: Path,
        recognizer: SpeechRecognizer | None = None,
        answered: bool = False,
        local_media: LocalMedia | None = None,
        local_sdp: SessionDescription | None = None,
    ) -> None:
        self._call_sid = call_sid
        self.leg = leg
        self.stream = stream
        self.host = host
        self.recordings_dir = Path(recordings_dir)
        self.recognizer = recognizer
        self._answered = answered
        self._local = local_media
        self._local_sdp = local_sdp
        self._digits: asyncio.Queue[str] = asyncio.Queue()
        self._last_key: _Key | None = None
        self._interrupt = Interrupt.NONE
        self._loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[Ended] = self._loop.create_future()
        self.recording: media_session.Recording | None = None
        stream.digit_callbacks.append(self._on_media_digit)
        leg.on_reinvite = self._on_reoffer
        self._events = self._loop.create_task(self._pump_events())

    # -- properties --------------------------------------------------------------------------------

    @property
    def call_sid(self) -> str:
        """The call's SID."""
        return self._call_sid

    @property
    def answered(self) -> bool:
        """True once the call has been answered."""
        return self._answered

    @property
    def is_ended(self) -> bool:
        """True once the leg is over."""
        return self.ended.done()

    # -- leg events --------------------------------------------------------------------------------

    async def _pump_events(self) -> None:
        while True:
            event = await self.leg.events.get()
            if isinstance(event, InfoDtmf):
                self._key(event.digit, "info", event.duration)
            elif isinstance(event, Ended):
                if not self.ended.done():
                    self.ended.set_result(event)
                return

    def _on_media_digit(self, digit: media_session.Digit) -> None:
        self._key(digit.digit, digit.source, digit.duration_ms)

    def _key(self, digit: str, source: str, duration_ms: int) -> None:
        now = time.monotonic()
        last = self._last_key
        if (
            last is not None
            and last.digit == digit
            and last.source != source
            and "info" in (last.source, source)
            and now - last.time < duration_ms / 1000 + DUPLICATE_WINDOW
        ):
            return  # the same key press reported by INFO and by the media path
        self._last_key = _Key(digit, now, source)
        self._digits.put_nowait(digit)
        if source == "info" and self._interrupt & Interrupt.DTMF:
            self.stream.stop_playback()  # barge-in (media digits are handled by the session)

    def _on_reoffer(self, offer: bytes | None) -> bytes | None:
        """Answer a re-INVITE / UPDATE offer (hold, resume, codec change) and reconfigure RTP."""
        if offer is None or self._local is None:
            return None
        try:
            answer, negotiated = negotiate_answer(parse_sdp(offer), self._local, previous=self._local_sdp)
        except SdpError:
            return None
        self._local_sdp = answer
        self.stream.configure(negotiated)
        return answer.serialize()

    async def _until_ended(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` unless the leg ends first (then :class:`CallEnded`)."""
        if self.ended.done():
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise CallEnded
        task = asyncio.ensure_future(awaitable)
        waits: set[asyncio.Future[Any]] = {task, self.ended}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise CallEnded

    # -- call control ------------------------------------------------------------------------------

    async def answer(self) -> None:
        """Send 200 OK with our SDP answer (idempotent)."""
        if self._answered:
            return
        if self.ended.done():
            raise CallEnded
        leg = self.leg
        if not isinstance(leg, InboundLeg):
            self._answered = True
            return
        local = LocalMedia(self.stream.local_address, self.stream.local_port)
        self._local = local
        offer = leg.offer_sdp
        if offer is None:
            await self._answer_late_offer(leg, local)
            return
        try:
            answer, negotiated = negotiate_answer(offer, local)
        except SdpError as exc:
            leg.reject(exc.status_code, headers=(("Warning", exc.warning),) if exc.warning else ())
            raise CallEnded from None
        self._local_sdp = answer
        self.stream.configure(negotiated)
        leg.answer(answer.serialize(), local_media=local)
        self._answered = True
        await self.host.channel_answered(self)

    async def _answer_late_offer(self, leg: InboundLeg, local: LocalMedia) -> None:
        # RFC 3261 section 13.2.1 / RFC 3264 section 5: an INVITE without a body gets our offer in
        # the 200 OK, and the answer comes in the ACK.
        our_offer = build_offer(local)
        self._local_sdp = our_offer
        leg.answer(our_offer.serialize(), local_media=local)
        self._answered = True
        await self.host.channel_answered(self)
        deadline = self._loop.time() + LATE_ANSWER_TIMEOUT
        while leg.remote_sdp is None and not self.ended.done() and self._loop.time() < deadline:
            await asyncio.sleep(0.01)  # the leg has no ACK event: look for the ACK's SDP
        if leg.remote_sdp is None:
            if self.ended.done():
                raise CallEnded
            log.warning("call %s: no SDP answer in the ACK: hanging up", self.call_sid)
            leg.hangup()
            raise CallEnded
        try:
            self.stream.configure(process_answer(our_offer, parse_sdp(leg.remote_sdp)))
        except SdpError as exc:
            log.warning("call %s: unusable SDP answer in the ACK (%s): hanging up", self.call_sid, exc)
            leg.hangup()
            raise CallEnded from None

    async def reject(self, sip_status: int) -> None:
        """Refuse the unanswered call (486 busy, 603 decline)."""
        leg = self.leg
        if isinstance(leg, InboundLeg) and not self._answered:
            leg.reject(sip_status)
            await self.host.channel_rejected(self, sip_status)

    async def hangup(self) -> None:
        """BYE (or 480 before answer); returns at once, the leg ends on its own."""
        self.stream.stop_playback()
        self.leg.hangup()

    # -- audio -------------------------------------------------------------------------------------

    async def _load(self, item: PlayItem, rate: int) -> media_session.PlayItem | None:
        engine = self.stream.engine
        if isinstance(item, Speech):
            pcm = await engine.tts.synthesize(
                item.text, voice=item.voice, language=item.language, sample_rate=rate
            )
            return (pcm, rate)
        if isinstance(item, AudioUrl):
            try:
                pcm = await engine.audio_loader.load(item.url, rate)
            except AudioLoadError as exc:
                await self.host.warning(
                    self, exc.twilio_code, f"<Play> could not load audio: {exc}", item.url
                )
                return None
            return (pcm, rate)
        if isinstance(item, Silence):
            return SilenceSource(rate, duration=item.seconds)
        if isinstance(item, Tone):
            return tone_source(item.name, rate, item.seconds)
        raise TypeError(f"cannot play {type(item).__name__}")

    async def play(
        self, items: Sequence[PlayItem], *, loop: int = 1, interrupt: Interrupt = Interrupt.NONE
    ) -> PlayOutcome:
        """Play ``items`` ``loop`` times (0 = until hangup), stopping early on ``interrupt``."""
        rate = self.stream.player.sample_rate
        loaded: list[media_session.PlayItem] = []
        for item in items:
            source = await self._until_ended(self._load(item, rate))
            if source is not None:
                loaded.append(source)
        if not loaded:
            return PlayOutcome.COMPLETED
        if interrupt & Interrupt.DTMF and not self._digits.empty():
            return PlayOutcome.INTERRUPTED  # a key pressed before the prompt started barges in
        speech = bool(interrupt & Interrupt.SPEECH)
        if speech:
            self.stream.start_speech_detection(silence_timeout_s=None)
        self._interrupt = interrupt
        try:
            outcome = await self._until_ended(
                self.stream.play(loaded, loop=loop, interrupt=media_session.Interrupt(interrupt.value))
            )
        finally:
            self._interrupt = Interrupt.NONE
            if speech:
                self.stream.stop_speech_detection()
        return PlayOutcome(outcome.value)

    async def send_digits(self, digits: str) -> None:
        """Send DTMF (RFC 4733 when negotiated, else tones); ``w`` pauses half a second."""
        await self._until_ended(self.stream.send_dtmf(digits))

    async def next_digit(self, timeout: float) -> str | None:
        """The next digit (buffered ones first), or None after ``timeout`` seconds."""
        if not self._digits.empty():
            return self._digits.get_nowait()
        try:
            return await self._until_ended(asyncio.wait_for(self._digits.get(), timeout))
        except TimeoutError:
            return None

    def flush_digits(self) -> None:
        """Forget digits pressed so far."""
        while not self._digits.empty():
            self._digits.get_nowait()
        self.stream.flush_digits()

    # -- recording ---------------------------------------------------------------------------------

    async def record(self, options: RecordOptions) -> RecordResult:
        """Record until a finish key, silence, the maximum length or hangup (never raises CallEnded)."""
        sid = options.recording_sid or new_sid("RE")
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        path = self.recordings_dir / f"{sid}.wav"
        if self.ended.done():
            return RecordResult(sid, str(path), 0.0, hung_up=True)
        stream = self.stream
        # The record first, then the file: a crash leaves no recording file without its record.
        await self.host.recording_started(self, sid, path)
        recording = stream.start_recording(path, trim=options.trim_silence)
        self.recording = recording
        silence: asyncio.Future[None] = self._loop.create_future()

        def on_vad(event: VadEvent) -> None:
            if isinstance(event, SilenceTimeout) and not silence.done():
                silence.set_result(None)

        stream.start_speech_detection(silence_timeout_s=max(options.silence_timeout, 0.1))
        stream.speech_callbacks.append(on_vad)
        digits = ""
        hung_up = False
        try:
            deadline = self._loop.time() + options.max_length
            while True:
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    break
                getter = asyncio.ensure_future(self._digits.get())
                waits: set[asyncio.Future[Any]] = {getter, silence, self.ended}
                done, _ = await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    key = getter.result()
                    if key in options.finish_on_key:
                        digits = key
                        break
                    continue
                getter.cancel()
                if self.ended.done():
                    hung_up = True
                    break
                if silence.done() or not done:
                    break
        finally:
            with contextlib.suppress(ValueError):
                stream.speech_callbacks.remove(on_vad)
            stream.stop_speech_detection()
            result = await recording.stop()
            self.recording = None
            # Stored even when the session is cancelled (redirect, shutdown): the file is complete.
            await self.host.recording_finished(self, sid, Path(result.path), result.duration_s)
        return RecordResult(sid, str(result.path), result.duration_s, digits=digits, hung_up=hung_up)

    async def recognize(self, options: SpeechOptions) -> SpeechResult | None:
        """Listen for one utterance (VAD endpointing) and transcribe it."""
        stream = self.stream
        finished: asyncio.Future[bool] = self._loop.create_future()

        def on_vad(event: VadEvent) -> None:
            if finished.done():
                return
            if isinstance(event, SpeechEnded):
                finished.set_result(True)
            elif isinstance(event, SilenceTimeout) and not event.after_speech:
                finished.set_result(False)

        end_ms = int((options.speech_timeout or 0.6) * 1000)
        stream.start_speech_detection(silence_timeout_s=max(options.timeout, 0.1), speech_end_ms=end_ms)
        stream.speech_callbacks.append(on_vad)
        stream.start_capture()
        heard = False
        partials: asyncio.Task[None] | None = None
        if options.on_partial is not None and self.recognizer is not None:
            partials = self._loop.create_task(self._partial_results(options, options.on_partial))
        try:
            with contextlib.suppress(TimeoutError):
                heard = await self._until_ended(
                    asyncio.wait_for(asyncio.shield(finished), options.max_speech_time + options.timeout)
                )
        finally:
            if partials is not None:
                partials.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await partials
            with contextlib.suppress(ValueError):
                stream.speech_callbacks.remove(on_vad)
            stream.stop_speech_detection()
            audio = stream.stop_capture()
        if not heard or self.recognizer is None:
            return None
        result = await self._until_ended(
            self.recognizer.recognize(
                audio, media_session.CONSUMER_RATE, hints=options.hints, language=options.language
            )
        )
        if result is None:
            return None
        return SpeechResult(result.text, result.confidence)

    async def _partial_results(self, options: SpeechOptions, report: Callable[[str], None]) -> None:
        """Re-transcribe the utterance so far every :data:`PARTIAL_INTERVAL` s while it is spoken."""
        assert self.recognizer is not None
        stream = self.stream
        last_size = 0
        last_text = ""
        while True:
            await asyncio.sleep(PARTIAL_INTERVAL)
            if not stream.speech_started.is_set():
                continue
            audio = stream.captured_audio()
            if audio.size == last_size:
                continue
            last_size = audio.size
            result = await self.recognizer.recognize(
                audio, media_session.CONSUMER_RATE, hints=options.hints, language=options.language
            )
            if result is not None and result.text and result.text != last_text:
                last_text = result.text
                report(result.text)

    # -- delegated verbs ---------------------------------------------------------------------------

    async def _delegate(self, verb: str, module: str, function: str, argument: object) -> Any:
        try:
            mod = importlib.import_module(f"trunkline.gateway.switch.{module}")
        except ModuleNotFoundError:
            raise FeatureUnavailable(verb, module) from None
        entry: Callable[[SipCallChannel, Any], Awaitable[Any]] = getattr(mod, function)
        return await entry(self, argument)

    async def dial(self, dial: v.Dial) -> DialResult:
        """``<Dial>``: ``trunkline.gateway.switch.dial.run_dial(channel, dial) -> DialResult``."""
        result: DialResult = await self._delegate("Dial", "dial", "run_dial", dial)
        return result

    async def enqueue(self, enqueue: v.Enqueue) -> QueueResult:
        """``<Enqueue>``: ``trunkline.gateway.switch.queues.run_enqueue(channel, enqueue) -> QueueResult``."""
        result: QueueResult = await self._delegate("Enqueue", "queues", "run_enqueue", enqueue)
        return result

    async def refer(self, refer: v.Refer) -> ReferResult:
        """``<Refer>``: ``trunkline.gateway.switch.refer.run_refer(channel, refer) -> ReferResult``."""
        result: ReferResult = await self._delegate("Refer", "refer", "run_refer", refer)
        return result

    # -- teardown ----------------------------------------------------------------------------------

    async def close(self) -> None:
        """Finish a recording in progress, stop the event pump and close the RTP stream."""
        if self.recording is not None:
            with contextlib.suppress(Exception):
                await self.recording.stop()
        self._events.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._events
        await self.stream.close()
        # Break the channel <-> stream and channel <-> leg cycles: the call's objects are then
        # freed by reference counting at once, not by a full (generation 2) collection later.
        with contextlib.suppress(ValueError):
            self.stream.digit_callbacks.remove(self._on_media_digit)
        if self.leg.on_reinvite == self._on_reoffer:
            self.leg.on_reinvite = None
