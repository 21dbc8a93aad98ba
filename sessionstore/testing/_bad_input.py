"""Bad input: a typed error, nothing written, the store keeps working."""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

import pytest

from sessionstore import (
    AppendOp,
    CreateOp,
    EventInput,
    InvalidArgumentError,
    InvalidSessionIdError,
    NewSession,
    QueryOptions,
    QuotaExceededError,
    SerializationError,
    SessionFilter,
    SessionRecord,
    SessionStore,
    SessionUpdate,
    TrimOp,
    UpdateOp,
)
from sessionstore.codec import MAX_DEPTH

from ._harness import ConformanceContext, accepts_options, snapshot, store_test

__all__ = ["AWKWARD_TEXT", "BAD_IDS", "BAD_VALUES", "BadInputTests"]

BAD_IDS: tuple[Any, ...] = (
    "",
    "a/b",
    "a\\b",
    "..",
    "a..b",
    "a\x00b",
    "{tag}",
    "a}",
    "-leading-dash",
    ".hidden",
    "x" * 129,
    "sp ace",
    "ünï",
    None,
    123,
    b"bytes",
)


class _Obj:
    pass


BAD_VALUES: dict[str, Any] = {
    "set": {1, 2},
    "tuple": (1, 2),
    "bytes": b"raw",
    "datetime": datetime(2030, 1, 1),
    "nan": math.nan,
    "inf": math.inf,
    "uuid": uuid.uuid4(),
    "decimal": Decimal("1.5"),
    "object": _Obj(),
    "int_key": {1: "x"},
    "huge_int": 2**64,
    "int64_over": 2**63,
    "lone_surrogate": "a\ud800b",  # no UTF-8 encoding
    "lone_surrogate_key": {"\udc00": 1},
}

#: Strings every field that takes text keeps exactly, each distinct from the others: the
#: two spellings of "é" (precomposed, decomposed) and a case pair must not collide, and
#: the characters that mean something to a query language, a key layout or a file system
#: are plain characters.
AWKWARD_TEXT: tuple[str, ...] = (
    "\u00e9",
    "e\u0301",
    "Tag",
    "tag",
    "a:b",
    "a,b",
    "a|b",
    "{x}",
    "*",
    "a?",
    "[ab]",
    "%",
    "_",
    "a'b",
    'a"b',
    "\\",
    "/",
    "..",
    " lead",
    "tab\there",
    "line\nbreak",
    "\x7f\x1b",
    "\U0001f600",
    "\ufeffbom",
    "\u202eRTL",
    "CON",
    "nul.txt",
)


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"d": value}
    return value


async def _fingerprint(store: SessionStore) -> list[SessionRecord]:
    """Sessions with their events and checkpoints, expired ones included."""
    return await snapshot(store)


def _names_option(err: Exception, option: str) -> None:
    assert isinstance(err, QuotaExceededError)
    assert err.option == option, (err.option, str(err))
    assert f"raise it with the store option {option!r}" in str(err), str(err)


