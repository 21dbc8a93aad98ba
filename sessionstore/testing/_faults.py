"""Fault injection (optional): a corrupt stored record is refused by reads, skipped by scans.

A test class opts in by implementing :meth:`FaultTests.corrupt`, which damages one stored
session document, event log or checkpoint so that it can no longer be decoded (as a torn
write, a bad disk or a hand edit would). Classes that do not implement it skip these
tests, saying so.
"""

from __future__ import annotations

from typing import Literal

import pytest

from sessionstore import IntegrityError, Session, SessionNotFoundError, SessionStore

from ._harness import ConformanceContext, store_test

__all__ = ["CorruptKind", "FaultTests"]

CorruptKind = Literal["session", "events", "checkpoint", "checkpoint_content", "checkpoint_moved"]


class FaultTests:
    """Reads refuse a corrupt record with :class:`IntegrityError`; scans skip and report it."""

    async def corrupt(
        self,
        store: SessionStore,
        kind: CorruptKind,
        session_id: str,
        checkpoint_id: str | None = None,
    ) -> None:
        """Damage one stored record of ``session_id`` so that it cannot be decoded.

        ``kind`` is ``"session"`` (the document), ``"events"`` (one event of its log),
        ``"checkpoint"`` (``checkpoint_id``, made undecodable) or ``"checkpoint_content"``
        (a value of ``checkpoint_id``'s ``data`` edited, still valid JSON: only its digest
        tells) or ``"checkpoint_moved"`` (``checkpoint_id``'s record replaced by a copy of
        the record of another checkpoint of the same session, valid and with its digest:
        only the id it names tells; raise ``NotImplementedError`` for a kind you do
        not offer, and its test is skipped). Override to enable the fault-injection tests.
        """
        raise NotImplementedError

    async def _corrupt_or_skip(
        self, ctx: ConformanceContext, kind: CorruptKind, sid: str, cp_id: str | None = None
    ) -> None:
        try:
            await self.corrupt(ctx.store, kind, sid, cp_id)
        except NotImplementedError:
            pytest.skip(f"the test class's corrupt() hook does not offer {kind!r} (faults)")

    async def _three(self, ctx: ConformanceContext) -> str:
        for sid in ("fa", "fb", "fc"):
            await ctx.store.create_session(id=sid, data={"x": sid}, tags={"t"})
            await ctx.store.append_events(sid, [{"type": "e", "data": {"i": i}} for i in range(3)])
        cp = await ctx.store.save_checkpoint("fb", label="cp")
        return cp.id

    async def _skipped_by_scan(self, ctx: ConformanceContext) -> None:
        scanned = sorted([r.session.id async for r in ctx.store.scan()])
        assert scanned == ["fa", "fc"]
        if hasattr(ctx.store, "corrupt_records"):  # a store that offers it reports the skip
            reported = ctx.store.corrupt_records
            assert any("fb" in name for name in reported), reported
        fresh = await ctx.store.create_session(data={"still": "working"})
        assert await ctx.store.get_session(fresh.id) == fresh
        assert await ctx.store.get_events("fa") != []

    async def _bad_checkpoint_refused(
        self, ctx: ConformanceContext, cp_id: str, before: Session | None
    ) -> None:
        """The bad checkpoint ``cp_id`` of "fb" is refused (``IntegrityError``) when read
        and when restored, and the session is left as it was."""
        with pytest.raises(IntegrityError):
            await ctx.store.get_checkpoint("fb", cp_id)
        with pytest.raises(IntegrityError):
            await ctx.store.restore_checkpoint("fb", cp_id)
        assert await ctx.store.get_session("fb") == before  # nothing restored

    async def _bad_checkpoint_left_out(self, ctx: ConformanceContext, cp_id: str) -> None:
        """A scan (so a backup) carries "fb" without the bad checkpoint ``cp_id``, and the
        listing leaves it out."""
        records = {r.session.id: r async for r in ctx.store.scan()}
        assert sorted(records) == ["fa", "fb", "fc"]
        assert cp_id not in [c.id for c in records["fb"].checkpoints]
        assert cp_id not in [c.id for c in await ctx.store.list_checkpoints("fb")]

    @store_test
    async def test_corrupt_session_refused_and_skipped(self, ctx: ConformanceContext) -> None:
        await self._three(ctx)
        await self._corrupt_or_skip(ctx, "session", "fb")
        with pytest.raises(IntegrityError):
            await ctx.store.get_session("fb")
        with pytest.raises(IntegrityError):
            await ctx.store.get_sessions(["fa", "fb"])
        with pytest.raises(IntegrityError):
            await ctx.store.update_session("fb", merge_data={"y": 1})
        assert (await ctx.store.get_session("fa")) is not None
        await self._skipped_by_scan(ctx)

    @store_test
    async def test_corrupt_event_refused_and_skipped(self, ctx: ConformanceContext) -> None:
        await self._three(ctx)
        await self._corrupt_or_skip(ctx, "events", "fb")
        with pytest.raises(IntegrityError):
            await ctx.store.get_events("fb")
        await self._skipped_by_scan(ctx)

    @store_test
    async def test_corrupt_checkpoint_refused_and_skipped(self, ctx: ConformanceContext) -> None:
        cp_id = await self._three(ctx)
        before = await ctx.store.get_session("fb")
        await self._corrupt_or_skip(ctx, "checkpoint", "fb", cp_id)
        await self._bad_checkpoint_refused(ctx, cp_id, before)
        # one bad checkpoint blocks neither its session nor a scan (so nor a backup): the
        # session is scanned without it, the checkpoint is reported, the listing keeps
        # the healthy ones and a new checkpoint can be saved
        await self._bad_checkpoint_left_out(ctx, cp_id)
        if hasattr(ctx.store, "corrupt_records"):
            reported = ctx.store.corrupt_records
            assert any(cp_id in name for name in reported), reported
        fresh = await ctx.store.save_checkpoint("fb", label="after")
        assert [c.id for c in await ctx.store.list_checkpoints("fb")] == [fresh.id]
        # deleting it is how a caller gets rid of it: found (True), then gone
        assert await ctx.store.delete_checkpoint("fb", cp_id) is True
        with pytest.raises(SessionNotFoundError):
            await ctx.store.get_checkpoint("fb", cp_id)
        assert await ctx.store.delete_checkpoint("fb", cp_id) is False
        assert [c.id for c in await ctx.store.list_checkpoints("fb")] == [fresh.id]

    @store_test
    async def test_edited_checkpoint_refused(self, ctx: ConformanceContext) -> None:
        cp_id = await self._three(ctx)
        before = await ctx.store.get_session("fb")
        await self._corrupt_or_skip(ctx, "checkpoint_content", "fb", cp_id)
        await self._bad_checkpoint_refused(ctx, cp_id, before)
        # a scan (so a backup) never carries it: its record leaves the checkpoint out
        await self._bad_checkpoint_left_out(ctx, cp_id)
        fresh = await ctx.store.save_checkpoint("fa")  # other sessions are not affected
        assert await ctx.store.get_checkpoint("fa", fresh.id) == fresh

    @store_test
    async def test_checkpoint_naming_another_refused(self, ctx: ConformanceContext) -> None:
        """A valid checkpoint record stored under another checkpoint's id (a misplaced
        file, a wrong hash field) is not that checkpoint: reading it by the id it is
        stored under raises ``IntegrityError``, never returns the other one."""
        cp_id = await self._three(ctx)
        other = await ctx.store.save_checkpoint("fb", label="other")
        await ctx.store.update_session("fb", merge_data={"after": True})
        before = await ctx.store.get_session("fb")
        await self._corrupt_or_skip(ctx, "checkpoint_moved", "fb", cp_id)
        await self._bad_checkpoint_refused(ctx, cp_id, before)
        assert await ctx.store.get_checkpoint("fb", other.id) == other
        listed = await ctx.store.list_checkpoints("fb")
        assert [c.id for c in listed] == [other.id], listed
        records = {r.session.id: r async for r in ctx.store.scan()}
        assert [c.id for c in records["fb"].checkpoints] == [other.id]
