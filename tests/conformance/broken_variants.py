"""Memory stores with one planted bug each, and a conformance class per store.

Not collected by the normal run (the file name does not start with ``test_``):
``test_broken_variants.py`` runs it in a subprocess and asserts that the suite FAILS
every class here. Each variant is named after the bug it plants.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sessionstore_memory import MemoryBackend, MemoryStore

from sessionstore import (
    Clock,
    Event,
    Mutation,
    Op,
    Page,
    QueryOptions,
    Session,
    SessionFilter,
)
from sessionstore.testing import StoreConformance


class IgnoresExpectedVersion(MemoryStore):
    async def update_session(self, session_id: str, **kwargs: Any) -> Session:
        kwargs.pop("expected_version", None)
        return await super().update_session(session_id, **kwargs)


class VersionDoesNotIncreaseOnAppend(MemoryStore):
    async def _apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        for mut in mutations:
            if mut.append and mut.session is not None and mut.expect:
                mut.session = replace(mut.session, version=mut.expect)
        await super()._apply(mutations, atomic=atomic)


class ExpiryOffByOneTick(MemoryStore):
    async def get_session(
        self, session_id: str, *, include_expired: bool = False
    ) -> Session | None:
        found = await super().get_session(session_id, include_expired=True)
        if found is None or include_expired:
            return found
        if found.expires_at is not None and found.expires_at < self.clock.now():  # should be <=
            return None
        return found


class IgnoresTagsAnyFilter(MemoryStore):
    async def list_sessions(
        self, filter: SessionFilter | None = None, options: QueryOptions | None = None
    ) -> Page:
        if filter is not None and filter.tags_any is not None:
            kept = filter.to_dict()
            kept.pop("tags_any")
            filter = SessionFilter(
                ids=filter.ids,
                processor_id=filter.processor_id,
                status=filter.status,
                tags_all=filter.tags_all,
                metadata=filter.metadata,
                created_after=filter.created_after,
                created_before=filter.created_before,
                updated_after=filter.updated_after,
                updated_before=filter.updated_before,
                expires_before=filter.expires_before,
                has_events=filter.has_events,
                include_expired=filter.include_expired,
            )
        return await super().list_sessions(filter, options)


class TiesNotOrderedById(MemoryStore):
    async def list_sessions(
        self, filter: SessionFilter | None = None, options: QueryOptions | None = None
    ) -> Page:
        page = await super().list_sessions(filter, options)
        opts = options or QueryOptions()
        if opts.sort_by == "id":
            return page
        # order ties by id descending whatever the direction
        items = sorted(page.items, key=lambda s: s.id, reverse=True)
        items.sort(key=lambda s: getattr(s, opts.sort_by) is None)
        items.sort(
            key=lambda s: getattr(s, opts.sort_by) or s.created_at, reverse=opts.order == "desc"
        )
        return Page(items, page.next_cursor)


class ReturnsSharedState(MemoryStore):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cache: dict[tuple[str, int], Session] = {}

    async def get_session(
        self, session_id: str, *, include_expired: bool = False
    ) -> Session | None:
        found = await super().get_session(session_id, include_expired=include_expired)
        if found is None:
            return None
        return self._cache.setdefault((found.id, found.version), found)


class AppliesBatchHalfway(MemoryStore):
    async def commit(self, ops: Sequence[Op]) -> list[Session | bool]:
        results: list[Session | bool] = []
        for op in ops:  # one op at a time: an error leaves the earlier ones applied
            results.extend(await super().commit([op]))
        return results


class EventsOutOfOrder(MemoryStore):
    async def _load_events(
        self, session_id: str, *, after_seq: int, limit: int | None, last: int | None
    ) -> list[Event]:
        events = await super()._load_events(session_id, after_seq=after_seq, limit=limit, last=last)
        return sorted(events, key=lambda e: (e.type, -e.seq))


class OffsetCursorSkipsRows(MemoryStore):
    async def list_sessions(
        self, filter: SessionFilter | None = None, options: QueryOptions | None = None
    ) -> Page:
        opts = options or QueryOptions()
        offset = int(opts.cursor[3:]) if opts.cursor and opts.cursor.startswith("off") else 0
        plain = QueryOptions(
            sort_by=opts.sort_by, order=opts.order, limit=opts.limit, offset=opts.offset or offset
        )
        page = await super().list_sessions(filter, plain)
        more = len(page.items) == opts.limit
        return Page(page.items, f"off{plain.offset + opts.limit}" if more else None)


class NamespaceLeaks(MemoryStore):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._space = self.backend.space("")  # every namespace shares one space


class LosesUpdatesWithoutCas(MemoryStore):
    async def _load(self, session_ids: Sequence[str]) -> dict[str, Session]:
        loaded = await super()._load(session_ids)
        await asyncio.sleep(0)  # a real backend does I/O here: others get to run
        return loaded

    async def _apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        for mut in mutations:  # no compare-and-set: write whatever was planned
            current = self._space.docs.get(mut.session_id)
            mut.expect = 0 if current is None else current.head.version
        await super()._apply(mutations, atomic=atomic)


class DeleteLeavesEvents(MemoryStore):
    async def _apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        saved = {m.session_id: self._space.logs.get(m.session_id) for m in mutations if m.delete}
        await super()._apply(mutations, atomic=atomic)
        for sid, log in saved.items():
            if log is not None:
                self._space.logs[sid] = log


class IgnoresReset(MemoryStore):
    async def _apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        for mut in mutations:  # keep old events and checkpoints on re-create / overwrite
            mut.reset = False
        await super()._apply(mutations, atomic=atomic)


VARIANTS: dict[str, type[MemoryStore]] = {
    cls.__name__: cls
    for cls in (
        IgnoresExpectedVersion,
        VersionDoesNotIncreaseOnAppend,
        ExpiryOffByOneTick,
        IgnoresTagsAnyFilter,
        TiesNotOrderedById,
        ReturnsSharedState,
        AppliesBatchHalfway,
        EventsOutOfOrder,
        OffsetCursorSkipsRows,
        NamespaceLeaks,
        LosesUpdatesWithoutCas,
        DeleteLeavesEvents,
        IgnoresReset,
    )
}


def _suite_for(variant: type[MemoryStore]) -> type[StoreConformance]:
    class Suite(StoreConformance):
        cleanup_namespaces = False
        backend = MemoryBackend()
        state_machine_examples = 10
        state_machine_shrink = False

        def make_store(self, *, namespace: str, clock: Clock) -> MemoryStore:
            return variant(backend=self.backend, namespace=namespace, clock=clock)

    Suite.__name__ = Suite.__qualname__ = f"TestBroken{variant.__name__}"
    return Suite


for _name, _variant in VARIANTS.items():
    _cls = _suite_for(_variant)
    globals()[_cls.__name__] = _cls
