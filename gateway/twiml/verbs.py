"""TwiML voice verbs and nouns as typed, immutable dataclasses.

Every field carries Twilio's default, so a verb built from ``<Gather/>`` alone behaves as Twilio's
does. Attribute names are snake_case versions of Twilio's camelCase ones (``finishOnKey`` ->
``finish_on_key``). ``None`` means "not given" where Twilio's behaviour depends on absence (for
example a missing ``action`` posts back to the current document URL).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Twilio's default ``waitUrl`` for conferences is its hold-music twimlet; Trunkline plays its
#: built-in hold music for this marker instead of fetching anything.
DEFAULT_WAIT_URL = "builtin:hold-music"


@dataclass(frozen=True, slots=True)
class Say:
    """``<Say>``: speak text with text-to-speech. ``loop=0`` repeats until the call ends."""

    text: str
    voice: str = "man"
    language: str = "en-US"
    loop: int = 1


@dataclass(frozen=True, slots=True)
class Play:
    """``<Play>``: play an audio URL, or send DTMF ``digits`` (``w`` = 0.5 s pause) when given."""

    url: str = ""
    loop: int = 1
    digits: str | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    """``<Pause>``: silence for ``length`` seconds."""

    length: int = 1


GatherChild = Say | Play | Pause


@dataclass(frozen=True, slots=True)
class Gather:
    """``<Gather>``: collect DTMF digits and/or speech while nested verbs play (barge-in)."""

    input: frozenset[str] = frozenset({"dtmf"})
    action: str | None = None
    method: str = "POST"
    timeout: int = 5
    speech_timeout: float | str | None = None
    max_speech_time: int = 60
    finish_on_key: str = "#"
    num_digits: int | None = None
    hints: str | None = None
    language: str = "en-US"
    partial_result_callback: str | None = None
    partial_result_callback_method: str = "POST"
    action_on_empty_result: bool = False
    profanity_filter: bool = True
    speech_model: str | None = None
    enhanced: bool = False
    children: tuple[GatherChild, ...] = ()


@dataclass(frozen=True, slots=True)
class Record:
    """``<Record>``: record the caller until silence, ``finishOnKey``, ``maxLength`` or hangup."""

    action: str | None = None
    method: str = "POST"
    timeout: int = 5
    finish_on_key: str = "1234567890*#"
    max_length: int = 3600
    play_beep: bool = True
    trim: str = "trim-silence"
    recording_status_callback: str | None = None
    recording_status_callback_method: str = "POST"
    recording_status_callback_event: tuple[str, ...] = ("completed",)
    transcribe: bool = False
    transcribe_callback: str | None = None


@dataclass(frozen=True, slots=True)
class StatusCallbacks:
    """Per-noun call-progress callbacks of ``<Number>``, ``<Sip>`` and ``<Client>``."""

    url: str | None = None
    method: str = "POST"
    events: tuple[str, ...] = ("completed",)


@dataclass(frozen=True, slots=True)
class Number:
    """``<Dial><Number>``: a phone number reached through a trunk."""

    number: str
    send_digits: str | None = None
    url: str | None = None
    method: str = "POST"
    status: StatusCallbacks = field(default_factory=StatusCallbacks)
    byoc: str | None = None


@dataclass(frozen=True, slots=True)
class Sip:
    """``<Dial><Sip>``: a SIP URI; ``X-`` headers may ride in the URI's query part."""

    uri: str
    username: str | None = None
    password: str | None = None
    url: str | None = None
    method: str = "POST"
    status: StatusCallbacks = field(default_factory=StatusCallbacks)


