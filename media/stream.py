"""One RTP stream per call leg: sockets, symmetric RTP, jitter buffer, RFC 4733, RTCP.

An :class:`RtpStream` is the thin asyncio layer around the sans-I/O media cores for
one leg.  Its UDP sockets are polled by the engine's
:class:`~trunkline.media.poller.DatagramPoller` (one epoll set for every stream, one
datagram read per ready socket and round); each datagram is parsed
(:class:`~trunkline.media.rtp.RtpPacket`), checked and then

* RTP audio goes to :class:`~trunkline.media.jitter.ReceiveStats` and the
  :class:`~trunkline.media.jitter.JitterBuffer`, from which the
  :class:`~trunkline.media.engine.MediaEngine` pulls one frame per 20 ms tick, or,
  on a same-codec bridge, is relayed to the peer leg at once
  (:meth:`RtpStream.forward`), rewritten into the peer's own SSRC and
  sequence/timestamp space;
* RFC 4733 telephone-events go to a :class:`~trunkline.media.telephone_event.DtmfReceiver`;
* RTCP goes to the report handling of :mod:`trunkline.media.stream_rtcp` (SR/RR, RTT, BYE).

The per-call API (playback, digits, recording, speech events) lives in
:class:`~trunkline.media.session.CallMedia`, which :class:`RtpStream` inherits;
everything that happens on the 20 ms clock lives in the engine.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from trunkline.codecs.base import CodecError, CodecInfo, Decoder, Encoder, PcmArray
from trunkline.codecs.opus import OPUS_RATES
from trunkline.codecs.registry import create_decoder, create_encoder, get_codec
from trunkline.codecs.resample import Resampler
from trunkline.gateway.sip.sdp import NegotiatedMedia
from trunkline.media.jitter import FrameKind, JitterBuffer
from trunkline.media.poller import SendTarget
from trunkline.media.ports import PortPair
from trunkline.media.receive_stats import ReceiveStats
from trunkline.media.rtp import RtpPacket, is_rtcp
from trunkline.media.session import CallMedia
from trunkline.media.stream_rtcp import RTCP_INTERVAL, RtcpReporting
from trunkline.media.stream_send import RelayGate, RtpSending
from trunkline.media.telephone_event import DtmfReceiver

if TYPE_CHECKING:
    from trunkline.media.engine import MediaEngine

__all__ = ["RTCP_INTERVAL", "RtpStream", "StreamError", "StreamStats"]

_AFTER_FIRST = struct.Struct("!BHII")

_MAX_DATAGRAM = 2048
#: Shared generator for SSRCs, sequence numbers and timestamps (seeding one per stream costs ~30 us).
_RNG = random.Random()
G711_LAWS = {"PCMU": "ulaw", "PCMA": "alaw"}
_PTIME_SAMPLES = frozenset((80, 160, 240, 320, 480))  # 10-60 ms at an 8 kHz RTP clock


class StreamError(RuntimeError):
    """The stream cannot do what was asked (closed, not configured, unknown codec)."""


class StreamStats:
    """Counters of one stream, for RTCP, status callbacks and the benchmarks."""

    __slots__ = (
        "foreign",
        "malformed",
        "octets_sent",
        "packets_received",
        "packets_relayed",
        "packets_sent",
        "rtcp_received",
        "rtcp_sent",
        "send_drops",
        "unknown_payload",
    )

    def __init__(self) -> None:
        self.packets_received = 0
        self.packets_sent = 0
        self.octets_sent = 0
        self.packets_relayed = 0
        self.send_drops = 0
        self.malformed = 0
        self.unknown_payload = 0
        self.foreign = 0
        self.rtcp_sent = 0
        self.rtcp_received = 0


class RtpStream(RtpSending, CallMedia, RtcpReporting):
    """One call leg's RTP/RTCP session, created by :meth:`MediaEngine.open_stream`.

    Put :attr:`local_address` / :attr:`local_port` in the SDP, then call
    :meth:`configure` with the negotiation result (again on every re-INVITE).
    """

    # Every attribute of the stream and its mixins (CallMedia, RtcpReporting, RtpSending declare
    # empty slots): fixed offsets instead of a per-instance dict, fewer cache lines per packet.
    # fmt: off
    __slots__ = (
        "__weakref__", "_digits", "_dtmf_timer", "_fwd_max_seq", "_fwd_seq_off", "_fwd_src", "_fwd_ts_off",
        "_last_inband", "_latched_ssrc", "_resamplers", "_rng", "_rtcp_latched", "_rtcp_timer", "_rtp_fd",
        "_rx_buf", "_rx_view", "_sent_since_report", "_silence", "_speech_events", "_speech_started",
        "after_loss", "capture", "closed", "cname", "codec", "decoder", "digit_callbacks", "dtmf_rx",
        "dtmf_slot", "dtmf_tx", "encoder", "endpointer", "engine", "frame_samples", "inband_dtmf_setting",
        "jitter", "last_payload", "latched", "law", "loop", "marker_next", "negotiated", "payload_type",
        "peer", "playbacks", "player", "ports", "receiving", "relay", "relay_gate", "remote", "remote_bye",
        "remote_rtcp", "rfc4733_seen", "room", "room_out", "rtt", "rx_fifo", "rx_frame_samples", "rx_stats",
        "sample_rate", "sending", "seq", "sized_ptime", "sock", "speech_callbacks",
        "ssrc", "stats", "taps", "te_clock_rate", "te_payload_type", "tick_in",
        "tick_in8k", "ts", "ts_step",
    )
    # fmt: on

    def __init__(
        self,
        engine: MediaEngine,
        ports: PortPair,
        *,
        rng: random.Random | None = None,
        cname: str | None = None,
    ) -> None:
        rng = rng if rng is not None else _RNG
        self.engine = engine
        self.loop = engine.loop
        self.ports = ports
        self.sock = ports.rtp_sock
        self.ssrc = rng.getrandbits(32)
        # RFC 3550 section 5.1: initial sequence number and timestamp SHOULD be random.
        self.seq = rng.getrandbits(16)
        self.ts = rng.getrandbits(32)
        self.cname = cname if cname is not None else f"trunkline-{self.ssrc:08x}@{ports.address}"
        self.closed = False
        self.stats = StreamStats()
        self.rtt: float | None = None
        self.remote_bye = False
        self._rng = rng

        # Negotiated media (configure()).
        self.negotiated: NegotiatedMedia | None = None
        self.codec: CodecInfo | None = None
        self.payload_type = -1
        self.te_payload_type = -1
        self.te_clock_rate = 8000
        self.sample_rate = 8000
        self.frame_samples = 160
        self.ts_step = 160
        self.law: str | None = None
        self.sized_ptime = False
        self.decoder: Decoder | None = None
        self.encoder: Encoder | None = None
        self.jitter = JitterBuffer(8000, 20)
        self.rx_stats: ReceiveStats | None = None
        self.sending = False
        self.receiving = False
        self.marker_next = True

        # Symmetric RTP: where we send, and whether that was learnt from received packets.
        self.remote: tuple[str, int] | None = None
        self.remote_rtcp: tuple[str, int] | None = None
        self.latched = False
        self._latched_ssrc: int | None = None
        self._rtcp_latched = False

        # Relay (same-codec bridge): offsets into our own sequence/timestamp space.
        self.peer: RtpStream | None = None
        self.relay = False
        self._fwd_src: int | None = None
        self._fwd_seq_off = 0
        self._fwd_ts_off = 0
        self._fwd_max_seq = 0
        # The engine's receive buffer, shared by every stream (a datagram is handled before the
        # next is read; the relay fast path rewrites it in place): one hot buffer, not one each.
        self._rx_buf = engine.poller.buffer
        self._rx_view = engine.poller.view
        #: The relay fast path's view of this leg's bridge; None while packets take the general path.
        self.relay_gate: RelayGate | None = None

        # Engine-side per-tick state.
        self.tick_in: PcmArray | None = None  # this tick's decoded input at sample_rate
        self.tick_in8k: PcmArray | None = None
        self.room_out: PcmArray | bytes | None = None
        self.rx_frame_samples = 160  # PCM samples per received packet (ptime)
        self.rx_fifo = np.zeros(0, dtype=np.int16)
        self.dtmf_slot: int | None = None
        self.after_loss = False
        self.last_payload = b""
        self.taps = 0  # recordings/captures reading this stream's input
        self._resamplers: dict[tuple[str, int, int], Resampler] = {}
        self._silence = np.zeros(160, dtype=np.int16)

        # RFC 4733.
        self.dtmf_rx: DtmfReceiver | None = None
        self._dtmf_timer: asyncio.TimerHandle | None = None
        self.dtmf_tx: deque[RtpPacket | tuple[str, int, asyncio.Future[None] | None] | None] = deque()
        self.rfc4733_seen = False
        self.inband_dtmf_setting: bool | None = None  # None: automatic

        self._rtcp_timer: asyncio.TimerHandle | None = None
        self._sent_since_report = False
        CallMedia.__init__(self)

        self._rtp_fd = ports.rtp_sock.fileno()
        poller = engine.poller
        poller.add_receiver(ports.rtp_sock, self.on_datagram)
        if ports.rtcp_sock is not None:
            poller.add(ports.rtcp_sock.fileno(), self._on_rtcp_readable)

    # -- addresses -------------------------------------------------------------------------------

    @property
    def local_address(self) -> str:
        """Address to put in the SDP ``c=`` line."""
        return self.ports.address

    @property
    def local_port(self) -> int:
        """RTP port for the SDP ``m=`` line."""
        return self.ports.rtp_port

    @property
    def local_rtcp_port(self) -> int:
        """RTCP port (RTP + 1, or the RTP port itself with rtcp-mux)."""
        return self.ports.rtp_port if self.ports.rtcp_mux else self.ports.rtcp_port

    @property
    def configured(self) -> bool:
        """Whether :meth:`configure` has been called."""
        return self.negotiated is not None

    @property
    def on_hold(self) -> bool:
        """Whether the last negotiation put this leg on hold (or made it inactive)."""
        return self.negotiated is not None and (self.negotiated.on_hold or not self.sending)

    # -- configuration ---------------------------------------------------------------------------

    def configure(self, negotiated: NegotiatedMedia, *, inband_dtmf: bool | None = None) -> None:
        """Apply an offer/answer result; call again after every re-INVITE.

        A new remote address resets latching; a different codec swaps decoder and
        encoder (and the relay/transcode decision of a bridge); a hold or
        ``inactive``/``recvonly`` direction stops sending and a ``sendonly``/``inactive``
        one stops receiving, so silence from a held phone does not count as loss.
        ``inband_dtmf`` forces the in-band detector on or off; ``None`` keeps the
        previous choice (initially: on exactly when no telephone-event was negotiated).
        """
        if self.closed:
            raise StreamError("stream is closed")
        try:
            info = get_codec(negotiated.codec.rtpmap)
        except CodecError as exc:
            raise StreamError(f"cannot handle codec {negotiated.codec.rtpmap}: {exc}") from exc
        old = self.negotiated
        codec_changed = old is None or old.codec.rtpmap.lower() != negotiated.codec.rtpmap.lower()
        self.negotiated = negotiated
        self.media_changed()
        if codec_changed:
            # Mono PCM throughout: a mono libopus decoder downmixes a stereo sender.
            self.codec = info
            self.law = G711_LAWS.get(info.encoding.upper())
            self.sized_ptime = self.law is not None or info.encoding.upper() == "G722"
            self.decoder = create_decoder(info.sdp_name)
            self.encoder = None if self.law is not None else create_encoder(info.sdp_name)
            self.sample_rate = self.decoder.sample_rate
            self.frame_samples = self.decoder.frame_samples
            self.ts_step = info.timestamp_step
            self.rx_stats = None
            self._resamplers.clear()
            self._silence = np.zeros(self.frame_samples, dtype=np.int16)
            self.after_loss = False
            self.reset_player(self.sample_rate)
        if codec_changed or (old is not None and old.ptime != negotiated.ptime):
            self._set_rx_ptime(negotiated.ptime if negotiated.ptime in (10, 20, 30, 40, 60) else 20)
        self.payload_type = negotiated.payload_type
        te = negotiated.telephone_event
        if te is not None:
            self.te_payload_type = te.payload_type
            self.te_clock_rate = te.clock_rate
            if self.dtmf_rx is None or self.dtmf_rx.payload_type != te.payload_type:
                self.dtmf_rx = DtmfReceiver(te.payload_type, te.clock_rate)
        else:
            self.te_payload_type = -1
            self.dtmf_rx = None
        remote = (negotiated.remote_address, negotiated.remote_port)
        rtcp = (negotiated.remote_rtcp_address, negotiated.remote_rtcp_port)
        if old is None or (old.remote_address, old.remote_port) != remote:
            self.remote = remote if negotiated.remote_port else None
            self.latched = False
            self._latched_ssrc = None
        if old is None or (old.remote_rtcp_address, old.remote_rtcp_port) != rtcp:
            self.remote_rtcp = rtcp if negotiated.remote_rtcp_port else None
            self._rtcp_latched = False
        was_sending = self.sending
        self.sending = negotiated.sends and not negotiated.on_hold and negotiated.remote_port != 0
        self.receiving = negotiated.receives
        if self.sending and not was_sending:
            self.marker_next = True
        if not self.sending:
            self.cancel_dtmf()
        self.set_inband_dtmf(inband_dtmf if inband_dtmf is not None else self.inband_dtmf_setting)
        self.engine.stream_configured(self)
        if self._rtcp_timer is None:
            self._schedule_rtcp(initial=True)

    def set_pcm_rate(self, rate: int) -> None:
        """Run this leg's codec at ``rate`` where it can do so natively (Opus: 8, 16 or 48 kHz).

        RFC 7587 section 4.1: the RTP clock of Opus stays 48000 whatever the audio
        bandwidth, so a leg bridged to G.711 (or G.722) encodes and decodes at its peer's
        rate and the bridge needs no resampling.  Other codecs ignore the call.  Prompts in
        progress are cut when the rate changes (as on a codec change).
        """
        codec = self.codec
        if codec is None or codec.encoding.lower() != "opus":
            return
        if rate not in OPUS_RATES:
            rate = codec.sample_rate
        if rate == self.sample_rate:
            return
        self.decoder = create_decoder(codec.sdp_name, sample_rate=rate)
        self.encoder = create_encoder(codec.sdp_name, sample_rate=rate)
        self.sample_rate = rate
        self.frame_samples = self.decoder.frame_samples
        self._resamplers.clear()
        self._silence = np.zeros(self.frame_samples, dtype=np.int16)
        self.after_loss = False
        self.rx_frame_samples = round(rate * self.jitter.frame_duration)
        self.rx_fifo = np.zeros(0, dtype=np.int16)
        self.reset_player(rate)

    def _set_rx_ptime(self, ptime_ms: int) -> None:
        assert self.codec is not None
        self.media_changed()
        self.jitter = JitterBuffer(self.codec.clock_rate, ptime_ms)
        self.rx_frame_samples = self.sample_rate * ptime_ms // 1000
        self.rx_fifo = np.zeros(0, dtype=np.int16)

    def set_inband_dtmf(self, enabled: bool | None) -> None:
        """Force in-band DTMF detection on/off; ``None``: on when no telephone-event was negotiated."""
        self.inband_dtmf_setting = enabled
        want = (self.te_payload_type < 0) if enabled is None else enabled
        self.engine.set_inband_detection(self, want and self.configured and not self.closed)

    # -- receive path ----------------------------------------------------------------------------

    def on_datagram(self, offset: int, n: int, addr: tuple[str, int], now: float) -> None:
        """Handle the datagram of ``n`` octets from ``addr`` at ``offset`` in the poller's buffer.

        The engine's poller reads this stream's RTP socket and calls this for each datagram
        (or the relay gate's :meth:`RelayGate.on_datagram` while one is open).  Only packets
        that cannot take the fast path (:meth:`_audio_fast`) are copied out as ``bytes`` for
        :meth:`handle_rtp`.
        """
        fast = n > 12 and self._rx_buf[offset] == 0x80 and not self.relay
        if fast and self._audio_fast(offset, n, addr, now):
            return
        data = bytes(self._rx_view[offset : offset + n])
        if self.ports.rtcp_mux and is_rtcp(data):
            self._handle_rtcp(data, addr)
        else:
            self.handle_rtp(data, addr, now)

    def _open_relay_gate(self, stats: ReceiveStats) -> None:
        """After a packet was relayed by the general path: let the next ones take the fast path
        if the bridge is in its steady state (nobody else reads this leg's audio or writes the
        peer's, the peer forwards this very source)."""
        peer = self.peer
        remote = self.remote
        out_remote = peer.remote if peer is not None else None
        if (
            peer is None
            or remote is None
            or out_remote is None
            or not self.relay
            or not self.latched
            or not self.receiving
            or self._latched_ssrc != stats.ssrc
            or self.has_consumers()
            or not peer.sending
            or peer.output_busy()
            or peer._fwd_src != stats.ssrc
        ):
            self.relay_gate = None
            return
        poller = self.engine.poller
        gate = self.relay_gate = RelayGate(
            leg=self,
            buffer=self._rx_buf,
            view=self._rx_view,
            general=self.on_datagram,
            queue_send=poller.queue_send if poller.ring else None,
            payload_type=self.payload_type,
            ssrc=stats.ssrc,
            source=remote,
            frame_bytes=self.jitter.samples_per_frame if self.sized_ptime else 0,
            stats=stats,
            in_counters=self.stats,
            peer=peer,
            out_sock=peer.sock,
            out_remote=out_remote,
            out_target=SendTarget(peer.sock, out_remote),
            out_payload_type=peer.payload_type,
            out_ssrc=peer.ssrc,
            seq_offset=peer._fwd_seq_off,
            ts_offset=peer._fwd_ts_off,
            ts_step=peer.ts_step,
            out_counters=peer.stats,
        )
        poller.open_gate(self.sock, gate)

    def _audio_fast(self, offset: int, n: int, addr: tuple[str, int], now: float) -> bool:
        """File the audio packet in ``_rx_buf`` into the jitter buffer; False: take :meth:`handle_rtp`.

        The common case of a leg that is not relayed (conference member, transcoded bridge,
        prompt): a plain RFC 3550 header (first octet 0x80) with the negotiated payload type
        from the latched source and SSRC, at a packet time the jitter buffer already knows.
        It does what :meth:`handle_rtp` does for such a packet without copying the datagram
        twice or parsing the header again.
        """
        buf = self._rx_buf
        second, seq, ts, ssrc = _AFTER_FIRST.unpack_from(buf, offset + 1)
        pt = second & 0x7F
        if (
            pt != self.payload_type
            or ssrc != self._latched_ssrc
            or not self.latched
            or addr != self.remote
            or not self.receiving
        ):
            return False
        jitter = self.jitter
        stats = self.rx_stats
        size = n - 12
        if (
            stats is None
            or stats.ssrc != ssrc
            or (self.sized_ptime and size != jitter.samples_per_frame and size in _PTIME_SAMPLES)
        ):
            return False
        self.stats.packets_received += 1
        packet = RtpPacket(pt, seq, ts, ssrc, bytes(self._rx_view[offset + 12 : offset + n]), second > 0x7F)
        if stats is not jitter.stats:
            stats.update(packet, now)
        jitter.put(packet, now)
        self.rx_stats = jitter.stats  # RFC 3550 A.1/A.8 kept once, by the jitter buffer
        return True

    def handle_rtp(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """Process one received RTP datagram (public for tests and the benchmarks)."""
        if self.relay_gate is not None:
            self.close_relay_gate()  # the general path owns the state from here (it may reopen)
        counters = self.stats
        counters.packets_received += 1
        if self.negotiated is None:
            return
        if len(data) > 12 and data[0] == 0x80:
            # Fast path (RFC 3550 section 5.1: V=2, no padding, extension or CSRC).
            second, seq, ts, ssrc = _AFTER_FIRST.unpack_from(data, 1)
            packet = RtpPacket(second & 0x7F, seq, ts, ssrc, data[12:], second > 0x7F)
        else:
            try:
                packet = RtpPacket.parse(data)
            except ValueError:
                counters.malformed += 1
                return
        pt = packet.payload_type
        if pt != self.payload_type and pt != self.te_payload_type:
            counters.unknown_payload += 1
            return
        if not self.latched or addr != self.remote:
            # Symmetric RTP (RFC 4961) with latching: answer where packets really come
            # from (NAT), but only follow a source that keeps the latched SSRC.
            if self.latched and packet.ssrc != self._latched_ssrc:
                counters.foreign += 1
                return
            self.remote = addr
            self.latched = True
            self._latched_ssrc = packet.ssrc
            self.media_changed()
        elif packet.ssrc != self._latched_ssrc:
            self._latched_ssrc = packet.ssrc  # the same peer restarted its stream
            self.media_changed()
        if not self.receiving:
            return
        peer = self.peer
        if pt == self.te_payload_type:
            self.rfc4733_seen = True
            if self.relay and peer is not None and peer.te_payload_type >= 0:
                peer.forward(packet, peer.te_payload_type)
            rx = self.dtmf_rx
            if rx is not None:
                for event in rx.feed(packet, now):
                    self.digit_received(event.digit, "rfc4733", event.duration_ms, now)
                self._arm_dtmf_timer()
            return
        payload_len = len(packet.payload)
        jitter = self.jitter
        if self.sized_ptime and payload_len != jitter.samples_per_frame and payload_len in _PTIME_SAMPLES:
            # One payload byte per clock tick: the packet time is visible in the size.
            self._set_rx_ptime(payload_len // 8)
            jitter = self.jitter
        stats = self.rx_stats
        if stats is None or stats.ssrc != packet.ssrc:
            stats = self.rx_stats = ReceiveStats(packet.ssrc, jitter.clock_rate, packet.sequence_number)
        if peer is not None and self.relay:
            peer.forward(packet, peer.payload_type)
            # Decode a relayed leg only for its consumers (the bridge itself needs no PCM).
            if not self.has_consumers():
                stats.update(packet, now)
                if self.relay_gate is None:
                    self._open_relay_gate(stats)
                return
        if stats is not jitter.stats:
            stats.update(packet, now)
        jitter.put(packet, now)
        self.rx_stats = jitter.stats  # RFC 3550 A.1/A.8 kept once, by the jitter buffer

    def _arm_dtmf_timer(self) -> None:
        rx = self.dtmf_rx
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
            self._dtmf_timer = None
        deadline = rx.next_deadline() if rx is not None else None
        if deadline is not None:
            self._dtmf_timer = self.loop.call_at(deadline + 0.001, self._on_dtmf_timer)

    def _on_dtmf_timer(self) -> None:
        self._dtmf_timer = None
        if self.dtmf_rx is None:
            return
        now = self.loop.time()
        for event in self.dtmf_rx.handle_timer(now):
            self.digit_received(event.digit, "rfc4733", event.duration_ms, now)
        self._arm_dtmf_timer()

    def has_consumers(self) -> bool:
        """Whether something reads this leg's decoded input (recording or capture, in-band DTMF, VAD)."""
        return bool(self.taps) or self.dtmf_slot is not None or self.endpointer is not None

    def wants_input(self) -> bool:
        """Whether this tick's input must be decoded (consumers or a transcoding feeder)."""
        return self.has_consumers() or self.room is not None or (self.peer is not None and not self.relay)

    # -- per-tick helpers used by the engine -----------------------------------------------------

    def resampler(self, purpose: str, in_rate: int, out_rate: int) -> Resampler:
        """A cached per-direction resampler (continuity across frames needs one per flow)."""
        key = (purpose, in_rate, out_rate)
        rs = self._resamplers.get(key)
        if rs is None:
            rs = self._resamplers[key] = Resampler(in_rate, out_rate)
        return rs

    def conceal(self) -> PcmArray:
        """Codec PLC for a lost frame (G.711 Appendix I style, Opus/G.722 through the decoder)."""
        decoder = self.decoder
        assert decoder is not None
        if self.law is not None and not self.after_loss and self.last_payload:
            # The batch path bypasses the decoder's history: replay the last good frame.
            decoder.decode(self.last_payload)
        self.after_loss = True
        return decoder.conceal(self.frame_samples)

    def decode_one(self, payload: bytes) -> PcmArray:
        """Decode one payload through the stream's own decoder, fixed to one frame."""
        decoder = self.decoder
        assert decoder is not None
        try:
            pcm = decoder.decode(payload)
        except CodecError:
            return self.conceal()
        self.after_loss = False
        if pcm.shape[0] != self.frame_samples:
            out = np.zeros(self.frame_samples, dtype=np.int16)
            n = min(self.frame_samples, pcm.shape[0])
            out[:n] = pcm[:n] if pcm.ndim == 1 else pcm[:n, 0]
            return out
        return pcm if pcm.ndim == 1 else np.ascontiguousarray(pcm[:, 0])

    def pull_buffered(self, now: float) -> PcmArray | None:
        """One 20 ms frame from packets of another duration (10/30/40/60 ms), through a FIFO."""
        need = self.frame_samples
        parts = [self.rx_fifo]
        have = self.rx_fifo.shape[0]
        while have < need:
            frame = self.jitter.get(now)
            if frame is None:
                return None
            if frame.kind is FrameKind.OK and frame.payload_type == self.payload_type:
                pcm = self.decode_any(frame.payload)
            elif frame.kind is FrameKind.LOST:
                pcm = self._conceal_n(self.rx_frame_samples)
            else:
                pcm = np.zeros(self.rx_frame_samples, dtype=np.int16)
            parts.append(pcm)
            have += pcm.shape[0]
        buf = np.concatenate(parts)
        self.rx_fifo = buf[need:]
        return buf[:need]

    def decode_any(self, payload: bytes) -> PcmArray:
        """Decode a payload of any duration to mono PCM (concealing an undecodable one)."""
        decoder = self.decoder
        assert decoder is not None
        try:
            pcm = decoder.decode(payload)
        except CodecError:
            return self._conceal_n(self.rx_frame_samples)
        self.after_loss = False
        self.last_payload = payload
        return pcm if pcm.ndim == 1 else np.ascontiguousarray(pcm[:, 0])

    def _conceal_n(self, n: int) -> PcmArray:
        decoder = self.decoder
        assert decoder is not None
        self.after_loss = True
        pcm = decoder.conceal(n)
        return pcm if pcm.ndim == 1 else np.ascontiguousarray(pcm[:, 0])

    @property
    def silence(self) -> PcmArray:
        """A (read-only in spirit) frame of zeros at the stream's rate."""
        return self._silence

    # -- closing ---------------------------------------------------------------------------------

    async def close(self) -> None:
        """Send RTCP BYE, stop everything on this leg, close and release the ports (idempotent)."""
        if self.closed:
            return
        if self.negotiated is not None:
            self.send_rtcp_bye()
        self.closed = True
        self.media_changed()
        for timer in (self._rtcp_timer, self._dtmf_timer):
            if timer is not None:
                timer.cancel()
        self.stop_playback()
        self.cancel_dtmf()
        await self.engine.stream_closed(self)
        poller = self.engine.poller
        poller.remove(self.ports.rtp_sock.fileno())
        if self.ports.rtcp_sock is not None:
            poller.remove(self.ports.rtcp_sock.fileno())
        self.engine.ports.release(self.ports)
        self.close_session()

    def __repr__(self) -> str:
        codec = self.codec.sdp_name if self.codec else "unconfigured"
        return f"<RtpStream {self.local_address}:{self.local_port} ssrc={self.ssrc:08x} {codec}>"
