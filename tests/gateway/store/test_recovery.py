"""Recording records a crash left ``in-progress``, finished at start-up from their repaired files."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from aiohttp import web
from twilio.rest import Client

from trunkline.gateway.api.app import create_api_app
from trunkline.gateway.api.control import recording_json
from trunkline.gateway.server import repair_recordings
from trunkline.gateway.store import SqliteStore
from trunkline.gateway.store.recovery import TOO_SHORT, RecoveryReport, recover_recordings
from trunkline.gateway.store.sqlite import MIGRATIONS, RECORDING_STATUS, SCHEMA_VERSION

ACCOUNT = "AC" + "c" * 32
TOKEN = "recovery-token"
CALL = "CA" + "d" * 32
STARTED = 1_790_000_000.0
RESTART = STARTED + 600.0
RATE = 8000


def sid(n: int) -> str:
    return f"RE{n:032x}"


def tone(seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    mono = (0.5 * 32767 * np.sin(2 * np.pi * 700 * t)).astype(np.int16)
    return np.column_stack([mono] * channels) if channels > 1 else mono


def crashed_wav(path: Path, pcm: np.ndarray, declared_frames: int) -> None:
    """What ``kill -9`` leaves: all the audio on disk, the header from the last update."""
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    data = 2 * channels * declared_frames
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, RATE, 2 * channels * RATE, 2 * channels, 16)
    header = b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", data)
    path.write_bytes(header + pcm.astype("<i2").tobytes())


def live_record(n: int, path: Path, **fields: Any) -> dict[str, Any]:
    record = recording_json(ACCOUNT, sid(n), created=STARTED, call_sid=CALL, source="RecordVerb", **fields)
    record["_path"] = str(path)
    return record


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore(tmp_path / "fresh.sqlite").open()
    yield opened
    await opened.close()


async def recover(store: SqliteStore, directory: Path) -> RecoveryReport:
    """The start-up sequence: the WAV repair, then the records."""
    await asyncio.to_thread(repair_recordings, directory)
    return await recover_recordings(store, directory, now=RESTART)


async def test_crashed_recording_becomes_completed_and_the_twilio_library_lists_it(
    tmp_path: Path, store: SqliteStore
) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    path = recordings / f"{sid(1)}.wav"
    audio = tone(3.02)
    crashed_wav(path, audio, declared_frames=RATE)  # header last updated at 1 s
    await store.put("recordings", live_record(1, path))
    assert sf.info(str(path)).frames == RATE

    report = await recover(store, recordings)

    in_file = sf.info(str(path)).frames / RATE
    assert in_file == pytest.approx(3.02, abs=1e-3)  # the repair made all of it readable
    assert [(r.sid, r.status) for r in report.recovered] == [(sid(1), "completed")]
    assert report.recovered[0].duration_s == pytest.approx(in_file, abs=1e-9)
    stored = await store.get("recordings", sid=sid(1))
    assert stored is not None
    assert stored["status"] == "completed"
    assert abs(int(stored["duration"]) - in_file) <= 0.1  # whole seconds, as Twilio reports it
    assert stored["date_created"] == stored["start_time"] == "Mon, 21 Sep 2026 14:13:20 +0000"
    assert stored["date_updated"] == "Mon, 21 Sep 2026 14:23:20 +0000"
    assert stored["_path"] == str(path)
    assert report.orphans == () and report.foreign == ()

    app = create_api_app({ACCOUNT: TOKEN}, store, str(recordings))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        client = Client(ACCOUNT, TOKEN)
        client.api.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        listed = await asyncio.to_thread(lambda: client.recordings.list(call_sid=CALL))
        assert [(r.sid, r.status, r.duration, r.source) for r in listed] == [
            (sid(1), "completed", "3", "RecordVerb")
        ]
        per_call = await asyncio.to_thread(lambda: client.calls(CALL).recordings.list())
        assert [r.sid for r in per_call] == [sid(1)]
    finally:
        await runner.cleanup()
    # Recovery is done once: a second start finds nothing unfinished and changes nothing.
    again = await recover(store, recordings)
    assert again.recovered == () and await store.get("recordings", sid=sid(1)) == stored


async def test_recording_outcomes_missing_empty_unreadable_paused_and_dual(
    tmp_path: Path, store: SqliteStore
) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    missing = recordings / f"{sid(2)}.wav"
    empty = recordings / f"{sid(3)}.wav"
    crashed_wav(empty, tone(0.0), declared_frames=0)
    garbage = recordings / f"{sid(4)}.wav"
    garbage.write_bytes(b"not a RIFF file at all")
    paused = recordings / f"{sid(5)}.wav"
    crashed_wav(paused, tone(1.6, channels=2), declared_frames=RATE)
    done = recordings / f"{sid(6)}.wav"
    sf.write(done, tone(2.0), RATE, subtype="PCM_16")
    await store.put("recordings", live_record(2, missing))
    await store.put("recordings", live_record(3, empty))
    await store.put("recordings", live_record(4, garbage))
    await store.put("recordings", live_record(5, paused, status="paused", channels=2))
    finished = live_record(6, done, status="completed", duration=2)
    await store.put("recordings", finished)

    report = await recover(store, recordings)

    assert {r.sid: r.status for r in report.recovered} == {
        sid(2): "absent",
        sid(3): "absent",
        sid(4): "failed",
        sid(5): "completed",
    }
    rows = {n: await store.get("recordings", sid=sid(n)) for n in range(2, 7)}
    assert rows[2] is not None and (rows[2]["status"], rows[2]["duration"]) == ("absent", "0")
    assert rows[2]["error_code"] == TOO_SHORT
    assert rows[3] is not None and (rows[3]["status"], rows[3]["error_code"]) == ("absent", TOO_SHORT)
    assert rows[4] is not None and (rows[4]["status"], rows[4]["error_code"]) == ("failed", None)
    assert garbage.read_bytes() == b"not a RIFF file at all"  # kept for whoever investigates
    assert rows[5] is not None and (rows[5]["status"], rows[5]["duration"], rows[5]["channels"]) == (
        "completed",
        "2",  # 1.6 s of two-channel audio
        2,
    )
    assert rows[6] == finished  # a finished record is not touched


async def test_partial_flac_recording_is_converted_then_completed(tmp_path: Path, store: SqliteStore) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    flac = recordings / f"{sid(7)}.flac"
    partial = recordings / f"{sid(7)}.flac.partial.wav"
    audio = tone(2.4)
    crashed_wav(partial, audio, declared_frames=0)
    await store.put("recordings", live_record(7, flac))

    report = await recover(store, recordings)

    assert [(r.sid, r.status) for r in report.recovered] == [(sid(7), "completed")]
    assert not partial.exists()
    samples, rate = sf.read(str(flac), dtype="int16")
    assert rate == RATE and np.array_equal(samples, audio)
    stored = await store.get("recordings", sid=sid(7))
    assert stored is not None and (stored["status"], stored["duration"]) == ("completed", "2")


async def test_orphan_recording_file_is_logged_and_foreign_record_left_alone(
    tmp_path: Path, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    orphan = recordings / f"{sid(8)}.wav"
    crashed_wav(orphan, tone(1.2), declared_frames=0)
    (recordings / "notes.txt").write_text("not a recording")
    elsewhere = tmp_path / "other-node" / f"{sid(9)}.wav"
    foreign = live_record(9, elsewhere)
    await store.put("recordings", foreign)

    with caplog.at_level(logging.WARNING, logger="trunkline.store.recovery"):
        report = await recover(store, recordings)

    assert report.orphans == (orphan,)
    assert report.foreign == (sid(9),) and report.recovered == ()
    assert await store.get("recordings", sid=sid(8)) is None
    assert await store.get("recordings", sid=sid(9)) == foreign
    assert any(
        orphan.name in r.getMessage() and "no Recording record" in r.getMessage() for r in caplog.records
    )
    assert sf.info(str(orphan)).frames == tone(1.2).size  # still repaired, still on disk


async def test_unfinished_recordings_query_uses_the_status_index(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    with sqlite3.connect(path, isolation_level=None) as conn:  # a database written by schema v2
        for step in MIGRATIONS[:2]:
            for statement in step:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.execute(
            "INSERT INTO recordings (sid, account_sid, date_created, data) VALUES (?, ?, ?, ?)",
            (sid(10), ACCOUNT, STARTED, f'{{"sid": "{sid(10)}", "status": "in-progress"}}'),
        )
    store = await SqliteStore(path).open()
    try:
        assert [r["sid"] for r in await store.unfinished_recordings()] == [sid(10)]
        assert await store.existing_keys("recordings", [sid(10), sid(11), sid(10)]) == {sid(10)}
        with pytest.raises(Exception, match="composite key"):
            await store.existing_keys("participants", ["x"])
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 3
        plan = " ".join(
            row[3]
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN SELECT data FROM recordings WHERE {RECORDING_STATUS} IN (?, ?)",
                ("in-progress", "paused"),
            )
        )
        assert "recordings_status" in plan, plan
