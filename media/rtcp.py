"""RTCP packets (RFC 3550 section 6): SR, RR, SDES, BYE, APP and compound packets.

Sans-I/O like :mod:`trunkline.media.rtp`: wall-clock time comes in as an
explicit ``now`` (Unix seconds) wherever an NTP timestamp is needed.

Packet types this module does not model (RTPFB/PSFB feedback, XR, ...) are
kept as :class:`RtcpUnknown` so a compound packet never fails because of them.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from trunkline.media.receive_stats import ReceiveStats

__all__ = [
    "NTP_EPOCH_OFFSET",
    "RtcpApp",
    "RtcpBye",
    "RtcpPacket",
    "RtcpPacketType",
    "RtcpReceiverReport",
    "RtcpReportBlock",
    "RtcpSdes",
    "RtcpSdesChunk",
    "RtcpSenderReport",
    "RtcpUnknown",
    "SdesItemType",
    "build_receiver_report",
    "build_sender_report",
    "ntp_middle32",
    "ntp_timestamp",
    "ntp_to_unix",
    "parse_rtcp",
    "report_block",
    "round_trip_time",
    "rtcp_interval",
    "serialize_rtcp",
]

#: Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
NTP_EPOCH_OFFSET = 2_208_988_800

_HEADER = struct.Struct("!BBH")
_SR_INFO = struct.Struct("!IQIII")  # ssrc, ntp, rtp ts, packet count, octet count
_BLOCK = struct.Struct("!IB3sIIII")
_U32 = struct.Struct("!I")
_APP = struct.Struct("!I4s")


class RtcpPacketType(enum.IntEnum):
    """RTCP packet types (RFC 3550 section 12.1)."""

    SR = 200
    RR = 201
    SDES = 202
    BYE = 203
    APP = 204


class SdesItemType(enum.IntEnum):
    """SDES item types (RFC 3550 section 12.2)."""

    END = 0
    CNAME = 1
    NAME = 2
    EMAIL = 3
    PHONE = 4
    LOC = 5
    TOOL = 6
    NOTE = 7
    PRIV = 8


# -- time helpers -------------------------------------------------------------------------------


def ntp_timestamp(now: float) -> int:
    """64-bit NTP timestamp (RFC 3550 section 4) for Unix wall-clock time ``now``."""
    return round((now + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def ntp_to_unix(ntp: int) -> float:
    """Unix time for a 64-bit NTP timestamp."""
    return ntp / (1 << 32) - NTP_EPOCH_OFFSET


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp, as LSR carries them (RFC 3550 section 6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


# -- packets ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtcpReportBlock:
    """One reception report block (RFC 3550 section 6.4.1).

    ``packets_lost`` is signed (24 bits); ``lsr`` and ``dlsr`` are in the wire
    units (middle 32 bits of NTP, and 1/65536 s).
    """

    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int
    lsr: int = 0
    dlsr: int = 0

    @classmethod
    def parse(cls, data: bytes, pos: int = 0) -> RtcpReportBlock:
        if len(data) - pos < 24:
            raise ValueError("RTCP report block is truncated")
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, pos)
        packets_lost = int.from_bytes(lost, "big", signed=True)
        return cls(ssrc, fraction, packets_lost, highest, jitter, lsr, dlsr)

    def serialize(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.packets_lost)).to_bytes(3, "big", signed=True)
        return _BLOCK.pack(
            self.ssrc, self.fraction_lost, lost, self.highest_sequence, self.jitter, self.lsr, self.dlsr
        )


def _frame(packet_type: int, count: int, body: bytes) -> bytes:
    """Header + body; a body that does not end on a 32-bit boundary gets padding (section 6.4.1)."""
    if count > 31:
        raise ValueError(f"RTCP count {count} exceeds 31")
    first = 0x80 | count
    pad = -len(body) % 4
    if pad:
        first |= 0x20
        body += b"\x00" * (pad - 1) + bytes([pad])
    if len(body) > 0x3FFFC:
        raise ValueError(f"RTCP packet is too long: {len(body) + 4} bytes")
    return _HEADER.pack(first, packet_type, len(body) // 4) + body


def _parse_blocks(data: bytes, pos: int, count: int, what: str) -> list[RtcpReportBlock]:
    if len(data) - pos < 24 * count:
        raise ValueError(f"RTCP {what} report block is truncated")
    return [RtcpReportBlock.parse(data, pos + 24 * i) for i in range(count)]


@dataclass(frozen=True, slots=True)
class RtcpSenderReport:
    """SR: sender info plus reception reports (RFC 3550 section 6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[RtcpReportBlock, ...] = ()
    extension: bytes = b""

    packet_type = RtcpPacketType.SR

    @classmethod
    def parse_body(cls, count: int, body: bytes) -> RtcpSenderReport:
        if len(body) < 24:
            raise ValueError(f"RTCP SR is truncated: {len(body) + 4} bytes, need 28")
        ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body)
        blocks = _parse_blocks(body, 24, count, "SR")
        return cls(ssrc, ntp, rtp_ts, packets, octets, tuple(blocks), body[24 + 24 * count :])

    def serialize(self) -> bytes:
        body = b"".join(
            [
                _SR_INFO.pack(
                    self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
                ),
                *(b.serialize() for b in self.reports),
                self.extension,
            ]
        )
        return _frame(RtcpPacketType.SR, len(self.reports), bytes(body))


