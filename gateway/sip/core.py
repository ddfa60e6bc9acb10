"""The SIP transaction user core, sans-I/O: bytes in, bytes out, explicit ``now``.

``SipCore`` glues the syntax layer (``parse_message``), the transaction layer
(``TransactionLayer``) and the dialogs together and dispatches what is left to the
application (registrar, call legs):

* every message is parsed; a ``SipParseError`` becomes the parser's status (400/505) when
  Via/From/To/Call-ID/CSeq can still be read, else the message is dropped and counted;
* a new request is validated one layer above the parser (RFC 3261 section 8.2):
  405 + Allow for a method we do not implement (8.2.1), 482 for a merged request
  INVITE (8.2.2.2), 416 for an unsupported URI scheme (8.2.2.1), 420 + Unsupported for an unknown
  ``Require`` option tag (8.2.2.3), 483 for Max-Forwards 0 (16.3 step 3, applied to every
  request since we never forward), 513 for an oversize request (18.1.1);
* in-dialog requests go through ``Dialog.receive_request`` (481, 491, 500) and then to the
  ``DialogUser`` that owns the dialog; out-of-dialog requests pass the ``guard`` (inbound
  security) and go to the handler registered for their method; OPTIONS is answered here
  (11.2) unless a handler is registered;
* responses to our requests go to the callback given to ``send_request``.

Nothing here touches a socket or a clock: the I/O shell (``useragent.UserAgent``) calls
``receive(data, source, now)``, sends ``datagrams_to_send()`` and re-arms one timer at
``next_deadline()``. ``receive`` never raises, whatever the input.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from trunkline.gateway.config import SipConfig
from trunkline.gateway.sip.dialog import Dialog, DialogId
from trunkline.gateway.sip.grammar import SipParseError, quote
from trunkline.gateway.sip.headers import Via
from trunkline.gateway.sip.message import (
    SipRequest,
    SipResponse,
    make_response,
    new_branch,
    new_tag,
)
from trunkline.gateway.sip.parser import parse_message
from trunkline.gateway.sip.response_routing import response_destination
from trunkline.gateway.sip.timers import TimerConfig
from trunkline.gateway.sip.transaction import (
    AckReceived,
    AckTimeout,
    CancelReceived,
    Event,
    LocalProtocolError,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    Transmit,
    TransportError,
)

__all__ = [
    "ACCEPT",
    "ALLOW",
    "SUPPORTED",
    "Admission",
    "ClientCallback",
    "CoreStats",
    "DialogUser",
    "Guard",
    "IncomingRequest",
    "RateLimitedLog",
    "RequestHandler",
    "SipCore",
]

log = logging.getLogger("trunkline.sip.core")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, REFER, NOTIFY, MESSAGE"
ALLOWED = frozenset(m.strip() for m in ALLOW.split(","))
ACCEPT = "application/sdp"
# Option tags we implement: RFC 4028 session timers, RFC 3581 is not an option tag.
SUPPORTED = "timer"
SUPPORTED_TAGS = frozenset(("timer",))
# Section 8.2.2.2: remember the requests of live server transactions to detect merged ones.
_NEEDED = ("Via", "From", "To", "Call-ID", "CSeq")
# Methods an out-of-dialog request may use without passing the inbound guard.
_UNGUARDED = frozenset(("OPTIONS", "REGISTER", "ACK", "CANCEL"))
# Methods that only make sense inside a dialog (15.1.2, RFC 2976, RFC 3311, RFC 6665).
_DIALOG_ONLY = frozenset(("BYE", "INFO", "UPDATE", "PRACK", "NOTIFY"))


class RateLimitedLog:
    """Log at most ``burst`` lines per ``window`` seconds, then count what was suppressed.

    ``now`` is passed in by the caller, so a flood of bad input cannot flood the log.
    """

    def __init__(self, logger: logging.Logger, burst: int = 10, window: float = 10.0) -> None:
        self.logger = logger
        self.burst = burst
        self.window = window
        self.suppressed_total = 0
        self._start = float("-inf")
        self._count = 0
        self._suppressed = 0

    def warning(self, now: float, message: str, *args: object) -> bool:
        """Log ``message % args`` unless the budget of this window is spent; True if logged."""
        if now - self._start >= self.window:
            if self._suppressed:
                self.logger.warning("%d more similar messages were not logged", self._suppressed)
            self._start, self._count, self._suppressed = now, 0, 0
        if self._count < self.burst:
            self._count += 1
            self.logger.warning(message, *args)
            return True
        self._suppressed += 1
        self.suppressed_total += 1
        return False


@dataclass(slots=True)
class CoreStats:
    """Counters of the core, for tests and metrics."""

    received: int = 0
    requests: int = 0
    responses: int = 0
    parse_errors: int = 0
    dropped: int = 0
    rejected: int = 0
    internal_errors: int = 0
    sent: int = 0


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """A new request handed to the application: answer it with ``SipCore.respond``."""

    transaction_id: str
    request: SipRequest
    source: Peer
    identity: object = None
    """What the guard said the request comes from (a trunk, an endpoint user), or None."""


@dataclass(frozen=True, slots=True)
class Admission:
    """The guard's verdict: ``status`` 0 admits, anything else is the response to send."""

    status: int = 0
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    identity: object = None

    @property
    def admitted(self) -> bool:
        """True when the request may go on to its handler."""
        return self.status == 0


