"""Crash safety with real processes: SIGKILL a writer at random moments, then check.

A writer process (forked from a preloaded forkserver) creates, updates, appends, commits
multi-session transactions, trims, checkpoints and deletes, acknowledging each write on a
pipe once the call returned. The harness SIGKILLs it a random few milliseconds after it
opened its store (one kill in four: after the fork, which may land in the open and its
recovery), opens the store again (``initialize()`` runs recovery) and checks:

* every acknowledged write is there, and at most the one write in flight beyond it;
* every session is a state some sequence of whole writes produced (``counter``'s ``n``
  always equals its version - 1; the log is gap-free);
* the interrupted transaction is all or nothing (``ta`` and ``tb`` agree);
* a session created compact (one file) and then given its first event (its directory
  made, the document linked in) has that event once acknowledged, and whole or not at
  all when the kill came in between;
* every session of an acknowledged batch write (several sessions sharing two ``syncfs``
  barriers, ``atomic=False``) is there with its events; a session of the batch in flight
  is either absent or whole;
* nothing a crash leaves behind remains after ``initialize()`` (temp files, renamed-aside
  directories, uncommitted log tails, directories of creates that never committed);
* every record's checksum verifies (``doctor(dry_run=True)`` finds nothing);
* the index's rows, which listings return without reading a file (issue 21), are
  exactly the sessions of the files (the checked ones each cycle, all at the end).

A SIGKILL cannot prove an fsync happened (the page cache survives it); that is what
``test_syscalls.py`` checks. This test proves the *ordering* and the recovery.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from sessionstore_filesystem import FileStore

from sessionstore import QueryOptions, Session, SessionFilter
from tests import crashmix

from . import workers
from .conftest import leftovers
from .spawner import Child, Spawner

# integration: crash soaks: processes killed at random moments
pytestmark = pytest.mark.integration

KILLS = int(os.environ.get("SESSIONSTORE_CRASH_KILLS", "200"))


@dataclass
class Acked:
    """What the writers acknowledged so far (the floor every check must meet)."""

    counter: int = 1  # version
    log: int = -1  # last k
    tx: int = -1
    created: set[int] = field(default_factory=set)
    first: set[int] = field(default_factory=set)  # odd creates whose first event was acked
    deleted: set[int] = field(default_factory=set)
    maybe_deleted: int = -1  # the delete that may have been in flight at the kill
    fresh: set[int] = field(default_factory=set)  # created or deleted since the last check
    rotate: int = 0
    batch: int = -1  # last acknowledged batch
    stack: int = -1  # last acknowledged k appended to "stack"
    batch_checked: int = -1  # batches up to this one were checked
    partial: set[int] = field(default_factory=set)  # batches in flight at a kill, part landed


@pytest.fixture
def crash_root(tmp_path: Path) -> Iterator[Path]:
    """On tmpfs when there is one (fsync is cheap there; the order is what is tested)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        base = shm / f"sessionstore-crash-{os.getpid()}-{tmp_path.name}"
        yield base
        shutil.rmtree(base, ignore_errors=True)
    else:
        yield tmp_path / "crash"


async def _seed(root: str) -> None:
    async with FileStore(root=root) as store:
        await store.create_session(id="counter", data={"n": 0})
        await store.create_session(id="log")
        await store.create_session(id="ta")
        await store.create_session(id="tb")
        await store.create_session(id="stack")


