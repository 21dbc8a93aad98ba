"""The store primitives: the driver-level contract that backup, migrate and transactions use.

The public :class:`~sessionstore.SessionStore` protocol is what applications call. Copying
a store exactly (backup, restore, migrate) and committing a prepared batch (transactions)
need a lower level: read stored sessions as they are (expired included), write
:class:`Mutation` s with compare-and-set, read events and checkpoints without the public
checks. :class:`StorePrimitives` names that level. A store offers it as its
``primitives`` attribute; :class:`~sessionstore.BaseSessionStore` does so for every
driver built on it, from the ``_``-methods the driver implements. A store that
implements the protocol directly offers an object of its own, and can then be backed
up, restored, migrated and batched like any built-in store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Final, Protocol, runtime_checkable

from ._planner import Limits, Mutation, Prepared
from .clock import Clock
from .codec import checkpoint_digest
from .errors import ConfigurationError, IntegrityError
from .model import Checkpoint, Event, Session
from .protocol import Capabilities

__all__ = ["CAS_ATTEMPTS", "StorePrimitives", "primitives_of", "sound_checkpoints"]

#: How often a compare-and-set write is re-read and re-planned after a write race.
CAS_ATTEMPTS: Final = 100


@runtime_checkable
class StorePrimitives(Protocol):
    """What backup, restore, migrate and transactions need from a store.

    Every read returns private copies the caller may keep; nothing here checks the
    public rules again (expiry, ``SessionNotFoundError``): the callers do what they need.
    """

    @property
    def limits(self) -> Limits:
        """The store's size limits (``max_session_bytes``, ``max_event_bytes``)."""
        ...

    @property
    def clock(self) -> Clock:
        """The store's clock (expiry is judged by it)."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """The store's capabilities (``max_batch``, ``durable``, ``cross_process``...)."""
        ...

    def check_open(self) -> None:
        """Raise :class:`StoreUnavailableError` unless the store is open."""
        ...

    async def load(self, session_ids: Sequence[str]) -> dict[str, Session]:
        """Stored sessions for ``session_ids``, expired included; absent ids left out."""
        ...

    async def apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        """Write ``mutations`` all or nothing (``atomic=False``: each on its own).

        Raises :class:`SessionConflictError`, writing nothing of that mutation, when a
        stored version differs from ``Mutation.expect`` (``0``: must not exist). Does not
        notify observers: the caller calls :meth:`after_write` once it is written.
        """
        ...

    async def load_events(
        self, session_id: str, *, after_seq: int, limit: int | None, last: int | None
    ) -> list[Event]:
        """Events with ``seq > after_seq`` in order: the first ``limit`` or the last
        ``last`` (``[]`` for a missing session)."""
        ...

    async def load_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        """One checkpoint, digest not verified; ``None`` when there is none by that id;
        :class:`IntegrityError` when its record is corrupt."""
        ...

    async def load_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """Every readable checkpoint of a session, oldest first, digests not verified; an
        unreadable record is left out and reported through :meth:`report_corrupt`."""
        ...

    async def load_checkpoints_many(
        self, session_ids: Sequence[str]
    ) -> dict[str, list[Checkpoint]]:
        """:meth:`load_checkpoints` of several sessions (absent ids: ``[]`` or left out)."""
        ...

    def iter_sessions(self) -> AsyncIterator[Session]:
        """Every stored session of the namespace, expired included, in any order."""
        ...

    def report_corrupt(self, error: IntegrityError) -> None:
        """Record a corrupt record that a scan or copy skipped (never raise for it)."""
        ...

    def after_write(self, mutations: Sequence[Mutation]) -> None:
        """Tell observers about ``mutations`` that :meth:`apply` wrote."""
        ...

    async def commit_prepared(self, prepared: Sequence[Prepared]) -> list[Session | bool]:
        """Commit ops already validated by ``prepare`` all or nothing (what
        ``store.commit`` does after preparing); one result per op, in order."""
        ...


def primitives_of(store: object, what: str = "store") -> StorePrimitives:
    """``store.primitives``, or :class:`ConfigurationError` when the store offers none."""
    primitives = getattr(store, "primitives", None)
    kind = type(primitives)
    if kind in _CHECKED:  # a runtime protocol check is slow: once per class
        return primitives  # type: ignore[return-value]
    if not isinstance(primitives, StorePrimitives):
        raise ConfigurationError(
            f"{what} must offer sessionstore.driver.StorePrimitives as its 'primitives' "
            f"attribute (every BaseSessionStore does), got {store!r}"
        )
    _CHECKED.add(kind)
    return primitives


_CHECKED: set[type] = set()


def sound_checkpoints(
    primitives: StorePrimitives, session_id: str, cps: Iterable[Checkpoint]
) -> list[Checkpoint]:
    """``cps`` without those whose digest does not match their content (reported)."""
    out = []
    for cp in cps:
        if checkpoint_digest(cp) != cp.digest:
            primitives.report_corrupt(
                IntegrityError(
                    "checkpoint digest does not match its content; left out",
                    f"{session_id}/checkpoints/{cp.id}",
                )
            )
            continue
        out.append(cp)
    return out
