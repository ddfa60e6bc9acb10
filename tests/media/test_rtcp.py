"""Tests for trunkline.media.rtcp (RFC 3550 section 6)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.media.jitter import ReceiveStats
from trunkline.media.rtcp import (
    NTP_EPOCH_OFFSET,
    RtcpApp,
    RtcpBye,
    RtcpReceiverReport,
    RtcpReportBlock,
    RtcpSdes,
    RtcpSdesChunk,
    RtcpSenderReport,
    RtcpUnknown,
    SdesItemType,
    build_receiver_report,
    build_sender_report,
    ntp_middle32,
    ntp_timestamp,
    ntp_to_unix,
    parse_rtcp,
    report_block,
    round_trip_time,
    rtcp_interval,
    serialize_rtcp,
)
from trunkline.media.rtp import RtpPacket, is_rtcp

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rtp"


def _hdr(count: int, packet_type: int, body: bytes, padding: bool = False) -> bytes:
    return struct.pack("!BBH", 0x80 | (0x20 if padding else 0) | count, packet_type, len(body) // 4) + body


def _block(ssrc: int, fraction: int, lost: int, highest: int, jitter: int, lsr: int, dlsr: int) -> bytes:
    return (
        struct.pack("!IB", ssrc, fraction)
        + lost.to_bytes(3, "big", signed=True)
        + struct.pack("!IIII", highest, jitter, lsr, dlsr)
    )


def fixture_bytes() -> dict[str, bytes]:
    """Hand-built RTCP packets, packed field by field with struct (not with the code under test)."""
    sr = _hdr(
        2,
        200,
        struct.pack("!IQIII", 0x01020304, 0xE1A2B3C4_80000000, 160000, 500, 80000)
        + _block(0xAABBCCDD, 25, 12, 0x0001_0010, 37, 0x12345678, 0x00018000)
        + _block(0x0BADCAFE, 0, 0, 1000, 0, 0, 0),
    )
    sdes_items = b"\x01\x09user@host" + b"\x02\x05Alice" + b"\x00"
    sdes_items += b"\x00" * (-len(sdes_items) % 4)
    sdes = _hdr(1, 202, struct.pack("!I", 0x01020304) + sdes_items)
    bye_body = struct.pack("!I", 0x01020304) + b"\x07bye now"
    bye = _hdr(1, 203, bye_body)
    rr = _hdr(1, 201, struct.pack("!I", 0x55667788) + _block(0x01020304, 255, -5, 70000, 1234, 0, 0))
    app = _hdr(3, 204, struct.pack("!I", 0x55667788) + b"TLNK" + b"\x00\x01\x02\x03\x04\x05\x06\x07")
    # Generic NACK (RTPFB 205, FMT 1) followed by 4 octets of padding on the last packet.
    nack_body = struct.pack("!IIHH", 0x55667788, 0x01020304, 100, 0) + b"\x00\x00\x00\x04"
    nack = _hdr(1, 205, nack_body, padding=True)
    return {"sr_sdes_bye.bin": sr + sdes + bye, "rr_app_nack.bin": rr + app + nack}


@pytest.mark.parametrize("name", sorted(fixture_bytes()))
def test_fixture_files_are_current(name: str) -> None:
    assert (FIXTURES / name).read_bytes() == fixture_bytes()[name]


def test_parse_sr_sdes_bye() -> None:
    data = (FIXTURES / "sr_sdes_bye.bin").read_bytes()
    assert is_rtcp(data)
    sr, sdes, bye = parse_rtcp(data)
    assert isinstance(sr, RtcpSenderReport)
    assert (sr.ssrc, sr.ntp_timestamp, sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (
        0x01020304,
        0xE1A2B3C4_80000000,
        160000,
        500,
        80000,
    )
    assert sr.reports == (
        RtcpReportBlock(0xAABBCCDD, 25, 12, 0x0001_0010, 37, 0x12345678, 0x00018000),
        RtcpReportBlock(0x0BADCAFE, 0, 0, 1000, 0, 0, 0),
    )
    assert isinstance(sdes, RtcpSdes)
    assert sdes.chunks == (
        RtcpSdesChunk(0x01020304, ((SdesItemType.CNAME, b"user@host"), (SdesItemType.NAME, b"Alice"))),
    )
    assert sdes.chunks[0].cname == "user@host"
    assert isinstance(bye, RtcpBye)
    assert bye.sources == (0x01020304,) and bye.reason == "bye now"
    assert serialize_rtcp([sr, sdes, bye]) == data


def test_parse_rr_app_unknown_with_padding() -> None:
    data = (FIXTURES / "rr_app_nack.bin").read_bytes()
    rr, app, nack = parse_rtcp(data)
    assert isinstance(rr, RtcpReceiverReport)
    assert rr.ssrc == 0x55667788
    assert rr.reports == (RtcpReportBlock(0x01020304, 255, -5, 70000, 1234, 0, 0),)
    assert app == RtcpApp(3, 0x55667788, b"TLNK", bytes(range(8)))
    assert isinstance(nack, RtcpUnknown)
    assert nack.packet_type == 205 and nack.count == 1
    assert nack.body == struct.pack("!IIHH", 0x55667788, 0x01020304, 100, 0)
    # Re-serialising drops the padding (P bit, length and the 4 octets), everything else is identical.
    unpadded = _hdr(1, 205, nack.body)
    assert serialize_rtcp([rr, app, nack]) == data[: -len(unpadded) - 4] + unpadded


def test_parse_rr_app_unknown_exact_prefix() -> None:
    data = (FIXTURES / "rr_app_nack.bin").read_bytes()
    rr, app, _ = parse_rtcp(data)
    assert rr.serialize() + app.serialize() == data[: len(rr.serialize()) + len(app.serialize())]


def test_round_trips() -> None:
    packets = [
        RtcpSenderReport(1, ntp_timestamp(1_700_000_000.25), 8000, 1, 160),
        RtcpReceiverReport(2, (RtcpReportBlock(1, 3, -0x800000, 5, 6, 7, 8),), extension=b"\x00\x00\x00\x01"),
        RtcpSdes((RtcpSdesChunk(1, ((1, b"abc"),)), RtcpSdesChunk(2, ((1, b"abcd"), (6, b"trunkline"))))),
        RtcpSdes((RtcpSdesChunk(9, ()),)),
        RtcpBye((1, 2, 3)),
        RtcpBye((4,), "x" * 255),
        RtcpApp(31, 5, b"abcd"),
        RtcpUnknown(207, 0, b"\x00" * 8),
    ]
    data = serialize_rtcp(packets)
    assert parse_rtcp(data) == packets
    for p in packets:
        assert len(p.serialize()) % 4 == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "RTCP packet is truncated: 0 bytes, need 4"),
        (b"\x80\xc9\x00", "RTCP packet is truncated: 3 bytes, need 4"),
        (b"\x40\xc9\x00\x00", "RTCP version 1 is not supported"),
        (b"\x80\xc9\x00\x05" + b"\x00" * 8, "RTCP packet length 24 exceeds remaining 12 bytes"),
        (b"\x80\xc8\x00\x01" + b"\x00" * 4, "RTCP SR is truncated: 8 bytes, need 28"),
        (b"\x80\xc9\x00\x00", "RTCP RR is truncated: 4 bytes, need 8"),
        (b"\x81\xc9\x00\x02" + b"\x00" * 8, "RTCP RR report block is truncated"),
        (b"\x81\xca\x00\x00", "RTCP SDES chunk is truncated"),
        (b"\x81\xca\x00\x02" + b"\x00\x00\x00\x01" + b"\x01\x09abcd", "RTCP SDES item is truncated"),
        (b"\x81\xca\x00\x01" + b"\x00\x00\x00\x01", "RTCP SDES item is truncated"),
        (b"\x82\xcb\x00\x01" + b"\x00" * 4, "RTCP BYE is truncated"),
        (b"\x81\xcb\x00\x02" + b"\x00" * 4 + b"\x09abc", "RTCP BYE reason is truncated"),
        (b"\x80\xcc\x00\x01" + b"\x00" * 4, "RTCP APP is truncated: 8 bytes, need 12"),
        (b"\xa0\xc9\x00\x01" + b"\x00\x00\x00\x09", "RTCP padding length 9 exceeds packet"),
        (b"\xa0\xc9\x00\x01" + b"\x00\x00\x00\x00", "RTCP padding length 0 is invalid"),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_rtcp(data)
    assert str(excinfo.value) == message


def test_ntp_conversion() -> None:
    # 2024-01-01T00:00:00.5Z
    now = 1_704_067_200.5
    ntp = ntp_timestamp(now)
    assert ntp >> 32 == 1_704_067_200 + NTP_EPOCH_OFFSET
    assert ntp & 0xFFFFFFFF == 0x80000000
    assert ntp_to_unix(ntp) == pytest.approx(now, abs=1e-9)
    assert ntp_middle32(ntp) == ((1_704_067_200 + NTP_EPOCH_OFFSET) & 0xFFFF) << 16 | 0x8000


def test_round_trip_time() -> None:
    sent = 1_704_067_200.0
    lsr = ntp_middle32(ntp_timestamp(sent))
    # Peer held our SR for 1.25 s, path delay 40 ms each way.
    block = RtcpReportBlock(1, 0, 0, 0, 0, lsr=lsr, dlsr=int(1.25 * 65536))
    rtt = round_trip_time(block, sent + 0.040 + 1.25 + 0.040)
    assert rtt == pytest.approx(0.080, abs=1 / 65536 * 2)
    assert round_trip_time(RtcpReportBlock(1, 0, 0, 0, 0), sent) is None


def test_report_from_receive_stats() -> None:
    stats = ReceiveStats(ssrc=0xCAFE, clock_rate=8000)
    t = 100.0
    seqs = [*range(65530, 65536), *range(0, 20)]
    lost = {65534, 3, 4, 5}
    for i, seq in enumerate(seqs):
        if seq in lost:
            continue
        stats.update(RtpPacket(0, seq, 1000 + 160 * i, 0xCAFE, b"\x00" * 160), t + 0.02 * i)
    stats.on_sender_report(ntp_timestamp(1_704_067_200.0), 200.0)
    rr = build_receiver_report(0x1234, [stats], now=200.5)
    (block,) = rr.reports
    # Probation consumed 65530, 65531: base = 65531, highest = 65536 + 19.
    assert block.highest_sequence == 0x10000 + 19
    expected = (0x10000 + 19) - 65531 + 1
    assert block.packets_lost == expected - (len(seqs) - 1 - len(lost)) == len(lost)
    assert block.fraction_lost == (len(lost) << 8) // expected
    assert block.jitter == 0
    assert block.lsr == ntp_middle32(ntp_timestamp(1_704_067_200.0))
    assert block.dlsr == 32768
    # A second report covers a new interval with no loss.
    assert report_block(stats, 201.0).fraction_lost == 0


def test_sdes_for_cname() -> None:
    sdes = RtcpSdes.for_cname(0x01020304, "user@host")
    assert sdes.serialize() == _hdr(1, 202, struct.pack("!I", 0x01020304) + b"\x01\x09user@host\x00")
    (parsed,) = parse_rtcp(sdes.serialize())
    assert isinstance(parsed, RtcpSdes) and parsed.chunks[0].cname == "user@host"


def test_build_sender_report() -> None:
    sr = build_sender_report(7, 1_704_067_200.5, rtp_timestamp=2**32 + 5, packet_count=10, octet_count=1600)
    assert sr.rtp_timestamp == 5
    assert ntp_to_unix(sr.ntp_timestamp) == pytest.approx(1_704_067_200.5)
    assert parse_rtcp(sr.serialize()) == [sr]


@given(
    st.lists(
        st.tuples(st.integers(0, 31), st.integers(200, 207), st.binary(max_size=60), st.booleans()),
        min_size=1,
        max_size=4,
    )
)
@settings(max_examples=300, deadline=None)
def test_fuzz_parse_raises_only_value_error(parts: list[tuple[int, int, bytes, bool]]) -> None:
    """Well-framed packets with random bodies: parse either succeeds or raises ValueError."""
    data = b""
    for count, packet_type, body, padding in parts:
        body += b"\x00" * (-len(body) % 4)
        if padding and body:
            body = body[:-1] + bytes([min(body[-1], len(body)) or 4])
        data += _hdr(count, packet_type, body, padding)
    try:
        packets = parse_rtcp(data)
    except ValueError:
        return
    assert len(packets) == len(parts)
    assert parse_rtcp(serialize_rtcp(packets)) == packets


def test_rtcp_interval() -> None:
    e_minus = 2.718281828459045 - 1.5
    # Two-party call, 64 kbit/s session: RTCP bandwidth 400 octets/s, so the 5 s minimum rules.
    assert rtcp_interval(2, 1, 400.0, True, 100.0, initial=False) == pytest.approx(5.0 / e_minus)
    assert rtcp_interval(2, 1, 400.0, True, 100.0, initial=True) == pytest.approx(2.5 / e_minus)
    # Large conference: 1000 members, 10 senders; receivers share 75% of the bandwidth.
    t = rtcp_interval(1000, 10, 400.0, False, 120.0, initial=False, randomization=1.5)
    assert t == pytest.approx(120.0 * 990 / 300.0 * 1.5 / e_minus)
    # A sender among few senders shares 25% with the other senders only.
    t = rtcp_interval(1000, 10, 4000.0, True, 120.0, initial=False, randomization=0.5)
    assert t == pytest.approx(5.0 * 0.5 / e_minus)
