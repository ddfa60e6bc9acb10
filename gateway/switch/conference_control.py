"""The REST ``ConferenceControl`` of the switch: live control of the conferences of
:mod:`trunkline.gateway.switch.conference`.

* ``update_conference``: ``Status=completed`` ends the room (``conference-ended-via-api``);
  ``AnnounceUrl`` (audio file or ``<Say>/<Play>/<Pause>`` TwiML) is rendered to PCM and mixed into
  the whole room after earlier announcements (``announcement-end`` / ``announcement-fail``).
* ``update_participant``: ``Muted``; ``Hold`` with ``HoldUrl``/``HoldMethod`` (built-in hold music
  without a URL; a held participant is not mixed and hears its music); ``Coaching`` /
  ``CallSidToCoach``; ``EndConferenceOnExit``; ``BeepOnExit``; ``WaitUrl``; ``AnnounceUrl`` played
  to that participant only (over the room audio, then its wait/hold music resumes).
* ``remove_participant`` (DELETE): the participant's ``<Dial>`` returns and its TwiML goes on.
* ``add_participant``: an outbound-api call through the REST ``CallControl`` whose TwiML is
  ``<Dial><Conference>`` of the room; the request's options (``Label``, ``Muted``, ``Beep``,
  ``StartConferenceOnEnter``, ``EndConferenceOnExit``, ``Coaching``/``CallSidToCoach``, ``WaitUrl``,
  ``Record``) are applied when it joins; its ``StatusCallback`` is the call's own. The participant
  record goes ``queued`` -> ``ringing`` -> ``connecting`` -> ``connected`` (or ``failed``).
  ``EarlyMedia`` is accepted and ignored (the participant is put in the room once answered).

The server wires it: ``controls.conferences = conference_control(switch, calls=controls.calls)``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from trunkline.gateway.api.control import (
    CallControl,
    ConferenceUpdate,
    ControlError,
    JsonRecord,
    OutboundCall,
    ParticipantRequest,
    ParticipantUpdate,
    participant_json,
)
from trunkline.gateway.switch.calls import CallStatus
from trunkline.gateway.switch.conference import (
    RECORDING_RATE,
    Conference,
    ConferenceService,
    Member,
    log,
    service_for,
)
from trunkline.gateway.switch.conference_audio import render, resolve_audio
from trunkline.gateway.switch.conference_events import EndReason
from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.parser import TwimlError
from trunkline.gateway.twiml.webhooks import WebhookError
from trunkline.media.player import PcmSource

if TYPE_CHECKING:
    from trunkline.gateway.switch.switch import Switch

__all__ = ["CONFERENCE_FULL", "SwitchConferenceControl", "conference_control"]

#: Error code answered when a dial-out would exceed the room's ``maxParticipants``.
CONFERENCE_FULL = 20400
#: How often a dialled-out participant's call is looked at until it joins (seconds).
PENDING_POLL = 0.05


def conference_control(switch: Switch, *, calls: CallControl | None = None) -> SwitchConferenceControl:
    """The REST conference control of ``switch``; ``calls`` (the REST ``CallControl``) enables dial-out."""
    return SwitchConferenceControl(service_for(switch), calls=calls)


class SwitchConferenceControl:
    """``ConferenceControl`` for the REST write handlers (see the module docstring)."""

    def __init__(self, service: ConferenceService, *, calls: CallControl | None = None) -> None:
        self.service = service
        self.calls = calls

    def _live(self, account_sid: str, conference_sid: str) -> Conference:
        conf = self.service.find(account_sid, conference_sid)
        if conf is None:
            raise ControlError.not_found(f"/Conferences/{conference_sid}")
        return conf

    def _member(self, account_sid: str, conference_sid: str, call_sid: str) -> tuple[Conference, Member]:
        conf = self._live(account_sid, conference_sid)
        m = conf.members.get(call_sid)
        if m is None:
            raise ControlError.not_found(f"/Conferences/{conference_sid}/Participants/{call_sid}")
        return conf, m

    async def update_conference(
        self, account_sid: str, conference_sid: str, update: ConferenceUpdate
    ) -> JsonRecord:
        """End the conference (``Status=completed``) and/or announce ``AnnounceUrl`` to the room."""
        conf = self._live(account_sid, conference_sid)
        if update.announce_url:
            self.service.spawn(
                self._announce_room(conf, update.announce_url, update.announce_method), "announce"
            )
        if update.status == "completed":
            await self.service.end(conf, EndReason.API, None)
        return conf.to_json()

    async def _announce_room(self, conf: Conference, url: str, method: str) -> None:
        params = [("AccountSid", conf.account.sid), ("ConferenceSid", conf.sid)]
        try:
            items = await resolve_audio(
                self.service.switch.webhooks, url, method, params, conf.account.auth_token
            )
            engine = self.service.switch.engine
            pcm = await render(items, RECORDING_RATE, engine.tts, engine.audio_loader)
        except Exception as exc:
            log.warning("conference %s: announcement %s failed: %s", conf.sid, url, exc)
            self.service.event(conf, "announcement-fail", ReasonAnnouncementFailed=str(exc))
            return

        def done(played: bool) -> None:
            self.service.event(conf, "announcement-end" if played else "announcement-fail")

        conf.room.announce(PcmSource(pcm, RECORDING_RATE), on_done=done)

    async def _announce_member(self, conf: Conference, m: Member, url: str, method: str) -> None:
        try:
            items = await resolve_audio(
                self.service.switch.webhooks,
                url,
                method,
                self.service.call_params(conf, m),
                conf.account.auth_token,
            )
        except (WebhookError, TwimlError) as exc:
            self.service.event(conf, "announcement-fail", m, ReasonAnnouncementFailed=str(exc))
            return
        waiting, held = m.wait_task is not None, m.hold_task is not None
        m.stop_music()
        try:
            for item, loop in items:
                await m.channel.play([item], loop=max(1, loop))
        finally:
            if m.call_sid in conf.members:
                if held and m.hold:
                    m.hold_task = self.service.music(conf, m, m.hold_url, m.hold_method)
                elif waiting and not conf.room.started:
                    self.service.play_wait(conf, m)
        self.service.event(conf, "announcement-end", m)

    async def add_participant(
        self, account_sid: str, conference: str, request: ParticipantRequest
    ) -> JsonRecord:
        """Dial ``request.to``; the answered call joins the room with the request's options."""
        if self.calls is None:
            raise ControlError(20503, "Service Unavailable: dialling out is not available on this node", 503)
        account = self.service.switch.config.account(account_sid)
        if account is None:
            raise ControlError.not_found(f"/Accounts/{account_sid}")
        conf = self.service.find(account_sid, conference)
        if conf is None:
            if conference.startswith("CF") and len(conference) == 34:
                raise ControlError.not_found(f"/Conferences/{conference}")
            conf = await self.service.room_for(account, v.Conference(conference))
        if len(conf.members) >= conf.max_participants:
            raise ControlError(CONFERENCE_FULL, f"Conference {conf.sid} is full", 400)
        noun = v.Conference(
            conf.friendly_name,
            muted=request.muted,
            beep=request.beep,
            start_conference_on_enter=request.start_conference_on_enter,
            end_conference_on_exit=request.end_conference_on_exit,
            wait_url=request.wait_url if request.wait_url is not None else v.DEFAULT_WAIT_URL,
            wait_method=request.wait_method,
            record="record-from-start" if request.record else "do-not-record",
            coach=request.call_sid_to_coach if request.coaching else None,
            participant_label=request.label,
        )
        twiml = f"<Response><Dial><Conference>{escape(conf.friendly_name)}</Conference></Dial></Response>"
        call = await self.calls.create_call(
            OutboundCall(
                account_sid,
                request.to,
                request.from_,
                twiml=twiml,
                status_callback=request.status_callback,
                timeout=request.timeout,
                caller_id=request.caller_id,
                time_limit=request.time_limit,
                sip_auth=request.sip_auth,
            )
        )
        self.service.pending[call.sid] = (conf, noun)
        created = self.service.switch.clock()

        def record(status: str) -> JsonRecord:
            return participant_json(
                account_sid,
                conf.sid,
                call.sid,
                created=created,
                updated=self.service.switch.clock(),
                status=status,
                muted=noun.muted,
                coaching=noun.coach is not None,
                call_sid_to_coach=noun.coach,
                label=noun.participant_label,
                start_conference_on_enter=noun.start_conference_on_enter,
                end_conference_on_exit=noun.end_conference_on_exit,
            )

        queued = record("queued")
        await self.service.put("participants", queued)
        self.service.spawn(self._follow(call.sid, record), f"{conf.sid} dial-out")
        return queued

    async def _follow(self, call_sid: str, record: Callable[[str], JsonRecord]) -> None:
        """Keep a dialled-out participant's record current until its call joins or fails."""
        current = "queued"
        while call_sid in self.service.pending:
            active = self.service.switch.calls.get(call_sid)
            status = active.call.status if active is not None else CallStatus.FAILED
            new = current
            if status is CallStatus.RINGING:
                new = "ringing"
            elif status is CallStatus.IN_PROGRESS:
                new = "connecting"
            elif status.is_final:
                new = "failed"
            if new != current and call_sid in self.service.pending:
                current = new
                await self.service.put("participants", record(new))
            if new == "failed":
                entry = self.service.pending.pop(call_sid, None)
                conf = entry[0] if entry is not None else None
                waiting = [c for c, _ in self.service.pending.values()]
                if conf is not None and conf.live and not conf.members and conf not in waiting:
                    # Nobody ever joined the room this dial-out created: it ends unstarted.
                    await self.service.end(conf, EndReason.LAST_LEFT, None)
                return
            await asyncio.sleep(PENDING_POLL)

    async def update_participant(
        self, account_sid: str, conference_sid: str, call_sid: str, update: ParticipantUpdate
    ) -> JsonRecord:
        """Mute, hold (with ``HoldUrl``), announce to, coach with, or change a participant."""
        conf, m = self._member(account_sid, conference_sid, call_sid)
        if update.muted is not None and update.muted != m.muted:
            m.muted = update.muted
            conf.room.set_muted(m.key, m.muted)
            self.service.event(conf, "participant-mute" if m.muted else "participant-unmute", m)
        if update.hold is not None and (update.hold != m.hold or (m.hold and update.hold_url)):
            self._set_hold(conf, m, update.hold, update.hold_url, update.hold_method or "GET")
        modified = False
        if update.coaching is not None or update.call_sid_to_coach is not None:
            coaching = m.coaching if update.coaching is None else update.coaching
            target = update.call_sid_to_coach or m.call_sid_to_coach
            coached = conf.members.get(target or "") if coaching else None
            if coaching and coached is None:
                raise ControlError(21220, f"CallSidToCoach {target} is not a participant of {conf.sid}", 400)
            m.coaching, m.call_sid_to_coach = coaching, target if coaching else None
            conf.room.set_coach(m.key, coached.key if coached is not None else None)
            modified = True
        if update.end_conference_on_exit is not None:
            m.end_conference_on_exit = update.end_conference_on_exit
            modified = True
        if update.beep_on_exit is not None:
            m.beep = "onExit" if update.beep_on_exit else "false"
        if update.wait_url is not None:
            m.noun = replace(m.noun, wait_url=update.wait_url, wait_method=update.wait_method or "POST")
            if m.wait_task is not None:
                self.service.play_wait(conf, m)
        if modified:
            self.service.event(conf, "participant-modify", m)
        if update.announce_url:
            url, method = update.announce_url, update.announce_method or "POST"
            self.service.spawn(self._announce_member(conf, m, url, method), "announce")
        return await self.service.save_member(conf, m)

    def _set_hold(self, conf: Conference, m: Member, hold: bool, url: str | None, method: str) -> None:
        changed = hold != m.hold
        m.hold = hold
        conf.room.set_hold(m.key, hold)
        m.stop_music()
        if hold:
            m.hold_url, m.hold_method = url or v.DEFAULT_WAIT_URL, method
            m.hold_task = self.service.music(conf, m, m.hold_url, method)
        elif not conf.room.started:
            self.service.play_wait(conf, m)
        if changed:
            self.service.event(conf, "participant-hold" if hold else "participant-unhold", m)

    async def remove_participant(self, account_sid: str, conference_sid: str, call_sid: str) -> None:
        """Kick the participant: its ``<Dial>`` returns and its TwiML goes on after it."""
        _, m = self._member(account_sid, conference_sid, call_sid)
        m.leave("kicked")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(m.gone.wait(), 5.0)
