"""Event-log planning: what the planner must read of a session's stored events.

Ops that remove events (pop, truncate, trim, delete) or append keyed events need facts
about the stored log that a loaded :class:`~sessionstore.Session` does not hold (which
seqs are the newest, which keys are taken). The store reads them before planning, as an
:class:`EventFacts` per session tagged with the session's stored state; the planner
asks for more with :class:`NeedEvents`. Public for drivers through
:mod:`sessionstore.driver`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from .model import Event, Session

__all__ = ["EventFacts", "EventRequest", "LogView", "NeedEvents", "read_event_facts", "session_tag"]

MAX_SEQ: Final = 2**62


@dataclass(slots=True)
class EventRequest:
    """What the planner must know of one session's stored events (read before planning).

    * ``tail`` - the newest ``tail`` events; ``seq_tail`` - the seqs of the newest
      ``seq_tail`` events; ``after`` - for each value, the seqs above it;
      ``seqs`` / ``keys`` - the stored events with these seqs / keys.
    """

    tail: int = 0
    seq_tail: int = 0
    after: set[int] = field(default_factory=set)
    seqs: set[int] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)

    def merge(self, other: EventRequest) -> None:
        """Ask for ``other``'s reads as well."""
        self.tail = max(self.tail, other.tail)
        self.seq_tail = max(self.seq_tail, other.seq_tail)
        self.after |= other.after
        self.seqs |= other.seqs
        self.keys |= other.keys


def session_tag(session: Session | None) -> tuple[int, datetime, int, int] | None:
    """What identifies a stored state of a session (event facts are read at one)."""
    if session is None:
        return None
    return (session.version, session.created_at, session.last_seq, session.event_count)


@dataclass(slots=True)
class EventFacts:
    """Stored events of one session, read at one stored state (``tag``, see
    ``session_tag``): the answers to :class:`EventRequest` s. The planner uses them
    only while the session it loaded has that same tag; the write's version check then
    guarantees nothing changed in between."""

    tag: tuple[int, datetime, int, int] | None
    tail: list[Event] = field(default_factory=list)  # ascending
    tail_n: int = 0
    seq_tail: list[int] = field(default_factory=list)  # ascending
    seq_tail_n: int = 0
    after: dict[int, list[int]] = field(default_factory=dict)
    by_seq: dict[int, Event | None] = field(default_factory=dict)
    by_key: dict[str, Event | None] = field(default_factory=dict)

    def missing(self, req: EventRequest) -> EventRequest | None:
        """The part of ``req`` these facts do not answer (``None``: all answered)."""
        out = EventRequest(
            tail=req.tail if req.tail > self.tail_n else 0,
            seq_tail=req.seq_tail if req.seq_tail > self.seq_tail_n else 0,
            after={a for a in req.after if a not in self.after},
            seqs={q for q in req.seqs if q not in self.by_seq},
            keys={k for k in req.keys if k not in self.by_key},
        )
        if out.tail or out.seq_tail or out.after or out.seqs or out.keys:
            return out
        return None


class NeedEvents(Exception):
    """Raised by the planner when it needs reads of a session's events it was not given;
    the store reads them (:class:`EventFacts`) and plans again."""

    def __init__(self, session_id: str, request: EventRequest) -> None:
        super().__init__(session_id)
        self.session_id = session_id
        self.request = request


@dataclass(slots=True)
class LogView:
    """The batch's changes to one session's stored events (appended ones live in the
    mutation). A stored seq ``q`` is still kept when ``floor <= q <= ceiling`` and ``q``
    is not in ``removed`` (and the log was not ``reset``)."""

    reset: bool = False
    floor: int = 0
    ceiling: int = MAX_SEQ
    removed: set[int] = field(default_factory=set)
    dropped: int = 0  # stored events the batch dropped so far (by any means)

    def kept(self, seq: int) -> bool:
        return not self.reset and self.floor <= seq <= self.ceiling and seq not in self.removed


async def read_event_facts(
    requests: Mapping[str, EventRequest],
    facts: dict[str, EventFacts],
    *,
    load: Callable[[Sequence[str]], Awaitable[Mapping[str, Session]]],
    query_events: Callable[..., Awaitable[list[Event]]],
    load_event_seqs: Callable[..., Awaitable[list[int]]],
    find_events: Callable[..., Awaitable[list[Event]]],
) -> None:
    """Read what ``requests`` ask of the sessions' stored events into ``facts``.

    Each session is loaded first and its facts are tagged with that state: the planner
    uses them only if it loads the same state again, and the write's version check
    covers the rest. The callables are a store's primitives (``_load``,
    ``_query_events``, ``_load_event_seqs``, ``_find_events``).
    """
    loaded = await load(list(requests))
    for sid, req in requests.items():
        tag = session_tag(loaded.get(sid))
        have = facts.get(sid)
        if have is None or have.tag != tag:
            have = facts[sid] = EventFacts(tag)
        if tag is None:
            continue
        missing = have.missing(req)
        if missing is None:
            continue
        if missing.tail:
            have.tail = await query_events(sid, last=missing.tail)
            have.tail_n = missing.tail
        if missing.seq_tail:
            have.seq_tail = await load_event_seqs(sid, last=missing.seq_tail)
            have.seq_tail_n = missing.seq_tail
        for after in sorted(missing.after):
            have.after[after] = await load_event_seqs(sid, after_seq=after)
        if missing.seqs or missing.keys:
            found = await find_events(sid, seqs=sorted(missing.seqs), keys=sorted(missing.keys))
            for q in missing.seqs:
                have.by_seq[q] = None
            for k in missing.keys:
                have.by_key[k] = None
            for e in found:
                if e.seq in missing.seqs:
                    have.by_seq[e.seq] = e
                if e.key is not None and e.key in missing.keys:
                    have.by_key[e.key] = e
