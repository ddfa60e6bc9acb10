"""The thin asyncio shell around ``SipCore``: transports in, transports out, one timer.

``UserAgent`` is the ``Receiver`` the transports deliver to. After every input (a
message, the timer, an action of the application) it sends what the core queued and
re-arms a single ``loop.call_at`` at ``core.next_deadline()`` (aioquic's protocol shape).
It also offers the application the core's actions with the clock filled in
(``respond``, ``send_request``, ``send_ack``, ``cancel``) and ``request()``, an awaitable
non-INVITE request (REGISTER, OPTIONS, BYE...).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable

from trunkline.gateway.sip.core import ClientCallback, SipCore
from trunkline.gateway.sip.message import SipRequest, SipResponse
from trunkline.gateway.sip.transaction import (
    Event,
    Peer,
    ResponseReceived,
    TransactionTimeout,
    TransportError,
)
from trunkline.gateway.sip.transport import Address, TransportSet

__all__ = ["RequestFailed", "UserAgent"]

log = logging.getLogger("trunkline.sip.ua")


class RequestFailed(Exception):
    """A request got no final response: ``status`` 408 (timeout) or 503 (transport error)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class UserAgent:
    """Asyncio I/O for a ``SipCore`` (see the module docstring)."""

    def __init__(self, core: SipCore, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.core = core
        self._loop = loop
        self._transports: TransportSet | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop (the running one, bound on first use)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def attach(self, transports: TransportSet) -> None:
        """Use ``transports`` for sending and tell the core their advertised addresses."""
        self._transports = transports
        self.core.set_transports({t.name: t.advertised for t in transports})

    def now(self) -> float:
        """The clock every ``now`` passed to the core comes from (``loop.time()``)."""
        return self.loop.time()

    # --- Receiver -----------------------------------------------------------------------

    def __call__(self, data: bytes, source: Address, transport: str, *, oversize: bool = False) -> None:
        """Feed one received message to the core; never raises."""
        self.core.receive(data, Peer(transport, source), self.loop.time(), oversize=oversize)
        self.flush()

    # --- output and timer ---------------------------------------------------------------

    def flush(self) -> None:
        """Send what the core queued and re-arm the timer."""
        core = self.core
        transports = self._transports
        out = core.datagrams_to_send()
        if out and transports is not None:
            for transmit in out:
                dest = transmit.dest
                try:
                    transports.send(dest.transport, transmit.data, dest.address)
                except Exception as exc:  # unknown transport name, closed transport
                    core.transport_error(transmit, self.loop.time(), str(exc))
        self._rearm()

    def _rearm(self) -> None:
        if self._closed:
            return
        deadline = self.core.next_deadline()
        if deadline is None:
            return  # an armed timer firing early costs one no-op call
        if self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.handle_timer(self.loop.time())
        self.flush()

    def close(self) -> None:
        """Stop the timer (the transports are closed by their owner)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- actions for the application ----------------------------------------------------

    def respond(
        self,
        transaction_id: str,
        request: SipRequest,
        status: int,
        *,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        to_tag: str | None = None,
    ) -> SipResponse:
        """``SipCore.respond`` now, then flush."""
        response = self.core.respond(
            transaction_id,
            request,
            status,
            self.now(),
            reason=reason,
            headers=headers,
            body=body,
            to_tag=to_tag,
        )
        self.flush()
        return response

    def send_request(self, request: SipRequest, dest: Peer, callback: ClientCallback | None = None) -> str:
        """``SipCore.send_request`` now, then flush."""
        tx = self.core.send_request(request, dest, self.now(), callback)
        self.flush()
        return tx

    def send_ack(self, ack: SipRequest, dest: Peer) -> None:
        """``SipCore.send_ack`` now, then flush."""
        self.core.send_ack(ack, dest, self.now())
        self.flush()

    def cancel(self, transaction_id: str) -> str | None:
        """``SipCore.cancel`` now, then flush."""
        result = self.core.cancel(transaction_id, self.now())
        self.flush()
        return result

    async def request(
        self,
        request: SipRequest,
        dest: Peer,
        *,
        on_provisional: Callable[[SipResponse], None] | None = None,
    ) -> SipResponse:
        """Send a non-INVITE request and wait for its final response.

        Raises ``RequestFailed`` (408 on timeout, 503 on a transport error, 8.1.3.1).
        """
        future: asyncio.Future[SipResponse] = self.loop.create_future()

        def callback(event: Event, now: float) -> None:
            if future.done():
                return
            if isinstance(event, ResponseReceived):
                if event.response.status_code >= 200:
                    future.set_result(event.response)
                elif on_provisional is not None:
                    on_provisional(event.response)
            elif isinstance(event, TransactionTimeout):
                future.set_exception(RequestFailed(408, f"no response (timer {event.timer})"))
            elif isinstance(event, TransportError):
                future.set_exception(RequestFailed(503, f"transport error: {event.reason}"))

        self.send_request(request, dest, callback)
        return await future

    async def resolve(self, host: str, port: int | None, protocol: str = "udp") -> Peer:
        """The ``Peer`` for ``host`` (name or IP) and ``port`` over ``protocol`` (A/AAAA
        lookup; SRV/NAPTR of RFC 3263 are not done)."""
        bare = host.strip("[]")
        try:
            ipaddress.ip_address(bare)
        except ValueError:
            family = socket.AF_INET
            infos = await self.loop.getaddrinfo(bare, None, family=family, type=socket.SOCK_DGRAM)
            if not infos:
                raise OSError(f"cannot resolve {host}") from None
            bare = str(infos[0][4][0])
        return self.core.peer_for(bare, port, protocol)
