"""Observer hooks: every write tells the registered plugins what it did, and only that."""

from __future__ import annotations

from typing import Any

import pytest

import sessionstore
from sessionstore import (
    Checkpoint,
    CreateOp,
    EventInput,
    NewSession,
    Session,
    SessionConflictError,
)

from ._harness import ConformanceContext, store_test

__all__ = ["ObserverTests"]


class _Recorder:
    """Records (hook, session id) of the session lifecycle hooks (any store: a wrapper
    such as the sync facade notifies with the store it wraps)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    @sessionstore.hookimpl
    def sessionstore_session_created(self, store: Any, session: Session) -> None:
        self.calls.append(("created", session.id))

    @sessionstore.hookimpl
    def sessionstore_session_updated(self, store: Any, session: Session) -> None:
        self.calls.append(("updated", session.id))

    @sessionstore.hookimpl
    def sessionstore_session_deleted(self, store: Any, session_id: str) -> None:
        self.calls.append(("deleted", session_id))

    @sessionstore.hookimpl
    def sessionstore_session_expired(self, store: Any, session_id: str) -> None:
        self.calls.append(("expired", session_id))


class _PayloadRecorder:
    """Records every session, conflict and checkpoint hook with what it was handed."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @sessionstore.hookimpl
    def sessionstore_session_created(self, store: Any, session: Session) -> None:
        self.calls.append(("created", session))

    @sessionstore.hookimpl
    def sessionstore_session_updated(self, store: Any, session: Session) -> None:
        self.calls.append(("updated", session))

    @sessionstore.hookimpl
    def sessionstore_session_deleted(self, store: Any, session_id: str) -> None:
        self.calls.append(("deleted", session_id))

    @sessionstore.hookimpl
    def sessionstore_conflict(
        self, store: Any, session_id: str, expected: int, actual: int
    ) -> None:
        self.calls.append(("conflict", (session_id, expected, actual)))

    @sessionstore.hookimpl
    def sessionstore_checkpoint_created(self, store: Any, checkpoint: Checkpoint) -> None:
        self.calls.append(("checkpoint", checkpoint))

    def take(self, session_id: str) -> list[tuple[str, Any]]:
        """The calls about ``session_id`` since the last ``take``."""
        calls, self.calls = self.calls, []
        return [call for call in calls if _about(call) == session_id]


def _about(call: tuple[str, Any]) -> str:
    payload = call[1]
    if isinstance(payload, str):
        return payload
    if isinstance(payload, tuple):
        return str(payload[0])
    return str(payload.session_id if isinstance(payload, Checkpoint) else payload.id)


class ObserverTests:
    """``sessionstore_session_created/updated/deleted`` fire once per write, for the
    right session, with the right hook."""

    @store_test
    async def test_writes_fire_the_matching_hook(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        recorder = _Recorder()
        pm = sessionstore.plugin_manager()
        pm.register(recorder)
        try:
            s = await st.create_session()
            await st.update_session(s.id, merge_data={"a": 1})
            await st.append_events(s.id, [{"type": "e"}])
            assert await st.delete_session(s.id) is True
            # a create with its id and one in a batch: planned writes, not the fast path
            await st.create_session(id="hook-id")
            await st.commit([CreateOp(NewSession(id="hook-batch"))])
        finally:
            pm.unregister(recorder)
        calls = [call for call in recorder.calls if call[1] == s.id]  # this test's session
        assert calls == [
            ("created", s.id),
            ("updated", s.id),
            ("updated", s.id),
            ("deleted", s.id),
        ]
        for sid in ("hook-id", "hook-batch"):
            assert [call for call in recorder.calls if call[1] == sid] == [("created", sid)]

    @store_test
    async def test_put_records_fire_created_or_updated(self, ctx: ConformanceContext) -> None:
        """``put_records`` fires ``created`` for a session it adds and ``updated`` for one
        it replaces (docs/backup.md, "Hooks")."""
        s = await ctx.store.create_session(id="copied", data={"v": 1})
        records = [r async for r in ctx.store.scan() if r.session.id == s.id]
        other = await ctx.open_store(ctx.fresh_namespace())
        recorder = _Recorder()
        pm = sessionstore.plugin_manager()
        pm.register(recorder)
        try:
            assert (await other.put_records(records)).created == 1
            assert (await other.put_records(records, strategy="overwrite")).overwritten == 1
        finally:
            pm.unregister(recorder)
        assert [call for call in recorder.calls if call[1] == s.id] == [
            ("created", s.id),
            ("updated", s.id),
        ]

    @store_test
    async def test_expired_fires_once_per_session(self, ctx: ConformanceContext) -> None:
        """``sessionstore_session_expired`` fires once for a session that passed its
        expiry: when ``expire_sessions`` marks it, or when ``cleanup_expired_sessions``
        removes it unmarked; removing one already marked does not fire it again."""
        st = ctx.store
        recorder = _Recorder()
        pm = sessionstore.plugin_manager()
        pm.register(recorder)
        try:
            marked = await st.create_session(id="exp-marked", ttl=1)
            ctx.clock.advance(2)
            assert await st.expire_sessions() == [marked.id]
            unmarked = await st.create_session(id="exp-unmarked", ttl=1)
            ctx.clock.advance(2)
            assert await st.cleanup_expired_sessions() == 2
        finally:
            pm.unregister(recorder)
        ours = {marked.id, unmarked.id}
        expired = [c for c in recorder.calls if c[0] == "expired" and c[1] in ours]
        assert expired == [("expired", marked.id), ("expired", unmarked.id)]

    @store_test
    async def test_event_and_checkpoint_writes_fire_once_with_what_was_written(
        self, ctx: ConformanceContext
    ) -> None:
        """Each write fires its hook once, with the session (or checkpoint) it wrote and
        returned: an append that creates its session fires ``created``; an append that
        writes nothing (its keyed events are stored already) fires nothing; a write refused
        by ``expected_version`` fires ``sessionstore_conflict`` only; a saved checkpoint
        fires ``sessionstore_checkpoint_created``."""
        st = ctx.store
        keyed = st.capabilities.event_log
        recorder = _PayloadRecorder()
        pm = sessionstore.plugin_manager()
        pm.register(recorder)
        try:
            made = await st.append_events("hooked", [{"type": "first"}], create=True)
            assert recorder.take("hooked") == [("created", made)]
            ctx.clock.advance(1)
            appended = await st.append_events(made.id, [EventInput("e", {"n": 1})])
            assert recorder.take(made.id) == [("updated", appended)]
            if keyed:
                once = EventInput("k", {"n": 2}, key="once")
                appended = await st.append_events(made.id, [once])
                assert recorder.take(made.id) == [("updated", appended)]
                assert await st.append_events(made.id, [once]) == appended  # a retry
                assert recorder.take(made.id) == []
                popped = await st.pop_events(made.id)
                assert recorder.take(made.id) == [("updated", popped.session)]
                appended = popped.session
            with pytest.raises(SessionConflictError):
                await st.append_events(made.id, [{"type": "late"}], expected_version=1)
            assert recorder.take(made.id) == [("conflict", (made.id, 1, appended.version))]
            with pytest.raises(SessionConflictError):
                await st.update_session(made.id, data={}, expected_version=1)
            assert recorder.take(made.id) == [("conflict", (made.id, 1, appended.version))]
            cp = await st.save_checkpoint(made.id, label="hooked")
            assert recorder.take(made.id) == [("checkpoint", cp)]
            restored = await st.restore_checkpoint(made.id, cp.id)
            assert recorder.take(made.id) == [("updated", restored)]
        finally:
            pm.unregister(recorder)
