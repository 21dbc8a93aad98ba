"""The in-memory driver: the reference implementation of the sessionstore contract.

``open_store("memory://")`` gives a private, process-local store. Several
:class:`MemoryStore` objects see one data set only when they share a
:class:`MemoryBackend` (``MemoryStore(backend=b, namespace=...)``); there is no
module-global state.
"""

from __future__ import annotations

from ._store import MemoryBackend, MemoryOptions, MemoryStore

__all__ = ["MemoryBackend", "MemoryOptions", "MemoryStore"]
