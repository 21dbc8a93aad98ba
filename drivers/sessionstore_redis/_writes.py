"""Grouped sessions' stubs and the generic write path (``_apply``) of :class:`RedisStore`.

A grouped session is found from its id through a stub at the id's home key. The write
script creating the session writes the stub in the same step when it may touch the home
key (always on a single server and Sentinel; on Cluster only when the id and the group
hash to the same slot); otherwise, or when something already holds the id, the id is
claimed first by a call of its own (``lua/claim.lua``). ``_apply`` writes the base
engine's mutations (batches, checkpoints, expiry, restores) in one script over all their
keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.crc import key_slot

from sessionstore import (
    IntegrityError,
    Mutation,
    SessionConflictError,
    SessionExistsError,
    StoreUnavailableError,
    TransactionError,
)
from sessionstore.clock import to_ms

from ._keys import Keys, Loc
from ._ops import Moved, Unclaimed, WriteCall
from ._scripts import CLAIM

if TYPE_CHECKING:
    from sessionstore import Clock, Session

    from ._cache import DocCache
    from ._conn import Backend

__all__ = ["WritesMixin"]


class WritesMixin:
    """Stubs of grouped sessions and ``_apply``."""

    if TYPE_CHECKING:
        clock: Clock
        _backend: Backend
        _keys: Keys
        _cluster: bool
        _groups: dict[str, str]
        _cache: DocCache

        def _call(self, now_ms: int) -> WriteCall: ...
        def _remember(self, sid: str, group: str | None) -> None: ...
        def _index_put(self, s: Session) -> tuple[str, list[Any]]: ...
        async def _exec(self, call: WriteCall, *, idempotent: bool, what: str) -> Any: ...
        async def _reindex(self, items: Sequence[tuple[str, list[Any]]]) -> None: ...
        async def _script(
            self, script: Any, keys: list[str], args: list[Any], what: str
        ) -> Any: ...

    # ------------------------------------------------------------------ grouped sessions

    def _stub_key(self, loc: Loc) -> str | None:
        """The home doc key of a grouped session when the write script may touch it
        together with the session's keys (always on a single server and Sentinel; on
        Cluster only when both hash to one slot), else ``None``: the id is then claimed
        by a call of its own (``lua/claim.lua``) before the session is written."""
        home = self._keys.home(loc.id).doc
        if not self._cluster or key_slot(home.encode()) == key_slot(loc.doc.encode()):
            return home
        return None

    async def _claim(self, sid: str, group: str, now_ms: int) -> None:
        """Point the id's home key at ``group`` (see ``lua/claim.lua``)."""
        home = self._keys.home(sid)
        for _ in range(8):
            reply = await self._script(CLAIM, [home.doc], ["claim", group, now_ms], "claim")
            code = reply[0]
            if code == b"OK":
                return
            if code == b"EXISTS":
                raise SessionExistsError(sid)
            if code == b"EXPIRED":
                await self._delete_expired(home, now_ms)
            elif code == b"PTR":
                other = reply[1].decode()
                await self._delete_expired(self._keys.grouped(sid, other), now_ms)
                args = ["replace", group, now_ms, other]
                if (await self._script(CLAIM, [home.doc], args, "claim"))[0] == b"OK":
                    return
            else:
                raise IntegrityError("the home key of the session is corrupt", sid)
        raise StoreUnavailableError(f"could not claim id {sid!r}: too much contention")

    async def _release(self, sid: str, group: str) -> None:
        home = self._keys.home(sid)
        await self._script(CLAIM, [home.doc], ["release", group, 0], "release")

    async def _delete_expired(self, loc: Loc, now_ms: int) -> None:
        """Remove the session at ``loc`` if it has expired; SessionExistsError if live."""
        call = self._call(now_ms)
        call.delete(loc, "expired")
        try:
            reply = await self._exec(call, idempotent=True, what=f"replace {loc.id}")
        except Moved:
            return
        _, ca, ver = reply.results[0]
        if int(ver):
            await self._reindex([(loc.id, ["D", loc.id, ca, ver])])

    # ------------------------------------------------------------------ generic writes

    async def _apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        if not atomic and len(mutations) > 1:
            for mut in mutations:
                await self._apply([mut], atomic=True)
            return
        now_ms = to_ms(self.clock.now())
        plans: list[tuple[Mutation, str | None, str | None]] = []
        for mut in mutations:
            old = self._groups.get(mut.session_id)
            new = mut.session.group if mut.session is not None and not mut.delete else old
            plans.append((mut, old, new))
        if self._cluster and len(plans) > 1:
            slots = {
                self._backend.client.keyslot(self._keys.loc(m.session_id, g).doc)
                for m, _, g in plans
            }
            if len(slots) > 1:
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
                loc = self._keys.loc(mut.session_id, new)
                stub = self._stub_key(loc)
                if stub is None:  # another slot: claim first (a round trip of its own)
                    await self._claim_for_batch(mut.session_id, new, now_ms)
            expects.append(expect)
            stubs.append(stub)
        try:
            try:
                reply = await self._exec(
                    self._batch_call(plans, expects, stubs, now_ms), idempotent=True, what="write"
                )
            except Unclaimed:  # the script could not claim an id: claim apart, then write
                for (mut, _, new), stub in zip(plans, stubs, strict=True):
                    if stub is not None and new is not None:
                        await self._claim_for_batch(mut.session_id, new, now_ms)
                stubs = [None] * len(plans)
                reply = await self._exec(
                    self._batch_call(plans, expects, stubs, now_ms), idempotent=True, what="write"
                )
        except Moved as moved:
            await self._delete_expired(self._keys.grouped(moved.session_id, moved.group), now_ms)
            await self._release(moved.session_id, moved.group)
            raise SessionConflictError(moved.session_id, 0, -1) from None
        index: list[tuple[str, list[Any]]] = []
        results = reply.results if not reply.done else [None] * len(plans)
        for (mut, _, new), result in zip(plans, results, strict=True):
            sid = mut.session_id
            self._cache.drop(sid)
            if mut.delete:
                if new is not None:
                    await self._release(sid, new)
                self._remember(sid, None)
                if result is not None:
                    index.append((sid, ["D", sid, result[1], result[2]]))
            else:
                self._remember(sid, new)
                if mut.session is not None:
                    index.append(self._index_put(mut.session))
        await self._reindex(index)

    def _batch_call(
        self,
        plans: Sequence[tuple[Mutation, str | None, str | None]],
        expects: Sequence[int | str],
        stubs: Sequence[str | None],
        now_ms: int,
    ) -> WriteCall:
        call = self._call(now_ms)
        for (mut, _, new), expect, stub in zip(plans, expects, stubs, strict=True):
            call.mutation(self._keys.loc(mut.session_id, new), mut, expect, stub)
        return call

    async def _claim_for_batch(self, sid: str, group: str, now_ms: int) -> None:
        try:
            await self._claim(sid, group, now_ms)
        except SessionExistsError:
            raise SessionConflictError(sid, 0, -1) from None

    async def _relocate(self, sid: str, old: str | None, expect: int, now_ms: int) -> None:
        call = self._call(now_ms)
        call.delete(self._keys.loc(sid, old), expect)
        reply = await self._exec(call, idempotent=True, what=f"replace {sid}")
        _, ca, ver = reply.results[0]
        if old is not None:
            await self._release(sid, old)
        if int(ver):
            await self._reindex([(sid, ["D", sid, ca, ver])])
