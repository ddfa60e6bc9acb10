"""Messages as Twilio describes them: SIDs, statuses, the REST record and status-callback parameters.

A :class:`Message` is one SMS-like text carried over SIP MESSAGE (RFC 3428). Outbound messages
start ``queued`` and move ``sending -> sent -> delivered`` on a 2xx final response, or end
``undelivered``/``failed`` with one of Twilio's 300xx error codes (:func:`delivery_error`).
Inbound messages are ``received``. Every status reached after creation fires a status callback
when the message has a ``StatusCallback`` (Twilio sends none for the initial status).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from trunkline.gateway.api.envelope import API_VERSION, account_base, rfc2822
from trunkline.gateway.messaging.segments import count_segments
from trunkline.gateway.switch.calls import new_sid


class MessageStatus(enum.StrEnum):
    """Twilio's message statuses (those Trunkline uses)."""

    ACCEPTED = "accepted"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    RECEIVING = "receiving"
    RECEIVED = "received"

    @property
    def is_final(self) -> bool:
        """True for the statuses a message ends in."""
        return self in (
            MessageStatus.DELIVERED,
            MessageStatus.UNDELIVERED,
            MessageStatus.FAILED,
            MessageStatus.RECEIVED,
        )


class Direction(enum.StrEnum):
    """Twilio's ``direction`` values: REST-created, reply from messaging TwiML, and inbound."""

    INBOUND = "inbound"
    OUTBOUND_API = "outbound-api"
    OUTBOUND_REPLY = "outbound-reply"
    OUTBOUND_CALL = "outbound-call"


# Twilio's delivery error codes (https://www.twilio.com/docs/api/errors/300xx).
UNREACHABLE_HANDSET = 30003  # "Unreachable destination handset"
MESSAGE_BLOCKED = 30004  # "Message blocked"
UNKNOWN_HANDSET = 30005  # "Unknown destination handset"
UNKNOWN_ERROR = 30008  # "Unknown error"

ERROR_MESSAGES = {
    UNREACHABLE_HANDSET: "Unreachable destination handset",
    MESSAGE_BLOCKED: "Message blocked",
    UNKNOWN_HANDSET: "Unknown destination handset",
    UNKNOWN_ERROR: "Unknown error",
}

# SIP final responses to a MESSAGE (RFC 3261 section 21, RFC 3428 section 7) and what Twilio
# would report: nobody there right now -> 30003; refused by policy -> 30004; a user that does not
# exist anywhere -> 30005; anything else -> 30008.
_SIP_ERRORS: dict[int, int] = {
    404: UNREACHABLE_HANDSET,
    408: UNREACHABLE_HANDSET,
    410: UNREACHABLE_HANDSET,
    480: UNREACHABLE_HANDSET,
    486: UNREACHABLE_HANDSET,
    503: UNREACHABLE_HANDSET,
    600: UNREACHABLE_HANDSET,
    401: MESSAGE_BLOCKED,
    403: MESSAGE_BLOCKED,
    407: MESSAGE_BLOCKED,
    603: MESSAGE_BLOCKED,
    607: MESSAGE_BLOCKED,
    484: UNKNOWN_HANDSET,
    604: UNKNOWN_HANDSET,
}


def delivery_error(sip_status: int) -> tuple[MessageStatus, int]:
    """Status and Twilio error code for a non-2xx final SIP response to a MESSAGE.

    The far end answered, so the message was sent and not delivered (``undelivered``); a 5xx
    from our own side of the path other than 503 counts as ``failed``.
    """
    code = _SIP_ERRORS.get(sip_status, UNKNOWN_ERROR)
    status = MessageStatus.FAILED if sip_status in (500, 501, 502, 504) else MessageStatus.UNDELIVERED
    return status, code


@dataclass(slots=True)
class Message:
    """One message with a Twilio SID (``SM`` + 32 hex), as REST and callbacks describe it."""

    account_sid: str
    from_: str
    to: str
    body: str
    direction: Direction
    sid: str = field(default_factory=lambda: new_sid("SM"))
    status: MessageStatus = MessageStatus.QUEUED
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    status_callback_method: str = "POST"
    error_code: int | None = None
    error_message: str | None = None
    created: float = 0.0
    updated: float = 0.0
    sent_at: float | None = None
    sip_status: int | None = None

    @property
    def num_segments(self) -> int:
        """Segments Twilio bills for the body (GSM-7 or UCS-2 counting)."""
        return count_segments(self.body).segments

    def transition(self, status: MessageStatus, now: float, *, error_code: int | None = None) -> bool:
        """Move to ``status`` at ``now``; False (and no change) if the message already ended."""
        if self.status.is_final or status == self.status:
            return False
        self.status = status
        self.updated = now
        if status in (MessageStatus.SENT, MessageStatus.RECEIVED) and self.sent_at is None:
            self.sent_at = now
        if error_code is not None:
            self.error_code = error_code
            self.error_message = ERROR_MESSAGES.get(error_code)
        return True

    def to_json(self) -> dict[str, Any]:
        """The REST representation (``GET Messages/{sid}.json``)."""
        base = f"{account_base(self.account_sid)}/Messages/{self.sid}"
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "messaging_service_sid": self.messaging_service_sid,
            "from": self.from_,
            "to": self.to,
            "body": self.body,
            "num_segments": str(self.num_segments),
            "num_media": "0",
            "direction": str(self.direction),
            "status": str(self.status),
            "error_code": self.error_code,
            "error_message": self.error_message,
            "price": None,
            "price_unit": "USD",
            "api_version": API_VERSION,
            "date_created": rfc2822(self.created),
            "date_updated": rfc2822(self.updated or self.created),
            "date_sent": rfc2822(self.sent_at),
            "uri": f"{base}.json",
            "subresource_uris": {"media": f"{base}/Media.json", "feedback": f"{base}/Feedback.json"},
        }

    def callback_params(self) -> list[tuple[str, str]]:
        """Parameters of a status callback for the current status."""
        params = [
            ("AccountSid", self.account_sid),
            ("ApiVersion", API_VERSION),
            ("From", self.from_),
            ("MessageSid", self.sid),
            ("MessageStatus", str(self.status)),
            ("SmsSid", self.sid),
            ("SmsStatus", str(self.status)),
            ("To", self.to),
        ]
        if self.messaging_service_sid:
            params.append(("MessagingServiceSid", self.messaging_service_sid))
        if self.error_code is not None:
            params.append(("ErrorCode", str(self.error_code)))
        return params

    def webhook_params(self) -> list[tuple[str, str]]:
        """Parameters of the incoming-message webhook (Twilio's SMS request to ``sms_url``)."""
        return [
            ("AccountSid", self.account_sid),
            ("ApiVersion", API_VERSION),
            ("Body", self.body),
            ("From", self.from_),
            ("MessageSid", self.sid),
            ("NumMedia", "0"),
            ("NumSegments", str(self.num_segments)),
            ("SmsMessageSid", self.sid),
            ("SmsSid", self.sid),
            ("SmsStatus", str(self.status)),
            ("To", self.to),
        ]
