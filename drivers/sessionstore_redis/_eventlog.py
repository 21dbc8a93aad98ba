"""The event log of :class:`RedisStore` beyond appends: indexed reads (``lua/events.lua``,
``lua/event.lua``) and the removals (pop, truncate, trim, delete by seq or key; ops of
``lua/write.lua``), each one script, one round trip. The layout is in ``lua/evlog.lua``.

The reads are generators of steps without I/O (:meth:`EventLog.query_steps`,
:meth:`EventLog.find_steps`): each step is a request (:data:`Step`), each reply is sent
back in (a failure thrown in). :meth:`EventLog.run_steps` drives them on the event loop;
the sync facade's blocking reads (``_blocking_reads.py``) drive the same steps on a
blocking connection of the calling thread."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Generator, Sequence
from datetime import datetime
from typing import Any, TypeAlias

import orjson

from sessionstore import Event, IntegrityError, Session, UnsupportedFormatError
from sessionstore.clock import to_ms

from ._encoding import DOC_HEADER, decode_events, type_json
from ._lane import pack
from ._scripts import EVENT, EVENTS
from ._write_call import WriteCall
from ._writes import Reply, Writes

__all__ = ["EventLog", "Step", "Steps"]

#: One request of a read's steps: ``("commands", key, packed, count)``, plain commands
#: sent as one request (their ``count`` replies come back as a list, error replies as
#: exception objects in their places; ``None`` where the transport has no plain path),
#: or ``("script", script, keys, args)``, a read script (its reply; a failure thrown in).
Step: TypeAlias = tuple[Any, ...]
#: A read's steps: yields :data:`Step`, is sent each one's reply, returns its result.
Steps: TypeAlias = Generator[Step, Any, "list[Event] | None"]


def _of_session(exc: IntegrityError, sid: str) -> IntegrityError:
    """``exc`` (which names the operation) as an error naming the session's record."""
    message = str(exc)
    if exc.record and message.startswith(f"{exc.record}: "):
        message = message[len(exc.record) + 2 :]
    return IntegrityError(message, sid)


_MULTI = pack(["MULTI"])
_EXEC = pack(["EXEC"])
#: the packed requests of a plain window (``EventLog.query_steps``), by (doc key, events
#: key, range command): a reader asks for the same window of a session again and again
_REQUESTS: dict[tuple[Any, ...], bytes] = {}
_MAX_REQUESTS = 4096


def _request(doc: str, events: str, window: tuple[Any, ...]) -> bytes:
    """``MULTI``, ``GETRANGE`` of the document's fixed header (liveness and format), the window's
    range command on ``events``, ``EXEC``: one request."""
    cache_key = (doc, events, *window)
    packed = _REQUESTS.get(cache_key)
    if packed is None:
        if len(_REQUESTS) >= _MAX_REQUESTS:
            _REQUESTS.clear()
        packed = _REQUESTS[cache_key] = b"".join(
            (
                _MULTI,
                pack(["GETRANGE", doc, 0, DOC_HEADER - 1]),
                pack([window[0], events, *window[1:]]),
                _EXEC,
            )
        )
    return packed


def _window(
    after_seq: int, before_seq: int | None, limit: int | None, last: int | None
) -> tuple[Any, ...] | None:
    """The range command of a plain window (no type or time filter) without its key,
    the same as ``lua/events.lua`` runs for it; ``None`` for a window that is empty
    whatever the log holds (the script checks the session and returns ``[]``)."""
    want = last if last is not None else limit
    if want == 0 or (before_seq is not None and after_seq + 1 >= before_seq):
        return None
    hi = "+inf" if before_seq is None else f"({before_seq}"
    if last is not None:
        if after_seq == 0 and before_seq is None:
            return ("ZRANGE", -last, -1)
        return ("ZREVRANGEBYSCORE", hi, f"({after_seq}", "LIMIT", 0, last)
    if limit is not None:
        return ("ZRANGEBYSCORE", f"({after_seq}", hi, "LIMIT", 0, limit)
    return ("ZRANGEBYSCORE", f"({after_seq}", hi)


def _page(replies: list[Any] | None, now: str, window: tuple[Any, ...]) -> list[bytes] | None:
    """The records of a plain window from the replies to :func:`_request`: one round trip,
    atomic (``MULTI``/``EXEC``), ~35k server instructions against ~145k for
    ``lua/events.lua`` (most of a script's cost is running Lua and copying the records
    through it). ``None`` unless the reply is the common case, a live session of the
    current layout: no plain path (``replies`` ``None``: ``lean=false``), the document
    missing or expired, a grouped session's stub, a layout-2 document (a hash: the
    ``GETRANGE`` answers ``WRONGTYPE``), a corrupt header, a key of the wrong type or a
    redirection. The caller then runs the script, which decides
    those exactly as before (the liveness test here is the script's own)."""
    if replies is None:
        return None
    done = replies[3]
    if type(done) is not list or len(done) != 2:
        return None  # EXECABORT (e.g. a redirection) or an error reply
    head, records = done
    if type(head) is not bytes or type(records) is not list:
        return None  # an error reply in its place (a key of the wrong type)
    if len(head) != DOC_HEADER or head[0] != 3 or head[1] == 71:
        return None  # missing, a stub, a newer layout or malformed: the script decides
    expires = head[134:154]
    if expires[0] != 32 and now:
        try:
            if int(expires) <= int(now):
                return None
        except ValueError:
            return None
    if window[0] == "ZREVRANGEBYSCORE":
        records.reverse()
    return records


