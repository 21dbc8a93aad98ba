"""``append_events`` of :class:`RedisStore`: the hot path (``lua/append.lua``: plain,
keyed and timed events, the short path from the store's copy of the document, see
``_cache.py``) and the append that creates the session or sets its expiry
(``lua/write.lua``'s ``A`` op). Both one round trip."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sessionstore import (
    UNSET,
    AppendOp,
    AppendResult,
    Event,
    EventInput,
    IntegrityError,
    Session,
)
from sessionstore.clock import from_ms, to_ms
from sessionstore.driver import Limits, encode_event_inputs
from sessionstore.planning import Prepared, check_expected_version, prepare
from sessionstore.validation import validate_session_id

from ._cache import DocCache
from ._encoding import decode_events, event_args, event_tail, numbered_record, type_json
from ._keys import Loc
from ._write_call import NO_COPY, Moved, WriteCall
from ._writes import Reply, Writes

__all__ = ["AppendPart", "Appends"]


def _at(ms: int) -> tuple[bytes, bytes]:
    """An event's ``at`` as the record holds it and zero-padded (``lua/append.lua``)."""
    return b"%d" % ms, b"%020d" % ms


#: an appended event as encode_event_inputs gives it: type, data JSON, the private copy
#: of the data, key, at
Item = tuple[str, bytes, Any, str | None, datetime | None]


def _event_args(items: Sequence[Item], now_ms: int) -> tuple[list[Any], bool]:
    """The script arguments of appended events (five each), and whether any has a key."""
    args: list[Any] = []
    keyed = False
    for etype, data_json, copy, key, at in items:
        at_ms = now_ms if at is None else to_ms(at)
        if key is None:
            tj = type_json(etype)
            args += (event_tail(tj, at_ms, None, data_json), tj, at_ms, b"", b"")
        else:
            keyed = True
            args += event_args(etype, at_ms, key, copy, data_json)
    return args, keyed


