"""Conferences: ``<Dial><Conference>`` rooms on the vectorised mixer, live REST control, callbacks.

Entry points
------------
* ``await run_conference(channel, dial) -> DialResult`` runs ``<Dial><Conference>`` on a
  :class:`~trunkline.gateway.switch.channel.SipCallChannel` (``SipCallChannel.dial`` delegates
  here when the ``<Dial>`` holds a ``<Conference>``). It returns when the participant leaves the
  room (kicked, conference ended, ``hangupOnStar``, ``timeLimit``) so the TwiML goes on after
  ``<Dial>``, and raises :class:`~trunkline.gateway.twiml.channel.CallEnded` when the caller hung up.
* :func:`service_for` ``(switch)`` is the node's :class:`ConferenceService` (rooms, members,
  callbacks, recording); the REST :class:`~trunkline.gateway.api.control.ConferenceControl` over it
  is :func:`trunkline.gateway.switch.conference_control.conference_control` ``(switch, calls=...)``.

Rooms are scoped per account by friendly name; while one is live (``init`` or ``in-progress``) a
second ``<Conference>`` with the same name joins it, once it is ``completed`` the name makes a new
room with a new ``CF`` SID. Each room is a :class:`~trunkline.media.room.ConferenceRoom` fed by the
media engine through :class:`~trunkline.media.room_engine.EngineRoom`: one mix per 20 ms tick, everyone
hears ``total - own``, mute/hold/coach are masks (DESIGN.md section 6).

Behaviour (Twilio's, unless said otherwise):

* ``startConferenceOnEnter``: the room starts when such a participant joins; before that the
  participants are not mixed and each hears its ``waitUrl`` (built-in hold music for Twilio's
  default, :data:`~trunkline.gateway.twiml.verbs.DEFAULT_WAIT_URL`; an audio file or
  ``<Play>/<Say>/<Pause>/<Redirect>`` TwiML looped; silence when empty).
* ``endConferenceOnExit``: when such a participant leaves, the room ends and everybody leaves it
  (their TwiML continues after ``<Dial>``; with nothing after it they are hung up). The room also
  ends when its last participant leaves.
* ``beep`` true/false/onEnter/onExit; ``muted``; ``coach`` (CallSid of the coached participant:
  only they hear the coach); ``participantLabel``; ``maxParticipants`` (the first participant
  sets it; a participant beyond it gets ``DialCallStatus=failed``).
* ``record="record-from-start"``: the mix is recorded from the start of the conference with the
  crash-safe recorder (8 kHz WAV, ``trim``), stored as a Recording with ``conference_sid`` and
  source ``Conference``; ``recordingStatusCallback`` gets ``in-progress``/``completed`` as asked.
* Status callbacks: see :mod:`trunkline.gateway.switch.conference_events`.
* DTMF from a participant (RFC 4733, or in-band when no telephone-event was negotiated) fires
  ``participant-dtmf``. RFC 4733 events are not audio, so they are never mixed; in-band tones are
  NOT removed from the mix (stripping would need a look-ahead delay on every talker; the
  detector decides after 40 ms of tone, too late for the frames already mixed). SIP INFO digits
  are not reported in conferences.
* ``participant-speech-start``/``-stop`` come from the mixer's talker detection (``speaker``).

REST: ``Status=completed`` ends the room, ``AnnounceUrl`` plays to the whole room (or to one
participant), ``Hold``/``HoldUrl`` (built-in hold music without a URL), ``Muted``, ``Coaching``/
``CallSidToCoach``, ``EndConferenceOnExit``, ``BeepOnExit``, ``WaitUrl``; DELETE kicks the
participant; ``participants.create`` places an outbound-api call (through the REST
``CallControl``) whose TwiML joins the room with the request's options (``EarlyMedia`` is accepted
and ignored: the participant is only put in the room once answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from trunkline.gateway.api.control import (
    JsonRecord,
    participant_json,
    recording_json,
)
from trunkline.gateway.api.envelope import account_base, rfc2822
from trunkline.gateway.config import Account
from trunkline.gateway.switch.calls import new_sid
from trunkline.gateway.switch.conference_audio import (
    hold_music,
    play_forever,
    resolve_audio,
)
from trunkline.gateway.switch.conference_events import (
    ConferenceCallback,
    EndReason,
    conference_json,
    participant_params,
)
from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.channel import (
    CallEnded,
    DialResult,
    Interrupt,
    PlayItem,
    PlayOutcome,
)
from trunkline.gateway.twiml.parser import TwimlError
from trunkline.gateway.twiml.webhooks import WebhookError
from trunkline.media.mixer import MixerError, SpeakerEvent
from trunkline.media.recorder import Recorder
from trunkline.media.room import ConferenceRoom
from trunkline.media.room_engine import EngineRoom
from trunkline.media.session import Digit

if TYPE_CHECKING:
    from trunkline.gateway.switch.switch import Switch
    from trunkline.media.stream import RtpStream

__all__ = [
    "Conference",
    "ConferenceChannel",
    "ConferenceService",
    "Member",
    "run_conference",
    "service_for",
]

log = logging.getLogger("trunkline.switch.conference")

#: Twilio's ceiling for ``maxParticipants`` in TwiML; :class:`ConferenceService` may allow more.
TWILIO_MAX_PARTICIPANTS = 250
#: How long ending a conference waits for its members to have left (seconds).
LEAVE_GRACE = 5.0
#: Recording rate of the room mix (the mixer resamples its tap to it).
RECORDING_RATE = 8000


class ConferenceChannel(Protocol):
    """What a conference needs from a call channel (``SipCallChannel`` has all of it)."""

    @property
    def call_sid(self) -> str:
        """The call's SID."""
        ...

    @property
    def answered(self) -> bool:
        """True once the call is answered."""
        ...

    @property
    def is_ended(self) -> bool:
        """True once the call is over."""
        ...

    stream: RtpStream
    ended: asyncio.Future[Any]

    async def answer(self) -> None:
        """Answer the call if needed."""

    async def play(
        self, items: Sequence[PlayItem], *, loop: int = 1, interrupt: Interrupt = Interrupt.NONE
    ) -> PlayOutcome:
        """Play to this participant only (overrides the room's audio while it plays)."""
        ...


