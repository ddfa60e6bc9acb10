"""The REST write side: POST/DELETE handlers for calls, conferences, queues and messages.

Each handler reads the form (``application/x-www-form-urlencoded``, repeated keys allowed),
validates it with Twilio's error codes and HTTP statuses, and hands a typed request to the switch
through the protocols of :mod:`trunkline.gateway.api.control` (or to the messaging service).
Error codes (https://www.twilio.com/docs/api/errors/<code>):

* Calls: 21201 no To, 21211 invalid To, 21213 no From, 21212 invalid From, 21205 Url missing or
  invalid (also FallbackUrl, StatusCallback, RecordingStatusCallback), 21209 invalid Method (and
  every ``*Method``), 21208 invalid Timeout, 21626 invalid StatusCallbackEvent, 21218 invalid
  ApplicationSid, 21220 call not in progress, 21200 any other invalid Calls parameter;
* Messages: 21604 no To, 21211 invalid To, 21603 no From, 21212 invalid From, 21602 no Body,
  21617 Body over 1,600 characters, 21609 invalid StatusCallback;
* 20404 for a missing resource, 20001 for another invalid parameter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from trunkline.gateway.api.control import (
    CallControl,
    CallUpdate,
    ConferenceControl,
    ConferenceUpdate,
    ControlError,
    OutboundCall,
    ParticipantRequest,
    ParticipantUpdate,
    QueueControl,
    RecordingRequest,
)
from trunkline.gateway.api.envelope import (
    ApiError,
    account_base,
    json_response,
    not_found,
    rfc2822,
)
from trunkline.gateway.api.params import (
    ALPHA_SENDER,
    APPLICATION_SID,
    BODY_TOO_LONG,
    CALL_NOT_LIVE,
    CALLS_RESOURCE,
    DIGITS,
    INVALID_APPLICATION,
    INVALID_FROM,
    INVALID_MESSAGE_CALLBACK,
    INVALID_PARAMETER,
    INVALID_TIMEOUT,
    INVALID_TO,
    INVALID_URL,
    MAX_QUEUE_SIZE,
    MAX_TIME_LIMIT,
    MAX_TIMEOUT,
    MESSAGING_SERVICE_SID,
    NO_BODY,
    NO_MESSAGE_FROM,
    NO_MESSAGE_TO,
    RECORDING_EVENTS,
    Form,
    bool_param,
    caller,
    events_param,
    int_param,
    method_param,
    param,
    parse_target,
    sip_auth,
    status_callback_param,
    to_and_from,
    url_param,
)
from trunkline.gateway.api.resources import public
from trunkline.gateway.messaging.segments import MAX_BODY_CHARS
from trunkline.gateway.messaging.service import MessagingService
from trunkline.gateway.store import Filter, SqliteStore
from trunkline.gateway.switch.calls import CallStatus, new_sid
from trunkline.gateway.twiml.parser import TwimlError, parse_twiml

T = TypeVar("T")


@dataclass(slots=True)
class WriteControls:
    """What the write handlers drive; a part left None answers 503 (not running on this node)."""

    calls: CallControl | None = None
    conferences: ConferenceControl | None = None
    queues: QueueControl | None = None
    messaging: MessagingService | None = None


def _unavailable(what: str) -> ApiError:
    return ApiError(503, 20503, f"Service Unavailable: {what} are not available on this node")


def _need(value: T | None, what: str) -> T:
    if value is None:
        raise _unavailable(what)
    return value


def _control_error(exc: ControlError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


async def _form(request: web.Request) -> Form:
    return await request.post()


# ---------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------


class WriteResources:
    """POST/DELETE handlers bound to one store and the controls of this node."""

    def __init__(
        self, store: SqliteStore, controls: WriteControls, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.controls = controls
        self.clock = clock

    async def _record(self, request: web.Request, table: str, **key: str) -> dict[str, Any]:
        record = await self.store.get(table, **key)
        if record is None or record.get("account_sid") != request.match_info["account_sid"]:
            raise not_found(request.path)
        return record

    # Calls
    async def create_call(self, request: web.Request) -> web.Response:
        """``POST Calls.json``: place an outbound-api call; 201 with the call ``queued``."""
        form = await _form(request)
        account = request.match_info["account_sid"]
        to, from_ = to_and_from(form)
        url = url_param(form, "Url", INVALID_URL)
        twiml = param(form, "Twiml")
        application = param(form, "ApplicationSid")
        if url is None and twiml is None and application is None:
            raise ApiError(400, INVALID_URL, "Url parameter is required.")
        if url is not None and twiml is not None:
            raise ApiError(400, CALLS_RESOURCE, "Twiml and Url parameters are mutually exclusive.")
        if application is not None and not APPLICATION_SID.fullmatch(application):
            raise ApiError(400, INVALID_APPLICATION, f"ApplicationSid {application} is not valid.")
        if twiml is not None:
            try:
                parse_twiml(twiml)
            except TwimlError as exc:
                raise ApiError(400, exc.code, f"Twiml is not valid: {exc.message}") from None
        digits = param(form, "SendDigits")
        if digits is not None and not DIGITS.fullmatch(digits):
            raise ApiError(400, CALLS_RESOURCE, f"SendDigits may hold 0-9, #, * and w only, got {digits!r}")
        channels = param(form, "RecordingChannels") or "mono"
        if channels not in ("mono", "dual"):
            raise ApiError(400, CALLS_RESOURCE, f"RecordingChannels must be mono or dual, got {channels!r}")
        caller_id_text = param(form, "CallerId")
        caller_id = None
        if caller_id_text is not None:
            caller_id = caller(caller_id_text, number_only=False)
            if caller_id is None:
                raise ApiError(400, INVALID_FROM, f"CallerId {caller_id_text} is not valid.")
        outbound = OutboundCall(
            account_sid=account,
            to=to,
            from_=from_,
            url=url,
            twiml=twiml,
            application_sid=application,
            method=method_param(form, "Method"),
            fallback_url=url_param(form, "FallbackUrl", INVALID_URL),
            fallback_method=method_param(form, "FallbackMethod"),
            status_callback=status_callback_param(form),
            send_digits=digits,
            timeout=int_param(form, "Timeout", INVALID_TIMEOUT, 60, 1, MAX_TIMEOUT),
            record=bool(bool_param(form, "Record", CALLS_RESOURCE)),
            recording_channels=channels,
            recording_status_callback=url_param(form, "RecordingStatusCallback", INVALID_URL),
            recording_status_callback_method=method_param(form, "RecordingStatusCallbackMethod"),
            time_limit=int_param(form, "TimeLimit", CALLS_RESOURCE, MAX_TIME_LIMIT, 1, MAX_TIME_LIMIT),
            caller_id=caller_id,
            sip_auth=sip_auth(form),
        )
        calls = _need(self.controls.calls, "calls")
        try:
            call = await calls.create_call(outbound)
        except ControlError as exc:
            raise _control_error(exc) from None
        return json_response(call.to_json(), status=201)

    async def update_call(self, request: web.Request) -> web.Response:
        """``POST Calls/{sid}.json``: redirect (Url/Twiml) or end (Status) a live call."""
        form = await _form(request)
        record = await self._record(request, "calls", sid=request.match_info["sid"])
        url = url_param(form, "Url", INVALID_URL)
        twiml = param(form, "Twiml")
        status = param(form, "Status")
        if status is not None and status not in ("completed", "canceled"):
            raise ApiError(400, CALLS_RESOURCE, f"Status must be completed or canceled, got {status!r}")
        if url is not None and twiml is not None:
            raise ApiError(400, CALLS_RESOURCE, "Twiml and Url parameters are mutually exclusive.")
        if twiml is not None:
            try:
                parse_twiml(twiml)
            except TwimlError as exc:
                raise ApiError(400, exc.code, f"Twiml is not valid: {exc.message}") from None
        callback = url_param(form, "StatusCallback", INVALID_URL)
        update = CallUpdate(
            url=url,
            method=method_param(form, "Method"),
            twiml=twiml,
            status="completed" if status == "completed" else "canceled" if status == "canceled" else None,
            fallback_url=url_param(form, "FallbackUrl", INVALID_URL),
            fallback_method=method_param(form, "FallbackMethod"),
            status_callback=callback,
            status_callback_method=method_param(form, "StatusCallbackMethod"),
            time_limit=int_param(form, "TimeLimit", CALLS_RESOURCE, 0, 1, MAX_TIME_LIMIT) or None,
        )
        if (
            url is None
            and twiml is None
            and status is None
            and callback is None
            and update.time_limit is None
        ):
            raise ApiError(400, INVALID_URL, "Url parameter is required.")
        if CallStatus(record["status"]).is_final:
            # https://www.twilio.com/docs/api/errors/21220 (Invalid call state)
            raise ApiError(400, CALL_NOT_LIVE, "Call is not in-progress. Cannot redirect.")
        calls = _need(self.controls.calls, "calls")
        try:
            call = await calls.update_call(record["account_sid"], record["sid"], update)
        except ControlError as exc:
            raise _control_error(exc) from None
        return json_response(call.to_json())

    async def create_call_recording(self, request: web.Request) -> web.Response:
        """``POST Calls/{sid}/Recordings.json``: start recording an in-progress call."""
        form = await _form(request)
        record = await self._record(request, "calls", sid=request.match_info["call_sid"])
        channels = param(form, "RecordingChannels") or "mono"
        if channels not in ("mono", "dual"):
            raise ApiError(
                400, INVALID_PARAMETER, f"RecordingChannels must be mono or dual, got {channels!r}"
            )
        track = param(form, "RecordingTrack") or "both"
        if track not in ("inbound", "outbound", "both"):
            raise ApiError(
                400, INVALID_PARAMETER, f"RecordingTrack must be inbound, outbound or both, got {track!r}"
            )
        trim = param(form, "Trim") or "do-not-trim"
        if trim not in ("trim-silence", "do-not-trim"):
            raise ApiError(400, INVALID_PARAMETER, f"Trim must be trim-silence or do-not-trim, got {trim!r}")
        events = events_param(form, "RecordingStatusCallbackEvent", RECORDING_EVENTS, INVALID_PARAMETER)
        recording = RecordingRequest(
            channels=channels,
            status_callback=url_param(form, "RecordingStatusCallback", INVALID_URL),
            status_callback_method=method_param(form, "RecordingStatusCallbackMethod"),
            status_callback_events=events or frozenset({"completed"}),
            trim=trim,
            track=track,
        )
        if record["status"] != CallStatus.IN_PROGRESS:
            raise ApiError(400, CALL_NOT_LIVE, "Call is not in-progress. Cannot start recording.")
        calls = _need(self.controls.calls, "calls")
        try:
            result = await calls.start_recording(record["account_sid"], record["sid"], recording)
        except ControlError as exc:
            raise _control_error(exc) from None
        return json_response(public(result), status=201)

    async def update_call_recording(self, request: web.Request) -> web.Response:
        """``POST Calls/{sid}/Recordings/{RecordingSid}.json``: Status stopped, paused or in-progress."""
        form = await _form(request)
        call = await self._record(request, "calls", sid=request.match_info["call_sid"])
        recording = await self._record(request, "recordings", sid=request.match_info["sid"])
        if recording.get("call_sid") != call["sid"]:
            raise not_found(request.path)
        status = param(form, "Status")
        if status not in ("stopped", "paused", "in-progress"):
            raise ApiError(
                400, INVALID_PARAMETER, f"Status must be stopped, paused or in-progress, got {status!r}"
            )
        behavior = param(form, "PauseBehavior") or "silence"
        if behavior not in ("skip", "silence"):
            raise ApiError(400, INVALID_PARAMETER, f"PauseBehavior must be skip or silence, got {behavior!r}")
        if call["status"] != CallStatus.IN_PROGRESS:
            raise ApiError(400, CALL_NOT_LIVE, "Call is not in-progress. Cannot update the recording.")
        calls = _need(self.controls.calls, "calls")
        try:
            result = await calls.update_recording(
                call["account_sid"],
                call["sid"],
                recording["sid"],
                "stopped" if status == "stopped" else "paused" if status == "paused" else "in-progress",
                "skip" if behavior == "skip" else "silence",
            )
        except ControlError as exc:
            raise _control_error(exc) from None
        return json_response(public(result))

    # Conferences and participants
    async def update_conference(self, request: web.Request) -> web.Response:
        """``POST Conferences/{sid}.json``: ``Status=completed`` ends it; AnnounceUrl plays into it."""
        form = await _form(request)
        record = await self._record(request, "conferences", sid=request.match_info["sid"])
        status = param(form, "Status")
        if status is not None and status != "completed":
            raise ApiError(400, INVALID_PARAMETER, f"Status can only be completed, got {status!r}")
        update = ConferenceUpdate(
            status="completed" if status else None,
            announce_url=url_param(form, "AnnounceUrl", INVALID_URL),
            announce_method=method_param(form, "AnnounceMethod"),
        )
        if update.status is None and update.announce_url is None:
            raise ApiError(400, INVALID_PARAMETER, "Status or AnnounceUrl is required")
        conferences = _need(self.controls.conferences, "conferences")
        try:
            result = await conferences.update_conference(record["account_sid"], record["sid"], update)
        except ControlError as exc:
            raise _control_error(exc) from None
        return json_response(public(result))

    async def create_participant(self, request: web.Request) -> web.Response:
        """``POST Conferences/{sid or name}/Participants.json``: dial out into the room."""
        form = await _form(request)
        account = request.match_info["account_sid"]
        to, from_ = to_and_from(form)
        participant = ParticipantRequest(
            account_sid=account,
            to=to,
            from_=from_,
            label=param(form, "Label"),
            timeout=int_param(form, "Timeout", INVALID_TIMEOUT, 30, 1, MAX_TIMEOUT),
            record=bool(bool_param(form, "Record")),
            muted=bool(bool_param(form, "Muted")),
            beep=param(form, "Beep") or "true",
            start_conference_on_enter=bool_param(form, "StartConferenceOnEnter") is not False,
            end_conference_on_exit=bool(bool_param(form, "EndConferenceOnExit")),
            wait_url=url_param(form, "WaitUrl", INVALID_URL),
            wait_method=method_param(form, "WaitMethod"),
            early_media=bool_param(form, "EarlyMedia") is not False,
            status_callback=status_callback_param(form),
            coaching=bool(bool_param(form, "Coaching")),
            call_sid_to_coach=param(form, "CallSidToCoach"),
            caller_id=param(form, "CallerId"),
            time_limit=int_param(form, "TimeLimit", INVALID_PARAMETER, MAX_TIME_LIMIT, 1, MAX_TIME_LIMIT),
            sip_auth=sip_auth(form),
        )
        if participant.coaching and not participant.call_sid_to_coach:
            raise ApiError(400, INVALID_PARAMETER, "CallSidToCoach is required when Coaching is true")
        conferences = _need(self.controls.conferences, "conferences")
        try:
            result = await conferences.add_participant(
                account, request.match_info["conference_sid"], participant
            )
        except ControlError as exc:
            raise _control_error(exc) from None
        return json_response(public(result), status=201)

    async def _participant(self, request: web.Request) -> dict[str, Any]:
        return await self._record(
            request,
            "participants",
            conference_sid=request.match_info["conference_sid"],
            call_sid=request.match_info["call_sid"],
        )

    async def update_participant(self, request: web.Request) -> web.Response:
        """``POST Conferences/{sid}/Participants/{CallSid}.json``: mute, hold, announce, coach."""
        form = await _form(request)
        record = await self._participant(request)
        update = ParticipantUpdate(
            muted=bool_param(form, "Muted"),
            hold=bool_param(form, "Hold"),
            hold_url=url_param(form, "HoldUrl", INVALID_URL),
            hold_method=method_param(form, "HoldMethod") if param(form, "HoldMethod") else None,
            announce_url=url_param(form, "AnnounceUrl", INVALID_URL),
            announce_method=method_param(form, "AnnounceMethod") if param(form, "AnnounceMethod") else None,
            wait_url=url_param(form, "WaitUrl", INVALID_URL),
            wait_method=method_param(form, "WaitMethod") if param(form, "WaitMethod") else None,
            beep_on_exit=bool_param(form, "BeepOnExit"),
            end_conference_on_exit=bool_param(form, "EndConferenceOnExit"),
            coaching=bool_param(form, "Coaching"),
            call_sid_to_coach=param(form, "CallSidToCoach"),
        )
        if update.coaching and not (update.call_sid_to_coach or record.get("call_sid_to_coach")):
            raise ApiError(400, INVALID_PARAMETER, "CallSidToCoach is required when Coaching is true")
        conferences = _need(self.controls.conferences, "conferences")
        try:
            result = await conferences.update_participant(
                record["account_sid"], record["conference_sid"], record["call_sid"], update
            )
        except ControlError as exc:
            raise _control_error(exc) from None
        return json_response(public(result))

    async def delete_participant(self, request: web.Request) -> web.Response:
        """``DELETE Conferences/{sid}/Participants/{CallSid}.json``: kick the participant."""
        record = await self._participant(request)
        conferences = _need(self.controls.conferences, "conferences")
        try:
            await conferences.remove_participant(
                record["account_sid"], record["conference_sid"], record["call_sid"]
            )
        except ControlError as exc:
            raise _control_error(exc) from None
        return web.Response(status=204)

    # Queues
    async def create_queue(self, request: web.Request) -> web.Response:
        """``POST Queues.json`` with FriendlyName (unique per account, 64 characters) and MaxSize."""
        form = await _form(request)
        account = request.match_info["account_sid"]
        name = param(form, "FriendlyName")
        if name is None or len(name) > 64:
            raise ApiError(400, INVALID_PARAMETER, "FriendlyName is required (at most 64 characters)")
        max_size = int_param(form, "MaxSize", INVALID_PARAMETER, 1000, 1)
        if max_size > MAX_QUEUE_SIZE:
            raise ApiError(400, INVALID_PARAMETER, f"MaxSize may be at most {MAX_QUEUE_SIZE}, got {max_size}")
        await self._unique_queue_name(account, name)
        record = queue_json(account, new_sid("QU"), name, max_size, created=self.clock())
        await self.store.put("queues", record)
        return json_response(record, status=201)

    async def _unique_queue_name(self, account: str, name: str, sid: str | None = None) -> None:
        clash = await self.store.select(
            "queues", [Filter("account_sid", "=", account), Filter("friendly_name", "=", name)], limit=1
        )
        if clash.records and clash.records[0]["sid"] != sid:
            raise ApiError(400, INVALID_PARAMETER, f"A queue named {name!r} already exists")

    async def update_queue(self, request: web.Request) -> web.Response:
        """``POST Queues/{sid}.json``: rename or resize."""
        form = await _form(request)
        record = await self._record(request, "queues", sid=request.match_info["sid"])
        name = param(form, "FriendlyName")
        if name is not None:
            if len(name) > 64:
                raise ApiError(400, INVALID_PARAMETER, "FriendlyName may be at most 64 characters")
            await self._unique_queue_name(record["account_sid"], name, record["sid"])
            record["friendly_name"] = name
        max_size = int_param(form, "MaxSize", INVALID_PARAMETER, int(record.get("max_size") or 1000), 1)
        if max_size > MAX_QUEUE_SIZE:
            raise ApiError(400, INVALID_PARAMETER, f"MaxSize may be at most {MAX_QUEUE_SIZE}, got {max_size}")
        record["max_size"] = max_size
        record["date_updated"] = rfc2822(self.clock())
        await self.store.put("queues", record)
        return json_response(public(record))

    async def delete_queue(self, request: web.Request) -> web.Response:
        """``DELETE Queues/{sid}.json``; refused (400) while calls wait in it."""
        record = await self._record(request, "queues", sid=request.match_info["sid"])
        if self.controls.queues is not None and await self.controls.queues.members(
            record["account_sid"], record["sid"]
        ):
            raise ApiError(400, INVALID_PARAMETER, "The queue still has members; dequeue them first")
        await self.store.delete("queues", sid=record["sid"])
        return web.Response(status=204)

    async def list_members(self, request: web.Request) -> web.Response:
        """``GET Queues/{sid}/Members.json``: the waiting calls, front first (one page)."""
        record = await self._record(request, "queues", sid=request.match_info["queue_sid"])
        queues = _need(self.controls.queues, "queues")
        members = await queues.members(record["account_sid"], record["sid"])
        body = {
            "queue_members": [member.to_json() for member in members],
            "page": 0,
            "page_size": max(len(members), 50),
            "start": 0,
            "end": max(len(members) - 1, 0),
            "uri": request.path,
            "first_page_uri": request.path,
            "next_page_uri": None,
            "previous_page_uri": None,
        }
        return json_response(body)

    async def _member_sid(self, request: web.Request) -> tuple[dict[str, Any], str | None]:
        record = await self._record(request, "queues", sid=request.match_info["queue_sid"])
        call_sid = request.match_info["call_sid"]
        return record, None if call_sid == "Front" else call_sid

    async def fetch_member(self, request: web.Request) -> web.Response:
        """``GET Queues/{sid}/Members/{CallSid or Front}.json``."""
        record, call_sid = await self._member_sid(request)
        queues = _need(self.controls.queues, "queues")
        members = await queues.members(record["account_sid"], record["sid"])
        for member in members:
            if call_sid is None or member.call_sid == call_sid:
                return json_response(member.to_json())
        raise not_found(request.path)

    async def update_member(self, request: web.Request) -> web.Response:
        """``POST Queues/{sid}/Members/{CallSid or Front}.json`` with Url: dequeue to that TwiML."""
        form = await _form(request)
        record, call_sid = await self._member_sid(request)
        url = url_param(form, "Url", INVALID_URL)
        if url is None:
            raise ApiError(400, INVALID_URL, "Url parameter is required.")
        method = method_param(form, "Method")
        queues = _need(self.controls.queues, "queues")
        try:
            member = await queues.dequeue(record["account_sid"], record["sid"], call_sid, url, method)
        except ControlError as exc:
            raise _control_error(exc) from None
        return json_response(member.to_json())

    # Messages
    async def create_message(self, request: web.Request) -> web.Response:
        """``POST Messages.json``: send a message over SIP MESSAGE; 201 with it ``queued``."""
        form = await _form(request)
        account = request.match_info["account_sid"]
        to_text = param(form, "To")
        if to_text is None:
            raise ApiError(400, NO_MESSAGE_TO, "A 'To' phone number is required.")
        to = parse_target(to_text)
        if to is None:
            raise ApiError(400, INVALID_TO, f"The 'To' number {to_text} is not a valid phone number.")
        service_sid = param(form, "MessagingServiceSid")
        if service_sid is not None and not MESSAGING_SERVICE_SID.fullmatch(service_sid):
            raise ApiError(400, INVALID_PARAMETER, f"MessagingServiceSid {service_sid} is not valid")
        from_text = param(form, "From")
        if from_text is None:
            raise ApiError(400, NO_MESSAGE_FROM, "A 'From' phone number is required.")
        from_ = caller(from_text, number_only=False)
        if from_ is None and ALPHA_SENDER.fullmatch(from_text):
            from_ = from_text  # an alphanumeric sender ID
        if from_ is None:
            raise ApiError(400, INVALID_FROM, f"The 'From' number {from_text} is not a valid phone number.")
        body = str(form.get("Body") or "")
        if not body.strip():
            raise ApiError(400, NO_BODY, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            raise ApiError(
                400, BODY_TOO_LONG, "The concatenated message body exceeds the 1600 character limit."
            )
        callback = url_param(form, "StatusCallback", INVALID_MESSAGE_CALLBACK)
        method = method_param(form, "StatusCallbackMethod")
        messaging = _need(self.controls.messaging, "messages")
        message = await messaging.send(
            account,
            from_,
            str(to),
            body,
            status_callback=callback,
            status_callback_method=method,
            messaging_service_sid=service_sid,
        )
        return json_response(message.to_json(), status=201)


def queue_json(
    account_sid: str,
    sid: str,
    friendly_name: str,
    max_size: int,
    *,
    created: float,
    current_size: int = 0,
    average_wait_time: int = 0,
) -> dict[str, Any]:
    """Twilio's Queue JSON."""
    base = f"{account_base(account_sid)}/Queues/{sid}"
    return {
        "sid": sid,
        "account_sid": account_sid,
        "friendly_name": friendly_name,
        "current_size": current_size,
        "average_wait_time": average_wait_time,
        "max_size": max_size,
        "date_created": rfc2822(created),
        "date_updated": rfc2822(created),
        "uri": f"{base}.json",
        "subresource_uris": {"members": f"{base}/Members.json"},
    }


