"""E2E: Programmable Messaging through the running gateway, driven by the twilio library.

Outbound: ``client.messages.create`` -> SIP MESSAGE to a pjsua2 phone registered as a local
endpoint, to an unregistered user (undelivered, 30003), and to a number through a SIPp trunk that
challenges the MESSAGE. Inbound: pjsua2 sends a MESSAGE to a number with an ``sms_url``; the
customer's aiohttp app gets Twilio's SMS webhook and its ``<Message>`` reply reaches the phone.
Records are listed through the library, across a restart of the server on the same database.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from tests.e2e.conftest import (
    ACCOUNT,
    LOOPBACK,
    NUMBER,
    AppRequest,
    CustomerApp,
    StartTrunkline,
    e2e_config,
    http_base,
    requires_sipp,
    sip_address,
)
from tests.peers.sipp import Sipp, scenario
from trunkline.gateway.config import Config, Endpoint, NumberRoute, Trunk
from trunkline.gateway.messaging.segments import count_segments
from trunkline.gateway.server import Server

pjsua2 = pytest.importorskip("pjsua2")
from tests.peers.pjsua_phone import PjsuaPhone  # noqa: E402

pytestmark = [pytest.mark.timeout(60)]

GREETING = "Привет, Боб! 👋"
SENDER = "+15550001111"


def rest_client(server: Server) -> Client:
    client = Client(ACCOUNT.sid, ACCOUNT.auth_token)
    client.api.base_url = http_base(server)
    return client


def messaging_config(tmp_path: Path, app: CustomerApp, *users: str, trunks: tuple[Trunk, ...] = ()) -> Config:
    """Every number routes SMS to the app's ``/sms``; ``users`` are local endpoints."""
    config = e2e_config(tmp_path, voice_url=app.url("/voice"))
    route = NumberRoute(match="*", account=ACCOUNT.sid, voice_url=app.url("/voice"), sms_url=app.url("/sms"))
    endpoints = tuple(Endpoint(user, f"{user}-secret", ACCOUNT.sid) for user in users)
    return dataclasses.replace(
        config, numbers=(route,), endpoints=endpoints, trunks=(*config.trunks, *trunks)
    )


async def registered(phone: PjsuaPhone, server: Server, user: str) -> None:
    reg = await phone.register(sip_address(server), user, f"{user}-secret")
    assert reg is not None and int(reg["code"]) == 200, reg


