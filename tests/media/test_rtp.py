"""Tests for trunkline.media.rtp (RFC 3550 section 5.1, RFC 8285)."""

from __future__ import annotations

import itertools
import struct
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.media.rtp import (
    RtpPacket,
    is_rtcp,
    pack_header_extensions,
    parse_header_extensions,
)

SIPP_PCAPS = Path("/usr/share/sip-tester")


def read_pcap_udp(path: Path) -> list[tuple[float, int, int, bytes]]:
    """Tiny pcap reader: ``(time, src port, dst port, UDP payload)`` for Ethernet/IPv4/UDP records."""
    data = path.read_bytes()
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        endian = "<"
    elif magic == b"\xa1\xb2\xc3\xd4":
        endian = ">"
    else:
        raise ValueError(f"{path} is not a classic pcap file")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    assert linktype == 1, "Ethernet only"
    out = []
    pos = 24
    while pos + 16 <= len(data):
        sec, usec, incl, _orig = struct.unpack_from(endian + "IIII", data, pos)
        pos += 16
        frame = data[pos : pos + incl]
        pos += incl
        if struct.unpack_from("!H", frame, 12)[0] != 0x0800:
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17:
            continue
        total = struct.unpack_from("!H", ip, 2)[0]
        udp = ip[ihl:total]
        sport, dport, ulen = struct.unpack_from("!HHH", udp)
        out.append((sec + usec / 1e6, sport, dport, udp[8:ulen]))
    return out


# -- hand-built wire data ---------------------------------------------------------------------

# V=2, PT=0, seq=1, ts=160, ssrc=0x11223344, 4 payload bytes.
SIMPLE = bytes.fromhex("80000001000000a011223344") + b"\xde\xad\xbe\xef"
# V=2 P=1 X=1 CC=2, M=1 PT=96, seq=0xffff, ts=0xffffffff, ssrc=1, csrc 2 and 3,
# one-byte extension: id 1 = "ab", id 2 = b"\x05", then 1 byte of padding to 8;
# payload "xyz", 3 padding octets.
FULL = (
    bytes.fromhex("b2e0ffffffffffff00000001")
    + bytes.fromhex("0000000200000003")
    + bytes.fromhex("bede0002")
    + bytes.fromhex("1161622005000000")
    + b"xyz"
    + b"\x00\x00\x03"
)


def test_parse_simple_packet() -> None:
    p = RtpPacket.parse(SIMPLE)
    assert (p.version, p.payload_type, p.sequence_number, p.timestamp, p.ssrc) == (2, 0, 1, 160, 0x11223344)
    assert p.payload == b"\xde\xad\xbe\xef"
    assert not p.marker and not p.padding and not p.extension and p.csrc == []
    assert p.serialize() == SIMPLE


def test_parse_full_header() -> None:
    p = RtpPacket.parse(FULL)
    assert p.marker and p.payload_type == 96
    assert p.sequence_number == 0xFFFF and p.timestamp == 0xFFFFFFFF and p.ssrc == 1
    assert p.csrc == [2, 3]
    assert p.extension_profile == 0xBEDE
    assert p.extensions == {1: b"ab", 2: b"\x05"}
    assert p.padding_size == 3 and p.padding
    assert p.payload == b"xyz"
    assert p.serialize() == FULL


def test_serialize_with_padding_override() -> None:
    p = RtpPacket(payload_type=8, sequence_number=7, timestamp=1, ssrc=2, payload=b"\x01\x02")
    data = p.serialize(padding=4)
    assert data[0] == 0xA0 and data[-4:] == b"\x00\x00\x00\x04"
    q = RtpPacket.parse(data)
    assert q.payload == b"\x01\x02" and q.padding_size == 4


def test_two_byte_extension_round_trip() -> None:
    elements = {1: b"", 20: b"x" * 20, 200: b"\x01\x02"}
    profile, data = pack_header_extensions(elements)
    assert profile == 0x1000 and len(data) % 4 == 0
    p = RtpPacket(
        payload_type=111, sequence_number=5, timestamp=9, ssrc=3, payload=b"op", extensions=elements
    )
    q = RtpPacket.parse(p.serialize())
    assert q.extension_profile == 0x1000
    assert q.extensions == elements
    assert q.payload == b"op"


def test_two_byte_extension_keeps_appbits() -> None:
    profile, data = pack_header_extensions({1: b"a"}, profile=0x1003)
    assert profile == 0x1003
    assert data == b"\x01\x01a\x00"


def test_one_byte_extension_padding_and_id15() -> None:
    # padding byte, id 3 len 2, id 15 stops parsing (RFC 8285 section 4.2)
    data = bytes([0, 0x31, 0xAA, 0xBB, 0xF0, 0x11, 0x22, 0x33])
    assert parse_header_extensions(0xBEDE, data) == {3: b"\xaa\xbb"}


