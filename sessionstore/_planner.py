"""The write planner: prepare → plan → :class:`Mutation` s, shared by every driver.

Public for drivers through :mod:`sessionstore.driver` (this module is its implementation).

A write goes through three steps:

1. *prepare* (no I/O): validate ids, tags, ttl; encode user data strictly (this is where
   bad input is refused, before anything is read or written);
2. *plan* against the sessions loaded from the driver: check ``expected_version``, compute
   the new sessions, and collect one :class:`Mutation` per touched session;
3. the driver's ``_apply`` writes all mutations atomically, re-checking each
   ``Mutation.expect`` (compare-and-set), so a concurrent writer can never be overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any, Final

import orjson

from ._eventlog import MAX_SEQ, EventFacts, EventRequest, LogView, NeedEvents, session_tag
from .codec import MAX_EVENT, MAX_SESSION, encode_user_dict, new_id
from .errors import (
    EventKeyConflictError,
    InvalidArgumentError,
    QuotaExceededError,
    SerializationError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
)
from .model import (
    UNSET,
    AppendOp,
    Checkpoint,
    CreateOp,
    DeleteEventsOp,
    DeleteOp,
    Event,
    EventInput,
    JSONDict,
    NewSession,
    Op,
    PopOp,
    Session,
    SessionUpdate,
    Status,
    TrimOp,
    TruncateOp,
    Unset,
    UpdateOp,
    fast_session,
)
from .validation import (
    validate_event,
    validate_event_key,
    validate_expires_at,
    validate_positive_int,
    validate_processor_id,
    validate_session_id,
    validate_status,
    validate_tags,
    validate_ttl,
)

__all__ = [
    "EventFacts",
    "EventRequest",
    "Limits",
    "Mutation",
    "NeedEvents",
    "Planner",
    "Prepared",
    "encode_event_inputs",
    "prepare",
]

_MAX_SEQ: Final = MAX_SEQ

_MAX_VERSION = 2**62
_NO_TAGS: frozenset[str] = frozenset()
# Planner.update/append and new_session build Session with fast_session (dataclasses.replace
# costs about twice a construction, a frozen construction 3x fast_session) and name every
# field: a new field must be added there.
assert len(fields(Session)) == 13, "Session changed: update Planner.update and Planner.append"


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits applied when encoding (bytes of encoded JSON)."""

    max_session_bytes: int
    max_event_bytes: int


@dataclass(slots=True)
class Mutation:
    """One session's part of an atomic write, as handed to a driver's ``_apply``.

    * ``expect`` - the stored version the session must have (``0``: must not exist).
      A mismatch makes ``_apply`` raise :class:`SessionConflictError` and write nothing.
    * ``session`` - the new document (``None``: keep the stored one); ``data_json`` and
      ``metadata_json`` are its encoded ``data``/``metadata`` (always set with ``session``).
    * ``delete`` - remove the session with its events and checkpoints.
    * ``reset`` - drop existing events and checkpoints before applying the rest.
    * ``append`` - events to add (their ``seq`` is final, above every stored seq; each
      carries its ``key`` and its ``at``, the caller's or the write's time).
    * event removals, applied to the events stored *before* this mutation (so never to
      ``append``; apply them before the append): ``trim_before`` - drop events with a
      smaller ``seq`` (``0``: none); ``truncate_after`` - drop events with a larger
      ``seq`` (``None``: none); ``delete_seqs`` - drop these seqs (missing ones
      ignored). A dropped event's key is free again. The planner sets
      ``truncate_after`` and ``delete_seqs`` only for a driver that declares
      ``Capabilities.event_log``.
    * ``put_checkpoints`` / ``delete_checkpoints`` - by id.
    """

    session_id: str
    expect: int
    session: Session | None = None
    data_json: bytes | None = None
    metadata_json: bytes | None = None
    delete: bool = False
    reset: bool = False
    append: list[Event] = field(default_factory=list)
    trim_before: int = 0
    put_checkpoints: list[Checkpoint] = field(default_factory=list)
    delete_checkpoints: list[str] = field(default_factory=list)
    # bookkeeping for hooks (not for drivers)
    created: bool = False
    truncate_after: int | None = None
    delete_seqs: list[int] = field(default_factory=list)

    @property
    def removes_events(self) -> bool:
        """True when the mutation drops stored events (trim, truncate or delete)."""
        return bool(self.trim_before or self.truncate_after is not None or self.delete_seqs)


