"""Building calls of ``lua/write.lua`` and reading its replies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import orjson

from sessionstore import (
    UNSET,
    EventKeyConflictError,
    IntegrityError,
    Mutation,
    QuotaExceededError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    UnsupportedFormatError,
)
from sessionstore.clock import to_ms
from sessionstore.codec import MAX_SESSION, checkpoint_to_record, dumps_record
from sessionstore.planning import Prepared

from ._encoding import event_args, json_pairs, new_document
from ._keys import Loc
from ._scripts import APPEND, CREATE, WRITE, Script

__all__ = ["NO_COPY", "Moved", "Unclaimed", "WriteCall", "raise_failure"]

_MS = timedelta(milliseconds=1)
#: ``WriteCall.append``'s ``after`` when the client holds no usable copy.
NO_COPY: Final = ("", "", "", "", "")


class Unclaimed(Exception):
    """The script could not claim a grouped session's id in the same step (another
    session or stub holds it, or its home key is corrupt): claim it apart (internal)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.session_id = session_id


class Moved(Exception):
    """The id's home key is a stub: the session lives in ``group`` (internal)."""

    def __init__(self, session_id: str, group: str) -> None:
        super().__init__(session_id, group)
        self.session_id = session_id
        self.group = group


def _n(items: Sequence[Any]) -> list[Any]:
    return [len(items), *items]


