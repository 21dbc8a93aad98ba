"""A writer process for the SQLite crash and multi-process tests.

``python -m tests.sqlite._worker crash DB`` loops over whole writes (an update with a
version check, an append, a two-session transaction, a create with events) and prints
one acknowledgement line per write once the call returned; the test SIGKILLs it at a
random moment. ``python -m tests.sqlite._worker bump DB N`` increments the shared
counter ``N`` times with read-modify-write and ``expected_version`` (retrying on a
conflict), printing ``done`` at the end.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from sessionstore_sqlite import SqliteStore

from sessionstore import (
    AppendOp,
    CreateOp,
    NewSession,
    SessionConflictError,
    SessionUpdate,
    UpdateOp,
)


def _ack(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def crash(path: str) -> None:
    async with SqliteStore(path=path) as store:
        log = await store.get_session("log")
        assert log is not None
        i = log.last_seq  # the event k of the log is its seq (numbers never repeat)
        while True:
            i += 1
            counter = await store.get_session("counter")
            assert counter is not None
            done = await store.update_session(
                "counter", merge_data={"n": counter.data["n"] + 1},
                expected_version=counter.version,
            )  # fmt: skip
            _ack(f"counter {done.version}")
            log = await store.append_events("log", [{"type": "k", "data": {"k": i}}])
            _ack(f"log {log.last_seq}")
            await store.commit([
                UpdateOp("ta", SessionUpdate(data={"x": i})),
                UpdateOp("tb", SessionUpdate(data={"x": i})),
                AppendOp("ta", [{"type": "x", "data": {"x": i}}]),
            ])  # fmt: skip
            _ack(f"tx {i}")
            await store.commit([
                CreateOp(NewSession(id=f"c{i}", tags=["made"], data={"i": i})),
                AppendOp(f"c{i}", [{"type": "e", "data": {"j": j}} for j in range(5)]),
            ])  # fmt: skip
            _ack(f"created {i}")


async def midway(path: str) -> None:
    """Commit a two-session batch, but stop inside its transaction after writing the first
    session's rows (the test SIGKILLs the process there)."""
    import time

    from sessionstore_sqlite._engine import Engine

    real = Engine._write_all

    def half(self: Engine, conn: Any, mutations: Any, rows: Any) -> None:
        real(self, conn, mutations[:1], rows)
        _ack("midway")
        time.sleep(60)

    Engine._write_all = half  # type: ignore[method-assign]
    async with SqliteStore(path=path) as store:
        await store.commit([
            UpdateOp("a", SessionUpdate(data={"x": 1})),
            UpdateOp("b", SessionUpdate(data={"x": 1})),
            AppendOp("a", [{"type": "half"}]),
        ])  # fmt: skip


async def bump(path: str, times: int) -> None:
    async with SqliteStore(path=path) as store:
        for _ in range(times):
            while True:
                current = await store.get_session("shared")
                assert current is not None
                try:
                    await store.update_session(
                        "shared", merge_data={"n": current.data["n"] + 1},
                        expected_version=current.version,
                    )  # fmt: skip
                    await store.append_events("shared", [{"type": "bump"}])
                    break
                except SessionConflictError:
                    continue
    _ack("done")


if __name__ == "__main__":
    kind, db = sys.argv[1], sys.argv[2]
    if kind == "crash":
        asyncio.run(crash(db))
    elif kind == "midway":
        asyncio.run(midway(db))
    else:
        asyncio.run(bump(db, int(sys.argv[3])))
