"""What the REST write side asks of the switch and the SIP user agent.

The REST handlers validate parameters (with Twilio's error codes) and then call one of these small
protocols; the switch (calls, conferences, queues) and the UA core (SIP MESSAGE) implement them.
Requests are typed, frozen dataclasses holding already-validated values. A control refuses an
operation by raising :class:`ControlError` with Twilio's code and HTTP status, which the API
answers as is; a missing resource is ``ControlError.not_found``.

Records returned to the API are Twilio's JSON (snake_case, RFC 2822 dates), as the store keeps
them; :func:`participant_json`, :func:`recording_json` and :meth:`QueueMember.to_json` build the
shapes the twilio helper library reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from trunkline.gateway.api.envelope import API_VERSION, account_base, rfc2822
from trunkline.gateway.switch.calls import Call, StatusCallback

JsonRecord = dict[str, Any]
TargetKind = Literal["number", "sip", "client"]


class ControlError(Exception):
    """A refused operation with Twilio's error ``code`` and the HTTP ``status`` to answer."""

    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    @classmethod
    def not_found(cls, what: str) -> ControlError:
        """Twilio's 20404 for a call, conference, participant or queue member that is not there."""
        return cls(20404, f"The requested resource {what} was not found", 404)


class NoRouteError(Exception):
    """Raised by a :class:`MessageSender` when no registered endpoint or trunk reaches ``to``."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a call or message goes: an E.164 ``number`` (through a trunk), a ``sip`` URI, or a
    registered ``client`` (``address`` is then the client name without ``client:``)."""

    kind: TargetKind
    address: str

    def __str__(self) -> str:
        return f"client:{self.address}" if self.kind == "client" else self.address


@dataclass(frozen=True, slots=True)
class OutboundCall:
    """``POST Calls.json``: an outbound-api call to place (exactly one of url/twiml/application_sid)."""

    account_sid: str
    to: Target
    from_: str
    url: str | None = None
    twiml: str | None = None
    application_sid: str | None = None
    method: str = "POST"
    fallback_url: str | None = None
    fallback_method: str = "POST"
    status_callback: StatusCallback | None = None
    send_digits: str | None = None
    timeout: int = 60
    record: bool = False
    recording_channels: str = "mono"
    recording_status_callback: str | None = None
    recording_status_callback_method: str = "POST"
    time_limit: int = 14400
    caller_id: str | None = None
    sip_auth: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class CallUpdate:
    """``POST Calls/{sid}.json``: redirect (``url``/``twiml``) or end (``status``) a live call."""

    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    status: Literal["completed", "canceled"] | None = None
    fallback_url: str | None = None
    fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    time_limit: int | None = None


@dataclass(frozen=True, slots=True)
class RecordingRequest:
    """``POST Calls/{sid}/Recordings.json``: start recording a live call."""

    channels: str = "mono"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: frozenset[str] = frozenset({"completed"})
    trim: str = "do-not-trim"
    track: str = "both"


@dataclass(frozen=True, slots=True)
class ConferenceUpdate:
    """``POST Conferences/{sid}.json``: end the conference and/or play an announcement."""

    status: Literal["completed"] | None = None
    announce_url: str | None = None
    announce_method: str = "POST"


@dataclass(frozen=True, slots=True)
class ParticipantRequest:
    """``POST Conferences/{sid}/Participants.json``: dial ``to`` and put the answered call in the room."""

    account_sid: str
    to: Target
    from_: str
    label: str | None = None
    timeout: int = 30
    record: bool = False
    muted: bool = False
    beep: str = "true"
    start_conference_on_enter: bool = True
    end_conference_on_exit: bool = False
    wait_url: str | None = None
    wait_method: str = "POST"
    early_media: bool = True
    status_callback: StatusCallback | None = None
    coaching: bool = False
    call_sid_to_coach: str | None = None
    caller_id: str | None = None
    time_limit: int = 14400
    sip_auth: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ParticipantUpdate:
    """``POST Conferences/{sid}/Participants/{CallSid}.json``; None leaves a setting unchanged."""

    muted: bool | None = None
    hold: bool | None = None
    hold_url: str | None = None
    hold_method: str | None = None
    announce_url: str | None = None
    announce_method: str | None = None
    wait_url: str | None = None
    wait_method: str | None = None
    beep_on_exit: bool | None = None
    end_conference_on_exit: bool | None = None
    coaching: bool | None = None
    call_sid_to_coach: str | None = None


@dataclass(frozen=True, slots=True)
class QueueMember:
    """A call waiting in a queue (``Queues/{sid}/Members``); ``position`` counts from 1."""

    account_sid: str
    queue_sid: str
    call_sid: str
    enqueued_at: float
    position: int
    wait_time: int

    def to_json(self) -> JsonRecord:
        """Twilio's Member JSON."""
        base = f"{account_base(self.account_sid)}/Queues/{self.queue_sid}/Members/{self.call_sid}"
        return {
            "call_sid": self.call_sid,
            "queue_sid": self.queue_sid,
            "date_enqueued": rfc2822(self.enqueued_at),
            "position": self.position,
            "wait_time": self.wait_time,
            "uri": f"{base}.json",
        }


