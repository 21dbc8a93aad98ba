"""A saver checks that the value stored whole its next link names is still stored when
it last knew so more than ``CONFIRM_AFTER`` seconds ago: another process's prune may
have removed it, and the value is then stored whole instead of as a link to nothing.
The saver's clock (``_saver.monotonic``) is replaced, so no test waits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from sessionstore_langgraph import SessionStoreSaver, _saver, thread_session_id

from sessionstore import SessionStore, open_store


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    async with open_store("memory://") as made:
        yield made


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(_saver, "monotonic", lambda: now[0])
    return now


def _config(checkpoint_id: str | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": "t", "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


async def _put(saver: SessionStoreSaver, parent: str | None, value: list[Any], n: int) -> str:
    checkpoint = empty_checkpoint()
    version = f"{n:08}"
    checkpoint["channel_values"] = {"ch": value}
    checkpoint["channel_versions"] = {"ch": version}
    config = await saver.aput(_config(parent), checkpoint, {"step": n}, {"ch": version})
    return str(config["configurable"]["checkpoint_id"])


async def _kinds(store: SessionStore) -> str:
    events = await store.get_events(thread_session_id("t"))
    return "".join({"lg.blob": "F", "lg.link": "L"}.get(e.type, "") for e in events)


def _count_reads_by_key(store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys of the store's ``get_event`` calls from now on (a list that grows)."""
    checks: list[str] = []
    get_event = store.get_event

    async def counted(session_id: str, *, key: str) -> Any:
        checks.append(key)
        return await get_event(session_id, key=key)

    monkeypatch.setattr(store, "get_event", counted)
    return checks


def _messages(*names: str) -> list[Any]:
    return [HumanMessage(content=name, id=name) for name in names]


async def test_a_link_after_another_process_pruned_its_value_is_stored_whole(
    store: SessionStore, clock: list[float]
) -> None:
    a, b = SessionStoreSaver(store), SessionStoreSaver(store)
    v1 = _messages("m1", "m2", "m3")
    c1 = await _put(a, None, v1, 1)
    c2 = await _put(a, c1, [*v1, *_messages("m4")], 2)
    read = await b.aget_tuple(_config())  # b remembers c2's list, through c1's value
    assert read is not None
    held = read.checkpoint["channel_values"]["ch"]
    c3 = await _put(a, c2, _messages("x1"), 3)  # rebuilt: stored whole
    await a.aprune(["t"], strategy="keep_latest")  # c1, c2 and their values go
    assert await _kinds(store) == "F"
    clock[0] += 2  # b last knew c1's value stored two seconds ago: it checks
    value = [*held, *_messages("m5")]
    c4 = await _put(b, c2, value, 4)
    assert await _kinds(store) == "FF"  # stored whole, not a link to c1's value
    fresh = await SessionStoreSaver(store).aget_tuple(_config(c4))
    assert fresh is not None
    assert fresh.checkpoint["channel_values"]["ch"] == value
    assert [t.config["configurable"]["checkpoint_id"] async for t in a.alist(_config())] == [
        c4,
        c3,
    ]


async def test_a_chain_checks_its_value_once_a_second_and_stays_links(
    store: SessionStore, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    saver = SessionStoreSaver(store)
    checks = _count_reads_by_key(store, monkeypatch)
    value = _messages(*(f"m{i}" for i in range(10)))
    parent = await _put(saver, None, value, 1)
    for n in range(2, 10):  # a step every 0.3 s: checks at 1.2 s and 2.4 s
        clock[0] += 0.3
        value = [*value, *_messages(f"s{n}")]
        parent = await _put(saver, parent, value, n)
    assert await _kinds(store) == "F" + "L" * 8
    assert len(checks) == 2  # the previous checkpoint's event, once a second
    read = await SessionStoreSaver(store).aget_tuple(_config())
    assert read is not None and read.checkpoint["channel_values"]["ch"] == value


async def test_a_read_list_links_without_a_check_within_the_second(
    store: SessionStore, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = SessionStoreSaver(store), SessionStoreSaver(store)
    c1 = await _put(writer, None, _messages("m1", "m2"), 1)
    read = await reader.aget_tuple(_config())
    assert read is not None
    checks = _count_reads_by_key(store, monkeypatch)
    clock[0] += 0.5
    await _put(reader, c1, [*read.checkpoint["channel_values"]["ch"], *_messages("m3")], 2)
    assert await _kinds(store) == "FL"
    assert checks == []  # read half a second ago: no check
