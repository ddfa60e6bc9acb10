"""SQLite storage of Twilio-style records (calls, recordings, conferences, messages, ...).

Each record is kept whole as JSON in a ``data`` column beside the few columns the REST filters and
orderings use, which are indexed. One connection lives on one worker thread, so no write blocks the
event loop and SQLite sees a single writer; WAL journaling keeps readers and the writer apart and
makes every committed record survive a crash of the process.

The schema carries a version (``PRAGMA user_version``); :data:`MIGRATIONS` lists the forward steps,
applied in order at open.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from trunkline.gateway.store.tables import TABLES, Table

T = TypeVar("T")
Record = dict[str, Any]
Operator = Literal["=", "<", "<=", ">", ">=", "!="]

#: The status of a recording record, as SQL (the ``recordings_status`` index is on this expression).
RECORDING_STATUS = "json_extract(data, '$.status')"
#: Statuses of a recording that has not finished: Twilio's ``in-progress`` and ``paused``.
UNFINISHED_RECORDING_STATUSES = ("in-progress", "paused")

#: Forward migrations: MIGRATIONS[n] takes the schema from version n to n + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    tuple(statement for table in TABLES.values() for statement in table.ddl()),
    # v2: (account_sid, date) indexes, so that a REST list page walks an index instead of sorting
    # every record of the account (GET Calls.json at 5,000 calls: 23 ms -> 0.1 ms a page).
    tuple(statement for table in TABLES.values() for statement in table.list_indexes()),
    # v3: recordings by status, an index over the JSON field: start-up finds the recordings a
    # crash left unfinished (:meth:`SqliteStore.unfinished_recordings`) without reading them all.
    (f"CREATE INDEX recordings_status ON recordings ({RECORDING_STATUS})",),
)
SCHEMA_VERSION = len(MIGRATIONS)

#: Group commit: a write from another task than the last one written, queued less than this long
#: (s) after the last transaction started (concurrent calls), waits for that much to pass and
#: shares its transaction with the writes queued meanwhile. One transaction of a few rows costs
#: about half as much per row as one transaction per row (WAL pages written once).
WRITE_LINGER = 0.004


class StoreError(Exception):
    """A storage request that cannot be served (unknown table or column, corrupt database)."""


@dataclass(frozen=True, slots=True)
class Filter:
    """``column op value`` on an indexed column of a table."""

    column: str
    op: Operator
    value: str | int | float | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of records and the total number of records that matched."""

    records: list[Record]
    total: int


