"""What the saver promises beyond LangGraph's suite: a step appends and never rewrites,
re-delivered writes are stored once, runs, copies and prunes keep graphs working, and
bad input is refused with typed errors."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from datetime import timedelta
from typing import Any

import pytest
from delta_spec import build_delta_chain
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from scenarios import delta_graph, review_graph
from sessionstore_langgraph import SessionStoreSaver, _records, thread_session_id
from sessionstore_langgraph._ids import (
    CAPPED_TAG,
    MAX_THREAD_TAGS,
    TAG_PREFIX,
    blob_key,
    namespace_key,
)
from sessionstore_memory import MemoryStore

from sessionstore import (
    Capabilities,
    ConfigurationError,
    Event,
    ManualClock,
    SessionStore,
    open_store,
)
from sessionstore.sync import BlockingCallError


def _config(thread: str, **extra: Any) -> RunnableConfig:
    return {"configurable": {"thread_id": thread}, **extra}  # type: ignore[typeddict-item]


async def _events(store: SessionStore, thread: str) -> list[Event]:
    return await store.get_events(thread_session_id(thread))


async def test_a_step_appends_and_never_rewrites_what_is_stored(
    adapter_store: SessionStore,
) -> None:
    saver = SessionStoreSaver(adapter_store)
    graph = delta_graph(saver)
    await graph.ainvoke({"messages": ["hi"], "turns": 0}, _config("t"))
    before = await _events(adapter_store, "t")
    for turn in range(1, 4):
        await graph.ainvoke({"messages": [f"m{turn}"], "turns": turn}, _config("t"))
    after = await _events(adapter_store, "t")
    assert after[: len(before)] == before  # every earlier event kept as it was
    session = await adapter_store.get_session(thread_session_id("t"))
    assert session is not None and session.processor_id == "langgraph"
    assert session.metadata == {"thread_id": "t"}


async def test_put_writes_only_the_channels_that_changed(adapter_store: SessionStore) -> None:
    saver = SessionStoreSaver(adapter_store)
    cp = empty_checkpoint()
    cp["channel_values"] = {"big": ["x"] * 100, "small": 1}
    cp["channel_versions"] = {"big": "1", "small": "1"}
    first = await saver.aput(_config("t"), cp, {"step": 0}, {"big": "1", "small": "1"})
    cp2 = empty_checkpoint()
    cp2["channel_values"] = {"big": ["x"] * 100, "small": 2}
    cp2["channel_versions"] = {"big": "1", "small": "2"}
    count = len(await _events(adapter_store, "t"))
    second = await saver.aput(first, cp2, {"step": 1}, {"small": "2"})
    added = (await _events(adapter_store, "t"))[count:]
    # the checkpoint's mark and the checkpoint, which carries the small value inline
    assert [e.type for e in added] == ["lg.mk", added[-1].type]
    assert set(added[-1].data["iv"]) == {"small"}  # not the big one, unchanged
    cp3 = empty_checkpoint()
    cp3["channel_values"] = {"big": ["y"] * 100, "small": 2}
    cp3["channel_versions"] = {"big": "2", "small": "2"}
    count = len(await _events(adapter_store, "t"))
    await saver.aput(second, cp3, {"step": 2}, {"big": "2"})
    added = (await _events(adapter_store, "t"))[count:]
    assert [e.type for e in added] == ["lg.blob", "lg.mk", added[-1].type]
    tup = await saver.aget_tuple(second)
    assert tup is not None and tup.checkpoint["channel_values"] == cp2["channel_values"]


async def test_re_delivered_writes_are_stored_once(adapter_store: SessionStore) -> None:
    saver = SessionStoreSaver(adapter_store)
    stored = await saver.aput(_config("t"), empty_checkpoint(), {}, {})
    for _ in range(3):
        await saver.aput_writes(stored, [("a", 1), ("b", {"x": [1, 2]})], "task-1", "p")
    writes = [e for e in await _events(adapter_store, "t") if e.type.startswith("lg.w.")]
    assert len(writes) == 1
    # the same task and index written again with another value keeps the first value
    await saver.aput_writes(stored, [("a", 99)], "task-1", "p")
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert sorted(tup.pending_writes or []) == [("task-1", "a", 1), ("task-1", "b", {"x": [1, 2]})]


async def test_a_checkpoint_put_again_with_new_content_replaces_it(
    adapter_store: SessionStore,
) -> None:
    saver = SessionStoreSaver(adapter_store)
    cp = empty_checkpoint()
    cp["channel_values"] = {"a": "old"}
    cp["channel_versions"] = {"a": 1}
    stored = await saver.aput(_config("t"), cp, {"step": 1}, {"a": 1})
    cp["channel_values"] = {"a": "new"}
    await saver.aput(_config("t"), cp, {"step": 2}, {"a": 1})
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert tup.checkpoint["channel_values"] == {"a": "new"}
    assert tup.metadata["step"] == 2
    assert len([t async for t in saver.alist(_config("t"))]) == 1


async def test_a_sync_twin_called_from_a_running_loop_refuses(adapter_store: SessionStore) -> None:
    with SessionStoreSaver(adapter_store) as saver, pytest.raises(BlockingCallError):
        saver.get_tuple(_config("t"))


async def test_listing_all_threads_gives_the_newest_first(adapter_store: SessionStore) -> None:
    saver = SessionStoreSaver(adapter_store)
    for thread in ("old", "middle", "new"):
        await saver.aput(_config(thread), empty_checkpoint(), {"source": "input"}, {})
        await asyncio.sleep(0.003)  # updated_at has millisecond precision
    got = [t.config["configurable"]["thread_id"] async for t in saver.alist(None, limit=2)]
    assert got == ["new", "middle"]
    filtered = [t async for t in saver.alist(None, filter={"source": "loop"})]
    assert filtered == []


async def test_deleting_a_run_keeps_the_other_runs_working(adapter_store: SessionStore) -> None:
    saver = SessionStoreSaver(adapter_store)
    graph = delta_graph(saver)
    run_1, run_2 = str(uuid.uuid4()), str(uuid.uuid4())
    await graph.ainvoke({"messages": ["a"], "turns": 0}, _config("t", metadata={"run_id": run_1}))
    await graph.ainvoke(
        {"messages": ["b"], "turns": 1}, _config("other", metadata={"run_id": run_1})
    )
    await graph.ainvoke({"messages": ["c"], "turns": 2}, _config("t", metadata={"run_id": run_2}))
    state = await graph.aget_state(_config("t"))
    await saver.adelete_for_runs([run_1])
    runs = {t.metadata.get("run_id") async for t in saver.alist(_config("t"))}
    assert runs == {run_2}
    assert [t async for t in saver.alist(_config("other"))] == []
    assert (await graph.aget_state(_config("t"))).values == state.values


async def test_prune_keeps_a_delta_channel_rebuildable(adapter_store: SessionStore) -> None:
    saver = SessionStoreSaver(adapter_store)
    graph = delta_graph(saver)
    for turn in range(7):
        await graph.ainvoke({"messages": [f"m{turn}"], "turns": turn}, _config("t"))
    state = (await graph.aget_state(_config("t"))).values
    before = len(await _events(adapter_store, "t"))
    await saver.aprune(["t"], strategy="keep_latest")
    assert len(await _events(adapter_store, "t")) < before
    assert (await graph.aget_state(_config("t"))).values == state
    result = await graph.ainvoke({"messages": ["after"], "turns": 9}, _config("t"))
    assert result["messages"] == [*state["messages"], "after", "reply-9"]


async def test_prune_keep_latest_keeps_one_checkpoint_without_delta_channels(
    adapter_store: SessionStore,
) -> None:
    saver = SessionStoreSaver(adapter_store)
    graph = review_graph(saver)
    await graph.ainvoke({"log": ["start"], "approved": ""}, _config("t"))
    state = await graph.aget_state(_config("t"))
    await saver.aprune(["t"])
    assert len([t async for t in saver.alist(_config("t"))]) == 1
    assert (await graph.aget_state(_config("t"))).values == state.values


async def test_a_copied_thread_goes_on_by_itself(adapter_store: SessionStore) -> None:
    saver = SessionStoreSaver(adapter_store)
    graph = delta_graph(saver)
    for turn in range(5):
        await graph.ainvoke({"messages": [f"m{turn}"], "turns": turn}, _config("src"))
    await saver.acopy_thread("src", "dst")
    source = (await graph.aget_state(_config("src"))).values
    assert (await graph.aget_state(_config("dst"))).values == source
    await graph.ainvoke({"messages": ["only-dst"], "turns": 50}, _config("dst"))
    assert (await graph.aget_state(_config("src"))).values == source
    assert (await graph.aget_state(_config("dst"))).values["messages"][-2:] == [
        "only-dst",
        "reply-50",
    ]


class _WithoutEventLog(MemoryStore):
    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(super().capabilities, event_log=False)


def test_a_store_without_the_event_log_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="event_log"):
        SessionStoreSaver(_WithoutEventLog())


async def test_bad_prune_arguments_are_refused(adapter_store: SessionStore) -> None:
    saver = SessionStoreSaver(adapter_store)
    with pytest.raises(ValueError, match="strategy"):
        await saver.aprune(["t"], strategy="keep_some")
    with pytest.raises(TypeError, match="sequence"):
        await saver.aprune("t")


def test_next_versions_increase_and_never_repeat() -> None:
    saver = SessionStoreSaver.__new__(SessionStoreSaver)
    versions = [saver.get_next_version(None, None)]
    for _ in range(50):
        versions.append(saver.get_next_version(versions[-1], None))
    assert versions == sorted(versions)
    assert len({saver.get_next_version(versions[3], None) for _ in range(20)}) == 20
    assert saver.get_next_version(7, None).startswith("0" * 31 + "8.")


async def test_a_value_too_big_for_one_event_is_split_and_rebuilt(
    adapter_store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_records, "CHUNK", 64)
    saver = SessionStoreSaver(adapter_store)
    graph = review_graph(saver)
    await graph.ainvoke({"log": [f"line {i}" for i in range(40)], "approved": ""}, _config("t"))
    blobs = [e for e in await _events(adapter_store, "t") if e.type == "lg.blob"]
    assert any("n" in e.data for e in blobs)
    state = await graph.aget_state(_config("t"))
    assert state.values["log"][:40] == [f"line {i}" for i in range(40)]
    await saver.aprune(["t"])
    assert (await graph.aget_state(_config("t"))).values == state.values


async def test_a_long_value_is_stored_compressed_and_read_back(
    adapter_store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    saver = SessionStoreSaver(adapter_store)
    messages = [f"message {i}: the quick brown fox jumps over the lazy dog" for i in range(500)]
    noise = os.urandom(4096)  # incompressible: stored as it is
    monkeypatch.setattr(_records, "CHUNK", 1024)  # and split over several events
    cp = empty_checkpoint()
    cp["channel_values"] = {"messages": messages, "noise": noise}
    cp["channel_versions"] = {"messages": "1", "noise": "1"}
    config = await saver.aput(_config("t"), cp, {"step": 0}, {"messages": "1", "noise": "1"})
    blobs = {
        e.key: e.data for e in await _events(adapter_store, "t") if e.type == "lg.blob" and e.key
    }
    first = {ch: blob_key("", ch, "1") for ch in ("messages", "noise")}
    assert blobs[first["messages"]].get("z") == 1 and "z" not in blobs[first["noise"]]
    stored = sum(len(str(d["b"])) for k, d in blobs.items() if k.startswith(first["messages"]))
    assert stored * 5 < len(saver.serde.dumps_typed(messages)[1])
    assert blobs[first["noise"]]["n"] > 1
    tup = await saver.aget_tuple(config)
    assert tup is not None and tup.checkpoint["channel_values"] == {
        "messages": messages,
        "noise": noise,
    }


async def test_threads_expire_a_ttl_after_their_last_write() -> None:
    clock = ManualClock()
    async with open_store("memory://", clock=clock) as store:
        saver = SessionStoreSaver(store, ttl=timedelta(hours=1))
        graph = review_graph(saver)
        await graph.ainvoke({"log": ["start"], "approved": ""}, _config("t"))
        clock.advance(timedelta(minutes=50))
        await graph.ainvoke(Command(resume="ok"), _config("t"))  # a write slides the expiry
        session = await store.get_session(thread_session_id("t"))
        assert session is not None and session.expires_at == clock.now() + timedelta(hours=1)
        clock.advance(timedelta(minutes=50))
        assert await saver.aget_tuple(_config("t")) is not None
        clock.advance(timedelta(minutes=11))
        assert await saver.aget_tuple(_config("t")) is None
        assert [t async for t in saver.alist(None)] == []


class _CountingStore(MemoryStore):
    """A memory store that counts its event reads."""

    reads = 0

    async def get_events(self, session_id: str, **query: Any) -> list[Event]:
        self.reads += 1
        return await super().get_events(session_id, **query)

    async def get_event(self, session_id: str, *, key: str) -> Event | None:
        self.reads += 1
        return await super().get_event(session_id, key=key)


@pytest.mark.parametrize("snapshots", [[0], [0, 30], [], [45]])
async def test_the_native_delta_history_equals_the_default_walk_with_fewer_reads(
    snapshots: list[int],
) -> None:
    store = _CountingStore()
    async with store:
        saver = SessionStoreSaver(store)
        configs = await build_delta_chain(
            saver, channel="ch", snapshots_at_steps=snapshots, total_steps=60
        )
        store.reads = 0
        native = await saver.aget_delta_channel_history(config=configs[-1], channels=["ch"])
        native_reads, store.reads = store.reads, 0
        default = await BaseCheckpointSaver.aget_delta_channel_history(
            saver, config=configs[-1], channels=["ch"]
        )
        assert native == default
        assert native_reads <= 4 < store.reads / 5  # the target, one page, the writes, a seed


async def test_a_page_of_checkpoints_reads_its_step_values_in_one_read() -> None:
    """``list(limit=10)`` of a long thread: the page of checkpoints, their writes, and
    the values each step stored with its checkpoint in one read of the events just
    before them (not one read per value); the tuples are those ``InMemorySaver`` gives."""
    store = _CountingStore()
    async with store:
        saver, memory = SessionStoreSaver(store), InMemorySaver()
        for checkpointer in (saver, memory):
            graph = delta_graph(checkpointer)
            for turn in range(12):
                await graph.ainvoke({"messages": [f"m{turn}"], "turns": turn}, _config("t"))
        config = _config("t")
        config["configurable"]["checkpoint_ns"] = ""
        store.reads = 0
        ours = [t async for t in saver.alist(config, limit=10)]
        # the page, its writes, the events before its checkpoints, a value stored before
        # the page (one read per checkpoint and value before: 12)
        assert store.reads <= 4
        theirs = [t async for t in memory.alist(config, limit=10)]

        def seen(tuples: list[Any]) -> list[Any]:
            return [
                (t.checkpoint["channel_values"], t.metadata["step"], t.pending_writes)
                for t in tuples
            ]

        assert [(v, s) for v, s, _ in seen(ours)] == [(v, s) for v, s, _ in seen(theirs)]
        assert [[w[1:] for w in ws] for _, _, ws in seen(ours)] == [
            [w[1:] for w in ws] for _, _, ws in seen(theirs)
        ]


async def _two_namespaces(saver: SessionStoreSaver, thread: str, steps: int) -> None:
    """``steps`` checkpoints in the root namespace, each followed by one of a subgraph's."""
    parents: dict[str, str | None] = {"": None, "sub": None}
    versions: dict[str, Any] = {}
    for step in range(steps):
        for ns in ("", "sub"):
            versions["n"] = saver.get_next_version(versions.get("n"), None)
            cp = empty_checkpoint()
            cp["channel_values"] = {"n": step}
            cp["channel_versions"] = dict(versions)
            configurable: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
            if parents[ns]:
                configurable["checkpoint_id"] = parents[ns]
            config: Any = {"configurable": configurable}
            stored = await saver.aput(config, cp, {"step": step}, {"n": versions["n"]})
            await saver.aput_writes(stored, [("n", step)], f"task{step}")
            parents[ns] = stored["configurable"]["checkpoint_id"]


