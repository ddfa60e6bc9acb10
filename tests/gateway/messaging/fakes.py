"""Test doubles for messaging: a SIP MESSAGE sender that checks the wire request it would send, and
a real aiohttp app that records the webhooks and status callbacks it receives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from trunkline.gateway.api.control import NoRouteError
from trunkline.gateway.messaging.sip import build_message_request, read_message, sip_uri_for
from trunkline.gateway.sip import SipRequest, new_branch, parse_message


@dataclass
class SentMessage:
    account_sid: str
    from_: str
    to: str
    body: str
    wire: bytes
    parsed: SipRequest


@dataclass
class FakeSender:
    """Builds the RFC 3428 MESSAGE the UA core would send, parses the wire bytes back, checks the
    text survived, and answers with the status chosen per recipient (200 by default)."""

    answers: dict[str, int | type[Exception]] = field(default_factory=dict)
    sent: list[SentMessage] = field(default_factory=list)

    async def send_message(self, account_sid: str, from_: str, to: str, body: str) -> int:
        request = build_message_request(sip_uri_for(from_, "127.0.0.1"), sip_uri_for(to, "127.0.0.1"), body)
        # What the transaction layer adds when it sends (SipCore.send_request).
        request.headers.insert_first("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch={new_branch()};rport")
        wire = request.serialize()
        parsed = parse_message(wire)
        assert isinstance(parsed, SipRequest)
        assert read_message(parsed).body == body
        self.sent.append(SentMessage(account_sid, from_, to, body, wire, parsed))
        answer = self.answers.get(to, 200)
        if isinstance(answer, int):
            return answer
        raise answer(f"no answer from {to}")


@dataclass
class Received:
    path: str
    method: str
    url: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class WebApp:
    """The customer's web app: records every request; ``twiml`` answers ``/sms``."""

    url: str
    received: list[Received]
    twiml: dict[str, str]

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, path: str, count: int, timeout: float = 5.0) -> list[Received]:
        async def poll() -> list[Received]:
            while len(self.at(path)) < count:
                await asyncio.sleep(0.01)
            return self.at(path)

        return await asyncio.wait_for(poll(), timeout)


@asynccontextmanager
async def web_app() -> AsyncIterator[WebApp]:
    received: list[Received] = []
    twiml: dict[str, str] = {}

    async def handler(request: web.Request) -> web.Response:
        form = dict((await request.post()).items()) if request.method == "POST" else dict(request.query)
        received.append(
            Received(
                request.path,
                request.method,
                str(request.url),
                dict(request.headers),
                {k: str(v) for k, v in form.items()},
            )
        )
        body = twiml.get(request.path, "")
        return web.Response(text=body, content_type="application/xml" if body else "text/plain")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield WebApp(f"http://127.0.0.1:{port}", received, twiml)
    finally:
        await runner.cleanup()


__all__ = ["FakeSender", "NoRouteError", "Received", "SentMessage", "WebApp", "web_app"]
