"""``<Dial>``: ring ``Number``/``Sip``/``Client`` nouns in parallel and bridge the first to answer.

Entry point, called by :meth:`SipCallChannel.dial <trunkline.gateway.switch.channel.SipCallChannel.dial>`::

    async def run_dial(channel: SipCallChannel, dial: verbs.Dial) -> DialResult

``<Dial><Queue>`` goes to :func:`trunkline.gateway.switch.queues.dial_queue` and
``<Dial><Conference>`` to ``trunkline.gateway.switch.conference.run_conference(channel, dial)``
(:class:`~trunkline.gateway.switch.channel.FeatureUnavailable` until that module exists).

What happens, as on Twilio:

* every noun becomes a child :class:`~trunkline.gateway.switch.calls.Call` (direction
  ``outbound-dial``, ``ParentCallSid`` = the caller's SID, ``From`` = ``callerId`` or the caller's
  ``From``), stored and reported to the noun's ``statusCallback`` for the events it asks for;
* ``Number`` goes out through the outbound trunks (``TrunkManager.dial``: failover on 5xx/408),
  ``Sip`` to its URI (``username``/``password`` answer digest challenges, ``X-`` headers come from
  the URI's query ``?X-Foo=bar``), ``Client`` to every live registration of that endpoint at once;
* while the children ring the caller hears ringback (``ringTone``, US by default) or the callee's
  early media (a 183 with SDP is bridged at once); the first 2xx wins and every other INVITE is
  CANCELled (RFC 3261 section 9.1); ``timeout`` seconds without an answer is ``no-answer``;
* the winner gets its ``sendDigits`` and its whisper (``url`` TwiML run on the callee's leg: a
  ``<Hangup>`` there ends the child unbridged, ``DialBridged=false``), then both legs are bridged
  through the media engine (relayed when the codecs match, else transcoded) until either side
  hangs up, the caller presses ``*`` (``hangupOnStar``) or ``timeLimit`` runs out;
* ``record`` writes the crash-safe WAV of the bridge (``-dual``: caller on channel 0, callee on 1)
  and stores a Recording record (``source`` ``DialVerb``, file path in ``_path``), ``in-progress``
  from the start and ``completed`` at the end;
* with ``answerOnBridge`` an unanswered caller is answered only when the callee answers (it hears
  the 180 its INVITE got meanwhile). The interpreter currently answers before every verb, so this
  path is only reached once it leaves ``<Dial answerOnBridge="true">`` unanswered.

The caller hanging up while the children ring CANCELs them and raises
:class:`~trunkline.gateway.twiml.channel.CallEnded` (the interpreter then posts
``DialCallStatus=canceled``); once bridged it BYEs the child and the result is ``completed``.

Services: the switch's ``trunks`` (``TrunkManager``) and ``location`` (``LocationService``)
attributes when present, else those given to :func:`install`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin
from weakref import WeakKeyDictionary

from trunkline.gateway.api.control import JsonRecord, recording_json
from trunkline.gateway.api.envelope import rfc2822
from trunkline.gateway.sip.sdp import (
    LocalMedia,
    SdpError,
    SessionDescription,
    build_offer,
    parse_sdp,
    process_answer,
)
from trunkline.gateway.sip.uri import SipUri, parse_uri
from trunkline.gateway.switch.bridge import bridge_until_end, run_whisper
from trunkline.gateway.switch.calls import Call, CallStatus, StatusCallback, new_sid, status_for_failure
from trunkline.gateway.switch.channel import FeatureUnavailable, SipCallChannel
from trunkline.gateway.switch.legs import Answered, Ended, Failed, OutboundLeg, Provisional
from trunkline.gateway.switch.switch import ActiveCall
from trunkline.gateway.twiml import verbs as v
from trunkline.gateway.twiml.channel import CallEnded, DialResult, RecordResult
from trunkline.media.tones import TONES

if TYPE_CHECKING:
    from trunkline.gateway.switch.location import LocationService
    from trunkline.gateway.switch.switch import Switch
    from trunkline.gateway.switch.trunks import TrunkManager
    from trunkline.media.session import Recording
    from trunkline.media.stream import RtpStream

__all__ = [
    "Child",
    "DialServices",
    "bridge_until_end",
    "install",
    "run_dial",
    "run_whisper",
    "services",
    "sip_headers",
    "status_for_failure",
]

log = logging.getLogger("trunkline.switch.dial")

#: Headers a ``<Sip>`` URI may carry in its query part (Twilio passes ``X-`` and UUI headers).
_UUI = "user-to-user"


def sip_headers(uri: SipUri) -> list[tuple[str, str]]:
    """The custom headers of a ``<Sip>`` URI's query (``?X-Foo=bar&X-Baz=1``), in order."""
    return [
        (name, value)
        for name, value in uri.headers.items()
        if name.lower().startswith("x-") or name.lower() == _UUI
    ]


