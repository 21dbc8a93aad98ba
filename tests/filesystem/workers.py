"""Code run in child processes by the multi-process and crash tests (forkserver targets)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import orjson
from sessionstore_filesystem import FileStore

from sessionstore import AppendOp, SessionConflictError, SessionUpdate, UpdateOp

Send = Callable[[bytes], None]

# --------------------------------------------------------------------------- CAS loops


def cas_increments(send: Send, root: str, sid: str, times: int) -> None:
    """``times`` read-increment-CAS-write loops; reports the conflicts it retried."""
    conflicts = asyncio.run(_cas_increments(root, sid, times))
    send(orjson.dumps(conflicts))


async def _cas_increments(root: str, sid: str, times: int) -> int:
    conflicts = 0
    async with FileStore(root=root, durability="fsync") as store:
        for _ in range(times):
            while True:
                current = await store.get_session(sid)
                assert current is not None
                try:
                    await store.update_session(
                        sid,
                        merge_data={"n": current.data["n"] + 1},
                        expected_version=current.version,
                    )
                    break
                except SessionConflictError as exc:
                    assert exc.actual > current.version
                    conflicts += 1
    return conflicts


# --------------------------------------------------------------------------- crash writer


def crash_writer(send: Send, root: str, start: dict[str, int], seed: int) -> None:
    """Write forever (until SIGKILLed), acknowledging each write once it returned."""
    asyncio.run(_crash_writer(send, root, start, seed))


def _ack(send: Send, *message: Any) -> None:
    send(orjson.dumps(message))


async def _crash_writer(send: Send, root: str, start: dict[str, int], seed: int) -> None:
    rnd = random.Random(seed)
    version = start["counter_version"]
    log_k, tx_k, create_k = start["log_next"], start["tx_next"], start["create_next"]
    async with FileStore(root=root, durability="fsync") as store:
        _ack(send, "ready")
        while True:
            pick = rnd.random()
            if pick < 0.25:
                s = await store.update_session(
                    "counter", merge_data={"n": version}, expected_version=version
                )
                version = s.version
                _ack(send, "counter", version)
            elif pick < 0.5:
                await store.append_events("log", [{"type": "e", "data": {"k": log_k}}])
                _ack(send, "log", log_k)
                log_k += 1
            elif pick < 0.65:
                await store.commit(
                    [
                        UpdateOp("ta", SessionUpdate(merge_data={"k": tx_k})),
                        UpdateOp("tb", SessionUpdate(merge_data={"k": tx_k})),
                        AppendOp("ta", [{"type": "tx", "data": {"k": tx_k}}]),
                    ]
                )
                _ack(send, "tx", tx_k)
                tx_k += 1
            elif pick < 0.8:
                await store.create_session(id=f"c{create_k}", data={"k": create_k})
                _ack(send, "create", create_k)
                create_k += 1
            elif pick < 0.88:
                gone = create_k - 4
                await store.delete_session(f"c{gone}")
                _ack(send, "delete", gone)
            elif pick < 0.94:
                await store.trim_events("log", keep_last=20)
                _ack(send, "trim")
            else:
                await store.save_checkpoint("counter", keep_last=2)
                _ack(send, "checkpoint")


# --------------------------------------------------------------------------- crash points


def crash_at(send: Send, root: str, point: str) -> None:
    """Die (``os._exit``, like a SIGKILL: no cleanup) at ``point`` of one write."""
    import os

    from sessionstore_filesystem import _engine, _index, _session

    def die(*args: Any, **kwargs: Any) -> Any:
        os._exit(17)

    if point == "between_sessions":  # the journal is durable, one session applied
        real_apply = _session.apply_one
        calls = [0]

        def apply_then_die(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == 2:
                die()
            return real_apply(*args, **kwargs)

        vars(_engine)["apply_one"] = apply_then_die
    elif point == "before_journal_rename":  # the journal was written, never renamed in
        real_replace = os.replace

        def replace_or_die(src: Any, dst: Any, **kwargs: Any) -> None:
            if str(dst).endswith(".json") and str(dst)[:20].isdigit():
                die()
            real_replace(src, dst, **kwargs)

        vars(os)["replace"] = replace_or_die
    elif point == "before_index":  # the files are written, the index is not
        setattr(_index.Index, "write", die)  # noqa: B010
    else:
        raise ValueError(point)
    asyncio.run(_crash_at(send, root, point))


async def _crash_at(send: Send, root: str, point: str) -> None:
    async with FileStore(root=root, durability="fsync") as store:
        if point == "before_index":
            await store.update_session("ta", merge_data={"k": 1}, add_tags={"moved"})
        else:
            await store.commit(
                [
                    UpdateOp("ta", SessionUpdate(merge_data={"k": 1})),
                    AppendOp("ta", [{"type": "tx"}]),
                    UpdateOp("tb", SessionUpdate(merge_data={"k": 1}, status="completed")),
                ]
            )
        send(b"survived")  # never reached
