"""Read RTP out of pcap files and write pcaps of generated RTP for SIPp to play.

This is test code, independent of ``trunkline.media.rtp`` on purpose: it parses the RFC 3550
header itself so the product is checked by a second implementation.

Reading (classic libpcap format, either byte order, micro- or nanosecond stamps; link types
Ethernet with optional 802.1Q tags, Linux cooked SLL/SLL2, BSD loopback and raw IP; IPv4/UDP
only, other frames are skipped)::

    from tests.peers.pcap import read_udp, rtp_payloads
    for pkt in read_udp("capture.pcap"):            # UdpPacket(time, src, dst, payload)
        ...
    rtp = rtp_payloads("capture.pcap", payload_type=0)   # list[RtpPacket]
    assert [p.sequence for p in rtp] == sorted(...)

Writing (Ethernet link type, which SIPp's ``play_pcap_audio`` reads)::

    from tests.peers.pcap import write_tone_pcap, write_dtmf_pcap
    write_tone_pcap(tmp_path / "tone.pcap", 1000.0, seconds=2.0, codec="PCMU")
    write_dtmf_pcap(tmp_path / "dtmf.pcap", "5")          # RFC 4733 telephone-event, PT 101

SIPp replaces the addresses and ports of a played pcap with the call's media addresses and
paces the packets by their pcap timestamps.

Capturing what really went over loopback (``dumpcap``; needs root or CAP_NET_RAW, check
:func:`capture_available` and skip with its reason otherwise)::

    async with LoopbackCapture(tmp_path / "call.pcap", "udp portrange 40000-40100") as cap:
        ...  # run the call
    rtp = cap.rtp(src_port=gateway_rtp_port)        # after the block the file is complete
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from tests.peers import audio

Address = tuple[str, int]

# Magic numbers of the classic libpcap file header (pcap-savefile(5)).
_MAGIC_US = 0xA1B2C3D4
_MAGIC_NS = 0xA1B23C4D

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_VLAN = {0x8100, 0x88A8}
_IPPROTO_UDP = 17


class PcapError(ValueError):
    """A pcap file or a frame in it is malformed or uses an unsupported format."""


@dataclass(slots=True, frozen=True)
class UdpPacket:
    """One UDP datagram from (or for) a pcap file."""

    time: float
    src: Address
    dst: Address
    payload: bytes


@dataclass(slots=True, frozen=True)
class RtpPacket:
    """An RTP packet decoded from a UDP payload (RFC 3550 section 5.1)."""

    time: float
    src: Address
    dst: Address
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    csrcs: tuple[int, ...] = ()

    @classmethod
    def parse(
        cls, data: bytes, time: float = 0.0, src: Address = ("", 0), dst: Address = ("", 0)
    ) -> RtpPacket:
        """Parse an RTP packet; raises :class:`PcapError` if it is not a valid RTP packet."""
        if len(data) < 12:
            raise PcapError(f"RTP packet is {len(data)} bytes, shorter than the 12-byte header")
        b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
        if b0 >> 6 != 2:
            raise PcapError(f"RTP version is {b0 >> 6}, expected 2")
        cc = b0 & 0x0F
        offset = 12 + 4 * cc
        if len(data) < offset:
            raise PcapError("RTP CSRC list is truncated")
        csrcs = struct.unpack_from(f"!{cc}I", data, 12)
        if b0 & 0x10:  # RFC 3550 section 5.3.1: header extension
            if len(data) < offset + 4:
                raise PcapError("RTP header extension is truncated")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
            if len(data) < offset:
                raise PcapError("RTP header extension is truncated")
        end = len(data)
        if b0 & 0x20:  # RFC 3550 section 5.1: the last octet counts the padding
            pad = data[-1]
            if pad == 0 or end - pad < offset:
                raise PcapError(f"RTP padding length {pad} is invalid")
            end -= pad
        return cls(time, src, dst, b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, bytes(data[offset:end]), csrcs)

    def serialize(self) -> bytes:
        """The packet as bytes (no extension, no padding)."""
        head = struct.pack(
            "!BBHII",
            0x80 | len(self.csrcs),
            (0x80 if self.marker else 0) | self.payload_type,
            self.sequence & 0xFFFF,
            self.timestamp & 0xFFFFFFFF,
            self.ssrc,
        )
        return head + struct.pack(f"!{len(self.csrcs)}I", *self.csrcs) + self.payload


@dataclass(slots=True, frozen=True)
class DtmfEvent:
    """An RFC 4733 section 2.3 telephone-event payload."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> DtmfEvent:
        if len(payload) < 4:
            raise PcapError(f"telephone-event payload is {len(payload)} bytes, expected 4")
        event, flags, duration = struct.unpack_from("!BBH", payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    @property
    def digit(self) -> str:
        """The key for events 0-15 (RFC 4733 section 3.2)."""
        return "0123456789*#ABCD"[self.event] if self.event < 16 else f"event-{self.event}"


# --- reading ------------------------------------------------------------------------------------


def _ip_udp(frame: bytes, offset: int) -> tuple[Address, Address, bytes] | None:
    """Parse IPv4 + UDP at ``offset``; None for other protocols or fragments."""
    if len(frame) < offset + 20:
        raise PcapError("IPv4 header is truncated")
    vihl = frame[offset]
    if vihl >> 4 != 4:
        return None
    ihl = (vihl & 0x0F) * 4
    total_len, _ident, frag, _ttl, proto = struct.unpack_from("!HHHBB", frame, offset + 2)
    if proto != _IPPROTO_UDP or frag & 0x1FFF or frag & 0x2000:
        return None
    if ihl < 20 or len(frame) < offset + ihl + 8:
        raise PcapError("IPv4/UDP header is truncated")
    src_ip = ".".join(str(b) for b in frame[offset + 12 : offset + 16])
    dst_ip = ".".join(str(b) for b in frame[offset + 16 : offset + 20])
    udp = offset + ihl
    sport, dport, ulen = struct.unpack_from("!HHH", frame, udp)
    if ulen < 8:
        raise PcapError(f"UDP length {ulen} is shorter than its header")
    end = udp + ulen
    if total_len and end > offset + total_len:
        raise PcapError("UDP length exceeds the IPv4 total length")
    if end > len(frame):
        raise PcapError("UDP datagram is truncated (capture snap length too small?)")
    return (src_ip, sport), (dst_ip, dport), bytes(frame[udp + 8 : end])


def _network_offset(linktype: int, frame: bytes, endian: str) -> int | None:
    """Offset of the IPv4 header in a frame of ``linktype``; None when it is not IPv4."""
    if linktype == LINKTYPE_ETHERNET:
        offset, ethertype = 14, struct.unpack_from("!H", frame, 12)[0] if len(frame) >= 14 else -1
        while ethertype in _ETHERTYPE_VLAN and len(frame) >= offset + 4:
            ethertype = struct.unpack_from("!H", frame, offset + 2)[0]
            offset += 4
        return offset if ethertype == _ETHERTYPE_IPV4 else None
    if linktype == LINKTYPE_LINUX_SLL:
        return 16 if len(frame) >= 16 and struct.unpack_from("!H", frame, 14)[0] == _ETHERTYPE_IPV4 else None
    if linktype == LINKTYPE_LINUX_SLL2:
        return 20 if len(frame) >= 20 and struct.unpack_from("!H", frame, 0)[0] == _ETHERTYPE_IPV4 else None
    if linktype == LINKTYPE_NULL:
        if len(frame) < 4:
            return None
        family = struct.unpack_from(endian + "I", frame)[0]
        return 4 if family == 2 else None
    if linktype == LINKTYPE_RAW:
        return 0
    raise PcapError(f"unsupported pcap link type {linktype}")


def read_udp(path: str | Path) -> list[UdpPacket]:
    """All IPv4/UDP datagrams of a classic pcap file, in file order."""
    return list(iter_udp(Path(path).read_bytes()))


def iter_udp(data: bytes) -> Iterator[UdpPacket]:
    """Iterate the IPv4/UDP datagrams of pcap file contents ``data``."""
    if len(data) < 24:
        raise PcapError("pcap file header is truncated")
    for endian in ("<", ">"):
        magic = struct.unpack_from(endian + "I", data)[0]
        if magic in (_MAGIC_US, _MAGIC_NS):
            break
    else:
        raise PcapError(f"not a classic pcap file (magic {data[:4].hex()}); pcapng is not supported")
    scale = 1e-9 if magic == _MAGIC_NS else 1e-6
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    offset = 24
    record = struct.Struct(endian + "IIII")
    while offset < len(data):
        if len(data) < offset + 16:
            raise PcapError(f"pcap record header at byte {offset} is truncated")
        sec, frac, incl, _orig = record.unpack_from(data, offset)
        offset += 16
        if len(data) < offset + incl:
            raise PcapError(f"pcap record at byte {offset - 16} is truncated")
        frame = data[offset : offset + incl]
        offset += incl
        net = _network_offset(linktype, frame, endian)
        if net is None:
            continue
        parsed = _ip_udp(frame, net)
        if parsed is not None:
            yield UdpPacket(sec + frac * scale, parsed[0], parsed[1], parsed[2])


def looks_like_rtp(payload: bytes) -> bool:
    """Version 2, at least 12 bytes, and not an RTCP packet type (RFC 5761 section 4)."""
    return len(payload) >= 12 and payload[0] >> 6 == 2 and not 192 <= payload[1] <= 223


def rtp_payloads(
    path: str | Path,
    *,
    payload_type: int | None = None,
    src_port: int | None = None,
    dst_port: int | None = None,
) -> list[RtpPacket]:
    """The RTP packets of a pcap file, optionally filtered by payload type and UDP ports.

    UDP datagrams that are not RTP (SIP, RTCP, STUN) are skipped.
    """
    out = []
    for pkt in read_udp(path):
        if src_port is not None and pkt.src[1] != src_port:
            continue
        if dst_port is not None and pkt.dst[1] != dst_port:
            continue
        if not looks_like_rtp(pkt.payload):
            continue
        rtp = RtpPacket.parse(pkt.payload, pkt.time, pkt.src, pkt.dst)
        if payload_type is None or rtp.payload_type == payload_type:
            out.append(rtp)
    return out


def rtp_audio(path: str | Path, payload_type: int = 0, **filters: int) -> np.ndarray:
    """Concatenated decoded G.711 audio (int16) of the RTP packets of one payload type.

    Packets are grouped by SSRC and kept in capture order within each (no reordering by
    sequence number: a test that cares about loss or reordering should inspect the packets).
    """
    packets = rtp_payloads(path, payload_type=payload_type, **filters)
    packets.sort(key=lambda p: (p.ssrc, p.time))
    return audio.decode_g711(b"".join(p.payload for p in packets), payload_type)


# --- writing ------------------------------------------------------------------------------------


def _checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(pkt: UdpPacket, ident: int) -> bytes:
    udp = struct.pack("!HHHH", pkt.src[1], pkt.dst[1], 8 + len(pkt.payload), 0) + pkt.payload
    ip = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            ident & 0xFFFF,
            0x4000,  # don't fragment
            64,
            _IPPROTO_UDP,
            0,
            bytes(int(x) for x in pkt.src[0].split(".")),
            bytes(int(x) for x in pkt.dst[0].split(".")),
        )
    )
    struct.pack_into("!H", ip, 10, _checksum(bytes(ip)))
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", _ETHERTYPE_IPV4)
    return eth + bytes(ip) + udp


