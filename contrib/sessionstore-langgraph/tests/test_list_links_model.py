"""List links and run deletes against a model: random sequences of puts (lists
extended, cut, rebuilt, forked from older checkpoints), reads, run deletes, copies and
prunes, through two savers on one store (two processes' caches), and every checkpoint
the model still holds must read back as it was put.

The model is what LangGraph's savers promise: ``aget_tuple`` of a checkpoint returns the
channel values as they were when it was put, whatever was stored before or after it.
Links (``lg.link``) are an encoding detail; this test does not look at them, only at
whether they ever change what a read returns. Seeded: a failure names its seed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from sessionstore_langgraph import SessionStoreSaver, _saver, run_index_id

from sessionstore import SessionStore, open_store

THREADS = ("t1", "t2")
STEPS = 120


@pytest.fixture(params=["memory", "sqlite"])
async def model_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SessionStore]:
    # (SQLite without fsync: what is checked is the adapter's logic, on a second engine)
    db = tmp_path / "s.db"
    url = "memory://" if request.param == "memory" else f"sqlite://{db}?durability=none"
    async with open_store(url) as store:
        yield store


def _config(thread: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def _plain(value: Any) -> Any:
    """What a stored list is compared as: each message's content and id."""
    if value is None:
        return None
    return [(m.content, m.id) for m in value]


class _Model:
    """Two savers over one store, and what each checkpoint must read back as."""

    def __init__(self, store: SessionStore, rng: random.Random) -> None:
        self.savers = (SessionStoreSaver(store), SessionStoreSaver(store))
        self.rng = rng
        self.expected: dict[tuple[str, str], Any] = {}  # (thread, checkpoint id) -> plain
        self.order: dict[str, list[str]] = {t: [] for t in THREADS}  # ids, oldest first
        self.runs: dict[str, list[tuple[str, str]]] = {}  # run id -> its checkpoints
        # the list objects each saver last handled per checkpoint (what a graph would hold)
        self.held: dict[tuple[int, str, str], list[Any]] = {}
        # lists a saver held for checkpoints deleted since (a graph still running on them)
        self.orphans: dict[tuple[int, str], list[Any]] = {}
        self.version = 0
        self.made = 0

    def _message(self) -> HumanMessage:
        self.made += 1
        return HumanMessage(content=f"m{self.made}", id=f"id{self.made}")

    def _next_value(self, base: list[Any] | None) -> list[Any]:
        rng = self.rng
        base = list(base or [])
        kind = rng.random()
        if kind < 0.6 or not base:  # the common step: one or more new messages
            return [*base, *(self._message() for _ in range(rng.randint(1, 3)))]
        if kind < 0.7:  # the same items again (a step that changes another channel)
            return base
        if kind < 0.8:  # one replaced (add_messages with an existing id)
            i = rng.randrange(len(base))
            return [*base[:i], self._message(), *base[i + 1 :]]
        if kind < 0.9:  # cut (RemoveMessage, a summary)
            return base[: rng.randrange(len(base))]
        return [self._message()]  # rebuilt

    async def put(self, *, orphan: bool = False) -> None:
        rng = self.rng
        thread = rng.choice(THREADS)
        which = rng.randrange(2)
        saver = self.savers[which]
        ids = self.order[thread]
        parent = None
        base: list[Any] | None = None
        if orphan:  # extend a list whose checkpoint another saver's maintenance removed
            base = self.orphans.pop((which, thread), None)
            if base is None:
                return
            parent = ids[-1] if ids else None
        elif ids:
            # mostly the newest checkpoint, sometimes a fork from an older one
            parent = ids[-1] if rng.random() < 0.8 else rng.choice(ids)
            base = self.held.get((which, thread, parent))
            if base is None:  # this saver has not seen it: read it, as a graph would
                tup = await saver.aget_tuple(_config(thread, parent))
                assert tup is not None
                base = tup.checkpoint["channel_values"].get("ch")
                if base is not None:
                    self.held[(which, thread, parent)] = base
        value = self._next_value(base)
        self.version += 1
        version = f"{self.version:08}"
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"ch": value}
        checkpoint["channel_versions"] = {"ch": version}
        run = rng.choice([None, "run-a", "run-b", "run-c"])
        metadata: Any = {"step": self.version, **({"run_id": run} if run else {})}
        config = await saver.aput(_config(thread, parent), checkpoint, metadata, {"ch": version})
        cid = config["configurable"]["checkpoint_id"]
        self.expected[(thread, cid)] = _plain(value)
        ids.append(cid)
        self.held[(which, thread, cid)] = value
        if run:
            self.runs.setdefault(run, []).append((thread, cid))

    async def read(self) -> None:
        thread = self.rng.choice(THREADS)
        which = self.rng.randrange(2)
        ids = self.order[thread]
        cid = self.rng.choice(ids) if ids and self.rng.random() < 0.5 else None
        tup = await self.savers[which].aget_tuple(_config(thread, cid))
        if not ids:
            assert tup is None
            return
        assert tup is not None
        got = tup.config["configurable"]["checkpoint_id"]
        assert got == (cid or ids[-1])
        value = tup.checkpoint["channel_values"].get("ch")
        assert _plain(value) == self.expected[(thread, got)], (thread, got)
        if value is not None:
            self.held[(which, thread, got)] = value

    def _drop(self, thread: str, cid: str) -> None:
        self.expected.pop((thread, cid), None)
        if cid in self.order[thread]:
            self.order[thread].remove(cid)
        for key in [k for k in self.held if k[1:] == (thread, cid)]:
            self.orphans[(key[0], thread)] = self.held.pop(key)

    async def delete_run(self) -> None:
        if not self.runs:
            return
        run = self.rng.choice(sorted(self.runs))
        await self.savers[self.rng.randrange(2)].adelete_for_runs([run])
        for thread, cid in self.runs.pop(run):
            self._drop(thread, cid)

    async def prune(self) -> None:
        thread = self.rng.choice(THREADS)
        # the saver that prunes forgets what it linked to; the other one reads first, as
        # a graph does before its next step (see the list links' known limits)
        await self.savers[self.rng.randrange(2)].aprune([thread], strategy="keep_latest")
        for cid in self.order[thread][:-1]:
            self._drop(thread, cid)
        for run, cps in self.runs.items():
            self.runs[run] = [(t, c) for t, c in cps if (t, c) in self.expected]
        for which in range(2):
            for key in [k for k in self.held if k[:2] == (which, thread)]:
                self.orphans[(which, thread)] = self.held.pop(key)

    async def check_all(self) -> None:
        for thread in THREADS:
            listed = [
                t.config["configurable"]["checkpoint_id"]
                async for t in self.savers[0].alist(_config(thread))
            ]
            assert listed == list(reversed(self.order[thread]))
            for cid in self.order[thread]:
                for saver in self.savers:
                    tup = await saver.aget_tuple(_config(thread, cid))
                    assert tup is not None, (thread, cid)
                    value = tup.checkpoint["channel_values"].get("ch")
                    assert _plain(value) == self.expected[(thread, cid)], (thread, cid)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
