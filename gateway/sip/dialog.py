"""SIP dialogs, sans-I/O (RFC 3261 sections 12-15).

A ``Dialog`` holds the state of section 12.1 (Call-ID, tags, local/remote URI, remote
target, route set, CSeq numbers, secure flag) and builds in-dialog requests with
``create_request`` / ``create_ack``. It checks received in-dialog requests
(``receive_request``: CSeq order, 491 and 500 glare answers, target refresh, BYE) and
learns from responses (``receive_response``: early -> confirmed, route set recomputed,
target refresh, 491 retry deadline). Nothing here sends or schedules: the glare retry is
a deadline (``next_deadline`` / ``handle_timer``) and randomness comes from an injected
``random.Random``.

``ForkedInvite`` follows the dialogs one outgoing INVITE creates when a proxy forks it
(sections 12.1.2 and 13.2.2.4): one early dialog per To tag, the first 2xx confirms its
dialog, every further 2xx (or any 2xx after the INVITE was cancelled) is ACKed and BYEd.
``DialogTable`` finds the dialog of a request or answers 481 (section 12.2.2).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from trunkline.gateway.sip.headers import NameAddr
from trunkline.gateway.sip.message import Headers, SipRequest, SipResponse, make_response
from trunkline.gateway.sip.uri import SipUri

__all__ = [
    "TARGET_REFRESH",
    "Dialog",
    "DialogError",
    "DialogId",
    "DialogState",
    "DialogTable",
    "ForkOutcome",
    "ForkedInvite",
    "Reject",
]

DialogId = tuple[str, str, str]
"""``(Call-ID, local tag, remote tag)`` (section 12)."""

# Shared default generator: seeding a fresh ``random.Random()`` per dialog costs ~30 us.
_RNG = random.Random()

# Requests whose Contact replaces the remote target (12.2, RFC 3311, RFC 6665 4.4.1).
TARGET_REFRESH = frozenset(("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"))
# Requests whose Contact the UAC must provide (8.1.1.8, RFC 3311, 3515, 6665).
_NEEDS_CONTACT = TARGET_REFRESH


class DialogError(Exception):
    """A dialog cannot be created from these messages, or the TU asked for something the
    dialog state forbids (a new INVITE while one is in progress, a request on a
    terminated dialog)."""


class DialogState(enum.Enum):
    """Dialog states (section 12)."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class Reject:
    """The answer to an in-dialog request the dialog refuses."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()

    def response(self, request: SipRequest, to_tag: str | None = None) -> SipResponse:
        """The response to send for ``request``."""
        return make_response(request, self.status, self.reason, to_tag=to_tag, headers=self.headers)


@dataclass(slots=True, eq=False)
class Dialog:
    """State of one dialog (section 12.1). Build with ``create_uac`` / ``create_uas``."""

    call_id: str
    local_tag: str
    remote_tag: str
    local: NameAddr
    """Local URI (From of our requests), without tag."""
    remote: NameAddr
    """Remote URI (To of our requests), without tag."""
    remote_target: SipUri
    route_set: list[NameAddr]
    local_seq: int | None
    remote_seq: int | None
    state: DialogState
    owns_call_id: bool
    """True when we sent the initial INVITE (section 14.1 glare delays)."""
    secure: bool = False
    local_contact: str | None = None
    rng: random.Random = field(default_factory=lambda: _RNG)
    local_invite_pending: bool = False
    remote_invite_pending: bool = False
    invite_seq: int | None = None
    """CSeq number of our last INVITE (the ACK for its 2xx reuses it, 13.2.2.4)."""
    remote_invite_seq: int | None = None
    retry_deadline: float | None = None
    """When to retry our re-INVITE after a 491 (section 14.1), or ``None``."""
    last_ack: SipRequest | None = None

    # --- creation (12.1.1, 12.1.2) ----------------------------------------------------

    @classmethod
    def create_uac(
        cls,
        request: SipRequest,
        response: SipResponse,
        *,
        local_contact: str | None = None,
        rng: random.Random | None = None,
    ) -> Dialog:
        """The UAC's dialog from a 1xx (early) or 2xx (confirmed) carrying a To tag (12.1.2).

        The route set is the response's Record-Route *reversed*; the remote target its
        Contact; the local sequence number the request's CSeq.
        """
        status = response.status_code
        remote_tag = response.to.tag
        if not 100 < status < 300 or remote_tag is None:
            raise DialogError(f"a {status} response without To tag creates no dialog")
        local_tag = request.from_.tag
        if local_tag is None:
            raise DialogError("the request has no From tag")
        contacts = response.contact
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local=_untagged(request.from_),
            remote=_untagged(request.to),
            remote_target=contacts[0].uri if contacts else request.uri,
            route_set=list(reversed(response.record_route)),
            local_seq=request.cseq.seq,
            remote_seq=None,
            state=DialogState.EARLY if status < 200 else DialogState.CONFIRMED,
            owns_call_id=True,
            secure=request.uri.scheme == "sips",
            local_contact=local_contact,
            rng=rng or _RNG,
            local_invite_pending=request.method == "INVITE" and status < 200,
            invite_seq=request.cseq.seq if request.method == "INVITE" else None,
        )

    @classmethod
    def create_uas(
        cls,
        request: SipRequest,
        response: SipResponse,
        *,
        local_contact: str | None = None,
        rng: random.Random | None = None,
    ) -> Dialog:
        """The UAS's dialog once it sends ``response`` (1xx with To tag: early, 2xx:
        confirmed) to a dialog-creating ``request`` (12.1.1).

        The route set is the request's Record-Route in order; the remote target its
        Contact; the remote sequence number its CSeq.
        """
        status = response.status_code
        local_tag = response.to.tag
        if not 100 < status < 300 or local_tag is None:
            raise DialogError(f"a {status} response without To tag creates no dialog")
        contacts = request.contact
        if not contacts:
            raise DialogError(f"{request.method} without Contact cannot create a dialog (12.1.1)")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local=_untagged(request.to),
            remote=_untagged(request.from_),
            remote_target=contacts[0].uri,
            route_set=list(request.record_route),
            local_seq=None,
            remote_seq=request.cseq.seq,
            state=DialogState.EARLY if status < 200 else DialogState.CONFIRMED,
            owns_call_id=False,
            secure=request.uri.scheme == "sips",
            local_contact=local_contact,
            rng=rng or _RNG,
            remote_invite_pending=request.method == "INVITE" and status < 200,
            remote_invite_seq=request.cseq.seq if request.method == "INVITE" else None,
        )

    @property
    def id(self) -> DialogId:
        """``(Call-ID, local tag, remote tag)``."""
        return (self.call_id, self.local_tag, self.remote_tag)

    # --- building requests (12.2.1.1) ---------------------------------------------------

    def create_request(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> SipRequest:
        """A new in-dialog request (BYE, re-INVITE, UPDATE, INFO, REFER, NOTIFY, OPTIONS,
        MESSAGE...) with the next local CSeq. The Via is left to the transaction layer.

        A re-INVITE while an INVITE is in progress in either direction raises
        ``DialogError`` (14.1); so does any request on a terminated dialog. Building a
        BYE terminates the dialog (15.1.1: the session ends when the BYE is sent).
        """
        if method in ("ACK", "CANCEL"):
            raise DialogError(f"{method} is not built by create_request (use create_ack / build_cancel)")
        if self.state is DialogState.TERMINATED:
            raise DialogError(f"cannot send {method} on terminated dialog {self.id}")
        if method == "INVITE" and (self.local_invite_pending or self.remote_invite_pending):
            raise DialogError("an INVITE transaction is already in progress on this dialog (14.1)")
        if self.local_seq is None:
            # 12.2.1.1 and 8.1.1.5: an initial value below 2**31.
            self.local_seq = self.rng.randint(1, 0xFFFF)
        else:
            self.local_seq += 1
        request = self._build(method, self.local_seq, body, content_type, extra_headers)
        if method == "INVITE":
            self.local_invite_pending = True
            self.invite_seq = self.local_seq
            self.retry_deadline = None
        elif method == "BYE":
            self.state = DialogState.TERMINATED
        return request

    def create_ack(self, body: bytes = b"", content_type: str | None = None) -> SipRequest:
        """The ACK for a 2xx to our last INVITE: built as any in-dialog request but with
        the INVITE's CSeq number (13.2.2.4). Kept in ``last_ack`` so the same message
        can be re-sent when the 2xx is retransmitted."""
        if self.invite_seq is None:
            raise DialogError("no INVITE was sent on this dialog")
        self.last_ack = self._build("ACK", self.invite_seq, body, content_type, ())
        return self.last_ack

    def _build(
        self,
        method: str,
        seq: int,
        body: bytes,
        content_type: str | None,
        extra_headers: Iterable[tuple[str, str]],
    ) -> SipRequest:
        headers = Headers()
        uri = self.remote_target.without_headers()
        routes = [route.serialize() for route in self.route_set]
        if self.route_set and not self.route_set[0].uri.lr:
            # 12.2.1.1 strict routing: first route as Request-URI (without the
            # parameters a Request-URI may not carry), remote target as last Route.
            first = self.route_set[0].uri.without_headers()
            params = {k: v for k, v in first.params.items() if k != "method"}
            uri = SipUri(first.scheme, first.user, first.password, first.host, first.port, params)
            routes = [*routes[1:], f"<{self.remote_target.serialize()}>"]
        for route in routes:
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", self.local.with_tag(self.local_tag).serialize())
        headers.add("To", self.remote.with_tag(self.remote_tag).serialize())
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{seq} {method}")
        if self.local_contact is not None and method in _NEEDS_CONTACT:
            headers.add("Contact", self.local_contact)
        for name, value in extra_headers:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", content_type or "application/sdp")
        return SipRequest(method, uri, headers, body)

    # --- receiving (12.2.2, 14) -----------------------------------------------------------

    def receive_request(self, request: SipRequest, now: float) -> Reject | None:
        """Check and apply an in-dialog request; return how to refuse it, or ``None``.

        * 12.2.2: a CSeq lower than the remote sequence number -> 500.
        * 14.1: an INVITE while our INVITE is in progress -> 491.
        * 14.2: an INVITE while the peer's previous INVITE awaits our final response ->
          500 with ``Retry-After`` of 0-10 s (random).
        * target refresh requests replace the remote target with their Contact;
          BYE terminates the dialog.
        """
        method = request.method
        if method == "ACK":
            return None  # ACK and CANCEL carry the INVITE's CSeq (12.2.2)
        if self.state is DialogState.TERMINATED:
            return Reject(481, "Call/Transaction Does Not Exist")
        seq = request.cseq.seq
        if method != "CANCEL":
            if self.remote_seq is not None and seq < self.remote_seq:
                return Reject(
                    500, "Server Internal Error", (("Warning", '399 trunkline "CSeq out of order"'),)
                )
            self.remote_seq = seq
        if method == "INVITE":
            if self.local_invite_pending:
                return Reject(491, "Request Pending")
            if self.remote_invite_pending:
                retry_after = self.rng.randint(0, 10)
                return Reject(500, "Server Internal Error", (("Retry-After", str(retry_after)),))
            self.remote_invite_pending = True
            self.remote_invite_seq = seq
        if method in TARGET_REFRESH and request.contact:
            self.remote_target = request.contact[0].uri
        if method == "BYE":
            self.state = DialogState.TERMINATED
        return None

    def response_sent(self, response: SipResponse) -> None:
        """Tell the dialog about a response we sent to an in-dialog (or the initial)
        request: a final response to the peer's INVITE ends its pending state (14.2); a
        2xx confirms an early dialog; a non-2xx to the initial INVITE ends it (12.3)."""
        status = response.status_code
        if response.cseq.method != "INVITE" or status < 200:
            return
        if response.cseq.seq == self.remote_invite_seq:
            self.remote_invite_pending = False
        if status < 300:
            if self.state is DialogState.EARLY:
                self.state = DialogState.CONFIRMED
        elif self.state is DialogState.EARLY:
            self.state = DialogState.TERMINATED

    def receive_response(self, response: SipResponse, now: float) -> None:
        """Apply a response to a request we sent on this dialog.

        2xx to INVITE confirms an early dialog and recomputes its route set (13.2.2.4);
        2xx to a target refresh request replaces the remote target (12.2.1.2); 491 to
        our INVITE arms ``retry_deadline`` (14.1); 481 and 408 terminate the dialog
        (12.2.1.2); any other final response to the initial INVITE ends an early dialog.
        """
        status = response.status_code
        method = response.cseq.method
        if status < 200:
            if method == "INVITE" and self.state is DialogState.EARLY and response.contact:
                self.remote_target = response.contact[0].uri
            return
        if method == "INVITE" and response.cseq.seq == self.invite_seq:
            self.local_invite_pending = False
        if status < 300:
            if method == "INVITE" and self.state is DialogState.EARLY:
                self.state = DialogState.CONFIRMED
                self.route_set = list(reversed(response.record_route))
            if method in TARGET_REFRESH and response.contact:
                self.remote_target = response.contact[0].uri
            return
        if status in (481, 408):
            self.state = DialogState.TERMINATED
        elif method == "INVITE" and status == 491 and self.state is DialogState.CONFIRMED:
            self.retry_deadline = now + self.glare_delay()
        elif method == "INVITE" and self.state is DialogState.EARLY:
            self.state = DialogState.TERMINATED

    def glare_delay(self) -> float:
        """Section 14.1 retry delay after a 491, in units of 10 ms: 2.1-4 s when we own
        the Call-ID (we sent the initial INVITE), 0-2 s otherwise."""
        if self.owns_call_id:
            return self.rng.randint(210, 400) / 100
        return self.rng.randint(0, 200) / 100

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` should run (the 491 retry), or ``None``."""
        return self.retry_deadline

    def handle_timer(self, now: float) -> bool:
        """True (once) when the 491 retry is due: the TU then re-sends its re-INVITE."""
        if self.retry_deadline is not None and now >= self.retry_deadline:
            self.retry_deadline = None
            return True
        return False