async def test_listing_every_namespace_reads_each_namespaces_newest(
    adapter_store: SessionStore,
) -> None:
    """``list`` of a thread without ``checkpoint_ns``: its namespaces from their markers,
    then each namespace's newest checkpoints, merged newest id first (not a read of the
    whole thread); a thread whose first event is no marker (written before them) is read
    whole, and lists the same."""
    saver = SessionStoreSaver(adapter_store)
    await _two_namespaces(saver, "t", 60)
    sid = thread_session_id("t")
    first = (await adapter_store.get_events(sid, limit=1))[0]
    assert first.type == "lg.ns"
    # the same checkpoints without markers: an older saver's thread
    await _two_namespaces(saver, "old", 60)
    old = thread_session_id("old")
    await adapter_store.delete_events(old, keys=[namespace_key(""), namespace_key("sub")])

    async def ids(thread: str, **options: Any) -> list[tuple[str, int]]:
        found = [t async for t in saver.alist(_config(thread), **options)]
        assert all(t.pending_writes for t in found)
        return [(t.config["configurable"]["checkpoint_ns"], t.metadata["step"]) for t in found]

    every = await ids("t")
    assert every == await ids("old")
    assert len(every) == 120
    by_id = [
        (t.config["configurable"]["checkpoint_ns"], t.checkpoint["id"])
        async for t in saver.alist(_config("t"))
    ]
    assert [i for _, i in by_id] == sorted((i for _, i in by_id), reverse=True)
    assert every[:4] == [("sub", 59), ("", 59), ("sub", 58), ("", 58)]
    assert await ids("t", limit=5) == every[:5] == (await ids("old", limit=5))
    before = {"configurable": {"checkpoint_id": by_id[10][1]}}
    assert await ids("t", before=before, limit=3) == every[11:14]
    assert await ids("t", filter={"step": 7}) == [("sub", 7), ("", 7)]


