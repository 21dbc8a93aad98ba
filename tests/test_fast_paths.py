"""The hot-path helpers: the ULID generator, the fast constructors, the buffered index,
the event encoding of appends."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sessionstore_memory._index import Ordered
from ulid import ULID

from sessionstore import (
    CreateOp,
    Event,
    NewSession,
    Session,
    SessionUpdate,
    Status,
    UpdateOp,
    codec,
)
from sessionstore.codec import new_id
from sessionstore.model import (
    fast_create_op,
    fast_event,
    fast_new_session,
    fast_session,
    fast_session_update,
    fast_update_op,
)

NOW = datetime(2026, 11, 21, 12, 0, 0, 123000, tzinfo=UTC)

# --------------------------------------------------------------------------- ids


def test_new_ids_are_ulids_with_the_current_time() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    ids = [new_id() for _ in range(2000)]
    after = datetime.now(UTC) + timedelta(milliseconds=1)
    for sid in ids:
        parsed = ULID.from_str(sid)  # python-ulid is the reference parser
        assert str(parsed) == sid
        assert before <= parsed.datetime <= after
        assert set(sid) <= set(codec._CROCKFORD)


@pytest.mark.parametrize(
    "ms", [0, 1, 31, 32, 1023, 1024, 2**48 - 1, *(1 << bit for bit in range(48)), 1_765_000_123_456]
)
def test_time_prefix_is_the_ulid_timestamp(ms: int) -> None:
    """Each of the 10 characters (five pairs from a table) encodes its 5 bits."""
    reference = str(ULID.from_bytes(ms.to_bytes(6, "big") + bytes(10)))[:10]
    assert codec._time_prefix(ms) == reference


def test_new_ids_strictly_increase_within_a_process() -> None:
    ids = [new_id() for _ in range(50_000)]  # many share a millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_random_part_is_not_constant_across_milliseconds() -> None:
    firsts = set()
    for _ in range(20):
        state = codec._id_state
        state.reset()
        firsts.add(new_id()[10:])
    assert len(firsts) == 20


def test_increment_carries_past_z() -> None:
    state = codec._id_state
    with codec._id_lock:
        state.ms = 2**47  # far future: every call stays in this millisecond
        state.prefix = codec._time_prefix(state.ms)
        state.rand = "0000000000000ZZZ"
    assert new_id()[10:] == "0000000000001000"
    assert new_id()[10:] == "0000000000001001"
    state.reset()


def test_exhausted_millisecond_moves_to_the_next_one() -> None:
    state = codec._id_state
    with codec._id_lock:
        state.ms = 2**47
        state.prefix = codec._time_prefix(state.ms)
        state.rand = "Z" * 16
    last = state.prefix + state.rand
    nxt = new_id()
    assert nxt > last
    assert ULID.from_str(nxt).milliseconds == 2**47 + 1
    state.reset()


def test_ids_are_unique_across_threads() -> None:
    out: list[list[str]] = [[] for _ in range(4)]

    def work(bucket: list[str]) -> None:
        bucket.extend(new_id() for _ in range(20_000))

    threads = [threading.Thread(target=work, args=(b,)) for b in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [sid for bucket in out for sid in bucket]
    assert len(set(everything)) == len(everything)
    for bucket in out:
        assert bucket == sorted(bucket)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_a_fresh_sequence() -> None:
    new_id()  # the parent has a last id
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report whether the state was reset, then the next id
        try:
            was_reset = codec._id_state.ms == -1
            os.write(write, f"{int(was_reset)} {new_id()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    parent_next = new_id()
    with os.fdopen(read) as pipe:
        fresh, child_id = pipe.read().split()
    os.waitpid(pid, 0)
    assert fresh == "1"
    assert child_id != parent_next


# --------------------------------------------------------------------------- constructors


def test_fast_session_equals_the_constructor_and_stays_frozen() -> None:
    args = ("s1", "p", Status.PAUSED, {"a": 1}, {"m": 2}, frozenset({"t"}), NOW, NOW,
            None, 3, 4, 5, "g")  # fmt: skip
    fast = fast_session(*args)
    assert type(fast) is Session
    assert fast == Session(*args)
    assert repr(fast) == repr(Session(*args))
    with pytest.raises(AttributeError):
        fast.version = 9  # type: ignore[misc]


def test_fast_event_equals_the_constructor_and_stays_frozen() -> None:
    fast = fast_event(7, "tool_call", NOW, {"q": 1}, "k")
    assert type(fast) is Event
    assert fast == Event(7, "tool_call", NOW, {"q": 1}, "k")
    assert fast_event(1, "t", NOW, {}) == Event(1, "t", NOW, {})  # key defaults to None
    assert repr(fast) == repr(Event(7, "tool_call", NOW, {"q": 1}, "k"))
    with pytest.raises(AttributeError):
        fast.seq = 9  # type: ignore[misc]


def test_fast_inputs_equal_their_constructors_with_defaults() -> None:
    assert fast_new_session(data={"a": 1}) == NewSession(data={"a": 1})
    assert fast_new_session() == NewSession()
    assert fast_session_update(merge_data={"x": 1}) == SessionUpdate(merge_data={"x": 1})
    new = NewSession(processor_id="p")
    assert fast_create_op(new) == CreateOp(new)
    update = SessionUpdate(status="paused")
    assert fast_update_op("s", update, 2) == UpdateOp("s", update, 2)


def test_fast_constructors_reject_unknown_arguments_like_the_class() -> None:
    with pytest.raises(TypeError, match=r"NewSession.__init__\(\) got an unexpected keyword"):
        fast_new_session(bogus=1)
    with pytest.raises(TypeError, match="SessionUpdate"):
        fast_session_update(nope=True)


# --------------------------------------------------------------------------- Ordered

_ops = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "flush"]), st.integers(0, 12)), max_size=80
)


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_ordered_matches_a_sorted_set(ops: list[tuple[str, int]]) -> None:
    index = Ordered()
    model: set[int] = set()
    for action, key in ops:
        if action == "add" and key not in model:
            index.add(key)
            model.add(key)
        elif action == "remove" and key in model:
            index.remove(key)
            model.discard(key)
        elif action == "flush":
            assert list(index.sorted()) == sorted(model)
        assert len(index) == len(model)
    assert list(index.sorted()) == sorted(model)


# --------------------------------------------------------------------------- create_session


@pytest.mark.asyncio
async def test_create_session_rejects_an_unknown_keyword_naming_it() -> None:
    from sessionstore import open_store

    async with open_store("memory://") as store:
        with pytest.raises(TypeError, match=r"create_session\(\) got an unexpected keyword "
                           r"argument 'colour'"):  # fmt: skip
            await store.create_session(colour="red")  # type: ignore[call-arg]
        assert await store.count_sessions() == 0
        made = await store.create_session(data={"a": 1}, id="chosen-1")
        assert made.id == "chosen-1"


def test_ordered_buffers_stay_bounded_without_queries() -> None:
    index = Ordered()
    for key in range(10):
        index.add(key)
    for round_ in range(5000):  # an update-heavy workload: move keys, never query
        key = round_ % 10
        index.remove(key)
        index.add(key)
    assert len(index._removed) <= 1025
    assert len(index) == 10
    assert list(index.sorted()) == list(range(10))


# --------------------------------------------------------------------------- events

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    etype=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=64),
    data=st.dictionaries(st.text(), _json, max_size=5),
    at=st.integers(-(2**45), 2**45),
    key=st.none() | st.text(min_size=1, max_size=20),
    seq=st.integers(1, 2**53),
)
def test_event_record_is_the_encoded_event(
    etype: str, data: dict[str, Any], at: int, key: str | None, seq: int
) -> None:
    """The append splices the data's JSON (as ``encode_event_inputs`` checked it) into the
    stored record instead of encoding it again, and the script prepends the head: the
    bytes are those of encoding the whole record, and they decode to the event."""
    from sessionstore_redis._encoding import decode_events, event_tail, type_json

    from sessionstore import Event
    from sessionstore.clock import from_ms
    from sessionstore.driver import Limits, encode_event_inputs

    [(t, raw, copy, _, _)] = encode_event_inputs(
        [{"type": etype, "data": data}], Limits(2**30, 2**30)
    )
    assert t == etype and copy == data
    kj = None if key is None else orjson.dumps(key)
    record = b'{"v":2,"s":%d,' % seq + event_tail(type_json(etype), at, kj, raw)
    whole: dict[str, Any] = {"v": 2, "s": seq, "t": etype, "a": at}
    if key is not None:
        whole["k"] = key
    whole["d"] = data
    assert record == orjson.dumps(whole)
    assert decode_events([record], "r") == [Event(seq, etype, from_ms(at), data, key)]


@settings(max_examples=100, deadline=None)
@given(data=st.dictionaries(st.text(), _json, max_size=5), etype=st.text(min_size=1))
def test_the_content_digest_ignores_key_order_only(data: dict[str, Any], etype: str) -> None:
    from sessionstore_redis._encoding import content_digest

    backwards = dict(reversed(list(data.items())))
    assert content_digest(etype, backwards) == content_digest(etype, data)
    assert content_digest(etype + "x", data) != content_digest(etype, data)
    assert content_digest(etype, {**data, "\0extra": 1}) != content_digest(etype, data)


def test_the_valid_id_cache_is_bounded_and_never_admits_a_bad_id() -> None:
    from sessionstore import InvalidSessionIdError
    from sessionstore import validation as v

    for n in range(v._MAX_VALID_IDS + 10):
        assert v.validate_session_id(f"s{n}") == f"s{n}"
        assert len(v._VALID_IDS) <= v._MAX_VALID_IDS
    for bad in ("a..b", "", "-x", "x" * 129, "a/b"):
        for _ in range(2):  # the second time too: a refused id is never remembered
            with pytest.raises(InvalidSessionIdError):
                v.validate_session_id(bad)
    assert not {"a..b", "", "-x", "a/b"} & v._VALID_IDS


def test_redis_key_and_event_type_caches_are_bounded() -> None:
    from sessionstore_redis import _encoding
    from sessionstore_redis._keys import Keys

    keys = Keys("app:", "ns", 1)
    for n in range(5000):
        loc = keys.home(f"s{n}")
        assert loc.doc == f"app:ns:{{s{n}}}:doc" and keys.home(f"s{n}") is loc
        assert len(keys._homes) <= 4096
    for n in range(1100):
        assert orjson.loads(_encoding.type_json(f"t{n}")) == f"t{n}"
        assert len(_encoding._TYPES) <= 1024


# --------------------------------------------------------------------------- event checks


@pytest.mark.parametrize(
    "event",
    [
        {"type": "t"},
        {"type": "t", "data": {"a": [1]}},
        {"data": {}},
        {},
        {"type": ""},
        {"type": 7, "data": {}},
        {"type": "x" * 10_000},
        {"type": "t", "key": "k"},
        {"type": "t", "other": 1},
    ],
)
def test_validate_events_plain_dict_path_answers_as_the_general_one(
    event: dict[str, Any],
) -> None:
    """A plain dict of ``type``/``data`` takes validate_event's fast path: the same
    result, or the same error, as the same event as another Mapping type."""
    from types import MappingProxyType

    from sessionstore.errors import InvalidArgumentError
    from sessionstore.validation import validate_event

    def outcome(value: Any) -> object:
        try:
            return validate_event(value)
        except InvalidArgumentError as exc:
            return str(exc)

    assert outcome(event) == outcome(MappingProxyType(event))
