"""The tables of the store: for each, its key, its indexed columns and its default ordering.

A record is a JSON object with Twilio's snake_case field names; the indexed columns are copied from
the record's fields of the same name (``from`` and ``to`` are stored as ``from_``/``to_`` columns,
since both are SQL keywords; ``start_ts``/``end_ts`` come from ``start_time``/``end_time``). Dates,
which records carry as RFC 2822 strings as Twilio's JSON does, are stored as Unix seconds so that
ranges compare as numbers: filter them with floats.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Table:
    """One table: ``key`` fields form the primary key; ``columns`` are indexed for filters."""

    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    order_by: str = "date_created"
    insert_sql: str = field(init=False, repr=False, compare=False)
    """``INSERT OR REPLACE`` of one row of :attr:`all_columns` (built once)."""
    _sources: tuple[tuple[str, bool], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        columns = self.all_columns
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT OR REPLACE INTO {self.name} ({', '.join(columns)}) VALUES ({marks})"
        object.__setattr__(self, "insert_sql", sql)
        # For each indexed column: the record field it copies and whether it is a date.
        sources = tuple((_FIELDS.get(c, c), c.startswith("date_") or c.endswith("_ts")) for c in columns[:-1])
        object.__setattr__(self, "_sources", sources)

    @property
    def all_columns(self) -> tuple[str, ...]:
        """Key columns, indexed columns and the JSON ``data`` column, in storage order."""
        return (*self.key, *[c for c in self.columns if c not in self.key], "data")

    def ddl(self) -> list[str]:
        """CREATE statements for the table and one index per filter column."""
        cols = ", ".join(f"{c} {'TEXT NOT NULL' if c in self.key else ''}".strip() for c in self.all_columns)
        statements = [f"CREATE TABLE {self.name} ({cols}, PRIMARY KEY ({', '.join(self.key)}))"]
        for column in self.columns:
            if column not in self.key:
                statements.append(f"CREATE INDEX {self.name}_{column} ON {self.name} ({column})")
        return statements

    def list_indexes(self) -> list[str]:
        """CREATE statement for an ``(account_sid, order_by)`` index: REST lists filter by account
        and page in that order, which this index serves without sorting every record."""
        if "account_sid" not in self.columns or self.order_by in self.key:
            return []
        name = f"{self.name}_account_sid_{self.order_by}"
        return [f"CREATE INDEX {name} ON {self.name} (account_sid, {self.order_by})"]

    def check_column(self, column: str) -> None:
        """Raise ``ValueError`` for a column the table does not index."""
        if column not in self.key and column not in self.columns:
            raise ValueError(f"table {self.name} has no column {column!r}")

    def row(self, record: Mapping[str, Any]) -> list[Any]:
        """The values to store for ``record``."""
        missing = [k for k in self.key if not record.get(k)]
        if missing:
            raise ValueError(f"{self.name} record lacks its key field(s) {', '.join(missing)}")
        get = record.get
        values: list[Any] = []
        for name, is_date in self._sources:
            value = get(name)
            values.append(to_epoch(value) if is_date and isinstance(value, str) else value)
        values.append(_dumps(record))
        return values

    def key_clause(self, key: Mapping[str, str]) -> tuple[str, list[str]]:
        """``WHERE`` text and values for a lookup by the table's full key."""
        if set(key) != set(self.key):
            raise ValueError(f"{self.name} is keyed by {', '.join(self.key)}, got {', '.join(key)}")
        return " AND ".join(f"{k} = ?" for k in self.key), [key[k] for k in self.key]


_FIELDS = {"from_": "from", "to_": "to", "start_ts": "start_time", "end_ts": "end_time"}


_dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode


@functools.lru_cache(maxsize=4096)
def to_epoch(value: str) -> float | None:
    """Unix seconds of an RFC 2822 date (Twilio's JSON date format), None if it is not one.

    Memoised: a call's three status writes and every call of the same second share their dates.
    """
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


TABLES: dict[str, Table] = {
    table.name: table
    for table in (
        Table(
            "calls",
            ("sid",),
            (
                "account_sid",
                "parent_call_sid",
                "to_",
                "from_",
                "status",
                "start_ts",
                "end_ts",
                "date_created",
            ),
        ),
        Table("recordings", ("sid",), ("account_sid", "call_sid", "conference_sid", "date_created")),
        Table(
            "conferences",
            ("sid",),
            ("account_sid", "friendly_name", "status", "date_created", "date_updated"),
        ),
        Table("participants", ("conference_sid", "call_sid"), ("account_sid", "date_created")),
        Table("messages", ("sid",), ("account_sid", "to_", "from_", "status", "date_sent", "date_created")),
        Table("queues", ("sid",), ("account_sid", "friendly_name", "date_created")),
        Table("notifications", ("sid",), ("account_sid", "call_sid", "error_code", "date_created")),
    )
}