def test_unknown_extension_profile_stays_opaque() -> None:
    p = RtpPacket(payload_type=0, extension_profile=0x1234, extension_data=b"\x01\x02\x03\x04", payload=b"z")
    data = p.serialize()
    q = RtpPacket.parse(data)
    assert q.extension_profile == 0x1234 and q.extension_data == b"\x01\x02\x03\x04"
    assert q.extensions == {}
    assert q.serialize() == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (SIMPLE[:10], "RTP packet is truncated: 10 bytes, need 12"),
        (bytes([0x40]) + SIMPLE[1:], "RTP version 1 is not supported"),
        (bytes([0x82]) + SIMPLE[1:12] + b"\x00\x00\x00\x01", "RTP packet is truncated: 16 bytes, need 20"),
        (bytes([0x90]) + SIMPLE[1:12] + b"\xbe\xde", "RTP header extension is truncated"),
        (
            bytes([0x90]) + SIMPLE[1:12] + b"\xbe\xde\x00\x02\x10\x00\x00\x00",
            "RTP header extension is truncated",
        ),
        (
            bytes([0xA0]) + SIMPLE[1:12] + b"\x00" * 39 + bytes([200]),
            "RTP padding length 200 exceeds payload",
        ),
        (bytes([0xA0]) + SIMPLE[1:12] + b"\x01\x00", "RTP padding length 0 is invalid"),
        (
            bytes([0x90]) + SIMPLE[1:12] + b"\xbe\xde\x00\x01\x13\xaa\x00\x00",
            "RTP header extension element 1 is truncated: 3 bytes, need 4",
        ),
        (
            bytes([0x90]) + SIMPLE[1:12] + b"\x10\x00\x00\x01\x07\x09\xaa\xbb",
            "RTP header extension element 7 is truncated: 2 bytes, need 9",
        ),
    ],
)
def test_malformed_packets(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        RtpPacket.parse(data)
    assert str(excinfo.value) == message


def test_serialize_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="RTP CSRC count 16 exceeds 15"):
        RtpPacket(csrc=list(range(16))).serialize()
    with pytest.raises(ValueError, match="out of range 0-255"):
        RtpPacket().serialize(padding=256)
    with pytest.raises(ValueError, match="not a multiple of 4"):
        RtpPacket(extension_profile=0x1234, extension_data=b"abc").serialize()


def test_is_rtcp_demux() -> None:
    assert not is_rtcp(SIMPLE)
    assert not is_rtcp(bytes([0x80, 0x80 | 96]))  # marker + PT 96
    for packet_type in (200, 201, 202, 203, 204, 205, 206, 207):
        assert is_rtcp(bytes([0x80, packet_type, 0, 1]))
    assert not is_rtcp(b"\x80")


def test_g711a_capture() -> None:
    """Every RTP packet of SIPp's g711a.pcap: PCMA, contiguous sequence, 30 ms timestamps."""
    records = read_pcap_udp(SIPP_PCAPS / "g711a.pcap")
    packets = [RtpPacket.parse(payload) for _, _, _, payload in records]
    assert len(packets) == 236
    assert {p.payload_type for p in packets} == {8}
    assert {p.ssrc for p in packets} == {0xDEE0EE8F}
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert packets[0].sequence_number == 59133
    for prev, cur in itertools.pairwise(packets):
        assert cur.sequence_number == (prev.sequence_number + 1) & 0xFFFF
        assert cur.timestamp - prev.timestamp == 240
        assert len(cur.payload) == 240
    for (_, _, _, raw), p in zip(records, packets, strict=True):
        assert p.serialize() == raw


def test_dtmf_capture_headers() -> None:
    records = read_pcap_udp(SIPP_PCAPS / "dtmf_2833_1.pcap")
    packets = [RtpPacket.parse(payload) for _, _, _, payload in records]
    assert len(packets) == 10
    assert all(p.payload_type == 101 and p.timestamp == 13280 for p in packets)
    assert [p.sequence_number for p in packets] == [*range(7984, 7992), 7991, 7991]
    assert packets[0].marker


def test_parse_serialize_speed() -> None:
    """The relay path needs well over 200k parse+serialize per second; allow slack for CI."""
    data = RtpPacket(0, 1, 160, 0x1234, b"\xff" * 160).serialize()
    parse = RtpPacket.parse
    n = 50_000
    start = time.perf_counter()
    for _ in range(n):
        parse(data).serialize()
    rate = n / (time.perf_counter() - start)
    assert rate > 100_000


@given(st.binary(max_size=80), st.integers(0, 0x3F))
@settings(max_examples=300, deadline=None)
def test_fuzz_parse_raises_only_value_error(data: bytes, flags: int) -> None:
    """Random bytes behind a version-2 first octet with random P/X/CC bits."""
    try:
        p = RtpPacket.parse(bytes([0x80 | flags]) + data)
    except ValueError:
        return
    assert RtpPacket.parse(p.serialize()).payload == p.payload


@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    ext=st.dictionaries(st.integers(1, 255), st.binary(max_size=20), max_size=4),
    payload=st.binary(max_size=64),
    padding=st.integers(0, 255),
)
@settings(max_examples=150, deadline=None)
def test_round_trip_property(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    marker: bool,
    csrc: list[int],
    ext: dict[int, bytes],
    payload: bytes,
    padding: int,
) -> None:
    p = RtpPacket(pt, seq, ts, ssrc, payload, marker, csrc, extensions=ext, padding_size=padding)
    data = p.serialize()
    q = RtpPacket.parse(data)
    assert (q.payload_type, q.sequence_number, q.timestamp, q.ssrc, q.marker) == (pt, seq, ts, ssrc, marker)
    assert (q.csrc, q.extensions, q.payload, q.padding_size) == (csrc, ext, payload, padding)
    assert q.serialize() == data
