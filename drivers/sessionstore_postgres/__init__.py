"""The PostgreSQL driver: one round trip per single-session operation, ACID batches.

``open_store("postgresql://user:pw@host:5432/db?max_size=20")`` (or ``postgres://``; see
``docs/postgres.md``). Install with ``pip install 'sessionstore[postgres]'`` (asyncpg).

The names are imported lazily, so loading the entry-point plugin
(``sessionstore_postgres.plugin``) imports neither the driver nor asyncpg.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._options import PostgresOptions
    from ._store import PostgresStore

__all__ = ["PostgresOptions", "PostgresStore"]

_HOMES = {"PostgresStore": "._store", "PostgresOptions": "._options"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
