"""Transactions: stage writes, commit them all or nothing.

``async with store.transaction() as tx:`` stages ``create_session``, ``update_session``,
``delete_session``, ``append_events``, ``pop_events``, ``truncate_events``,
``trim_events`` and ``delete_events``; each staged call validates its input at once
(so bad input raises inside the block) and nothing touches the store until the block
exits normally, when the batch is committed atomically through the store's
:class:`~sessionstore.driver.StorePrimitives` (``commit_prepared``, what ``store.commit``
does after preparing), so any store that offers them can run transactions. An exception
or a cancellation inside the block discards the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Unpack

from ._planner import Prepared, prepare
from ._primitives import primitives_of
from .errors import TransactionError
from .model import (
    TTL,
    UNSET,
    AppendOp,
    CreateOp,
    DeleteEventsOp,
    DeleteOp,
    EventInput,
    NewSession,
    NewSessionFields,
    PopOp,
    Session,
    SessionChanges,
    SessionUpdate,
    TrimOp,
    TruncateOp,
    Unset,
    UpdateOp,
)

__all__ = ["Transaction"]


class Transaction:
    """A batch of staged writes, committed on exit of ``async with store.transaction()``.

    After a successful commit, :attr:`results` holds one entry per staged call, in order:
    the new :class:`Session` (or a bool for ``delete_session``).
    """

    def __init__(self, store: object) -> None:
        self._primitives = primitives_of(store)
        self._prepared: list[Prepared] = []
        self._done = False
        self.results: list[Session | bool] = []
        """One entry per staged call after a successful commit, in order."""

    def _stage(self, op: Any) -> Prepared:
        if self._done:
            raise TransactionError("this transaction is already finished")
        prepared = prepare(op, self._primitives.limits)
        self._prepared.append(prepared)
        return prepared

    @property
    def staged(self) -> int:
        """How many writes are staged."""
        return len(self._prepared)

    async def create_session(self, **fields: Unpack[NewSessionFields]) -> str:
        """Stage a create; returns the new session's id (generated now if not given)."""
        return self._stage(CreateOp(NewSession(**fields))).session_id

    async def update_session(
        self,
        session_id: str,
        *,
        expected_version: int | None = None,
        **changes: Unpack[SessionChanges],
    ) -> None:
        """Stage an update (same arguments as ``store.update_session``)."""
        self._stage(UpdateOp(session_id, SessionUpdate(**changes), expected_version))

    async def delete_session(self, session_id: str, *, expected_version: int | None = None) -> None:
        """Stage a delete; inside a batch a missing session fails the whole batch."""
        self._stage(DeleteOp(session_id, expected_version))

    async def append_events(
        self,
        session_id: str,
        events: Sequence[EventInput | Mapping[str, Any]],
        *,
        expected_version: int | None = None,
        create: bool | NewSession = False,
        ttl: TTL | None = None,
        expires_at: datetime | Unset | None = UNSET,
    ) -> None:
        """Stage an event append (same arguments as ``store.append_events``)."""
        self._stage(AppendOp(session_id, events, expected_version, create, ttl, expires_at))

    async def pop_events(
        self, session_id: str, n: int = 1, *, expected_version: int | None = None
    ) -> None:
        """Stage removing the newest ``n`` events (its result is the new session)."""
        self._stage(PopOp(session_id, n, expected_version))

    async def truncate_events(
        self, session_id: str, after_seq: int, *, expected_version: int | None = None
    ) -> None:
        """Stage dropping every event with ``seq > after_seq``."""
        self._stage(TruncateOp(session_id, after_seq, expected_version))

    async def trim_events(
        self, session_id: str, *, keep_last: int, expected_version: int | None = None
    ) -> None:
        """Stage keeping only the newest ``keep_last`` events."""
        self._stage(TrimOp(session_id, keep_last, expected_version))

    async def delete_events(
        self,
        session_id: str,
        *,
        seqs: Iterable[int] = (),
        keys: Iterable[str] = (),
        expected_version: int | None = None,
    ) -> None:
        """Stage deleting events by seq or key (missing ones ignored)."""
        self._stage(DeleteEventsOp(session_id, seqs, keys, expected_version))

    async def commit(self) -> list[Session | bool]:
        """Commit now (normally done on exit of the ``async with`` block)."""
        if self._done:
            raise TransactionError("this transaction is already finished")
        self._done = True
        if self._prepared:
            self.results = await self._primitives.commit_prepared(self._prepared)
        return self.results

    def rollback(self) -> None:
        """Discard every staged write."""
        self._prepared.clear()
        self._done = True

    async def __aenter__(self) -> Transaction:
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
        if not self._done:
            await self.commit()
