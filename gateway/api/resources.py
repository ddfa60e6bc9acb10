"""Read, list and delete handlers for the REST resources kept in the store.

Records are stored as Twilio's JSON (snake_case fields, RFC 2822 dates); fields whose names start
with ``_`` are internal (a recording's file path, say) and never leave the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from trunkline.gateway.api.envelope import (
    ApiError,
    Paging,
    account_base,
    json_response,
    list_envelope,
    not_found,
)
from trunkline.gateway.store import Filter, SqliteStore

log = logging.getLogger(__name__)


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The record without its internal ``_`` fields (the record itself when it has none)."""
    # One C-level scan of the keys first: most records have no internal field, and a list page
    # filtering 50 records key by key cost as much as its JSON encoding (bench/api_load.py).
    if "\n_" not in "\n" + "\n".join(record):
        return record
    return {key: value for key, value in record.items() if not key.startswith("_")}


def parse_date_filter(name: str, value: str) -> datetime:
    """``YYYY-MM-DD`` or ISO 8601 date-times as the twilio library sends them."""
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, 20001, f"{name} must be a date like 2009-07-06, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def date_filters(query: Any, param: str, column: str) -> tuple[list[Filter], list[tuple[str, str]]]:
    """Filters for ``Param``, ``Param<`` and ``Param>`` (also ``Param<=``/``Param>=``) on ``column``."""
    filters: list[Filter] = []
    echoed: list[tuple[str, str]] = []
    for suffix in ("", "<", ">", "<=", ">="):
        raw = query.get(param + suffix)
        if raw is None:
            continue
        echoed.append((param + suffix, raw))
        moment = parse_date_filter(param + suffix, raw)
        is_day = len(raw.strip()) == 10
        start = moment.timestamp()
        end = (moment + timedelta(days=1)).timestamp() if is_day else start
        if suffix == "":
            if is_day:
                filters += [Filter(column, ">=", start), Filter(column, "<", end)]
            else:
                filters.append(Filter(column, "=", start))
        elif suffix == "<=" and not is_day:
            filters.append(Filter(column, "<=", start))
        elif suffix == "<=":
            filters.append(Filter(column, "<", end))
        elif suffix == "<":
            filters.append(Filter(column, "<", start))
        else:
            # Twilio: ``StartTime>`` means on or after that date.
            filters.append(Filter(column, ">=", start))
    return filters, echoed


def _encode_mp3(path: str) -> bytes:
    import av  # PyAV: the WAV is decoded and re-encoded with libmp3lame, off the event loop.

    out = io.BytesIO()
    with av.open(path) as source, av.open(out, "w", format="mp3") as sink:
        stream_in = source.streams.audio[0]
        # Keep the recording's channel count (Twilio serves a mono recording as mono MP3).
        layout = "mono" if stream_in.channels == 1 else "stereo"
        stream_out = sink.add_stream("mp3", rate=stream_in.rate)
        stream_out.codec_context.layout = layout
        stream_out.bit_rate = 32000 * stream_in.channels  # voice; 8 kHz MPEG-2.5 allows at most 64 kbit/s
        resampler = av.AudioResampler(format=stream_out.format.name, layout=layout, rate=stream_in.rate)
        for frame in source.decode(stream_in):
            for converted in resampler.resample(frame):
                converted.pts = None
                for packet in stream_out.encode(converted):
                    sink.mux(packet)
        for packet in stream_out.encode(None):
            sink.mux(packet)
    return out.getvalue()


