"""The driver contract: the :class:`SessionStore` protocol and :class:`Capabilities`.

Every driver (built-in or third-party) implements this protocol, normally by subclassing
:class:`sessionstore.BaseSessionStore`, and proves it with :mod:`sessionstore.testing`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, TypeAlias, Unpack, runtime_checkable

from .clock import Clock
from .model import (
    TTL,
    UNSET,
    Checkpoint,
    Event,
    EventInput,
    NewSession,
    NewSessionFields,
    Op,
    PoppedEvents,
    RawEvent,
    Session,
    SessionChanges,
    SessionRecord,
    Unset,
)
from .query import Page, QueryOptions, SessionFilter

if TYPE_CHECKING:
    from .transaction import Transaction

__all__ = ["Capabilities", "MergeStrategy", "PutResult", "SessionStore"]

MergeStrategy: TypeAlias = Literal["skip_existing", "overwrite", "update_newer", "fail_on_conflict"]


@dataclass(frozen=True)
class Capabilities:
    """What a driver can promise. The conformance suite skips a test only on these.

    * ``atomic_multi_session`` - ``commit`` over several sessions is all-or-nothing.
    * ``shared_namespace`` - several store objects opened on one namespace see one data set
      (false for a private in-process store).
    * ``cross_process`` - several processes may use the store at once, safely.
    * ``durable`` - an acknowledged write survives a process crash.
    * ``native_ttl`` - the backend reclaims expired data by itself (a backstop).
    * ``indexed_query`` - filtered, sorted pages cost O(page), not O(sessions).
    * ``max_batch`` - the largest ``commit`` accepted (``None``: unbounded).
    * ``any_event_loop`` - one store may be used from any event loop: several in turn
      (``asyncio.run`` twice), several at once (threads with loops of their own), and
      shut down from another loop than the one that opened it. Without it, use a store
      only from the loop that initialised it (or through :mod:`sessionstore.sync`).
    * ``event_log`` - the full event log: event ``key`` s and caller-set ``at`` are
      stored, and the driver interprets the event-removal fields of
      :class:`~sessionstore.Mutation` (``truncate_after``, ``delete_seqs``). Without it
      the store refuses ``pop_events``, ``truncate_events``, ``delete_events``,
      ``get_event``, keyed or timed events and the event ops in a batch with
      :class:`~sessionstore.UnsupportedOperationError`.
    """

    atomic_multi_session: bool = True
    shared_namespace: bool = True
    cross_process: bool = False
    durable: bool = False
    native_ttl: bool = False
    indexed_query: bool = False
    max_batch: int | None = None
    any_event_loop: bool = False
    event_log: bool = False


@dataclass(frozen=True)
class PutResult:
    """What ``put_records`` did, per record."""

    created: int = 0
    overwritten: int = 0
    skipped: int = 0
    conflicts: int = 0

    def __add__(self, other: PutResult) -> PutResult:
        return PutResult(
            self.created + other.created,
            self.overwritten + other.overwritten,
            self.skipped + other.skipped,
            self.conflicts + other.conflicts,
        )


@runtime_checkable
class SessionStore(Protocol):
    """The async session store every driver provides.

    Writes are atomic on their own and return the new :class:`Session`; every write takes
    ``expected_version`` for optimistic locking (:class:`SessionConflictError` on mismatch,
    nothing written). Expired sessions (by ``clock``) are invisible unless asked for.
    """

    clock: Clock

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def namespace(self) -> str: ...

    async def initialize(self) -> None: ...

    async def shutdown(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    # -- sessions
    async def create_session(self, **fields: Unpack[NewSessionFields]) -> Session: ...

    async def get_session(
        self, session_id: str, *, include_expired: bool = False
    ) -> Session | None: ...

    async def get_sessions(
        self, session_ids: Iterable[str], *, include_expired: bool = False
    ) -> dict[str, Session]: ...

    async def update_session(
        self,
        session_id: str,
        *,
        expected_version: int | None = None,
        **changes: Unpack[SessionChanges],
    ) -> Session: ...

    async def delete_session(
        self, session_id: str, *, expected_version: int | None = None
    ) -> bool: ...

    async def touch(
        self, session_id: str, *, ttl: TTL | None = None, expected_version: int | None = None
    ) -> Session: ...

    # -- events
    async def append_events(
        self,
        session_id: str,
        events: Sequence[EventInput | Mapping[str, Any]],
        *,
        expected_version: int | None = None,
        create: bool | NewSession = False,
        ttl: TTL | None = None,
        expires_at: datetime | Unset | None = UNSET,
    ) -> Session: ...

    async def get_events(
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
    ) -> list[Event]: ...

    async def get_raw_events(
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
    ) -> list[RawEvent]: ...

    async def get_event(self, session_id: str, *, key: str) -> Event | None: ...

    async def trim_events(
        self, session_id: str, *, keep_last: int, expected_version: int | None = None
    ) -> Session: ...

    async def pop_events(
        self, session_id: str, n: int = 1, *, expected_version: int | None = None
    ) -> PoppedEvents: ...

    async def truncate_events(
        self, session_id: str, after_seq: int, *, expected_version: int | None = None
    ) -> Session: ...

    async def delete_events(
        self,
        session_id: str,
        *,
        seqs: Iterable[int] = (),
        keys: Iterable[str] = (),
        expected_version: int | None = None,
    ) -> Session: ...

    # -- checkpoints
    async def save_checkpoint(
        self, session_id: str, *, label: str | None = None, keep_last: int | None = None
    ) -> Checkpoint: ...

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]: ...

    async def get_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint: ...

    async def delete_checkpoint(self, session_id: str, checkpoint_id: str) -> bool: ...

    async def restore_checkpoint(
        self, session_id: str, checkpoint_id: str, *, expected_version: int | None = None
    ) -> Session: ...

    # -- queries
    async def list_sessions(
        self, filter: SessionFilter | None = None, options: QueryOptions | None = None
    ) -> Page: ...

    async def count_sessions(self, filter: SessionFilter | None = None) -> int: ...

    async def search_sessions(
        self,
        text: str,
        options: QueryOptions | None = None,
        filter: SessionFilter | None = None,
    ) -> Page: ...

    # -- batches
    async def commit(self, ops: Sequence[Op]) -> list[Session | bool]: ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    # -- expiry
    async def expire_sessions(self) -> list[str]: ...

    async def cleanup_expired_sessions(self) -> int: ...

    # -- bulk
    def scan(
        self, *, include_expired: bool = False, filter: SessionFilter | None = None
    ) -> AsyncIterator[SessionRecord]: ...

    async def put_records(
        self, records: Iterable[SessionRecord], *, strategy: MergeStrategy = "skip_existing"
    ) -> PutResult: ...
