"""Call legs: INVITE sessions on both sides of the switch (RFC 3261 sections 13-15).

An ``InboundLeg`` is an INVITE we answer, an ``OutboundLeg`` one we send; both are created
and tracked by ``LegManager`` (:mod:`trunkline.gateway.switch.leg_manager`). They are driven
through plain methods (``ring``/``answer``/``reject``/``hangup``; ``cancel``/``hangup``) and
report what the peer does as typed events on ``leg.events`` (an ``asyncio.Queue``):
``Provisional``, ``Answered``, ``Failed``, ``Cancelled``, ``Ended``, ``ReInvite``,
``InfoDtmf``, ``Refer``, ``Message``.

Re-INVITEs and UPDATEs with an offer are answered by ``leg.on_reinvite(offer)`` when set,
else by ``negotiate_answer`` against the leg's ``local_media`` (so a ``sendonly`` hold offer
gets ``recvonly``). Glare (491) and CSeq order come from the dialog layer. RFC 4028
session timers are honoured when the peer asks for them. B2BUA rule: every leg has its own
Call-ID, tags and branches; nothing is copied between legs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from trunkline.gateway.sip.auth import AuthError, ClientAuthState, parse_challenges, select_challenge
from trunkline.gateway.sip.core import ALLOW, SUPPORTED, IncomingRequest
from trunkline.gateway.sip.dialog import Dialog, DialogError, DialogState, ForkedInvite
from trunkline.gateway.sip.message import Headers, SipRequest, SipResponse, new_tag
from trunkline.gateway.sip.sdp import LocalMedia, SdpError, SessionDescription, negotiate_answer, parse_sdp
from trunkline.gateway.sip.transaction import (
    Event,
    Peer,
    ResponseReceived,
    TransactionTimeout,
    TransportError,
)
from trunkline.gateway.sip.uri import SipUri
from trunkline.gateway.sip.useragent import RequestFailed
from trunkline.gateway.switch.leg_events import (
    Answered,
    Cancelled,
    Ended,
    Failed,
    InfoDtmf,
    LegEvent,
    LegState,
    Message,
    Provisional,
    Refer,
    ReInvite,
    parse_dtmf_info,
    session_expires,
)

if TYPE_CHECKING:
    from trunkline.gateway.switch.leg_manager import LegManager

__all__ = [
    "Answered",
    "Cancelled",
    "Ended",
    "Failed",
    "InboundLeg",
    "InfoDtmf",
    "Leg",
    "LegEvent",
    "LegState",
    "Message",
    "OutboundLeg",
    "Provisional",
    "ReInvite",
    "Refer",
    "parse_dtmf_info",
]

log = logging.getLogger("trunkline.switch.legs")

# RFC 4028 section 4: Min-SE default and our floor.
MIN_SE = 90


# --------------------------------------------------------------------------------------
# Legs
# --------------------------------------------------------------------------------------


class Leg:
    """What inbound and outbound legs share: the dialog, in-dialog requests, events."""

    def __init__(self, manager: LegManager, call_id: str) -> None:
        self.manager = manager
        self.ua = manager.ua
        self.call_id = call_id
        self.state = LegState.CALLING
        self.dialog: Dialog | None = None
        self.dest: Peer | None = None
        """Where in-dialog requests go."""
        self.events: asyncio.Queue[LegEvent] = asyncio.Queue()
        self.local_media: LocalMedia | None = None
        self.local_sdp: bytes | None = None
        self.remote_sdp: bytes | None = None
        self.on_reinvite: Callable[[bytes | None], bytes | None] | None = None
        """Answer a re-offer (return the SDP answer, or None to refuse it with 488)."""
        self.ended: Ended | None = None
        self._ended = asyncio.get_running_loop().create_future()
        self._session_timer: asyncio.TimerHandle | None = None
        self._session_interval: int | None = None
        self._we_refresh = False
        self._bye_pending = False

    # --- events -------------------------------------------------------------------------

    def _emit(self, event: LegEvent) -> None:
        self.events.put_nowait(event)

    def _end(self, by_remote: bool, reason: str, status: int | None = None) -> None:
        if self.state is LegState.ENDED:
            return
        self.state = LegState.ENDED
        if self._session_timer is not None:
            self._session_timer.cancel()
            self._session_timer = None
        if self.dialog is not None:
            self.ua.core.remove_dialog(self.dialog)
        ended = Ended(by_remote, reason, status)
        self.ended = ended
        self._emit(ended)
        if not self._ended.done():
            self._ended.set_result(ended)
        self.manager._forget(self)

    async def wait_ended(self) -> Ended:
        """Wait until the leg is over."""
        result: Ended = await asyncio.shield(self._ended)
        return result

    @property
    def is_up(self) -> bool:
        """True once the session is established (2xx sent or received) and not ended."""
        return self.state in (LegState.ANSWERED, LegState.CONFIRMED)

    # --- in-dialog requests we send -----------------------------------------------------

    async def send_request(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> SipResponse:
        """Send an in-dialog request (INFO, NOTIFY, MESSAGE, OPTIONS, UPDATE) and await
        its final response (``RequestFailed`` on timeout)."""
        if self.dialog is None or self.dest is None:
            raise DialogError("the leg has no dialog yet")
        request = self.dialog.create_request(method, body, content_type, headers)
        return await self.ua.request(request, self.dest)

    async def reinvite(self, sdp: bytes, headers: Iterable[tuple[str, str]] = ()) -> bytes:
        """Send a re-INVITE offering ``sdp`` (hold: ``make_hold_offer``) and return the
        peer's answer. A 491 (glare, section 14.1) is retried after the dialog's random
        delay, twice at most; another failure raises ``RequestFailed``."""
        loop = self.ua.loop
        for _ in range(3):
            dialog, dest = self.dialog, self.dest
            if dialog is None or dest is None or not self.is_up:
                raise DialogError("the leg is not up")
            request = dialog.create_request("INVITE", sdp, "application/sdp", headers)
            response = await self._reinvite_once(dialog, dest, request)
            status = response.status_code
            if 200 <= status < 300:
                self.local_sdp = sdp
                self.remote_sdp = response.body or self.remote_sdp
                return response.body
            if status != 491 or dialog.retry_deadline is None:
                raise RequestFailed(status, response.reason)
            await asyncio.sleep(max(0.0, dialog.retry_deadline - loop.time()))
            dialog.handle_timer(loop.time())
        raise RequestFailed(491, "Request Pending")

    def _reinvite_once(self, dialog: Dialog, dest: Peer, request: SipRequest) -> asyncio.Future[SipResponse]:
        future: asyncio.Future[SipResponse] = self.ua.loop.create_future()

        def callback(event: Event, now: float) -> None:
            if isinstance(event, ResponseReceived):
                response = event.response
                if response.status_code < 200:
                    return
                if event.retransmission and dialog.last_ack is not None:
                    self.ua.send_ack(dialog.last_ack, dest)  # 13.2.2.4: ACK every 2xx
                    return
                dialog.receive_response(response, now)
                if 200 <= response.status_code < 300:
                    self.ua.send_ack(dialog.create_ack(), dest)
                if not future.done():
                    future.set_result(response)
            elif isinstance(event, TransactionTimeout | TransportError) and not future.done():
                dialog.local_invite_pending = False
                status = 408 if isinstance(event, TransactionTimeout) else 503
                future.set_exception(RequestFailed(status, "re-INVITE got no response"))

        self.ua.send_request(request, dest, callback)
        return future

    def _send_bye(self, reason: str) -> None:
        dialog = self.dialog
        if dialog is None or self.dest is None or dialog.state is DialogState.TERMINATED:
            self._end(False, reason)
            return
        bye = dialog.create_request("BYE")
        self.ua.send_request(bye, self.dest)
        self._end(False, reason)

    # --- DialogUser ---------------------------------------------------------------------

    def on_ack(self, request: SipRequest, now: float) -> None:
        """The ACK of our 2xx."""
        if self.state is LegState.ANSWERED:
            self.state = LegState.CONFIRMED
            if request.body and self.remote_sdp is None:
                self.remote_sdp = request.body  # late offer: the answer is in the ACK
            if self._bye_pending:
                self._send_bye("hangup")

    def on_ack_timeout(self, response: SipResponse, now: float) -> None:
        """13.3.1.4: no ACK for our 2xx: the session is not up, send BYE."""
        if response.cseq.method == "INVITE" and self.state is LegState.ANSWERED:
            self._send_bye("no ACK")

    def on_request(self, incoming: IncomingRequest, now: float) -> None:
        """An in-dialog request the dialog accepted."""
        request = incoming.request
        method = request.method
        tx = incoming.transaction_id
        respond = self.ua.respond
        if method == "BYE":
            respond(tx, request, 200)
            self._end(True, "bye")
        elif method in ("INVITE", "UPDATE"):
            self._reoffer(incoming)
        elif method == "INFO":
            respond(tx, request, 200)
            dtmf = parse_dtmf_info(request.content_type, request.body)
            if dtmf is not None:
                self._emit(InfoDtmf(*dtmf))
        elif method == "REFER":
            refer_to = request.headers.get("Refer-To")
            if refer_to is None:
                respond(tx, request, 400, reason="Missing Refer-To")
                return
            respond(tx, request, 202)
            self._emit(Refer(refer_to, request.headers.get("Referred-By")))
        elif method == "MESSAGE":
            respond(tx, request, 200)
            self._emit(Message(request.content_type or "text/plain", request.body))
        elif method == "OPTIONS":
            respond(tx, request, 200, headers=self.ua.core.capabilities())
        elif method == "NOTIFY":
            respond(tx, request, 200)
        else:
            respond(tx, request, 405, headers=(("Allow", ALLOW),))

    def _reoffer(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        offer = request.body or None
        answer: bytes | None
        if offer is None:
            answer = self.local_sdp if request.method == "INVITE" else None
        else:
            try:
                answer = self._answer_offer(offer)
            except SdpError as exc:
                warning = (("Warning", exc.warning),) if exc.warning else ()
                self._respond_dialog(incoming, exc.status_code, headers=warning)
                return
            if answer is None:
                self._respond_dialog(incoming, 488)
                return
            self.remote_sdp = offer
            self.local_sdp = answer
        headers: list[tuple[str, str]] = [("Contact", self._contact())]
        if answer is not None:
            headers.append(("Content-Type", "application/sdp"))
        se = session_expires(request)
        if se is not None or self._session_interval is not None:
            interval = se[0] if se is not None else self._session_interval or 1800
            refresher = (se[1] if se is not None else None) or "uac"
            headers.append(("Session-Expires", f"{interval};refresher={refresher}"))
            self._arm_session_timer(interval, we_refresh=refresher == "uas")
        self._respond_dialog(incoming, 200, headers=headers, body=answer or b"")
        self._emit(ReInvite(offer, answer, request.method))

    def _respond_dialog(
        self,
        incoming: IncomingRequest,
        status: int,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        response = self.ua.respond(
            incoming.transaction_id, incoming.request, status, headers=headers, body=body
        )
        if self.dialog is not None:
            self.dialog.response_sent(response)

    def _answer_offer(self, offer: bytes) -> bytes | None:
        if self.on_reinvite is not None:
            return self.on_reinvite(offer)
        if self.local_media is None:
            return None
        previous = parse_sdp(self.local_sdp) if self.local_sdp else None
        answer, _ = negotiate_answer(parse_sdp(offer), self.local_media, previous=previous)
        return answer.serialize()

    def _contact(self) -> str:
        raise NotImplementedError

    # --- RFC 4028 session timers --------------------------------------------------------

    def _arm_session_timer(self, interval: int, *, we_refresh: bool) -> None:
        self._session_interval = interval
        self._we_refresh = we_refresh
        if self._session_timer is not None:
            self._session_timer.cancel()
        loop = self.ua.loop
        if we_refresh:
            # Section 10: refresh at half the interval.
            self._session_timer = loop.call_later(interval / 2, self._refresh_session)
        else:
            # Section 10: without a refresh, BYE before expiry minus min(32, interval/3).
            delay = interval - min(32, interval / 3)
            self._session_timer = loop.call_later(delay, self._session_expired)

    def _session_expired(self) -> None:
        self._session_timer = None
        if self.is_up:
            log.info("session timer expired on call %s: hanging up", self.call_id)
            self._send_bye("session expired")

    def _refresh_session(self) -> None:
        self._session_timer = None
        if not self.is_up or self.dialog is None or self.dest is None:
            return
        interval = self._session_interval or 1800
        headers = (("Session-Expires", f"{interval};refresher=uac"), ("Supported", SUPPORTED))
        try:
            update = self.dialog.create_request("UPDATE", extra_headers=headers)
        except DialogError:
            return
        self.ua.send_request(update, self.dest, self._on_refresh_response)
        self._arm_session_timer(interval, we_refresh=True)

    def _on_refresh_response(self, event: Event, now: float) -> None:
        if isinstance(event, ResponseReceived) and event.response.status_code in (408, 481):
            self._end(True, "session refresh failed", event.response.status_code)


class InboundLeg(Leg):
    """An incoming call: the INVITE we answer. ``from_``/``to``/``request_uri``/``headers``
    and ``offer`` (the SDP body, or ``None`` for a late offer) describe it."""

    def __init__(self, manager: LegManager, incoming: IncomingRequest) -> None:
        request = incoming.request
        super().__init__(manager, request.call_id)
        self.request = request
        self.transaction_id = incoming.transaction_id
        self.source = incoming.source
        self.identity = incoming.identity
        self.from_ = request.from_
        self.to = request.to
        self.request_uri = request.uri
        self.headers: Headers = request.headers
        self.offer: bytes | None = request.body or None
        self._offer_sdp: SessionDescription | None = None
        self.remote_sdp = self.offer
        self.local_tag = new_tag()
        self._final_sent = False
        self._last_response: SipResponse | None = None
        target = request.contact[0].uri if request.contact else None
        self.dest = self._target_peer(target)

    def _end(self, by_remote: bool, reason: str, status: int | None = None) -> None:
        super()._end(by_remote, reason, status)
        # Our INVITE server transaction keeps the INVITE and our last response for up to 64*T1
        # (RFC 3261 section 17.2.1, RFC 6026): keep their text there, not the From/To/Via/Contact
        # objects parsed for the call (tens of objects per call the cyclic GC would walk).
        self.request.headers.drop_parsed()
        if self._last_response is not None:
            self._last_response.headers.drop_parsed()
            self._last_response = None

    @property
    def offer_sdp(self) -> SessionDescription | None:
        """The parsed offer (already checked when the INVITE arrived)."""
        if self._offer_sdp is None and self.offer:
            self._offer_sdp = parse_sdp(self.offer)
        return self._offer_sdp

    def _target_peer(self, target: SipUri | None) -> Peer:
        # Symmetric signalling (RFC 3581 spirit): a NATed phone's Contact may be private,
        # so in-dialog requests go back to where the INVITE came from.
        return self.source

    def _contact(self) -> str:
        return self.ua.core.contact(self.request_uri.user, self.source.transport)

    def _ensure_dialog(self, response: SipResponse) -> None:
        if self.dialog is None:
            self.dialog = Dialog.create_uas(
                self.request, response, local_contact=self._contact(), rng=self.manager.rng
            )
            self.ua.core.add_dialog(self.dialog, self)
        else:
            self.dialog.response_sent(response)

    def ring(self, early_sdp: bytes | None = None) -> None:
        """Send 180 Ringing, or 183 Session Progress with ``early_sdp`` (early media)."""
        if self._final_sent:
            return
        status = 183 if early_sdp else 180
        headers: list[tuple[str, str]] = [("Contact", self._contact()), ("Allow", ALLOW)]
        if early_sdp:
            headers.append(("Content-Type", "application/sdp"))
            self.local_sdp = early_sdp
        response = self.ua.respond(
            self.transaction_id,
            self.request,
            status,
            headers=headers,
            body=early_sdp or b"",
            to_tag=self.local_tag,
        )
        self._last_response = response
        self._ensure_dialog(response)
        self.state = LegState.EARLY

    def answer(self, sdp: bytes, *, local_media: LocalMedia | None = None) -> None:
        """Send 200 OK with ``sdp`` (retransmitted until the ACK, RFC 6026).

        ``local_media`` lets the leg answer later re-offers itself (hold/unhold)."""
        if self._final_sent:
            raise DialogError(f"call {self.call_id} already got a final response")
        self._final_sent = True
        self.local_sdp = sdp
        if local_media is not None:
            self.local_media = local_media
        headers: list[tuple[str, str]] = [
            ("Contact", self._contact()),
            ("Allow", ALLOW),
            ("Supported", SUPPORTED),
            ("Content-Type", "application/sdp"),
        ]
        se = session_expires(self.request)
        if se is not None:
            interval, refresher = max(se[0], MIN_SE), se[1] or "uac"
            headers.append(("Session-Expires", f"{interval};refresher={refresher}"))
            supported = [s.strip().lower() for s in self.request.headers.get_all("Supported")]
            if "timer" in supported:
                headers.append(("Require", "timer"))
        response = self.ua.respond(
            self.transaction_id, self.request, 200, headers=headers, body=sdp, to_tag=self.local_tag
        )
        self._last_response = response
        self._ensure_dialog(response)
        self.state = LegState.ANSWERED
        if se is not None:
            self._arm_session_timer(max(se[0], MIN_SE), we_refresh=(se[1] or "uac") == "uas")

    def reject(
        self, status: int = 486, reason: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Send a final error response (486 Busy Here by default) and end the leg."""
        if self._final_sent:
            return
        if not 300 <= status <= 699:
            raise ValueError(f"reject needs a 3xx-6xx status, got {status}")
        self._final_sent = True
        with contextlib.suppress(Exception):
            self._last_response = self.ua.respond(
                self.transaction_id,
                self.request,
                status,
                reason=reason,
                headers=headers,
                to_tag=self.local_tag,
            )
        self._end(False, "rejected", status)

    def hangup(self) -> None:
        """BYE once answered; before that, reject with 480 Temporarily Unavailable."""
        if self.state is LegState.ENDED:
            return
        if self.state is LegState.ANSWERED:
            # Section 15: no BYE on a dialog until the ACK for our 2xx (or its timeout).
            self._bye_pending = True
        elif self._final_sent:
            self._send_bye("hangup")
        else:
            self.reject(480)

    def on_cancel(self, transaction_id: str, now: float) -> None:
        """CancelUser: the caller cancelled before our final response (9.2): send 487."""
        if self._final_sent:
            return
        self._final_sent = True
        with contextlib.suppress(Exception):
            self._last_response = self.ua.respond(
                self.transaction_id, self.request, 487, to_tag=self.local_tag
            )
        self._emit(Cancelled())
        self._end(True, "cancelled", 487)


