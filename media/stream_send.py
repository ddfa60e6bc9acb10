"""The send side of an RTP stream: relayed packets, tick frames, RFC 4733 events, the relay gate.

:class:`RtpSending` is mixed into :class:`~trunkline.media.stream.RtpStream`.  A same-codec
bridge relays each packet as it arrives, mapped into this stream's own SSRC, sequence number
and timestamp space by constant offsets (:meth:`RtpSending.relay_into`); frames produced on
the 20 ms tick go out through :meth:`RtpSending.send_audio`; RFC 4733 events queued by
``send_dtmf`` through :meth:`RtpSending.dtmf_tick`.

:class:`RelayGate` is what lets the relay fast path (``RtpStream._relay_fast``) touch a few
cache lines per packet instead of two streams' worth of attributes: while a bridge is in its
steady state (same source, nobody else reading or writing the legs' audio) the receiving
stream holds a gate with everything the path needs.  Anything that changes that state calls
:meth:`RtpSending.media_changed`, which closes the gates of both legs; the next packet takes
the general path and opens a new gate if the steady state holds again.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trunkline.media.receive_stats import ReceiveStats
from trunkline.media.rtp import RtpPacket
from trunkline.media.telephone_event import DtmfSender

if TYPE_CHECKING:
    from trunkline.media.engine import MediaEngine
    from trunkline.media.player import Player
    from trunkline.media.poller import SendTarget
    from trunkline.media.ports import PortPair
    from trunkline.media.stream import RtpStream, StreamStats

__all__ = ["HEADER", "RelayGate", "RtpSending"]

#: The 12-octet RTP header without CSRCs (RFC 3550 section 5.1).
HEADER = struct.Struct("!BBHII")
_AFTER_FIRST = struct.Struct("!BHII")


@dataclass(slots=True, eq=False)
class RelayGate:
    """The steady state of one relayed direction, held by the receiving leg.

    While the gate is open the engine's poller gives :meth:`on_datagram` the receiving leg's
    datagrams.  A packet takes the fast path when its payload type, SSRC, source address
    and (for codecs whose packet time shows in the size) payload size are the ones below;
    the rest describes where and how it goes out: the peer's socket, remote, payload type,
    SSRC and the sequence/timestamp offsets into the peer's space.  Any other datagram goes
    to the leg's ``general`` handler.
    """

    leg: RtpStream  # the receiving leg, whose gate this is
    buffer: bytearray
    view: memoryview
    general: Callable[[int, int, tuple[str, int], float], None]
    #: The poller's ``queue_send`` when it sends a batch at a time (io_uring), else None.
    queue_send: Callable[[SendTarget, int, int, Any], bool] | None
    payload_type: int
    ssrc: int
    source: tuple[str, int]
    frame_bytes: int  # 0: any size
    stats: ReceiveStats
    in_counters: StreamStats
    peer: RtpStream
    out_sock: socket.socket
    out_remote: tuple[str, int]
    out_target: SendTarget
    out_payload_type: int
    out_ssrc: int
    seq_offset: int
    ts_offset: int
    ts_step: int
    out_counters: StreamStats

    def on_datagram(self, offset: int, n: int, addr: tuple[str, int], now: float) -> None:
        """Relay the datagram at ``buffer[offset:offset + n]``, its header rewritten in place, or hand it on.

        The packet qualifies when it has a plain RFC 3550 header (V=2, no padding,
        extension or CSRC: first octet 0x80) and the gate's payload type, SSRC, source
        and size.  Its header gets the peer's payload type, SSRC and the sequence number
        and timestamp mapped by the gate's offsets (as :meth:`RtpSending.relay_into`
        does), and the buffer goes out as it is: no packet object, no copy; queued for the
        poller's batch send where there is one.  This runs for every packet of every relayed
        call, so it reads this small object rather than the two streams' attributes.
        """
        buf = self.buffer
        second, seq, ts, ssrc = _AFTER_FIRST.unpack_from(buf, offset + 1)
        if (
            buf[offset] != 0x80
            or n <= 12
            or (second & 0x7F) != self.payload_type
            or ssrc != self.ssrc
            or addr != self.source
            or (self.frame_bytes and n - 12 != self.frame_bytes)
        ):
            self.general(offset, n, addr, now)
            return
        self.in_counters.packets_received += 1
        self.stats.update_fields(seq, ts, n - 12, now)
        peer = self.peer
        out_seq = (seq + self.seq_offset) & 0xFFFF
        out_ts = (ts + self.ts_offset) & 0xFFFFFFFF
        if 0 < (seq - peer._fwd_max_seq) & 0xFFFF < 0x8000:
            peer._fwd_max_seq = seq
            peer.seq = (out_seq + 1) & 0xFFFF
            peer.ts = (out_ts + self.ts_step) & 0xFFFFFFFF
        HEADER.pack_into(
            buf, offset, 0x80, (second & 0x80) | self.out_payload_type, out_seq, out_ts, self.out_ssrc
        )
        counters = self.out_counters
        queue = self.queue_send
        if queue is not None:
            queue(self.out_target, offset, n, self)  # counted as sent; send_failed() corrects that
        else:
            try:
                self.out_sock.sendto(self.view[offset : offset + n], self.out_remote)
            except OSError:  # BlockingIOError included: a full socket buffer drops the packet
                counters.send_drops += 1
                return
        counters.packets_sent += 1
        counters.octets_sent += n - 12
        counters.packets_relayed += 1
        peer._sent_since_report = True

    def send_failed(self, n: int) -> None:
        """A packet queued by :meth:`on_datagram` was dropped (full socket buffer): undo its count."""
        counters = self.out_counters
        counters.send_drops += 1
        counters.packets_sent -= 1
        counters.octets_sent -= n - 12
        counters.packets_relayed -= 1


class RtpSending:
    """The send side of a stream (mixin: the attributes below belong to ``RtpStream``)."""

    if not TYPE_CHECKING:  # the slots are RtpStream's; mypy checks the mixin's own assignments
        __slots__ = ()

    ports: PortPair
    sock: socket.socket
    ssrc: int
    seq: int
    ts: int
    ts_step: int
    payload_type: int
    te_payload_type: int
    te_clock_rate: int
    sending: bool
    remote: tuple[str, int] | None
    marker_next: bool
    stats: StreamStats
    peer: RtpStream | None
    player: Player
    dtmf_tx: deque[RtpPacket | tuple[str, int, asyncio.Future[None] | None] | None]
    relay_gate: RelayGate | None
    engine: MediaEngine
    _rtp_fd: int
    on_datagram: Callable[[int, int, tuple[str, int], float], None]
    _fwd_src: int | None
    _fwd_seq_off: int
    _fwd_ts_off: int
    _fwd_max_seq: int
    _sent_since_report: bool

    def media_changed(self) -> None:
        """Something the relay fast path relies on changed on this leg: close both legs' gates.

        Called for new consumers (recording, in-band DTMF, VAD), output of this leg's own
        (prompt, RFC 4733 digits), renegotiation, re-latching, bridging and unbridging.
        """
        self.close_relay_gate()
        peer = self.peer
        if peer is not None:
            peer.close_relay_gate()

    def close_relay_gate(self) -> None:
        """Send this leg's packets down the general path again (until a gate reopens)."""
        if self.relay_gate is not None:
            self.relay_gate = None
            self.engine.poller.close_gate(self.sock, self.on_datagram)

    def sync_relay(self) -> None:
        """Bring this leg's statistics up to date with the relay gates of both directions.

        While gates are open in a batched poller's relay table the counters live there;
        this writes them back (RTCP reports call it; closing a gate does it too).
        """
        poller = self.engine.poller
        poller.sync_gate(self.sock)
        peer = self.peer
        if peer is not None:
            poller.sync_gate(peer.sock)

    def output_busy(self) -> bool:
        """Whether the tick path owns the output (prompt playing, DTMF being sent)."""
        return bool(self.dtmf_tx) or self.player.playing

    def forward(self, packet: RtpPacket, payload_type: int) -> None:
        """Relay ``packet`` from the bridged peer out of this stream (same codec, no transcoding).

        The peer's SSRC, sequence numbers and timestamps are mapped by constant
        offsets into this stream's own space, so gaps and reordering pass through
        unchanged while the far end sees one consistent source.  The offsets are
        recomputed when the source changes or when this stream sent audio of its own.
        """
        buf = bytearray(12 + len(packet.payload))
        buf[12:] = packet.payload
        self.relay_into(
            buf,
            len(buf),
            packet.sequence_number,
            packet.timestamp,
            packet.ssrc,
            0x80 if packet.marker else 0,
            payload_type,
        )

    def relay_into(
        self, buf: bytearray, n: int, seq: int, ts: int, ssrc: int, marker: int, payload_type: int
    ) -> None:
        """:meth:`forward` on a raw packet: ``buf[:n]`` is sent with its 12-octet header rewritten in place.

        ``marker`` is the M bit (0 or 0x80); the first header octet is set to 0x80 and the
        rest of the header (M/PT, sequence number, timestamp, SSRC) packed with
        ``pack_into``, so the payload is never copied.
        """
        remote = self.remote
        if not self.sending or remote is None or self.output_busy():
            return
        if ssrc != self._fwd_src:
            self._fwd_src = ssrc
            self._fwd_seq_off = (self.seq - seq) & 0xFFFF
            self._fwd_ts_off = (self.ts - ts) & 0xFFFFFFFF
            self._fwd_max_seq = (seq - 1) & 0xFFFF
            marker = 0x80  # a new source or the end of our own audio: a new talkspurt
        out_seq = (seq + self._fwd_seq_off) & 0xFFFF
        out_ts = (ts + self._fwd_ts_off) & 0xFFFFFFFF
        if 0 < (seq - self._fwd_max_seq) & 0xFFFF < 0x8000:
            self._fwd_max_seq = seq
            self.seq = (out_seq + 1) & 0xFFFF
            if payload_type == self.payload_type:
                self.ts = (out_ts + self.ts_step) & 0xFFFFFFFF
        self.marker_next = False
        HEADER.pack_into(buf, 0, 0x80, marker | payload_type, out_seq, out_ts, self.ssrc)
        stats = self.stats
        try:
            self.sock.sendto(memoryview(buf)[:n] if n != len(buf) else buf, remote)
        except OSError:  # BlockingIOError included: a full socket buffer drops the packet
            stats.send_drops += 1
            return
        stats.packets_sent += 1
        stats.octets_sent += n - 12
        stats.packets_relayed += 1
        self._sent_since_report = True

    def send_audio(self, payload: bytes) -> None:
        """Send one 20 ms frame produced on the tick (advances our sequence number).

        One ``pack`` of the header, one concatenation and one ``sendto``: the payload may be
        the one ``bytes`` object a conference room shares between all its listeners.  (Packing
        into a per-stream ``bytearray`` and copying the payload behind it measured slower:
        0.40 against 0.20 us.)
        """
        marker = self.marker_next
        self.marker_next = False
        if self._fwd_src is not None:
            self._fwd_src = None  # a relay resuming later must re-anchor its offsets
            self.media_changed()
        seq = self.seq
        self.seq = (seq + 1) & 0xFFFF
        remote = self.remote
        if remote is None:
            return
        header = HEADER.pack(0x80, (0x80 if marker else 0) | self.payload_type, seq, self.ts, self.ssrc)
        stats = self.stats
        try:
            self.sock.sendto(header + payload, remote)
        except OSError:  # BlockingIOError included: a full socket buffer drops the packet
            stats.send_drops += 1
            return
        stats.packets_sent += 1
        stats.octets_sent += len(payload)
        self._sent_since_report = True

    def send_packet(self, packet: RtpPacket) -> None:
        """Send a prepared packet (RFC 4733 events) in our sequence space."""
        packet.sequence_number = self.seq
        packet.ssrc = self.ssrc
        self.seq = (self.seq + 1) & 0xFFFF
        self._fwd_src = None
        self.media_changed()
        self._send(packet.serialize())

    def _send(self, data: bytes) -> bool:
        remote = self.remote
        if remote is None:
            return False
        try:
            self.ports.rtp_sock.sendto(data, remote)
        except OSError:  # BlockingIOError included: a full socket buffer drops the packet
            self.stats.send_drops += 1
            return False
        self.stats.packets_sent += 1
        self.stats.octets_sent += len(data) - 12
        self._sent_since_report = True
        return True

    def advance_clock(self) -> None:
        """One tick passed: the RTP timestamp advances by one frame whether or not we sent."""
        self.ts = (self.ts + self.ts_step) & 0xFFFFFFFF

    def cancel_dtmf(self) -> None:
        """Drop digits queued for sending (hold, close); their ``send_dtmf`` calls return."""
        for item in self.dtmf_tx:
            if isinstance(item, tuple) and item[2] is not None and not item[2].done():
                item[2].set_result(None)
        self.dtmf_tx.clear()

    def dtmf_tick(self) -> bool:
        """Send this tick's RFC 4733 packet if a digit is being sent; True if the tick is taken."""
        queue = self.dtmf_tx
        while queue:
            item = queue[0]
            if isinstance(item, tuple):
                digit, ticks, fut = item
                queue.popleft()
                if digit == "done":
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                    continue
                if digit in "wW":
                    queue.extendleft([None] * ticks)
                    continue
                sender = DtmfSender(
                    self.ssrc,
                    payload_type=self.te_payload_type,
                    clock_rate=self.te_clock_rate,
                    interval_ms=20,
                    sequence_number=self.seq,
                )
                packets = [p for _, p in sender.packets(digit, start_timestamp=self.ts, duration_ms=ticks)]
                queue.extendleft(reversed(packets))
                continue
            queue.popleft()
            if item is None:
                return False  # a pause: normal audio this tick
            self.send_packet(item)
            self.marker_next = True  # audio after an event starts a new talkspurt
            return True
        return False
