"""The manager's record of its managed sessions: which are live, which have pending
changes, which writes are in flight, and what it counted (writes, conflicts, errors).

One :class:`SessionTracker` per manager. Managed sessions reach it only through
:class:`~sessionstore.manager._host.SessionHost`; the manager's other collaborators
(CAS writes, observability) read it directly.
"""

from __future__ import annotations

import asyncio
import weakref
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..clock import Clock
from ._stats import Counters

if TYPE_CHECKING:
    from ._managed import ManagedSession

__all__ = ["SessionTracker"]


class SessionTracker:
    """Live and dirty managed sessions, in-flight writes, counters and the last error."""

    __slots__ = (
        "_clock",
        "_dirty",
        "_inflight",
        "_live",
        "counters",
        "last_error",
        "last_error_at",
    )

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._live: weakref.WeakValueDictionary[str, ManagedSession] = weakref.WeakValueDictionary()
        self._dirty: dict[str, ManagedSession] = {}
        self._inflight: set[asyncio.Task[Any]] = set()
        #: What the manager did since it started.
        self.counters = Counters()
        #: ``"session <id>: <Type>: <message>"`` of the last failed write, if any.
        self.last_error: str | None = None
        #: When the last error happened (store clock).
        self.last_error_at: datetime | None = None

    # ------------------------------------------------------------------ live sessions

    def get(self, session_id: str) -> ManagedSession | None:
        """The managed session held for ``session_id`` (open or closed), if any."""
        return self._live.get(session_id)

    def open(self, session_id: str) -> ManagedSession | None:
        """The open managed session held for ``session_id``, if any."""
        ms = self._live.get(session_id)
        return None if ms is None or ms.closed else ms

    def add(self, ms: ManagedSession) -> None:
        """Hold ``ms`` (weakly: an unreferenced clean session is dropped)."""
        self._live[ms.id] = ms

    def live(self) -> list[ManagedSession]:
        """Every held managed session (open or closed)."""
        return list(self._live.values())

    def forget(self, ms: ManagedSession) -> None:
        """Drop ``ms`` (closed or deleted): neither live nor dirty any more."""
        self.mark_clean(ms)
        if self._live.get(ms.id) is ms:
            del self._live[ms.id]

    # ------------------------------------------------------------------ pending changes

    def mark_dirty(self, ms: ManagedSession) -> None:
        """``ms`` has pending changes: hold it strongly until they are written."""
        self._dirty[ms.id] = ms

    def mark_clean(self, ms: ManagedSession) -> None:
        """``ms`` has nothing pending any more."""
        if self._dirty.get(ms.id) is ms:
            del self._dirty[ms.id]

    def dirty(self) -> list[ManagedSession]:
        """The managed sessions with pending changes."""
        return list(self._dirty.values())

    def dirty_session(self, session_id: str) -> ManagedSession | None:
        """The managed session with pending changes for ``session_id``, if any."""
        return self._dirty.get(session_id)

    # ------------------------------------------------------------------ in-flight writes

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep ``task`` (a write) until it ends; shutdown waits for it."""
        self._inflight.add(task)
        task.add_done_callback(self._untrack)

    def _untrack(self, task: asyncio.Task[Any]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that went away must not leave a warning

    async def wait_inflight(self) -> None:
        """Return once no tracked write is running."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    # ------------------------------------------------------------------ errors

    def record_error(self, exc: BaseException, session_id: str | None = None) -> None:
        """Count ``exc`` and remember it as the last error (reported by ``health_check``)."""
        self.counters.errors += 1
        where = f"session {session_id}: " if session_id else ""
        self.last_error = f"{where}{type(exc).__name__}: {exc}"
        self.last_error_at = self._clock.now()
