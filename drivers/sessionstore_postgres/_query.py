"""SessionFilter / QueryOptions / keyset cursors translated to one indexed SQL query.

The SQL selects a superset of the reference evaluator's result only where PostgreSQL
cannot decide exactly (metadata values are compared with ``jsonb`` containment, where
``1`` equals ``1.0`` and an array contains its sub-arrays; search text is matched by the
reference matcher): those rows are checked again in Python with
``sessionstore.query.matches`` / ``search_matches``, so results always equal the
reference evaluator's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from sessionstore import SessionFilter
from sessionstore.clock import to_ms
from sessionstore.codec import canonical_json
from sessionstore.query import OrderKey, status_values

__all__ = [
    "METADATA_PRESENT",
    "TAGS_PRESENT",
    "Where",
    "bound_after",
    "bound_before",
    "build_where",
    "expiry_parts",
    "order_sql",
    "seek_sql",
]

#: The predicates of the partial GIN indexes (schema version 5): sessions without tags or
#: metadata are not in them, and a tag or metadata filter that needs some says so, which
#: lets the planner use the index (it proves the index's predicate from the query's).
TAGS_PRESENT = "tags <> '{}'"
METADATA_PRESENT = "metadata_jsonb <> '{}'"

_SORT_COLUMN = {"created_at": "created_at", "updated_at": "updated_at"}


@dataclass
class Where:
    """A WHERE clause with its parameters (``$1`` is always the namespace)."""

    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    exact: bool = True  # False: rows must be re-checked with the reference matcher

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def add(self, clause: str) -> None:
        self.clauses.append(clause)

    def sql(self) -> str:
        return " AND ".join(self.clauses) if self.clauses else "true"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(value: datetime) -> int:
    # from the UTC epoch: the epoch in the value's own zone (``tzinfo=value.tzinfo``)
    # read a bound given with another offset as its wall-clock time in UTC
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def bound_after(value: datetime) -> int:
    """``stored_ms > bound_after(v)`` exactly when ``from_ms(stored_ms) > v``."""
    return _us(value) // 1000


def bound_before(value: datetime) -> int:
    """``stored_ms < bound_before(v)`` exactly when ``from_ms(stored_ms) < v``."""
    return -(-_us(value) // 1000)


def _metadata_doc(parts: tuple[str, ...], value: Any) -> str:
    node: Any = value
    for part in reversed(parts):
        node = {part: node}
    text = orjson.dumps(node).decode()
    return text.replace("\\u0000", "\\ufffd")  # as the stored jsonb copy (see _schema)


def build_where(namespace: str, flt: SessionFilter, now: datetime) -> Where:
    """The SQL conditions of ``flt`` over the sessions table."""
    w = Where()
    w.add(f"ns = {w.param(namespace)}")
    if not flt.include_expired:
        w.add(f"(expires_at IS NULL OR expires_at > {w.param(to_ms(now))})")
    if flt.ids is not None:
        w.add(f"id = ANY({w.param(sorted(flt.ids))}::text[])")
    if flt.processor_id is not None:
        values = sorted(flt.processor_id)
        if len(values) == 1:  # an equality keeps the (processor, time) index ordered
            w.add(f"processor_id = {w.param(values[0])}")
        else:
            w.add(f"processor_id = ANY({w.param(values)}::text[])")
    if flt.status is not None:
        statuses = status_values(flt.status)
        if len(statuses) == 1:
            w.add(f"status = {w.param(statuses[0])}")
        else:
            w.add(f"status = ANY({w.param(statuses)}::text[])")
    if flt.tags_all is not None:
        w.add(f"tags @> {w.param(sorted(flt.tags_all))}::text[]")
    if flt.tags_any is not None:
        w.add(f"tags && {w.param(sorted(flt.tags_any))}::text[]")
    if flt.tags_all or flt.tags_any is not None:  # both need a tag (&& of none: no row)
        w.add(TAGS_PRESENT)
    for name, column in (("created", "created_at"), ("updated", "updated_at")):
        after = getattr(flt, f"{name}_after")
        before = getattr(flt, f"{name}_before")
        if after is not None:
            w.add(f"{column} > {w.param(bound_after(after))}")
        if before is not None:
            w.add(f"{column} < {w.param(bound_before(before))}")
    if flt.expires_before is not None:
        w.add(f"expires_at < {w.param(bound_before(flt.expires_before))}")
    if flt.has_events is not None:
        w.add("event_count > 0" if flt.has_events else "event_count = 0")
    if flt.metadata:
        w.add(METADATA_PRESENT)  # every clause below asks for a key
        for path, value in flt.metadata.items():
            parts = tuple(path.split("."))
            canonical = orjson.loads(canonical_json(orjson.loads(orjson.dumps(value))))
            w.add(f"metadata_jsonb @> {w.param(_metadata_doc(parts, canonical))}::jsonb")
        w.exact = False
    return w


def order_sql(sort_by: str, descending: bool) -> str:
    """ORDER BY of the keyset ``(sort key, id)`` (``expires_at``: :func:`expiry_parts`)."""
    direction = "DESC" if descending else "ASC"
    if sort_by == "id":
        return f"id {direction}"
    return f"{_SORT_COLUMN[sort_by]} {direction}, id {direction}"


def seek_sql(w: Where, sort_by: str, descending: bool, after: OrderKey) -> None:
    """Add the keyset condition "strictly after ``after``" to ``w`` (``expires_at``:
    :func:`expiry_parts`)."""
    _, value, sid = after
    op = "<" if descending else ">"
    if sort_by == "id":
        w.add(f"id {op} {w.param(sid)}")
        return
    assert isinstance(value, int)
    column = _SORT_COLUMN[sort_by]
    w.add(f"({column}, id) {op} ({w.param(value)}::bigint, {w.param(sid)}::text)")


def expiry_parts(base: Where, descending: bool, after: OrderKey | None) -> list[tuple[Where, str]]:
    """The listing sorted by ``expires_at`` as its two parts in the listing's order, each
    a WHERE and an ORDER BY: the sessions with an expiry by ``(expires_at, id)``, read
    through the partial index of schema version 6, then those without one (sorted last
    in both directions) by ``id``, read through the primary key. A position in the
    second part leaves out the first."""
    direction = "DESC" if descending else "ASC"
    op = "<" if descending else ">"
    parts = []
    if after is None or not after[0]:
        w = Where(list(base.clauses), list(base.params))
        w.add("expires_at IS NOT NULL")
        if after is not None:
            w.add(f"(expires_at, id) {op} ({w.param(after[1])}::bigint, {w.param(after[2])}::text)")
        parts.append((w, f"expires_at {direction}, id {direction}"))
    w = Where(list(base.clauses), list(base.params))
    w.add("expires_at IS NULL")
    if after is not None and after[0]:
        w.add(f"id {op} {w.param(after[2])}")
    parts.append((w, f"id {direction}"))
    return parts
