"""SIP trunks: registration, OPTIONS keep-alive pings and outbound routing with failover.

``TrunkManager`` runs, for every configured trunk:

* with ``register: true``, a REGISTER loop (RFC 3261 section 10.2) answering 401/407 digest
  challenges (``ClientAuthState``), refreshing at a random 50-80 % of the granted expiry,
  backing off exponentially (``retry_base`` doubling up to ``retry_max``) after a failure,
  and un-registering (``Expires: 0``) on ``stop()``;
* with ``options_ping > 0``, an OPTIONS ping every ``options_ping`` seconds: any final
  response but 408/503 marks the trunk up, a timeout or transport error marks it down.

``dial()`` places an outbound call through the outbound trunks in order, skipping those
marked down, and fails over to the next trunk on 5xx, 408 and timeouts; 4xx and 6xx answers
(486 Busy Here, 404...) are the callee's, so they end the attempt (RFC 3261 section 16.7
treats 6xx as global; a busy callee is busy on every trunk).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from trunkline.gateway.config import Trunk
from trunkline.gateway.sip.auth import AuthError, ClientAuthState, parse_challenges, select_challenge
from trunkline.gateway.sip.core import ALLOW
from trunkline.gateway.sip.message import Headers, SipRequest, SipResponse, new_call_id, new_tag
from trunkline.gateway.sip.sdp import LocalMedia
from trunkline.gateway.sip.transaction import Peer
from trunkline.gateway.sip.uri import SipUri, parse_uri
from trunkline.gateway.sip.useragent import RequestFailed, UserAgent
from trunkline.gateway.switch.leg_manager import LegManager
from trunkline.gateway.switch.legs import OutboundLeg

__all__ = ["FAILOVER_STATUSES", "NoTrunkAvailable", "TrunkManager", "TrunkStatus", "is_failover_status"]

log = logging.getLogger("trunkline.switch.trunks")


def is_failover_status(status: int) -> bool:
    """True when a failed attempt should be retried on the next trunk (5xx, 408)."""
    return status == 408 or 500 <= status <= 599


FAILOVER_STATUSES = "408 and 5xx"


class NoTrunkAvailable(Exception):
    """No outbound trunk is configured (or every one is down)."""


@dataclass(slots=True)
class TrunkStatus:
    """What we know about one trunk."""

    name: str
    registered: bool = False
    registered_until: float | None = None
    up: bool | None = None
    """OPTIONS verdict (``None`` until the first ping, or without pings)."""
    last_status: int | None = None
    failures: int = 0
    registrations: int = 0


class TrunkManager:
    """Registration, pings and outbound dialling for the configured trunks."""

    def __init__(
        self,
        ua: UserAgent,
        legs: LegManager,
        trunks: Iterable[Trunk],
        *,
        retry_base: float = 2.0,
        retry_max: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        self.ua = ua
        self.legs = legs
        self.trunks = tuple(trunks)
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.rng = rng or random.Random()
        self.status = {t.name: TrunkStatus(t.name) for t in self.trunks}
        self._tasks: list[asyncio.Task[None]] = []
        self._auth = {t.name: ClientAuthState() for t in self.trunks}
        self._reg_ids = {t.name: (new_call_id(), new_tag()) for t in self.trunks}
        self._cseq = {t.name: 0 for t in self.trunks}
        self._registered_event = {t.name: asyncio.Event() for t in self.trunks}

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the registration and ping loops."""
        loop = asyncio.get_running_loop()
        for trunk in self.trunks:
            if trunk.register:
                self._tasks.append(loop.create_task(self._register_loop(trunk)))
            if trunk.options_ping > 0:
                self._tasks.append(loop.create_task(self._ping_loop(trunk)))

    async def stop(self) -> None:
        """Stop the loops and un-REGISTER the registered trunks."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for trunk in self.trunks:
            status = self.status[trunk.name]
            if trunk.register and status.registered:
                with contextlib.suppress(RequestFailed, OSError, asyncio.TimeoutError):
                    await asyncio.wait_for(self.register(trunk, expires=0), 5.0)
                status.registered = False

    async def wait_registered(self, name: str) -> None:
        """Wait until trunk ``name`` is registered."""
        await self._registered_event[name].wait()

    async def peer(self, trunk: Trunk) -> Peer:
        """Where the trunk's requests go."""
        return await self.ua.resolve(trunk.host, trunk.port, trunk.transport)

    def _domain(self, trunk: Trunk) -> str:
        return trunk.from_domain or trunk.host

    # --- REGISTER (10.2) ------------------------------------------------------------------

    def _register_request(self, trunk: Trunk, dest: Peer, expires: int) -> SipRequest:
        call_id, tag = self._reg_ids[trunk.name]
        self._cseq[trunk.name] += 1
        aor = f"sip:{trunk.username}@{self._domain(trunk)}"
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{aor}>;tag={tag}")
        headers.add("To", f"<{aor}>")
        headers.add("Call-ID", call_id)
        headers.add("CSeq", f"{self._cseq[trunk.name]} REGISTER")
        headers.add("Contact", self.ua.core.contact(trunk.username, dest.transport))
        headers.add("Expires", str(expires))
        headers.add("Allow", ALLOW)
        uri = parse_uri(f"sip:{trunk.host}:{trunk.port}")
        return SipRequest("REGISTER", uri, headers)

    async def register(self, trunk: Trunk, expires: int | None = None) -> SipResponse:
        """One REGISTER (answering up to two challenges); returns the final response."""
        dest = await self.peer(trunk)
        expires = trunk.expires if expires is None else expires
        request = self._register_request(trunk, dest, expires)
        response = await self.ua.request(request, dest)
        for _ in range(2):
            if response.status_code not in (401, 407):
                break
            request = self._register_request(trunk, dest, expires)
            if not self._authorize(trunk, request, response):
                break
            response = await self.ua.request(request, dest)
        self.status[trunk.name].last_status = response.status_code
        return response

    def _authorize(self, trunk: Trunk, request: SipRequest, response: SipResponse) -> bool:
        if trunk.username is None or trunk.password is None:
            return False
        header = "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
        try:
            challenge = select_challenge(
                c for v in response.headers.get_all(header) for c in parse_challenges(v)
            )
            credentials = self._auth[trunk.name].answer(
                challenge, request.method, request.uri.serialize(), trunk.username, trunk.password
            )
        except (AuthError, ValueError):
            return False
        name = "Authorization" if response.status_code == 401 else "Proxy-Authorization"
        request.headers.add(name, credentials.serialize())
        return True

    def _granted(self, response: SipResponse, requested: int) -> int:
        for value in response.contact:
            if value.expires is not None:
                return value.expires
        return response.expires if response.expires is not None else requested

    async def _register_loop(self, trunk: Trunk) -> None:
        status = self.status[trunk.name]
        delay = self.retry_base
        while True:
            try:
                response = await self.register(trunk)
                ok = 200 <= response.status_code < 300
            except (RequestFailed, OSError) as exc:
                log.warning("trunk %s: REGISTER failed: %s", trunk.name, exc)
                ok = False
                response = None
            if ok and response is not None:
                granted = max(1, self._granted(response, trunk.expires))
                now = self.ua.now()
                status.registered = True
                status.registered_until = now + granted
                status.registrations += 1
                status.failures = 0
                self._registered_event[trunk.name].set()
                delay = self.retry_base
                await asyncio.sleep(granted * self.rng.uniform(0.5, 0.8))
            else:
                status.failures += 1
                if status.registered_until is None or self.ua.now() >= status.registered_until:
                    status.registered = False
                code = response.status_code if response is not None else "no response"
                log.warning("trunk %s: registration refused (%s), retry in %.0f s", trunk.name, code, delay)
                await asyncio.sleep(delay)
                delay = min(self.retry_max, delay * 2)

    # --- OPTIONS pings ------------------------------------------------------------------

    async def ping(self, trunk: Trunk) -> bool:
        """Send one OPTIONS; return (and record) whether the trunk is up."""
        status = self.status[trunk.name]
        try:
            dest = await self.peer(trunk)
            headers = Headers()
            domain = self._domain(trunk)
            headers.add("Max-Forwards", "70")
            headers.add("From", f"<sip:trunkline@{domain}>;tag={new_tag()}")
            headers.add("To", f"<sip:{trunk.host}:{trunk.port}>")
            headers.add("Call-ID", new_call_id())
            headers.add("CSeq", "1 OPTIONS")
            headers.add("Accept", "application/sdp")
            request = SipRequest("OPTIONS", parse_uri(f"sip:{trunk.host}:{trunk.port}"), headers)
            response = await self.ua.request(request, dest)
            up = response.status_code not in (408, 503)
            status.last_status = response.status_code
        except (RequestFailed, OSError):
            up = False
        if status.up is not up:
            log.info("trunk %s is %s", trunk.name, "up" if up else "down")
        status.up = up
        return up

    async def _ping_loop(self, trunk: Trunk) -> None:
        while True:
            await self.ping(trunk)
            await asyncio.sleep(trunk.options_ping)

    # --- outbound calls -----------------------------------------------------------------

    def outbound_trunks(self) -> list[Trunk]:
        """Outbound trunks in order, those marked down by OPTIONS last."""
        trunks = [t for t in self.trunks if t.outbound]
        return [t for t in trunks if self.status[t.name].up is not False] + [
            t for t in trunks if self.status[t.name].up is False
        ]

    async def dial(
        self,
        number: str,
        *,
        from_user: str,
        from_display: str | None = None,
        sdp_offer: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        local_media: LocalMedia | None = None,
        on_attempt: Callable[[Trunk, OutboundLeg], None] | None = None,
    ) -> OutboundLeg:
        """Call ``number`` (a phone number or SIP user) through the outbound trunks with
        failover; return the answered leg, or the last failed one.

        ``on_attempt(trunk, leg)`` sees every attempt (to cancel it, or follow its events)."""
        trunks = self.outbound_trunks()
        if not trunks:
            raise NoTrunkAvailable("no outbound trunk is configured")
        leg: OutboundLeg | None = None
        for trunk in trunks:
            dest = await self.peer(trunk)
            target = SipUri("sip", number, None, trunk.host, trunk.port)
            from_uri = SipUri("sip", from_user, None, self._domain(trunk))
            auth = (trunk.username, trunk.password) if trunk.username and trunk.password else None
            leg = self.legs.call(
                target,
                dest,
                from_uri=from_uri,
                from_display=from_display,
                sdp_offer=sdp_offer,
                headers=headers,
                auth=auth,
                local_media=local_media,
            )
            if on_attempt is not None:
                on_attempt(trunk, leg)
            status = await leg.wait_answer()
            if status < 300 or not is_failover_status(status):
                return leg
            log.info("trunk %s answered %d for %s: trying the next trunk", trunk.name, status, number)
        assert leg is not None
        return leg
