"""The delta-channel step apart: statements counted, ``put`` and ``put_writes`` timed.

Run from contrib/sessionstore-langgraph in the adapters environment::

    python benchmarks/step_probe.py postgres      # or sqlite; --profile for cProfile

Ours (``SessionStoreSaver``) and theirs (``AsyncPostgresSaver`` / ``AsyncSqliteSaver``)
each run a delta-channel thread (``bench_langgraph._Thread.step_delta``) to ``--step``;
then on PostgreSQL the server logs every statement (``log_statement=all``) for
``--count`` steps a side, counted by database; then ``put`` and ``put_writes`` are timed
apart, ours and theirs alternating step by step, for ``--rounds`` steps; then
``--profile`` runs cProfile over ``--rounds`` of our steps (CPU, the slowest callers).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import importlib.util
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.postgres.servers import PostgresServer


def _bench() -> Any:
    """``bench_langgraph`` beside this file (the repository's ``benchmarks`` package
    would shadow it as ``benchmarks.bench_langgraph``)."""
    path = Path(__file__).with_name("bench_langgraph.py")
    spec = importlib.util.spec_from_file_location("bench_langgraph", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_langgraph"] = module
    spec.loader.exec_module(module)
    return module


class _Timed:
    """A delta-channel thread whose ``put`` and ``put_writes`` are timed apart (ns), and
    the process's CPU for the step."""

    def __init__(self, bench: Any, saver: Any, thread: str) -> None:
        self.thread = bench._Thread(saver, thread)
        self.last = (0, 0, 0)
        aput, aput_writes = saver.aput, saver.aput_writes
        marks: list[int] = []

        async def put(*args: Any, **kwargs: Any) -> Any:
            marks[:] = [time.process_time_ns(), time.perf_counter_ns()]
            result = await aput(*args, **kwargs)
            marks.append(time.perf_counter_ns())
            return result

        async def put_writes(*args: Any, **kwargs: Any) -> None:
            await aput_writes(*args, **kwargs)
            c0, t0, t1 = marks
            t2 = time.perf_counter_ns()
            self.last = (t1 - t0, t2 - t1, time.process_time_ns() - c0)

        saver.aput, saver.aput_writes = put, put_writes

    @property
    def step(self) -> int:
        return int(self.thread.step)

    async def step_delta(self) -> None:
        await self.thread.step_delta()


def _size(path: Path) -> int:
    return path.stat().st_size


def _lines_after(path: Path, start: int) -> list[str]:
    with path.open("rb") as f:
        f.seek(start)
        return f.read().decode(errors="replace").splitlines()


async def _count(pg_log: Path, threads: list[_Timed], n: int, pg_url: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
        await conn.execute("ALTER SYSTEM SET log_line_prefix = '@%d@ '")
        await conn.execute("SELECT pg_reload_conf()")
    await asyncio.sleep(0.5)
    for name, thread in zip(("ours", "theirs"), threads, strict=True):
        start = _size(pg_log)
        for _ in range(n):
            await thread.step_delta()
        await asyncio.sleep(0.3)
        lines = _lines_after(pg_log, start)
        kinds: collections.Counter[str] = collections.Counter()
        spent: collections.defaultdict[str, float] = collections.defaultdict(float)
        for line in lines:
            if "@postgres@" in line or "duration:" not in line:
                continue
            text = line.split("@ ", 1)[-1].strip()
            ms = float(text.split("duration: ", 1)[1].split(" ms", 1)[0])
            what = text.split(" ms", 1)[1].strip()
            what = what.split(":", 1)[0] + (":" + what.split(":", 1)[1][:60] if ":" in what else "")
            kinds[what] += 1
            spent[what] += ms
        total = sum(kinds.values())
        print(f"{name}: {total / n:.1f} statement messages a step (bind, execute)")
        for text, c in kinds.most_common():
            print(f"  {c / n:5.1f}  {spent[text] / n:6.3f} ms  {text}")
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute("ALTER SYSTEM RESET log_min_duration_statement")
        await conn.execute("SELECT pg_reload_conf()")
    await asyncio.sleep(0.5)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("backend", choices=("postgres", "sqlite"))
    parser.add_argument("--step", type=int, default=100)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="lg-step-"))
    server: PostgresServer | None = None
    pg_url: str | None = None
    if args.backend == "postgres":
        from tests.postgres.servers import find_bindir, start_server

        found = find_bindir()
        assert found is not None
        server = start_server(found[0], workdir, durable=True)
        pg_url = server.url
    try:
        bench = _bench()
        async with bench._pair(args.backend, workdir, pg_url) as (ours, theirs):
            threads = [_Timed(bench, saver, "d") for saver in (ours, theirs)]
            for thread in threads:
                while thread.step < args.step:
                    await thread.step_delta()
            if server is not None and args.count:
                await _count(workdir / "server.log", threads, args.count, pg_url or "")
            times: list[list[tuple[int, int, int]]] = [[], []]
            for _ in range(args.rounds):
                for side in (0, 1, 1, 0):
                    await threads[side].step_delta()
                    times[side].append(threads[side].last)
            for name, ts in zip(("ours", "theirs"), times, strict=True):
                put = statistics.median(t[0] for t in ts) / 1e6
                pw = statistics.median(t[1] for t in ts) / 1e6
                step = statistics.median(t[0] + t[1] for t in ts) / 1e6
                cpu = statistics.mean(t[2] for t in ts) / 1e6
                print(
                    f"{name}: put {put:.3f} ms, put_writes {pw:.3f} ms, step {step:.3f} ms, "
                    f"CPU {cpu:.3f} ms"
                )
            r = [statistics.median(t[0] + t[1] for t in ts) for ts in times]
            print(f"step ours/theirs {r[0] / r[1]:.3f}")
            if args.profile:
                for name, thread in zip(("ours", "theirs"), threads, strict=True):
                    prof = cProfile.Profile(time.process_time)
                    prof.enable()
                    for _ in range(args.rounds):
                        await thread.step_delta()
                    prof.disable()
                    st = pstats.Stats(prof)
                    total = st.total_tt  # type: ignore[attr-defined]
                    print(f"--- {name}: CPU {total / args.rounds * 1000:.3f} ms a step")
                    st.sort_stats("tottime").print_stats(25)
    finally:
        if server is not None:
            server.stop("immediate")
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
