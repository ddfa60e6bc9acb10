"""Shared pieces of the interpreter unit tests.

* :class:`App`: the customer's web app on 127.0.0.1, serving TwiML per path and checking every
  request's ``X-Twilio-Signature`` (POST form or GET query);
* :class:`ScriptedChannel`: the :class:`~.fake_channel.FakeChannel` plus interim transcripts for
  ``partialResultCallback`` and recordings stored under the SID the interpreter chose;
* :func:`run_session`: one :class:`TwimlSession` against both, with callbacks recorded as they are
  sent, the wall clock fixed at :data:`NOW` and the pre-answer ``<Pause>`` wait injected (logged as
  ``("wait", seconds)``, no sleeping).

Requests reaching the app and callbacks leaving the interpreter are appended to the channel's log
(``("request", path)``, ``("callback", url)``), so a test can assert their order against the verbs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from twilio.request_validator import RequestValidator

from trunkline.gateway.twiml.cache import TwimlCache
from trunkline.gateway.twiml.channel import PlayItem, RecordOptions, RecordResult, SpeechOptions, SpeechResult
from trunkline.gateway.twiml.interpreter import CallContext, DebuggerEvent, TwimlSession
from trunkline.gateway.twiml.webhooks import CallbackSender, Params, WebhookClient

from .fake_channel import FakeChannel

TOKEN = "tok"
ACCOUNT_SID = "AC" + "1" * 32
CALLER = "+15550001111"
CALLED = "+15552223333"
PUBLIC_URL = "http://127.0.0.1:8080"
#: The wall clock every session sees (Fri, 15 Oct 2021 19:04:32.25 UTC).
NOW = 1634324672.25

#: Twilio's standard request parameters, as the interpreter sends them on every request of a call.
STANDARD_PARAMS = frozenset(
    {"AccountSid", "ApiVersion", "CallSid", "CallStatus", "Called", "Caller", "Direction", "From", "To"}
)

Document = Callable[[dict[str, str]], "str | web.Response"]


@dataclass
class Request:
    """One request the app received: method, path and parameters (form or query)."""

    method: str
    path: str
    form: dict[str, str]
    signed: bool
    """Whether ``X-Twilio-Signature`` matches the request as it arrived."""


@dataclass
class App:
    """The customer's app: ``documents[path](params)`` answers; every request is kept."""

    url: str = ""
    documents: dict[str, Document] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    log: list[tuple[str, object]] | None = None
    """When set (to a channel's log), each request is appended to it as ``("request", path)``."""

    def to(self, path: str) -> list[Request]:
        """The requests made to ``path``, in arrival order."""
        return [request for request in self.requests if request.path == path]

    def paths(self) -> list[str]:
        """The paths requested, in arrival order."""
        return [request.path for request in self.requests]

    def serve(self, path: str, twiml: str) -> None:
        """Answer ``path`` with a fixed document."""
        self.documents[path] = lambda form: twiml

    def accept(self, *paths: str) -> None:
        """Answer ``paths`` with ``204 No Content`` (status callback endpoints)."""
        for path in paths:
            self.documents[path] = lambda form: web.Response(status=204)


async def serve_app() -> AsyncIterator[App]:
    """Run an :class:`App` on an ephemeral 127.0.0.1 port for the duration of a test."""
    state = App()
    validator = RequestValidator(TOKEN)

    async def handler(request: web.Request) -> web.StreamResponse:
        signature = request.headers["X-Twilio-Signature"]
        if request.method == "GET":
            form = {key: str(value) for key, value in request.query.items()}
            # A GET is signed over the URL as it arrives (query string included).
            signed = validator.validate(f"{state.url}{request.raw_path}", {}, signature)
        else:
            form = {key: str(value) for key, value in (await request.post()).items()}
            signed = validator.validate(str(request.url), form, signature)
        state.requests.append(Request(request.method, request.path, form, signed))
        if state.log is not None:
            state.log.append(("request", request.path))
        make = state.documents.get(request.path)
        if make is None:
            return web.Response(status=404)
        answer = make(form)
        if isinstance(answer, web.StreamResponse):
            return answer
        return web.Response(text=answer, content_type="text/xml")

    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


