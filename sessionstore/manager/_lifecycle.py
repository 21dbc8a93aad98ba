"""Lifecycle, iterations, checkpoints, leases and expiry of a managed session (a mixin).

Status transitions (each recorded as a ``"lifecycle"`` event and persisted before the
call returns)::

    active  --pause-->            paused
    paused  --resume-->           active
    timeout --resume(max_iterations=higher)--> active
    active | paused --complete--> completed
    active | paused | timeout --fail--> failed
    active  --next_iteration() past max_iterations--> timeout
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..codec import encode_user_dict
from ..errors import InvalidArgumentError, SessionConflictError, SessionStoreError
from ..model import TTL, UNSET, Checkpoint, JSONDict, Session, SessionUpdate, Status, Unset
from ..validation import validate_positive_int
from ._bookkeeping import MANAGER_KEY, Book
from ._errors import LeaseError, LifecycleError, ManagedSessionConflictError
from ._leases import Lease, check_fence
from ._writes import write

if TYPE_CHECKING:
    from ..protocol import SessionStore
    from ._manager import SessionPersistenceManager
    from ._pending import Pending

__all__ = ["LifecycleMixin"]

T = TypeVar("T")
_LIVE = frozenset({Status.ACTIVE, Status.PAUSED})


def _error_record(error: BaseException | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(error, BaseException):
        return {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, str):
        return {"type": "error", "message": error}
    if isinstance(error, dict):
        return dict(error)
    raise InvalidArgumentError("error must be an exception, a str or a dict")


class LifecycleMixin:
    """Lifecycle, iteration, checkpoint, lease and expiry methods of ``ManagedSession``."""

    if TYPE_CHECKING:
        _manager: SessionPersistenceManager
        _store: SessionStore
        _base: Session
        _pending: Pending
        _status: Status
        lease: Lease | None

        @property
        def id(self) -> str: ...
        @property
        def blocked(self) -> SessionStoreError | None: ...
        def _check_writable(self) -> None: ...
        def _staged(self) -> None: ...
        def _stage_event(self, etype: str, data: JSONDict) -> None: ...
        def _book_value(self, key: str) -> Any: ...
        def _persisted(self, session: Session) -> None: ...
        def _failed(self, exc: BaseException) -> None: ...
        async def _flush_locked(self) -> Session: ...
        async def _locked(self, body: Callable[[], Awaitable[T]]) -> T: ...
        async def persist(self) -> Session: ...

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
        return self._status not in _LIVE

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
        if current not in allowed:
            raise LifecycleError(
                f"session {self.id!r} is {current.value}: cannot move to {to.value} "
                f"(allowed from: {', '.join(sorted(s.value for s in allowed))})"
            )
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
            Status.COMPLETED, _LIVE, details, {"result": checked} if checked is not None else None
        )

    async def fail(self, error: BaseException | str | dict[str, Any]) -> Session:
        """``active | paused | timeout`` -> ``failed``, recording the error. Persisted now."""
        record = encode_user_dict(_error_record(error), "error", 2**31)[1]
        return await self._transition(
            Status.FAILED, {*_LIVE, Status.TIMEOUT}, {"error": record}, {"error": record}
        )

    async def set_status(self, status: Status | str, *, reason: str | None = None) -> Session:
        """Any other status change (not to or from ``expired``), recorded and persisted."""
        target = Status(status)
        if target is Status.EXPIRED:
            raise LifecycleError("only the store's clock expires sessions")
        allowed = {s for s in Status if s is not Status.EXPIRED and s is not target}
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
        keep = keep_last if keep_last is not None else self._manager.config.checkpoint_keep_last
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
        lease = await self._manager.claim(self.id, owner, ttl)
        self.lease = lease
        return lease

    async def renew_lease(self, ttl: TTL | None = None) -> Lease:
        """Extend this object's lease (:class:`LeaseLostError` if it was taken over)."""
        if self.lease is None:
            raise LeaseError(f"session {self.id!r}: no lease to renew", self.id)
        self.lease = await self._manager.renew(self.lease, ttl)
        return self.lease

    async def release_lease(self) -> bool:
        """Persist what is pending, then give the lease up; False if it was already lost
        (then nothing is written: a fenced-off worker's changes stay pending)."""
        if self.lease is None:
            return False
        if self.blocked is None:
            await self.persist()
        released = await self._manager.release(self.lease)
        self.lease = None
        return released

    # ------------------------------------------------------------------ expiry

    async def set_expiration(
        self, ttl: TTL | None = None, *, expires_at: datetime | Unset | None = UNSET
    ) -> Session:
        """Set an absolute expiry (``ttl`` from now, or ``expires_at``; ``None`` clears)."""
        return await self._manager.set_expiration(self.id, ttl, expires_at=expires_at)

    async def extend_expiration(self, seconds: TTL) -> Session:
        """Push the expiry ``seconds`` later (from now when there is none)."""
        return await self._manager.extend_expiration(self.id, seconds)

    async def refresh(self, ttl: TTL | None = None) -> Session:
        """Sliding expiry: ``expires_at = now + ttl`` (default: the config's default_ttl)."""
        return await self._manager.refresh(self.id, ttl)