class BadInputTests:
    """Every entry point refuses bad input before writing anything."""

    async def _refused(
        self,
        ctx: ConformanceContext,
        error: type[Exception],
        call: Callable[[], Awaitable[Any]],
        *,
        probe: bool = True,
    ) -> Exception:
        """``call`` raises ``error`` and changes nothing; then (``probe``) the store
        still creates, reads and deletes a session."""
        before = await _fingerprint(ctx.store)
        with pytest.raises(error) as info:
            await call()
        assert await _fingerprint(ctx.store) == before
        if probe:
            made = await ctx.store.create_session(data={"still": "working"})
            assert await ctx.store.get_session(made.id) == made
            await ctx.store.delete_session(made.id)
        return info.value

    @store_test
    async def test_invalid_ids_refused_everywhere(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        good = await st.create_session(id="good")
        cp = await st.save_checkpoint(good.id)
        for bad in BAD_IDS:
            calls: list[Callable[[], Awaitable[Any]]] = [
                partial(st.get_session, bad),
                partial(st.get_sessions, [bad]),
                partial(st.update_session, bad, merge_data={"x": 1}),
                partial(st.delete_session, bad),
                partial(st.touch, bad),
                partial(st.append_events, bad, [{"type": "x"}]),
                partial(st.get_events, bad),
                partial(st.get_raw_events, bad),
                partial(st.trim_events, bad, keep_last=1),
                partial(st.save_checkpoint, bad),
                partial(st.list_checkpoints, bad),
                partial(st.get_checkpoint, good.id, bad),
                partial(st.get_checkpoint, bad, cp.id),
                partial(st.restore_checkpoint, bad, cp.id),
                partial(st.delete_checkpoint, good.id, bad),
            ]
            if bad is not None:  # id=None / group=None mean "generate" / "no group"
                calls.append(partial(st.create_session, id=bad))
                calls.append(partial(st.create_session, group=bad))
            # each call refused with nothing changed; the store probed after the id's
            # last call (a probe is two durable writes: 16 per id would be most of the
            # test's time on a durable store)
            for i, call in enumerate(calls, 1):
                await self._refused(ctx, InvalidSessionIdError, call, probe=i == len(calls))
        assert issubclass(InvalidSessionIdError, ValueError)

    @store_test
    async def test_unencodable_values_refused(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        s = await st.create_session(data={"ok": 1})
        for name, value in BAD_VALUES.items():
            nested = {"outer": [0, {"inner": value}]}
            attempts: list[Callable[[], Awaitable[Any]]] = [
                partial(st.create_session, data=nested),
                partial(st.create_session, metadata=nested),
                partial(st.update_session, s.id, merge_data=nested),
                partial(st.update_session, s.id, data=nested),
                partial(st.update_session, s.id, merge_metadata=nested),
                partial(st.append_events, s.id, [{"type": "t", "data": nested}]),
            ]
            for call in attempts:
                before = await _fingerprint(st)
                with pytest.raises(SerializationError) as info:
                    await call()
                assert "outer[1].inner" in info.value.path, (name, info.value.path)
                assert await _fingerprint(st) == before

    @store_test
    async def test_unstorable_text_refused(self, ctx: ConformanceContext) -> None:
        """A str holding a lone surrogate has no UTF-8 encoding: every driver refuses it
        alike, before writing (``InvalidArgumentError`` for an argument,
        ``SerializationError`` naming the path for a value), in a write or a query.
        A NUL is refused in a tag, a processor id and an event type, kept in a value."""
        st = ctx.store
        s = await st.create_session(id="ls", tags={"t"}, processor_id="p")
        await st.append_events(s.id, [{"type": "e"}])
        cp = await st.save_checkpoint(s.id)
        bad = "a\ud800b"
        arguments: list[Callable[[], Awaitable[Any]]] = [
            partial(st.create_session, tags={bad}),
            partial(st.create_session, processor_id=bad),
            partial(st.update_session, s.id, add_tags={bad}),
            partial(st.update_session, s.id, tags={"ok", bad}),
            partial(st.update_session, s.id, processor_id=bad),
            partial(st.append_events, s.id, [{"type": "ok"}, {"type": bad}]),
            partial(st.append_events, s.id, [EventInput("t", key=bad)]),
            partial(st.save_checkpoint, s.id, label=bad),
            partial(st.search_sessions, bad),
            partial(st.get_events, s.id, types=[bad]),
            partial(
                st.commit, [CreateOp(NewSession(id="ls-new")), CreateOp(NewSession(tags={bad}))]
            ),
            lambda: st.list_sessions(SessionFilter(processor_id=bad)),
            lambda: st.count_sessions(SessionFilter(processor_id=[bad])),
            lambda: st.list_sessions(SessionFilter(tags_any=[bad])),
            lambda: st.list_sessions(SessionFilter(tags_all=["t", bad])),
            lambda: st.list_sessions(SessionFilter(metadata={bad: 1})),
        ]
        if not st.capabilities.event_log:
            arguments.remove(arguments[6])  # no event keys there
        for call in arguments:
            await self._refused(ctx, InvalidArgumentError, call)
        values: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("data.k", partial(st.create_session, data={"k": bad})),
            ("merge_metadata.k[0]", partial(st.update_session, s.id, merge_metadata={"k": [bad]})),
            (f"data[{bad!r}]", partial(st.update_session, s.id, data={bad: 1})),
            (
                "events[1].data.k",
                partial(st.append_events, s.id, [{"type": "t"}, {"type": "t", "data": {"k": bad}}]),
            ),
            ("k", lambda: st.list_sessions(SessionFilter(metadata={"k": bad}))),
        ]
        for path, call in values:
            err = await self._refused(ctx, SerializationError, call)
            assert isinstance(err, SerializationError) and err.path == path, (path, err)
        assert (await st.get_checkpoint(s.id, cp.id)) == cp
        # NUL: no tag, processor id or event type holds one (a PostgreSQL text cannot)
        nul = "a\x00b"
        for call in (
            partial(st.append_events, s.id, [{"type": nul}]),
            partial(st.get_events, s.id, types=["e", nul]),
            lambda: st.list_sessions(SessionFilter(processor_id=nul)),
            lambda: st.list_sessions(SessionFilter(tags_any=[nul])),
        ):
            await self._refused(ctx, InvalidArgumentError, call)
        # ...while a value or a label keeps it
        s = await st.update_session(s.id, merge_data={nul: nul}, merge_metadata={"m": nul})
        s = await st.append_events(s.id, [{"type": "t", "data": {nul: [nul]}}])
        labelled = await st.save_checkpoint(s.id, label=nul)
        assert await st.get_session(s.id) == s
        assert (await st.get_events(s.id, after_seq=1))[0].data == {nul: [nul]}
        assert await st.get_checkpoint(s.id, labelled.id) == labelled
        assert labelled.label == nul
        page = await st.list_sessions(SessionFilter(metadata={"m": nul}))
        assert page.ids == [s.id]

    @store_test
    async def test_awkward_text_round_trips(self, ctx: ConformanceContext) -> None:
        """Text fields keep any encodable str exactly (no normalisation, no case folding,
        no escaping leak): each of ``AWKWARD_TEXT`` as a tag, a processor id, a
        metadata key and value, an event type and a checkpoint label is read back as
        written and selects its own session only."""
        st = ctx.store
        made: dict[str, Any] = {}
        for i, text in enumerate(AWKWARD_TEXT):
            s = await st.create_session(
                id=f"aw-{i}",
                tags={text},
                processor_id=text,
                metadata={text: text},
                data={text: [text]},
            )
            s = await st.append_events(s.id, [{"type": text, "data": {text: text}}])
            cp = await st.save_checkpoint(s.id, label=text)
            made[text] = (s, cp)
        for text in AWKWARD_TEXT:
            s, cp = made[text]
            got = await st.get_session(s.id)
            assert got == s, (text, got)
            assert got is not None and got.tags == {text} and got.processor_id == text
            (event,) = await st.get_events(s.id)
            assert (event.type, event.data) == (text, {text: text})
            assert [e.seq for e in await st.get_events(s.id, types=[text])] == [1]
            assert [c.label for c in await st.list_checkpoints(s.id)] == [text]
            for flt in (
                SessionFilter(tags_any=[text]),
                SessionFilter(tags_all=[text]),
                SessionFilter(processor_id=text),
                SessionFilter(metadata={text: text}) if "." not in text else None,
            ):
                if flt is None:
                    continue
                page = await st.list_sessions(flt, QueryOptions(limit=100))
                assert page.ids == [s.id], (text, flt, page.ids)
                assert await st.count_sessions(flt) == 1, (text, flt)

    @store_test
    async def test_deepest_values_work_everywhere(self, ctx: ConformanceContext) -> None:
        """A value nested exactly ``sessionstore.codec.MAX_DEPTH`` containers deep is
        stored, checkpointed, restored, filtered on and copied whole on every driver (the
        formats that wrap it must still encode); one level more is refused."""
        st = ctx.store
        deepest = _deep(MAX_DEPTH - 1)  # _deep(n) nests n dicts in the top-level one
        s = await st.create_session(id="deep", data=deepest, metadata=deepest)
        s = await st.append_events(s.id, [{"type": "t", "data": deepest}])
        cp = await st.save_checkpoint(s.id)
        assert (await st.get_checkpoint(s.id, cp.id)).data == deepest
        s = await st.update_session(s.id, data={})
        s = await st.restore_checkpoint(s.id, cp.id)
        assert s.data == deepest and (await st.get_session(s.id)) == s
        assert (await st.get_events(s.id))[0].data == deepest
        page = await st.list_sessions(SessionFilter(metadata={"d": deepest["d"]}))
        assert page.ids == [s.id]
        (record,) = await _fingerprint(st)
        await st.put_records([record], strategy="overwrite")
        assert await _fingerprint(st) == [record]
        too_deep = {"d": deepest}
        for call in (
            partial(st.create_session, data=too_deep),
            partial(st.update_session, s.id, merge_metadata=too_deep),
            partial(st.append_events, s.id, [{"type": "t", "data": too_deep}]),
        ):
            err = await self._refused(ctx, SerializationError, call)
            assert f"({MAX_DEPTH} levels)" in str(err)

    @store_test
    async def test_too_deep_refused(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        await self._refused(
            ctx, SerializationError, lambda: ctx.store.create_session(data=_deep(600))
        )
        await self._refused(
            ctx, SerializationError, lambda: ctx.store.update_session(s.id, merge_data=_deep(600))
        )

    @store_test
    async def test_oversized_payloads_refused(self, ctx: ConformanceContext) -> None:
        """Refused with nothing written, and the error names the option that raises the
        limit (``max_session_bytes`` / ``max_event_bytes``)."""
        limit, event_limit = 8192, 2048
        if accepts_options(self.make_store, {"max_session_bytes": 1, "max_event_bytes": 1}):  # type: ignore[attr-defined]
            ctx.store = await ctx.open_store(max_session_bytes=limit, max_event_bytes=event_limit)
        else:  # the driver's own limits
            limit = ctx.store.options.max_session_bytes  # type: ignore[attr-defined]
            event_limit = ctx.store.options.max_event_bytes  # type: ignore[attr-defined]
        st = ctx.store
        s = await st.create_session()
        # the limits are on compact encoded JSON: data and metadata together, at most
        exact = {"blob": "x" * (limit - len(b'{"blob":""}') - len(b"{}"))}
        at_limit = await st.create_session(data=exact)
        assert (await st.get_session(at_limit.id)) == at_limit
        await self._refused(
            ctx, QuotaExceededError, lambda: st.create_session(data={"blob": exact["blob"] + "x"})
        )
        await st.append_events(
            at_limit.id, [{"type": "t", "data": {"b": "e" * (event_limit - len(b'{"b":""}'))}}]
        )
        await self._refused(
            ctx,
            QuotaExceededError,
            lambda: st.append_events(
                at_limit.id, [{"type": "t", "data": {"b": "e" * (event_limit - 7)}}]
            ),
        )
        await st.delete_session(at_limit.id)
        big = {"blob": "x" * (limit + 1)}
        half = {"blob": "y" * (limit // 2 + 10)}
        session_calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: st.create_session(data=big),
            lambda: st.create_session(data=half, metadata=half),  # each fits, not together
            lambda: st.update_session(s.id, data=big),
        ]
        for call in session_calls:
            _names_option(await self._refused(ctx, QuotaExceededError, call), "max_session_bytes")
        await st.update_session(s.id, data=half)
        for call in (
            lambda: st.update_session(s.id, metadata=half),
            lambda: st.update_session(s.id, merge_metadata=half),  # grows the stored document
        ):
            _names_option(await self._refused(ctx, QuotaExceededError, call), "max_session_bytes")
        err = await self._refused(
            ctx,
            QuotaExceededError,
            lambda: st.append_events(
                s.id, [{"type": "t", "data": {"blob": "z" * (event_limit + 1)}}]
            ),
        )
        _names_option(err, "max_event_bytes")

    @store_test
    async def test_bad_arguments_refused(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        s = await st.create_session()
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: st.create_session(ttl=0),
            lambda: st.create_session(ttl=-5),
            lambda: st.create_session(ttl=10**12),
            lambda: st.create_session(ttl=math.nan),
            lambda: st.create_session(ttl=5, expires_at=st.clock.now()),
            lambda: st.create_session(expires_at=datetime(2030, 1, 1)),  # naive
            lambda: st.create_session(status="sleeping"),
            lambda: st.create_session(tags="prod"),
            lambda: st.create_session(tags=""),  # one string, even an empty one
            lambda: st.create_session(tags=[""]),
            lambda: st.create_session(processor_id=""),
            lambda: st.update_session(s.id, ttl=-1),
            lambda: st.update_session(s.id, data={}, merge_data={}),
            lambda: st.update_session(s.id, metadata={}, merge_metadata={}),
            lambda: st.update_session(s.id, tags={"a"}, add_tags={"b"}),
            lambda: st.update_session(s.id, tags={"a"}, remove_tags={"b"}),
            lambda: st.update_session(s.id, ttl=5, expires_at=st.clock.now()),
            lambda: st.update_session(s.id, expires_at=datetime(2030, 1, 1)),  # naive
            lambda: st.update_session(s.id, remove_data_keys="a"),
            lambda: st.update_session(s.id, remove_metadata_keys=[1]),  # type: ignore[list-item]
            lambda: st.update_session(s.id, status="sleeping"),
            lambda: st.update_session(s.id, processor_id=""),
            lambda: st.update_session(s.id, add_tags=[""]),
            lambda: st.update_session(s.id, tags=""),
            lambda: st.commit([CreateOp(NewSession(tags=""))]),
            lambda: st.delete_session(s.id, expected_version=0),
            lambda: st.trim_events(s.id, keep_last=1, expected_version=-1),
            lambda: st.restore_checkpoint(s.id, "cp", expected_version=False),
            lambda: st.get_sessions(s.id),
            lambda: st.commit(UpdateOp(s.id, SessionUpdate())),  # type: ignore[arg-type]
            lambda: st.commit([UpdateOp(s.id, {"merge_data": {}})]),  # type: ignore[arg-type]
            lambda: st.commit([CreateOp({"id": "x"})]),  # type: ignore[arg-type]
            lambda: st.put_records([], strategy="newest"),  # type: ignore[arg-type]
            lambda: st.update_session(s.id, merge_data={}, expected_version=0),
            lambda: st.update_session(s.id, merge_data={}, expected_version=True),
            lambda: st.touch(s.id, ttl=0),
            lambda: st.append_events(s.id, []),
            lambda: st.append_events(s.id, [{"data": {}}]),
            lambda: st.append_events(s.id, [{"type": "t", "bogus": 1}]),
            lambda: st.append_events(s.id, {"type": "t"}),  # type: ignore[arg-type]
            lambda: st.append_events(s.id, EventInput(type="t")),  # type: ignore[arg-type]
            lambda: st.append_events(s.id, 5),  # type: ignore[arg-type]
            lambda: st.get_events(s.id, last=-1),
            lambda: st.get_events(s.id, after_seq=-1),
            lambda: st.trim_events(s.id, keep_last=-1),
            lambda: st.save_checkpoint(s.id, keep_last=0),
            lambda: st.search_sessions("x" * 5000),
            lambda: st.commit([object()]),  # type: ignore[list-item]
            lambda: st.commit(5),  # type: ignore[arg-type]
        ]
        for call in calls:
            await self._refused(ctx, InvalidArgumentError, call)

    @store_test
    async def test_documented_caps(self, ctx: ConformanceContext) -> None:
        """The documented caps (docs/guide.md, Events): ``limit``/``last`` of a
        ``get_events`` page at most 100,000; sequence numbers and the seq arguments
        (``after_seq``, ``before_seq``, ``keep_last``, ``n``, ``seqs``) at most ``2**62``;
        a checkpoint ``keep_last`` at most 1,000,000. The cap itself is accepted, one more
        is refused with ``InvalidArgumentError`` and writes nothing."""
        st = ctx.store
        s = await st.append_events("caps", [{"type": "e"}] * 3, create=True)
        page, seq = 100_000, 2**62
        assert len(await st.get_events(s.id, limit=page)) == 3
        assert len(await st.get_events(s.id, last=page)) == 3
        assert await st.get_events(s.id, after_seq=seq) == []
        assert len(await st.get_events(s.id, before_seq=seq)) == 3
        assert (await st.trim_events(s.id, keep_last=seq)).event_count == 3
        await st.save_checkpoint(s.id, keep_last=1_000_000)
        refused: list[Callable[[], Awaitable[Any]]] = [
            partial(st.get_events, s.id, limit=page + 1),
            partial(st.get_events, s.id, last=page + 1),
            partial(st.get_events, s.id, after_seq=seq + 1),
            partial(st.get_events, s.id, before_seq=seq + 1),
            partial(st.trim_events, s.id, keep_last=seq + 1),
            partial(st.commit, [TrimOp(s.id, seq + 1)]),
            partial(st.save_checkpoint, s.id, keep_last=1_000_001),
        ]
        if st.capabilities.event_log:
            assert (await st.truncate_events(s.id, seq)).event_count == 3
            assert await st.delete_events(s.id, seqs=[seq]) == await st.get_session(s.id)
            refused += [
                partial(st.pop_events, s.id, seq + 1),
                partial(st.truncate_events, s.id, seq + 1),
                partial(st.delete_events, s.id, seqs=[seq + 1]),
            ]
        for call in refused:
            await self._refused(ctx, InvalidArgumentError, call)

    @store_test
    async def test_scan_refuses_include_expired_twice(self, ctx: ConformanceContext) -> None:
        """``include_expired`` goes in the filter or the argument, not both."""
        await ctx.store.create_session()
        with pytest.raises(InvalidArgumentError):
            [r async for r in ctx.store.scan(include_expired=True, filter=SessionFilter())]

    @store_test
    async def test_bad_query_options_refused(self, ctx: ConformanceContext) -> None:
        for kwargs in (
            {"limit": 0},
            {"limit": -1},
            {"limit": 10**6},
            {"limit": True},
            {"offset": -1},
            {"offset": 10**9},
            {"sort_by": "priority"},
            {"order": "sideways"},
            {"cursor": "abc", "offset": 3},
        ):
            with pytest.raises(InvalidArgumentError):
                QueryOptions(**kwargs)
        for bad in ("", "not-a-cursor", "A" * 40):
            await self._refused(
                ctx,
                InvalidArgumentError,
                partial(ctx.store.list_sessions, None, QueryOptions(cursor=bad)),
            )
        with pytest.raises(InvalidArgumentError):
            SessionFilter(created_after=datetime(2030, 1, 1))  # naive
        with pytest.raises(InvalidArgumentError):
            SessionFilter(status="sleeping")
        with pytest.raises(InvalidArgumentError):
            SessionFilter(metadata={"a..b": 1})

    @store_test
    async def test_unencodable_values_refused_on_every_write_path(
        self, ctx: ConformanceContext
    ) -> None:
        st = ctx.store
        s = await st.create_session(id="bv", data={"ok": 1})
        await st.append_events(s.id, [{"type": "e"}])
        (good,) = [r async for r in st.scan()]
        for name in ("set", "bytes", "nan", "object", "int_key", "huge_int"):
            nested = {"outer": [0, {"inner": BAD_VALUES[name]}]}
            fresh = replace(good.session, id="bv-new", event_count=0, last_seq=0)
            attempts: list[Callable[[], Awaitable[Any]]] = [
                partial(st.update_session, s.id, metadata=nested),
                partial(st.update_session, s.id, merge_metadata=nested, merge_data={"x": 1}),
                partial(st.commit, [CreateOp(NewSession(id="bv-c", data=nested))]),
                partial(st.commit, [CreateOp(NewSession(metadata=nested))]),
                partial(
                    st.commit,
                    [
                        UpdateOp(s.id, SessionUpdate(merge_data={"fine": 1})),
                        UpdateOp(s.id, SessionUpdate(metadata=nested)),
                    ],
                ),
                partial(
                    st.commit,
                    [
                        AppendOp(s.id, [{"type": "fine"}]),
                        AppendOp(s.id, [{"type": "t", "data": nested}]),
                    ],
                ),
                partial(self._in_transaction, st, s.id, nested),
                partial(st.put_records, [SessionRecord(replace(fresh, data=nested))]),
                partial(st.put_records, [SessionRecord(replace(fresh, metadata=nested))]),
                partial(
                    st.put_records,
                    [
                        SessionRecord(replace(fresh, id="bv-ok")),
                        SessionRecord(
                            replace(good.session, data={"v": 1}),
                            [replace(good.events[0], data=nested)],
                        ),
                    ],
                    strategy="overwrite",
                ),
            ]
            for index, call in enumerate(attempts):
                before = await _fingerprint(st)
                with pytest.raises(SerializationError) as info:
                    await call()
                assert "outer[1].inner" in info.value.path, (name, index, info.value.path)
                assert await _fingerprint(st) == before, (name, index)

    @staticmethod
    async def _in_transaction(store: SessionStore, sid: str, bad: dict[str, Any]) -> None:
        async with store.transaction() as tx:
            await tx.append_events(sid, [{"type": "fine"}])
            await tx.create_session(id="bv-tx", data={"fine": True})
            await tx.update_session(sid, merge_metadata=bad)

    @store_test
    async def test_bad_records_refused(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        s = await st.create_session(id="br", data={"a": 1})
        await st.append_events(s.id, [{"type": "e"}] * 2)
        await st.save_checkpoint(s.id)
        (good,) = [r async for r in st.scan()]
        fresh = replace(good.session, id="br-new", event_count=0, last_seq=0)
        bad_records: list[tuple[type[Exception], list[Any]]] = [
            (InvalidSessionIdError, [SessionRecord(replace(fresh, id="bad/id"))]),
            (InvalidArgumentError, [SessionRecord(replace(fresh, version=0))]),
            (InvalidArgumentError, [SessionRecord(fresh, good.events[:1])]),  # count wrong
            (InvalidArgumentError, [SessionRecord(fresh), SessionRecord(fresh)]),  # twice
            (InvalidArgumentError, [SessionRecord(replace(fresh, id="x1")), {"not": "a record"}]),
            (
                QuotaExceededError,
                [
                    SessionRecord(
                        replace(
                            fresh,
                            data={"b": "x" * (st.options.max_session_bytes + 1)},  # type: ignore[attr-defined]
                        )
                    )
                ],
            ),
        ]
        # every field a create or append would refuse, refused in a record too (a store
        # must not keep what it cannot read back: a naive time, an unencodable tag)
        (cp,) = good.checkpoints
        whole = good.session  # overwritten by each record, were it taken
        naive = datetime(2030, 1, 1)
        sessions: list[dict[str, Any]] = [
            {"tags": frozenset({""})},
            {"tags": frozenset({"a\x00"})},
            {"tags": frozenset({"x" * 300})},
            {"tags": frozenset({"a\ud800"})},
            {"tags": ["list"]},
            {"processor_id": ""},
            {"processor_id": "\udc00"},
            {"processor_id": 5},
            {"group": "../up"},
            {"group": 5},
            {"status": "bogus"},
            {"created_at": naive},
            {"updated_at": "2030-01-01"},
            {"expires_at": naive},
            {"version": True},
            {"last_seq": -1},
        ]
        for change in sessions:
            bad_records.append(
                (InvalidArgumentError, [SessionRecord(replace(whole, **change), good.events)])
            )
        for change in ({"type": ""}, {"type": "\ud800"}, {"at": naive}, {"seq": "1"}):
            events = [replace(good.events[0], **change), good.events[1]]
            bad_records.append((InvalidArgumentError, [SessionRecord(whole, events)]))
        for change in ({"label": "\ud800"}, {"id": "../cp"}, {"created_at": naive}):
            bad = replace(cp, **change)
            bad_records.append((InvalidArgumentError, [SessionRecord(whole, good.events, [bad])]))
        bad_records.append(
            (
                SerializationError,
                [SessionRecord(whole, good.events, [replace(cp, data={"s": "\ud800"})])],
            )
        )
        for error, records in bad_records:
            await self._refused(ctx, error, partial(st.put_records, records, strategy="overwrite"))
        # the sound record is taken
        result = await st.put_records([good], strategy="overwrite")
        assert result.overwritten == 1
        assert await _fingerprint(st) == [good]
