"""Typed header values: Via, CSeq, NameAddr, AuthValue and list splitting."""

from __future__ import annotations

import pytest

from trunkline.gateway.sip import AuthValue, CSeq, NameAddr, SipParseError, Via
from trunkline.gateway.sip.headers import split_list


def test_via_fields_and_serialize() -> None:
    via = Via.parse(
        "SIP/2.0/udp pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;received=192.0.2.1;rport;ttl=16"
    )
    assert (via.protocol, via.transport, via.host, via.port) == ("SIP/2.0", "UDP", "pc33.atlanta.com", 5066)
    assert via.sent_by == "pc33.atlanta.com:5066"
    assert via.branch == "z9hG4bK776asdhds" and via.rfc3261_branch
    assert via.received == "192.0.2.1"
    assert via.has_rport and via.rport is None
    assert via.ttl == 16 and via.maddr is None
    assert (
        via.serialize()
        == "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;received=192.0.2.1;rport;ttl=16"
    )
    answered = via.with_params(rport="5066", received="203.0.113.9")
    assert answered.rport == 5066
    assert answered.serialize().endswith(";received=203.0.113.9;rport=5066;ttl=16")
    assert via.received == "192.0.2.1"


def test_via_ipv6_and_lws() -> None:
    via = Via.parse("SIP / 2.0 / TCP [2001:db8::9:1] : 6050 ; branch = z9hG4bK1 ; maddr=[ff02::1]")
    assert (via.host, via.port, via.branch, via.maddr) == ("[2001:db8::9:1]", 6050, "z9hG4bK1", "[ff02::1]")
    assert not Via.parse("SIP/2.0/UDP h;branch=1234").rfc3261_branch


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP",
        "SIP/2.0 h",
        "SIP/2.0/UDP h;;",
        "SIP/2.0/UDP h:70000",
        "SIP/2.0/UDP h;ttl=300",
        "SIP/2.0/UDP h;branch=",
        "SIP/2.0/UDP h extra",
        "SIP/2.0/UDP 2001:db8::1",
    ],
)
def test_via_malformed(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        Via.parse(text)
    assert info.value.header == "Via"
    with pytest.raises(SipParseError):
        Via.validate(text)


def test_cseq() -> None:
    assert CSeq.parse(" 4711   INVITE ") == CSeq(4711, "INVITE")
    assert CSeq(1, "BYE").serialize() == "1 BYE"
    assert CSeq.parse("4294967295 ACK").seq == 4294967295
    for bad in ("4294967296 ACK", "INVITE", "1", "-1 BYE", "1 BYE x"):
        with pytest.raises(SipParseError):
            CSeq.parse(bad)


def test_name_addr_forms() -> None:
    a = NameAddr.parse('"Bob \\"B\\" Smith" <sip:bob@biloxi.com;transport=tcp>;tag=a6c85cf;q=0.7')
    assert a.display_name == 'Bob "B" Smith'
    assert a.uri.params == {"transport": "tcp"}
    assert a.params == {"tag": "a6c85cf", "q": "0.7"}
    assert a.tag == "a6c85cf"
    assert a.serialize() == '"Bob \\"B\\" Smith" <sip:bob@biloxi.com;transport=tcp>;tag=a6c85cf;q=0.7'
    b = NameAddr.parse("sip:alice@atlanta.com;tag=88sja8x")
    assert b.display_name is None and b.uri.params == {} and b.tag == "88sja8x"
    assert b.serialize() == "<sip:alice@atlanta.com>;tag=88sja8x"
    c = NameAddr.parse("Anonymous Caller <sip:c@h>;expires=3600")
    assert c.display_name == "Anonymous Caller" and c.expires == 3600
    assert c.with_tag("x").params == {"expires": "3600", "tag": "x"}
    assert c.params == {"expires": "3600"}
    d = NameAddr.parse('"" <sip:c@h>')
    assert d.display_name == ""
    e = NameAddr.parse('<sip:c@h>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"')
    assert e.params["+sip.instance"] == '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'


@pytest.mark.parametrize(
    "text",
    [
        '"unbalanced <sip:a@h>',
        "< sip:a@h >",
        "Bell, Alexander <sip:a@h>",
        "sip:a@h?Route=x",
        "<sip:a@h>;;",
        "<sip:a@h",
        "",
    ],
)
def test_name_addr_malformed(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text, "To")
    with pytest.raises(SipParseError):
        NameAddr.validate(text, "To")


def test_split_list() -> None:
    assert split_list("a") == ["a"]
    assert split_list("INVITE, ACK ,BYE") == ["INVITE", "ACK", "BYE"]
    assert split_list('"Doe, John" <sip:j@h;x=a,b>;q=1, <sip:k@h>') == [
        '"Doe, John" <sip:j@h;x=a,b>;q=1',
        "<sip:k@h>",
    ]
    assert split_list('<sip:a@h>,,"x" <sip:b@h>,') == ["<sip:a@h>", "", '"x" <sip:b@h>', ""]
    with pytest.raises(SipParseError, match="unbalanced"):
        split_list('"open, <sip:a@h>', "Contact")


def test_auth_value() -> None:
    value = AuthValue.parse(
        'Digest username="bob", realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'uri="sip:bob@biloxi.com", qop=auth, nc=00000001, cnonce="0a4f113b", '
        'response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert value.scheme == "Digest"
    assert value.get("USERNAME") == "bob"
    assert value.params["nc"] == "00000001"
    assert value.params["qop"] == "auth"
    again = AuthValue.parse(value.serialize())
    assert again == value
    assert "nc=00000001" in value.serialize() and 'username="bob"' in value.serialize()
    challenge = AuthValue.parse('Digest realm="a, b", qop="auth,auth-int", stale=FALSE, algorithm=MD5')
    assert challenge.params == {"realm": "a, b", "qop": "auth,auth-int", "stale": "FALSE", "algorithm": "MD5"}
    assert AuthValue.parse(challenge.serialize()) == challenge
    assert AuthValue.parse("NoOneKnowsThisScheme opaque-data=here").params == {"opaque-data": "here"}
    assert AuthValue.parse("Basic").serialize() == "Basic"
    for bad in ('Digest realm="x', "Digest realm", "Digest a=b,, c=d", ""):
        with pytest.raises(SipParseError):
            AuthValue.parse(bad)