@dataclass(slots=True, eq=False)
class Member:
    """A participant of a live conference (its REST record is built from these fields)."""

    call_sid: str
    channel: ConferenceChannel
    noun: v.Conference
    joined: float
    muted: bool = False
    hold: bool = False
    coaching: bool = False
    call_sid_to_coach: str | None = None
    label: str | None = None
    start_conference_on_enter: bool = True
    end_conference_on_exit: bool = False
    beep: str = "true"
    status: str = "connected"
    left: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    wait_task: asyncio.Task[None] | None = None
    hold_task: asyncio.Task[None] | None = None
    hold_url: str | None = None
    hold_method: str = "POST"
    hangup_on_star: bool = False
    digit_callback: Callable[[Digit], None] | None = None

    @property
    def stream(self) -> RtpStream:
        """The participant's RTP stream."""
        return self.channel.stream

    @property
    def key(self) -> Any:
        """The participant's id inside the :class:`ConferenceRoom` (``EngineRoom`` keys by stream)."""
        return self.channel.stream

    def stop_music(self) -> None:
        """Stop the wait/hold music loop (and the prompt it was playing)."""
        playing = False
        for task in (self.wait_task, self.hold_task):
            if task is not None and not task.done():
                task.cancel()
                playing = True
        self.wait_task = self.hold_task = None
        if playing:
            # Cancelling a task awaiting ``RtpStream.play`` does not always stop the prompt
            # (the task's cancel marks the play future done first), so stop it here.
            self.stream.stop_playback()

    def leave(self, reason: str) -> None:
        """Ask the participant's ``<Dial>`` to return (kick, conference end, ``*``)."""
        if not self.left.done():
            self.left.set_result(reason)


@dataclass(slots=True, eq=False)
class _RoomRecording:
    sid: str
    recorder: Recorder
    started: float
    noun: v.Conference


