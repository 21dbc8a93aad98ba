"""The thread-id rule: every free-text thread id gives a valid session id, distinct ids
give distinct sessions, and keys and types stay within sessionstore's limits."""

from __future__ import annotations

import pytest
from sessionstore_langgraph import run_index_id, thread_session_id
from sessionstore_langgraph._ids import (
    blob_key,
    checkpoint_key,
    checkpoint_type,
    writes_key,
    writes_type,
)

from sessionstore.validation import validate_session_id

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