class SqliteStore:
    """Async facade over one SQLite database; every call runs on the store's own thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trunkline-store")
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[Table, Sequence[Any], asyncio.Future[None]]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = -WRITE_LINGER
        self._last_writer: asyncio.Task[Any] | None = None
        self._flushed_writer: asyncio.Task[Any] | None = None

    async def open(self) -> SqliteStore:
        """Create the file and its folder if needed and apply pending migrations."""
        await self._run(self._open)
        return self

    async def close(self) -> None:
        """Close the database and stop the worker thread."""
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        if self._pending:
            self._flush(loop)  # queued writes first: a read sees every put() made before it
        return await loop.run_in_executor(self._executor, func, *args)

    def _open(self) -> None:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this Trunkline ({SCHEMA_VERSION})"
            )
        for step in range(version, SCHEMA_VERSION):
            conn.execute("BEGIN")
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {step + 1}")
            conn.execute("COMMIT")
        self._conn = conn

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is not open")
        return self._conn

    @staticmethod
    def _table(name: str) -> Table:
        try:
            return TABLES[name]
        except KeyError:
            raise StoreError(f"unknown table {name!r}") from None

    async def put(self, table: str, record: Mapping[str, Any]) -> None:
        """Insert or replace ``record`` (keyed by the table's key fields).

        Returns once the record is committed. Writes are group-committed: the writes queued
        while the store is busy share one transaction (see :data:`WRITE_LINGER`); a write that
        fails is retried alone, so one bad record fails only its own ``put``.
        """
        spec = self._table(table)
        row = spec.row(record)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._pending.append((spec, row, waiter))
        task = asyncio.current_task(loop)
        if self._flush_handle is None:
            self._schedule(loop, task)
        self._last_writer = task
        await waiter

    def _schedule(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> None:
        # Linger only when another task wrote less than WRITE_LINGER ago (concurrent calls): a
        # caller awaiting its own writes one by one, or a quiet node, is written at once.
        if task is not self._flushed_writer:
            delay = self._last_flush + WRITE_LINGER - loop.time()
            if delay > 0:
                self._flush_handle = loop.call_later(delay, self._flush, loop)
                return
        self._flush_handle = loop.call_soon(self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the queued writes to the store's thread as one transaction."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        self._flushed_writer = self._last_writer
        self._last_flush = loop.time()
        rows = [(spec, row) for spec, row, _ in batch]
        try:
            job = loop.run_in_executor(self._executor, self._write, rows)
        except RuntimeError as exc:  # the store was closed: its executor takes no more work
            for _, _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(RuntimeError(*exc.args))  # what put() raised before
            return
        job.add_done_callback(functools.partial(_written, batch))

    def _write(self, rows: list[tuple[Table, Sequence[Any]]]) -> list[BaseException | None]:
        """Store ``rows`` in one transaction; the error of each row that cannot be stored."""
        try:
            db = self._db()
        except StoreError as exc:
            return [StoreError(str(exc)) for _ in rows]
        if len(rows) > 1:
            try:
                db.execute("BEGIN")
                for spec, row in rows:
                    db.execute(spec.insert_sql, row)
                db.execute("COMMIT")
                return [None] * len(rows)
            except Exception:
                if db.in_transaction:
                    db.execute("ROLLBACK")
        # One row, or a batch that failed: each row in its own transaction, as put() promises.
        errors: list[BaseException | None] = []
        for spec, row in rows:
            try:
                db.execute(spec.insert_sql, row)
                errors.append(None)
            except Exception as exc:
                errors.append(exc)
        return errors

    async def get(self, table: str, **key: str) -> Record | None:
        """The record with the given key fields, or None."""
        spec = self._table(table)
        where, values = spec.key_clause(key)
        rows = await self._run(self._select, f"SELECT data FROM {spec.name} WHERE {where}", values)
        return json.loads(rows[0]["data"]) if rows else None

    async def delete(self, table: str, **key: str) -> bool:
        """Delete the record with the given key fields; True if there was one."""
        spec = self._table(table)
        where, values = spec.key_clause(key)
        return await self._run(self._delete, f"DELETE FROM {spec.name} WHERE {where}", values)

    def _delete(self, sql: str, values: Sequence[Any]) -> bool:
        return self._db().execute(sql, values).rowcount > 0

    def _select(self, sql: str, values: Sequence[Any]) -> list[sqlite3.Row]:
        return self._db().execute(sql, values).fetchall()

    async def select(
        self,
        table: str,
        filters: Sequence[Filter] = (),
        *,
        order_by: str | None = None,
        descending: bool = True,
        limit: int = 50,
        offset: int = 0,
    ) -> Page:
        """Records matching every filter, newest first by ``order_by`` (the table's default)."""
        spec = self._table(table)
        clauses: list[str] = []
        values: list[Any] = []
        for item in filters:
            spec.check_column(item.column)
            if item.value is None and item.op in ("=", "!="):
                clauses.append(f"{item.column} IS {'NOT ' if item.op == '!=' else ''}NULL")
                continue
            clauses.append(f"{item.column} {item.op} ?")
            values.append(item.value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        order = order_by or spec.order_by
        spec.check_column(order)
        direction = "DESC" if descending else "ASC"
        sql = (
            f"SELECT data FROM {spec.name}{where} "
            f"ORDER BY {order} {direction}, rowid {direction} LIMIT ? OFFSET ?"
        )
        count_sql = f"SELECT COUNT(*) AS n FROM {spec.name}{where}"
        rows, count = await self._run(self._page, sql, [*values, limit, offset], count_sql, values)
        return Page(records=[json.loads(row["data"]) for row in rows], total=count)

    def _page(
        self, sql: str, values: Sequence[Any], count_sql: str, count_values: Sequence[Any]
    ) -> tuple[list[sqlite3.Row], int]:
        db = self._db()
        return db.execute(sql, values).fetchall(), int(db.execute(count_sql, count_values).fetchone()["n"])

    async def unfinished_recordings(self) -> list[Record]:
        """Recording records still ``in-progress`` or ``paused``, oldest first.

        Outside a running recording, such a record was left by a process that stopped before the
        recording finished (see :mod:`trunkline.gateway.store.recovery`).
        """
        marks = ", ".join("?" for _ in UNFINISHED_RECORDING_STATUSES)
        sql = f"SELECT data FROM recordings WHERE {RECORDING_STATUS} IN ({marks}) ORDER BY rowid"
        rows = await self._run(self._select, sql, list(UNFINISHED_RECORDING_STATUSES))
        return [json.loads(row["data"]) for row in rows]

    async def existing_keys(self, table: str, keys: Iterable[str]) -> set[str]:
        """The values of ``keys`` that key a record of ``table`` (a table with a one-field key)."""
        spec = self._table(table)
        if len(spec.key) != 1:
            raise StoreError(f"table {table} has a composite key ({', '.join(spec.key)})")
        return await self._run(self._existing, spec, list(dict.fromkeys(keys)))

    def _existing(self, spec: Table, keys: list[str]) -> set[str]:
        found: set[str] = set()
        column = spec.key[0]
        db = self._db()
        for start in range(0, len(keys), _IN_BATCH):
            chunk = keys[start : start + _IN_BATCH]
            marks = ", ".join("?" for _ in chunk)
            sql = f"SELECT {column} FROM {spec.name} WHERE {column} IN ({marks})"
            found.update(row[0] for row in db.execute(sql, chunk))
        return found


def _written(
    batch: list[tuple[Table, Sequence[Any], asyncio.Future[None]]],
    job: asyncio.Future[list[BaseException | None]],
) -> None:
    """Settle the waiters of a written batch (on the event loop)."""
    if job.cancelled():
        for _, _, waiter in batch:
            waiter.cancel()
        return
    if (failure := job.exception()) is not None:
        errors: list[BaseException | None] = [failure] * len(batch)
    else:
        errors = job.result()
    for (_, _, waiter), error in zip(batch, errors, strict=True):
        if waiter.done():
            continue  # its put() was cancelled; the row is written all the same
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)


#: Values bound per ``IN (...)`` query (SQLite allows 32,766 parameters since 3.32; stay far below).
_IN_BATCH = 500
