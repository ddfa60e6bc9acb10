"""RTCP for one RTP stream: SR/RR on a randomised ~5 s timer, RTT from LSR/DLSR, BYE on close.

:class:`RtcpReporting` is mixed into :class:`~trunkline.media.stream.RtpStream`; it turns the
stream's counters and :class:`~trunkline.media.jitter.ReceiveStats` into compound RTCP packets
with the sans-I/O builders of :mod:`trunkline.media.rtcp`, and reads the peer's reports.
Report times use the wall clock (``time.time``), as NTP timestamps must (RFC 3550 section 6.4.1).
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from trunkline.media.receive_stats import ReceiveStats
from trunkline.media.rtcp import (
    RtcpBye,
    RtcpReceiverReport,
    RtcpSdes,
    RtcpSdesChunk,
    RtcpSenderReport,
    SdesItemType,
    build_receiver_report,
    build_sender_report,
    parse_rtcp,
    round_trip_time,
    serialize_rtcp,
)

if TYPE_CHECKING:
    from trunkline.gateway.sip.sdp import NegotiatedMedia
    from trunkline.media.ports import PortPair
    from trunkline.media.stream import StreamStats

__all__ = ["RTCP_INTERVAL", "RtcpReporting"]

#: RFC 3550 section 6.2: the recommended minimum RTCP interval is 5 seconds.
RTCP_INTERVAL = 5.0
#: RFC 3550 section 6.3.1: divide the randomised interval by e - 3/2 to compensate
#: for the timer reconsideration's effect of making reports come early on average.
_RTCP_COMPENSATION = math.e - 1.5
_MAX_DATAGRAM = 2048


class RtcpReporting:
    """The RTCP side of a stream (mixin: the attributes below belong to ``RtpStream``)."""

    if not TYPE_CHECKING:  # the slots are RtpStream's; mypy checks the mixin's own assignments
        __slots__ = ()

    loop: asyncio.AbstractEventLoop
    ports: PortPair
    ssrc: int
    ts: int
    cname: str
    closed: bool
    stats: StreamStats
    rx_stats: ReceiveStats | None
    negotiated: NegotiatedMedia | None
    remote: tuple[str, int] | None
    remote_rtcp: tuple[str, int] | None
    rtt: float | None
    remote_bye: bool
    _rng: random.Random
    _rtcp_latched: bool
    _rtcp_timer: asyncio.TimerHandle | None
    sync_relay: Callable[[], None]
    _sent_since_report: bool

    def _on_rtcp_readable(self, now: float) -> None:
        # One datagram per call: the engine's poller calls again while the socket is readable.
        sock = self.ports.rtcp_sock
        assert sock is not None
        try:
            data, addr = sock.recvfrom(_MAX_DATAGRAM)
        except OSError:  # BlockingIOError, InterruptedError, ICMP errors reported on the socket
            return
        self._handle_rtcp(data, addr)

    def _rtcp_interval(self, initial: bool) -> float:
        # RFC 3550 section 6.3.1 / 6.2: randomise over [0.5, 1.5] x the interval, compensate,
        # and halve the first interval (section 6.2, "initial" flag).
        base = RTCP_INTERVAL / 2 if initial else RTCP_INTERVAL
        return base * self._rng.uniform(0.5, 1.5) / _RTCP_COMPENSATION

    def _schedule_rtcp(self, initial: bool = False) -> None:
        self._rtcp_timer = self.loop.call_later(self._rtcp_interval(initial), self._on_rtcp_timer)

    def _on_rtcp_timer(self) -> None:
        if self.closed:
            return
        self.send_rtcp_report()
        self._schedule_rtcp()

    def build_report(self) -> bytes:
        """The compound RTCP packet we would send now: SR or RR, then SDES CNAME (RFC 3550 section 6.1)."""
        wall = time.time()
        self.sync_relay()
        sources = [self.rx_stats] if self.rx_stats is not None else []
        report: RtcpSenderReport | RtcpReceiverReport
        if self._sent_since_report:
            report = build_sender_report(
                self.ssrc, wall, self.ts, self.stats.packets_sent, self.stats.octets_sent, sources
            )
        else:
            report = build_receiver_report(self.ssrc, sources, wall)
        self._sent_since_report = False
        return serialize_rtcp([report, self._sdes()])

    def send_rtcp_report(self) -> None:
        """Send an SR/RR now (the timer does this every ~5 s)."""
        if self.negotiated is None:
            return
        self._send_rtcp(self.build_report())

    def _send_rtcp(self, data: bytes) -> None:
        sock: socket.socket | None = self.ports.rtcp_sock
        dest = self.remote_rtcp
        if self.ports.rtcp_mux:
            dest, sock = self.remote, self.ports.rtp_sock
        if dest is None or sock is None:
            return
        try:
            sock.sendto(data, dest)
            self.stats.rtcp_sent += 1
        except OSError:
            self.stats.send_drops += 1

    def _handle_rtcp(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            packets = parse_rtcp(data)
        except ValueError:
            self.stats.malformed += 1
            return
        self.stats.rtcp_received += 1
        if not self._rtcp_latched and not self.ports.rtcp_mux:
            self.remote_rtcp = addr
            self._rtcp_latched = True
        wall = time.time()
        for packet in packets:
            if isinstance(packet, RtcpSenderReport):
                if self.rx_stats is not None and packet.ssrc == self.rx_stats.ssrc:
                    self.rx_stats.on_sender_report(packet.ntp_timestamp, wall)
                blocks = packet.reports
            elif isinstance(packet, RtcpReceiverReport):
                blocks = packet.reports
            else:
                if isinstance(packet, RtcpBye):
                    self.remote_bye = True
                continue
            for block in blocks:
                if block.ssrc == self.ssrc:
                    rtt = round_trip_time(block, wall)
                    if rtt is not None:
                        self.rtt = rtt

    def _sdes(self) -> RtcpSdes:
        return RtcpSdes((RtcpSdesChunk(self.ssrc, ((SdesItemType.CNAME, self.cname.encode()),)),))

    def send_rtcp_bye(self) -> None:
        """RFC 3550 section 6.6: BYE, in a compound packet after an (empty) report and SDES."""
        rr = build_receiver_report(self.ssrc, [], time.time())
        self._send_rtcp(serialize_rtcp([rr, self._sdes(), RtcpBye((self.ssrc,))]))
