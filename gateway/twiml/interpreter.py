"""Runs a call's TwiML: fetch, parse, execute verbs, follow actions and redirects.

One :class:`TwimlSession` drives one call through a :class:`~.channel.CallChannel`. It behaves as
Twilio does where an app can tell the difference:

* the call is answered on the first verb other than ``<Reject>``; ``<Reject>`` first never answers;
  a ``<Pause>`` before any other verb delays the answer by its length;
* a verb with an ``action`` ends the document: its outcome is posted there and the answer is the
  next document; without ``action``, ``<Gather>`` and ``<Record>`` post back to the current
  document's URL, ``<Dial>`` and ``<Enqueue>`` continue with the next verb;
* ``<Gather>`` with no input falls through to the next verb (unless ``actionOnEmptyResult``);
  an empty ``<Record>`` does not post its action and continues too;
* when the far end hangs up, ``<Record>``, ``<Dial>`` and ``<Enqueue>`` still post their action
  (``Digits=hangup`` for Record) and the answer is ignored;
* the end of the document ends the call;
* a document that cannot be fetched or parsed is reported (a debugger event with Twilio's code and
  a log line), and the caller hears the application-error prompt before the call ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Protocol
from urllib.parse import urljoin

from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.channel import (
    AudioUrl,
    CallChannel,
    CallEnded,
    Interrupt,
    PlayItem,
    PlayOutcome,
    RecordOptions,
    RecordResult,
    Silence,
    Speech,
    SpeechOptions,
    Tone,
)
from trunkline.gateway.twiml.parser import TwimlError, parse_twiml
from trunkline.gateway.twiml.webhooks import CallbackSender, WebhookClient, WebhookError

log = logging.getLogger(__name__)

APPLICATION_ERROR_PROMPT = "We are sorry, an application error has occurred. Goodbye."
TWIML_CONTENT_TYPES = ("text/xml", "application/xml", "text/html", "text/plain", "")
INVALID_CONTENT_TYPE = 12300


@dataclass(slots=True)
class CallContext:
    """Who the call is between, for the parameters of every request about it."""

    account_sid: str
    auth_token: str
    call_sid: str
    from_: str
    to: str
    direction: str = "inbound"
    call_status: str = "ringing"
    parent_call_sid: str | None = None
    forwarded_from: str | None = None
    caller_name: str | None = None
    public_url: str = "http://127.0.0.1:8080"
    extra: dict[str, str] = field(default_factory=dict)

    def params(self) -> list[tuple[str, str]]:
        """Twilio's standard request parameters for this call."""
        pairs = [
            ("AccountSid", self.account_sid),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", self.call_sid),
            ("CallStatus", self.call_status),
            ("Called", self.to),
            ("Caller", self.from_),
            ("Direction", self.direction),
            ("From", self.from_),
            ("To", self.to),
        ]
        if self.parent_call_sid:
            pairs.append(("ParentCallSid", self.parent_call_sid))
        if self.forwarded_from:
            pairs.append(("ForwardedFrom", self.forwarded_from))
        if self.caller_name:
            pairs.append(("CallerName", self.caller_name))
        pairs.extend(self.extra.items())
        return pairs

    def recording_url(self, recording_sid: str) -> str:
        """The public URL of a recording's media (WAV; ``.mp3`` appended gives MP3)."""
        base = self.public_url.rstrip("/")
        return f"{base}/2010-04-01/Accounts/{self.account_sid}/Recordings/{recording_sid}"


@dataclass(frozen=True, slots=True)
class DebuggerEvent:
    """An error or warning for the account's debugger (Twilio's Notifications)."""

    account_sid: str
    call_sid: str
    code: int
    message: str
    url: str | None
    level: str = "ERROR"


class DebuggerSink(Protocol):
    """Where debugger events go (the store's notifications and the account's debugger webhook)."""

    async def report(self, event: DebuggerEvent) -> None:
        """Record ``event``."""


