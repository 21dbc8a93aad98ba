"""ManagerTransaction: the store's transaction, plus managed sessions' pending changes.

``async with manager.transaction() as tx:`` stages writes like ``store.transaction()``
and commits them all or nothing when the block ends; an exception (or a conflict at
commit) writes nothing. ``await tx.persist(managed)`` adds a managed session's pending
changes to the batch: they are written with the rest, or stay pending if the batch fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import QuotaExceededError, TransactionError
from ..model import TTL, UNSET, EventInput, Session, Status, Unset
from ._bookkeeping import check_user_metadata
from ._leases import check_fence
from ._pending import Pending
from ._writes import update_kwargs

if TYPE_CHECKING:
    from ..transaction import Transaction
    from ._managed import ManagedSession
    from ._manager import SessionPersistenceManager

__all__ = ["ManagerTransaction"]


class ManagerTransaction:
    """A batch of writes committed atomically on exit (see the module docstring).

    :attr:`results` holds one entry per staged write after the commit.
    """

    def __init__(self, manager: SessionPersistenceManager) -> None:
        self._manager = manager
        self._tx: Transaction = manager.store.transaction()  # type: ignore[assignment]
        self._creates = 0
        # (managed session, its in-flight changes, index of its last staged op)
        self._included: list[tuple[ManagedSession, Pending, int]] = []
        self._finished = False

    @property
    def results(self) -> list[Session | bool]:
        """The committed results, one per staged write, in order."""
        return self._tx.results

    @property
    def staged(self) -> int:
        """How many writes are staged."""
        return self._tx.staged

    async def create_session(
        self,
        *,
        processor_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        status: Status | str = Status.ACTIVE,
        ttl: TTL | Unset | None = UNSET,
        expires_at: datetime | None = None,
        id: str | None = None,
        group: str | None = None,
    ) -> str:
        """Stage a create (``ttl`` defaults to the config's ``default_ttl``); returns its id."""
        check_user_metadata(metadata or {})
        if ttl is UNSET:
            ttl = self._manager.config.default_ttl if expires_at is None else None
        self._creates += 1
        return await self._tx.create_session(
            processor_id=processor_id,
            data=data,
            metadata=metadata,
            tags=tags,
            status=status,
            ttl=ttl,
            expires_at=expires_at,
            id=id,
            group=group,
        )

    async def update_session(self, session_id: str, **changes: Any) -> None:
        """Stage an update (the arguments of ``store.update_session``)."""
        for name in ("merge_metadata", "remove_metadata_keys"):
            check_user_metadata(changes.get(name) or ())
        if changes.get("metadata") is not None:
            check_user_metadata(changes["metadata"])
        await self._tx.update_session(session_id, **changes)

    async def delete_session(self, session_id: str, *, expected_version: int | None = None) -> None:
        """Stage a delete (a missing session fails the whole batch)."""
        await self._tx.delete_session(session_id, expected_version=expected_version)

    async def append_events(
        self,
        session_id: str,
        events: Sequence[EventInput | Mapping[str, Any]],
        *,
        expected_version: int | None = None,
    ) -> None:
        """Stage an event append."""
        await self._tx.append_events(session_id, events, expected_version=expected_version)

    async def persist(self, managed: ManagedSession) -> None:
        """Add ``managed``'s pending changes to this batch (version-checked and fenced)."""
        if self._finished:
            raise TransactionError("this transaction is already finished")
        if any(m is managed for m, _, _ in self._included):
            raise TransactionError(f"session {managed.id!r} is already in this transaction")
        managed._check_writable()
        if managed._pending.empty:
            return
        base = managed._base
        check_fence(base, managed.lease, self._manager.store.clock.now())
        inflight, managed._pending = managed._pending, Pending()
        config = self._manager.config
        ttl = None
        if config.sliding_expiration and config.default_ttl is not None:
            ttl = timedelta(seconds=config.default_ttl)
        try:
            expected = base.version
            update = inflight.to_update(base, ttl)
            if update is not None:
                await self._tx.update_session(
                    managed.id, **update_kwargs(update), expected_version=expected
                )
                expected += 1
            if inflight.events:
                await self._tx.append_events(
                    managed.id,
                    [EventInput(t, d) for t, d in inflight.events],
                    expected_version=expected,
                )
        except BaseException:
            managed._pending = inflight.then(managed._pending)
            raise
        managed._tx_inflight = inflight
        self._included.append((managed, inflight, self._tx.staged - 1))

    def _give_back(self) -> None:
        for managed, inflight, _ in self._included:
            managed._tx_inflight = None
            managed._pending = inflight.then(managed._pending)
            managed._staged()
            managed._rebuild()
        self._included.clear()

    async def commit(self) -> list[Session | bool]:
        """Commit now (normally done when the ``async with`` block ends)."""
        if self._finished:
            raise TransactionError("this transaction is already finished")
        self._finished = True
        try:
            limit = self._manager.config.max_sessions
            if self._creates and limit is not None:
                live = await self._manager.store.count_sessions()
                if live + self._creates > limit:
                    raise QuotaExceededError(
                        f"creating {self._creates} session(s) would exceed max_sessions={limit} "
                        f"({live} live)",
                        option="max_sessions",
                        where="manager",
                    )
            results = await self._tx.commit()
        except BaseException as exc:
            for managed, _, _ in self._included:
                if isinstance(exc, Exception):
                    managed.last_error = exc
            self._give_back()
            raise
        for managed, _, index in self._included:
            # the newest state of the session in this batch (later ops may touch it too)
            final = [r for r in results[index:] if isinstance(r, Session) and r.id == managed.id]
            managed._tx_inflight = None
            managed._persisted(final[-1])
        self._included.clear()
        return results

    def rollback(self) -> None:
        """Discard the batch (managed sessions keep their changes pending)."""
        self._finished = True
        self._tx.rollback()
        self._give_back()

    async def __aenter__(self) -> ManagerTransaction:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.rollback()
            return
        if not self._finished:
            await self.commit()
