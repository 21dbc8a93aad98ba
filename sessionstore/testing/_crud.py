"""CRUD: create, get, update, delete, and exact round trips of every field."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from ulid import ULID

from sessionstore import (
    AppendOp,
    ConfigurationError,
    SerializationError,
    SessionExistsError,
    SessionFilter,
    SessionNotFoundError,
    SessionStore,
    SessionUpdate,
    Status,
    StoreUnavailableError,
    UpdateOp,
)

from ._harness import ConformanceContext, drop_namespace, empty_namespace, store_test

__all__ = ["CrudTests"]


#: Integers are signed 64-bit: these round trip exactly everywhere...
INT64_BOUNDS = {"max": 2**63 - 1, "min": -(2**63), "over_2_53": 2**53 + 1}
#: ...and these are refused everywhere (one past either bound; the unsigned maximum).
INT64_OUTSIDE = (2**63, 2**64 - 1, -(2**63) - 1)


class CrudTests:
    """Create, read, update and delete single sessions."""

    @store_test
    async def test_opened_from_its_url(self, ctx: ConformanceContext) -> None:
        """The store class's ``from_url`` opens the test class's ``store_url`` on its
        namespace; the store reports that URL and reads what it writes, and when it
        declares ``shared_namespace`` a second store opened from the URL sees the same
        data (a private store must not declare it)."""
        namespace = ctx.fresh_namespace()
        url = self.store_url(namespace)  # type: ignore[attr-defined]
        if url is None:
            pytest.skip("the test class gives no store_url")
        assert ctx.store.url is None or isinstance(ctx.store.url, str)  # type: ignore[attr-defined]
        store = type(ctx.store).from_url(url, clock=ctx.clock)  # type: ignore[attr-defined]
        await store.initialize()
        try:
            assert store.url == url
            assert store.namespace == namespace
            s = await store.create_session(data={"via": "url"})
            assert await store.get_session(s.id) == s
            other = type(ctx.store).from_url(url, clock=ctx.clock)  # type: ignore[attr-defined]
            await other.initialize()
            try:
                if store.capabilities.shared_namespace:
                    assert await other.get_session(s.id) == s
            finally:
                await other.shutdown()
        finally:
            await empty_namespace(store)
            await drop_namespace(store)

    @store_test
    async def test_declares_the_expected_capabilities(self, ctx: ConformanceContext) -> None:
        """The store declares exactly the test class's ``expected_capabilities`` (a lost
        capability would otherwise only skip the tests it gates)."""
        expected = getattr(self, "expected_capabilities", None)
        if expected is None:
            pytest.skip("the test class sets no expected_capabilities")
        assert ctx.store.capabilities == expected
        other = await ctx.open_store()
        assert other.capabilities == expected

    @store_test
    async def test_integers_are_signed_64_bit(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        s = await st.create_session(data=INT64_BOUNDS, metadata=INT64_BOUNDS)
        s = await st.append_events(s.id, [{"type": "n", "data": INT64_BOUNDS}])
        cp = await st.save_checkpoint(s.id)
        got = await st.get_session(s.id)
        assert got is not None and got.data == INT64_BOUNDS and got.metadata == INT64_BOUNDS
        assert [e.data for e in await st.get_events(s.id)] == [INT64_BOUNDS]
        assert (await st.get_checkpoint(s.id, cp.id)).data == INT64_BOUNDS
        for key, value in INT64_BOUNDS.items():
            page = await st.list_sessions(SessionFilter(metadata={key: value}))
            assert page.ids == [s.id], key
        for bad in INT64_OUTSIDE:
            with pytest.raises(SerializationError, match="signed 64-bit"):
                await st.create_session(data={"n": bad})
            with pytest.raises(SerializationError, match="signed 64-bit"):
                await st.create_session(metadata={"n": bad})
            with pytest.raises(SerializationError, match="signed 64-bit"):
                await st.update_session(s.id, merge_data={"n": bad})
            with pytest.raises(SerializationError, match="signed 64-bit"):
                await st.append_events(s.id, [{"type": "n", "data": {"n": bad}}])
        assert await st.get_session(s.id) == s  # nothing was written

    @store_test
    async def test_create_defaults(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        assert s.version == 1
        assert s.status is Status.ACTIVE
        assert s.data == {}
        assert s.metadata == {}
        assert s.tags == frozenset()
        assert s.processor_id is None
        assert s.expires_at is None
        assert s.event_count == 0
        assert s.last_seq == 0
        assert s.created_at == s.updated_at == ctx.clock.now()
        assert str(ULID.from_str(s.id)) == s.id  # a canonical ULID
        later = await ctx.store.create_session()
        assert later.id != s.id

    @store_test
    async def test_create_and_get_round_trip_every_field(self, ctx: ConformanceContext) -> None:
        data = {
            "text": "héllo ☃ \u0000 end",
            "empty_list": [],
            "empty_dict": {},
            "nested": {"a": [1, {"b": None}, [True, False]]},
            "big": 2**63 - 1,
            "neg": -(2**63),
            "float": 0.1,
            "neg_zero": -0.0,
            "exp": 1e300,
        }
        expires = ctx.clock.now() + timedelta(hours=1, milliseconds=7)
        s = await ctx.store.create_session(
            id="custom.id-1_x",
            processor_id="agent-7",
            data=data,
            metadata={"user": "u1", "tier": {"name": "gold"}},
            tags={"prod", "eu"},
            status="paused",
            expires_at=expires,
            group="g1",
        )
        got = await ctx.store.get_session("custom.id-1_x")
        assert got == s
        assert got is not None
        assert got.data == data
        assert isinstance(got.data["empty_list"], list)
        assert isinstance(got.data["empty_dict"], dict)
        assert type(got.data["big"]) is int
        assert got.status is Status.PAUSED
        assert got.tags == frozenset({"prod", "eu"})
        assert got.expires_at == expires
        assert got.group == "g1"
        for stamp in (got.created_at, got.updated_at, got.expires_at):
            assert stamp.tzinfo is not None
            assert stamp.utcoffset() == timedelta(0)
            assert stamp.microsecond % 1000 == 0

    @store_test
    async def test_expires_at_other_timezone_is_stored_in_utc(
        self, ctx: ConformanceContext
    ) -> None:
        local = datetime(2031, 5, 1, 12, 0, 0, 123456, tzinfo=UTC).astimezone(
            timezone(timedelta(hours=5))
        )
        s = await ctx.store.create_session(expires_at=local)
        assert s.expires_at == datetime(2031, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
        got = await ctx.store.get_session(s.id)
        assert got is not None
        assert got.expires_at == s.expires_at

    @store_test
    async def test_create_duplicate_id_raises(self, ctx: ConformanceContext) -> None:
        await ctx.store.create_session(id="dup", data={"v": 1})
        with pytest.raises(SessionExistsError):
            await ctx.store.create_session(id="dup", data={"v": 2})
        got = await ctx.store.get_session("dup")
        assert got is not None
        assert got.data == {"v": 1}

    @store_test
    async def test_get_missing_returns_none(self, ctx: ConformanceContext) -> None:
        assert await ctx.store.get_session("nope") is None

    @store_test
    async def test_get_sessions_returns_found_only(self, ctx: ConformanceContext) -> None:
        a = await ctx.store.create_session()
        b = await ctx.store.create_session()
        got = await ctx.store.get_sessions([a.id, "missing", b.id, a.id])
        assert got == {a.id: a, b.id: b}
        assert await ctx.store.get_sessions([]) == {}

    @store_test
    async def test_update_merge_data_is_shallow(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(data={"a": 1, "n": {"x": 1, "y": 2}})
        s = await ctx.store.update_session(s.id, merge_data={"b": 2, "n": {"x": 9}})
        assert s.data == {"a": 1, "b": 2, "n": {"x": 9}}
        assert (await ctx.store.get_session(s.id)) == s

    @store_test
    async def test_update_replace_data_and_metadata(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(data={"a": 1}, metadata={"m": 1})
        s = await ctx.store.update_session(s.id, data={"z": []}, metadata={"k": "v"})
        assert s.data == {"z": []}
        assert s.metadata == {"k": "v"}
        assert (await ctx.store.get_session(s.id)) == s

    @store_test
    async def test_update_merge_and_remove_keys(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(data={"a": 1, "b": 2}, metadata={"x": 1, "y": 2})
        s = await ctx.store.update_session(
            s.id,
            merge_data={"c": None},
            remove_data_keys=["a", "absent"],
            merge_metadata={"z": 3},
            remove_metadata_keys=["x"],
        )
        assert s.data == {"b": 2, "c": None}
        assert s.metadata == {"y": 2, "z": 3}
        assert (await ctx.store.get_session(s.id)) == s

    @store_test
    async def test_update_status_tags_processor(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(processor_id="p1", tags={"a", "b"})
        s = await ctx.store.update_session(
            s.id, status=Status.COMPLETED, add_tags={"c"}, remove_tags={"a"}, processor_id="p2"
        )
        assert s.status is Status.COMPLETED
        assert s.tags == frozenset({"b", "c"})
        assert s.processor_id == "p2"
        s = await ctx.store.update_session(s.id, tags={"only"}, processor_id=None)
        assert s.tags == frozenset({"only"})
        assert s.processor_id is None
        assert (await ctx.store.get_session(s.id)) == s

    @store_test
    async def test_update_sets_updated_at_not_created_at(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        ctx.clock.advance(5)
        s2 = await ctx.store.update_session(s.id, merge_data={"x": 1})
        assert s2.created_at == s.created_at
        assert s2.updated_at == ctx.clock.now()

    @store_test
    async def test_update_missing_raises_not_found(self, ctx: ConformanceContext) -> None:
        with pytest.raises(SessionNotFoundError):
            await ctx.store.update_session("ghost", merge_data={"a": 1})
        with pytest.raises(SessionNotFoundError):
            await ctx.store.touch("ghost", ttl=10)  # not an upsert
        assert await ctx.store.get_session("ghost") is None

    @store_test
    async def test_delete(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        keep = await ctx.store.create_session()
        assert await ctx.store.delete_session(s.id) is True
        assert await ctx.store.get_session(s.id) is None
        assert await ctx.store.delete_session(s.id) is False
        assert await ctx.store.get_session(keep.id) == keep
        assert await ctx.store.count_sessions() == 1

    @store_test
    async def test_deleted_id_can_be_created_again(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(id="again", data={"v": 1})
        await ctx.store.append_events(s.id, [{"type": "x"}])
        await ctx.store.delete_session(s.id)
        s2 = await ctx.store.create_session(id="again", data={"v": 2})
        assert s2.version == 1
        assert s2.event_count == 0
        assert await ctx.store.get_events("again") == []
        assert await ctx.store.list_checkpoints("again") == []

    @store_test
    async def test_delete_leaves_sessions_whose_id_extends_it(
        self, ctx: ConformanceContext
    ) -> None:
        # a delete (or an expiry sweep) removes exactly one session's records, never those
        # of ids it is a prefix of (a key scan by "<id>*")
        ids = ["a", "ab", "a-b", "a.b", "a_", "A", "xa"]
        for sid in ids:
            await ctx.store.create_session(
                id=sid, data={"id": sid}, ttl=10 if sid == "a_" else None
            )
            await ctx.store.append_events(sid, [{"type": "t", "data": {"id": sid}}])
            await ctx.store.save_checkpoint(sid)
        assert await ctx.store.delete_session("a") is True
        ctx.clock.advance(10)
        assert await ctx.store.cleanup_expired_sessions() == 1
        for sid in ("ab", "a-b", "a.b", "A", "xa"):
            got = await ctx.store.get_session(sid)
            assert got is not None and got.data == {"id": sid}, sid
            assert [e.data for e in await ctx.store.get_events(sid)] == [{"id": sid}], sid
            assert len(await ctx.store.list_checkpoints(sid)) == 1, sid
        assert await ctx.store.count_sessions() == 5
        for sid in ("a", "a_"):  # a new session under a removed id starts empty
            await ctx.store.create_session(id=sid)
            assert await ctx.store.get_events(sid) == []
            assert await ctx.store.list_checkpoints(sid) == []

    @store_test
    async def test_ids_are_case_sensitive(self, ctx: ConformanceContext) -> None:
        # "Case-Id" and "case-id" are two sessions (not one under a case-insensitive
        # collation or a case-folded key)
        upper = await ctx.store.create_session(id="Case-Id", data={"who": "upper"})
        assert await ctx.store.get_session("case-id") is None
        assert await ctx.store.get_sessions(["case-id", "CASE-ID"]) == {}
        with pytest.raises(SessionNotFoundError):
            await ctx.store.get_events("case-id")
        lower = await ctx.store.create_session(id="case-id", data={"who": "lower"})
        await ctx.store.append_events(lower.id, [{"type": "t"}])
        assert await ctx.store.get_session(upper.id) == upper
        assert await ctx.store.get_events(upper.id) == []
        found = await ctx.store.list_sessions(SessionFilter(ids=["case-id"]))
        assert found.ids == ["case-id"]
        assert await ctx.store.delete_session("CASE-ID") is False
        assert await ctx.store.delete_session(upper.id) is True
        assert (await ctx.store.get_session("case-id")) is not None

    @store_test
    async def test_large_values_round_trip_exactly(self, ctx: ConformanceContext) -> None:
        # values past the 64 KiB of a MySQL TEXT column, in characters and in bytes, come
        # back whole from every place they are stored
        big = "x" * 70_000 + "\u00e9" * 20_000 + "\U0001f600" * 5_000
        s = await ctx.store.create_session(data={"big": big, "n": 1}, metadata={"m": big})
        got = await ctx.store.get_session(s.id)
        assert got is not None and got.data == {"big": big, "n": 1}
        assert got.metadata == {"m": big}
        s = await ctx.store.append_events(s.id, [{"type": "t", "data": {"big": big}}])
        assert [e.data for e in await ctx.store.get_events(s.id)] == [{"big": big}]
        s = await ctx.store.update_session(s.id, merge_data={"more": big[::-1]})
        cp = await ctx.store.save_checkpoint(s.id)
        assert (await ctx.store.get_checkpoint(s.id, cp.id)).data["more"] == big[::-1]
        got = await ctx.store.get_session(s.id)
        assert got is not None and got.data == {"big": big, "n": 1, "more": big[::-1]}

    @store_test
    async def test_group_survives_every_write(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        s = await st.create_session(id="grouped", group="team-1", ttl=100, data={"a": 1})
        other = await st.create_session(id="plain", ttl=100)
        cp = await st.save_checkpoint(s.id)
        writes: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("merge", lambda: st.update_session(s.id, merge_data={"b": 2})),
            ("replace", lambda: st.update_session(s.id, data={"c": 3}, metadata={"m": 1})),
            ("status", lambda: st.update_session(s.id, status="paused", add_tags={"t"})),
            ("processor", lambda: st.update_session(s.id, processor_id="p", tags={"u"})),
            ("expiry", lambda: st.update_session(s.id, ttl=200)),
            ("append", lambda: st.append_events(s.id, [{"type": "e"}] * 3)),
            ("touch", lambda: st.touch(s.id, ttl=300)),
            ("trim", lambda: st.trim_events(s.id, keep_last=1)),
            ("checkpoint", lambda: st.save_checkpoint(s.id)),
            ("restore", lambda: st.restore_checkpoint(s.id, cp.id)),
            ("commit", lambda: st.commit([UpdateOp(s.id, SessionUpdate(merge_data={"d": 4}))])),
            ("batch_append", lambda: st.commit([AppendOp(s.id, [{"type": "b"}])])),
        ]
        for name, write in writes:
            ctx.clock.advance(1)
            await write()
            got = await st.get_session(s.id)
            assert got is not None and got.group == "team-1", name
            assert (await st.get_session(other.id)).group is None  # type: ignore[union-attr]
            (listed,) = (await st.list_sessions(SessionFilter(ids=[s.id]))).items
            assert listed.group == "team-1", name
        ctx.clock.advance(400)
        assert sorted(await st.expire_sessions()) == sorted([s.id, other.id])
        got = await st.get_session(s.id, include_expired=True)
        assert got is not None and got.group == "team-1"
        (record,) = [
            r async for r in st.scan(filter=SessionFilter(ids=[s.id], include_expired=True))
        ]
        assert record.session.group == "team-1"
        await st.put_records([record], strategy="overwrite")
        again = await st.get_session(s.id, include_expired=True)
        assert again is not None and again.group == "team-1"

    @store_test
    async def test_tags_accept_any_collection(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        a = await st.create_session(tags=("t1", "t2"))
        assert a.tags == frozenset({"t1", "t2"})
        b = await st.create_session(tags=["t3", "t3"])
        assert b.tags == frozenset({"t3"})
        c = await st.create_session(tags=(t for t in ("t4",)))
        assert c.tags == frozenset({"t4"})
        a = await st.update_session(a.id, add_tags=("t5",), remove_tags=("t1",))
        assert a.tags == frozenset({"t2", "t5"})
        a = await st.update_session(a.id, tags=("t6",))
        assert a.tags == frozenset({"t6"})
        a = await st.update_session(a.id, remove_data_keys=("x",), remove_metadata_keys=["y"])
        assert a.tags == frozenset({"t6"})
        for sid, tags in ((a.id, {"t6"}), (b.id, {"t3"}), (c.id, {"t4"})):
            got = await st.get_session(sid)
            assert got is not None and got.tags == frozenset(tags)
        page = await st.list_sessions(SessionFilter(tags_any=("t3", "t4")))
        assert sorted(page.ids) == sorted([b.id, c.id])

    @store_test
    async def test_store_refuses_calls_before_initialize_and_after_shutdown(
        self, ctx: ConformanceContext
    ) -> None:
        namespace = ctx.fresh_namespace()
        made = ctx.suite.make_store(namespace=namespace, clock=ctx.clock)
        fresh: SessionStore = await made if inspect.isawaitable(made) else made
        with pytest.raises(StoreUnavailableError):
            await fresh.create_session()
        with pytest.raises(StoreUnavailableError):
            await fresh.get_session("any")
        async with fresh as entered:
            assert entered is fresh  # `async with store as s` gives the store itself
            s = await fresh.create_session()
            assert await fresh.get_session(s.id) == s
            await fresh.delete_session(s.id)
        with pytest.raises(StoreUnavailableError):
            await fresh.get_session(s.id)
        with pytest.raises(StoreUnavailableError):
            await fresh.create_session()
        with pytest.raises(StoreUnavailableError):
            await fresh.initialize()  # a store that was shut down stays closed
        await ctx.open_store(namespace)  # so the namespace is emptied and dropped at the end

    @store_test
    async def test_store_refuses_a_clock_that_is_not_one(self, ctx: ConformanceContext) -> None:
        """``clock`` is a store option: a value without ``now()`` and async ``sleep()``
        raises ``ConfigurationError`` when the store is made or initialised, never later
        in the middle of a write."""
        for bad in (object(), "2030-01-01", datetime.now(UTC)):
            store: SessionStore | None = None
            with pytest.raises(ConfigurationError):
                made = ctx.suite.make_store(namespace=ctx.fresh_namespace(), clock=bad)  # type: ignore[arg-type]
                store = await made if inspect.isawaitable(made) else made
                await store.initialize()
            if store is not None:
                await store.shutdown()

    @store_test
    async def test_update_each_change_alone(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        s = await st.create_session(data={"a": 1, "b": 2}, metadata={"x": 1, "y": 2})
        steps: list[tuple[dict[str, object], dict[str, object], dict[str, object]]] = [
            ({"merge_data": {"c": 3}}, {"a": 1, "b": 2, "c": 3}, {"x": 1, "y": 2}),
            ({"remove_data_keys": ["a"]}, {"b": 2, "c": 3}, {"x": 1, "y": 2}),
            ({"merge_metadata": {"z": 3}}, {"b": 2, "c": 3}, {"x": 1, "y": 2, "z": 3}),
            ({"remove_metadata_keys": ["x"]}, {"b": 2, "c": 3}, {"y": 2, "z": 3}),
            ({"data": {"only": 1}}, {"only": 1}, {"y": 2, "z": 3}),
            ({"metadata": {}}, {"only": 1}, {}),
            ({"merge_data": {"t": 1}, "merge_metadata": {"m": 2}}, {"only": 1, "t": 1}, {"m": 2}),
            # keys as a tuple (the type of the defaults), then as a set
            ({"remove_data_keys": ("t",)}, {"only": 1}, {"m": 2}),
            ({"remove_metadata_keys": ("m",)}, {"only": 1}, {}),
            ({"merge_data": {"u": 1}}, {"only": 1, "u": 1}, {}),
            ({"remove_data_keys": {"u", "absent"}}, {"only": 1}, {}),
        ]
        for change, data, metadata in steps:
            s = await st.update_session(s.id, **change)  # type: ignore[arg-type]
            assert (s.data, s.metadata) == (data, metadata), change
            assert await st.get_session(s.id) == s
        # as a call of a method without that parameter would
        with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
            await st.create_session(bogus=1)  # type: ignore[call-arg]
        assert await st.count_sessions() == 1

    @store_test
    async def test_update_changes_in_the_documented_order(self, ctx: ConformanceContext) -> None:
        """One update: tags are ``(tags | add_tags) - remove_tags``, data is ``{**data,
        **merge_data}`` less ``remove_data_keys`` (keys, not paths), an empty ``tags`` or
        ``data`` replaces (clears), and an update without changes is still a write."""
        st = ctx.store
        s = await st.create_session(
            data={"k": 1, "a.b": "literal", "a": {"b": "nested"}},
            metadata={"m": 1, "n": {"x": 1, "y": 2}},
            tags={"t", "u"},
        )
        s = await st.update_session(s.id, add_tags={"t", "v"}, remove_tags={"t"})
        assert s.tags == frozenset({"u", "v"})
        s = await st.update_session(s.id, merge_data={"k": 2}, remove_data_keys=["k"])
        assert s.data == {"a.b": "literal", "a": {"b": "nested"}}
        s = await st.update_session(s.id, merge_metadata={"m": 2}, remove_metadata_keys=["m"])
        assert s.metadata == {"n": {"x": 1, "y": 2}}
        s = await st.update_session(s.id, merge_metadata={"n": {"x": 9}})  # shallow
        assert s.metadata == {"n": {"x": 9}}
        s = await st.update_session(s.id, remove_data_keys=["a.b"])
        assert s.data == {"a": {"b": "nested"}}
        s = await st.update_session(s.id, tags=[])
        assert s.tags == frozenset()
        s = await st.update_session(s.id, data={})
        assert s.data == {}
        assert await st.get_session(s.id) == s
        ctx.clock.advance(1)
        again = await st.update_session(s.id)
        assert (again.version, again.updated_at) == (s.version + 1, ctx.clock.now())
        assert await st.get_session(s.id) == again
