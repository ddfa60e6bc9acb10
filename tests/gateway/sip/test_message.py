"""Message model: Headers, SipRequest/SipResponse serialization and response building."""

from __future__ import annotations

import pytest

from trunkline.gateway.sip import (
    MAGIC_COOKIE,
    REASON_PHRASES,
    Headers,
    SipParseError,
    SipRequest,
    SipResponse,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
    parse_uri,
)
from trunkline.gateway.sip.message import canonical_name

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8, "
    b"SIP/2.0/TCP p1.example.com;branch=z9hG4bK1\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"f: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"i: a84b4c76e66710\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Record-Route: <sip:p1.example.com;lr>\r\n"
    b"m: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def test_headers_lookup_compact_and_case() -> None:
    headers = Headers([("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/UDP b, SIP/2.0/UDP c"), ("x-custom", "1")])
    assert headers.get("via") == "SIP/2.0/UDP a"
    assert headers.get_all("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b", "SIP/2.0/UDP c"]
    assert headers.get("X-Custom") == "1"
    assert headers.get("missing") is None and headers.get("missing", "d") == "d"
    assert headers.items() == [
        ("Via", "SIP/2.0/UDP a"),
        ("Via", "SIP/2.0/UDP b, SIP/2.0/UDP c"),
        ("x-custom", "1"),
    ]
    assert list(headers) == headers.items()
    assert len(headers) == 3 and "V" in headers and "Call-ID" not in headers and 3 not in headers
    assert headers.count("via") == 2
    assert canonical_name("i") == "Call-ID" and canonical_name("WWW-authenticate") == "WWW-Authenticate"
    assert canonical_name("X-Odd") == "X-Odd"


def test_headers_mutation() -> None:
    headers = Headers([("Via", "SIP/2.0/UDP b"), ("To", "<sip:t@h>"), ("Via", "SIP/2.0/UDP c")])
    headers.insert_first("Via", "SIP/2.0/UDP a")
    assert headers.get_all("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b", "SIP/2.0/UDP c"]
    assert headers.remove_first("Via") == "SIP/2.0/UDP a"
    headers.set("Via", "SIP/2.0/UDP z")
    assert headers.items() == [("Via", "SIP/2.0/UDP z"), ("To", "<sip:t@h>")]
    headers.set("Subject", "hi")
    assert headers.items()[-1] == ("Subject", "hi")
    assert headers.remove("via") == 1 and headers.remove("via") == 0
    headers.add("Route", "<sip:a@h;lr>, <sip:b@h;lr>")
    assert headers.remove_first("Route") == "<sip:a@h;lr>"
    assert headers.get("Route") == "<sip:b@h;lr>"
    assert headers.remove_first("Route") == "<sip:b@h;lr>"
    assert headers.remove_first("Route") is None
    copy = headers.copy()
    copy.add("X", "1")
    assert "X" not in headers
    headers.insert_first("Contact", "<sip:c@h>")
    assert headers.items()[0] == ("Contact", "<sip:c@h>")


def test_typed_accessors_and_cache_invalidation() -> None:
    req = parse_message(INVITE)
    assert isinstance(req, SipRequest)
    assert [v.sent_by for v in req.via] == ["pc33.atlanta.example.com", "p1.example.com"]
    assert req.top_via.transport == "UDP"
    assert req.call_id == "a84b4c76e66710"
    assert req.from_.tag == "1928301774" and req.to.tag is None
    assert req.contact[0].uri.host == "pc33.atlanta.example.com"
    assert req.record_route[0].uri.lr
    assert req.route == []
    assert req.max_forwards == 70 and req.expires is None
    assert req.content_type == "application/sdp"
    assert req.body == b"v=0\n"
    req.headers.insert_first("Via", "SIP/2.0/TLS proxy.example.com;branch=z9hG4bKnew")
    assert req.top_via.host == "proxy.example.com"
    assert len(req.via) == 3


def test_missing_headers_raise_typed_errors() -> None:
    req = SipRequest("OPTIONS", parse_uri("sip:h"))
    for getter in ("cseq", "call_id", "from_", "to", "top_via"):
        with pytest.raises(SipParseError):
            getattr(req, getter)
    assert req.via == [] and req.contact == [] and req.max_forwards is None
    req.headers.add("Max-Forwards", "x")
    with pytest.raises(SipParseError, match="Max-Forwards"):
        _ = req.max_forwards


def test_serialize_sets_content_length() -> None:
    req = SipRequest(
        "MESSAGE",
        parse_uri("sip:bob@h"),
        Headers([("Content-Length", "999"), ("Content-Type", "text/plain")]),
        b"hello",
    )
    assert req.serialize() == (
        b"MESSAGE sip:bob@h SIP/2.0\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
    )
    resp = SipResponse(200, "OK", Headers([("CSeq", "1 MESSAGE")]))
    assert bytes(resp) == b"SIP/2.0 200 OK\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"


def test_round_trip_normalises_compact_names() -> None:
    req = parse_message(INVITE)
    wire = req.serialize()
    assert b"\r\nCall-ID: a84b4c76e66710\r\n" in wire
    assert b"\r\nContent-Length: 4\r\n\r\nv=0\n" in wire
    assert parse_message(wire) == req


def test_make_response_copies_per_8_2_6_2() -> None:
    req = parse_message(INVITE)
    assert isinstance(req, SipRequest)
    resp = make_response(req, 180, to_tag="abc", headers=[("Contact", "<sip:bob@192.0.2.4>")])
    assert (resp.status_code, resp.reason) == (180, "Ringing")
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.from_ == req.from_
    assert resp.call_id == req.call_id and resp.cseq == req.cseq
    assert resp.to.tag == "abc" and resp.to.uri == req.to.uri
    assert resp.headers.get("Record-Route") is None
    assert resp.headers.get("Max-Forwards") is None
    assert resp.contact[0].uri.host == "192.0.2.4"
    assert resp.body == b""
    trying = make_response(req, 100, to_tag="abc")
    assert trying.to.tag is None and trying.reason == "Trying"
    assert make_response(req, 299).reason == ""
    assert make_response(req, 200, "Fine").reason == "Fine"
    tagged = parse_message(INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>", b"To: <sip:b@h>;tag=old"))
    assert isinstance(tagged, SipRequest)
    assert make_response(tagged, 200, to_tag="new").to.tag == "old"
    wire = make_response(req, 486).serialize()
    assert wire.startswith(b"SIP/2.0 486 Busy Here\r\n")
    assert isinstance(parse_message(wire), SipResponse)


def test_make_response_to_partial_request_with_bad_to() -> None:
    bad = INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>", b'To: "unbalanced <sip:b@h>;tag=t1')
    with pytest.raises(SipParseError) as info:
        parse_message(bad)
    partial = info.value.partial
    assert isinstance(partial, SipRequest)
    resp = make_response(partial, 400, to_tag="x")
    assert resp.headers.get("To") == '"unbalanced <sip:b@h>;tag=t1'


def test_identifiers() -> None:
    branch = new_branch()
    assert branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE) + 8
    assert new_branch() != branch
    assert len(new_tag()) >= 8 and new_tag() != new_tag()
    assert new_call_id("h.example.com").endswith("@h.example.com")
    assert "@" not in new_call_id()
    assert REASON_PHRASES[481] == "Call/Transaction Does Not Exist"
