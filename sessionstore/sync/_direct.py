"""Blocking reads a driver may offer the facade: a second transport, not a second store.

A facade call normally runs the async store method on an event loop (the loop thread,
or the calling thread's own) and hands the result back. For a read that is one round
trip, a driver can do better: the calling thread sends the request and waits for the
reply itself on a blocking connection, one kernel wake-up per call instead of two
thread hand-offs (issue 18; ``docs/sync.md``, *Blocking reads*).

A store offers it with a ``blocking_reads()`` method returning a :class:`BlockingReads`
(or ``None`` where it cannot, e.g. a topology only its async client handles). The facade
asks once, when it is built, and routes the methods :class:`BlockingReads` names to it;
everything else still runs on the loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from ..model import Event, Session

__all__ = ["BlockingReads", "DeferToLoop"]


class DeferToLoop(Exception):
    """Raised by a :class:`BlockingReads` method, before it has sent anything, when this
    call should run on the event loop instead (e.g. no blocking connection is free). The
    facade catches it and makes the call the usual way."""


class BlockingReads(Protocol):
    """The reads a driver makes on the calling thread for ``sessionstore.sync``.

    Each method has the async store method's signature, results and typed errors
    (timeouts, retries, ``StoreUnavailableError`` once the store is shut down), shares
    the driver's read logic (only the transport differs), is safe from many threads at
    once, and may raise :class:`DeferToLoop`. The store closes it when it shuts down.
    A driver may leave some of these methods out: the facade runs those on the loop.
    """

    def get_session(self, session_id: str, *, include_expired: bool = False) -> Session | None:
        """As the async store's ``get_session``, blocking."""

    def get_sessions(
        self, session_ids: Iterable[str], *, include_expired: bool = False
    ) -> dict[str, Session]:
        """As the async store's ``get_sessions``, blocking: the live sessions among
        ``session_ids``, by id."""

    def get_events(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int | None = None,
        last: int | None = None,
        types: Iterable[str] | None = None,
        at_after: datetime | None = None,
        at_before: datetime | None = None,
    ) -> list[Event]:
        """As the async store's ``get_events``, blocking: a page of the event log
        (``SessionNotFoundError`` for a missing or expired session). A driver may serve
        some windows only (e.g. no type or time filter) and raise :class:`DeferToLoop`
        for the others."""

    def get_event(self, session_id: str, *, key: str) -> Event | None:
        """As the async store's ``get_event``, blocking: the kept event with this key,
        or ``None``."""