def write_pcap(path: str | Path, packets: Iterable[UdpPacket]) -> Path:
    """Write UDP datagrams as a classic microsecond pcap with Ethernet framing; returns the path."""
    out = [struct.pack("<IHHiIII", _MAGIC_US, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET)]
    for ident, pkt in enumerate(packets):
        frame = _frame(pkt, ident)
        sec = int(pkt.time)
        usec = round((pkt.time - sec) * 1e6)
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    target = Path(path)
    target.write_bytes(b"".join(out))
    return target


_SRC: Address = ("10.0.0.1", 40000)
_DST: Address = ("10.0.0.2", 40002)


def tone_packets(
    freq: float | tuple[float, ...],
    seconds: float,
    codec: str = "PCMU",
    *,
    ptime_ms: int = 20,
    level_dbfs: float = -10.0,
    ssrc: int = 0x5EED0001,
    src: Address = _SRC,
    dst: Address = _DST,
) -> list[UdpPacket]:
    """RTP packets (G.711, 8 kHz) carrying a tone, paced every ``ptime_ms``."""
    encoders = {"PCMU": (0, audio.encode_pcmu), "PCMA": (8, audio.encode_pcma)}
    if codec.upper() not in encoders:
        raise ValueError(f"codec must be PCMU or PCMA, not {codec!r}")
    pt, encode = encoders[codec.upper()]
    samples = audio.tone(freq, seconds, 8000, level_dbfs)
    step = 8 * ptime_ms
    out = []
    for i, start in enumerate(range(0, samples.size - step + 1, step)):
        rtp = RtpPacket(0.0, src, dst, pt, i == 0, i, start, ssrc, encode(samples[start : start + step]))
        out.append(UdpPacket(i * ptime_ms / 1000, src, dst, rtp.serialize()))
    return out


