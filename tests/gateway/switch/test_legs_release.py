"""An ended inbound leg leaves only the text of its INVITE and last response to the server
transaction that keeps them for 64*T1: the parsed views are dropped and parsed again on demand."""

from __future__ import annotations

from trunkline.gateway.sip.message import SipResponse
from trunkline.gateway.sip.sdp import LocalMedia, negotiate_answer, parse_sdp

from .test_legs import OFFER, World, invite, statuses


async def test_bye_drops_the_parsed_views_of_the_invite_and_the_200() -> None:
    w = World()
    w.deliver(invite(), OFFER)
    (leg,) = w.legs
    leg.ring()
    local = LocalMedia("127.0.0.1", 30000)
    answer, _ = negotiate_answer(parse_sdp(OFFER), local)
    leg.answer(answer.serialize(), local_media=local)
    ok = leg._last_response
    assert isinstance(ok, SipResponse) and ok.status_code == 200
    assert ok.to.tag == leg.local_tag and leg.request.from_.tag == "ftag"
    assert leg.request.headers._cache and ok.headers._cache  # parsed while the call was set up
    w.deliver(invite(method="ACK", to_tag=leg.local_tag))
    assert statuses(w.deliver(invite(method="BYE", cseq=2, to_tag=leg.local_tag))) == [200]
    assert not leg.request.headers._cache and not ok.headers._cache
    # Still readable, and equal to what was parsed before.
    assert leg.request.from_ == leg.from_ and leg.request.to == leg.to
    assert ok.to.tag == leg.local_tag and ok.cseq.seq == 1
    # A retransmitted INVITE is still absorbed by its transaction (no second leg, no answer).
    assert statuses(w.deliver(invite(), OFFER)) == []
    assert len(w.legs) == 1


async def test_reject_drops_the_parsed_views_and_the_ack_is_still_matched() -> None:
    w = World()
    w.deliver(invite(call_id="call2"), OFFER)
    (leg,) = w.legs
    leg.reject(486)
    (busy,) = w.net.take()
    assert isinstance(busy, SipResponse) and busy.status_code == 486
    assert not leg.request.headers._cache
    # The ACK of the 486 stops its retransmissions (17.2.1): nothing is sent again after it.
    ack = invite(call_id="call2", method="ACK", to_tag=leg.local_tag)
    w.deliver(ack.replace("branch=z9hG4bKcall21ACK", "branch=z9hG4bKcall21INVITE"))
    w.core.handle_timer(w.ua.now() + 10)
    w.ua.flush()
    assert w.net.take() == []
