"""E2E audit of ``<Reject>``, ``<Redirect>`` and the voice webhook itself (GET, fallback, callbacks).

Twilio's documented behaviour:

* https://www.twilio.com/docs/voice/twiml/reject: ``<Reject>`` as the first verb never answers the
  call; "the call ends with a status of busy or no-answer, depending on the verb's reason
  attribute" (SIP: ``busy`` -> 486 Busy Here, ``rejected`` -> 603 Decline);
* https://www.twilio.com/docs/voice/twiml/redirect: the URL may be relative to the current
  document's URL, ``method`` is GET or POST (default POST);
* https://www.twilio.com/docs/usage/webhooks/voice-webhooks: a GET webhook carries the call's
  parameters in the query string (the signature covers the full URL);
* https://www.twilio.com/docs/errors/11205: "Twilio will wait for a total of 15 seconds to receive
  an HTTP response ... If either of those timers expire, we fail the request, fire a notification,
  and try your fallback URL";
* https://www.twilio.com/docs/voice/api/call-resource#statuscallbackevent: ``initiated``,
  ``ringing``, ``answered``, ``completed`` with ``CallStatus``, ``Timestamp`` (RFC 2822),
  ``CallbackSource=call-progress-events``, ``SequenceNumber`` from 0, ``CallDuration`` at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from aiohttp import web
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from tests.e2e.conftest import (
    ACCOUNT,
    AppRequest,
    CustomerApp,
    StartTrunkline,
    e2e_config,
    http_base,
    requires_sipp,
    sip_address,
    twiml,
)
from tests.e2e.test_inbound_say_play import sipp_caller
from tests.e2e.test_twiml_play import final_call, hangup_twiml, rejected_caller, run_call, signed
from tests.media.rtp_phone import Phone
from tests.peers import audio
from tests.peers.sipp import Sipp, scenario

pytestmark = [requires_sipp, pytest.mark.timeout(60)]


@pytest.mark.parametrize(
    ("reason", "sip_status", "call_status"), [("rejected", 603, "no-answer"), ("busy", 486, "busy")]
)
async def test_reject_first_never_answers(
    tmp_path: Path,
    customer_app: CustomerApp,
    trunkline: StartTrunkline,
    reason: str,
    sip_status: int,
    call_status: str,
) -> None:
    """``<Reject reason=...>`` first: a final 603/486 (a 200 would fail SIPp's scenario)."""

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.reject(reason=reason)
        response.say("Never spoken: verbs after Reject are unreachable.")
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/status", lambda r: web.Response(status=204))
    config = e2e_config(
        tmp_path, voice_url=customer_app.url("/voice"), status_callback=customer_app.url("/status")
    )
    server = await trunkline(config)
    result = await rejected_caller(tmp_path, sip_address(server), sip_status).run()
    result.check(calls=1)
    assert result.row(str(sip_status), direction="recv").messages == 1

    (webhook,) = customer_app.to("/voice")
    record = await final_call(server, webhook.form["CallSid"])
    assert record["status"] == call_status
    assert record["duration"] in ("0", 0)
    (status,) = await customer_app.wait_for("/status")
    assert status.signature_valid()
    assert status.form["CallStatus"] == call_status
    assert status.form["SipResponseCode"] == str(sip_status)
    assert status.form["CallDuration"] == "0"


async def test_redirect_get_relative_then_post(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """``<Redirect method="GET">next</Redirect>`` resolves against ``/app/voice``; then a POST one."""

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.redirect("next?step=2", method="GET")
        response.say("Never reached: Redirect ends this document.")
        return twiml(response)

    def step2(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.redirect("../final")  # default method: POST
        return twiml(response)

    customer_app.route("/app/voice", voice)
    customer_app.route("/app/next", step2)
    customer_app.route("/final", lambda r: hangup_twiml())
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/app/voice")))
    phone = Phone(asyncio.get_running_loop())
    result = await run_call(sipp_caller(tmp_path, sip_address(server), phone.port), phone)
    result.check(calls=1)

    (first,) = customer_app.to("/app/voice")
    (second,) = customer_app.to("/app/next")
    (third,) = customer_app.to("/final")
    assert second.method == "GET"
    assert second.form["step"] == "2"  # the redirect URL's own query survives
    assert second.form["CallSid"] == first.form["CallSid"]
    assert second.form["CallStatus"] == "in-progress"
    assert signed(second)  # signed over the full URL with the query string
    assert third.method == "POST"
    assert third.form["CallSid"] == first.form["CallSid"]
    assert third.signature_valid()
    assert audio.rms_dbfs(phone.audio_from(0)) < -50  # the unreachable <Say> was never played


async def test_get_voice_webhook(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """A number configured with ``voice_method: GET``: parameters ride in the signed query string."""

    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say("Hello over GET.")
        return twiml(response)

    customer_app.route("/voice", voice)
    config = e2e_config(tmp_path, voice_url=customer_app.url("/voice"))
    route = dataclasses.replace(config.numbers[0], voice_method="GET")
    server = await trunkline(dataclasses.replace(config, numbers=(route,)))
    phone = Phone(asyncio.get_running_loop())
    result = await run_call(sipp_caller(tmp_path, sip_address(server), phone.port), phone)
    result.check(calls=1)
    (webhook,) = customer_app.to("/voice")
    assert webhook.method == "GET"
    assert "?" in webhook.url and "CallSid=" in webhook.url
    assert webhook.form["AccountSid"] == ACCOUNT.sid
    assert webhook.form["CallStatus"] == "ringing" and webhook.form["Direction"] == "inbound"
    assert signed(webhook)
    assert audio.rms_dbfs(phone.audio_from(0)) > -45


async def test_voice_url_timeout_uses_fallback(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """A voice URL that does not answer in time: the fallback URL gets ``ErrorCode``/``ErrorUrl``."""

    async def slow(request: AppRequest) -> web.Response:
        await asyncio.sleep(3.0)
        return hangup_twiml()

    def fallback(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say("This is the fallback.")
        return twiml(response)

    customer_app.route("/voice", slow)
    customer_app.route("/fallback", fallback)
    config = e2e_config(
        tmp_path, voice_url=customer_app.url("/voice"), fallback_url=customer_app.url("/fallback")
    )
    server = await trunkline(config)
    assert server.webhooks is not None
    server.webhooks.timeout = 1.0  # Twilio's 15 s, shortened for the test
    phone = Phone(asyncio.get_running_loop())
    result = await run_call(sipp_caller(tmp_path, sip_address(server), phone.port), phone)
    result.check(calls=1)
    (primary,) = customer_app.to("/voice")
    (second,) = customer_app.to("/fallback")
    assert 0.9 <= second.time - primary.time < 2.0
    assert second.signature_valid()
    assert second.form["ErrorUrl"] == customer_app.url("/voice")
    assert second.form["ErrorCode"] in ("11200", "11205")
    assert second.form["CallSid"] == primary.form["CallSid"]
    assert audio.rms_dbfs(phone.audio_from(0)) > -45  # the fallback's <Say> was heard


async def test_status_callback_parameters_and_order(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """REST call with every event: four signed callbacks in order with Twilio's parameters."""

    def outbound(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.pause(length=2)
        response.hangup()
        return twiml(response)

    customer_app.route("/outbound", outbound)
    customer_app.route("/status", lambda r: web.Response(status=204))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    client = Client(ACCOUNT.sid, ACCOUNT.auth_token)
    client.api.base_url = http_base(server)
    events = ["initiated", "ringing", "answered", "completed"]
    started = datetime.now(UTC)
    async with Sipp(scenario("uas_answer"), workdir=tmp_path, timeout=20) as uas:
        call = await asyncio.to_thread(
            client.calls.create,
            to=f"sip:test@127.0.0.1:{uas.local_port}",
            from_="+15550001111",
            url=customer_app.url("/outbound"),
            status_callback=customer_app.url("/status"),
            status_callback_method="GET",
            status_callback_event=events,
        )
        callbacks = await customer_app.wait_for("/status", count=4, timeout=15)
    ordered = sorted(callbacks, key=lambda c: int(c.form["SequenceNumber"]))
    assert [c.form["SequenceNumber"] for c in ordered] == ["0", "1", "2", "3"]
    assert [c.form["StatusCallbackEvent"] for c in ordered] == events
    assert ordered[0].form["CallStatus"] in ("queued", "initiated")
    assert [c.form["CallStatus"] for c in ordered[1:]] == ["ringing", "in-progress", "completed"]
    stamps = []
    for callback in ordered:
        assert callback.method == "GET"
        assert signed(callback)
        form = callback.form
        assert form["CallSid"] == call.sid and form["AccountSid"] == ACCOUNT.sid
        assert form["CallbackSource"] == "call-progress-events"
        assert form["Direction"] == "outbound-api" and form["ApiVersion"] == "2010-04-01"
        stamp = parsedate_to_datetime(form["Timestamp"])  # RFC 2822, e.g. "Fri, 27 Nov 2026 12:00:00 +0000"
        assert stamp.tzinfo is not None
        assert abs(stamp - started) < timedelta(seconds=30)
        stamps.append(stamp)
    assert stamps == sorted(stamps)
    assert all("CallDuration" not in c.form for c in ordered[:3])
    assert 2 <= int(ordered[3].form["CallDuration"]) <= 4
