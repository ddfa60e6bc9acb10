"""INVITE transaction tests (RFC 3261 sections 9, 17.1.1, 17.2.1; RFC 6026): 100 Trying,
retransmission absorption, the ACK for non-2xx, the Accepted state and CANCEL; two layers
wired back to back in memory, explicit clock."""

from __future__ import annotations

from trunkline.gateway.sip import SipRequest, SipResponse, parse_message
from trunkline.gateway.sip.timers import TimerConfig
from trunkline.gateway.sip.transaction import (
    AckReceived,
    AckTimeout,
    CancelReceived,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionState,
    TransactionTimeout,
    build_cancel,
)

from .transaction_wire import A_ADDR, Wire, of_type, request, statuses

# --- INVITE server: 100 Trying and retransmission absorption -----------------------------


def test_100_trying_after_200_ms_when_tu_is_silent() -> None:
    wire = Wire()
    wire.uac.send_request(request(), wire.b_peer, 0.0)
    wire.run_until(0.3)
    assert wire.sent("B>A", "SIP/2.0 100") == [0.2]
    assert statuses(wire.uac_events) == [100]
    # The 100 stopped Timer A: no retransmission at 0.5.
    wire.run_until(5.0)
    assert wire.sent("A>B", "INVITE") == [0.0]
    # A retransmitted INVITE after the 100 gets the 100 again and is not passed up.
    wire.uas.receive(request(), wire.a_peer, 5.0)
    wire.pump()
    assert wire.sent("B>A", "SIP/2.0 100") == [0.2, 5.0]
    assert len(of_type(wire.uas_events, RequestReceived)) == 1


def test_no_100_trying_when_tu_answers_within_200_ms() -> None:
    wire = Wire()
    wire.uac.send_request(request(), wire.b_peer, 0.0)
    wire.run_until(0.1)
    wire.respond(180)
    wire.run_until(1.0)
    assert wire.sent("B>A", "SIP/2.0 100") == []
    assert statuses(wire.uac_events) == [180]


def test_trying_delay_zero_sends_100_at_once() -> None:
    wire = Wire(TimerConfig(trying_delay=0.0))
    wire.uac.send_request(request(extra="Timestamp: 54\r\n"), wire.b_peer, 0.0)
    wire.pump()
    assert wire.sent("B>A", "SIP/2.0 100") == [0.0]
    trying = of_type(wire.uac_events, ResponseReceived)[0]
    assert isinstance(trying, ResponseReceived)
    assert trying.response.headers.get("Timestamp") == "54"  # 8.2.6.1
    assert trying.response.to.tag is None


def test_retransmitted_invite_before_100_is_absorbed_and_answered_with_100() -> None:
    uas = TransactionLayer()
    source = Peer("udp", A_ADDR)
    uas.receive(request(), source, 0.0)
    uas.receive(request(), source, 0.1)
    events = uas.events()
    assert len(of_type(events, RequestReceived)) == 1
    sent = uas.datagrams_to_send()
    assert [t.data.split(b"\r\n", 1)[0] for t in sent] == [b"SIP/2.0 100 Trying"]
    uas.handle_timer(0.2)  # the 100 Trying timer was disarmed
    assert uas.datagrams_to_send() == []


def test_retransmitted_invite_after_180_gets_the_180_again() -> None:
    wire = Wire()
    wire.uac.send_request(request(), wire.b_peer, 0.0)
    wire.run_until(0.3)  # 100 Trying at 0.2
    wire.respond(180)
    again = request()
    wire.uas.receive(again, wire.a_peer, 0.4)
    wire.pump()
    assert len(of_type(wire.uas_events, RequestReceived)) == 1
    assert wire.log[-1] == (0.3, "B>A", "SIP/2.0 180 Ringing")


# --- non-2xx final responses, ACK, Timers D, G, H, I ------------------------------------


def test_ack_for_486_is_generated_with_the_invite_branch() -> None:
    wire = Wire()
    invite = request()
    invite_id = wire.uac.send_request(invite, wire.b_peer, 0.0)
    wire.pump()
    server_id = wire.uas_request().transaction_id
    wire.respond(486)
    assert statuses(wire.uac_events) == [486]
    acks = [t for t in wire.log if t[2].startswith("ACK")]
    assert acks == [(0.0, "A>B", "ACK sip:bob@127.0.0.1:5070 SIP/2.0")]
    # The UAS transaction absorbed the ACK (Confirmed), nothing reached its TU.
    assert of_type(wire.uas_events, AckReceived) == []
    server_tx = wire.uas.get(server_id)
    assert server_tx is not None and server_tx.state is TransactionState.CONFIRMED
    client_tx = wire.uac.get(invite_id)
    assert client_tx is not None and client_tx.state is TransactionState.COMPLETED
    assert client_tx.ack_bytes is not None
    ack = parse_message(client_tx.ack_bytes)
    assert isinstance(ack, SipRequest)
    assert ack.top_via.branch == invite.top_via.branch
    assert len(ack.via) == 1
    assert ack.cseq.seq == 1 and ack.cseq.method == "ACK"
    assert ack.to.tag == "bobtag"
    assert ack.from_.tag == "alicetag"
    assert ack.call_id == invite.call_id
    # Timer I (T4 = 5 s) ends the server transaction, Timer D (32 s) the client one.
    wire.run_until(4.9)
    assert wire.uas.get(server_id) is not None
    wire.run_until(5.0)
    assert wire.uas.get(server_id) is None
    wire.run_until(31.9)
    assert wire.uac.get(invite_id) is not None
    wire.run_until(32.0)
    assert wire.uac.get(invite_id) is None


