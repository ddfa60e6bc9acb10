"""The GET TwiML cache against a real aiohttp app: requests seen, conditional GETs, clock-driven expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from trunkline.gateway.twiml.cache import TwimlCache, cache_policy
from trunkline.gateway.twiml.webhooks import WebhookClient

TOKEN = "12345"
DOC = "<Response><Say>Hi</Say><Hangup/></Response>"


def params(n: int) -> dict[str, str]:
    return {"CallSid": f"CA{n:032x}", "From": "+15550001111", "To": "+15552223333", "CallStatus": "ringing"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class App:
    url: str = ""
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    """(path, method, conditional headers) of every request."""
    call_sids: list[str] = field(default_factory=list)
    etag: str = '"v1"'
    body: str = DOC
    bad_signatures: int = 0


@pytest.fixture
async def app() -> AsyncIterator[App]:
    state = App()
    validator = RequestValidator(TOKEN)

    def record(request: web.Request) -> None:
        conditional = {
            k: request.headers[k] for k in ("If-None-Match", "If-Modified-Since") if k in request.headers
        }
        state.seen.append((request.path, request.method, conditional))
        state.call_sids.append(request.query.get("CallSid", ""))
        if not validator.validate(str(request.url), {}, request.headers.get("X-Twilio-Signature", "")):
            state.bad_signatures += 1

    def doc(headers: dict[str, str]) -> web.Response:
        return web.Response(text=state.body, content_type="text/xml", headers=headers)

    async def max_age(request: web.Request) -> web.Response:
        record(request)
        return doc({"Cache-Control": "public, max-age=60"})

    async def etag(request: web.Request) -> web.Response:
        record(request)
        headers = {"Cache-Control": "no-cache", "ETag": state.etag}
        if request.headers.get("If-None-Match") == state.etag:
            return web.Response(status=304, headers=headers)
        return doc(headers)

    async def last_modified(request: web.Request) -> web.Response:
        record(request)
        stamp = "Wed, 21 Oct 2026 07:28:00 GMT"
        headers = {"Cache-Control": "max-age=0", "Last-Modified": stamp}
        if request.headers.get("If-Modified-Since") == stamp:
            return web.Response(status=304, headers={"Cache-Control": "max-age=30"})
        return doc(headers)

    async def no_store(request: web.Request) -> web.Response:
        record(request)
        return doc({"Cache-Control": "no-store, max-age=60"})

    async def private(request: web.Request) -> web.Response:
        record(request)
        return doc({"Cache-Control": "private, max-age=60"})

    async def plain(request: web.Request) -> web.Response:
        record(request)
        return doc({})

    application = web.Application()
    for path, handler in (
        ("/max-age", max_age),
        ("/etag", etag),
        ("/last-modified", last_modified),
        ("/no-store", no_store),
        ("/private", private),
        ("/plain", plain),
    ):
        application.router.add_route("*", path, handler)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


async def fetch(client: WebhookClient, url: str, n: int, method: str = "GET") -> str:
    response, errors = await client.fetch_twiml(url, method, params(n), TOKEN)
    assert errors == [] and response is not None and response.status == 200
    assert response.content_type.startswith("text/xml")
    return response.text


async def test_max_age_answers_later_calls_without_a_request(app: App) -> None:
    clock = Clock()
    cache = TwimlCache(clock=clock)
    client = WebhookClient(cache=cache)
    try:
        texts = [await fetch(client, f"{app.url}/max-age", n) for n in range(5)]
        clock.now += 59.0
        texts.append(await fetch(client, f"{app.url}/max-age", 5))
        assert len(app.seen) == 1
        clock.now += 2.0  # 61 s after the first fetch: stale, no validator -> full GET
        texts.append(await fetch(client, f"{app.url}/max-age", 6))
    finally:
        await client.close()
    assert texts == [DOC] * 7
    assert [s[0] for s in app.seen] == ["/max-age", "/max-age"]
    assert app.call_sids == [params(0)["CallSid"], params(6)["CallSid"]]
    assert (cache.hits, cache.misses) == (5, 2)
    assert app.bad_signatures == 0


async def test_post_webhooks_are_never_cached(app: App) -> None:
    cache = TwimlCache()
    client = WebhookClient(cache=cache)
    try:
        for n in range(3):
            assert await fetch(client, f"{app.url}/max-age", n, method="POST") == DOC
    finally:
        await client.close()
    assert [s[1] for s in app.seen] == ["POST"] * 3
    assert len(cache) == 0 and cache.hits == 0


async def test_no_cache_with_etag_revalidates_every_call(app: App) -> None:
    cache = TwimlCache()
    client = WebhookClient(cache=cache)
    try:
        first = [await fetch(client, f"{app.url}/etag", n) for n in range(3)]
        app.etag, app.body = '"v2"', "<Response><Hangup/></Response>"
        changed = await fetch(client, f"{app.url}/etag", 3)
        again = await fetch(client, f"{app.url}/etag", 4)
    finally:
        await client.close()
    assert first == [DOC] * 3
    assert changed == again == "<Response><Hangup/></Response>"
    assert [s[2] for s in app.seen] == [
        {},
        {"If-None-Match": '"v1"'},
        {"If-None-Match": '"v1"'},
        {"If-None-Match": '"v1"'},  # the app answers 200 with v2
        {"If-None-Match": '"v2"'},
    ]
    # Revalidation requests carry the current call's parameters, signed.
    assert app.call_sids == [params(n)["CallSid"] for n in range(5)]
    assert app.bad_signatures == 0
    assert (cache.hits, cache.revalidated, cache.misses) == (0, 3, 2)


async def test_last_modified_304_can_extend_freshness(app: App) -> None:
    clock = Clock()
    cache = TwimlCache(clock=clock)
    client = WebhookClient(cache=cache)
    try:
        texts = [await fetch(client, f"{app.url}/last-modified", n) for n in range(4)]
    finally:
        await client.close()
    # 1st: full GET (max-age=0); 2nd: If-Modified-Since -> 304 with max-age=30; 3rd, 4th: fresh.
    assert texts == [DOC] * 4
    assert [s[2] for s in app.seen] == [{}, {"If-Modified-Since": "Wed, 21 Oct 2026 07:28:00 GMT"}]
    assert (cache.hits, cache.revalidated) == (2, 1)


@pytest.mark.parametrize("path", ["/no-store", "/private", "/plain"])
async def test_uncacheable_responses_are_fetched_every_time(app: App, path: str) -> None:
    cache = TwimlCache()
    client = WebhookClient(cache=cache)
    try:
        for n in range(3):
            assert await fetch(client, app.url + path, n) == DOC
    finally:
        await client.close()
    assert [s[:2] for s in app.seen] == [(path, "GET")] * 3
    assert len(cache) == 0


async def test_client_without_cache_always_asks(app: App) -> None:
    client = WebhookClient()
    try:
        for n in range(3):
            assert await fetch(client, f"{app.url}/max-age", n) == DOC
    finally:
        await client.close()
    assert len(app.seen) == 3


def test_policy_follows_rfc9111_precedence() -> None:
    assert cache_policy(200, {"Cache-Control": "max-age=10, s-maxage=100"}).lifetime == 100.0
    assert cache_policy(200, {"Cache-Control": "max-age=10", "Age": "4"}).lifetime == 6.0
    expires = cache_policy(
        200, {"Date": "Wed, 21 Oct 2026 07:28:00 GMT", "Expires": "Wed, 21 Oct 2026 07:29:00 GMT"}
    )
    assert (expires.store, expires.lifetime) == (True, 60.0)
    assert not cache_policy(200, {"Cache-Control": "max-age=10", "Vary": "*"}).store
    assert not cache_policy(404, {"Cache-Control": "max-age=10"}).store
    assert not cache_policy(200, {"Cache-Control": "max-age=0"}).store  # no validator: useless
    assert not cache_policy(200, {"Cache-Control": "max-age=abc"}).store  # invalid -> stale
    stored = cache_policy(200, {"Cache-Control": "no-cache, max-age=60", "ETag": 'W/"x"'})
    assert (stored.store, stored.lifetime, stored.etag) == (True, 0.0, 'W/"x"')


def test_lru_keeps_at_most_max_entries() -> None:
    clock = Clock()
    cache = TwimlCache(max_entries=2, clock=clock)
    for key in ("a", "b"):
        assert cache.put(key, 200, {"Cache-Control": "max-age=5"}, key.encode())
    assert cache.get("a") is not None  # touch a: b is now the oldest
    cache.put("c", 200, {"Cache-Control": "max-age=5"}, b"c")
    assert cache.get("b") is None and len(cache) == 2
    entry = cache.get("a")
    assert entry is not None and entry.body == b"a" and entry.fresh(clock.now + 4.9)
    assert not entry.fresh(clock.now + 5.0)


async def test_a_burst_on_a_cold_cache_makes_one_request(app: App) -> None:
    cache = TwimlCache()
    client = WebhookClient(cache=cache)
    try:
        texts = await asyncio.gather(*(fetch(client, f"{app.url}/max-age", n) for n in range(20)))
        uncached = await asyncio.gather(*(fetch(client, f"{app.url}/no-store", n) for n in range(5)))
        again = await asyncio.gather(*(fetch(client, f"{app.url}/no-store", n) for n in range(5)))
    finally:
        await client.close()
    assert texts == [DOC] * 20 and uncached == again == [DOC] * 5
    assert [s[0] for s in app.seen].count("/max-age") == 1
    assert [s[0] for s in app.seen].count("/no-store") == 10
    assert (cache.hits, cache.misses) == (19, 11)
