"""Dialog tests (RFC 3261 sections 12-15): creation, forking, routing, CSeq and glare."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
from typing import cast

import pytest

from tests.gateway.sip.transaction_wire import A_ADDR, Wire
from trunkline.gateway.sip import Headers, SipRequest, SipResponse, SipUri, make_response, parse_message
from trunkline.gateway.sip.dialog import (
    Dialog,
    DialogError,
    DialogState,
    DialogTable,
    ForkedInvite,
    Reject,
)
from trunkline.gateway.sip.timers import TimerConfig
from trunkline.gateway.sip.transaction import (
    AckReceived,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
)

ALICE_CONTACT = "<sip:alice@192.0.2.1:5060>"


def invite(extra: str = "", cseq: int = 1) -> SipRequest:
    text = (
        "INVITE sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1\r\n"
        "Max-Forwards: 70\r\n"
        'From: "Alice" <sip:alice@example.org>;tag=atag\r\n'
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: dlg-1@192.0.2.1\r\n"
        f"CSeq: {cseq} INVITE\r\n"
        f"Contact: {ALICE_CONTACT}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


RECORD_ROUTE = "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"


def answer(
    req: SipRequest,
    status: int,
    tag: str = "btag",
    contact: str = "<sip:bob@192.0.2.2:5062>",
    rr: bool = True,
) -> SipResponse:
    headers = [("Contact", contact)]
    if rr:
        headers.append(("Record-Route", RECORD_ROUTE))
    return make_response(req, status, to_tag=tag, headers=headers)


def in_dialog(
    method: str, cseq: int, *, contact: str | None = None, to_tag: str = "btag", from_tag: str = "atag"
) -> SipRequest:
    """A request from Alice to Bob inside the dialog, as Bob receives it."""
    text = (
        f"{method} sip:bob@192.0.2.2:5062 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx" + str(cseq) + method + "\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@example.org>;tag={from_tag}\r\n"
        f"To: <sip:bob@example.com>;tag={to_tag}\r\n"
        "Call-ID: dlg-1@192.0.2.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        + (f"Contact: {contact}\r\n" if contact else "")
        + "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def uas_dialog(rng: random.Random | None = None) -> Dialog:
    req = invite(extra=f"Record-Route: {RECORD_ROUTE}\r\n")
    return Dialog.create_uas(
        req, answer(req, 200, rr=False), local_contact="<sip:bob@192.0.2.2:5062>", rng=rng
    )


def uac_dialog(rng: random.Random | None = None) -> Dialog:
    req = invite()
    return Dialog.create_uac(req, answer(req, 200), local_contact=ALICE_CONTACT, rng=rng)


# --- creation -------------------------------------------------------------------------------


def test_uac_dialog_from_180_is_early_and_confirmed_by_200() -> None:
    req = invite()
    ringing = answer(req, 180, contact="<sip:bob@192.0.2.9>", rr=False)
    dialog = Dialog.create_uac(req, ringing, local_contact=ALICE_CONTACT)
    assert dialog.state is DialogState.EARLY
    assert dialog.id == ("dlg-1@192.0.2.1", "atag", "btag")
    assert dialog.local_seq == 1 and dialog.remote_seq is None
    assert dialog.route_set == []
    assert dialog.remote_target == SipUri.parse("sip:bob@192.0.2.9")
    assert dialog.local_invite_pending
    dialog.receive_response(answer(req, 200), 1.0)
    assert dialog.state.value == "confirmed"
    assert not dialog.local_invite_pending
    # 13.2.2.4: route set recomputed from the 2xx, reversed for the UAC (12.1.2).
    assert [r.uri.host for r in dialog.route_set] == ["p2.example.com", "p1.example.com"]
    assert dialog.remote_target == SipUri.parse("sip:bob@192.0.2.2:5062")


def test_uas_dialog_keeps_record_route_order_and_request_contact() -> None:
    req = invite(extra=f"Record-Route: {RECORD_ROUTE}\r\n")
    dialog = Dialog.create_uas(req, answer(req, 180, tag="b1", rr=False))
    assert dialog.state is DialogState.EARLY
    assert dialog.id == ("dlg-1@192.0.2.1", "b1", "atag")
    assert [r.uri.host for r in dialog.route_set] == ["p1.example.com", "p2.example.com"]
    assert dialog.remote_target == SipUri.parse("sip:alice@192.0.2.1:5060")
    assert dialog.remote_seq == 1 and dialog.local_seq is None
    assert dialog.remote_invite_pending
    dialog.response_sent(answer(req, 200, tag="b1"))
    assert dialog.state.value == "confirmed" and not dialog.remote_invite_pending


def test_no_dialog_without_to_tag_or_from_non_2xx() -> None:
    req = invite()
    with pytest.raises(DialogError, match="without To tag"):
        Dialog.create_uac(req, make_response(req, 180))
    with pytest.raises(DialogError):
        Dialog.create_uac(req, answer(req, 486))
    with pytest.raises(DialogError, match="Contact"):
        Dialog.create_uas(req.__class__(req.method, req.uri, _without(req, "Contact")), answer(req, 200))


def _without(req: SipRequest, name: str) -> Headers:
    headers = req.headers.copy()
    headers.remove(name)
    return headers


def test_early_dialog_ends_on_non_2xx_final_response() -> None:
    req = invite()
    dialog = Dialog.create_uac(req, answer(req, 183))
    dialog.receive_response(answer(req, 486), 2.0)
    assert dialog.state is DialogState.TERMINATED


# --- requests within a dialog ---------------------------------------------------------------


def test_loose_routing_request_uses_remote_target_and_route_set_in_order() -> None:
    dialog = uac_dialog(random.Random(1))
    bye = dialog.create_request("BYE")
    assert bye.uri == SipUri.parse("sip:bob@192.0.2.2:5062")
    assert bye.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert bye.cseq.seq == 2 and bye.cseq.method == "BYE"
    assert bye.from_.tag == "atag" and bye.to.tag == "btag"
    assert bye.from_.display_name == "Alice"
    assert bye.call_id == "dlg-1@192.0.2.1"
    assert "Contact" not in bye.headers
    assert bye.headers.get("Via") is None  # added by the transaction layer
    assert dialog.state is DialogState.TERMINATED  # 15.1.1
    with pytest.raises(DialogError, match="terminated"):
        dialog.create_request("INFO")


def test_strict_routing_puts_first_route_in_request_uri_and_target_last() -> None:
    req = invite()
    ok = make_response(
        req,
        200,
        to_tag="btag",
        headers=[
            ("Contact", "<sip:bob@192.0.2.2:5062>"),
            ("Record-Route", "<sip:p2.example.com;lr>, <sip:strict.example.com;transport=tcp;method=INVITE>"),
        ],
    )
    dialog = Dialog.create_uac(req, ok)
    info = dialog.create_request("INFO", b"Signal=1\r\n", "application/dtmf-relay")
    # Reversed route set: strict.example.com (no lr) first -> 12.2.1.1 strict routing.
    assert info.uri.serialize() == "sip:strict.example.com;transport=tcp"
    assert info.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:bob@192.0.2.2:5062>"]
    assert info.headers.get("Content-Type") == "application/dtmf-relay"
    assert info.body == b"Signal=1\r\n"


def test_request_builder_methods_and_contact() -> None:
    dialog = uac_dialog()
    seqs = []
    for method in ("UPDATE", "INFO", "REFER", "NOTIFY", "OPTIONS", "MESSAGE"):
        req = dialog.create_request(method, extra_headers=[("X-Test", method)])
        seqs.append(req.cseq.seq)
        assert req.method == method and req.headers.get("X-Test") == method
        assert ("Contact" in req.headers) == (method in ("UPDATE", "REFER", "NOTIFY"))
    assert seqs == [2, 3, 4, 5, 6, 7]


def test_ack_for_2xx_reuses_the_invite_cseq() -> None:
    dialog = uac_dialog()
    dialog.create_request("INFO")  # CSeq 2
    ack = dialog.create_ack()
    assert ack.method == "ACK" and ack.cseq.seq == 1 and ack.cseq.method == "ACK"
    reinvite = dialog.create_request("INVITE", b"v=0\r\n")
    assert reinvite.cseq.seq == 3
    assert reinvite.headers.get("Content-Type") == "application/sdp"
    assert reinvite.headers.get("Contact") == ALICE_CONTACT
    assert dialog.create_ack().cseq.seq == 3
    with pytest.raises(DialogError, match="already in progress"):
        dialog.create_request("INVITE")


def test_uas_first_local_cseq_comes_from_the_rng() -> None:
    dialog = uas_dialog(random.Random(7))
    expected = random.Random(7).randint(1, 0xFFFF)
    bye = dialog.create_request("BYE")
    assert bye.cseq.seq == expected
    # UAS side: To/From swapped, route set in Record-Route order.
    assert bye.from_.tag == "btag" and bye.to.tag == "atag"
    assert bye.uri == SipUri.parse("sip:alice@192.0.2.1:5060")
    assert bye.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]


# --- receiving: CSeq order, target refresh, glare ------------------------------------------------


def test_cseq_out_of_order_gets_500() -> None:
    dialog = uas_dialog()
    assert dialog.receive_request(in_dialog("INFO", 5), 1.0) is None
    assert dialog.remote_seq == 5
    reject = dialog.receive_request(in_dialog("INFO", 4), 1.1)
    assert reject is not None and reject.status == 500
    assert dialog.remote_seq == 5
    response = reject.response(in_dialog("INFO", 4))
    assert response.status_code == 500 and response.to.tag == "btag"
    # ACK and CANCEL carry the INVITE's (lower) number and are not checked.
    assert dialog.receive_request(in_dialog("ACK", 1), 1.2) is None


def test_remote_target_refresh_from_reinvite_update_and_2xx() -> None:
    dialog = uas_dialog()
    assert dialog.receive_request(in_dialog("INVITE", 2, contact="<sip:alice@198.51.100.7>"), 1.0) is None
    assert dialog.remote_target == SipUri.parse("sip:alice@198.51.100.7")
    assert dialog.receive_request(in_dialog("INFO", 3, contact="<sip:ignored@203.0.113.1>"), 1.1) is None
    assert dialog.remote_target == SipUri.parse("sip:alice@198.51.100.7")  # INFO refreshes nothing
    dialog.response_sent(make_response(in_dialog("INVITE", 2), 200))
    assert dialog.receive_request(in_dialog("UPDATE", 4, contact="<sip:alice@198.51.100.8>"), 1.2) is None
    assert dialog.remote_target == SipUri.parse("sip:alice@198.51.100.8")
    # UAC side: the 2xx to our re-INVITE carries a new Contact.
    uac = uac_dialog()
    reinvite = uac.create_request("INVITE")
    uac.receive_response(make_response(reinvite, 200, headers=[("Contact", "<sip:bob@203.0.113.5>")]), 2.0)
    assert uac.remote_target == SipUri.parse("sip:bob@203.0.113.5")
    assert not uac.local_invite_pending


def test_glare_491_and_owner_retry_delay() -> None:
    dialog = uac_dialog(random.Random(3))
    reinvite = dialog.create_request("INVITE")
    # The peer's INVITE crosses ours (14.1): 491.
    theirs = in_dialog("INVITE", 9, to_tag="atag", from_tag="btag")
    reject = dialog.receive_request(theirs, 10.0)
    assert reject == Reject(491, "Request Pending")
    # Our INVITE gets the peer's 491: retry in 2.1-4 s, in 10 ms units (we own the Call-ID).
    dialog.receive_response(make_response(reinvite, 491), 10.0)
    deadline = dialog.next_deadline()
    assert deadline is not None
    delay = deadline - 10.0
    assert 2.1 <= delay <= 4.0
    assert round(delay * 100) == pytest.approx(delay * 100)
    assert delay == pytest.approx(random.Random(3).randint(210, 400) / 100)
    assert not dialog.handle_timer(deadline - 0.01)
    assert dialog.handle_timer(deadline)
    assert not dialog.handle_timer(deadline + 1)
    assert dialog.create_request("INVITE").cseq.seq == 3


def test_glare_retry_delay_ranges_for_owner_and_non_owner() -> None:
    owner = [uac_dialog(random.Random(seed)).glare_delay() for seed in range(300)]
    other = [uas_dialog(random.Random(seed)).glare_delay() for seed in range(300)]
    assert min(owner) >= 2.1 and max(owner) <= 4.0
    assert min(other) >= 0.0 and max(other) <= 2.0
    assert max(other) > 1.5 and min(owner) < 2.5  # both ranges are really used
    for value in owner + other:
        assert abs(value * 100 - round(value * 100)) < 1e-9  # 10 ms units
    dialog = uas_dialog(random.Random(5))
    reinvite = dialog.create_request("INVITE")
    dialog.receive_response(make_response(reinvite, 491), 20.0)
    expected = random.Random(5)
    expected.randint(1, 0xFFFF)  # the UAS's first local CSeq came from the same generator
    assert dialog.retry_deadline == pytest.approx(20.0 + expected.randint(0, 200) / 100)


def test_overlapping_invite_gets_500_with_retry_after() -> None:
    dialog = uas_dialog(random.Random(11))
    first = in_dialog("INVITE", 2)
    assert dialog.receive_request(first, 1.0) is None
    second = in_dialog("INVITE", 3)
    reject = dialog.receive_request(second, 1.5)
    assert reject is not None and reject.status == 500
    retry_after = dict(reject.headers)["Retry-After"]
    assert 0 <= int(retry_after) <= 10
    assert int(retry_after) == random.Random(11).randint(0, 10)
    assert reject.response(second).headers.get("Retry-After") == retry_after
    # Once the final response to the first INVITE is sent, a new INVITE is accepted.
    dialog.response_sent(make_response(first, 200))
    assert dialog.receive_request(in_dialog("INVITE", 4), 2.0) is None
    # We cannot start our own re-INVITE while theirs is in progress (14.1).
    with pytest.raises(DialogError):
        dialog.create_request("INVITE")


# --- forking ------------------------------------------------------------------------------------


def test_forking_two_early_dialogs_then_second_200_gets_ack_and_bye() -> None:
    req = invite()
    forks = ForkedInvite(req, local_contact=ALICE_CONTACT)
    one = forks.receive_response(answer(req, 180, tag="f1", contact="<sip:b1@192.0.2.11>"), 0.1)
    two = forks.receive_response(answer(req, 180, tag="f2", contact="<sip:b2@192.0.2.12>"), 0.2)
    assert one.created and two.created and one.dialog is not two.dialog
    assert [d.state for d in forks.dialogs.values()] == [DialogState.EARLY, DialogState.EARLY]
    assert forks.receive_response(make_response(req, 100), 0.05).dialog is None
    ok1 = forks.receive_response(answer(req, 200, tag="f1", contact="<sip:b1@192.0.2.11>"), 1.0)
    assert ok1.dialog is one.dialog and ok1.bye is None and ok1.ack is not None
    assert forks.confirmed is one.dialog
    assert ok1.ack.cseq.seq == 1 and ok1.ack.to.tag == "f1"
    assert ok1.ack.uri == SipUri.parse("sip:b1@192.0.2.11")
    ok2 = forks.receive_response(answer(req, 200, tag="f2", contact="<sip:b2@192.0.2.12>"), 1.1)
    assert ok2.dialog is two.dialog
    assert ok2.ack is not None and ok2.ack.to.tag == "f2"
    assert ok2.bye is not None and ok2.bye.method == "BYE" and ok2.bye.to.tag == "f2"
    assert ok2.bye.uri == SipUri.parse("sip:b2@192.0.2.12")
    assert ok2.bye.cseq.seq == 2
    assert two.dialog is not None and two.dialog.state is DialogState.TERMINATED
    assert one.dialog is not None and one.dialog.state is DialogState.CONFIRMED
    # A retransmitted 200 gets the very same ACK again, and no second BYE.
    again = forks.receive_response(answer(req, 200, tag="f1"), 1.5)
    assert again.ack is ok1.ack and again.bye is None


def test_cancel_crossing_200_means_ack_then_bye() -> None:
    req = invite()
    forks = ForkedInvite(req)
    forks.receive_response(answer(req, 180), 0.1)
    forks.cancel()
    outcome = forks.receive_response(answer(req, 200), 0.3)
    assert outcome.ack is not None and outcome.bye is not None
    assert outcome.bye.to.tag == "btag" and outcome.bye.cseq.seq == 2
    assert forks.confirmed is None


def test_non_2xx_final_ends_all_early_dialogs() -> None:
    req = invite()
    forks = ForkedInvite(req)
    forks.receive_response(answer(req, 183, tag="f1"), 0.1)
    forks.receive_response(answer(req, 183, tag="f2"), 0.2)
    assert forks.receive_response(answer(req, 486, tag="f3"), 0.3).dialog is None
    assert all(d.state is DialogState.TERMINATED for d in forks.dialogs.values())


def test_terminate_early_after_transaction_end() -> None:
    req = invite()
    forks = ForkedInvite(req)
    forks.receive_response(answer(req, 180, tag="f1"), 0.1)
    forks.receive_response(answer(req, 200, tag="f2"), 0.2)
    ended = forks.terminate_early()
    assert [d.remote_tag for d in ended] == ["f1"]
    assert forks.dialogs["f2"].state is DialogState.CONFIRMED


# --- dialog table -------------------------------------------------------------------------------


def test_dialog_table_481_for_unknown_dialog_and_bye_terminates() -> None:
    table = DialogTable()
    dialog = uas_dialog()
    table.add(dialog)
    assert table.receive_request(in_dialog("INFO", 2), 1.0) == (dialog, None)
    _, reject = table.receive_request(in_dialog("INFO", 3, to_tag="nope"), 1.1)
    assert reject is not None and reject.status == 481
    assert table.receive_request(in_dialog("ACK", 1, to_tag="nope"), 1.2) == (None, None)
    out_of_dialog = invite()
    assert table.receive_request(out_of_dialog, 1.3) == (None, None)
    found, verdict = table.receive_request(in_dialog("BYE", 4), 2.0)
    assert found is dialog and verdict is None
    assert dialog.state is DialogState.TERMINATED
    assert len(table) == 0
    _, reject = table.receive_request(in_dialog("BYE", 5), 2.1)
    assert reject is not None and reject.status == 481


# --- end to end with two transaction layers ----------------------------------------------------


def test_call_setup_and_bye_through_transaction_layers() -> None:
    alice = TransactionLayer(sent_by={"udp": ("192.0.2.1", 5060)})
    bob = TransactionLayer(sent_by={"udp": ("192.0.2.2", 5062)})
    to_bob = Peer("udp", ("192.0.2.2", 5062))
    to_alice = Peer("udp", ("192.0.2.1", 5060))

    def deliver(src: TransactionLayer, dst: TransactionLayer, source: Peer, now: float) -> None:
        for transmit in src.datagrams_to_send():
            dst.receive(parse_message(transmit.data), source, now)

    req = invite()
    req.headers.remove("Via")
    alice.send_request(req, to_bob, 0.0)
    forks = ForkedInvite(req, local_contact=ALICE_CONTACT)
    deliver(alice, bob, to_alice, 0.0)
    (incoming,) = [e for e in bob.events() if isinstance(e, RequestReceived)]
    ok = answer(incoming.request, 200, rr=False)
    bob.send_response(ok, 0.1)
    bob_dialog = Dialog.create_uas(incoming.request, ok)
    table = DialogTable()
    table.add(bob_dialog)
    deliver(bob, alice, to_bob, 0.1)
    (got,) = [e for e in alice.events() if isinstance(e, ResponseReceived)]
    outcome = forks.receive_response(got.response, 0.1)
    assert outcome.ack is not None and outcome.bye is None
    alice.send_ack(outcome.ack, to_bob, 0.1)
    deliver(alice, bob, to_alice, 0.1)
    (ack,) = [e for e in bob.events() if isinstance(e, AckReceived)]
    assert ack.transaction_id is None  # new branch: handled by the dialog, not the transaction
    assert ack.request.top_via.branch != req.top_via.branch
    assert table.receive_request(ack.request, 0.1) == (bob_dialog, None)
    # No 2xx retransmission after the ACK.
    bob.handle_timer(5.0)
    assert bob.datagrams_to_send() == []
    # Alice hangs up.
    assert forks.confirmed is not None
    bye = forks.confirmed.create_request("BYE")
    alice.send_request(bye, to_bob, 10.0)
    deliver(alice, bob, to_alice, 10.0)
    (bye_event,) = [e for e in bob.events() if isinstance(e, RequestReceived)]
    dialog, verdict = table.receive_request(bye_event.request, 10.0)
    assert dialog is bob_dialog and verdict is None
    bob.send_response(make_response(bye_event.request, 200), 10.0)
    deliver(bob, alice, to_bob, 10.0)
    final = [e for e in alice.events() if isinstance(e, ResponseReceived)]
    assert [(e.response.cseq.method, e.response.status_code) for e in final] == [("BYE", 200)]


def test_cancel_crossing_200_through_layers_ends_with_ack_and_bye() -> None:
    wire = Wire()
    wire.uac = TransactionLayer(sent_by={"udp": A_ADDR})
    req = invite()
    invite_id = wire.uac.send_request(req, wire.b_peer, 0.0)
    forks = ForkedInvite(req)
    wire.pump()
    incoming = wire.uas_request().request
    wire.uas.send_response(answer(incoming, 180, rr=False), 0.0)
    wire.pump()
    held: list[bytes] = []

    def hold(data: bytes) -> bool:
        if data.startswith(b"CANCEL"):
            held.append(data)
            return True
        return False

    wire.drop = hold
    forks.cancel()
    wire.uac.cancel(invite_id, 0.1)
    wire.now = 0.1
    wire.pump()
    wire.uas.send_response(answer(incoming, 200, rr=False), 0.1)
    wire.pump()
    wire.uas.receive(parse_message(held[0]), wire.a_peer, 0.12)
    wire.drop = lambda data: False
    actions = []
    for event in wire.uac_events:
        if isinstance(event, ResponseReceived) and event.response.cseq.method == "INVITE":
            outcome = forks.receive_response(event.response, 0.12)
            if outcome.ack is not None:
                wire.uac.send_ack(outcome.ack, wire.b_peer, 0.12)
                actions.append("ACK")
            if outcome.bye is not None:
                wire.uac.send_request(outcome.bye, wire.b_peer, 0.12)
                actions.append("BYE")
    assert actions == ["ACK", "BYE"]
    wire.pump()
    assert [type(e).__name__ for e in wire.uas_events if isinstance(e, (AckReceived, RequestReceived))] == [
        "RequestReceived",  # INVITE
        "AckReceived",
        "RequestReceived",  # BYE
    ]
    bye = wire.uas_request().request
    assert bye.method == "BYE" and bye.to.tag == "btag"
    assert wire.sent("B>A", "SIP/2.0 200") == [0.1, 0.1]  # 200 to INVITE, 200 to CANCEL


# --- end to end against SIPp ---------------------------------------------------------------------


class _MiniUas(asyncio.DatagramProtocol):
    """A tiny asyncio shell: feeds the transaction layer, answers INVITE 180 + 200, BYE 200."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.layer = TransactionLayer(TimerConfig(trying_delay=0.0))
        self.table = DialogTable()
        self.transport: asyncio.DatagramTransport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.calls = 0
        self.acks = 0
        self.byes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = self.loop.time()
        self.layer.receive(parse_message(data), Peer("udp", addr), now)
        self.run(now)

    def run(self, now: float) -> None:
        while (event := self.layer.next_event()) is not None:
            if isinstance(event, RequestReceived):
                req = event.request
                verdict = None
                dialog, verdict = self.table.receive_request(req, now)
                if verdict is not None:
                    self.layer.send_response(verdict.response(req), now)
                elif req.method == "INVITE" and dialog is None:
                    tag = f"uas{self.calls}"
                    self.calls += 1
                    contact = [("Contact", "<sip:uas@127.0.0.1>")]
                    self.layer.send_response(make_response(req, 180, to_tag=tag), now)
                    ok = make_response(req, 200, to_tag=tag, headers=contact)
                    self.layer.send_response(ok, now)
                    self.table.add(Dialog.create_uas(req, ok))
                else:
                    self.byes += req.method == "BYE"
                    self.layer.send_response(make_response(req, 200), now)
            elif isinstance(event, AckReceived):
                found, _ = self.table.receive_request(event.request, now)
                self.acks += found is not None
        assert self.transport is not None
        for transmit in self.layer.datagrams_to_send():
            self.transport.sendto(transmit.data, transmit.dest.address)
        if self.timer is not None:
            self.timer.cancel()
        deadline = self.layer.next_deadline()
        if deadline is not None:
            self.timer = self.loop.call_at(deadline, self.on_timer)

    def on_timer(self) -> None:
        now = self.loop.time()
        self.layer.handle_timer(now)
        self.run(now)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
