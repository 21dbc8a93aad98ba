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
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
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
from ..model import TTL, UNSET, Checkpoint, Event, JSONDict, Session, SessionUpdate, Status, Unset
from ..validation import validate_event_input, validate_positive_int, validate_tags
from ._bookkeeping import MANAGER_KEY, Book, check_user_metadata
from ._errors import LeaseError, LifecycleError, ManagedSessionConflictError, ManagerClosedError
from ._leases import Lease, check_fence
from ._lifecycle import FAILABLE, LIVE, check_transition, error_record, set_status_sources
from ._pending import Pending
from ._writes import write

if TYPE_CHECKING:
    from ._host import SessionHost

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


class ManagedSession:
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

    def __init__(self, host: SessionHost, session: Session, lease: Lease | None = None) -> None:
        self._host = host
        self._store = host.store
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
        self._host.staged(self)

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
        config = self._host.config
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
        self._host.track(task)
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
            self._host.settled(self)
        self._host.wrote()

    def _failed(self, exc: BaseException) -> None:
        if not isinstance(exc, Exception):
            return  # cancelled: the changes are kept, nothing else to record
        self.last_error = exc
        self._host.write_failed(self.id, exc)
        if isinstance(exc, SessionConflictError | LeaseError | SessionNotFoundError):
            self._blocked = exc

    async def _write(self, pending: Pending) -> Session:
        config = self._host.config
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
                        self._host.reapplied()
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
                self._host.settled(self)
            self._rebuild()
            return fresh

        return await self._locked(body)

    # ------------------------------------------------------------------ views

    @property
    def iterations(self) -> int:
        """Iterations counted (persisted plus pending)."""
        return Book.of(self._base).iterations + self._pending.iterations

    @property
    def max_iterations(self) -> int | None:
        """The iteration limit (``None``: unlimited)."""
        value = self._book_value("max_iterations")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def result(self) -> Any:
        """What :meth:`complete` recorded."""
        return self._book_value("result")

    @property
    def error(self) -> dict[str, Any] | None:
        """What :meth:`fail` recorded (``{"type": ..., "message": ...}``)."""
        value = self._book_value("error")
        return value if isinstance(value, dict) else None

    @property
    def is_active(self) -> bool:
        """True while the session is ``active``."""
        return self._status is Status.ACTIVE

    @property
    def is_resumable(self) -> bool:
        """True when :meth:`resume` may continue the work (the session is ``paused``).

        A ``timeout`` session resumes only with a higher ``max_iterations``.
        """
        return self._status is Status.PAUSED

    @property
    def is_finished(self) -> bool:
        """True for ``completed``, ``failed``, ``expired`` and ``timeout``."""
        return self._status not in LIVE

    # ------------------------------------------------------------------ transitions

    async def _transition(
        self,
        to: Status,
        allowed: Collection[Status],
        details: JSONDict | None = None,
        book: JSONDict | None = None,
    ) -> Session:
        self._check_writable()
        current = self._status
        check_transition(self.id, current, to, allowed)
        event: JSONDict = {"from": current.value, "to": to.value, **(details or {})}
        self._stage_event("lifecycle", event)  # validates details before anything changes
        if book:
            self._pending.set_book(**book)
        self._pending.set_status(to)
        self._status = to
        return await self.persist()

    async def pause(self, reason: str | None = None) -> Session:
        """``active`` -> ``paused`` (persisted now)."""
        details = {} if reason is None else {"reason": reason}
        return await self._transition(Status.PAUSED, {Status.ACTIVE}, details)

    async def resume(self, *, max_iterations: int | Unset | None = UNSET) -> Session:
        """``paused`` -> ``active``; a ``timeout`` session needs a higher ``max_iterations``
        (or ``None``: unlimited). Persisted now."""
        allowed = {Status.PAUSED}
        book: JSONDict = {}
        details: JSONDict = {}
        if max_iterations is not UNSET:
            if max_iterations is not None:
                validate_positive_int(max_iterations, "max_iterations", maximum=2**62)
            book["max_iterations"] = max_iterations
            details["max_iterations"] = max_iterations
            if max_iterations is None or max_iterations > self.iterations:
                allowed.add(Status.TIMEOUT)
        return await self._transition(Status.ACTIVE, allowed, details, book)

    async def complete(self, result: Any = None) -> Session:
        """``active | paused`` -> ``completed``, recording ``result`` (JSON). Persisted now."""
        checked = encode_user_dict({"result": result}, "result", 2**31)[1]["result"]
        details = {} if checked is None else {"result": checked}
        return await self._transition(
            Status.COMPLETED, LIVE, details, {"result": checked} if checked is not None else None
        )

    async def fail(self, error: BaseException | str | dict[str, Any]) -> Session:
        """``active | paused | timeout`` -> ``failed``, recording the error. Persisted now."""
        record = encode_user_dict(error_record(error), "error", 2**31)[1]
        return await self._transition(Status.FAILED, FAILABLE, {"error": record}, {"error": record})

    async def set_status(self, status: Status | str, *, reason: str | None = None) -> Session:
        """Any other status change (not to or from ``expired``), recorded and persisted."""
        target = Status(status)
        allowed = set_status_sources(target)
        details = {} if reason is None else {"reason": reason}
        return await self._transition(target, allowed, details)

    # ------------------------------------------------------------------ iterations

    async def next_iteration(self) -> bool:
        """Count one iteration of work. Returns ``False`` - and moves the session to
        ``timeout`` (persisted) - when ``max_iterations`` are already done.

        The count is staged like other changes (persisted with the next write).
        """
        self._check_writable()
        if self._status is not Status.ACTIVE:
            raise LifecycleError(f"session {self.id!r} is {self._status.value}: cannot iterate")
        limit = self.max_iterations
        if limit is not None and self.iterations >= limit:
            details = {"iterations": self.iterations, "max_iterations": limit}
            await self._transition(Status.TIMEOUT, {Status.ACTIVE}, details)
            return False
        self._pending.count_iteration()
        self._staged()
        return True

    async def set_max_iterations(self, limit: int | None) -> None:
        """Change the iteration limit (staged; ``None``: unlimited)."""
        self._check_writable()
        if limit is not None:
            validate_positive_int(limit, "max_iterations", maximum=2**62)
        self._pending.set_book(max_iterations=limit)
        self._staged()

    # ------------------------------------------------------------------ checkpoints

    async def checkpoint(
        self, label: str | None = None, *, keep_last: int | None = None
    ) -> Checkpoint:
        """Persist what is pending, then snapshot the session (SHA-256 digest).

        ``keep_last`` (default: the manager's ``checkpoint_keep_last``) prunes the oldest.
        """
        self._check_writable()
        await self.persist()
        keep = keep_last if keep_last is not None else self._host.config.checkpoint_keep_last
        return await self._store.save_checkpoint(self.id, label=label, keep_last=keep)

    async def list_checkpoints(self) -> list[Checkpoint]:
        """The session's checkpoints, oldest first."""
        return await self._store.list_checkpoints(self.id)

    async def restore_checkpoint(self, checkpoint_id: str) -> Session:
        """Write a checkpoint's data, metadata, status and tags back as a new version.

        The digest (and the record's format version) is verified first:
        :class:`IntegrityError` on a mismatch, nothing written. Pending changes are
        persisted before; events stay; the bookkeeping (iteration count and limit, lease)
        stays current. A ``"checkpoint_restored"`` event records the restore.
        """
        self._check_writable()
        cp = await self._store.get_checkpoint(self.id, checkpoint_id)

        async def body() -> Session:
            await self._flush_locked()
            base = self._base
            check_fence(base, self.lease, self._store.clock.now())
            # the bookkeeping stays current (iterations keep counting, so a loop that keeps
            # restoring still meets max_iterations; the lease stays); the outcome of the
            # restored state comes with it
            snapshot = Book.of(cp.metadata)
            book = Book.of(base).with_changes({"result": snapshot.result, "error": snapshot.error})
            update = SessionUpdate(
                data=cp.data,
                metadata={**cp.metadata, MANAGER_KEY: book},
                status=cp.status,
                tags=cp.tags,
            )
            event = {"checkpoint_id": cp.id, "label": cp.label, "version": cp.version}
            try:
                session = await write(
                    self._store, self.id, base.version, update, [("checkpoint_restored", event)]
                )
            except SessionConflictError as exc:
                fresh = await self._store.get_session(self.id)
                error = ManagedSessionConflictError(
                    self.id, base.version, fresh.version if fresh else 0
                )
                self._failed(error)
                raise error from exc
            self._persisted(session)
            return session

        return await self._locked(body)

    # ------------------------------------------------------------------ leases

    async def claim(self, owner: str, ttl: TTL | None = None) -> Lease:
        """Take the session's lease for ``owner``; this object's writes are then fenced
        with it (:class:`LeaseLostError` once someone else takes it over)."""
        lease = await self._host.claim(self.id, owner, ttl)
        self.lease = lease
        return lease

    async def renew_lease(self, ttl: TTL | None = None) -> Lease:
        """Extend this object's lease (:class:`LeaseLostError` if it was taken over)."""
        if self.lease is None:
            raise LeaseError(f"session {self.id!r}: no lease to renew", self.id)
        self.lease = await self._host.renew(self.lease, ttl)
        return self.lease

    async def release_lease(self) -> bool:
        """Persist what is pending, then give the lease up; False if it was already lost
        (then nothing is written: a fenced-off worker's changes stay pending)."""
        if self.lease is None:
            return False
        if self.blocked is None:
            await self.persist()
        released = await self._host.release(self.lease)
        self.lease = None
        return released

    # ------------------------------------------------------------------ expiry

    async def set_expiration(
        self, ttl: TTL | None = None, *, expires_at: datetime | Unset | None = UNSET
    ) -> Session:
        """Set an absolute expiry (``ttl`` from now, or ``expires_at``; ``None`` clears)."""
        return await self._host.set_expiration(self.id, ttl, expires_at)

    async def extend_expiration(self, seconds: TTL) -> Session:
        """Push the expiry ``seconds`` later (from now when there is none)."""
        return await self._host.extend_expiration(self.id, seconds)

    async def refresh(self, ttl: TTL | None = None) -> Session:
        """Sliding expiry: ``expires_at = now + ttl`` (default: the config's default_ttl)."""
        return await self._host.refresh(self.id, ttl)

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
                self._host.detach(self)

    async def __aenter__(self) -> ManagedSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
