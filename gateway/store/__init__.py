"""Persistence of calls, recordings, conferences, messages and debugger events.

SQLite (:class:`~trunkline.gateway.store.sqlite.SqliteStore`) is the embedded default; a shared
database for several nodes plugs in behind the same methods.
"""

from trunkline.gateway.store.sqlite import Filter, Page, SqliteStore, StoreError

__all__ = ["Filter", "Page", "SqliteStore", "StoreError"]
