"""The leg manager: creates and tracks the call legs of one user agent (RFC 3261 section 13).

``LegManager`` takes every new INVITE that passed validation and the inbound guard, checks
what the switch needs before a leg exists (a Contact, an SDP body if any, an acceptable
RFC 4028 ``Session-Expires``), answers 100 Trying at once and hands the application an
``InboundLeg``; ``call()`` builds our INVITE (own Call-ID, tags, Contact: the B2BUA rule)
and starts an ``OutboundLeg``. Legs live in ``legs`` by Call-ID until they end.
Out-of-dialog MESSAGE requests are answered through ``on_message``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable

from trunkline.gateway.sip.core import ALLOW, SUPPORTED, IncomingRequest
from trunkline.gateway.sip.headers import NameAddr
from trunkline.gateway.sip.message import Headers, SipRequest, new_call_id, new_tag
from trunkline.gateway.sip.sdp import LocalMedia, SdpError, parse_sdp
from trunkline.gateway.sip.transaction import Peer
from trunkline.gateway.sip.uri import SipUri
from trunkline.gateway.sip.useragent import UserAgent
from trunkline.gateway.switch.leg_events import session_expires
from trunkline.gateway.switch.legs import MIN_SE, InboundLeg, Leg, OutboundLeg

__all__ = ["LegManager"]


class LegManager:
    """Creates legs: ``InboundLeg`` for every admitted INVITE (handed to ``on_inbound``, or
    queued on ``incoming``), ``OutboundLeg`` through ``call()``."""

    def __init__(self, ua: UserAgent, *, on_inbound: Callable[[InboundLeg], None] | None = None) -> None:
        self.ua = ua
        self.on_inbound = on_inbound
        self.incoming: asyncio.Queue[InboundLeg] = asyncio.Queue()
        self.legs: dict[str, Leg] = {}
        self.rng = random.Random()
        """Shared by the dialogs (glare delays, first CSeq): one generator, not one per call."""
        self.on_message: Callable[[IncomingRequest], int] | None = None
        """Out-of-dialog MESSAGE handler returning the status to answer (default 200)."""
        ua.core.on("INVITE", self._on_invite)
        ua.core.on("MESSAGE", self._on_message)

    def _forget(self, leg: Leg) -> None:
        self.legs.pop(leg.call_id, None)

    def _on_message(self, incoming: IncomingRequest, now: float) -> None:
        status = self.on_message(incoming) if self.on_message is not None else 200
        self.ua.core.respond(incoming.transaction_id, incoming.request, status, now)

    def _on_invite(self, incoming: IncomingRequest, now: float) -> None:
        request = incoming.request
        core = self.ua.core
        tx = incoming.transaction_id
        core.respond(tx, request, 100, now)  # 100 Trying at once (17.2.1)
        if not request.contact:
            core.respond(tx, request, 400, now, reason="Missing Contact")  # 12.1.1 / 8.1.1.8
            return
        if request.body:
            kind = (request.content_type or "").split(";", 1)[0].strip().lower()
            if kind != "application/sdp":
                core.respond(tx, request, 415, now, headers=(("Accept", "application/sdp"),))
                return
            try:
                offer = parse_sdp(request.body)
            except SdpError as exc:
                headers = (("Warning", exc.warning),) if exc.warning else ()
                core.respond(tx, request, exc.status_code, now, headers=headers)
                return
        else:
            offer = None
        se = session_expires(request)
        if se is not None and se[0] < MIN_SE:
            core.respond(tx, request, 422, now, headers=(("Min-SE", str(MIN_SE)),))  # RFC 4028 section 5
            return
        leg = InboundLeg(self, incoming)
        leg._offer_sdp = offer
        self.legs[leg.call_id] = leg
        core.watch_cancel(tx, leg)
        if self.on_inbound is not None:
            self.on_inbound(leg)
        else:
            self.incoming.put_nowait(leg)

    def call(
        self,
        target: SipUri,
        dest: Peer,
        *,
        from_uri: SipUri,
        from_display: str | None = None,
        to_uri: SipUri | None = None,
        sdp_offer: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        auth: tuple[str, str] | None = None,
        local_media: LocalMedia | None = None,
        contact_user: str | None = None,
    ) -> OutboundLeg:
        """Place a call to ``target`` through ``dest`` (a resolved ``Peer``); returns the
        started ``OutboundLeg``. ``auth`` = (user, password) answers 401/407 challenges."""
        core = self.ua.core
        call_id = new_call_id(core.advertised(dest.transport)[0])
        hdrs = Headers()
        hdrs.add("Max-Forwards", "70")
        hdrs.add("From", NameAddr(from_uri, from_display, {"tag": new_tag()}).serialize())
        hdrs.add("To", NameAddr(to_uri or target).serialize())
        hdrs.add("Call-ID", call_id)
        hdrs.add("CSeq", "1 INVITE")
        hdrs.add("Contact", core.contact(contact_user or from_uri.user, dest.transport))
        hdrs.add("Allow", ALLOW)
        hdrs.add("Supported", SUPPORTED)
        for name, value in headers:
            hdrs.add(name, value)
        if sdp_offer:
            hdrs.add("Content-Type", "application/sdp")
        invite = SipRequest("INVITE", target.without_headers(), hdrs, sdp_offer)
        leg = OutboundLeg(self, invite, dest, auth=auth, local_media=local_media)
        self.legs[call_id] = leg
        leg.start()
        return leg
