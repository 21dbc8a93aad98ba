"""ManagedSession: a live session whose changes are tracked and persisted for you.

Reads come from a local view (the last persisted state plus the pending changes); writes
are staged in a :class:`Pending` fold and persisted by :meth:`ManagedSession.persist`,
by ``add_interaction`` (per-interaction mode), by the manager's interval task, by
lifecycle changes, ``close()`` and the manager's ``shutdown()``. Each persist is one
atomic write carrying ``expected_version``: a concurrent change is never overwritten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ..codec import (
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_SESSION_BYTES,
    MAX_EVENT,
    MAX_SESSION,
    encode_user_dict,
)
from ..errors import (
    InvalidArgumentError,
    SessionConflictError,
    SessionNotFoundError,
    SessionStoreError,
)
from ..model import Event, JSONDict, Session, Status
from ..validation import validate_event_input, validate_tags
from ._bookkeeping import MANAGER_KEY, Book, check_user_metadata
from ._errors import LeaseError, ManagedSessionConflictError, ManagerClosedError
from ._leases import Lease, check_fence
from ._lifecycle import LifecycleMixin
from ._pending import Pending
from ._writes import write

if TYPE_CHECKING:
    from ._manager import SessionPersistenceManager

__all__ = ["ManagedSession"]

log = logging.getLogger("sessionstore.manager")
T = TypeVar("T")


def _keys(values: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise InvalidArgumentError(f"{what} must be a collection of keys, not one string")
    out = tuple(values)
    if not all(isinstance(k, str) for k in out):
        raise InvalidArgumentError(f"{what} must hold str keys")
    return out


class ManagedSession(LifecycleMixin):
    """A session held by a :class:`SessionPersistenceManager` (one object per id).

    * Views: :attr:`data`, :attr:`metadata` (without the reserved ``_manager`` key),
      :attr:`tags`, :attr:`status`, :attr:`~sessionstore.manager.ManagedSession.iterations`:
      the persisted state with the pending changes applied. The views are read-only at the
      top level; change them with :meth:`update` (nested values must not be mutated in
      place).
    * Changes: :meth:`add_interaction`, :meth:`update`, lifecycle methods (``pause``,
      ``resume``, ``complete``, ``fail``, ``next_iteration``), checkpoints, leases.
    * Persistence: :meth:`persist` writes everything pending in one atomic write;
      :meth:`reload` re-reads the store.
    """

    def __init__(
        self, manager: SessionPersistenceManager, session: Session, lease: Lease | None = None
    ) -> None:
        self._manager = manager
        self._store = manager.store
        self._base = session
        self._pending = Pending()
        self._inflight: Pending | None = None  # the batch being written right now
        self._tx_inflight: Pending | None = None  # the batch staged in a manager transaction
        self._lock = asyncio.Lock()
        self._closed = False
        self._blocked: SessionStoreError | None = None
        self._data: JSONDict = {}
        self._metadata: JSONDict = {}
        self._tags: frozenset[str] = session.tags
        self._status: Status = session.status
        #: The lease this session's writes are fenced with (``None``: no lease held).
        self.lease: Lease | None = lease
        #: The last error of a write (a conflict, a lease loss, an unreachable store).
        self.last_error: BaseException | None = None
        #: When this object last persisted (store clock), ``None`` before its first write.
        self.last_persisted_at: datetime | None = None
        #: When the oldest pending change was made (store clock).
        self.pending_since: datetime | None = None
        #: How many writes this object made.
        self.writes = 0
        options = getattr(self._store, "options", None)
        self._max_session_bytes = getattr(options, "max_session_bytes", DEFAULT_MAX_SESSION_BYTES)
        self._max_event_bytes = getattr(options, "max_event_bytes", DEFAULT_MAX_EVENT_BYTES)
        self._rebuild()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._pending.changes} pending"
        return (
            f"ManagedSession({self.id!r}, status={self._status.value!r}, "
            f"version={self._base.version}, {state})"
        )

    # ------------------------------------------------------------------ views

    @property
    def id(self) -> str:
        """The session id."""
        return self._base.id

    @property
    def processor_id(self) -> str | None:
        """Who handles the session."""
        return self._base.processor_id

    @property
    def session(self) -> Session:
        """The last persisted state (what the store holds, as far as this object knows)."""
        return self._base

    @property
    def version(self) -> int:
        """The version of the last persisted state."""
        return self._base.version

    @property
    def data(self) -> Mapping[str, Any]:
        """The session data with pending changes applied (read-only view)."""
        return MappingProxyType(self._data)

    @property
    def metadata(self) -> Mapping[str, Any]:
        """User metadata with pending changes applied (``_manager`` left out)."""
        return MappingProxyType(self._metadata)

    @property
    def tags(self) -> frozenset[str]:
        """Tags with pending changes applied."""
        return self._tags

    @property
    def status(self) -> Status:
        """Status with a pending change applied."""
        return self._status

    @property
    def created_at(self) -> datetime:
        """When the session was created."""
        return self._base.created_at

    @property
    def expires_at(self) -> datetime | None:
        """The persisted expiry."""
        return self._base.expires_at

    @property
    def event_count(self) -> int:
        """Events in the log, counting pending ones."""
        return self._base.event_count + len(self._pending.events)

    @property
    def dirty(self) -> bool:
        """True when changes are waiting to be persisted (or being written)."""
        return not (self._pending.empty and self._inflight is None and self._tx_inflight is None)

    @property
    def pending_changes(self) -> int:
        """How many changes are waiting to be persisted (or being written)."""
        batches = (self._pending, self._inflight, self._tx_inflight)
        return sum(batch.changes for batch in batches if batch is not None)

    @property
    def closed(self) -> bool:
        """True after :meth:`close` (or the manager's shutdown)."""
        return self._closed

    @property
    def blocked(self) -> SessionStoreError | None:
        """The error that stops this session from writing until :meth:`reload`, if any."""
        return self._blocked

    def _book_value(self, key: str) -> Any:
        if key in self._pending.book:
            return self._pending.book[key]
        return Book.of(self._base).raw.get(key)

    # ------------------------------------------------------------------ staging

    def _check_writable(self) -> None:
        if self._closed:
            raise ManagerClosedError(f"managed session {self.id!r} is closed")
        if self._blocked is not None:
            raise self._blocked

    def _staged(self) -> None:
        if self.pending_since is None:
            self.pending_since = self._store.clock.now()
        self._manager._mark_dirty(self)

    def _encode(self, value: Mapping[str, Any], what: str, limit: int, option: str) -> JSONDict:
        return encode_user_dict(value, what, limit, option)[1]

    async def update(
        self,
        changes: Mapping[str, Any] | None = None,
        /,
        *,
        remove: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        remove_metadata: Iterable[str] = (),
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
        persist: bool = False,
        **more: Any,
    ) -> None:
        """Stage a shallow merge into ``data`` (``changes`` and keyword arguments), key
        removals, user metadata changes and tag changes.

        Values are validated now (``SerializationError`` before anything is staged).
        They are persisted with the next interaction, interval tick, ``persist()``,
        lifecycle change or shutdown - or now with ``persist=True``.
        """
        self._check_writable()
        merged = {**(changes or {}), **more}
        data = self._encode(merged, "data", self._max_session_bytes, MAX_SESSION) if merged else {}
        drop = _keys(remove, "remove")
        meta: JSONDict = {}
        if metadata is not None:
            check_user_metadata(metadata)
            meta = self._encode(metadata, "metadata", self._max_session_bytes, MAX_SESSION)
        drop_meta = _keys(remove_metadata, "remove_metadata")
        check_user_metadata(drop_meta)
        add, rem = validate_tags(add_tags), validate_tags(remove_tags)
        if data or drop:
            self._pending.merge(data, drop)
            for key in drop:
                self._data.pop(key, None)
            self._data.update(data)
        if meta or drop_meta:
            self._pending.merge_metadata(meta, drop_meta)
            for key in drop_meta:
                self._metadata.pop(key, None)
            self._metadata.update(meta)
        if add or rem:
            self._pending.tags(add, rem)
            self._tags = (self._tags | add) - rem
        if not self._pending.empty:
            self._staged()
        if persist:
            await self.persist()

    async def add_interaction(
        self,
        data: Mapping[str, Any] | None = None,
        /,
        *,
        type: str = "interaction",
        persist: bool | None = None,
    ) -> None:
        """Record an interaction: an event of ``type`` (default ``"interaction"``).

        In per-interaction mode (the default) everything pending is persisted, in one
        write, before this returns; in interval mode it is staged. ``persist=True`` /
        ``False`` overrides the configuration for this call.
        """
        self._check_writable()
        etype, payload = validate_event_input({"type": type, "data": data or {}})
        encoded = self._encode(payload, "interaction.data", self._max_event_bytes, MAX_EVENT)
        self._pending.event(etype, encoded)
        self._staged()
        config = self._manager.config
        if persist is None:
            persist = config.auto_persist and config.persist_on_interaction
        if persist:
            await self.persist()

    def _stage_event(self, etype: str, data: JSONDict) -> None:
        encoded = self._encode(data, f"{etype}.data", self._max_event_bytes, MAX_EVENT)
        self._pending.event(etype, encoded)
        self._staged()

    # ------------------------------------------------------------------ persisting

    async def persist(self) -> Session:
        """Write every pending change now, in one atomic write; returns the stored session.

        Concurrent callers coalesce: a change staged while another persist is writing is
        written by the next one. Raises per the conflict policy
        (:class:`ManagedSessionConflictError`, lease errors), keeping the changes.
        """
        if self._pending.empty and not self._lock.locked():
            return self._base  # nothing to write and no write in flight
        return await self._locked(self._flush_locked)

    async def _locked(self, body: Callable[[], Awaitable[T]]) -> T:
        """Run ``body`` under the session lock in a task the caller's cancellation cannot
        interrupt, so that what this object believes always matches the store (a write
        cancelled half-way could land unseen, and be re-applied twice later)."""
        await self._lock.acquire()
        loop = asyncio.get_running_loop()
        # The caller waits on a plain future that the task resolves itself: a cancelled
        # caller cancels only the future, and it costs one loop turn less than shield().
        outcome: asyncio.Future[T] = loop.create_future()

        async def run() -> None:
            try:
                result = await body()
            except asyncio.CancelledError:
                outcome.cancel()
                raise
            except BaseException as exc:
                if not outcome.done():
                    outcome.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                if not outcome.done():
                    outcome.set_result(result)
            finally:
                self._lock.release()

        try:
            task = loop.create_task(run())
        except BaseException:
            self._lock.release()
            raise
        self._manager._track(task)
        return await outcome

    async def _flush_locked(self) -> Session:
        if self._pending.empty:
            return self._base
        if self._blocked is not None:
            raise self._blocked
        inflight, self._pending = self._pending, Pending()
        self._inflight = inflight
        before = self._base
        try:
            session = await self._write(inflight)
        except BaseException as exc:
            self._pending = inflight.then(self._pending)
            self._failed(exc)
            raise
        finally:
            self._inflight = None
        # Only events appended right on top of what we had: the document (and so the
        # local view) is unchanged - no need to rebuild it.
        events_only = session.version == before.version + 1 and not inflight.touches_session(before)
        self._persisted(session, rebuild=not events_only)
        return session

    def _persisted(self, session: Session, *, rebuild: bool = True) -> None:
        self._base = session
        if rebuild:
            self._rebuild()
        self.writes += 1
        self.last_error = None
        self.last_persisted_at = session.updated_at
        if self._pending.empty:
            self.pending_since = None
            self._manager._mark_clean(self)
        self._manager._stats.writes += 1

    def _failed(self, exc: BaseException) -> None:
        if not isinstance(exc, Exception):
            return  # cancelled: the changes are kept, nothing else to record
        self.last_error = exc
        self._manager._record_error(exc, self.id)
        if isinstance(exc, SessionConflictError | LeaseError | SessionNotFoundError):
            self._blocked = exc
            if isinstance(exc, SessionConflictError):
                self._manager._stats.conflicts += 1

    async def _write(self, pending: Pending) -> Session:
        config = self._manager.config
        clock = self._store.clock
        base = self._base
        ttl = config.default_ttl if config.sliding_expiration else None
        for attempt in range(config.reapply_attempts + 1):
            check_fence(base, self.lease, clock.now())
            update = pending.to_update(base, None if ttl is None else timedelta(seconds=ttl))
            try:
                return await write(self._store, self.id, base.version, update, pending.events)
            except SessionConflictError as exc:
                fresh = await self._store.get_session(self.id)
                if fresh is None:
                    raise SessionNotFoundError(self.id) from exc
                check_fence(fresh, self.lease, clock.now())
                keys: tuple[str, ...] = ()
                if config.conflict_policy == "reload_and_reapply":
                    keys = pending.conflicts(base, fresh)
                    if not keys and attempt < config.reapply_attempts:
                        self._manager._stats.reapplied += 1
                        log.info("session %s: re-applying on version %s", self.id, fresh.version)
                        base = fresh
                        continue
                raise ManagedSessionConflictError(
                    self.id, base.version, fresh.version, keys
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _rebuild(self) -> None:
        base = self._base
        data = dict(base.data)
        metadata = {k: v for k, v in base.metadata.items() if k != MANAGER_KEY}
        pending = self._pending
        if self._tx_inflight is not None:  # staged in a transaction: still not written
            pending = self._tx_inflight.then(pending)
        self._data, self._metadata, self._tags, self._status = pending.apply(
            data, metadata, base.tags, base.status
        )

    def _fast_forward(self, previous: Session, new: Session) -> None:
        """A write made for this session elsewhere (lease, expiry): adopt it when it was
        made directly on top of what this object had (pending changes stay pending)."""
        if self._base.version == previous.version:
            self._base = new
            self._rebuild()

    async def reload(self, *, keep_pending: bool = False) -> Session:
        """Re-read the session from the store and clear a conflict or lease error.

        Pending changes are dropped, or with ``keep_pending=True`` kept to be written on
        top of the new state (your decision that they may overwrite it). Raises
        :class:`SessionNotFoundError` when the session is gone.
        """

        async def body() -> Session:
            fresh = await self._store.get_session(self.id)
            if fresh is None:
                raise SessionNotFoundError(self.id)
            self._base = fresh
            self._blocked = None
            if not keep_pending:
                self._pending = Pending()
                self.pending_since = None
                self._manager._mark_clean(self)
            self._rebuild()
            return fresh

        return await self._locked(body)

    # ------------------------------------------------------------------ reading

    async def get_events(
        self, *, after_seq: int = 0, limit: int | None = None, last: int | None = None
    ) -> list[Event]:
        """Persisted events of the session (pending ones are not included)."""
        return await self._store.get_events(self.id, after_seq=after_seq, limit=limit, last=last)

    # ------------------------------------------------------------------ closing

    async def close(self) -> None:
        """Persist what is pending and detach from the manager. Idempotent."""
        if self._closed:
            return
        try:
            await self.persist()
        finally:
            if self._pending.empty:
                self._closed = True
                self._manager._forget(self)

    async def __aenter__(self) -> ManagedSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
