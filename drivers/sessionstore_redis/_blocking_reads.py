"""Blocking reads for the sync facade: the store's own read logic over a second
transport, a blocking connection of the calling thread (issue 18; ``_wire.py``).

``sessionstore.sync`` runs every call of an async store on an event loop, so a call from
another thread is handed to the loop and its caller woken with the result: two thread
hand-offs, each with its GIL hand-off, about as much CPU as the whole read. A read that
is one round trip does not need a loop: the calling thread can send the request and
wait for the reply on a socket of its own, one kernel wake-up per call.
:meth:`RedisStore.blocking_reads <sessionstore_redis.RedisStore.blocking_reads>` offers
this to the facade (:class:`sessionstore.sync.BlockingReads`) for a single server (TCP,
Unix socket, TLS); Sentinel and Cluster are not offered it (their calls stay on the
loop: finding the master or the slot's node is the async client's work).

The reads: ``get_session``, ``get_sessions``, ``get_events`` (every filter) and
``get_event``.

What is shared with the async path, not written twice: the read's steps (the store's
``_fetch_steps``: the keys to read, following a grouped session's stub, decoding with
``decode_doc``; for events ``EventLog.query_steps``: a plain window's ``MULTI``/``EXEC``
request and its reply's reading, else ``lua/events.lua``, a stub followed), the checks
before them, its cache of where sessions live, the scripts (EVALSHA then EVAL on
NOSCRIPT), the request packing (``_lane.pack_call``) and the retry policy
(``Backend.retry_pause``: reads are retried until ``retry_deadline``, then
``StoreUnavailableError``; authentication and TLS failures are ``ConfigurationError``;
other Redis errors are translated as on the loop). Only the transport is this module's,
and ``_wire.py``'s: a socket and a minimal reply reader of the driver's own, not
redis-py's blocking ``Connection`` (whose Python per call, held under the GIL, is what
kept eight threads from the tasks' throughput: ``docs/decisions.md``).

Connections: one per calling thread, made on its first call with the store's
connection settings (timeouts, credentials, TLS, database, client name), at most
``max_connections`` of them (a thread beyond that has its calls run on the loop,
:class:`~sessionstore.sync.DeferToLoop`; the connections of threads that have ended are
closed and reused first). A connection whose request failed or whose reply was not
read (an interrupt, a timeout) is disconnected (``Wire.request``), so it is never left a
reply behind.
Closing (the store's shutdown) disconnects the idle connections at once; a call in
flight finishes on its connection, which its thread then disconnects.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from sessionstore import SessionNotFoundError
from sessionstore.sync import DeferToLoop

from ._conn import _RETRYABLE, Backend, _translate
from ._encoding import documents_or_failure
from ._lane import pack_call, pack_get
from ._scripts import READ, Script
from ._wire import Wire

if TYPE_CHECKING:
    from sessionstore import Event, Session

    from ._eventlog import Steps
    from ._keys import Loc
    from ._store import RedisStore

__all__ = ["BlockingConnections", "RedisBlockingReads"]


class _Slot:
    """One thread's connection, and whether a call is using it."""

    __slots__ = ("busy", "conn", "thread")

    def __init__(self, conn: Wire, thread: threading.Thread) -> None:
        self.conn = conn
        self.thread = thread
        self.busy = False


