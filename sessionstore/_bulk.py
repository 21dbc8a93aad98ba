"""Expiry and whole-record bulk operations of :class:`BaseSessionStore` (a mixin).

Split from ``base.py`` to keep modules small; it relies only on the write engine
(``_execute``, ``_apply``) and the primitives that ``BaseSessionStore`` declares.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._batch import Limits, Mutation, Planner
from .clock import Clock
from .codec import MAX_EVENT, MAX_SESSION, checkpoint_digest, encode_user_dict
from .errors import (
    IntegrityError,
    InvalidArgumentError,
    SessionConflictError,
    SessionExistsError,
)
from .model import Checkpoint, Event, Session, SessionRecord, Status
from .protocol import MergeStrategy, PutResult
from .query import SessionFilter, matches
from .validation import validate_session_id

__all__ = ["STRATEGIES", "BulkMixin", "check_strategy", "merge_decision"]

T = TypeVar("T")
_CAS_ATTEMPTS: Final = 100
STRATEGIES: Final = ("skip_existing", "overwrite", "update_newer", "fail_on_conflict")


def check_strategy(strategy: object) -> MergeStrategy:
    """``strategy`` if it is a merge strategy, else :class:`InvalidArgumentError`."""
    if strategy not in STRATEGIES:
        raise InvalidArgumentError(
            f"unknown strategy {strategy!r} (allowed: {', '.join(STRATEGIES)})"
        )
    return strategy


def merge_decision(strategy: str, new: Session, stored: Session | None, now: datetime) -> str:
    """What restoring ``new`` does when ``stored`` is the stored session (or ``None``).

    ``"create"`` (absent or expired), ``"overwrite"``, ``"skip"`` or ``"conflict"``
    (``fail_on_conflict`` and a live stored session). ``update_newer`` overwrites when
    ``new`` has the newer ``updated_at``, then the higher ``version``.
    """
    if stored is None or stored.is_expired(now):
        return "create"
    if strategy == "skip_existing":
        return "skip"
    if strategy == "fail_on_conflict":
        return "conflict"
    if strategy == "update_newer" and (new.updated_at, new.version) <= (
        stored.updated_at,
        stored.version,
    ):
        return "skip"
    return "overwrite"


class BulkMixin:
    """``expire_sessions``, ``cleanup_expired_sessions``, ``scan`` and ``put_records``."""

    if TYPE_CHECKING:
        clock: Clock
        _limits: Limits

        def _check_open(self) -> None: ...
        def _notify(self, hook: str, **kwargs: Any) -> None: ...
        def _report_corrupt(self, error: IntegrityError) -> None: ...
        def _after_write(self, mutations: Sequence[Mutation]) -> None: ...
        async def _all_sessions(self) -> list[Session]: ...
        async def _execute(
            self, load_ids: Sequence[str], plan: Callable[[Planner], T], *, atomic: bool = True
        ) -> T: ...
        async def _load(self, session_ids: Sequence[str]) -> dict[str, Session]: ...
        async def _apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None: ...
        async def _load_events(
            self, session_id: str, *, after_seq: int, limit: int | None, last: int | None
        ) -> list[Event]: ...
        async def _load_checkpoints(self, session_id: str) -> list[Checkpoint]: ...
        def _iter_sessions(self) -> AsyncIterator[Session]: ...

    # ------------------------------------------------------------------ expiry

    async def _expired_sessions(self, now: datetime) -> list[Session]:
        """Stored sessions whose expiry is due (drivers with an expiry index override)."""
        return [s for s in await self._all_sessions() if s.is_expired(now)]

    async def expire_sessions(self) -> list[str]:
        """Mark due sessions ``expired`` (version + 1); returns their ids."""
        self._check_open()
        now = self.clock.now()
        done: list[str] = []
        for session in await self._expired_sessions(now):
            if session.status is Status.EXPIRED:
                continue

            def plan(planner: Planner, sid: str = session.id) -> bool:
                current = planner.visible(sid) or (planner._current.get(sid))
                if (
                    current is None
                    or not current.is_expired(planner.now)
                    or current.status is Status.EXPIRED
                ):
                    return False
                planner.set_status_unchecked(current, Status.EXPIRED)
                return True

            if await self._execute([session.id], plan):
                done.append(session.id)
                self._notify("sessionstore_session_expired", session_id=session.id)
        return done

    async def cleanup_expired_sessions(self) -> int:
        """Remove due sessions with their events, checkpoints and index entries."""
        self._check_open()
        now = self.clock.now()
        removed = 0
        for session in await self._expired_sessions(now):

            def plan(planner: Planner, sid: str = session.id) -> bool:
                current = planner._current.get(sid)
                if current is None or not current.is_expired(planner.now):
                    return False
                planner.delete(sid, None, missing_ok=True)
                return True

            if await self._execute([session.id], plan):
                removed += 1
                if session.status is not Status.EXPIRED:
                    self._notify("sessionstore_session_expired", session_id=session.id)
        return removed

    # ------------------------------------------------------------------ bulk

    async def scan(
        self, *, include_expired: bool = False, filter: SessionFilter | None = None
    ) -> AsyncIterator[SessionRecord]:
        """Stream whole records (session, events, checkpoints) for backup."""
        self._check_open()
        flt = filter or SessionFilter(include_expired=include_expired)
        if include_expired and not flt.include_expired:
            raise InvalidArgumentError(
                "give include_expired in the filter or the argument, not both"
            )
        now = self.clock.now()
        async for session in self._iter_sessions():
            if not matches(session, flt, now):
                continue
            try:
                events = await self._load_events(session.id, after_seq=0, limit=None, last=None)
                checkpoints = await self._load_checkpoints(session.id)
            except IntegrityError as exc:  # a corrupt event log or checkpoint: skip, report
                self._report_corrupt(exc)
                continue
            yield SessionRecord(session, events, checkpoints)

    def _check_record(self, record: SessionRecord) -> tuple[bytes, bytes]:
        if not isinstance(record, SessionRecord):
            raise InvalidArgumentError(f"put_records takes SessionRecord values, got {record!r}")
        s = record.session
        validate_session_id(s.id)
        if s.version < 1:
            raise InvalidArgumentError(f"record {s.id!r} has version {s.version}")
        data_json, _ = encode_user_dict(s.data, "data", self._limits.max_session_bytes, MAX_SESSION)
        meta_json, _ = encode_user_dict(
            s.metadata, "metadata", self._limits.max_session_bytes, MAX_SESSION
        )
        seqs = [e.seq for e in record.events]
        first = s.last_seq - len(seqs) + 1  # events are gap-free and end at last_seq
        if len(seqs) != s.event_count or first < 1 or seqs != list(range(first, s.last_seq + 1)):
            raise InvalidArgumentError(f"record {s.id!r}: events do not match event_count/last_seq")
        for event in record.events:
            encode_user_dict(
                event.data, f"events[{event.seq}].data", self._limits.max_event_bytes, MAX_EVENT
            )
        for cp in record.checkpoints:
            if cp.session_id != s.id or checkpoint_digest(cp) != cp.digest:
                raise IntegrityError(
                    "checkpoint digest does not match its content", f"{s.id}/{cp.id}"
                )
        return data_json, meta_json

    async def put_records(
        self, records: Iterable[SessionRecord], *, strategy: MergeStrategy = "skip_existing"
    ) -> PutResult:
        """Write whole records back exactly (ids, versions, timestamps, events, checkpoints).

        ``strategy`` decides what happens to a session that exists: ``skip_existing``,
        ``overwrite``, ``update_newer`` (newer ``updated_at``, then higher ``version``
        wins) or ``fail_on_conflict`` (:class:`SessionExistsError`, nothing of this call
        written).
        """
        check_strategy(strategy)
        batch = list(records)
        encoded = [self._check_record(r) for r in batch]
        self._check_open()
        ids = [r.session.id for r in batch]
        if len(set(ids)) != len(ids):
            raise InvalidArgumentError("put_records got the same session twice in one call")
        existing = await self._load(ids)
        now = self.clock.now()
        if strategy == "fail_on_conflict":
            for sid in ids:
                if (s := existing.get(sid)) is not None and not s.is_expired(now):
                    raise SessionExistsError(sid)
        total = PutResult()
        for record, (data_json, meta_json) in zip(batch, encoded, strict=True):
            total += await self._put_record(
                record, data_json, meta_json, strategy, existing.get(record.session.id)
            )
        return total

    async def _put_record(
        self,
        record: SessionRecord,
        data_json: bytes,
        meta_json: bytes,
        strategy: str,
        stored: Session | None,
    ) -> PutResult:
        new = record.session
        for _ in range(_CAS_ATTEMPTS):
            decision = merge_decision(strategy, new, stored, self.clock.now())
            if decision == "skip":
                return PutResult(skipped=1)
            if decision == "conflict":
                return PutResult(conflicts=1)
            live = decision == "overwrite"
            mut = Mutation(
                session_id=new.id,
                expect=0 if stored is None else stored.version,
                session=new,
                data_json=data_json,
                metadata_json=meta_json,
                reset=stored is not None,
                append=list(record.events),
                put_checkpoints=list(record.checkpoints),
                created=not live,
            )
            try:
                await self._apply([mut])
            except SessionConflictError:
                stored = (await self._load([new.id])).get(new.id)
                continue
            self._after_write([mut])
            return PutResult(overwritten=1) if live else PutResult(created=1)
        raise SessionConflictError(new.id, 0 if stored is None else stored.version, -1)
