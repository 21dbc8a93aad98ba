"""Secondary indexes of one in-memory namespace: sets by value, sorted lists by time, and
composite indexes (one sorted list per value of an indexed field) built on first use."""

from __future__ import annotations

from collections.abc import Callable, Container, Hashable, Iterable, Iterator
from datetime import datetime
from typing import Any

from sortedcontainers import SortedList

from sessionstore import Session, SessionFilter
from sessionstore.clock import to_ms
from sessionstore.query import OrderKey, SortField


class Ordered:
    """A sorted index whose writes are buffered until the next ordered read.

    Inserts and removals are appended to two lists (a multiset of each); they are merged
    into the ``SortedList`` in one batch when a query needs the order: first every
    pending insert (``SortedList.update`` sorts them together), then every pending
    removal. So a burst of writes between two queries pays O(k log k) once instead of k
    ``SortedList`` inserts, and ``add`` is a bare ``list.append`` (a create adds four
    keys here). The ``SortedList`` may hold a key twice for a moment (removed, then
    added again before a flush); the removal list takes the right number of copies out.

    Removals also flush once they outnumber the sorted keys (and 1,024), so an update-heavy
    workload that never queries keeps the buffers bounded.
    """

    __slots__ = ("_pending", "_removed", "_sorted", "add")

    def __init__(self) -> None:
        self._sorted = SortedList()
        self._pending: list[Any] = []
        self._removed: list[Any] = []
        #: Insert a key that is not present.
        self.add: Callable[[Any], None] = self._pending.append

    def remove(self, key: Hashable) -> None:
        """Remove ``key`` (it must be present)."""
        self._removed.append(key)
        if len(self._removed) > 1024 and len(self._removed) > len(self._sorted):
            self.sorted()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._pending) - len(self._removed)

    def sorted(self) -> SortedList:
        """The up-to-date ``SortedList`` (pending writes merged in)."""
        if self._pending:
            self._sorted.update(self._pending)
            self._pending.clear()
        if self._removed:
            for key in self._removed:
                self._sorted.remove(key)
            self._removed.clear()
        return self._sorted


#: The fields a composite index is kept for: a session's values of each (a session with
#: no processor has none for ``processor`` and ``processor+status``).
_FIELD_VALUES: dict[str, Callable[[Session], tuple[str, ...]]] = {
    "processor": lambda s: () if s.processor_id is None else (s.processor_id,),
    "status": lambda s: (s.status.value,),
    "tag": lambda s: tuple(s.tags),
    "processor+status": lambda s: (
        () if s.processor_id is None else (f"{s.processor_id}\x00{s.status.value}",)
    ),
}
#: The sort fields a composite index orders by, and each one's key.
_SORT_KEYS: dict[str, Callable[[Session], tuple[int, str]]] = {
    "created_at": lambda s: (to_ms(s.created_at), s.id),
    "updated_at": lambda s: (to_ms(s.updated_at), s.id),
}


class Composite:
    """One ordered index per value of one field, in one sort order.

    For ``("processor", "updated_at")``: per processor, that processor's sessions as
    ``(updated ms, id)`` in order, so "the 100 newest of processor P" is one range read of
    P's list, whatever P's share of the store (the global list would be walked past
    every other processor's sessions; sorting P's whole set costs O(P log P)).
    """

    __slots__ = ("by_value", "sort_key", "values")

    def __init__(self, field_name: str, sort_by: str) -> None:
        self.values = _FIELD_VALUES[field_name]
        self.sort_key = _SORT_KEYS[sort_by]
        self.by_value: dict[str, Ordered] = {}

    def add(self, s: Session) -> None:
        """Index a session under each of its values."""
        key = self.sort_key(s)
        for value in self.values(s):
            ordered = self.by_value.get(value)
            if ordered is None:
                ordered = self.by_value[value] = Ordered()
            ordered.add(key)

    def remove(self, s: Session) -> None:
        """Forget a session (as it was indexed)."""
        key = self.sort_key(s)
        for value in self.values(s):
            self.by_value[value].remove(key)

    def replace(self, old: Session, new: Session) -> None:
        """Re-index a changed session, touching only the lists whose entry changed."""
        old_key, new_key = self.sort_key(old), self.sort_key(new)
        old_values, new_values = self.values(old), self.values(new)
        if old_key == new_key and old_values == new_values:
            return
        for value in old_values:
            if old_key != new_key or value not in new_values:
                self.by_value[value].remove(old_key)
        for value in new_values:
            if old_key != new_key or value not in old_values:
                ordered = self.by_value.get(value)
                if ordered is None:
                    ordered = self.by_value[value] = Ordered()
                ordered.add(new_key)


def _single(values: frozenset[str] | None) -> str | None:
    return next(iter(values)) if values is not None and len(values) == 1 else None


