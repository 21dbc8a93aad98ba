"""What the adapter adds to the SDK's contract: items as events, the id mapping in the
store, listing, moving data over, the compaction hooks' edge cases, atomicity."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from agents import SQLiteSession, TResponseInputItem
from agents.memory import Session
from agents.memory.session import _session_accepts_wrapper
from conftest import MakeSession
from sessionstore_openai_agents import (
    ITEM_TYPE,
    METADATA_KEY,
    TAG,
    SessionStoreSession,
    copy_session,
    iter_session_ids,
    store_id,
)

from sessionstore import SessionStore


def _item(text: str, role: str = "user") -> TResponseInputItem:
    return {"role": role, "content": text}  # type: ignore[return-value,misc]


async def test_it_is_an_sdk_session_that_takes_the_wrapper(make_session: MakeSession) -> None:
    session = make_session("x")
    assert isinstance(session, Session)
    assert _session_accepts_wrapper(session)


async def test_items_are_events_of_one_session(
    make_session: MakeSession, adapter_store: SessionStore
) -> None:
    session = make_session("user 42/chat.1")
    items = [_item("hello"), _item("hi", "assistant")]
    await session.add_items(items)

    assert session.store_session_id == store_id("user 42/chat.1") == "oa.user_2042_2fchat_2e1"
    stored = await adapter_store.get_session(session.store_session_id)
    assert stored is not None
    assert stored.metadata == {METADATA_KEY: "user 42/chat.1"}
    assert TAG in stored.tags
    assert stored.event_count == 2
    events = await adapter_store.get_events(session.store_session_id)
    assert [e.type for e in events] == [ITEM_TYPE, ITEM_TYPE]
    assert [e.data for e in events] == items


async def test_returned_items_are_the_callers(make_session: MakeSession) -> None:
    session = make_session()
    item: dict[str, Any] = {"role": "user", "content": [{"type": "input_text", "text": "a"}]}
    await session.add_items([cast(TResponseInputItem, item)])
    item["content"][0]["text"] = "changed after the write"
    first = [cast(dict[str, Any], i) for i in await session.get_items()]
    assert first == [{"role": "user", "content": [{"type": "input_text", "text": "a"}]}]
    first[0]["content"] = "changed after the read"
    again = cast(dict[str, Any], (await session.get_items())[0])
    assert again["content"] != "changed after the read"


async def test_concurrent_pops_take_each_item_once(make_session: MakeSession) -> None:
    session = make_session()
    await session.add_items([_item(str(i)) for i in range(6)])
    popped = await asyncio.gather(*(session.pop_item() for _ in range(8)))
    taken = [str(p.get("content")) for p in popped if p is not None]
    assert sorted(taken) == [str(i) for i in range(6)]
    assert popped.count(None) == 2
    assert await session.get_items() == []


async def test_pop_after_clear_and_a_new_add_starts_again(make_session: MakeSession) -> None:
    session = make_session()
    await session.add_items([_item("a")])
    await session.clear_session()
    await session.clear_session()  # a missing session: nothing to do
    await session.add_items([_item("b")])
    assert await session.get_items() == [_item("b")]
    assert await session.pop_item() == _item("b")


async def test_listing_returns_the_sdk_ids(
    make_session: MakeSession, adapter_store: SessionStore
) -> None:
    ids = ["plain", "with space", "x" * 300, "ümlaut"]
    for sdk_id in ids:
        await make_session(sdk_id).add_items([_item(sdk_id[:10])])
    await adapter_store.create_session(id="not-ours")  # another app's session: not listed
    listed = [sdk_id async for sdk_id in iter_session_ids(adapter_store, page_size=2)]
    assert sorted(listed) == sorted(ids)
    assert store_id("x" * 300).startswith("oa-")  # the hashed form, listed by its metadata


async def test_copy_from_the_sdks_sqlite_session(make_session: MakeSession, tmp_path: Path) -> None:
    source = SQLiteSession("conversation-7", tmp_path / "agents.db")
    items = [_item("one"), _item("two", "assistant"), _item("three")]
    await source.add_items(items)
    target = make_session("conversation-7")
    await target.add_items([_item("stale")])

    assert await copy_session(source, target) == 3
    assert await target.get_items() == items
    assert await copy_session(source, target) == 3  # again: the same, not doubled
    assert await target.get_items() == items
    source.close()


async def test_copy_from_the_sdks_redis_session(make_session: MakeSession, redis_url: str) -> None:
    from agents.extensions.memory import RedisSession

    source = RedisSession.from_url("conversation-8", url=redis_url, key_prefix="copy-test")
    try:
        await source.clear_session()
        items = [_item("one"), _item("two", "assistant")]
        await source.add_items(items)
        target = make_session("conversation-8")
        assert await copy_session(source, target) == 2
        assert await target.get_items() == items
    finally:
        await source.clear_session()
        await source.close()


async def test_atomic_replace_on_a_missing_session_creates_it(make_session: MakeSession) -> None:
    session = make_session("fresh")
    assert await session._atomic_replace_items([]) is True
    assert await session.get_items() == []
    assert await session._atomic_replace_items([_item("a")]) is True
    assert await session.get_items() == [_item("a")]
    stored = await session.store.get_session(session.store_session_id)
    assert stored is not None
    assert stored.metadata == {METADATA_KEY: "fresh"}


async def test_snapshot_reports_whether_it_holds_everything(make_session: MakeSession) -> None:
    session = make_session()
    assert await session._get_compaction_snapshot(0) is None
    empty = await session._get_compaction_snapshot(3)
    assert empty is not None
    assert (empty.items, empty.complete) == ([], True)
    assert await empty.replace_suffix(0, [_item("x")]) is False  # nothing to replace

    await session.add_items([_item(str(i)) for i in range(5)])
    whole = await session._get_compaction_snapshot(5)
    assert whole is not None
    assert whole.complete
    part = await session._get_compaction_snapshot(3)
    assert part is not None
    assert [i.get("content") for i in part.items] == ["2", "3", "4"]
    assert not part.complete


async def test_replace_suffix_swaps_the_tail_atomically(make_session: MakeSession) -> None:
    session = make_session()
    await session.add_items([_item(str(i)) for i in range(5)])
    snapshot = await session._get_compaction_snapshot(3)
    assert snapshot is not None
    assert await snapshot.replace_suffix(1, [_item("summary")]) is True
    assert [i.get("content") for i in await session.get_items()] == ["0", "1", "2", "summary"]
    # The snapshot is used up: its suffix is gone.
    assert await snapshot.replace_suffix(1, [_item("again")]) is False


@pytest.mark.parametrize("change", ["append", "pop", "clear", "replace"])
async def test_replace_suffix_refuses_a_changed_tail(
    make_session: MakeSession, change: str
) -> None:
    session = make_session()
    await session.add_items([_item(str(i)) for i in range(4)])
    snapshot = await session._get_compaction_snapshot(2)
    assert snapshot is not None
    if change == "append":
        await session.add_items([_item("late")])
        after = ["0", "1", "2", "3", "late"]
    elif change == "pop":
        await session.pop_item()
        after = ["0", "1", "2"]
    elif change == "clear":
        await session.clear_session()
        after = []
    else:  # popped and appended again with the same content: other events all the same
        await session.pop_item()
        await session.add_items([_item("3")])
        after = ["0", "1", "2", "3"]
    assert await snapshot.replace_suffix(0, [_item("summary")]) is False
    assert [i.get("content") for i in await session.get_items()] == after


async def test_replace_suffix_prunes_the_accepted_prefix(make_session: MakeSession) -> None:
    session = make_session()
    contents = ["old-0", "old-1", "old-2", "keep", "old-3", "new-0", "new-1"]
    await session.add_items([_item(c) for c in contents])

    def expired(item: TResponseInputItem) -> bool:
        return str(item.get("content", "")).startswith("old")

    snapshot = await session._get_compaction_snapshot(2, prune_prefix=expired)
    assert snapshot is not None
    assert await snapshot.replace_suffix(0, [_item("summary")]) is True
    # The oldest run of accepted items goes; "keep" stops it, "old-3" after it stays.
    assert [i.get("content") for i in await session.get_items()] == ["keep", "old-3", "summary"]


async def test_a_subclass_that_transforms_items_gets_no_hooks(adapter_store: SessionStore) -> None:
    class Upper(SessionStoreSession):
        async def add_items(self, items: list[TResponseInputItem], **kwargs: Any) -> None:
            await super().add_items(
                [{**i, "content": str(i.get("content")).upper()} for i in items],  # type: ignore[misc]
                **kwargs,
            )

    session = Upper("upper", adapter_store)
    assert await session._get_compaction_snapshot(5) is None
    assert await session._atomic_replace_items([_item("x")]) is False


async def test_from_url_opens_its_store_once(adapter_store_url: str) -> None:
    session = SessionStoreSession.from_url("lazy", adapter_store_url)
    try:
        await asyncio.gather(*(session.add_items([_item(str(i))]) for i in range(4)))
        assert len(await session.get_items()) == 4
        await session.clear_session()
    finally:
        await session.close()
