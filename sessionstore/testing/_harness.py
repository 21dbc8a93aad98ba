"""The machinery under the conformance tests: contexts, the test decorator, gating.

Conformance tests are written as ``async def test_x(self, ctx)`` and wrapped by
:func:`store_test` into plain synchronous pytest tests that run the coroutine in a private
event loop. That keeps the suite independent of pytest-asyncio's mode (strict, auto or
not installed at all) and lets Hypothesis drive stores the same way.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from sessionstore import ManualClock, SessionFilter, SessionRecord, SessionStore
from sessionstore.query import QueryOptions

if TYPE_CHECKING:
    from .suite import StoreConformance

__all__ = ["ConformanceContext", "requires", "snapshot", "store_test"]

F = TypeVar("F", bound=Callable[..., Any])
TestBody = Callable[[Any, "ConformanceContext"], Awaitable[None]]

#: How long one conformance test may run before it is failed (seconds).
TEST_TIMEOUT = float(os.environ.get("SESSIONSTORE_CONFORMANCE_TIMEOUT", "120"))


def requires(*capabilities: str) -> Callable[[F], F]:
    """Run the test only on stores whose ``capabilities`` has each of these set."""

    def mark(func: F) -> F:
        func.__sessionstore_requires__ = capabilities  # type: ignore[attr-defined]
        return func

    return mark


class ConformanceContext:
    """What a conformance test gets: the store, its clock, and a way to open more.

    Every store opened through the context shares the test's namespace unless told
    otherwise, and is shut down (and its namespace emptied) when the test ends.
    """

    def __init__(self, suite: StoreConformance, namespace: str) -> None:
        self.suite = suite
        self.namespace = namespace
        self.clock = ManualClock()
        self._opened: list[SessionStore] = []
        self._namespaces: set[str] = {namespace}
        self.store: SessionStore = None  # type: ignore[assignment]  # set by open_main()

    async def open_main(self) -> SessionStore:
        self.store = await self.open_store()
        return self.store

    async def open_store(self, namespace: str | None = None, **options: Any) -> SessionStore:
        """Another initialised store on this test's namespace (or on ``namespace``).

        ``options`` are driver options (:class:`~sessionstore.StoreOptions` fields such as
        ``checkpoint_keep_last``) handed to ``make_store``; the test skips when the test
        class's ``make_store`` takes none.
        """
        ns = namespace or self.namespace
        if options and not accepts_options(self.suite.make_store, options):
            pytest.skip(f"make_store() takes no driver options ({', '.join(sorted(options))})")
        self._namespaces.add(ns)
        store = self.suite.make_store(namespace=ns, clock=self.clock, **options)
        if inspect.isawaitable(store):
            store = await store
        await store.initialize()
        self._opened.append(store)
        return store

    async def close_namespace_data(self) -> None:
        """Delete every session of the test's namespace (to seed it again)."""
        await empty_namespace(self.store)

    def fresh_namespace(self) -> str:
        """A namespace no other test uses."""
        return f"conf-{uuid.uuid4().hex[:12]}"

    async def close(self) -> None:
        emptied = False
        try:
            if self.suite.cleanup_namespaces and self._opened:
                for ns in sorted(self._namespaces):
                    store = next((s for s in self._opened if s.namespace == ns), None)
                    if store is not None:
                        await empty_namespace(store)
                emptied = True
        finally:
            droppers: dict[str, SessionStore] = {}
            for store in self._opened:
                if emptied and store.namespace not in droppers and _can_drop(store):
                    droppers[store.namespace] = store  # dropped once the others are shut
                    continue
                await store.shutdown()
            for store in droppers.values():
                await drop_namespace(store)


def _can_drop(store: SessionStore) -> bool:
    return callable(getattr(store, "drop_namespace", None))


async def drop_namespace(store: SessionStore) -> None:
    """Shut the store down and remove its emptied namespace, where the driver can.

    A driver whose namespaces leave something behind when emptied (the file driver's
    directory) offers an optional ``drop_namespace()`` operation; the suite calls it on
    every namespace it made, so a run against a live store leaves nothing behind.
    """
    if _can_drop(store):
        await store.drop_namespace()  # type: ignore[attr-defined]
    else:
        await store.shutdown()


def accepts_options(make_store: Callable[..., Any], options: dict[str, Any]) -> bool:
    """True when ``make_store`` takes these keyword arguments (or ``**options``)."""
    params = inspect.signature(make_store).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return True
    names = {p.name for p in params if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    return set(options) <= names


async def empty_namespace(store: SessionStore) -> None:
    """Delete every session (expired included) the store can see."""
    flt = SessionFilter(include_expired=True)
    while True:
        page = await store.list_sessions(flt, QueryOptions(limit=500, sort_by="id"))
        if not page.items:
            return
        for session in page.items:
            await store.delete_session(session.id)


async def snapshot(store: SessionStore) -> list[SessionRecord]:
    """Every record the store holds (expired ones too): sessions, events and checkpoints,
    in id order. What "nothing was written" compares."""
    records = [r async for r in store.scan(include_expired=True)]
    return sorted(records, key=lambda r: r.session.id)


def store_test(func: TestBody) -> Callable[..., None]:
    """Turn ``async def test_x(self, ctx)`` into a synchronous pytest test."""
    needs: tuple[str, ...] = getattr(func, "__sessionstore_requires__", ())

    @functools.wraps(func)
    def wrapper(self: StoreConformance) -> None:
        async def run() -> None:
            ctx = ConformanceContext(self, self.namespace_for_test())
            try:
                store = await ctx.open_main()
                caps = store.capabilities
                for name in needs:
                    if not getattr(caps, name):
                        pytest.skip(f"driver does not declare capability {name!r}")
                await asyncio.wait_for(func(self, ctx), TEST_TIMEOUT)
            finally:
                await ctx.close()

        with asyncio.Runner() as runner:
            runner.run(run())

    wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    )
    wrapper.__sessionstore_test__ = True  # type: ignore[attr-defined]
    return wrapper
