"""Compare-and-set writes of the manager: leases and expiry (:class:`CasWriter`).

Each operation reads the session, decides, and writes with ``expected_version``,
retrying on a race. A managed session held by the manager is locked meanwhile and adopts
the write when it was made directly on top of its state, so its pending changes stay
valid (they are not turned into a conflict by the manager's own write).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from ..errors import InvalidArgumentError, SessionConflictError, SessionNotFoundError
from ..model import TTL, UNSET, Session, SessionUpdate, Unset
from ..validation import validate_session_id, validate_ttl
from ._config import ManagerConfig
from ._leases import Lease, check_owner, plan_claim, plan_release, plan_renew
from ._writes import update_kwargs

if TYPE_CHECKING:
    from ..protocol import SessionStore
    from ._tracker import SessionTracker

__all__ = ["CasWriter"]

_CAS_ATTEMPTS: Final = 50


class CasWriter:
    """``claim`` / ``renew`` / ``release`` and ``set/extend_expiration`` / ``refresh``:
    the manager's writes made on top of what the store holds, with compare-and-set."""

    __slots__ = ("_check_open", "_tracker", "config", "store")

    def __init__(
        self,
        store: SessionStore,
        config: ManagerConfig,
        tracker: SessionTracker,
        check_open: Callable[[], None],
    ) -> None:
        self.store = store
        self.config = config
        self._tracker = tracker
        self._check_open = check_open

    # ------------------------------------------------------------------ CAS writes

    async def _cas(
        self, session_id: str, step: Callable[[Session], Awaitable[Session] | None]
    ) -> Session:
        """Read, let ``step`` decide and write with ``expected_version``; retry on a race.

        A managed session held here is locked meanwhile and adopts the write when it
        was made directly on top of its state (its pending changes stay pending).
        """
        self._check_open()
        validate_session_id(session_id)
        ms = self._tracker.get(session_id)

        async def body() -> Session:
            for _ in range(_CAS_ATTEMPTS):
                current = await self.store.get_session(session_id)
                if current is None:
                    raise SessionNotFoundError(session_id)
                pending = step(current)
                if pending is None:
                    return current
                try:
                    new = await pending
                except SessionConflictError:
                    continue
                if ms is not None:
                    ms._fast_forward(current, new)
                return new
            raise SessionConflictError(session_id, -1, -1)

        if ms is None or ms.closed:
            return await body()
        return await ms._locked(body)

    def _update(self, current: Session, update: SessionUpdate) -> Awaitable[Session]:
        return self.store.update_session(
            current.id, **update_kwargs(update), expected_version=current.version
        )

    # ------------------------------------------------------------------ leases

    def _ttl(self, ttl: TTL | None, default: float | None) -> timedelta | None:
        if ttl is None:
            return None if default is None else timedelta(seconds=default)
        return validate_ttl(ttl)

    async def claim(self, session_id: str, owner: str, ttl: TTL | None = None) -> Lease:
        """Take the session's lease for ``owner`` for ``ttl`` seconds (default: config).

        Free, expired, or already ``owner``'s: taken (with a new token). Held by another
        owner and not expired: :class:`LeaseHeldError`.
        """
        check_owner(owner)
        delta = self._ttl(ttl, self.config.lease_ttl)
        assert delta is not None
        taken: list[Lease] = []

        def step(current: Session) -> Awaitable[Session]:
            update, lease = plan_claim(current, owner, delta, self.store.clock.now())
            taken[:] = [lease]
            return self._update(current, update)

        await self._cas(session_id, step)
        return taken[0]

    async def renew(self, lease: Lease, ttl: TTL | None = None) -> Lease:
        """Extend ``lease`` by ``ttl`` from now; :class:`LeaseLostError` if taken over."""
        delta = self._ttl(ttl, self.config.lease_ttl)
        assert delta is not None
        renewed: list[Lease] = []

        def step(current: Session) -> Awaitable[Session]:
            update, new = plan_renew(current, lease, delta, self.store.clock.now())
            renewed[:] = [new]
            return self._update(current, update)

        await self._cas(lease.session_id, step)
        return renewed[0]

    async def release(self, lease: Lease) -> bool:
        """Give ``lease`` up; False when it was not held any more (nothing written)."""
        released: list[bool] = [False]

        def step(current: Session) -> Awaitable[Session] | None:
            update = plan_release(current, lease)
            released[0] = update is not None
            return None if update is None else self._update(current, update)

        await self._cas(lease.session_id, step)
        return released[0]

    # ------------------------------------------------------------------ expiry

    async def set_expiration(
        self,
        session_id: str,
        ttl: TTL | None = None,
        *,
        expires_at: datetime | Unset | None = UNSET,
    ) -> Session:
        """Absolute expiry: ``ttl`` seconds from now, or ``expires_at`` (``None`` clears)."""
        if (ttl is None) == (expires_at is UNSET):
            raise InvalidArgumentError("give ttl or expires_at (None clears the expiry)")
        update = SessionUpdate(ttl=ttl) if ttl is not None else SessionUpdate(expires_at=expires_at)
        return await self._cas(session_id, lambda current: self._update(current, update))

    async def extend_expiration(self, session_id: str, seconds: TTL) -> Session:
        """Move the expiry ``seconds`` later (from now if the session has none)."""
        delta = validate_ttl(seconds)

        def step(current: Session) -> Awaitable[Session]:
            start = current.expires_at or self.store.clock.now()
            return self._update(current, SessionUpdate(expires_at=start + delta))

        return await self._cas(session_id, step)

    async def refresh(self, session_id: str, ttl: TTL | None = None) -> Session:
        """Sliding expiry (``store.touch``): ``expires_at = now + ttl`` (default: the
        config's ``default_ttl``; with neither, only ``updated_at`` moves)."""
        delta = self._ttl(ttl, self.config.default_ttl)
        return await self._cas(
            session_id,
            lambda current: self.store.touch(
                session_id, ttl=delta, expected_version=current.version
            ),
        )

    async def expire_sessions(self) -> list[str]:
        """Mark due sessions ``expired`` (the store's ``expire_sessions``)."""
        self._check_open()
        return await self.store.expire_sessions()

    async def cleanup_expired_sessions(self) -> int:
        """Remove due sessions with their events and checkpoints; returns the count."""
        self._check_open()
        removed = await self.store.cleanup_expired_sessions()
        self._tracker.counters.cleaned += removed
        return removed
