"""The switch: owns the calls, runs their TwiML, records every change and fires status callbacks.

Inbound (``Switch.on_inbound``, the ``LegManager`` callback): a new INVITE becomes a
:class:`~trunkline.gateway.switch.calls.Call` (``ringing``, ``inbound``, ``From``/``To`` from the
SIP From user and the Request-URI user, or their full URIs when they are not phone numbers,
``ForwardedFrom`` from ``Diversion``), stored at once; the call is rung (180), an RTP stream is
opened, and a :class:`~trunkline.gateway.twiml.interpreter.TwimlSession` fetches the number's
``voice_url`` (or the built-in demo app, over HTTP at ``http.public_url + /demo/voice``) and
drives a :class:`~trunkline.gateway.switch.channel.SipCallChannel`. The interpreter answers on the
first verb other than ``<Reject>``; the end of the document hangs up; a caller BYE ends the
session. The final status (``completed`` with its duration, ``busy``, ``no-answer``, ``canceled``,
``failed``) is stored and reported.

Outbound calls (``trunkline.gateway.switch.control``) use the same machinery once answered
(:meth:`Switch.run_call`). Redirects (REST ``Url``/``Twiml``) cancel the running session and start
a new one on the same channel (:meth:`Switch.redirect`). A call is hung up after its ``TimeLimit``
(4 hours by default, :meth:`Switch.limit_time`). Whole-call recordings (REST
``Calls/{sid}/Recordings``, ``Record=true``) record the far end's audio to a crash-safe WAV
(:meth:`Switch.start_recording`) and are finished, stored and reported when the call ends.

The switch is also the :class:`~trunkline.gateway.twiml.interpreter.DebuggerSink`: each debugger
event becomes a ``notifications`` record (Twilio's Notification JSON, readable at
``GET Notifications.json``) and, when the account has a ``debugger_webhook``, a signed POST there.
Status callbacks are fire-and-forget (:class:`~trunkline.gateway.twiml.webhooks.CallbackSender`)
and never delay the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trunkline.gateway.api.control import recording_json
from trunkline.gateway.api.envelope import account_base, rfc2822
from trunkline.gateway.config import Account, Config
from trunkline.gateway.demo import VOICE_PATH
from trunkline.gateway.sip.headers import NameAddr
from trunkline.gateway.sip.uri import SipUri
from trunkline.gateway.switch.calls import Call, CallStateError, CallStatus, StatusCallback, new_sid
from trunkline.gateway.switch.channel import FeatureUnavailable, SipCallChannel
from trunkline.gateway.switch.leg_manager import LegManager
from trunkline.gateway.switch.legs import InboundLeg, OutboundLeg
from trunkline.gateway.twiml.channel import CallEnded, Speech
from trunkline.gateway.twiml.interpreter import (
    APPLICATION_ERROR_PROMPT,
    CallContext,
    DebuggerEvent,
    TwimlSession,
)
from trunkline.gateway.twiml.webhooks import CallbackSender, WebhookClient

if TYPE_CHECKING:
    from trunkline.gateway.store import SqliteStore
    from trunkline.gateway.switch.location import LocationService
    from trunkline.gateway.switch.trunks import TrunkManager
    from trunkline.media.engine import MediaEngine
    from trunkline.media.session import Recording
    from trunkline.media.speech import SpeechRecognizer

__all__ = ["ActiveCall", "CallRecording", "Switch", "TwimlSource", "party"]

log = logging.getLogger("trunkline.switch")

_PHONE = re.compile(r"^\+?[0-9]{2,20}$")
#: Twilio's error code for a TwiML verb this node cannot run (12200 schema/verb not supported).
UNSUPPORTED_VERB = 12200
#: How long to wait for a leg to end after our BYE before giving up on it.
HANGUP_GRACE = 35.0
#: Twilio's default (and maximum) ``TimeLimit``: 4 hours.
DEFAULT_TIME_LIMIT = 14400.0


def party(uri: SipUri) -> str:
    """Twilio's ``From``/``To`` for a SIP URI: the user part when it is a phone number, else the URI."""
    user = uri.user or ""
    if _PHONE.match(user):
        return user
    host = uri.host
    return f"{uri.scheme}:{user}@{host}" if user else f"{uri.scheme}:{host}"