@dataclass(frozen=True, slots=True)
class _Next:
    """Fetch the next document from ``url`` with ``params`` added to the call's parameters."""

    url: str
    method: str
    params: Sequence[tuple[str, str]] = ()
    ignore_answer: bool = False


class TwimlSession:
    """Drives one call from its first document to its end.

    ``sleep`` is how a ``<Pause>`` before the answer waits and ``clock`` the wall clock (Unix
    time) of ``RecordingStartTime``; both are injected by tests.
    """

    def __init__(
        self,
        channel: CallChannel,
        context: CallContext,
        webhooks: WebhookClient,
        *,
        url: str | None = None,
        method: str = "POST",
        fallback_url: str | None = None,
        fallback_method: str = "POST",
        twiml: str | None = None,
        debugger: DebuggerSink | None = None,
        callbacks: CallbackSender | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.channel = channel
        self.context = context
        self.webhooks = webhooks
        self.url = url
        self.method = method
        self.fallback_url = fallback_url
        self.fallback_method = fallback_method
        self.initial_twiml = twiml
        self.debugger = debugger
        self.callbacks = callbacks or CallbackSender(webhooks)
        self.documents = 0
        self._sleep = sleep
        self._clock = clock
        self._pending_warnings: list[v.TwimlWarning] = []

    async def run(self) -> None:
        """Run the call to its end; never raises for application errors."""
        try:
            document = await self._first_document()
            while document is not None:
                # A <Redirect> loop over a cached GET document never suspends otherwise: yield so
                # the loop cannot starve the other calls and can be cancelled (BYE, REST update).
                await asyncio.sleep(0)
                step = await self._run_document(document)
                if step is None:
                    break
                document = await self._fetch(step)
                if step.ignore_answer:
                    break
            await self.channel.hangup()
        except CallEnded:
            log.debug("call %s ended during TwiML", self.context.call_sid)
        except _AppError as exc:
            await self._application_error(exc)

    # Documents
    async def _first_document(self) -> v.Document | None:
        if self.initial_twiml is not None:
            return self._parse(self.initial_twiml, self.url)
        if not self.url:
            raise _AppError(11200, "no voice URL and no TwiML for this call", None)
        return await self._fetch(_Next(self.url, self.method), fallback=True)

    async def _fetch(self, step: _Next, *, fallback: bool = False) -> v.Document | None:
        params = [*self.context.params(), *step.params]
        response, errors = await self.webhooks.fetch_twiml(
            step.url,
            step.method,
            params,
            self.context.auth_token,
            fallback_url=self.fallback_url if fallback else None,
            fallback_method=self.fallback_method,
        )
        for error in errors:
            await self._report(error.code, error.message, error.url)
        if step.ignore_answer:
            return None
        if response is None:
            first: WebhookError = errors[0]
            raise _AppError(first.code, first.message, first.url, reported=True)
        content_type = response.content_type.split(";")[0].strip().lower()
        if content_type.startswith("audio/"):
            # Twilio plays an audio response as if it were <Play>.
            self.url = response.url
            return v.Document(verbs=(v.Play(url=response.url),))
        if content_type not in TWIML_CONTENT_TYPES:
            raise _AppError(INVALID_CONTENT_TYPE, f"Invalid Content-Type: {content_type}", response.url)
        self.url = step.url
        return self._parse(response.text, step.url)

    def _parse(self, text: str, url: str | None) -> v.Document:
        self.documents += 1
        try:
            document = parse_twiml(text)
        except TwimlError as exc:
            raise _AppError(exc.code, exc.message, url) from None
        for warning in document.warnings:
            log.warning("TwiML warning %s on %s: %s", warning.code, self.context.call_sid, warning.message)
        self._pending_warnings = list(document.warnings)
        return document

    def _absolute(self, url: str | None) -> str:
        base = self.url or ""
        return urljoin(base, url) if url else base

    # Verbs
    async def _run_document(self, document: v.Document) -> _Next | None:
        for warning in self._pending_warnings:
            await self._report(warning.code, warning.message, self.url, level="WARNING")
        self._pending_warnings = []
        for verb in document.verbs:
            if isinstance(verb, v.Reject) and not self.channel.answered:
                await self.channel.reject(verb.sip_status)
                raise CallEnded
            if isinstance(verb, v.Pause) and not self.channel.answered:
                # https://www.twilio.com/docs/voice/twiml/pause: "If <Pause> is the first verb in a
                # TwiML document, Twilio will wait the specified number of seconds before picking
                # up the call." A hangup meanwhile surfaces as CallEnded at the next answer.
                await self._sleep(verb.length)
                continue
            # <Dial answerOnBridge="true"> leaves the caller unanswered (early media) until the
            # callee answers; the dial code answers the caller then.
            deferred = isinstance(verb, v.Dial) and verb.answer_on_bridge
            if not self.channel.answered and not deferred:
                await self.channel.answer()
                self.context.call_status = "in-progress"
            step = await self._run_verb(verb)
            if step is not None:
                return step
        return None

    async def _run_verb(self, verb: v.Verb) -> _Next | None:
        if isinstance(verb, v.Say):
            await self.channel.play([Speech(verb.text, verb.voice, verb.language)], loop=verb.loop)
        elif isinstance(verb, v.Play):
            if verb.digits:
                await self.channel.send_digits(verb.digits)
            if verb.url:
                await self.channel.play([AudioUrl(self._absolute(verb.url))], loop=verb.loop)
        elif isinstance(verb, v.Pause):
            await self.channel.play([Silence(float(verb.length))])
        elif isinstance(verb, v.Gather):
            return await self._gather(verb)
        elif isinstance(verb, v.Record):
            return await self._record(verb)
        elif isinstance(verb, v.Dial):
            return await self._dial(verb)
        elif isinstance(verb, v.Hangup):
            await self.channel.hangup()
            raise CallEnded
        elif isinstance(verb, v.Reject):
            await self.channel.hangup()  # after answer, Twilio's Reject just ends the call
            raise CallEnded
        elif isinstance(verb, v.Redirect):
            return _Next(self._absolute(verb.url), verb.method)
        elif isinstance(verb, v.Enqueue):
            result = await self.channel.enqueue(verb)
            if verb.action:
                params = [("QueueResult", result.result), ("QueueSid", result.queue_sid)]
                params.append(("QueueTime", str(result.queue_time)))
                return _Next(self._absolute(verb.action), verb.method, params)
        elif isinstance(verb, v.Leave):
            pass  # only meaningful inside a queue's waitUrl document, which the channel runs
        elif isinstance(verb, v.Refer):
            refer = await self.channel.refer(verb)
            params = [("ReferCallStatus", refer.status)]
            if refer.sip_response_code is not None:
                params.append(("ReferSipResponseCode", str(refer.sip_response_code)))
            return _Next(self._absolute(verb.action), verb.method, params)
        elif isinstance(verb, v.Message):
            await self._report(
                12200, "<Message> inside a voice response is not supported", self.url, "WARNING"
            )
        return None

    async def _gather(self, verb: v.Gather) -> _Next | None:
        self.channel.flush_digits()
        interrupt = Interrupt.NONE
        if "dtmf" in verb.input:
            interrupt |= Interrupt.DTMF
        if "speech" in verb.input:
            interrupt |= Interrupt.SPEECH
        for child in verb.children:
            items: list[PlayItem]
            loop = 1
            if isinstance(child, v.Say):
                items, loop = [Speech(child.text, child.voice, child.language)], child.loop
            elif isinstance(child, v.Play):
                if child.digits:
                    await self.channel.send_digits(child.digits)
                if not child.url:
                    continue
                items, loop = [AudioUrl(self._absolute(child.url))], child.loop
            else:
                items = [Silence(float(child.length))]
            if await self.channel.play(items, loop=loop, interrupt=interrupt) is PlayOutcome.INTERRUPTED:
                break
        params: list[tuple[str, str]] = []
        if "dtmf" in verb.input:
            digits, finished_on_key = await self._collect_digits(verb)
            if digits or finished_on_key:
                params.append(("Digits", digits))
                if finished_on_key:
                    params.append(("FinishedOnKey", finished_on_key))
        if not params and "speech" in verb.input:
            timeout = verb.speech_timeout if isinstance(verb.speech_timeout, float) else None
            heard = await self.channel.recognize(
                SpeechOptions(
                    language=verb.language,
                    hints=tuple(h.strip() for h in (verb.hints or "").split(",") if h.strip()),
                    timeout=float(verb.timeout),
                    speech_timeout=timeout,
                    max_speech_time=float(verb.max_speech_time),
                    profanity_filter=verb.profanity_filter,
                    on_partial=self._partial_reporter(verb),
                )
            )
            if heard is not None and heard.text:
                params += [("SpeechResult", heard.text), ("Confidence", f"{heard.confidence:.8f}")]
        if not params and not verb.action_on_empty_result:
            return None
        if not any(name == "Digits" for name, _ in params) and "dtmf" in verb.input:
            params.append(("Digits", ""))
        return _Next(self._absolute(verb.action), verb.method, params)

    def _partial_reporter(self, verb: v.Gather) -> Callable[[str], None] | None:
        """What posts interim transcripts to ``partialResultCallback``, if the verb has one."""
        if not verb.partial_result_callback:
            return None
        return _PartialResults(
            self, self._absolute(verb.partial_result_callback), verb.partial_result_callback_method
        )

    async def _collect_digits(self, verb: v.Gather) -> tuple[str, str]:
        digits = ""
        while verb.num_digits is None or len(digits) < verb.num_digits:
            digit = await self.channel.next_digit(float(verb.timeout))
            if digit is None:
                break
            if verb.finish_on_key and digit in verb.finish_on_key:
                return digits, digit
            digits += digit
        return digits, ""

    async def _record(self, verb: v.Record) -> _Next | None:
        self.channel.flush_digits()
        if verb.play_beep:
            await self.channel.play([Tone("beep")])
        sid = "RE" + uuid.uuid4().hex
        events = verb.recording_status_callback_event
        started = self._clock()
        if verb.recording_status_callback and "in-progress" in events:
            self._recording_status(verb, sid, "in-progress", started, None)
        result = await self.channel.record(
            RecordOptions(
                max_length=float(verb.max_length),
                silence_timeout=float(verb.timeout),
                finish_on_key=verb.finish_on_key,
                trim_silence=verb.trim == "trim-silence",
                recording_sid=sid,
            )
        )
        # https://www.twilio.com/docs/voice/twiml/record#recordingstatuscallbackevent: only the
        # events asked for (default ``completed``); ``absent`` when nothing was recorded.
        status = "completed" if result.duration > 0 else "absent"
        if verb.recording_status_callback and status in events:
            self._recording_status(verb, result.recording_sid, status, started, result)
        if result.duration <= 0 and not result.hung_up:
            return None  # Twilio: an empty recording does not request the action URL
        params = [
            ("RecordingUrl", self.context.recording_url(result.recording_sid)),
            ("RecordingSid", result.recording_sid),
            ("RecordingDuration", str(round(result.duration))),
        ]
        digits = "hangup" if result.hung_up else result.digits
        if digits:
            params.append(("Digits", digits))
        return _Next(self._absolute(verb.action), verb.method, params, ignore_answer=result.hung_up)

    def _recording_status(
        self, verb: v.Record, sid: str, status: str, started: float, result: RecordResult | None
    ) -> None:
        assert verb.recording_status_callback is not None
        params = [
            ("AccountSid", self.context.account_sid),
            ("CallSid", self.context.call_sid),
            ("RecordingSid", sid),
            ("RecordingUrl", self.context.recording_url(sid)),
            ("RecordingStatus", status),
        ]
        if result is not None:
            params.append(("RecordingDuration", str(round(result.duration))))
        params += [
            ("RecordingChannels", "1"),
            # RFC 2822 date in GMT, as Twilio writes every date (e.g. "Fri, 15 Oct 2021 19:04:32 +0000").
            (
                "RecordingStartTime",
                format_datetime(datetime.fromtimestamp(started, UTC).replace(microsecond=0)),
            ),
            ("RecordingSource", "RecordVerb"),
        ]
        url = self._absolute(verb.recording_status_callback)
        self.callbacks.send(url, verb.recording_status_callback_method, params, self.context.auth_token)

    async def _dial(self, verb: v.Dial) -> _Next | None:
        try:
            result = await self.channel.dial(verb)
        except CallEnded:
            if verb.action:
                params = [("DialCallStatus", "canceled")]
                await self._fetch(_Next(self._absolute(verb.action), verb.method, params, ignore_answer=True))
            raise
        if not verb.action:
            return None
        params = [("DialCallStatus", result.status), ("DialBridged", "true" if result.bridged else "false")]
        if result.call_sid:
            params += [("DialCallSid", result.call_sid), ("DialCallDuration", str(result.duration))]
        if result.sip_response_code is not None:
            params.append(("DialSipResponseCode", str(result.sip_response_code)))
        if result.recording is not None:
            recording = result.recording
            params += [
                ("RecordingUrl", self.context.recording_url(recording.recording_sid)),
                ("RecordingSid", recording.recording_sid),
                ("RecordingDuration", str(round(recording.duration))),
            ]
        params += sorted(result.extra.items())
        return _Next(self._absolute(verb.action), verb.method, params)

    # Errors
    async def _report(self, code: int, message: str, url: str | None, level: str = "ERROR") -> None:
        log.log(
            logging.ERROR if level == "ERROR" else logging.WARNING,
            "Twilio error %d on call %s: %s (%s)",
            code,
            self.context.call_sid,
            message,
            url,
        )
        if self.debugger is not None:
            event = DebuggerEvent(self.context.account_sid, self.context.call_sid, code, message, url, level)
            try:
                await self.debugger.report(event)
            except Exception:
                log.exception("debugger sink failed for call %s", self.context.call_sid)

    async def _application_error(self, exc: _AppError) -> None:
        if not exc.reported:
            await self._report(exc.code, exc.message, exc.url)
        try:
            if not self.channel.answered:
                await self.channel.answer()
            await self.channel.play([Speech(APPLICATION_ERROR_PROMPT, "woman", "en-US")])
            await self.channel.hangup()
        except CallEnded:
            pass


@dataclass(slots=True)
class _PartialResults:
    """Posts interim transcripts to ``partialResultCallback`` (fire and forget, numbered).

    https://www.twilio.com/docs/voice/twiml/gather#partialresultcallback: each request carries the
    call's parameters, ``SequenceNumber`` (from 0), ``UnstableSpeechResult`` (the interim transcript),
    ``StableSpeechResult`` (words no longer expected to change: here, the leading words the last two
    interim transcripts agree on) and ``Stability`` (0.0 to 1.0: here, the share of stable words).
    """

    session: TwimlSession
    url: str
    method: str
    sequence: int = 0
    previous: list[str] = field(default_factory=list)

    def __call__(self, text: str) -> None:
        words = text.split()
        stable: list[str] = []
        for old, new in zip(self.previous, words, strict=False):
            if old != new:
                break
            stable.append(new)
        context = self.session.context
        params = [
            *context.params(),
            ("SequenceNumber", str(self.sequence)),
            ("UnstableSpeechResult", text),
            ("StableSpeechResult", " ".join(stable)),
            ("Stability", f"{len(stable) / len(words) if words else 0.0:.8f}"),
        ]
        self.sequence += 1
        self.previous = words
        self.session.callbacks.send(self.url, self.method, params, context.auth_token)


class _AppError(Exception):
    def __init__(self, code: int, message: str, url: str | None, *, reported: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.url = url
        self.reported = reported
