"""The DESIGN §1a flow, verbatim, on memory://."""

from __future__ import annotations

import pytest

from sessionstore import QueryOptions, SessionFilter, open_store


@pytest.mark.asyncio
async def test_design_flow_runs_on_memory() -> None:
    async with open_store("memory://") as store:
        s = await store.create_session(
            processor_id="agent-7",
            data={"goal": "triage"},
            tags={"prod"},
            metadata={"user": "u1"},
            ttl=3600,
        )
        s = await store.update_session(s.id, merge_data={"step": 2}, expected_version=s.version)
        await store.append_events(s.id, [{"type": "tool_call", "data": {"name": "search"}}])
        recent = await store.get_events(s.id, last=20)
        assert [e.type for e in recent] == ["tool_call"]
        page = await store.list_sessions(
            SessionFilter(processor_id="agent-7", tags_all={"prod"}),
            QueryOptions(sort_by="updated_at", order="desc", limit=50),
        )
        assert page.ids == [s.id]
        async with store.transaction() as tx:
            await tx.update_session(s.id, status="completed", expected_version=s.version + 1)
            child = await tx.create_session(processor_id="agent-7", data={"parent": s.id})
        done = await store.get_session(s.id)
        assert done is not None
        assert done.status == "completed"
        assert done.version == 4
        created = await store.get_session(child)
        assert created is not None
        assert created.data == {"parent": s.id}
