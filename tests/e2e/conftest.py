"""End-to-end fixtures: a customer's web app (aiohttp + twilio ``VoiceResponse``) and Trunkline in-process.

``customer_app`` serves TwiML from handlers the test registers and records every request it gets
(path, form, signature); ``trunkline`` starts a :class:`~trunkline.gateway.server.Server` on
127.0.0.1 with ephemeral SIP/HTTP ports whose numbers route to the app's ``/voice``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from trunkline.gateway.config import (
    Account,
    Config,
    HttpConfig,
    ListenAddress,
    NumberRoute,
    RtpConfig,
    SipConfig,
    StorageConfig,
    Trunk,
)
from trunkline.gateway.server import Server

LOOPBACK = "127.0.0.1"
ACCOUNT = Account("AC" + "e2" * 16, "e2e-auth-token-0123456789abcdef", "E2E account")
NUMBER = "+15551230000"

requires_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed")


@dataclass(slots=True)
class AppRequest:
    """One request the customer's app received."""

    method: str
    path: str
    url: str
    form: dict[str, str]
    signature: str | None
    time: float

    def signature_valid(self, token: str = ACCOUNT.auth_token) -> bool:
        """Check ``X-Twilio-Signature`` with the twilio library's own validator."""
        params = self.form if self.method == "POST" else {}
        return bool(RequestValidator(token).validate(self.url, params, self.signature or ""))


Handler = Callable[[AppRequest], Awaitable[web.StreamResponse] | web.StreamResponse]


@dataclass(slots=True)
class CustomerApp:
    """The customer's app: register ``handlers[path]``; ``requests`` lists what arrived."""

    base: str = ""
    handlers: dict[str, Handler] = field(default_factory=dict)
    requests: list[AppRequest] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def route(self, path: str, handler: Handler) -> None:
        self.handlers[path] = handler

    def url(self, path: str) -> str:
        return self.base + path

    def to(self, path: str) -> list[AppRequest]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, path: str, count: int = 1, timeout: float = 10.0) -> list[AppRequest]:
        """Wait until ``path`` was requested ``count`` times."""

        async def enough() -> list[AppRequest]:
            async with self.arrived:
                await self.arrived.wait_for(lambda: len(self.to(path)) >= count)
            return self.to(path)

        return await asyncio.wait_for(enough(), timeout)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()} if request.method == "POST" else {}
        url = f"{self.base}{request.raw_path}"  # as sent: path_qs would unquote %3A and break GET signatures
        entry = AppRequest(
            request.method,
            request.path,
            url,
            form or dict(request.query),
            request.headers.get("X-Twilio-Signature"),
            asyncio.get_running_loop().time(),
        )
        async with self.arrived:
            self.requests.append(entry)
            self.arrived.notify_all()
        handler = self.handlers.get(request.path)
        if handler is None:
            return web.Response(status=404)
        result = handler(entry)
        if isinstance(result, web.StreamResponse):
            return result
        return await result


def twiml(response: Any) -> web.Response:
    """An aiohttp response carrying a twilio ``VoiceResponse``."""
    return web.Response(text=str(response), content_type="text/xml")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def customer_app() -> AsyncIterator[CustomerApp]:
    app_state = CustomerApp()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", app_state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    port = runner.addresses[0][1]
    app_state.base = f"http://{LOOPBACK}:{port}"
    yield app_state
    await runner.cleanup()


def e2e_config(
    tmp_path: Path,
    *,
    voice_url: str | None,
    fallback_url: str | None = None,
    status_callback: str | None = None,
    debugger_webhook: str | None = None,
) -> Config:
    """Trunkline on 127.0.0.1 (ephemeral ports), loopback trusted, every number to ``voice_url``."""
    sip = dataclasses.replace(SipConfig(), listen=(ListenAddress("udp", LOOPBACK, 0),))
    sip = dataclasses.replace(sip, timers=dataclasses.replace(sip.timers, t1=500))
    account = dataclasses.replace(ACCOUNT, debugger_webhook=debugger_webhook)
    storage = StorageConfig(
        data_dir=tmp_path / "var",
        database=tmp_path / "var" / "trunkline.db",
        recordings_dir=tmp_path / "var" / "recordings",
        cache_dir=tmp_path / "var" / "cache",
    )
    trunk = Trunk("local", LOOPBACK, inbound_ips=(ipaddress.ip_network("127.0.0.1/32"),), outbound=False)
    return Config(
        sip=sip,
        rtp=RtpConfig(LOOPBACK, 31000, 31999),
        http=HttpConfig(port=0),
        accounts=(account,),
        numbers=(
            NumberRoute(
                match="*",
                account=account.sid,
                voice_url=voice_url,
                voice_fallback_url=fallback_url,
                status_callback=status_callback,
            ),
        ),
        trunks=(trunk,),
        storage=storage,
    )


StartTrunkline = Callable[..., Awaitable[Server]]


@pytest.fixture
async def trunkline(tmp_path: Path) -> AsyncIterator[StartTrunkline]:
    """``await trunkline(config)`` -> a started Server (stopped after the test)."""
    servers: list[Server] = []

    async def start(config: Config) -> Server:
        server = Server(config)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def sip_address(server: Server) -> str:
    """``host:port`` of the server's UDP SIP transport."""
    transport = server.sip.first("udp")
    assert transport is not None
    host, port = transport.local_address
    return f"{host}:{port}"


def http_base(server: Server) -> str:
    """``http://host:port`` of the server's HTTP listener."""
    assert server.http_address is not None
    return "http://{}:{}".format(*server.http_address)
