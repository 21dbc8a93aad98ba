"""Bad input: a typed error, nothing written, and the store keeps working."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sessionstore_filesystem import FileStore
from sessionstore_memory import MemoryBackend, MemoryStore
from sessionstore_sqlite import SqliteStore

from sessionstore import (
    AppendOp,
    ConfigurationError,
    CreateOp,
    DeleteOp,
    DriverNotFoundError,
    EventInput,
    InvalidArgumentError,
    InvalidCursorError,
    InvalidSessionIdError,
    ManualClock,
    NewSession,
    QueryOptions,
    QuotaExceededError,
    SerializationError,
    SessionConflictError,
    SessionFilter,
    SessionStore,
    SessionStoreError,
    SessionUpdate,
    UpdateOp,
    open_store,
)
from tests.strategies import any_text

Call = Callable[[MemoryStore], Awaitable[Any]]


@dataclass
class World:
    """A store holding one known session (with events and a checkpoint)."""

    store: MemoryStore
    sid: str
    cp_id: str


async def _state(store: MemoryStore) -> list[Any]:
    out: list[Any] = []
    async for rec in store.scan(include_expired=True):
        out.append((rec.session, list(rec.events), list(rec.checkpoints)))
    out.sort(key=lambda item: item[0].id)
    return out


@pytest_asyncio.fixture
async def world(clock: ManualClock, backend: MemoryBackend) -> AsyncIterator[World]:
    async with MemoryStore(
        clock=clock, backend=backend, max_session_bytes=1000, max_event_bytes=200
    ) as store:
        s = await store.create_session(
            id="known", processor_id="p", data={"a": 1}, tags={"t"}, ttl=3600
        )
        await store.append_events(s.id, [{"type": "e", "data": {"i": 1}}])
        cp = await store.save_checkpoint(s.id)
        yield World(store, s.id, cp.id)


async def _expect_nothing_written(
    world: World, call: Call, error: type[BaseException], match: str | None = None
) -> BaseException:
    store = world.store
    before = await _state(store)
    count = await store.count_sessions(SessionFilter(include_expired=True))
    known = await store.get_session(world.sid)
    with pytest.raises(error, match=match) as info:
        await call(store)
    assert await _state(store) == before
    assert await store.count_sessions(SessionFilter(include_expired=True)) == count
    assert await store.get_session(world.sid) == known
    # the store keeps working
    probe = await store.create_session(data={"probe": True})
    assert await store.get_session(probe.id) == probe
    assert await store.delete_session(probe.id)
    return info.value


# --------------------------------------------------------------------------- session ids

BAD_IDS: list[Any] = [
    "a/b",
    "/abs",
    "a\\b",
    "..",
    "a..b",
    "../etc/passwd",
    "a\x00b",
    "{a}",
    "a{b",
    "a}b",
    "",
    "x" * 129,
    ".hidden",
    "-dash",
    "_under",
    "a b",
    "a:b",
    "a*b",
    "é",
    "a\nb",
    123,
    None,
    b"bytes",
    ["list"],
    {"a": 1},
    1.5,
]


def _id_calls(bad: Any) -> dict[str, Call]:
    def events(s: MemoryStore) -> Awaitable[Any]:
        return s.get_events(bad)

    async def tx_update(s: MemoryStore) -> None:
        async with s.transaction() as tx:
            await tx.update_session(bad, data={})

    async def tx_delete(s: MemoryStore) -> None:
        async with s.transaction() as tx:
            await tx.delete_session(bad)

    async def tx_append(s: MemoryStore) -> None:
        async with s.transaction() as tx:
            await tx.append_events(bad, [{"type": "t"}])

    async def tx_create(s: MemoryStore) -> None:
        async with s.transaction() as tx:
            await tx.create_session(id=bad)

    return {
        "get_session": lambda s: s.get_session(bad),
        "get_session_expired": lambda s: s.get_session(bad, include_expired=True),
        "get_sessions": lambda s: s.get_sessions(["known", bad]),
        "update_session": lambda s: s.update_session(bad, data={"x": 1}),
        "delete_session": lambda s: s.delete_session(bad),
        "touch": lambda s: s.touch(bad, ttl=5),
        "append_events": lambda s: s.append_events(bad, [{"type": "t"}]),
        "get_events": events,
        "trim_events": lambda s: s.trim_events(bad, keep_last=0),
        "save_checkpoint": lambda s: s.save_checkpoint(bad),
        "list_checkpoints": lambda s: s.list_checkpoints(bad),
        "get_checkpoint": lambda s: s.get_checkpoint(bad, "x1"),
        "get_checkpoint_cp_id": lambda s: s.get_checkpoint("known", bad),
        "delete_checkpoint": lambda s: s.delete_checkpoint(bad, "x1"),
        "delete_checkpoint_cp_id": lambda s: s.delete_checkpoint("known", bad),
        "restore_checkpoint": lambda s: s.restore_checkpoint(bad, "x1"),
        "restore_checkpoint_cp_id": lambda s: s.restore_checkpoint("known", bad),
        "create_session": lambda s: s.create_session(id=bad),
        "create_session_group": lambda s: s.create_session(group=bad),
        "filter_ids": lambda s: s.list_sessions(SessionFilter(ids=["known", bad])),
        "commit_update": lambda s: s.commit([UpdateOp(bad, SessionUpdate(data={}))]),
        "commit_delete": lambda s: s.commit([DeleteOp(bad)]),
        "commit_append": lambda s: s.commit([AppendOp(bad, [{"type": "t"}])]),
        "commit_create": lambda s: s.commit([CreateOp(NewSession(id=bad))]),
        "tx_update": tx_update,
        "tx_delete": tx_delete,
        "tx_append": tx_append,
        "tx_create": tx_create,
    }


_ID_CALL_NAMES = sorted(_id_calls("x"))


@pytest.mark.asyncio
@pytest.mark.parametrize("method", _ID_CALL_NAMES)
async def test_bad_session_ids_are_refused_everywhere(world: World, method: str) -> None:
    for bad in BAD_IDS:
        if bad is None and method in ("create_session", "create_session_group", "tx_create"):
            continue  # None means "generate one" there
        if bad is None and method == "commit_create":
            continue
        call = _id_calls(bad)[method]
        err = await _expect_nothing_written(world, call, InvalidSessionIdError)
        assert isinstance(err, ValueError)
        assert "allowed" in str(err)


@pytest.mark.asyncio
async def test_longest_allowed_id_works(world: World) -> None:
    longest = "a" + "b" * 127
    s = await world.store.create_session(id=longest)
    assert await world.store.get_session(longest) == s
    for ok in ("A", "0", "a.b", "a-b_c.d", "x" * 128):
        assert await world.store.get_session(ok) is None


# --------------------------------------------------------------------------- payloads


class _Obj:
    pass


@dataclass
class _DC:
    x: int


BAD_VALUES: list[Any] = [
    {1, 2},
    (1, 2),
    b"bytes",
    datetime(2030, 1, 1, tzinfo=UTC),
    date(2030, 1, 1),
    uuid.uuid4(),
    math.nan,
    math.inf,
    -math.inf,
    _Obj(),
    _DC(1),
    2**64,
]


def _payload_calls(bad: Any) -> dict[str, tuple[Call, str]]:
    nested = {"outer": [{"inner": bad}]}
    return {
        "create_data": (lambda s: s.create_session(data=nested), "data.outer[0].inner"),
        "create_metadata": (lambda s: s.create_session(metadata=nested), "metadata.outer[0].inner"),
        "update_data": (lambda s: s.update_session("known", data=nested), "data.outer[0].inner"),
        "merge_data": (
            lambda s: s.update_session("known", merge_data=nested),
            "merge_data.outer[0].inner",
        ),
        "update_metadata": (
            lambda s: s.update_session("known", metadata=nested),
            "metadata.outer[0].inner",
        ),
        "merge_metadata": (
            lambda s: s.update_session("known", merge_metadata=nested),
            "merge_metadata.outer[0].inner",
        ),
        "event_data": (
            lambda s: s.append_events("known", [{"type": "ok"}, {"type": "t", "data": nested}]),
            "events[1].data.outer[0].inner",
        ),
        "commit": (
            lambda s: s.commit(
                [
                    CreateOp(NewSession(id="fine")),
                    UpdateOp("known", SessionUpdate(merge_data=nested)),
                ]
            ),
            "merge_data.outer[0].inner",
        ),
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("where", sorted(_payload_calls(None)))
async def test_non_json_native_payloads_are_refused(world: World, where: str) -> None:
    for bad in BAD_VALUES:
        call, path = _payload_calls(bad)[where]
        err = await _expect_nothing_written(world, call, SerializationError)
        assert isinstance(err, SerializationError)
        assert err.path == path, (bad, err)


@pytest.mark.asyncio
async def test_non_str_keys_and_non_dict_payloads(world: World) -> None:
    calls: list[Call] = [
        lambda s: s.create_session(data={1: "x"}),  # type: ignore[dict-item]
        lambda s: s.create_session(data=[1, 2]),  # type: ignore[arg-type]
        lambda s: s.create_session(metadata="text"),  # type: ignore[arg-type]
        lambda s: s.update_session("known", merge_data={("a",): 1}),  # type: ignore[dict-item]
        lambda s: s.append_events("known", [{"type": "t", "data": [1]}]),
    ]
    for call in calls:
        await _expect_nothing_written(world, call, SerializationError)


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    node = value
    for _ in range(levels):
        child: dict[str, Any] = {}
        node["n"] = child
        node = child
    return value


@pytest.mark.asyncio
async def test_nesting_too_deep(world: World) -> None:
    for call in (
        lambda s: s.create_session(data=_deep(300)),
        lambda s: s.update_session("known", merge_data=_deep(300)),
        lambda s: s.append_events("known", [{"type": "t", "data": _deep(300)}]),
    ):
        err = await _expect_nothing_written(world, call, SerializationError)
        assert "nested deeper" in str(err)


@pytest.mark.asyncio
async def test_payload_over_max_session_bytes(world: World) -> None:
    big = {"blob": "x" * 1000}
    half = {"blob": "x" * 600}
    calls: list[Call] = [
        lambda s: s.create_session(data=big),
        lambda s: s.create_session(metadata=big),
        # each part fits, together they do not
        lambda s: s.create_session(data=half, metadata=half),
        lambda s: s.update_session("known", data=big),
        # a merge that grows the stored document over the limit
        lambda s: s.update_session("known", merge_metadata=half, merge_data=half),
    ]
    for call in calls:
        err = await _expect_nothing_written(world, call, QuotaExceededError)
        assert "1000" in str(err)
    # a merge pushing an existing document over the limit
    await world.store.update_session("known", merge_data={"grow": "y" * 500})
    await _expect_nothing_written(
        world,
        lambda s: s.update_session("known", merge_data={"more": "z" * 500}),
        QuotaExceededError,
    )


@pytest.mark.asyncio
async def test_event_over_max_event_bytes(world: World) -> None:
    ok = {"type": "t", "data": {"s": "x" * 150}}
    too_big = {"type": "t", "data": {"s": "x" * 250}}
    err = await _expect_nothing_written(
        world, lambda s: s.append_events("known", [ok, too_big]), QuotaExceededError
    )
    assert "events[1].data" in str(err)
    s = await world.store.append_events("known", [ok])
    assert s.event_count == 2


@pytest.mark.asyncio
async def test_bad_events(world: World) -> None:
    bad_batches: list[Any] = [
        [],
        {"type": "t"},
        "t",
        [{"data": {}}],
        [{"type": ""}],
        [{"type": 5}],
        [{"type": "x" * 129}],
        [{"type": "t", "extra": 1}],
        [42],
    ]

    def append(events: Any) -> Call:
        return lambda s: s.append_events("known", events)

    for events in bad_batches:
        await _expect_nothing_written(world, append(events), InvalidArgumentError)


# --------------------------------------------------------------------------- arguments


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "ttl",
    [0, -1, -0.5, 0.0001, math.nan, math.inf, 10**12, True, "60", timedelta(seconds=-1)],
)
async def test_bad_ttl(world: World, ttl: Any) -> None:
    for call in (
        lambda s: s.create_session(ttl=ttl),
        lambda s: s.update_session("known", ttl=ttl),
        lambda s: s.touch("known", ttl=ttl),
    ):
        await _expect_nothing_written(world, call, InvalidArgumentError, match="ttl")


@pytest.mark.asyncio
async def test_bad_scalar_arguments(world: World) -> None:
    calls: list[Call] = [
        lambda s: s.create_session(status="sleeping"),
        lambda s: s.update_session("known", status="sleeping"),
        lambda s: s.create_session(processor_id=""),
        lambda s: s.create_session(processor_id=5),  # type: ignore[arg-type]
        lambda s: s.create_session(processor_id="x" * 300),
        lambda s: s.create_session(tags="prod"),
        lambda s: s.create_session(tags=[""]),
        lambda s: s.create_session(tags=[1]),  # type: ignore[list-item]
        lambda s: s.update_session("known", add_tags="x"),
        lambda s: s.update_session("known", remove_tags=[None]),  # type: ignore[list-item]
        lambda s: s.create_session(expires_at=datetime(2031, 1, 1)),
        lambda s: s.create_session(expires_at="2031-01-01"),  # type: ignore[arg-type]
        lambda s: s.update_session("known", expires_at=12),  # type: ignore[arg-type]
        lambda s: s.save_checkpoint("known", label="x" * 300),
        lambda s: s.save_checkpoint("known", keep_last=0),
        lambda s: s.save_checkpoint("known", keep_last=-3),
        lambda s: s.trim_events("known", keep_last=-1),
        lambda s: s.trim_events("known", keep_last=True),
        lambda s: s.get_events("known", limit=-5),
        lambda s: s.get_events("known", limit=10**9),
        lambda s: s.get_events("known", after_seq=-1),
        lambda s: s.get_sessions("known"),
        lambda s: s.search_sessions(""),
        lambda s: s.search_sessions("x" * 5000),
        lambda s: s.put_records([], strategy="merge"),  # type: ignore[arg-type]
        lambda s: s.commit(CreateOp(NewSession())),  # type: ignore[arg-type]
        lambda s: s.commit(["not an op"]),  # type: ignore[list-item]
    ]
    for call in calls:
        await _expect_nothing_written(world, call, InvalidArgumentError)


@pytest.mark.asyncio
async def test_stale_expected_version(world: World) -> None:
    calls: list[Call] = [
        lambda s: s.update_session("known", data={}, expected_version=1),
        lambda s: s.update_session("known", data={}, expected_version=99),
        lambda s: s.append_events("known", [{"type": "t"}], expected_version=1),
        lambda s: s.delete_session("known", expected_version=1),
        lambda s: s.touch("known", expected_version=1),
        lambda s: s.trim_events("known", keep_last=0, expected_version=1),
        lambda s: s.restore_checkpoint("known", world.cp_id, expected_version=1),
        lambda s: s.commit(
            [CreateOp(NewSession(id="new-one")), DeleteOp("known", expected_version=1)]
        ),
    ]
    for call in calls:
        err = await _expect_nothing_written(world, call, SessionConflictError)
        assert isinstance(err, SessionConflictError)
        assert err.actual == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"limit": -1},
        {"limit": 10**6},
        {"limit": True},
        {"offset": -1},
        {"offset": 10**9},
        {"offset": False},
        {"sort_by": "priority"},
        {"order": "up"},
        {"offset": 3, "cursor": "abc"},
    ],
)
async def test_bad_query_options(world: World, kwargs: dict[str, Any]) -> None:
    for call in (
        lambda s: s.list_sessions(None, QueryOptions(**kwargs)),
        lambda s: s.search_sessions("known", QueryOptions(**kwargs)),
    ):
        await _expect_nothing_written(world, call, InvalidArgumentError)


@pytest.mark.asyncio
@pytest.mark.parametrize("indexed", [False, True])
async def test_bad_cursors(world: World, indexed: bool) -> None:
    store = world.store
    for i in range(5):
        await store.create_session(id=f"extra-{i}", tags={"t"})
    flt = SessionFilter(tags_any=["t"]) if indexed else SessionFilter()
    page = await store.list_sessions(flt, QueryOptions(limit=2))
    cursor = page.next_cursor
    assert cursor is not None
    tampered = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")
    calls: list[Call] = [
        lambda s: s.list_sessions(flt, QueryOptions(limit=2, cursor=tampered)),
        lambda s: s.list_sessions(flt, QueryOptions(limit=2, cursor="garbage!")),
        lambda s: s.list_sessions(flt, QueryOptions(limit=2, cursor="")),
        # the same cursor with another filter, sort or order
        lambda s: s.list_sessions(
            SessionFilter(tags_any=["t"], processor_id="p"), QueryOptions(limit=2, cursor=cursor)
        ),
        lambda s: s.list_sessions(flt, QueryOptions(limit=2, cursor=cursor, order="desc")),
        lambda s: s.list_sessions(flt, QueryOptions(limit=2, cursor=cursor, sort_by="id")),
        lambda s: s.search_sessions("extra", QueryOptions(limit=2, cursor=cursor), flt),
    ]
    for call in calls:
        await _expect_nothing_written(world, call, InvalidCursorError)
    # the cursor still works with its own query
    nxt = await store.list_sessions(flt, QueryOptions(limit=2, cursor=cursor))
    assert nxt.ids
    assert set(nxt.ids).isdisjoint(page.ids)


@pytest.mark.asyncio
async def test_bad_filters(world: World) -> None:
    with pytest.raises(InvalidArgumentError):
        SessionFilter(status="bogus")
    with pytest.raises(InvalidArgumentError):
        SessionFilter(created_after=datetime(2030, 1, 1))
    with pytest.raises(InvalidArgumentError):
        SessionFilter(metadata={"a..b": 1})
    with pytest.raises(SerializationError):
        SessionFilter(metadata={"a": float("nan")})
    assert await world.store.count_sessions() == 1


# --------------------------------------------------------------------------- configuration


def test_unknown_scheme_lists_installed_drivers() -> None:
    with pytest.raises(DriverNotFoundError) as info:
        open_store("nosuchdriver://somewhere")
    assert "nosuchdriver" in str(info.value)
    assert "memory" in str(info.value)
    assert "memory" in info.value.installed
    assert isinstance(info.value, ConfigurationError)
    assert isinstance(info.value, SessionStoreError)


@pytest.mark.parametrize("url", ["memory", "", "://x", "memory:/x"])
def test_not_a_url(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(url)


@pytest.mark.parametrize(
    ("url", "kwargs", "named"),
    [
        ("memory://?bogus=1", {}, "bogus"),
        ("memory://?max_session_bytes=abc", {}, "max_session_bytes"),
        ("memory://?max_event_bytes=1.5", {}, "max_event_bytes"),
        ("memory://?checkpoint_keep_last=many", {}, "checkpoint_keep_last"),
        ("memory://?max_session_bytes=0", {}, "max_session_bytes"),
        ("memory://?checkpoint_keep_last=0", {}, "checkpoint_keep_last"),
        ("memory://?namespace=../up", {}, "namespace"),
        ("memory://?namespace=a&namespace=b", {}, "namespace"),
        ("memory://", {"max_session_bytes": "big"}, "max_session_bytes"),
        ("memory://", {"max_session_bytes": True}, "max_session_bytes"),
        ("memory://", {"max_event_bytes": 1.5}, "max_event_bytes"),
        ("memory://", {"namespace": 5}, "namespace"),
        ("memory://", {"bogus": 1}, "bogus"),
        ("memory://?max_session_bytes=100", {"max_session_bytes": "x"}, "max_session_bytes"),
    ],
)
def test_bad_options_name_the_option(url: str, kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        open_store(url, **kwargs)


def test_memory_url_takes_no_host_or_path() -> None:
    for url in ("memory://host", "memory:///some/path", "memory://user:s3cret@host"):
        with pytest.raises(ConfigurationError) as info:
            open_store(url)
        assert "s3cret" not in str(info.value)


def test_good_options_are_typed() -> None:
    store = open_store("memory://?max_session_bytes=2048&namespace=ns1&checkpoint_keep_last=none")
    assert isinstance(store, MemoryStore)
    assert store.options.max_session_bytes == 2048
    assert store.options.namespace == "ns1"
    assert store.options.checkpoint_keep_last is None
    # keyword arguments override the URL
    store = open_store("memory://?max_session_bytes=2048", max_session_bytes=4096)
    assert store.options.max_session_bytes == 4096


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ConfigurationError, match="bogus"):
        MemoryStore(bogus=1)
    with pytest.raises(ConfigurationError, match="clock"):
        MemoryStore(clock=object())


_SECRET = "Pw-s3cr3t"
#: One URL per built-in driver, with a password where the driver takes one (opening a
#: store parses its options; nothing connects).
_DRIVER_URLS = [
    "memory://",
    "sqlite:////tmp/sessionstore-bad-input/x.db",
    "file:///tmp/sessionstore-bad-input/fs",
    f"redis://:{_SECRET}@h:6379/0",
    f"redis+cluster://:{_SECRET}@h1:7000",
    f"redis+sentinel://:{_SECRET}@h1:26379/mymaster",
    f"postgresql://app:{_SECRET}@localhost/db",
]


@pytest.mark.parametrize("base", _DRIVER_URLS)
@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("bogus=1", "bogus"),
        (f"bogus={_SECRET}", "bogus"),
        ("max_session_bytes=10&max_session_bytes=20", "max_session_bytes"),
        ("max_session_bytes=-1", "max_session_bytes"),
        ("max_session_bytes=1e3", "max_session_bytes"),
        ("max_session_bytes=1_000", "max_session_bytes"),
        ("max_session_bytes=%201", "max_session_bytes"),
        ("max_session_bytes=\u0661\u0662", "max_session_bytes"),  # Arabic-Indic digits
        ("max_event_bytes=0x10", "max_event_bytes"),
        ("checkpoint_keep_last=-1", "checkpoint_keep_last"),
        ("namespace=a%2Fb", "namespace"),
    ],
)
def test_bad_url_options_on_every_driver(base: str, query: str, named: str) -> None:
    """Every driver refuses the same bad option the same way: ConfigurationError naming
    the option, never the password."""
    with pytest.raises(ConfigurationError, match=named) as info:
        open_store(f"{base}?{query}")
    assert _SECRET not in str(info.value) and _SECRET not in repr(info.value)


@pytest.mark.parametrize(
    ("base", "option"),
    [
        ("sqlite:////tmp/sessionstore-bad-input/x.db", "lock_timeout"),
        ("file:///tmp/sessionstore-bad-input/fs", "lock_timeout"),
        (f"redis://:{_SECRET}@h:6379/0", "socket_timeout"),
        (f"redis+cluster://:{_SECRET}@h1:7000", "connect_timeout"),
        (f"redis+sentinel://:{_SECRET}@h1:26379/mymaster", "retry_deadline"),
        (f"postgresql://app:{_SECRET}@localhost/db", "connect_timeout"),
        (f"postgresql://app:{_SECRET}@localhost/db", "command_timeout"),
    ],
)
def test_timeouts_are_finite_positive_numbers(base: str, option: str) -> None:
    """A timeout is a finite positive number of seconds, in a URL or a keyword (an
    infinite one would fail only when a socket or lock is made, untyped)."""
    for raw in ("-1", "0", "nan", "inf", "-inf", "1e400", "soon", "", "1_0"):
        with pytest.raises(ConfigurationError, match=option) as info:
            open_store(f"{base}?{option}={raw}")
        assert _SECRET not in str(info.value)
    for value in (math.inf, math.nan, -1.0):
        with pytest.raises(ConfigurationError, match=option):
            open_store(base, **{option: value})
    store = open_store(f"{base}?{option}=2.5")
    assert getattr(store.options, option) == 2.5
    assert _SECRET not in repr(store) and _SECRET not in repr(store.options)


# --------------------------------------------------------------------------- any text

_ANY_TEXT = any_text(max_size=12)


async def _text_outcomes(store: SessionStore, texts: list[str]) -> list[Any]:
    """What each text field does with each text: the value read back, or the error type."""
    out: list[Any] = []
    async with store:
        base = await store.create_session(id="base")
        for n, text in enumerate(texts):
            sid = f"t{n}"

            async def count(text: str = text) -> int:
                # the filter is built inside the call: building it refuses some texts
                flt = SessionFilter(processor_id=text, metadata={text or "k": text})
                return await store.count_sessions(flt)

            calls: dict[str, Callable[[], Awaitable[Any]]] = {
                "tag": partial(store.create_session, id=sid, tags={text}),
                "processor": partial(store.create_session, id=sid, processor_id=text),
                "data_key": partial(store.create_session, id=sid, data={text: text}),
                "event_type": partial(store.append_events, base.id, [{"type": text}]),
                "event_key": partial(store.append_events, base.id, [EventInput("k", key=text)]),
                "label": partial(store.save_checkpoint, base.id, label=text),
                "filter": count,
            }
            for field, call in calls.items():
                try:
                    got = await call()
                except (InvalidArgumentError, SerializationError) as exc:
                    out.append((field, text, type(exc).__name__))
                    continue
                if field in ("tag", "processor", "data_key"):
                    assert await store.get_session(sid) == got, (field, text)
                    await store.delete_session(sid)
                    got = (got.tags, got.processor_id, got.data)
                elif field == "label":
                    got = got.label
                elif field != "filter":
                    (event,) = await store.get_events(base.id, last=1)
                    got = (event.type, event.key)
                out.append((field, text, got))
    return out


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(_ANY_TEXT, min_size=1, max_size=12))
@example(texts=["\x00", "\ud800", "", "a\x00b"])  # refused by some fields, every time
def test_any_text_is_refused_typed_or_kept_exactly_alike_on_every_local_driver(
    texts: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """For any text in any text field, the memory, SQLite and file drivers agree: each
    keeps it exactly, or each refuses it with the same typed error (never an untyped
    one, never a partial write)."""
    root = tmp_path_factory.mktemp("anytext")
    stores: list[SessionStore] = [
        MemoryStore(),
        SqliteStore(path=str(root / "s.db"), durability="none"),
        FileStore(root=str(root / "fs"), durability="none"),
    ]
    outcomes = [asyncio.run(_text_outcomes(store, texts)) for store in stores]
    assert outcomes[0] == outcomes[1] == outcomes[2]
