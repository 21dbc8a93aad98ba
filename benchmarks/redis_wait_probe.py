"""Issue 21, nineteenth session: where the Redis create + get pair's wall time goes, split
per call into the client's user time, its system time and the rest (waiting: the
server's work, and the machine waking an idle CPU), against the row's floor (redis-py's
``SET`` and ``GET`` + ``orjson``).

The row (``bench_redis``: ``create_session`` + ``get_session`` of a 2 KB session against
``SET`` + ``GET`` + decode) swings from ~1.2x to ~1.45x between quiet runs. This probe
shows why: the store's calls use about the client CPU of redis-py's, but wait longer per
round trip, because the lane has less to do after sending, so its CPU goes idle before
the reply is back and pays the wake-up. On a virtual machine that halts an idle vCPU at
once (this one: ``haltpoll.guest_halt_poll_ns=0``) the wake-up is tens of microseconds.

Sides (``--calls`` each, in interleaved rounds, the order reversed every other round):

- ``create``: ``create_session`` (the benchmark's 2 KB session, processor, two tags,
  metadata; a new millisecond each, as the benchmark's clock);
- ``get``: ``get_session`` of one such session;
- ``SET``: redis-py ``SET`` of the same JSON (encoded once, as the floor);
- ``GET``: redis-py ``GET`` of it + ``orjson.loads``.

Each line gives, per call, ``wall``, ``user``, ``sys`` (``getrusage``) and ``wait``
(wall less both), medians over the rounds; then the server's own time per command
(``INFO commandstats``: ``EVALSHA`` is the create's script). ``--awake N`` runs N
busy loops at the lowest priority beside it (``nice 19``), so that no vCPU goes idle:
the same calls without the wake-ups (a diagnosis, not a setting to run with).

Run: ``.venv/bin/python -m benchmarks.redis_wait_probe [--rounds 5] [--calls 2000]
[--awake 2]``. A private ``redis-server`` (never port 6379).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from .bench_memory import NewMillisecondClock, session_doc
from .bench_redis import private_servers

#: a busy loop for ``--awake`` (its own process, at the lowest priority)
_SPIN = "while True: pass"


def _usage() -> tuple[float, float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), r.ru_utime, r.ru_stime


async def _side(fn: Callable[[], Awaitable[Any]], calls: int) -> tuple[float, float, float]:
    """Per call: wall, user and system seconds of ``calls`` awaited one after another."""
    w0, u0, s0 = _usage()
    for _ in range(calls):
        await fn()
    w1, u1, s1 = _usage()
    return (w1 - w0) / calls, (u1 - u0) / calls, (s1 - s0) / calls


async def probe(url: str, rounds: int, calls: int) -> list[str]:
    """The probe's lines (see the module doc)."""
    import redis.asyncio as aioredis

    from sessionstore import open_store

    doc = session_doc()
    payload = orjson.dumps(
        {"processor_id": "agent-7", "data": doc, "tags": ["eu", "prod"], "meta": {"u": 1}}
    )
    raw: Any = aioredis.Redis.from_url(url)
    namespace = f"wait-{uuid.uuid4().hex[:8]}"
    store: Any = open_store(url, namespace=namespace, clock=NewMillisecondClock())
    try:
        await store.initialize()
        made = await store.create_session(processor_id="agent-7", data=doc)
        key = f"{namespace}-raw"

        async def create() -> object:
            return await store.create_session(
                processor_id="agent-7", data=doc, tags={"prod", "eu"}, metadata={"user": "u1"}
            )

        async def get() -> object:
            return await store.get_session(made.id)

        async def set_() -> object:
            return await raw.set(key, payload)

        async def get_raw() -> object:
            return orjson.loads(await raw.get(key))

        sides: dict[str, Callable[[], Awaitable[Any]]] = {
            "create": create,
            "get": get,
            "SET": set_,
            "GET": get_raw,
        }
        for fn in sides.values():  # warm: connections, scripts, caches
            for _ in range(max(20, calls // 10)):
                await fn()
        await raw.config_resetstat()
        samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sides}
        for index in range(rounds):
            order = list(sides.items())
            for name, fn in order if index % 2 == 0 else order[::-1]:
                samples[name].append(await _side(fn, calls))
        stats = await raw.info("commandstats")
    finally:
        await store.shutdown()
        await raw.aclose()
    lines = []
    for name, rows in samples.items():
        wall, user, sys_ = (statistics.median(r[i] for r in rows) * 1e6 for i in range(3))
        lines.append(
            f"{name} wall {wall:.1f} us, user {user:.1f}, sys {sys_:.1f}, "
            f"wait {wall - user - sys_:.1f}"
        )
    for command in ("evalsha", "set", "get"):
        per_call = float(stats.get(f"cmdstat_{command}", {}).get("usec_per_call", 0))
        lines.append(f"server {command.upper()} {per_call:.2f} us a call")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--awake", type=int, default=0, help="busy loops at nice 19 beside it")
    a = parser.parse_args()
    spinners = [
        subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", _SPIN]) for _ in range(a.awake)
    ]
    try:
        with private_servers(single=True, cluster=False) as urls:
            lines = asyncio.run(probe(urls["single"], a.rounds, a.calls))
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    print(f"awake loops: {a.awake}")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