async def test_sipp_uac_calls_complete_against_transaction_and_dialog_layers() -> None:
    loop = asyncio.get_running_loop()
    transport, uas = await loop.create_datagram_endpoint(lambda: _MiniUas(loop), local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(_free_udp_port()),
        "-m", "5", "-r", "50", "-d", "50", "-timeout", "10", "-nostdin",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        transport.close()
    assert (uas.calls, uas.acks, uas.byes) == (5, 5, 5)
    assert len(uas.table) == 0


class _MiniUac(asyncio.DatagramProtocol):
    """Drives one call: INVITE, ACK for the 2xx, BYE, through the layers."""

    def __init__(self, loop: asyncio.AbstractEventLoop, local: tuple[str, int], peer: Peer) -> None:
        self.loop = loop
        self.peer = peer
        self.local = local
        self.layer = TransactionLayer(sent_by={"udp": local})
        self.transport: asyncio.DatagramTransport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.forks: ForkedInvite | None = None
        self.log: list[str] = []
        self.done: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def call(self, target: str) -> None:
        now = self.loop.time()
        host, port = self.local
        me = f"sip:trunkline@{host}:{port}"
        headers = Headers(
            [
                ("Max-Forwards", "70"),
                ("From", f"<{me}>;tag=uac1"),
                ("To", f"<{target}>"),
                ("Call-ID", f"sipp-uas-1@{host}"),
                ("CSeq", "1 INVITE"),
                ("Contact", f"<{me}>"),
            ]
        )
        invite = SipRequest("INVITE", SipUri.parse(target), headers)
        self.layer.send_request(invite, self.peer, now)
        self.forks = ForkedInvite(invite, local_contact=f"<sip:trunkline@{host}:{port}>")
        self.run(now)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = self.loop.time()
        self.layer.receive(parse_message(data), Peer("udp", addr), now)
        self.run(now)

    def run(self, now: float) -> None:
        assert self.forks is not None and self.transport is not None
        while (event := self.layer.next_event()) is not None:
            if not isinstance(event, ResponseReceived):
                continue
            response = event.response
            self.log.append(f"{response.cseq.method} {response.status_code}")
            if response.cseq.method == "INVITE":
                outcome = self.forks.receive_response(response, now)
                if outcome.ack is not None:
                    self.layer.send_ack(outcome.ack, self.peer, now)
                    if not event.retransmission and outcome.dialog is not None:
                        self.layer.send_request(outcome.dialog.create_request("BYE"), self.peer, now)
            elif response.cseq.method == "BYE" and response.status_code >= 200 and not self.done.done():
                self.done.set_result(None)
        for transmit in self.layer.datagrams_to_send():
            self.transport.sendto(transmit.data, transmit.dest.address)
        if self.timer is not None:
            self.timer.cancel()
        deadline = self.layer.next_deadline()
        if deadline is not None:
            self.timer = self.loop.call_at(deadline, self.on_timer)

    def on_timer(self) -> None:
        now = self.loop.time()
        self.layer.handle_timer(now)
        self.run(now)


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
async def test_call_to_sipp_uas_is_answered_acked_and_hung_up() -> None:
    loop = asyncio.get_running_loop()
    sipp_port = _free_udp_port()
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(sipp_port),
        "-m", "1", "-timeout", "10", "-nostdin",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    transport = None
    try:
        await asyncio.sleep(0.3)  # let SIPp bind its socket
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        local = sock.getsockname()
        transport, uac = await loop.create_datagram_endpoint(
            lambda: _MiniUac(loop, local, Peer("udp", ("127.0.0.1", sipp_port))), sock=sock
        )
        uac.call(f"sip:service@127.0.0.1:{sipp_port}")
        # SIPp answers the BYE only after its scenario saw the ACK; it then lingers 4 s in
        # timewait, so the test stops it rather than waiting.
        await asyncio.wait_for(uac.done, 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if transport is not None:
            transport.close()
    assert uac.log[0] == "INVITE 180"
    assert "INVITE 200" in uac.log
    assert uac.log[-1] == "BYE 200"