@dataclass(frozen=True, slots=True)
class AppendPart:
    """An :class:`AppendOp` as ``write.lua``'s 'A' op (an append that may create the
    session or set its expiry): its encoded events (``items``), their arguments, and the
    expiry to set (``("S", ms)``, ``("N", "")`` or ``("", "")``; ``force``: write even
    if nothing else changes, as a ``ttl`` does)."""

    items: list[Item]
    args: list[Any]
    keyed: bool
    expiry: tuple[str, Any]
    force: bool

    @classmethod
    def of(cls, p: Prepared, limits: Limits, now_ms: int) -> AppendPart:
        """The part of the prepared append ``p`` (its op's events encoded)."""
        assert isinstance(p.op, AppendOp)
        items = encode_event_inputs(p.op.events, limits)
        args, keyed = _event_args(items, now_ms)
        expiry: tuple[str, Any] = ("", "")
        if p.ttl is not None:
            expiry = ("S", now_ms + p.ttl // timedelta(milliseconds=1))
        elif p.expires_at is None:
            expiry = ("N", "")
        elif isinstance(p.expires_at, datetime):
            expiry = ("S", to_ms(p.expires_at))
        return cls(items, args, keyed, expiry, p.ttl is not None)

    def add_to(self, call: WriteCall, loc: Loc, p: Prepared) -> None:
        """Add the op to ``call`` for the session at ``loc``."""
        call.append_with(
            loc,
            self.args,
            p.expected_version,
            keyed=self.keyed,
            create=p.create,
            expiry=self.expiry,
            force=self.force,
        )


class Appends:
    """Appends of one store through its :class:`Writes`, using its document copies
    (``cache``); ``session_of`` / ``written`` turn a reply into the session (without /
    with the updated notification), ``notify`` calls the store's observers, ``generic``
    is the base engine's planned append (a create with a ``group``)."""

    def __init__(
        self,
        writes: Writes,
        cache: DocCache,
        limits: Limits,
        *,
        cluster: bool,
        grace_ms: int,
        session_of: Callable[[Reply, str], Session],
        written: Callable[[Reply, str], Awaitable[Session]],
        notify: Callable[..., None],
        generic: Callable[[AppendOp], Awaitable[AppendResult]],
    ) -> None:
        self._writes = writes
        self._cache = cache
        self._limits = limits
        self._cluster = cluster
        self._grace_ms = grace_ms
        self._session_of = session_of
        self._written = written
        self._notify = notify
        self._generic = generic

    async def append_with(self, op: AppendOp) -> AppendResult:
        """An append that creates a missing session and/or sets the expiry, in one
        round trip (``write.lua``'s 'A'). A create with a ``group`` takes the generic
        path (the id's stub may need a claim of its own)."""
        p = prepare(op, self._limits)
        if p.create is not None and p.create.group is not None:
            return await self._generic(op)
        now_ms = to_ms(self._writes.clock.now())
        part = AppendPart.of(p, self._limits, now_ms)
        items = part.items
        sid = p.session_id
        reply, _ = await self._writes.run_on(
            sid,
            lambda call, loc: part.add_to(call, loc, p),
            now_ms,
            idempotent=True,  # the script recognises its own earlier write (the token)
            what=f"append to {sid}",
        )
        if reply.done:  # an earlier attempt was applied: its details are not known
            session = self._session_of(reply, sid)
            flags = None
        else:
            doc, flags, created = reply.results[0]
            reply.results[0] = doc
            session = self._session_of(reply, sid)
            if created == b"1":
                self._writes.remember(sid, None)
                self._writes.reindex_later([session])
                self._notify("sessionstore_session_created", session=session)
            elif (
                any(type(f) is int and f > 0 for f in flags)
                or p.ttl is not None
                or (p.expires_at is not UNSET)
            ):
                self._writes.reindex_later([session])
                self._notify("sessionstore_session_updated", session=session)
        stored, new = self._appended(sid, items, now_ms, session, flags)
        return AppendResult(session, stored, new)

    async def append(
        self,
        session_id: str,
        events: Sequence[EventInput | Mapping[str, Any]],
        expected_version: int | None,
        *,
        detailed: bool,
    ) -> tuple[Session, tuple[list[Event], list[bool]] | None]:
        sid = validate_session_id(session_id)
        items = encode_event_inputs(events, self._limits)
        expected = check_expected_version(expected_version)
        now_ms = to_ms(self._writes.clock.now())
        n = len(items)
        keyed = False
        for item in items:
            if item[3] is not None:
                keyed = True
        cached = self._cache.get(sid)
        what = f"append to {session_id}"
        known = ""
        copy: Sequence[Any] = NO_COPY
        mode = "K" if keyed else ""
        args: list[Any] | None = None
        during = None
        made: list[Session] = []
        if cached is not None:
            known = cached.token
            c = cached.session
            ea = None if c.expires_at is None else to_ms(c.expires_at)
            if (expected is None or expected == c.version) and (ea is None or ea > now_ms):
                # what the copy says (append.lua uses it instead of reading the document
                # if the document still is this copy)
                expiry = "" if ea is None else ea + self._grace_ms
                record = "" if self._writes.queued else cached.append_record(now_ms)
                if keyed:
                    copy = (expiry, record, c.version, c.event_count, c.last_seq)
                else:  # number the records here: the script need not build them
                    seq = c.last_seq
                    now_b = b"%d" % now_ms  # numbers as text once each (~1k instructions)
                    now_p = b"%020d" % now_ms
                    args = []
                    for etype, data_json, _, _, at in items:
                        seq += 1
                        seq_b = b"%d" % seq
                        at_b, at_p = (now_b, now_p) if at is None else _at(to_ms(at))
                        args += (seq_b, numbered_record(seq_b, etype, at_b, data_json), at_p)
                    # the header's version, updated_at, event count and last seq after
                    # the append, zero-padded to its width (lua/dochead.lua): the script
                    # writes them as they are (and compares `at` as strings)
                    head = b"%020d%b%020d%020d" % (c.version + 1, now_p, c.event_count + n, seq)
                    copy = (expiry, record, head)
                    mode = "N"

            if not keyed:

                def during() -> None:  # the session the append makes, should the copy be current
                    made.append(self._cache.after_append(cached, from_ms(now_ms), n))

        if args is None:
            args, keyed = _event_args(items, now_ms)
        reply = None
        if sid not in self._writes.groups:  # the common case, without run_on's bookkeeping
            call = self._writes.call(now_ms)
            call.append(self._writes.keys.home(sid), args, expected, known, copy, mode=mode)
            try:
                reply = await self._writes.run(
                    call, idempotent=expected is not None, what=what, during=during
                )
            except Moved as moved:  # a grouped session: follow its stub
                self._writes.remember(sid, moved.group)
        if reply is None:
            reply, _ = await self._writes.run_on(
                sid,
                lambda call, loc: call.append(loc, args, expected, known, copy, mode=mode),
                now_ms,
                idempotent=expected is not None,
                what=what,
            )
        flags: list[Any] | None = reply.results[1] if keyed and not reply.done else None
        result = reply.results[0]
        fresh = 0 if flags is None else sum(1 for f in flags if type(f) is int and f > 0)
        if keyed and flags is not None and fresh == 0:  # nothing new: nothing written
            if type(result) is int:
                if cached is None or result != cached.session.version:
                    self._cache.drop(sid)
                    raise IntegrityError(
                        "the append script's reply does not match the session", sid
                    )
                session = self._cache.copy(cached)
            else:
                session = self._session_of(reply, sid)
        elif type(result) is not int:
            session = await self._written(reply, sid)
        else:
            # the script found the document this store holds a copy of (see _cache.py)
            if cached is None or result != cached.session.version + 1:
                self._cache.drop(sid)
                raise IntegrityError("the append script's reply does not match the session", sid)
            count = n if flags is None else fresh
            session = made[-1] if made else self._cache.after_append(cached, from_ms(now_ms), count)
            self._cache.appended(cached, reply.token, session)
            self._writes.reindex_later([session])
            self._notify("sessionstore_session_updated", session=session)
        if not detailed:
            return session, None
        return session, self._appended(sid, items, now_ms, session, flags)

    @staticmethod
    def _appended(
        sid: str,
        items: Sequence[tuple[str, bytes, Any, str | None, datetime | None]],
        now_ms: int,
        session: Session,
        flags: list[Any] | None,
    ) -> tuple[list[Event], list[bool]]:
        """The stored event and "new" for each appended input (``append_events_detailed``)."""
        at_now = from_ms(now_ms)
        if flags is None:  # no keys (or a retry that found its write): every one is new
            first = session.last_seq - len(items) + 1
            stored = [
                Event(first + i, etype, at_now if at is None else at, copy, key)
                for i, (etype, _, copy, key, at) in enumerate(items)
            ]
            return stored, [True] * len(items)
        out: list[Event] = []
        new: list[bool] = []
        by_seq: dict[int, Event] = {}
        for (etype, _, copy, key, at), flag in zip(items, flags, strict=True):
            if type(flag) is int and flag > 0:
                event = by_seq[flag] = Event(flag, etype, at_now if at is None else at, copy, key)
                new.append(True)
            elif type(flag) is int:
                event = by_seq[-flag]
                new.append(False)
            else:
                event = decode_events([flag], sid)[0]
                new.append(False)
            out.append(event)
        return out, new
