"""The REST read side driven by the official twilio library against a real aiohttp server."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile as sf
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from trunkline.gateway.api.app import create_api_app
from trunkline.gateway.api.envelope import rfc2822
from trunkline.gateway.store import SqliteStore

ACCOUNT = "AC" + "a" * 32
TOKEN = "secret-token"
OTHER = "AC" + "b" * 32
BASE = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def basic(sid: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()}


@dataclass
class Api:
    url: str
    store: SqliteStore
    recordings: Path

    def client(self, sid: str = ACCOUNT, token: str = TOKEN) -> Client:
        client = Client(sid, token)
        client.api.base_url = self.url
        return client


def call_record(n: int, account: str = ACCOUNT) -> dict[str, object]:
    start = BASE + timedelta(hours=n)
    sid = f"CA{n:032x}"
    return {
        "sid": sid,
        "account_sid": account,
        "parent_call_sid": None,
        "to": f"+1555{n:07d}",
        "from": "+15550000000",
        "status": "busy" if n % 4 == 0 else "completed",
        "direction": "inbound",
        "start_time": rfc2822(start),
        "end_time": rfc2822(start + timedelta(seconds=n)),
        "duration": str(n),
        "date_created": rfc2822(start),
        "date_updated": rfc2822(start),
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{account}/Calls/{sid}.json",
    }


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = await SqliteStore(tmp_path / "api.sqlite").open()
    app = create_api_app({ACCOUNT: TOKEN, OTHER: "other-token"}, store, str(tmp_path))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield Api(f"http://127.0.0.1:{port}", store, tmp_path)
    await runner.cleanup()
    await store.close()


async def test_paging_through_120_calls(api: Api) -> None:
    for n in range(120):
        await api.store.put("calls", call_record(n))
    await api.store.put("calls", call_record(500, account=OTHER))
    calls = await asyncio.to_thread(lambda: api.client().calls.list(page_size=50))
    assert len(calls) == 120
    assert len({c.sid for c in calls}) == 120
    assert calls[0].sid == f"CA{119:032x}"  # newest first
    assert calls[0].start_time == BASE + timedelta(hours=119)
    assert f"CA{500:032x}" not in {c.sid for c in calls}  # another account's call
    page = await asyncio.to_thread(lambda: api.client().calls.page(page_size=50))
    assert page.next_page_url is not None and "Page=1" in page.next_page_url


async def test_filters(api: Api) -> None:
    for n in range(40):
        await api.store.put("calls", call_record(n))
    client = api.client()
    busy = await asyncio.to_thread(lambda: client.calls.list(status="busy"))
    assert len(busy) == 10 and {c.status for c in busy} == {"busy"}
    late = await asyncio.to_thread(lambda: client.calls.list(start_time_after=BASE + timedelta(hours=30)))
    assert sorted(int(c.sid[2:], 16) for c in late) == list(range(30, 40))
    early = await asyncio.to_thread(lambda: client.calls.list(start_time_before=BASE + timedelta(hours=2)))
    assert sorted(int(c.sid[2:], 16) for c in early) == [0, 1]
    one = await asyncio.to_thread(lambda: client.calls.list(to="+15550000007"))
    assert [c.to for c in one] == ["+15550000007"]


async def test_fetch_not_found_and_bad_credentials(api: Api) -> None:
    await api.store.put("calls", call_record(3))
    call = await asyncio.to_thread(lambda: api.client().calls(f"CA{3:032x}").fetch())
    assert call.status == "completed" and call.duration == "3"
    with pytest.raises(TwilioRestException) as missing:
        await asyncio.to_thread(lambda: api.client().calls("CA" + "9" * 32).fetch())
    assert (missing.value.status, missing.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as denied:
        await asyncio.to_thread(lambda: api.client(token="wrong").calls(f"CA{3:032x}").fetch())
    assert (denied.value.status, denied.value.code) == (401, 20003)
    # Authenticated as one account, asking for another's resources: as if they did not exist.
    async with aiohttp.ClientSession(headers=basic(OTHER, "other-token")) as session:
        async with session.get(f"{api.url}/2010-04-01/Accounts/{ACCOUNT}/Calls/CA{3:032x}.json") as foreign:
            assert foreign.status == 404 and (await foreign.json())["code"] == 20404
        async with session.get(f"{api.url}/2010-04-01/Accounts/{OTHER}/Calls/CA{3:032x}.json") as own_path:
            assert own_path.status == 404
    calls_url = f"{api.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    async with aiohttp.ClientSession() as session, session.get(calls_url) as anonymous:
        assert anonymous.status == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")


async def test_recording_media_and_delete(api: Api) -> None:
    rate = 8000
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    path = api.recordings / "RE1.wav"
    sf.write(path, tone, rate, subtype="PCM_16")
    sid = "RE" + "1" * 32
    await api.store.put(
        "recordings",
        {
            "sid": sid,
            "account_sid": ACCOUNT,
            "call_sid": "CA" + "1" * 32,
            "conference_sid": None,
            "duration": "1",
            "channels": 1,
            "status": "completed",
            "date_created": rfc2822(BASE),
            "_path": str(path),
        },
    )
    client = api.client()
    recordings = await asyncio.to_thread(lambda: client.recordings.list(call_sid="CA" + "1" * 32))
    assert [r.sid for r in recordings] == [sid]
    per_call = await asyncio.to_thread(lambda: client.calls("CA" + "1" * 32).recordings.list())
    assert [r.sid for r in per_call] == [sid]
    media = f"{api.url}/2010-04-01/Accounts/{ACCOUNT}/Recordings/{sid}"
    async with aiohttp.ClientSession(headers=basic(ACCOUNT, TOKEN)) as session:
        async with session.get(media + ".wav") as response:
            assert response.status == 200
            wav = await response.read()
        async with session.get(media + ".mp3") as response:
            assert response.status == 200 and response.headers["Content-Type"] == "audio/mpeg"
            mp3 = await response.read()
    assert len(mp3) > 1000
    # Media is public, as Twilio's is by default (so an app can <Play> a RecordingUrl); metadata is not.
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(media) as response:
            assert response.status == 200 and await response.read() == wav
        async with anonymous.get(media + ".json") as response:
            assert response.status == 401
    audio, got_rate = sf.read(io.BytesIO(wav), dtype="int16")
    spectrum = np.abs(np.fft.rfft(audio))
    assert got_rate == rate and abs(np.argmax(spectrum) * rate / len(audio) - 440) < 2
    session = aiohttp.ClientSession(headers=basic(ACCOUNT, TOKEN))
    async with session, session.get(media + ".json") as response:
        fetched = await response.json()
    assert fetched["sid"] == sid and "_path" not in fetched
    assert await asyncio.to_thread(lambda: client.recordings(sid).delete()) is True
    assert not path.exists()
    assert await api.store.get("recordings", sid=sid) is None
