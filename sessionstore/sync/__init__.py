"""A blocking facade over any store and the manager, for sync code and other threads.

``open_sync_store(url)`` opens a store behind :class:`SyncSessionStore`: every store
method, blocking, with the same arguments, results and typed errors. The async store runs
on a private event-loop thread the facade owns (:class:`LoopThread`, started lazily,
stopped by ``shutdown()`` or at interpreter exit), or with ``per_thread_loops=True`` (a
store that works from any event loop) each call on an event loop of the calling thread
(:class:`ThreadLoops`). :class:`SyncSessionPersistenceManager` does the same for the
manager and its managed sessions. See ``docs/sync.md``.
"""

from __future__ import annotations

from ..errors import BlockingCallError
from ._direct import BlockingReads, DeferToLoop
from ._loop_thread import LoopThread
from ._manager import SyncManagedSession, SyncManagerTransaction, SyncSessionPersistenceManager
from ._store import SyncSessionStore, SyncTransaction, open_sync_store
from ._thread_loops import ThreadLoops

__all__ = [
    "BlockingCallError",
    "BlockingReads",
    "DeferToLoop",
    "LoopThread",
    "SyncManagedSession",
    "SyncManagerTransaction",
    "SyncSessionPersistenceManager",
    "SyncSessionStore",
    "SyncTransaction",
    "ThreadLoops",
    "open_sync_store",
]
