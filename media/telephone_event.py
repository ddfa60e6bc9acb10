"""RFC 4733 telephone-events (DTMF over RTP): payload, sender and receiver.

Sans-I/O: :class:`DtmfSender` returns the packets to send with their send
offsets, :class:`DtmfReceiver` is fed ``(packet, now)`` and tells the caller
when to come back (:meth:`DtmfReceiver.next_deadline`) to detect an event
whose end packets were all lost.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

from trunkline.media.rtp import RtpPacket

__all__ = [
    "DIGIT_TO_EVENT",
    "EVENT_TO_DIGIT",
    "DtmfEvent",
    "DtmfReceiver",
    "DtmfSender",
    "TelephoneEvent",
]

#: RFC 4733 section 3.2, table 7: DTMF named events.
EVENT_TO_DIGIT = {i: d for i, d in enumerate("0123456789*#ABCD")}
DIGIT_TO_EVENT = {d: i for i, d in EVENT_TO_DIGIT.items()}
DIGIT_TO_EVENT.update({d.lower(): i for d, i in DIGIT_TO_EVENT.items() if d.isalpha()})

_PAYLOAD = struct.Struct("!BBH")
MAX_DURATION = 0xFFFF


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-octet telephone-event payload (RFC 4733 section 2.3).

    ``volume`` is the power level in -dBm0 (0-63); ``duration`` is in
    timestamp units since the event's RTP timestamp.
    """

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        """Parse the first event of a telephone-event payload."""
        if len(data) < 4:
            raise ValueError(f"telephone-event payload is truncated: {len(data)} bytes, need 4")
        event, flags, duration = _PAYLOAD.unpack_from(data)
        # Section 2.3: E is the top bit, R (reserved) is ignored by receivers.
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        if not 0 <= self.event <= 255:
            raise ValueError(f"telephone-event code {self.event} is out of range 0-255")
        if not 0 <= self.volume <= 63:
            raise ValueError(f"telephone-event volume {self.volume} is out of range 0-63")
        if not 0 <= self.duration <= MAX_DURATION:
            raise ValueError(f"telephone-event duration {self.duration} is out of range 0-65535")
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @property
    def digit(self) -> str | None:
        """The DTMF digit for events 0-15, else ``None``."""
        return EVENT_TO_DIGIT.get(self.event)


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """A complete DTMF digit as received.

    ``timestamp`` is the RTP timestamp of the event's first segment;
    ``ended`` is ``False`` when no end packet arrived (timeout or a new event).
    """

    digit: str
    duration_ms: int
    timestamp: int
    ended: bool = True


