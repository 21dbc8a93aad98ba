"""Blocking twins of async methods: typed from the async signature, run on a loop thread.

``get_session = blocking(SessionStore.get_session)`` in a facade class gives it a method
with exactly the async method's parameters (mypy checks calls against them) that runs
``await target.get_session(...)`` on the facade's :class:`LoopThread` and returns the
result. One definition per method, no hand-copied signatures to drift.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from types import CoroutineType
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from ._direct import DeferToLoop
from ._loop_thread import LoopThread
from ._thread_loops import blocking_call_error, closed_error

__all__ = [
    "Facade",
    "attribute",
    "blocking",
    "blocking_iter",
    "blocking_read",
    "blocking_wrap",
]

P = ParamSpec("P")
R = TypeVar("R")
W = TypeVar("W")
T = TypeVar("T")

#: How many items of an async iterator one loop-thread round trip fetches.
ITER_CHUNK = 256


class Runner(Protocol):
    """Where a facade's calls run: its :class:`LoopThread`, or (a store that works from
    any event loop) the calling thread's own loop (``ThreadLoops``)."""

    @property
    def closed(self) -> bool:
        """Whether it was closed."""

    def call(self, coro: Coroutine[Any, Any, R], timeout: float | None = None) -> R:
        """Run ``coro`` to completion and return its result."""


class Facade:
    """A synchronous view of one async object: its calls run on ``_runner``; the calls
    that span several round trips (transactions, iterators) on ``_loop_thread``."""

    _target: Any
    _loop_thread: LoopThread
    _runner: Runner
    #: the store's blocking reads (``_direct.py``), if it offers them
    _direct: Any = None

    def _call(self, awaitable: Awaitable[R]) -> R:
        return self._runner.call(_await(awaitable))


async def _await(awaitable: Awaitable[R]) -> R:
    return await awaitable


def _doc(method: Any, name: str) -> str:
    doc = inspect.getdoc(method) or ""
    head = f"Blocking form of the async ``{name}`` (same arguments, same errors)."
    return f"{head}\n\n{doc}" if doc else head


def blocking(
    method: Callable[Concatenate[Any, P], Awaitable[R]],
) -> Callable[Concatenate[Facade, P], R]:
    """A facade method that awaits ``target.<name>(...)`` on the facade's runner."""
    name = method.__name__

    def call(self: Facade, /, *args: P.args, **kwargs: P.kwargs) -> R:
        awaitable = getattr(self._target, name)(*args, **kwargs)
        # (the exact type first: the ABC check costs a Python-level call per call)
        if type(awaitable) is not CoroutineType and not isinstance(awaitable, Coroutine):
            awaitable = _await(awaitable)  # e.g. a driver method returning a Future
        result: R = self._runner.call(awaitable)
        return result

    call.__name__ = call.__qualname__ = name
    call.__doc__ = _doc(method, name)
    return call


def blocking_read(
    method: Callable[Concatenate[Any, P], Awaitable[R]],
) -> Callable[Concatenate[Facade, P], R]:
    """Like :func:`blocking`, made by the store's blocking reads when it offers them
    (``_direct.py``: the calling thread does the round trip itself), else (or when they
    defer) on the facade's runner."""
    name = method.__name__
    on_loop = blocking(method)

    def call(self: Facade, /, *args: P.args, **kwargs: P.kwargs) -> R:
        direct = self._direct
        if direct is not None:
            if asyncio._get_running_loop() is not None:  # (as LoopThread.call checks)
                raise blocking_call_error()
            if self._loop_thread._closed:  # (``closed``'s attribute: no property call)
                raise closed_error()
            read = getattr(direct, name, None)  # (a driver may offer only some)
            if read is not None:
                try:
                    result: R = read(*args, **kwargs)
                except DeferToLoop:
                    pass
                else:
                    return result
        return on_loop(self, *args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = on_loop.__doc__
    return call


def blocking_wrap(
    method: Callable[Concatenate[Any, P], Awaitable[R]],
    wrap: Callable[[Facade, R], W],
) -> Callable[Concatenate[Facade, P], W]:
    """Like :func:`blocking`, the result passed through ``wrap(facade, result)`` (e.g. a
    managed session wrapped in its own facade)."""
    inner = blocking(method)

    def call(self: Facade, /, *args: P.args, **kwargs: P.kwargs) -> W:
        return wrap(self, inner(self, *args, **kwargs))

    call.__name__ = call.__qualname__ = inner.__name__
    call.__doc__ = inner.__doc__
    return call


def blocking_iter(
    method: Callable[Concatenate[Any, P], AsyncIterator[T]],
) -> Callable[Concatenate[Facade, P], Generator[T, None, None]]:
    """A facade method returning a plain iterator over ``target.<name>(...)``, an async
    iterator, fetched in chunks of :data:`ITER_CHUNK` per loop-thread round trip.

    Stopping early (``break``) closes the async iterator on the loop thread.
    """
    name = method.__name__

    def call(self: Facade, /, *args: P.args, **kwargs: P.kwargs) -> Generator[T, None, None]:
        return _iterate(self, getattr(self._target, name), args, kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = _doc(method, name)
    return call


def _iterate(
    facade: Facade, open_iter: Callable[..., AsyncIterator[T]], args: Any, kwargs: Any
) -> Generator[T, None, None]:
    holder: list[AsyncIterator[T]] = []

    async def chunk() -> tuple[list[T], bool]:
        if not holder:
            holder.append(aiter(open_iter(*args, **kwargs)))
        items: list[T] = []
        iterator = holder[0]
        try:
            while len(items) < ITER_CHUNK:
                items.append(await anext(iterator))
        except StopAsyncIteration:
            return items, True
        return items, False

    async def close() -> None:
        aclose = getattr(holder[0], "aclose", None) if holder else None
        if aclose is not None:
            await aclose()

    done = False
    try:
        while not done:
            items, done = facade._loop_thread.call(chunk())
            yield from items
    finally:
        if not done and not facade._loop_thread.closed:
            facade._loop_thread.call(close())


class attribute(Generic[R]):
    """A read-only facade attribute that reads the same attribute of the target.

    ``version = attribute(ManagedSession.version)``: typed from the target's property.
    Reading does not go through the loop thread (a plain attribute read).
    """

    def __init__(self, prop: Callable[[Any], R]) -> None:
        getter = getattr(prop, "fget", prop)  # a property at run time, a callable to mypy
        self.name: str = getter.__name__
        self.__doc__ = inspect.getdoc(getter)

    @overload
    def __get__(self, obj: None, owner: type) -> attribute[R]: ...

    @overload
    def __get__(self, obj: Facade, owner: type) -> R: ...

    def __get__(self, obj: Facade | None, owner: type) -> R | attribute[R]:
        if obj is None:
            return self
        value: R = getattr(obj._target, self.name)
        return value
