"""What the TwiML interpreter needs from a call: the ``CallChannel`` interface.

The interpreter (``trunkline.gateway.twiml.interpreter``) runs verbs against this interface only,
so it is tested against an in-memory fake and runs unchanged against real calls, where the switch
implements it on top of SIP dialogs and the media engine.

Conventions:

* Every coroutine may raise :class:`CallEnded` when the far end hangs up (or the call is ended by
  the REST API) while it waits; the interpreter then stops running verbs, except where Twilio
  still reports the outcome (``<Record>`` posts ``Digits=hangup``, ``<Dial>`` posts its action).
* Audio to play is described, not decoded, here (:data:`PlayItem`); the implementation fetches,
  synthesises and caches off the event loop.
* Digits pressed by the caller are buffered by the channel from the moment the call is set up;
  :meth:`CallChannel.flush_digits` empties the buffer (``<Gather>`` starts with an empty one).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from trunkline.gateway.twiml import verbs as v


class CallEnded(Exception):
    """The call ended (far-end hangup, REST ``Status=completed``) while a verb was running."""


@dataclass(frozen=True, slots=True)
class Speech:
    """Text to speak with TTS (``<Say>``)."""

    text: str
    voice: str = "man"
    language: str = "en-US"


@dataclass(frozen=True, slots=True)
class AudioUrl:
    """An audio file at an HTTP(S) URL or a local path (``<Play>``)."""

    url: str


@dataclass(frozen=True, slots=True)
class Silence:
    """Silence (``<Pause>``)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Tone:
    """A generated tone: ``beep`` (before ``<Record>``), ``ringback-us``, ``ringback-uk``, ..."""

    name: str
    seconds: float | None = None


PlayItem = Speech | AudioUrl | Silence | Tone


class Interrupt(enum.Flag):
    """What stops a playback early (``<Gather>`` barge-in)."""

    NONE = 0
    DTMF = enum.auto()
    SPEECH = enum.auto()


class PlayOutcome(enum.Enum):
    """How a playback ended."""

    COMPLETED = "completed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class RecordOptions:
    """``<Record>`` (and ``<Dial record>``) settings the media side needs."""

    max_length: float = 3600.0
    silence_timeout: float = 5.0
    finish_on_key: str = "1234567890*#"
    trim_silence: bool = True
    dual_channel: bool = False
    recording_sid: str | None = None
    """The SID to store the recording under (the interpreter reports it before recording starts)."""


@dataclass(frozen=True, slots=True)
class RecordResult:
    """A finished recording: its stored SID, file, length and what ended it."""

    recording_sid: str
    path: str
    duration: float
    digits: str = ""
    hung_up: bool = False


@dataclass(frozen=True, slots=True)
class SpeechOptions:
    """``<Gather input="speech">`` settings."""

    language: str = "en-US"
    hints: tuple[str, ...] = ()
    timeout: float = 5.0
    speech_timeout: float | None = None
    max_speech_time: float = 60.0
    profanity_filter: bool = True
    on_partial: Callable[[str], None] | None = field(default=None, compare=False)
    """Called with the interim transcript while the caller speaks (``partialResultCallback``)."""


@dataclass(frozen=True, slots=True)
class SpeechResult:
    """What the recogniser heard."""

    text: str
    confidence: float


@dataclass(frozen=True, slots=True)
class DialResult:
    """The outcome of ``<Dial>``, as its ``action`` request reports it."""

    status: str  # completed, answered, busy, no-answer, failed, canceled
    call_sid: str | None = None
    duration: int = 0
    sip_response_code: int | None = None
    recording: RecordResult | None = None
    bridged: bool = False
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueResult:
    """The outcome of ``<Enqueue>``: ``bridged``, ``hangup``, ``leave``, ``queue-full``, ..."""

    result: str
    queue_sid: str
    queue_time: int


@dataclass(frozen=True, slots=True)
class ReferResult:
    """The outcome of ``<Refer>``."""

    status: str  # completed, failed, ...
    sip_response_code: int | None = None


class CallChannel(Protocol):
    """One call leg as the TwiML interpreter drives it."""

    @property
    def call_sid(self) -> str:
        """The call's SID (``CA`` + 32 hex)."""
        ...

    @property
    def answered(self) -> bool:
        """True once the call has been answered (200 OK sent, or the outbound leg answered)."""
        ...

    async def answer(self) -> None:
        """Answer the call if it is not answered yet (idempotent)."""

    async def reject(self, sip_status: int) -> None:
        """Refuse an unanswered call with ``sip_status`` (486 busy, 603 decline)."""

    async def hangup(self) -> None:
        """End the call (BYE, or a final error response if it was never answered)."""

    async def play(
        self, items: Sequence[PlayItem], *, loop: int = 1, interrupt: Interrupt = Interrupt.NONE
    ) -> PlayOutcome:
        """Play ``items`` ``loop`` times (0 = until hangup), stopping early on ``interrupt``."""
        ...

    async def send_digits(self, digits: str) -> None:
        """Send DTMF to the far end (RFC 4733); ``w`` pauses half a second."""

    async def next_digit(self, timeout: float) -> str | None:
        """The next digit the caller pressed (buffered ones first), or None after ``timeout`` s."""
        ...

    def flush_digits(self) -> None:
        """Forget digits pressed so far."""

    async def record(self, options: RecordOptions) -> RecordResult:
        """Record the caller until silence, a finish key, the maximum length or hangup.

        Returns (never raises :class:`CallEnded`) with ``hung_up`` set when the caller hung up.
        """
        ...

    async def recognize(self, options: SpeechOptions) -> SpeechResult | None:
        """Listen for an utterance and transcribe it; None when nothing was said."""
        ...

    async def dial(self, dial: v.Dial) -> DialResult:
        """Ring ``dial.nouns`` in parallel and bridge the first to answer until one side hangs up."""
        ...

    async def enqueue(self, enqueue: v.Enqueue) -> QueueResult:
        """Wait in a queue (running ``waitUrl`` TwiML) until dequeued, ``<Leave>`` or hangup."""
        ...

    async def refer(self, refer: v.Refer) -> ReferResult:
        """Transfer the caller with a SIP REFER and report its progress."""
        ...
