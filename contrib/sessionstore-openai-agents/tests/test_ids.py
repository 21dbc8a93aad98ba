"""The SDK-id -> store-id rule: valid for sessionstore, collision-free, reversible where
it says so."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sessionstore_openai_agents import (
    HASHED_PREFIX,
    PREFIX,
    SessionStoreSession,
    decode_session_id,
    iter_session_ids,
    store_id,
)

from sessionstore import SessionStore
from sessionstore.errors import InvalidSessionIdError, SerializationError
from sessionstore.validation import validate_session_id
from tests.adapters.plugin import OpenStore
from tests.strategies import any_text

AWKWARD = [
    "",
    "user-42",
    "user_42",
    "user.42",
    "user..42",
    "../../etc/passwd",
    "a b",
    "ümlaut-ß",
    "emoji-🙂",
    "x" * 125,
    "x" * 126,
    "_" * 42,
    "_5f",
    "oa.user",
    "\x00\n\t",
    "\u00e9",  # precomposed
    "e\u0301",  # decomposed: another session
    "User-42",  # case: another session
    "a\\b:c|d",
    "\U0001f600" * 40,  # hashed
]

ANY_TEXT = any_text(max_size=140)


@pytest.mark.parametrize("sdk_id", AWKWARD)
def test_every_store_id_is_valid(sdk_id: str) -> None:
    assert validate_session_id(store_id(sdk_id)) == store_id(sdk_id)


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANY_TEXT, st.text(max_size=300)))
def test_any_text_maps_to_a_valid_id_that_decodes_back(sdk_id: str) -> None:
    mapped = store_id(sdk_id)
    validate_session_id(mapped)
    if mapped.startswith(PREFIX):
        assert decode_session_id(mapped) == sdk_id
    else:
        assert mapped.startswith(HASHED_PREFIX)
        assert len(mapped) == len(HASHED_PREFIX) + 64
        assert decode_session_id(mapped) is None


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT, ANY_TEXT)
def test_different_ids_never_collide(a: str, b: str) -> None:
    if a != b:
        assert store_id(a) != store_id(b)
    assert store_id(a + "x" * 130) != store_id(b + "x" * 131)  # the hashed form too


def test_the_documented_examples() -> None:
    assert store_id("user-42") == "oa.user-42"
    assert store_id("user 42/chat.1") == "oa.user_2042_2fchat_2e1"
    assert store_id("user_42") == "oa.user_5f42"
    assert store_id("x" * 125) == "oa." + "x" * 125
    assert store_id("x" * 126).startswith("oa-")


def test_only_the_canonical_encoding_decodes() -> None:
    assert decode_session_id("oa.user-42") == "user-42"
    assert decode_session_id("oa._41") is None  # "A" escaped: not what store_id makes
    assert decode_session_id("oa._zz") is None
    assert decode_session_id("oa._ff") is None  # not UTF-8
    assert decode_session_id("other") is None


def test_a_non_str_id_is_refused() -> None:
    with pytest.raises(TypeError):
        store_id(42)  # type: ignore[arg-type]


async def test_every_driver_accepts_the_mapped_ids(adapter_open_store: OpenStore) -> None:
    """Each mapped id is a session id on every built-in driver (no event-log API needed)."""
    store: SessionStore = await adapter_open_store()
    for sdk_id in AWKWARD:
        created = await store.create_session(id=store_id(sdk_id))
        assert created.id == store_id(sdk_id)
    with pytest.raises(InvalidSessionIdError):
        await store.create_session(id="../bad")


async def test_awkward_ids_are_separate_sessions_that_list_back_exactly(
    adapter_store: SessionStore,
) -> None:
    """Each awkward SDK id is its own session (no normalisation, no case folding) and
    listing gives each SDK id back exactly."""
    for n, sdk_id in enumerate(AWKWARD):
        await SessionStoreSession(sdk_id, adapter_store).add_items(
            [{"role": "user", "content": f"m{n}"}]
        )
    for n, sdk_id in enumerate(AWKWARD):
        items = await SessionStoreSession(sdk_id, adapter_store).get_items()
        assert items == [{"role": "user", "content": f"m{n}"}], sdk_id
    assert sorted([i async for i in iter_session_ids(adapter_store)]) == sorted(AWKWARD)


async def test_a_lone_surrogate_id_is_refused_typed_and_writes_nothing(
    adapter_store: SessionStore,
) -> None:
    """A lone surrogate has no UTF-8 encoding: its id maps (so reads find nothing) and a
    write is refused with SerializationError, leaving the store as it was."""
    kept = SessionStoreSession("kept", adapter_store)
    await kept.add_items([{"role": "user", "content": "hi"}])
    bad = SessionStoreSession("chat-\ud800", adapter_store)
    assert await bad.get_items() == []
    with pytest.raises(SerializationError):
        await bad.add_items([{"role": "user", "content": "lost?"}])
    assert await bad.get_items() == []
    assert [i async for i in iter_session_ids(adapter_store)] == ["kept"]
    assert await kept.get_items() == [{"role": "user", "content": "hi"}]
