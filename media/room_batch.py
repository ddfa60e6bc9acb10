"""Many small conference rooms mixed in one vectorised pass per 20 ms tick.

A :meth:`ConferenceRoom.tick <trunkline.media.room.ConferenceRoom.tick>` costs a few dozen numpy
calls whatever the room's size, so fifty rooms of ten cost fifty times the fixed overhead of one
room of ten (about 0.1 ms each). :func:`tick_rooms` removes that factor for the common room: its
participants all on G.711 (either law) at 8 kHz, no coach, no webrtcvad. Those rooms are laid end
to end in one ``(n, 160)`` array and go through every step of a tick together (decode, levels,
talker detection, noise gate, mix-minus with a segment sum per room, one encode per law), so the
numpy work is about that of one room of ``n``; only top-K selection in a room with more gated
talkers than ``top_k``, the room sources (announcements, hold music), recording taps and the
per-room dictionaries of payloads are per-room Python. Any other room, or a room alone with its
settings, is ticked on its own by ``ConferenceRoom.tick``.

The result is exactly that of ticking each room on its own (the tests compare them bit for bit):
a batch's talker detector and speaker selector are :meth:`merged
<trunkline.media.mixer.TalkerDetector.merged>` from the rooms' own, whose state arrays become views
of the merged ones. A batch is kept on its rooms between ticks and rebuilt (state copied over)
when the set of rooms or any room's slot layout changes. Which rooms qualify is decided when a
room's masks are rebuilt (``ConferenceRoom._batch_key``); rooms with the same key share a batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np

from trunkline.media.mixer import (
    MixerError,
    PcmArray,
    SpeakerEvent,
    SpeakerSelector,
    TalkerDetector,
    frame_power,
    loudest,
    mix_minus_rooms,
    power_to_dbfs,
    stack_frames,
)
from trunkline.media.room import _G711, ConferenceRoom, Inbound, TickResult, _Outputs

__all__ = ["tick_rooms"]

_NO_LIMIT = 1 << 30  # top_k=None


def tick_rooms(
    rooms: Sequence[ConferenceRoom], inbounds: Sequence[Mapping[Any, Inbound]], now: float
) -> list[TickResult]:
    """Tick distinct ``rooms`` at ``now``, ``inbounds[i]`` being room ``i``'s input.

    Returns the same results, and leaves the rooms in the same state, as
    ``[room.tick(inbound, now) for room, inbound in zip(rooms, inbounds)]``, for a fraction of
    the cost when many rooms qualify for the shared pass (see the module docstring).
    """
    if len(rooms) != len(inbounds):
        raise MixerError(f"{len(rooms)} rooms but {len(inbounds)} inputs")
    results: list[TickResult | None] = [None] * len(rooms)
    batches: dict[tuple[Any, ...], list[int]] = {}
    for i, room in enumerate(rooms):
        if room._slots_dirty:
            room._rebuild()
        if room._masks_dirty:
            room._rebuild_masks()
        key = room._batch_key
        if key is not None and room.started and room._order and room.vad_aggressiveness is None:
            batches.setdefault(key, []).append(i)
        else:
            results[i] = room.tick(inbounds[i], now)
    for members in batches.values():
        if len(members) == 1:  # nothing to share: the room's own tick is as cheap
            results[members[0]] = rooms[members[0]].tick(inbounds[members[0]], now)
            continue
        batch_rooms = [rooms[i] for i in members]
        batch = _batch_for(batch_rooms)
        ticked = batch.tick(batch_rooms, [inbounds[i] for i in members], now)
        for i, result in zip(members, ticked, strict=True):
            results[i] = result
    return results  # type: ignore[return-value]  # every slot was filled above


def _batch_for(rooms: list[ConferenceRoom]) -> _Batch:
    """The batch these rooms' state arrays are views of, or a new one."""
    batch = rooms[0]._batch
    if not (
        isinstance(batch, _Batch)
        and batch.room_ids == tuple(map(id, rooms))
        and batch.layouts == tuple(r._layout for r in rooms)
        and all(r._batch is batch for r in rooms)
    ):
        batch = _Batch(rooms)
        for r in rooms:
            r._batch = batch
    return batch


