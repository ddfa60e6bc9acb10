"""SIP/SIPS/tel URI parsing, escaping and comparison (RFC 3261 section 19.1)."""

from __future__ import annotations

import pytest

from trunkline.gateway.sip import SipParseError, SipUri, parse_uri
from trunkline.gateway.sip.uri import validate_uri


def test_full_sip_uri() -> None:
    uri = parse_uri("sips:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent")
    assert uri.scheme == "sips"
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "secret", "atlanta.com", 5061)
    assert uri.params == {"transport": "tcp", "lr": None}
    assert uri.headers == {"subject": "project x", "priority": "urgent"}
    assert uri.transport == "tcp" and uri.lr and uri.is_sip
    assert uri.host_port == "atlanta.com:5061"
    assert (
        uri.serialize()
        == "sips:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent"
    )
    assert str(uri) == uri.serialize()


def test_ipv6_host_kept_in_brackets() -> None:
    uri = parse_uri("sip:[::1]:5070;maddr=[2001:db8::1]")
    assert (uri.host, uri.port) == ("[::1]", 5070)
    assert uri.params == {"maddr": "[2001:db8::1]"}
    assert uri.serialize() == "sip:[::1]:5070;maddr=[2001:db8::1]"


def test_escapes_decoded_and_reescaped() -> None:
    uri = parse_uri("sip:sips%3Auser%40example.com@example.net;n%61me=v%61lue%25")
    assert uri.user == "sips:user@example.com"
    assert uri.params == {"name": "value%"}
    assert uri.serialize() == "sip:sips%3Auser%40example.com@example.net;name=value%25"
    assert parse_uri(uri.serialize()) == uri
    # unreserved characters come back unescaped
    assert parse_uri("sip:%61lice@h").serialize() == "sip:alice@h"
    nul = parse_uri("sip:%00@h")
    assert nul.user == "\x00"
    assert nul.serialize() == "sip:%00@h"
    utf8 = parse_uri("sip:%C3%A9@h")
    assert utf8.user == "\u00e9"
    assert utf8.serialize() == "sip:%C3%A9@h"


def test_tel_and_absolute_uris() -> None:
    tel = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert (tel.scheme, tel.user, tel.host) == ("tel", "+1-201-555-0123", "")
    assert tel.params == {"phone-context": "example.com"}
    assert tel.serialize() == "tel:+1-201-555-0123;phone-context=example.com"
    assert tel == parse_uri("tel:+12015550123;phone-context=example.com")
    assert hash(tel) == hash(parse_uri("tel:+12015550123;phone-context=example.com"))
    other = parse_uri("urn:service:sos")
    assert (other.scheme, other.opaque, other.is_sip) == ("urn", "service:sos", False)
    assert other.serialize() == "urn:service:sos"
    assert SipUri.parse("SIP:bob@h").scheme == "sip"


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:user@",
        "sip:2001:db8::10",  # RFC 5118 section 4.2: IPv6 without brackets
        "sip:a b@h",
        "sip:h:99999",
        "sip:h:port",
        "sip:h;=x",
        "sip:%zz@h",
        "sip:a@h?x",
        "sip:<h>",
        "tel:abc zz",
        "nocolon",
        "1abc:x",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)
    with pytest.raises(SipParseError):
        validate_uri(text)


# RFC 3261 section 19.1.4: equivalent pairs
EQUAL = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
]

# RFC 3261 section 19.1.4: non-equivalent pairs
NOT_EQUAL = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:alice@h", "sips:alice@h"),
    ("sip:alice@h;maddr=a", "sip:alice@h;maddr=b"),
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_equivalent(a: str, b: str) -> None:
    ua, ub = parse_uri(a), parse_uri(b)
    assert ua == ub and ub == ua
    if not ua.params.keys() ^ ub.params.keys():
        assert hash(ua) == hash(ub)


@pytest.mark.parametrize(("a", "b"), NOT_EQUAL)
def test_not_equivalent(a: str, b: str) -> None:
    assert parse_uri(a) != parse_uri(b)
    assert parse_uri(b) != parse_uri(a)


def test_with_params_and_without_headers() -> None:
    uri = parse_uri("sip:a@h?Route=x")
    changed = uri.with_params(transport="tcp", lr=None)
    assert changed.serialize() == "sip:a@h;transport=tcp;lr?Route=x"
    assert uri.params == {}
    assert changed.without_headers().serialize() == "sip:a@h;transport=tcp;lr"
    assert uri != "sip:a@h?Route=x"
