"""The Redis driver: single server, Sentinel and Cluster, one round trip per operation.

``open_store("redis://localhost:6379/0")``, ``rediss://``, ``unix:///run/redis.sock``,
``redis+sentinel://h1:26379,h2:26379/mymaster`` or ``redis+cluster://h1:7000,h2:7001``
(see ``docs/redis.md``). Install with ``pip install 'sessionstore[redis]'``.

The names are imported lazily, so loading the entry-point plugin
(``sessionstore_redis.plugin``) imports neither the driver nor redis-py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._gate import PoolTimeoutError
    from ._options import RedisOptions
    from ._redis_internals import RedisInternalsError
    from ._store import RedisStore

__all__ = ["PoolTimeoutError", "RedisInternalsError", "RedisOptions", "RedisStore"]

_HOMES = {
    "RedisStore": "._store",
    "RedisOptions": "._options",
    "PoolTimeoutError": "._gate",
    "RedisInternalsError": "._redis_internals",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