class EventLog:
    """Reads and removals of one store's event logs, through its :class:`Writes`;
    ``written`` turns a write script's reply into the new session (cache, index queue,
    observers: the store's), ``unchanged`` the session of a reply that wrote nothing."""

    def __init__(
        self,
        writes: Writes,
        written: Callable[[Reply, str], Awaitable[Session]],
        unchanged: Callable[[Reply, str], Session],
    ) -> None:
        self._writes = writes
        self._written = written
        self._unchanged = unchanged

    async def run_steps(self, steps: Steps) -> list[Event] | None:
        """Drive a read's steps on the event loop: each request retried as every read is
        (``Backend.run``), its failure thrown into the steps."""
        writes = self._writes
        backend = writes.backend
        try:
            step = next(steps)
            while True:
                try:
                    if step[0] == "commands":
                        reply, _ = await backend.run(
                            functools.partial(backend.commands, *step[1:]),
                            idempotent=True,
                            what="read events",
                        )
                    else:
                        reply = await writes.script(step[1], step[2], step[3], "read events")
                except Exception as exc:
                    step = steps.throw(exc)
                else:
                    step = steps.send(reply)
        except StopIteration as done:
            result: list[Event] | None = done.value
            return result

    def _read_steps(
        self, sid: str, script: Any, keys_of: Callable[[Any], list[str]], args: list[Any]
    ) -> Generator[Step, Any, list[bytes] | None]:
        """Run a read script on the session's keys, following a grouped session's stub;
        ``None`` when the session is missing (or expired, when ``args[0]`` is a time)."""
        writes = self._writes
        tried: set[str | None] = set()
        while True:
            loc = writes.loc(sid)
            tried.add(loc.group)
            try:
                reply = yield ("script", script, keys_of(loc), args)
            except IntegrityError as exc:  # a key of the session holds the wrong type
                raise _of_session(exc, sid) from None
            code = reply[0]
            if code == b"OK":
                records: list[bytes] = reply[1]
                return records
            if code == b"PTR":
                group = reply[1].decode()
                if group in tried:
                    return None
                writes.remember(sid, group)
            elif code == b"NOTFOUND":
                if loc.group is None or None in tried:
                    return None
                writes.remember(sid, None)
            elif code == b"FORMAT":
                raise UnsupportedFormatError(
                    "the stored session was written by a newer sessionstore; upgrade to read it",
                    sid,
                )
            else:
                raise IntegrityError("the stored session document is corrupt", sid)

    def query_steps(
        self,
        sid: str,
        now: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int | None = None,
        last: int | None = None,
        types: frozenset[str] | None = None,
        at_after: datetime | None = None,
        at_before: datetime | None = None,
    ) -> Steps:
        """The steps of a page of the log; ``now`` ``""``: ignore expiry. A plain window
        (no type or time filter) without a script (:func:`_request`, :func:`_page`),
        anything else (or what :func:`_page` leaves) by ``lua/events.lua``."""
        if types is None and at_after is None and at_before is None:
            window = _window(after_seq, before_seq, limit, last)
            if window is not None:
                loc = self._writes.loc(sid)
                replies = yield ("commands", loc.doc, _request(loc.doc, loc.events, window), 4)
                page = _page(replies, now, window)
                if page is not None:
                    return decode_events(page, sid) if page else []
        args: list[Any] = [
            now,
            after_seq,
            "" if before_seq is None else before_seq,
            "" if limit is None else limit,
            "" if last is None else last,
            "" if at_after is None else to_ms(at_after),
            "" if at_before is None else to_ms(at_before),
        ]
        if types is not None:
            if not types:  # no type at all: an empty page (the session is still checked)
                args[3], args[4] = 0, ""
            args += sorted(type_json(t) for t in types)
        records = yield from self._read_steps(
            sid, EVENTS, lambda loc: [loc.doc, loc.events, loc.etypes], args
        )
        return None if records is None else decode_events(records, sid)

    async def find(
        self, sid: str, now: str, *, seqs: Sequence[int] = (), keys: Sequence[str] = ()
    ) -> list[Event] | None:
        """The events with these seqs or keys, ascending (``lua/event.lua``)."""
        return await self.run_steps(self.find_steps(sid, now, seqs=seqs, keys=keys))

    def find_steps(
        self, sid: str, now: str, *, seqs: Sequence[int] = (), keys: Sequence[str] = ()
    ) -> Steps:
        """The steps of :meth:`find`."""
        args: list[Any] = [now, len(keys), *(orjson.dumps(k) for k in keys), *seqs]
        records = yield from self._read_steps(
            sid, EVENT, lambda loc: [loc.doc, loc.events, loc.ekeys], args
        )
        return None if records is None else decode_events(records, sid)

    async def remove(
        self,
        sid: str,
        build: Callable[[WriteCall, Any], None],
        now_ms: int,
        *,
        idempotent: bool,
        what: str,
    ) -> tuple[Session, list[Event]]:
        """Run one removal op (``build`` adds it to the call); the new session and, for
        a pop, the removed events (ascending)."""
        reply, _ = await self._writes.run_on(sid, build, now_ms, idempotent=idempotent, what=what)
        result = reply.results[0]
        if not isinstance(result, list):  # {'DONE', doc}: an earlier attempt was applied
            return await self._written(reply, sid), []
        # the document, how many records were removed, the popped ones (newest first)
        popped = decode_events(result[:1:-1], sid)
        reply.results[0] = result[0]
        if not result[1]:  # nothing to remove: nothing was written
            return self._unchanged(reply, sid), popped
        return await self._written(reply, sid), popped
