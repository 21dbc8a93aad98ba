"""A Hypothesis state machine comparing a store with a small reference model.

The machine is synchronous (Hypothesis' stateful testing is), so it drives the store
through a private event loop it owns, one per example. After every step it compares
every session, its event log and the live count with the model.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from sessionstore import (
    AppendOp,
    CreateOp,
    EventInput,
    EventKeyConflictError,
    ManualClock,
    NewSession,
    Op,
    QueryOptions,
    SessionConflictError,
    SessionExistsError,
    SessionFilter,
    SessionNotFoundError,
    SessionStore,
    SessionUpdate,
    Status,
    TruncateOp,
    UpdateOp,
)

from ._harness import drop_namespace, empty_namespace

if TYPE_CHECKING:
    from .suite import StoreConformanceBase

__all__ = ["StateMachineTests", "make_state_machine"]

IDS = ("a", "b", "c")
keys = st.sampled_from(["k1", "k2", "k3"])
values = st.one_of(
    st.integers(-5, 5), st.text(max_size=3), st.none(), st.lists(st.integers(0, 3), max_size=2)
)
small_dicts = st.dictionaries(keys, values, max_size=3)
ids = st.sampled_from(IDS)
ttls = st.one_of(st.none(), st.integers(1, 20))
processors = st.sampled_from([None, "p1", "p2"])
groups = st.sampled_from([None, "g1"])
versions = st.sampled_from(["none", "right", "stale"])


@dataclass
class _ModelSession:
    data: dict[str, Any]
    metadata: dict[str, Any]
    status: Status
    tags: frozenset[str]
    version: int
    expires_at: datetime | None
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    last_seq: int = 0
    checkpoints: list[tuple[str, dict[str, Any], dict[str, Any], Status, frozenset[str]]] = field(
        default_factory=list
    )
    processor_id: str | None = None
    group: str | None = None
    key_of: dict[int, str] = field(default_factory=dict)  # seq -> event key (event_log)

    def kept_key(self, key: str) -> tuple[int, str, dict[str, Any]] | None:
        """The kept event with ``key``, if any."""
        for event in self.events:
            if self.key_of.get(event[0]) == key:
                return event
        return None


def make_state_machine(suite: StoreConformanceBase) -> type[RuleBasedStateMachine]:
    """A state machine class bound to ``suite.make_store``."""

    class StoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.clock = ManualClock()
            self.model: dict[str, _ModelSession] = {}
            namespace = suite.namespace_for_test()
            made = suite.make_store(namespace=namespace, clock=self.clock)
            if inspect.isawaitable(made):
                made = self.run(made)
            self.store: SessionStore = made
            self.run(self.store.initialize())
            self.event_log = self.store.capabilities.event_log
            # Where several store objects share a namespace, a second one on the same data
            # (another process's view). The steps take turns in pairs (two steps and their
            # checks through one object, two through the other), so a copy one object
            # keeps past the other's write is read or written on, and shows.
            self.stores: list[SessionStore] = [self.store]
            self.steps = 0
            if self.store.capabilities.shared_namespace:
                other = suite.make_store(namespace=namespace, clock=self.clock)
                if inspect.isawaitable(other):
                    other = self.run(other)
                self.stores.append(other)
                self.run(other.initialize())

        def run(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        def teardown(self) -> None:
            try:
                if suite.cleanup_namespaces:
                    self.run(empty_namespace(self.store))
                    self.run(drop_namespace(self.store))
                for store in self.stores:
                    self.run(store.shutdown())  # idempotent
            finally:
                self.loop.close()

        # -- helpers
        def live(self, sid: str) -> _ModelSession | None:
            m = self.model.get(sid)
            if m is None or (m.expires_at is not None and m.expires_at <= self.clock.now()):
                return None
            return m

        def expected(self, sid: str, choice: str) -> int | None:
            m = self.model.get(sid)
            if choice == "none" or m is None:
                return None
            return m.version if choice == "right" else m.version + 7

        # -- rules
        @initialize()
        def start(self) -> None:
            pass

        @rule(
            sid=ids,
            data=small_dicts,
            meta=small_dicts,
            ttl=ttls,
            tags=st.frozensets(keys, max_size=2),
            processor=processors,
            group=groups,
        )
        def create(
            self,
            sid: str,
            data: dict[str, Any],
            meta: dict[str, Any],
            ttl: int | None,
            tags: frozenset[str],
            processor: str | None,
            group: str | None,
        ) -> None:
            if self.live(sid) is not None:
                with pytest.raises(SessionExistsError):
                    self.run(self.store.create_session(id=sid, data=data))
                return
            s = self.run(
                self.store.create_session(
                    id=sid,
                    data=data,
                    metadata=meta,
                    ttl=ttl,
                    tags=tags,
                    processor_id=processor,
                    group=group,
                )
            )
            assert s.version == 1
            now = self.clock.now()
            self.model[sid] = _ModelSession(
                dict(data),
                dict(meta),
                Status.ACTIVE,
                tags,
                1,
                now + timedelta(seconds=ttl) if ttl else None,
                processor_id=processor,
                group=group,
            )

        @rule(
            sid=ids,
            data=small_dicts,
            replace=st.booleans(),
            choice=versions,
            status=st.sampled_from(list(Status)),
            processor=processors,
            meta=st.one_of(st.none(), small_dicts),
        )
        def update(
            self,
            sid: str,
            data: dict[str, Any],
            replace: bool,
            choice: str,
            status: Status,
            processor: str | None,
            meta: dict[str, Any] | None,
        ) -> None:
            m = self.live(sid)
            expected = self.expected(sid, choice)
            kwargs: dict[str, Any] = {"data": data} if replace else {"merge_data": data}
            if meta is not None:
                kwargs["metadata"] = meta
            call = self.store.update_session(
                sid, status=status, expected_version=expected, processor_id=processor, **kwargs
            )
            if m is None:
                with pytest.raises(SessionNotFoundError):
                    self.run(call)
                return
            if choice == "stale":
                with pytest.raises(SessionConflictError):
                    self.run(call)
                return
            s = self.run(call)
            m.data = dict(data) if replace else {**m.data, **data}
            m.status = status
            m.processor_id = processor
            if meta is not None:
                m.metadata = dict(meta)
            m.version += 1
            assert s.version == m.version

        @rule(sid=ids, choice=versions)
        def delete(self, sid: str, choice: str) -> None:
            m = self.live(sid)
            expected = self.expected(sid, choice)
            if m is not None and choice == "stale":
                with pytest.raises(SessionConflictError):
                    self.run(self.store.delete_session(sid, expected_version=expected))
                return
            existed = self.run(self.store.delete_session(sid, expected_version=expected))
            assert existed == (m is not None)
            self.model.pop(sid, None)

        @rule(sid=ids, n=st.integers(1, 3), payload=small_dicts)
        def append(self, sid: str, n: int, payload: dict[str, Any]) -> None:
            m = self.live(sid)
            events = [{"type": f"t{i}", "data": payload} for i in range(n)]
            if m is None:
                with pytest.raises(SessionNotFoundError):
                    self.run(self.store.append_events(sid, events))
                return
            s = self.run(self.store.append_events(sid, events))
            for i in range(n):
                m.last_seq += 1
                m.events.append((m.last_seq, f"t{i}", dict(payload)))
            m.version += 1
            assert (s.version, s.last_seq) == (m.version, m.last_seq)

        @rule(sid=ids, keep=st.integers(0, 3))
        def trim(self, sid: str, keep: int) -> None:
            m = self.live(sid)
            if m is None:
                with pytest.raises(SessionNotFoundError):
                    self.run(self.store.trim_events(sid, keep_last=keep))
                return
            self.run(self.store.trim_events(sid, keep_last=keep))
            if len(m.events) > keep:
                m.events = m.events[len(m.events) - keep :]
                m.version += 1

        # -- the full event log (drivers that declare event_log)
        def _stale_or_missing(self, sid: str, expected: int | None, call: Any) -> bool:
            m = self.live(sid)
            if m is None:
                with pytest.raises(SessionNotFoundError):
                    self.run(call())
                return True
            if expected is not None and expected != m.version:
                with pytest.raises(SessionConflictError):
                    self.run(call())
                return True
            return False

        @precondition(lambda self: self.event_log)
        @rule(sid=ids, n=st.integers(1, 3), choice=versions)
        def pop(self, sid: str, n: int, choice: str) -> None:
            expected = self.expected(sid, choice)

            def call() -> Any:
                return self.store.pop_events(sid, n, expected_version=expected)

            if self._stale_or_missing(sid, expected, call):
                return
            m = self.model[sid]
            popped = self.run(call())
            want = m.events[-n:]
            assert [(e.seq, e.type, e.data) for e in popped.events] == want
            if want:
                del m.events[-len(want) :]
                m.version += 1
            assert popped.session.version == m.version

        @precondition(lambda self: self.event_log)
        @rule(sid=ids, after=st.integers(0, 12), choice=versions)
        def truncate(self, sid: str, after: int, choice: str) -> None:
            expected = self.expected(sid, choice)

            def call() -> Any:
                return self.store.truncate_events(sid, after, expected_version=expected)

            if self._stale_or_missing(sid, expected, call):
                return
            m = self.model[sid]
            self.run(call())
            kept = [e for e in m.events if e[0] <= after]
            if len(kept) != len(m.events):
                m.events = kept
                m.version += 1

        @precondition(lambda self: self.event_log)
        @rule(
            sid=ids,
            seqs=st.lists(st.integers(1, 12), max_size=3),
            keyed=st.lists(keys, max_size=2),
        )
        def delete_events(self, sid: str, seqs: list[int], keyed: list[str]) -> None:
            def call() -> Any:
                return self.store.delete_events(sid, seqs=seqs, keys=keyed)

            if self._stale_or_missing(sid, None, call):
                return
            m = self.model[sid]
            self.run(call())
            kept = [e for e in m.events if e[0] not in seqs and m.key_of.get(e[0]) not in keyed]
            if len(kept) != len(m.events):
                m.events = kept
                m.version += 1

        @precondition(lambda self: self.event_log)
        @rule(sid=ids, key=keys, data=st.sampled_from([{}, {"x": 1}]), more=st.booleans())
        def keyed_append(self, sid: str, key: str, data: dict[str, Any], more: bool) -> None:
            events = [EventInput("kt", data, key=key)]
            if more:
                events.append(EventInput("plain"))

            def call() -> Any:
                return self.store.append_events(sid, events)

            if self._stale_or_missing(sid, None, call):
                return
            m = self.model[sid]
            have = m.kept_key(key)
            if have is not None and have[1:] != ("kt", data):
                with pytest.raises(EventKeyConflictError):
                    self.run(call())
                return
            s = self.run(call())
            written = 0
            if have is None:
                m.last_seq += 1
                m.events.append((m.last_seq, "kt", dict(data)))
                m.key_of[m.last_seq] = key
                written += 1
            if more:
                m.last_seq += 1
                m.events.append((m.last_seq, "plain", {}))
                written += 1
            if written:
                m.version += 1
            assert (s.version, s.last_seq) == (m.version, m.last_seq)

        @precondition(lambda self: self.event_log)
        @rule(sid=ids, after=st.integers(0, 12))
        def replace_tail(self, sid: str, after: int) -> None:
            ops: list[Op] = [TruncateOp(sid, after), AppendOp(sid, [{"type": "summary"}])]
            if self.live(sid) is None:
                with pytest.raises(SessionNotFoundError):
                    self.run(self.store.commit(ops))
                return
            m = self.model[sid]
            self.run(self.store.commit(ops))
            kept = [e for e in m.events if e[0] <= after]
            if len(kept) != len(m.events):
                m.events = kept
                m.version += 1
            m.last_seq += 1
            m.events.append((m.last_seq, "summary", {}))
            m.version += 1

        @rule(sid=ids, ttl=ttls)
        def touch(self, sid: str, ttl: int | None) -> None:
            m = self.live(sid)
            if m is None:
                with pytest.raises(SessionNotFoundError):
                    self.run(self.store.touch(sid, ttl=ttl))
                return
            self.run(self.store.touch(sid, ttl=ttl))
            m.version += 1
            if ttl:
                m.expires_at = self.clock.now() + timedelta(seconds=ttl)

        @rule(seconds=st.integers(0, 12))
        def advance(self, seconds: int) -> None:
            self.clock.advance(seconds)

        @rule()
        def cleanup(self) -> None:
            removed = self.run(self.store.cleanup_expired_sessions())
            dead = [sid for sid in self.model if self.live(sid) is None]
            assert removed == len(dead)
            for sid in dead:
                del self.model[sid]

        @rule(sid=ids)
        def checkpoint(self, sid: str) -> None:
            m = self.live(sid)
            if m is None:
                with pytest.raises(SessionNotFoundError):
                    self.run(self.store.save_checkpoint(sid))
                return
            cp = self.run(self.store.save_checkpoint(sid, keep_last=3))
            m.checkpoints.append((cp.id, dict(m.data), dict(m.metadata), m.status, m.tags))
            del m.checkpoints[:-3]

        @precondition(lambda self: any(m.checkpoints for m in self.model.values()))
        @rule(pick=st.integers(0, 100), other=ids)
        def delete_checkpoint(self, pick: int, other: str) -> None:
            owners = [sid for sid, m in self.model.items() if m.checkpoints and self.live(sid)]
            if not owners:
                return
            sid = owners[pick % len(owners)]
            m = self.model[sid]
            cp_id = m.checkpoints[pick % len(m.checkpoints)][0]
            if other != sid and self.live(other) is not None:  # not that session's checkpoint
                assert self.run(self.store.delete_checkpoint(other, cp_id)) is False
            assert self.run(self.store.delete_checkpoint(sid, cp_id)) is True
            m.checkpoints = [c for c in m.checkpoints if c[0] != cp_id]

        @precondition(lambda self: any(m.checkpoints for m in self.model.values()))
        @rule(pick=st.integers(0, 100))
        def restore(self, pick: int) -> None:
            candidates = [
                (sid, m) for sid, m in self.model.items() if m.checkpoints and self.live(sid)
            ]
            if not candidates:
                return
            sid, m = candidates[pick % len(candidates)]
            cp_id, data, meta, status, tags = m.checkpoints[pick % len(m.checkpoints)]
            s = self.run(self.store.restore_checkpoint(sid, cp_id))
            m.data, m.metadata, m.status, m.tags = dict(data), dict(meta), status, tags
            m.version += 1
            assert s.version == m.version

        @rule(first=ids, second=ids, data=small_dicts, stale=st.booleans())
        def commit(self, first: str, second: str, data: dict[str, Any], stale: bool) -> None:
            if not self.store.capabilities.atomic_multi_session and first != second:
                return
            a, b = self.live(first), self.live(second)
            ops: list[Any] = [
                UpdateOp(
                    first,
                    SessionUpdate(merge_data=data),
                    a.version + (7 if stale else 0) if a else None,
                ),
                AppendOp(second, [{"type": "batch"}]),
            ]
            if a is not None and stale:  # the update comes first in the batch
                with pytest.raises(SessionConflictError):
                    self.run(self.store.commit(ops))
                return
            if a is None or b is None:
                with pytest.raises(SessionNotFoundError):
                    self.run(self.store.commit(ops))
                return
            self.run(self.store.commit(ops))
            a.data = {**a.data, **data}
            a.version += 1
            b.last_seq += 1
            b.events.append((b.last_seq, "batch", {}))
            b.version += 1

        @rule(sid=ids, data=small_dicts)
        def create_in_batch(self, sid: str, data: dict[str, Any]) -> None:
            if self.live(sid) is not None:
                with pytest.raises(SessionExistsError):
                    self.run(self.store.commit([CreateOp(NewSession(id=sid, data=data))]))
                return
            self.run(
                self.store.commit(
                    [CreateOp(NewSession(id=sid, data=data)), AppendOp(sid, [{"type": "born"}])]
                )
            )
            self.model[sid] = _ModelSession(
                dict(data), {}, Status.ACTIVE, frozenset(), 2, None, [(1, "born", {})], 1
            )

        # -- the comparison
        @invariant()
        def matches_model(self) -> None:
            for sid in IDS:
                m = self.live(sid)
                s = self.run(self.store.get_session(sid))
                if m is None:
                    assert s is None, f"{sid} should be gone"
                    continue
                assert s is not None, f"{sid} is missing"
                assert (s.data, s.metadata, s.status, s.tags) == (
                    m.data,
                    m.metadata,
                    m.status,
                    m.tags,
                ), sid
                assert (s.version, s.expires_at, s.last_seq) == (
                    m.version,
                    m.expires_at,
                    m.last_seq,
                ), sid
                assert (s.processor_id, s.group) == (m.processor_id, m.group), sid
                assert s.event_count == len(m.events), sid
                events = self.run(self.store.get_events(sid))
                assert [(e.seq, e.type, e.data) for e in events] == m.events, sid
                if self.event_log:
                    assert [e.key for e in events] == [m.key_of.get(e.seq) for e in events]
                cps = self.run(self.store.list_checkpoints(sid))
                assert [c.id for c in cps] == [c[0] for c in m.checkpoints], sid
            live = sorted(sid for sid in IDS if self.live(sid) is not None)
            assert self.run(self.store.count_sessions()) == len(live)
            assert self.run(self.store.list_sessions(None, QueryOptions(sort_by="id"))).ids == live
            for processor in ("p1", "p2"):
                flt = SessionFilter(processor_id=processor)
                want = [sid for sid in live if self.model[sid].processor_id == processor]
                assert (
                    self.run(self.store.list_sessions(flt, QueryOptions(sort_by="id"))).ids == want
                )
                assert self.run(self.store.count_sessions(flt)) == len(want)
            for status in (Status.ACTIVE, Status.PAUSED):
                flt = SessionFilter(status=status)
                want = [sid for sid in live if self.model[sid].status is status]
                assert self.run(self.store.count_sessions(flt)) == len(want), status
            with_events = SessionFilter(has_events=True)
            want = [sid for sid in live if self.model[sid].events]
            assert (
                self.run(self.store.list_sessions(with_events, QueryOptions(sort_by="id"))).ids
                == want
            )
            self.steps += 1
            self.store = self.stores[self.steps // 2 % len(self.stores)]

    StoreMachine.__name__ = f"{type(suite).__name__}Machine"
    return StoreMachine


class StateMachineTests:
    """Random sequences of operations, checked against the model after every step.

    ``test_state_machine`` runs a bounded budget; ``test_state_machine_long`` runs a much
    larger one when ``SESSIONSTORE_CONFORMANCE_LONG=1`` (or ``--sessionstore-long``).
    """

    state_machine_examples: int = 30
    state_machine_steps: int = 30
    #: The same examples on every run (a CI result, a mutation kill, is reproducible). Set
    #: False locally to explore new sequences on each run.
    state_machine_derandomize: bool = True
    #: Shrink a failing run to a minimal one (turn off to fail fast, e.g. in mutation tests).
    state_machine_shrink: bool = True

    def _phases(self) -> list[Phase]:
        phases = [Phase.explicit, Phase.reuse, Phase.generate]
        return [*phases, Phase.shrink] if self.state_machine_shrink else phases

    def test_state_machine(self) -> None:
        run_state_machine_as_test(
            make_state_machine(self),  # type: ignore[arg-type]
            settings=settings(
                max_examples=self.state_machine_examples,
                stateful_step_count=self.state_machine_steps,
                deadline=None,
                database=None,
                derandomize=self.state_machine_derandomize,
                phases=self._phases(),
                suppress_health_check=list(HealthCheck),
            ),
        )

    def test_state_machine_long(self) -> None:
        if os.environ.get("SESSIONSTORE_CONFORMANCE_LONG") != "1":
            pytest.skip(
                "long state-machine run: set SESSIONSTORE_CONFORMANCE_LONG=1 or --sessionstore-long"
            )
        run_state_machine_as_test(
            make_state_machine(self),  # type: ignore[arg-type]
            settings=settings(
                max_examples=self.state_machine_examples * 20,
                stateful_step_count=60,
                deadline=None,
                database=None,
                derandomize=self.state_machine_derandomize,
                phases=self._phases(),
                suppress_health_check=list(HealthCheck),
            ),
        )
