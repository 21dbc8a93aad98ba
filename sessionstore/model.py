"""The data model: sessions, events, checkpoints and the inputs that create or change them.

All values are immutable: a write returns a new :class:`Session`. The ``data`` and
``metadata`` dicts of a returned session are the caller's own copies; mutating them never
changes the store.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, TypeAlias, TypedDict, TypeVar

__all__ = [
    "TTL",
    "UNSET",
    "AppendOp",
    "AppendResult",
    "Checkpoint",
    "CreateOp",
    "DeleteEventsOp",
    "DeleteOp",
    "Event",
    "EventInput",
    "JSONDict",
    "NewSession",
    "NewSessionFields",
    "Op",
    "PopOp",
    "PoppedEvents",
    "RawEvent",
    "Session",
    "SessionChanges",
    "SessionRecord",
    "SessionUpdate",
    "Status",
    "TrimOp",
    "TruncateOp",
    "UpdateOp",
]

JSONDict: TypeAlias = dict[str, Any]
T = TypeVar("T")
TTL: TypeAlias = int | float | timedelta


class Status(enum.StrEnum):
    """Lifecycle status of a session (indexed)."""

    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    TIMEOUT = "timeout"


class _Unset(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


#: Marker for "leave this field unchanged" where ``None`` is a meaningful value
#: (e.g. ``expires_at=None`` clears the expiry, ``expires_at=UNSET`` keeps it).
UNSET: Final = _Unset.UNSET
Unset: TypeAlias = Literal[_Unset.UNSET]


@dataclass(frozen=True, slots=True)
class Session:
    """One stored session.

    ``version`` starts at 1 and grows by one on every write to the session (data, metadata,
    status, tags, expiry, events). ``event_count`` is the number of events currently kept;
    ``last_seq`` is the sequence number of the newest event ever appended. Sequence numbers
    are never reused and ``last_seq`` never goes down; after a trim, pop, truncate or
    delete of events the kept numbering may have gaps (anywhere), so nothing may assume
    ``first seq == last_seq - event_count + 1``.
    """

    id: str
    processor_id: str | None
    status: Status
    data: JSONDict
    metadata: JSONDict
    tags: frozenset[str]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    version: int
    event_count: int = 0
    last_seq: int = 0
    group: str | None = None

    def is_expired(self, now: datetime) -> bool:
        """True when the session's expiry is at or before ``now``."""
        return self.expires_at is not None and self.expires_at <= now

    @property
    def has_events(self) -> bool:
        """True when the session's event log is not empty."""
        return self.event_count > 0


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a session's event log (an interaction, a tool call, a status change).

    ``key`` is the caller-chosen idempotency key the event was appended with (unique among
    the session's kept events), ``None`` when it had none.
    """

    seq: int
    type: str
    at: datetime
    data: JSONDict
    key: str | None = None


@dataclass(frozen=True, slots=True)
class RawEvent:
    """An event as :meth:`~sessionstore.base.BaseSessionStore.get_raw_events` reads it:
    ``data`` left as the JSON the store keeps it in (``data_json``: the UTF-8 bytes of one
    JSON object, compact or not, its members in any order), for a caller that hands it on
    or parses it itself (``model_validate_json``, an HTTP response) and would otherwise
    pay for a decode and an encode of every event. ``orjson.loads(data_json)`` equals the
    :class:`Event`'s ``data``; the other fields are the :class:`Event`'s.
    """

    seq: int
    type: str
    at: datetime
    data_json: bytes
    key: str | None = None


@dataclass(frozen=True, slots=True)
class EventInput:
    """An event to append. Plain mappings ``{"type", "data", "key", "at"}`` work as well.

    * ``key`` - an idempotency key, unique within the session: an event whose key is
      already stored with the same ``type`` and ``data`` is not written again; the same
      key with other content raises :class:`~sessionstore.EventKeyConflictError`.
      A non-empty str of at most 256 characters, without control characters.
    * ``at`` - the event's time, chosen by the caller (a timezone-aware datetime, stored
      in UTC at millisecond precision); ``None``: the store's clock at the write.
    """

    type: str
    data: JSONDict = field(default_factory=dict)
    key: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PoppedEvents:
    """What ``pop_events`` returns: the removed ``events`` (ascending seq) and the new
    ``session`` (unchanged, same version, when there was nothing to pop)."""

    events: list[Event]
    session: Session


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What ``append_events_detailed`` returns: the new ``session``, and for each input
    event (in order) the stored event (``events``) and whether this call wrote it
    (``new``; ``False``: its key was already stored with the same content)."""

    session: Session
    events: list[Event]
    new: list[bool]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A named snapshot of a session, verified by a SHA-256 ``digest`` when loaded."""

    id: str
    session_id: str
    label: str | None
    created_at: datetime
    version: int
    status: Status
    data: JSONDict
    metadata: JSONDict
    tags: frozenset[str]
    event_count: int
    last_seq: int
    digest: str


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A whole session as moved by ``scan``/``put_records``: session, events, checkpoints."""

    session: Session
    events: Sequence[Event] = ()
    checkpoints: Sequence[Checkpoint] = ()


