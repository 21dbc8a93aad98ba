"""A plain list value that extends the one written or read before it is stored as a link
(``lg.link``: the items after those of a value stored whole, and that value's key),
rebuilt from the two on read; a full value every ``LINKS`` links, once a link would
hold more items than its full value, after a prefix that differs, and after a restart;
values stored whole before links existed still read; prunes, run deletes and copies
keep what links need."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from sessionstore_langgraph import SessionStoreSaver, _saver, thread_session_id
from sessionstore_langgraph._ids import blob_key
from sessionstore_memory import MemoryStore

from sessionstore import Event, SessionStore


def _config(thread: str, **extra: Any) -> RunnableConfig:
    return {"configurable": {"thread_id": thread}, **extra}  # type: ignore[typeddict-item]


class _Step:
    """Puts checkpoints of one thread whose channel ``ch`` holds a list, one per call."""

    def __init__(self, saver: SessionStoreSaver, thread: str = "t") -> None:
        self.saver = saver
        self.config = _config(thread)
        self.n = 0

    async def put(self, value: list[Any], run: str | None = None) -> RunnableConfig:
        self.n += 1
        version = f"{self.n:08}"
        cp = empty_checkpoint()
        cp["channel_values"] = {"ch": value}
        cp["channel_versions"] = {"ch": version}
        metadata: Any = {"step": self.n, **({"run_id": run} if run else {})}
        self.config = await self.saver.aput(self.config, cp, metadata, {"ch": version})
        return self.config


async def _values(store: SessionStore, thread: str = "t") -> list[Event]:
    """The thread's value events (full values and links), oldest first."""
    events = await store.get_events(thread_session_id(thread))
    return [e for e in events if e.type in ("lg.blob", "lg.link")]


async def _value(saver: SessionStoreSaver, config: RunnableConfig) -> Any:
    tup = await saver.aget_tuple(config)
    assert tup is not None
    return tup.checkpoint["channel_values"].get("ch")


def _kinds(events: list[Event]) -> str:
    return "".join("L" if e.type == "lg.link" else "F" for e in events)


async def test_a_growing_list_stores_only_its_new_items_and_reads_back_whole(
    adapter_store: SessionStore,
) -> None:
    saver = SessionStoreSaver(adapter_store)
    step = _Step(saver)
    value: list[Any] = [{"m": i} for i in range(50)]
    configs, expected = [], []
    for i in range(6):
        value = [*value, {"m": f"new-{i}"}, f"text-{i}"]  # a new list, the same items first
        configs.append(await step.put(value))
        expected.append(value)
    events = await _values(adapter_store)
    assert _kinds(events) == "FLLLLL"
    assert all(e.data["s"] == events[0].key for e in events[1:])
    assert [e.data["d"] for e in events[1:]] == [1, 2, 3, 4, 5]
    assert [len(e.data["x"]) for e in events[1:]] == [2, 4, 6, 8, 10]  # since the full one
    for config, value in zip(configs, expected, strict=True):
        assert await _value(saver, config) == value
    # a new saver (an empty cache) stores whole, then links again
    other = SessionStoreSaver(adapter_store)
    again = _Step(other)
    again.n, again.config = step.n, step.config
    await again.put(value := [*value, "x"])
    await again.put(value := [*value, "y"])
    assert _kinds(await _values(adapter_store)) == "FLLLLLFL"
    # the lists aget_tuple returns are remembered: a step that extends one links to it
    third = _Step(SessionStoreSaver(adapter_store))
    third.n, third.config = again.n, again.config
    read = await _value(third.saver, again.config)
    assert read == value
    await third.put([*read, "z"])
    assert _kinds(await _values(adapter_store)) == "FLLLLLFLL"
    assert await _value(SessionStoreSaver(adapter_store), third.config) == [*value, "z"]


async def test_a_full_value_every_links_limit_and_after_a_prefix_differs(
    adapter_store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_saver, "LINKS", 2)
    step = _Step(saver := SessionStoreSaver(adapter_store))
    value: list[Any] = ["a"]
    for item in "bcdef":  # full, 2 links, full, link
        value = [*value, {"item": item}]
        await step.put(value)
    assert _kinds(await _values(adapter_store)) == "FLLFL"
    await step.put(value := [{"item": "changed"}, *value[1:], "g"])  # an equal, other object
    await step.put(value := value[:-2])  # shorter
    await step.put(value := list(value))  # equal: a link with no new item
    events = await _values(adapter_store)
    assert _kinds(events) == "FLLFLFFL" and events[-1].data["x"] == []
    assert await _value(saver, step.config) == value
    subclass = type("Items", (list,), {})  # not a plain list: stored whole
    await step.put(subclass([*value, "h"]))
    assert _kinds(await _values(adapter_store))[-1] == "F"
    # a link never holds more items than its full value
    small = _Step(saver, "small")
    await small.put(value := ["a", "b"])
    for item in "cdef":
        await small.put(value := [*value, item])
    assert _kinds(await _values(adapter_store, "small")) == "FLLFL"
    assert await _value(saver, small.config) == value