Guard = Callable[[SipRequest, Peer, float], Admission]
RequestHandler = Callable[[IncomingRequest, float], None]
ClientCallback = Callable[[Event, float], None]
"""Receives ``ResponseReceived``, ``TransactionTimeout`` and ``TransportError`` of one request."""


class DialogUser(Protocol):
    """What owns a dialog (a call leg): gets its in-dialog requests, ACKs and CANCELs."""

    def on_request(self, incoming: IncomingRequest, now: float) -> None:
        """An in-dialog request that the dialog accepted (answer it with ``respond``)."""

    def on_ack(self, request: SipRequest, now: float) -> None:
        """The ACK of a 2xx we sent."""

    def on_ack_timeout(self, response: SipResponse, now: float) -> None:
        """No ACK came for our 2xx (13.3.1.4): end the session with a BYE."""


class CancelUser(Protocol):
    """What owns an INVITE server transaction and must learn about its CANCEL."""

    def on_cancel(self, transaction_id: str, now: float) -> None:
        """The INVITE was cancelled (the CANCEL is answered already); send 487."""


@dataclass(slots=True)
class _DialogEntry:
    dialog: Dialog
    user: DialogUser


@dataclass(slots=True)
class _Transports:
    advertised: dict[str, tuple[str, int]] = field(default_factory=dict)

    def pick(self, protocol: str) -> str | None:
        for name in self.advertised:
            if name.split(":", 1)[0] == protocol:
                return name
        return None


