"""``SessionStoreService``: Google ADK's ``BaseSessionService`` over any sessionstore store.

One ADK session is one sessionstore session: its session-scoped state is the session's
``data`` (a state delta is a shallow ``merge_data``, never a rewrite), its events are the
session's event log (one keyed event per ADK event, so appending is O(1) in history and
``get_session(num_recent_events=N)`` reads N events), and ADK's names and
``last_update_time`` live in its ``metadata``. ``app:`` state of an app and ``user:`` state
of a user live in sessions of their own. All sessions of one app share a ``group``, so an
``append_event`` is one ``commit`` (the event, the session's state delta, the app and user
deltas) that is atomic on every built-in driver, Redis Cluster included.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError as AdkNotFound
from google.adk.events.event import Event as AdkEvent
from google.adk.sessions import Session as AdkSession
from google.adk.sessions import State
from google.adk.sessions.base_session_service import (
    BaseSessionService,
    GetSessionConfig,
    ListSessionsResponse,
)
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from sessionstore import (
    AppendOp,
    CreateOp,
    EventInput,
    NewSession,
    Op,
    QueryOptions,
    RawEvent,
    Session,
    SessionConflictError,
    SessionExistsError,
    SessionFilter,
    SessionNotFoundError,
    SessionStore,
    SessionUpdate,
    UnsupportedOperationError,
    UpdateOp,
    open_store,
)
from sessionstore.model import TTL

from . import _ids
from ._adk_probes import read_marker, write_marker

__all__ = ["EVENT_TYPE", "SCHEME_PREFIX", "SessionStoreService", "store_url"]

#: The prefix of the URL schemes the adapter registers with ADK (``sessionstore+redis://``).
SCHEME_PREFIX: Final = "sessionstore+"
#: The ``type`` of every event the adapter stores.
EVENT_TYPE: Final = "adk.event"

_STALE: Final = (
    "The session has been modified in storage since it was loaded. "
    "Please reload the session before appending more events."
)
# metadata keys of a stored session (flat: merge_metadata merges top-level keys only)
_KIND: Final = "adk_kind"
_APP: Final = "adk_app"
_USER: Final = "adk_user"
_SESSION: Final = "adk_session"
_TIME: Final = "adk_time"
# The token of the append that last wrote a session (a hash of its events' keys).
_WRITE: Final = "adk_write"
_LIST_PAGE: Final = 1000
_IMPORT_BATCH: Final = 1000
# How far back append_event looks in the caller's session for an equal re-delivery:
# a bounded look keeps the append O(1) in history (older ones are found by key on a
# version conflict, see append_event).
_RECENT_CHECK: Final = 16
# A create or an append retries when a concurrent writer created the app or user state
# session it was about to create (or someone deleted one it was about to update).
_ATTEMPTS: Final = 5
_MS: Final = timedelta(milliseconds=1)


def store_url(uri: str) -> str:
    """The sessionstore URL behind an ADK service URI: ``sessionstore+redis://h`` ->
    ``redis://h``; a URI without the prefix is returned unchanged."""
    return uri[len(SCHEME_PREFIX) :] if uri.startswith(SCHEME_PREFIX) else uri


@dataclass(frozen=True, slots=True)
class _Deltas:
    app: dict[str, Any]
    user: dict[str, Any]
    session: dict[str, Any]


def _bytes_as_text(value: Any) -> Any:
    """``value`` with every ``bytes`` made text: UTF-8 as it decodes, anything else as
    standard base64 (pydantic models are unwrapped first, to reach their bytes)."""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii")
    if isinstance(value, BaseModel):
        return _bytes_as_text(value.model_dump(mode="python"))
    if isinstance(value, Mapping):
        return {_bytes_as_text(k): _bytes_as_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_bytes_as_text(v) for v in value]
    return value


def _json_safe(state: Mapping[str, Any]) -> dict[str, Any]:
    # ADK state may hold datetimes, pydantic models, enums: stored as ADK's own persistent
    # services store them (pydantic's JSON mode); anything without a JSON form as its repr.
    # Bytes that are not UTF-8 (which pydantic's JSON mode refuses) as base64 text, as
    # ADK's persistent services store them from 2.14 on (2.13's failed the write).
    try:
        safe = to_jsonable_python(dict(state), fallback=repr)
    except (PydanticSerializationError, UnicodeDecodeError):
        safe = to_jsonable_python(_bytes_as_text(state), fallback=repr)
    assert isinstance(safe, dict)
    return safe


