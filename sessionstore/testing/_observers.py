"""Observer hooks: every write tells the registered plugins what it did, and only that."""

from __future__ import annotations

from typing import Any

import sessionstore
from sessionstore import CreateOp, NewSession, Session

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