@dataclass(slots=True)
class DialServices:
    """What ``<Dial>`` needs beyond the switch: trunk routing and the location service."""

    trunks: TrunkManager | None = None
    location: LocationService | None = None


_INSTALLED: WeakKeyDictionary[Any, DialServices] = WeakKeyDictionary()


def install(switch: Switch, *, trunks: TrunkManager | None, location: LocationService | None) -> None:
    """Give the switch's ``<Dial>`` its trunks and location service (the server does this)."""
    _INSTALLED[switch] = DialServices(trunks, location)


def services(switch: Switch) -> DialServices:
    """The trunks and location service of ``switch`` (its own attributes win)."""
    installed = _INSTALLED.get(switch) or DialServices()
    trunks = getattr(switch, "trunks", None) or installed.trunks
    location = getattr(switch, "location", None) or installed.location
    return DialServices(trunks, location)


def _ringback(ring_tone: str | None) -> str:
    # Twilio's ringTone takes a country code; we have the US and UK cadences.
    return "ringback-uk" if (ring_tone or "").lower() in ("uk", "gb", "ie") else "ringback-us"


def _user_of(caller: str) -> str:
    """The SIP From user for a Twilio caller ID (``+1555…``, ``client:alice``, ``sip:bob@host``)."""
    if caller.startswith("client:"):
        return caller[len("client:") :]
    if caller.startswith(("sip:", "sips:")):
        with contextlib.suppress(Exception):
            return parse_uri(caller).user or "trunkline"
    return caller or "trunkline"


@dataclass(eq=False, slots=True)
class Child:
    """One noun of a ``<Dial>`` being rung: its Call, RTP stream, INVITE(s) and outcome."""

    noun: v.Number | v.Sip | v.Client
    active: ActiveCall
    stream: RtpStream
    local: LocalMedia
    offer: SessionDescription
    legs: list[OutboundLeg] = field(default_factory=list)
    winner: OutboundLeg | None = None
    final: CallStatus | None = None
    sip_code: int | None = None
    early: bool = False
    channel: SipCallChannel | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def call(self) -> Call:
        """The child's call record."""
        return self.active.call

    def cancel_all(self, keep: OutboundLeg | None = None) -> None:
        """CANCEL every INVITE still ringing (but ``keep``)."""
        for leg in self.legs:
            if leg is not keep:
                leg.cancel()


