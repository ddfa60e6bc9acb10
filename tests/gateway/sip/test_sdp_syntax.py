"""Tests for trunkline.gateway.sip.sdp_syntax (RFC 4566 model, parser and serializer)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.gateway.sip.sdp_syntax import (
    Attribute,
    Bandwidth,
    Connection,
    MediaDescription,
    Origin,
    RtcpAttribute,
    RtpFormat,
    SdpError,
    SessionDescription,
    Timing,
    parse_fmtp,
    parse_sdp,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "sdp"
ALL_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.sdp"))


def load(name: str) -> SessionDescription:
    return parse_sdp((FIXTURES / name).read_bytes())


def test_fixtures_present() -> None:
    assert len(ALL_FIXTURES) >= 8


def test_sipp_offer() -> None:
    sdp = load("sipp_pcmu_offer.sdp")
    assert sdp.origin == Origin("user1", "53655765", 2353687637, "IN", "IP4", "127.0.0.1")
    assert sdp.session_name == "-"
    assert sdp.connection == Connection("127.0.0.1")
    assert sdp.timings == (Timing(0, 0),)
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == ("audio", 6000, "RTP/AVP", ("0",))
    assert audio.direction == "sendrecv"
    assert audio.rtp_formats() == (RtpFormat(0, "PCMU", 8000),)


def test_linphone_offer() -> None:
    sdp = load("linphone_opus_offer.sdp")
    assert sdp.attributes[0] == Attribute("ice-pwd", "31ec21eb38b2ec6d36e8dc7b")
    assert Attribute("record", "off") in sdp.attributes
    (audio,) = sdp.media
    assert audio.formats == ("96", "97", "98", "0", "8", "18", "101", "99", "100")
    formats = {f.payload_type: f for f in audio.rtp_formats()}
    assert formats[96] == RtpFormat(96, "opus", 48000, 2, {"useinbandfec": "1"})
    assert formats[97] == RtpFormat(97, "speex", 16000, 1, {"vbr": "on"})
    assert formats[18] == RtpFormat(18, "G729", 8000, 1, {"annexb": "yes"})  # static, fmtp only
    assert formats[8].encoding_name == "PCMA"
    assert [f.clock_rate for f in audio.rtp_formats() if f.is_telephone_event] == [48000, 16000, 8000]
    assert audio.rtcp == RtcpAttribute(7079, "192.168.1.20", "IP4", "IN")
    candidates = [a.value for a in audio.attributes if a.name == "candidate"]
    assert len(candidates) == 3 and candidates[2] is not None and "srflx" in candidates[2]
    assert audio.attribute("rtcp-fb") == "* trr-int 1000"
    assert audio.attribute("nothing") is None


def test_hold_offer_direction_and_bandwidth() -> None:
    sdp = load("hold_offer.sdp")
    assert sdp.bandwidths == (Bandwidth("AS", 84),)
    assert sdp.attributes == (Attribute("X-nat", "0"),)
    (audio,) = sdp.media
    assert audio.direction == "sendonly"
    assert audio.bandwidths == (Bandwidth("TIAS", 64000),)
    assert audio.connection == Connection("10.0.0.5")
    assert audio.attribute("ssrc") == "1397512262 cname:66f4e9b16a2c3c41"


def test_rfc2543_hold_address() -> None:
    sdp = load("hold_2543_offer.sdp")
    assert sdp.connection is not None and sdp.connection.is_null
    assert sdp.media[0].ptime == 20


def test_ipv6_offer() -> None:
    sdp = load("ipv6_offer.sdp")
    assert sdp.origin.addrtype == "IP6"
    assert sdp.connection == Connection("2001:db8::1", "IP6")
    audio = sdp.media[0]
    assert (audio.ptime, audio.maxptime) == (30, 40)
    assert audio.rtcp == RtcpAttribute(53020, "2001:db8::2", "IP6", "IN")


def test_video_audio_offer() -> None:
    sdp = load("video_audio_offer.sdp")
    assert sdp.information == "A call with video"
    assert sdp.uri == "http://www.example.com/seminars/sdp.pdf"
    assert sdp.emails == ("j.doe@example.com (Jane Doe)",)
    assert [m.media for m in sdp.media] == ["video", "audio"]
    video, audio = sdp.media
    assert video.bandwidths == (Bandwidth("AS", 512),)
    assert video.rtp_formats()[1] == RtpFormat(34, "H263", 90000)
    assert parse_fmtp(video.fmtp["99"]) == {"profile-level-id": "42e01f", "packetization-mode": "1"}
    assert [f.encoding_name for f in audio.rtp_formats()] == ["G722", "PCMU", "PCMA", "telephone-event"]


def test_g722_static_payload() -> None:
    audio = load("g722_offer.sdp").media[0]
    g722, cn, te = audio.rtp_formats()
    assert (g722.encoding_name, g722.clock_rate, g722.sample_rate) == ("G722", 8000, 16000)
    assert (cn.encoding_name, cn.payload_type) == ("CN", 13)
    assert te.fmtp == {"0-15": ""}


def test_session_level_direction_is_inherited() -> None:
    text = "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\na=inactive\n"
    text += "m=audio 1000 RTP/AVP 0\nm=audio 2000 RTP/AVP 0\na=recvonly\n"
    sdp = parse_sdp(text)
    assert sdp.direction == "inactive"
    assert [m.direction for m in sdp.media] == ["inactive", "recvonly"]
    assert parse_sdp(sdp.serialize()) == sdp


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_roundtrip_fixtures(name: str) -> None:
    sdp = load(name)
    wire = sdp.serialize()
    assert wire.endswith(b"\r\n") and b"\n" not in wire.replace(b"\r\n", b"")
    assert parse_sdp(wire) == sdp
    assert parse_sdp(wire).serialize() == wire


def test_serialize_canonical_order() -> None:
    sdp = SessionDescription(
        origin=Origin("me", "42", 7, "IN", "IP4", "10.0.0.1"),
        session_name="call",
        connection=Connection("10.0.0.1"),
        bandwidths=(Bandwidth("AS", 64),),
        attributes=(Attribute("tool", "trunkline"),),
        media=(
            MediaDescription(
                "audio", 5004, "RTP/AVP", ("8", "101"),
                rtpmap={"8": "PCMA/8000", "101": "telephone-event/8000"},
                fmtp={"101": "0-16"}, direction="recvonly", ptime=20, rtcp=RtcpAttribute(6000),
            ),
        ),
    )  # fmt: skip
    assert sdp.serialize() == (
        b"v=0\r\no=me 42 7 IN IP4 10.0.0.1\r\ns=call\r\nc=IN IP4 10.0.0.1\r\nb=AS:64\r\nt=0 0\r\n"
        b"a=tool:trunkline\r\nm=audio 5004 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=rtcp:6000\r\n"
        b"a=recvonly\r\n"
    )


def test_multicast_connection_and_repeat_times() -> None:
    text = (
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 224.2.36.42/127/3\r\n"
        "t=3034423619 3042462419\r\nr=604800 3600 0 90000\r\nz=2882844526 -1h\r\n"
        "m=audio 49170/2 RTP/AVP 0\r\nc=IN IP6 ff15::101/3\r\n"
    )
    sdp = parse_sdp(text)
    assert sdp.connection == Connection("224.2.36.42", "IP4", "IN", 127, 3)
    assert sdp.timings == (Timing(3034423619, 3042462419, ("604800 3600 0 90000",)),)
    assert sdp.time_zones == "2882844526 -1h"
    assert sdp.media[0].port_count == 2
    assert sdp.media[0].connection == Connection("ff15::101", "IP6", "IN", None, 3)
    assert parse_sdp(sdp.serialize()) == sdp


def test_fqdn_connection_and_fractional_ptime() -> None:
    sdp = parse_sdp(
        "v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 media.example.com\nm=audio 1 RTP/AVP 0\na=ptime:20.0\n"
    )
    assert sdp.connection == Connection("media.example.com")
    assert sdp.timings == (Timing(0, 0),)  # a missing t= line is tolerated
    assert sdp.media[0].ptime == 20


BAD = {
    "no version": "o=- 1 1 IN IP4 1.2.3.4\ns=-\n",
    "bad version": "v=1\no=- 1 1 IN IP4 1.2.3.4\ns=-\n",
    "no origin": "v=0\ns=-\nt=0 0\n",
    "no session name": "v=0\no=- 1 1 IN IP4 1.2.3.4\nt=0 0\n",
    "short origin": "v=0\no=- 1 IN IP4 1.2.3.4\ns=-\n",
    "non-numeric version": "v=0\no=- 1 x IN IP4 1.2.3.4\ns=-\n",
    "space before =": "v=0\no =- 1 1 IN IP4 1.2.3.4\ns=-\n",
    "unknown letter": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nx=1\n",
    "session letter in media": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nm=audio 1 RTP/AVP 0\ns=again\n",
    "duplicate s=": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\ns=-\n",
    "bad ipv4": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 300.1.1.1\n",
    "ipv6 in IP4": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 ::1\n",
    "ipv4 in IP6": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP6 1.2.3.4\n",
    "bad ipv6": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP6 2001:db8:::1\n",
    "short c=": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4\n",
    "bad m= port": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nm=audio x RTP/AVP 0\n",
    "port too big": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nm=audio 70000 RTP/AVP 0\n",
    "no formats": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nm=audio 1000 RTP/AVP\n",
    "bad rtpmap": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nm=audio 1 RTP/AVP 96\na=rtpmap:96 opus\n",
    "dup rtpmap": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nm=audio 1 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
    "a=rtpmap:0 PCMU/8000\n",
    "two directions": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nm=audio 1 RTP/AVP 0\na=sendonly\na=inactive\n",
    "bad ptime": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nm=audio 1 RTP/AVP 0\na=ptime:abc\n",
    "bad rtcp": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nm=audio 1 RTP/AVP 0\na=rtcp:1 IN IP4\n",
    "bad bandwidth": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nb=AS\n",
    "bad timing": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0\n",
    "repeat before timing": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nr=1 2 3\n",
    "blank line inside": "v=0\n\no=- 1 1 IN IP4 1.2.3.4\ns=-\n",
    "unicode digits": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nb=AS:\u00b2\n",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_sdp_raises_400(case: str) -> None:
    with pytest.raises(SdpError) as info:
        parse_sdp(BAD[case])
    assert info.value.status_code == 400
    assert info.value.message


def test_invalid_utf8() -> None:
    with pytest.raises(SdpError, match="UTF-8"):
        parse_sdp(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=\xff\r\n")


_tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)
_RESERVED = {"rtpmap", "fmtp", "ptime", "maxptime", "rtcp", "sendrecv", "sendonly", "recvonly", "inactive"}
_names = _tokens.filter(lambda name: name not in _RESERVED)


@st.composite
def _media(draw: st.DrawFn) -> MediaDescription:
    pts = draw(st.lists(st.integers(0, 127), min_size=1, max_size=5, unique=True))
    formats = tuple(str(p) for p in pts)
    rtpmap = {f: f"{draw(_tokens)}/{draw(st.sampled_from([8000, 16000, 48000]))}" for f in formats[:2]}
    return MediaDescription(
        media=draw(st.sampled_from(["audio", "video", "application"])),
        port=draw(st.integers(0, 65535)),
        proto=draw(st.sampled_from(["RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF"])),
        formats=formats,
        connection=draw(st.none() | st.just(Connection("2001:db8::9", "IP6"))),
        rtpmap=rtpmap,
        fmtp={formats[0]: draw(_tokens)} if draw(st.booleans()) else {},
        direction=draw(st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"])),
        ptime=draw(st.none() | st.integers(10, 120)),
        rtcp=draw(st.none() | st.builds(RtcpAttribute, st.integers(1, 65535))),
        attributes=tuple(draw(st.lists(st.builds(Attribute, _names, st.none() | _tokens), max_size=3))),
    )


@given(
    sess_version=st.integers(0, 2**63),
    media=st.lists(_media(), max_size=3),
    attributes=st.lists(st.builds(Attribute, _names, st.none() | _tokens), max_size=3),
)
def test_roundtrip_property(
    sess_version: int, media: list[MediaDescription], attributes: list[Attribute]
) -> None:
    sdp = SessionDescription(
        origin=Origin("u", "1", sess_version, "IN", "IP4", "192.0.2.1"),
        connection=Connection("192.0.2.1"),
        attributes=tuple(attributes),
        media=tuple(media),
    )
    assert parse_sdp(sdp.serialize()) == sdp


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_interop_with_sippy_sdp(name: str) -> None:
    """sippy's SDP parser reads what we serialize, and we read what it writes back."""
    sdp_body = pytest.importorskip("sippy.SdpBody")
    ours = load(name)
    theirs = sdp_body.SdpBody(ours.serialize().decode())
    assert [s.m_header.port for s in theirs.sections] == [m.port for m in ours.media]
    assert [[str(f) for f in s.m_header.formats] for s in theirs.sections] == [
        list(m.formats) for m in ours.media
    ]
    back = parse_sdp(str(theirs))
    # sippy may hoist a media-level c= to the session level: compare effective addresses
    assert [back.connection_for(m) for m in back.media] == [ours.connection_for(m) for m in ours.media]
    flat = [replace(m, connection=None) for m in ours.media]
    assert [replace(m, connection=None) for m in back.media] == flat
    assert replace(back, connection=None, media=()) == replace(ours, connection=None, media=())