class _Batch:
    """G.711 rooms mixed together; built when the set of rooms or a room's slot layout changes.

    It keeps no reference to the rooms (which reference it), so a finished room is freed at once.
    """

    def __init__(self, rooms: list[ConferenceRoom]) -> None:
        if len(set(rooms)) != len(rooms):
            raise MixerError("tick_rooms: a room was passed twice")
        self.room_ids = tuple(map(id, rooms))  # with ``room._batch is self``: the same rooms
        self.layouts = tuple(r._layout for r in rooms)
        self.room_groups = [r._groups for r in rooms]
        self.groups = [g for r in rooms for g in r._groups]  # in row order
        group_sizes = [len(g.ids) for g in self.groups]
        room_sizes = [len(r._order) for r in rooms]
        self.starts: list[int] = np.cumsum([0, *room_sizes]).tolist()
        self.room_of = np.repeat(np.arange(len(rooms), dtype=np.intp), room_sizes)
        self.room_list: list[int] = self.room_of.tolist()
        self.group_list: list[int] = np.repeat(np.arange(len(self.groups)), group_sizes).tolist()
        self.ids: list[Any] = [pid for g in self.groups for pid in g.ids]
        self.limits = np.array([r.selector.top_k or _NO_LIMIT for r in rooms], dtype=np.intp)
        self.group_laws = [str(g.law) for g in self.groups]  # every group of a batch is G.711
        self.laws = sorted(set(self.group_laws))
        # Rows of each law, for decoding payloads when both laws are present.
        bounds = np.cumsum([0, *group_sizes]).tolist()
        self.law_rows = {
            law: np.concatenate(
                [
                    np.arange(a, b)
                    for g, a, b in zip(self.groups, bounds, bounds[1:], strict=False)
                    if g.law == law
                ]
            )
            for law in self.laws
        }
        self.size = rooms[0].frame_samples
        self.detector = TalkerDetector.merged([r.detector for r in rooms])
        self.selector = SpeakerSelector.merged([r.selector for r in rooms])

    def _stack(
        self, rooms: list[ConferenceRoom], inbounds: list[Mapping[Any, Inbound]], talk: Any
    ) -> PcmArray:
        """Every room's frames of this tick, one row per participant, muted ones zeroed."""
        pairs = [(inbound, g) for inbound, gs in zip(inbounds, self.room_groups, strict=True) for g in gs]
        frames: PcmArray | None = None
        if len(self.laws) == 1:
            values = list(chain.from_iterable(map(inbound.get, g.ids) for inbound, g in pairs))
            frames = stack_frames(values, self.size, _G711[self.laws[0]][0])
        else:
            frames = np.empty((len(self.ids), self.size), dtype=np.int16)
            for law in self.laws:
                values = list(chain.from_iterable(map(i.get, g.ids) for i, g in pairs if g.law == law))
                rows = stack_frames(values, self.size, _G711[law][0])
                if rows is None:
                    frames = None
                    break
                frames[self.law_rows[law]] = rows
        if frames is None:  # something missing or malformed: each room decodes its own
            return np.concatenate([r._decode(i) for r, i in zip(rooms, inbounds, strict=True)])
        if not talk.all():
            frames[~talk] = 0  # muted, held and listen-only inputs are ignored
        return frames

    def tick(
        self, rooms: list[ConferenceRoom], inbounds: list[Mapping[Any, Inbound]], now: float
    ) -> list[TickResult]:
        """One tick of every room of the batch (the steps of ``ConferenceRoom.tick``)."""
        ids, size = self.ids, self.size
        events: list[list[SpeakerEvent]] = []
        for room in rooms:
            room._now = now
            room._tick_count += 1
            events.append(room._pending_events)
            room._pending_events = []
        talk = np.concatenate([room._talk for room in rooms])  # not muted, held or listen-only
        frames = self._stack(rooms, inbounds, talk)
        power = frame_power(frames)
        levels = power_to_dbfs(power)
        started, stopped = self.detector.update(levels, talk)
        for found, speaking in ((started, True), (stopped, False)):
            for i in found.tolist():
                events[self.room_list[i]].append(SpeakerEvent(ids[i], speaking, now, float(levels[i])))
        selected = self._select(power, talk, len(rooms))
        extra: dict[int, PcmArray] = {}
        for r, room in enumerate(rooms):
            if room._announcements:
                frame = room._announcement()
                if frame is not None:
                    extra[r] = frame
        result = mix_minus_rooms(frames, selected, self.room_of, len(rooms), extra)
        # One encode per law for all the rooms' mixes and one for all the individual outputs.
        mix_blobs = {law: _G711[law][1](result.mix).tobytes() for law in self.laws}
        output_blobs = {law: _G711[law][1](result.outputs).tobytes() for law in self.laws}
        group_laws, group_list = self.group_laws, self.group_list
        talkers: dict[int, tuple[list[Any], list[bytes]]] = {}  # group -> its talkers, their payloads
        for j, i in enumerate(result.rows.tolist()):
            gi = group_list[i]
            mine = talkers.get(gi)
            if mine is None:
                mine = talkers[gi] = ([], [])
            mine[0].append(ids[i])
            mine[1].append(output_blobs[group_laws[gi]][j * size : (j + 1) * size])
        ticked = []
        gi = 0
        for r, (room, mix) in enumerate(zip(rooms, list(result.mix), strict=True)):
            if room._mix_taps:
                for tap in room._mix_taps:
                    tap.push(mix, room.rate)
            out = _Outputs({}, {}, 0)
            speakers: list[Any] = []
            for g in self.room_groups[r]:  # as ConferenceRoom._emit, group by group
                talking, law = talkers.get(gi), group_laws[gi]
                gi += 1
                names: list[Any] = talking[0] if talking is not None else []
                if len(g.listen_ids) > len(names):  # somebody hears the plain mix: one shared payload
                    shared = mix_blobs[law][r * size : (r + 1) * size]
                    if out.payloads:
                        out.payloads.update(dict.fromkeys(g.listen_ids, shared))
                    else:
                        out.payloads = dict.fromkeys(g.listen_ids, shared)
                    out.encodes += 1
                if talking is not None:  # contributors hear total - own
                    out.payloads.update(zip(names, talking[1], strict=True))
                    out.encodes += len(names)
                    speakers += names
                if g.held_local:
                    room._emit_hold(out, g)
            ticked.append(
                TickResult(out.payloads, out.pcm, events[r], mix, room.rate, tuple(speakers), out.encodes)
            )
        return ticked

    def _select(self, power: Any, talk: Any, rooms: int) -> Any:
        """The noise gate over every room at once, then each room's own top-K where it binds."""
        gated = self.selector.gate(power, talk)
        counts = np.bincount(self.room_of[gated], minlength=rooms)
        over = np.flatnonzero(counts > self.limits).tolist()
        if not over:
            return gated
        selected = gated.copy()
        score, starts = self.selector.score, self.starts
        for r in over:
            a, b = starts[r], starts[r + 1]
            selected[a:b] = loudest(gated[a:b], score[a:b], int(self.limits[r]))
        return selected