async def test_every_checkpoint_reads_back_as_it_was_put(
    model_store: SessionStore, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    # the savers' clock moves 0.4 s a step: a put checks, once its saver last knew a
    # linked value stored over a second ago, that the value is still there
    now = [0.0]

    def tick() -> float:
        now[0] += 0.4
        return now[0]

    monkeypatch.setattr(_saver, "monotonic", tick)
    model = _Model(model_store, rng)
    for _ in range(STEPS):
        roll = rng.random()
        if roll < 0.06:
            await model.put(orphan=True)
        elif roll < 0.65:
            await model.put()
        elif roll < 0.85:
            await model.read()
        elif roll < 0.93:
            await model.delete_run()
        else:
            await model.prune()
    await model.check_all()
    # and a copy reads the same as its source
    source = rng.choice(THREADS)
    target = f"copy-{uuid.uuid4().hex[:6]}"
    await model.savers[0].acopy_thread(source, target)
    for cid in model.order[source]:
        tup = await model.savers[1].aget_tuple(_config(target, cid))
        assert tup is not None
        assert _plain(tup.checkpoint["channel_values"].get("ch")) == model.expected[(source, cid)]


async def test_a_run_deleted_by_another_saver_is_found_again_by_the_next_delete(
    model_store: SessionStore,
) -> None:
    """Saver ``b`` indexed (thread, run) before ``a`` deleted the run; ``b``'s later
    checkpoint of the same run (a run still going) is not indexed again, and the next
    ``delete_for_runs`` must still find it (the run's index session outlives the delete)."""
    a, b = SessionStoreSaver(model_store), SessionStoreSaver(model_store)

    async def put(saver: SessionStoreSaver, parent: str | None, run: str) -> str:
        checkpoint = empty_checkpoint()
        metadata: Any = {"run_id": run}
        config = await saver.aput(_config("t", parent), checkpoint, metadata, {})
        return str(config["configurable"]["checkpoint_id"])

    first = await put(b, None, "r1")
    await a.adelete_for_runs(["r1"])
    assert await a.aget_tuple(_config("t", first)) is None
    late = await put(b, None, "r1")  # b remembers having indexed (t, r1)
    await a.adelete_for_runs(["r1"])
    assert await b.aget_tuple(_config("t", late)) is None
    assert [t async for t in a.alist(_config("t"))] == []


async def test_the_run_index_is_written_again_once_half_the_ttl_has_passed(
    model_store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run longer than the ttl keeps its index session alive: the saver writes its
    (thread, run) entry again (refreshing the expiry) once half the ttl has passed."""
    now = [1000.0]
    monkeypatch.setattr(_saver, "monotonic", lambda: now[0])
    saver = SessionStoreSaver(model_store, ttl=3600)
    parent: str | None = None

    async def put() -> int:
        nonlocal parent
        config = await saver.aput(_config("t", parent), empty_checkpoint(), {"run_id": "r"}, {})
        parent = str(config["configurable"]["checkpoint_id"])
        index = await model_store.get_session(run_index_id("r"))
        assert index is not None and index.event_count == 1
        return index.version

    first = await put()
    now[0] += 1799
    assert await put() == first  # within half the ttl: not written again
    now[0] += 2
    assert await put() > first  # the keyed entry again: same event, later expiry
