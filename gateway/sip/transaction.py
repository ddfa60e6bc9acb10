"""SIP transaction layer, sans-I/O (RFC 3261 section 17, RFC 6026, CANCEL per section 9).

``TransactionLayer`` never touches a socket or a clock. The I/O shell feeds it parsed
messages with ``receive(message, source, now)``, sends what ``datagrams_to_send()``
returns, re-arms one timer at ``next_deadline()`` and calls ``handle_timer(now)`` when it
fires; the transaction user (the UA core / switch) reads ``next_event()`` and calls
``send_request`` / ``send_response`` / ``send_ack`` / ``cancel``.

The four state machines are the transition table ``TRANSITIONS`` of
``transaction_state`` (h11 ``_state.py`` style); events, ``Peer`` and ``Transmit`` live
in ``transaction_events`` and are re-exported here. An impossible input coming from
the TU raises ``LocalProtocolError``; an impossible input coming from the network (a
late response, a stray ACK) is dropped, as section 17 prescribes.

Choices worth knowing:

* 100 Trying (17.2.1) goes out ``TimerConfig.trying_delay`` (200 ms) after an INVITE
  unless the TU responded first; a retransmitted INVITE before that gets it at once.
* Timer A doubles without a cap (17.1.1.2); Timers E and G, and the 2xx retransmission,
  are capped at T2 (17.1.2.2, 17.2.1, 13.3.1.4).
* RFC 6026: an INVITE server transaction that sent a 2xx enters Accepted (Timer L),
  absorbs INVITE retransmissions and passes ACKs up. The 2xx itself is retransmitted by
  the layer on behalf of the core (13.3.1.4: T1 doubling to T2, "independent of whatever
  transport protocols are used") until a matching ACK (Call-ID, CSeq number, From and To
  tags) arrives, or ``AckTimeout`` is reported after 64*T1 so the core sends a BYE.
  An INVITE client transaction enters Accepted (Timer M) on a 2xx and passes every
  further 2xx up (``ResponseReceived.retransmission``) so the core re-sends its ACK.
* A received CANCEL is answered by the layer itself (9.2): 200 when it matches a server
  transaction (and ``CancelReceived`` when that INVITE still awaits its final response;
  the TU then sends 487), 481 otherwise.
* Responses go back to the request's source (18.2.2 with RFC 3581): the layer stamps
  ``received``/``rport`` on the request's top Via when it arrives (18.2.1).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from trunkline.gateway.sip.headers import MAGIC_COOKIE, Via
from trunkline.gateway.sip.message import (
    Headers,
    SipRequest,
    SipResponse,
    make_response,
    new_branch,
    new_tag,
)
from trunkline.gateway.sip.timers import DEFAULT_TIMERS, TimerConfig
from trunkline.gateway.sip.transaction_events import (
    AckReceived,
    AckTimeout,
    Address,
    CancelReceived,
    Event,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionTerminated,
    TransactionTimeout,
    Transmit,
    TransportError,
)
from trunkline.gateway.sip.transaction_state import (
    TIMER_INPUTS,
    TRANSITIONS,
    LocalProtocolError,
    TransactionKind,
    TransactionState,
    TxInput,
    next_state,
    recv_input,
    send_input,
)

__all__ = [
    "TRANSITIONS",
    "AckReceived",
    "AckTimeout",
    "CancelReceived",
    "Event",
    "LocalProtocolError",
    "Peer",
    "RequestReceived",
    "ResponseReceived",
    "Transaction",
    "TransactionKind",
    "TransactionLayer",
    "TransactionState",
    "TransactionTerminated",
    "TransactionTimeout",
    "Transmit",
    "TransportError",
    "TxInput",
    "build_ack",
    "build_cancel",
    "is_rfc3261_branch",
]

_K = TransactionKind
_S = TransactionState
_I = TxInput


# --------------------------------------------------------------------------------------
# Matching (sections 17.1.3 and 17.2.3) and request builders (17.1.1.3, 9.1)
# --------------------------------------------------------------------------------------


def is_rfc3261_branch(branch: str | None) -> bool:
    """True for a branch that carries the magic cookie *and* an identifier.

    RFC 4475 section 3.2.1 (``badbranch``): a branch that is the bare cookie
    ``z9hG4bK`` identifies nothing, so such requests fall back to RFC 2543 matching.
    """
    return branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE)


def _sent_by(via: Via) -> str:
    port = via.port or (5061 if via.transport in ("TLS", "WSS") else 5060)
    return f"{via.host.lower()}:{port}"


def _server_key(message: SipRequest | SipResponse, method: str) -> str:
    """Server transaction key (17.2.3): branch, sent-by and method (ACK counts as INVITE).

    Without an RFC 3261 branch: Call-ID, From tag, CSeq number and top Via; the
    Request-URI and To tag are checked separately by ``_matches_2543`` because a
    response (looked up by ``send_response``) carries neither.
    """
    via = message.top_via
    branch = via.branch
    if is_rfc3261_branch(branch):
        return f"s|{branch}|{_sent_by(via)}|{method}"
    return "|".join(
        (
            "s2543",
            message.call_id,
            message.from_.tag or "",
            str(message.cseq.seq),
            via.transport,
            _sent_by(via),
            branch or "",
            method,
        )
    )


def _client_key(branch: str, method: str) -> str:
    """Client transaction key (17.1.3): our branch and the CSeq method."""
    return f"c|{branch}|{method}"


def _response_dest(via: Via, source: Peer) -> tuple[Via, Peer]:
    """Stamp the top Via (18.2.1, RFC 3581 section 4) and choose where responses go (18.2.2)."""
    host, port = source.address
    if via.has_rport:
        return via.with_params(received=host, rport=str(port)), source
    if via.host.strip("[]") != host:
        via = via.with_params(received=host)
    if source.reliable:
        return via, source
    return via, Peer(source.transport, (host, via.port or 5060))


def build_ack(invite: SipRequest, response: SipResponse) -> SipRequest:
    """ACK for a non-2xx final response, built by the client transaction (17.1.1.3).

    Request-URI, Call-ID, From, CSeq number and Route come from the INVITE, To from the
    response; the single Via is the INVITE's top Via, so the branch is the same.
    """
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", "70")
    for name in ("From", "Call-ID"):
        headers.add(name, invite.headers.get(name) or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("CSeq", f"{invite.cseq.seq} ACK")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    return SipRequest("ACK", invite.uri, headers)


def build_cancel(invite: SipRequest) -> SipRequest:
    """CANCEL for ``invite`` (section 9.1): same Request-URI, Call-ID, To, From, CSeq
    number (method CANCEL), a single Via equal to the INVITE's top Via, same Route."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", "70")
    for name in ("From", "To", "Call-ID"):
        headers.add(name, invite.headers.get(name) or "")
    headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    return SipRequest("CANCEL", invite.uri, headers)