@dataclass(slots=True, eq=False)
class Conference:
    """One room: its record fields, mixer, members and callback subscription."""

    sid: str
    account: Account
    friendly_name: str
    created: float
    room: ConferenceRoom
    mixer: EngineRoom
    updated: float = 0.0
    status: str = "init"
    region: str = "us1"
    max_participants: int = TWILIO_MAX_PARTICIPANTS
    members: dict[str, Member] = field(default_factory=dict)
    callback: ConferenceCallback | None = None
    sequence: int = 0
    reason_ended: str | None = None
    call_sid_ending: str | None = None
    record_noun: v.Conference | None = None
    recording: _RoomRecording | None = None

    @property
    def live(self) -> bool:
        """True until the conference is ``completed``."""
        return self.status != "completed"

    def to_json(self) -> JsonRecord:
        """The Conference record as the REST API serves it."""
        return conference_json(
            self.account.sid,
            self.sid,
            self.friendly_name,
            status=self.status,
            created=self.created,
            updated=self.updated or self.created,
            region=self.region,
            reason_conference_ended=self.reason_ended,
            call_sid_ending_conference=self.call_sid_ending,
        )


_SERVICES: weakref.WeakKeyDictionary[Switch, ConferenceService] = weakref.WeakKeyDictionary()


def service_for(switch: Switch) -> ConferenceService:
    """The conference service of ``switch`` (created on first use)."""
    service = _SERVICES.get(switch)
    if service is None:
        service = _SERVICES[switch] = ConferenceService(switch)
    return service


async def run_conference(channel: Any, dial: v.Dial) -> DialResult:
    """``<Dial><Conference>``: the entry point ``SipCallChannel.dial`` delegates to."""
    from trunkline.gateway.switch.switch import Switch

    switch = channel.host
    if not isinstance(switch, Switch):
        raise TypeError(f"the channel's host is a {type(switch).__name__}, not a Switch")
    noun = next(n for n in dial.nouns if isinstance(n, v.Conference))
    return await service_for(switch).join(channel, dial, noun)


