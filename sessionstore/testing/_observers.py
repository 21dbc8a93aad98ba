"""Observer hooks: every write tells the registered plugins what it did, and only that."""

from __future__ import annotations

from typing import Any

import sessionstore
from sessionstore import Session

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
        finally:
            pm.unregister(recorder)
        calls = [call for call in recorder.calls if call[1] == s.id]  # this test's session
        assert calls == [
            ("created", s.id),
            ("updated", s.id),
            ("updated", s.id),
            ("deleted", s.id),
        ]