# --------------------------------------------------------------------------------------
# Transactions and the layer
# --------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Transaction:
    """State of one transaction; read-only for the TU (``TransactionLayer.get``)."""

    id: str
    kind: TransactionKind
    state: TransactionState
    request: SipRequest
    peer: Peer
    """Client: where the request goes. Server: where responses go."""
    request_bytes: bytes = b""
    last_response: SipResponse | None = None
    last_response_bytes: bytes | None = None
    ack_bytes: bytes | None = None
    intervals: dict[str, float] = field(default_factory=dict)
    provisional_received: bool = False
    cancel_requested: bool = False
    cancel_sent: bool = False
    ok_tags: set[str] = field(default_factory=set)
    response_to_tag: str | None = None

    @property
    def is_invite(self) -> bool:
        """True for INVITE client and server transactions."""
        return self.kind in (_K.INVITE_CLIENT, _K.INVITE_SERVER)


@dataclass(slots=True, eq=False)
class _OkRetransmission:
    response: SipResponse
    data: bytes
    dest: Peer
    interval: float


class TransactionLayer:
    """All client and server transactions of one SIP endpoint.

    ``sent_by`` maps a transport name (as in ``Peer.transport``) to the advertised
    ``(host, port)`` used to add a Via to requests that have none.

    The I/O shell's loop, per wake-up (datagram or timer)::

        layer.receive(parse_message(data), Peer(transport_name, source), now)  # or
        layer.handle_timer(now)
        while (event := layer.next_event()) is not None:
            core.handle(event)              # may call send_response / send_request ...
        for data, dest, _tx in layer.datagrams_to_send():
            transports.send(dest.transport, data, dest.address)
        rearm_timer(layer.next_deadline())
    """

    def __init__(
        self,
        timers: TimerConfig = DEFAULT_TIMERS,
        *,
        sent_by: Mapping[str, Address] | None = None,
        branch_factory: Callable[[], str] = new_branch,
    ) -> None:
        self.timers = timers
        self._sent_by = dict(sent_by or {})
        self._new_branch = branch_factory
        self._transactions: dict[str, Transaction] = {}
        self._ok: dict[tuple[str, int, str, str], _OkRetransmission] = {}
        self._deadlines: dict[tuple[object, str], float] = {}
        self._heap: list[tuple[float, int, object, str]] = []
        self._seq = 0
        self._events: deque[Event] = deque()
        self._outgoing: list[Transmit] = []

    # --- I/O shell interface ----------------------------------------------------------

    def datagrams_to_send(self) -> list[Transmit]:
        """Take every message queued for sending, in order."""
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> Event | None:
        """Pop the oldest pending event, or ``None``."""
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        """Pop every pending event."""
        out = list(self._events)
        self._events.clear()
        return out

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must next be called, or ``None`` if no timer runs."""
        heap = self._heap
        while heap:
            deadline, _, owner, name = heap[0]
            if self._deadlines.get((owner, name)) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every timer whose deadline is at or before ``now``, in deadline order."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, owner, name = heapq.heappop(heap)
            if self._deadlines.get((owner, name)) != deadline:
                continue
            del self._deadlines[(owner, name)]
            if isinstance(owner, str):
                tx = self._transactions.get(owner)
                if tx is not None:
                    self._fire(tx, name, deadline)
            else:
                self._fire_ok(owner, name, deadline)  # type: ignore[arg-type]

    def transport_error(self, transmit: Transmit, now: float, reason: str = "") -> None:
        """Report that sending ``transmit`` failed (17.1.4, 17.2.4)."""
        self._events.append(TransportError(transmit.transaction_id, transmit.dest, reason))
        tx = self._transactions.get(transmit.transaction_id or "")
        if tx is not None and next_state(tx.kind, tx.state, _I.TRANSPORT_ERROR) is _S.TERMINATED:
            self._terminate(tx)

    def get(self, transaction_id: str) -> Transaction | None:
        """The live transaction ``transaction_id``, or ``None`` once terminated."""
        return self._transactions.get(transaction_id)

    def __len__(self) -> int:
        return len(self._transactions)

    # --- receiving --------------------------------------------------------------------

    def receive(self, message: SipRequest | SipResponse, source: Peer, now: float) -> None:
        """Feed one parsed message from ``source``; results come out as events and
        datagrams. Raises ``SipParseError`` when Via, CSeq, Call-ID or From is unusable."""
        if isinstance(message, SipResponse):
            self._receive_response(message, now)
        else:
            self._receive_request(message, source, now)

    def _receive_request(self, request: SipRequest, source: Peer, now: float) -> None:
        method = request.method
        tx, key = self._find_server(request, "INVITE" if method == "ACK" else method)
        if method == "ACK":
            self._receive_ack(tx, request, source, now)
            return
        if tx is not None:
            self._retransmitted_request(tx, now)
            return
        via, dest = _response_dest(request.top_via, source)
        if via is not request.top_via:
            request.headers.remove_first("Via")
            request.headers.insert_first("Via", via.serialize())
        if method == "INVITE":
            tx = Transaction(key, _K.INVITE_SERVER, _S.PROCEEDING, request, dest)
            self._transactions[key] = tx
            if self.timers.trying_delay == 0:
                self._send_trying(tx)
            else:
                self._arm(key, "TRYING", now + self.timers.trying_delay)
        else:
            tx = Transaction(key, _K.NON_INVITE_SERVER, _S.TRYING, request, dest)
            self._transactions[key] = tx
        if method == "CANCEL":
            self._receive_cancel(tx, request, source, now)
        else:
            self._events.append(RequestReceived(key, request, source))

    def _find_server(self, request: SipRequest, method: str) -> tuple[Transaction | None, str]:
        """The server transaction ``request`` matches (17.2.3), and the key a new one
        would get. Two RFC 2543 transactions differing only by Request-URI or To tag
        share the base key; the second one gets the key extended with both."""
        key = _server_key(request, method)
        tx = self._transactions.get(key)
        if tx is None or self._matches_2543(tx, request):
            return tx, key
        alt = f"{key}|{request.uri.serialize()}|{request.to.tag or ''}"
        tx = self._transactions.get(alt)
        if tx is not None and self._matches_2543(tx, request):
            return tx, alt
        return None, alt

    @staticmethod
    def _matches_2543(tx: Transaction, request: SipRequest) -> bool:
        """Extra RFC 2543 checks of 17.2.3: Request-URI and To tag (ACK: our To tag)."""
        if tx.id.startswith("s|"):
            return True
        if tx.request.uri != request.uri:
            return False
        if request.method == "CANCEL":
            return True  # 9.2: the To tag is not compared for CANCEL
        expected = tx.response_to_tag if request.method == "ACK" else tx.request.to.tag
        return request.to.tag == expected

    def _retransmitted_request(self, tx: Transaction, now: float) -> None:
        state = tx.state
        if next_state(tx.kind, state, _I.RECV_REQUEST) is None:
            return
        if tx.kind is _K.INVITE_SERVER and state is _S.PROCEEDING and tx.last_response is None:
            self._send_trying(tx)  # 17.2.1: the peer is retransmitting, answer now
        elif state in (_S.PROCEEDING, _S.COMPLETED) and tx.last_response_bytes is not None:
            self._queue(tx.last_response_bytes, tx.peer, tx.id)

    def _receive_ack(self, tx: Transaction | None, request: SipRequest, source: Peer, now: float) -> None:
        if tx is not None and tx.kind is _K.INVITE_SERVER:
            new = next_state(tx.kind, tx.state, _I.RECV_ACK)
            if new is _S.CONFIRMED:
                if tx.state is _S.COMPLETED:
                    tx.state = _S.CONFIRMED
                    self._disarm(tx.id, "G", "H")
                    self._start_or_end(tx, "I", self.timers.timer_i(tx.peer.reliable), now)
                return  # ACK of a non-2xx: absorbed by the transaction (17.2.1)
            if new is None:
                return  # ACK before any final response: nothing to acknowledge
        self._stop_ok(request)
        self._events.append(AckReceived(request, source, tx.id if tx is not None else None))

    def _receive_cancel(self, cancel_tx: Transaction, cancel: SipRequest, source: Peer, now: float) -> None:
        invite_tx, _ = self._find_server(cancel, "INVITE")
        if invite_tx is None:
            self._respond(cancel_tx, make_response(cancel, 481, to_tag=new_tag()), now)
            return
        to_tag = invite_tx.response_to_tag or new_tag()
        self._respond(cancel_tx, make_response(cancel, 200, to_tag=to_tag), now)
        if invite_tx.state is _S.PROCEEDING:
            self._events.append(CancelReceived(invite_tx.id, cancel, source))

    def _receive_response(self, response: SipResponse, now: float) -> None:
        branch = response.top_via.branch
        if branch is None:
            return
        tx = self._transactions.get(_client_key(branch, response.cseq.method))
        if tx is None:
            return  # stray response (17.1.3 / 18.1.2): discarded
        status = response.status_code
        inp = recv_input(status)
        old = tx.state
        new = next_state(tx.kind, old, inp)
        if new is None:
            return  # e.g. a late 1xx in Completed: discarded
        tx.state = new
        reliable = tx.peer.reliable
        if tx.kind is _K.INVITE_CLIENT:
            if old is _S.COMPLETED:
                if tx.ack_bytes is not None:
                    self._queue(tx.ack_bytes, tx.peer, tx.id)  # 17.1.1.2: re-send the ACK
                return
            retransmission = False
            if inp is _I.RECV_1XX:
                self._disarm(tx.id, "A", "B")
                tx.provisional_received = True
            elif inp is _I.RECV_2XX:
                tag = response.to.tag or ""
                retransmission = tag in tx.ok_tags
                tx.ok_tags.add(tag)
                if old is not _S.ACCEPTED:
                    self._disarm(tx.id, "A", "B", "CANCEL")
                    self._arm(tx.id, "M", now + self.timers.timer_m)
            else:
                self._disarm(tx.id, "A", "B", "CANCEL")
                ack = build_ack(tx.request, response)
                tx.ack_bytes = ack.serialize()
                self._queue(tx.ack_bytes, tx.peer, tx.id)
            self._events.append(ResponseReceived(tx.id, response, retransmission))
            if inp is _I.RECV_1XX and tx.cancel_requested and not tx.cancel_sent:
                self._send_cancel(tx, now)
            elif inp is _I.RECV_FINAL:
                self._start_or_end(tx, "D", self.timers.timer_d(reliable), now)
        else:
            if old is _S.COMPLETED:
                return  # 17.1.2.2: retransmitted final responses are absorbed
            self._events.append(ResponseReceived(tx.id, response))
            if new is _S.COMPLETED:
                self._disarm(tx.id, "E", "F")
                self._start_or_end(tx, "K", self.timers.timer_k(reliable), now)

    # --- TU actions -------------------------------------------------------------------

    def send_request(self, request: SipRequest, dest: Peer, now: float) -> str:
        """Start a client transaction for ``request`` and send it; return its id.

        A request without a Via gets one from ``sent_by``; a Via without an RFC 3261
        branch gets a fresh branch. ACK is not a transaction: use ``send_ack``.
        """
        if request.method == "ACK":
            raise LocalProtocolError("an ACK is not a transaction: use send_ack()")
        self._ensure_via(request, dest)
        branch = request.top_via.branch or ""
        key = _client_key(branch, request.cseq.method)
        if key in self._transactions:
            raise LocalProtocolError(f"a client transaction with branch {branch} already exists")
        invite = request.method == "INVITE"
        kind = _K.INVITE_CLIENT if invite else _K.NON_INVITE_CLIENT
        tx = Transaction(key, kind, _S.CALLING if invite else _S.TRYING, request, dest)
        tx.request_bytes = request.serialize()
        self._transactions[key] = tx
        self._queue(tx.request_bytes, dest, key)
        reliable = dest.reliable
        first = self.timers.timer_a(reliable) if invite else self.timers.timer_e(reliable)
        name = "A" if invite else "E"
        if first is not None:
            tx.intervals[name] = first
            self._arm(key, name, now + first)
        self._arm(key, "B" if invite else "F", now + (self.timers.timer_b if invite else self.timers.timer_f))
        return key

    def _ensure_via(self, request: SipRequest, dest: Peer) -> None:
        vias = request.headers.get_all("Via")
        if not vias:
            local = self._sent_by.get(dest.transport)
            if local is None:
                raise LocalProtocolError(f"request has no Via and no sent-by is known for {dest.transport}")
            host, port = local
            via = Via(dest.protocol.upper(), host, port, {"branch": self._new_branch(), "rport": None})
            request.headers.insert_first("Via", via.serialize())
        elif not is_rfc3261_branch(request.top_via.branch):
            via = request.top_via.with_params(branch=self._new_branch())
            request.headers.remove_first("Via")
            request.headers.insert_first("Via", via.serialize())

    def send_ack(self, ack: SipRequest, dest: Peer, now: float) -> None:
        """Send an ACK for a 2xx (section 13.2.2.4); it has no transaction."""
        if ack.method != "ACK":
            raise LocalProtocolError(f"send_ack() got a {ack.method}")
        self._ensure_via(ack, dest)
        self._queue(ack.serialize(), dest, None)

    def send_response(self, response: SipResponse, now: float, transaction_id: str | None = None) -> None:
        """Send a response through server transaction ``transaction_id`` (from
        ``RequestReceived``) or, by default, the one its Via and CSeq identify.

        Raises ``LocalProtocolError`` when no such transaction is alive or its state
        forbids the response (e.g. a second final response).
        """
        key = transaction_id or _server_key(response, response.cseq.method)
        tx = self._transactions.get(key)
        if tx is None:
            raise LocalProtocolError(f"no server transaction for {response.cseq.method} response {key}")
        self._respond(tx, response, now)

    def _respond(self, tx: Transaction, response: SipResponse, now: float) -> None:
        status = response.status_code
        old = tx.state
        new = next_state(tx.kind, old, send_input(status))
        if new is None:
            raise LocalProtocolError(f"cannot send {status} in state {old.value} of {tx.kind.value} {tx.id}")
        tx.state = new
        data = response.serialize()
        tx.last_response = response
        tx.last_response_bytes = data
        if status > 100 and response.to.tag is not None:
            tx.response_to_tag = response.to.tag
        self._queue(data, tx.peer, tx.id)
        reliable = tx.peer.reliable
        if tx.kind is _K.INVITE_SERVER:
            self._disarm(tx.id, "TRYING")
            if status >= 300:
                first = self.timers.timer_g(reliable)
                if first is not None:
                    tx.intervals["G"] = first
                    self._arm(tx.id, "G", now + first)
                self._arm(tx.id, "H", now + self.timers.timer_h)
            elif status >= 200:
                if old is _S.PROCEEDING:
                    self._arm(tx.id, "L", now + self.timers.timer_l)
                self._start_ok(response, data, tx.peer, now)
        elif new is _S.COMPLETED:
            self._start_or_end(tx, "J", self.timers.timer_j(reliable), now)

    def _send_trying(self, tx: Transaction) -> None:
        trying = make_response(tx.request, 100)
        timestamp = tx.request.headers.get("Timestamp")
        if timestamp is not None:
            trying.headers.add("Timestamp", timestamp)  # 8.2.6.1
        tx.last_response = trying
        tx.last_response_bytes = trying.serialize()
        self._disarm(tx.id, "TRYING")
        self._queue(tx.last_response_bytes, tx.peer, tx.id)

    def cancel(self, invite_id: str, now: float) -> str | None:
        """Cancel INVITE client transaction ``invite_id`` (section 9.1); return the
        CANCEL's transaction id, or ``None`` when a final response already arrived (or
        the transaction is gone).

        The CANCEL is held back until a provisional response has been received ("a
        CANCEL request SHOULD NOT be sent ... before a provisional response"). If no
        final response arrives 64*T1 after the CANCEL, ``TransactionTimeout`` with
        timer ``CANCEL`` is reported and the INVITE transaction is destroyed.
        """
        tx = self._transactions.get(invite_id)
        if tx is None:
            return None  # already terminated: nothing left to cancel
        if tx.kind is not _K.INVITE_CLIENT:
            raise LocalProtocolError(f"{invite_id} is not an INVITE client transaction")
        cancel_id = _client_key(tx.request.top_via.branch or "", "CANCEL")
        if tx.state not in (_S.CALLING, _S.PROCEEDING):
            return None
        if not tx.cancel_requested:
            tx.cancel_requested = True
            if tx.provisional_received:
                self._send_cancel(tx, now)
        return cancel_id

    def _send_cancel(self, tx: Transaction, now: float) -> None:
        tx.cancel_sent = True
        self.send_request(build_cancel(tx.request), tx.peer, now)
        self._arm(tx.id, "CANCEL", now + 64 * self.timers.t1)

    # --- timers -----------------------------------------------------------------------

    def _arm(self, owner: object, name: str, deadline: float) -> None:
        self._deadlines[(owner, name)] = deadline
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, owner, name))

    def _disarm(self, owner: object, *names: str) -> None:
        for name in names:
            self._deadlines.pop((owner, name), None)

    def _start_or_end(self, tx: Transaction, name: str, duration: float, now: float) -> None:
        if duration <= 0:
            self._terminate(tx)  # reliable transport: the timer is zero
        else:
            self._arm(tx.id, name, now + duration)

    def _fire(self, tx: Transaction, name: str, now: float) -> None:
        inp = TIMER_INPUTS[name]
        new = next_state(tx.kind, tx.state, inp)
        if new is None:
            return
        if new is _S.TERMINATED:
            if name in ("B", "F", "H", "CANCEL"):
                self._events.append(TransactionTimeout(tx.id, name))
            self._terminate(tx)
            return
        tx.state = new
        if name == "TRYING":
            if tx.last_response is None:
                self._send_trying(tx)
        elif name in ("A", "E", "G"):
            data = tx.request_bytes if name != "G" else tx.last_response_bytes
            if data is not None:
                self._queue(data, tx.peer, tx.id)
            interval = tx.intervals[name]
            if name == "A":
                interval = self.timers.next_interval(interval, capped=False)
            elif name == "E" and new is _S.PROCEEDING:
                interval = self.timers.t2  # 17.1.2.2: "reset with a value of T2"
            else:
                interval = self.timers.next_interval(interval, capped=True)
            tx.intervals[name] = interval
            self._arm(tx.id, name, now + interval)

    def _terminate(self, tx: Transaction) -> None:
        tx.state = _S.TERMINATED
        self._transactions.pop(tx.id, None)
        self._disarm(tx.id, *TIMER_INPUTS)
        self._events.append(TransactionTerminated(tx.id))

    # --- 2xx retransmission on behalf of the UAS core (13.3.1.4) ---------------------

    @staticmethod
    def _ok_key(message: SipRequest | SipResponse) -> tuple[str, int, str, str]:
        return (message.call_id, message.cseq.seq, message.from_.tag or "", message.to.tag or "")

    def _start_ok(self, response: SipResponse, data: bytes, dest: Peer, now: float) -> None:
        key = self._ok_key(response)
        if key in self._ok:
            return
        self._ok[key] = _OkRetransmission(response, data, dest, self.timers.t1)
        self._arm(key, "retransmit", now + self.timers.t1)
        self._arm(key, "giveup", now + 64 * self.timers.t1)

    def _stop_ok(self, ack: SipRequest) -> None:
        key = self._ok_key(ack)
        if self._ok.pop(key, None) is not None:
            self._disarm(key, "retransmit", "giveup")

    def _fire_ok(self, key: tuple[str, int, str, str], name: str, now: float) -> None:
        entry = self._ok.get(key)
        if entry is None:
            return
        if name == "giveup":
            del self._ok[key]
            self._disarm(key, "retransmit")
            self._events.append(AckTimeout(entry.response, entry.dest))
            return
        self._queue(entry.data, entry.dest, None)
        entry.interval = self.timers.next_interval(entry.interval, capped=True)
        self._arm(key, "retransmit", now + entry.interval)

    def _queue(self, data: bytes, dest: Peer, transaction_id: str | None) -> None:
        self._outgoing.append(Transmit(data, dest, transaction_id))