@dataclass(slots=True)
class Prepared:
    """A validated op: ids checked and user data encoded, nothing read yet."""

    op: Op
    session_id: str
    expected_version: int | None
    # create (the first fields are positional in prepare_new: keep their order)
    tags: frozenset[str] = frozenset()
    status: Status | None = None
    ttl: timedelta | None = None
    expires_at: datetime | Unset | None = UNSET
    processor_id: str | Unset | None = UNSET
    group: str | None = None
    # payloads: (json bytes, private decoded copy)
    data: tuple[bytes, JSONDict] | None = None
    metadata: tuple[bytes, JSONDict] | None = None
    merge_data: JSONDict | None = None
    merge_metadata: JSONDict | None = None
    remove_data_keys: tuple[str, ...] = ()
    remove_metadata_keys: tuple[str, ...] = ()
    add_tags: frozenset[str] = frozenset()
    remove_tags: frozenset[str] = frozenset()
    replace_tags: frozenset[str] | None = None
    events: list[tuple[str, JSONDict]] = field(default_factory=list)
    missing_ok: bool = False
    # event log: keys/ats of the events (None: none given), the create of an append,
    # pop n / trim keep_last, truncate after_seq, delete seqs/keys
    event_keys: list[str | None] | None = None
    event_ats: list[datetime | None] | None = None
    create: Prepared | None = None
    count: int = 0
    after_seq: int = 0
    seqs: tuple[int, ...] = ()
    keys: tuple[str, ...] = ()

    @property
    def needs_event_log(self) -> bool:
        """True when the op needs the ``event_log`` capability."""
        return (
            isinstance(self.op, PopOp | TruncateOp | DeleteEventsOp)
            or self.event_keys is not None
            or self.event_ats is not None
        )


# prepare and prepare_new build Prepared positionally (twice as fast as by keyword).
assert [f.name for f in fields(Prepared)][:18] == [
    "op", "session_id", "expected_version", "tags", "status", "ttl", "expires_at",
    "processor_id", "group", "data", "metadata", "merge_data", "merge_metadata",
    "remove_data_keys", "remove_metadata_keys", "add_tags", "remove_tags", "replace_tags",
], "Prepared's fields changed order: update prepare and prepare_new"  # fmt: skip


def check_expected_version(value: object) -> int | None:
    """``expected_version`` is ``None`` or a positive int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_VERSION:
        raise InvalidArgumentError(f"expected_version must be a positive int, got {value!r}")
    return value


def _keys(values: Iterable[str], what: str) -> tuple[str, ...]:
    if type(values) is tuple and not values:  # the default: nothing to check
        return ()
    if isinstance(values, str):
        raise InvalidArgumentError(f"{what} must be a collection of keys, not one string")
    out = tuple(values)
    if not all(isinstance(k, str) for k in out):
        raise InvalidArgumentError(f"{what} must hold str keys")
    return out


def _tags(values: Iterable[str]) -> frozenset[str]:
    if type(values) is tuple and not values:  # the default: nothing to check
        return _NO_TAGS
    return validate_tags(values)


#: The op a :func:`prepare_new` result stands for when none is given. It only tells the
#: planner the kind of op: the values are the ``Prepared``'s own.
CREATE_OP: Final = CreateOp(NewSession())
_NEW_FIELDS: Final = frozenset(f.name for f in fields(NewSession))


def check_new_fields(fields: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` (as a call would) for a key :class:`NewSession` does not have."""
    if not _NEW_FIELDS.issuperset(fields):
        unknown = sorted(set(fields) - _NEW_FIELDS)[0]
        raise TypeError(f"create_session() got an unexpected keyword argument {unknown!r}")


def prepare_new(
    limits: Limits,
    op: CreateOp = CREATE_OP,
    /,
    *,
    processor_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    tags: Iterable[str] = (),
    status: Status | str = Status.ACTIVE,
    ttl: Any = None,
    expires_at: datetime | None = None,
    id: str | None = None,
    group: str | None = None,
) -> Prepared:
    """``prepare(CreateOp(NewSession(**fields)))`` without building the two values.

    ``create_session`` calls this directly (check the keys with :func:`check_new_fields`
    first); ``op`` is the :class:`CreateOp` the result stands for.
    """
    sid = new_id() if id is None else validate_session_id(id)
    if ttl is not None and expires_at is not None:
        raise InvalidArgumentError("give ttl or expires_at, not both")
    encoded = encode_user_dict(data or {}, "data", limits.max_session_bytes, MAX_SESSION)
    meta = encode_user_dict(metadata or {}, "metadata", limits.max_session_bytes, MAX_SESSION)
    size = len(encoded[0]) + len(meta[0])
    if size > limits.max_session_bytes:
        raise QuotaExceededError(
            f"session {sid!r} would be {size} bytes encoded, over the limit of "
            f"{limits.max_session_bytes}",
            option=MAX_SESSION,
        )
    return Prepared(
        op,
        sid,
        None,
        _tags(tags),
        validate_status(status),
        None if ttl is None else validate_ttl(ttl),
        None if expires_at is None else validate_expires_at(expires_at),
        validate_processor_id(processor_id),
        None if group is None else validate_session_id(group, "group"),
        encoded,
        meta,
    )