@dataclass(frozen=True, slots=True)
class Client:
    """``<Dial><Client>``: a locally registered endpoint, with custom ``<Parameter>`` values."""

    identity: str
    url: str | None = None
    method: str = "POST"
    status: StatusCallbacks = field(default_factory=StatusCallbacks)
    parameters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Conference:
    """``<Dial><Conference>``: join the named room (rooms are scoped per account)."""

    name: str
    muted: bool = False
    beep: str = "true"
    start_conference_on_enter: bool = True
    end_conference_on_exit: bool = False
    wait_url: str = DEFAULT_WAIT_URL
    wait_method: str = "POST"
    max_participants: int = 250
    record: str = "do-not-record"
    trim: str = "trim-silence"
    coach: str | None = None
    participant_label: str | None = None
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_event: tuple[str, ...] = ()
    recording_status_callback: str | None = None
    recording_status_callback_method: str = "POST"
    recording_status_callback_event: tuple[str, ...] = ("completed",)
    event_callback_url: str | None = None
    jitter_buffer_size: str | None = None
    region: str | None = None


@dataclass(frozen=True, slots=True)
class Queue:
    """``<Dial><Queue>``: bridge to the member at the front of a queue."""

    name: str
    url: str | None = None
    method: str = "POST"
    reservation_sid: str | None = None
    post_work_activity_sid: str | None = None


DialNoun = Number | Sip | Client | Conference | Queue


@dataclass(frozen=True, slots=True)
class Dial:
    """``<Dial>``: connect the caller to one or more nouns rung in parallel (first answer wins)."""

    nouns: tuple[DialNoun, ...]
    action: str | None = None
    method: str = "POST"
    timeout: int = 30
    hangup_on_star: bool = False
    time_limit: int = 14400
    caller_id: str | None = None
    record: str = "do-not-record"
    trim: str = "do-not-trim"
    recording_status_callback: str | None = None
    recording_status_callback_method: str = "POST"
    recording_status_callback_event: tuple[str, ...] = ("completed",)
    answer_on_bridge: bool = False
    ring_tone: str | None = None
    sequential: bool = False
    refer_url: str | None = None
    refer_method: str = "POST"


@dataclass(frozen=True, slots=True)
class Hangup:
    """``<Hangup>``: end the call."""


@dataclass(frozen=True, slots=True)
class Reject:
    """``<Reject>``: refuse the call without answering (603 for ``rejected``, 486 for ``busy``)."""

    reason: str = "rejected"

    @property
    def sip_status(self) -> int:
        """The SIP final response this rejection sends."""
        return 486 if self.reason == "busy" else 603


@dataclass(frozen=True, slots=True)
class Redirect:
    """``<Redirect>``: continue with the TwiML at another URL."""

    url: str
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class Enqueue:
    """``<Enqueue>``: put the caller in a FIFO queue with ``waitUrl`` TwiML while they wait."""

    name: str
    action: str | None = None
    method: str = "POST"
    wait_url: str | None = None
    wait_url_method: str = "POST"
    workflow_sid: str | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    """``<Leave>``: leave the current queue and continue after the ``<Enqueue>``."""


@dataclass(frozen=True, slots=True)
class Refer:
    """``<Refer>``: transfer the caller with a SIP REFER to ``target``."""

    target: str
    action: str | None = None
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class Message:
    """``<Message>`` (or legacy ``<Sms>``) inside a voice or messaging response."""

    body: str
    to: str | None = None
    from_: str | None = None
    action: str | None = None
    method: str = "POST"
    status_callback: str | None = None
    media: tuple[str, ...] = ()


Verb = (
    Say
    | Play
    | Pause
    | Gather
    | Record
    | Dial
    | Hangup
    | Reject
    | Redirect
    | Enqueue
    | Leave
    | Refer
    | Message
)


@dataclass(frozen=True, slots=True)
class TwimlWarning:
    """A non-fatal problem (Twilio logs these as warnings and uses the attribute's default)."""

    code: int
    message: str
    element: str
    attribute: str | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed ``<Response>``: its verbs in order and the warnings met while parsing."""

    verbs: tuple[Verb, ...]
    warnings: tuple[TwimlWarning, ...] = ()
