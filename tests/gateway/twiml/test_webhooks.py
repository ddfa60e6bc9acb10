"""Webhook client against a real aiohttp app, signatures checked by the twilio library."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from trunkline.gateway.twiml.webhooks import (
    CallbackSender,
    WebhookClient,
    WebhookError,
    compute_signature,
)

TOKEN = "12345"


def test_signature_matches_twilio_documentation_example() -> None:
    # The example from Twilio's "Webhooks security" documentation and the helper library tests.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert compute_signature(TOKEN, url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert RequestValidator(TOKEN).validate(url, params, compute_signature(TOKEN, url, params))


@dataclass
class App:
    seen: list[tuple[str, str, dict[str, str], str]] = field(default_factory=list)
    fail_first: int = 0
    url: str = ""


@pytest.fixture
async def app() -> AsyncIterator[App]:
    state = App()
    validator = RequestValidator(TOKEN)

    async def twiml(request: web.Request) -> web.Response:
        form = dict(await request.post()) if request.method == "POST" else {}
        signature = request.headers.get("X-Twilio-Signature", "")
        url = str(request.url)
        ok = validator.validate(url, {k: str(v) for k, v in form.items()}, signature)
        state.seen.append(
            (request.method, url, {k: str(v) for k, v in form.items()}, "valid" if ok else "bad")
        )
        return web.Response(text="<Response><Say>hi</Say></Response>", content_type="text/xml")

    async def broken(request: web.Request) -> web.Response:
        state.seen.append((request.method, str(request.url), {}, "broken"))
        return web.Response(status=500, text="boom")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="<Response/>")

    async def flaky(request: web.Request) -> web.Response:
        state.seen.append((request.method, str(request.url), dict(await request.post()), "flaky"))  # type: ignore[arg-type]
        if state.fail_first > 0:
            state.fail_first -= 1
            return web.Response(status=503)
        return web.Response(status=204)

    application = web.Application()
    application.router.add_route("*", "/twiml", twiml)
    application.router.add_route("*", "/broken", broken)
    application.router.add_route("*", "/slow", slow)
    application.router.add_route("*", "/flaky", flaky)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


PARAMS = {"CallSid": "CA" + "0" * 32, "From": "+15550001111", "To": "+15552223333", "CallStatus": "ringing"}


async def test_post_is_form_encoded_and_signed(app: App) -> None:
    client = WebhookClient()
    try:
        response = await client.request(f"{app.url}/twiml?x=1", "POST", PARAMS, TOKEN)
    finally:
        await client.close()
    assert response.status == 200 and "<Say>hi</Say>" in response.text
    ((method, _url, form, verdict),) = app.seen
    assert (method, form, verdict) == ("POST", PARAMS, "valid")


async def test_get_puts_parameters_in_the_signed_query(app: App) -> None:
    client = WebhookClient()
    try:
        await client.request(f"{app.url}/twiml", "GET", PARAMS, TOKEN)
    finally:
        await client.close()
    ((method, url, _form, verdict),) = app.seen
    assert method == "GET" and verdict == "valid"
    assert "CallStatus=ringing" in url and "From=%2B15550001111" in url


async def test_fallback_on_500_carries_error_code(app: App) -> None:
    client = WebhookClient()
    try:
        response, errors = await client.fetch_twiml(
            f"{app.url}/broken", "POST", PARAMS, TOKEN, fallback_url=f"{app.url}/twiml"
        )
    finally:
        await client.close()
    assert response is not None and response.url.endswith("/twiml")
    assert [(e.code, e.http_status) for e in errors] == [(11200, 500)]
    fallback = app.seen[-1]
    assert fallback[3] == "valid"
    assert fallback[2]["ErrorCode"] == "11200" and fallback[2]["ErrorUrl"].endswith("/broken")


async def test_fallback_on_timeout(app: App) -> None:
    client = WebhookClient(timeout=0.3)
    try:
        response, errors = await client.fetch_twiml(
            f"{app.url}/slow", "POST", PARAMS, TOKEN, fallback_url=f"{app.url}/twiml"
        )
    finally:
        await client.close()
    assert response is not None and response.status == 200
    assert errors[0].code == 11200 and "timed out" in errors[0].message


async def test_unreachable_and_invalid_urls() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = WebhookClient(timeout=2)
    try:
        with pytest.raises(WebhookError) as refused:
            await client.request(f"http://127.0.0.1:{port}/x", "POST", PARAMS, TOKEN)
        with pytest.raises(WebhookError) as invalid:
            await client.request("ftp://example/x", "POST", PARAMS, TOKEN)
        response, errors = await client.fetch_twiml(f"http://127.0.0.1:{port}/x", "POST", PARAMS, TOKEN)
    finally:
        await client.close()
    assert refused.value.code == 11205
    assert invalid.value.code == 11100
    assert response is None and [e.code for e in errors] == [11205]


async def test_status_callbacks_retry_with_backoff(app: App) -> None:
    app.fail_first = 2
    client = WebhookClient()
    sender = CallbackSender(client, retries=3, backoff=0.01)
    try:
        task = sender.send(f"{app.url}/flaky", "POST", {"CallStatus": "completed"}, TOKEN)
        await sender.drain(timeout=5)
    finally:
        await client.close()
    assert task.result() is True
    assert [entry[3] for entry in app.seen] == ["flaky"] * 3
    assert all(entry[2] == {"CallStatus": "completed"} for entry in app.seen)