def prepare(op: Op, limits: Limits) -> Prepared:
    """Validate and encode one op (no I/O). Raises typed errors on bad input."""
    if isinstance(op, CreateOp):
        new = op.new
        if not isinstance(new, NewSession):
            raise InvalidArgumentError("CreateOp.new must be a NewSession")
        return prepare_new(
            limits,
            op,
            processor_id=new.processor_id,
            data=new.data,
            metadata=new.metadata,
            tags=new.tags,
            status=new.status,
            ttl=new.ttl,
            expires_at=new.expires_at,
            id=new.id,
            group=new.group,
        )
    if isinstance(op, UpdateOp):
        sid = validate_session_id(op.session_id)
        up = op.update
        if not isinstance(up, SessionUpdate):
            raise InvalidArgumentError("UpdateOp.update must be a SessionUpdate")
        if up.data is not None and up.merge_data is not None:
            raise InvalidArgumentError("give data (replace) or merge_data, not both")
        if up.metadata is not None and up.merge_metadata is not None:
            raise InvalidArgumentError("give metadata (replace) or merge_metadata, not both")
        if up.ttl is not None and up.expires_at is not UNSET:
            raise InvalidArgumentError("give ttl or expires_at, not both")
        if up.tags is not None and (up.add_tags or up.remove_tags):
            raise InvalidArgumentError("give tags (replace) or add_tags/remove_tags, not both")
        expires: datetime | Unset | None = UNSET
        if up.expires_at is not UNSET:
            expires = None if up.expires_at is None else validate_expires_at(up.expires_at)
        # Evaluated in a fixed order (which bad argument is reported first), then passed
        # positionally: keyword construction of Prepared costs twice as much.
        limit = limits.max_session_bytes
        expected = check_expected_version(op.expected_version)
        data = None if up.data is None else encode_user_dict(up.data, "data", limit, MAX_SESSION)
        meta = (
            None
            if up.metadata is None
            else encode_user_dict(up.metadata, "metadata", limit, MAX_SESSION)
        )
        merge_data = (
            None
            if up.merge_data is None
            else encode_user_dict(up.merge_data, "merge_data", limit, MAX_SESSION)[1]
        )
        merge_meta = (
            None
            if up.merge_metadata is None
            else encode_user_dict(up.merge_metadata, "merge_metadata", limit, MAX_SESSION)[1]
        )
        remove_data = _keys(up.remove_data_keys, "remove_data_keys")
        remove_meta = _keys(up.remove_metadata_keys, "remove_metadata_keys")
        status = None if up.status is None else validate_status(up.status)
        processor_id: str | Unset | None = (
            UNSET if up.processor_id is UNSET else validate_processor_id(up.processor_id)
        )
        add_tags = _tags(up.add_tags)
        remove_tags = _tags(up.remove_tags)
        replace_tags = None if up.tags is None else validate_tags(up.tags)
        ttl = None if up.ttl is None else validate_ttl(up.ttl)
        return Prepared(
            op, sid, expected, _NO_TAGS, status, ttl, expires, processor_id, None, data, meta,
            merge_data, merge_meta, remove_data, remove_meta, add_tags, remove_tags, replace_tags,
        )  # fmt: skip
    if isinstance(op, DeleteOp):
        return Prepared(
            op=op,
            session_id=validate_session_id(op.session_id),
            expected_version=check_expected_version(op.expected_version),
            missing_ok=bool(op.missing_ok),
        )
    if isinstance(op, AppendOp):
        return _prepare_append(op, limits)
    if isinstance(op, PopOp):
        return Prepared(
            op=op,
            session_id=validate_session_id(op.session_id),
            expected_version=check_expected_version(op.expected_version),
            count=validate_positive_int(op.n, "n", maximum=_MAX_SEQ),
        )
    if isinstance(op, TrimOp):
        return Prepared(
            op=op,
            session_id=validate_session_id(op.session_id),
            expected_version=check_expected_version(op.expected_version),
            count=validate_positive_int(
                op.keep_last, "keep_last", maximum=_MAX_SEQ, allow_zero=True
            ),
        )
    if isinstance(op, TruncateOp):
        return Prepared(
            op=op,
            session_id=validate_session_id(op.session_id),
            expected_version=check_expected_version(op.expected_version),
            after_seq=validate_positive_int(
                op.after_seq, "after_seq", maximum=_MAX_SEQ, allow_zero=True
            ),
        )
    if isinstance(op, DeleteEventsOp):
        sid = validate_session_id(op.session_id)
        seqs = _seq_list(op.seqs)
        keys = _key_list(op.keys)
        return Prepared(
            op=op,
            session_id=sid,
            expected_version=check_expected_version(op.expected_version),
            seqs=seqs,
            keys=keys,
        )
    raise InvalidArgumentError(f"not a write op: {op!r}")


def _seq_list(values: object) -> tuple[int, ...]:
    if isinstance(values, str | bytes | int) or not isinstance(values, Iterable):
        raise InvalidArgumentError("seqs must be a collection of ints")
    return tuple(
        dict.fromkeys(validate_positive_int(v, "seqs[]", maximum=_MAX_SEQ) for v in values)
    )


