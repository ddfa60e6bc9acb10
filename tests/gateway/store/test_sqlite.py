"""SQLite store: round trips, filters, paging, migrations, and survival across a process restart."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from trunkline.gateway.store import Filter, SqliteStore, StoreError
from trunkline.gateway.store.sqlite import SCHEMA_VERSION
from trunkline.gateway.store.tables import to_epoch

BASE = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def call(n: int, status: str = "completed", parent: str | None = None) -> dict[str, object]:
    created = BASE + timedelta(minutes=n)
    return {
        "sid": f"CA{n:032x}",
        "account_sid": "AC" + "1" * 32,
        "parent_call_sid": parent,
        "to": f"+1555000{n:04d}",
        "from": "+15559990000",
        "status": status,
        "start_time": format_datetime(created),
        "end_time": format_datetime(created + timedelta(seconds=30)),
        "date_created": format_datetime(created),
        "price": None,
    }


async def test_put_get_delete_round_trip(tmp_path: Path) -> None:
    store = await SqliteStore(tmp_path / "db" / "t.sqlite").open()
    try:
        record = call(1)
        await store.put("calls", record)
        assert await store.get("calls", sid=record["sid"]) == record
        record["status"] = "in-progress"
        await store.put("calls", record)
        assert (await store.get("calls", sid=record["sid"]))["status"] == "in-progress"  # type: ignore[index]
        assert await store.delete("calls", sid=record["sid"]) is True
        assert await store.delete("calls", sid=record["sid"]) is False
        assert await store.get("calls", sid=record["sid"]) is None
    finally:
        await store.close()


async def test_filters_ordering_and_pages(tmp_path: Path) -> None:
    store = await SqliteStore(tmp_path / "t.sqlite").open()
    try:
        for n in range(120):
            await store.put("calls", call(n, status="busy" if n % 3 == 0 else "completed"))
        await store.put("calls", call(500, parent="CA" + "f" * 32))
        page = await store.select("calls", limit=50)
        assert page.total == 121 and len(page.records) == 50
        assert page.records[0]["sid"] == f"CA{500:032x}"  # newest first
        third = await store.select("calls", limit=50, offset=100)
        assert len(third.records) == 21
        busy = await store.select("calls", [Filter("status", "=", "busy")], limit=1000)
        assert busy.total == 40 and {r["status"] for r in busy.records} == {"busy"}
        after = to_epoch(format_datetime(BASE + timedelta(minutes=100)))
        late = await store.select("calls", [Filter("start_ts", ">=", after)], limit=1000, descending=False)
        assert [r["sid"] for r in late.records][:2] == [f"CA{100:032x}", f"CA{101:032x}"]
        assert late.total == 21
        children = await store.select("calls", [Filter("parent_call_sid", "=", "CA" + "f" * 32)])
        assert [r["sid"] for r in children.records] == [f"CA{500:032x}"]
        roots = await store.select("calls", [Filter("parent_call_sid", "=", None)], limit=1000)
        assert roots.total == 120
        by_to = await store.select("calls", [Filter("to_", "=", "+15550000007")])
        assert [r["to"] for r in by_to.records] == ["+15550000007"]
    finally:
        await store.close()


async def test_composite_keys_and_bad_requests(tmp_path: Path) -> None:
    store = await SqliteStore(tmp_path / "t.sqlite").open()
    try:
        participant = {"conference_sid": "CF1", "call_sid": "CA1", "account_sid": "AC1", "muted": True}
        await store.put("participants", participant)
        assert await store.get("participants", conference_sid="CF1", call_sid="CA1") == participant
        with pytest.raises(StoreError, match="unknown table"):
            await store.put("nope", {"sid": "x"})
        with pytest.raises(ValueError, match="no column 'colour'"):
            await store.select("calls", [Filter("colour", "=", "red")])
        with pytest.raises(ValueError, match="lacks its key"):
            await store.put("calls", {"status": "queued"})
        with pytest.raises(ValueError, match="keyed by conference_sid, call_sid"):
            await store.get("participants", sid="x")
    finally:
        await store.close()


async def test_schema_version_is_recorded_and_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    store = await SqliteStore(path).open()
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this Trunkline"):
        await SqliteStore(path).open()


def test_records_survive_a_killed_process(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    script = textwrap.dedent(
        """
        import asyncio, os, signal, sys
        from trunkline.gateway.store import SqliteStore
        async def main():
            store = await SqliteStore(sys.argv[1]).open()
            for n in range(25):
                record = {"sid": f"SM{n:032x}", "account_sid": "AC1", "body": f"Привет {n}", "status": "sent"}
                await store.put("messages", record)
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
        """
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, timeout=60)
    assert result.returncode == -9, result.stderr.decode()

    async def reopen() -> list[str]:
        store = await SqliteStore(path).open()
        try:
            page = await store.select("messages", limit=100, descending=False)
            return [r["body"] for r in page.records]
        finally:
            await store.close()

    bodies = asyncio.run(reopen())
    assert bodies == [f"Привет {n}" for n in range(25)]