class DtmfSender:
    """Build the RTP packets of a DTMF digit (RFC 4733 section 2.5.1).

    * every packet of an event carries the event's start timestamp; the first
      has the marker bit (2.5.1.2);
    * an update goes out every ``interval_ms`` with the duration so far;
    * the final packet (E bit) is sent three times (2.5.1.4);
    * an event longer than 65535 samples is split into segments whose
      timestamps advance by the segment duration, without marker (2.5.1.3).

    Sequence numbers continue from ``sequence_number`` and the caller must
    keep using :attr:`sequence_number` afterwards for the stream.
    """

    def __init__(
        self,
        ssrc: int,
        *,
        payload_type: int = 101,
        clock_rate: int = 8000,
        interval_ms: int = 50,
        volume: int = 10,
        sequence_number: int = 0,
    ) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.interval_ms = interval_ms
        self.volume = volume
        self.sequence_number = sequence_number & 0xFFFF

    def _packet(self, timestamp: int, marker: bool, payload: TelephoneEvent) -> RtpPacket:
        packet = RtpPacket(
            self.payload_type,
            self.sequence_number,
            timestamp & 0xFFFFFFFF,
            self.ssrc,
            payload.serialize(),
            marker,
        )
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        return packet

    def packets(
        self, digit: str, *, start_timestamp: int, duration_ms: int = 100
    ) -> list[tuple[float, RtpPacket]]:
        """Packets for ``digit`` as ``(send offset in seconds, packet)``, in send order.

        ``digit`` is one of ``0-9 * # A-D``; pauses (``w``) are the caller's business.
        """
        event = DIGIT_TO_EVENT.get(digit)
        if event is None:
            raise ValueError(f"DTMF digit {digit!r} is not one of 0-9, *, #, A-D")
        if duration_ms <= 0:
            raise ValueError(f"DTMF duration {duration_ms} ms must be positive")
        total = duration_ms * self.clock_rate // 1000
        step = max(1, self.interval_ms * self.clock_rate // 1000)
        interval = self.interval_ms / 1000.0
        out: list[tuple[float, RtpPacket]] = []
        elapsed = 0  # samples since the event start
        segment_start = 0
        first = True
        tick = 0
        while True:
            elapsed = min(total, elapsed + step)
            seg_duration = elapsed - segment_start
            if seg_duration > MAX_DURATION:
                # Section 2.5.1.3: close this segment at 0xFFFF (E bit clear), start the
                # next one; 2.5.1.4: the last packet of a segment is sent three times too.
                ts = start_timestamp + segment_start
                closing = TelephoneEvent(event, False, self.volume, MAX_DURATION)
                for _ in range(3):
                    out.append((tick * interval, self._packet(ts, False, closing)))
                segment_start += MAX_DURATION
                seg_duration = elapsed - segment_start
            ts = start_timestamp + segment_start
            is_end = elapsed >= total
            payload = TelephoneEvent(event, is_end, self.volume, seg_duration)
            if is_end:
                for _ in range(3):
                    out.append((tick * interval, self._packet(ts, first, payload)))
                    first = False
                    tick += 1
                return out
            out.append((tick * interval, self._packet(ts, first, payload)))
            first = False
            tick += 1


@dataclass(slots=True)
class _Current:
    event: int
    timestamp: int  # start of the first segment
    segment_ts: int
    base: int  # samples in the segments before the current one
    duration: int  # samples in the current segment
    last_seen: float


@dataclass(slots=True)
class DtmfReceiver:
    """Turn received telephone-event packets into :class:`DtmfEvent` s (RFC 4733 section 2.5.2).

    Each event is reported exactly once: on its first end packet, or, if all
    end packets were lost, when a different event starts or nothing arrived
    for ``end_timeout`` seconds (call :meth:`handle_timer` at
    :meth:`next_deadline`).  Retransmitted end packets and late updates of an
    event already reported are ignored; segments of a long event (2.5.1.3)
    are joined.  Non-DTMF events (codes above 15) are ignored.
    """

    payload_type: int = 101
    clock_rate: int = 8000
    end_timeout: float = 0.3
    _current: _Current | None = field(default=None, init=False, repr=False)
    _done: deque[int] = field(default_factory=lambda: deque(maxlen=32), init=False, repr=False)

    def feed(self, packet: RtpPacket, now: float) -> list[DtmfEvent]:
        """Process one RTP packet; return the events it completes (usually none or one)."""
        out = self.handle_timer(now)
        if packet.payload_type != self.payload_type:
            return out
        payload = TelephoneEvent.parse(packet.payload)
        if payload.event not in EVENT_TO_DIGIT:
            return out
        ts = packet.timestamp
        if ts in self._done:
            return out  # retransmitted end packet or late update (section 2.5.2)
        cur = self._current
        if cur is not None and ts != cur.segment_ts:
            if (
                payload.event == cur.event
                and not packet.marker
                and (ts - cur.segment_ts) & 0xFFFFFFFF == MAX_DURATION
            ):
                # Section 2.5.1.3: next segment of a long event.
                self._done.append(cur.segment_ts)
                cur.base += MAX_DURATION
                cur.segment_ts = ts
                cur.duration = 0
            else:
                out.append(self._finish(ended=False))
                cur = None
        if cur is None:
            cur = self._current = _Current(payload.event, ts, ts, 0, 0, now)
        cur.duration = max(cur.duration, payload.duration)
        cur.last_seen = now
        if payload.end:
            out.append(self._finish(ended=True))
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` should next be called, or ``None``."""
        if self._current is None:
            return None
        return self._current.last_seen + self.end_timeout

    def handle_timer(self, now: float) -> list[DtmfEvent]:
        """Report an event whose end packets never came."""
        if self._current is not None and now >= self._current.last_seen + self.end_timeout:
            return [self._finish(ended=False)]
        return []

    def _finish(self, ended: bool) -> DtmfEvent:
        cur = self._current
        assert cur is not None
        self._current = None
        self._done.append(cur.segment_ts)
        samples = cur.base + cur.duration
        return DtmfEvent(
            EVENT_TO_DIGIT[cur.event], round(samples * 1000 / self.clock_rate), cur.timestamp, ended
        )
