"""The webhook client: signed requests to the customer's app, exactly as Twilio sends them.

Every request carries ``X-Twilio-Signature``: HMAC-SHA1, keyed by the account's auth token, over the
full URL followed, for a POST, by each parameter name and value in sorted order; base64-encoded.
GET requests carry the parameters in the query string, which is then part of the signed URL.

Failures are reported as :class:`WebhookError` with Twilio's error codes (11200 HTTP retrieval
failure, 11205 HTTP connection failure, 11210 HTTP bad host name, 11215 too many redirects, 11220
TLS handshake error, 11100 invalid URL, 11750 response body too large), so the caller can record a
debugger event, try the fallback URL and, failing that, play the application-error prompt.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import ssl
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import yarl
from multidict import CIMultiDictProxy

from trunkline.gateway.twiml.cache import TwimlCache

log = logging.getLogger(__name__)

Params = Mapping[str, str] | Sequence[tuple[str, str]]

HTTP_RETRIEVAL_FAILURE = 11200
HTTP_CONNECTION_FAILURE = 11205
HTTP_BAD_HOST_NAME = 11210
HTTP_TOO_MANY_REDIRECTS = 11215
TLS_HANDSHAKE_ERROR = 11220
INVALID_URL = 11100
RESPONSE_TOO_LARGE = 11750

#: Twilio's documented limit for a TwiML response body.
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "TwilioProxy/1.1"


def _pairs(params: Params | None) -> list[tuple[str, str]]:
    if params is None:
        return []
    if isinstance(params, Mapping):
        return [(str(k), str(val)) for k, val in params.items()]
    return [(str(k), str(val)) for k, val in params]


def compute_signature(auth_token: str, url: str, params: Params | None = None) -> str:
    """``X-Twilio-Signature`` for a request to ``url`` with POST ``params`` (none for GET)."""
    pairs = _pairs(params)
    payload = url
    for name in sorted({name for name, _ in pairs}):
        for value in sorted({val for key, val in pairs if key == name}):
            payload += name + value
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_with_query(url: str, params: Params | None) -> str:
    """``url`` with ``params`` appended to its query string (how Twilio sends a GET webhook)."""
    pairs = _pairs(params)
    if not pairs:
        return url
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(pairs)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """What the customer's app answered."""

    url: str
    status: int
    content_type: str
    body: bytes

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (TwiML is XML; undecodable bytes are replaced)."""
        return self.body.decode("utf-8", errors="replace")


class WebhookError(Exception):
    """A webhook that failed, with Twilio's error code, the URL and the HTTP status if any."""

    def __init__(self, code: int, message: str, url: str, http_status: int | None = None) -> None:
        super().__init__(f"{code}: {message} ({url})")
        self.code = code
        self.message = message
        self.url = url
        self.http_status = http_status


