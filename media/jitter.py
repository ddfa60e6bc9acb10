"""An adaptive playout buffer for one RTP stream.

Sans-I/O: arrival times come in as an explicit ``now`` (seconds, any monotonic
origin) and nothing here reads the clock.  RFC 3550 receive statistics live in
:mod:`trunkline.media.receive_stats` (re-exported here).

:class:`JitterBuffer` holds packets of one stream keyed by extended sequence
number and releases exactly one fixed-duration :class:`Frame` per call to
:meth:`JitterBuffer.get`, which the media engine calls on its 20 ms tick.
Concealment is the codec's job: a frame flagged ``lost`` tells the decoder to
run its PLC (and carries the next packet's payload, if buffered, for Opus
in-band FEC).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass

from trunkline.media.receive_stats import MAX_DROPOUT, MAX_MISORDER, MIN_SEQUENTIAL, RTP_SEQ_MOD, ReceiveStats
from trunkline.media.rtp import RtpPacket

__all__ = [
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "MIN_SEQUENTIAL",
    "Frame",
    "FrameKind",
    "JitterBuffer",
    "ReceiveStats",
]


class FrameKind(enum.Enum):
    """What :meth:`JitterBuffer.get` hands out for a tick."""

    OK = "ok"  # a received packet's payload
    LOST = "lost"  # the packet is missing: the decoder conceals (PLC / FEC)
    DTX = "dtx"  # the sender sent nothing for this time (DTX, silence suppression)


@dataclass(slots=True)
class Frame:
    """One playout frame.

    ``timestamp`` is on the buffer's playout timeline (the RTP timestamp of the
    stream, modulo 2^32; after a resync the new stream is mapped onto it).  It
    is informational: filler frames handed out while playout re-anchors repeat
    the previous value.
    For a ``lost`` frame, ``next_payload`` is the payload of the packet right
    after the missing one when it is already buffered, so an Opus decoder can
    decode its in-band FEC instead of plain PLC.

    Not frozen: one is made per stream per tick, and a frozen ``__init__``
    costs about twice as much.  Treat it as read-only.
    """

    kind: FrameKind
    timestamp: int
    payload: bytes = b""
    payload_type: int | None = None
    marker: bool = False
    next_payload: bytes | None = None

    @property
    def ok(self) -> bool:
        """A received payload to decode."""
        return self.kind is FrameKind.OK

    @property
    def lost(self) -> bool:
        """Missing: conceal (PLC, or FEC from ``next_payload``)."""
        return self.kind is FrameKind.LOST

    @property
    def dtx(self) -> bool:
        """Nothing was sent for this time: comfort noise or silence."""
        return self.kind is FrameKind.DTX


@dataclass(slots=True)
class _Slot:
    ext_ts: int
    packet: RtpPacket
    arrival: float


class JitterBuffer:
    """Adaptive playout buffer for fixed-duration frames (one packet = one frame).

    * :meth:`put` files a packet under its extended sequence number.  Duplicates
      are dropped, packets whose time has already been played are ``late``.
    * :meth:`get` returns ``None`` until playout starts, then exactly one
      :class:`Frame` per call: the packet due, a ``lost`` frame when a packet
      is missing (or nothing has arrived in time), or a ``dtx`` frame when the
      timestamps show that the sender sent nothing for that time.
    * The target delay follows the RFC 3550 A.8 jitter estimate:
      ``frame + jitter_factor * jitter``, rounded up to whole frames and kept
      between ``min_delay`` and ``max_delay`` seconds.  Playout is re-anchored
      (packet played ``target_delay`` after its arrival) at start, at a
      talkspurt start (marker bit) and when a late packet arrives while the
      buffer is starved; if the buffer stays deeper than the target it drops
      one frame now and then.
    * A new SSRC, a timestamp jump, or a confirmed sequence-number jump is
      spliced onto the playout timeline right after the last packet
      (``resyncs`` counts them), so playout continues without a gap.

    Feed it the audio payload types only: RFC 4733 events go to
    :class:`trunkline.media.telephone_event.DtmfReceiver`, and their sequence
    numbers then show up here as ``lost`` frames, which the decoder conceals.

    Counters (cumulative): ``lost`` (frames handed out as lost), ``late``
    (packets that came after their time), ``duplicates``, ``reordered``,
    ``dropped`` (discarded to bound the delay, stray or colliding packets),
    ``resyncs``.  ``depth`` and ``target_frames`` give the current and wanted
    depth in frames; ``stats`` is the RFC 3550 :class:`ReceiveStats` of the
    current source.
    """

    #: Ticks in a row with the buffer deeper than target + 2 frames before one frame is dropped.
    EXCESS_TICKS = 50
    #: Take the short path in :meth:`put` for the next in-order packet (tests compare both paths).
    steady_path = True
    _PLAYED_RING = 1024

    def __init__(
        self,
        clock_rate: int = 8000,
        frame_ms: int = 20,
        *,
        min_delay: float = 0.020,
        max_delay: float = 0.200,
        jitter_factor: float = 2.0,
        resync_threshold: float = 1.0,
        conceal_limit: int = 10,
    ) -> None:
        """Buffer for one stream of ``frame_ms`` frames at ``clock_rate`` Hz.

        ``min_delay``/``max_delay`` bound the target delay (seconds),
        ``jitter_factor`` scales the A.8 jitter into extra delay,
        ``resync_threshold`` (seconds) is how far timestamps may disagree with
        both the sequence numbers and the arrival times before the stream is
        treated as restarted, and ``conceal_limit`` is how many frames are
        handed out as ``lost`` when starved before they turn into ``dtx``.
        """
        self.clock_rate = clock_rate
        self.frame_duration = frame_ms / 1000.0
        self.samples_per_frame = clock_rate * frame_ms // 1000
        self.min_frames = max(1, math.ceil(min_delay / self.frame_duration - 1e-9))
        self.max_frames = max(self.min_frames, math.ceil(max_delay / self.frame_duration - 1e-9))
        self.jitter_factor = jitter_factor
        self.resync_threshold = resync_threshold
        self.conceal_limit = conceal_limit
        self._jitter_scale = jitter_factor / self.samples_per_frame
        self._target = self.min_frames

        self.stats: ReceiveStats | None = None
        self.late = 0
        self.lost = 0
        self.duplicates = 0
        self.reordered = 0
        self.dropped = 0
        self.resyncs = 0

        self._slots: dict[int, _Slot] = {}
        self._by_ts: dict[int, int] = {}
        # Ring of recently played extended sequence numbers, to tell duplicates from late packets.
        self._played = [-1] * self._PLAYED_RING
        self._ssrc: int | None = None
        self._old_ssrcs: deque[int] = deque(maxlen=4)
        self._switched_at = 0.0
        # Reference packet (highest extended sequence number seen) for unwrapping.
        self._ref_seq = 0
        self._ref_ext_seq = 0
        self._ref_ts = 0
        self._ref_ext_ts = 0
        self._ref_arrival = 0.0
        self._bad_seq: int | None = None
        # Playout state.
        self._started = False
        self._anchor: _Slot | None = None
        self._anchor_seq = 0
        self._anchor_filler = FrameKind.LOST
        self._next_ts = 0
        self._next_seq = 0
        self._underrun = 0
        self._excess_ticks = 0
        self._newest_ts = 0  # highest extended timestamp held (valid while _slots is not empty)
        self._last_played = -1  # extended sequence number of the last packet played
        self._last_played_ts = -1  # and its extended timestamp

    # -- properties --------------------------------------------------------------------------

    @property
    def target_frames(self) -> int:
        """Target playout depth in frames, adapted from the measured jitter."""
        return self._target

    def _update_target(self, stats: ReceiveStats) -> None:
        # frame + jitter_factor * jitter, in whole frames (jitter is in timestamp units).
        want = math.ceil(1.0 + stats.jitter_float * self._jitter_scale - 1e-9)
        self._target = max(self.min_frames, min(self.max_frames, want))

    @property
    def target_delay(self) -> float:
        """Target playout delay in seconds."""
        return self.target_frames * self.frame_duration

    @property
    def depth(self) -> int:
        """Frames buffered from the playout point to the newest packet (0 when empty)."""
        if not self._slots:
            return 0
        newest = self._newest_ts
        start = self._next_ts if self._anchor is None else self._anchor.ext_ts
        return max(0, (newest - start) // self.samples_per_frame + 1)

    @property
    def buffered(self) -> int:
        """Number of packets held."""
        return len(self._slots)

    # -- input ---------------------------------------------------------------------------------

    def put(self, packet: RtpPacket, now: float) -> None:
        """File one received packet (arrival time ``now``, seconds)."""
        seq = packet.sequence_number
        timestamp = packet.timestamp
        spf = self.samples_per_frame
        if (
            seq == (self._ref_seq + 1) & 0xFFFF
            and (timestamp - self._ref_ts) & 0xFFFFFFFF == spf
            and self.steady_path
            and packet.ssrc == self._ssrc
            and self._started
            and self._anchor is None
            and not packet.marker
        ):
            # The steady state: the next packet of a playing source, one frame later, not
            # starting a talkspurt.  The general path below would accept it with exactly
            # these updates.
            ext_seq = self._ref_ext_seq + 1
            ext_ts = self._ref_ext_ts + spf
            slots = self._slots
            if (
                ext_ts >= self._next_ts
                and ext_seq > self._last_played
                and ext_ts > self._last_played_ts
                and ext_ts not in self._by_ts
                and ext_seq not in slots
            ):
                stats = self.stats
                assert stats is not None
                stats.update_fields(seq, timestamp, len(packet.payload), now)
                self._update_target(stats)
                self._bad_seq = None
                self._ref_seq = seq
                self._ref_ext_seq = ext_seq
                self._ref_ts = timestamp
                self._ref_ext_ts = ext_ts
                self._ref_arrival = now
                if not slots or ext_ts > self._newest_ts:
                    self._newest_ts = ext_ts
                slots[ext_seq] = _Slot(ext_ts, packet, now)
                self._by_ts[ext_ts] = ext_seq
                if (self._newest_ts - self._next_ts) // spf >= self.max_frames:
                    self._trim()
                return
        if self._ssrc is None or packet.ssrc != self._ssrc:
            if packet.ssrc in self._old_ssrcs and now - self._switched_at < self.resync_threshold:
                self.late += 1  # straggler from a source we just switched away from
                return
            self._new_source(packet, now)
            return
        stats = self.stats
        assert stats is not None
        d = ((packet.sequence_number - self._ref_seq + 0x8000) & 0xFFFF) - 0x8000
        if not -MAX_MISORDER <= d <= MAX_DROPOUT:
            # RFC 3550 A.1: a very large jump counts only once a second packet confirms it.
            if packet.sequence_number == self._bad_seq:
                stats.restart_transit()
                stats.update(packet, now)
                self._update_target(stats)
                self._splice(packet, now)
            else:
                stats.update(packet, now)
                self._bad_seq = (packet.sequence_number + 1) & 0xFFFF
                self.dropped += 1
            return
        self._bad_seq = None
        ext_seq = self._ref_ext_seq + d
        dts = ((packet.timestamp - self._ref_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        ext_ts = self._ref_ext_ts + dts
        if (
            abs(dts - d * self.samples_per_frame) > self.resync_threshold * self.clock_rate
            and abs(dts / self.clock_rate - (now - self._ref_arrival)) > self.resync_threshold
        ):
            # The timestamp jumped: it agrees neither with the sequence numbers
            # (continuous audio) nor with the arrival times (DTX).  Keep the cadence.
            if d <= 0:
                self.dropped += 1
                return
            self.resyncs += 1
            stats.restart_transit()
            ext_ts = self._ref_ext_ts + d * self.samples_per_frame
        stats.update(packet, now)
        self._update_target(stats)
        if d > 0:
            self._ref_seq = packet.sequence_number
            self._ref_ext_seq = ext_seq
            self._ref_ts = packet.timestamp
            self._ref_ext_ts = ext_ts
            self._ref_arrival = now
        elif d < 0:
            self.reordered += 1
        self._file(ext_seq, ext_ts, packet, now)

    def _new_source(self, packet: RtpPacket, now: float) -> None:
        self.stats = ReceiveStats(packet.ssrc, self.clock_rate, packet.sequence_number)
        self.stats.update(packet, now)
        self._update_target(self.stats)
        if self._ssrc is None:
            # Extended numbers start one cycle up so that they stay positive under reordering.
            self._ssrc = packet.ssrc
            self._ref_seq = packet.sequence_number
            self._ref_ext_seq = packet.sequence_number + RTP_SEQ_MOD
            self._ref_ts = packet.timestamp
            self._ref_ext_ts = packet.timestamp + (1 << 32)
            self._ref_arrival = now
            self._file(self._ref_ext_seq, self._ref_ext_ts, packet, now)
            return
        self._old_ssrcs.append(self._ssrc)
        self._switched_at = now
        self._ssrc = packet.ssrc
        self._splice(packet, now)

    def _splice(self, packet: RtpPacket, now: float) -> None:
        """Map a restarted stream onto the playout timeline right after the newest packet."""
        self.resyncs += 1
        self._bad_seq = None
        ext_seq = self._ref_ext_seq + 1
        ext_ts = self._ref_ext_ts + self.samples_per_frame
        if self._started and self._anchor is None and ext_ts < self._next_ts:
            ext_ts = self._next_ts
            ext_seq = max(ext_seq, self._next_seq)
        self._ref_seq = packet.sequence_number
        self._ref_ext_seq = ext_seq
        self._ref_ts = packet.timestamp
        self._ref_ext_ts = ext_ts
        self._ref_arrival = now
        self._file(ext_seq, ext_ts, packet, now)

    def _file(self, ext_seq: int, ext_ts: int, packet: RtpPacket, now: float) -> None:
        if ext_seq in self._slots or self._played[ext_seq % self._PLAYED_RING] == ext_seq:
            self.duplicates += 1
            return
        if ext_seq <= self._last_played or ext_ts <= self._last_played_ts:
            self.late += 1  # older than audio already played
            return
        if ext_ts in self._by_ts:
            # Another packet already holds this timestamp (misbehaving sender, or
            # telephone-events mixed into the audio stream): keep the first.
            self.dropped += 1
            return
        slot = _Slot(ext_ts, packet, now)
        if not self._started:
            if self._anchor is None or ext_ts < self._anchor.ext_ts:
                if self._anchor is None:
                    self._anchor = slot
                else:
                    self._anchor = _Slot(ext_ts, packet, self._anchor.arrival)
                self._anchor_seq = ext_seq
        elif self._anchor is None and not self._slots and self._underrun:
            if packet.marker or ext_ts < self._next_ts:
                # Starved and a talkspurt starts (or a packet came too late):
                # re-anchor so that this packet plays target_delay after its arrival.
                self._anchor = slot
                self._anchor_seq = ext_seq
                self._anchor_filler = FrameKind.DTX if packet.marker else FrameKind.LOST
        elif self._anchor is not None and ext_ts < self._anchor.ext_ts:
            self._anchor = _Slot(ext_ts, packet, self._anchor.arrival)
            self._anchor_seq = ext_seq
        if self._anchor is None and ext_ts < self._next_ts:
            self.late += 1
            return
        if not self._slots or ext_ts > self._newest_ts:
            self._newest_ts = ext_ts
        self._slots[ext_seq] = slot
        self._by_ts[ext_ts] = ext_seq
        if (self._newest_ts - self._next_ts) // self.samples_per_frame >= self.max_frames:
            self._trim()

    def _trim(self) -> None:
        """Never hold more than ``max_delay`` of audio: skip a gap or drop the oldest packet."""
        if not self._started or self._anchor is not None:
            return
        spf = self.samples_per_frame
        while self.depth > self.max_frames:
            oldest = min(self._slots)
            newest_ts = self._newest_ts
            first_ts = self._slots[oldest].ext_ts
            if first_ts > self._next_ts:
                self._next_ts = min(first_ts, newest_ts - (self.max_frames - 1) * spf)
            else:
                self._skip_oldest()

    def _skip_oldest(self) -> None:
        oldest = min(self._slots)
        slot = self._slots.pop(oldest)
        del self._by_ts[slot.ext_ts]
        self._mark_played(oldest)
        self.dropped += 1
        self._next_ts = slot.ext_ts + self.samples_per_frame
        self._next_seq = oldest + 1

    def _mark_played(self, ext_seq: int) -> None:
        self._played[ext_seq % self._PLAYED_RING] = ext_seq

    # -- output --------------------------------------------------------------------------------

    def get(self, now: float) -> Frame | None:
        """Return the frame for this tick, or ``None`` before playout has started."""
        anchor = self._anchor
        if anchor is None and not self._started:
            return None
        if anchor is not None:
            if now - anchor.arrival < self.target_delay - 1e-9:
                if not self._started:
                    return None
                self._underrun += 1
                if self._anchor_filler is FrameKind.LOST:
                    self.lost += 1
                return Frame(self._anchor_filler, self._next_ts & 0xFFFFFFFF)
            self._anchor = None
            self._started = True
            self._next_ts = anchor.ext_ts
            self._next_seq = self._anchor_seq
            # Anything older than the anchor can no longer be played.
            for seq in [s for s, slot in self._slots.items() if slot.ext_ts < anchor.ext_ts]:
                del self._by_ts[self._slots.pop(seq).ext_ts]
                self.late += 1
            self._trim()

        spf = self.samples_per_frame
        if self._slots and (self._newest_ts - self._next_ts) // spf > self._target + 1:
            self._excess_ticks += 1
            if self._excess_ticks >= self.EXCESS_TICKS and self._next_ts in self._by_ts:
                self._excess_ticks = 0
                self._skip_oldest()
        else:
            self._excess_ticks = 0

        ts = self._next_ts
        seq = self._by_ts.pop(ts, -1)
        if seq >= 0:
            slot = self._slots.pop(seq)
            self._played[seq % self._PLAYED_RING] = seq
            self._last_played = seq
            self._last_played_ts = ts
            self._next_ts = ts + spf
            self._next_seq = seq + 1
            self._underrun = 0
            p = slot.packet
            return Frame(FrameKind.OK, ts & 0xFFFFFFFF, p.payload, p.payload_type, p.marker)

        self._next_ts = ts + spf
        return self._gap_frame(ts) if self._slots else self._underrun_frame(ts)

    def _gap_frame(self, ts: int) -> Frame:
        """Frame for ``ts`` when later packets are buffered but none for ``ts``."""
        # Missing sequence numbers are losses; timestamps without sequence numbers are DTX.
        self._underrun = 0
        first_seq = min(self._slots)
        first = self._slots[first_seq]
        if first.ext_ts < ts:
            # Only a misbehaving sender gets here: never let a stale packet block playout.
            del self._by_ts[first.ext_ts]
            del self._slots[first_seq]
            self.dropped += 1
            return self._gap_frame(ts) if self._slots else self._underrun_frame(ts)
        if first_seq > self._next_seq:
            self._next_seq += 1
            self.lost += 1
            nxt = self._by_ts.get(ts + self.samples_per_frame)
            return Frame(
                FrameKind.LOST,
                ts & 0xFFFFFFFF,
                next_payload=None if nxt is None else self._slots[nxt].packet.payload,
            )
        return Frame(FrameKind.DTX, ts & 0xFFFFFFFF)

    def _underrun_frame(self, ts: int) -> Frame:
        """Frame for ``ts`` when nothing is buffered: conceal for a while, then report silence."""
        self._underrun += 1
        if self._underrun > self.conceal_limit:
            return Frame(FrameKind.DTX, ts & 0xFFFFFFFF)
        self._next_seq += 1
        self.lost += 1
        return Frame(FrameKind.LOST, ts & 0xFFFFFFFF)
