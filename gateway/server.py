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
import gc
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from trunkline import __version__
from trunkline.gateway.api.app import add_api_routes, auth_middleware
from trunkline.gateway.api.writes import WriteControls
from trunkline.gateway.config import Config, Endpoint
from trunkline.gateway.demo import add_demo_routes
from trunkline.gateway.messaging.sender import SipMessageSender
from trunkline.gateway.messaging.service import MessagingService
from trunkline.gateway.sip.core import IncomingRequest, SipCore
from trunkline.gateway.sip.registrar import Registrar
from trunkline.gateway.sip.transport import Address, Receiver, TransportSet
from trunkline.gateway.sip.useragent import UserAgent
from trunkline.gateway.store import SqliteStore
from trunkline.gateway.store.recovery import recover_recordings
from trunkline.gateway.switch.conference_control import conference_control
from trunkline.gateway.switch.control import SwitchCallControl
from trunkline.gateway.switch.demo_call import DemoCallHandler
from trunkline.gateway.switch.leg_manager import LegManager
from trunkline.gateway.switch.location import LocationService
from trunkline.gateway.switch.queues import queue_manager
from trunkline.gateway.switch.security import InboundGuard
from trunkline.gateway.switch.switch import Switch
from trunkline.gateway.switch.trunks import TrunkManager
from trunkline.gateway.twiml.cache import TwimlCache
from trunkline.gateway.twiml.webhooks import WebhookClient
from trunkline.media.engine import MediaEngine
from trunkline.media.recorder import RepairResult, WavRepairError, repair_wav
from trunkline.media.speech import SpeechRecognizer

__all__ = [
    "APP_KEY_CONFIG",
    "APP_KEY_SERVER",
    "Server",
    "freeze_startup_objects",
    "new_event_loop",
    "repair_recordings",
    "run",
    "serve",
]

log = logging.getLogger("trunkline.server")

