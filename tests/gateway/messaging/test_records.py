"""Message records: REST JSON, callback parameters, status moves and SIP failure mapping."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest

from trunkline.gateway.messaging.records import (
    Direction,
    Message,
    MessageStatus,
    delivery_error,
)

ACCOUNT = "AC" + "c" * 32


@pytest.mark.parametrize(
    ("sip", "status", "code"),
    [
        (404, MessageStatus.UNDELIVERED, 30003),
        (480, MessageStatus.UNDELIVERED, 30003),
        (403, MessageStatus.UNDELIVERED, 30004),
        (603, MessageStatus.UNDELIVERED, 30004),
        (604, MessageStatus.UNDELIVERED, 30005),
        (415, MessageStatus.UNDELIVERED, 30008),
        (500, MessageStatus.FAILED, 30008),
    ],
)
def test_sip_failures_map_to_twilio_codes(sip: int, status: MessageStatus, code: int) -> None:
    assert delivery_error(sip) == (status, code)


def test_json_callbacks_and_transitions() -> None:
    message = Message(ACCOUNT, "+14155550100", "client:alice", "Привет", Direction.OUTBOUND_API, created=1e9)
    assert message.sid.startswith("SM") and len(message.sid) == 34
    record = message.to_json()
    assert record["num_segments"] == "1" and record["status"] == "queued" and record["date_sent"] is None
    assert record["direction"] == "outbound-api" and record["body"] == "Привет"
    assert record["uri"] == f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{message.sid}.json"
    assert message.transition(MessageStatus.SENDING, 1e9 + 1)
    assert message.transition(MessageStatus.SENT, 1e9 + 2)
    assert message.transition(MessageStatus.UNDELIVERED, 1e9 + 3, error_code=30003)
    assert not message.transition(MessageStatus.DELIVERED, 1e9 + 4)  # already final
    record = message.to_json()
    assert record["status"] == "undelivered" and record["error_code"] == 30003
    assert record["error_message"] == "Unreachable destination handset"
    assert parsedate_to_datetime(record["date_sent"]).timestamp() == 1e9 + 2
    params = dict(message.callback_params())
    assert params["MessageStatus"] == params["SmsStatus"] == "undelivered"
    assert params["ErrorCode"] == "30003" and params["SmsSid"] == message.sid
    long_text = Message(ACCOUNT, "a", "b", "Ж" * 71, Direction.INBOUND)
    assert long_text.num_segments == 2  # UCS-2: 70 units in one segment, 67 per part beyond