def dtmf_packets(
    digit: str,
    *,
    duration_ms: int = 160,
    payload_type: int = 101,
    ptime_ms: int = 20,
    volume: int = 10,
    ssrc: int = 0x5EED0002,
    src: Address = _SRC,
    dst: Address = _DST,
) -> list[UdpPacket]:
    """RFC 4733 telephone-event packets for one digit: a marked start, updates every ``ptime_ms``,
    and the end packet sent three times (RFC 4733 section 2.5.1.4), all with one RTP timestamp
    (section 2.5.1.2) and a fresh sequence number each."""
    event = "0123456789*#ABCD".find(digit.upper())
    if event < 0 or len(digit) != 1:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    step = 8 * ptime_ms
    durations = list(range(step, 8 * duration_ms, step)) + [8 * duration_ms] * 3
    out = []
    for i, dur in enumerate(durations):
        end = i >= len(durations) - 3
        payload = struct.pack("!BBH", event, (0x80 if end else 0) | volume, dur)
        rtp = RtpPacket(0.0, src, dst, payload_type, i == 0, i, 0, ssrc, payload)
        out.append(UdpPacket(i * ptime_ms / 1000, src, dst, rtp.serialize()))
    return out


def write_tone_pcap(
    path: str | Path,
    freq: float | tuple[float, ...],
    seconds: float = 2.0,
    codec: str = "PCMU",
    *,
    ptime_ms: int = 20,
    level_dbfs: float = -10.0,
) -> Path:
    """Write a pcap of a G.711 tone (see :func:`tone_packets`) for ``play_pcap_audio``."""
    return write_pcap(path, tone_packets(freq, seconds, codec, ptime_ms=ptime_ms, level_dbfs=level_dbfs))