@dataclass(frozen=True, slots=True)
class RtcpReceiverReport:
    """RR: reception reports from a participant that is not sending (RFC 3550 section 6.4.2)."""

    ssrc: int
    reports: tuple[RtcpReportBlock, ...] = ()
    extension: bytes = b""

    packet_type = RtcpPacketType.RR

    @classmethod
    def parse_body(cls, count: int, body: bytes) -> RtcpReceiverReport:
        if len(body) < 4:
            raise ValueError(f"RTCP RR is truncated: {len(body) + 4} bytes, need 8")
        (ssrc,) = _U32.unpack_from(body)
        blocks = _parse_blocks(body, 4, count, "RR")
        return cls(ssrc, tuple(blocks), body[4 + 24 * count :])

    def serialize(self) -> bytes:
        body = b"".join([_U32.pack(self.ssrc), *(b.serialize() for b in self.reports), self.extension])
        return _frame(RtcpPacketType.RR, len(self.reports), bytes(body))


@dataclass(frozen=True, slots=True)
class RtcpSdesChunk:
    """One SDES chunk: an SSRC/CSRC and its ``(item type, value)`` items (RFC 3550 section 6.5)."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> str | None:
        for item_type, value in self.items:
            if item_type == SdesItemType.CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(frozen=True, slots=True)
class RtcpSdes:
    """SDES: source descriptions (RFC 3550 section 6.5)."""

    chunks: tuple[RtcpSdesChunk, ...] = ()

    packet_type = RtcpPacketType.SDES

    @classmethod
    def for_cname(cls, ssrc: int, cname: str) -> RtcpSdes:
        """The SDES every compound packet carries: one chunk with a CNAME (section 6.5.1)."""
        return cls((RtcpSdesChunk(ssrc, ((SdesItemType.CNAME, cname.encode()),)),))

    @classmethod
    def parse_body(cls, count: int, body: bytes) -> RtcpSdes:
        chunks = []
        pos = 0
        n = len(body)
        for _ in range(count):
            if n - pos < 4:
                raise ValueError("RTCP SDES chunk is truncated")
            (ssrc,) = _U32.unpack_from(body, pos)
            pos += 4
            items = []
            while True:
                if pos >= n:
                    raise ValueError("RTCP SDES item is truncated")
                item_type = body[pos]
                if item_type == SdesItemType.END:
                    # Section 6.5: the list ends with null octets up to the next 32-bit boundary.
                    pos = (pos + 4) & ~3
                    break
                if pos + 2 > n:
                    raise ValueError("RTCP SDES item is truncated")
                length = body[pos + 1]
                if pos + 2 + length > n:
                    raise ValueError("RTCP SDES item is truncated")
                items.append((item_type, body[pos + 2 : pos + 2 + length]))
                pos += 2 + length
            chunks.append(RtcpSdesChunk(ssrc, tuple(items)))
        return cls(tuple(chunks))

    def serialize(self) -> bytes:
        body = bytearray()
        for chunk in self.chunks:
            body += _U32.pack(chunk.ssrc)
            for item_type, value in chunk.items:
                if len(value) > 255:
                    raise ValueError(f"RTCP SDES item is too long: {len(value)} bytes")
                body.append(item_type)
                body.append(len(value))
                body += value
            # At least one null octet, then pad to 32 bits (section 6.5).
            body += b"\x00" * (4 - len(body) % 4)
        return _frame(RtcpPacketType.SDES, len(self.chunks), bytes(body))


@dataclass(frozen=True, slots=True)
class RtcpBye:
    """BYE: sources leaving, with an optional reason (RFC 3550 section 6.6)."""

    sources: tuple[int, ...] = ()
    reason: str | None = None

    packet_type = RtcpPacketType.BYE

    @classmethod
    def parse_body(cls, count: int, body: bytes) -> RtcpBye:
        if len(body) < 4 * count:
            raise ValueError("RTCP BYE is truncated")
        sources = struct.unpack_from(f"!{count}I", body)
        pos = 4 * count
        reason = None
        if pos < len(body):
            length = body[pos]
            if pos + 1 + length > len(body):
                raise ValueError("RTCP BYE reason is truncated")
            reason = body[pos + 1 : pos + 1 + length].decode("utf-8", "replace")
        return cls(tuple(sources), reason)

    def serialize(self) -> bytes:
        body = bytearray(struct.pack(f"!{len(self.sources)}I", *self.sources))
        if self.reason is not None:
            raw = self.reason.encode()
            if len(raw) > 255:
                raise ValueError(f"RTCP BYE reason is too long: {len(raw)} bytes")
            body.append(len(raw))
            body += raw
            body += b"\x00" * (-len(body) % 4)
        return _frame(RtcpPacketType.BYE, len(self.sources), bytes(body))


@dataclass(frozen=True, slots=True)
class RtcpApp:
    """APP: application-defined packet (RFC 3550 section 6.7)."""

    subtype: int
    ssrc: int
    name: bytes
    data: bytes = b""

    packet_type = RtcpPacketType.APP

    @classmethod
    def parse_body(cls, count: int, body: bytes) -> RtcpApp:
        if len(body) < 8:
            raise ValueError(f"RTCP APP is truncated: {len(body) + 4} bytes, need 12")
        ssrc, name = _APP.unpack_from(body)
        return cls(count, ssrc, name, body[8:])

    def serialize(self) -> bytes:
        if len(self.name) != 4:
            raise ValueError(f"RTCP APP name must be 4 bytes, got {len(self.name)}")
        body = _APP.pack(self.ssrc, self.name) + self.data
        return _frame(RtcpPacketType.APP, self.subtype, bytes(body))


@dataclass(frozen=True, slots=True)
class RtcpUnknown:
    """Any other RTCP packet type (feedback, XR, ...), kept verbatim."""

    packet_type: int
    count: int
    body: bytes = b""

    def serialize(self) -> bytes:
        return _frame(self.packet_type, self.count, bytes(self.body))


RtcpPacket = RtcpSenderReport | RtcpReceiverReport | RtcpSdes | RtcpBye | RtcpApp | RtcpUnknown

_PARSERS: dict[int, Callable[[int, bytes], RtcpPacket]] = {
    RtcpPacketType.SR: RtcpSenderReport.parse_body,
    RtcpPacketType.RR: RtcpReceiverReport.parse_body,
    RtcpPacketType.SDES: RtcpSdes.parse_body,
    RtcpPacketType.BYE: RtcpBye.parse_body,
    RtcpPacketType.APP: RtcpApp.parse_body,
}


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a (compound) RTCP packet into its parts (RFC 3550 section 6.1).

    Raises :class:`ValueError` for a malformed packet.
    """
    packets: list[RtcpPacket] = []
    pos = 0
    n = len(data)
    if n == 0:
        raise ValueError("RTCP packet is truncated: 0 bytes, need 4")
    while pos < n:
        if n - pos < 4:
            raise ValueError(f"RTCP packet is truncated: {n - pos} bytes, need 4")
        first, packet_type, words = _HEADER.unpack_from(data, pos)
        if first >> 6 != 2:
            raise ValueError(f"RTCP version {first >> 6} is not supported")
        length = 4 * (words + 1)
        if pos + length > n:
            raise ValueError(f"RTCP packet length {length} exceeds remaining {n - pos} bytes")
        end = pos + length
        if first & 0x20:
            # Section 6.4.1: the last octet of the padding counts the padding octets.
            pad = data[end - 1]
            if pad == 0:
                raise ValueError("RTCP padding length 0 is invalid")
            if pad > length - 4:
                raise ValueError(f"RTCP padding length {pad} exceeds packet")
            end -= pad
        body = data[pos + 4 : end]
        count = first & 0x1F
        parser = _PARSERS.get(packet_type)
        if parser is None:
            packets.append(RtcpUnknown(packet_type, count, body))
        else:
            packets.append(parser(count, body))
        pos += length
    return packets


