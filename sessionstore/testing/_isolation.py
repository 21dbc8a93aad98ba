"""Isolation: returned values are copies; namespaces never leak."""

from __future__ import annotations

import pytest

from sessionstore import AppendOp, QueryOptions, Session, SessionFilter, SessionNotFoundError

from ._harness import ConformanceContext, requires, store_test

__all__ = ["IsolationTests"]


class IsolationTests:
    """What the caller holds is the caller's; what a namespace holds is its own."""

    @store_test
    async def test_returned_values_are_copies(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        s = await st.create_session(data={"list": [1], "obj": {"k": "v"}}, metadata={"m": [1]})
        s.data["list"].append(2)
        s.data["new"] = True
        s.metadata["m"].append(2)
        got = await st.get_session(s.id)
        assert got is not None
        assert got.data == {"list": [1], "obj": {"k": "v"}}
        assert got.metadata == {"m": [1]}
        got.data["obj"]["k"] = "changed"
        again = await st.get_session(s.id)
        assert again is not None
        assert again.data["obj"] == {"k": "v"}
        page = await st.list_sessions()
        page.items[0].data.clear()
        assert (await st.get_session(s.id)) == again
        updated = await st.update_session(s.id, merge_data={"x": {"y": 1}})
        updated.data["x"]["y"] = 2
        assert (await st.get_session(s.id)).data["x"] == {"y": 1}  # type: ignore[union-attr]

    @store_test
    async def test_inputs_are_copied_in(self, ctx: ConformanceContext) -> None:
        data = {"nested": {"a": [1]}}
        s = await ctx.store.create_session(data=data)
        data["nested"]["a"].append(2)
        merge = {"m": [1]}
        await ctx.store.update_session(s.id, merge_data=merge)
        merge["m"].append(2)
        event = {"type": "e", "data": {"v": [1]}}
        await ctx.store.append_events(s.id, [event])
        event["data"]["v"].append(2)  # type: ignore[index]
        got = await ctx.store.get_session(s.id)
        assert got is not None
        assert got.data == {"nested": {"a": [1]}, "m": [1]}
        (stored_event,) = await ctx.store.get_events(s.id)
        assert stored_event.data == {"v": [1]}

    @store_test
    async def test_event_and_checkpoint_values_are_copies(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(data={"d": [1]})
        await ctx.store.append_events(s.id, [{"type": "e", "data": {"v": [1]}}])
        (event,) = await ctx.store.get_events(s.id)
        event.data["v"].append(2)
        assert (await ctx.store.get_events(s.id))[0].data == {"v": [1]}
        cp = await ctx.store.save_checkpoint(s.id)
        cp.data["d"].append(2)
        assert (await ctx.store.get_checkpoint(s.id, cp.id)).data == {"d": [1]}

    @store_test
    async def test_namespaces_never_leak(self, ctx: ConformanceContext) -> None:
        other = await ctx.open_store(ctx.fresh_namespace())
        mine = await ctx.store.create_session(id="shared-id", data={"owner": "me"}, tags={"t"})
        theirs = await other.create_session(id="shared-id", data={"owner": "them"}, tags={"t"})
        await other.create_session(id="only-theirs", processor_id="p")
        assert (await ctx.store.get_session("shared-id")) == mine
        assert (await other.get_session("shared-id")) == theirs
        assert await ctx.store.get_session("only-theirs") is None
        every = SessionFilter(include_expired=True)
        assert (await ctx.store.list_sessions(every, QueryOptions(sort_by="id"))).ids == [
            "shared-id"
        ]
        assert await ctx.store.count_sessions(SessionFilter(processor_id="p")) == 0
        assert (await ctx.store.search_sessions("them")).ids == []
        await other.append_events("shared-id", [{"type": "theirs"}])
        assert await ctx.store.get_events("shared-id") == []
        await ctx.store.delete_session("shared-id")
        assert (await other.get_session("shared-id")) is not None

    @store_test
    @requires("shared_namespace")
    async def test_same_namespace_shares_data(self, ctx: ConformanceContext) -> None:
        twin = await ctx.open_store()
        s = await ctx.store.create_session(data={"x": 1})
        assert await twin.get_session(s.id) == s
        s2 = await twin.update_session(s.id, merge_data={"y": 2})
        assert await ctx.store.get_session(s.id) == s2

    @store_test
    async def test_every_read_path_returns_copies(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        s = await st.create_session(id="iso", data={"d": [1]}, metadata={"m": {"k": "v"}})
        s = await st.append_events(s.id, [{"type": "e", "data": {"v": [1]}}])
        cp = await st.save_checkpoint(s.id)
        original = await st.get_session(s.id)
        assert original is not None

        def spoil(session: Session) -> None:
            session.data["d"].append("spoiled")
            session.data["new"] = 1
            session.metadata["m"]["k"] = "spoiled"

        spoil((await st.get_sessions([s.id]))[s.id])
        spoil((await st.search_sessions("iso")).items[0])
        spoil((await st.list_sessions(SessionFilter(ids=[s.id]))).items[0])
        (listed,) = await st.list_checkpoints(s.id)
        listed.data["d"].append("spoiled")
        listed.metadata["m"]["k"] = "spoiled"
        async for record in st.scan():
            spoil(record.session)
            record.events[0].data["v"].append("spoiled")
            record.checkpoints[0].data["d"].append("spoiled")
        (event,) = await st.get_events(s.id)
        event.data["v"].append("spoiled")
        assert await st.get_session(s.id) == original
        assert await st.get_checkpoint(s.id, cp.id) == cp
        assert (await st.get_events(s.id))[0].data == {"v": [1]}

        results = await st.commit([AppendOp(s.id, [{"type": "e2"}])])
        assert isinstance(results[0], Session)
        spoil(results[0])
        async with st.transaction() as tx:
            await tx.update_session(s.id, add_tags={"t"})
        assert isinstance(tx.results[0], Session)
        spoil(tx.results[0])
        touched = await st.touch(s.id)
        spoil(touched)
        final = await st.get_session(s.id)
        assert final is not None
        assert (final.data, final.metadata) == (original.data, original.metadata)
        assert (await st.list_checkpoints(s.id)) == [cp]
        (record,) = [r async for r in st.scan()]
        assert record.session == final
        assert [e.data for e in record.events] == [{"v": [1]}, {}]

    @store_test
    async def test_namespaces_isolate_events_and_checkpoints(self, ctx: ConformanceContext) -> None:
        other = await ctx.open_store(ctx.fresh_namespace())
        mine = await ctx.store.create_session(id="same", data={"who": "me"})
        theirs = await other.create_session(id="same", data={"who": "them"})
        await ctx.store.append_events("same", [{"type": "m"}] * 3)
        await other.append_events("same", [{"type": "t"}])
        their_cp = await other.save_checkpoint("same", label="theirs")
        assert await ctx.store.list_checkpoints("same") == []
        with pytest.raises(SessionNotFoundError):
            await ctx.store.get_checkpoint("same", their_cp.id)
        with pytest.raises(SessionNotFoundError):
            await ctx.store.restore_checkpoint("same", their_cp.id)
        assert await ctx.store.delete_checkpoint("same", their_cp.id) is False
        my_cp = await ctx.store.save_checkpoint("same", label="mine", keep_last=1)
        assert await other.list_checkpoints("same") == [their_cp]  # not pruned by mine
        assert [e.type for e in await ctx.store.get_events("same")] == ["m"] * 3
        assert [e.seq for e in await other.get_events("same")] == [1]
        await other.trim_events("same", keep_last=0)
        assert len(await ctx.store.get_events("same")) == 3
        assert (await ctx.store.get_session("same")).last_seq == 3  # type: ignore[union-attr]
        await other.delete_session("same")
        assert await ctx.store.list_checkpoints("same") == [my_cp]
        assert len(await ctx.store.get_events("same")) == 3
        again = await other.create_session(id="same")
        assert await other.list_checkpoints("same") == []
        assert await other.get_events("same") == []
        assert mine.id == theirs.id == again.id
        assert [r.session.id async for r in other.scan()] == ["same"]
        (record,) = [r async for r in ctx.store.scan()]
        assert [c.label for c in record.checkpoints] == ["mine"]
        assert len(record.events) == 3