def write_routes(base: str, writes: WriteResources) -> Iterable[web.RouteDef]:
    """The POST/DELETE routes (and the live queue-member reads) under ``base``."""
    return [
        web.post(f"{base}/Calls.json", writes.create_call),
        web.post(f"{base}/Calls/{{sid}}.json", writes.update_call),
        web.post(f"{base}/Calls/{{call_sid}}/Recordings.json", writes.create_call_recording),
        web.post(f"{base}/Calls/{{call_sid}}/Recordings/{{sid}}.json", writes.update_call_recording),
        web.post(f"{base}/Conferences/{{sid}}.json", writes.update_conference),
        web.post(f"{base}/Conferences/{{conference_sid}}/Participants.json", writes.create_participant),
        web.post(
            f"{base}/Conferences/{{conference_sid}}/Participants/{{call_sid}}.json", writes.update_participant
        ),
        web.delete(
            f"{base}/Conferences/{{conference_sid}}/Participants/{{call_sid}}.json", writes.delete_participant
        ),
        web.post(f"{base}/Queues.json", writes.create_queue),
        web.post(f"{base}/Queues/{{sid}}.json", writes.update_queue),
        web.delete(f"{base}/Queues/{{sid}}.json", writes.delete_queue),
        web.get(f"{base}/Queues/{{queue_sid}}/Members.json", writes.list_members),
        web.get(f"{base}/Queues/{{queue_sid}}/Members/{{call_sid}}.json", writes.fetch_member),
        web.post(f"{base}/Queues/{{queue_sid}}/Members/{{call_sid}}.json", writes.update_member),
        web.post(f"{base}/Messages.json", writes.create_message),
    ]