class _Dial:
    """One ``<Dial>`` of Number/Sip/Client nouns on the caller's channel."""

    def __init__(self, switch: Switch, channel: SipCallChannel, dial: v.Dial) -> None:
        self.switch = switch
        self.channel = channel
        self.dial = dial
        parent = switch.calls.get(channel.call_sid)
        if parent is None:
            raise CallEnded
        self.parent = parent
        self.children: list[Child] = []
        self.outcomes: asyncio.Queue[Child] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.ringback: asyncio.Task[Any] | None = None
        self.recording: Recording | None = None
        self.recording_sid: str | None = None
        self.recording_path: Path | None = None
        self.recording_started: float | None = None

    # -- helpers -----------------------------------------------------------------------------------

    def absolute(self, url: str) -> str:
        """``url`` resolved against the caller's current TwiML URL."""
        base = self.parent.source.url or ""
        return urljoin(base, url) if base else url

    def _status_callback(self, noun: v.Number | v.Sip | v.Client) -> StatusCallback | None:
        status = noun.status
        if not status.url:
            return None
        return StatusCallback(self.absolute(status.url), status.method, frozenset(status.events))

    async def _new_child(self, noun: v.Number | v.Sip | v.Client) -> Child:
        switch = self.switch
        parent = self.parent.call
        now = switch.clock()
        if isinstance(noun, v.Number):
            to = noun.number
        elif isinstance(noun, v.Sip):
            to = noun.uri.split("?", 1)[0]
        else:
            to = noun.identity if noun.identity.startswith("client:") else f"client:{noun.identity}"
        call = Call(
            account_sid=parent.account_sid,
            from_=self.dial.caller_id or parent.from_,
            to=to,
            direction="outbound-dial",
            parent_call_sid=parent.sid,
            created=now,
            updated=now,
            status_callback=self._status_callback(noun),
        )
        active = ActiveCall(call, self.parent.account)
        stream = await switch.engine.open_stream()
        local = LocalMedia(stream.local_address, stream.local_port)
        child = Child(noun, active, stream, local, build_offer(local))
        switch.calls[call.sid] = active
        await switch.save(call)
        switch.initiated(active)
        return child

    # -- ringing -----------------------------------------------------------------------------------

    def _watch(self, child: Child, leg: OutboundLeg) -> None:
        child.legs.append(leg)
        child.active.leg = leg
        child.tasks.append(self.loop.create_task(self._watch_leg(child, leg)))

    async def _watch_leg(self, child: Child, leg: OutboundLeg) -> None:
        """Follow one INVITE until its final response (the channel takes its events after)."""
        while True:
            event = await leg.events.get()
            if isinstance(event, Provisional) and event.status in (180, 183):
                if child.call.status is CallStatus.QUEUED:
                    await self.switch.set_status(child.active, CallStatus.RINGING)
                if event.sdp and not child.early:
                    self._early_media(child, event.sdp)
            elif isinstance(event, Answered | Failed | Ended):
                return

    def _early_media(self, child: Child, sdp: bytes) -> None:
        """RFC 3960 gateway model: relay the callee's early media (183 + SDP) to the caller."""
        try:
            child.stream.configure(process_answer(child.offer, parse_sdp(sdp)))
        except (SdpError, ValueError) as exc:
            log.info("dial %s: unusable early media SDP (%s)", child.call.sid, exc)
            return
        if any(c.early for c in self.children) or not self.channel.answered:
            return
        child.early = True
        log.info("dial %s: relaying the callee's early media", child.call.sid)
        self._stop_ringback()
        self.switch.engine.bridge(self.channel.stream, child.stream)

    async def _ring(self, child: Child) -> None:
        """Place the child's INVITE(s) and report when it is answered or has failed."""
        try:
            status, leg = await self._place(child)
        except Exception as exc:  # no route, bad URI, resolution failure
            log.warning("dial %s: %s", child.call.sid, exc)
            status, leg = 404 if isinstance(exc, _NoRoute) else 503, None
        if child.final is not None and status < 300 and leg is not None:
            leg.hangup()  # answered after we gave up on it: BYE
        if child.final is None:
            child.sip_code = status
            if status < 300 and leg is not None:
                child.winner = leg
            else:
                child.final = status_for_failure(status)
        self.outcomes.put_nowait(child)

    async def _place(self, child: Child) -> tuple[int, OutboundLeg | None]:
        legs = self.switch.legs
        if legs is None:
            raise _NoRoute("SIP is not running")
        svc = services(self.switch)
        noun = child.noun
        sdp = child.offer.serialize()
        from_user = _user_of(child.call.from_)
        core = legs.ua.core
        if isinstance(noun, v.Number):
            if svc.trunks is None:
                raise _NoRoute("no outbound trunk to dial a number")
            from trunkline.gateway.switch.trunks import NoTrunkAvailable

            try:
                leg = await svc.trunks.dial(
                    noun.number,
                    from_user=from_user,
                    sdp_offer=sdp,
                    local_media=child.local,
                    on_attempt=lambda trunk, attempt: self._watch(child, attempt),
                )
            except NoTrunkAvailable as exc:
                raise _NoRoute(str(exc)) from None
            return await leg.wait_answer(), leg
        if isinstance(noun, v.Sip):
            uri = parse_uri(noun.uri)
            dest = await legs.ua.resolve(uri.host, uri.port, uri.transport or "udp")
            auth = (noun.username, noun.password) if noun.username and noun.password else None
            leg = legs.call(
                uri.without_headers(),
                dest,
                from_uri=SipUri("sip", from_user, None, core.advertised(dest.transport)[0]),
                sdp_offer=sdp,
                headers=sip_headers(uri),
                auth=auth,
                local_media=child.local,
            )
            self._watch(child, leg)
            return await leg.wait_answer(), leg
        # Client: every live registration rings at once, the first 2xx wins (RFC 3261 16.7 forking).
        if svc.location is None:
            raise _NoRoute("no location service")
        identity = noun.identity.removeprefix("client:")
        bindings = svc.location.lookup(identity, legs.ua.now())
        if not bindings:
            return 480, None
        for binding in bindings:
            leg = legs.call(
                binding.contact,
                binding.target,
                from_uri=SipUri("sip", from_user, None, core.advertised(binding.target.transport)[0]),
                to_uri=SipUri("sip", identity, None, core.advertised(binding.target.transport)[0]),
                sdp_offer=sdp,
                local_media=child.local,
            )
            self._watch(child, leg)
        pending = {asyncio.ensure_future(leg.wait_answer()): leg for leg in child.legs}
        last = 480
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                leg = pending.pop(task)
                last = task.result()
                if last < 300:
                    child.cancel_all(keep=leg)
                    for other in pending:
                        other.cancel()
                    return last, leg
        return last, None

    def _start_ringback(self) -> None:
        if not self.channel.answered:
            return
        spec = TONES[_ringback(self.dial.ring_tone)]
        self.ringback = self.loop.create_task(self.channel.stream.play(spec, loop=0))

    def _stop_ringback(self) -> None:
        if self.ringback is not None and not self.ringback.done():
            self.ringback.cancel()
            self.channel.stream.stop_playback()  # now, not when the task sees its cancellation
        self.ringback = None

    # -- recording ---------------------------------------------------------------------------------

    async def _start_recording(self, other: RtpStream) -> None:
        if self.recording is not None:
            return
        mode = self.dial.record
        sid = new_sid("RE")
        self.switch.recordings_dir.mkdir(parents=True, exist_ok=True)
        path = self.switch.recordings_dir / f"{sid}.wav"
        dual = mode.endswith("-dual")
        self.recording_started = self.switch.clock()
        # Stored in-progress (duration -1) before the file exists: listed while it runs, finished
        # at the next start-up after a crash (gateway/store/recovery.py).
        await self._store_recording(self._recording_record(sid, path, self.recording_started))
        self.recording = self.channel.stream.start_recording(
            path, dual=dual, mix=not dual, other=other, trim=self.dial.trim == "trim-silence"
        )
        self.recording_sid = sid
        self.recording_path = path

    def _recording_record(self, sid: str, path: Path, started: float, **fields: Any) -> JsonRecord:
        call = self.parent.call
        record = recording_json(
            call.account_sid,
            sid,
            created=started,
            call_sid=call.sid,
            channels=2 if self.dial.record.endswith("-dual") else 1,
            source="DialVerb",
            **fields,
        )
        record["_path"] = str(path)
        return record

    async def _store_recording(self, record: JsonRecord) -> None:
        try:
            await self.switch.store.put("recordings", record)
        except Exception:
            log.exception("cannot store recording %s", record["sid"])

    async def _finish_recording(self) -> RecordResult | None:
        recording, sid = self.recording, self.recording_sid
        if recording is None or sid is None:
            return None
        self.recording = None
        result = await recording.stop()
        duration = result.duration_s
        dual = self.dial.record.endswith("-dual")
        call = self.parent.call
        now = self.switch.clock()
        started = self.recording_started if self.recording_started is not None else now
        record = self._recording_record(
            sid, result.path, started, status="completed", duration=round(duration)
        )
        record["date_updated"] = rfc2822(now)
        await self._store_recording(record)
        if self.dial.recording_status_callback and "completed" in self.dial.recording_status_callback_event:
            url = f"{self.switch.public_url}/2010-04-01/Accounts/{call.account_sid}/Recordings/{sid}"
            params = [
                ("AccountSid", call.account_sid),
                ("CallSid", call.sid),
                ("RecordingSid", sid),
                ("RecordingUrl", url),
                ("RecordingStatus", "completed"),
                ("RecordingDuration", str(round(duration))),
                ("RecordingChannels", "2" if dual else "1"),
                ("RecordingSource", "DialVerb"),
            ]
            self.switch.callbacks.send(
                self.absolute(self.dial.recording_status_callback),
                self.dial.recording_status_callback_method,
                params,
                self.parent.account.auth_token,
            )
        return RecordResult(sid, str(result.path), duration)

    # -- the dial ----------------------------------------------------------------------------------

    async def run(self) -> DialResult:
        """Ring, bridge, wait for the end; see the module docstring."""
        nouns = [n for n in self.dial.nouns if isinstance(n, v.Number | v.Sip | v.Client)]
        try:
            for noun in nouns:
                self.children.append(await self._new_child(noun))
            if self.dial.record.startswith("record-from-ringing") and self.children:
                await self._start_recording(self.children[0].stream)
            self._start_ringback()
            for child in self.children:
                child.tasks.append(self.loop.create_task(self._ring(child)))
            winner = await self._wait_answer()
            if winner is None:
                return await self._unanswered()
            return await self._connected(winner)
        finally:
            await self._cleanup()

    async def _wait_answer(self) -> Child | None:
        """The first child to answer, or None when all failed or ``timeout`` ran out."""
        deadline = self.loop.time() + max(1, self.dial.timeout)
        remaining = len(self.children)
        while remaining:
            getter = asyncio.ensure_future(self.outcomes.get())
            waits: set[asyncio.Future[Any]] = {getter, self.channel.ended}
            try:
                await asyncio.wait(
                    waits, timeout=max(0.0, deadline - self.loop.time()), return_when=asyncio.FIRST_COMPLETED
                )
            except asyncio.CancelledError:
                getter.cancel()
                self._give_up(CallStatus.CANCELED)
                raise
            if not getter.done():
                getter.cancel()
                if self.channel.is_ended:
                    self._give_up(CallStatus.CANCELED)
                    await self._settle()
                    raise CallEnded
                self._give_up(CallStatus.NO_ANSWER)  # Twilio's ring timeout
                return None
            child = getter.result()
            remaining -= 1
            if child.winner is not None and child.final is None:
                for other in self.children:
                    if other is not child and other.final is None:
                        other.final = CallStatus.CANCELED
                        other.cancel_all()
                return child
        return None

    def _give_up(self, status: CallStatus) -> None:
        for child in self.children:
            if child.final is None:
                child.final = status
                child.cancel_all()
            elif child.winner is not None:
                child.winner.hangup()

    async def _settle(self) -> None:
        """Store the final status of every child that did not answer."""
        for child in self.children:
            if child.final is None or child.call.status.is_final:
                continue
            if child.winner is not None and child.final is CallStatus.CANCELED:
                child.winner.hangup()  # a 2xx crossed our CANCEL
            code = child.sip_code if child.final is not CallStatus.CANCELED else 487
            if child.final is CallStatus.NO_ANSWER and (code is None or code < 300):
                code = 487
            await self.switch.set_status(child.active, child.final, sip_code=code)

    async def _unanswered(self) -> DialResult:
        await self._settle()
        statuses = [c.final for c in self.children]
        status = "failed"
        for candidate in (CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.CANCELED, CallStatus.FAILED):
            if candidate in statuses:
                status = str(candidate)
                break
        if CallStatus.NO_ANSWER in statuses and CallStatus.CANCELED in statuses:
            status = "no-answer"
        recording = await self._finish_recording()
        last = self.children[-1] if self.children else None
        return DialResult(
            status,
            call_sid=last.call.sid if last is not None else None,
            sip_response_code=self._sip_code(last, None) if last is not None else None,
            recording=recording,
        )

    @staticmethod
    def _sip_code(child: Child, default: int | None) -> int | None:
        if isinstance(child.noun, v.Sip):
            return child.sip_code if child.sip_code is not None else default
        return None

    async def _connected(self, child: Child) -> DialResult:
        switch = self.switch
        leg = child.winner
        assert leg is not None
        await self._settle()
        try:
            if leg.remote_sdp is None:
                raise SdpError("the 200 OK carries no SDP answer")
            child.stream.configure(process_answer(child.offer, parse_sdp(leg.remote_sdp)))
        except (SdpError, ValueError) as exc:
            log.warning("dial %s: unusable SDP answer (%s): hanging up", child.call.sid, exc)
            leg.hangup()
            await switch.set_status(child.active, CallStatus.FAILED, sip_code=488)
            return DialResult("failed", call_sid=child.call.sid, sip_response_code=self._sip_code(child, 488))
        channel = SipCallChannel(
            child.call.sid,
            leg,
            child.stream,
            switch,
            recordings_dir=switch.recordings_dir,
            answered=True,
            local_media=child.local,
            local_sdp=child.offer,
        )
        child.channel = channel
        child.active.channel = channel
        await switch.set_status(child.active, CallStatus.IN_PROGRESS, sip_code=200)
        bridged = await self._prepare_callee(child, channel)
        if not bridged or self.channel.is_ended:
            self._stop_ringback()
            await channel.hangup()
            await switch.set_status(child.active, CallStatus.COMPLETED)
            if self.channel.is_ended:
                raise CallEnded
            return DialResult(
                "completed",
                call_sid=child.call.sid,
                duration=child.call.duration or 0,
                sip_response_code=self._sip_code(child, 200),
                recording=await self._finish_recording(),
            )
        if not self.channel.answered:
            await self.channel.answer()  # answerOnBridge
        self._stop_ringback()
        self.channel.stream.stop_playback()
        self.channel.flush_digits()
        switch.engine.bridge(self.channel.stream, child.stream)
        if self.dial.record.startswith("record-from-answer"):
            await self._start_recording(child.stream)
        await bridge_until_end(
            self.channel,
            channel,
            hangup_on_star=self.dial.hangup_on_star,
            time_limit=float(self.dial.time_limit),
        )
        switch.engine.unbridge(self.channel.stream)
        if not channel.is_ended:
            await channel.hangup()
        await switch.set_status(child.active, CallStatus.COMPLETED)
        return DialResult(
            "completed",
            call_sid=child.call.sid,
            duration=child.call.duration or 0,
            sip_response_code=self._sip_code(child, 200),
            recording=await self._finish_recording(),
            bridged=True,
        )

    async def _prepare_callee(self, child: Child, channel: SipCallChannel) -> bool:
        """``sendDigits`` and the whisper TwiML; False when the callee's side hung up."""
        noun = child.noun
        try:
            if isinstance(noun, v.Number) and noun.send_digits:
                await channel.send_digits(noun.send_digits)
            if noun.url:
                return await run_whisper(
                    self.switch, child.active, channel, self.absolute(noun.url), noun.method
                )
        except CallEnded:
            return False
        return not channel.is_ended

    async def _cleanup(self) -> None:
        self._stop_ringback()
        for child in self.children:
            if child.final is None and child.winner is None:
                child.final = CallStatus.CANCELED
                child.cancel_all()
        with contextlib.suppress(Exception):
            await self._settle()
        for child in self.children:
            for task in child.tasks:
                task.cancel()
            if child.channel is not None:
                if not child.channel.is_ended:
                    await child.channel.hangup()
                if not child.call.status.is_final:
                    await self.switch.set_status(child.active, CallStatus.COMPLETED)
                with contextlib.suppress(Exception):
                    await child.channel.close()
            else:
                if child.winner is not None:
                    child.winner.hangup()
                with contextlib.suppress(Exception):
                    await child.stream.close()
            self.switch._forget(child.active)
        if self.recording is not None:
            with contextlib.suppress(Exception):
                await self._finish_recording()


class _NoRoute(Exception):
    """Nothing reaches a noun (no trunk, no registration, SIP not running)."""


async def run_dial(channel: SipCallChannel, dial: v.Dial) -> DialResult:
    """``<Dial>`` on ``channel`` (the entry point ``SipCallChannel.dial`` delegates to)."""
    if channel.is_ended:
        raise CallEnded
    switch: Switch = channel.host  # type: ignore[assignment]
    for noun in dial.nouns:
        if isinstance(noun, v.Queue):
            from trunkline.gateway.switch.queues import dial_queue

            return await dial_queue(channel, dial, noun)
        if isinstance(noun, v.Conference):
            try:
                module = importlib.import_module("trunkline.gateway.switch.conference")
            except ModuleNotFoundError:
                raise FeatureUnavailable("Dial><Conference", "conference") from None
            result: DialResult = await module.run_conference(channel, dial)
            return result
    return await _Dial(switch, channel, dial).run()