def _split(state: Mapping[str, Any] | None) -> _Deltas:
    app: dict[str, Any] = {}
    user: dict[str, Any] = {}
    session: dict[str, Any] = {}
    for key, value in _json_safe(state or {}).items():
        if key.startswith(State.APP_PREFIX):
            app[key.removeprefix(State.APP_PREFIX)] = value
        elif key.startswith(State.USER_PREFIX):
            user[key.removeprefix(State.USER_PREFIX)] = value
        elif not key.startswith(State.TEMP_PREFIX):
            session[key] = value
    return _Deltas(app, user, session)


def _merged(
    session_state: Mapping[str, Any], app: Session | None, user: Session | None
) -> dict[str, Any]:
    state = dict(session_state)
    if app is not None:
        state.update({State.APP_PREFIX + k: v for k, v in app.data.items()})
    if user is not None:
        state.update({State.USER_PREFIX + k: v for k, v in user.data.items()})
    return state


def _event_record(event: AdkEvent) -> tuple[bytes, dict[str, Any]]:
    raw = event.model_dump_json(exclude_none=True).encode()
    record = orjson.loads(raw)
    assert isinstance(record, dict)
    return raw, record


def _event_key(event: AdkEvent, raw: bytes) -> str:
    # ADK keeps an equal re-delivery once and two *different* events that share an id
    # both (its in-memory service's contract): the key covers the id and the content.
    return "adk-" + hashlib.sha256(orjson.dumps(event.id) + b"\x00" + raw).hexdigest()