class ConferenceService:
    """Every conference of one switch (the REST control over them is in ``conference_control``)."""

    def __init__(self, switch: Switch) -> None:
        self.switch = switch
        self.rooms: dict[tuple[str, str], Conference] = {}
        self.by_sid: dict[str, Conference] = {}
        self.max_participants = TWILIO_MAX_PARTICIPANTS
        self.pending: dict[str, tuple[Conference, v.Conference]] = {}
        """Dialled-out participants (call SID -> room and options) until their call joins."""
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- helpers -----------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, logging (not raising) its failure."""

        async def guarded() -> None:
            try:
                await coro
            except (asyncio.CancelledError, CallEnded):
                raise
            except Exception:
                log.exception("conference %s failed", what)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def put(self, table: str, record: JsonRecord) -> None:
        """Store ``record`` in ``table`` (a store failure is logged, never fatal to the call)."""
        try:
            await self.switch.store.put(table, record)
        except Exception:
            log.exception("cannot store %s record", table)

    async def _save(self, conf: Conference) -> None:
        conf.updated = self.switch.clock()
        await self.put("conferences", conf.to_json())

    def _member_json(self, conf: Conference, m: Member) -> JsonRecord:
        return participant_json(
            conf.account.sid,
            conf.sid,
            m.call_sid,
            created=m.joined,
            updated=self.switch.clock(),
            status=m.status,
            muted=m.muted,
            hold=m.hold,
            coaching=m.coaching,
            call_sid_to_coach=m.call_sid_to_coach,
            label=m.label,
            start_conference_on_enter=m.start_conference_on_enter,
            end_conference_on_exit=m.end_conference_on_exit,
        )

    async def save_member(self, conf: Conference, m: Member) -> JsonRecord:
        """Store and return the participant record of ``m``."""
        record = self._member_json(conf, m)
        await self.put("participants", record)
        return record

    def event(self, conf: Conference, event: str, m: Member | None = None, **extra: str | None) -> None:
        """Post ``event`` to the conference's status callback if it was subscribed to."""
        callback = conf.callback
        if callback is None or not callback.wants(event):
            return
        conf.sequence += 1
        now = self.switch.clock()
        params = [
            ("AccountSid", conf.account.sid),
            ("ConferenceSid", conf.sid),
            ("FriendlyName", conf.friendly_name),
            ("StatusCallbackEvent", event),
            ("SequenceNumber", str(conf.sequence)),
            ("Timestamp", rfc2822(now) or ""),
        ]
        if m is not None:
            params += participant_params(
                call_sid=m.call_sid,
                muted=m.muted,
                hold=m.hold,
                coaching=m.coaching,
                end_conference_on_exit=m.end_conference_on_exit,
                start_conference_on_enter=m.start_conference_on_enter,
                label=m.label,
                call_sid_to_coach=m.call_sid_to_coach,
            )
        params += [(k, val) for k, val in extra.items() if val is not None]
        self.switch.callbacks.send(callback.url, callback.method, params, conf.account.auth_token)

    def call_params(self, conf: Conference, m: Member) -> list[tuple[str, str]]:
        """Request parameters for a participant's wait/hold/announce URL fetches."""
        active = self.switch.calls.get(m.call_sid)
        params = self.switch.context(active).params() if active is not None else [("CallSid", m.call_sid)]
        return [*params, ("ConferenceSid", conf.sid), ("FriendlyName", conf.friendly_name)]

    # -- rooms -------------------------------------------------------------------------------------

    def find(self, account_sid: str, sid_or_name: str) -> Conference | None:
        """The live conference with this SID or friendly name in the account."""
        conf = self.by_sid.get(sid_or_name) or self.rooms.get((account_sid, sid_or_name))
        if conf is None or conf.account.sid != account_sid or not conf.live:
            return None
        return conf

    async def room_for(self, account: Account, noun: v.Conference) -> Conference:
        """The live room ``noun.name`` of ``account``, created (``init``, new ``CF`` SID) if needed."""
        conf = self.rooms.get((account.sid, noun.name))
        if conf is not None and conf.live:
            return conf
        sid = new_sid("CF")
        room = ConferenceRoom(sid)
        conf = Conference(
            sid,
            account,
            noun.name,
            self.switch.clock(),
            room,
            EngineRoom(room),
            region=noun.region or "us1",
            max_participants=min(max(2, noun.max_participants), self.max_participants),
        )
        conf.mixer.on_events = lambda events: self._on_speakers(conf, events)
        self.rooms[(account.sid, noun.name)] = conf
        self.by_sid[sid] = conf
        await self._save(conf)
        log.info("conference %s (%s) created", sid, noun.name)
        return conf

    # -- joining -----------------------------------------------------------------------------------

    async def join(self, channel: ConferenceChannel, dial: v.Dial, noun: v.Conference) -> DialResult:
        """Put the call in the room ``noun.name`` until it leaves (see the module docstring)."""
        call_sid = channel.call_sid
        active = self.switch.calls.get(call_sid)
        if active is None:
            raise RuntimeError(f"call {call_sid} is not a live call of this switch")
        pending = self.pending.pop(call_sid, None)
        conf: Conference | None = None
        if pending is not None:
            conf, noun = pending
            if not conf.live:
                conf = None
        if not channel.answered:
            await channel.answer()
        if conf is None:
            conf = await self.room_for(active.account, noun)
        if len(conf.members) >= conf.max_participants:
            log.info("conference %s is full: %s stays out", conf.sid, call_sid)
            return DialResult("failed", extra={"ConferenceSid": conf.sid})
        m = Member(
            call_sid,
            channel,
            noun,
            self.switch.clock(),
            muted=noun.muted,
            coaching=noun.coach is not None,
            call_sid_to_coach=noun.coach,
            label=noun.participant_label,
            start_conference_on_enter=noun.start_conference_on_enter,
            end_conference_on_exit=noun.end_conference_on_exit,
            beep=noun.beep,
        )
        try:
            self._admit(conf, m)
        except MixerError as exc:
            log.warning("call %s cannot join conference %s: %s", call_sid, conf.sid, exc)
            return DialResult("failed", extra={"ConferenceSid": conf.sid})
        reason = "hangup"
        try:
            await self._joined(conf, m, dial)
            waits: set[asyncio.Future[Any]] = {m.left, channel.ended}
            timeout = dial.time_limit if dial.time_limit > 0 else None
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if m.left.done():
                reason = m.left.result()
            elif not channel.is_ended:
                reason = "time-limit"
        except asyncio.CancelledError:
            reason = "redirected"  # the call's TwiML was replaced (REST update) or the switch closes
            raise
        finally:
            await self._leave(conf, m, reason)
        if channel.is_ended:
            raise CallEnded
        duration = round(self.switch.clock() - m.joined)
        return DialResult("completed", duration=duration, extra={"ConferenceSid": conf.sid})

    def _admit(self, conf: Conference, m: Member) -> None:
        """Put the member's stream in the mixer and the engine's room."""
        coached = conf.members.get(m.call_sid_to_coach or "")
        conf.mixer.join(
            m.stream,
            m.call_sid,
            muted=m.muted,
            coach_of=coached.stream if coached is not None else None,
            start_conference_on_enter=m.start_conference_on_enter,
            beep=m.beep,
        )
        self.switch.engine.join_room(m.stream, conf.mixer)
        conf.members[m.call_sid] = m

        def on_digit(digit: Digit) -> None:
            self.event(conf, "participant-dtmf", m, Digits=digit.digit, DtmfSource=digit.source)
            if digit.digit == "*" and m.hangup_on_star:
                m.leave("hangup-on-star")

        m.digit_callback = on_digit
        m.stream.digit_callbacks.append(on_digit)

    async def _joined(self, conf: Conference, m: Member, dial: v.Dial) -> None:
        noun = m.noun
        m.hangup_on_star = dial.hangup_on_star
        if conf.callback is None and noun.status_callback:
            conf.callback = ConferenceCallback(
                noun.status_callback, noun.status_callback_method, frozenset(noun.status_callback_event)
            )
        if conf.record_noun is None and noun.record in ("record-from-start", "true"):
            conf.record_noun = noun
        await self.save_member(conf, m)
        self.event(conf, "participant-join", m)
        if conf.room.started and conf.status == "init":
            await self._start(conf)
        elif not conf.room.started:
            self.play_wait(conf, m)
        elif conf.record_noun is not None and conf.recording is None:
            await self._start_recording(conf)
        await self._save(conf)

    async def _start(self, conf: Conference) -> None:
        conf.status = "in-progress"
        for m in conf.members.values():
            m.stop_music()
        await self._save(conf)
        self.event(conf, "conference-start")
        log.info("conference %s started", conf.sid)
        if conf.record_noun is not None and conf.recording is None:
            await self._start_recording(conf)

    async def _leave(self, conf: Conference, m: Member, reason: str) -> None:
        m.stop_music()
        if m.digit_callback is not None:
            with contextlib.suppress(ValueError):
                m.stream.digit_callbacks.remove(m.digit_callback)
        stream = m.stream
        for other in conf.members.values():  # coaches of the leaver become ordinary listeners
            if other is not m and other.call_sid_to_coach == m.call_sid:
                conf.room.set_coach(other.key, None)
        self.switch.engine.leave_room(stream)
        with contextlib.suppress(KeyError, MixerError):
            conf.mixer.leave(stream, beep=m.beep)
        with contextlib.suppress(Exception):
            stream.stop_playback()
        conf.members.pop(m.call_sid, None)
        m.status = "complete"
        await self.save_member(conf, m)
        kicked = reason == "kicked"
        self.event(conf, "participant-leave", m, ReasonParticipantLeft=_LEFT.get(reason, reason))
        log.info("call %s left conference %s (%s)", m.call_sid, conf.sid, reason)
        if conf.live:
            if m.end_conference_on_exit:
                why = EndReason.MODERATOR_KICKED if kicked else EndReason.MODERATOR_LEFT
                await self.end(conf, why, m.call_sid)
            elif not conf.members:
                await self.end(conf, EndReason.LAST_KICKED if kicked else EndReason.LAST_LEFT, m.call_sid)
            else:
                await self._save(conf)
        m.gone.set()

    async def end(self, conf: Conference, reason: str, call_sid: str | None) -> None:
        """End the conference: everybody leaves, the recording is finished, ``conference-end`` fires."""
        if not conf.live:
            return
        conf.status = "completed"
        conf.reason_ended = reason
        conf.call_sid_ending = call_sid
        if self.rooms.get((conf.account.sid, conf.friendly_name)) is conf:
            del self.rooms[(conf.account.sid, conf.friendly_name)]
        self.by_sid.pop(conf.sid, None)
        leaving = list(conf.members.values())
        for m in leaving:
            m.leave("conference-ended")
        if leaving:  # their participant-leave events come before conference-end, as on Twilio
            gone = [asyncio.ensure_future(m.gone.wait()) for m in leaving]
            _, late = await asyncio.wait(gone, timeout=LEAVE_GRACE)
            for task in late:
                task.cancel()
        await self._stop_recording(conf)
        await self._save(conf)
        self.event(
            conf,
            "conference-end",
            CallSidEndingConference=call_sid,
            ReasonConferenceEnded=reason,
            Reason=EndReason.text(reason, call_sid),
        )
        log.info("conference %s ended: %s", conf.sid, reason)

    # -- media around the mix ------------------------------------------------------------------------

    def music(self, conf: Conference, m: Member, url: str | None, method: str) -> asyncio.Task[Any] | None:
        """Loop ``url`` (wait or hold music) on the participant; None plays nothing (silence)."""
        if not url:
            return None
        if url == v.DEFAULT_WAIT_URL:
            rate = m.stream.player.sample_rate
            return self.spawn(m.stream.play((hold_music(rate), rate), loop=0), f"{conf.sid} music")

        async def run() -> None:
            try:
                items = await resolve_audio(
                    self.switch.webhooks, url, method, self.call_params(conf, m), conf.account.auth_token
                )
            except (WebhookError, TwimlError) as exc:
                log.warning("conference %s: wait/hold URL %s unusable: %s", conf.sid, url, exc)
                return
            await play_forever(m.channel, items)

        return self.spawn(run(), f"{conf.sid} music")

    def play_wait(self, conf: Conference, m: Member) -> None:
        """(Re)start the participant's ``waitUrl`` music."""
        m.stop_music()
        m.wait_task = self.music(conf, m, m.noun.wait_url, m.noun.wait_method)

    def _on_speakers(self, conf: Conference, events: list[SpeakerEvent]) -> None:
        for event in events:
            m = conf.members.get(event.participant)
            if m is not None:
                self.event(conf, event.callback_event, m)

    async def _start_recording(self, conf: Conference) -> None:
        noun = conf.record_noun
        assert noun is not None
        sid = new_sid("RE")
        directory = self.switch.recordings_dir
        directory.mkdir(parents=True, exist_ok=True)
        trim = noun.trim == "trim-silence"
        recorder = Recorder(directory / f"{sid}.wav", RECORDING_RATE, trim_silence=trim)
        now = self.switch.clock()
        conf.recording = _RoomRecording(sid, recorder, now, noun)
        conf.room.add_mix_tap(recorder.push, rate=RECORDING_RATE)
        record = recording_json(
            conf.account.sid, sid, created=now, conference_sid=conf.sid, source="Conference"
        )
        record["_path"] = str(recorder.path)
        await self.put("recordings", record)
        self._recording_event(conf, conf.recording, "in-progress", -1)

    async def _stop_recording(self, conf: Conference) -> None:
        rec = conf.recording
        if rec is None:
            return
        conf.recording = None
        conf.room.remove_mix_tap(rec.recorder.push)
        try:
            result = await rec.recorder.finish_async()
        except Exception:
            log.exception("conference %s: recording %s failed", conf.sid, rec.sid)
            return
        duration = round(result.duration_s)
        record = recording_json(
            conf.account.sid,
            rec.sid,
            created=rec.started,
            conference_sid=conf.sid,
            status="completed",
            source="Conference",
            duration=duration,
        )
        record["_path"] = str(result.path)
        await self.put("recordings", record)
        self._recording_event(conf, rec, "completed", duration)

    def _recording_event(self, conf: Conference, rec: _RoomRecording, status: str, duration: int) -> None:
        noun = rec.noun
        if not noun.recording_status_callback or status not in noun.recording_status_callback_event:
            return
        url = f"{self.switch.public_url}{account_base(conf.account.sid)}/Recordings/{rec.sid}"
        params = [
            ("AccountSid", conf.account.sid),
            ("ConferenceSid", conf.sid),
            ("RecordingSid", rec.sid),
            ("RecordingUrl", url),
            ("RecordingStatus", status),
            ("RecordingDuration", str(duration)),
            ("RecordingChannels", "1"),
            ("RecordingStartTime", rfc2822(rec.started) or ""),
            ("RecordingSource", "Conference"),
        ]
        method = noun.recording_status_callback_method
        token = conf.account.auth_token
        self.switch.callbacks.send(noun.recording_status_callback, method, params, token)


#: Twilio's ``ReasonParticipantLeft`` for why a member left.
_LEFT = {
    "hangup": "participant_hung_up",
    "kicked": "participant_updated_via_api",
    "redirected": "participant_updated_via_api",
    "conference-ended": "conference_ended",
    "hangup-on-star": "participant_hung_up",
    "time-limit": "participant_time_limit_exceeded",
}