class SipCore:
    """Transaction user core of one SIP node (see the module docstring)."""

    def __init__(
        self,
        config: SipConfig,
        *,
        timers: TimerConfig | None = None,
        guard: Guard | None = None,
    ) -> None:
        t = config.timers
        self.config = config
        self.timers = timers or TimerConfig(t.t1 / 1000, t.t2 / 1000, t.t4 / 1000, trying_delay=0.2)
        self.layer = TransactionLayer(self.timers)
        self.stats = CoreStats()
        self.guard = guard
        self.user_agent = config.user_agent
        self.problems = RateLimitedLog(log)
        self._transports = _Transports()
        self._handlers: dict[str, RequestHandler] = {}
        self._client: dict[str, ClientCallback] = {}
        self._cancel_users: dict[str, CancelUser] = {}
        self._dialogs: dict[DialogId, _DialogEntry] = {}
        self._merge: dict[tuple[str, str, int, str], str] = {}
        self._merge_of: dict[str, tuple[str, str, int, str]] = {}
        self._stateless: list[Transmit] = []

    # --- configuration ------------------------------------------------------------------

    def set_transports(self, advertised: dict[str, tuple[str, int]]) -> None:
        """Tell the core the open transports: name (``udp:127.0.0.1:5060``) -> advertised
        ``(host, port)`` used in Via and Contact (``sip.advertise``)."""
        self._transports.advertised = dict(advertised)

    def on(self, method: str, handler: RequestHandler) -> None:
        """Handle new out-of-dialog requests of ``method`` (after validation and guard)."""
        self._handlers[method.upper()] = handler

    def transport_for(self, protocol: str = "udp") -> str:
        """The name of an open transport of ``protocol`` (``LocalProtocolError`` if none)."""
        name = self._transports.pick(protocol.lower())
        if name is None:
            raise LocalProtocolError(f"no {protocol} transport is open")
        return name

    def advertised(self, transport: str) -> tuple[str, int]:
        """The advertised ``(host, port)`` of transport ``transport`` (a name or a protocol)."""
        name = transport if transport in self._transports.advertised else self.transport_for(transport)
        return self._transports.advertised[name]

    def contact(self, user: str | None, transport: str) -> str:
        """A Contact value (name-addr) for ``user`` on ``transport`` (advertised address)."""
        host, port = self.advertised(transport)
        protocol = transport.split(":", 1)[0].lower()
        userpart = f"{user}@" if user else ""
        hostpart = f"[{host}]" if ":" in host and not host.startswith("[") else host
        suffix = "" if protocol == "udp" else f";transport={protocol}"
        return f"<sip:{userpart}{hostpart}:{port}{suffix}>"

    def peer_for(self, host: str, port: int | None, protocol: str = "udp") -> Peer:
        """Where to send a request to ``host:port`` (an IP address) over ``protocol``."""
        default = 5061 if protocol == "tls" else 5060
        return Peer(self.transport_for(protocol), (host.strip("[]"), port or default))

    # --- dialogs ------------------------------------------------------------------------

    def add_dialog(self, dialog: Dialog, user: DialogUser) -> None:
        """Route the in-dialog requests of ``dialog`` to ``user``."""
        self._dialogs[dialog.id] = _DialogEntry(dialog, user)

    def remove_dialog(self, dialog: Dialog) -> None:
        """Forget ``dialog`` (later requests in it get 481)."""
        self._dialogs.pop(dialog.id, None)

    def dialog_count(self) -> int:
        """Number of dialogs routed by the core."""
        return len(self._dialogs)

    def watch_cancel(self, transaction_id: str, user: CancelUser) -> None:
        """Tell ``user`` when INVITE server transaction ``transaction_id`` is cancelled."""
        self._cancel_users[transaction_id] = user

    # --- I/O shell interface ------------------------------------------------------------

    def datagrams_to_send(self) -> list[Transmit]:
        """Everything to send now, in order."""
        out = self.layer.datagrams_to_send()
        if self._stateless:
            out = self._stateless + out
            self._stateless = []
        self.stats.sent += len(out)
        return out

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must run next."""
        return self.layer.next_deadline()

    def handle_timer(self, now: float) -> None:
        """Fire due timers and dispatch what they produced."""
        try:
            self.layer.handle_timer(now)
            self._drain(now)
        except Exception as exc:
            self._internal(exc, now)

    def transport_error(self, transmit: Transmit, now: float, reason: str = "") -> None:
        """Sending ``transmit`` failed (17.1.4): the owner of the transaction hears of it."""
        try:
            self.layer.transport_error(transmit, now, reason)
            self._drain(now)
        except Exception as exc:
            self._internal(exc, now)

    def receive(self, data: bytes, source: Peer, now: float, *, oversize: bool = False) -> None:
        """Handle one datagram or framed stream message from ``source``; never raises."""
        self.stats.received += 1
        try:
            self._receive(data, source, now, oversize)
        except Exception as exc:
            self._internal(exc, now)

    def _internal(self, exc: Exception, now: float) -> None:
        self.stats.internal_errors += 1
        if self.problems.warning(now, "internal error in the SIP core: %r", exc):
            log.debug("traceback", exc_info=exc)

    def _receive(self, data: bytes, source: Peer, now: float, oversize: bool) -> None:
        if not data.strip(b"\r\n\t "):
            return  # keep-alive (RFC 5626 section 3.5.1 CRLF)
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._malformed(exc, data, source, now, oversize)
            return
        if isinstance(message, SipResponse):
            self.stats.responses += 1
            try:
                self.layer.receive(message, source, now)
            except SipParseError:
                self.stats.dropped += 1
                return
            self._drain(now)
            return
        self.stats.requests += 1
        if oversize and message.method != "ACK":
            self._reply_stateless(message, 513, source, now)  # 18.1.1
            return
        try:
            self.layer.receive(message, source, now)
        except SipParseError as exc:
            self._malformed(exc, data, source, now, False)
            return
        self._drain(now)

    # --- stateless answers to malformed input ---------------------------------------------

    def _malformed(self, exc: SipParseError, data: bytes, source: Peer, now: float, oversize: bool) -> None:
        self.stats.parse_errors += 1
        partial = exc.partial if exc.partial is not None else _patched_version(exc, data)
        if isinstance(partial, SipResponse):
            self.stats.dropped += 1
            return
        if not isinstance(partial, SipRequest) or not all(n in partial.headers for n in _NEEDED):
            self.stats.dropped += 1
            self.problems.warning(now, "dropped unreadable SIP from %s:%d: %s", *source.address, exc.reason)
            return
        if partial.method == "ACK":
            self.stats.dropped += 1  # 17.2.1: never answer an ACK
            return
        if oversize:
            self._reply_stateless(partial, 513, source, now)
            return
        self.problems.warning(
            now, "answering %d to a malformed %s from %s:%d: %s",
            exc.status_code, partial.method, *source.address, exc.reason,
        )  # fmt: skip
        warning = f"399 trunkline {quote(_printable(exc.reason))}"
        self._reply_stateless(partial, exc.status_code, source, now, (("Warning", warning),))

    def _reply_stateless(
        self,
        request: SipRequest,
        status: int,
        source: Peer,
        now: float,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        try:
            top = request.top_via
        except SipParseError:
            self.stats.dropped += 1
            return
        via, dest = response_destination(top, source.address, source.reliable)
        headers = [("Server", self.user_agent), *extra]
        try:
            response = make_response(request, status, to_tag=new_tag(), headers=headers)
        except SipParseError:
            response = make_response(request, status, headers=headers)
        response.headers.remove_first("Via")
        response.headers.insert_first("Via", via.serialize())
        self.stats.rejected += 1
        self._stateless.append(Transmit(response.serialize(), Peer(source.transport, dest), None))

    # --- events from the transaction layer ----------------------------------------------

    def _drain(self, now: float) -> None:
        layer = self.layer
        while (event := layer.next_event()) is not None:
            if isinstance(event, RequestReceived):
                self._request(event, now)
            elif isinstance(event, ResponseReceived | TransactionTimeout):
                callback = self._client.get(event.transaction_id)
                if callback is not None:
                    callback(event, now)
            elif isinstance(event, AckReceived):
                self._ack(event, now)
            elif isinstance(event, CancelReceived):
                user = self._cancel_users.pop(event.transaction_id, None)
                if user is not None:
                    user.on_cancel(event.transaction_id, now)
                else:
                    self._try_respond(event.transaction_id, event.request, 487, now)
            elif isinstance(event, TransactionTerminated):
                self._forget(event.transaction_id)
            elif isinstance(event, TransportError):
                callback = self._client.get(event.transaction_id or "")
                if callback is not None:
                    callback(event, now)
            elif isinstance(event, AckTimeout):
                response = event.response
                key = (response.call_id, response.to.tag or "", response.from_.tag or "")
                entry = self._dialogs.get(key)
                if entry is not None:
                    entry.user.on_ack_timeout(response, now)

    def _forget(self, transaction_id: str) -> None:
        self._client.pop(transaction_id, None)
        self._cancel_users.pop(transaction_id, None)
        merge = self._merge_of.pop(transaction_id, None)
        if merge is not None and self._merge.get(merge) == transaction_id:
            del self._merge[merge]

    def _ack(self, event: AckReceived, now: float) -> None:
        request = event.request
        key = (request.call_id, request.to.tag or "", request.from_.tag or "")
        entry = self._dialogs.get(key)
        if entry is not None:
            entry.user.on_ack(request, now)

    def _request(self, event: RequestReceived, now: float) -> None:
        request = event.request
        tx = event.transaction_id
        method = request.method
        # 8.2.1: method inspection.
        if method not in ALLOWED:
            self.respond(tx, request, 405, now, headers=(("Allow", ALLOW),))
            return
        to_tag = request.to.tag
        # 8.2.2.2: a request without To tag matching a live transaction by From tag,
        # Call-ID and CSeq but not by branch arrived twice through a forking proxy. Only
        # INVITEs are checked: they are what forks, and a merged INVITE would ring twice.
        if to_tag is None and method == "INVITE":
            merge = (request.call_id, request.from_.tag or "", request.cseq.seq, method)
            other = self._merge.get(merge)
            if other is not None and other != tx and self.layer.get(other) is not None:
                self.respond(tx, request, 482, now)
                return
            self._merge[merge] = tx
            self._merge_of[tx] = merge
        # 8.2.2.1: Request-URI scheme.
        if not request.uri.is_sip and request.uri.scheme != "tel":
            self.respond(tx, request, 416, now)
            return
        # 16.3 step 3 (we are the last hop, but never accept a request that ran out of hops).
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards == 0 and method != "OPTIONS":
            self.respond(tx, request, 483, now)
            return
        # 8.2.2.3: Require with option tags we do not support.
        required = request.headers.get_all("Require")
        if required and method != "CANCEL":
            unknown = [tag for tag in required if tag.strip().lower() not in SUPPORTED_TAGS]
            if unknown:
                self.respond(tx, request, 420, now, headers=(("Unsupported", ", ".join(unknown)),))
                return
        if to_tag is not None:
            self._in_dialog(event, now)
            return
        if method in _DIALOG_ONLY:
            self.respond(tx, request, 481, now)  # 12.2.2 / 15.1.2: no such dialog
            return
        identity: object = None
        if method not in _UNGUARDED and self.guard is not None:
            verdict = self.guard(request, event.source, now)
            if not verdict.admitted:
                self.respond(tx, request, verdict.status, now, reason=verdict.reason, headers=verdict.headers)
                return
            identity = verdict.identity
        handler = self._handlers.get(method)
        incoming = IncomingRequest(tx, request, event.source, identity)
        if handler is not None:
            handler(incoming, now)
        elif method == "OPTIONS":
            self.respond(tx, request, 200, now, headers=self.capabilities())
        elif method == "INVITE":
            self.respond(tx, request, 480, now)
        elif method == "REGISTER":
            self.respond(tx, request, 403, now)
        else:
            self.respond(tx, request, 405, now, headers=(("Allow", ALLOW),))

    def capabilities(self) -> tuple[tuple[str, str], ...]:
        """Allow / Accept / Supported headers for OPTIONS answers (11.2)."""
        return (("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", SUPPORTED))

    def _in_dialog(self, event: RequestReceived, now: float) -> None:
        request = event.request
        key = (request.call_id, request.to.tag or "", request.from_.tag or "")
        entry = self._dialogs.get(key)
        if entry is None:
            if request.method == "OPTIONS":
                self.respond(event.transaction_id, request, 200, now, headers=self.capabilities())
            else:
                self.respond(event.transaction_id, request, 481, now)  # 12.2.2
            return
        verdict = entry.dialog.receive_request(request, now)
        if verdict is not None:
            self.respond(
                event.transaction_id,
                request,
                verdict.status,
                now,
                reason=verdict.reason,
                headers=verdict.headers,
            )
            return
        entry.user.on_request(IncomingRequest(event.transaction_id, request, event.source), now)

    # --- TU actions ---------------------------------------------------------------------

    def respond(
        self,
        transaction_id: str,
        request: SipRequest,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        to_tag: str | None = None,
    ) -> SipResponse:
        """Build and send a response to ``request`` through its server transaction.

        A non-100 response gets ``to_tag`` (or a fresh tag) when the request's To has none.
        """
        extra = [("Server", self.user_agent), *headers]
        if to_tag is None and status != 100:
            to_tag = new_tag()  # 100 Trying never carries a To tag (8.2.6.1): no tag to draw
        response = make_response(request, status, reason, to_tag=to_tag, headers=extra, body=body)
        self.layer.send_response(response, now, transaction_id)
        if status >= 200:
            # A CANCEL after the final response no longer reaches the TU (RFC 3261 section 9.2;
            # the layer raises CancelReceived only in Proceeding): release the watcher now rather
            # than with the transaction (Timer L, 32 s), which kept every answered call alive.
            self._cancel_users.pop(transaction_id, None)
        return response

    def _try_respond(self, transaction_id: str, request: SipRequest, status: int, now: float) -> None:
        with contextlib.suppress(LocalProtocolError):
            self.respond(transaction_id, request, status, now)

    def send_request(
        self, request: SipRequest, dest: Peer, now: float, callback: ClientCallback | None = None
    ) -> str:
        """Send ``request`` to ``dest`` in a new client transaction; its events go to
        ``callback``. A top Via with our advertised address and ``rport`` (RFC 3581
        section 3) is added when the request has none."""
        if "Via" not in request.headers:
            host, port = self.advertised(dest.transport)
            via = Via(dest.protocol.upper(), host, port, {"branch": new_branch(), "rport": None})
            request.headers.insert_first("Via", via.serialize())
        if "User-Agent" not in request.headers:
            request.headers.add("User-Agent", self.user_agent)
        tx = self.layer.send_request(request, dest, now)
        if callback is not None:
            self._client[tx] = callback
        return tx

    def send_ack(self, ack: SipRequest, dest: Peer, now: float) -> None:
        """Send an ACK for a 2xx (13.2.2.4) with a fresh Via."""
        ack.headers.remove("Via")
        host, port = self.advertised(dest.transport)
        via = Via(dest.protocol.upper(), host, port, {"branch": new_branch(), "rport": None})
        ack.headers.insert_first("Via", via.serialize())
        self.layer.send_ack(ack, dest, now)

    def cancel(self, transaction_id: str, now: float) -> str | None:
        """CANCEL our INVITE client transaction (9.1); see ``TransactionLayer.cancel``."""
        return self.layer.cancel(transaction_id, now)


def _patched_version(exc: SipParseError, data: bytes) -> object:
    """For a 505 raised on the Request-Line, the request parsed as if it said SIP/2.0."""
    if exc.status_code != 505:
        return None
    line_end = data.find(b"\r\n")
    first = data[:line_end]
    version_at = first.rfind(b" ")
    if line_end < 0 or version_at < 0 or first.startswith(b"SIP/"):
        return None
    try:
        return parse_message(first[:version_at] + b" SIP/2.0" + data[line_end:])
    except SipParseError as again:
        return again.partial


def _printable(text: str) -> str:
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)[:200]
