"""RFC 3428 MESSAGE requests: building them, the wire bytes, and reading inbound ones."""

from __future__ import annotations

import pytest

from trunkline.gateway.messaging.sip import (
    PLAIN_TEXT,
    MessageFormatError,
    address_of,
    build_message_request,
    needs_reliable_transport,
    read_message,
    sip_uri_for,
)
from trunkline.gateway.sip import Headers, SipRequest, SipUri, new_branch, parse_message

CYRILLIC = "Привет, мир! Съешь же ещё этих мягких французских булок."


def test_cyrillic_body_survives_the_wire() -> None:
    request = build_message_request(
        sip_uri_for("+14155550100", "trunk.example.net"),
        sip_uri_for("client:alice", "127.0.0.1", 5062),
        CYRILLIC,
        call_id="abc123@trunkline",
    )
    # The transaction layer adds the top Via when it sends (SipCore.send_request).
    request.headers.insert_first("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch={new_branch()};rport")
    wire = request.serialize()
    assert wire.startswith(b"MESSAGE sip:alice@127.0.0.1:5062 SIP/2.0\r\n")
    head, _, body = wire.partition(b"\r\n\r\n")
    assert body == CYRILLIC.encode("utf-8")
    assert f"Content-Length: {len(CYRILLIC.encode('utf-8'))}".encode() in head
    parsed = parse_message(wire)
    assert isinstance(parsed, SipRequest)
    assert parsed.method == "MESSAGE"
    assert parsed.content_type == PLAIN_TEXT
    assert parsed.body == CYRILLIC.encode("utf-8")
    assert parsed.cseq.method == "MESSAGE" and parsed.cseq.seq == 1
    assert parsed.call_id == "abc123@trunkline"
    assert parsed.from_.tag is not None and parsed.to.tag is None
    assert parsed.from_.uri.params == {"user": "phone"}
    assert "Contact" not in parsed.headers  # a MESSAGE never creates a dialog (RFC 3428 section 4)
    message = read_message(parsed)
    assert (message.from_, message.to, message.body) == ("+14155550100", "client:alice", CYRILLIC)


def test_read_other_charsets_and_reject_other_types() -> None:
    def inbound(body: bytes, content_type: str | None) -> SipRequest:
        headers = Headers(
            [
                ("From", "<sip:bob@10.0.0.5>;tag=1"),
                ("To", "<sip:+14155550100@trunkline.local;user=phone>"),
                ("Call-ID", "x1"),
                ("CSeq", "7 MESSAGE"),
            ]
        )
        if content_type is not None:
            headers.add("Content-Type", content_type)
        return SipRequest("MESSAGE", SipUri("sip", "+14155550100", None, "trunkline.local"), headers, body)

    koi8 = read_message(inbound("Ёлка".encode("koi8-r"), 'text/plain; charset="KOI8-R"'))
    assert koi8.body == "Ёлка" and koi8.from_ == "client:bob" and koi8.to == "+14155550100"
    assert read_message(inbound(b"hi", None)).body == "hi"  # no Content-Type: plain text
    with pytest.raises(MessageFormatError) as html:
        read_message(inbound(b"<b>hi</b>", "text/html"))
    assert html.value.status == 415
    with pytest.raises(MessageFormatError) as broken:
        read_message(inbound(b"\xff\xfe\xfa", "text/plain;charset=UTF-8"))
    assert broken.value.status == 400


def test_addresses_and_size_limit() -> None:
    assert address_of(SipUri.parse("sip:+447700900123@gw.example")) == "+447700900123"
    assert address_of(SipUri.parse("sip:14155550100@gw.example;user=phone")) == "+14155550100"
    assert address_of(SipUri.parse("tel:+14155550100")) == "+14155550100"
    assert address_of(SipUri.parse("sip:alice@pbx.example")) == "client:alice"
    assert str(sip_uri_for("sip:carol@example.org", "ignored")) == "sip:carol@example.org"
    small = build_message_request(SipUri.parse("sip:a@h"), SipUri.parse("sip:b@h"), "ok")
    large = build_message_request(SipUri.parse("sip:a@h"), SipUri.parse("sip:b@h"), "Ж" * 700)
    assert not needs_reliable_transport(small)
    assert needs_reliable_transport(large)  # 1,400 body bytes: over RFC 3428 section 8's 1,300