def _decode(stored: RawEvent) -> AdkEvent:
    # the stored JSON straight to pydantic's JSON mode (get_raw_events): no dict per
    # event made and dropped, which on a whole history was ~15 % of the read and a third
    # of its garbage-collector passes (docs/performance.md)
    return AdkEvent.model_validate_json(stored.data_json)


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class SessionStoreService(BaseSessionService):
    """An ADK session service that keeps sessions, events and state in a sessionstore
    store (any driver: ``memory://``, ``file://``, ``sqlite://``, ``postgresql://``,
    ``redis://`` and the other Redis schemes).

    ``store`` is a store object (the caller opens, initialises and closes it) or a URL
    (``redis://...``, or ADK's form ``sessionstore+redis://...``): the service then opens
    the store with ``options`` (``open_store``'s keyword arguments), initialises it on
    first use and closes it in :meth:`close`. ``uri=`` is the same as a URL ``store``:
    ADK's ``services.yaml`` builds services as ``cls(uri=..., agents_dir=...)``.
    ``ttl``: ADK sessions expire that long after their last append (sliding expiry, set in
    the append's own write); app and user state never expire.
    """

    def __init__(
        self,
        store: SessionStore | str | None = None,
        *,
        uri: str | None = None,
        ttl: TTL | None = None,
        **options: Any,
    ) -> None:
        options.pop("agents_dir", None)  # ADK's registry passes it to every factory
        if store is None:
            store = uri if uri is not None else "memory://"
        elif uri is not None:
            raise TypeError("give store or uri=, not both")
        if isinstance(store, str):
            self._store: SessionStore = open_store(store_url(store), **options)
            self._owns_store = True
        else:
            if options:
                raise TypeError(f"store options {sorted(options)} need a URL, not a store object")
            self._store = store
            self._owns_store = False
        self._ttl = ttl
        self._initialized = not self._owns_store
        self._init_lock = asyncio.Lock()

    @property
    def store(self) -> SessionStore:
        """The sessionstore store behind the service."""
        return self._store

    async def _ready(self) -> SessionStore:
        if not self._initialized:
            async with self._init_lock:
                if not self._initialized:
                    await self._store.initialize()
                    self._initialized = True
        return self._store

    async def _writable(self) -> SessionStore:
        """The store, for a write of events (keyed, with their own times)."""
        store = await self._ready()
        if not store.capabilities.event_log:
            raise UnsupportedOperationError(
                f"{type(store).__name__} does not declare Capabilities.event_log, which "
                "SessionStoreService needs to store events (keyed, with ADK's timestamps); "
                "every built-in driver declares it"
            )
        return store

    async def close(self) -> None:
        """Close the store if the service opened it (a store object stays open)."""
        if self._owns_store and self._initialized:
            await self._store.shutdown()
            self._initialized = False

    async def __aenter__(self) -> SessionStoreService:
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- create / read

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> AdkSession:
        """Create a session (``AlreadyExistsError`` when the id is taken); ``app:`` and
        ``user:`` keys of ``state`` go to the app's and the user's state in the same
        atomic step. A given ``session_id`` is stripped of surrounding whitespace, as
        ADK's own services do; without one a UUID is used."""
        store = await self._ready()
        name = session_id.strip() if session_id else ""
        name = name or str(uuid.uuid4())
        deltas = _split(state)
        sid = _ids.session_id(app_name, user_id, name)
        app_id = _ids.app_state_id(app_name)
        user_sid = _ids.user_state_id(app_name, user_id)
        group = _ids.group_id(app_name)
        now = time.time()
        new = NewSession(
            id=sid,
            group=group,
            processor_id=_ids.PROCESSOR_ID,
            data=deltas.session,
            metadata={_KIND: "session", _APP: app_name, _USER: user_id, _SESSION: name, _TIME: now},
            tags={_ids.app_tag(app_name), _ids.user_tag(app_name, user_id)},
            ttl=self._ttl,
        )
        for attempt in range(_ATTEMPTS):
            found = await store.get_sessions([sid, app_id, user_sid])
            if sid in found:
                raise AlreadyExistsError(f"Session with id {name} already exists.")
            ops: list[Op] = []
            scoped = (
                (app_id, deltas.app, {_KIND: "app", _APP: app_name}),
                (user_sid, deltas.user, {_KIND: "user", _APP: app_name, _USER: user_id}),
            )
            for scoped_id, delta, metadata in scoped:
                if scoped_id not in found:
                    ops.append(CreateOp(self._scoped(scoped_id, group, delta, metadata)))
                elif delta:
                    ops.append(UpdateOp(scoped_id, SessionUpdate(merge_data=delta)))
            ops.append(CreateOp(new))
            try:
                results = await store.commit(ops)
            except SessionExistsError:
                if attempt == _ATTEMPTS - 1:
                    raise
                continue  # a concurrent create: the next round sees who won
            written = {r.id: r for r in results if isinstance(r, Session)}
            app = written.get(app_id, found.get(app_id))
            user = written.get(user_sid, found.get(user_sid))
            created = written[sid]
            session = AdkSession(
                id=name,
                app_name=app_name,
                user_id=user_id,
                state=_merged(created.data, app, user),
                last_update_time=now,
            )
            write_marker(session, created.version)
            return session
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _scoped(
        scoped_id: str, group: str, data: dict[str, Any], metadata: dict[str, Any]
    ) -> NewSession:
        return NewSession(
            id=scoped_id,
            group=group,
            processor_id=_ids.PROCESSOR_ID,
            data=data,
            metadata=metadata,
        )

    @staticmethod
    def _names_match(stored: Session, app_name: str, user_id: str, name: str) -> bool:
        # The id is a hash of the names: equal names are the proof it is this session.
        meta = stored.metadata
        return (
            meta.get(_KIND) == "session"
            and meta.get(_APP) == app_name
            and meta.get(_USER) == user_id
            and meta.get(_SESSION) == name
        )

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> AdkSession | None:
        """The session with its merged state and its events (``None`` if there is none):
        ``config.num_recent_events`` newest events and/or those whose timestamp is at or
        after ``config.after_timestamp``, each read in O(events returned)."""
        store = await self._ready()
        name = session_id.strip() if session_id else session_id
        sid = _ids.session_id(app_name, user_id, name)
        app_id = _ids.app_state_id(app_name)
        user_sid = _ids.user_state_id(app_name, user_id)
        found = await store.get_sessions([sid, app_id, user_sid])
        stored = found.get(sid)
        if stored is None or not self._names_match(stored, app_name, user_id, name):
            return None
        # The events are read after the session, never together: events newer than the
        # version recorded below only make a later append refuse as stale (safe), while
        # a version newer than the events would let an append pass over an unseen event.
        events: list[AdkEvent] = []
        if config is None or config.num_recent_events != 0:
            try:
                events = await self._events(store, sid, config)
            except SessionNotFoundError:
                return None  # deleted between the two reads
        session = AdkSession(
            id=name,
            app_name=app_name,
            user_id=user_id,
            state=_merged(stored.data, found.get(app_id), found.get(user_sid)),
            events=events,
            last_update_time=float(stored.metadata.get(_TIME, 0.0)),
        )
        write_marker(session, stored.version)
        return session

    @staticmethod
    async def _events(
        store: SessionStore, sid: str, config: GetSessionConfig | None
    ) -> list[AdkEvent]:
        last = config.num_recent_events if config is not None else None
        after = config.after_timestamp if config is not None else None
        if after is None:
            return [_decode(e) for e in await store.get_raw_events(sid, last=last)]
        # ADK's documented rule (its database and SQLite services, and its in-memory one
        # from 2.15): the events whose timestamp is at or after the bound, then the newest
        # ``last`` of those. The store keeps ``at`` to the millisecond and its bound is
        # exclusive: ask from a millisecond before, then apply the exact bound here.
        low = _at(after) - _MS
        want = last
        while True:
            stored = await store.get_raw_events(sid, last=want, at_after=low)
            events = [e for e in map(_decode, stored) if e.timestamp >= after]
            if last is None or want is None or len(events) >= last or len(stored) < want:
                return events if last is None else events[-last:]
            # events just below the bound in its millisecond took places: ask for more
            want += last - len(events)

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """The sessions of an app (of one user, or of every user with ``user_id=None``),
        without events, with merged state, oldest ``last_update_time`` first. Found
        through an indexed tag, in pages of 1,000."""
        store = await self._ready()
        tag = _ids.app_tag(app_name) if user_id is None else _ids.user_tag(app_name, user_id)
        stored: list[Session] = []
        cursor: str | None = None
        while True:
            page = await store.list_sessions(
                SessionFilter(tags_all={tag}), QueryOptions(limit=_LIST_PAGE, cursor=cursor)
            )
            stored.extend(
                s
                for s in page.items
                if s.metadata.get(_KIND) == "session"
                and s.metadata.get(_APP) == app_name
                and (user_id is None or s.metadata.get(_USER) == user_id)
            )
            cursor = page.next_cursor
            if cursor is None:
                break
        # each user's state id once (a digest each), not once per session
        user_ids = {
            u: _ids.user_state_id(app_name, u)
            for u in sorted({str(s.metadata[_USER]) for s in stored})
        }
        app_id = _ids.app_state_id(app_name)
        scoped = await store.get_sessions([app_id, *user_ids.values()]) if stored else {}
        app = scoped.get(app_id)
        sessions = []
        for s in stored:
            owner = str(s.metadata[_USER])
            session = AdkSession(
                id=str(s.metadata[_SESSION]),
                app_name=app_name,
                user_id=owner,
                state=_merged(s.data, app, scoped.get(user_ids[owner])),
                last_update_time=float(s.metadata.get(_TIME, 0.0)),
            )
            write_marker(session, s.version)
            sessions.append(session)
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete a session and its events (a missing session is not an error). App and
        user state stay."""
        store = await self._ready()
        name = session_id.strip() if session_id else session_id
        sid = _ids.session_id(app_name, user_id, name)
        stored = await store.get_session(sid)
        if stored is None or not self._names_match(stored, app_name, user_id, name):
            return
        await store.delete_session(sid)

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """The ``user:`` state of one user of an app, without the prefix."""
        store = await self._ready()
        stored = await store.get_session(_ids.user_state_id(app_name, user_id))
        return dict(stored.data) if stored is not None else {}

    # -- moving data in

    async def import_session(self, session: AdkSession) -> bool:
        """Store ``session`` as it is: read from another ADK session service (with all
        its events), it keeps its id, session state, events and ``last_update_time``; its
        ``app:`` and ``user:`` keys are merged into the app's and the user's state. One
        atomic commit for the session and its first 1,000 events, one append per further
        1,000. ``False`` (nothing written) when the session exists here already, so a
        copy that stopped half-way can simply run again."""
        store = await self._writable()
        app_name, user_id, name = session.app_name, session.user_id, session.id
        sid = _ids.session_id(app_name, user_id, name)
        group = _ids.group_id(app_name)
        deltas = _split(session.state)
        records = []
        for event in session.events:
            raw, record = _event_record(event)
            records.append(
                EventInput(
                    type=EVENT_TYPE,
                    data=record,
                    key=_event_key(event, raw),
                    at=_at(event.timestamp),
                )
            )
        new = NewSession(
            id=sid,
            group=group,
            processor_id=_ids.PROCESSOR_ID,
            data=deltas.session,
            metadata={
                _KIND: "session",
                _APP: app_name,
                _USER: user_id,
                _SESSION: name,
                _TIME: session.last_update_time,
            },
            tags={_ids.app_tag(app_name), _ids.user_tag(app_name, user_id)},
            ttl=self._ttl,
        )
        scoped = (
            (_ids.app_state_id(app_name), deltas.app, {_KIND: "app", _APP: app_name}),
            (
                _ids.user_state_id(app_name, user_id),
                deltas.user,
                {_KIND: "user", _APP: app_name, _USER: user_id},
            ),
        )
        for attempt in range(_ATTEMPTS):
            found = await store.get_sessions([sid, *(i for i, _, _ in scoped)])
            if sid in found:
                return False
            ops: list[Op] = [
                CreateOp(self._scoped(i, group, d, m))
                if i not in found
                else UpdateOp(i, SessionUpdate(merge_data=d))
                for i, d, m in scoped
                if i not in found or d
            ]
            ops.append(CreateOp(new))
            if records:
                ops.append(AppendOp(sid, records[:_IMPORT_BATCH]))
            try:
                await store.commit(ops)
                break
            except SessionExistsError:
                if attempt == _ATTEMPTS - 1:
                    raise
        for start in range(_IMPORT_BATCH, len(records), _IMPORT_BATCH):
            await store.append_events(sid, records[start : start + _IMPORT_BATCH])
        return True

    # -- append

    async def append_event(self, session: AdkSession, event: AdkEvent) -> AdkEvent:
        """Persist ``event`` and its state delta in one atomic commit.

        The session-scoped delta merges into the session, ``app:`` and ``user:`` deltas
        into the app's and the user's state, ``temp:`` keys only into ``session`` (the
        caller's object). A partial event is not stored. ``StaleSessionError`` when the
        stored session changed since ``session`` was read; the same event delivered again
        (equal id and content) is stored once.
        """
        (appended,) = await self._append(session, [event])
        return appended

    async def append_events(self, session: AdkSession, events: list[AdkEvent]) -> list[AdkEvent]:
        """Persist ``events``, in order, with their state deltas in one atomic commit: all
        of them or none (ADK 2.15's batch write, which its ``BufferedSessionService``
        uses; callable on every ADK version).

        The effect on ``session`` and on the store is that of :meth:`append_event` for
        each event in turn (partial events skipped, ``temp:`` keys applied to ``session``
        only, an equal re-delivery stored once), in one write: ``StaleSessionError``
        when the stored session changed since ``session`` was read, and then none of the
        events is stored. Returns the events as :meth:`append_event` returns each.
        """
        return await self._append(session, list(events))

    async def _append(self, session: AdkSession, events: list[AdkEvent]) -> list[AdkEvent]:
        results = list(events)
        # The events to store, in order: a re-delivery is looked for as append_event
        # would look for it, among the caller's newest events and those before it here.
        window = list(session.events[-_RECENT_CHECK:])
        writes: list[tuple[AdkEvent, str, EventInput]] = []
        for i, event in enumerate(events):
            if event.partial or any(e.id == event.id and e == event for e in window):
                continue
            self._apply_temp_state(session, event)
            event = results[i] = self._trim_temp_delta_state(event)
            raw, record = _event_record(event)
            key = _event_key(event, raw)
            if any(key == k for _, k, _ in writes):
                continue  # equal once its temp: keys are gone: stored once
            at = _at(event.timestamp)
            writes.append((event, key, EventInput(type=EVENT_TYPE, data=record, key=key, at=at)))
            window = [*window[1 - _RECENT_CHECK :], event]
        if not writes:
            return results
        store = await self._writable()
        app_name, user_id, name = session.app_name, session.user_id, session.id
        sid = _ids.session_id(app_name, user_id, name)
        deltas = _Deltas({}, {}, {})
        for event, _, _ in writes:
            split = _split(event.actions.state_delta if event.actions else None)
            deltas.app.update(split.app)
            deltas.user.update(split.user)
            deltas.session.update(split.session)
        expected = read_marker(session)
        if expected is None:
            expected = await self._revision_of_unmarked(store, session, sid)
        newest = writes[-1][0].timestamp
        keys = [key for _, key, _ in writes]
        # the write's token: which write made the stored session (a re-delivery's check)
        token = hashlib.sha256("\x00".join(keys).encode()).hexdigest()[:32]
        update = SessionUpdate(
            merge_data=deltas.session or None, merge_metadata={_TIME: newest, _WRITE: token}
        )
        ops: list[Op] = [
            UpdateOp(sid, update, expected_version=expected),
            AppendOp(sid, [stored for _, _, stored in writes], ttl=self._ttl),
        ]
        scoped = (
            (_ids.app_state_id(app_name), deltas.app, {_KIND: "app", _APP: app_name}),
            (
                _ids.user_state_id(app_name, user_id),
                deltas.user,
                {_KIND: "user", _APP: app_name, _USER: user_id},
            ),
        )
        ops += [UpdateOp(i, SessionUpdate(merge_data=d)) for i, d, _ in scoped if d]
        for attempt in range(_ATTEMPTS):
            try:
                commit = await store.commit(ops)
                break
            except SessionConflictError as exc:
                if not await self._already_stored(store, sid, keys):
                    raise StaleSessionError(_STALE) from exc
                # Re-delivered after a write whose outcome was unknown. When that very
                # write made the stored session (its token; the two version steps of its
                # ops on ``sid`` since ``expected``: no write after it), ``session`` is
                # brought up to date as if it had succeeded: else its next write (a retry
                # of ADK's BufferedSessionService keeps the object) would be refused as
                # stale with no one else writing.
                stored = await store.get_session(sid)
                if (
                    stored is not None
                    and stored.version == expected + 2
                    and stored.metadata.get(_WRITE) == token
                ):
                    session.last_update_time = newest
                    write_marker(session, stored.version)
                    for event, _, _ in writes:
                        self._commit_event_to_session(session, event)
                return results
            except SessionNotFoundError as exc:
                if exc.session_id == sid:
                    raise AdkNotFound(f"Session {name} not found.") from exc
                if attempt == _ATTEMPTS - 1:
                    raise
                # an app or user state session deleted by hand: create it empty, retry
                await self._ensure_scoped(store, _ids.group_id(app_name), scoped)
        else:  # pragma: no cover
            raise AssertionError("unreachable")
        appended = commit[1]
        assert isinstance(appended, Session)
        session.last_update_time = newest
        write_marker(session, appended.version)
        for event, _, _ in writes:
            self._commit_event_to_session(session, event)
        return results

    @staticmethod
    async def _already_stored(store: SessionStore, sid: str, keys: Sequence[str]) -> bool:
        """Every event of ``keys`` is stored (a write is all or none: the first missing
        one ends the look)."""
        try:
            for key in keys:
                if await store.get_event(sid, key=key) is None:
                    return False
        except SessionNotFoundError:
            return False
        return True

    async def _revision_of_unmarked(
        self, store: SessionStore, session: AdkSession, sid: str
    ) -> int:
        """The version to write against for a session object this service did not return
        (built by hand, or read from another service): stale when storage has a newer
        update time, unless its newest event is the caller's newest (ADK's own rule)."""
        stored = await store.get_session(sid)
        if stored is None or not self._names_match(
            stored, session.app_name, session.user_id, session.id
        ):
            raise AdkNotFound(f"Session {session.id} not found.")
        if float(stored.metadata.get(_TIME, 0.0)) > session.last_update_time:
            newest = await store.get_raw_events(sid, last=1)
            mine = session.events[-1] if session.events else None
            if not newest or mine is None or _decode(newest[-1]).id != mine.id:
                raise StaleSessionError(_STALE)
        return stored.version

    async def _ensure_scoped(
        self,
        store: SessionStore,
        group: str,
        scoped: Sequence[tuple[str, dict[str, Any], dict[str, Any]]],
    ) -> None:
        found = await store.get_sessions([i for i, _, _ in scoped])
        for scoped_id, _, metadata in scoped:
            if scoped_id not in found:
                with contextlib.suppress(SessionExistsError):  # created concurrently
                    await store.create_session(
                        id=scoped_id,
                        group=group,
                        processor_id=_ids.PROCESSOR_ID,
                        data={},
                        metadata=metadata,
                    )
