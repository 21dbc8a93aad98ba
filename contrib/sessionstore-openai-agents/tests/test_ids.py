"""The SDK-id -> store-id rule: valid for sessionstore, collision-free, reversible where
it says so."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sessionstore_openai_agents import (
    HASHED_PREFIX,
    PREFIX,
    decode_session_id,
    store_id,
)

from sessionstore import SessionStore
from sessionstore.errors import InvalidSessionIdError
from sessionstore.validation import validate_session_id
from tests.adapters.plugin import OpenStore

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
]


@pytest.mark.parametrize("sdk_id", AWKWARD)
def test_every_store_id_is_valid(sdk_id: str) -> None:
    assert validate_session_id(store_id(sdk_id)) == store_id(sdk_id)


@settings(deadline=None)  # a loaded machine stalls an example past Hypothesis's 200 ms
@given(st.text(max_size=300))
def test_any_text_maps_to_a_valid_id_that_decodes_back(sdk_id: str) -> None:
    mapped = store_id(sdk_id)
    validate_session_id(mapped)
    if mapped.startswith(PREFIX):
        assert decode_session_id(mapped) == sdk_id
    else:
        assert mapped.startswith(HASHED_PREFIX)
        assert len(mapped) == len(HASHED_PREFIX) + 64
        assert decode_session_id(mapped) is None


@settings(deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_different_ids_never_collide(a: str, b: str) -> None:
    if a != b:
        assert store_id(a) != store_id(b)


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
