"""Schema v2: REST list pages (one account, newest first) walk an index instead of sorting."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from trunkline.gateway.store import Filter, SqliteStore
from trunkline.gateway.store.sqlite import MIGRATIONS, SCHEMA_VERSION
from trunkline.gateway.store.tables import TABLES

ACCOUNT = "AC" + "7" * 32


def page_sql(table: str) -> str:
    order = TABLES[table].order_by
    return (
        f"SELECT data FROM {table} WHERE account_sid = ? "
        f"ORDER BY {order} DESC, rowid DESC LIMIT 50 OFFSET 4500"
    )


async def test_every_account_list_is_served_by_an_index(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    await (await SqliteStore(path).open()).close()
    with sqlite3.connect(path) as conn:
        for name, table in TABLES.items():
            assert "account_sid" in table.columns
            plan = " ".join(
                row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + page_sql(name), (ACCOUNT,))
            )
            assert f"{name}_account_sid_{table.order_by}" in plan, (name, plan)
            assert "TEMP B-TREE" not in plan, (name, plan)


async def test_v1_database_is_migrated_and_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    with sqlite3.connect(path, isolation_level=None) as conn:  # a database written by schema v1
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        for n in range(3):
            conn.execute(
                "INSERT INTO calls (sid, account_sid, date_created, data) VALUES (?, ?, ?, ?)",
                (f"CA{n:032x}", ACCOUNT, 1000.0 + n, f'{{"sid": "CA{n:032x}", "n": {n}}}'),
            )
    store = await SqliteStore(path).open()
    try:
        page = await store.select("calls", [Filter("account_sid", "=", ACCOUNT)], limit=2)
        assert [r["n"] for r in page.records] == [2, 1] and page.total == 3
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "calls_account_sid_date_created" in names
