"""Query types and the reference evaluator: the exact semantics of filters, order and paging.

Every driver must return what :func:`evaluate` returns for the same sessions; the memory
driver uses these functions directly and the conformance suite checks other drivers
against them.

Semantics (also in ``docs/guide.md``):

* ``*_after`` / ``*_before`` bounds are exclusive; ``expires_before`` matches only sessions
  that have an expiry.
* ``metadata={"a.b": v}`` matches when ``metadata["a"]["b"]`` exists and has the same
  canonical JSON encoding as ``v`` (so ``1`` ≠ ``1.0`` ≠ ``True``).
* Order is the keyset ``(sort_key, id)``, ascending or descending; a missing
  ``expires_at`` sorts last in either order.
* A cursor continues strictly after the last row of the page that produced it, so rows
  inserted or deleted elsewhere never make a page skip or repeat a row. It is bound to its
  query (filter, sort, order and search text): using it with another raises
  :class:`InvalidCursorError`, as does a cursor that was tampered with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias

import orjson

from .clock import to_ms
from .codec import canonical_json, encode_json
from .errors import InvalidArgumentError, InvalidCursorError
from .model import Session, Status
from .validation import has_lone_surrogate, validate_session_id, validate_status, validate_tags

__all__ = [
    "MAX_LIMIT",
    "MAX_OFFSET",
    "OrderKey",
    "Page",
    "QueryOptions",
    "SessionFilter",
    "SortField",
    "decode_cursor",
    "encode_cursor",
    "evaluate",
    "is_after",
    "matches",
    "order_key",
    "query_fingerprint",
    "search_matches",
    "sort_sessions",
]

SortField: TypeAlias = Literal["created_at", "updated_at", "expires_at", "id"]
SORT_FIELDS: Final = ("created_at", "updated_at", "expires_at", "id")
MAX_LIMIT: Final = 10_000
MAX_OFFSET: Final = 1_000_000
MAX_SEARCH_LENGTH: Final = 1_000

#: ``(missing, value, id)``: ``missing`` is 1 for a session without ``expires_at`` (sorted
#: by ``expires_at``), else 0; ``value`` is epoch milliseconds (or the id for ``id``).
OrderKey: TypeAlias = tuple[int, int | str, str]


def _str_set(value: str | Iterable[str] | None, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    items = frozenset(value)
    for item in items:
        if not isinstance(item, str) or "\x00" in item or has_lone_surrogate(item):
            raise InvalidArgumentError(f"{what} must hold str values, got {item!r}")
    return items


def _aware(value: datetime | None, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidArgumentError(f"{what} must be a timezone-aware datetime")
    return value


@dataclass(frozen=True, init=False)
class SessionFilter:
    """Which sessions a query returns. Every given field must match (AND).

    ``processor_id`` and ``status`` accept one value or several (any of them matches).
    ``tags_all`` needs every tag, ``tags_any`` at least one. ``metadata`` maps dotted paths
    to values compared by canonical JSON equality. Expired sessions (by the store's clock)
    are left out unless ``include_expired=True``. An empty collection is a condition, not a
    missing one: empty ``ids``, ``processor_id``, ``status`` or ``tags_any`` match no
    session, an empty ``tags_all`` matches every session.
    """

    ids: frozenset[str] | None
    processor_id: frozenset[str] | None
    status: frozenset[Status] | None
    tags_all: frozenset[str] | None
    tags_any: frozenset[str] | None
    metadata: Mapping[str, Any] | None
    created_after: datetime | None
    created_before: datetime | None
    updated_after: datetime | None
    updated_before: datetime | None
    expires_before: datetime | None
    has_events: bool | None
    include_expired: bool
    _metadata_keys: tuple[tuple[tuple[str, ...], bytes], ...] = field(repr=False, compare=False)

    @property
    def metadata_conditions(self) -> tuple[tuple[tuple[str, ...], bytes], ...]:
        """The metadata equality conditions, parsed once: for each, the path's keys (a
        dotted key ``"a.b"`` gives ``("a", "b")``) and the canonical JSON of the expected
        value (``sessionstore.codec.canonical_json``), which a stored value must equal.
        For drivers that translate a filter into their own query language."""
        return self._metadata_keys

    def __init__(
        self,
        *,
        ids: Iterable[str] | None = None,
        processor_id: str | Iterable[str] | None = None,
        status: Status | str | Iterable[Status | str] | None = None,
        tags_all: Iterable[str] | None = None,
        tags_any: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        expires_before: datetime | None = None,
        has_events: bool | None = None,
        include_expired: bool = False,
    ) -> None:
        put = object.__setattr__
        if ids is not None:
            if isinstance(ids, str):
                raise InvalidArgumentError("ids must be a collection of ids, not one string")
            ids = frozenset(validate_session_id(i) for i in ids)
        put(self, "ids", ids)
        put(self, "processor_id", _str_set(processor_id, "processor_id"))
        statuses: frozenset[Status] | None = None
        if status is not None:
            if isinstance(status, str):
                statuses = frozenset((validate_status(status),))
            else:
                statuses = frozenset(validate_status(s) for s in status)
        put(self, "status", statuses)
        put(self, "tags_all", None if tags_all is None else validate_tags(tags_all))
        put(self, "tags_any", None if tags_any is None else validate_tags(tags_any))
        keys: list[tuple[tuple[str, ...], bytes]] = []
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise InvalidArgumentError("metadata filter must be a mapping of path -> value")
            for path, value in metadata.items():
                parts = tuple(path.split(".")) if isinstance(path, str) else ()
                if not parts or not all(parts) or has_lone_surrogate(path):
                    raise InvalidArgumentError(f"invalid metadata path {path!r}")
                keys.append((parts, canonical_json(orjson.loads(encode_json(value, path)))))
            metadata = dict(metadata)
        put(self, "metadata", metadata)
        put(self, "_metadata_keys", tuple(keys))
        put(self, "created_after", _aware(created_after, "created_after"))
        put(self, "created_before", _aware(created_before, "created_before"))
        put(self, "updated_after", _aware(updated_after, "updated_after"))
        put(self, "updated_before", _aware(updated_before, "updated_before"))
        put(self, "expires_before", _aware(expires_before, "expires_before"))
        if has_events is not None and not isinstance(has_events, bool):
            raise InvalidArgumentError("has_events must be a bool or None")
        put(self, "has_events", has_events)
        if not isinstance(include_expired, bool):
            raise InvalidArgumentError("include_expired must be a bool")
        put(self, "include_expired", include_expired)

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready, canonical description of the filter (used in backups and cursors)."""
        out: dict[str, Any] = {}
        for name in ("ids", "processor_id", "status", "tags_all", "tags_any"):
            value = getattr(self, name)
            if value is not None:
                out[name] = sorted(str(v) for v in value)
        if self.metadata is not None:
            out["metadata"] = dict(self.metadata)
        for name in (
            "created_after",
            "created_before",
            "updated_after",
            "updated_before",
            "expires_before",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = to_ms(value)
        if self.has_events is not None:
            out["has_events"] = self.has_events
        if self.include_expired:
            out["include_expired"] = True
        return out

    def fingerprint(self) -> str:
        """A short stable digest of the filter."""
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()[:16]


@dataclass(frozen=True)
class QueryOptions:
    """Order and paging of a query.

    ``limit`` is 1..10,000 (default 100). ``offset`` and ``cursor`` are mutually exclusive;
    prefer the cursor: it is O(page) on indexed drivers and stable under concurrent writes.
    """

    sort_by: SortField = "created_at"
    order: Literal["asc", "desc"] = "asc"
    limit: int = 100
    offset: int = 0
    cursor: str | None = None

    def __post_init__(self) -> None:
        if self.sort_by not in SORT_FIELDS:
            raise InvalidArgumentError(
                f"unknown sort_by {self.sort_by!r} (allowed: {', '.join(SORT_FIELDS)})"
            )
        if self.order not in ("asc", "desc"):
            raise InvalidArgumentError(f"order must be 'asc' or 'desc', got {self.order!r}")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise InvalidArgumentError(f"limit must be an int, got {self.limit!r}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidArgumentError(f"limit must be in [1, {MAX_LIMIT}], got {self.limit}")
        if isinstance(self.offset, bool) or not isinstance(self.offset, int):
            raise InvalidArgumentError(f"offset must be an int, got {self.offset!r}")
        if not 0 <= self.offset <= MAX_OFFSET:
            raise InvalidArgumentError(f"offset must be in [0, {MAX_OFFSET}], got {self.offset}")
        if self.cursor is not None:
            if not isinstance(self.cursor, str):
                raise InvalidCursorError("cursor must be a str")
            if self.offset:
                raise InvalidArgumentError("cursor and offset are mutually exclusive")

    @property
    def descending(self) -> bool:
        """True for ``order="desc"``."""
        return self.order == "desc"


@dataclass(frozen=True)
class Page:
    """One page of sessions; ``next_cursor`` is ``None`` on the last page."""

    items: list[Session]
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[Session]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ids(self) -> list[str]:
        """The ids of the page's sessions, in order."""
        return [s.id for s in self.items]


# --------------------------------------------------------------------------- evaluation


def _resolve(metadata: Mapping[str, Any], parts: tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = metadata
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def matches(session: Session, flt: SessionFilter, now: datetime) -> bool:
    """True when ``session`` passes every condition of ``flt`` at time ``now``."""
    if not flt.include_expired and session.expires_at is not None and session.expires_at <= now:
        return False
    if flt.ids is not None and session.id not in flt.ids:
        return False
    if flt.processor_id is not None and session.processor_id not in flt.processor_id:
        return False
    if flt.status is not None and session.status not in flt.status:
        return False
    if flt.tags_all is not None and not flt.tags_all <= session.tags:
        return False
    if flt.tags_any is not None and flt.tags_any.isdisjoint(session.tags):
        return False
    if flt.created_after is not None and not session.created_at > flt.created_after:
        return False
    if flt.created_before is not None and not session.created_at < flt.created_before:
        return False
    if flt.updated_after is not None and not session.updated_at > flt.updated_after:
        return False
    if flt.updated_before is not None and not session.updated_at < flt.updated_before:
        return False
    if flt.expires_before is not None and (
        session.expires_at is None or not session.expires_at < flt.expires_before
    ):
        return False
    if flt.has_events is not None and (session.event_count > 0) != flt.has_events:
        return False
    for parts, expected in flt._metadata_keys:
        found, value = _resolve(session.metadata, parts)
        if not found or canonical_json(value) != expected:
            return False
    return True


def order_key(session: Session, sort_by: SortField) -> OrderKey:
    """The keyset position of ``session`` for ``sort_by``."""
    if sort_by == "id":
        return (0, session.id, session.id)
    if sort_by == "created_at":
        return (0, to_ms(session.created_at), session.id)
    if sort_by == "updated_at":
        return (0, to_ms(session.updated_at), session.id)
    if session.expires_at is None:
        return (1, 0, session.id)
    return (0, to_ms(session.expires_at), session.id)


def is_after(key: OrderKey, cursor: OrderKey, descending: bool) -> bool:
    """True when ``key`` comes strictly after ``cursor`` in the query's order."""
    if key[0] != cursor[0]:
        return key[0] > cursor[0]  # rows without the sort value come last in both orders
    if descending:
        return (key[1], key[2]) < (cursor[1], cursor[2])
    return (key[1], key[2]) > (cursor[1], cursor[2])


def sort_sessions(
    sessions: Iterable[Session], sort_by: SortField, descending: bool
) -> list[Session]:
    """Sort by ``(sort_key, id)`` in the given direction, missing values last."""
    keyed = [(order_key(s, sort_by), s) for s in sessions]
    present = [item for item in keyed if item[0][0] == 0]
    missing = [item for item in keyed if item[0][0] == 1]
    present.sort(key=lambda item: (item[0][1], item[0][2]), reverse=descending)
    missing.sort(key=lambda item: item[0][2], reverse=descending)
    return [s for _, s in present] + [s for _, s in missing]


def search_matches(session: Session, needle: str) -> bool:
    """Case-insensitive substring match over id, processor_id, tags and string values.

    ``needle`` must already be lower-cased. Keys are not searched, only values.
    """
    if needle in session.id.lower():
        return True
    if session.processor_id is not None and needle in session.processor_id.lower():
        return True
    if any(needle in tag.lower() for tag in session.tags):
        return True
    return _search_value(session.metadata, needle) or _search_value(session.data, needle)


def _search_value(value: Any, needle: str) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if needle in item.lower():
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def normalize_search_text(text: object) -> str:
    """Validate search text (plain text, 1..1000 chars) and lower-case it."""
    if not isinstance(text, str) or not text.strip() or has_lone_surrogate(text):
        raise InvalidArgumentError("search text must be a non-empty str (no lone surrogate)")
    if len(text) > MAX_SEARCH_LENGTH:
        raise InvalidArgumentError(f"search text is longer than {MAX_SEARCH_LENGTH} characters")
    return text.lower()


# --------------------------------------------------------------------------- cursors

_CURSOR_KEY: Final = b"sessionstore-cursor-v1"


def query_fingerprint(flt: SessionFilter, options: QueryOptions, text: str | None = None) -> str:
    """What binds a cursor to its query: filter, sort field, order and search text."""
    raw = canonical_json([flt.to_dict(), options.sort_by, options.order, text])
    return hashlib.sha256(raw).hexdigest()[:16]


def encode_cursor(fingerprint: str, key: OrderKey) -> str:
    """An opaque, integrity-checked cursor pointing just after ``key``."""
    payload = orjson.dumps([1, fingerprint, key[0], key[1], key[2]])
    mac = hmac.new(_CURSOR_KEY, payload, "sha256").digest()[:12]
    return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")


def decode_cursor(cursor: str, fingerprint: str) -> OrderKey:
    """Check and unpack a cursor made by :func:`encode_cursor` for the same query."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, TypeError):
        raise InvalidCursorError("malformed cursor") from None
    payload, mac = raw[:-12], raw[-12:]
    if len(raw) <= 12 or not hmac.compare_digest(
        hmac.new(_CURSOR_KEY, payload, "sha256").digest()[:12], mac
    ):
        raise InvalidCursorError("cursor was tampered with or is malformed")
    try:
        version, fp, missing, value, sid = orjson.loads(payload)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        raise InvalidCursorError("malformed cursor") from None
    if version != 1 or not isinstance(sid, str) or missing not in (0, 1):
        raise InvalidCursorError("malformed cursor")
    if fp != fingerprint:
        raise InvalidCursorError("cursor belongs to a different query (filter, sort or order)")
    if not isinstance(value, int | str) or isinstance(value, bool):
        raise InvalidCursorError("malformed cursor")
    return (missing, value, sid)


def evaluate(
    sessions: Iterable[Session],
    flt: SessionFilter | None,
    options: QueryOptions | None,
    now: datetime,
    *,
    search: str | None = None,
) -> Page:
    """The reference implementation of ``list_sessions`` / ``search_sessions``.

    ``search`` is raw user text (validated and lower-cased here).
    """
    flt = flt or SessionFilter()
    options = options or QueryOptions()
    needle = normalize_search_text(search) if search is not None else None
    selected = [
        s
        for s in sessions
        if matches(s, flt, now) and (needle is None or search_matches(s, needle))
    ]
    ordered = sort_sessions(selected, options.sort_by, options.descending)
    return paginate(ordered, flt, options, search=search)


def paginate(
    ordered: Sequence[Session],
    flt: SessionFilter,
    options: QueryOptions,
    *,
    search: str | None = None,
) -> Page:
    """Apply cursor/offset and limit to already filtered and ordered sessions."""
    fingerprint = query_fingerprint(flt, options, search)
    start = options.offset
    if options.cursor is not None:
        after = decode_cursor(options.cursor, fingerprint)
        start = len(ordered)
        for index, session in enumerate(ordered):
            if is_after(order_key(session, options.sort_by), after, options.descending):
                start = index
                break
    window = list(ordered[start : start + options.limit + 1])
    items = window[: options.limit]
    next_cursor = None
    if len(window) > options.limit:
        next_cursor = encode_cursor(fingerprint, order_key(items[-1], options.sort_by))
    return Page(items=items, next_cursor=next_cursor)


def status_values(statuses: Collection[Status]) -> list[str]:
    """Sorted string values of a status set (for drivers building index keys)."""
    return sorted(s.value for s in statuses)
