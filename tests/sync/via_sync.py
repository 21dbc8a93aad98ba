"""An async store that does everything through the sync facade, for the conformance suite.

``AsyncViaSync(SyncSessionStore(store))`` is a :class:`SessionStore` whose every method
runs the facade's blocking method on a worker thread (``asyncio.to_thread``): the suite,
which speaks the async protocol, then exercises every blocking method, the sync
transaction and the sync ``scan`` iterator, from threads other than the store's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Self

from sessionstore import Clock, Session
from sessionstore.protocol import Capabilities
from sessionstore.sync import SyncSessionStore, SyncTransaction

_DONE = object()


class AsyncViaSync:
    """The async protocol, answered by a :class:`SyncSessionStore` on worker threads."""

    def __init__(self, facade: SyncSessionStore) -> None:
        self.facade = facade

    @property
    def clock(self) -> Clock:
        return self.facade.clock

    @property
    def capabilities(self) -> Capabilities:
        return self.facade.capabilities

    @property
    def namespace(self) -> str:
        return self.facade.namespace

    @property
    def options(self) -> Any:
        """The driver's options (the bad-input tests read the size limits)."""
        return getattr(self.facade.store, "options", None)

    def __getattr__(self, name: str) -> Any:
        blocking = getattr(self.facade, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(blocking, *args, **kwargs)

        return call

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.facade.initialize)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.facade.shutdown)

    def scan(self, **kwargs: Any) -> AsyncIterator[Any]:
        return _scan(self.facade.scan(**kwargs))

    def transaction(self) -> _TransactionViaSync:
        return _TransactionViaSync(self.facade.transaction())


async def _scan(iterator: Iterator[Any]) -> AsyncIterator[Any]:
    try:
        while (item := await asyncio.to_thread(next, iterator, _DONE)) is not _DONE:
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


class _TransactionViaSync:
    def __init__(self, tx: SyncTransaction) -> None:
        self.tx = tx

    @property
    def results(self) -> list[Session | bool]:
        return self.tx.results

    @property
    def staged(self) -> int:
        return self.tx.staged

    def rollback(self) -> None:
        self.tx.rollback()

    def __getattr__(self, name: str) -> Any:
        blocking = getattr(self.tx, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(blocking, *args, **kwargs)

        return call

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.tx.__enter__)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.tx.__exit__, exc_type, exc, tb)
