"""The SQLite driver: ``sqlite:///abs/path.db`` and ``sqlite://./relative.db``.

Every namespace's sessions, event logs and checkpoints live in one SQLite database file
(stdlib ``sqlite3``, WAL, ``synchronous=FULL`` by default), written in ``BEGIN
IMMEDIATE`` transactions on the store's own worker threads, one thread hop per operation,
safe for several processes at once. Queries are translated to indexed SQL. The schema and
guarantees are described in ``docs/sqlite.md``.

The names are imported lazily, so loading the entry-point plugin
(``sessionstore_sqlite.plugin``) does not load the driver itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._schema import SCHEMA_VERSION
    from ._store import SqliteOptions, SqliteStore

__all__ = ["SCHEMA_VERSION", "SqliteOptions", "SqliteStore"]

_HOMES = {"SCHEMA_VERSION": "._schema", "SqliteOptions": "._store", "SqliteStore": "._store"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
