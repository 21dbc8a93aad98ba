"""Code run in child processes by the multi-process and crash tests (forkserver targets)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from sessionstore_filesystem import FileStore

from sessionstore import (
    AppendOp,
    CreateOp,
    DeleteEventsOp,
    Event,
    Mutation,
    NewSession,
    PopOp,
    Session,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    SessionUpdate,
    Status,
    UpdateOp,
)

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


def tagged_creates(send: Send, root: str, tag: str, count: int, ttl: float | None) -> None:
    """Create ``count`` sessions tagged ``tag`` (expiring after ``ttl`` seconds of this
    process's clock) in one commit; reports how many it created."""
    send(orjson.dumps(asyncio.run(_tagged_creates(root, tag, count, ttl))))


async def _tagged_creates(root: str, tag: str, count: int, ttl: float | None) -> int:
    async with FileStore(root=root, durability="none") as store:
        ops = [CreateOp(NewSession(tags={tag}, ttl=ttl)) for _ in range(count)]
        return sum(isinstance(s, Session) for s in await store.commit(ops))


# --------------------------------------------------------------------------- lock pruning


def lock_race(send: Send, root: str, sid: str, times: int, role: str) -> None:
    """Race over one id whose lock file deletes remove: ``inc`` creates it or
    CAS-increments it ``times`` times and reports how many increments (a create counts
    one) it made; ``del`` deletes it (at the version it read) in ``times`` tries and
    reports the counter of every session it deleted."""
    send(orjson.dumps(asyncio.run(_lock_race(root, sid, times, role))))


async def _lock_race(root: str, sid: str, times: int, role: str) -> int | list[int]:
    async with FileStore(root=root, durability="none") as store:
        if role == "inc":
            done = 0
            while done < times:
                current = await store.get_session(sid)
                try:
                    if current is None:
                        await store.create_session(id=sid, data={"n": 1})
                    else:
                        await store.update_session(
                            sid,
                            merge_data={"n": current.data["n"] + 1},
                            expected_version=current.version,
                        )
                except (SessionExistsError, SessionConflictError, SessionNotFoundError):
                    continue
                done += 1
            return done
        removed: list[int] = []
        for _ in range(times):
            current = await store.get_session(sid)
            if current is None:
                await asyncio.sleep(0.0002)
                continue
            try:
                if await store.delete_session(sid, expected_version=current.version):
                    removed.append(current.data["n"])
            except SessionConflictError:
                pass
        return removed


# --------------------------------------------------------------------------- appends


def appender(send: Send, root: str, sid: str, times: int, tag: str) -> None:
    """``times`` appends of one event ``{"by": tag, "i": i}`` to ``sid`` (no CAS)."""
    asyncio.run(_appender(root, sid, times, tag))
    send(b"done")


async def _appender(root: str, sid: str, times: int, tag: str) -> None:
    async with FileStore(root=root, durability="none") as store:
        for i in range(times):
            await store.append_events(sid, [{"type": "e", "data": {"by": tag, "i": i}}])


# --------------------------------------------------------------------------- crash writer


def crash_writer(send: Send, root: str, start: dict[str, int], seed: int) -> None:
    """Write forever (until SIGKILLed), acknowledging each write once it returned."""
    asyncio.run(_crash_writer(send, root, start, seed))


def _ack(send: Send, *message: Any) -> None:
    send(orjson.dumps(message))


def batch_mutations(k: int, now: datetime) -> list[Mutation]:
    """A restore-like batch: sessions ``b<k>.0`` .. ``b<k>.2``, two events each."""
    out = []
    for j in range(BATCH):
        data = {"k": k, "j": j}
        session = Session(
            f"b{k}.{j}", None, Status.ACTIVE, data, {}, frozenset({"batch"}), now, now, None, 1,
            2, 2,
        )  # fmt: skip
        events = [Event(seq, "e", now, {"k": k, "j": j, "seq": seq}) for seq in (1, 2)]
        out.append(
            Mutation(session.id, 0, session, orjson.dumps(data), b"{}", append=events, created=True)
        )
    return out


BATCH = 3


async def _crash_writer(send: Send, root: str, start: dict[str, int], seed: int) -> None:
    rnd = random.Random(seed)
    version = start["counter_version"]
    log_k, tx_k, create_k = start["log_next"], start["tx_next"], start["create_next"]
    batch_k = start["batch_next"]
    stack_k = start["stack_next"]
    async with FileStore(root=root, durability="fsync") as store:
        _ack(send, "ready")
        while True:
            if rnd.random() < 0.25:  # the event log: keyed appends, pops, deletes, truncates
                stack_k = await _stack_op(store, rnd, stack_k, send)
                continue
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
                if create_k % 2:  # its first event: the compact document gets a directory
                    first = [{"type": "first", "data": {"k": create_k}}]
                    await store.append_events(f"c{create_k}", first)
                    _ack(send, "first", create_k)
                create_k += 1
            elif pick < 0.88:
                gone = create_k - 4
                await store.delete_session(f"c{gone}")
                _ack(send, "delete", gone)
            elif pick < 0.91:
                await store.trim_events("log", keep_last=20)
                _ack(send, "trim")
            elif pick < 0.96:  # several sessions sharing their fsyncs (atomic=False)
                await store._apply(batch_mutations(batch_k, store.clock.now()), atomic=False)
                _ack(send, "batch", batch_k)
                batch_k += 1
            else:
                await store.save_checkpoint("counter", keep_last=2)
                _ack(send, "checkpoint")


def stack_event(k: int) -> dict[str, Any]:
    """The ``k``-th event appended to the crash test's "stack" session."""
    return {"type": f"t{k % 3}", "key": f"s{k}", "data": {"k": k}}


async def _stack_op(store: FileStore, rnd: random.Random, k: int, send: Send) -> int:
    pick = rnd.random()
    if pick < 0.55:
        n = rnd.randint(1, 3)
        await store.append_events("stack", [stack_event(k + i) for i in range(n)])
        _ack(send, "stack", k + n - 1)
        return k + n
    if pick < 0.75:
        await store.pop_events("stack", rnd.randint(1, 2))
    elif pick < 0.9:
        await store.delete_events("stack", keys=[f"s{k - rnd.randint(1, 12)}"])
    else:
        s = await store.get_session("stack")
        assert s is not None
        await store.truncate_events("stack", max(0, s.last_seq - 3))
    _ack(send, "stack-drop")
    return k


# --------------------------------------------------------------------------- crash points


def crash_at(send: Send, root: str, point: str) -> None:
    """Die (``os._exit``, like a SIGKILL: no cleanup) at ``point`` of one write."""
    import os

    from sessionstore_filesystem import _engine, _index

    def die(*args: Any, **kwargs: Any) -> Any:
        os._exit(17)

    if point in ("between_sessions", "pop_between_sessions"):  # journal durable, one applied
        real_steps = vars(_engine)["steps"]
        calls = [0]

        def steps_then_die(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            gen = real_steps(*args, **kwargs)
            if calls[0] != 2:
                return gen

            def staged_then_die() -> Any:
                next(gen)  # staged with the others (the barrier makes it all durable)
                yield
                die()  # the first session is committed, this one never is

            return staged_then_die()

        vars(_engine)["steps"] = steps_then_die
    elif point == "before_journal_rename":  # the journal was written, never renamed in
        real_replace = os.replace

        def replace_or_die(src: Any, dst: Any, **kwargs: Any) -> None:
            if str(dst).endswith(".json") and str(dst)[:20].isdigit():
                die()
            real_replace(src, dst, **kwargs)

        vars(os)["replace"] = replace_or_die
    elif point == "before_index":  # the files are written, the index is not
        setattr(_index.Index, "write", die)  # noqa: B010
    elif point == "after_cut_commit":  # a pop's document is in place, its lines are not cut
        from sessionstore_filesystem import _write

        setattr(_write, "_cut_file", die)  # noqa: B010
    else:
        raise ValueError(point)
    asyncio.run(_crash_at(send, root, point))


async def _crash_at(send: Send, root: str, point: str) -> None:
    async with FileStore(root=root, durability="fsync") as store:
        if point == "before_index":
            await store.update_session("ta", merge_data={"k": 1}, add_tags={"moved"})
        elif point == "pop_between_sessions":
            for sid in ("ta", "tb"):
                await store.append_events(
                    sid, [{"type": "e", "key": f"k{i}", "data": {"i": i}} for i in range(5)]
                )
            await store.commit(
                [
                    PopOp("ta", 2),
                    DeleteEventsOp("tb", keys=["k1"]),
                    AppendOp("tb", [{"type": "e", "key": "k9", "data": {"i": 9}}]),
                ]
            )
        elif point == "after_cut_commit":
            await store.append_events(
                "ta", [{"type": "e", "key": f"k{i}", "data": {"i": i}} for i in range(6)]
            )
            await store.pop_events("ta", 2)
        else:
            await store.commit(
                [
                    UpdateOp("ta", SessionUpdate(merge_data={"k": 1})),
                    AppendOp("ta", [{"type": "tx"}]),
                    UpdateOp("tb", SessionUpdate(merge_data={"k": 1}, status="completed")),
                ]
            )
        send(b"survived")  # never reached