def _key_list(values: object) -> tuple[str, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidArgumentError("keys must be a collection of event keys, not one string")
    return tuple(dict.fromkeys(validate_event_key(v, "keys[]") for v in values))


def _prepare_append(op: AppendOp, limits: Limits) -> Prepared:
    sid = validate_session_id(op.session_id)
    expected = check_expected_version(op.expected_version)
    encoded = encode_event_inputs(op.events, limits)
    events = [(etype, copy) for etype, _, copy, _, _ in encoded]
    keys: list[str | None] | None = None
    ats: list[datetime | None] | None = None
    if any(e[3] is not None for e in encoded):
        keys = [e[3] for e in encoded]
    if any(e[4] is not None for e in encoded):
        ats = [e[4] for e in encoded]
    create: Prepared | None = None
    if op.create is not False:
        if op.create is True:
            create = prepare_new(limits, CreateOp(NewSession(id=sid)), id=sid)
        elif isinstance(op.create, NewSession):
            if op.create.id is not None and op.create.id != sid:
                raise InvalidArgumentError(
                    f"create names session {op.create.id!r}, the append session {sid!r}"
                )
            new = replace(op.create, id=sid)
            create = prepare(CreateOp(new), limits)
        else:
            raise InvalidArgumentError("create must be a bool or a NewSession")
    ttl = None if op.ttl is None else validate_ttl(op.ttl)
    expires: datetime | Unset | None = UNSET
    if op.expires_at is not UNSET:
        if ttl is not None:
            raise InvalidArgumentError("give ttl or expires_at, not both")
        expires = None if op.expires_at is None else validate_expires_at(op.expires_at)
    return Prepared(
        op=op,
        session_id=sid,
        expected_version=expected,
        ttl=ttl,
        expires_at=expires,
        events=events,
        event_keys=keys,
        event_ats=ats,
        create=create,
    )


def static_request(p: Prepared, gapless: bool) -> EventRequest | None:
    """The event reads one prepared op needs (before planning; the planner asks for more
    through :class:`NeedEvents` when earlier ops of a batch change the picture)."""
    op = p.op
    if isinstance(op, PopOp):
        return EventRequest(tail=p.count)
    if isinstance(op, TrimOp):
        return None if gapless or not p.count else EventRequest(seq_tail=p.count)
    if isinstance(op, TruncateOp):
        return EventRequest(after={p.after_seq})
    if isinstance(op, DeleteEventsOp):
        return EventRequest(seqs=set(p.seqs), keys=set(p.keys))
    if isinstance(op, AppendOp) and p.event_keys is not None:
        return EventRequest(keys={k for k in p.event_keys if k is not None})
    return None


class Planner:
    """Applies prepared ops, in order, to sessions loaded from a driver.

    ``loaded`` maps ids to the stored sessions (expired ones included). Each op sees the
    effect of the ops before it; ``expected_version`` is checked against that view.
    ``facts`` holds what was read of the stored events (ops that remove events or append
    keyed ones need it: without it they raise :class:`NeedEvents`). ``gapless``: the
    driver cannot have gaps in its numbering (it does not declare ``event_log``), so a
    trim computes its first kept seq without a read.
    """

    def __init__(
        self,
        loaded: Mapping[str, Session],
        now: datetime,
        limits: Limits,
        facts: Mapping[str, EventFacts] | None = None,
        *,
        gapless: bool = False,
    ) -> None:
        self.now = now
        self.limits = limits
        self.facts = facts or {}
        self.gapless = gapless
        self._loaded = loaded
        self._views: dict[str, LogView] = {}
        #: ``pop`` results of the batch, in order (the popped events of each pop).
        self.popped: list[list[Event]] = []
        #: per append (in order): the stored event for each input, and whether it is new.
        self.appended: list[tuple[list[Event], list[bool]]] = []
        self._current: dict[str, Session | None] = dict(loaded)
        self._muts: dict[str, Mutation] = {}
        # Encoded payloads, remembered with the dict they encode: reused only while the
        # session still holds that very dict (a later op may have replaced it).
        self._data_json: dict[str, tuple[JSONDict, bytes]] = {}
        self._meta_json: dict[str, tuple[JSONDict, bytes]] = {}
        self.conflicts: list[SessionConflictError] = []

    # -- views
    def visible(self, session_id: str) -> Session | None:
        """The session as this batch sees it now (``None``: absent or expired)."""
        current = self._current.get(session_id)
        if current is None or current.is_expired(self.now):
            return None
        return current

    def stored(self, session_id: str) -> Session | None:
        """The session as this batch sees it now, expired ones included (``None``: absent
        or deleted by an earlier op of the batch). Expiry planning uses it."""
        return self._current.get(session_id)

    def _mutation(self, session_id: str) -> Mutation:
        mut = self._muts.get(session_id)
        if mut is None:
            stored = self._current.get(session_id)
            mut = Mutation(session_id=session_id, expect=0 if stored is None else stored.version)
            self._muts[session_id] = mut
        return mut

    def require(self, session_id: str, expected_version: int | None) -> Session:
        """The visible session, checked against ``expected_version``."""
        current = self.visible(session_id)
        if current is None:
            raise SessionNotFoundError(session_id)
        if expected_version is not None and current.version != expected_version:
            error = SessionConflictError(session_id, expected_version, current.version)
            self.conflicts.append(error)
            raise error
        return current

    def put(
        self, session: Session, data_json: bytes | None = None, meta_json: bytes | None = None
    ) -> Session:
        """Record ``session`` as the new document for its id."""
        mut = self._mutation(session.id)
        mut.session = session
        mut.delete = False
        self._current[session.id] = session
        if data_json is not None:
            self._data_json[session.id] = (session.data, data_json)
        if meta_json is not None:
            self._meta_json[session.id] = (session.metadata, meta_json)
        return session

    # -- ops
    def apply(self, p: Prepared) -> Session | bool:
        """Apply one prepared op; returns the new session (or, for delete, a bool)."""
        op = p.op
        if isinstance(op, CreateOp):
            return self.create(p)
        if isinstance(op, UpdateOp):
            return self.update(p)
        if isinstance(op, DeleteOp):
            return self.delete(p.session_id, p.expected_version, missing_ok=p.missing_ok)
        if isinstance(op, AppendOp):
            if (
                p.create is None
                and p.event_keys is None
                and p.event_ats is None
                and p.ttl is None
                and p.expires_at is UNSET
            ):
                return self.append(p.session_id, p.events, p.expected_version)
            return self.append_prepared(p)
        if isinstance(op, PopOp):
            return self.pop(p.session_id, p.count, p.expected_version)
        if isinstance(op, TrimOp):
            return self.trim(p.session_id, p.count, p.expected_version)
        if isinstance(op, TruncateOp):
            return self.truncate(p.session_id, p.after_seq, p.expected_version)
        if isinstance(op, DeleteEventsOp):
            return self.delete_events(p.session_id, p.seqs, p.keys, p.expected_version)
        raise InvalidArgumentError(f"not a write op: {op!r}")

    def create(self, p: Prepared) -> Session:
        """Create a session; an expired, not yet cleaned-up one with the id is replaced."""
        sid = p.session_id
        stored = self._current.get(sid)
        if stored is not None and not stored.is_expired(self.now):
            raise SessionExistsError(sid)
        assert p.data is not None and p.metadata is not None
        session = new_session(p, self.now)
        mut = self._mutation(sid)
        if stored is not None or mut.delete:
            mut.reset = True
            mut.append.clear()
            mut.put_checkpoints.clear()
            mut.trim_before, mut.truncate_after = 0, None
            mut.delete_seqs.clear()
            self._views[sid] = LogView(reset=True)
        mut.created = True
        return self.put(session, p.data[0], p.metadata[0])

    def update(self, p: Prepared) -> Session:
        """Apply a partial update."""
        cur = self.require(p.session_id, p.expected_version)
        data, data_json = cur.data, None
        if p.data is not None:
            data_json, data = p.data
        elif p.merge_data is not None or p.remove_data_keys:
            data = {**cur.data, **(p.merge_data or {})}
            for key in p.remove_data_keys:
                data.pop(key, None)
        metadata, meta_json = cur.metadata, None
        if p.metadata is not None:
            meta_json, metadata = p.metadata
        elif p.merge_metadata is not None or p.remove_metadata_keys:
            metadata = {**cur.metadata, **(p.merge_metadata or {})}
            for key in p.remove_metadata_keys:
                metadata.pop(key, None)
        tags = cur.tags
        if p.replace_tags is not None:
            tags = p.replace_tags
        elif p.add_tags or p.remove_tags:
            tags = (cur.tags | p.add_tags) - p.remove_tags
        expires = cur.expires_at
        if p.ttl is not None:
            expires = self.now + p.ttl
        elif p.expires_at is not UNSET:
            expires = p.expires_at
        session = fast_session(
            cur.id,
            cur.processor_id if p.processor_id is UNSET else p.processor_id,
            p.status or cur.status,
            data,
            metadata,
            tags,
            cur.created_at,
            self.now,
            expires,
            cur.version + 1,
            cur.event_count,
            cur.last_seq,
            cur.group,
        )
        return self.put(session, data_json, meta_json)

    def delete(
        self, session_id: str, expected_version: int | None, *, missing_ok: bool = True
    ) -> bool:
        """Delete (with events and checkpoints); False when nothing visible was there.

        An expired session that was not cleaned up yet is removed too (returning False).
        With ``missing_ok=False`` (the default of :class:`DeleteOp` in a batch) a missing
        session raises :class:`SessionNotFoundError` instead.
        """
        current = self.visible(session_id)
        if current is None:
            if not missing_ok:
                raise SessionNotFoundError(session_id)
            if self._current.get(session_id) is None:
                return False
        else:
            self.require(session_id, expected_version)
        mut = self._mutation(session_id)
        mut.delete, mut.session, mut.created = True, None, False
        mut.append.clear()
        mut.put_checkpoints.clear()
        mut.trim_before, mut.truncate_after = 0, None
        mut.delete_seqs.clear()
        self._views[session_id] = LogView(reset=True)
        self._current[session_id] = None
        return current is not None

    def append(
        self, session_id: str, events: Sequence[tuple[str, JSONDict]], expected_version: int | None
    ) -> Session:
        """Append events: one version step for the whole call."""
        cur = self.require(session_id, expected_version)
        mut = self._mutation(session_id)
        seq = cur.last_seq
        for etype, payload in events:
            seq += 1
            mut.append.append(Event(seq=seq, type=etype, at=self.now, data=payload))
        session = fast_session(
            cur.id,
            cur.processor_id,
            cur.status,
            cur.data,
            cur.metadata,
            cur.tags,
            cur.created_at,
            self.now,
            cur.expires_at,
            cur.version + 1,
            cur.event_count + len(events),
            seq,
            cur.group,
        )
        return self.put(session)

    def touch(
        self, session_id: str, ttl: timedelta | None, expected_version: int | None
    ) -> Session:
        """Set ``updated_at`` (and with a ttl, ``expires_at = now + ttl``)."""
        cur = self.require(session_id, expected_version)
        session = replace(
            cur,
            updated_at=self.now,
            expires_at=self.now + ttl if ttl is not None else cur.expires_at,
            version=cur.version + 1,
        )
        return self.put(session)

    # -- the event log beyond appends

    def _view(self, session_id: str) -> LogView:
        view = self._views.get(session_id)
        if view is None:
            view = self._views[session_id] = LogView()
        return view

    def _facts(self, session_id: str, req: EventRequest) -> EventFacts:
        """The facts of ``session_id``'s stored events answering ``req`` (read at the
        loaded state), or :class:`NeedEvents`."""
        tag = session_tag(self._loaded.get(session_id))
        facts = self.facts.get(session_id)
        if facts is None or facts.tag != tag:
            raise NeedEvents(session_id, req)
        missing = facts.missing(req)
        if missing is not None:
            raise NeedEvents(session_id, missing)
        return facts

    def _stored_events_exist(self, session_id: str) -> bool:
        view = self._views.get(session_id)
        if view is not None and view.reset:
            return False
        loaded = self._loaded.get(session_id)
        return loaded is not None and loaded.event_count > 0

    def _bump(self, cur: Session, event_count: int) -> Session:
        return fast_session(
            cur.id, cur.processor_id, cur.status, cur.data, cur.metadata, cur.tags,
            cur.created_at, self.now, cur.expires_at, cur.version + 1, event_count,
            cur.last_seq, cur.group,
        )  # fmt: skip

    def _newest_stored(self, session_id: str, n: int, *, full: bool) -> list[Any]:
        """The newest ``n`` kept stored events (``full``) or seqs, newest first."""
        if n <= 0 or not self._stored_events_exist(session_id):
            return []
        view = self._view(session_id)
        loaded = self._loaded[session_id]
        # the newest n kept stored events are among the newest n + (dropped by the batch)
        want = min(loaded.event_count, n + view.dropped)
        if full:
            facts = self._facts(session_id, EventRequest(tail=want))
            items: list[Any] = [e for e in reversed(facts.tail) if view.kept(e.seq)]
        else:
            facts = self._facts(session_id, EventRequest(seq_tail=want))
            items = [q for q in reversed(facts.seq_tail) if view.kept(q)]
        return items[:n]

    def _remove_appended(self, session_id: str, drop: Callable[[Event], bool]) -> int:
        """Take the batch's own appended events that ``drop`` selects back out."""
        mut = self._muts.get(session_id)
        if mut is None or not mut.append:
            return 0
        keep = [e for e in mut.append if not drop(e)]
        dropped = len(mut.append) - len(keep)
        mut.append[:] = keep
        return dropped

    def pop(self, session_id: str, n: int, expected_version: int | None) -> Session:
        """Remove the newest ``n`` events (fewer if fewer are kept); the popped events
        are added to ``popped``. Nothing to pop: no write."""
        cur = self.require(session_id, expected_version)
        k = min(n, cur.event_count)
        if not k:
            self.popped.append([])
            return cur
        mut = self._mutation(session_id)
        from_batch = mut.append[-k:] if mut.append else []
        popped_new = list(reversed(from_batch))
        stored = self._newest_stored(session_id, k - len(popped_new), full=True)
        if popped_new:
            del mut.append[len(mut.append) - len(popped_new) :]
        if stored:
            view = self._view(session_id)
            view.dropped += len(stored)
            oldest = stored[-1].seq
            view.ceiling = min(view.ceiling, oldest - 1)
            mut.truncate_after = (
                oldest - 1 if mut.truncate_after is None else min(mut.truncate_after, oldest - 1)
            )
        events = list(reversed(popped_new + stored))
        self.popped.append(events)
        return self.put(self._bump(cur, cur.event_count - len(events)))

    def trim(self, session_id: str, keep_last: int, expected_version: int | None) -> Session:
        """Keep only the newest ``keep_last`` events (no-op when there are not more)."""
        cur = self.require(session_id, expected_version)
        if cur.event_count <= keep_last:
            return cur
        mut = self._mutation(session_id)
        fresh = len(mut.append)
        if keep_last <= fresh:
            first_kept = mut.append[-keep_last].seq if keep_last else cur.last_seq + 1
            self._remove_appended(session_id, lambda e: e.seq < first_kept)
            stored_floor = first_kept
        elif self.gapless and session_id not in self._views:
            stored_floor = cur.last_seq - keep_last + 1
        else:
            seqs = self._newest_stored(session_id, keep_last - fresh, full=False)
            stored_floor = seqs[-1]
        if self._stored_events_exist(session_id):
            view = self._view(session_id)
            view.dropped += (cur.event_count - fresh) - max(0, keep_last - fresh)
            view.floor = max(view.floor, stored_floor)
            mut.trim_before = max(mut.trim_before, stored_floor)
        return self.put(self._bump(cur, keep_last))

    def truncate(self, session_id: str, after_seq: int, expected_version: int | None) -> Session:
        """Drop every event with ``seq > after_seq`` (none there: no write)."""
        cur = self.require(session_id, expected_version)
        dropped = self._remove_appended(session_id, lambda e: e.seq > after_seq)
        loaded = self._loaded.get(session_id)
        if self._stored_events_exist(session_id) and loaded is not None:  # noqa: SIM102
            if after_seq < loaded.last_seq:
                mut = self._mutation(session_id)
                view = self._view(session_id)
                facts = self._facts(session_id, EventRequest(after={after_seq}))
                gone = sum(1 for q in facts.after[after_seq] if view.kept(q))
                view.dropped += gone
                dropped += gone
                view.ceiling = min(view.ceiling, after_seq)
                if mut.truncate_after is None or after_seq < mut.truncate_after:
                    mut.truncate_after = after_seq
        if not dropped:
            return cur
        return self.put(self._bump(cur, cur.event_count - dropped))

    def delete_events(
        self,
        session_id: str,
        seqs: Sequence[int],
        keys: Sequence[str],
        expected_version: int | None,
    ) -> Session:
        """Drop the events with these seqs or keys (missing ones ignored; none: no write)."""
        cur = self.require(session_id, expected_version)
        seq_set, key_set = set(seqs), set(keys)
        dropped = self._remove_appended(session_id, lambda e: e.seq in seq_set or e.key in key_set)
        if self._stored_events_exist(session_id) and (seq_set or key_set):
            mut = self._mutation(session_id)
            view = self._view(session_id)
            facts = self._facts(session_id, EventRequest(seqs=seq_set, keys=key_set))
            found = {e.seq for q in seq_set if (e := facts.by_seq.get(q)) is not None}
            found |= {e.seq for k in key_set if (e := facts.by_key.get(k)) is not None}
            for q in sorted(found):
                if view.kept(q):
                    view.removed.add(q)
                    mut.delete_seqs.append(q)
                    view.dropped += 1
                    dropped += 1
        if not dropped:
            return cur
        return self.put(self._bump(cur, cur.event_count - dropped))

    def append_prepared(self, p: Prepared) -> Session:
        """An append with any of: ``create``, ``ttl``/``expires_at``, keys, own ``at``.

        Keyed events already kept with the same content are not written again (the same
        key with other content: :class:`EventKeyConflictError`); the stored event for each
        input and whether it is new go to ``appended``. Nothing to write (all there,
        no create, no expiry change): no write.
        """
        sid = p.session_id
        created = False
        if p.create is not None and self.visible(sid) is None:
            if p.expected_version is not None:
                error = SessionConflictError(sid, p.expected_version, 0)
                self.conflicts.append(error)
                raise error
            self.create(p.create)
            created = True
        cur = self.require(sid, None if created else p.expected_version)
        batch = self._muts.get(sid)
        fresh: list[Event] = [] if batch is None else batch.append
        keys = p.event_keys
        out: list[Event] = []
        new: list[bool] = []
        seq = cur.last_seq
        if keys is not None:
            batch_keys = {e.key: e for e in fresh if e.key is not None}
            wanted = {k for k in keys if k is not None and k not in batch_keys}
            stored_keys: dict[str, Event | None] = {}
            if wanted and self._stored_events_exist(sid):
                facts = self._facts(sid, EventRequest(keys=wanted))
                view = self._view(sid)
                stored_keys = {
                    k: e
                    for k in wanted
                    if (e := facts.by_key.get(k)) is not None and view.kept(e.seq)
                }
        for index, (etype, payload) in enumerate(p.events):
            key = None if keys is None else keys[index]
            if key is not None:
                have = batch_keys.get(key) or stored_keys.get(key)
                if have is not None:
                    if have.type != etype or have.data != payload:
                        raise EventKeyConflictError(sid, key)
                    out.append(have)
                    new.append(False)
                    continue
            seq += 1
            at = self.now if p.event_ats is None else (p.event_ats[index] or self.now)
            event = Event(seq=seq, type=etype, at=at, data=payload, key=key)
            if key is not None:
                batch_keys[key] = event
            if batch is None:
                batch = self._mutation(sid)
            batch.append.append(event)
            out.append(event)
            new.append(True)
        self.appended.append((out, new))
        added = sum(new)
        expires = cur.expires_at
        if p.ttl is not None:
            expires = self.now + p.ttl
        elif p.expires_at is not UNSET:
            expires = p.expires_at
        if not added and not created and expires == cur.expires_at and p.ttl is None:
            return cur
        session = fast_session(
            cur.id, cur.processor_id, cur.status, cur.data, cur.metadata, cur.tags,
            cur.created_at, self.now, expires, cur.version if created else cur.version + 1,
            cur.event_count + added, seq, cur.group,
        )  # fmt: skip
        return self.put(session)

    def restore_checkpoint(self, cp: Checkpoint, expected_version: int | None) -> Session:
        """Write a checkpoint's snapshot back as a new version (later events stay)."""
        cur = self.require(cp.session_id, expected_version)
        session = replace(
            cur,
            data=cp.data,
            metadata=cp.metadata,
            status=cp.status,
            tags=cp.tags,
            updated_at=self.now,
            version=cur.version + 1,
        )
        return self.put(session)

    def set_status_unchecked(self, session: Session, status: Status) -> Session:
        """Change status even on an expired session (used by ``expire_sessions``)."""
        changed = replace(session, status=status, updated_at=self.now, version=session.version + 1)
        return self.put(changed)

    def add_checkpoint(self, cp: Checkpoint, drop: Iterable[str] = ()) -> None:
        """Store a checkpoint (and drop older ones) without changing the session."""
        mut = self._mutation(cp.session_id)
        mut.put_checkpoints.append(cp)
        mut.delete_checkpoints.extend(drop)

    def drop_checkpoint(self, session_id: str, checkpoint_id: str) -> None:
        """Delete one checkpoint without changing the session."""
        self._mutation(session_id).delete_checkpoints.append(checkpoint_id)

    # -- result
    def mutations(self) -> list[Mutation]:
        """The mutations to hand to ``_apply`` (encoded, size-checked)."""
        out = []
        for sid, mut in self._muts.items():
            if mut.session is not None:
                s = mut.session
                mut.data_json = _encoded(self._data_json.get(sid), s.data)
                mut.metadata_json = _encoded(self._meta_json.get(sid), s.metadata)
                size = len(mut.data_json) + len(mut.metadata_json)
                if size > self.limits.max_session_bytes:
                    raise QuotaExceededError(
                        f"session {sid!r} would be {size} bytes encoded, over the limit of "
                        f"{self.limits.max_session_bytes}",
                        option=MAX_SESSION,
                    )
            out.append(mut)
        return out


def new_session(p: Prepared, now: datetime) -> Session:
    """The version-1 session a prepared create makes at ``now``."""
    assert p.data is not None and p.metadata is not None and p.status is not None
    expires: datetime | None = None
    if p.ttl is not None:
        expires = now + p.ttl
    elif p.expires_at is not UNSET and p.expires_at is not None:
        expires = p.expires_at
    return fast_session(
        p.session_id,
        None if p.processor_id is UNSET else p.processor_id,
        p.status,
        p.data[1],
        p.metadata[1],
        p.tags,
        now,
        now,
        expires,
        1,
        0,
        0,
        p.group,
    )


def _encoded(known: tuple[JSONDict, bytes] | None, value: JSONDict) -> bytes:
    if known is not None and known[0] is value:
        return known[1]
    return orjson.dumps(value)


def make_checkpoint(session: Session, label: str | None, now: datetime) -> Checkpoint:
    """A checkpoint of ``session`` with its digest computed."""
    from .codec import checkpoint_digest

    cp = Checkpoint(
        id=new_id(),
        session_id=session.id,
        label=label,
        created_at=now,
        version=session.version,
        status=session.status,
        data=session.data,
        metadata=session.metadata,
        tags=session.tags,
        event_count=session.event_count,
        last_seq=session.last_seq,
        digest="",
    )
    return replace(cp, digest=checkpoint_digest(cp))


def encode_event_inputs(
    events: object, limits: Limits
) -> list[tuple[str, bytes, JSONDict, str | None, datetime | None]]:
    """Validate and encode the events of an append: ``(type, data JSON, private copy of
    the data, key, at)`` for each (``key``/``at``: ``None`` when not given; ``at`` in UTC
    at millisecond precision)."""
    if type(events) is not list and (
        isinstance(events, Mapping | EventInput | str) or not isinstance(events, Sequence)
    ):
        raise InvalidArgumentError("events must be a list of events")
    if not events:
        raise InvalidArgumentError("append_events needs at least one event")
    limit = limits.max_event_bytes
    out: list[tuple[str, bytes, JSONDict, str | None, datetime | None]] = []
    for index, raw in enumerate(events):
        etype, payload, key, at = validate_event(raw)
        try:
            data, copy = encode_user_dict(payload, "events[].data", limit, MAX_EVENT)
        except (SerializationError, QuotaExceededError):
            data, copy = encode_user_dict(payload, f"events[{index}].data", limit, MAX_EVENT)
        out.append((etype, data, copy, key, at))
    return out
