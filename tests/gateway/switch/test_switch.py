# ruff: noqa: F811  (pytest fixtures imported from tests.e2e.conftest are redefined as parameters)
"""The switch against real SIP peers (SIPp) and a real customer app: reject, caller hangup,
unsupported verbs, outbound no-answer, REST updates, and the pure helpers."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from tests.e2e.conftest import (  # noqa: F401 (fixtures)
    ACCOUNT,
    NUMBER,
    AppRequest,
    CustomerApp,
    StartTrunkline,
    _in_tmp,
    customer_app,
    e2e_config,
    requires_sipp,
    sip_address,
    trunkline,
    twiml,
)
from tests.e2e.test_inbound_say_play import sipp_caller
from tests.e2e.test_outbound_rest import rest_client
from tests.media.rtp_phone import Phone
from tests.peers import audio
from tests.peers.sipp import Sipp, derive_scenario, scenario
from trunkline.gateway.api.control import CallUpdate, ControlError, OutboundCall, Target
from trunkline.gateway.config import Trunk
from trunkline.gateway.server import Server
from trunkline.gateway.sip.uri import parse_uri
from trunkline.gateway.store import Filter, SqliteStore
from trunkline.gateway.switch.calls import CallStatus
from trunkline.gateway.switch.channel import SipCallChannel
from trunkline.gateway.switch.control import SwitchCallControl, status_for_failure
from trunkline.gateway.switch.legs import Ended, InfoDtmf
from trunkline.gateway.switch.switch import party
from trunkline.gateway.twiml.channel import CallEnded
from trunkline.media.session import Digit

FIXTURES = Path(__file__).parents[2] / "fixtures" / "switch"


def test_party_uses_numbers_else_uris() -> None:
    assert party(parse_uri("sip:+15551230000@10.0.0.1:5060;user=phone")) == "+15551230000"
    assert party(parse_uri("sip:4155550100@carrier.example")) == "4155550100"
    assert party(parse_uri("sip:alice@pbx.example:5080")) == "sip:alice@pbx.example"
    assert party(parse_uri("sip:pbx.example")) == "sip:pbx.example"


@pytest.mark.parametrize(
    ("status", "canceled", "expected"),
    [
        (486, False, CallStatus.BUSY),
        (600, False, CallStatus.BUSY),
        (408, False, CallStatus.NO_ANSWER),
        (480, False, CallStatus.NO_ANSWER),
        (404, False, CallStatus.FAILED),
        (503, False, CallStatus.FAILED),
        (487, True, CallStatus.CANCELED),
    ],
)
def test_status_for_failure(status: int, canceled: bool, expected: CallStatus) -> None:
    assert status_for_failure(status, canceled=canceled) is expected


async def _call_record(server: Server, sid: str, final: bool = True) -> dict[str, Any]:
    for _ in range(100):
        records = (await server.store.select("calls", [Filter("sid", "=", sid)])).records
        if records and (not final or CallStatus(records[0]["status"]).is_final):
            return records[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"call {sid} never reached a final status")


@requires_sipp
async def test_reject_first_never_answers(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.reject(reason="busy")
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/status", lambda r: web.Response(status=204))
    config = e2e_config(
        tmp_path, voice_url=customer_app.url("/voice"), status_callback=customer_app.url("/status")
    )
    server = await trunkline(config)
    uac = Sipp(
        FIXTURES / "uac_rejected.xml",
        remote=sip_address(server),
        workdir=tmp_path,
        service=NUMBER,
        timeout=10,
    )
    result = await uac.run()
    result.check(calls=1)
    assert "SIP/2.0 200 OK" not in uac.messages
    (webhook,) = customer_app.to("/voice")
    record = await _call_record(server, webhook.form["CallSid"])
    assert record["status"] == "busy" and record["duration"] == "0"
    (status,) = await customer_app.wait_for("/status")  # only "completed" for a number's callback
    assert status.form["CallStatus"] == "busy" and status.form["StatusCallbackEvent"] == "completed"


@requires_sipp
async def test_caller_bye_ends_session_and_completes_call(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say("This sentence is long enough to still be playing when the caller hangs up.", loop=5)
        response.redirect("/never")
        return twiml(response)

    customer_app.route("/voice", voice)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    uac = Sipp(
        "uac", remote=sip_address(server), workdir=tmp_path, service=NUMBER, call_duration_ms=1500, timeout=10
    )
    (await uac.run()).check(calls=1)
    (webhook,) = customer_app.to("/voice")
    record = await _call_record(server, webhook.form["CallSid"])
    assert record["status"] == "completed"
    assert 1 <= int(record["duration"]) <= 3
    assert customer_app.to("/never") == []
    assert server.switch is not None and server.switch.calls == {}


@requires_sipp
async def test_unsupported_verb_is_reported_and_call_ends(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def missing(self: SipCallChannel, refer: Any) -> Any:
        return await self._delegate("Refer", "no_such_module", "run_refer", refer)

    monkeypatch.setattr(SipCallChannel, "refer", missing)  # whatever modules exist by now

    def voice(request: AppRequest) -> web.Response:
        return web.Response(
            text="<Response><Refer><Sip>sip:alice@example.com</Sip></Refer></Response>",
            content_type="text/xml",
        )

    customer_app.route("/voice", voice)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    phone = Phone(asyncio.get_running_loop())
    try:
        result = await sipp_caller(tmp_path, sip_address(server), phone.port).run()
    finally:
        phone.close()
    result.check(calls=1)
    assert phone.audio_from(0).size > 8000  # the application-error prompt
    (webhook,) = customer_app.to("/voice")
    notes = (
        await server.store.select("notifications", [Filter("call_sid", "=", webhook.form["CallSid"])])
    ).records
    assert [n["error_code"] for n in notes] == ["12200"]
    assert "Refer" in notes[0]["message_text"] and "no_such_module" in notes[0]["message_text"]


@requires_sipp
async def test_outbound_timeout_is_no_answer(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    customer_app.route("/status", lambda r: web.Response(status=204))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    client = rest_client(server)
    async with Sipp(scenario("uas_noanswer"), workdir=tmp_path, timeout=10) as uas:
        call = await asyncio.to_thread(
            client.calls.create,
            to=f"sip:test@127.0.0.1:{uas.local_port}",
            from_="+15550001111",
            twiml="<Response><Say>never heard</Say></Response>",
            status_callback=customer_app.url("/status"),
            status_callback_event=["ringing", "completed"],
            timeout=2,
        )
        callbacks = await customer_app.wait_for("/status", count=2, timeout=8)
    assert [c.form["CallStatus"] for c in callbacks] == ["ringing", "no-answer"]
    assert "CANCEL sip:" in uas.messages
    record = await _call_record(server, call.sid)
    assert record["status"] == "no-answer"


async def test_update_of_unknown_call_is_21220(tmp_path: Path, trunkline: StartTrunkline) -> None:
    server = await trunkline(e2e_config(tmp_path, voice_url="http://127.0.0.1:9/voice"))
    control = server.controls.calls
    assert isinstance(control, SwitchCallControl)
    with pytest.raises(ControlError) as info:
        await control.update_call(ACCOUNT.sid, "CA" + "0" * 32, CallUpdate(status="completed"))
    assert info.value.code == 21220 and info.value.status == 400


@requires_sipp
async def test_cancel_outbound_call_while_ringing(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    customer_app.route("/status", lambda r: web.Response(status=204))
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    control = server.controls.calls
    assert isinstance(control, SwitchCallControl)
    async with Sipp(scenario("uas_noanswer"), workdir=tmp_path, timeout=10) as uas:
        call = await control.create_call(
            OutboundCall(
                ACCOUNT.sid,
                Target("sip", f"sip:test@127.0.0.1:{uas.local_port}"),
                "+15550001111",
                twiml="<Response><Say>never heard</Say></Response>",
            )
        )
        for _ in range(100):
            record = await _call_record(server, call.sid, final=False)
            if record["status"] == "ringing":
                break
            await asyncio.sleep(0.05)
        assert record["status"] == "ringing"
        await control.update_call(ACCOUNT.sid, call.sid, CallUpdate(status="canceled"))
        record = await _call_record(server, call.sid)
    assert record["status"] == "canceled"
    assert "CANCEL sip:" in uas.messages
    assert isinstance(uas.result, object)


@requires_sipp
async def test_shutdown_hangs_up_live_calls(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say("A long message that keeps playing while the server shuts down.", loop=10)
        return twiml(response)

    customer_app.route("/voice", voice)
    config = e2e_config(tmp_path, voice_url=customer_app.url("/voice"))
    server = await trunkline(config)
    phone = Phone(asyncio.get_running_loop())
    caller = asyncio.get_running_loop().create_task(
        sipp_caller(tmp_path, sip_address(server), phone.port).run()
    )
    try:
        (webhook,) = await customer_app.wait_for("/voice")
        await asyncio.sleep(1.0)
        await server.stop()
        result = await caller
    finally:
        phone.close()
    result.check(calls=1)  # our BYE arrived before the transports closed
    store = await SqliteStore(config.storage.database).open()
    try:
        record = await store.get("calls", sid=webhook.form["CallSid"])
    finally:
        await store.close()
    assert record is not None and record["status"] == "completed"


class _FakeLeg:
    def __init__(self) -> None:
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.on_reinvite: Any = None


class _FakeStream:
    def __init__(self) -> None:
        self.digit_callbacks: list[Any] = []
        self.stopped = 0

    def stop_playback(self) -> bool:
        self.stopped += 1
        return True

    def flush_digits(self) -> None:
        pass


async def test_channel_merges_info_and_rtp_digits() -> None:
    leg, stream = _FakeLeg(), _FakeStream()
    channel = SipCallChannel("CA" + "1" * 32, leg, stream, None, recordings_dir=Path("."))  # type: ignore[arg-type]
    try:
        media = stream.digit_callbacks[0]
        media(Digit("5", "rfc4733", 160, 0.0))
        leg.events.put_nowait(InfoDtmf("5", 160))  # the same key press, also sent by INFO
        leg.events.put_nowait(InfoDtmf("7", 160))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert await channel.next_digit(0.1) == "5"
        assert await channel.next_digit(0.1) == "7"
        assert await channel.next_digit(0.05) is None
        media(Digit("7", "rfc4733", 160, 0.0))  # INFO first, then RTP: still one press
        assert await channel.next_digit(0.05) is None
        media(Digit("9", "inband", 100, 0.0))
        channel.flush_digits()
        assert await channel.next_digit(0.05) is None
        leg.events.put_nowait(Ended(True, "bye"))
        with pytest.raises(CallEnded):
            await channel.next_digit(5.0)
    finally:
        channel._events.cancel()


@requires_sipp
async def test_outbound_number_goes_through_trunk(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    customer_app.route("/status", lambda r: web.Response(status=204))
    uas = Sipp(scenario("uas_answer"), workdir=tmp_path, timeout=15)
    config = e2e_config(tmp_path, voice_url=customer_app.url("/voice"))
    carrier = Trunk("carrier", "127.0.0.1", port=uas.local_port, outbound=True)
    server = await trunkline(dataclasses.replace(config, trunks=(*config.trunks, carrier)))
    client = rest_client(server)
    async with uas:
        call = await asyncio.to_thread(
            client.calls.create,
            to="+15557654321",
            from_="+15550001111",
            twiml="<Response><Say>Hello through the trunk.</Say><Hangup/></Response>",
            status_callback=customer_app.url("/status"),
        )
        (done,) = await customer_app.wait_for("/status", timeout=10)
    assert uas.result is not None
    uas.result.check(calls=1)
    assert f"INVITE sip:+15557654321@127.0.0.1:{uas.local_port} SIP/2.0" in uas.messages
    assert "From: <sip:+15550001111@127.0.0.1>;tag=" in uas.messages
    assert done.form["CallStatus"] == "completed" and done.form["CallSid"] == call.sid
    assert int(done.form["CallDuration"]) >= 1


@requires_sipp
async def test_late_offer_gets_our_offer_and_audio_flows(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.say("Late offers work too.")
        return twiml(response)

    customer_app.route("/voice", voice)
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    phone = Phone(asyncio.get_running_loop())
    path = derive_scenario(
        FIXTURES / "uac_late_offer.xml",
        tmp_path,
        {"m=audio [media_port] RTP/AVP 0": f"m=audio {phone.port} RTP/AVP 0"},
    )
    try:
        uac = Sipp(path, remote=sip_address(server), workdir=tmp_path, service=NUMBER, timeout=15)
        result = await uac.run()
    finally:
        phone.close()
    result.check(calls=1)
    blocks = uac.messages.split("-----------------------------------------------")
    (ok,) = [b for b in blocks if "SIP/2.0 200 OK" in b and "CSeq: 1 INVITE" in b]
    assert "m=audio " in ok and "telephone-event" in ok  # our offer rode in the 200 OK
    heard = phone.audio_from(0)
    assert heard.size > 8000 and audio.rms_dbfs(heard) > -45


@requires_sipp
async def test_time_limit_hangs_up(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    control = server.controls.calls
    assert isinstance(control, SwitchCallControl)
    async with Sipp(scenario("uas_answer"), workdir=tmp_path, timeout=15) as uas:
        call = await control.create_call(
            OutboundCall(
                ACCOUNT.sid,
                Target("sip", f"sip:test@127.0.0.1:{uas.local_port}"),
                "+15550001111",
                twiml='<Response><Pause length="30"/></Response>',
                time_limit=2,
            )
        )
        record = await _call_record(server, call.sid)
    assert uas.result is not None
    uas.result.check(calls=1)  # our BYE
    assert record["status"] == "completed"
    assert record["duration"] == "2"


@requires_sipp
async def test_gather_takes_sip_info_digits(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def voice(request: AppRequest) -> web.Response:
        response = VoiceResponse()
        response.gather(num_digits=1, action="/digit", timeout=3)
        return twiml(response)

    customer_app.route("/voice", voice)
    customer_app.route("/digit", lambda r: twiml(VoiceResponse().pause(length=5)))  # SIPp hangs up
    server = await trunkline(e2e_config(tmp_path, voice_url=customer_app.url("/voice")))
    uac = Sipp(
        scenario("uac_info_dtmf"), remote=sip_address(server), workdir=tmp_path, service=NUMBER, timeout=10
    )
    (await uac.run()).check(calls=1)
    (action,) = await customer_app.wait_for("/digit")
    assert action.form["Digits"] == "5"
