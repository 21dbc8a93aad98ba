"""What a :class:`ManagedSession` may ask of its manager, and nothing more.

A managed session talks to its manager only through a :class:`SessionHost`: the store
and configuration, the tracker's bookkeeping (it has pending changes, it is clean, a write
is in flight, it is closed, a write succeeded or failed) and the compare-and-set writes
for its lease and expiry. The manager builds one host and hands it to every session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import SessionConflictError
from ..model import TTL, UNSET, Session, Unset
from ..protocol import SessionStore
from ._config import ManagerConfig
from ._leases import Lease

if TYPE_CHECKING:
    from ._cas import CasWriter
    from ._managed import ManagedSession
    from ._tracker import SessionTracker

__all__ = ["SessionHost"]


class SessionHost:
    """The narrow interface between the manager and its managed sessions."""

    __slots__ = (
        "_cas",
        "_counters",
        "_tracker",
        "config",
        "detach",
        "settled",
        "staged",
        "store",
        "track",
    )

    def __init__(
        self, store: SessionStore, config: ManagerConfig, tracker: SessionTracker, cas: CasWriter
    ) -> None:
        #: The manager's store.
        self.store = store
        #: The manager's configuration.
        self.config = config
        self._tracker = tracker
        self._counters = tracker.counters
        self._cas = cas
        # The tracker's own methods, bound once (no extra call on the write path).
        #: ``staged(ms)``: ``ms`` has pending changes (the manager persists them on its
        #: interval and at shutdown).
        self.staged: Callable[[ManagedSession], None] = tracker.mark_dirty
        #: ``settled(ms)``: ``ms`` has nothing pending any more.
        self.settled: Callable[[ManagedSession], None] = tracker.mark_clean
        #: ``detach(ms)``: ``ms`` is closed; the manager stops holding it.
        self.detach: Callable[[ManagedSession], None] = tracker.forget
        #: ``track(task)``: a write of a managed session runs in ``task``; shutdown waits.
        self.track: Callable[[asyncio.Task[Any]], None] = tracker.track

    # ------------------------------------------------------------------ bookkeeping

    def wrote(self) -> None:
        """A managed session persisted (counted in ``get_stats``)."""
        self._counters.writes += 1

    def reapplied(self) -> None:
        """A managed session re-applied its changes on a newer version."""
        self._counters.reapplied += 1

    def write_failed(self, session_id: str, exc: Exception) -> None:
        """A managed session's write failed with ``exc`` (reported by ``health_check``)."""
        self._tracker.record_error(exc, session_id)
        if isinstance(exc, SessionConflictError):
            self._counters.conflicts += 1

    # ------------------------------------------------------------------ leases and expiry

    async def claim(self, session_id: str, owner: str, ttl: TTL | None) -> Lease:
        """The manager's ``claim``."""
        return await self._cas.claim(session_id, owner, ttl)

    async def renew(self, lease: Lease, ttl: TTL | None) -> Lease:
        """The manager's ``renew``."""
        return await self._cas.renew(lease, ttl)

    async def release(self, lease: Lease) -> bool:
        """The manager's ``release``."""
        return await self._cas.release(lease)

    async def set_expiration(
        self, session_id: str, ttl: TTL | None, expires_at: datetime | Unset | None = UNSET
    ) -> Session:
        """The manager's ``set_expiration``."""
        return await self._cas.set_expiration(session_id, ttl, expires_at=expires_at)

    async def extend_expiration(self, session_id: str, seconds: TTL) -> Session:
        """The manager's ``extend_expiration``."""
        return await self._cas.extend_expiration(session_id, seconds)

    async def refresh(self, session_id: str, ttl: TTL | None) -> Session:
        """The manager's ``refresh``."""
        return await self._cas.refresh(session_id, ttl)
