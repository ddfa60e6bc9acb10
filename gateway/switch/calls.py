"""Calls as Twilio sees them: SIDs, the status machine, the REST record and status callbacks.

A :class:`Call` is the switch's record of one call leg with a Twilio call SID. Its status moves
through Twilio's states only along the transitions in :data:`TRANSITIONS` (an impossible move
raises :class:`CallStateError`, as h11's state table does); each move stamps the times Twilio
reports and yields the status-callback event it corresponds to, if any.
"""

from __future__ import annotations

import enum
import functools
import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from trunkline.gateway.api.envelope import account_base, rfc2822


class CallStatus(enum.StrEnum):
    """Twilio's call statuses."""

    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        """True for the statuses a call ends in."""
        return self in _FINAL


_FINAL = frozenset(
    {CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.FAILED, CallStatus.NO_ANSWER, CallStatus.CANCELED}
)

#: Allowed status changes. ``queued`` is where outbound calls start; inbound calls start ringing.
TRANSITIONS: dict[CallStatus, frozenset[CallStatus]] = {
    CallStatus.QUEUED: frozenset(
        {
            CallStatus.RINGING,
            CallStatus.IN_PROGRESS,
            CallStatus.CANCELED,
            CallStatus.FAILED,
            CallStatus.BUSY,
            CallStatus.NO_ANSWER,
        }
    ),
    CallStatus.RINGING: frozenset(
        {
            CallStatus.IN_PROGRESS,
            CallStatus.CANCELED,
            CallStatus.FAILED,
            CallStatus.BUSY,
            CallStatus.NO_ANSWER,
            CallStatus.COMPLETED,
        }
    ),
    CallStatus.IN_PROGRESS: frozenset({CallStatus.COMPLETED, CallStatus.FAILED}),
    CallStatus.COMPLETED: frozenset(),
    CallStatus.BUSY: frozenset(),
    CallStatus.FAILED: frozenset(),
    CallStatus.NO_ANSWER: frozenset(),
    CallStatus.CANCELED: frozenset(),
}

#: Status-callback event names (``StatusCallbackEvent``) for each status reached.
CALLBACK_EVENTS: dict[CallStatus, str] = {
    CallStatus.QUEUED: "initiated",
    CallStatus.RINGING: "ringing",
    CallStatus.IN_PROGRESS: "answered",
    CallStatus.COMPLETED: "completed",
    CallStatus.BUSY: "completed",
    CallStatus.FAILED: "completed",
    CallStatus.NO_ANSWER: "completed",
    CallStatus.CANCELED: "completed",
}


def status_for_failure(sip_status: int, *, canceled: bool = False) -> CallStatus:
    """The Twilio status of an outbound call or ``<Dial>`` child whose INVITE failed with
    ``sip_status``: busy for 486/600, no-answer for 408/480/487, canceled when we cancelled it."""
    if canceled:
        return CallStatus.CANCELED
    if sip_status in (486, 600):
        return CallStatus.BUSY
    if sip_status in (408, 480, 487):
        return CallStatus.NO_ANSWER
    return CallStatus.FAILED


class CallStateError(Exception):
    """A status change Twilio's state machine does not allow."""


def new_sid(prefix: str) -> str:
    """A Twilio-style SID: two-letter prefix and 32 lowercase hex digits (``CA…``, ``RE…``)."""
    return prefix + secrets.token_hex(16)


@functools.lru_cache(maxsize=4096)
def formatted(number: str) -> str:
    """``from_formatted``/``to_formatted``: national format for phone numbers, else unchanged.

    Memoised: libphonenumber parsing costs tens of microseconds and every status write asks.
    """
    if not number.startswith("+"):
        return number
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


@dataclass(slots=True)
class StatusCallback:
    """Where and for which events to report progress (``StatusCallback*`` parameters)."""

    url: str
    method: str = "POST"
    events: frozenset[str] = frozenset({"completed"})


