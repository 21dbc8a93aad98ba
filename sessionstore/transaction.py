"""Transactions: stage writes, commit them all or nothing.

``async with store.transaction() as tx:`` stages ``create_session``, ``update_session``,
``delete_session`` and ``append_events``; each staged call validates its input at once
(so bad input raises inside the block) and nothing touches the store until the block
exits normally, when the batch is committed atomically through ``store.commit``. An
exception or a cancellation inside the block discards the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._batch import Prepared, prepare
from .errors import TransactionError
from .model import (
    TTL,
    UNSET,
    AppendOp,
    CreateOp,
    DeleteOp,
    EventInput,
    NewSession,
    Session,
    SessionUpdate,
    Status,
    Unset,
    UpdateOp,
)

if TYPE_CHECKING:
    from .base import BaseSessionStore

__all__ = ["Transaction"]


class Transaction:
    """A batch of staged writes, committed on exit of ``async with store.transaction()``.

    After a successful commit, :attr:`results` holds one entry per staged call, in order:
    the new :class:`Session` (or a bool for ``delete_session``).
    """

    def __init__(self, store: BaseSessionStore) -> None:
        self._store = store
        self._prepared: list[Prepared] = []
        self._done = False
        self.results: list[Session | bool] = []

    def _stage(self, op: Any) -> Prepared:
        if self._done:
            raise TransactionError("this transaction is already finished")
        prepared = prepare(op, self._store._limits)
        self._prepared.append(prepared)
        return prepared

    @property
    def staged(self) -> int:
        """How many writes are staged."""
        return len(self._prepared)

    async def create_session(
        self,
        *,
        processor_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        status: Status | str = Status.ACTIVE,
        ttl: TTL | None = None,
        expires_at: datetime | None = None,
        id: str | None = None,
        group: str | None = None,
    ) -> str:
        """Stage a create; returns the new session's id (generated now if not given)."""
        new = NewSession(processor_id, data, metadata, tags, status, ttl, expires_at, id, group)
        return self._stage(CreateOp(new)).session_id

    async def update_session(
        self,
        session_id: str,
        *,
        data: Mapping[str, Any] | None = None,
        merge_data: Mapping[str, Any] | None = None,
        remove_data_keys: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        merge_metadata: Mapping[str, Any] | None = None,
        remove_metadata_keys: Iterable[str] = (),
        status: Status | str | None = None,
        processor_id: str | Unset | None = UNSET,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
        tags: Iterable[str] | None = None,
        expires_at: datetime | Unset | None = UNSET,
        ttl: TTL | None = None,
        expected_version: int | None = None,
    ) -> None:
        """Stage an update (same arguments as ``store.update_session``)."""
        update = SessionUpdate(
            data=data,
            merge_data=merge_data,
            remove_data_keys=remove_data_keys,
            metadata=metadata,
            merge_metadata=merge_metadata,
            remove_metadata_keys=remove_metadata_keys,
            status=status,
            processor_id=processor_id,
            add_tags=add_tags,
            remove_tags=remove_tags,
            tags=tags,
            expires_at=expires_at,
            ttl=ttl,
        )
        self._stage(UpdateOp(session_id, update, expected_version))

    async def delete_session(self, session_id: str, *, expected_version: int | None = None) -> None:
        """Stage a delete; inside a batch a missing session fails the whole batch."""
        self._stage(DeleteOp(session_id, expected_version))

    async def append_events(
        self,
        session_id: str,
        events: Sequence[EventInput | Mapping[str, Any]],
        *,
        expected_version: int | None = None,
    ) -> None:
        """Stage an event append."""
        self._stage(AppendOp(session_id, events, expected_version))

    async def commit(self) -> list[Session | bool]:
        """Commit now (normally done on exit of the ``async with`` block)."""
        if self._done:
            raise TransactionError("this transaction is already finished")
        self._done = True
        if self._prepared:
            self.results = await self._store._commit_prepared(self._prepared)
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