class OutboundLeg(Leg):
    """A call we place: our INVITE, its forks, CANCEL, BYE. ``result`` resolves with the
    final status (200 answered, else the failure code)."""

    def __init__(
        self,
        manager: LegManager,
        invite: SipRequest,
        dest: Peer,
        *,
        auth: tuple[str, str] | None = None,
        local_media: LocalMedia | None = None,
    ) -> None:
        super().__init__(manager, invite.call_id)
        self.invite = invite
        self.dest = dest
        self.invite_dest = dest
        self.local_sdp = invite.body or None
        self.local_media = local_media
        self.auth = auth
        self._auth_state = ClientAuthState()
        self._auth_tries = 0
        self.transaction_id: str | None = None
        self.fork = ForkedInvite(invite, local_contact=invite.headers.get("Contact"), rng=manager.rng)
        self.result: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._cancel_wanted = False

    def start(self) -> None:
        """Send the INVITE."""
        self.transaction_id = self.ua.send_request(self.invite, self.invite_dest, self._on_event)

    def _contact(self) -> str:
        return self.invite.headers.get("Contact") or self.ua.core.contact(None, self.invite_dest.transport)

    async def wait_answer(self) -> int:
        """Wait for the final status (200 when answered)."""
        status: int = await asyncio.shield(self.result)
        return status

    def _finish(self, status: int) -> None:
        if not self.result.done():
            self.result.set_result(status)

    def _on_event(self, event: Event, now: float) -> None:
        if isinstance(event, ResponseReceived):
            self._response(event.response, now)
        elif isinstance(event, TransactionTimeout):
            if self.state in (LegState.CALLING, LegState.EARLY):
                self._fail(408, "Request Timeout")
        elif isinstance(event, TransportError) and self.state in (LegState.CALLING, LegState.EARLY):
            self._fail(503, "Service Unavailable")

    def _fail(self, status: int, reason: str) -> None:
        self.fork.terminate_early()
        self._emit(Failed(status, reason))
        self._finish(status)
        self._end(True, "failed", status)

    def _response(self, response: SipResponse, now: float) -> None:
        status = response.status_code
        if status in (401, 407) and self.state is not LegState.ENDED and self._retry_with_auth(response):
            return
        if status >= 300:
            if self.state in (LegState.CALLING, LegState.EARLY):
                self.fork.receive_response(response, now)
                self._fail(status, response.reason)
            return
        if status == 100:
            return
        outcome = self.fork.receive_response(response, now)
        dialog = outcome.dialog
        if outcome.ack is not None and dialog is not None:
            self.ua.send_ack(outcome.ack, self._dialog_peer(dialog))
        if outcome.bye is not None and dialog is not None:
            self.ua.send_request(outcome.bye, self._dialog_peer(dialog))
            return
        if status < 200:
            if self.state is LegState.CALLING:
                self.state = LegState.EARLY if dialog is not None else self.state
            self._emit(Provisional(status, response.reason, response.body or None))
            return
        if dialog is not None and self.fork.confirmed is dialog and self.dialog is None:
            self.dialog = dialog
            self.dest = self._dialog_peer(dialog)
            self.ua.core.add_dialog(dialog, self)
            self.state = LegState.CONFIRMED
            self.remote_sdp = response.body or None
            self._emit(Answered(response.body))
            self._finish(200)
            se = response.headers.get("Session-Expires")
            if se is not None:
                parsed = session_expires(response)
                if parsed is not None:
                    self._arm_session_timer(parsed[0], we_refresh=(parsed[1] or "uac") == "uac")

    def _dialog_peer(self, dialog: Dialog) -> Peer:
        target = dialog.route_set[0].uri if dialog.route_set else dialog.remote_target
        host = target.host.strip("[]")
        try:
            return self.ua.core.peer_for(host, target.port, target.transport or self.invite_dest.protocol)
        except Exception:
            return self.invite_dest

    def _retry_with_auth(self, response: SipResponse) -> bool:
        if self.auth is None or self._auth_tries >= 2 or self._cancel_wanted:
            return False
        header = "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
        try:
            challenges = [c for v in response.headers.get_all(header) for c in parse_challenges(v)]
            challenge = select_challenge(challenges)
        except (AuthError, ValueError):
            return False
        self._auth_tries += 1
        user, password = self.auth
        old = self.invite
        headers = Headers([(n, v) for n, v in old.headers if n not in ("Via", "CSeq", "Content-Length")])
        headers.remove("Authorization")
        headers.remove("Proxy-Authorization")
        headers.add("CSeq", f"{old.cseq.seq + 1} INVITE")
        credentials = self._auth_state.answer(challenge, "INVITE", old.uri.serialize(), user, password)
        auth_name = "Authorization" if response.status_code == 401 else "Proxy-Authorization"
        headers.add(auth_name, credentials.serialize())
        self.invite = SipRequest("INVITE", old.uri, headers, old.body)
        self.fork = ForkedInvite(
            self.invite, local_contact=self.invite.headers.get("Contact"), rng=self.manager.rng
        )
        self.start()
        return True

    def cancel(self) -> None:
        """CANCEL the INVITE (9.1); a 2xx crossing it is ACKed and BYEd."""
        if self.state not in (LegState.CALLING, LegState.EARLY):
            return
        self._cancel_wanted = True
        self.fork.cancel()
        if self.transaction_id is not None:
            self.ua.cancel(self.transaction_id)

    def hangup(self) -> None:
        """BYE when answered, CANCEL before."""
        if self.state is LegState.CONFIRMED:
            self._send_bye("hangup")
        else:
            self.cancel()


__all__ += ["MIN_SE", "RequestFailed"]