@dataclass(slots=True)
class Call:
    """One call leg with a Twilio SID, as the REST API and callbacks describe it."""

    account_sid: str
    from_: str
    to: str
    direction: str  # inbound, outbound-api, outbound-dial
    sid: str = field(default_factory=lambda: new_sid("CA"))
    status: CallStatus = CallStatus.QUEUED
    parent_call_sid: str | None = None
    forwarded_from: str | None = None
    caller_name: str | None = None
    trunk_sid: str | None = None
    created: float = 0.0
    updated: float = 0.0
    started: float | None = None
    answered_at: float | None = None
    ended: float | None = None
    sip_response_code: int | None = None
    status_callback: StatusCallback | None = None
    sequence: int = 0

    def transition(self, status: CallStatus, now: float, *, sip_code: int | None = None) -> str | None:
        """Move to ``status`` at ``now``; returns the status-callback event reached, if any."""
        if status == self.status:
            return None
        if status not in TRANSITIONS[self.status]:
            raise CallStateError(f"call {self.sid}: {self.status} -> {status} is not a valid transition")
        self.status = status
        self.updated = now
        if sip_code is not None:
            self.sip_response_code = sip_code
        if status in (CallStatus.RINGING, CallStatus.IN_PROGRESS) and self.started is None:
            self.started = now
        if status == CallStatus.IN_PROGRESS:
            self.answered_at = now
        if status.is_final:
            self.ended = now
        return CALLBACK_EVENTS[status]

    @property
    def duration(self) -> int | None:
        """Seconds from answer to end (0 if never answered), once the call has ended."""
        if self.ended is None:
            return None
        if self.answered_at is None:
            return 0
        return max(0, round(self.ended - self.answered_at))

    @property
    def uri(self) -> str:
        """The call's REST URI."""
        return f"{account_base(self.account_sid)}/Calls/{self.sid}.json"

    def to_json(self) -> dict[str, Any]:
        """The REST representation (``GET Calls/{sid}.json``)."""
        base = f"{account_base(self.account_sid)}/Calls/{self.sid}"
        duration = self.duration
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "parent_call_sid": self.parent_call_sid,
            "date_created": rfc2822(self.created),
            "date_updated": rfc2822(self.updated or self.created),
            "to": self.to,
            "to_formatted": formatted(self.to),
            "from": self.from_,
            "from_formatted": formatted(self.from_),
            "phone_number_sid": None,
            "status": str(self.status),
            "start_time": rfc2822(self.started),
            "end_time": rfc2822(self.ended),
            "duration": None if duration is None else str(duration),
            "price": None,
            "price_unit": "USD",
            "direction": self.direction,
            "answered_by": None,
            "annotation": None,
            "api_version": "2010-04-01",
            "forwarded_from": self.forwarded_from,
            "group_sid": None,
            "caller_name": self.caller_name,
            "queue_time": "0",
            "trunk_sid": self.trunk_sid,
            "uri": f"{base}.json",
            "subresource_uris": {
                "notifications": f"{base}/Notifications.json",
                "recordings": f"{base}/Recordings.json",
                "events": f"{base}/Events.json",
            },
        }

    def callback_params(self, now: float) -> list[tuple[str, str]]:
        """Parameters of a status callback for the call's current status (``SequenceNumber`` counts)."""
        params = [
            ("AccountSid", self.account_sid),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", self.sid),
            ("CallStatus", str(self.status)),
            ("CallbackSource", "call-progress-events"),
            ("Called", self.to),
            ("Caller", self.from_),
            ("Direction", self.direction),
            ("From", self.from_),
            ("SequenceNumber", str(self.sequence)),
            ("Timestamp", rfc2822(now) or ""),
            ("To", self.to),
        ]
        self.sequence += 1
        if self.parent_call_sid:
            params.append(("ParentCallSid", self.parent_call_sid))
        if self.sip_response_code is not None:
            params.append(("SipResponseCode", str(self.sip_response_code)))
        duration = self.duration
        if duration is not None:
            params += [("CallDuration", str(duration)), ("Duration", str(math.ceil(duration / 60)))]
        return params
