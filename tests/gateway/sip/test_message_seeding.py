"""make_response hands the request's parsed Via/From/CSeq/To to the response: the values must be
exactly what parsing the response's own header text gives, and never stale."""

from __future__ import annotations

from trunkline.gateway.sip import SipRequest, SipResponse, make_response, parse_message

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8;rport, "
    b"SIP/2.0/TCP p1.example.com;branch=z9hG4bK1\r\n"
    b"To: Bob <sip:bob@biloxi.example.com;user=phone>;x-param=1\r\n"
    b'From: "Alice A." <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def parsed_request() -> SipRequest:
    request = parse_message(INVITE)
    assert isinstance(request, SipRequest)
    # The typed views a transaction and a dialog read before answering.
    assert request.to.tag is None and request.from_.tag == "1928301774"
    assert request.cseq.seq == 314159 and request.top_via.branch == "z9hG4bKnashds8"
    return request


def reparsed(response: SipResponse) -> SipResponse:
    again = parse_message(response.serialize())
    assert isinstance(again, SipResponse)
    return again


def test_seeded_views_equal_a_fresh_parse_with_the_to_tag_added() -> None:
    response = make_response(
        parsed_request(), 200, to_tag="as83kd9bs", headers=[("Contact", "<sip:bob@192.0.2.4>")]
    )
    fresh = reparsed(response)
    assert response.to == fresh.to
    assert response.to.tag == "as83kd9bs" and response.to.params["x-param"] == "1"
    assert response.to.uri.params == {"user": "phone"} and response.to.display_name == "Bob"
    assert response.from_ == fresh.from_ and response.from_.display_name == "Alice A."
    assert response.via == fresh.via and len(response.via) == 2
    assert response.cseq == fresh.cseq
    assert response.contact == fresh.contact


def test_request_to_tag_is_kept_and_no_tag_means_same_to() -> None:
    request = parsed_request()
    trying = make_response(request, 100, to_tag="ignored")
    assert trying.to == reparsed(trying).to and trying.to.tag is None
    untagged = make_response(request, 404)
    assert untagged.to == reparsed(untagged).to and untagged.to.tag is None


def test_extra_headers_replacing_a_copied_one_are_not_shadowed() -> None:
    request = parsed_request()
    response = make_response(request, 200, to_tag="t1", headers=[("Via", "SIP/2.0/UDP extra.example.com")])
    assert response.via == reparsed(response).via and len(response.via) == 3
    assert response.via[-1].host == "extra.example.com"


def test_a_later_header_change_drops_the_seeded_views() -> None:
    response = make_response(parsed_request(), 200, to_tag="t1")
    assert response.top_via.host == "pc33.atlanta.example.com"
    response.headers.remove_first("Via")
    assert response.top_via.host == "p1.example.com"
    assert response.to.tag == "t1"