class CallControl(Protocol):
    """Calls, implemented by the switch (which stores the record and fires status callbacks)."""

    async def create_call(self, request: OutboundCall) -> Call:
        """Place an outbound-api call; return it ``queued`` (the dialling happens afterwards)."""
        ...

    async def update_call(self, account_sid: str, call_sid: str, update: CallUpdate) -> Call:
        """Redirect or end a call; :class:`ControlError` 21220 when the call is not live."""
        ...

    async def start_recording(self, account_sid: str, call_sid: str, request: RecordingRequest) -> JsonRecord:
        """Start recording a live call; return the Recording record (:func:`recording_json`)."""
        ...

    async def update_recording(
        self,
        account_sid: str,
        call_sid: str,
        recording_sid: str,
        status: Literal["stopped", "paused", "in-progress"],
        pause_behavior: Literal["skip", "silence"],
    ) -> JsonRecord:
        """Stop, pause or resume a recording of a live call; return the Recording record."""
        ...


class ConferenceControl(Protocol):
    """Conference rooms and their participants, implemented by the switch."""

    async def update_conference(
        self, account_sid: str, conference_sid: str, update: ConferenceUpdate
    ) -> JsonRecord:
        """End a conference or announce into it; return the Conference record."""
        ...

    async def add_participant(
        self, account_sid: str, conference: str, request: ParticipantRequest
    ) -> JsonRecord:
        """Dial out into the room ``conference`` (SID or friendly name, created if needed)."""
        ...

    async def update_participant(
        self, account_sid: str, conference_sid: str, call_sid: str, update: ParticipantUpdate
    ) -> JsonRecord:
        """Mute, hold, announce to or coach with a participant; return its record."""
        ...

    async def remove_participant(self, account_sid: str, conference_sid: str, call_sid: str) -> None:
        """Kick a participant (its call leaves the room and goes on with its next TwiML)."""
        ...


class QueueControl(Protocol):
    """Live queue membership, implemented by the switch (queue records are in the store)."""

    async def members(self, account_sid: str, queue_sid: str) -> list[QueueMember]:
        """The calls waiting in the queue, front first."""
        ...

    async def dequeue(
        self, account_sid: str, queue_sid: str, call_sid: str | None, url: str, method: str
    ) -> QueueMember:
        """Take a member out (the front one when ``call_sid`` is None) and redirect it to ``url``."""
        ...


class MessageSender(Protocol):
    """SIP MESSAGE delivery, implemented by the UA core (routing to a registered endpoint for
    ``client:NAME``/a local user, or to a trunk for a number)."""

    async def send_message(self, account_sid: str, from_: str, to: str, body: str) -> int:
        """Send one MESSAGE; return the final SIP status code.

        Raises ``TimeoutError`` when no final response came and :class:`NoRouteError` when
        nothing reaches ``to``.
        """
        ...


def participant_json(
    account_sid: str,
    conference_sid: str,
    call_sid: str,
    *,
    created: float,
    updated: float | None = None,
    status: str = "connected",
    muted: bool = False,
    hold: bool = False,
    coaching: bool = False,
    call_sid_to_coach: str | None = None,
    label: str | None = None,
    start_conference_on_enter: bool = True,
    end_conference_on_exit: bool = False,
) -> JsonRecord:
    """Twilio's Participant JSON (``status``: queued, connecting, ringing, connected, complete, failed)."""
    base = f"{account_base(account_sid)}/Conferences/{conference_sid}/Participants/{call_sid}"
    return {
        "account_sid": account_sid,
        "call_sid": call_sid,
        "conference_sid": conference_sid,
        "label": label,
        "call_sid_to_coach": call_sid_to_coach,
        "coaching": coaching,
        "date_created": rfc2822(created),
        "date_updated": rfc2822(updated or created),
        "end_conference_on_exit": end_conference_on_exit,
        "start_conference_on_enter": start_conference_on_enter,
        "muted": muted,
        "hold": hold,
        "status": status,
        "queue_time": "0",
        "api_version": API_VERSION,
        "uri": f"{base}.json",
    }


def recording_json(
    account_sid: str,
    sid: str,
    *,
    created: float,
    call_sid: str | None = None,
    conference_sid: str | None = None,
    status: str = "in-progress",
    channels: int = 1,
    source: str = "StartCallRecordingAPI",
    duration: int = -1,
    track: str = "both",
) -> JsonRecord:
    """Twilio's Recording JSON; ``duration`` is -1 while recording, as Twilio reports it."""
    base = f"{account_base(account_sid)}/Recordings/{sid}"
    return {
        "sid": sid,
        "account_sid": account_sid,
        "call_sid": call_sid,
        "conference_sid": conference_sid,
        "api_version": API_VERSION,
        "date_created": rfc2822(created),
        "date_updated": rfc2822(created),
        "start_time": rfc2822(created),
        "duration": str(duration),
        "status": status,
        "channels": channels,
        "source": source,
        "track": track,
        "error_code": None,
        "price": None,
        "price_unit": "USD",
        "encryption_details": None,
        "uri": f"{base}.json",
        "media_url": f"{base}",
    }
