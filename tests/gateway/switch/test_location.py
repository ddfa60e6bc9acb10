"""Location service: several contacts per user, q order, expiry on the caller's clock."""

from __future__ import annotations

from trunkline.gateway.sip.transaction import Peer
from trunkline.gateway.sip.uri import parse_uri
from trunkline.gateway.switch.location import Binding, LocationService

SRC = Peer("udp:127.0.0.1:5060", ("198.51.100.7", 61000))


def binding(contact: str, expires_at: float, q: float = 1.0) -> Binding:
    return Binding("alice", parse_uri(contact), expires_at, SRC, "cid", 1, q)


def test_lookup_orders_by_q_and_expires_on_the_clock() -> None:
    loc = LocationService(max_bindings_per_user=2)
    loc.update(binding("sip:a@10.0.0.1", 100.0, q=0.5), 0.0)
    loc.update(binding("sip:a@10.0.0.2", 50.0, q=0.9), 0.0)
    assert [b.contact.host for b in loc.lookup("alice", 10.0)] == ["10.0.0.2", "10.0.0.1"]
    assert [b.contact.host for b in loc.lookup("alice", 60.0)] == ["10.0.0.1"]
    assert loc.lookup("alice", 100.0) == [] and loc.users(100.0) == []


def test_limit_replaces_the_oldest_and_removal() -> None:
    loc = LocationService(max_bindings_per_user=2)
    for i, exp in enumerate((30.0, 20.0, 40.0)):
        loc.update(binding(f"sip:a@10.0.0.{i}", exp), 0.0)
    assert sorted(b.contact.host for b in loc.lookup("alice", 0.0)) == ["10.0.0.0", "10.0.0.2"]
    assert loc.remove("alice", parse_uri("sip:a@10.0.0.0")) and not loc.remove("alice", parse_uri("sip:x@y"))
    assert loc.remove_all("alice") == 1 and len(loc) == 0