class NewSessionFields(TypedDict, total=False):
    """Keyword arguments of ``create_session`` (see :class:`NewSession`)."""

    processor_id: str | None
    data: Mapping[str, Any] | None
    metadata: Mapping[str, Any] | None
    tags: Iterable[str]
    status: Status | str
    ttl: TTL | None
    expires_at: datetime | None
    id: str | None
    group: str | None


class SessionChanges(TypedDict, total=False):
    """Keyword arguments of ``update_session`` (see :class:`SessionUpdate`)."""

    data: Mapping[str, Any] | None
    merge_data: Mapping[str, Any] | None
    remove_data_keys: Iterable[str]
    metadata: Mapping[str, Any] | None
    merge_metadata: Mapping[str, Any] | None
    remove_metadata_keys: Iterable[str]
    status: Status | str | None
    processor_id: str | Unset | None
    add_tags: Iterable[str]
    remove_tags: Iterable[str]
    tags: Iterable[str] | None
    expires_at: datetime | Unset | None
    ttl: TTL | None


@dataclass(frozen=True, slots=True)
class NewSession:
    """What :meth:`~sessionstore.base.BaseSessionStore.create_session` takes, as a value
    (used by batched ``commit``)."""

    processor_id: str | None = None
    data: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    tags: Iterable[str] = ()
    status: Status | str = Status.ACTIVE
    ttl: TTL | None = None
    expires_at: datetime | None = None
    id: str | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """A partial change to a session, as a value: what
    :meth:`~sessionstore.base.BaseSessionStore.update_session` takes.

    ``data``/``metadata`` replace wholesale; ``merge_data``/``merge_metadata`` shallow-merge
    top-level keys (a key mapped to ``None`` is stored as ``None``, use ``remove_data_keys``
    to delete keys). ``expires_at=None`` clears the expiry; ``ttl`` sets it to now + ttl.
    """

    data: Mapping[str, Any] | None = None
    merge_data: Mapping[str, Any] | None = None
    remove_data_keys: Iterable[str] = ()
    metadata: Mapping[str, Any] | None = None
    merge_metadata: Mapping[str, Any] | None = None
    remove_metadata_keys: Iterable[str] = ()
    status: Status | str | None = None
    processor_id: str | Unset | None = UNSET
    add_tags: Iterable[str] = ()
    remove_tags: Iterable[str] = ()
    tags: Iterable[str] | None = None
    expires_at: datetime | Unset | None = UNSET
    ttl: TTL | None = None


@dataclass(frozen=True, slots=True)
class CreateOp:
    """Create a session inside a batch. ``new.id`` is filled in when staged."""

    new: NewSession


@dataclass(frozen=True, slots=True)
class UpdateOp:
    """Update a session inside a batch."""

    session_id: str
    update: SessionUpdate
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class DeleteOp:
    """Delete a session inside a batch (``missing_ok`` makes a missing session a no-op)."""

    session_id: str
    expected_version: int | None = None
    missing_ok: bool = False


