"""Conference status-callback events and the Conference / Participant REST records.

Twilio's ``<Conference statusCallbackEvent>`` subscribes to event *groups*; each group fires one or
more ``StatusCallbackEvent`` values:

=============  ===========================================================
group          events
=============  ===========================================================
start          ``conference-start``
end            ``conference-end``
join           ``participant-join``
leave          ``participant-leave``
mute           ``participant-mute``, ``participant-unmute``
hold           ``participant-hold``, ``participant-unhold``
modify         ``participant-modify`` (coaching, ``endConferenceOnExit`` changed by REST)
speaker        ``participant-speech-start``, ``participant-speech-stop``
announcement   ``announcement-end``, ``announcement-fail``
=============  ===========================================================

DTMF is Trunkline's own event (Twilio has none): ``participant-dtmf`` with ``Digits`` (the key) and
``DtmfSource`` (``rfc4733``, ``inband`` or ``info``). It goes with the ``speaker`` group (both are
"what a participant does in the room") and with a ``dtmf`` group should the TwiML parser ever
accept that keyword.

As on Twilio, the conference's subscription (URL, method, groups) is set by the first participant
that joins with a ``statusCallback``; later participants' values are ignored. Every event carries
``AccountSid, ConferenceSid, FriendlyName, StatusCallbackEvent, SequenceNumber, Timestamp`` (RFC
2822); participant events add ``CallSid, Muted, Hold, Coaching, EndConferenceOnExit,
StartConferenceOnEnter`` (``true``/``false``) and ``ParticipantLabel`` / ``CallSidToCoach`` when
set; ``conference-end`` adds ``CallSidEndingConference``, ``ReasonConferenceEnded`` and ``Reason``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trunkline.gateway.api.control import JsonRecord
from trunkline.gateway.api.envelope import API_VERSION, account_base, rfc2822

__all__ = [
    "GROUPS",
    "ConferenceCallback",
    "EndReason",
    "conference_json",
    "group_of",
    "participant_params",
]

#: ``StatusCallbackEvent`` value -> the ``statusCallbackEvent`` group that subscribes to it.
GROUPS: dict[str, str] = {
    "conference-start": "start",
    "conference-end": "end",
    "participant-join": "join",
    "participant-leave": "leave",
    "participant-mute": "mute",
    "participant-unmute": "mute",
    "participant-hold": "hold",
    "participant-unhold": "hold",
    "participant-modify": "modify",
    "participant-speech-start": "speaker",
    "participant-speech-stop": "speaker",
    "participant-dtmf": "speaker",
    "announcement-end": "announcement",
    "announcement-fail": "announcement",
}


def group_of(event: str) -> str:
    """The subscription group of ``event``; ``ValueError`` for an event Trunkline never sends."""
    try:
        return GROUPS[event]
    except KeyError:
        raise ValueError(f"unknown conference event {event!r}") from None


class EndReason:
    """Twilio's ``ReasonConferenceEnded`` values."""

    API = "conference-ended-via-api"
    MODERATOR_LEFT = "participant-with-end-conference-on-exit-left"
    MODERATOR_KICKED = "participant-with-end-conference-on-exit-kicked"
    LAST_LEFT = "last-participant-left"
    LAST_KICKED = "last-participant-kicked"

    TEXT = {
        API: "Conference ended via API",
        MODERATOR_LEFT: "Participant {call} with endConferenceOnExit left the conference",
        MODERATOR_KICKED: "Participant {call} with endConferenceOnExit was removed from the conference",
        LAST_LEFT: "Last participant {call} left the conference",
        LAST_KICKED: "Last participant {call} was removed from the conference",
    }

    @classmethod
    def text(cls, reason: str, call_sid: str | None) -> str:
        """Twilio's human-readable ``Reason`` for ``reason``."""
        return cls.TEXT.get(reason, reason).format(call=call_sid or "")


@dataclass(frozen=True, slots=True)
class ConferenceCallback:
    """Where a conference's events go and which groups were asked for."""

    url: str
    method: str = "POST"
    groups: frozenset[str] = frozenset()

    def wants(self, event: str) -> bool:
        """Whether ``event`` (a ``StatusCallbackEvent`` value) was subscribed to."""
        group = group_of(event)
        if group in self.groups:
            return True
        return event == "participant-dtmf" and "dtmf" in self.groups


def _flag(value: bool) -> str:
    return "true" if value else "false"


def participant_params(
    *,
    call_sid: str,
    muted: bool,
    hold: bool,
    coaching: bool,
    end_conference_on_exit: bool,
    start_conference_on_enter: bool,
    label: str | None = None,
    call_sid_to_coach: str | None = None,
) -> list[tuple[str, str]]:
    """The participant part of a conference status callback."""
    params = [
        ("CallSid", call_sid),
        ("Muted", _flag(muted)),
        ("Hold", _flag(hold)),
        ("Coaching", _flag(coaching)),
        ("EndConferenceOnExit", _flag(end_conference_on_exit)),
        ("StartConferenceOnEnter", _flag(start_conference_on_enter)),
    ]
    if label:
        params.append(("ParticipantLabel", label))
    if coaching and call_sid_to_coach:
        params.append(("CallSidToCoach", call_sid_to_coach))
    return params


def conference_json(
    account_sid: str,
    sid: str,
    friendly_name: str,
    *,
    status: str,
    created: float,
    updated: float,
    region: str = "us1",
    reason_conference_ended: str | None = None,
    call_sid_ending_conference: str | None = None,
) -> JsonRecord:
    """Twilio's Conference JSON (``status``: init, in-progress, completed)."""
    base = f"{account_base(account_sid)}/Conferences/{sid}"
    record: dict[str, Any] = {
        "sid": sid,
        "account_sid": account_sid,
        "friendly_name": friendly_name,
        "status": status,
        "region": region,
        "api_version": API_VERSION,
        "date_created": rfc2822(created),
        "date_updated": rfc2822(updated),
        "reason_conference_ended": reason_conference_ended,
        "call_sid_ending_conference": call_sid_ending_conference,
        "uri": f"{base}.json",
        "subresource_uris": {
            "participants": f"{base}/Participants.json",
            "recordings": f"{base}/Recordings.json",
        },
    }
    return record