class Debugger:
    """A debugger sink that keeps the events."""

    def __init__(self) -> None:
        self.events: list[DebuggerEvent] = []

    async def report(self, event: DebuggerEvent) -> None:
        self.events.append(event)


@dataclass(frozen=True)
class Sent:
    """One callback as the interpreter handed it to the sender."""

    url: str
    method: str
    params: tuple[tuple[str, str], ...]

    @property
    def form(self) -> dict[str, str]:
        return dict(self.params)

    def names(self) -> list[str]:
        return [name for name, _ in self.params]


class RecordedCallbacks(CallbackSender):
    """A :class:`CallbackSender` (no retries) that also keeps what it was asked to send."""

    def __init__(self, client: WebhookClient, log: list[tuple[str, object]]) -> None:
        super().__init__(client, retries=0)
        self.sent: list[Sent] = []
        self._log = log

    def send(self, url: str, method: str, params: Params, auth_token: str) -> asyncio.Task[bool]:
        pairs = params.items() if isinstance(params, Mapping) else params
        self.sent.append(Sent(url, method, tuple((str(k), str(val)) for k, val in pairs)))
        self._log.append(("callback", url))
        return super().send(url, method, params, auth_token)


@dataclass
class ScriptedChannel(FakeChannel):
    """A fake channel whose recogniser reports ``partials`` while the caller talks, and whose
    recordings keep the SID the interpreter asked for (as the switch's channel does)."""

    partials: list[str] = field(default_factory=list)

    async def recognize(self, options: SpeechOptions) -> SpeechResult | None:
        self._check()
        if options.on_partial is not None:
            for text in self.partials:
                self.log.append(("partial", text))
                options.on_partial(text)
        return await super().recognize(options)

    async def record(self, options: RecordOptions) -> RecordResult:
        result = await super().record(options)
        if options.recording_sid is None:
            return result
        return dataclasses.replace(result, recording_sid=options.recording_sid)


@dataclass
class Outcome:
    """What a session did besides driving the channel."""

    session: TwimlSession
    debugger: Debugger
    callbacks: RecordedCallbacks

    @property
    def sent(self) -> list[Sent]:
        return self.callbacks.sent


async def run_session(
    app: App,
    channel: FakeChannel,
    path: str = "/voice",
    *,
    on_wait: Callable[[float], None] | None = None,
    cache: TwimlCache | None = None,
    method: str = "POST",
    fallback_url: str | None = None,
) -> Outcome:
    """Run one session for ``channel`` from ``app.url + path`` to its end, callbacks delivered."""
    app.log = channel.log
    debugger = Debugger()
    client = WebhookClient(timeout=2, cache=cache)
    callbacks = RecordedCallbacks(client, channel.log)

    async def wait(seconds: float) -> None:
        channel.log.append(("wait", seconds))
        if on_wait is not None:
            on_wait(seconds)
        await asyncio.sleep(0)

    context = CallContext(ACCOUNT_SID, TOKEN, channel.call_sid, CALLER, CALLED, public_url=PUBLIC_URL)
    session = TwimlSession(
        channel,
        context,
        client,
        url=app.url + path,
        method=method,
        fallback_url=fallback_url,
        debugger=debugger,
        callbacks=callbacks,
        sleep=wait,
        clock=lambda: NOW,
    )
    try:
        await session.run()
        await callbacks.drain(timeout=5)
    finally:
        await client.close()
    return Outcome(session, debugger, callbacks)


def channel_kinds(channel: FakeChannel) -> list[str]:
    """What happened on the channel itself (the log without requests and callbacks)."""
    return [kind for kind in channel.kinds() if kind not in ("request", "callback")]


def played(channel: FakeChannel) -> list[tuple[PlayItem, ...]]:
    """The items of each play on the channel, in order."""
    items: list[tuple[PlayItem, ...]] = []
    for kind, entry in channel.log:
        if kind == "play":
            assert isinstance(entry, tuple)
            items.append(tuple(entry[0]))
    return items


def recording_url(recording_sid: str) -> str:
    """The ``RecordingUrl`` the interpreter reports for ``recording_sid``."""
    return f"{PUBLIC_URL}/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid}"
