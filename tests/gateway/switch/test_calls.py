"""Call records: the status machine, REST JSON read back by the twilio library, callback parameters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from twilio.rest.api.v2010.account.call import CallInstance

from trunkline.gateway.switch.calls import Call, CallStateError, CallStatus, formatted, new_sid

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()


def test_sids_are_twilio_shaped() -> None:
    sid = new_sid("CA")
    assert len(sid) == 34 and sid.startswith("CA") and int(sid[2:], 16) >= 0
    assert new_sid("CA") != sid


def test_inbound_call_lifecycle_and_callback_events() -> None:
    call = Call(
        "AC" + "1" * 32, "+14155550100", "+14155550199", "inbound", created=T0, status=CallStatus.RINGING
    )
    assert call.transition(CallStatus.IN_PROGRESS, T0 + 2) == "answered"
    assert call.duration is None
    assert call.transition(CallStatus.COMPLETED, T0 + 62.4) == "completed"
    assert call.duration == 60
    with pytest.raises(CallStateError, match="completed -> in-progress"):
        call.transition(CallStatus.IN_PROGRESS, T0 + 70)
    assert call.transition(CallStatus.COMPLETED, T0 + 70) is None  # no change, no event


def test_unanswered_outcomes() -> None:
    call = Call("AC1", "+1", "+2", "outbound-api", created=T0)
    assert call.transition(CallStatus.RINGING, T0 + 1) == "ringing"
    assert call.transition(CallStatus.BUSY, T0 + 3, sip_code=486) == "completed"
    assert call.duration == 0 and call.sip_response_code == 486
    with pytest.raises(CallStateError):
        Call("AC1", "+1", "+2", "inbound", status=CallStatus.IN_PROGRESS).transition(CallStatus.BUSY, T0)


def test_json_is_read_by_the_twilio_library() -> None:
    call = Call("AC" + "2" * 32, "+14155550100", "sip:bob@127.0.0.1", "outbound-api", created=T0)
    call.transition(CallStatus.RINGING, T0 + 1)
    call.transition(CallStatus.IN_PROGRESS, T0 + 5)
    call.transition(CallStatus.COMPLETED, T0 + 35)
    instance = CallInstance(None, call.to_json(), account_sid=call.account_sid)  # type: ignore[arg-type]
    assert instance.sid == call.sid and instance.status == "completed"
    assert instance.start_time == datetime(2026, 11, 27, 12, 0, 1, tzinfo=UTC)
    assert instance.end_time == datetime(2026, 11, 27, 12, 0, 35, tzinfo=UTC)
    assert instance.duration == "30" and instance.direction == "outbound-api"
    assert instance.from_formatted == "(415) 555-0100" and instance.to_formatted == "sip:bob@127.0.0.1"
    assert instance.uri == f"/2010-04-01/Accounts/{call.account_sid}/Calls/{call.sid}.json"


def test_callback_parameters_count_sequence() -> None:
    call = Call("AC1", "+15550001111", "+15552223333", "inbound", created=T0, status=CallStatus.RINGING)
    first = dict(call.callback_params(T0))
    call.transition(CallStatus.IN_PROGRESS, T0 + 1)
    call.transition(CallStatus.COMPLETED, T0 + 121)
    second = dict(call.callback_params(T0 + 121))
    assert first["SequenceNumber"] == "0" and second["SequenceNumber"] == "1"
    assert first["CallbackSource"] == "call-progress-events" and "CallDuration" not in first
    assert (
        second["CallStatus"] == "completed" and second["CallDuration"] == "120" and second["Duration"] == "2"
    )
    assert second["Timestamp"] == "Fri, 27 Nov 2026 12:02:01 +0000"


def test_formatting_leaves_non_numbers_alone() -> None:
    assert formatted("client:alice") == "client:alice"
    assert formatted("+442071838750") == "020 7183 8750"