def _diversion(leg: InboundLeg) -> str | None:
    value = leg.headers.get("Diversion")
    if not value:
        return None
    first = value.split(",", 1)[0].strip()
    try:
        return party(NameAddr.parse(first, "Diversion").uri)
    except Exception:
        return None


@dataclass(slots=True)
class TwimlSource:
    """Where a call's (next) TwiML comes from: a URL with its method and fallback, or a document."""

    url: str | None = None
    method: str = "POST"
    fallback_url: str | None = None
    fallback_method: str = "POST"
    twiml: str | None = None


@dataclass(slots=True)
class CallRecording:
    """A recording of a whole call (REST ``Calls/{sid}/Recordings`` or ``Record=true``)."""

    sid: str
    record: dict[str, Any]
    recording: Recording
    callback_url: str | None = None
    callback_method: str = "POST"
    callback_events: frozenset[str] = frozenset({"completed"})


@dataclass(slots=True)
class ActiveCall:
    """A live call: its record, account, leg, channel and running TwiML session."""

    call: Call
    account: Account
    leg: InboundLeg | OutboundLeg | None = None
    channel: SipCallChannel | None = None
    source: TwimlSource = field(default_factory=TwimlSource)
    session_task: asyncio.Task[None] | None = None
    task: asyncio.Task[None] | None = None
    redirect: TwimlSource | None = None
    rejected: int | None = None
    recordings: dict[str, CallRecording] = field(default_factory=dict)
    time_limit: float = DEFAULT_TIME_LIMIT
    """Seconds the call may last once answered (Twilio's ``TimeLimit``, 4 hours by default)."""
    limit_timer: asyncio.TimerHandle | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Switch:
    """Owns every live call of this node (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        store: SqliteStore,
        engine: MediaEngine,
        legs: LegManager | None,
        webhooks: WebhookClient,
        *,
        recognizer: SpeechRecognizer | None = None,
        callbacks: CallbackSender | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.engine = engine
        self.legs = legs
        self.webhooks = webhooks
        self.recognizer = recognizer
        self.callbacks = callbacks or CallbackSender(webhooks)
        self.clock = clock
        self.calls: dict[str, ActiveCall] = {}
        self.trunks: TrunkManager | None = None
        """Outbound trunks (set by the server once SIP is up), for ``<Dial><Number>`` and the REST API."""
        self.location: LocationService | None = None
        """Registered endpoints, for ``<Dial><Client>`` and ``client:`` calls."""
        self.public_url = config.http.public_url.rstrip("/")
        """Base of the URLs we hand out (demo app, recordings); the server sets the real port."""
        self.recordings_dir = Path(config.storage.recordings_dir)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._verb_recordings: dict[str, dict[str, Any]] = {}
        """Records of the ``<Record>`` verbs recording now, by SID."""

    # -- helpers -----------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def save(self, call: Call) -> None:
        """Store the call's current record (every state change goes through here)."""
        try:
            await self.store.put("calls", call.to_json())
        except Exception:
            log.exception("cannot store call %s", call.sid)

    def _callback(self, active: ActiveCall, event: str) -> None:
        call = active.call
        callback = call.status_callback
        if callback is None or event not in callback.events:
            return
        params = call.callback_params(self.clock())
        params.append(("StatusCallbackEvent", event))
        self.callbacks.send(callback.url, callback.method, params, active.account.auth_token)

    async def set_status(
        self, active: ActiveCall, status: CallStatus, *, sip_code: int | None = None
    ) -> None:
        """Move the call to ``status``: store it and fire the status callback asked for."""
        call = active.call
        try:
            event = call.transition(status, self.clock(), sip_code=sip_code)
        except CallStateError as exc:
            log.warning("%s", exc)
            return
        await self.save(call)
        if event is not None:
            self._callback(active, event)
        log.debug("call %s is %s", call.sid, status)
        if status is CallStatus.IN_PROGRESS:
            self.limit_time(active, active.time_limit)

    def limit_time(self, active: ActiveCall, seconds: float) -> None:
        """Hang the call up ``seconds`` after now (REST ``TimeLimit``; re-arming replaces the limit)."""
        active.time_limit = seconds
        if active.limit_timer is not None:
            active.limit_timer.cancel()
        active.limit_timer = asyncio.get_running_loop().call_later(seconds, self._time_up, active)

    def _time_up(self, active: ActiveCall) -> None:
        active.limit_timer = None
        if active.call.status.is_final:
            return
        log.info("call %s reached its time limit of %g s: hanging up", active.call.sid, active.time_limit)
        self.hangup(active)

    def hangup(self, active: ActiveCall) -> None:
        """End a live call: stop its TwiML (the call then ends with BYE) or hang up its leg."""
        active.redirect = None
        task = active.session_task
        if task is not None and not task.done():
            task.cancel()
        elif active.leg is not None:
            active.leg.hangup()

    def initiated(self, active: ActiveCall) -> None:
        """Fire the ``initiated`` status callback of a new outbound call."""
        self._callback(active, "initiated")

    # -- inbound -----------------------------------------------------------------------------------

    def on_inbound(self, leg: InboundLeg) -> None:
        """``LegManager.on_inbound``: take a new incoming call."""
        if self._closing:
            leg.reject(503)
            return
        to = party(leg.request_uri) if leg.request_uri.user else party(leg.to.uri)
        route = self.config.route(to)
        account = self.config.account(route.account) if route is not None else None
        if route is None or account is None:
            log.info("no number route for %s: 404", to)
            leg.reject(404)
            return
        now = self.clock()
        call = Call(
            account_sid=account.sid,
            from_=party(leg.from_.uri),
            to=to,
            direction="inbound",
            status=CallStatus.RINGING,
            forwarded_from=_diversion(leg),
            caller_name=leg.from_.display_name,
            created=now,
            updated=now,
            started=now,
        )
        if route.status_callback:
            call.status_callback = StatusCallback(route.status_callback, route.status_callback_method)
        url = self.public_url + VOICE_PATH if route.uses_demo_app else route.voice_url
        source = TwimlSource(
            url,
            route.voice_method,
            route.voice_fallback_url,
            route.voice_fallback_method,
        )
        active = ActiveCall(call, account, leg=leg, source=source)
        self.calls[call.sid] = active
        active.task = self._spawn(self._inbound(active, leg))

    async def _inbound(self, active: ActiveCall, leg: InboundLeg) -> None:
        call = active.call
        await self.save(call)
        try:
            stream = await self.engine.open_stream()
        except Exception:
            log.exception("no RTP port for call %s", call.sid)
            leg.reject(503)
            await self.set_status(active, CallStatus.FAILED, sip_code=503)
            self._forget(active)
            return
        leg.ring()
        active.channel = SipCallChannel(
            call.sid, leg, stream, self, recordings_dir=self.recordings_dir, recognizer=self.recognizer
        )
        await self.run_call(active)

    # -- running TwiML -----------------------------------------------------------------------------

    def context(self, active: ActiveCall) -> CallContext:
        """The request parameters of the call, for its TwiML session."""
        call = active.call
        return CallContext(
            account_sid=call.account_sid,
            auth_token=active.account.auth_token,
            call_sid=call.sid,
            from_=call.from_,
            to=call.to,
            direction=call.direction,
            call_status=str(call.status),
            parent_call_sid=call.parent_call_sid,
            forwarded_from=call.forwarded_from,
            caller_name=call.caller_name,
            public_url=self.public_url,
        )

    async def run_call(self, active: ActiveCall) -> None:
        """Run the call's TwiML (following redirects) until it ends, then finish the call."""
        channel = active.channel
        assert channel is not None
        try:
            source: TwimlSource | None = active.source
            while source is not None:
                active.redirect = None
                session = TwimlSession(
                    channel,
                    self.context(active),
                    self.webhooks,
                    url=source.url,
                    method=source.method,
                    fallback_url=source.fallback_url,
                    fallback_method=source.fallback_method,
                    twiml=source.twiml,
                    debugger=self,
                    callbacks=self.callbacks,
                )
                task = asyncio.get_running_loop().create_task(session.run())
                active.session_task = task
                await asyncio.wait({task})
                active.session_task = None
                source = None
                if task.cancelled():
                    if active.redirect is not None and not channel.is_ended:
                        source = active.redirect
                        continue
                    break
                exc = task.exception()
                if isinstance(exc, FeatureUnavailable):
                    await self._unsupported(active, session, exc)
                elif exc is not None:
                    log.error("TwiML session of call %s failed", active.call.sid, exc_info=exc)
                    with contextlib.suppress(Exception):
                        await channel.hangup()
        finally:
            await self._finish(active)

    async def _unsupported(self, active: ActiveCall, session: TwimlSession, exc: FeatureUnavailable) -> None:
        channel = active.channel
        assert channel is not None
        await self.report(
            DebuggerEvent(active.call.account_sid, active.call.sid, UNSUPPORTED_VERB, str(exc), session.url)
        )
        log.error("Twilio error %d on call %s: %s", UNSUPPORTED_VERB, active.call.sid, exc)
        with contextlib.suppress(CallEnded):
            if not channel.answered:
                await channel.answer()
            await channel.play([Speech(APPLICATION_ERROR_PROMPT, "woman", "en-US")])
        await channel.hangup()

    def redirect(self, active: ActiveCall, source: TwimlSource) -> None:
        """Replace the running TwiML by ``source`` (REST update with ``Url``/``Twiml``)."""
        active.redirect = source
        task = active.session_task
        if task is not None and not task.done():
            task.cancel()

    # -- call recordings ---------------------------------------------------------------------------

    async def start_recording(
        self,
        active: ActiveCall,
        *,
        source: str,
        channels: str = "mono",
        trim: bool = False,
        callback_url: str | None = None,
        callback_method: str = "POST",
        callback_events: frozenset[str] = frozenset({"completed"}),
    ) -> dict[str, Any]:
        """Record the caller's audio of a live, answered call to a crash-safe WAV; return its record.

        Only the far end's audio (the inbound track) is recorded for a call that is not bridged.
        """
        channel = active.channel
        if channel is None or not channel.answered or channel.is_ended:
            raise RuntimeError(f"call {active.call.sid} is not in progress")
        sid = new_sid("RE")
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        path = self.recordings_dir / f"{sid}.wav"
        recording = channel.stream.start_recording(path, trim=trim, dual=channels == "dual")
        record = recording_json(
            active.call.account_sid,
            sid,
            created=self.clock(),
            call_sid=active.call.sid,
            status="in-progress",
            channels=2 if channels == "dual" else 1,
            source=source,
            track="inbound",
        )
        record["_path"] = str(path)
        live = CallRecording(sid, record, recording, callback_url, callback_method, callback_events)
        active.recordings[sid] = live
        await self._store_recording(record)
        self._recording_callback(active, live, "in-progress")
        return record

    def _recording_callback(self, active: ActiveCall, live: CallRecording, status: str) -> None:
        if not live.callback_url or status not in live.callback_events:
            return
        record = live.record
        params = [
            ("AccountSid", active.call.account_sid),
            ("CallSid", active.call.sid),
            ("RecordingSid", live.sid),
            (
                "RecordingUrl",
                f"{self.public_url}/2010-04-01/Accounts/{active.call.account_sid}/Recordings/{live.sid}",
            ),
            ("RecordingStatus", status),
            ("RecordingDuration", str(record["duration"]) if status == "completed" else "0"),
            ("RecordingChannels", str(record["channels"])),
            ("RecordingStartTime", str(record["start_time"])),
            ("RecordingSource", str(record["source"])),
            ("RecordingTrack", str(record["track"])),
        ]
        self.callbacks.send(live.callback_url, live.callback_method, params, active.account.auth_token)

    async def stop_recording(self, active: ActiveCall, sid: str) -> dict[str, Any]:
        """Finish a call recording: complete the file, store it ``completed``, fire its callback."""
        live = active.recordings.pop(sid)
        result = await live.recording.stop()
        live.record.update(status="completed", duration=str(round(result.duration_s)))
        live.record["date_updated"] = rfc2822(self.clock())
        await self._store_recording(live.record)
        self._recording_callback(active, live, "completed")
        return live.record

    def pause_recording(
        self, active: ActiveCall, sid: str, *, paused: bool, behavior: str = "silence"
    ) -> dict[str, Any]:
        """Pause (``skip`` drops the time, ``silence`` records zeros) or resume a call recording."""
        live = active.recordings[sid]
        if paused:
            live.recording.pause("skip" if behavior == "skip" else "silence")
        else:
            live.recording.resume()
        live.record["status"] = "paused" if paused else "in-progress"
        self._spawn(self._store_recording(dict(live.record)))
        return live.record

    async def _store_recording(self, record: dict[str, Any]) -> None:
        try:
            await self.store.put("recordings", record)
        except Exception:
            log.exception("cannot store recording %s", record.get("sid"))

    async def _finish(self, active: ActiveCall) -> None:
        channel = active.channel
        leg = active.leg
        if leg is not None:
            leg.hangup()
            if leg.ended is None:  # a BYE or reject ends the leg at once; a CANCEL race may not
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(leg.wait_ended(), HANGUP_GRACE)
            else:
                await asyncio.sleep(0)  # the same yield to the leg's event pump as before
        for sid in list(active.recordings):
            try:
                await self.stop_recording(active, sid)
            except Exception:
                log.exception("cannot finish recording %s of call %s", sid, active.call.sid)
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()
        call = active.call
        if not call.status.is_final:
            ended = leg.ended if leg is not None else None
            if channel is not None and channel.answered:
                status = CallStatus.COMPLETED
            elif active.rejected is not None:
                status = CallStatus.BUSY if active.rejected in (486, 600) else CallStatus.NO_ANSWER
            elif ended is not None and ended.reason == "cancelled":
                status = CallStatus.CANCELED
            elif ended is not None and not ended.by_remote and active.call.direction == "inbound":
                status = CallStatus.COMPLETED  # our hangup before answer (an empty document)
            else:
                status = CallStatus.FAILED
            code = active.rejected or (ended.status if ended is not None else None)
            await self.set_status(active, status, sip_code=code)
        self._forget(active)

    def _forget(self, active: ActiveCall) -> None:
        if active.limit_timer is not None:
            active.limit_timer.cancel()
            active.limit_timer = None
        self.calls.pop(active.call.sid, None)
        active.done.set()

    # -- ChannelHost -------------------------------------------------------------------------------

    def _active(self, channel: SipCallChannel) -> ActiveCall | None:
        return self.calls.get(channel.call_sid)

    async def channel_answered(self, channel: SipCallChannel) -> None:
        """The inbound call was answered: ``in-progress``."""
        active = self._active(channel)
        if active is not None:
            await self.set_status(active, CallStatus.IN_PROGRESS, sip_code=200)

    async def channel_rejected(self, channel: SipCallChannel, sip_status: int) -> None:
        """``<Reject>`` refused the call."""
        active = self._active(channel)
        if active is not None:
            active.rejected = sip_status

    def _verb_recording(
        self, channel: SipCallChannel, sid: str, path: Path, created: float
    ) -> dict[str, Any]:
        active = self._active(channel)
        account_sid = active.call.account_sid if active is not None else ""
        record = recording_json(
            account_sid, sid, created=created, call_sid=channel.call_sid, channels=1, source="RecordVerb"
        )
        record["_path"] = str(path)
        return record

    async def recording_started(self, channel: SipCallChannel, sid: str, path: Path) -> None:
        """Store a starting ``<Record>`` as an ``in-progress`` Recording record (duration -1), so
        that it is listed while it runs and survives a crash (``gateway/store/recovery.py``)."""
        record = self._verb_recording(channel, sid, path, self.clock())
        self._verb_recordings[sid] = record
        await self._store_recording(record)

    async def recording_finished(
        self, channel: SipCallChannel, sid: str, path: Path, duration: float
    ) -> None:
        """Store a finished ``<Record>`` as a Recording record (with its file path in ``_path``):
        ``completed``, or ``absent`` when nothing was recorded, as its status callback says."""
        now = self.clock()
        record = self._verb_recordings.pop(sid, None) or self._verb_recording(channel, sid, path, now)
        record.update(status="completed" if duration > 0 else "absent", duration=str(round(duration)))
        record["date_updated"] = rfc2822(now)
        record["_path"] = str(path)
        await self._store_recording(record)

    async def warning(self, channel: SipCallChannel, code: int, message: str, url: str | None) -> None:
        """A non-fatal problem on the call, for the debugger."""
        active = self._active(channel)
        account_sid = active.call.account_sid if active is not None else ""
        log.warning("Twilio warning %d on call %s: %s (%s)", code, channel.call_sid, message, url)
        await self.report(DebuggerEvent(account_sid, channel.call_sid, code, message, url, "WARNING"))

    # -- DebuggerSink ------------------------------------------------------------------------------

    async def report(self, event: DebuggerEvent) -> None:
        """Store ``event`` as a Notification and post it to the account's debugger webhook."""
        now = self.clock()
        sid = new_sid("NO")
        record = {
            "sid": sid,
            "account_sid": event.account_sid,
            "call_sid": event.call_sid,
            "api_version": "2010-04-01",
            "error_code": str(event.code),
            "log": "0" if event.level == "ERROR" else "1",
            "message_date": rfc2822(now),
            "message_text": event.message,
            "more_info": f"https://www.twilio.com/docs/errors/{event.code}",
            "request_method": "POST",
            "request_url": event.url or "",
            "request_variables": "",
            "response_body": "",
            "response_headers": "",
            "date_created": rfc2822(now),
            "date_updated": rfc2822(now),
            "uri": f"{account_base(event.account_sid)}/Notifications/{sid}.json",
        }
        try:
            await self.store.put("notifications", record)
        except Exception:
            log.exception("cannot store notification for call %s", event.call_sid)
        account = self.config.account(event.account_sid)
        if account is not None and account.debugger_webhook:
            payload = {
                "resource_sid": event.call_sid,
                "service_sid": None,
                "error_code": str(event.code),
                "more_info": {"msg": event.message, "sourceComponent": "12000", "url": event.url},
                "webhook": {"request": {"url": event.url, "method": "POST"}},
            }
            params = [
                ("AccountSid", event.account_sid),
                ("Level", event.level),
                ("ParentAccountSid", ""),
                ("Payload", json.dumps(payload)),
                ("PayloadType", "application/json"),
                ("Sid", sid),
                ("Timestamp", datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
            ]
            self.callbacks.send(account.debugger_webhook, "POST", params, account.auth_token)

    # -- shutdown ----------------------------------------------------------------------------------

    async def close(self, timeout: float = 5.0) -> None:
        """Hang up every call, finish recordings, store final statuses, flush callbacks."""
        self._closing = True
        for active in list(self.calls.values()):
            task = active.session_task
            if task is not None and not task.done():
                task.cancel()
            if active.channel is not None:
                with contextlib.suppress(Exception):
                    await active.channel.hangup()
            elif active.leg is not None:
                active.leg.hangup()
        pending = [a.done.wait() for a in list(self.calls.values())]
        if pending:
            await asyncio.wait([asyncio.ensure_future(p) for p in pending], timeout=timeout)
        for task in list(self._tasks):
            if not task.done():
                task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.callbacks.drain(timeout=timeout)
