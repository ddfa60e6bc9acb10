"""E2E: ``<Gather numDigits=4>`` with SIPp sending RFC 2833 digits, which also barge in on the ``<Say>``."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from twilio.twiml.voice_response import Gather, VoiceResponse

from tests.e2e.conftest import (
    NUMBER,
    AppRequest,
    CustomerApp,
    StartTrunkline,
    e2e_config,
    requires_sipp,
    sip_address,
    twiml,
)
from tests.peers.sipp import Sipp, dtmf_2833_scenario

pytestmark = [requires_sipp, pytest.mark.timeout(60)]

LONG_TEXT = " ".join(["Please enter your four digit account number followed by nothing at all."] * 4)


async def test_gather_gets_rfc2833_digits_and_barges_in(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        gather = Gather(num_digits=4, action="/gather", timeout=5)
        gather.say(LONG_TEXT)  # about 20 s of speech: only barge-in ends it in time
        response.append(gather)
        response.say("We did not get your digits.")
        return twiml(response)

    def gathered(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say("Thank you.")
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/gather", gathered)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    scenario = dtmf_2833_scenario(tmp_path, "1234", gap_ms=300)
    uac = Sipp(scenario, remote=sip_address(server), workdir=tmp_path, service=NUMBER, timeout=20)
    result = await uac.run()
    result.check(calls=1)

    (first,) = customer_app.to("/voice")
    (action,) = await customer_app.wait_for("/gather", timeout=5)
    assert action.signature_valid()
    assert action.form["Digits"] == "1234"
    assert action.form["CallSid"] == first.form["CallSid"]
    assert action.form["CallStatus"] == "in-progress"
    assert "FinishedOnKey" not in action.form
    # The prompt lasts ~20 s; the digits (sent within ~3 s of the answer) cut it short.
    assert action.time - first.time < 8.0
