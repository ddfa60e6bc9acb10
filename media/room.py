"""A conference room: participants, codecs, room sources and one mixing pass per 20 ms tick.

Plugging into the media engine
------------------------------
A room owns no socket and no clock. Every 20 ms the caller hands it all its participants' inbound
audio of the tick and gets one output per participant back::

    room = ConferenceRoom("CF...", top_k=8)
    room.join("CA1", "PCMU/8000", start_conference_on_enter=True)
    room.join("CA2", "opus/48000/2", muted=True)
    result = room.tick({"CA1": payload_or_pcm_or_None, "CA2": ...}, now)
    result.payloads   # participant -> encoded payload (shared listeners: the same bytes object)
    result.pcm        # participant -> int16 at its codec rate (those joined with encode=False)
    result.events     # SpeakerEvent list for Twilio's "speaker" status callbacks
    result.mix        # the full mix at the room rate, for the conference recorder

:class:`~trunkline.media.room_engine.EngineRoom` adapts this to the engine's ``MediaRoom`` protocol
(``mix(inputs, now)`` keyed by stream, PCM in, payloads out); many small rooms are cheaper ticked
together by :func:`~trunkline.media.room_batch.tick_rooms` (same results, one vectorised pass).
An inbound value is an RTP payload (``bytes``: the room decodes it), an int16 frame already
decoded at the participant's codec rate, or ``None`` when nothing arrived (silence for G.711, codec
concealment otherwise); a payload the codec rejects counts as lost
(:attr:`ConferenceRoom.decode_errors`) and a missing participant as ``None``.

Internal rate: the room mixes at the highest sample rate of its participants' codecs (8 kHz for
an all-G.711 room, 16 kHz with G.722, 48 kHz with Opus), capped by ``max_rate``; participants at
another rate are resampled in and out with one :class:`~trunkline.codecs.resample.Resampler` per
direction and stream.

Shared encoding: every listener who is not contributing hears the same stream (the mix, the
room's wait music or a hold source), so it is encoded once per stream and codec group and the
same ``bytes`` object is handed to all of them; contributors get individual ``total - own``
encodes, batched per G.711 law in one table lookup over a ``(k, samples)`` array. G.711 is
stateless, so a participant moves between the shared and the individual encoding seamlessly;
for stateful paths (G.722, Opus, or any resampling) a participant keeps its own encoder for
``share_after_ticks`` after it last contributed, so hand-overs only happen at the end of a talk
spurt (the decoder then resynchronises within a frame or two).

Participant states: ``muted`` (contributes nothing, still hears the mix), ``hold`` (contributes
nothing, hears its hold source or the room's), ``listen_only`` (never contributes, inbound not
even decoded) and coaches (``coach_of``: heard only by the coached participant). Until the
conference starts (a participant joins with ``start_conference_on_enter``, or :meth:`start`),
everybody hears the wait source and nobody is mixed, as in Twilio.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from trunkline.codecs.base import CodecError, CodecInfo, Decoder, Encoder
from trunkline.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from trunkline.codecs.registry import create_decoder, create_encoder, get_codec, normalize_name
from trunkline.codecs.resample import Resampler
from trunkline.media.mixer import (
    MixerError,
    MixTap,
    PcmArray,
    SourceTap,
    SpeakerEvent,
    SpeakerSelector,
    TalkerDetector,
    fit_frame,
    frame_power,
    mix_minus,
    power_to_dbfs,
    reindex,
    stack_frames,
)
from trunkline.media.player import AudioSource
from trunkline.media.tones import ToneSource, ToneSpec
from trunkline.media.vad import VoiceActivityDetector

__all__ = ["ENTER_BEEP", "EXIT_BEEP", "ConferenceRoom", "Participant", "TickResult"]

Inbound = bytes | bytearray | memoryview | PcmArray | None

#: Beeps played to the room when a participant enters / leaves (Twilio ``beep``).
ENTER_BEEP = ToneSpec("conference-enter", (880.0,), level_dbfs=-16.0)
EXIT_BEEP = ToneSpec("conference-exit", (440.0,), level_dbfs=-16.0)
BEEP_SECONDS = 0.25
_xp: Any = np  # untyped alias for calls numpy's stubs reject under strict mypy (where with scalars)
_NEVER = 1 << 30  # "ticks since last contribution" of somebody who never contributed
_G711 = {"pcmu": (ulaw_decode, ulaw_encode), "pcma": (alaw_decode, alaw_encode)}


@dataclass(slots=True, eq=False)
class Participant:
    """One member of a room. Change its state through the room's setters, not directly."""

    id: str
    codec: CodecInfo
    group_key: tuple[Any, ...]
    encode: bool
    muted: bool = False
    hold: bool = False
    listen_only: bool = False
    coach_of: str | None = None
    hold_source: AudioSource | None = None
    decoder: Decoder | None = None
    encoder: Encoder | None = None
    in_resampler: Resampler | None = None
    out_resampler: Resampler | None = None
    vad: VoiceActivityDetector | None = None


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick produced.

    ``payloads`` holds one encoded frame per participant that joined with ``encode=True`` (shared
    listeners get the very same ``bytes`` object); ``pcm`` one int16 frame at the codec rate per
    participant that joined with ``encode=False``. ``mix`` is the full room mix at ``rate`` (what a
    non-contributing listener hears, announcements included), ``None`` before the conference
    starts. ``speakers`` are the participants summed this tick; ``encodes`` counts encoder runs
    (one per frame encoded), which shows the shared-encoding saving.
    """

    payloads: dict[str, bytes]
    pcm: dict[str, PcmArray]
    events: list[SpeakerEvent]
    mix: PcmArray | None
    rate: int
    speakers: tuple[str, ...]
    encodes: int


@dataclass(slots=True)
class _Group:
    """Participants sharing codec, fmtp and output kind: a contiguous run of room slots."""

    key: tuple[Any, ...]
    start: int
    stop: int
    members: list[Participant]
    ids: list[str]
    rate: int
    encode: bool
    law: str | None  # "pcmu"/"pcma" for G.711
    batch: bool  # G.711 at the room rate: decode and encode as one array
    stateful: bool
    shared: dict[int, tuple[Resampler | None, Encoder | None]] = field(default_factory=dict)
    listen_ids: list[str] = field(default_factory=list)  # members not on hold
    held_local: list[int] = field(default_factory=list)  # members on hold (group-local index)
    silent_local: list[int] = field(default_factory=list)  # members whose input is ignored


class ConferenceRoom:
    """One conference: participants, room sources and the per-tick mix (see the module docstring).

    ``top_k`` bounds how many talkers are summed (``None``: all of them), ``max_rate`` caps the
    internal rate, ``vad_aggressiveness`` (0-3) adds webrtcvad to the energy talker detection.
    The remaining keywords tune :class:`~trunkline.media.mixer.SpeakerSelector` and
    :class:`~trunkline.media.mixer.TalkerDetector`.
    """

    def __init__(
        self,
        name: str = "",
        *,
        top_k: int | None = 8,
        max_rate: int = 48000,
        share_after_ticks: int = 50,
        gate_dbfs: float = -55.0,
        speech_on_dbfs: float = -40.0,
        speech_off_dbfs: float = -48.0,
        speech_start_ms: int = 100,
        speech_stop_ms: int = 500,
        vad_aggressiveness: int | None = None,
        hold_source: AudioSource | None = None,
        wait_source: AudioSource | None = None,
    ) -> None:
        if max_rate not in (8000, 16000, 48000):
            raise MixerError(f"max_rate must be 8000, 16000 or 48000, got {max_rate}")
        self.name = name
        self.max_rate = max_rate
        self.share_after_ticks = share_after_ticks
        self.vad_aggressiveness = vad_aggressiveness
        self.hold_source = hold_source
        self.wait_source = wait_source
        self.started = False
        self.decode_errors = 0
        self.rate = 8000
        self.selector = SpeakerSelector(top_k=top_k, gate_dbfs=gate_dbfs)
        self.detector = TalkerDetector(
            on_dbfs=speech_on_dbfs, off_dbfs=speech_off_dbfs, start_ms=speech_start_ms, stop_ms=speech_stop_ms
        )
        self._participants: dict[str, Participant] = {}
        self._order: list[Participant] = []
        self._groups: list[_Group] = []
        self._since = np.zeros(0, dtype=np.int32)  # ticks since last contribution
        self._slots_dirty = False
        self._masks_dirty = False
        self._talk = self._held = self._coach = self._stateful = np.zeros(0, dtype=np.bool_)
        self._talk_not_coach = self._stateful_listening = self._talk
        self._any_coach = self._any_stateful = False
        self._target = self._bounds = np.zeros(0, dtype=np.intp)
        self._taps: dict[int, SourceTap] = {}
        self._announcements: deque[tuple[SourceTap, Callable[[bool], None] | None]] = deque()
        self._mix_taps: list[MixTap] = []
        self._pending_events: list[SpeakerEvent] = []
        self._now = 0.0
        self._tick_count = 0
        self._layout = 0  # bumped by every slot layout change (state arrays then are new)
        self._batch_key: tuple[Any, ...] | None = None  # set when media.room_batch can mix this room
        self._batch: Any = None  # the room_batch group whose state arrays this room's are views of

    # -- membership and state ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._participants)

    def __contains__(self, participant_id: object) -> bool:
        return participant_id in self._participants

    @property
    def participants(self) -> Mapping[str, Participant]:
        """Current participants by id (read-only view)."""
        return dict(self._participants)

    @property
    def frame_samples(self) -> int:
        """Samples per 20 ms frame at the room rate."""
        return self.rate // 50

    def join(
        self,
        participant_id: str,
        codec: str,
        *,
        fmtp: Mapping[str, str] | None = None,
        encode: bool = True,
        muted: bool = False,
        hold: bool = False,
        listen_only: bool = False,
        coach_of: str | None = None,
        start_conference_on_enter: bool = True,
        beep: bool | str = True,
        hold_source: AudioSource | None = None,
    ) -> Participant:
        """Add a participant using ``codec`` (an SDP rtpmap name such as ``"PCMU/8000"``).

        ``beep`` takes Twilio's values (``true``, ``false``, ``onEnter``, ``onExit``).
        """
        if participant_id in self._participants:
            raise MixerError(f"participant {participant_id!r} is already in room {self.name!r}")
        info = get_codec(codec)
        params = dict(fmtp or {})
        decoder = create_decoder(codec, **params) if encode else None
        encoder = create_encoder(codec, **params) if encode else None
        if encoder is not None and encoder.channels != 1:
            raise MixerError(f"conference participants must be mono, {codec} {params} is not")
        key = (normalize_name(codec), tuple(sorted(params.items())), encode)
        p = Participant(
            participant_id,
            info,
            key,
            encode,
            muted=muted,
            hold=hold,
            listen_only=listen_only,
            coach_of=coach_of,
            hold_source=hold_source,
            decoder=decoder,
            encoder=encoder,
        )
        self._participants[participant_id] = p
        self._slots_dirty = True
        self._update_rate()
        if start_conference_on_enter:
            self.start()
        if self.started and _beeps(beep)[0]:
            self._beep(ENTER_BEEP)
        return p

    def leave(self, participant_id: str, *, beep: bool | str = True) -> None:
        """Remove a participant; a pending talk spurt is closed with a stop event next tick."""
        p = self._participant(participant_id)
        if p in self._order:
            slot = self._order.index(p)
            if self.detector.speaking[slot]:
                self._pending_events.append(SpeakerEvent(p.id, False, self._now, -120.0))
        del self._participants[participant_id]
        self._slots_dirty = True
        self._update_rate()
        if self.started and self._participants and _beeps(beep)[1]:
            self._beep(EXIT_BEEP)

    def _beep(self, spec: ToneSpec) -> None:
        # A burst of joins (or leaves) gets one beep, not a queue of them.
        if self._announcements:
            last = self._announcements[-1][0].source
            if isinstance(last, ToneSource) and last.spec == spec and last.samples_emitted == 0:
                return
        self.announce(ToneSource(spec, self.rate, duration=BEEP_SECONDS))

    def set_muted(self, participant_id: str, muted: bool) -> None:
        """Mute or unmute (Twilio participant ``muted``)."""
        self._participant(participant_id).muted = muted
        self._masks_dirty = True

    def set_hold(self, participant_id: str, hold: bool, source: AudioSource | None = None) -> None:
        """Put on hold (hearing ``source``, else the room's hold source) or take off hold."""
        p = self._participant(participant_id)
        p.hold = hold
        if source is not None:
            p.hold_source = source
        self._masks_dirty = True

    def set_coach(self, participant_id: str, coach_of: str | None) -> None:
        """Make a participant the coach of another one (``None``: an ordinary participant)."""
        self._participant(participant_id).coach_of = coach_of
        self._masks_dirty = True

    def start(self) -> None:
        """Start the conference: participants stop hearing the wait source and hear each other."""
        self.started = True

    def announce(self, source: AudioSource, on_done: Callable[[bool], None] | None = None) -> None:
        """Queue audio for the whole room, mixed into everyone's output after earlier ones.

        ``on_done(True)`` is called when it has played, ``on_done(False)`` if stopped.
        """
        self._announcements.append((SourceTap(source, self.rate), on_done))

    def stop_announcements(self) -> int:
        """Drop the current and queued announcements; returns how many were dropped."""
        dropped = list(self._announcements)
        self._announcements.clear()
        for _tap, on_done in dropped:
            if on_done is not None:
                on_done(False)
        return len(dropped)

    def add_mix_tap(self, callback: Callable[[PcmArray], object], rate: int | None = None) -> None:
        """Call ``callback(frame)`` every started tick with the full mix, e.g. ``Recorder.push``.

        ``rate`` (8000, 16000 or 48000) fixes the tap's sample rate whatever the room rate.
        """
        self._mix_taps.append(MixTap(callback, rate or 0))

    def remove_mix_tap(self, callback: Callable[[PcmArray], object]) -> None:
        """Stop calling a tap added by :meth:`add_mix_tap`."""
        self._mix_taps = [t for t in self._mix_taps if t.callback != callback]

    def _participant(self, participant_id: str) -> Participant:
        try:
            return self._participants[participant_id]
        except KeyError:
            raise MixerError(f"no participant {participant_id!r} in room {self.name!r}") from None

    def _update_rate(self) -> None:
        rates = [p.codec.sample_rate for p in self._participants.values()]
        rate = min(self.max_rate, max(rates)) if rates else self.rate
        if rate != self.rate:
            self.rate = rate
            self._taps.clear()
            for g in self._groups:
                g.shared.clear()  # shared resamplers and encoders were fed at the old rate
            self._announcements = deque((SourceTap(t.source, rate), cb) for t, cb in self._announcements)
            self._slots_dirty = True

    # -- layout -------------------------------------------------------------------------------

    def _rebuild(self) -> None:
        """Lay slots out by codec group and carry per-slot state over to the new layout."""
        old_slot = {p.id: i for i, p in enumerate(self._order)}
        old_groups = {g.key: g for g in self._groups}
        members = sorted(self._participants.values(), key=lambda p: p.group_key)
        mapping = np.array([old_slot.get(p.id, -1) for p in members], dtype=np.intp)
        self.selector.reindex(mapping)
        self.detector.reindex(mapping)
        self._since = reindex(self._since, mapping, _NEVER)
        self._order = members
        self._groups = []
        start = 0
        while start < len(members):
            key = members[start].group_key
            stop = start
            while stop < len(members) and members[stop].group_key == key:
                stop += 1
            run = members[start:stop]
            info = run[0].codec
            law = info.encoding.lower() if info.encoding.lower() in _G711 else None
            rate = info.sample_rate
            old = old_groups.get(key)
            group = _Group(
                key,
                start,
                stop,
                run,
                [p.id for p in run],
                rate,
                run[0].encode,
                law,
                batch=law is not None and rate == self.rate and run[0].encode,
                stateful=rate != self.rate or (law is None and run[0].encode),
                shared=old.shared if old is not None else {},
            )
            for p in run:
                resample = rate != self.rate
                if resample and (p.in_resampler is None or p.in_resampler.out_rate != self.rate):
                    p.in_resampler = Resampler(rate, self.rate)
                    p.out_resampler = Resampler(self.rate, rate)
                elif not resample:
                    p.in_resampler = p.out_resampler = None
                if self.vad_aggressiveness is not None and (p.vad is None or p.vad.sample_rate != self.rate):
                    p.vad = VoiceActivityDetector(self.rate, self.vad_aggressiveness)
            self._groups.append(group)
            start = stop
        self._slots_dirty = False
        self._masks_dirty = True
        self._layout += 1

    def _rebuild_masks(self) -> None:
        order = self._order
        slot = {p.id: i for i, p in enumerate(order)}
        self._held = np.array([p.hold for p in order], dtype=np.bool_)
        self._talk = np.array([not (p.muted or p.hold or p.listen_only) for p in order], dtype=np.bool_)
        target = [slot.get(p.coach_of, -1) if p.coach_of is not None else -1 for p in order]
        # A coach whose trainee is gone or on hold is heard by nobody.
        self._coach = np.array([p.coach_of is not None for p in order], dtype=np.bool_)
        self._target = np.array([t if t >= 0 and not order[t].hold else -1 for t in target], dtype=np.intp)
        self._any_coach = bool(self._coach.any())
        self._talk_not_coach = self._talk & ~self._coach
        self._stateful = np.zeros(len(order), dtype=np.bool_)
        for g in self._groups:
            self._stateful[g.start : g.stop] = g.stateful
            g.listen_ids = [p.id for p in g.members if not p.hold]
            g.held_local = [j for j, p in enumerate(g.members) if p.hold]
            g.silent_local = [j for j, p in enumerate(g.members) if p.muted or p.hold or p.listen_only]
        self._any_stateful = bool(self._stateful.any())
        self._stateful_listening = self._stateful & ~self._held
        self._bounds = np.array([g.start for g in self._groups] + [len(order)], dtype=np.intp)
        # G.711 at the room rate only, no coach, no VAD: rooms with the same key are mixed together.
        batchable = all(g.batch for g in self._groups) and not self._any_coach and not self._any_stateful
        self._batch_key = (
            (self.detector.settings, self.selector.settings)
            if batchable and self.vad_aggressiveness is None
            else None
        )
        self._masks_dirty = False

    # -- the tick -----------------------------------------------------------------------------

    def tick(self, inbound: Mapping[str, Inbound], now: float) -> TickResult:
        """Mix one 20 ms tick: decode, select speakers, detect talkers, mix, encode."""
        self._now = now
        self._tick_count += 1
        if self._slots_dirty:
            self._rebuild()
        if self._masks_dirty:
            self._rebuild_masks()
        events, self._pending_events = self._pending_events, []
        out = _Outputs()
        if not self.started or not self._order:
            self._listen_all(out, self._stream_frame(-1, self.wait_source))
            return TickResult(out.payloads, out.pcm, events, None, self.rate, (), out.encodes)
        frames = self._decode(inbound)
        talk = self._talk
        power = frame_power(frames)
        levels = power_to_dbfs(power)
        speech = self._vad(frames, levels, talk) if self.vad_aggressiveness is not None else None
        started, stopped = self.detector.update(levels, talk, speech)
        for idx, speaking in ((started, True), (stopped, False)):
            events.extend(SpeakerEvent(self._order[i].id, speaking, now, float(levels[i])) for i in idx)
        selected = self.selector.select(power, self._talk_not_coach)
        contributing = selected
        if self._any_coach:
            contributing = selected | (talk & self._coach & (self.selector.hold > 0) & (self._target >= 0))
        individual = None
        if self._any_stateful:
            self._since += 1
            self._since[contributing] = 0
            np.minimum(self._since, _NEVER, out=self._since)
            individual = self._stateful_listening & (self._since < self.share_after_ticks)
        result = mix_minus(
            frames,
            contributing,
            coach_target=_xp.where(self._coach, self._target, -1) if self._any_coach else None,
            individual=individual,
            extra=self._announcement(),
        )
        mix = result.mix
        for tap in self._mix_taps:
            tap.push(mix, self.rate)
        self._emit(out, result.rows, result.outputs, mix)
        speakers = tuple(self._order[i].id for i in selected.nonzero()[0])
        return TickResult(out.payloads, out.pcm, events, mix, self.rate, speakers, out.encodes)

    def _announcement(self) -> PcmArray | None:
        while self._announcements:
            tap, on_done = self._announcements[0]
            frame = tap.read()
            if frame is not None:
                return frame
            self._announcements.popleft()
            if on_done is not None:
                on_done(True)
        return None

    def _vad(self, frames: PcmArray, levels: npt.NDArray[np.float64], talk: npt.NDArray[np.bool_]) -> Any:
        speech = np.zeros(len(self._order), dtype=np.bool_)
        for i in np.flatnonzero(self.detector.voiced(levels) & talk):
            vad = self._order[i].vad
            speech[i] = vad is not None and vad.is_speech(frames[i])
        return speech

    def _decode(self, inbound: Mapping[str, Inbound]) -> PcmArray:
        """All participants' frames of this tick at the room rate, ``(n, samples)`` int16."""
        groups = self._groups
        if len(groups) == 1 and groups[0].batch:
            return self._decode_batch(groups[0], inbound)
        frames = np.zeros((len(self._order), self.frame_samples), dtype=np.int16)
        talk = self._talk
        for g in groups:
            rows = frames[g.start : g.stop]
            if g.batch:
                rows[:] = self._decode_batch(g, inbound)
                continue
            values = list(map(inbound.get, g.ids))
            size = g.rate // 50
            for k in talk[g.start : g.stop].nonzero()[0]:
                p = g.members[k]
                pcm = self._decode_one(g, p, values[k], size)
                rows[k] = pcm if p.in_resampler is None else p.in_resampler.process(pcm)
        return frames

    def _decode_batch(self, g: _Group, inbound: Mapping[str, Inbound]) -> PcmArray:
        """One G.711 group at the room rate, decoded in one table lookup when every payload is good."""
        assert g.law is not None
        values = list(map(inbound.get, g.ids))
        size = g.rate // 50
        rows = stack_frames(values, size, _G711[g.law][0])
        if rows is None:
            rows = np.empty((len(values), size), dtype=np.int16)
            for j, v in enumerate(values):
                rows[j] = self._decode_one(g, g.members[j], v, size)
        if g.silent_local:
            rows[g.silent_local] = 0
        return rows

    def _decode_one(self, g: _Group, p: Participant, value: Inbound, size: int) -> PcmArray:
        if isinstance(value, np.ndarray):
            if value.dtype != np.int16 or value.shape != (size,):
                raise MixerError(f"PCM for {p.id!r} must be int16 of shape ({size},), got {value.shape}")
            return value
        if p.decoder is None and value is not None and len(value):
            raise MixerError(f"participant {p.id!r} joined with encode=False: pass int16 PCM, not bytes")
        if value is None or len(value) == 0 or p.decoder is None:
            if p.decoder is None or g.law is not None:
                return np.zeros(size, dtype=np.int16)
            return fit_frame(p.decoder.conceal(size), size)
        try:
            if g.law is not None:
                if len(value) != size:
                    raise CodecError(f"G.711 payload of {len(value)} bytes, expected {size}")
                return _G711[g.law][0](bytes(value))
            return fit_frame(p.decoder.decode(bytes(value)), size)
        except CodecError:
            self.decode_errors += 1
            return (
                np.zeros(size, dtype=np.int16)
                if g.law is not None
                else fit_frame(p.decoder.conceal(size), size)
            )

    # -- output ------------------------------------------------------------------------------

    def _stream_frame(self, key: int, source: AudioSource | None) -> PcmArray:
        """This tick's frame of a wait/hold source: pulled once per tick however many groups hear it."""
        if source is None:
            return np.zeros(self.frame_samples, dtype=np.int16)
        tap = self._taps.get(id(source))
        if tap is None or tap.source is not source:
            tap = self._taps[id(source)] = SourceTap(source, self.rate)
        if tap.tick != self._tick_count:
            tap.tick, tap.frame = self._tick_count, tap.read_or_silence()
        assert tap.frame is not None
        return tap.frame

    def _listen_all(self, out: _Outputs, frame: PcmArray) -> None:
        """Everyone hears ``frame`` (the wait source), except held participants."""
        for g in self._groups:
            self._emit_shared(out, g, -1, frame, g.listen_ids)
            self._emit_hold(out, g)

    def _emit(self, out: _Outputs, rows: npt.NDArray[np.intp], outputs: PcmArray, mix: PcmArray) -> None:
        bounds = rows.searchsorted(self._bounds)
        for gi, g in enumerate(self._groups):
            a, b = bounds[gi], bounds[gi + 1]
            if len(g.listen_ids) > b - a:  # somebody hears the plain mix: encode it once
                self._emit_shared(out, g, 0, mix, g.listen_ids)
            if b > a:  # individual outputs replace the shared one
                self._emit_individual(out, g, rows[a:b] - g.start, outputs[a:b])
            if g.held_local:
                self._emit_hold(out, g)

    def _emit_hold(self, out: _Outputs, g: _Group) -> None:
        by_source: dict[int, list[str]] = {}
        sources: dict[int, AudioSource | None] = {}
        for j in g.held_local:
            src = g.members[j].hold_source or self.hold_source
            by_source.setdefault(id(src), []).append(g.ids[j])
            sources[id(src)] = src
        for key, ids in by_source.items():
            self._emit_shared(out, g, key, self._stream_frame(key, sources[key]), ids)

    def _emit_shared(self, out: _Outputs, g: _Group, key: int, frame: PcmArray, ids: list[str]) -> None:
        """Encode ``frame`` once for this group and hand the same payload to ``ids``."""
        if not ids:
            return
        resampler, encoder = g.shared.get(key, (None, None))
        if g.rate != self.rate:
            if resampler is None:
                resampler = Resampler(self.rate, g.rate)
            frame = resampler.process(frame)
        if not g.encode:
            out.pcm.update(dict.fromkeys(ids, frame))
            g.shared[key] = (resampler, encoder)
            return
        if g.law is not None:
            payload = _G711[g.law][1](frame).tobytes()
        else:
            if encoder is None:
                encoder = create_encoder(g.key[0], **dict(g.key[1]))
            payload = encoder.encode(frame)
        g.shared[key] = (resampler, encoder)
        out.encodes += 1
        out.payloads.update(dict.fromkeys(ids, payload))

    def _emit_individual(self, out: _Outputs, g: _Group, local: Any, outputs: PcmArray) -> None:
        if g.batch:
            assert g.law is not None
            codes = _G711[g.law][1](outputs)
            out.payloads.update(zip([g.ids[j] for j in local], map(bytes, codes), strict=True))
            out.encodes += len(local)
            return
        for j, frame in zip(local, outputs, strict=True):
            p = g.members[j]
            pcm = frame if p.out_resampler is None else p.out_resampler.process(frame)
            if not g.encode:
                out.pcm[p.id] = pcm
                continue
            if g.law is not None:
                out.payloads[p.id] = _G711[g.law][1](pcm).tobytes()
            else:
                assert p.encoder is not None
                out.payloads[p.id] = p.encoder.encode(pcm)
            out.encodes += 1


@dataclass(slots=True)
class _Outputs:
    payloads: dict[str, bytes] = field(default_factory=dict)
    pcm: dict[str, PcmArray] = field(default_factory=dict)
    encodes: int = 0


def _beeps(beep: bool | str) -> tuple[bool, bool]:
    """(beep on enter, beep on exit) for Twilio's ``beep`` attribute."""
    if isinstance(beep, bool):
        return beep, beep
    value = beep.strip().lower()
    if value not in ("true", "false", "onenter", "onexit"):
        raise MixerError(f"beep must be true, false, onEnter or onExit, got {beep!r}")
    return value in ("true", "onenter"), value in ("true", "onexit")