async def test_listing_every_namespace_of_a_long_thread_reads_a_few_pages() -> None:
    store = _CountingStore()
    async with store:
        saver = SessionStoreSaver(store)
        await _two_namespaces(saver, "t", 60)
        store.reads = 0
        assert len([t async for t in saver.alist(_config("t"), limit=10)]) == 10
        # the first events and the markers, a page of each namespace, the writes, the
        # values (a read of every event of the thread: 600 events, two pages of 500)
        assert store.reads <= 6


class _CountingReads:
    """A store that counts the event reads made through it, by session id."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self.reads: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def get_events(self, session_id: str, **query: Any) -> list[Event]:
        self.reads.append(session_id)
        return await self._store.get_events(session_id, **query)

    async def get_event(self, session_id: str, *, key: str) -> Event | None:
        self.reads.append(session_id)
        return await self._store.get_event(session_id, key=key)


async def test_the_newest_checkpoint_is_one_read_of_the_thread_tail(
    adapter_store: SessionStore,
) -> None:
    counting = _CountingReads(adapter_store)
    saver = SessionStoreSaver(counting)
    config = _config("t")
    versions: dict[str, Any] = {}
    for step in range(5):  # steps as a graph with a delta channel makes them
        new: dict[str, Any] = {
            ch: saver.get_next_version(versions.get(ch), None) for ch in ("msgs", "n", "d")
        }
        versions.update(new)
        cp = empty_checkpoint()
        cp["channel_values"] = {"n": step, "d": {"step": step}}  # (msgs: a sentinel)
        cp["channel_versions"] = dict(versions)
        config = await saver.aput(config, cp, {"step": step}, new)
        await saver.aput_writes(config, [("msgs", [f"m{step}"]), ("n", step)], f"task-{step}")
    expected = await SessionStoreSaver(adapter_store).aget_tuple(config)  # by id
    assert expected is not None and expected.pending_writes
    assert expected.checkpoint["channel_values"] == {"n": 4, "d": {"step": 4}}
    counting.reads.clear()
    assert await saver.aget_tuple(_config("t")) == expected
    assert counting.reads == [thread_session_id("t")]  # one read: the thread's last events
    # a step whose writes are not there yet, and a value stored at an earlier step
    cp = {**expected.checkpoint, "id": "2099-later"}
    cp["channel_values"] = {"n": 9, "d": {"step": 4}}
    new = {"n": saver.get_next_version(versions["n"], None)}
    cp["channel_versions"] = {**versions, **new}
    later = await saver.aput(config, cp, {"step": 9}, new)
    counting.reads.clear()
    tup = await saver.aget_tuple(_config("t"))
    assert tup is not None and tup.config == later and tup.pending_writes == []
    assert tup.checkpoint["channel_values"] == cp["channel_values"]
    assert len(counting.reads) == 1  # the dict was stored a step before: in the tail


@pytest.mark.parametrize("writes_first", [True, False])
async def test_the_newest_checkpoint_has_writes_stored_before_it(
    adapter_store: SessionStore, writes_first: bool
) -> None:
    """Writes put before their checkpoint (LangGraph's async durability may do that), or
    before the checkpoint was put again with new content, are all read with it, however
    far back they are."""
    saver = SessionStoreSaver(adapter_store)
    cp = empty_checkpoint()
    cp["channel_values"] = {"a": "x" * 300, "n": 1}
    cp["channel_versions"] = {"a": "1", "n": "1"}
    config = _config(
        "t", configurable={"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": cp["id"]}
    )
    if not writes_first:
        config = await saver.aput(_config("t"), cp, {"step": 1}, {"a": "1", "n": "1"})
    tasks = [f"task-{i:02}" for i in range(20)]  # more events than the tail read holds
    for task in tasks:
        await saver.aput_writes(config, [("a", task)], task)
    cp["channel_values"] = {"a": "y" * 300, "n": 2}  # (again with new content)
    await saver.aput(_config("t"), cp, {"step": 2}, {"a": "1", "n": "1"})
    tup = await saver.aget_tuple(_config("t"))
    assert tup is not None
    assert tup.pending_writes == [(task, "a", task) for task in tasks]
    assert tup.checkpoint["channel_values"] == {"a": "y" * 300, "n": 2}
    assert tup.metadata["step"] == 2


async def test_a_metadata_filter_over_every_thread_reads_only_threads_tagged_with_it(
    adapter_store: SessionStore,
) -> None:
    counting = _CountingReads(adapter_store)
    saver = SessionStoreSaver(counting)
    for i in range(6):
        config = _config(f"t{i}")
        for step in range(2):
            metadata: Any = {"source": "loop", "step": step, "user": f"u{i % 3}"}
            config = await saver.aput(config, empty_checkpoint(), metadata, {})
    # a later checkpoint of t0 with a new value of the key: t0 is tagged with both
    cp = empty_checkpoint()
    await saver.aput(_config("t0", metadata={"user": "u2"}), cp, {"source": "loop", "step": 2}, {})
    counting.reads.clear()
    found = [t async for t in saver.alist(None, filter={"user": "u2"})]
    assert sorted({t.config["configurable"]["thread_id"] for t in found}) == ["t0", "t2", "t5"]
    assert len(found) == 5 and all(dict(t.metadata)["user"] == "u2" for t in found)
    # one read a thread: its first events hold it whole (a short thread)
    assert sorted(counting.reads) == [thread_session_id(t) for t in ("t0", "t2", "t5")]
    # 1.0 == 1 == True, as the filter compares
    await saver.aput(_config("n", metadata={"level": 1}), empty_checkpoint(), {"step": 0}, {})
    for value in (1, 1.0, True):
        found = [t async for t in saver.alist(None, filter={"level": value})]
        assert [t.config["configurable"]["thread_id"] for t in found] == ["n"]
    # keys not indexed (step) and None (a missing key matches too) read every thread
    found = [t async for t in saver.alist(None, filter={"step": 2})]
    assert [t.config["configurable"]["thread_id"] for t in found] == ["t0"]
    found = [t async for t in saver.alist(None, filter={"level": None, "user": "u1"})]
    assert sorted(t.config["configurable"]["thread_id"] for t in found) == ["t1", "t1", "t4", "t4"]
    # a copy is tagged by the checkpoints it copies (here of a source without tags, as a
    # thread written before them); a thread deleted and written again by another saver
    # (this one remembers its old tags) is tagged again
    source = await adapter_store.get_session(thread_session_id("t1"))
    assert source is not None and source.tags
    await adapter_store.update_session(source.id, remove_tags=source.tags)
    assert [t async for t in saver.alist(None, filter={"user": "u1"})] != []  # (t4)
    await saver.acopy_thread("t1", "c1")
    found = [t async for t in saver.alist(None, filter={"user": "u1"})]
    # (the untagged source is not found: a thread written before the tags)
    assert {t.config["configurable"]["thread_id"] for t in found} == {"t4", "c1"}
    await SessionStoreSaver(adapter_store).adelete_thread("t4")
    other = SessionStoreSaver(adapter_store)
    await other.aput(_config("t4", metadata={"user": "u0"}), empty_checkpoint(), {"step": 0}, {})
    await saver.aput(_config("t4", metadata={"user": "u1"}), empty_checkpoint(), {"step": 1}, {})
    found = [t async for t in saver.alist(None, filter={"user": "u1"})]
    assert sorted(t.config["configurable"]["thread_id"] for t in found) == ["c1", "c1", "t4"]


async def test_a_thread_gathers_a_bounded_number_of_tags_and_a_capped_one_is_still_found(
    adapter_store: SessionStore,
) -> None:
    """A metadata key given a new value every run (a request id) would tag a thread once
    a run, without bound: past MAX_THREAD_TAGS the thread is capped instead, and every
    filtered listing reads a capped thread."""

    async def metadata_tags_of(thread_id: str) -> set[str]:
        session = await adapter_store.get_session(thread_session_id(thread_id))
        assert session is not None
        return {t for t in session.tags if t.startswith(TAG_PREFIX)}

    saver = SessionStoreSaver(adapter_store)
    config = _config("busy")
    for run in range(MAX_THREAD_TAGS + 10):
        metadata: Any = {"source": "loop", "step": run, "request": f"r{run}"}
        config = await saver.aput(config, empty_checkpoint(), metadata, {})
    other: Any = {"source": "loop", "step": 0, "request": "elsewhere"}
    await saver.aput(_config("quiet"), empty_checkpoint(), other, {})
    tags = await metadata_tags_of("busy")
    assert CAPPED_TAG in tags and len(tags) <= MAX_THREAD_TAGS + 1
    assert CAPPED_TAG not in await metadata_tags_of("quiet")
    last = f"r{MAX_THREAD_TAGS + 9}"  # a value first put after the cap, one before it
    for value, threads in ((last, ["busy"]), ("r0", ["busy"]), ("elsewhere", ["quiet"])):
        found = [t async for t in saver.alist(None, filter={"request": value})]
        assert [t.config["configurable"]["thread_id"] for t in found] == threads, value
        assert len(found) == 1 and dict(found[0].metadata)["request"] == value
    assert [t async for t in saver.alist(None, filter={"request": "never"})] == []
    # a saver that does not know the thread's tags yet adds one put's at the most
    fresh = SessionStoreSaver(adapter_store)
    for value in ("new-1", "new-2", "new-3"):
        metadata = {"source": "loop", "step": 99, "request": value}
        config = await fresh.aput(config, empty_checkpoint(), metadata, {})
    assert len(await metadata_tags_of("busy")) <= len(tags) + 1
    found = [t async for t in fresh.alist(None, filter={"request": "new-3"})]
    assert [t.config["configurable"]["thread_id"] for t in found] == ["busy"]


async def test_a_thread_deleted_by_another_saver_is_made_again_by_the_next_write(
    adapter_store: SessionStore,
) -> None:
    """The saver appends without ``create`` to a thread it saw exist; one deleted since
    (by another process, or expired) is made again, as a new thread would be."""
    saver = SessionStoreSaver(adapter_store)
    first: Any = {"step": 0, "user": "u"}
    await saver.aput(_config("t"), empty_checkpoint(), first, {})
    await SessionStoreSaver(adapter_store).adelete_thread("t")
    second: Any = {"step": 1, "user": "u"}
    stored = await saver.aput(_config("t"), empty_checkpoint(), second, {})
    tup = await saver.aget_tuple(_config("t"))
    assert tup is not None and tup.config == stored and tup.metadata["step"] == 1
    assert [t.config for t in [t async for t in saver.alist(None, filter={"user": "u"})]] == [
        stored
    ]
    await SessionStoreSaver(adapter_store).adelete_thread("t")
    await saver.aput_writes(stored, [("a", 1)], "task-1")
    session = await adapter_store.get_session(thread_session_id("t"))
    assert session is not None and session.processor_id == "langgraph"
    assert session.metadata == {"thread_id": "t"}