class ReadResources:
    """Handlers bound to one store."""

    def __init__(self, store: SqliteStore, recordings_dir: str) -> None:
        self.store = store
        self.recordings_dir = recordings_dir

    async def _list(
        self,
        request: web.Request,
        table: str,
        key: str,
        filters: Sequence[Filter],
        echoed: Sequence[tuple[str, str]],
    ) -> web.Response:
        account = request.match_info["account_sid"]
        paging = Paging.from_query(request.query)
        page = await self.store.select(
            table, [Filter("account_sid", "=", account), *filters], limit=paging.size, offset=paging.offset
        )
        body = list_envelope(
            key,
            [public(record) for record in page.records],
            path=request.path,
            filters=echoed,
            paging=paging,
            total=page.total,
        )
        return json_response(body)

    async def _fetch(self, request: web.Request, table: str, **key: str) -> dict[str, Any]:
        record = await self.store.get(table, **key)
        if record is None or record.get("account_sid") != request.match_info["account_sid"]:
            raise not_found(request.path)
        return record

    def _equal_filters(
        self, request: web.Request, mapping: Sequence[tuple[str, str]]
    ) -> tuple[list[Filter], list[tuple[str, str]]]:
        filters: list[Filter] = []
        echoed: list[tuple[str, str]] = []
        for param, column in mapping:
            value = request.query.get(param)
            if value is not None:
                filters.append(Filter(column, "=", value))
                echoed.append((param, value))
        return filters, echoed

    # Calls
    async def list_calls(self, request: web.Request) -> web.Response:
        """``GET Calls.json`` with To, From, ParentCallSid, Status and StartTime/EndTime ranges."""
        filters, echoed = self._equal_filters(
            request,
            [("To", "to_"), ("From", "from_"), ("ParentCallSid", "parent_call_sid"), ("Status", "status")],
        )
        for param, column in (("StartTime", "start_ts"), ("EndTime", "end_ts")):
            more, more_echoed = date_filters(request.query, param, column)
            filters += more
            echoed += more_echoed
        return await self._list(request, "calls", "calls", filters, echoed)

    async def fetch_call(self, request: web.Request) -> web.Response:
        """``GET Calls/{CallSid}.json``."""
        return json_response(public(await self._fetch(request, "calls", sid=request.match_info["sid"])))

    async def delete_call(self, request: web.Request) -> web.Response:
        """``DELETE Calls/{CallSid}.json``: removes the record of a call that has ended."""
        record = await self._fetch(request, "calls", sid=request.match_info["sid"])
        if record.get("status") in ("queued", "ringing", "in-progress"):
            raise ApiError(400, 21220, "Call is in progress; end it before deleting its record")
        await self.store.delete("calls", sid=record["sid"])
        return web.Response(status=204)

    # Recordings
    async def list_recordings(self, request: web.Request) -> web.Response:
        """Account-wide, per call (``Calls/{sid}/Recordings.json``) or per conference."""
        filters, echoed = self._equal_filters(
            request, [("CallSid", "call_sid"), ("ConferenceSid", "conference_sid")]
        )
        if "call_sid" in request.match_info:
            filters.append(Filter("call_sid", "=", request.match_info["call_sid"]))
        if "conference_sid" in request.match_info:
            filters.append(Filter("conference_sid", "=", request.match_info["conference_sid"]))
        more, more_echoed = date_filters(request.query, "DateCreated", "date_created")
        return await self._list(
            request, "recordings", "recordings", [*filters, *more], [*echoed, *more_echoed]
        )

    async def fetch_recording(self, request: web.Request) -> web.Response:
        """``GET Recordings/{RecordingSid}.json``."""
        return json_response(public(await self._fetch(request, "recordings", sid=request.match_info["sid"])))

    async def delete_recording(self, request: web.Request) -> web.Response:
        """``DELETE Recordings/{RecordingSid}.json``: the record and its audio file."""
        record = await self._fetch(request, "recordings", sid=request.match_info["sid"])
        path = record.get("_path")
        if path:
            await asyncio.get_running_loop().run_in_executor(None, self._unlink, str(path))
        await self.store.delete("recordings", sid=record["sid"])
        return web.Response(status=204)

    @staticmethod
    def _unlink(path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    async def recording_media(self, request: web.Request) -> web.StreamResponse:
        """``GET Recordings/{sid}`` (WAV), ``{sid}.wav`` or ``{sid}.mp3``."""
        name = request.match_info["sid"]
        sid, dot, extension = name.partition(".")
        if dot and extension not in ("wav", "mp3"):
            raise not_found(request.path)
        record = await self._fetch(request, "recordings", sid=sid)
        path = record.get("_path")
        if not path or not Path(path).exists():
            raise not_found(request.path)
        if extension == "mp3":
            data = await asyncio.get_running_loop().run_in_executor(None, _encode_mp3, str(path))
            return web.Response(body=data, content_type="audio/mpeg")
        return web.FileResponse(path, headers={"Content-Type": "audio/x-wav"})

    # Conferences and participants
    async def list_conferences(self, request: web.Request) -> web.Response:
        """``GET Conferences.json`` with FriendlyName, Status and DateCreated/DateUpdated."""
        filters, echoed = self._equal_filters(
            request, [("FriendlyName", "friendly_name"), ("Status", "status")]
        )
        for param, column in (("DateCreated", "date_created"), ("DateUpdated", "date_updated")):
            more, more_echoed = date_filters(request.query, param, column)
            filters += more
            echoed += more_echoed
        return await self._list(request, "conferences", "conferences", filters, echoed)

    async def fetch_conference(self, request: web.Request) -> web.Response:
        """``GET Conferences/{ConferenceSid}.json``."""
        return json_response(public(await self._fetch(request, "conferences", sid=request.match_info["sid"])))

    async def list_participants(self, request: web.Request) -> web.Response:
        """``GET Conferences/{sid}/Participants.json``."""
        conference = Filter("conference_sid", "=", request.match_info["conference_sid"])
        return await self._list(request, "participants", "participants", [conference], [])

    async def fetch_participant(self, request: web.Request) -> web.Response:
        """``GET Conferences/{sid}/Participants/{CallSid}.json``."""
        record = await self._fetch(
            request,
            "participants",
            conference_sid=request.match_info["conference_sid"],
            call_sid=request.match_info["call_sid"],
        )
        return json_response(public(record))

    # Messages
    async def list_messages(self, request: web.Request) -> web.Response:
        """``GET Messages.json`` with To, From and DateSent ranges."""
        filters, echoed = self._equal_filters(request, [("To", "to_"), ("From", "from_")])
        more, more_echoed = date_filters(request.query, "DateSent", "date_sent")
        return await self._list(request, "messages", "messages", [*filters, *more], [*echoed, *more_echoed])

    async def fetch_message(self, request: web.Request) -> web.Response:
        """``GET Messages/{MessageSid}.json``."""
        return json_response(public(await self._fetch(request, "messages", sid=request.match_info["sid"])))

    async def delete_message(self, request: web.Request) -> web.Response:
        """``DELETE Messages/{MessageSid}.json``."""
        record = await self._fetch(request, "messages", sid=request.match_info["sid"])
        await self.store.delete("messages", sid=record["sid"])
        return web.Response(status=204)

    # Queues and debugger notifications
    async def list_queues(self, request: web.Request) -> web.Response:
        """``GET Queues.json``."""
        return await self._list(request, "queues", "queues", [], [])

    async def fetch_queue(self, request: web.Request) -> web.Response:
        """``GET Queues/{QueueSid}.json``."""
        return json_response(public(await self._fetch(request, "queues", sid=request.match_info["sid"])))

    async def list_notifications(self, request: web.Request) -> web.Response:
        """``GET Notifications.json``: debugger events (TwiML and webhook errors)."""
        return await self._list(request, "notifications", "notifications", [], [])

    async def fetch_notification(self, request: web.Request) -> web.Response:
        """``GET Notifications/{NotificationSid}.json``."""
        return json_response(
            public(await self._fetch(request, "notifications", sid=request.match_info["sid"]))
        )


def call_uri(account_sid: str, call_sid: str) -> str:
    """``uri`` field of a call record."""
    return f"{account_base(account_sid)}/Calls/{call_sid}.json"