class WebhookClient:
    """Sends signed webhooks over one pooled aiohttp session.

    ``timeout`` is Twilio's 15 seconds by default. With a ``cache``, :meth:`fetch_twiml` answers
    GET TwiML fetches from it as the app's ``Cache-Control``/``ETag``/``Last-Modified`` allow
    (:mod:`trunkline.gateway.twiml.cache`); POST webhooks (Twilio's default) and status callbacks
    are never cached. A request never blocks other calls: each is its
    own awaitable on the event loop, and connections are reused across calls.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: float = 15.0,
        max_redirects: int = 10,
        cache: TwimlCache | None = None,
    ) -> None:
        self._session = session
        self.cache = cache
        """TwiML document cache for GET fetches (:meth:`fetch_twiml`); None: never cache."""
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._uncacheable: set[str] = set()
        self._own_session = session is None
        self.timeout = timeout
        self.max_redirects = max_redirects

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=256, limit_per_host=64, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(connector=connector)
            self._own_session = True
        return self._session

    async def close(self) -> None:
        """Close the session if this client created it."""
        if self._own_session and self._session is not None:
            await self._session.close()

    async def request(
        self,
        url: str,
        method: str,
        params: Params | None,
        auth_token: str,
        *,
        timeout: float | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> WebhookResponse:
        """Send one signed webhook; raise :class:`WebhookError` unless the app answers 2xx."""
        target, status, headers, payload = await self._send(
            url, method, params, auth_token, timeout=timeout, extra_headers=extra_headers
        )
        if not 200 <= status < 300:
            raise WebhookError(
                HTTP_RETRIEVAL_FAILURE, f"HTTP retrieval failure: status {status}", url, status
            )
        return WebhookResponse(
            url=target, status=status, content_type=headers.get("Content-Type", ""), body=payload
        )

    async def _send(
        self,
        url: str,
        method: str,
        params: Params | None,
        auth_token: str,
        *,
        timeout: float | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> tuple[str, int, CIMultiDictProxy[str], bytes]:
        """One signed request: the URL requested, status, headers and body (any status)."""
        method = method.upper()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookError(INVALID_URL, "Invalid URL format", url)
        body: str | None = None
        if method == "GET":
            target = url_with_query(url, params)
            signature = compute_signature(auth_token, target)
        else:
            target = url
            body = urlencode(_pairs(params))
            signature = compute_signature(auth_token, url, params)
        headers = {
            "X-Twilio-Signature": signature,
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
            "Cache-Control": "max-age=259200",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
        if extra_headers:
            headers.update(extra_headers)
        limit = aiohttp.ClientTimeout(total=self.timeout if timeout is None else timeout)
        try:
            # Send the URL exactly as signed: aiohttp would re-quote the query (``%3A%2F%2F`` in a
            # RecordingUrl parameter going out as ``://``) and the app's signature check would fail.
            async with self._client().request(
                method,
                yarl.URL(target, encoded=True),
                data=body,
                headers=headers,
                timeout=limit,
                max_redirects=self.max_redirects,
            ) as response:
                payload = await response.content.read(MAX_RESPONSE_BYTES + 1)
                status = response.status
                response_headers = response.headers
        except aiohttp.TooManyRedirects:
            raise WebhookError(HTTP_TOO_MANY_REDIRECTS, "HTTP too many redirects", url) from None
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            raise WebhookError(TLS_HANDSHAKE_ERROR, f"SSL/TLS handshake error: {exc}", url) from None
        except aiohttp.ClientConnectorDNSError:
            raise WebhookError(HTTP_BAD_HOST_NAME, "HTTP bad host name", url) from None
        except aiohttp.ClientConnectorError as exc:
            raise WebhookError(HTTP_CONNECTION_FAILURE, f"HTTP connection failure: {exc}", url) from None
        except TimeoutError:
            raise WebhookError(HTTP_RETRIEVAL_FAILURE, "HTTP retrieval failure: timed out", url) from None
        except aiohttp.ClientError as exc:
            raise WebhookError(HTTP_RETRIEVAL_FAILURE, f"HTTP retrieval failure: {exc}", url) from None
        if len(payload) > MAX_RESPONSE_BYTES:
            raise WebhookError(RESPONSE_TOO_LARGE, "Response body is larger than 64 kB", url, status)
        return target, status, response_headers, payload

    async def cached_get(self, url: str, params: Params | None, auth_token: str) -> WebhookResponse:
        """A GET TwiML fetch through :attr:`cache` (see :mod:`trunkline.gateway.twiml.cache`).

        A fresh document is returned without a request; a stale one is revalidated with a
        conditional GET (``304`` reuses it); anything else is fetched and stored if allowed.
        """
        cache = self.cache
        if cache is None:
            return await self.request(url, "GET", params, auth_token)
        entry = cache.get(url)
        if entry is None and url in self._inflight and url not in self._uncacheable:
            # A burst of calls on a cold cache: wait for the first fetch rather than repeat it.
            with contextlib.suppress(WebhookError):
                await asyncio.shield(self._inflight[url])
            entry = cache.get(url)
        if entry is not None and entry.fresh(cache.clock()):
            cache.hits += 1
            # No request was made: the response names the configured URL (no call parameters).
            return WebhookResponse(url, 200, entry.content_type, entry.body)
        if entry is not None or url in self._inflight:
            return await self._revalidate(url, params, auth_token)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[url] = future
        try:
            return await self._revalidate(url, params, auth_token)
        finally:
            del self._inflight[url]
            future.set_result(None)

    async def _revalidate(self, url: str, params: Params | None, auth_token: str) -> WebhookResponse:
        cache = self.cache
        assert cache is not None
        entry = cache.get(url)
        validators = entry.validators() if entry is not None else None
        target, status, headers, payload = await self._send(
            url, "GET", params, auth_token, extra_headers=validators
        )
        if status == 304 and entry is not None:
            cache.revalidated += 1
            entry = cache.refresh(url, entry, headers)
            return WebhookResponse(target, 200, entry.content_type, entry.body)
        if not 200 <= status < 300:
            raise WebhookError(
                HTTP_RETRIEVAL_FAILURE, f"HTTP retrieval failure: status {status}", url, status
            )
        cache.misses += 1
        if cache.put(url, status, headers, payload):
            self._uncacheable.discard(url)
        elif len(self._uncacheable) < 4096:
            self._uncacheable.add(url)  # later bursts need not wait for each other
        return WebhookResponse(target, status, headers.get("Content-Type", ""), payload)

    async def _fetch_one(
        self, url: str, method: str, params: Params | None, auth_token: str
    ) -> WebhookResponse:
        if self.cache is not None and method.upper() == "GET":
            return await self.cached_get(url, params, auth_token)
        return await self.request(url, method, params, auth_token)

    async def fetch_twiml(
        self,
        url: str,
        method: str,
        params: Params | None,
        auth_token: str,
        *,
        fallback_url: str | None = None,
        fallback_method: str = "POST",
    ) -> tuple[WebhookResponse | None, list[WebhookError]]:
        """Fetch TwiML from ``url``, then from ``fallback_url`` if that fails.

        Returns the response that worked (or None) and every failure met on the way; Twilio adds
        ``ErrorCode`` and ``ErrorUrl`` to the fallback request, and so does this.
        """
        errors: list[WebhookError] = []
        try:
            return await self._fetch_one(url, method, params, auth_token), errors
        except WebhookError as exc:
            errors.append(exc)
            log.warning("webhook %s failed: %s %s", url, exc.code, exc.message)
        if not fallback_url:
            return None, errors
        fallback_params = [*_pairs(params), ("ErrorCode", str(errors[0].code)), ("ErrorUrl", url)]
        try:
            response = await self._fetch_one(fallback_url, fallback_method, fallback_params, auth_token)
            return response, errors
        except WebhookError as exc:
            errors.append(exc)
            log.warning("fallback webhook %s failed: %s %s", fallback_url, exc.code, exc.message)
        return None, errors


class CallbackSender:
    """Fire-and-forget status callbacks with retries and back-off; never delays the call.

    ``send`` schedules a background task and returns at once. A failed callback is retried
    ``retries`` times, waiting ``backoff * 2**attempt`` seconds between tries.
    """

    def __init__(self, client: WebhookClient, *, retries: int = 3, backoff: float = 1.0) -> None:
        self.client = client
        self.retries = retries
        self.backoff = backoff
        self._tasks: set[asyncio.Task[bool]] = set()

    def send(self, url: str, method: str, params: Params, auth_token: str) -> asyncio.Task[bool]:
        """Schedule one callback; the task's result says whether it was delivered."""
        task = asyncio.get_running_loop().create_task(self._deliver(url, method, _pairs(params), auth_token))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(self, url: str, method: str, params: list[tuple[str, str]], auth_token: str) -> bool:
        for attempt in range(self.retries + 1):
            try:
                await self.client.request(url, method, params, auth_token)
                return True
            except WebhookError as exc:
                log.warning("status callback %s attempt %d failed: %s", url, attempt + 1, exc)
            if attempt < self.retries:
                await asyncio.sleep(self.backoff * 2**attempt)
        return False

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for every scheduled callback (used at shutdown and in tests)."""
        pending: Iterable[asyncio.Task[bool]] = list(self._tasks)
        if pending:
            await asyncio.wait(pending, timeout=timeout)