def test_lost_ack_is_recovered_by_timer_g_retransmission() -> None:
    wire = Wire()
    lost: list[bytes] = []

    def drop(data: bytes) -> bool:
        if data.startswith(b"ACK") and not lost:
            lost.append(data)
            return True
        return False

    wire.drop = drop
    wire.uac.send_request(request(), wire.b_peer, 0.0)
    wire.pump()
    wire.respond(603)
    wire.run_until(2.0)
    assert wire.sent("B>A", "SIP/2.0 603") == [0.0, 0.5]
    assert wire.sent("A>B", "ACK") == [0.0, 0.5]
    assert statuses(wire.uac_events) == [603]  # the retransmission is not passed up


def test_timer_g_caps_at_t2_and_timer_h_reports_missing_ack() -> None:
    wire = Wire()
    wire.drop = lambda data: data.startswith(b"ACK")
    wire.uac.send_request(request(), wire.b_peer, 0.0)
    wire.pump()
    server_id = wire.uas_request().transaction_id
    wire.respond(480)
    wire.run_until(40.0)
    assert wire.sent("B>A", "SIP/2.0 480") == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert of_type(wire.uas_events, TransactionTimeout) == [TransactionTimeout(server_id, "H")]


# --- RFC 6026 Accepted state and the 2xx retransmission -----------------------------------


def test_accepted_state_absorbs_invite_retransmission_and_retransmits_2xx_until_ack() -> None:
    wire = Wire()
    invite = request()
    invite_id = wire.uac.send_request(invite, wire.b_peer, 0.0)
    wire.pump()
    server_id = wire.uas_request().transaction_id
    ok = wire.respond(200)
    server_tx = wire.uas.get(server_id)
    assert server_tx is not None and server_tx.state is TransactionState.ACCEPTED
    # A retransmitted INVITE is absorbed: no event, no response from the transaction.
    wire.uas.receive(request(), wire.a_peer, 0.2)
    assert wire.uas.events() == []
    assert wire.uas.datagrams_to_send() == []
    # The core does not ACK yet: the 2xx is retransmitted (T1, 2T1, 4T1) and each copy
    # is passed up by the client transaction (RFC 6026 Accepted) flagged as such.
    wire.run_until(4.0)
    assert wire.sent("B>A", "SIP/2.0 200") == [0.0, 0.5, 1.5, 3.5]
    received = of_type(wire.uac_events, ResponseReceived)
    assert [(e.response.status_code, e.retransmission) for e in received] == [
        (200, False),
        (200, True),
        (200, True),
        (200, True),
    ]
    # The core ACKs (new branch, section 13.2.2.4); the UAS stops retransmitting.
    ack = request("ACK", branch="z9hG4bKack2xx", to_tag="bobtag")
    wire.uac.send_ack(ack, wire.b_peer, 4.0)
    wire.now = 4.0
    wire.pump()
    assert of_type(wire.uas_events, AckReceived) == [AckReceived(ack, wire.a_peer, None)]
    wire.run_until(31.0)
    assert wire.sent("B>A", "SIP/2.0 200") == [0.0, 0.5, 1.5, 3.5]
    assert of_type(wire.uas_events, AckTimeout) == []
    # Timers L and M end both transactions 64*T1 after the 2xx.
    assert wire.uas.get(server_id) is not None and wire.uac.get(invite_id) is not None
    wire.run_until(32.0)
    assert wire.uas.get(server_id) is None and wire.uac.get(invite_id) is None
    assert ok.to.tag == "bobtag"


def test_ack_with_the_invite_branch_matches_the_accepted_transaction() -> None:
    wire = Wire()
    wire.uac.send_request(request(), wire.b_peer, 0.0)
    wire.pump()
    server_id = wire.uas_request().transaction_id
    wire.respond(200)
    ack = request("ACK", to_tag="bobtag")  # same branch as the INVITE
    wire.uac.send_ack(ack, wire.b_peer, 0.1)
    wire.now = 0.1
    wire.pump()
    assert of_type(wire.uas_events, AckReceived) == [AckReceived(ack, wire.a_peer, server_id)]
    wire.run_until(10.0)
    assert wire.sent("B>A", "SIP/2.0 200") == [0.0]


def test_unacknowledged_2xx_gives_ack_timeout_after_64_t1() -> None:
    wire = Wire()
    wire.uac.send_request(request(), wire.b_peer, 0.0)
    wire.pump()
    ok = wire.respond(200)
    wire.run_until(40.0)
    assert wire.sent("B>A", "SIP/2.0 200") == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    timeouts = of_type(wire.uas_events, AckTimeout)
    assert len(timeouts) == 1
    assert timeouts[0].response is ok


