"""Parser tests over the RFC 4475 and RFC 5118 torture messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trunkline.gateway.sip import (
    SipParseError,
    SipRequest,
    SipResponse,
    has_trailing_bytes,
    parse_message,
    parse_prefix,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RFC4475 = FIXTURES / "rfc4475"
RFC5118 = FIXTURES / "rfc5118"


def load(name: str) -> bytes:
    return (RFC4475 / f"{name}.dat").read_bytes()


def load6(name: str) -> bytes:
    return (RFC5118 / f"{name}.dat").read_bytes()


def request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


# RFC 4475 section 3.1.1 (valid), 3.2, 3.3 (parse; the application decides), 3.4.
_PARSEABLE_TEXT = """
    wsinv intmeth esc01 escnull esc02 lwsdisp longreq dblreq semiuri transports mpart01 unreason
    noreason badbranch unkscm novelsc unksm2 bext01 invut regaut01 multi01 mcl01 bcast zeromf
    cparam01 cparam02 regescrt sdp01 inv2543
"""
PARSEABLE = _PARSEABLE_TEXT.split()

# RFC 4475 section 3.1.2 (invalid) plus insuf (missing mandatory headers): name -> status, reason regex
INVALID = {
    "badinv01": (400, r"Via"),
    "clerr": (400, r"Content-Length 9999 exceeds"),
    "ncl": (400, r"Content-Length '-999'"),
    "scalar02": (400, r"CSeq number 36893488147419103232"),
    "scalarlg": (400, r"CSeq number 9292394834772304023312"),
    "quotbal": (400, r"To"),
    "ltgtruri": (400, r"Request-Line"),
    "lwsruri": (400, r"Request-Line"),
    "lwsstart": (400, r"Request-Line"),
    "trws": (400, r"Request-Line"),
    "escruri": (400, r"Request-URI .* carries headers"),
    "baddate": (400, r"Date 'Fri, 01 Jan 2010 16:00:00 EST'"),
    "regbadct": (400, r"Contact"),
    "badaspec": (400, r"To"),
    "baddn": (400, r"From"),
    "badvers": (505, r"SIP/7.0"),
    "mismatch01": (400, r"CSeq method 'INVITE' does not match request method 'OPTIONS'"),
    "mismatch02": (400, r"CSeq method 'INVITE' does not match request method 'NEWMETHOD'"),
    "bigcode": (400, r"status code 4294967301"),
    "insuf": (400, r"missing mandatory (To|From|Call-ID)"),
}


def test_fixture_tables_cover_all_49_files() -> None:
    names = {p.stem for p in RFC4475.glob("*.dat")}
    assert len(names) == 49
    assert names == set(PARSEABLE) | set(INVALID)


@pytest.mark.parametrize("name", PARSEABLE)
def test_rfc4475_parseable(name: str) -> None:
    message = parse_message(load(name))
    assert isinstance(message, SipRequest | SipResponse)
    assert message.via  # every fixture has at least one Via
    assert message.cseq.seq >= 0


@pytest.mark.parametrize("name", sorted(INVALID))
def test_rfc4475_invalid(name: str) -> None:
    status, pattern = INVALID[name]
    with pytest.raises(SipParseError) as info:
        parse_message(load(name))
    assert info.value.status_code == status
    assert re.search(pattern, str(info.value)), str(info.value)


def test_wsinv_whitespace_folding_and_case() -> None:
    req = request(load("wsinv"))
    assert req.method == "INVITE"
    assert req.uri.user == "vivekg"
    assert req.uri.host == "chair-dnrc.example.com"
    assert req.uri.params == {"unknownparam": None}
    assert req.to.tag == "1918181833n"
    assert str(req.to.uri) == "sip:vivekg@chair-dnrc.example.com"
    assert req.from_.display_name == 'J Rosenberg \\"'
    assert req.from_.tag == "98asjd8"
    assert req.max_forwards == 68
    assert (req.cseq.seq, req.cseq.method) == (9, "INVITE")
    assert req.call_id == "wsinv.ndaksdj@192.0.2.1"
    vias = req.via
    assert [(v.transport, v.host, v.port, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", None, "390skdjuw"),
        ("TCP", "spindle.example.com", None, "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", None, "z9hG4bK30239"),
    ]
    assert req.headers.get("Subject") == ""
    assert req.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert req.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = req.contact
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    (route,) = req.route
    assert route.uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    assert req.content_type == "application/sdp"
    assert len(req.body) == 150
    assert req.body.startswith(b"v=0\r\n")


def test_intmeth_unusual_tokens() -> None:
    req = request(load("intmeth"))
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert req.method == method
    assert req.cseq.method == method
    assert req.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert req.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert req.uri.host == "example.com"
    assert req.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert req.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert req.from_.tag == "_token~1'+`*%!-."
    assert req.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert req.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"
    assert req.body == b""


def test_esc01_percent_escapes_decoded() -> None:
    req = request(load("esc01"))
    assert req.uri.user == "sips:user@example.com"
    assert req.uri.host == "example.net"
    assert req.to.uri.user == "user"
    assert req.from_.uri.user == "I have spaces"
    assert req.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # compact "i"
    assert req.content_type == "application/sdp"  # compact "C" (upper case)
    (contact,) = req.contact
    assert contact.uri.user == "caller"
    assert contact.uri.params == {"lr": None, "name": "value%41"}
    assert len(req.body) == 150


def test_escnull_and_esc02() -> None:
    req = request(load("escnull"))
    assert req.to.uri.user == "null-\x00-null"
    assert [c.uri.user for c in req.contact] == ["\x00", "\x00\x00"]
    req = request(load("esc02"))
    assert req.method == "RE%47IST%45R"  # a method token is not unescaped
    assert req.top_via.branch == "z9hG4bK209%fzsnel234"
    assert req.to.display_name == "%Z%45"
    assert [c.uri.host for c in req.contact] == ["host1.example.com", "host3.example.com"]
    assert req.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_semiuri_transports() -> None:
    req = request(load("lwsdisp"))
    assert req.from_.display_name == "caller"
    assert req.from_.uri.user == "caller"
    req = request(load("semiuri"))
    assert req.uri.user == "user;par=u@example.net"
    assert req.uri.host == "example.com"
    assert req.uri.params == {}
    assert req.headers.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]
    req = request(load("transports"))
    assert [v.transport for v in req.via] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_longreq() -> None:
    req = request(load("longreq"))
    assert req.to.display_name is not None and "extremeextreme" in req.to.display_name
    assert req.to.uri.port == 6000
    assert len(req.via) == 34
    assert req.via[-1].received == "192.0.2.5"
    assert req.from_.tag is not None and req.from_.tag.startswith("12982982982")
    assert len(req.body) == 150


def test_dblreq_first_request_only() -> None:
    data = load("dblreq")
    message, used = parse_prefix(data)
    assert isinstance(message, SipRequest)
    assert message.method == "REGISTER"
    assert message.body == b""
    assert used < len(data)
    assert data[used:].lstrip(b"\r\n").startswith(b"INVITE sip:joe@example.com SIP/2.0")
    assert has_trailing_bytes(data)
    assert not has_trailing_bytes(load("esc01"))
    second = request(data[used:])
    assert second.method == "INVITE"
    assert second.to.uri.user == "joe"


def test_mcl01_and_multi01_parse_for_the_application() -> None:
    req = request(load("mcl01"))
    assert req.headers.get_all("Content-Length") == ["13", "5"]
    assert req.body == b"There's no wa"  # the first Content-Length wins; the rest is trailing
    assert req.headers.duplicated_singletons() == ["Content-Length"]
    req = request(load("multi01"))
    assert req.headers.duplicated_singletons() == ["CSeq", "Call-ID", "To", "From", "Max-Forwards"]
    assert request(load("esc01")).headers.duplicated_singletons() == []
    assert req.headers.count("CSeq") == 2
    assert req.headers.count("To") == 2
    assert req.cseq.seq == 5


def test_application_layer_messages_expose_what_is_needed() -> None:
    assert request(load("unkscm")).uri.scheme == "nobodyknowsthisscheme"
    novel = request(load("novelsc")).uri
    assert (novel.scheme, novel.opaque) == ("soap.beep", "//192.0.2.103:3002")
    req = request(load("unksm2"))
    assert req.to.uri.scheme == "isbn"
    assert req.from_.uri.scheme == "http"
    assert req.contact[0].uri.scheme == "name"
    assert request(load("bext01")).headers.get_all("Require") == [
        "nothingSupportsThis",
        "nothingSupportsThisEither",
    ]
    assert request(load("zeromf")).max_forwards == 0
    assert request(load("invut")).content_type == "application/unknownformat"
    assert request(load("regaut01")).headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"
    assert request(load("cparam01")).contact[0].params == {"unknownparam": None}
    assert request(load("cparam01")).contact[0].uri.params == {}
    assert request(load("cparam02")).contact[0].uri.params == {"unknownparam": None}
    regescrt = request(load("regescrt")).contact[0].uri
    assert regescrt.headers == {"Route": "<sip:sip.example.com>"}
    badbranch = request(load("badbranch")).top_via
    assert badbranch.branch == "z9hG4bK" and badbranch.rfc3261_branch
    inv = request(load("inv2543"))
    assert inv.top_via.branch is None
    assert inv.max_forwards is None
    assert inv.from_.tag is None
    assert inv.to.params == {"user": "phone"}
    assert len(inv.body) == len(load("inv2543").partition(b"\r\n\r\n")[2])


def test_responses() -> None:
    for name, code, reason in (
        ("noreason", 100, ""),
        ("bcast", 200, "OK"),
    ):
        resp = parse_message(load(name))
        assert isinstance(resp, SipResponse)
        assert (resp.status_code, resp.reason) == (code, reason)
    resp = parse_message(load("unreason"))
    assert isinstance(resp, SipResponse)
    assert resp.reason.startswith("= 2**3 * 5**2 \u043d\u043e")
    assert len(resp.body) == 154


def test_insuf_error_carries_the_partial_request() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load("insuf"))
    partial = info.value.partial
    assert isinstance(partial, SipRequest)
    assert partial.cseq.seq == 193942
    assert partial.top_via.branch == "z9hG4bKkdj.insuf"


def test_header_error_carries_the_partial_request() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load("baddate"))
    assert info.value.header == "Date"
    assert isinstance(info.value.partial, SipRequest)
    assert info.value.partial.call_id.startswith("baddate.")


# RFC 5118: the three SDP messages print a wrong Content-Length (see the fixtures README).
RFC5118_PRINTED_LENGTH = {"ipv6-in-sdp": 268, "mult-ip-in-sdp": 181, "ipv4-mapped-ipv6": 236}


def load6_fixed(name: str) -> bytes:
    data = load6(name)
    printed = RFC5118_PRINTED_LENGTH.get(name)
    if printed is None:
        return data
    head, _, body = data.partition(b"\r\n\r\n")
    assert f"Content-Length: {printed}\r\n".encode() in head + b"\r\n"
    assert len(body) != printed
    fixed = head.replace(f"Content-Length: {printed}".encode(), f"Content-Length: {len(body)}".encode())
    return fixed + b"\r\n\r\n" + body


def test_rfc5118_fixture_set() -> None:
    assert len(list(RFC5118.glob("*.dat"))) == 12


def test_rfc5118_printed_content_length_is_wrong() -> None:
    with pytest.raises(SipParseError, match="Content-Length 268 exceeds"):
        parse_message(load6("ipv6-in-sdp"))


def test_rfc5118_ipv6_good() -> None:
    req = request(load6_fixed("ipv6-good"))
    assert req.method == "REGISTER"
    assert (req.uri.host, req.uri.port) == ("[2001:db8::10]", None)
    assert (req.top_via.host, req.top_via.port, req.top_via.branch) == (
        "[2001:db8::9:1]",
        None,
        "z9hG4bKas3-111",
    )
    assert req.contact[0].uri.host == "[2001:db8::1]"
    assert req.contact[0].display_name == "Caller"
    assert req.from_.tag == "81x2"
    assert req.cseq.seq == 98176


def test_rfc5118_ipv6_bad() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load6("ipv6-bad"))
    assert info.value.status_code == 400
    assert "Request-URI" in str(info.value)


def test_rfc5118_ports() -> None:
    ambiguous = request(load6("port-ambiguous")).uri
    assert (ambiguous.host, ambiguous.port) == ("[2001:db8::10:5070]", None)
    unambiguous = request(load6("port-unambiguous")).uri
    assert (unambiguous.host, unambiguous.port) == ("[2001:db8::10]", 5070)


def test_rfc5118_via_received() -> None:
    with_delim = request(load6("via-received-param-with-delim"))
    assert with_delim.top_via.received == "[2001:db8::9:255]"
    assert with_delim.to.tag == "bd76ya"
    no_delim = request(load6("via-received-param-no-delim"))
    assert no_delim.top_via.received == "2001:db8::9:255"
    assert no_delim.top_via.branch == "z9hG4bKas3"
    assert no_delim.contact[0].uri.host == "[2001:db8::9:1]"


def test_rfc5118_mult_ip_in_header() -> None:
    req = request(load6("mult-ip-in-header"))
    assert [(v.transport, v.host, v.port, v.branch, v.received) for v in req.via] == [
        ("UDP", "[2001:db8::9:1]", 6050, "z9hG4bKas3-111", None),
        ("UDP", "192.0.2.1", None, "z9hG4bKjhja8781hjuaij65144", None),
        ("TCP", "[2001:db8::9:255]", None, "z9hG4bK451jj", "192.0.2.200"),
    ]
    assert req.top_via.sent_by == "[2001:db8::9:1]:6050"
    assert req.to.tag == "9817--94"


@pytest.mark.parametrize("name", ["ipv6-in-sdp", "mult-ip-in-sdp", "ipv4-mapped-ipv6"])
def test_rfc5118_sdp_bodies(name: str) -> None:
    data = load6_fixed(name)
    req = request(data)
    assert req.body == data.partition(b"\r\n\r\n")[2]
    assert req.content_type == "application/sdp"
    assert b"IP6" in req.body


def test_rfc5118_ipv4_mapped() -> None:
    req = request(load6_fixed("ipv4-mapped-ipv6"))
    assert [(v.host, v.port) for v in req.via] == [
        ("[::ffff:192.0.2.10]", 19823),
        ("[::ffff:192.0.2.2]", None),
    ]
    assert req.contact[0].uri.host == "[::ffff:192.0.2.2]"
    assert req.contact[0].display_name == "T. desk phone"


@pytest.mark.parametrize(
    ("name", "host"),
    [
        ("ipv6-bug-abnf-3-colons", "[2001:db8:::192.0.2.1]"),
        ("ipv6-correct-abnf-2-colons", "[2001:db8::192.0.2.1]"),
    ],
)
def test_rfc5118_abnf_bug_tolerated(name: str, host: str) -> None:
    req = request(load6(name))
    assert req.uri.host == host
    assert req.to.uri.host == host
    assert req.from_.tag == "810x2"


ALL_PARSEABLE = [("rfc4475", n) for n in PARSEABLE] + [
    ("rfc5118", p.stem) for p in sorted(RFC5118.glob("*.dat")) if p.stem != "ipv6-bad"
]


@pytest.mark.parametrize(("corpus", "name"), ALL_PARSEABLE)
def test_serialize_round_trip(corpus: str, name: str) -> None:
    data = load(name) if corpus == "rfc4475" else load6_fixed(name)
    first = parse_message(data)
    wire = first.serialize()
    second = parse_message(wire)
    assert second == first
    assert second.serialize() == wire
    assert len(second.body) == int(second.headers.get("Content-Length") or "0")


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (b"", "not terminated"),
        (b"\r\n\r\n", "not terminated"),
        (b"\r\nINVITE\r\n\r\n", "Request-Line"),
        (b"INVITE sip:a@b SIP/2.0\r\nVia SIP/2.0/UDP h\r\n\r\n", "without a colon"),
        (b"INVITE sip:a@b SIP/2.0\r\nV\xc3a: x\r\n\r\n", "invalid header name"),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\nX: y\r\n\r\n", "bare CR or LF"),
        (b"SIP/2.0 20 OK\r\n\r\n", "status code 20 "),
        (b"SIP/2.0 700 Weird\r\n\r\n", "status code 700"),
        (b"SIP/3.0 200 OK\r\n\r\n", "SIP/3.0"),
        (b"INVITE sip:a@b SIP/2.0.1\r\n\r\n", "SIP-Version"),
    ],
)
def test_start_line_and_framing_errors(data: bytes, pattern: str) -> None:
    with pytest.raises(SipParseError, match=pattern):
        parse_message(data)


def test_leading_crlf_ignored_and_no_content_length_takes_the_datagram() -> None:
    data = (
        b"\r\n\r\nSIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\n"
        b"To: <sip:b@h>;tag=x\r\nFrom: <sip:a@h>;tag=y\r\nCall-ID: c\r\n\r\nhello"
    )
    resp = parse_message(data)
    assert isinstance(resp, SipResponse)
    assert resp.status_code == 180
    assert resp.body == b"hello"


def test_max_forwards_and_expires_ranges() -> None:
    base = (
        "OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 OPTIONS\r\n"
        "To: <sip:b@h>\r\nFrom: <sip:a@h>;tag=y\r\nCall-ID: c\r\n{}\r\n\r\n"
    )
    assert request(base.format("Max-Forwards: 255").encode()).max_forwards == 255
    with pytest.raises(SipParseError, match="Max-Forwards 256 exceeds 255"):
        parse_message(base.format("Max-Forwards: 256").encode())
    assert request(base.format("Expires: 4294967295").encode()).expires == 4294967295
    with pytest.raises(SipParseError, match="Expires 4294967296 exceeds"):
        parse_message(base.format("Expires: 4294967296").encode())
    with pytest.raises(SipParseError, match="Contact expires"):
        parse_message(base.format("Contact: <sip:a@h>;expires=4294967296").encode())
    with pytest.raises(SipParseError, match="Retry-After"):
        parse_message(base.format("Retry-After: 1x").encode())
    assert request(base.format("Retry-After: 120 (I'm in a meeting);duration=60").encode())
    assert request(base.format("Date: Sat, 13 Nov 2010 23:29:00 GMT").encode())
    assert request(base.format("Contact: *").encode()).contact_is_wildcard


def test_buffer_types_and_non_bytes() -> None:
    data = load("esc01")
    for buffer in (bytearray(data), memoryview(data)):
        assert request(buffer).uri.user == "sips:user@example.com"  # type: ignore[arg-type]
    with pytest.raises(SipParseError, match="unparseable"):
        parse_message("INVITE sip:a@b SIP/2.0\r\n\r\n")  # type: ignore[arg-type]
    with pytest.raises(SipParseError):
        parse_message(None)  # type: ignore[arg-type]


def test_more_fixture_values() -> None:
    mpart = request(load("mpart01"))
    assert mpart.method == "MESSAGE"
    assert mpart.content_type == "multipart/mixed;boundary=7a9cbec02ceef655"
    assert len(mpart.body) == 553
    assert mpart.top_via.has_rport and mpart.top_via.port == 5070
    assert mpart.route[0].uri.host_port == "127.0.0.1:5080"
    bcast = parse_message(load("bcast"))
    assert [v.host for v in bcast.via] == ["192.0.2.198", "255.255.255.255"]
    assert bcast.to.tag == "2229" and bcast.from_.tag == "11141343"
    sdp01 = request(load("sdp01"))
    assert sdp01.headers.get("Accept") == "text/nobodyKnowsThis"
    assert len(sdp01.body) == 150
    unkscm = request(load("unkscm"))
    assert (unkscm.uri.opaque, unkscm.uri.is_sip) == ("totallyopaquecontent", False)
