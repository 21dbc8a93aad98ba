"""Pending (not yet persisted) changes of a managed session, folded into one write.

Changes are folded as they are made: a key merged twice keeps the last value, a key
merged then removed is removed, a tag added then removed is removed. ``a.then(b)`` folds
two batches (used to put an in-flight batch back in front of newer changes when its
write failed). The fold becomes at most one ``UpdateOp`` and one ``AppendOp``, committed
together, so a flush is atomic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from ..codec import canonical_json
from ..model import JSONDict, Session, SessionUpdate, Status
from ._bookkeeping import MANAGER_KEY, Book

__all__ = ["TERMINAL", "Pending"]

_MISSING: Final = object()
#: Statuses after which a session takes no more work.
TERMINAL: Final = frozenset({Status.COMPLETED, Status.FAILED, Status.EXPIRED, Status.TIMEOUT})


def _same(a: dict[str, Any], b: dict[str, Any], key: str) -> bool:
    x, y = a.get(key, _MISSING), b.get(key, _MISSING)
    if x is _MISSING or y is _MISSING:
        return x is y
    return canonical_json(x) == canonical_json(y)


@dataclass(slots=True)
class Pending:
    """One folded batch of changes."""

    merge_data: JSONDict = field(default_factory=dict)
    remove_data: dict[str, None] = field(default_factory=dict)
    merge_meta: JSONDict = field(default_factory=dict)
    remove_meta: dict[str, None] = field(default_factory=dict)
    add_tags: set[str] = field(default_factory=set)
    remove_tags: set[str] = field(default_factory=set)
    status: Status | None = None
    book: JSONDict = field(default_factory=dict)
    iterations: int = 0
    events: list[tuple[str, JSONDict]] = field(default_factory=list)
    changes: int = 0

    # ------------------------------------------------------------------ recording

    def merge(self, data: JSONDict, remove: tuple[str, ...] = ()) -> None:
        """Record a shallow merge of ``data`` keys and removal of ``remove`` keys."""
        for key in remove:
            self.merge_data.pop(key, None)
            self.remove_data[key] = None
        for key, value in data.items():
            self.remove_data.pop(key, None)
            self.merge_data[key] = value
        self.changes += 1

    def merge_metadata(self, metadata: JSONDict, remove: tuple[str, ...] = ()) -> None:
        """The same for user metadata."""
        for key in remove:
            self.merge_meta.pop(key, None)
            self.remove_meta[key] = None
        for key, value in metadata.items():
            self.remove_meta.pop(key, None)
            self.merge_meta[key] = value
        self.changes += 1

    def tags(self, add: frozenset[str], remove: frozenset[str]) -> None:
        """Record tag changes (commutative with other writers' tag changes)."""
        self.remove_tags -= add
        self.add_tags |= add
        self.add_tags -= remove
        self.remove_tags |= remove
        self.changes += 1

    def set_status(self, status: Status) -> None:
        """Record a status change."""
        self.status = status
        self.changes += 1

    def set_book(self, **values: Any) -> None:
        """Record bookkeeping field changes (``None`` removes a field)."""
        self.book.update(values)
        self.changes += 1

    def count_iteration(self) -> None:
        """Record one more iteration (a delta: merges with other writers' iterations)."""
        self.iterations += 1
        self.changes += 1

    def event(self, etype: str, data: JSONDict) -> None:
        """Record an event to append."""
        self.events.append((etype, data))
        self.changes += 1

    # ------------------------------------------------------------------ folding

    @property
    def empty(self) -> bool:
        """True when nothing is pending."""
        return self.changes == 0

    def then(self, later: Pending) -> Pending:
        """This batch followed by ``later``, folded into one."""
        out = Pending(
            dict(self.merge_data),
            dict(self.remove_data),
            dict(self.merge_meta),
            dict(self.remove_meta),
            set(self.add_tags),
            set(self.remove_tags),
            self.status,
            dict(self.book),
            self.iterations,
            list(self.events),
            self.changes,
        )
        out.merge(later.merge_data, tuple(later.remove_data))
        out.merge_metadata(later.merge_meta, tuple(later.remove_meta))
        out.tags(frozenset(later.add_tags), frozenset(later.remove_tags))
        out.status = later.status or self.status
        out.book.update(later.book)
        out.iterations += later.iterations
        out.events.extend(later.events)
        out.changes = self.changes + later.changes
        return out

    def touches_session(self, base: Session) -> bool:
        """True when the fold changes the session document (not only its event log)."""
        return bool(
            self.merge_data
            or self.remove_data
            or self.merge_meta
            or self.remove_meta
            or self.add_tags
            or self.remove_tags
            or self.status is not None
            or self.book
            or self.iterations
            or not Book.of(base).managed
        )

    def to_update(self, base: Session, ttl: timedelta | None = None) -> SessionUpdate | None:
        """The document part of the write against ``base`` (``None``: events only)."""
        if not self.touches_session(base) and ttl is None:
            return None
        merge_meta = dict(self.merge_meta)
        book = Book.of(base)
        if self.book or self.iterations or not book.managed:
            merge_meta[MANAGER_KEY] = book.with_changes(self.book, self.iterations)
        return SessionUpdate(
            merge_data=self.merge_data or None,
            remove_data_keys=tuple(self.remove_data),
            merge_metadata=merge_meta or None,
            remove_metadata_keys=tuple(self.remove_meta),
            status=self.status,
            add_tags=frozenset(self.add_tags),
            remove_tags=frozenset(self.remove_tags),
            ttl=ttl,
        )

    # ------------------------------------------------------------------ conflicts

    def conflicts(self, base: Session, fresh: Session) -> tuple[str, ...]:
        """What this batch changes that another writer changed between ``base`` and
        ``fresh`` (empty: the batch can be re-applied on ``fresh``)."""
        found: list[str] = []
        found += [
            f"data.{k}"
            for k in (*self.merge_data, *self.remove_data)
            if not _same(base.data, fresh.data, k)
        ]
        found += [
            f"metadata.{k}"
            for k in (*self.merge_meta, *self.remove_meta)
            if not _same(base.metadata, fresh.metadata, k)
        ]
        old, new = Book.of(base).raw, Book.of(fresh).raw
        found += [f"{MANAGER_KEY}.{k}" for k in self.book if not _same(old, new, k)]
        if fresh.status != base.status and (self.status is not None or fresh.status in TERMINAL):
            found.append("status")
        return tuple(found)

    # ------------------------------------------------------------------ views

    def apply(
        self, data: JSONDict, metadata: JSONDict, tags: frozenset[str], status: Status
    ) -> tuple[JSONDict, JSONDict, frozenset[str], Status]:
        """The local view: ``data``/``metadata`` are changed in place and returned."""
        for key in self.remove_data:
            data.pop(key, None)
        data.update(self.merge_data)
        for key in self.remove_meta:
            metadata.pop(key, None)
        metadata.update(self.merge_meta)
        tags = (tags | self.add_tags) - self.remove_tags
        return data, metadata, tags, self.status or status
