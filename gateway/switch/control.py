"""The REST ``CallControl`` of the switch: outbound-api calls and live call updates.

``create_call`` stores the call ``queued`` (status callback ``initiated``) and returns at once; a
background task then dials ``To``:

* ``sip:user@host[:port]`` directly (``transport`` URI parameter honoured),
* ``client:NAME`` at the first live registration of endpoint ``NAME``,
* a phone number through the outbound trunks (failover in ``TrunkManager.dial``),

with our SDP offer on a fresh RTP stream. 180/183 make the call ``ringing``; the 200 makes it
``in-progress`` (the SDP answer configures the stream), ``SendDigits`` are sent, and the call's
``Url``/``Twiml`` runs as for an inbound call. Without an answer within ``Timeout`` seconds the
INVITE is cancelled and the call is ``no-answer``; 486/600 make it ``busy``, 408/480 (and
404-like "not there" answers are ``failed``) ``no-answer``, anything else ``failed``; a REST
``Status=canceled`` before the answer cancels it (``canceled``).

``update_call`` redirects a live call to new TwiML (the running session is cancelled and a new one
starts on the same channel), hangs it up (``Status=completed``) or cancels it while it rings
(``Status=canceled``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

from trunkline.gateway.api.control import (
    CallUpdate,
    ControlError,
    JsonRecord,
    OutboundCall,
    RecordingRequest,
)
from trunkline.gateway.sip.sdp import LocalMedia, SdpError, build_offer, parse_sdp, process_answer
from trunkline.gateway.sip.uri import SipUri, parse_uri
from trunkline.gateway.switch.calls import Call, CallStatus, StatusCallback, status_for_failure
from trunkline.gateway.switch.channel import SipCallChannel
from trunkline.gateway.switch.legs import Answered, Ended, Failed, OutboundLeg, Provisional
from trunkline.gateway.switch.switch import ActiveCall, Switch, TwimlSource

if TYPE_CHECKING:
    from trunkline.gateway.switch.location import LocationService
    from trunkline.gateway.switch.trunks import TrunkManager
    from trunkline.media.stream import RtpStream

__all__ = ["SwitchCallControl", "status_for_failure"]

log = logging.getLogger("trunkline.switch.control")

CALL_NOT_LIVE = 21220


class _NoRoute(Exception):
    """Nothing reaches the call's ``To``."""