async def test_links_off_stores_every_list_whole_and_reads_links_written_before(
    adapter_store: SessionStore,
) -> None:
    linked = _Step(SessionStoreSaver(adapter_store))
    await linked.put(first := ["a"])
    await linked.put(second := [*first, "b"])
    whole = _Step(SessionStoreSaver(adapter_store, list_links=False), "w")
    await whole.put(old := ["a"])
    await whole.put(new := [*old, "b"])
    assert _kinds(await _values(adapter_store, "w")) == "FF"
    # values stored whole (as before links existed) read back on a saver that links
    reader = SessionStoreSaver(adapter_store)
    assert await _value(reader, whole.config) == new
    assert await _value(whole.saver, linked.config) == second


class _Scrambling(JsonPlusSerializer):
    """A serde whose bytes are not msgpack (as an encrypting one's are not)."""

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        kind, data = super().dumps_typed(obj)
        return f"x+{kind}", bytes(b ^ 0x5A for b in data)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        kind, raw = data
        assert kind.startswith("x+")
        return super().loads_typed((kind[2:], bytes(b ^ 0x5A for b in raw)))


async def test_links_go_through_the_savers_serde(adapter_store: SessionStore) -> None:
    saver = SessionStoreSaver(adapter_store, serde=_Scrambling())
    step = _Step(saver)
    await step.put(value := [{"secret": 1}])
    await step.put(value := [*value, {"secret": 2}])
    link = (await _values(adapter_store))[-1]
    assert link.type == "lg.link" and link.data["x"][0][0].startswith("x+")
    assert await _value(saver, step.config) == value


async def test_prune_run_deletes_and_copies_keep_a_chain_whole(
    adapter_store: SessionStore,
) -> None:
    saver = SessionStoreSaver(adapter_store)
    step = _Step(saver)
    run_1, run_2 = str(uuid.uuid4()), str(uuid.uuid4())
    value: list[Any] = [f"start-{i}" for i in range(5)]
    for i in range(4):  # the full value and two links by run 1, two links by run 2
        value = [*value, f"m{i}"]
        await step.put(value, run=run_1 if i < 3 else run_2)
    value = [*value, "m4"]
    head = await step.put(value, run=run_2)
    assert _kinds(await _values(adapter_store)) == "FLLLL"
    await saver.adelete_for_runs([run_1])  # its checkpoints and links go, not the full one
    assert _kinds(await _values(adapter_store)) == "FLL"
    assert await _value(saver, head) == value
    await saver.acopy_thread("t", "copy")
    await saver.aprune(["t"], strategy="keep_latest")
    assert _kinds(await _values(adapter_store)) == "FL"  # the head's link and its full value
    assert len([t async for t in saver.alist(_config("t"))]) == 1
    # after a prune the saver stores whole again: nothing links to what it may delete
    await step.put([*value, "m5"])
    assert _kinds(await _values(adapter_store))[-1] == "F"
    assert await _value(saver, head) == value
    assert await _value(saver, step.config) == [*value, "m5"]
    copy_head = _config("copy", configurable={"thread_id": "copy", "checkpoint_ns": ""})
    assert await _value(saver, copy_head) == value


async def test_a_fork_that_extends_the_last_list_links_to_its_full_value(
    adapter_store: SessionStore,
) -> None:
    saver = SessionStoreSaver(adapter_store)
    step = _Step(saver)
    first = await step.put(a := ["a", "a2", "a3"])
    await step.put(b := [*a, "b"])
    step.config = first  # a fork from the first checkpoint, whose value extends b's
    fork = await step.put(c := [*b, "c"])
    assert _kinds(await _values(adapter_store)) == "FLL"
    await saver.aprune(["t"], strategy="keep_latest")  # keeps the fork and a's value
    assert await _value(saver, fork) == c
    keys = {e.key for e in await _values(adapter_store)}
    assert keys == {blob_key("", "ch", "00000001"), blob_key("", "ch", "00000003")}


async def test_the_remembered_lists_are_bounded_by_their_items(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_saver, "_LIST_ITEMS", 8)
    async with MemoryStore() as store:
        saver = SessionStoreSaver(store)
        one, two = _Step(saver, "one"), _Step(saver, "two")
        await one.put(a := ["a1", "a2", "a3"])
        await two.put(b := ["b1", "b2", "b3"])
        await one.put(a := [*a, "a4"])  # 4 + 3 items held
        await two.put(b := [*b, "b4"])  # 4 + 4: still within 8
        await one.put(a := [*a, "a5"])  # 5 + 4: "two" is dropped
        await two.put([*b, "b5"])
        assert _kinds(await _values(store, "one")) == "FLL"
        assert _kinds(await _values(store, "two")) == "FLF"
        assert saver._items == 5  # "two"'s 5: then "one" was dropped
        assert list(saver._written) == [(thread_session_id("two"), "", "ch")]
