"""The write engine shared by restore and migrate: items in, batched ``Mutation`` s out.

Items arrive as a stream (a session, its checkpoints, its event chunks, the next session
...). Sessions are collected into batches (up to ``batch_size`` sessions or about 4 MiB);
for a batch the engine loads the stored versions with one ``load`` of the destination's
:class:`~sessionstore.driver.StorePrimitives`, decides per session by the merge strategy,
and writes all of them with one ``apply(mutations, atomic=False)`` (a pipeline on Redis,
one journaled commit on files). Every mutation carries ``expect`` (the stored version it
decided against), so a concurrent writer is never overwritten blindly: on a conflict the
batch is redone one session at a time, re-reading each.

A session whose events do not fit in a batch is written in chunks: the first mutation
(``reset=True``) writes the document with its final version and the first events, then
append-only mutations (``session=None``) with ``expect`` = that version add the rest.
Between them the session is visible with only part of its events (a brief window; a
concurrent writer that changes it in that window makes the next chunk conflict, and the
session is reported in ``incomplete``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

import orjson

from ..codec import MAX_EVENT, MAX_SESSION
from ..driver import CAS_ATTEMPTS, Mutation, StorePrimitives, merge_decision
from ..errors import (
    InvalidArgumentError,
    QuotaExceededError,
    SessionConflictError,
    SessionExistsError,
)
from ..model import Checkpoint, Event, Session
from ..query import SessionFilter, matches
from ._format import CheckpointItem, EventsItem, Item, PageEnd, SessionItem
from ._results import ProgressCallback, WriteCounts
from ._source import ChunkSizer

__all__ = ["BATCH_SIZE", "WriteEngine"]

log = logging.getLogger("sessionstore.backup")

#: Sessions per ``_apply`` call.
BATCH_SIZE: Final = 256
#: About this many bytes of payload per ``_apply`` call (a batch or an event chunk)...
BATCH_BYTES: Final = 2 << 20
#: ... and at most this many events.
BATCH_EVENTS: Final = 5_000
_EVENT_ESTIMATE: Final = 128  # bytes per event when the source gives no size
_WRITES: Final = ("create", "overwrite")


@dataclass(slots=True)
class _Unit:
    session: Session
    data_json: bytes
    metadata_json: bytes
    events: list[Event] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    decision: str = ""

    @property
    def id(self) -> str:
        return self.session.id


class WriteEngine:
    """Feed items with :meth:`feed`, end with :meth:`finish` (see the module docstring).

    ``filter`` drops sessions that do not match it; ``check_sizes`` checks payloads
    against the destination's limits (a backup file was already checked while verified);
    ``dry_run`` decides and counts but writes nothing.
    """

    def __init__(
        self,
        store: StorePrimitives,
        strategy: str,
        *,
        dry_run: bool = False,
        filter: SessionFilter | None = None,
        check_sizes: bool = False,
        batch_size: int = BATCH_SIZE,
        phase: str = "restore",
        total: int | None = None,
        progress: ProgressCallback | None = None,
        sizer: ChunkSizer | None = None,
    ) -> None:
        self.store = store
        self.sizer = sizer
        self.strategy = strategy
        self.dry_run = dry_run
        self.filter = filter
        self.check_sizes = check_sizes
        max_batch = store.capabilities.max_batch
        self.batch_size = max(1, min(batch_size, max_batch or batch_size))
        self.phase = phase
        self.total = total
        self.progress = progress
        self.first_conflict: str | None = None
        self._batch: list[_Unit] = []
        self._batch_bytes = 0
        self._batch_events = 0
        self._streaming: _Unit | None = None  # written; its further items become chunks
        self._chunk_events: list[Event] = []
        self._chunk_cps: list[Checkpoint] = []
        self._chunk_bytes = 0
        self._skip: str | None = None  # id whose further items are ignored
        self._counts: dict[str, int] = dict.fromkeys(
            ("create", "overwrite", "skip", "conflict", "filtered", "events", "checkpoints"), 0
        )
        self._incomplete: list[str] = []
        self.done = 0

    # ------------------------------------------------------------------ input

    async def feed(self, item: Item) -> None:
        """Take the next item of the stream."""
        if isinstance(item, SessionItem):
            await self._start(item)
        elif isinstance(item, PageEnd):
            return
        else:
            sid = item.session_id if isinstance(item, EventsItem) else item.checkpoint.session_id
            if sid == self._skip:
                return
            if self._streaming is not None and self._streaming.id == sid:
                await self._add_chunk(item)
                return
            if not self._batch or self._batch[-1].id != sid:
                raise InvalidArgumentError(f"items of session {sid!r} out of order")
            unit = self._batch[-1]
            if isinstance(item, EventsItem):
                unit.events.extend(item.events)
                self._batch_bytes += self._weigh(item)
                self._batch_events += len(item.events)
            else:
                unit.checkpoints.append(item.checkpoint)
                self._batch_bytes += 512
            if self._batch_bytes >= BATCH_BYTES or self._batch_events >= BATCH_EVENTS:
                await self._flush(open_last=True)

    async def commit_point(self) -> None:
        """Write everything fed so far (used to record resumable progress)."""
        await self._end_stream()
        await self._flush(open_last=False)

    async def finish(self) -> WriteCounts:
        """Write what is left; the counts of the whole run."""
        await self.commit_point()
        return self.counts()

    def counts(self) -> WriteCounts:
        """The counts so far."""
        c = self._counts
        return WriteCounts(
            restored=c["create"],
            overwritten=c["overwrite"],
            skipped=c["skip"],
            conflicts=c["conflict"],
            filtered_out=c["filtered"],
            events=c["events"],
            checkpoints=c["checkpoints"],
            incomplete=tuple(self._incomplete),
        )

    # ------------------------------------------------------------------ sessions

    async def _start(self, item: SessionItem) -> None:
        await self._end_stream()
        self._skip = None
        s = item.session
        if self.filter is not None and not matches(s, self.filter, self.store.clock.now()):
            self._counts["filtered"] += 1
            self.done += 1
            self._skip = s.id
            return
        data_json = item.data_json if item.data_json is not None else _encoded(s.data)
        meta_json = item.metadata_json if item.metadata_json is not None else _encoded(s.metadata)
        size = len(data_json) + len(meta_json)
        if self.check_sizes and size > self.store.limits.max_session_bytes:
            raise QuotaExceededError(
                f"session {s.id!r} is {size} bytes encoded, over the destination's limit of "
                f"{self.store.limits.max_session_bytes}",
                option=MAX_SESSION,
            )
        if (
            len(self._batch) >= self.batch_size
            or self._batch_bytes >= BATCH_BYTES
            or self._batch_events >= BATCH_EVENTS
        ):
            await self._flush(open_last=False)
        self._batch.append(_Unit(s, data_json, meta_json))
        self._batch_bytes += size

    def _weigh(self, item: EventsItem) -> int:
        if not self.check_sizes:
            return item.nbytes or _EVENT_ESTIMATE * len(item.events)
        limit = self.store.limits.max_event_bytes
        total = 0
        for event in item.events:
            size = len(orjson.dumps(event.data))
            if size > limit:
                raise QuotaExceededError(
                    f"event {event.seq} of session {item.session_id!r} is {size} bytes "
                    f"encoded, over the destination's limit of {limit}",
                    option=MAX_EVENT,
                )
            total += size + 64
        if self.sizer is not None:
            self.sizer.observe(len(item.events), total)
        return total

    async def _flush(self, *, open_last: bool) -> None:
        batch, self._batch, self._batch_bytes, self._batch_events = self._batch, [], 0, 0
        if not batch:
            return
        store = self.store
        stored = await store.load([u.id for u in batch])
        now = store.clock.now()
        for unit in batch:
            unit.decision = merge_decision(self.strategy, unit.session, stored.get(unit.id), now)
            if unit.decision == "conflict" and self.first_conflict is None:
                self.first_conflict = unit.id
        if not self.dry_run:
            if self.first_conflict is not None:
                raise SessionExistsError(self.first_conflict)
            muts = [self._first_mutation(u, stored.get(u.id)) for u in batch if self._writes(u)]
            if muts:
                try:
                    await store.apply(muts, atomic=False)
                except SessionConflictError:
                    await self._one_by_one(batch)
                else:
                    store.after_write(muts)
        for unit in batch:
            self._counts[unit.decision] += 1
            if self._writes(unit):
                self._counts["events"] += len(unit.events)
                self._counts["checkpoints"] += len(unit.checkpoints)
            unit.events, unit.checkpoints = [], []
        self.done += len(batch)
        last = batch[-1]
        if open_last:
            if self._writes(last):
                self._streaming = last
            else:
                self._skip = last.id
        if self.progress is not None:
            self.progress(self.phase, self.done, self.total)

    def _writes(self, unit: _Unit) -> bool:
        return unit.decision in _WRITES

    @staticmethod
    def _first_mutation(unit: _Unit, stored: Session | None) -> Mutation:
        return Mutation(
            session_id=unit.id,
            expect=0 if stored is None else stored.version,
            session=unit.session,
            data_json=unit.data_json,
            metadata_json=unit.metadata_json,
            reset=stored is not None,
            append=list(unit.events),
            put_checkpoints=list(unit.checkpoints),
            created=unit.decision == "create",
        )

    async def _one_by_one(self, batch: list[_Unit]) -> None:
        """After a conflict in a batch: re-read and write each session on its own."""
        store = self.store
        for unit in batch:
            if not self._writes(unit):
                continue
            for _ in range(CAS_ATTEMPTS):
                stored = (await store.load([unit.id])).get(unit.id)
                if stored is not None and _same_head(stored, unit.session):
                    break  # written by the batch (atomic=False may write part of it)
                unit.decision = merge_decision(
                    self.strategy, unit.session, stored, store.clock.now()
                )
                if unit.decision == "conflict":
                    raise SessionExistsError(unit.id)
                if not self._writes(unit):
                    break
                mut = self._first_mutation(unit, stored)
                try:
                    await store.apply([mut], atomic=False)
                except SessionConflictError:
                    continue
                store.after_write([mut])
                break
            else:
                raise SessionConflictError(unit.id, unit.session.version, -1)

    # ------------------------------------------------------------------ chunks

    async def _add_chunk(self, item: EventsItem | CheckpointItem) -> None:
        if isinstance(item, EventsItem):
            self._chunk_events.extend(item.events)
            self._chunk_bytes += self._weigh(item)
        else:
            self._chunk_cps.append(item.checkpoint)
            self._chunk_bytes += 512
        if self._chunk_bytes >= BATCH_BYTES or len(self._chunk_events) >= BATCH_EVENTS:
            await self._apply_chunk()

    async def _apply_chunk(self) -> None:
        unit = self._streaming
        events, cps = self._chunk_events, self._chunk_cps
        self._chunk_events, self._chunk_cps, self._chunk_bytes = [], [], 0
        if unit is None or not (events or cps):
            return
        if not self.dry_run:
            mut = Mutation(
                session_id=unit.id, expect=unit.session.version, append=events, put_checkpoints=cps
            )
            try:
                await self.store.apply([mut], atomic=False)
            except SessionConflictError:
                log.warning(
                    "session %r was changed by another writer while its events were being "
                    "restored; its event log is incomplete",
                    unit.id,
                )
                self._incomplete.append(unit.id)
                self._streaming = None
                self._skip = unit.id
                return
        self._counts["events"] += len(events)
        self._counts["checkpoints"] += len(cps)

    async def _end_stream(self) -> None:
        if self._streaming is not None:
            await self._apply_chunk()
        self._streaming = None


def _encoded(value: dict[str, object]) -> bytes:
    """``value`` as JSON, in an allocation of its own size.

    orjson returns even a 20-byte result in a buffer of at least 4 KiB: a batch of 256
    sessions would hold 2 MiB of them until it is written.
    """
    raw = orjson.dumps(value)
    return memoryview(raw).tobytes() if len(raw) < 2048 else raw


def _same_head(stored: Session, new: Session) -> bool:
    """The stored session is the one we were writing (every field equal)."""
    return stored == new