class SwitchCallControl:
    """``CallControl`` for the REST write handlers, on top of a :class:`Switch`."""

    def __init__(
        self,
        switch: Switch,
        *,
        trunks: TrunkManager | None = None,
        location: LocationService | None = None,
    ) -> None:
        self.switch = switch
        self.trunks = trunks
        self.location = location
        self._canceled: set[str] = set()

    # -- create ------------------------------------------------------------------------------------

    async def create_call(self, request: OutboundCall) -> Call:
        """Store the call ``queued``, fire ``initiated`` and dial in the background."""
        switch = self.switch
        account = switch.config.account(request.account_sid)
        if account is None:
            raise ControlError.not_found(f"/Accounts/{request.account_sid}")
        if switch.legs is None:
            raise ControlError(20503, "Service Unavailable: SIP is not running on this node", 503)
        now = switch.clock()
        call = Call(
            account_sid=account.sid,
            from_=request.caller_id or request.from_,
            to=str(request.to),
            direction="outbound-api",
            status=CallStatus.QUEUED,
            created=now,
            updated=now,
            status_callback=request.status_callback,
        )
        source = TwimlSource(
            request.url, request.method, request.fallback_url, request.fallback_method, request.twiml
        )
        active = ActiveCall(call, account, source=source, time_limit=float(request.time_limit))
        switch.calls[call.sid] = active
        await switch.save(call)
        switch.initiated(active)
        active.task = switch._spawn(self._originate(active, request))
        return call

    def _from_user(self, request: OutboundCall) -> str:
        caller = request.caller_id or request.from_
        if caller.startswith("client:"):
            return caller[len("client:") :]
        if caller.startswith(("sip:", "sips:")):
            with contextlib.suppress(Exception):
                return parse_uri(caller).user or "trunkline"
        return caller

    async def _originate(self, active: ActiveCall, request: OutboundCall) -> None:
        switch = self.switch
        call = active.call
        try:
            stream = await switch.engine.open_stream()
        except Exception:
            log.exception("no RTP port for call %s", call.sid)
            await switch.set_status(active, CallStatus.FAILED)
            switch._forget(active)
            return
        try:
            await self._dial_and_run(active, request, stream)
        finally:
            if active.channel is None:
                await stream.close()
                switch._forget(active)

    async def _dial_and_run(self, active: ActiveCall, request: OutboundCall, stream: RtpStream) -> None:
        switch = self.switch
        call = active.call
        local = LocalMedia(stream.local_address, stream.local_port)
        offer = build_offer(local)
        watchers: list[asyncio.Task[None]] = []

        def watch(leg: OutboundLeg) -> None:
            active.leg = leg
            watchers.append(asyncio.get_running_loop().create_task(self._watch_ringing(active, leg)))

        try:

            async def answered() -> tuple[OutboundLeg, int]:
                placed = await self._place(request, offer.serialize(), local, watch)
                return placed, await placed.wait_answer()

            leg, status = await asyncio.wait_for(answered(), request.timeout)
        except TimeoutError:
            for task in watchers:
                task.cancel()
            current = active.leg
            if isinstance(current, OutboundLeg):
                current.cancel()
            canceled = call.sid in self._canceled
            await switch.set_status(active, CallStatus.CANCELED if canceled else CallStatus.NO_ANSWER)
            return
        except _NoRoute as exc:
            for task in watchers:
                task.cancel()
            log.warning("call %s: %s", call.sid, exc)
            await switch.set_status(active, CallStatus.FAILED)
            return
        except BaseException:
            for task in watchers:
                task.cancel()
            raise
        # Let the watchers report a 180 that came just before the final answer, in order.
        if watchers:
            await asyncio.wait(watchers, timeout=1.0)
        for task in watchers:
            task.cancel()
        if status >= 300:
            canceled = call.sid in self._canceled
            await switch.set_status(active, status_for_failure(status, canceled=canceled), sip_code=status)
            return
        try:
            if leg.remote_sdp is None:
                raise SdpError("the 200 OK carries no SDP answer")
            stream.configure(process_answer(offer, parse_sdp(leg.remote_sdp)))
        except Exception as exc:
            log.warning("call %s: unusable SDP answer (%s): hanging up", call.sid, exc)
            leg.hangup()
            await switch.set_status(active, CallStatus.FAILED, sip_code=488)
            return
        channel = SipCallChannel(
            call.sid,
            leg,
            stream,
            switch,
            recordings_dir=switch.recordings_dir,
            recognizer=switch.recognizer,
            answered=True,
            local_media=local,
            local_sdp=offer,
        )
        active.channel = channel
        await switch.set_status(active, CallStatus.IN_PROGRESS, sip_code=200)
        if request.record:
            await switch.start_recording(
                active,
                source="OutboundAPI",
                channels=request.recording_channels,
                callback_url=request.recording_status_callback,
                callback_method=request.recording_status_callback_method,
            )
        if request.send_digits:
            with contextlib.suppress(Exception):
                await channel.send_digits(request.send_digits)
        await switch.run_call(active)

    async def _watch_ringing(self, active: ActiveCall, leg: OutboundLeg) -> None:
        while True:
            event = await leg.events.get()
            if isinstance(event, Provisional) and event.status in (180, 183):
                if active.call.status is CallStatus.QUEUED:
                    # Shielded: a CANCEL or answer right after the 180 must not lose the report.
                    await asyncio.shield(self.switch.set_status(active, CallStatus.RINGING))
            elif isinstance(event, Answered | Failed | Ended):
                return

    async def _place(
        self,
        request: OutboundCall,
        sdp: bytes,
        local: LocalMedia,
        watch: Callable[[OutboundLeg], None],
    ) -> OutboundLeg:
        legs = self.switch.legs
        assert legs is not None
        from_user = self._from_user(request)
        target = request.to
        if target.kind == "number":
            if self.trunks is None:
                raise _NoRoute("no trunk manager: cannot dial a phone number")
            from trunkline.gateway.switch.trunks import NoTrunkAvailable

            try:
                dial: Awaitable[OutboundLeg] = self.trunks.dial(
                    target.address,
                    from_user=from_user,
                    sdp_offer=sdp,
                    local_media=local,
                    on_attempt=lambda trunk, leg: watch(leg),
                )
                return await dial
            except NoTrunkAvailable as exc:
                raise _NoRoute(str(exc)) from None
        core = legs.ua.core
        if target.kind == "client":
            if self.location is None:
                raise _NoRoute("no location service")
            bindings = self.location.lookup(target.address, legs.ua.now())
            if not bindings:
                raise _NoRoute(f"client:{target.address} is not registered")
            uri = bindings[0].contact
            dest = bindings[0].target
        else:
            try:
                uri = parse_uri(target.address)
            except Exception as exc:
                raise _NoRoute(f"invalid SIP URI {target.address}: {exc}") from None
            dest = core.peer_for(uri.host, uri.port, uri.transport or "udp")
        host = core.advertised(dest.transport)[0]
        leg = legs.call(
            uri,
            dest,
            from_uri=SipUri("sip", from_user, None, host),
            sdp_offer=sdp,
            auth=request.sip_auth,
            local_media=local,
        )
        watch(leg)
        return leg

    # -- update ------------------------------------------------------------------------------------

    async def update_call(self, account_sid: str, call_sid: str, update: CallUpdate) -> Call:
        """Redirect, hang up or cancel a live call."""
        active = self.switch.calls.get(call_sid)
        if active is None or active.call.account_sid != account_sid or active.call.status.is_final:
            raise ControlError(CALL_NOT_LIVE, "Call is not in-progress. Cannot redirect.", 400)
        call = active.call
        if update.status_callback:
            events = call.status_callback.events if call.status_callback else frozenset({"completed"})
            call.status_callback = StatusCallback(
                update.status_callback, update.status_callback_method, events
            )
        answered = active.channel is not None and active.channel.answered
        if update.time_limit is not None:
            if answered:
                self.switch.limit_time(active, float(update.time_limit))
            else:
                active.time_limit = float(update.time_limit)
        if update.status == "canceled":
            if not answered:
                self._cancel(active)
            return call
        if update.status == "completed":
            if answered:
                self._hangup(active)
            else:
                self._cancel(active)
            return call
        if update.url or update.twiml:
            source = TwimlSource(
                update.url, update.method, update.fallback_url, update.fallback_method, update.twiml
            )
            if answered:
                self.switch.redirect(active, source)
            else:
                active.source = source
        return call

    def _cancel(self, active: ActiveCall) -> None:
        self._canceled.add(active.call.sid)
        leg = active.leg
        if isinstance(leg, OutboundLeg):
            leg.cancel()
        elif leg is not None:
            leg.hangup()
        elif active.task is not None and active.call.status is CallStatus.QUEUED:
            active.task.cancel()
            self.switch._spawn(self._canceled_before_dial(active))

    async def _canceled_before_dial(self, active: ActiveCall) -> None:
        await self.switch.set_status(active, CallStatus.CANCELED)
        self.switch._forget(active)

    def _hangup(self, active: ActiveCall) -> None:
        self.switch.hangup(active)

    def _live(self, account_sid: str, call_sid: str) -> ActiveCall:
        active = self.switch.calls.get(call_sid)
        if active is None or active.call.account_sid != account_sid:
            raise ControlError(CALL_NOT_LIVE, "Call is not in-progress. Cannot record.", 400)
        channel = active.channel
        if channel is None or not channel.answered or channel.is_ended:
            raise ControlError(CALL_NOT_LIVE, "Call is not in-progress. Cannot record.", 400)
        return active

    async def start_recording(self, account_sid: str, call_sid: str, request: RecordingRequest) -> JsonRecord:
        """Record an in-progress call (the caller's audio; ``dual`` needs a bridged call)."""
        active = self._live(account_sid, call_sid)
        return await self.switch.start_recording(
            active,
            source="StartCallRecordingAPI",
            channels=request.channels,
            trim=request.trim == "trim-silence",
            callback_url=request.status_callback,
            callback_method=request.status_callback_method,
            callback_events=request.status_callback_events,
        )

    async def update_recording(
        self,
        account_sid: str,
        call_sid: str,
        recording_sid: str,
        status: Literal["stopped", "paused", "in-progress"],
        pause_behavior: Literal["skip", "silence"],
    ) -> JsonRecord:
        """Stop, pause or resume a recording of a live call."""
        active = self._live(account_sid, call_sid)
        if recording_sid not in active.recordings:
            raise ControlError.not_found(f"/Calls/{call_sid}/Recordings/{recording_sid}")
        if status == "stopped":
            return await self.switch.stop_recording(active, recording_sid)
        return self.switch.pause_recording(
            active, recording_sid, paused=status == "paused", behavior=pause_behavior
        )