class Indexes:
    """Set indexes (processor, status, tag), ordered indexes (every sort field) and the
    composite indexes (:class:`Composite`) that queries have asked for so far."""

    def __init__(self) -> None:
        self.processor: dict[str, set[str]] = {}
        self.status: dict[str, set[str]] = {}
        self.tag: dict[str, set[str]] = {}
        self.created = Ordered()  # (ms, id)
        self.updated = Ordered()  # (ms, id)
        self.expires = Ordered()  # (ms, id), sessions with an expiry
        self.no_expiry = Ordered()  # id, sessions without one
        self.ids = Ordered()  # id
        #: (field, sort field) -> its composite index, built by the first query that can
        #: use it (:meth:`composite`) and kept by every write from then on.
        self.composites: dict[tuple[str, str], Composite] = {}

    @staticmethod
    def _add(index: dict[str, set[str]], key: str, sid: str) -> None:
        members = index.get(key)
        if members is None:  # not setdefault(key, set()): that builds a set every call
            members = index[key] = set()
        members.add(sid)

    @staticmethod
    def _discard(index: dict[str, set[str]], key: str, sid: str) -> None:
        members = index.get(key)
        if members is not None:
            members.discard(sid)
            if not members:
                del index[key]

    def add(self, s: Session) -> None:
        """Index a session (inlined: this runs on every create)."""
        sid = s.id
        if s.processor_id is not None:
            members = self.processor.get(s.processor_id)
            if members is None:
                members = self.processor[s.processor_id] = set()
            members.add(sid)
        status = s.status.value
        members = self.status.get(status)
        if members is None:
            members = self.status[status] = set()
        members.add(sid)
        tag_index = self.tag
        for tag in s.tags:
            members = tag_index.get(tag)
            if members is None:
                members = tag_index[tag] = set()
            members.add(sid)
        created = (to_ms(s.created_at), sid)
        self.created.add(created)
        # A new session's two keys are usually equal: share the tuple.
        self.updated.add(created if s.updated_at == s.created_at else (to_ms(s.updated_at), sid))
        if s.expires_at is None:
            self.no_expiry.add(sid)
        else:
            self.expires.add((to_ms(s.expires_at), sid))
        self.ids.add(sid)
        if self.composites:
            for composite in self.composites.values():
                composite.add(s)

    def remove(self, s: Session) -> None:
        """Forget a session (as it was indexed)."""
        if s.processor_id is not None:
            self._discard(self.processor, s.processor_id, s.id)
        self._discard(self.status, s.status.value, s.id)
        for tag in s.tags:
            self._discard(self.tag, tag, s.id)
        self.created.remove((to_ms(s.created_at), s.id))
        self.updated.remove((to_ms(s.updated_at), s.id))
        if s.expires_at is None:
            self.no_expiry.remove(s.id)
        else:
            self.expires.remove((to_ms(s.expires_at), s.id))
        self.ids.remove(s.id)
        if self.composites:
            for composite in self.composites.values():
                composite.remove(s)

    def replace(self, old: Session, new: Session) -> None:
        """Re-index a changed session, touching only what changed."""
        if old.processor_id != new.processor_id:
            if old.processor_id is not None:
                self._discard(self.processor, old.processor_id, old.id)
            if new.processor_id is not None:
                self._add(self.processor, new.processor_id, new.id)
        if old.status is not new.status:
            self._discard(self.status, old.status.value, old.id)
            self._add(self.status, new.status.value, new.id)
        if old.tags != new.tags:
            for tag in old.tags - new.tags:
                self._discard(self.tag, tag, old.id)
            for tag in new.tags - old.tags:
                self._add(self.tag, tag, new.id)
        if old.created_at != new.created_at:
            self.created.remove((to_ms(old.created_at), old.id))
            self.created.add((to_ms(new.created_at), new.id))
        if old.updated_at != new.updated_at:
            self.updated.remove((to_ms(old.updated_at), old.id))
            self.updated.add((to_ms(new.updated_at), new.id))
        if old.expires_at != new.expires_at:
            if old.expires_at is None:
                self.no_expiry.remove(old.id)
            else:
                self.expires.remove((to_ms(old.expires_at), old.id))
            if new.expires_at is None:
                self.no_expiry.add(new.id)
            else:
                self.expires.add((to_ms(new.expires_at), new.id))
        if self.composites:
            for composite in self.composites.values():
                composite.replace(old, new)

    # ------------------------------------------------------------------ planning

    def candidates(self, flt: SessionFilter, stored: Container[str]) -> set[str] | None:
        """Ids that can match the set-indexed conditions (``None``: no such condition).

        ``stored`` holds every stored id (for the ``ids`` condition).
        """
        sets: list[set[str]] = []
        if flt.ids is not None:
            sets.append({sid for sid in flt.ids if sid in stored})
        if flt.processor_id is not None:
            sets.append(set().union(*(self.processor.get(p, ()) for p in flt.processor_id)))
        if flt.status is not None:
            sets.append(set().union(*(self.status.get(s.value, ()) for s in flt.status)))
        if flt.tags_all is not None:
            sets.extend(self.tag.get(t, set()) for t in flt.tags_all)
        if flt.tags_any is not None:
            sets.append(set().union(*(self.tag.get(t, ()) for t in flt.tags_any)))
        if not sets:
            return None
        sets.sort(key=len)
        result = set(sets[0])
        for other in sets[1:]:
            result &= other
            if not result:
                break
        return result

    def composite_source(
        self, flt: SessionFilter, sort_by: SortField, heads: Callable[[], Iterable[Session]]
    ) -> tuple[Ordered, bool] | None:
        """The smallest composite list holding every session ``flt`` can match, in
        ``sort_by`` order, and whether it covers all of the filter's set conditions
        (processor, status, tags): then nothing but the filter's other conditions can
        skip a row of the walk. ``None`` when no composite index applies (sorting by id
        or expiry, an ``ids`` filter, no single-valued set condition).

        The composite is built from ``heads()`` (every stored session) the first time.
        """
        if sort_by not in _SORT_KEYS or flt.ids is not None:
            return None
        processor = _single(flt.processor_id)
        status = None if flt.status is None or len(flt.status) != 1 else next(iter(flt.status))
        tags = tuple(flt.tags_all or ())
        one_tag_any = _single(flt.tags_any)
        choices: list[tuple[int, str, str]] = []  # (size, field, value)
        if processor is not None and status is not None:
            size = len(self.processor.get(processor, ()))  # an upper bound: it is smaller
            choices.append((size, "processor+status", f"{processor}\x00{status.value}"))
        elif processor is not None:
            choices.append((len(self.processor.get(processor, ())), "processor", processor))
        elif status is not None:
            choices.append((len(self.status.get(status.value, ())), "status", status.value))
        for tag in (*tags, *((one_tag_any,) if one_tag_any is not None else ())):
            choices.append((len(self.tag.get(tag, ())), "tag", tag))
        if not choices:
            return None
        _, field_name, value = min(choices)
        composite = self.composites.get((field_name, sort_by))
        if composite is None:
            composite = self.composites[field_name, sort_by] = Composite(field_name, sort_by)
            for head in heads():
                composite.add(head)
        ordered = composite.by_value.get(value)
        if ordered is None:
            ordered = Ordered()  # no session has that value (yet): an empty walk
        set_conditions = (
            (flt.processor_id is not None)
            + (flt.status is not None)
            + len(tags)
            + (flt.tags_any is not None)
        )
        covered = set_conditions == (2 if field_name == "processor+status" else 1) and (
            flt.tags_any is None or (field_name == "tag" and not tags)
        )
        return ordered, covered

    def walk(
        self,
        sort_by: SortField,
        descending: bool,
        after: OrderKey | None,
        flt: SessionFilter,
        ordered: Ordered | None = None,
    ) -> Iterator[str]:
        """Ids in query order, starting after ``after``, bounded by the filter's range.

        ``ordered`` walks that composite list (of ``sort_by``) instead of the global one.
        """
        if sort_by == "id":
            lo = hi = None
            if after is not None:
                if descending:
                    hi = after[2]
                else:
                    lo = after[2]
            for sid in self.ids.sorted().irange(
                lo, hi, inclusive=(False, False), reverse=descending
            ):
                yield sid
            return
        if sort_by == "expires_at":
            if after is None or after[0] == 0:
                lo_key, hi_key = self._bounds(after, descending, None, flt.expires_before)
                for _, sid in self.expires.sorted().irange(
                    lo_key, hi_key, inclusive=(False, False), reverse=descending
                ):
                    yield sid
            if flt.expires_before is not None:
                return  # sessions without expiry never match expires_before
            lo_id = hi_id = None
            if after is not None and after[0] == 1:
                if descending:
                    hi_id = after[2]
                else:
                    lo_id = after[2]
            yield from self.no_expiry.sorted().irange(
                lo_id, hi_id, inclusive=(False, False), reverse=descending
            )
            return
        index = self.created if sort_by == "created_at" else self.updated
        if ordered is not None:
            index = ordered
        if sort_by == "created_at":
            low, high = flt.created_after, flt.created_before
        else:
            low, high = flt.updated_after, flt.updated_before
        lo_key, hi_key = self._bounds(after, descending, low, high)
        for _, sid in index.sorted().irange(
            lo_key, hi_key, inclusive=(False, False), reverse=descending
        ):
            yield sid

    @staticmethod
    def _bounds(
        after: OrderKey | None, descending: bool, low: datetime | None, high: datetime | None
    ) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
        # Exclusive bounds: (ms, "\U0010ffff") sorts after every id with that ms, (ms, "")
        # before every id. Rows equal to a bound never match the exclusive filters anyway.
        # to_ms floors, so a sub-millisecond upper bound must round up (rows at its floor
        # millisecond are before it).
        lo = None if low is None else (to_ms(low), "\U0010ffff")
        hi = None if high is None else (to_ms(high) + (high.microsecond % 1000 > 0), "")
        if after is not None and after[0] == 0:
            point = (int(after[1]), after[2])
            if descending:
                hi = point if hi is None else min(hi, point)
            else:
                lo = point if lo is None else max(lo, point)
        return lo, hi