async def final_message(client: Client, sid: str, timeout: float = 10.0) -> Any:
    """Fetch the message with the library until it reaches a final status."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await asyncio.to_thread(client.messages(sid).fetch)
        if message.status in ("delivered", "undelivered", "failed", "received"):
            return message
        assert loop.time() < deadline, f"message {sid} still {message.status}"
        await asyncio.sleep(0.1)


async def test_message_to_registered_phone_is_delivered_with_callbacks(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    customer_app.route("/msg-status", lambda r: web.Response(status=204))
    server = await trunkline(messaging_config(tmp_path, customer_app, "bob"))
    client = rest_client(server)
    async with PjsuaPhone(workdir=tmp_path, name="bob") as bob:
        await registered(bob, server, "bob")
        created = await asyncio.to_thread(
            client.messages.create,
            body=GREETING,
            from_=SENDER,
            to="client:bob",
            status_callback=customer_app.url("/msg-status"),
        )
        assert created.sid.startswith("SM") and created.status == "queued"
        assert created.direction == "outbound-api" and created.to == "client:bob"
        got = await bob.wait_for("message_received")
        assert got["text"] == GREETING
        assert got["content_type"].lower().startswith("text/plain")
        assert SENDER in got["from"]

    callbacks = await customer_app.wait_for("/msg-status", count=3)
    assert [c.form["MessageStatus"] for c in callbacks] == ["sending", "sent", "delivered"]
    assert all(c.signature_valid() for c in callbacks)
    assert all(c.form["MessageSid"] == created.sid and c.form["To"] == "client:bob" for c in callbacks)
    assert all(c.form["AccountSid"] == ACCOUNT.sid and c.form["From"] == SENDER for c in callbacks)
    message = await final_message(client, created.sid)
    assert message.status == "delivered" and message.error_code is None
    assert message.body == GREETING
    assert int(message.num_segments) == count_segments(GREETING).segments == 1
    assert message.date_sent is not None


async def test_message_to_unregistered_user_is_undelivered(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    customer_app.route("/msg-status", lambda r: web.Response(status=204))
    server = await trunkline(messaging_config(tmp_path, customer_app, "carol"))
    client = rest_client(server)
    created = await asyncio.to_thread(
        client.messages.create,
        body="are you there?",
        from_=SENDER,
        to="client:carol",
        status_callback=customer_app.url("/msg-status"),
    )
    message = await final_message(client, created.sid)
    assert message.status == "undelivered"
    assert message.error_code == 30003
    callbacks = await customer_app.wait_for("/msg-status", count=2)
    assert [c.form["MessageStatus"] for c in callbacks] == ["sending", "undelivered"]
    assert callbacks[-1].form["ErrorCode"] == "30003" and callbacks[-1].signature_valid()


@requires_sipp
async def test_message_to_number_through_challenging_trunk(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    body = "Your code is 4711 — ça marche"
    async with Sipp(
        scenario("uas_message_auth"),
        workdir=tmp_path,
        timeout=15,
        variables={"user": "msg-user", "password": "s3cret"},
    ) as uas:
        carrier = Trunk("carrier", LOOPBACK, uas.local_port, username="msg-user", password="s3cret")
        server = await trunkline(messaging_config(tmp_path, customer_app, trunks=(carrier,)))
        client = rest_client(server)
        created = await asyncio.to_thread(client.messages.create, body=body, from_=SENDER, to="+15557654321")
        message = await final_message(client, created.sid)
    assert message.status == "delivered", message.error_code
    assert uas.result is not None
    uas.result.check(calls=1)
    text = next(tmp_path.glob("uas_message_auth-*.messages.log")).read_bytes().decode("utf-8", "replace")
    assert text.count("MESSAGE sip:+15557654321@127.0.0.1") == 2  # challenged, then answered
    assert "Authorization: Digest" in text and 'username="msg-user"' in text
    assert body in text
    assert "Content-Type: text/plain;charset=UTF-8" in text


async def test_inbound_message_webhook_and_reply(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    def sms(request: AppRequest) -> web.Response:
        reply = MessagingResponse()
        reply.message("Got it")
        return web.Response(text=str(reply), content_type="text/xml")

    customer_app.route("/sms", sms)
    text = "Здравствуйте, 世界"
    server = await trunkline(messaging_config(tmp_path, customer_app, "alice"))
    client = rest_client(server)
    async with PjsuaPhone(workdir=tmp_path, name="alice") as alice:
        await registered(alice, server, "alice")
        await alice.send_message(f"sip:{NUMBER}@{sip_address(server)}", text)
        status = await alice.wait_for("message_status")
        assert int(status["code"]) == 200
        (hook,) = await customer_app.wait_for("/sms")
        reply = await alice.wait_for("message_received")
    assert reply["text"] == "Got it"
    assert NUMBER in reply["from"]
    form = hook.form
    assert hook.signature_valid()
    assert form["Body"] == text
    assert form["From"] == "client:alice" and form["To"] == NUMBER
    assert form["AccountSid"] == ACCOUNT.sid and form["SmsStatus"] == "received"
    assert form["MessageSid"].startswith("SM") and form["SmsSid"] == form["MessageSid"]
    assert form["NumSegments"] == "1" and form["NumMedia"] == "0"

    inbound = await final_message(client, form["MessageSid"])
    assert inbound.direction == "inbound" and inbound.body == text
    (sent,) = [m for m in await asyncio.to_thread(client.messages.list, to="client:alice")]
    assert sent.direction == "outbound-reply" and sent.from_ == NUMBER and sent.body == "Got it"
    assert (await final_message(client, sent.sid)).status == "delivered"


async def test_messages_listed_in_both_directions_survive_restart(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    customer_app.route("/sms", lambda r: web.Response(text="<Response/>", content_type="text/xml"))
    config = messaging_config(tmp_path, customer_app, "dave")
    first = await trunkline(config)
    client = rest_client(first)
    async with PjsuaPhone(workdir=tmp_path, name="dave") as dave:
        await registered(dave, first, "dave")
        out = await asyncio.to_thread(client.messages.create, body="ping", from_=SENDER, to="client:dave")
        await dave.wait_for("message_received")
        await dave.send_message(f"sip:{NUMBER}@{sip_address(first)}", "pong")
        (hook,) = await customer_app.wait_for("/sms")
    assert (await final_message(client, out.sid)).status == "delivered"
    before = {m.sid: (m.direction, m.status, m.body) for m in await asyncio.to_thread(client.messages.list)}
    assert before == {
        out.sid: ("outbound-api", "delivered", "ping"),
        hook.form["MessageSid"]: ("inbound", "received", "pong"),
    }
    await first.stop()

    assert first.messaging is None  # drained and detached by stop()
    second = await trunkline(config)
    again = rest_client(second)
    after = {m.sid: (m.direction, m.status, m.body) for m in await asyncio.to_thread(again.messages.list)}
    assert after == before
    inbound = await asyncio.to_thread(again.messages.list, from_="client:dave")
    assert [m.sid for m in inbound] == [hook.form["MessageSid"]]


def quick_start(base_url: str, account_sid: str, auth_token: str) -> tuple[str, str]:
    """The README's twilio-library quick start, verbatim apart from the three parameters."""
    from twilio.rest import Client

    client = Client(account_sid, auth_token)
    client.api.base_url = base_url  # e.g. "http://127.0.0.1:8080"

    call = client.calls.create(
        to="client:bob",
        from_="+15550001111",
        twiml="<Response><Say>Hello from Trunkline!</Say></Response>",
    )
    message = client.messages.create(to="client:bob", from_="+15550001111", body="Hello from Trunkline!")
    print(call.sid, call.status, message.sid, message.status)
    return call.sid, message.sid


