"""Isolation: returned values are copies; namespaces never leak."""

from __future__ import annotations

from sessionstore import QueryOptions, SessionFilter

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
