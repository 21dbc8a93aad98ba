"""The event log of :class:`RedisStore` beyond appends: indexed reads (``lua/events.lua``,
``lua/event.lua``) and the removals (pop, truncate, trim, delete by seq or key; ops of
``lua/write.lua``), each one script, one round trip. The layout is in ``lua/evlog.lua``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import orjson

from sessionstore import Event, IntegrityError, Session, UnsupportedFormatError
from sessionstore.clock import to_ms

from ._encoding import decode_events, type_json
from ._scripts import EVENT, EVENTS
from ._write_call import WriteCall
from ._writes import Reply, Writes

__all__ = ["EventLog"]


def _of_session(exc: IntegrityError, sid: str) -> IntegrityError:
    """``exc`` (which names the operation) as an error naming the session's record."""
    message = str(exc)
    if exc.record and message.startswith(f"{exc.record}: "):
        message = message[len(exc.record) + 2 :]
    return IntegrityError(message, sid)


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

    async def _read(
        self, sid: str, script: Any, keys_of: Callable[[Any], list[str]], args: list[Any]
    ) -> list[bytes] | None:
        """Run a read script on the session's keys, following a grouped session's stub;
        ``None`` when the session is missing (or expired, when ``args[0]`` is a time)."""
        writes = self._writes
        tried: set[str | None] = set()
        while True:
            loc = writes.loc(sid)
            tried.add(loc.group)
            try:
                reply = await writes.script(script, keys_of(loc), args, "read events")
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

    async def query(
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
    ) -> list[Event] | None:
        """A page of the log (``lua/events.lua``); ``now`` ``""``: ignore expiry."""
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
        records = await self._read(sid, EVENTS, lambda loc: [loc.doc, loc.events, loc.etypes], args)
        return None if records is None else decode_events(records, sid)

    async def find(
        self, sid: str, now: str, *, seqs: Sequence[int] = (), keys: Sequence[str] = ()
    ) -> list[Event] | None:
        """The events with these seqs or keys, ascending (``lua/event.lua``)."""
        args: list[Any] = [now, len(keys), *(orjson.dumps(k) for k in keys), *seqs]
        records = await self._read(sid, EVENT, lambda loc: [loc.doc, loc.events, loc.ekeys], args)
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
