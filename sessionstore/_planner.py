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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any, Final

import orjson

from .codec import MAX_EVENT, MAX_SESSION, encode_user_dict, new_id
from .errors import (
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
    DeleteOp,
    Event,
    EventInput,
    JSONDict,
    NewSession,
    Op,
    Session,
    SessionUpdate,
    Status,
    Unset,
    UpdateOp,
    fast_session,
)
from .validation import (
    validate_event_input,
    validate_expires_at,
    validate_processor_id,
    validate_session_id,
    validate_status,
    validate_tags,
    validate_ttl,
)

__all__ = ["Limits", "Mutation", "Planner", "Prepared", "encode_events", "prepare"]

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
    * ``append`` - events to add (their ``seq`` is final); ``trim_before`` - drop events
      with a smaller ``seq``; ``put_checkpoints`` / ``delete_checkpoints`` - by id.
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
        sid = validate_session_id(op.session_id)
        events = [(etype, copy) for etype, _, copy in encode_events(op.events, limits)]
        return Prepared(
            op=op,
            session_id=sid,
            expected_version=check_expected_version(op.expected_version),
            events=events,
        )
    raise InvalidArgumentError(f"not a write op: {op!r}")


class Planner:
    """Applies prepared ops, in order, to sessions loaded from a driver.

    ``loaded`` maps ids to the stored sessions (expired ones included). Each op sees the
    effect of the ops before it; ``expected_version`` is checked against that view.
    """

    def __init__(self, loaded: Mapping[str, Session], now: datetime, limits: Limits) -> None:
        self.now = now
        self.limits = limits
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
        return self.append(p.session_id, p.events, p.expected_version)

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

    def trim(self, session_id: str, keep_last: int, expected_version: int | None) -> Session:
        """Keep only the newest ``keep_last`` events (no-op when there are not more)."""
        cur = self.require(session_id, expected_version)
        if cur.event_count <= keep_last:
            return cur
        mut = self._mutation(session_id)
        mut.trim_before = cur.last_seq - keep_last + 1
        session = replace(cur, event_count=keep_last, updated_at=self.now, version=cur.version + 1)
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


def involved_ids(prepared: Sequence[Prepared]) -> list[str]:
    """Ids a batch must load before planning (in first-seen order)."""
    seen: dict[str, None] = {}
    for p in prepared:
        seen.setdefault(p.session_id, None)
    return list(seen)


def encode_events(events: object, limits: Limits) -> list[tuple[str, bytes, JSONDict]]:
    """Validate and encode the events of an append: ``(type, data JSON, private copy of
    the data)`` for each, the rules of ``AppendOp`` (``prepare`` uses this). Drivers that
    store the JSON as it is (Redis) splice the bytes into their event record instead of
    encoding the copy again."""
    if type(events) is not list and (
        isinstance(events, Mapping | EventInput | str) or not isinstance(events, Sequence)
    ):
        raise InvalidArgumentError("events must be a list of events")
    if not events:
        raise InvalidArgumentError("append_events needs at least one event")
    limit = limits.max_event_bytes
    out: list[tuple[str, bytes, JSONDict]] = []
    for index, raw in enumerate(events):
        etype, payload = validate_event_input(raw)
        try:
            data, copy = encode_user_dict(payload, "events[].data", limit, MAX_EVENT)
        except (SerializationError, QuotaExceededError):
            # again, naming the event in the error (its name is built only on this path)
            data, copy = encode_user_dict(payload, f"events[{index}].data", limit, MAX_EVENT)
        out.append((etype, data, copy))
    return out


def event_payloads(
    events: Sequence[EventInput | Mapping[str, Any]], limits: Limits
) -> list[tuple[str, JSONDict]]:
    """Validate and encode events outside a batch (same rules as ``AppendOp``)."""
    return prepare(AppendOp("x", events), limits).events
