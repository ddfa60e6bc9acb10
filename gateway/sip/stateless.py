"""Temporary stateless SIP responder, used by the server until the transaction layer lands.

It answers every request at once, without transaction state (RFC 3261 section 8.2.7):

* OPTIONS -> 200 OK with Allow, Accept and Supported (section 11.2);
* INVITE -> 100 Trying, then 480 Temporarily Unavailable (no call handling yet);
* REGISTER -> 403 Forbidden (no registrar yet);
* CANCEL and BYE -> 481, since no transaction or dialog can exist (sections 9.2 and 15.1.2);
* ACK -> nothing; any other method -> 501 Not Implemented (section 8.2.1);
* a Require with any option tag -> 420 Bad Extension (section 8.2.2.3);
* an oversized request -> 513 Message Too Large (section 18.1.1);
* a malformed request whose Via, From, To, Call-ID and CSeq can still be read -> the parser's
  status code (400 or 505) with a Warning naming the problem; anything else is dropped and
  logged at a limited rate. Responses are dropped.

Responses go where RFC 3261 section 18.2.2 and RFC 3581 section 4 say: on a stream, back over
the connection; on UDP, to the source address and port when the top Via has ``rport``, else to
the source address and the Via port. The responder never raises out of its callback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from trunkline.gateway.config import SipConfig
from trunkline.gateway.sip import (
    SipParseError,
    SipRequest,
    SipResponse,
    Via,
    make_response,
    new_tag,
    parse_message,
)
from trunkline.gateway.sip.grammar import quote

__all__ = ["ALLOW", "ResponderStats", "StatelessResponder", "response_destination"]

log = logging.getLogger("trunkline.sip.stateless")

Address = tuple[str, int]
Sender = Callable[[str, bytes, Address], None]

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS"
ACCEPT = "application/sdp"
# Headers a request needs before any response can be built for it (section 8.1.1).
_NEEDED = ("Via", "From", "To", "Call-ID", "CSeq")
# Rate limit of problem logs: at most LOG_BURST lines per LOG_WINDOW seconds.
LOG_BURST = 10
LOG_WINDOW = 10.0


@dataclass(slots=True)
class ResponderStats:
    """What the responder did, for tests and metrics."""

    requests: int = 0
    responses_sent: int = 0
    responses_dropped: int = 0
    parse_errors: int = 0
    dropped: int = 0
    oversize: int = 0
    internal_errors: int = 0


def _host(text: str) -> str:
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def response_destination(via: Via, source: Address, reliable: bool) -> tuple[Via, Address]:
    """Top Via as it goes back in the response, and where a UDP/stream response is sent.

    RFC 3261 section 18.2.1: add ``received`` when the sent-by host differs from the source
    address. RFC 3581 section 4: with ``rport``, fill in the source port and add ``received``
    even when it equals sent-by, and answer to the source IP and port.
    """
    host, port = source
    if via.has_rport:
        via = via.with_params(received=host, rport=str(port))
        return via, source
    if _host(via.host) != host:
        via = via.with_params(received=host)
    if reliable:
        return via, source
    # Section 18.2.2: unreliable transport, received present -> that address, port from sent-by.
    return via, (host, via.port or 5060)


class StatelessResponder:
    """Receiver for :class:`~trunkline.gateway.sip.transport.TransportSet` that answers statelessly.

    ``send(transport_name, data, dest)`` is called for every response; ``clock`` only paces the
    problem logs.
    """

    def __init__(
        self, send: Sender, config: SipConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._send = send
        self._server = config.user_agent
        self._clock = clock
        self._log_window_start = float("-inf")
        self._log_count = 0
        self._log_suppressed = 0
        self.stats = ResponderStats()

    def __call__(self, data: bytes, source: Address, transport: str, *, oversize: bool = False) -> None:
        """Handle one received message; never raises."""
        try:
            self._handle(data, source, transport, oversize)
        except Exception as exc:
            self.stats.internal_errors += 1
            self._problem(f"internal error on a message from {source[0]}:{source[1]}: {exc!r}", exc_info=True)

    def _problem(self, message: str, *, exc_info: bool = False) -> None:
        now = self._clock()
        if now - self._log_window_start >= LOG_WINDOW:
            if self._log_suppressed:
                log.warning("%d more SIP problems were not logged", self._log_suppressed)
            self._log_window_start, self._log_count, self._log_suppressed = now, 0, 0
        if self._log_count < LOG_BURST:
            self._log_count += 1
            log.warning("%s", message, exc_info=exc_info)
        else:
            self._log_suppressed += 1

    def _handle(self, data: bytes, source: Address, transport: str, oversize: bool) -> None:
        if not data.strip(b"\r\n\t "):
            return  # keep-alive padding
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._malformed(exc, data, source, transport, oversize)
            return
        if isinstance(message, SipResponse):
            self.stats.responses_dropped += 1
            return
        self.stats.requests += 1
        if oversize:
            self.stats.oversize += 1
            self._respond(message, 513, source, transport)
            return
        self._request(message, source, transport)

    def _malformed(
        self, exc: SipParseError, data: bytes, source: Address, transport: str, oversize: bool
    ) -> None:
        self.stats.parse_errors += 1
        partial = exc.partial if exc.partial is not None else _headers_despite_version(exc, data)
        where = f"{source[0]}:{source[1]} over {transport}"
        if isinstance(partial, SipResponse):
            self.stats.responses_dropped += 1
            return
        if not isinstance(partial, SipRequest) or not all(name in partial.headers for name in _NEEDED):
            self.stats.dropped += 1
            self._problem(f"dropped an unreadable message from {where}: {exc.reason}")
            return
        if partial.method == "ACK":
            self.stats.dropped += 1  # section 17.2.1: never answer an ACK
            return
        if oversize:
            self.stats.oversize += 1
            self._respond(partial, 513, source, transport)
            return
        self._problem(
            f"answering {exc.status_code} to a malformed {partial.method} from {where}: {exc.reason}"
        )
        warning = f"399 trunkline {quote(_printable(exc.reason))}"
        self._respond(partial, exc.status_code, source, transport, extra=[("Warning", warning)])

    def _request(self, request: SipRequest, source: Address, transport: str) -> None:
        method = request.method
        if method == "ACK":
            return
        required = request.headers.get_all("Require")
        if required and method != "CANCEL":
            self._respond(request, 420, source, transport, extra=[("Unsupported", ", ".join(required))])
            return
        if method == "OPTIONS":
            extra = [("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", "")]
            self._respond(request, 200, source, transport, extra=extra)
        elif method == "INVITE":
            # Section 8.2.6.1: a 100 Trying carries the request's Timestamp and no To tag.
            timestamp = request.headers.get("Timestamp")
            self._respond(
                request, 100, source, transport, extra=[("Timestamp", timestamp)] if timestamp else []
            )
            self._respond(request, 480, source, transport)
        elif method == "REGISTER":
            self._respond(request, 403, source, transport)
        elif method in ("CANCEL", "BYE"):
            self._respond(request, 481, source, transport)
        else:
            self._respond(request, 501, source, transport, extra=[("Allow", ALLOW)])

    def _respond(
        self,
        request: SipRequest,
        status: int,
        source: Address,
        transport: str,
        *,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        try:
            top = request.top_via
        except SipParseError as exc:
            self.stats.dropped += 1
            self._problem(f"cannot answer a {request.method} from {source[0]}:{source[1]}: {exc.reason}")
            return
        via, dest = response_destination(top, source, reliable=not transport.startswith("udp:"))
        headers = [("Server", self._server), *(extra or [])]
        to_tag = new_tag() if status != 100 else None
        try:
            response = make_response(request, status, to_tag=to_tag, headers=headers)
        except SipParseError:
            # The To header was unreadable: answer without adding a tag.
            response = make_response(request, status, headers=headers)
        response.headers.remove_first("Via")
        response.headers.insert_first("Via", via.serialize())
        self._send(transport, response.serialize(), dest)
        self.stats.responses_sent += 1


def _headers_despite_version(exc: SipParseError, data: bytes) -> object:
    """For a 505 raised on the Request-Line, the request parsed as if it said SIP/2.0 (to answer it)."""
    if exc.status_code != 505:
        return None
    line_end = data.find(b"\r\n")
    first = data[:line_end]
    version_at = first.rfind(b" ")
    if line_end < 0 or version_at < 0 or first.startswith(b"SIP/"):
        return None
    patched = first[:version_at] + b" SIP/2.0" + data[line_end:]
    try:
        return parse_message(patched)
    except SipParseError as again:
        return again.partial


def _printable(text: str) -> str:
    cleaned = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return cleaned[:200]
