"""Backup and restore: a backup taken from the store (``sessionstore.backup``) restores
into it exactly, under every merge strategy (docs/backup.md, "Restoring").

The restore engine writes through the store's primitives in bulk (``apply`` with
``atomic=False``, a batch of sessions per call), a path ``put_records`` never takes.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from sessionstore import ConfigurationError, SessionExistsError, SessionRecord, SessionStore

from ._harness import ConformanceContext, snapshot, store_test

__all__ = ["BackupTests"]


def _require_primitives(store: SessionStore) -> None:
    """Skip unless the store offers :class:`~sessionstore.driver.StorePrimitives` (what
    backup and restore build on; every ``BaseSessionStore`` does, a wrapper may not)."""
    from sessionstore.driver import primitives_of

    try:
        primitives_of(store)
    except ConfigurationError:
        pytest.skip("backup and restore need the store's primitives (StorePrimitives)")


async def _seeded(ctx: ConformanceContext, records: list[SessionRecord]) -> SessionStore:
    """A store on a fresh namespace holding exactly ``records``."""
    store = await ctx.open_store(ctx.fresh_namespace())
    if records:
        await store.put_records(records)
    return store


def _by_id(records: list[SessionRecord]) -> dict[str, tuple[object, ...]]:
    """id -> (session, events, checkpoints), as lists (a record may hold tuples)."""
    return {r.session.id: (r.session, list(r.events), list(r.checkpoints)) for r in records}


class BackupTests:
    """``create_backup`` then ``restore_from_backup`` on the same driver."""

    @store_test
    async def test_backup_restores_exactly(self, ctx: ConformanceContext) -> None:
        from sessionstore.backup import create_backup, restore_from_backup

        st = ctx.store
        _require_primitives(st)
        a = await st.create_session(id="bk-a", processor_id="p", tags={"x"}, data={"l": [1]})
        await st.append_events(a.id, [{"type": "e", "data": {"i": i}} for i in range(5)])
        await st.trim_events(a.id, keep_last=3)  # a gap before the first kept seq
        await st.save_checkpoint(a.id, label="one")
        ctx.clock.advance(1)
        await st.update_session(a.id, merge_data={"after": True}, metadata={"m": 1})
        await st.create_session(id="bk-b", ttl=50, group="grp")
        await st.create_session(id="bk-c", ttl=1)
        ctx.clock.advance(2)  # bk-c has expired
        source = await snapshot(st)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "all.jsonl"
            info = await create_backup(st, path, include_expired=True)
            assert (info.sessions, info.events, info.checkpoints) == (3, 3, 1)
            target = await ctx.open_store(ctx.fresh_namespace())
            first = await restore_from_backup(target, path, batch_size=2)
            assert (first.restored, first.overwritten, first.skipped) == (3, 0, 0)
            assert (first.events, first.checkpoints) == (3, 1)
            assert await snapshot(target) == source
            s = await target.append_events("bk-a", [{"type": "next"}])
            assert s.last_seq == 6  # the restored log goes on after its last seq
            # into the store it came from: the live ones exist (kept), the expired one
            # counts as absent (written again), and nothing changes
            again = await restore_from_backup(st, path)
            assert (again.restored, again.overwritten, again.skipped) == (1, 0, 2)
            assert await snapshot(st) == source

    async def _restore_cases(
        self, ctx: ConformanceContext
    ) -> tuple[list[SessionRecord], list[SessionRecord]]:
        """(the backup's records, the stored ones): one case of each strategy rule."""
        base = await ctx.store.create_session(id="case-base")
        t = base.updated_at

        def rec(sid: str, seconds: int, version: int, side: str) -> SessionRecord:
            at = t + timedelta(seconds=seconds)
            session = replace(base, id=sid, updated_at=at, version=version, data={"v": side})
            return SessionRecord(session)

        backup = [
            rec("newer", 2, 1, "backup"),  # newer updated_at, lower version: replaces
            rec("older", 1, 9, "backup"),  # older updated_at, higher version: kept
            rec("tie-up", 1, 3, "backup"),  # same updated_at, higher version: replaces
            rec("tie-down", 1, 2, "backup"),  # same updated_at, lower version: kept
            rec("absent", 1, 1, "backup"),  # not stored: written
            rec("expired", 1, 1, "backup"),  # stored but expired: counts as absent
        ]
        stored = [
            rec("newer", 1, 9, "stored"),
            rec("older", 2, 1, "stored"),
            rec("tie-up", 1, 2, "stored"),
            rec("tie-down", 1, 3, "stored"),
        ]
        gone = replace(base, id="expired", data={"v": "stored"}, expires_at=t)
        stored.append(SessionRecord(gone))
        return backup, stored

    @store_test
    async def test_restore_merge_strategies(self, ctx: ConformanceContext) -> None:
        """``skip_existing``, ``overwrite`` and ``update_newer`` (decided by ``updated_at``,
        then ``version``); an expired stored session counts as absent."""
        from sessionstore.backup import create_backup, restore_from_backup

        _require_primitives(ctx.store)
        backup, stored = await self._restore_cases(ctx)
        ctx.clock.advance(1)  # the stored "expired" copy is past its expires_at
        wins = {  # strategy -> the ids whose backup copy ends up stored
            "skip_existing": {"absent", "expired"},
            "overwrite": {"newer", "older", "tie-up", "tie-down", "absent", "expired"},
            "update_newer": {"newer", "tie-up", "absent", "expired"},
        }
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cases.jsonl"
            await create_backup(await _seeded(ctx, backup), path)
            for strategy, won in wins.items():
                for batch_size in (256, 2):
                    target = await _seeded(ctx, stored)
                    result = await restore_from_backup(
                        target, path, merge_strategy=strategy, batch_size=batch_size
                    )
                    where = (strategy, batch_size)
                    assert result.restored == 2, where  # "absent" and "expired"
                    assert result.overwritten == len(won) - 2, where
                    assert result.skipped == 6 - len(won), where
                    want = _by_id(stored)
                    want.update(_by_id([r for r in backup if r.session.id in won]))
                    assert _by_id(await snapshot(target)) == want, where

    @store_test
    async def test_restore_fail_on_conflict_writes_nothing(self, ctx: ConformanceContext) -> None:
        """``fail_on_conflict``: one live stored session of the backup, wherever it sits in
        the file (first, last, in any batch), and nothing is restored."""
        from sessionstore.backup import create_backup, restore_from_backup

        _require_primitives(ctx.store)
        backup, stored = await self._restore_cases(ctx)
        ctx.clock.advance(1)
        expired = next(r for r in stored if r.session.id == "expired")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cases.jsonl"
            await create_backup(await _seeded(ctx, backup), path)
            for clash in backup:
                if clash.session.id == "expired":
                    continue
                for batch_size in (256, 2):
                    target = await _seeded(ctx, [expired, clash])
                    before = await snapshot(target)
                    with pytest.raises(SessionExistsError):
                        await restore_from_backup(
                            target, path, merge_strategy="fail_on_conflict", batch_size=batch_size
                        )
                    assert await snapshot(target) == before, (clash.session.id, batch_size)
            target = await _seeded(ctx, [expired])  # expired only: no conflict
            result = await restore_from_backup(target, path, merge_strategy="fail_on_conflict")
            assert (result.restored, result.overwritten, result.skipped) == (6, 0, 0)
            assert _by_id(await snapshot(target)) == _by_id(backup)