async def test_readme_quick_start(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    server = await trunkline(messaging_config(tmp_path, customer_app, "bob"))
    async with PjsuaPhone(workdir=tmp_path, name="bob", auto_answer=200) as bob:
        await registered(bob, server, "bob")
        call_sid, message_sid = await asyncio.to_thread(
            quick_start, http_base(server), ACCOUNT.sid, ACCOUNT.auth_token
        )
        await bob.wait_for("incoming_call", timeout=15)
        await bob.wait_for("call_state", state="CONFIRMED", timeout=10)
        got = await bob.wait_for("message_received")
        assert got["text"] == "Hello from Trunkline!"
        await bob.wait_for("call_state", state="DISCONNECTED", timeout=15)
    client = rest_client(server)
    assert (await final_message(client, message_sid)).status == "delivered"
    call = await asyncio.to_thread(client.calls(call_sid).fetch)
    assert call.to == "client:bob" and call.direction == "outbound-api"


async def test_inbound_message_from_digest_authenticated_endpoint(
    tmp_path: Path, customer_app: CustomerApp, trunkline: StartTrunkline
) -> None:
    """Without a trusted trunk address the MESSAGE is challenged (407) and admitted as the
    endpoint, whose account must own the number (RFC 3261 section 22.3)."""
    customer_app.route("/sms", lambda r: web.Response(text="<Response/>", content_type="text/xml"))
    config = dataclasses.replace(messaging_config(tmp_path, customer_app, "gina"), trunks=())
    server = await trunkline(config)
    async with PjsuaPhone(workdir=tmp_path, name="gina") as gina:
        await registered(gina, server, "gina")
        await gina.send_message(f"sip:{NUMBER}@{sip_address(server)}", "authenticated")
        status = await gina.wait_for("message_status")
        assert int(status["code"]) == 200
        (hook,) = await customer_app.wait_for("/sms")
    assert server.guard is not None and server.guard.stats.challenged >= 1
    assert server.guard.stats.endpoint >= 1
    assert hook.form["Body"] == "authenticated" and hook.form["AccountSid"] == ACCOUNT.sid
    assert hook.signature_valid()