def write_dtmf_pcap(
    path: str | Path, digits: str, *, gap_ms: int = 100, duration_ms: int = 160, payload_type: int = 101
) -> Path:
    """Write a pcap of RFC 4733 events for ``digits`` (see :func:`dtmf_packets`)."""
    packets: list[UdpPacket] = []
    offset = 0.0
    seq = 0
    rtp_ts = 0
    for digit in digits:
        for pkt in dtmf_packets(digit, duration_ms=duration_ms, payload_type=payload_type):
            rtp = RtpPacket.parse(pkt.payload)
            moved = RtpPacket(
                0.0, pkt.src, pkt.dst, rtp.payload_type, rtp.marker, seq, rtp_ts, rtp.ssrc, rtp.payload
            )
            packets.append(UdpPacket(offset + pkt.time, pkt.src, pkt.dst, moved.serialize()))
            seq += 1
        offset = packets[-1].time + gap_ms / 1000
        rtp_ts += 8 * (gap_ms + duration_ms)
    return write_pcap(path, packets)


# --- live capture on loopback -------------------------------------------------------------------

DUMPCAP = shutil.which("dumpcap")


def capture_available() -> tuple[bool, str]:
    """Whether :class:`LoopbackCapture` can run here, and if not, why (for ``pytest.skip``)."""
    if DUMPCAP is None:
        return False, "dumpcap (Debian package wireshark-common) is not installed"
    if os.geteuid() != 0:
        return False, "capturing on lo needs root (or CAP_NET_RAW on dumpcap), and this is not root"
    return True, ""


class LoopbackCapture:
    """Capture UDP on ``lo`` into a classic pcap with ``dumpcap`` while the block runs.

    ``bpf_filter`` is a capture filter (pcap-filter(7)), e.g. ``"udp port 5060 or udp portrange
    40000-40100"``.  On exit dumpcap is stopped with SIGINT (it flushes the file) and killed if it
    does not stop within 5 s.  :meth:`packets` and :meth:`rtp` read the file afterwards.
    """

    def __init__(self, path: str | Path, bpf_filter: str = "udp", interface: str = "lo") -> None:
        self.path = Path(path)
        self.bpf_filter = bpf_filter
        self.interface = interface
        self._proc: asyncio.subprocess.Process | None = None
        self.stderr = ""

    async def start(self, timeout: float = 5.0) -> None:
        ok, why = capture_available()
        if not ok:
            raise RuntimeError(why)
        assert DUMPCAP is not None
        self._proc = await asyncio.create_subprocess_exec(
            DUMPCAP,
            "-i",
            self.interface,
            "-P",  # classic pcap, not pcapng
            "-f",
            self.bpf_filter,
            "-w",
            str(self.path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._proc.stderr is not None
        try:
            while True:
                line = await asyncio.wait_for(self._proc.stderr.readline(), timeout)
                if not line:
                    raise RuntimeError(f"dumpcap exited: {self.stderr.strip()}")
                self.stderr += line.decode(errors="replace")
                if line.startswith(b"Capturing on"):
                    break
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.stderr is not None:
            self.stderr += (await proc.stderr.read()).decode(errors="replace")
        self._proc = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def packets(self) -> list[UdpPacket]:
        """All captured UDP datagrams."""
        return read_udp(self.path)

    def rtp(self, **filters: int) -> list[RtpPacket]:
        """Captured RTP, filtered like :func:`rtp_payloads` (payload_type, src_port, dst_port)."""
        return rtp_payloads(self.path, **filters)
