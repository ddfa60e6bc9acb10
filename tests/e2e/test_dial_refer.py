"""E2E: ``<Refer>`` sends a SIP REFER to a SIPp caller, which reports the transfer in sipfrag NOTIFYs."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

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
from tests.peers.sipp import Sipp, derive_scenario, scenario

pytestmark = [requires_sipp, pytest.mark.timeout(60)]

TARGET = "sip:alice@transfer.example.com"


def app(customer_app: CustomerApp) -> None:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        refer = response.refer(action="/referred")
        refer.sip(TARGET)
        return twiml(response)

    def referred(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.hangup()
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/referred", referred)


async def test_refer_completed(tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline) -> None:
    app(customer_app)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    uac = Sipp(
        scenario("uac_refer"), remote=sip_address(server), workdir=tmp_path, service=NUMBER, timeout=20
    )
    result = await uac.run()
    result.check(calls=1)  # REFER accepted, both NOTIFYs answered 200, then our BYE
    log = next(tmp_path.glob("uac_refer-*.messages.log")).read_text()
    assert f"Refer-To: <{TARGET}>" in log
    assert "Referred-By: <sip:" in log
    (action,) = await customer_app.wait_for("/referred")
    assert action.signature_valid()
    assert action.form["ReferCallStatus"] == "completed"
    assert action.form["ReferSipResponseCode"] == "200"


async def test_refer_failed(tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline) -> None:
    app(customer_app)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    path = derive_scenario(
        "uac_refer",
        tmp_path,
        {"      SIP/2.0 200 OK\n    ]]>": "      SIP/2.0 486 Busy Here\n    ]]>"},
        name="busy",
    )
    uac = Sipp(path, remote=sip_address(server), workdir=tmp_path, service=NUMBER, timeout=20)
    result = await uac.run()
    result.check(calls=1)  # the /referred TwiML hangs up: the BYE comes from there
    (action,) = await customer_app.wait_for("/referred")
    assert action.form["ReferCallStatus"] == "failed"
    assert action.form["ReferSipResponseCode"] == "486"