def _np(flat: Sequence[Any]) -> list[Any]:
    return [len(flat) // 2, *flat]


def _ms(value: datetime | None) -> str:
    return "" if value is None else str(to_ms(value))


class WriteCall:
    """The keys and arguments of one call of the write script (or of ``lua/append.lua``)."""

    __slots__ = (
        "count",
        "grace_ms",
        "index_prefix",
        "ix_of",
        "keys",
        "locs",
        "max_bytes",
        "now_ms",
        "ops",
        "script",
        "token",
    )

    def __init__(
        self,
        now_ms: int,
        grace_ms: int,
        token: str,
        max_bytes: int,
        index_prefix: str,
        ix_of: Callable[[Loc], str] | None = None,
    ) -> None:
        self.now_ms = now_ms
        self.grace_ms = grace_ms
        self.token = token
        self.max_bytes = max_bytes
        self.index_prefix = index_prefix
        #: key layout 4 (Cluster): the index prefix is the first session's shard's (every
        #: session of one call shares its slot, so its shard: ``Writes.apply`` checks)
        self.ix_of = ix_of
        self.keys: list[str] = []
        self.ops: list[Any] = []
        self.count = 0
        self.locs: list[Loc] = []
        self.script: Script = WRITE

    def args(self) -> list[Any]:
        """ARGV of the call."""
        if self.script is APPEND:
            return [self.grace_ms, self.index_prefix, *self.ops]
        if self.script is CREATE:
            return self.ops
        head = [self.now_ms, self.grace_ms, self.token, self.max_bytes, self.index_prefix]
        return [*head, self.count, *self.ops]

    def _op(
        self,
        kind: str,
        loc: Loc,
        expect: int | str | None,
        payload: list[Any],
        home: str | None = None,
    ) -> None:
        base = len(self.keys) + 1
        self.keys += [loc.doc, loc.events, loc.ckpt, loc.etypes, loc.ekeys]
        stub: int | str = ""
        if home is not None:  # the id's home key, where the script writes the stub
            self.keys.append(home)
            stub = base + 5
        if self.ix_of is not None and not self.locs:
            self.index_prefix = self.ix_of(loc)
        self.locs.append(loc)
        self.ops += [kind, base, loc.id, loc.group or "", "" if expect is None else expect, stub]
        self.ops += payload
        self.count += 1

    def create(self, loc: Loc, p: Prepared, expires_ms: str, home: str | None = None) -> None:
        """A create; ``home`` (a grouped session's home doc key) makes the script claim
        the id's stub in the same step (only where one script may touch both slots)."""
        assert p.data is not None and p.metadata is not None and p.status is not None
        pid = p.processor_id if isinstance(p.processor_id, str) else ""
        self._op(
            "C",
            loc,
            None,
            [
                expires_ms,
                p.status.value,
                pid,
                *_n(sorted(p.tags)),
                *_np(json_pairs(p.data[1])),
                *_np(json_pairs(p.metadata[1])),
            ],
            home,
        )

    def create_one(
        self, loc: Loc, p: Prepared, expires_ms: int | None, *, fresh: bool = False
    ) -> None:
        """A create without a group: its own script (``lua/create.lua``), with the
        document string (``lua/doc.lua``) made here, ready for one ``SET``. ``fresh``: the
        id was generated for this create (a new ULID), so no key of it can exist: the
        script gets the document's key alone and clears no other."""
        assert p.data is not None and p.metadata is not None and p.status is not None
        self.script = CREATE
        self.keys = [loc.doc] if fresh else [loc.doc, loc.events, loc.ckpt, loc.etypes, loc.ekeys]
        if self.ix_of is not None and not self.locs:
            self.index_prefix = self.ix_of(loc)
        self.locs.append(loc)
        self.count = 1
        pid = p.processor_id if isinstance(p.processor_id, str) else None
        tags = sorted(p.tags)
        doc = new_document(
            loc.id,
            self.now_ms,
            self.token,
            p.status.value,
            pid,
            expires_ms,
            tags,
            p.data[1],
            p.metadata[1],
        )
        expiry: int | str = "" if expires_ms is None else expires_ms + self.grace_ms
        self.ops = [self.now_ms, self.token, self.index_prefix, loc.id, p.status.value, doc]
        self.ops += (expiry, "" if expires_ms is None else expires_ms, pid or "", *tags)

    def document(self) -> bytes:
        """The document string a :meth:`create_one` call stores."""
        doc: bytes = self.ops[5]
        return doc

    def update(self, loc: Loc, p: Prepared, expect: int | None) -> None:
        payload: list[Any] = []
        for replace, merge, remove in (
            (p.data, p.merge_data, p.remove_data_keys),
            (p.metadata, p.merge_metadata, p.remove_metadata_keys),
        ):
            if replace is not None:
                payload += ["R", *_np(json_pairs(replace[1])), 0]
            else:
                flat = json_pairs(merge) if merge is not None else []
                payload += ["M", *_np(flat), *_n([orjson.dumps(k) for k in remove])]
        payload.append(p.status.value if p.status is not None else "")
        if p.processor_id is UNSET:
            payload += ["", ""]
        elif p.processor_id is None:
            payload += ["N", ""]
        else:
            payload += ["S", p.processor_id]
        if p.replace_tags is not None:
            payload += ["R", *_n(sorted(p.replace_tags)), 0]
        elif p.add_tags or p.remove_tags:
            payload += ["A", *_n(sorted(p.add_tags)), *_n(sorted(p.remove_tags))]
        else:
            payload += ["", 0, 0]
        if p.ttl is not None:
            payload += ["S", self.now_ms + p.ttl // _MS]
        elif p.expires_at is UNSET:
            payload += ["", ""]
        elif p.expires_at is None:
            payload += ["N", ""]
        else:
            assert isinstance(p.expires_at, datetime)
            payload += ["S", to_ms(p.expires_at)]
        self._op("U", loc, expect, payload)

    def append(
        self,
        loc: Loc,
        events: Sequence[Any],
        expect: int | None,
        known: str,
        copy: Sequence[Any] = NO_COPY,
        *,
        mode: str = "",
    ) -> None:
        """An ``append_events`` call: its own script (``lua/append.lua``). ``known`` is
        the token of the document the client holds a copy of (``_cache.py``), or ``""``;
        ``copy`` what that copy says (the events keys' PEXPIREAT, the index record after
        the append, then with ``mode`` ``"N"`` the header's first 80 bytes the append
        leaves, with ``"K"`` the copy's version, event count and last seq; see the
        script), used by the script only if the document still is that copy. ``mode``
        says how ``events`` are sent: ``"N"`` numbered from the copy (three arguments
        per event: seq, record, at), ``"K"`` (some event has a key) or ``""`` five
        arguments per event (``_encoding.event_args``)."""
        self.script = APPEND
        self.keys = [loc.doc, loc.events, loc.etypes, loc.ekeys]
        if self.ix_of is not None and not self.locs:
            self.index_prefix = self.ix_of(loc)
        self.locs.append(loc)
        self.count = 1
        e = "" if expect is None else expect
        self.ops = [loc.id, self.now_ms, self.token, e, known, copy[0], copy[1], mode]
        self.ops += copy[2:]
        self.ops += events

    def append_with(
        self,
        loc: Loc,
        events: Sequence[Any],
        expect: int | None,
        *,
        keyed: bool,
        create: Prepared | None,
        expiry: tuple[str, Any],
        force: bool,
    ) -> None:
        """An append that creates the session when it is missing (``create``: the
        create's prepared fields) and/or sets its expiry (``expiry``: ``("S", ms)``,
        ``("N", "")`` or ``("", "")``; ``force``: write even if nothing else changes, as
        a ``ttl`` does). ``events`` as for :meth:`append`."""
        payload: list[Any] = []
        if create is None:
            payload.append("")
        else:
            assert create.data is not None and create.metadata is not None
            assert create.status is not None
            pid = create.processor_id if isinstance(create.processor_id, str) else ""
            expires: Any = ""
            if create.ttl is not None:
                expires = self.now_ms + create.ttl // _MS
            elif isinstance(create.expires_at, datetime):
                expires = to_ms(create.expires_at)
            payload += [
                "c",
                expires,
                create.status.value,
                pid,
                *_n(sorted(create.tags)),
                *_np(json_pairs(create.data[1])),
                *_np(json_pairs(create.metadata[1])),
            ]
        payload += [*expiry, "1" if force else "", "1" if keyed else "", *_n(events)]
        self._op("A", loc, expect, payload)

    def touch(self, loc: Loc, expires_ms: int | None, expect: int | None) -> None:
        self._op("T", loc, expect, ["", ""] if expires_ms is None else ["S", expires_ms])

    def trim(self, loc: Loc, keep_last: int, expect: int | None) -> None:
        self._op("R", loc, expect, [keep_last])

    def pop(self, loc: Loc, n: int, expect: int | None) -> None:
        """Remove the newest ``n`` events (the result is the document and the records)."""
        self._op("P", loc, expect, [n])

    def truncate(self, loc: Loc, after_seq: int, expect: int | None) -> None:
        self._op("X", loc, expect, [after_seq])

    def delete_events(
        self, loc: Loc, seqs: Sequence[int], keys: Sequence[str], expect: int | None
    ) -> None:
        """Remove events by seq and by key (missing ones are ignored)."""
        self._op("E", loc, expect, [*_n(seqs), *_n([orjson.dumps(k) for k in keys])])

    def delete(self, loc: Loc, expect: int | str | None) -> None:
        """``expect="expired"`` deletes only a session that has expired."""
        self._op("D", loc, expect, [])

    def mutation(self, loc: Loc, mut: Mutation, expect: int | str, home: str | None = None) -> None:
        """A generic mutation. ``expect`` is the stored version, or a merge strategy of
        ``put_records`` decided in the script: ``"skip"``, ``"over"`` or ``"newer"``.
        ``home``: as in :meth:`create`, for a grouped session written anew."""
        flags = ("d" if mut.delete else "") + ("r" if mut.reset else "")
        s = mut.session
        payload: list[Any] = []
        if s is not None and not mut.delete:
            flags += "s"
            payload += [
                to_ms(s.created_at),
                to_ms(s.updated_at),
                _ms(s.expires_at),
                s.status.value,
                s.processor_id or "",
                s.event_count,
                s.last_seq,
                *_n(sorted(s.tags)),
                *_np(json_pairs(s.data)),
                *_np(json_pairs(s.metadata)),
            ]
        events: list[Any] = []
        for e in mut.append:
            data_json = orjson.dumps(e.data)
            events.append(e.seq)
            events += event_args(e.type, to_ms(e.at), e.key, e.data, data_json)
        cps: list[Any] = []
        for cp in mut.put_checkpoints:
            cps += [cp.id, dumps_record(checkpoint_to_record(cp))]
        payload += [
            *_n(events),
            mut.trim_before or "",
            "" if mut.truncate_after is None else mut.truncate_after,
            *_n(mut.delete_seqs),
            *_np(cps),
            *_n(mut.delete_checkpoints),
        ]
        newver = s.version if s is not None and not mut.delete else ""
        self._op("F", loc, expect, [flags, newver, *payload], home)


def raise_failure(reply: Sequence[Any]) -> None:
    """Raise the typed error of a ``{'!', code, id, a, b}`` reply."""
    code = reply[1].decode()
    sid = reply[2].decode()
    a, b = reply[3].decode(), reply[4].decode()
    if code == "CONFLICT":
        raise SessionConflictError(sid, int(a or 0), int(b or 0))
    if code == "NOTFOUND":
        raise SessionNotFoundError(sid)
    if code == "EXISTS":
        raise SessionExistsError(sid)
    if code == "PTR":
        raise Moved(sid, a)
    if code == "CLAIM":
        raise Unclaimed(sid)
    if code == "QUOTA":
        raise QuotaExceededError(
            f"session {sid!r} would be {a} bytes encoded, over the limit of {b}",
            option=MAX_SESSION,
        )
    if code == "FORMAT":
        raise UnsupportedFormatError(
            "the stored session was written by a newer sessionstore; upgrade to change it", sid
        )
    if code == "EVKEY":
        raise EventKeyConflictError(sid, orjson.loads(a))
    raise IntegrityError("the stored session document is corrupt", sid)