def serialize_rtcp(packets: Iterable[RtcpPacket]) -> bytes:
    """Concatenate packets into one compound RTCP packet."""
    return b"".join(p.serialize() for p in packets)


# -- reports from receive statistics ------------------------------------------------------------


def report_block(stats: ReceiveStats, now: float) -> RtcpReportBlock:
    """Reception report for one source from its :class:`ReceiveStats` (RFC 3550 A.3, 6.4.1).

    Starts a new reporting interval for the fraction-lost computation.
    ``now`` is on the same clock as the ``now`` given to
    :meth:`ReceiveStats.on_sender_report`.
    """
    dlsr = 0
    if stats.last_sr:
        # DLSR: delay since last SR, in units of 1/65536 seconds.
        dlsr = max(0, min(0xFFFFFFFF, round((now - stats.last_sr_arrival) * 65536)))
    return RtcpReportBlock(
        ssrc=stats.ssrc,
        fraction_lost=stats.fraction_lost(),
        packets_lost=stats.lost,
        highest_sequence=stats.extended_max & 0xFFFFFFFF,
        jitter=stats.jitter,
        lsr=stats.last_sr,
        dlsr=dlsr,
    )


def build_receiver_report(ssrc: int, sources: Sequence[ReceiveStats], now: float) -> RtcpReceiverReport:
    """RR from our ``ssrc`` about up to 31 ``sources``."""
    return RtcpReceiverReport(ssrc, tuple(report_block(s, now) for s in sources[:31]))