# --- CANCEL -----------------------------------------------------------------------------


def test_cancel_waits_for_a_provisional_response() -> None:
    wire = Wire()
    invite_id = wire.uac.send_request(request(), wire.b_peer, 0.0)
    wire.pump()
    cancel_id = wire.uac.cancel(invite_id, 0.05)
    wire.pump()
    assert cancel_id is not None
    assert wire.sent("A>B", "CANCEL") == []
    wire.run_until(0.2)  # 100 Trying arrives -> the CANCEL goes out
    assert wire.sent("A>B", "CANCEL") == [0.2]
    assert wire.uac.get(cancel_id) is not None
    # Further provisional responses do not send a second CANCEL.
    wire.now = 0.3
    wire.respond(180)
    wire.respond(183)
    assert wire.sent("A>B", "CANCEL") == [0.2]
    assert wire.uac.cancel(invite_id, 0.4) == cancel_id
    wire.pump()
    assert wire.sent("A>B", "CANCEL") == [0.2]


def test_cancel_after_180_gives_200_then_487_and_ack() -> None:
    wire = Wire()
    invite = request()
    invite_id = wire.uac.send_request(invite, wire.b_peer, 0.0)
    wire.pump()
    server_id = wire.uas_request().transaction_id
    wire.respond(180)
    wire.now = 1.0
    cancel_id = wire.uac.cancel(invite_id, 1.0)
    wire.pump()
    cancels = of_type(wire.uas_events, CancelReceived)
    assert len(cancels) == 1
    cancel_event = cancels[0]
    assert isinstance(cancel_event, CancelReceived)
    assert cancel_event.transaction_id == server_id
    cancel = cancel_event.request
    assert cancel.top_via.branch == invite.top_via.branch  # 9.1: same branch
    assert cancel.uri == invite.uri and cancel.call_id == invite.call_id
    assert cancel.cseq.seq == 1 and cancel.cseq.method == "CANCEL"
    assert cancel.to.tag is None and cancel.from_.tag == "alicetag"
    assert wire.log[-1] == (1.0, "B>A", "SIP/2.0 200 OK")
    # The TU answers the INVITE with 487; the client ACKs it.
    wire.respond(487, req=wire.uas_request().request)
    results = [
        (e.transaction_id, e.response.status_code) for e in wire.uac_events if isinstance(e, ResponseReceived)
    ]
    assert results == [(invite_id, 180), (cancel_id, 200), (invite_id, 487)]
    assert wire.sent("A>B", "ACK") == [1.0]
    server_tx = wire.uas.get(server_id)
    assert server_tx is not None and server_tx.state is TransactionState.CONFIRMED


def test_cancel_crossing_a_200_leaves_the_call_up() -> None:
    wire = Wire()
    invite_id = wire.uac.send_request(request(), wire.b_peer, 0.0)
    wire.pump()
    wire.respond(180)
    # The UAC sends CANCEL while the UAS's 200 is in flight: hold the CANCEL.
    held: list[bytes] = []

    def hold(data: bytes) -> bool:
        if data.startswith(b"CANCEL"):
            held.append(data)
            return True
        return False

    wire.drop = hold
    wire.uac.cancel(invite_id, 0.1)
    wire.now = 0.1
    wire.pump()
    wire.respond(200)
    wire.drop = lambda data: False
    wire.uas.receive(parse_message(held[0]), wire.a_peer, 0.15)
    wire.pump()
    # 9.2: the CANCEL matched a transaction -> 200, but the INVITE already had its final
    # response, so the TU is not told.
    assert of_type(wire.uas_events, CancelReceived) == []
    assert statuses(wire.uac_events) == [180, 200, 200]
    invite_tx = wire.uac.get(invite_id)
    assert invite_tx is not None and invite_tx.state is TransactionState.ACCEPTED
    # No further CANCEL may be sent once the final response is in.
    assert wire.uac.cancel(invite_id, 0.2) is None


def test_cancel_for_unknown_transaction_gets_481() -> None:
    uas = TransactionLayer()
    uas.receive(build_cancel(request(branch="z9hG4bKghost")), Peer("udp", A_ADDR), 0.0)
    assert of_type(uas.events(), CancelReceived) == []
    sent = uas.datagrams_to_send()
    assert len(sent) == 1
    response = parse_message(sent[0].data)
    assert isinstance(response, SipResponse)
    assert response.status_code == 481
    assert response.cseq.method == "CANCEL"
    assert sent[0].dest == Peer("udp", A_ADDR)


def test_no_final_response_64_t1_after_cancel_destroys_the_invite_transaction() -> None:
    wire = Wire()
    invite_id = wire.uac.send_request(request(), wire.b_peer, 0.0)
    wire.pump()
    wire.respond(180)
    wire.uac.cancel(invite_id, 1.0)
    wire.now = 1.0
    wire.drop = lambda data: data.startswith(b"SIP/2.0 487")
    wire.pump()
    wire.run_until(33.1)
    assert TransactionTimeout(invite_id, "CANCEL") in wire.uac_events
    assert wire.uac.get(invite_id) is None
