"""The engine side of a conference: :class:`EngineRoom` adapts a :class:`ConferenceRoom` to the
media engine's ``MediaRoom`` hook (``MediaEngine.join_room``): one ``mix`` per 20 ms tick, or one
``mix_many`` for all the engine's rooms, which mixes small G.711 rooms in one vectorised pass."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from trunkline.codecs.base import CodecInfo
from trunkline.media.mixer import MixerError, PcmArray, SpeakerEvent
from trunkline.media.room import ConferenceRoom, Participant, TickResult
from trunkline.media.room_batch import tick_rooms


class _Stream(Protocol):
    """The part of :class:`~trunkline.media.stream.RtpStream` the engine adapter needs."""

    codec: CodecInfo | None


class EngineRoom:
    """Adapter between a :class:`ConferenceRoom` and the engine's ``MediaRoom`` protocol.

    The engine keys members by stream and hands decoded PCM at each stream's codec rate (``None``
    when nothing arrived); the switch binds each stream to a participant with :meth:`join`. Inside
    :attr:`room` the participants are keyed by their stream (so a tick needs no re-keying): use
    ``adapter.room.set_muted(stream, True)``, ``coach_of=<stream>`` and so on. :meth:`mix` returns
    each stream's encoded payload (``bytes``, sent as is; listeners of the shared mix get the same
    object). Speaker events, with the participant ids given to :meth:`join`, go to ``on_events``;
    ``last`` keeps the last :class:`TickResult` (its ``mix`` is the recording feed). A stream whose
    codec changed (re-INVITE) is re-joined with the same state on the next tick. The engine calls
    :meth:`mix_many` once per tick for all its ``EngineRoom`` rooms, which mixes the small G.711
    ones together (:func:`~trunkline.media.room_batch.tick_rooms`, same results as :meth:`mix`).
    """

    def __init__(
        self, room: ConferenceRoom, on_events: Callable[[list[SpeakerEvent]], object] | None = None
    ) -> None:
        self.room = room
        self.on_events = on_events
        self.last: TickResult | None = None
        self._ids: dict[Any, str] = {}
        self._codecs: dict[Any, CodecInfo] = {}
        self._options: dict[Any, dict[str, Any]] = {}

    def participant_id(self, stream: _Stream) -> str:
        """The participant id ``stream`` was joined with."""
        return self._ids[stream]

    def join(self, stream: _Stream, participant_id: str, **options: Any) -> Participant:
        """Bind ``stream`` to a new participant; ``options`` as for :meth:`ConferenceRoom.join`."""
        if stream.codec is None:
            raise MixerError(f"stream of {participant_id!r} has no negotiated codec yet")
        p = self.room.join(stream, stream.codec.sdp_name, **options)  # type: ignore[arg-type]
        self._ids[stream] = participant_id
        self._codecs[stream] = stream.codec
        self._options[stream] = {k: v for k, v in options.items() if k != "beep"}
        return p

    def leave(self, stream: _Stream, *, beep: bool | str = True) -> None:
        """Remove the participant bound to ``stream``."""
        del self._ids[stream], self._codecs[stream], self._options[stream]
        self.room.leave(stream, beep=beep)  # type: ignore[arg-type]

    def mix(self, inputs: Mapping[Any, PcmArray | None], now: float) -> dict[Any, PcmArray | bytes]:
        """One engine tick: PCM of every member in, one payload per member out."""
        self._follow_codecs()
        return self._deliver(self.room.tick(inputs, now))

    @staticmethod
    def mix_many(
        rooms: Sequence[tuple[EngineRoom, Mapping[Any, PcmArray | None]]], now: float
    ) -> list[dict[Any, PcmArray | bytes]]:
        """:meth:`mix` for several rooms at once (``(adapter, inputs)`` pairs), outputs in order.

        The engine calls this once per tick with all its rooms of this type: small G.711 rooms
        are then mixed in one vectorised pass (:func:`~trunkline.media.room_batch.tick_rooms`).
        """
        for adapter, _inputs in rooms:
            adapter._follow_codecs()
        results = tick_rooms([adapter.room for adapter, _ in rooms], [inputs for _, inputs in rooms], now)
        return [adapter._deliver(result) for (adapter, _), result in zip(rooms, results, strict=True)]

    def _follow_codecs(self) -> None:
        codecs = self._codecs
        if [s.codec for s in codecs] != list(codecs.values()):  # identity first: one C-level pass
            for stream, info in list(codecs.items()):
                if stream.codec is not info and stream.codec is not None:
                    self._rejoin(stream)

    def _deliver(self, result: TickResult) -> dict[Any, PcmArray | bytes]:
        self.last = result
        if result.events and self.on_events is not None:
            ids = self._ids
            self.on_events([replace(e, participant=ids.get(e.participant, "")) for e in result.events])
        out: dict[Any, PcmArray | bytes] = result.payloads  # type: ignore[assignment]
        if result.pcm:
            out = {**result.pcm, **out}
        return out

    def _rejoin(self, stream: Any) -> None:
        p = self.room._participants[stream]
        options = dict(self._options[stream])
        options.update(muted=p.muted, hold=p.hold, listen_only=p.listen_only, coach_of=p.coach_of)
        options.update(hold_source=p.hold_source, start_conference_on_enter=False, beep=False)
        self.room.leave(stream, beep=False)
        self.room.join(stream, stream.codec.sdp_name, **options)
        self._codecs[stream] = stream.codec
