"""The write path of :class:`RedisStore`: a write call's token and retries, following a
grouped session's stub, the stubs themselves, and the generic write (``apply``).

A grouped session is found from its id through a stub at the id's home key. The write
script creating the session writes the stub in the same step when it may touch the home
key (always on a single server and Sentinel; on Cluster only when the id and the group
hash to the same slot); otherwise, or when something already holds the id, the id is
claimed first by a call of its own (``lua/claim.lua``). ``apply`` writes the base
engine's mutations (batches, checkpoints, expiry, restores) in one script over all their
keys.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from redis.crc import key_slot

from sessionstore import (
    Clock,
    IntegrityError,
    Mutation,
    OutcomeUnknownError,
    Session,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    StoreUnavailableError,
    TransactionError,
)
from sessionstore.clock import to_ms
from sessionstore.driver import Limits

from ._cache import DocCache
from ._conn import Backend
from ._keys import Keys, Loc
from ._scripts import CLAIM
from ._write_call import Moved, Unclaimed, WriteCall, raise_failure

if TYPE_CHECKING:
    from ._indexer import IndexQueue

__all__ = ["Reply", "Writes"]

_STATE_ERRORS: Final = (b"CONFLICT", b"NOTFOUND", b"EXISTS")
_MAX_GROUP_CACHE: Final = 100_000


@dataclass(slots=True)
class Reply:
    """What a write script answered."""

    results: list[Any]
    done: bool  # a retried call found its own earlier write applied
    ambiguous: bool  # an earlier attempt's outcome was unknown
    token: str  # the write's token (what the document's "wt" now holds)


class Writes:
    """Runs write scripts for one store: builds a call (token, grace, size limit), runs it
    with retries, follows grouped sessions' stubs, and writes the base engine's mutations.

    It depends on the connection (``backend``), the key layout, the clock and limits, the
    document cache (a generic write drops its sessions' copies), ``index`` (the calling
    loop's index queue, used on Cluster with key layout 3 only) and ``on_conflict`` (the
    store's observer notification for a version conflict)."""

    def __init__(
        self,
        backend: Backend,
        keys: Keys,
        clock: Clock,
        limits: Limits,
        cache: DocCache,
        *,
        cluster: bool,
        grace_ms: int,
        wait_replicas: bool,
        index: Callable[[], IndexQueue],
        on_conflict: Callable[[SessionConflictError], None],
    ) -> None:
        self.backend = backend
        self.keys = keys
        self.clock = clock
        self.cache = cache
        self.cluster = cluster
        self.grace_ms = grace_ms
        self.groups: dict[str, str] = {}  # id -> group of grouped sessions seen
        self._limits = limits
        self._wait_replicas = wait_replicas
        self._index = index
        self._on_conflict = on_conflict
        self._token_prefix = secrets.token_hex(8)
        self._token_seq = itertools.count()
        self._ix_prefix = "" if cluster else keys.index(0)
        self._ix_of: Callable[[Loc], str] | None = None

    def use_layout(self) -> None:
        """Follow the key layout ``keys`` uses (set when the store opens)."""
        if self.cluster and self.keys.colocated:
            self._ix_prefix, self._ix_of = "", self.keys.ix_prefix
        else:
            self._ix_prefix, self._ix_of = ("" if self.cluster else self.keys.index(0)), None

    @property
    def queued(self) -> bool:
        """The index is updated by the client's queue (``_indexer.py``), not by the write
        scripts: Cluster with key layout 3, where a session's keys and its index shard
        live in different slots."""
        return self.cluster and not self.keys.colocated

    # ------------------------------------------------------------------ calls

    def loc(self, sid: str) -> Loc:
        """Where the session is, as far as this store knows (its group, if grouped)."""
        group = self.groups.get(sid)  # (Keys.loc inlined: every operation asks)
        return self.keys.home(sid) if group is None else self.keys.grouped(sid, group)

    def remember(self, sid: str, group: str | None) -> None:
        """Note the group of a session (``None``: not grouped)."""
        if group is None:
            self.groups.pop(sid, None)
            return
        if len(self.groups) >= _MAX_GROUP_CACHE:
            self.groups.clear()
        self.groups[sid] = group

    def call(self, now_ms: int) -> WriteCall:
        """A new write call with its own token."""
        token = f"{self._token_prefix}{next(self._token_seq):x}"
        return WriteCall(
            now_ms,
            self.grace_ms,
            token,
            self._limits.max_session_bytes,
            self._ix_prefix,
            self._ix_of,
        )

    async def run(
        self,
        call: WriteCall,
        *,
        idempotent: bool,
        what: str,
        during: Callable[[], object] | None = None,
    ) -> Reply:
        """Run ``call`` (with retries); ``during`` as in :meth:`Backend.script`."""
        backend = self.backend
        if self._wait_replicas:
            run_script = backend.script_wait

            def attempt() -> Awaitable[Any]:
                if during is not None:  # (no lane call to run it in: before sending)
                    during()
                return run_script(call.script, call.keys, call.args())
        else:
            script = backend.script

            def attempt() -> Awaitable[Any]:  # (the script call's coroutine: no layer)
                return script(call.script, call.keys, call.args(), during)

        reply, ambiguous = await backend.run(attempt, idempotent=idempotent, what=what)
        if type(reply) is not list:  # append.lua's bare success reply
            return Reply([reply], False, ambiguous, call.token)
        tag = reply[0]
        if tag == b"!":
            if ambiguous and reply[1] in _STATE_ERRORS:
                raise OutcomeUnknownError(
                    f"{what}: a retried write found the session changed ({reply[1].decode()}); "
                    "the first attempt may have been applied: re-read the session"
                )
            try:
                raise_failure(reply)
            except SessionConflictError as exc:
                self._on_conflict(exc)
                raise
        if tag == b"DONE":
            return Reply([reply[1]], True, ambiguous, call.token)
        return Reply(reply[1:], False, ambiguous, call.token)

    async def run_on(
        self,
        sid: str,
        build: Callable[[WriteCall, Loc], None],
        now_ms: int,
        *,
        idempotent: bool,
        what: str,
    ) -> tuple[Reply, Loc]:
        """One op on one session, following a grouped session's stub (and a stale cache)."""
        tried: set[str | None] = set()
        while True:
            loc = self.loc(sid)
            tried.add(loc.group)
            call = self.call(now_ms)
            build(call, loc)
            try:
                return await self.run(call, idempotent=idempotent, what=what), loc
            except Moved as moved:
                if moved.group in tried:
                    raise SessionNotFoundError(sid) from None
                self.remember(sid, moved.group)
            except SessionNotFoundError:
                if loc.group is None or None in tried:
                    raise
                self.remember(sid, None)

    async def script(self, script: Any, keys: list[str], args: list[Any], what: str) -> Any:
        """Run a read or claim script (idempotent, retried)."""
        reply, _ = await self.backend.run(
            lambda: self.backend.script(script, keys, args), idempotent=True, what=what
        )
        return reply

    def reindex_later(self, sessions: Sequence[Session]) -> None:
        """Cluster with key layout 3: queue the index records of written sessions
        (elsewhere the write script updated the index itself)."""
        if self.queued:
            self._index().put([index_put(s) for s in sessions])

    async def reindex(self, items: Sequence[tuple[str, list[Any]]]) -> None:
        """Cluster with key layout 3: queue the index update of a write (sent in the
        background, see ``_indexer.py``); elsewhere the write script did it already."""
        if self.queued:
            self._index().put(items)

    # ------------------------------------------------------------------ grouped sessions

    def stub_key(self, loc: Loc) -> str | None:
        """The home doc key of a grouped session when the write script may touch it
        together with the session's keys (always on a single server and Sentinel; on
        Cluster only when both hash to one slot), else ``None``: the id is then claimed
        by a call of its own (``lua/claim.lua``) before the session is written."""
        home = self.keys.home(loc.id).doc
        if not self.cluster or key_slot(home.encode()) == key_slot(loc.doc.encode()):
            return home
        return None

    async def claim(self, sid: str, group: str, now_ms: int) -> None:
        """Point the id's home key at ``group`` (see ``lua/claim.lua``)."""
        home = self.keys.home(sid)
        for _ in range(8):
            reply = await self.script(CLAIM, [home.doc], ["claim", group, now_ms], "claim")
            code = reply[0]
            if code == b"OK":
                return
            if code == b"EXISTS":
                raise SessionExistsError(sid)
            if code == b"EXPIRED":
                await self.delete_expired(home, now_ms)
            elif code == b"PTR":
                other = reply[1].decode()
                await self.delete_expired(self.keys.grouped(sid, other), now_ms)
                args = ["replace", group, now_ms, other]
                if (await self.script(CLAIM, [home.doc], args, "claim"))[0] == b"OK":
                    return
            else:
                raise IntegrityError("the home key of the session is corrupt", sid)
        raise StoreUnavailableError(f"could not claim id {sid!r}: too much contention")

    async def release(self, sid: str, group: str) -> None:
        home = self.keys.home(sid)
        await self.script(CLAIM, [home.doc], ["release", group, 0], "release")

    async def delete_expired(self, loc: Loc, now_ms: int) -> None:
        """Remove the session at ``loc`` if it has expired; SessionExistsError if live."""
        call = self.call(now_ms)
        call.delete(loc, "expired")
        try:
            reply = await self.run(call, idempotent=True, what=f"replace {loc.id}")
        except Moved:
            return
        _, ca, ver = reply.results[0]
        if int(ver):
            await self.reindex([(loc.id, ["D", loc.id, ca, ver])])

    # ------------------------------------------------------------------ generic writes

    def one_slot(self, locs: Sequence[Loc]) -> bool:
        """Whether one write script may write the sessions at ``locs`` together: always
        on a single server and Sentinel; on Cluster when their keys share a hash slot
        (and, with key layout 4, an index shard: two shards' tags may share a slot)."""
        if not self.cluster:
            return True
        slots = {self.backend.client.keyslot(loc.doc) for loc in locs}
        shards = {self.keys.ix_prefix(loc) for loc in locs} if self.keys.colocated else ()
        return len(slots) <= 1 and len(shards) <= 1

    async def apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        if not atomic and len(mutations) > 1:
            for mut in mutations:
                await self.apply([mut], atomic=True)
            return
        now_ms = to_ms(self.clock.now())
        plans: list[tuple[Mutation, str | None, str | None]] = []
        for mut in mutations:
            old = self.groups.get(mut.session_id)
            new = mut.session.group if mut.session is not None and not mut.delete else old
            plans.append((mut, old, new))
        if len(plans) > 1 and not self.one_slot(
            [self.keys.loc(m.session_id, g) for m, _, g in plans]
        ):
            raise TransactionError(
                "a batch over sessions in different hash slots cannot be atomic on Redis "
                "Cluster: create them with one group= to keep them in one slot"
            )
        expects: list[int | str] = []
        stubs: list[str | None] = []
        for mut, old, new in plans:
            expect = mut.expect
            if expect and old != new:  # re-created (or restored) with another group
                await self._relocate(mut.session_id, old, expect, now_ms)
                expect = 0
            stub = None
            if new is not None and expect == 0:
                loc = self.keys.loc(mut.session_id, new)
                stub = self.stub_key(loc)
                if stub is None:  # another slot: claim first (a round trip of its own)
                    await self._claim_for_batch(mut.session_id, new, now_ms)
            expects.append(expect)
            stubs.append(stub)
        try:
            try:
                reply = await self.run(
                    self._batch_call(plans, expects, stubs, now_ms), idempotent=True, what="write"
                )
            except Unclaimed:  # the script could not claim an id: claim apart, then write
                for (mut, _, new), stub in zip(plans, stubs, strict=True):
                    if stub is not None and new is not None:
                        await self._claim_for_batch(mut.session_id, new, now_ms)
                stubs = [None] * len(plans)
                reply = await self.run(
                    self._batch_call(plans, expects, stubs, now_ms), idempotent=True, what="write"
                )
        except Moved as moved:
            await self.delete_expired(self.keys.grouped(moved.session_id, moved.group), now_ms)
            await self.release(moved.session_id, moved.group)
            raise SessionConflictError(moved.session_id, 0, -1) from None
        index: list[tuple[str, list[Any]]] = []
        results = reply.results if not reply.done else [None] * len(plans)
        for (mut, _, new), result in zip(plans, results, strict=True):
            sid = mut.session_id
            self.cache.drop(sid)
            if mut.delete:
                if new is not None:
                    await self.release(sid, new)
                self.remember(sid, None)
                if result is not None:
                    index.append((sid, ["D", sid, result[1], result[2]]))
            else:
                self.remember(sid, new)
                if mut.session is not None:
                    index.append(index_put(mut.session))
        await self.reindex(index)

    def _batch_call(
        self,
        plans: Sequence[tuple[Mutation, str | None, str | None]],
        expects: Sequence[int | str],
        stubs: Sequence[str | None],
        now_ms: int,
    ) -> WriteCall:
        call = self.call(now_ms)
        for (mut, _, new), expect, stub in zip(plans, expects, stubs, strict=True):
            call.mutation(self.keys.loc(mut.session_id, new), mut, expect, stub)
        return call

    async def _claim_for_batch(self, sid: str, group: str, now_ms: int) -> None:
        try:
            await self.claim(sid, group, now_ms)
        except SessionExistsError:
            raise SessionConflictError(sid, 0, -1) from None

    async def _relocate(self, sid: str, old: str | None, expect: int, now_ms: int) -> None:
        call = self.call(now_ms)
        call.delete(self.keys.loc(sid, old), expect)
        reply = await self.run(call, idempotent=True, what=f"replace {sid}")
        _, ca, ver = reply.results[0]
        if old is not None:
            await self.release(sid, old)
        if int(ver):
            await self.reindex([(sid, ["D", sid, ca, ver])])


def index_put(s: Session) -> tuple[str, list[Any]]:
    """The index update of a written session (the record is built when it is sent)."""
    return s.id, ["P", s.id, s]