async def _verify(root: str, acked: Acked, *, full: bool = False) -> dict[str, int]:
    """Check every invariant; return where the next writer starts."""
    async with FileStore(root=root) as store:
        assert leftovers(Path(root)) == [], "temp files survived initialize()"
        counter = await store.get_session("counter")
        assert counter is not None
        assert counter.data["n"] == counter.version - 1, counter
        assert acked.counter <= counter.version <= acked.counter + 1
        acked.counter = counter.version

        log = await store.get_session("log")
        assert log is not None
        events = await store.get_events("log")
        first = log.last_seq - len(events) + 1
        assert [e.seq for e in events] == list(range(first, log.last_seq + 1))
        assert len(events) == log.event_count
        assert all(e.data["k"] == e.seq - 1 for e in events)
        assert acked.log + 1 <= log.last_seq <= acked.log + 2
        acked.log = log.last_seq - 1

        ta, tb = await store.get_session("ta"), await store.get_session("tb")
        assert ta is not None and tb is not None
        k = ta.data.get("k", -1)
        assert tb.data.get("k", -1) == k, "a transaction was applied halfway"
        assert acked.tx <= k <= acked.tx + 1
        if k >= 0:
            (last,) = await store.get_events("ta", last=1)
            assert last.data == {"k": k}
        acked.tx = k

        live = sorted(acked.created - acked.deleted)
        if not full:  # this cycle's creates and deletes, plus a rotating window of the rest
            window = set(live[acked.rotate % max(1, len(live)) :][:25])
            live = [c for c in live if c in acked.fresh or c in window]
            acked.rotate += 25
        for c in live:
            got = await store.get_session(f"c{c}")
            if got is None and c == acked.maybe_deleted:
                acked.deleted.add(c)  # the delete in flight at the kill had landed
                continue
            assert got is not None and got.data == {"k": c}, f"acknowledged create c{c} lost"
            # odd ones get a first event (compact document -> directory): acknowledged,
            # it is there; in flight at the kill, it is there whole or not at all
            events = await store.get_events(f"c{c}")
            assert [e.data for e in events] == [{"k": c}] * got.event_count
            assert got.event_count == (1 if c in acked.first else got.event_count) <= c % 2, got
        for c in acked.deleted if full else acked.deleted & acked.fresh:
            assert await store.get_session(f"c{c}") is None, f"acknowledged delete c{c} undone"
        acked.fresh = set()
        nxt = max(acked.created, default=-1) + 1
        if await store.get_session(f"c{nxt}") is not None:  # the create in flight landed
            acked.created.add(nxt)
            nxt += 1

        nxt_batch = await _check_batches(store, acked, full)
        stack_next = await _check_stack(store, acked)
        checked = {"counter", "log", "ta", "tb", "stack", *(f"c{c}" for c in live)}
        await _check_index(store, None if full else checked)

        for cp in await store.list_checkpoints("counter"):
            await store.get_checkpoint("counter", cp.id)  # digest verified

        report = await store.doctor(dry_run=True)
        assert report.healthy, report.corrupt
        assert report.removed == [], f"initialize() left debris: {report.removed}"
        return {
            "counter_version": counter.version,
            "log_next": log.last_seq,
            "tx_next": k + 1,
            "create_next": nxt,
            "batch_next": nxt_batch,
            "stack_next": stack_next,
        }


async def _check_index(store: FileStore, ids: set[str] | None) -> None:
    """A listing (the index's rows alone) returns exactly the sessions of the files:
    those of ``ids``, or (None) every session, compared with a walk of every file."""
    flt = SessionFilter(include_expired=True, ids=ids)
    listed: dict[str, Session] = {}
    opts = QueryOptions(sort_by="id", limit=500)
    while True:
        page = await store.list_sessions(flt, opts)
        listed.update((s.id, s) for s in page.items)
        if page.next_cursor is None:
            break
        opts = QueryOptions(sort_by="id", limit=500, cursor=page.next_cursor)
    if ids is None:
        stored = {s.id: s async for s in store.primitives.iter_sessions()}
    else:
        stored = await store.primitives.load(sorted(ids))
    differ = sorted(k for k in listed.keys() | stored.keys() if listed.get(k) != stored.get(k))
    assert not differ, [(listed.get(k), stored.get(k)) for k in differ[:3]]