def _untagged(addr: NameAddr) -> NameAddr:
    params = {k: v for k, v in addr.params.items() if k != "tag"}
    return NameAddr(addr.uri, addr.display_name, params)


# --------------------------------------------------------------------------------------
# Forking (12.1.2, 13.2.2.4)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForkOutcome:
    """What one response to our INVITE means: the dialog it belongs to (if any), the ACK
    to send for a 2xx and, for an unwanted 2xx (another fork, or after CANCEL), the BYE
    that ends that dialog at once."""

    dialog: Dialog | None
    created: bool = False
    ack: SipRequest | None = None
    bye: SipRequest | None = None


class ForkedInvite:
    """The dialogs created by one outgoing initial INVITE.

    Each To tag in a 1xx makes an early dialog; the first 2xx confirms its dialog
    (``confirmed``). Section 13.2.2.4: a 2xx from another fork creates a dialog that
    the UAC must ACK and, not wanting it, end with a BYE; after ``cancel()`` every 2xx
    is treated that way (a CANCEL crossing a 200: the call is up, so hang it up).
    """

    def __init__(
        self, invite: SipRequest, *, local_contact: str | None = None, rng: random.Random | None = None
    ) -> None:
        self.invite = invite
        self.local_contact = local_contact
        self.rng = rng or _RNG
        self.dialogs: dict[str, Dialog] = {}
        self.confirmed: Dialog | None = None
        self.cancelled = False

    def cancel(self) -> None:
        """Record that the TU cancelled the INVITE: any 2xx from now on is ACKed and BYEd."""
        self.cancelled = True

    def receive_response(self, response: SipResponse, now: float) -> ForkOutcome:
        """Apply one response of the INVITE (retransmissions included)."""
        status = response.status_code
        tag = response.to.tag
        if status >= 300:
            for dialog in self.dialogs.values():
                if dialog.state is DialogState.EARLY:
                    dialog.state = DialogState.TERMINATED  # 12.3 / 13.2.2.3
            return ForkOutcome(None)
        if tag is None or status == 100:
            return ForkOutcome(None)
        known = self.dialogs.get(tag)
        created = known is None
        if known is None:
            dialog = Dialog.create_uac(self.invite, response, local_contact=self.local_contact, rng=self.rng)
            self.dialogs[tag] = dialog
        elif status >= 200 and known.last_ack is not None:
            return ForkOutcome(known, ack=known.last_ack)  # retransmitted 2xx: same ACK again
        else:
            dialog = known
            dialog.receive_response(response, now)
        if status < 200:
            return ForkOutcome(dialog, created)
        ack = dialog.create_ack()
        if dialog.state is DialogState.TERMINATED:
            return ForkOutcome(dialog, created, ack=ack)
        if self.confirmed is None and not self.cancelled:
            self.confirmed = dialog
            return ForkOutcome(dialog, created, ack=ack)
        return ForkOutcome(dialog, created, ack=ack, bye=dialog.create_request("BYE"))

    def terminate_early(self) -> list[Dialog]:
        """End the early dialogs that never got a 2xx (call when the INVITE transaction
        ends, 13.2.2.4); return them."""
        ended = [d for d in self.dialogs.values() if d.state is DialogState.EARLY]
        for dialog in ended:
            dialog.state = DialogState.TERMINATED
        return ended


