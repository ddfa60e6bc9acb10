"""SIP MESSAGE delivery over the UA core: the :class:`~trunkline.gateway.api.control.MessageSender`
the messaging service sends its texts through.

``SipMessageSender.send_message(account_sid, from_, to, body)`` routes ``to``:

* ``client:NAME``, a bare user name, or a ``sip:`` URI of a registered user at one of our own
  addresses: to the live registrations of that user (location service, RFC 3261 section 10.3),
  best q-value first, the next one tried when a contact does not answer (timeout, 408, 480, 5xx);
* any other ``sip:``/``sips:`` URI: directly to its host and port (``transport`` parameter
  honoured), as a UAC without a proxy would (RFC 3261 section 8.1.2);
* an E.164 number (or digits): through the outbound trunks in order, answering a 401/407 digest
  challenge with the trunk's credentials (sections 22.2 and 22.3) and failing over to the next
  trunk on 408, 5xx and timeouts, as ``TrunkManager.dial`` does for calls.

The MESSAGE is built by :func:`~trunkline.gateway.messaging.sip.build_message_request` and goes
over UDP unless it is larger than RFC 3428 section 8's 1300 bytes, in which case it goes over TCP
when a TCP transport is open and the peer accepts a TCP connection on its address (else UDP).

It returns the final SIP status; it raises :class:`NoRouteError` when nothing reaches ``to`` and
``TimeoutError`` when no final response came (transaction timeout, RFC 3261 section 17.1.2.2
Timer F) or the far end answered 408 Request Timeout (which says the same from further away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trunkline.gateway.api.control import NoRouteError
from trunkline.gateway.messaging.sip import UDP_SIZE_LIMIT, build_message_request, sip_uri_for
from trunkline.gateway.sip.auth import AuthError, ClientAuthState, parse_challenges, select_challenge
from trunkline.gateway.sip.grammar import SipParseError
from trunkline.gateway.sip.message import Headers, SipRequest, SipResponse
from trunkline.gateway.sip.transaction import LocalProtocolError, Peer
from trunkline.gateway.sip.uri import SipUri, parse_uri
from trunkline.gateway.sip.useragent import RequestFailed, UserAgent

if TYPE_CHECKING:
    from trunkline.gateway.config import Trunk
    from trunkline.gateway.switch.location import LocationService
    from trunkline.gateway.switch.trunks import TrunkManager

__all__ = ["MessageRoute", "SipMessageSender", "is_number"]

log = logging.getLogger("trunkline.messaging.sender")

Address = tuple[str, int]

#: Room for the Via (with a 40-character branch and rport) and User-Agent the core adds, when
#: deciding whether a request stays under RFC 3428's 1300-byte UDP limit.
_VIA_ALLOWANCE = 128
#: Statuses after which another contact (or trunk) may still deliver: the target did not answer
#: or is not there right now (RFC 3261 section 21.4.9 / 21.4.18, 21.5).
_TRY_NEXT = frozenset((408, 480))


def is_number(address: str) -> bool:
    """True for ``+`` followed by digits, or digits only: a phone number that goes to a trunk."""
    digits = address.removeprefix("+")
    return digits.isdigit()


@dataclass(frozen=True, slots=True)
class MessageRoute:
    """One place to try a MESSAGE: Request-URI, To, where to send it, our From host, and the
    credentials (with their nonce-count state) for a digest challenge."""

    request_uri: SipUri
    to_uri: SipUri
    dest: Peer
    from_host: str
    label: str
    credentials: tuple[str, str] | None = None
    auth_state: ClientAuthState | None = None


class SipMessageSender:
    """Sends messages as out-of-dialog SIP MESSAGE requests (see the module docstring).

    ``local_addresses()`` lists our advertised ``(host, port)`` pairs, so that a ``sip:`` URI
    naming this node reaches its registered user instead of looping back to us. ``timeout``
    caps each attempt (seconds); by default the transaction's own Timer F (64*T1) applies.
    ``connect_timeout`` bounds the check that a peer takes TCP before a big MESSAGE goes there.
    """

    def __init__(
        self,
        ua: UserAgent,
        location: LocationService,
        trunks: TrunkManager | None = None,
        *,
        local_addresses: Callable[[], Iterable[Address]] = tuple,
        timeout: float | None = None,
        connect_timeout: float = 2.0,
    ) -> None:
        self.ua = ua
        self.location = location
        self.trunks = trunks
        self.local_addresses = local_addresses
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._auth: dict[str, ClientAuthState] = {}

    # --- MessageSender ----------------------------------------------------------------------------

    async def send_message(self, account_sid: str, from_: str, to: str, body: str) -> int:
        """Send ``body`` from ``from_`` to ``to``; the final SIP status of the delivery.

        Raises :class:`NoRouteError` when no registration, URI or trunk reaches ``to`` and
        ``TimeoutError`` when the last attempt got no final response.
        """
        routes = await self.routes(to)
        status: int | None = None
        timed_out = False
        for route in routes:
            try:
                status = await self.attempt(route, from_, body)
            except TimeoutError:
                log.info("MESSAGE to %s via %s: no final response", to, route.label)
                timed_out, status = True, None
                continue
            timed_out = False
            if status == 408:
                timed_out = True
                continue
            if 200 <= status < 300 or not (status in _TRY_NEXT or 500 <= status <= 599):
                return status
            log.info("MESSAGE to %s via %s answered %d: trying the next route", to, route.label, status)
        if timed_out or status is None:
            raise TimeoutError(f"no final response to the MESSAGE for {to}")
        return status

    # --- routing ----------------------------------------------------------------------------------

    async def routes(self, to: str) -> list[MessageRoute]:
        """Where a MESSAGE for ``to`` may go, in the order to try; :class:`NoRouteError` if nowhere."""
        if to.startswith("client:"):
            return self._registered(to.removeprefix("client:"))
        if to.lower().startswith(("sip:", "sips:")):
            try:
                uri = parse_uri(to)
            except SipParseError as exc:
                raise NoRouteError(f"{to} is not a valid SIP URI: {exc}") from None
            if not uri.host:
                raise NoRouteError(f"{to} has no host")
            if self._is_local(uri):
                if not uri.user:
                    raise NoRouteError(f"{to} names this node but no user")
                return self._registered(uri.user)
            return [await self._direct(uri)]
        if is_number(to):
            return await self._trunk_routes(to)
        if to and "@" not in to and ":" not in to:
            return self._registered(to)  # a bare local user name
        raise NoRouteError(f"cannot route a message to {to!r}")

    def _is_local(self, uri: SipUri) -> bool:
        default = 5061 if uri.scheme == "sips" or uri.transport == "tls" else 5060
        port = uri.port or default
        host = uri.host.strip("[]").lower()
        return any(host == h.strip("[]").lower() and port == p for h, p in self.local_addresses())

    def _registered(self, user: str) -> list[MessageRoute]:
        bindings = self.location.lookup(user, self.ua.now())
        if not bindings:
            raise NoRouteError(f"client:{user} is not registered")
        core = self.ua.core
        routes = []
        for binding in bindings:
            host, port = core.advertised(binding.target.transport)
            routes.append(
                MessageRoute(
                    request_uri=binding.contact,
                    to_uri=SipUri("sip", user, None, host, port),
                    dest=binding.target,
                    from_host=host,
                    label=f"registration {binding.contact.serialize()}",
                )
            )
        return routes

    async def _direct(self, uri: SipUri) -> MessageRoute:
        protocol = uri.transport or ("tls" if uri.scheme == "sips" else "udp")
        try:
            dest = await self.ua.resolve(uri.host, uri.port, protocol)
        except (OSError, LocalProtocolError) as exc:
            raise NoRouteError(f"cannot reach {uri.serialize()}: {exc}") from None
        host = self.ua.core.advertised(dest.transport)[0]
        target = uri.without_headers()
        return MessageRoute(target, target, dest, host, f"URI {target.serialize()}")

    async def _trunk_routes(self, number: str) -> list[MessageRoute]:
        trunks = self.trunks.outbound_trunks() if self.trunks is not None else []
        if not trunks:
            raise NoRouteError(f"no outbound trunk for {number}")
        routes = []
        for trunk in trunks:
            try:
                dest = await self.ua.resolve(trunk.host, trunk.port, trunk.transport)
            except (OSError, LocalProtocolError) as exc:
                log.warning("trunk %s cannot carry a MESSAGE: %s", trunk.name, exc)
                continue
            routes.append(self._trunk_route(trunk, number, dest))
        if not routes:
            raise NoRouteError(f"no reachable outbound trunk for {number}")
        return routes

    def _trunk_route(self, trunk: Trunk, number: str, dest: Peer) -> MessageRoute:
        target = sip_uri_for(number, trunk.host, trunk.port)
        credentials = (trunk.username, trunk.password) if trunk.username and trunk.password else None
        return MessageRoute(
            request_uri=target,
            to_uri=target,
            dest=dest,
            from_host=trunk.from_domain or trunk.host,
            label=f"trunk {trunk.name}",
            credentials=credentials,
            auth_state=self._auth.setdefault(trunk.name, ClientAuthState()),
        )

    # --- one attempt ------------------------------------------------------------------------------

    async def attempt(self, route: MessageRoute, from_: str, body: str) -> int:
        """One MESSAGE along ``route`` (answering up to two digest challenges); its final status.

        Raises ``TimeoutError`` when no final response comes.
        """
        try:
            from_uri = sip_uri_for(from_, route.from_host)
        except SipParseError:
            from_uri = SipUri("sip", None, None, route.from_host)  # anonymous at our host
        request = build_message_request(from_uri, route.to_uri, body, request_uri=route.request_uri)
        dest = await self._transport_for(request, route.dest)
        response = await self._send(request, dest)
        for _ in range(2):
            if response.status_code not in (401, 407):
                break
            retry = self._authorized(request, response, route)
            if retry is None:
                break
            request = retry
            response = await self._send(request, dest)
        return response.status_code

    async def _transport_for(self, request: SipRequest, dest: Peer) -> Peer:
        # RFC 3428 section 8 (and RFC 3261 section 18.1.1): a MESSAGE over 1300 bytes must go over
        # a congestion-controlled transport; when the peer takes no TCP connection, UDP it is.
        size = len(request.serialize()) + _VIA_ALLOWANCE + len(self.ua.core.user_agent)
        if dest.reliable or size <= UDP_SIZE_LIMIT:
            return dest
        try:
            tcp = Peer(self.ua.core.transport_for("tcp"), dest.address)
        except LocalProtocolError:
            log.warning("MESSAGE of %d bytes goes over UDP: no TCP transport is open", size)
            return dest
        if await self._accepts_tcp(dest.address):
            return tcp
        log.info("MESSAGE of %d bytes goes over UDP: %s:%d takes no TCP connection", size, *dest.address)
        return dest

    async def _accepts_tcp(self, address: Address) -> bool:
        """Whether ``address`` accepts a TCP connection (the transport opens its own later; its
        connection errors do not reach the transaction, so we ask first)."""
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(*address), self.connect_timeout)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def _send(self, request: SipRequest, dest: Peer) -> SipResponse:
        try:
            return await self._request(request, dest)
        except RequestFailed as exc:
            if exc.status == 408:
                raise TimeoutError(str(exc)) from None
            return _synthetic(request, exc.status, exc.reason)

    async def _request(self, request: SipRequest, dest: Peer) -> SipResponse:
        pending = self.ua.request(request, dest)
        if self.timeout is None:
            return await pending
        return await asyncio.wait_for(pending, self.timeout)

    def _authorized(
        self, request: SipRequest, response: SipResponse, route: MessageRoute
    ) -> SipRequest | None:
        if route.credentials is None:
            return None
        proxy = response.status_code == 407
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        try:
            challenge = select_challenge(
                c for value in response.headers.get_all(header) for c in parse_challenges(value)
            )
            user, password = route.credentials
            state = route.auth_state or ClientAuthState()
            credentials = state.answer(
                challenge, request.method, request.uri.serialize(), user, password, body=request.body
            )
        except (AuthError, ValueError) as exc:
            log.warning("cannot answer the %d challenge of %s: %s", response.status_code, route.label, exc)
            return None
        retry = _fresh(request, drop=("Authorization", "Proxy-Authorization"))
        retry.headers.add("Proxy-Authorization" if proxy else "Authorization", credentials.serialize())
        return retry


def _fresh(request: SipRequest, drop: tuple[str, ...] = ()) -> SipRequest:
    """The same request as a new transaction: no Via, the next CSeq (RFC 3261 section 8.1.3.5:
    a retried request keeps Call-ID, To and From tag and increments CSeq)."""
    skip = {"via", "cseq", "content-length", *(name.lower() for name in drop)}
    headers = Headers([(n, v) for n, v in request.headers if n.lower() not in skip])
    headers.add("CSeq", f"{request.cseq.seq + 1} {request.method}")
    return SipRequest(request.method, request.uri, headers, request.body)


def _synthetic(request: SipRequest, status: int, reason: str) -> SipResponse:
    """A locally generated final response (RFC 3261 section 8.1.3.1: a transport error is
    treated as a 503)."""
    headers = Headers([(n, v) for n, v in request.headers if n in ("Via", "From", "To", "Call-ID", "CSeq")])
    return SipResponse(status, reason, headers)
