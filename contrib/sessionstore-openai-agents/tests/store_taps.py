"""A real store with a tap after each write: what the SDK's tests do to a Redis client's
``pipeline().execute`` (pause after the commit, observe each committed state), done at
the store's interface so it works on every driver. The backend is never replaced."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from sessionstore import SessionStore

WRITES = frozenset(
    {
        "append_events",
        "pop_events",
        "truncate_events",
        "delete_events",
        "trim_events",
        "delete_session",
        "create_session",
        "update_session",
        "commit",
    }
)


class TappedStore:
    """``store``'s methods; after a write returns (it is committed), ``after_write(name)``
    is awaited before the result goes back to the caller."""

    def __init__(self, store: SessionStore, after_write: Callable[[str], Awaitable[None]]) -> None:
        self.inner = store
        self.after_write = after_write

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in WRITES:
            return attr

        async def tapped(*args: Any, **kwargs: Any) -> Any:
            result = await attr(*args, **kwargs)
            await self.after_write(name)
            return result

        return tapped


def tapped(store: SessionStore, after_write: Callable[[str], Awaitable[None]]) -> SessionStore:
    """``store`` behind a :class:`TappedStore`, typed as the store it stands for."""
    return cast(SessionStore, TappedStore(store, after_write))
