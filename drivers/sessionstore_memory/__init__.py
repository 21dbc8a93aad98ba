"""The in-memory driver: the reference implementation of the sessionstore contract.

``open_store("memory://")`` gives a private, process-local store. Several
:class:`MemoryStore` objects see one data set only when they share a
:class:`MemoryBackend` (``MemoryStore(backend=b, namespace=...)``); there is no
module-global state.

The names are imported lazily, so loading the entry-point plugin
(``sessionstore_memory.plugin``) does not load the driver itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._store import MemoryBackend, MemoryOptions, MemoryStore

__all__ = ["MemoryBackend", "MemoryOptions", "MemoryStore"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("._store", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
