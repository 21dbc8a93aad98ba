"""Whole-thread operations: delete the checkpoints of runs, copy a thread, prune.

Each reads the thread once and then changes it in one atomic write: removals are one
``delete_events`` call (by key and seq) and never a rewrite of what stays, so a step
written meanwhile by a running graph is neither lost nor half-deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from sessionstore import Event, EventInput, SessionNotFoundError

from ._ids import (
    LINK_TYPE,
    blob_key,
    checkpoint_key,
    mark_key,
    run_index_id,
    thread_session_id,
    writes_type,
)
from ._records import CheckpointRecord, blob_base, is_value_event, metadata_tags

if TYPE_CHECKING:
    from ._saver import SessionStoreSaver

__all__ = ["PRUNE_STRATEGIES", "copy_thread", "delete_for_runs", "prune"]

PRUNE_STRATEGIES: Final = ("keep_latest", "delete")
#: Events per append when copying a thread.
_COPY_BATCH: Final = 200


@dataclass
class _Thread:
    """One read of a thread: its checkpoints, write events and value keys."""

    records: list[CheckpointRecord] = field(default_factory=list)
    writes: dict[str, list[int]] = field(default_factory=dict)  # writes type -> seqs
    blobs: set[str] = field(default_factory=set)
    snapshots: dict[str, str] = field(default_factory=dict)  # a link's key -> its snapshot's

    def with_snapshots(self, keys: Iterable[str]) -> set[str]:
        """``keys`` and the snapshots of those that are links."""
        keys = set(keys)
        return keys | {self.snapshots[k] for k in keys if k in self.snapshots}

    def heads(self) -> dict[str, CheckpointRecord]:
        """The newest checkpoint of each namespace."""
        heads: dict[str, CheckpointRecord] = {}
        for record in self.records:  # ascending seq: the last one wins
            heads[record.ns] = record
        return heads


async def _read(saver: SessionStoreSaver, session_id: str) -> _Thread:
    thread = _Thread()
    async for event in saver._all_events(session_id):
        if event.type.startswith("lg.cp."):
            thread.records.append(CheckpointRecord.of(event))
        elif event.type.startswith("lg.w."):
            thread.writes.setdefault(event.type, []).append(event.seq)
        elif is_value_event(event.type) and event.key is not None:
            thread.blobs.add(event.key)
            if event.type == LINK_TYPE:
                thread.snapshots[event.key] = event.data["s"]
    return thread


async def _remove(
    saver: SessionStoreSaver, session_id: str, thread: _Thread, doomed: Iterable[CheckpointRecord]
) -> None:
    """Delete ``doomed`` checkpoints with their writes and every value that no other
    checkpoint of the thread uses (directly, or as a link's snapshot), in one atomic
    ``delete_events``."""
    doomed_ids = {id(r) for r in doomed}
    gone = [r for r in thread.records if id(r) in doomed_ids]
    if not gone:
        return
    kept = [r for r in thread.records if id(r) not in doomed_ids]
    used = thread.with_snapshots(
        blob_key(r.ns, ch, v) for r in kept for ch, v in r.versions.items()
    )
    keys = [checkpoint_key(r.ns, r.id) for r in gone]
    keys += [mark_key(r.ns, r.id) for r in gone]
    keys.extend(k for k in thread.blobs if blob_base(k) not in used)
    seqs = [seq for r in gone for seq in thread.writes.get(writes_type(r.ns, r.id), ())]
    saver._forget(session_id)
    with contextlib.suppress(SessionNotFoundError):  # deleted meanwhile
        await saver.store.delete_events(session_id, seqs=seqs, keys=keys)


async def delete_for_runs(saver: SessionStoreSaver, run_ids: Sequence[str]) -> None:
    """See :meth:`SessionStoreSaver.adelete_for_runs`."""
    runs = set(run_ids)
    threads: dict[str, None] = {}
    for run_id in runs:
        async for event in saver._all_events(run_index_id(run_id)):
            threads[event.data["t"]] = None
    for thread_id in threads:
        session_id = thread_session_id(thread_id)
        thread = await _read(saver, session_id)
        await _remove(saver, session_id, thread, [r for r in thread.records if r.run_id in runs])
    # The runs' index sessions stay (a few bytes a thread; they expire with the saver's
    # ttl): another process that already indexed a (thread, run) pair does not index it
    # again, so a checkpoint it writes for the run after this call (a run still going,
    # or retried under its id) is found by the next delete_for_runs only through them.


async def copy_thread(saver: SessionStoreSaver, source: str, target: str) -> None:
    """See :meth:`SessionStoreSaver.acopy_thread`."""
    if source == target:
        return
    source_id, target_id = thread_session_id(source), thread_session_id(target)
    saver._forget(target_id)
    batch: list[EventInput] = []
    runs: dict[str, None] = {}
    # the metadata tags of the checkpoints copied go with them (listings filter by
    # them; a source written before the tags existed is tagged on its copy)
    tags: set[str] = set()

    async def flush() -> None:
        await saver._append_tagged(target_id, target, batch, frozenset(tags))
        batch.clear()
        tags.clear()

    async for event in saver._all_events(source_id):
        run = None
        if event.type.startswith("lg.cp."):
            run = event.data.get("run")
            tags.update(metadata_tags(CheckpointRecord.of(event).metadata(saver.serde)))
        if isinstance(run, str) and run not in runs:
            runs[run] = None
            await saver._index_run(target, target_id, run)
        batch.append(_copy_of(event))
        if len(batch) >= _COPY_BATCH:
            await flush()
    if batch:
        await flush()


def _copy_of(event: Event) -> EventInput:
    return EventInput(type=event.type, data=event.data, key=event.key, at=event.at)


async def prune(saver: SessionStoreSaver, thread_ids: Sequence[str], strategy: str) -> None:
    """See :meth:`SessionStoreSaver.aprune`."""
    if isinstance(thread_ids, str):
        raise TypeError("thread_ids must be a sequence of thread ids, not a str")
    if strategy not in PRUNE_STRATEGIES:
        raise ValueError(f"unknown prune strategy {strategy!r}: use one of {PRUNE_STRATEGIES}")
    for thread_id in thread_ids:
        session_id = thread_session_id(str(thread_id))
        if strategy == "delete":
            saver._forget(session_id)
            await saver.store.delete_session(session_id)
            continue
        thread = await _read(saver, session_id)
        keep = _kept(saver, thread)
        await _remove(saver, session_id, thread, [r for r in thread.records if id(r) not in keep])


def _kept(saver: SessionStoreSaver, thread: _Thread) -> set[int]:
    """The checkpoints ``keep_latest`` keeps: each namespace's newest, and for a graph
    with delta channels (named by the head's ``counters_since_delta_snapshot``
    metadata) every ancestor back to the nearest one holding each such channel's value,
    so the channels still rebuild after the prune."""
    by_id = {(r.ns, r.id): r for r in thread.records}
    keep: set[int] = set()
    for head in thread.heads().values():
        keep.add(id(head))
        counters = head.metadata(saver.serde).get("counters_since_delta_snapshot") or {}
        open_channels = set(counters)
        record: CheckpointRecord | None = head
        while record is not None and open_channels:
            for ch in list(open_channels):
                version = record.versions.get(ch)
                if version is not None and (
                    ch in record.inline or blob_key(record.ns, ch, version) in thread.blobs
                ):
                    open_channels.discard(ch)
            keep.add(id(record))
            record = by_id.get((record.ns, record.parent)) if record.parent else None
    return keep
