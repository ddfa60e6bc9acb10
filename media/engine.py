"""The media engine: one 20 ms clock driving every RTP stream of the process (DESIGN.md section 5).

Each tick, across all active streams at once:

1. **pull** one frame per receiving stream from its jitter buffer; a lost frame is
   concealed by the stream's codec (G.711 Appendix I style, Opus PLC, G.722 repeat);
2. **decode in batches**: the G.711 frames of the tick are decoded in one numpy
   lookup per law over an ``(n_streams, 160)`` array; Opus and G.722 go through
   the stream's own decoder/encoder inside the tick.  An Opus leg bridged to G.711
   runs libopus at 8 kHz (RFC 7587: the RTP clock stays 48000), so such a bridge
   needs no resampling; measured per transcoded G.711 <-> Opus call and tick
   (``bench/media_transcode.py``): about 0.13-0.15 ms of CPU, of which libopus
   (8 kHz encode at complexity 5, decode) takes roughly three quarters;
3. **consume**: the decoded input (at 8 kHz) feeds recordings, the in-band DTMF
   detector (one vectorised pass over every stream that has it enabled), the VAD
   endpointers, speech capture and conference rooms (:class:`MediaRoom`);
4. **route**: each sending stream's output comes from exactly one feeder: a
   prompt (its :class:`~trunkline.media.player.Player`), else its bridge peer
   (resampled to this leg's rate when the codecs differ), else its room, else silence;
5. **encode in batches** (G.711 per law in one numpy call) and ``sendto``.

Every stream's sockets are read through one :class:`~trunkline.media.poller.DatagramPoller`
(one epoll set behind one event-loop reader, one datagram per ready socket and round) into
one shared receive buffer.  Two legs bridged with the same codec and packet time are relayed
packet by packet as they arrive, in that reader: no jitter buffer delay, no decode or encode,
no packet object (the header is rewritten in place in the receive buffer: SSRC/sequence/
timestamp mapped into the outgoing leg's own space), RFC 4733 events passed through.  In the
steady state the poller hands such a packet straight to the leg's
:class:`~trunkline.media.stream_send.RelayGate`, a small object holding everything the relay
needs.  Such a leg is decoded on the tick only when something consumes its audio (recorder,
detector, VAD), and a relayed leg with nothing to play or send is skipped by the tick
altogether.

The clock is scheduled against absolute deadlines (``loop.call_at(t0 + n * 0.02)``),
so it does not drift; ticks that start late are counted (:attr:`MediaEngine.late_ticks`)
and whole ticks that could not run at all are skipped and counted
(:attr:`MediaEngine.missed_ticks`) rather than run in a burst.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from trunkline.codecs.base import PcmArray
from trunkline.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from trunkline.gateway.config import RtpConfig
from trunkline.media.dtmf import DtmfDetector
from trunkline.media.jitter import FrameKind
from trunkline.media.player import AudioLoader
from trunkline.media.poller import DatagramPoller
from trunkline.media.ports import PortAllocator
from trunkline.media.session import CONSUMER_RATE, Digit, Recording
from trunkline.media.stream import RtpStream
from trunkline.media.tts import TextToSpeech

__all__ = ["TICK", "MediaEngine", "MediaRoom"]

log = logging.getLogger(__name__)

#: The engine's frame clock in seconds.
TICK = 0.020
_G711_FRAME = 160


class MediaRoom(Protocol):
    """What a conference room (``media/room.py``, behind a small adapter) implements to be fed by the engine.

    Once per tick the engine calls :meth:`mix` with every member's decoded input of
    that tick, at the member's own codec rate (``None`` when the member sent
    nothing, the room conceals or treats it as silence), and sends each member what
    is returned for it: int16 PCM at the member's codec rate (the engine encodes
    it, G.711 batched with everything else) or an already encoded payload in the
    member's codec (``bytes``, sent as is: a room can encode a shared mix once for
    all listeners).  Members missing from the result hear silence.  Join and leave
    with :meth:`MediaEngine.join_room` / :meth:`MediaEngine.leave_room`; a prompt
    played to a member overrides the room.

    A room class may also define a static ``mix_many(rooms, now)``: ``rooms`` is a list
    of ``(room, inputs)`` pairs (every room of that class in the engine) and it returns
    one output mapping per pair, in order.  The engine then calls it once per tick
    instead of :meth:`mix` per room, so the class can mix its rooms together
    (:meth:`~trunkline.media.room_engine.EngineRoom.mix_many`).
    """

    def mix(
        self, inputs: Mapping[RtpStream, PcmArray | None], now: float
    ) -> Mapping[RtpStream, PcmArray | bytes]:
        """One tick: inputs of all members -> output for each member."""
        ...


class MediaEngine:
    """One per process: owns the port range, the streams and the 20 ms clock.

    ``tts`` and ``audio_loader`` are created on first use unless given (``<Say>``
    and ``<Play>`` go through them).  ``relay`` disables the same-codec fast path
    when false (every bridge transcodes through PCM; useful for tests and benchmarks).
    """

    def __init__(
        self,
        rtp_config: RtpConfig,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        tts: TextToSpeech | None = None,
        audio_loader: AudioLoader | None = None,
        late_threshold: float = 0.005,
        relay: bool = True,
    ) -> None:
        self.config = rtp_config
        self._loop = loop
        self.ports = PortAllocator.from_config(rtp_config)
        self.streams: list[RtpStream] = []
        self.recordings: set[Recording] = set()
        self.rooms: dict[MediaRoom, list[RtpStream]] = {}
        self.relay_enabled = relay
        self.late_threshold = late_threshold
        self._tts = tts
        self._audio_loader = audio_loader
        self._own_loader = audio_loader is None
        # Clock.
        self._handle: asyncio.TimerHandle | None = None
        self._t0 = 0.0
        self._n = 0
        self.ticks = 0
        self.late_ticks = 0
        self.missed_ticks = 0
        self.max_lateness = 0.0
        self.busy_seconds = 0.0
        self.tick_errors = 0
        # In-band DTMF: one detector, a row ("slot") per stream that has detection on.
        self._detector: DtmfDetector | None = None
        self._slot_owner: list[RtpStream | None] = []
        self._free_slots: list[int] = []
        self._zero8k = np.zeros(_G711_FRAME, dtype=np.int16)
        self._zero8k.setflags(write=False)
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: DatagramPoller | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the engine runs on (the running loop unless one was given)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def poller(self) -> DatagramPoller:
        """The one epoll set every stream's sockets are read through."""
        if self._poller is None:
            self._poller = DatagramPoller(self.loop)
        return self._poller

    @property
    def running(self) -> bool:
        """Whether the clock is ticking."""
        return self._handle is not None

    async def start(self) -> None:
        """Start the 20 ms clock."""
        if self._handle is not None:
            return
        self._t0 = self.loop.time()
        self._n = 1
        self._handle = self.loop.call_at(self._t0 + TICK, self._on_tick)

    async def stop(self) -> None:
        """Stop the clock and close every stream."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for stream in list(self.streams):
            await stream.close()
        for task in list(self._tasks):
            task.cancel()
        if self._poller is not None:
            self._poller.close()
            self._poller = None
        if self._audio_loader is not None and self._own_loader:
            await self._audio_loader.close()

    @property
    def tts(self) -> TextToSpeech:
        """The speech synthesiser used by :meth:`RtpStream.say`."""
        if self._tts is None:
            self._tts = TextToSpeech()
        return self._tts

    @property
    def audio_loader(self) -> AudioLoader:
        """The fetch/decode cache used by :meth:`RtpStream.play_url`."""
        if self._audio_loader is None:
            self._audio_loader = AudioLoader()
        return self._audio_loader

    # -- streams ---------------------------------------------------------------------------------

    async def open_stream(self, *, rtcp_mux: bool = False) -> RtpStream:
        """Bind a port pair and return a new stream; its address/port go into the SDP."""
        stream = RtpStream(self, self.ports.allocate(rtcp_mux=rtcp_mux))
        self.streams.append(stream)
        return stream

    def stream_configured(self, stream: RtpStream) -> None:
        """A stream's negotiation changed: re-decide relay vs. transcoding for its bridge."""
        if stream.peer is not None:
            self._decide_relay(stream, stream.peer)

    async def stream_closed(self, stream: RtpStream) -> None:
        """Detach a closing stream from bridges, rooms, detectors and recordings it owns."""
        self.unbridge(stream)
        self.leave_room(stream)
        self.set_inband_detection(stream, False)
        for rec in [r for r in self.recordings if r.sources and r.sources[0] is stream]:
            rec.detach()
            await rec.stop()
        if stream in self.streams:
            self.streams.remove(stream)

    # -- routing ---------------------------------------------------------------------------------

    def bridge(self, a: RtpStream, b: RtpStream) -> None:
        """Connect two legs: each hears the other (relayed if same codec, else transcoded)."""
        if a is b:
            raise ValueError("cannot bridge a stream to itself")
        self.unbridge(a)
        self.unbridge(b)
        self.leave_room(a)
        self.leave_room(b)
        a.peer, b.peer = b, a
        a.media_changed()
        self._decide_relay(a, b)

    def unbridge(self, stream: RtpStream) -> None:
        """Disconnect ``stream`` and its peer (both then hear silence or their prompts)."""
        peer = stream.peer
        stream.media_changed()
        for s in (stream, peer):
            if s is not None:
                s.peer = None
                s.relay = False
                s.marker_next = True

    @staticmethod
    def same_codec(a: RtpStream, b: RtpStream) -> bool:
        """Whether a packet of ``a`` can be sent on ``b`` unchanged (codec and ptime)."""
        if a.codec is None or b.codec is None or a.negotiated is None or b.negotiated is None:
            return False
        return a.codec.sdp_name == b.codec.sdp_name and a.negotiated.ptime == b.negotiated.ptime

    def _decide_relay(self, a: RtpStream, b: RtpStream) -> None:
        relay = self.relay_enabled and self.same_codec(a, b)
        a.media_changed()
        if relay != a.relay:
            a.marker_next = b.marker_next = True
        a.relay = b.relay = relay
        if a.codec is not None and b.codec is not None:
            # RFC 7587 section 4.1: an Opus leg runs libopus at its peer's rate (8 kHz against
            # G.711, 16 kHz against G.722) so that the bridge needs no resampling.
            rate = min(a.codec.sample_rate, b.codec.sample_rate)
            a.set_pcm_rate(rate)
            b.set_pcm_rate(rate)

    def join_room(self, stream: RtpStream, room: MediaRoom) -> None:
        """Make ``stream`` a member of ``room`` (leaving any bridge)."""
        self.unbridge(stream)
        self.leave_room(stream)
        if stream.codec is not None:
            stream.set_pcm_rate(stream.codec.sample_rate)  # rooms mix at each codec's own rate
        stream.room = room
        self.rooms.setdefault(room, []).append(stream)

    def leave_room(self, stream: RtpStream) -> None:
        """Take ``stream`` out of its room, if any."""
        room = stream.room
        if room is None:
            return
        members = self.rooms.get(room, [])
        if stream in members:
            members.remove(stream)
        if not members:
            self.rooms.pop(room, None)
        stream.room = None
        stream.room_out = None

    def digit_from(self, stream: RtpStream, digit: Digit) -> None:
        """A digit was recognised on ``stream``: re-send RFC 4733 digits across a transcoding bridge.

        (A relayed bridge forwards the events packet by packet; in-band tones cross as audio.)
        """
        peer = stream.peer
        if peer is None or stream.relay or digit.source != "rfc4733" or peer.te_payload_type < 0:
            return
        task = self.loop.create_task(peer.send_dtmf(digit.digit, duration_ms=max(40, digit.duration_ms)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- in-band DTMF slots ------------------------------------------------------------------------

    def set_inband_detection(self, stream: RtpStream, enabled: bool) -> None:
        """Give ``stream`` a row in the shared in-band DTMF detector, or take it back."""
        if enabled and stream.dtmf_slot is None:
            if not self._free_slots:
                old = len(self._slot_owner)
                new = max(16, 2 * old)
                if self._detector is None:
                    self._detector = DtmfDetector(new)
                else:
                    self._detector.resize(new)
                self._slot_owner.extend([None] * (new - old))
                self._free_slots.extend(range(new - 1, old - 1, -1))
            slot = self._free_slots.pop()
            assert self._detector is not None
            self._detector.reset(slot)
            self._slot_owner[slot] = stream
            stream.dtmf_slot = slot
            stream.media_changed()
        elif not enabled and stream.dtmf_slot is not None:
            self._slot_owner[stream.dtmf_slot] = None
            self._free_slots.append(stream.dtmf_slot)
            stream.dtmf_slot = None

    # -- the clock ---------------------------------------------------------------------------------

    def _on_tick(self) -> None:
        loop = self.loop
        now = loop.time()
        lateness = now - (self._t0 + self._n * TICK)
        if lateness > self.late_threshold:
            self.late_ticks += 1
        self.max_lateness = max(self.max_lateness, lateness)
        self._n += 1
        behind = now - (self._t0 + self._n * TICK)
        if behind >= 0:
            skip = int(behind // TICK) + 1
            self.missed_ticks += skip
            self._n += skip
        self._handle = loop.call_at(self._t0 + self._n * TICK, self._on_tick)
        started = time.perf_counter()
        try:
            self.process_tick(now)
        except Exception:
            # One broken stream must not stop the clock for every other call.
            self.tick_errors += 1
            log.exception("media tick failed")
        finally:
            self.busy_seconds += time.perf_counter() - started

    def process_tick(self, now: float) -> None:
        """Run one 20 ms media tick at time ``now`` (the clock calls this; tests may too)."""
        self.ticks += 1
        if self._poller is not None:
            # Relay gates batched in the poller's table: a fiftieth of them written back to
            # their streams' statistics each tick, so every one is at most a second stale.
            self._poller.sync_gates(self.ticks % 50, 50)
        # A leg relayed packet by packet with nothing else to do (no consumer of its audio,
        # no prompt or digit to send, a remote to send to) needs no work on the clock.  Open
        # relay gates both ways say exactly that (RtpSending.media_changed closes them), so
        # the full test runs only for the other legs.
        streams = []
        for s in self.streams:
            peer = s.peer
            if peer is not None and s.relay_gate is not None and peer.relay_gate is not None:
                continue
            if s.negotiated is not None and not (
                s.relay
                and s.sending
                and not s.has_consumers()
                and not s.output_busy()
                and s.remote is not None
            ):
                streams.append(s)
        self._pull_and_decode(streams, now)
        self._consume(streams, now)
        self._mix_rooms(now)
        self._route_and_send(streams)

    def _pull_and_decode(self, streams: list[RtpStream], now: float) -> None:
        groups: dict[str, tuple[list[RtpStream], list[bytes]]] = {"ulaw": ([], []), "alaw": ([], [])}
        ok, lost = FrameKind.OK, FrameKind.LOST
        for s in streams:
            s.tick_in = None
            s.tick_in8k = None
            if not s.receiving or (s.relay and not s.wants_input()):
                continue
            if s.rx_frame_samples != s.frame_samples:
                s.tick_in = s.pull_buffered(now)  # packets of another ptime than our 20 ms tick
                continue
            frame = s.jitter.get(now)
            if frame is None:
                continue
            kind = frame.kind
            if kind is not ok:
                if kind is lost:
                    s.tick_in = s.conceal()
                continue  # DTX
            payload = frame.payload
            law = s.law
            if law is not None and len(payload) == _G711_FRAME and not s.after_loss:
                members, payloads = groups[law]
                members.append(s)
                payloads.append(payload)
            else:
                s.tick_in = s.decode_one(payload)
            s.last_payload = payload
        # One table lookup per G.711 law over every stream of the tick: (n, 160) uint8 -> int16.
        for law, (members, payloads) in groups.items():
            if not members:
                continue
            codes = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(len(members), _G711_FRAME)
            pcm = ulaw_decode(codes) if law == "ulaw" else alaw_decode(codes)
            for s, row in zip(members, pcm, strict=True):
                s.tick_in = row

    def _consume(self, streams: list[RtpStream], now: float) -> None:
        detector = self._detector
        dtmf_rows: np.ndarray | None = None
        if detector is not None and len(self._free_slots) < len(self._slot_owner):
            dtmf_rows = np.zeros((detector.n_streams, _G711_FRAME), dtype=np.int16)
        for s in streams:
            if not s.has_consumers():
                continue
            pcm = s.tick_in
            if pcm is not None and s.sample_rate != CONSUMER_RATE:
                pcm = s.resampler("in8k", s.sample_rate, CONSUMER_RATE).process(pcm)
            s.tick_in8k = pcm
            frame = pcm if pcm is not None else self._zero8k
            if dtmf_rows is not None and s.dtmf_slot is not None and pcm is not None:
                dtmf_rows[s.dtmf_slot] = frame
            if s.endpointer is not None:
                s.vad_frame(frame)
            if s.capture is not None:
                s.capture.append(frame.copy())
        for rec in list(self.recordings):
            rec.push_tick()
        if dtmf_rows is not None and detector is not None:
            for slot, digit in detector.process(dtmf_rows):
                owner = self._slot_owner[slot]
                if owner is not None:
                    owner.digit_received(digit, "inband", 0, now)

    def _mix_rooms(self, now: float) -> None:
        # Rooms whose class has a ``mix_many`` are mixed together, one call per class and tick.
        batches: dict[type, list[tuple[MediaRoom, list[RtpStream]]]] = {}
        for room, members in list(self.rooms.items()):
            if getattr(type(room), "mix_many", None) is not None:
                batches.setdefault(type(room), []).append((room, members))
                continue
            get = room.mix({s: s.tick_in for s in members}, now).get
            for s in members:
                s.room_out = get(s)
        for kind, batch in batches.items():
            mix_many = getattr(kind, "mix_many", None)
            assert mix_many is not None  # how the batch was chosen
            outputs = mix_many([(room, {s: s.tick_in for s in members}) for room, members in batch], now)
            for (_room, members), out in zip(batch, outputs, strict=True):
                get = out.get
                for s in members:
                    s.room_out = get(s)

    def _route_and_send(self, streams: list[RtpStream]) -> None:
        groups: dict[str, tuple[list[RtpStream], list[PcmArray]]] = {"ulaw": ([], []), "alaw": ([], [])}
        for s in streams:
            if not s.sending or s.remote is None:
                s.advance_clock()
                continue
            if s.dtmf_tx and s.dtmf_tick():
                s.advance_clock()
                continue
            player = s.player
            if not player.playing:
                out = s.room_out
                if type(out) is bytes and s.peer is None:
                    # A conference listener: the room's (often shared) payload, sent as is.
                    s.send_audio(out)
                    s.ts = (s.ts + s.ts_step) & 0xFFFFFFFF  # advance_clock()
                    continue
                frame = None
            else:
                frame = player.read_frame()
            if frame is None:
                peer = s.peer
                if peer is not None:
                    if s.relay:
                        continue  # relayed on arrival; forward() keeps our clock
                    src = peer.tick_in
                    if src is not None:
                        if peer.sample_rate != s.sample_rate:
                            src = s.resampler("bridge", peer.sample_rate, s.sample_rate).process(src)
                        frame = src
                elif s.room is not None:
                    out = s.room_out
                    if isinstance(out, bytes):
                        s.send_audio(out)
                        s.advance_clock()
                        continue
                    frame = out
            if frame is None:
                frame = s.silence
            if s.law is not None:
                members, frames = groups[s.law]
                members.append(s)
                frames.append(frame)
                continue
            encoder = s.encoder
            assert encoder is not None
            payload = encoder.encode(frame)
            if payload:
                s.send_audio(payload)
            else:
                s.marker_next = True  # DTX: the next packet starts a talkspurt
            s.advance_clock()
        # One table lookup per G.711 law: (n, 160) int16 -> uint8 code words.
        for law, (members, frames) in groups.items():
            if not members:
                continue
            pcm = np.stack(frames)
            codes = ulaw_encode(pcm) if law == "ulaw" else alaw_encode(pcm)
            for i, s in enumerate(members):
                s.send_audio(codes[i].tobytes())
                s.advance_clock()