async def _check_stack(store: FileStore, acked: Acked) -> int:
    """The event log after pops, truncates and deletes at random moments: its events
    ascend and match their keys, and the event index agrees with the log."""
    stack = await store.get_session("stack")
    assert stack is not None
    events = await store.get_events("stack")
    assert len(events) == stack.event_count
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)) and all(q <= stack.last_seq for q in seqs)
    ks = [e.data["k"] for e in events]
    assert ks == sorted(set(ks))
    for e in events:
        assert (e.key, e.type) == (f"s{e.data['k']}", f"t{e.data['k'] % 3}"), e
    for e in events[-5:]:
        assert e.key is not None and await store.get_event("stack", key=e.key) == e
    for t in ("t0", "t1", "t2"):
        want = [e for e in events if e.type == t]
        assert await store.get_events("stack", types=[t], last=3) == want[-3:]
    if events:
        middle = events[len(events) // 2].seq
        assert (
            await store.get_events("stack", before_seq=middle, last=2)
            == [e for e in events if e.seq < middle][-2:]
        )
    return int(max([acked.stack, *ks])) + 1


async def _check_batches(store: FileStore, acked: Acked, full: bool) -> int:
    """Acknowledged batches whole; the one in flight: each session absent or whole."""
    first = 0 if full else acked.batch_checked + 1
    for k in range(first, acked.batch + 2):
        for j in range(workers.BATCH):
            s = await store.get_session(f"b{k}.{j}")
            if s is None:
                assert k > acked.batch or k in acked.partial, f"acknowledged b{k}.{j} lost"
                continue
            assert s.data == {"k": k, "j": j} and s.event_count == 2, s
            events = await store.get_events(s.id)
            assert [e.data for e in events] == [{"k": k, "j": j, "seq": q} for q in (1, 2)]
    landed = [await store.get_session(f"b{acked.batch + 1}.{j}") for j in range(workers.BATCH)]
    if any(s is not None for s in landed):  # some of the batch in flight landed: go past it
        acked.batch += 1
        if not all(landed):
            acked.partial.add(acked.batch)
    acked.batch_checked = acked.batch
    return acked.batch + 1


def _until_ready(child: Child, timeout: float = 60.0) -> list[bytes]:
    """The writer's messages up to its ``ready`` (sent once its store is open)."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while not any(orjson.loads(m)[0] == "ready" for m in got):
        left = deadline - time.monotonic()
        assert left > 0 and not child.closed, "the writer never opened its store"
        got.extend(child.read(min(left, 0.05)))
    return got


_EXTRA_KILLS = 12


def _run_kills(root: str, kills: int, seed: int) -> None:
    asyncio.run(_seed(root))
    rnd = random.Random(seed)
    acked = Acked()
    start = asyncio.run(_verify(root, acked))
    writes = 0
    with Spawner() as spawner:
        cycle = 0
        # Past ``kills``, cycles go on (with ever longer windows, at most _EXTRA_KILLS more)
        # until a batch and a keyed append have been acknowledged: on a loaded machine a
        # 2-30 ms window can end every time before the writer reaches either, and the run
        # would then check nothing of them.
        while cycle < kills or (
            (acked.batch == 0 or acked.stack == 0) and cycle < kills + _EXTRA_KILLS
        ):
            child = spawner.start(workers.crash_writer, root=root, start=start, seed=seed + cycle)
            window = rnd.uniform(0.002, 0.03) * 2 ** min(max(cycle - kills + 1, 0), 6)
            from_fork = cycle % 4 == 0
            cycle += 1
            # Three kills in four count their moment from the writer's "ready" (the store
            # open, its recovery done), so they land among writes however slowly a loaded
            # machine starts the child; the fourth counts from the fork and may land in the
            # open and its recovery.
            raw: list[bytes] = [] if from_fork else _until_ready(child)
            deadline = time.monotonic() + window
            while (left := deadline - time.monotonic()) > 0:
                raw.extend(child.read(left))
            raw.extend(child.kill())
            messages = [orjson.loads(m) for m in raw]
            creates = sum(1 for kind, *_ in messages if kind == "create")
            acked.maybe_deleted = start["create_next"] + creates - 4
            for kind, *value in messages:
                writes += 1
                if kind == "counter":
                    acked.counter = max(acked.counter, value[0])
                elif kind == "log":
                    acked.log = max(acked.log, value[0])
                elif kind == "tx":
                    acked.tx = max(acked.tx, value[0])
                elif kind == "create":
                    acked.created.add(value[0])
                    acked.fresh.add(value[0])
                elif kind == "first":
                    acked.first.add(value[0])
                elif kind == "stack":
                    acked.stack = max(acked.stack, value[0])
                elif kind == "batch":
                    acked.batch = max(acked.batch, value[0])
                elif kind == "delete":
                    acked.deleted.add(value[0])
                    acked.fresh.add(value[0])
            acked.fresh.add(acked.maybe_deleted)
            start = asyncio.run(_verify(root, acked))
    asyncio.run(_verify(root, acked, full=True))
    assert writes > kills, "the writers hardly wrote anything before being killed"
    assert acked.batch > 0, "no batch write was acknowledged"
    assert acked.stack > 0, "no keyed append was acknowledged"


def test_sigkill_at_random_moments(crash_root: Path) -> None:
    _run_kills(str(crash_root), KILLS, seed=1234)


@pytest.mark.slow
def test_sigkill_long_run(crash_root: Path) -> None:
    _run_kills(str(crash_root), 2000, seed=99)


def test_sigkill_during_a_mixed_workload(crash_root: Path) -> None:
    """The drivers' shared workload (``tests/crashmix.py``): versioned updates, keyed
    appends and their retries, pops, truncates, commits, creates with events, versioned
    deletes and ``put_records`` batches, each acknowledged write exactly there after a
    kill, listings agreeing with the files, keys still deduplicating."""
    kills = int(os.environ.get("SESSIONSTORE_CRASH_KILLS_MIXED", "6"))
    totals = crashmix.run_kills(f"file://{crash_root}", {}, kills, seed=32)
    assert totals.kills == kills
    assert totals.acked >= kills * 3 // 4  # three kills in four come after a write
    assert leftovers(crash_root) == []