class BlockingConnections:
    """Blocking connections (``_wire.Wire``), one per calling thread, to a single server.

    A child process made by ``fork`` does not use its parent's connections (their
    sockets are the parent's too: two processes reading one socket would take each
    other's replies): it forgets them and connects anew (:func:`_forget_in_child`)."""

    def __init__(self, backend: Backend, reader: str = "auto") -> None:
        self._backend = backend
        self._factory = backend.blocking_connection_factory(reader)
        self._limit = backend.options.max_connections
        self._local = threading.local()
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []
        self.closed = False
        _EVERY.add(self)

    def _forget(self) -> None:
        """Drop every connection without a word to the server (in a forked child: the
        sockets are the parent's; the objects close only the child's copies)."""
        self._local = threading.local()
        self._lock = threading.Lock()
        self._slots = []

    def __len__(self) -> int:
        return len(self._slots)

    def _slot(self) -> _Slot:
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is not None:
            return slot
        with self._lock:
            if self.closed:
                raise RedisConnectionError("the store's blocking connections are closed")
            if len(self._slots) >= self._limit:
                self._forget_ended_threads()
                if len(self._slots) >= self._limit:
                    raise DeferToLoop  # max_connections threads have one: use the loop
            slot = _Slot(self._factory(), threading.current_thread())
            self._slots.append(slot)
        self._local.slot = slot
        return slot

    def _forget_ended_threads(self) -> None:
        ended = [slot for slot in self._slots if not slot.thread.is_alive()]
        for slot in ended:
            self._slots.remove(slot)
            slot.conn.disconnect()

    def script(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """EVALSHA on the calling thread's connection (EVAL on NOSCRIPT); an error reply
        raised as redis-py's exception (the caller applies the retry policy)."""
        return self._exchange(_script_call, script, keys, args)

    def commands(self, packed: bytes, count: int) -> list[Any]:
        """``count`` plain commands the caller packed, sent as one request on the calling
        thread's connection; their replies, error replies as exception objects in their
        places (as ``_lane.Lane.commands`` gives them)."""
        return self._exchange(Wire.request, packed, count)  # type: ignore[no-any-return]

    def get(self, key: str) -> Any:
        """``GET key`` on the calling thread's connection: its reply, an error reply as
        the exception object (a layout-2 hash's ``WRONGTYPE``)."""
        return self._exchange(Wire.request_one, pack_get(key))

    def _exchange(self, call: Any, *args: Any) -> Any:
        """``call(connection, *args)`` on the calling thread's connection."""
        # (the thread's slot looked up here: :meth:`_slot` makes it on the first call)
        slot = getattr(self._local, "slot", None) or self._slot()
        # busy before closed is read, closed before busy is read by close(): one of the
        # two sees the other, so a connection is never disconnected under a call
        slot.busy = True
        try:
            if self.closed:
                raise RedisConnectionError("the store's blocking connections are closed")
            return call(slot.conn, *args)
        finally:
            slot.busy = False
            if self.closed:
                self._local.slot = None
                slot.conn.disconnect()

    def close(self) -> None:
        """Disconnect every idle connection; one in use is disconnected by its thread
        when its call ends. Idempotent; later calls fail (the store is shut down)."""
        with self._lock:
            self.closed = True
            slots, self._slots = self._slots, []
        for slot in slots:
            if not slot.busy:
                slot.conn.disconnect()


def _script_call(conn: Wire, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
    reply = conn.request_one(pack_call("EVALSHA", script.sha, keys, args))
    if type(reply) is NoScriptError:
        reply = conn.request_one(pack_call("EVAL", script.source, keys, args))
    if isinstance(reply, RedisError):  # an error reply (the connection stays in step)
        raise reply
    return reply


#: every set of blocking connections of this process (for :func:`_forget_in_child`)
_EVERY: weakref.WeakSet[BlockingConnections] = weakref.WeakSet()


def _forget_in_child() -> None:
    for connections in list(_EVERY):
        connections._forget()


if hasattr(os, "register_at_fork"):  # (not on Windows)
    os.register_at_fork(after_in_child=_forget_in_child)


class RedisBlockingReads:
    """:class:`sessionstore.sync.BlockingReads` for a :class:`RedisStore` on a single
    server: its one-round-trip reads made by the calling thread (see the module)."""

    def __init__(self, store: RedisStore, backend: Backend) -> None:
        self._store = store
        self._backend = backend
        self.connections = BlockingConnections(backend)

    def get_session(self, session_id: str, *, include_expired: bool = False) -> Session | None:
        """As :meth:`RedisStore.get_session`, blocking the calling thread."""
        store = self._store
        store._check_get_session(session_id)
        steps = store._fetch_steps([session_id], strict=True)
        return store._visible(self._drive(steps).get(session_id), include_expired)

    def get_sessions(
        self, session_ids: Iterable[str], *, include_expired: bool = False
    ) -> dict[str, Session]:
        """As :meth:`RedisStore.get_sessions`, blocking the calling thread."""
        store = self._store
        ids = store._sessions_to_get(session_ids)
        if not ids:
            return {}
        loaded = self._drive(store._fetch_steps(ids, strict=True))
        return store._visible_sessions(ids, loaded, include_expired)

    def get_events(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int | None = None,
        last: int | None = None,
        types: Iterable[str] | None = None,
        at_after: datetime | None = None,
        at_before: datetime | None = None,
    ) -> list[Event]:
        """As :meth:`RedisStore.get_events`, blocking the calling thread: every filter
        (a plain window by plain commands, the others by ``lua/events.lua``, as on the
        loop)."""
        steps = self._store._events_steps(
            session_id,
            after_seq=after_seq,
            before_seq=before_seq,
            limit=limit,
            last=last,
            types=types,
            at_after=at_after,
            at_before=at_before,
        )
        events = self._drive_events(steps)
        if events is None:
            raise SessionNotFoundError(session_id)
        return events

    def get_event(self, session_id: str, *, key: str) -> Event | None:
        """As :meth:`RedisStore.get_event`, blocking the calling thread."""
        store = self._store
        return store._the_event(session_id, self._drive_events(store._event_steps(session_id, key)))

    def _drive(
        self, steps: Generator[list[Loc], list[Any], dict[str, Session]]
    ) -> dict[str, Session]:
        """Run a session read's steps (``RedisStore._fetch_steps``), each step's
        documents read by one ``lua/read.lua`` call, as ``RedisStore._read_docs`` does on
        a single server."""
        connections = self.connections
        try:
            locs = next(steps)
            while True:
                if len(locs) == 1:
                    # a plain GET, as RedisStore._read_docs: the script for a layout-2 hash
                    key = locs[0].doc
                    doc = self._retried(connections.get, "read", key)
                    if isinstance(doc, Exception):
                        doc = self._retried(connections.script, "read", READ, [key], [])
                    docs = [doc or b""]
                else:
                    keys = [loc.doc for loc in locs]
                    reply = self._retried(connections.script, "read", READ, keys, [], replies=True)
                    docs = documents_or_failure(reply, len(keys))
                locs = steps.send(docs)
        except StopIteration as done:
            result: dict[str, Session] = done.value
            return result

    def _drive_events(self, steps: Steps) -> list[Event] | None:
        """Run an event read's steps (``EventLog.query_steps``, ``find_steps``) as
        ``EventLog.run_steps`` does on the loop, failures thrown in."""
        connections = self.connections
        try:
            step = next(steps)
            while True:
                try:
                    if step[0] == "commands":
                        _, _, packed, count = step
                        reply = self._retried(connections.commands, "read events", packed, count)
                    else:
                        _, script, keys, args = step
                        reply = self._retried(connections.script, "read events", script, keys, args)
                except Exception as exc:
                    step = steps.throw(exc)
                else:
                    step = steps.send(reply)
        except StopIteration as done:
            result: list[Event] | None = done.value
            return result

    def _retried(
        self, call: Callable[..., Any], what: str, *args: Any, replies: bool = False
    ) -> Any:
        """``call(*args)``, retried as ``Backend.run`` retries a read (its policy,
        ``Backend.retry_pause``); another Redis error translated as there, or with
        ``replies`` returned as the reply (as a pipelined call's error reply is)."""
        started = time.monotonic()
        delay = 0.02
        while True:
            try:
                return call(*args)
            except _RETRYABLE as exc:
                self._store._check_still_open()  # shut down meanwhile: no retry
                pause, _ = self._backend.retry_pause(
                    exc,
                    what,
                    idempotent=True,
                    elapsed=time.monotonic() - started,
                    delay=delay,
                )
                time.sleep(pause)
                delay = min(delay * 2, 0.5)
                self._store._check_still_open()
            except ResponseError as exc:
                if replies:
                    return exc
                raise _translate(exc, what) from exc
            except RedisError as exc:
                raise _translate(exc, what) from exc

    def close(self) -> None:
        """Close the connections (the store's shutdown calls it)."""
        self.connections.close()
