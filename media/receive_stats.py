"""Receive statistics of one RTP source (RFC 3550 Appendix A.1, A.3 and A.8).

Sans-I/O: arrival times come in as an explicit ``now`` (seconds, any monotonic origin).
:class:`ReceiveStats` follows A.1 (sequence validation), A.3 (expected and lost packets,
fraction lost) and A.8 (interarrival jitter) to the letter, so its numbers can go straight
into an RTCP report block.  The jitter buffer (:mod:`trunkline.media.jitter`) keeps one per
source; a relayed leg, which has no jitter buffer, keeps its own.
"""

from __future__ import annotations

from trunkline.media.rtp import RtpPacket

__all__ = ["MAX_DROPOUT", "MAX_MISORDER", "MIN_SEQUENTIAL", "RTP_SEQ_MOD", "ReceiveStats"]

# RFC 3550 A.1 constants.
RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2


class ReceiveStats:
    """Per-source receive statistics (RFC 3550 Appendix A.1, A.3, A.8).

    Call :meth:`update` for every RTP packet from the source, with its arrival
    time ``now`` in seconds.  ``clock_rate`` converts arrival times into RTP
    timestamp units for the jitter estimate (A.8).
    """

    __slots__ = (
        "_expected_prior",
        "_initialized",
        "_jitter",
        "_received_prior",
        "_transit",
        "bad_seq",
        "base_seq",
        "clock_rate",
        "cycles",
        "last_sr",
        "last_sr_arrival",
        "max_seq",
        "octets",
        "probation",
        "received",
        "ssrc",
    )

    def __init__(self, ssrc: int, clock_rate: int, first_seq: int | None = None) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.base_seq = 0
        self.max_seq = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.octets = 0
        self.probation = 0
        self._received_prior = 0
        self._expected_prior = 0
        self._transit: float | None = None
        self._jitter = 0.0
        #: Middle 32 bits of the NTP timestamp of the last SR from this source (0: none).
        self.last_sr = 0
        #: Arrival time (``now``) of that SR.
        self.last_sr_arrival = 0.0
        self._initialized = False
        if first_seq is not None:
            self._start(first_seq)

    def _start(self, seq: int) -> None:
        # A.1: "init_seq(s, seq); s->max_seq = seq - 1; s->probation = MIN_SEQUENTIAL;"
        self._initialized = True
        self._init_seq(seq)
        self.max_seq = (seq - 1) & 0xFFFF
        self.probation = MIN_SEQUENTIAL

    def _init_seq(self, seq: int) -> None:
        # A.1 init_seq()
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self._received_prior = 0
        self._expected_prior = 0

    def update_seq(self, seq: int) -> bool:
        """RFC 3550 A.1 ``update_seq``: validate ``seq``; return whether the packet counts.

        Returns ``False`` while the source is on probation, and for a packet
        that makes a very large jump (until a second sequential one confirms
        a restart).
        """
        if not self._initialized:
            self._start(seq)
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            # A.1: source is not valid until MIN_SEQUENTIAL packets in sequence.
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            # in order, with permissible gap
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD  # sequence number wrapped
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # the sequence number made a very large jump
            if seq == self.bad_seq:
                # Two sequential packets: assume the other side restarted
                # without telling us, so just re-sync.
                self._init_seq(seq)
            else:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
        # else: duplicate or reordered packet
        self.received += 1
        return True

    def update(self, packet: RtpPacket, now: float) -> bool:
        """Account for one received packet: A.1 validation, then A.8 jitter."""
        return self.update_fields(packet.sequence_number, packet.timestamp, len(packet.payload), now)

    def update_fields(self, seq: int, timestamp: int, size: int, now: float) -> bool:
        """:meth:`update` for a packet given by its header fields and payload size.

        The common case (a valid source, the next sequence number without a wrap) takes a
        short path with the same result as the full A.1 ``update_seq``.
        """
        if seq == self.max_seq + 1 and not self.probation and self._initialized:
            self.max_seq = seq
            self.received += 1
            self.octets += size
            valid = True
        else:
            probing = self.probation > 0 or not self._initialized
            valid = self.update_seq(seq)
            if valid:
                self.octets += size
            if not (valid or probing):
                return False
        # A.8: transit = arrival - r_ts in timestamp units; jitter += (|D| - jitter) / 16.
        transit = now * self.clock_rate - timestamp
        previous = self._transit
        if previous is not None:
            d = transit - previous
            # RTP timestamps wrap at 2^32: bring d into the nearest representation.
            if d > 2147483648:
                d -= 4294967296
            elif d < -2147483648:
                d += 4294967296
            self._jitter += (abs(d) - self._jitter) / 16.0
        self._transit = transit
        return valid

    def steady(self) -> bool:
        """Whether the next in-order packet takes :meth:`update_fields`' short path (no probation)."""
        return self._initialized and not self.probation

    def restart_transit(self) -> None:
        """Forget the previous transit time, e.g. after the sender's timestamps jumped."""
        self._transit = None

    def on_sender_report(self, ntp_timestamp: int, now: float) -> None:
        """Remember an SR from this source for LSR/DLSR (RFC 3550 section 6.4.1)."""
        self.last_sr = (ntp_timestamp >> 16) & 0xFFFFFFFF
        self.last_sr_arrival = now

    @property
    def extended_max(self) -> int:
        """Extended highest sequence number received (A.3)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Number of packets expected (A.3)."""
        if self.received == 0 and self.probation:
            return 0
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative number of packets lost, clamped to the signed 24-bit field (A.3)."""
        lost = self.expected - self.received
        return max(-0x800000, min(0x7FFFFF, lost))

    @property
    def jitter(self) -> int:
        """Interarrival jitter in timestamp units, as the RTCP field carries it (A.8)."""
        return int(self._jitter)

    @property
    def jitter_float(self) -> float:
        """Interarrival jitter in timestamp units, unrounded."""
        return self._jitter

    @property
    def jitter_seconds(self) -> float:
        """Interarrival jitter in seconds."""
        return self._jitter / self.clock_rate

    def fraction_lost(self) -> int:
        """Fraction lost since the previous call, in 1/256 units (A.3).

        This starts a new reporting interval, so call it once per report.
        """
        expected = self.expected
        expected_interval = expected - self._expected_prior
        self._expected_prior = expected
        received_interval = self.received - self._received_prior
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            return 0
        return min(255, (lost_interval << 8) // expected_interval)