# --------------------------------------------------------------------------------------
# Dialog lookup (12.2.2)
# --------------------------------------------------------------------------------------


class DialogTable:
    """Dialogs by id; matches in-dialog requests and answers 481 for unknown ones."""

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def add(self, dialog: Dialog) -> None:
        """Register ``dialog`` (replacing one with the same id)."""
        self._dialogs[dialog.id] = dialog

    def remove(self, dialog: Dialog) -> None:
        """Forget ``dialog`` (no error if unknown)."""
        self._dialogs.pop(dialog.id, None)

    def get(self, dialog_id: DialogId) -> Dialog | None:
        """The dialog with ``dialog_id``, or ``None``."""
        return self._dialogs.get(dialog_id)

    def __len__(self) -> int:
        return len(self._dialogs)

    def for_request(self, request: SipRequest) -> Dialog | None:
        """The dialog a received request belongs to (local tag = To tag)."""
        return self._dialogs.get((request.call_id, request.to.tag or "", request.from_.tag or ""))

    def for_response(self, response: SipResponse) -> Dialog | None:
        """The dialog a received response belongs to (local tag = From tag)."""
        return self._dialogs.get((response.call_id, response.from_.tag or "", response.to.tag or ""))

    def receive_request(self, request: SipRequest, now: float) -> tuple[Dialog | None, Reject | None]:
        """Route a received request: ``(None, None)`` for an out-of-dialog request (no
        To tag) or a stray ACK; ``(None, Reject(481))`` for an unknown dialog (12.2.2);
        otherwise the dialog and its verdict (``Dialog.receive_request``). A dialog
        ended by a BYE is removed."""
        if request.to.tag is None:
            return None, None
        dialog = self.for_request(request)
        if dialog is None:
            if request.method == "ACK":
                return None, None
            return None, Reject(481, "Call/Transaction Does Not Exist")
        verdict = dialog.receive_request(request, now)
        if dialog.state is DialogState.TERMINATED:
            self.remove(dialog)
        return dialog, verdict
