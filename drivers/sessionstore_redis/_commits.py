"""``commit`` of :class:`RedisStore` in one round trip when the batch is updates and
appends: each op goes to ``lua/write.lua`` as it is (its ``U`` and ``A`` ops, the ones
``update_session`` and an append that sets an expiry send), and the script checks and
applies them all or none. The base engine's path reads the sessions (and an append's
keyed events) first, plans the new documents in Python and writes them whole: four
round trips for an update and a keyed append of one session (ADK's ``append_event``).

A session may have one update and one append in the batch (the script checks the later
against the head the earlier leaves); any other batch, a batch whose sessions a Cluster
cannot write in one call, and Cluster with key layout 3 (whose index the client
maintains) take the base engine's path. So does a batch whose first op is not an update
with an ``expected_version``: a retry after a lost reply must find out whether its first
attempt was applied, from the first op's session. An update always leaves the call's
token there (an append of events already stored writes nothing), and its version check
refuses the retry if another write came in between (see ``docs/decisions.md``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sessionstore import (
    UNSET,
    AppendOp,
    IntegrityError,
    OutcomeUnknownError,
    Session,
    SessionNotFoundError,
    StoreUnavailableError,
    UpdateOp,
)
from sessionstore.clock import to_ms
from sessionstore.driver import Limits
from sessionstore.planning import Prepared

from ._appends import AppendPart
from ._cache import DocCache
from ._encoding import Doc, decode_full
from ._keys import Loc
from ._write_call import Moved, WriteCall
from ._writes import Writes

__all__ = ["Commits"]

_CREATED = "sessionstore_session_created"
_UPDATED = "sessionstore_session_updated"
#: calls a commit may take to find its sessions (a stub followed, a stale group dropped)
_ATTEMPTS = 4


def _changes_expiry_or_creates(p: Prepared) -> bool:
    return p.ttl is not None or p.expires_at is not UNSET or p.create is not None


class Commits:
    """One-call commits of one store through its :class:`Writes`; ``fetch`` reads
    sessions (the store's ``_fetch``: after a retried call found its first attempt
    applied), ``notify`` calls the store's observers."""

    def __init__(
        self,
        writes: Writes,
        cache: DocCache,
        limits: Limits,
        *,
        fetch: Callable[[Sequence[str]], Awaitable[dict[str, Session]]],
        notify: Callable[..., None],
    ) -> None:
        self._writes = writes
        self._cache = cache
        self._limits = limits
        self._fetch = fetch
        self._notify = notify

    def takes(self, prepared: Sequence[Prepared]) -> bool:
        """Whether :meth:`commit` can write ``prepared`` in one call (see the module)."""
        if self._writes.queued or not prepared:
            return False
        if type(prepared[0].op) is not UpdateOp or prepared[0].expected_version is None:
            return False
        first: dict[str, Prepared] = {}
        pair: set[str] = set()
        for p in prepared:
            op = type(p.op)
            if op is AppendOp:
                if p.create is not None and p.create.group is not None:
                    return False  # (its id's stub may need a claim of its own)
            elif op is not UpdateOp:
                return False
            earlier = first.get(p.session_id)
            if earlier is None:
                first[p.session_id] = p
                continue
            if p.session_id in pair or type(earlier.op) is op:
                return False
            if _changes_expiry_or_creates(earlier) or _changes_expiry_or_creates(p):
                return False
            pair.add(p.session_id)
        return True

    async def commit(self, prepared: Sequence[Prepared]) -> list[Session | bool] | None:
        """The ops' results, in order, as the base engine's ``commit`` returns them; or
        ``None`` when the sessions turn out to be in different Cluster slots (the base
        engine's path then reports that). Only for a batch :meth:`takes`."""
        writes = self._writes
        now_ms = to_ms(writes.clock.now())
        parts = self.parts(prepared, now_ms)
        ids = list(dict.fromkeys(p.session_id for p in prepared))
        tried: dict[str, set[str | None]] = {}
        for _ in range(_ATTEMPTS):
            locs = {sid: writes.loc(sid) for sid in ids}
            if len(locs) > 1 and not writes.one_slot(list(locs.values())):
                return None
            call = self.call(prepared, parts, locs, now_ms)
            try:
                reply = await writes.run(call, idempotent=True, what="commit")
            except Moved as moved:  # a grouped session: follow its stub
                self._retry(moved.session_id, moved.group, locs, tried)
                continue
            except SessionNotFoundError as exc:  # the group this store knew is gone?
                if not self._retry(exc.session_id, None, locs, tried):
                    raise
                continue
            if reply.done:  # an earlier attempt was applied: read what it made
                return await self._applied(prepared)
            return self._results(prepared, parts, reply.results)
        raise StoreUnavailableError("commit: the sessions kept moving between groups")

    def parts(self, prepared: Sequence[Prepared], now_ms: int) -> list[AppendPart | None]:
        """Each append's events encoded (``None`` for an update)."""
        return [
            AppendPart.of(p, self._limits, now_ms) if type(p.op) is AppendOp else None
            for p in prepared
        ]

    def call(
        self,
        prepared: Sequence[Prepared],
        parts: Sequence[AppendPart | None],
        locs: dict[str, Loc],
        now_ms: int,
    ) -> WriteCall:
        """The ``write.lua`` call of the batch, its sessions at ``locs``."""
        call = self._writes.call(now_ms)
        for p, part in zip(prepared, parts, strict=True):
            loc = locs[p.session_id]
            if part is None:
                call.update(loc, p, p.expected_version)
            else:
                part.add_to(call, loc, p)
        return call

    def _retry(
        self,
        sid: str,
        group: str | None,
        locs: dict[str, Loc],
        tried: dict[str, set[str | None]],
    ) -> bool:
        """Note that ``sid`` lives in ``group`` and say whether to try again: not when
        that place was tried already (``SessionNotFoundError`` for a stub; ``False``
        for a session not found at its only place)."""
        loc = locs.get(sid)
        if loc is None:
            raise IntegrityError("the write script named a session the commit has not", sid)
        seen = tried.setdefault(sid, {loc.group})
        if group in seen:
            if group is not None:
                raise SessionNotFoundError(sid)
            return False
        seen.add(group)
        self._writes.remember(sid, group)
        return True

    def _results(
        self, prepared: Sequence[Prepared], parts: Sequence[AppendPart | None], replies: list[Any]
    ) -> list[Session | bool]:
        results: list[Session | bool] = []
        # each session after its last op: the only document of it cached (an update
        # followed by an append leaves two documents with the call's token)
        final: dict[str, Doc] = {}
        hooks: dict[str, str] = {}  # the observers' hook of each session written
        for p, part, reply in zip(prepared, parts, replies, strict=True):
            sid = p.session_id
            hook = _UPDATED
            if part is None:
                doc = self._doc(reply, sid)
            else:
                blob, flags, created = reply
                doc = self._doc(blob, sid)
                if created == b"1":
                    self._writes.remember(sid, None)
                    hook = _CREATED
                elif not (
                    any(type(f) is int and f > 0 for f in flags)
                    or p.ttl is not None
                    or p.expires_at is not UNSET
                ):
                    hook = ""  # every event already stored: nothing written
            results.append(doc.session)
            final[sid] = doc
            if hook and hooks.get(sid) != _CREATED:
                hooks[sid] = hook
        for sid, doc in final.items():
            self._cache.put(doc.token, doc.session, doc.data, doc.metadata)
            if sid in hooks:
                self._notify(hooks[sid], session=doc.session)
        return results

    @staticmethod
    def _doc(blob: Any, sid: str) -> Doc:
        doc = decode_full(blob, sid)
        if not isinstance(doc, Doc):
            raise IntegrityError("the write script returned no session document", sid)
        return doc

    async def _applied(self, prepared: Sequence[Prepared]) -> list[Session | bool]:
        """The results of a commit whose earlier attempt was applied (its reply lost):
        each session as it is now. An update followed by an append of the same session
        gets the session after both (its own result is not known any more)."""
        ids = list(dict.fromkeys(p.session_id for p in prepared))
        found = await self._fetch(ids)
        for sid in ids:
            if sid not in found:
                raise OutcomeUnknownError(
                    f"commit: a retried write found its first attempt applied, and "
                    f"{sid!r} gone since; re-read the sessions"
                )
        for sid in ids:  # (their observers have not heard of the write yet)
            self._notify(_UPDATED, session=found[sid])
        return [found[p.session_id] for p in prepared]
