"""SQLite store group commit: concurrent writes share a transaction, each put() still returns
only once its record is committed, a bad row fails only its own put(), reads see earlier puts."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from trunkline.gateway.store import SqliteStore
from trunkline.gateway.store import sqlite as store_module


def record(n: int, status: str = "ringing") -> dict[str, object]:
    return {"sid": f"CA{n:032x}", "account_sid": "AC" + "1" * 32, "status": status, "to": "+15550001"}


class CountingStore(SqliteStore):
    """Counts the batches handed to the store thread and their sizes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []

    def _write(self, rows: list[Any]) -> list[BaseException | None]:
        self.batches.append(len(rows))
        return super()._write(rows)


async def test_concurrent_puts_share_one_transaction_and_are_all_committed(tmp_path: Path) -> None:
    store = await CountingStore(tmp_path / "t.sqlite").open()
    try:
        await asyncio.gather(*(store.put("calls", record(n)) for n in range(40)))
        assert store.batches == [40]  # queued in one loop iteration: one transaction
        # Committed when put() returned: another connection sees every row.
        with sqlite3.connect(tmp_path / "t.sqlite") as other:
            assert other.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 40
    finally:
        await store.close()


async def test_sequential_puts_are_not_delayed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "WRITE_LINGER", 2.0)
    store = await CountingStore(tmp_path / "t.sqlite").open()
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(5):  # one task awaiting its own writes: nothing to wait for
            await store.put("calls", record(n))
        assert store.batches == [1, 1, 1, 1, 1]
        assert loop.time() - start < 1.0
    finally:
        await store.close()


async def test_after_a_shared_batch_the_next_one_lingers_to_gather_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "WRITE_LINGER", 0.05)
    store = await CountingStore(tmp_path / "t.sqlite").open()
    try:
        await asyncio.gather(store.put("calls", record(1)), store.put("calls", record(2)))
        loop = asyncio.get_running_loop()
        start = loop.time()
        first = asyncio.ensure_future(store.put("calls", record(3)))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(store.put("calls", record(4)))
        await asyncio.gather(first, second)
        assert store.batches == [2, 2]  # 3 and 4 waited for each other
        assert loop.time() - start >= 0.03
        await store.put("calls", record(5))  # another task wrote just before: this one lingers
        await store.put("calls", record(6))  # the same task as the last write: at once
        assert store.batches == [2, 2, 1, 1]
    finally:
        await store.close()


async def test_a_bad_row_fails_only_its_own_put(tmp_path: Path) -> None:
    store = await CountingStore(tmp_path / "t.sqlite").open()
    try:
        bad = {"sid": "CA" + "e" * 32, "account_sid": object()}  # not bindable: sqlite refuses it
        results = await asyncio.gather(
            store.put("calls", record(1)),
            store.put("calls", bad),
            store.put("calls", record(2)),
            return_exceptions=True,
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], sqlite3.ProgrammingError)
        assert store.batches == [3]
        assert await store.get("calls", sid=str(record(1)["sid"])) == record(1)
        assert await store.get("calls", sid=str(record(2)["sid"])) == record(2)
        assert await store.get("calls", sid="CA" + "e" * 32) is None
    finally:
        await store.close()


async def test_a_read_sees_a_put_queued_before_it(tmp_path: Path) -> None:
    store = await SqliteStore(tmp_path / "t.sqlite").open()
    try:
        pending = asyncio.ensure_future(store.put("calls", record(7, "in-progress")))
        await asyncio.sleep(0)  # the put is queued, not yet written
        found = await store.get("calls", sid=str(record(7)["sid"]))
        assert found is not None and found["status"] == "in-progress"
        await pending
    finally:
        await store.close()


async def test_close_writes_queued_records(tmp_path: Path) -> None:
    store = await SqliteStore(tmp_path / "t.sqlite").open()
    pending = asyncio.ensure_future(store.put("calls", record(9)))
    await asyncio.sleep(0)
    await store.close()
    await pending
    with sqlite3.connect(tmp_path / "t.sqlite") as other:
        assert other.execute("SELECT status FROM calls").fetchall() == [("ringing",)]


async def test_a_cancelled_put_still_writes_its_record(tmp_path: Path) -> None:
    store = await SqliteStore(tmp_path / "t.sqlite").open()
    try:
        task = asyncio.ensure_future(store.put("calls", record(3)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await store.get("calls", sid=str(record(3)["sid"])) == record(3)
    finally:
        await store.close()


async def test_put_after_close_raises_instead_of_hanging(tmp_path: Path) -> None:
    store = await SqliteStore(tmp_path / "t.sqlite").open()
    await store.close()
    with pytest.raises(RuntimeError, match="shutdown"):
        await asyncio.wait_for(store.put("calls", record(1)), 5)
