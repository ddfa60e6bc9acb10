"""The messaging service against a real web app: status progression and signed callbacks,
SIP failures, inbound webhooks signed as Twilio signs them, and TwiML <Message> replies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from twilio.request_validator import RequestValidator

from trunkline.gateway.api.control import NoRouteError
from trunkline.gateway.config import (
    Account,
    Config,
    HttpConfig,
    NumberRoute,
    RtpConfig,
    SipConfig,
    compile_number_pattern,
)
from trunkline.gateway.messaging.records import Direction, MessageStatus
from trunkline.gateway.messaging.service import MessagingService
from trunkline.gateway.messaging.sip import build_message_request, sip_uri_for
from trunkline.gateway.sip import SipUri
from trunkline.gateway.store import Filter, SqliteStore
from trunkline.gateway.twiml.webhooks import CallbackSender, WebhookClient

from .fakes import FakeSender, WebApp, web_app

ACCOUNT = "AC" + "d" * 32
TOKEN = "messaging-token"
NUMBER = "+14155550100"
CYRILLIC = "Привет! Ваш заказ №42 готов к выдаче."


def make_config(sms_url: str | None) -> Config:
    route = NumberRoute(
        match=NUMBER, account=ACCOUNT, sms_url=sms_url, pattern=compile_number_pattern(NUMBER)
    )
    return Config(
        sip=SipConfig(),
        rtp=RtpConfig(),
        http=HttpConfig(),
        accounts=(Account(ACCOUNT, TOKEN),),
        numbers=(route,),
    )


@dataclass
class Rig:
    service: MessagingService
    sender: FakeSender
    app: WebApp
    store: SqliteStore
    callbacks: CallbackSender

    async def settle(self) -> None:
        await self.service.drain(5)
        await self.callbacks.drain(5)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = await SqliteStore(tmp_path / "msg.sqlite").open()
    client = WebhookClient(timeout=5)
    callbacks = CallbackSender(client, retries=0)
    sender = FakeSender()
    async with web_app() as app:
        clock = iter(float(1_800_000_000 + n) for n in range(10_000))
        service = MessagingService(
            make_config(f"{app.url}/sms"), store, sender, client, callbacks, clock=lambda: next(clock)
        )
        yield Rig(service, sender, app, store, callbacks)
    await client.close()
    await store.close()


def assert_signed(received: object, token: str = TOKEN) -> None:
    validator = RequestValidator(token)
    url = received.url  # type: ignore[attr-defined]
    form = received.form  # type: ignore[attr-defined]
    signature = received.headers["X-Twilio-Signature"]  # type: ignore[attr-defined]
    assert validator.validate(url, form, signature), f"bad signature for {url}"


async def test_delivered_progression_with_callbacks(rig: Rig) -> None:
    message = await rig.service.send(
        ACCOUNT, NUMBER, "client:alice", CYRILLIC, status_callback=f"{rig.app.url}/status"
    )
    assert message.status == MessageStatus.QUEUED
    await rig.settle()
    callbacks = await rig.app.wait_for("/status", 3)
    assert [c.form["MessageStatus"] for c in callbacks] == ["sending", "sent", "delivered"]
    for callback in callbacks:
        assert_signed(callback)
        assert callback.form["MessageSid"] == callback.form["SmsSid"] == message.sid
        assert callback.form["From"] == NUMBER and callback.form["To"] == "client:alice"
        assert callback.form["AccountSid"] == ACCOUNT and callback.form["ApiVersion"] == "2010-04-01"
        assert "ErrorCode" not in callback.form
    [sent] = rig.sender.sent
    assert sent.parsed.body.decode("utf-8") == CYRILLIC
    assert sent.parsed.content_type == "text/plain;charset=UTF-8"
    assert str(sent.parsed.uri) == "sip:alice@127.0.0.1"
    stored = await rig.store.get("messages", sid=message.sid)
    assert stored is not None and stored["status"] == "delivered" and stored["date_sent"] is not None


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (480, "undelivered", "30003"),
        (403, "undelivered", "30004"),
        (TimeoutError, "failed", "30008"),
        (NoRouteError, "undelivered", "30003"),
    ],
)
async def test_failures_report_twilio_codes(
    rig: Rig, answer: int | type[Exception], status: str, code: str
) -> None:
    rig.sender.answers["+14155550199"] = answer
    message = await rig.service.send(
        ACCOUNT, NUMBER, "+14155550199", "hello", status_callback=f"{rig.app.url}/status"
    )
    await rig.settle()
    callbacks = await rig.app.wait_for("/status", 2)
    assert [c.form["MessageStatus"] for c in callbacks] == ["sending", status]
    assert callbacks[-1].form["ErrorCode"] == code
    stored = await rig.store.get("messages", sid=message.sid)
    assert stored is not None and stored["status"] == status and stored["error_code"] == int(code)


async def test_inbound_webhook_signed_and_replies_sent(rig: Rig) -> None:
    rig.app.twiml["/sms"] = (
        "<Response><Message>Ответ: получено</Message>"
        '<Message to="+14155550142" from="+14155550100"><Body>copy</Body></Message></Response>'
    )
    status = rig.service.receive(ACCOUNT, "client:bob", NUMBER, CYRILLIC, "text/plain;charset=UTF-8")
    assert status == 200
    await rig.settle()
    [hook] = rig.app.at("/sms")
    assert_signed(hook)
    form = hook.form
    assert form["Body"] == CYRILLIC and form["From"] == "client:bob" and form["To"] == NUMBER
    assert form["MessageSid"].startswith("SM")
    assert form["MessageSid"] == form["SmsSid"] == form["SmsMessageSid"]
    assert (form["NumMedia"], form["NumSegments"], form["SmsStatus"]) == ("0", "1", "received")
    assert form["AccountSid"] == ACCOUNT and form["ApiVersion"] == "2010-04-01"
    assert [(s.from_, s.to, s.body) for s in rig.sender.sent] == [
        (NUMBER, "client:bob", "Ответ: получено"),
        (NUMBER, "+14155550142", "copy"),
    ]
    page = await rig.store.select("messages", [Filter("account_sid", "=", ACCOUNT)], limit=10)
    by_direction = {(r["direction"], r["body"]): r for r in page.records}
    inbound = by_direction[(str(Direction.INBOUND), CYRILLIC)]
    assert inbound["sid"] == form["MessageSid"] and inbound["status"] == "received"
    assert by_direction[(str(Direction.OUTBOUND_REPLY), "Ответ: получено")]["status"] == "delivered"
    assert by_direction[(str(Direction.OUTBOUND_REPLY), "copy")]["to"] == "+14155550142"


async def test_inbound_refusals(rig: Rig) -> None:
    assert rig.service.receive(ACCOUNT, "client:bob", "+14155550111", "hi") == 404  # no such number
    assert rig.service.receive("AC" + "e" * 32, "client:bob", NUMBER, "hi") == 404  # other account
    assert rig.service.receive(ACCOUNT, "client:bob", NUMBER, "<b>", "text/html") == 415
    assert rig.service.receive(ACCOUNT, "client:bob", NUMBER, "x" * 1601) == 413
    await rig.settle()
    assert rig.app.received == [] and rig.sender.sent == []


async def test_inbound_bad_twiml_sends_nothing(rig: Rig) -> None:
    rig.app.twiml["/sms"] = "<Response><Mesage>typo</Mesage></Response>"
    assert rig.service.receive(None, "client:bob", NUMBER, "hi") == 200
    await rig.settle()
    assert len(rig.app.at("/sms")) == 1 and rig.sender.sent == []
    page = await rig.store.select("messages", [Filter("account_sid", "=", ACCOUNT)], limit=10)
    assert [r["direction"] for r in page.records] == ["inbound"]


async def test_inbound_sip_request(rig: Rig) -> None:
    rig.app.twiml["/sms"] = "<Response><Message>ok</Message></Response>"
    request = build_message_request(
        SipUri.parse("sip:bob@10.0.0.7"), sip_uri_for(NUMBER, "trunkline.local"), "Ёж"
    )
    assert rig.service.receive_sip(request) == 200
    await rig.settle()
    [hook] = rig.app.at("/sms")
    assert (hook.form["From"], hook.form["To"], hook.form["Body"]) == ("client:bob", NUMBER, "Ёж")
    assert [(s.to, s.body) for s in rig.sender.sent] == [("client:bob", "ok")]
    request.headers.set("Content-Type", "application/vnd.3gpp.sms")
    assert rig.service.receive_sip(request) == 415
