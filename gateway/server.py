"""The Trunkline server process: the HTTP application and the SIP transports on one event loop.

``Server(config)`` builds the :class:`aiohttp.web.Application` at once, so other modules can add
their routes (REST API, webhooks) to ``server.app`` before ``await server.start()``. ``start()``
opens the HTTP listener on ``http.listen`` and the SIP transports on ``sip.listen`` (port 0 picks
a free port, which tests use), ``stop()`` closes everything. ``run(config)`` does both around a
wait for SIGINT/SIGTERM; ``serve(config)`` runs that on uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from trunkline import __version__
from trunkline.gateway.config import Config
from trunkline.gateway.sip.stateless import StatelessResponder
from trunkline.gateway.sip.transport import Address, Receiver, TransportSet

__all__ = ["APP_KEY_CONFIG", "APP_KEY_SERVER", "Server", "new_event_loop", "run", "serve"]

log = logging.getLogger("trunkline.server")

APP_KEY_CONFIG = web.AppKey("trunkline.config", Config)
APP_KEY_SERVER: web.AppKey[Server] = web.AppKey("trunkline.server")


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: ``{"status": "ok"}`` while the server runs."""
    return web.json_response({"status": "ok", "version": __version__})


class Server:
    """One Trunkline node: aiohttp app + SIP transports, started and stopped in-process."""

    def __init__(self, config: Config, *, sip_receiver: Callable[[Server], Receiver] | None = None) -> None:
        """``sip_receiver(server)`` builds what receives SIP messages (default: the stateless responder)."""
        self.config = config
        self.app = web.Application()
        self.app[APP_KEY_CONFIG] = config
        self.app[APP_KEY_SERVER] = self
        self.app.router.add_get("/healthz", healthz)
        self.transports: TransportSet | None = None
        self.responder: StatelessResponder | None = None
        self._receiver_factory = sip_receiver
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.http_address: Address | None = None
        self._stopped = asyncio.Event()

    @property
    def sip(self) -> TransportSet:
        """The open SIP transports (only after ``start()``)."""
        if self.transports is None:
            raise RuntimeError("the server is not started")
        return self.transports

    def send_sip(self, transport: str, data: bytes, dest: Address) -> None:
        """Send SIP bytes over the transport called ``transport`` (for the SIP core)."""
        self.sip.send(transport, data, dest)

    async def start(self) -> None:
        """Open the HTTP and SIP listeners; on failure, close what was opened and re-raise."""
        http = self.config.http
        try:
            self._runner = web.AppRunner(self.app, access_log=logging.getLogger("trunkline.http.access"))
            await self._runner.setup()
            self._site = web.TCPSite(self._runner, http.host, http.port, reuse_address=True)
            await self._site.start()
            addresses = self._runner.addresses
            host, port = addresses[0][:2] if addresses else (http.host, http.port)
            self.http_address = (str(host), int(port))
            log.info("HTTP listening on http://%s:%d (public URL %s)", host, port, http.public_url)

            receiver: Receiver
            if self._receiver_factory is not None:
                receiver = self._receiver_factory(self)
            else:
                self.responder = StatelessResponder(self.send_sip, self.config.sip)
                receiver = self.responder
            self.transports = await TransportSet.open(self.config.sip, receiver)
            for transport in self.transports:
                host, port = transport.advertised
                log.info("SIP listening on %s (advertised as %s:%d)", transport.name, host, port)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close the SIP transports and the HTTP server; safe to call twice."""
        if self.transports is not None:
            await self.transports.close()
            self.transports = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None
        self._stopped.set()

    def request_stop(self) -> None:
        """Ask ``run()`` to shut down (what SIGINT/SIGTERM do)."""
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Wait until ``request_stop()`` or ``stop()``."""
        await self._stopped.wait()


async def run(config: Config, *, server: Server | None = None) -> None:
    """Start a server, run until SIGINT or SIGTERM, then shut it down cleanly."""
    server = server or Server(config)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, _on_signal, server, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or not supported here
    try:
        await server.start()
        loop_kind = type(loop).__module__.split(".")[0]
        log.info("Trunkline %s running (%d SIP transports, %s loop)", __version__, len(server.sip), loop_kind)
        await server.wait_stopped()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await server.stop()
        log.info("Trunkline stopped")


def _on_signal(server: Server, sig: signal.Signals) -> None:
    log.info("received %s, shutting down", sig.name)
    server.request_stop()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop when uvloop is installed, else the default asyncio loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def serve(config: Config, main: Callable[[Config], Coroutine[Any, Any, None]] = run) -> None:
    """Blocking entry point of ``trunkline serve``: ``run(config)`` on uvloop when available."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner, contextlib.suppress(KeyboardInterrupt):
        runner.run(main(config))