APP_KEY_CONFIG = web.AppKey("trunkline.config", Config)
APP_KEY_SERVER: web.AppKey[Server] = web.AppKey("trunkline.server")


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: ``{"status": "ok"}`` while the server runs."""
    return web.json_response({"status": "ok", "version": __version__})


def repair_recordings(directory: Path) -> list[RepairResult]:
    """Extend the headers of WAVs a killed process left in ``directory`` over all their audio.

    The recorder rewrites a WAV's sizes only every second (DESIGN.md, Persistence), so after a
    crash the header describes less audio than the file holds. Every ``*.wav`` (FLAC
    recordings' ``*.partial.wav`` included) whose RIFF size falls short of the file goes through
    :func:`~trunkline.media.recorder.repair_wav`; complete files are not opened for writing and
    files that are not RIFF/WAVE are logged and left alone. Returns the repairs made. The
    recordings' records are finished afterwards, once the store is open
    (:func:`~trunkline.gateway.store.recovery.recover_recordings`).
    """
    repaired: list[RepairResult] = []
    for path in sorted(directory.glob("*.wav")):
        try:
            with path.open("rb") as fh:
                head = fh.read(8)
                size = os.fstat(fh.fileno()).st_size
            if len(head) == 8 and head[:4] == b"RIFF" and int.from_bytes(head[4:], "little") + 8 >= size:
                continue  # the header covers the whole file: finished cleanly
            result = repair_wav(path)
        except (OSError, WavRepairError) as exc:
            log.warning("cannot repair recording %s: %s", path, exc)
            continue
        if result.repaired:
            log.info("repaired recording %s after an unclean stop (%d frames)", path.name, result.frames)
            repaired.append(result)
    return repaired


def _demo_hangup_default() -> float | None:
    value = os.environ.get("TRUNKLINE_DEMO_HANGUP")
    if value is None:
        return 3.0
    return None if value.lower() in ("", "none", "never") else float(value)


class Server:
    """One Trunkline node: aiohttp app + SIP transports, started and stopped in-process.

    SIP runs through ``SipCore`` + ``UserAgent`` (``self.ua``), with the inbound guard
    (``self.guard``), the registrar for ``endpoints`` (``self.location``), the call legs
    (``self.legs``) and the trunks (``self.trunks``). Inbound calls go to the switch
    (``self.switch``), which runs their TwiML on the media engine (``self.engine``); the store
    (``self.store``, SQLite), the REST API (read and write routes, Basic auth) and the built-in
    demo app (``/demo/voice``) are served on ``self.app``.

    Passing ``demo_hangup`` explicitly selects the SIP-only ``DemoCallHandler`` instead of the
    switch (SIP interop tests): it answers without media and hangs up after ``demo_hangup``
    seconds (``None`` = wait for the caller).
    """

    def __init__(
        self,
        config: Config,
        *,
        sip_receiver: Callable[[Server], Receiver] | None = None,
        demo_hangup: float | str | None = "env",
    ) -> None:
        """``sip_receiver(server)`` replaces the SIP core by another receiver (tests)."""
        self.config = config
        self.demo_hangup: float | None = (
            _demo_hangup_default() if isinstance(demo_hangup, str) else demo_hangup
        )
        self.core: SipCore | None = None
        self.ua: UserAgent | None = None
        self.guard: InboundGuard | None = None
        self.location = LocationService()
        self.registrar: Registrar | None = None
        self.legs: LegManager | None = None
        self.trunks: TrunkManager | None = None
        self.demo: DemoCallHandler | None = None
        self.use_switch = isinstance(demo_hangup, str)
        self.store = SqliteStore(config.storage.database)
        self.engine: MediaEngine | None = None
        self.webhooks: WebhookClient | None = None
        self.recognizer: SpeechRecognizer | None = None
        self.switch: Switch | None = None
        self.messaging: MessagingService | None = None
        self.controls = WriteControls()
        self.app = web.Application(
            middlewares=[auth_middleware({a.sid: a.auth_token for a in config.accounts})]
        )
        self.app[APP_KEY_CONFIG] = config
        self.app[APP_KEY_SERVER] = self
        self.app.router.add_get("/healthz", healthz)
        add_api_routes(self.app, self.store, str(config.storage.recordings_dir), self.controls)
        add_demo_routes(self.app)
        self.transports: TransportSet | None = None
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
            Path(self.config.storage.database).parent.mkdir(parents=True, exist_ok=True)
            Path(self.config.storage.recordings_dir).mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(repair_recordings, Path(self.config.storage.recordings_dir))
            await self.store.open()
            await self._recover_recordings()
            self._runner = web.AppRunner(self.app, access_log=logging.getLogger("trunkline.http.access"))
            await self._runner.setup()
            self._site = web.TCPSite(self._runner, http.host, http.port, reuse_address=True)
            await self._site.start()
            addresses = self._runner.addresses
            host, port = addresses[0][:2] if addresses else (http.host, http.port)
            self.http_address = (str(host), int(port))
            log.info("HTTP listening on http://%s:%d (public URL %s)", host, port, http.public_url)
            if self.use_switch and self._receiver_factory is None:
                self.engine = MediaEngine(self.config.rtp)
                await self.engine.start()
                self.webhooks = WebhookClient(cache=TwimlCache())
                self.recognizer = SpeechRecognizer()

            receiver: Receiver
            if self._receiver_factory is not None:
                receiver = self._receiver_factory(self)
            else:
                receiver = self._build_sip()
            self.transports = await TransportSet.open(self.config.sip, receiver)
            for transport in self.transports:
                host, port = transport.advertised
                log.info("SIP listening on %s (advertised as %s:%d)", transport.name, host, port)
            if self.ua is not None:
                self.ua.attach(self.transports)
                self.trunks = TrunkManager(self.ua, self.legs_manager, self.config.trunks)
                self.trunks.start()
            if self.switch is not None:
                self.switch.trunks = self.trunks
                self.switch.location = self.location
                self.controls.calls = SwitchCallControl(
                    self.switch, trunks=self.trunks, location=self.location
                )
                self.controls.conferences = conference_control(self.switch, calls=self.controls.calls)
                self.controls.queues = queue_manager(self.switch)
                self._start_messaging(self.switch)
        except BaseException:
            await self.stop()
            raise

    async def _recover_recordings(self) -> None:
        """Finish the Recording records a crash left ``in-progress`` from their repaired files
        (:func:`~trunkline.gateway.store.recovery.recover_recordings`); a failure is logged, not
        fatal: the files stay on disk and the next start tries again."""
        try:
            await recover_recordings(self.store, Path(self.config.storage.recordings_dir), now=time.time())
        except Exception:
            log.exception("cannot recover the records of recordings cut by an unclean stop")

    def _build_sip(self) -> UserAgent:
        config = self.config
        self.guard = InboundGuard(config.trunks, config.endpoints)
        self.core = SipCore(config.sip, guard=self.guard)
        self.ua = UserAgent(self.core)
        guard = self.guard
        endpoints = {e.username for e in config.endpoints}
        self.registrar = Registrar(
            self.location,
            endpoints.__contains__,
            lambda request, now: guard.authenticate(request, now, proxy=False),
        )
        self.core.on("REGISTER", self._on_register)
        self.legs = LegManager(self.ua)
        if self.engine is not None and self.webhooks is not None:
            self.switch = Switch(
                config, self.store, self.engine, self.legs, self.webhooks, recognizer=self.recognizer
            )
            if config.http.port == 0 and self.http_address is not None:
                # An ephemeral HTTP port (tests): URLs we hand out must carry the real one.
                self.switch.public_url = "http://{}:{}".format(*self.http_address)
            self.legs.on_inbound = self.switch.on_inbound
        else:
            self.demo = DemoCallHandler(config.rtp, hangup_after=self.demo_hangup)
            self.legs.on_inbound = self.demo
        return self.ua

    def _start_messaging(self, switch: Switch) -> None:
        """Programmable Messaging: REST ``Messages.json`` and inbound MESSAGE through one service
        whose SIP MESSAGEs go out through the UA core (registrations, URIs, trunks)."""
        assert self.ua is not None and self.legs is not None and self.webhooks is not None
        transports = self.sip
        sender = SipMessageSender(
            self.ua,
            self.location,
            self.trunks,
            local_addresses=lambda: [t.advertised for t in transports],
        )
        messaging = MessagingService(self.config, self.store, sender, self.webhooks, switch.callbacks)
        self.messaging = messaging
        self.controls.messaging = messaging

        def on_message(incoming: IncomingRequest) -> int:
            # A registered endpoint sends for its own account; a trunk's number picks the account.
            identity = incoming.identity
            account = identity.account if isinstance(identity, Endpoint) else None
            return messaging.receive_sip(incoming.request, account)

        self.legs.on_message = on_message

    @property
    def legs_manager(self) -> LegManager:
        """The call legs (only with the built-in SIP core)."""
        if self.legs is None:
            raise RuntimeError("the server runs without the SIP core")
        return self.legs

    def _on_register(self, incoming: IncomingRequest, now: float) -> None:
        assert self.registrar is not None and self.core is not None
        result = self.registrar.handle(incoming.request, incoming.source, now)
        self.core.respond(
            incoming.transaction_id,
            incoming.request,
            result.status,
            now,
            reason=result.reason,
            headers=result.headers,
        )

    async def stop(self) -> None:
        """Hang up the calls, close SIP, media, store and the HTTP server; safe to call twice."""
        if self.messaging is not None:
            self.controls.messaging = None
            if self.legs is not None:
                self.legs.on_message = lambda incoming: 503  # shutting down: let the sender retry
            with contextlib.suppress(Exception):
                await self.messaging.drain(timeout=5.0)
            self.messaging = None
        if self.switch is not None:
            with contextlib.suppress(Exception):
                await self.switch.close()
            self.switch = None
            self.controls.calls = None
            self.controls.conferences = None
            self.controls.queues = None
        if self.trunks is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.trunks.stop(), 5.0)
            self.trunks = None
        if self.demo is not None:
            await self.demo.close()
        if self.ua is not None:
            self.ua.close()
        if self.transports is not None:
            await self.transports.close()
            self.transports = None
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None
        if self.webhooks is not None:
            await self.webhooks.close()
            self.webhooks = None
        if self.recognizer is not None:
            self.recognizer.close()
            self.recognizer = None
        with contextlib.suppress(Exception):
            await self.store.close()
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
        freeze_startup_objects()
        loop_kind = type(loop).__module__.split(".")[0]
        log.info("Trunkline %s running (%d SIP transports, %s loop)", __version__, len(server.sip), loop_kind)
        await server.wait_stopped()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await server.stop()
        log.info("Trunkline stopped")


def freeze_startup_objects() -> None:
    """Move everything allocated so far (modules, configuration, the started server) out of the
    cyclic garbage collector's reach (``gc.freeze``): full collections under call load then scan
    only the live calls, not the whole program."""
    gc.collect()
    gc.freeze()


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