def build_sender_report(
    ssrc: int,
    now: float,
    rtp_timestamp: int,
    packet_count: int,
    octet_count: int,
    sources: Sequence[ReceiveStats] = (),
) -> RtcpSenderReport:
    """SR for our stream at Unix wall-clock time ``now`` (RFC 3550 section 6.4.1).

    ``rtp_timestamp`` must be the RTP timestamp that corresponds to ``now``.
    """
    return RtcpSenderReport(
        ssrc,
        ntp_timestamp(now),
        rtp_timestamp & 0xFFFFFFFF,
        packet_count & 0xFFFFFFFF,
        octet_count & 0xFFFFFFFF,
        tuple(report_block(s, now) for s in sources[:31]),
    )


def rtcp_interval(
    members: int,
    senders: int,
    rtcp_bw: float,
    we_sent: bool,
    avg_rtcp_size: float,
    initial: bool,
    randomization: float = 1.0,
) -> float:
    """Seconds until the next RTCP packet (RFC 3550 section 6.3.1, Appendix A.7 ``rtcp_interval``).

    ``rtcp_bw`` is the session's RTCP bandwidth in octets per second (5% of
    the session bandwidth by default) and ``avg_rtcp_size`` the running
    average compound packet size in octets, UDP/IP overhead included.  The
    caller supplies ``randomization``, uniformly drawn from [0.5, 1.5), so
    that this function stays deterministic.
    """
    # A.7: minimum 5 s (halved before the first report); senders get 25% of the bandwidth.
    rtcp_min_time = 2.5 if initial else 5.0
    n = members
    if senders <= members * 0.25:
        if we_sent:
            rtcp_bw *= 0.25
            n = senders
        else:
            rtcp_bw *= 0.75
            n -= senders
    interval = max(avg_rtcp_size * n / rtcp_bw, rtcp_min_time)
    # "To compensate for 'timer reconsideration' converging to a value below
    # the intended average" (A.7): divide by e - 3/2.
    return interval * randomization / (2.718281828459045 - 1.5)


def round_trip_time(block: RtcpReportBlock, now: float) -> float | None:
    """Round-trip time in seconds from a report block about our stream (RFC 3550 section 6.4.1).

    ``now`` is the Unix wall-clock arrival time of the report:
    RTT = A - LSR - DLSR, with A the middle 32 bits of the arrival NTP time.
    Returns ``None`` when the peer has not received an SR yet (LSR = 0).
    """
    if block.lsr == 0:
        return None
    arrival = ntp_middle32(ntp_timestamp(now))
    rtt = (arrival - block.lsr - block.dlsr) & 0xFFFFFFFF
    if rtt >= 0x80000000:  # negative: clocks or report inconsistent
        return 0.0
    return rtt / 65536.0
