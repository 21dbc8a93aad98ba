"""The thread-id rule: every free-text thread id gives a valid session id, distinct ids
give distinct sessions, and keys and types stay within sessionstore's limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from langgraph.checkpoint.base import empty_checkpoint
from sessionstore_langgraph import SessionStoreSaver, run_index_id, thread_session_id
from sessionstore_langgraph._ids import (
    blob_key,
    checkpoint_key,
    checkpoint_type,
    writes_key,
    writes_type,
)

from sessionstore import SessionStore
from sessionstore.errors import SerializationError
from sessionstore.validation import validate_session_id
from tests.strategies import any_text

TRICKY = [
    "t",
    "T",
    "thread-1",
    "thread_1",
    "thread.1",
    "thread.2e1",
    "thread 1",
    "thread/1",
    "../etc",
    "",
    ".",
    "..",
    "é",
    "e\u0301",
    "\x00",
    "a" * 125,
    "a" * 126,
    "a" * 500,
    "a" * 499 + "b",
    "lg.x",
    "lgh." + "0" * 64,
    "_",
    "_5f",
    "a..b",
    "{slot}",
    "😀" * 40,
]


def test_every_thread_id_maps_to_a_valid_session_id() -> None:
    for thread_id in TRICKY:
        session_id = thread_session_id(thread_id)
        assert validate_session_id(session_id) == session_id
        assert validate_session_id(run_index_id(thread_id)) == run_index_id(thread_id)


def test_distinct_thread_ids_give_distinct_sessions() -> None:
    mapped = [thread_session_id(t) for t in TRICKY]
    assert len(set(mapped)) == len(TRICKY)
    assert len({run_index_id(t) for t in TRICKY} | set(mapped)) == 2 * len(TRICKY)


def test_readable_ids_stay_readable() -> None:
    assert thread_session_id("thread-1") == "lg.thread-1"
    assert thread_session_id("a b.c_d") == "lg.a_20b_2ec_5fd"
    assert thread_session_id("a" * 500).startswith("lgh.")


@pytest.mark.parametrize("ns", ["", "child:1", "a" * 1000, "\x00|\n"])
def test_keys_and_types_fit_the_limits(ns: str) -> None:
    for key in (
        checkpoint_key(ns, "x" * 300),
        blob_key(ns, "messages", "0" * 32 + ".5"),
        writes_key(ns, "cid", "task", "digest"),
    ):
        assert 0 < len(key) <= 256 and key.isprintable()
    for kind in (checkpoint_type(ns), writes_type(ns, "cid")):
        assert 0 < len(kind) <= 128


def test_parts_cannot_run_into_each_other() -> None:
    assert checkpoint_key("a", "bc") != checkpoint_key("ab", "c")
    assert blob_key("", "ch", 1) != blob_key("", "ch", "1") != blob_key("", "ch", 1.0)


ANY_TEXT = any_text(max_size=140)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT, ANY_TEXT)
def test_the_mapping_is_injective_on_any_text(a: str, b: str) -> None:
    """Distinct thread ids (lone surrogates included) never share a session id, and no
    thread id shares one with a run index."""
    for text in (a, b, a * 20):
        assert validate_session_id(thread_session_id(text)) == thread_session_id(text)
    if a != b:
        assert thread_session_id(a) != thread_session_id(b)
        assert thread_session_id(a * 20) != thread_session_id(b * 20)  # the hashed form
        assert run_index_id(a) != run_index_id(b)
    assert thread_session_id(a) != run_index_id(b)
    assert thread_session_id(a * 20) != run_index_id(b * 20)


async def test_awkward_thread_ids_round_trip_and_list_exactly(adapter_store: SessionStore) -> None:
    """Every tricky thread id is its own thread: read back, listed by thread and by
    metadata with exactly its own id (no normalisation, no case folding)."""
    saver = SessionStoreSaver(adapter_store)
    for thread in TRICKY:
        config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        await saver.aput(config, empty_checkpoint(), {"who": thread}, {})  # type: ignore[arg-type, typeddict-unknown-key]
    for thread in TRICKY:
        config = {"configurable": {"thread_id": thread}}
        got = await saver.aget_tuple(config)  # type: ignore[arg-type]
        assert got is not None and got.config["configurable"]["thread_id"] == thread
        listed = [t.config["configurable"]["thread_id"] async for t in saver.alist(config)]  # type: ignore[arg-type]
        assert listed == [thread]
        found = [
            t.config["configurable"]["thread_id"]
            async for t in saver.alist(None, filter={"who": thread.replace("\x00", "")})
        ]
        # LangGraph drops NULs from metadata strings (get_checkpoint_metadata): "\x00"
        # and "" then share a metadata value, as on LangGraph's own savers
        same = [t for t in TRICKY if t.replace("\x00", "") == thread.replace("\x00", "")]
        assert sorted(found) == sorted(same)


async def test_a_lone_surrogate_thread_id_is_refused_typed_and_writes_nothing(
    adapter_store: SessionStore,
) -> None:
    saver = SessionStoreSaver(adapter_store)
    config = {"configurable": {"thread_id": "t\ud800", "checkpoint_ns": ""}}
    with pytest.raises(SerializationError):
        await saver.aput(config, empty_checkpoint(), {}, {})  # type: ignore[arg-type]
    assert await saver.aget_tuple(config) is None  # type: ignore[arg-type]
    assert await adapter_store.count_sessions() == 0