@dataclass(frozen=True, slots=True)
class AppendOp:
    """Append events to a session inside a batch.

    ``create`` (``True`` or a :class:`NewSession` whose ``id`` is ``None`` or the
    session's id) creates a missing session first, in the same atomic step; ``ttl`` /
    ``expires_at`` set the session's expiry in the same write (``expires_at=None``
    clears it).
    """

    session_id: str
    events: Sequence[EventInput | Mapping[str, Any]]
    expected_version: int | None = None
    create: bool | NewSession = False
    ttl: TTL | None = None
    expires_at: datetime | Unset | None = UNSET


@dataclass(frozen=True, slots=True)
class PopOp:
    """Remove the newest ``n`` events of a session inside a batch (fewer if fewer kept)."""

    session_id: str
    n: int = 1
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class TruncateOp:
    """Drop every event with ``seq > after_seq`` inside a batch."""

    session_id: str
    after_seq: int
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class TrimOp:
    """Keep only the newest ``keep_last`` events inside a batch."""

    session_id: str
    keep_last: int
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class DeleteEventsOp:
    """Delete events by ``seqs`` and/or ``keys`` inside a batch (missing ones ignored)."""

    session_id: str
    seqs: Iterable[int] = ()
    keys: Iterable[str] = ()
    expected_version: int | None = None


Op: TypeAlias = (
    CreateOp | UpdateOp | DeleteOp | AppendOp | PopOp | TruncateOp | TrimOp | DeleteEventsOp
)
#: The ops that change a session's event log beyond a plain append.
EVENT_LOG_OPS: Final = (PopOp, TruncateOp, TrimOp, DeleteEventsOp)


def _fast_constructor(cls: type[T]) -> Callable[..., T]:
    """A constructor for the frozen slots dataclass ``cls`` that skips its frozen ``__init__``.

    A frozen dataclass's ``__init__`` calls ``object.__setattr__`` once per field, which
    makes building one 3-4x slower than a plain class. This builds a mutable twin (the same
    fields, defaults and slots, in the same order), fills an instance through the twin's
    ordinary ``__init__`` and re-classes it as ``cls``: CPython allows ``__class__``
    assignment between classes with identical slot layouts. The result is an ordinary,
    frozen ``cls``, equal to what ``cls(...)`` builds from the same arguments (a test pins
    it), and wrong arguments raise the same ``TypeError`` naming ``cls``.
    """
    spec: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in fields(cls):  # type: ignore[arg-type]
        if f.default is not MISSING:
            spec.append((f.name, f.type, field(default=f.default)))
        elif f.default_factory is not MISSING:
            spec.append((f.name, f.type, field(default_factory=f.default_factory)))
        else:
            spec.append((f.name, f.type))
    twin = make_dataclass(cls.__name__, spec, slots=True, eq=False, repr=False)
    twin.__qualname__ = cls.__qualname__
    assert twin.__slots__ == cls.__slots__, cls  # type: ignore[attr-defined]

    def build(*args: Any, **kwargs: Any) -> T:
        obj = twin(*args, **kwargs)
        obj.__class__ = cls
        result: T = obj
        return result

    build.__doc__ = f"``{cls.__name__}(...)``, built without the frozen ``__init__`` (hot paths)."
    return build


fast_session: Callable[..., Session] = _fast_constructor(Session)
"""``Session(...)`` from all 13 fields positionally, several times faster (the planner
and drivers build a few per write)."""
fast_event: Callable[..., Event] = _fast_constructor(Event)
"""``Event(...)`` from its fields, several times faster (drivers build one per event read)."""
fast_raw_event: Callable[..., RawEvent] = _fast_constructor(RawEvent)
"""``RawEvent(...)`` from its fields, several times faster (one per event of a raw read)."""
#: Fast constructors of the write inputs, for the single-op store methods.
fast_new_session: Callable[..., NewSession] = _fast_constructor(NewSession)
fast_session_update: Callable[..., SessionUpdate] = _fast_constructor(SessionUpdate)
fast_create_op: Callable[..., CreateOp] = _fast_constructor(CreateOp)
fast_update_op: Callable[..., UpdateOp] = _fast_constructor(UpdateOp)
fast_append_op: Callable[..., AppendOp] = _fast_constructor(AppendOp)
