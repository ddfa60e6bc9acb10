"""Transaction layer tests: the state table, timers, non-INVITE transactions, RFC 2543
matching, Via handling and transport errors; two layers wired back to back, explicit clock.

INVITE-specific exchanges (100 Trying, ACK, the RFC 6026 Accepted state, CANCEL) are in
test_transaction_invite.py."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.gateway.sip import SipRequest, make_response, parse_message
from trunkline.gateway.sip.timers import TimerConfig
from trunkline.gateway.sip.transaction import (
    TRANSITIONS,
    AckReceived,
    LocalProtocolError,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionState,
    TransactionTerminated,
    TransactionTimeout,
    Transmit,
    TransportError,
    is_rfc3261_branch,
)

from .transaction_wire import A_ADDR, B_ADDR, FIXTURES, Wire, of_type, request, statuses

# --- state table --------------------------------------------------------------------


def test_transition_table_has_no_exit_from_terminated() -> None:
    for kind, states in TRANSITIONS.items():
        assert TransactionState.TERMINATED not in states, kind
        reachable = {target for inputs in states.values() for target in inputs.values()}
        assert TransactionState.TERMINATED in reachable, kind
        assert reachable - {TransactionState.TERMINATED} <= set(states), kind


def test_rfc3261_branch_needs_cookie_and_identifier() -> None:
    assert is_rfc3261_branch("z9hG4bK776asdhds")
    assert not is_rfc3261_branch("z9hG4bK")  # RFC 4475 badbranch
    assert not is_rfc3261_branch("776asdhds")
    assert not is_rfc3261_branch(None)


def test_timer_table_values() -> None:
    config = TimerConfig()
    assert (config.t1, config.t2, config.t4) == (0.5, 4.0, 5.0)
    assert config.timer_a(False) == 0.5 and config.timer_a(True) is None
    assert config.timer_b == config.timer_f == config.timer_h == config.timer_l == config.timer_m == 32.0
    assert config.timer_d(False) == 32.0 and config.timer_d(True) == 0.0
    assert config.timer_i(False) == config.timer_k(False) == 5.0
    assert config.timer_i(True) == config.timer_j(True) == config.timer_k(True) == 0.0
    assert config.timer_j(False) == 32.0
    assert config.next_interval(4.0, capped=True) == 4.0
    assert config.next_interval(4.0, capped=False) == 8.0
    assert TimerConfig(t1=2.0, t2=8.0).timer_d(False) == 128.0  # D covers the server's H
    with pytest.raises(ValueError, match="T1"):
        TimerConfig(t1=0.0)
    with pytest.raises(ValueError, match="T2"):
        TimerConfig(t1=1.0, t2=0.5)


# --- client timers ------------------------------------------------------------------


def test_timer_a_doubles_and_timer_b_times_out_at_64_t1_on_udp() -> None:
    wire = Wire()
    wire.drop = lambda data: True
    tid = wire.uac.send_request(request(), wire.b_peer, 0.0)
    wire.run_until(40.0)
    # 17.1.1.2: intervals T1, 2T1, 4T1... until Timer B (64*T1 = 32 s).
    assert wire.sent("A>B", "INVITE") == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert of_type(wire.uac_events, TransactionTimeout) == [TransactionTimeout(tid, "B")]
    assert TransactionTerminated(tid) in wire.uac_events
    assert wire.uac.get(tid) is None
    assert wire.uac.next_deadline() is None


def test_timer_e_doubles_up_to_t2_and_timer_f_times_out() -> None:
    wire = Wire()
    wire.drop = lambda data: True
    tid = wire.uac.send_request(request("OPTIONS"), wire.b_peer, 0.0)
    wire.run_until(40.0)
    assert wire.sent("A>B", "OPTIONS") == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert of_type(wire.uac_events, TransactionTimeout) == [TransactionTimeout(tid, "F")]


def test_timer_e_uses_t2_after_a_provisional_response() -> None:
    wire = Wire()
    wire.drop = lambda data: data.startswith(b"OPTIONS") and wire.now > 0
    wire.uac.send_request(request("OPTIONS"), wire.b_peer, 0.0)
    wire.pump()
    wire.respond(183)
    wire.run_until(13.0)
    assert wire.sent("A>B", "OPTIONS") == [0.0, 0.5, 4.5, 8.5, 12.5]


def test_custom_t1_scales_timers() -> None:
    wire = Wire(TimerConfig(t1=0.1, t2=0.4))
    wire.drop = lambda data: True
    wire.now = 10.0
    tid = wire.uac.send_request(request(), wire.b_peer, 10.0)
    wire.run_until(20.0)
    assert wire.sent("A>B", "INVITE") == pytest.approx([10.0, 10.1, 10.3, 10.7, 11.5, 13.1, 16.3])
    timeout = of_type(wire.uac_events, TransactionTimeout)
    assert timeout == [TransactionTimeout(tid, "B")]


def test_no_retransmissions_on_tcp() -> None:
    wire = Wire(transport="tcp")
    wire.drop = lambda data: True
    invite_id = wire.uac.send_request(request(transport="TCP"), wire.b_peer, 0.0)
    options_id = wire.uac.send_request(
        request("OPTIONS", branch="z9hG4bKopt", transport="TCP"), wire.b_peer, 0.0
    )
    wire.run_until(40.0)
    assert wire.sent("A>B", "INVITE") == [0.0]
    assert wire.sent("A>B", "OPTIONS") == [0.0]
    timeouts = of_type(wire.uac_events, TransactionTimeout)
    assert TransactionTimeout(invite_id, "B") in timeouts
    assert TransactionTimeout(options_id, "F") in timeouts


def test_reliable_transport_terminates_at_once_after_final_response() -> None:
    wire = Wire(transport="tcp")
    invite_id = wire.uac.send_request(request(transport="TCP"), wire.b_peer, 0.0)
    wire.pump()
    server_id = wire.uas_request().transaction_id
    wire.respond(486)
    # ACK goes out; Timer D (client) and Timer I (server) are zero on TCP.
    assert wire.sent("A>B", "ACK") == [0.0]
    assert wire.uac.get(invite_id) is None
    assert wire.uas.get(server_id) is None
    assert wire.uac.next_deadline() is None
    assert wire.uas.next_deadline() is None


# --- non-INVITE: Timers J and K -------------------------------------------------------


def test_non_invite_completed_state_timers_j_and_k() -> None:
    wire = Wire()
    options_id = wire.uac.send_request(request("OPTIONS"), wire.b_peer, 0.0)
    wire.pump()
    server_id = wire.uas_request().transaction_id
    wire.respond(200)
    assert statuses(wire.uac_events) == [200]
    # A late retransmission of the request gets the stored 200 again (17.2.2).
    wire.uas.receive(request("OPTIONS"), wire.a_peer, 1.0)
    wire.now = 1.0
    wire.pump()
    assert wire.sent("B>A", "SIP/2.0 200") == [0.0, 1.0]
    assert statuses(wire.uac_events) == [200]  # absorbed by the client in Completed
    assert len(of_type(wire.uas_events, RequestReceived)) == 1
    wire.run_until(4.9)
    assert wire.uac.get(options_id) is not None
    wire.run_until(5.0)  # Timer K = T4
    assert wire.uac.get(options_id) is None
    wire.run_until(31.9)
    assert wire.uas.get(server_id) is not None
    wire.run_until(32.0)  # Timer J = 64*T1
    assert wire.uas.get(server_id) is None


def test_non_invite_trying_state_discards_retransmissions() -> None:
    uas = TransactionLayer()
    source = Peer("udp", A_ADDR)
    uas.receive(request("BYE"), source, 0.0)
    uas.receive(request("BYE"), source, 0.5)
    assert len(of_type(uas.events(), RequestReceived)) == 1
    assert uas.datagrams_to_send() == []


def test_second_final_response_is_a_local_protocol_error() -> None:
    wire = Wire()
    wire.uac.send_request(request("OPTIONS"), wire.b_peer, 0.0)
    wire.pump()
    req = wire.uas_request().request
    wire.respond(200)
    with pytest.raises(LocalProtocolError, match="cannot send 404"):
        wire.uas.send_response(make_response(req, 404, to_tag="x"), 0.0)
    with pytest.raises(LocalProtocolError, match="no server transaction"):
        wire.uas.send_response(make_response(request("OPTIONS", branch="z9hG4bKnone"), 200), 0.0)
    with pytest.raises(LocalProtocolError, match="send_ack"):
        wire.uac.send_request(request("ACK"), wire.b_peer, 0.0)


# --- RFC 2543 matching -------------------------------------------------------------------


def test_rfc4475_badbranch_is_matched_by_rfc2543_rules() -> None:
    data = (FIXTURES / "badbranch.dat").read_bytes()
    uas = TransactionLayer()
    source = Peer("udp", ("192.0.2.1", 5060))
    first = parse_message(data)
    assert isinstance(first, SipRequest)
    uas.receive(first, source, 0.0)
    uas.receive(parse_message(data), source, 0.5)  # retransmission: absorbed
    events = of_type(uas.events(), RequestReceived)
    assert len(events) == 1
    assert events[0].transaction_id.startswith("s2543|")
    uas.send_response(make_response(first, 200, to_tag="t1"), 0.6)
    uas.receive(parse_message(data), source, 1.0)  # retransmission in Completed
    sent = uas.datagrams_to_send()
    assert [t.data.split(b"\r\n", 1)[0] for t in sent] == [b"SIP/2.0 200 OK"] * 2
    # A request differing only in its Request-URI is a different transaction (17.2.3).
    other = parse_message(data.replace(b"OPTIONS sip:user@", b"OPTIONS sip:other@"))
    assert isinstance(other, SipRequest)
    uas.receive(other, source, 1.1)
    (second,) = of_type(uas.events(), RequestReceived)
    assert second.transaction_id != events[0].transaction_id
    uas.receive(parse_message(data), source, 1.2)  # still the first transaction's 200
    uas.send_response(make_response(other, 404, to_tag="t2"), 1.3, second.transaction_id)
    uas.receive(other, source, 1.4)  # retransmission of the second: its own 404
    sent = uas.datagrams_to_send()
    assert [t.data.split(b"\r\n", 1)[0] for t in sent] == [
        b"SIP/2.0 200 OK",
        b"SIP/2.0 404 Not Found",
        b"SIP/2.0 404 Not Found",
    ]
    assert uas.events() == []


def test_rfc2543_ack_matches_by_to_tag_of_our_response() -> None:
    data = (FIXTURES / "inv2543.dat").read_bytes()
    uas = TransactionLayer()
    source = Peer("udp", ("192.0.2.5", 5060))
    invite = parse_message(data)
    assert isinstance(invite, SipRequest)
    uas.receive(invite, source, 0.0)
    (event,) = of_type(uas.events(), RequestReceived)
    tid = event.transaction_id
    uas.send_response(make_response(invite, 486, to_tag="busy1"), 0.1)
    ack_text = (
        "ACK sip:UserB@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP iftgw.example.com\r\n"
        "From: <sip:+13035551111@ift.client.example.net;user=phone>\r\n"
        "To: sip:+16505552222@ss1.example.net;user=phone;tag={tag}\r\n"
        "Call-ID: inv2543.1717@ift.client.example.com\r\n"
        "CSeq: 56 ACK\r\nContent-Length: 0\r\n\r\n"
    )
    wrong = parse_message(ack_text.format(tag="other").encode())
    assert isinstance(wrong, SipRequest)
    uas.receive(wrong, source, 0.2)
    assert of_type(uas.events(), AckReceived) == [AckReceived(wrong, source, None)]
    tx = uas.get(tid)
    assert tx is not None and tx.state is TransactionState.COMPLETED
    uas.receive(parse_message(ack_text.format(tag="busy1").encode()), source, 0.3)
    assert uas.events() == []
    assert tx.state.value == "Confirmed"


# --- Via handling, transport errors ---------------------------------------------------------


def test_received_and_rport_are_stamped_and_responses_follow_them() -> None:
    uas = TransactionLayer()
    nat = Peer("udp", ("203.0.113.9", 40000))
    invite = request(extra="")
    invite.headers.set("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKnat;rport")
    uas.receive(invite, nat, 0.0)
    (event,) = of_type(uas.events(), RequestReceived)
    via = event.request.top_via
    assert via.received == "203.0.113.9" and via.rport == 40000
    uas.send_response(make_response(event.request, 180, to_tag="x"), 0.1)
    (sent,) = uas.datagrams_to_send()
    assert sent.dest == nat
    assert b"received=203.0.113.9" in sent.data and b"rport=40000" in sent.data


def test_request_without_via_gets_one_from_sent_by() -> None:
    uac = TransactionLayer(sent_by={"udp": ("192.0.2.10", 5062)}, branch_factory=lambda: "z9hG4bKfixed")
    req = request("OPTIONS")
    req.headers.remove("Via")
    tid = uac.send_request(req, Peer("udp", B_ADDR), 0.0)
    assert tid == "c|z9hG4bKfixed|OPTIONS"
    assert req.headers.get("Via") == "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKfixed;rport"
    bare = request("OPTIONS")
    bare.headers.remove("Via")
    with pytest.raises(LocalProtocolError, match="no Via"):
        TransactionLayer().send_request(bare, Peer("udp", B_ADDR), 0.0)


def test_transport_error_terminates_the_transaction() -> None:
    uac = TransactionLayer()
    tid = uac.send_request(request(), Peer("tcp", B_ADDR), 0.0)
    (transmit,) = uac.datagrams_to_send()
    assert isinstance(transmit, Transmit) and transmit.transaction_id == tid
    uac.transport_error(transmit, 0.01, "connection refused")
    assert uac.events() == [
        TransportError(tid, Peer("tcp", B_ADDR), "connection refused"),
        TransactionTerminated(tid),
    ]
    assert uac.get(tid) is None
    assert uac.next_deadline() is None


def test_2xx_is_retransmitted_end_to_end_even_over_tcp() -> None:
    # 13.3.1.4: the 2xx retransmission "is independent of whatever transport protocols
    # are used to send the response" (a UDP hop may lie beyond the proxy).
    wire = Wire(transport="tcp")
    wire.uac.send_request(request(transport="TCP"), wire.b_peer, 0.0)
    wire.pump()
    server_id = wire.uas_request().transaction_id
    wire.respond(200)
    wire.run_until(2.0)
    assert wire.sent("B>A", "SIP/2.0 200") == [0.0, 0.5, 1.5]
    assert wire.uas.get(server_id) is not None  # Timer L is not zero on TCP (RFC 6026)
    ack = request("ACK", branch="z9hG4bKtcpack", to_tag="bobtag", transport="TCP")
    wire.uac.send_ack(ack, wire.b_peer, 2.0)
    wire.now = 2.0
    wire.run_until(40.0)
    assert wire.sent("B>A", "SIP/2.0 200") == [0.0, 0.5, 1.5]
    assert wire.uas.get(server_id) is None


def test_server_transport_error_terminates_but_not_in_accepted() -> None:
    uas = TransactionLayer()
    source = Peer("udp", A_ADDR)
    uas.receive(request("OPTIONS"), source, 0.0)
    (event,) = of_type(uas.events(), RequestReceived)
    uas.send_response(make_response(event.request, 200, to_tag="x"), 0.1)
    (transmit,) = uas.datagrams_to_send()
    uas.transport_error(transmit, 0.1, "unreachable")
    assert uas.events() == [
        TransportError(event.transaction_id, source, "unreachable"),
        TransactionTerminated(event.transaction_id),
    ]
    uas.receive(request(), source, 1.0)
    (invite_event,) = of_type(uas.events(), RequestReceived)
    uas.send_response(make_response(invite_event.request, 200, to_tag="y"), 1.0)
    (transmit,) = uas.datagrams_to_send()
    uas.transport_error(transmit, 1.0, "unreachable")
    assert of_type(uas.events(), TransactionTerminated) == []
    tx = uas.get(invite_event.transaction_id)
    assert tx is not None and tx.state is TransactionState.ACCEPTED


@settings(max_examples=60, deadline=None)
@given(
    losses=st.lists(st.booleans(), min_size=0, max_size=24),
    status=st.sampled_from([200, 486]),
    transport=st.sampled_from(["udp", "tcp"]),
)
def test_any_loss_pattern_delivers_each_message_once_and_cleans_up(
    losses: list[bool], status: int, transport: str
) -> None:
    wire = Wire(transport=transport)
    pattern = iter(losses)
    wire.drop = lambda data: transport == "udp" and next(pattern, False)
    invite_id = wire.uac.send_request(request(transport=transport.upper()), wire.b_peer, 0.0)
    answered = False
    for step in range(1, 400):  # the TU answers as soon as the INVITE reaches it
        wire.run_until(step * 0.1)
        if not answered and of_type(wire.uas_events, RequestReceived):
            wire.respond(status)
            answered = True
    wire.run_until(100.0)
    requests = of_type(wire.uas_events, RequestReceived)
    assert len(requests) <= 1
    finals = [e for e in of_type(wire.uac_events, ResponseReceived) if e.response.status_code >= 200]
    assert len([e for e in finals if not e.retransmission]) <= 1
    timeouts = of_type(wire.uac_events, TransactionTimeout)
    if answered:
        # Either the final response got through, or Timer B fired: never both, never neither.
        assert (len(finals) > 0) != (TransactionTimeout(invite_id, "B") in timeouts)
    # Every transaction and timer is gone after 64*T1 plus the longest linger.
    assert len(wire.uac) == 0 and len(wire.uas) == 0
    assert wire.uac.next_deadline() is None and wire.uas.next_deadline() is None
