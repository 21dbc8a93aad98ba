"""A mixed workload SIGKILLed at arbitrary moments, for any driver with files or a server.

The writer (``python -m tests.crashmix STATE_FILE SEED``) opens the store named in the
state file and writes forever: updates with ``expected_version``, keyed appends (and
retries of already stored keys, which must not be written again), pops, truncates,
deletes of events by key, trims, a two-session ``commit``, creates (with their events in
the same step), deletes with ``expected_version`` and ``put_records`` batches of new
sessions. It keeps a model of every session it wrote -- version, data, ``last_seq`` and
the ``(seq, key)`` of every kept event -- and before each call prints the state the call
must produce (``try``), after it returns ``ok`` (an acknowledged write); each line is one
``write(2)`` to a pipe, so the kill never tears one. A call whose result differs from
its prediction ends the writer with ``bug``.

:func:`run_kills` SIGKILLs writers at random moments (counted from the writer's first
acknowledgement, or, one cycle in four, from its start, so some kills land in the
store's open and recovery), then opens the store and checks (:func:`verify`):

* every session is exactly in its acknowledged state, or -- for the sessions of the one
  write in flight -- exactly in the state that write predicted; a ``commit`` in flight is
  all old or all new (``put_records`` is not atomic: each of its sessions either way);
* nothing else exists, and listings agree with the sessions: ``list_sessions`` (every
  page) returns exactly what ``get_session`` returns, ``count_sessions`` its length;
* every kept event log reads back whole (seqs ascending, at most ``last_seq``, as many as
  ``event_count``; ``get_event(key)`` finds the newest ones);
* idempotent keys still deduplicate: the newest stored keyed event appended again is not
  written (same version), the same key with other data is refused with nothing written;
* the store keeps working: a versioned update succeeds (and the next writer goes on).

The checker then resolves the in-flight write into the model and starts the next writer
from it. A SIGKILL cannot prove an fsync happened (the page cache survives it): this
proves the order of the writes and the recovery, not the durability of a power cut.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from sessionstore import (
    AppendOp,
    Event,
    EventKeyConflictError,
    NewSession,
    QueryOptions,
    Session,
    SessionFilter,
    SessionRecord,
    SessionUpdate,
    Status,
    UpdateOp,
    open_store,
)

ROOT = Path(__file__).resolve().parents[1]
FIXED = ("ctr", "log", "stk", "ta", "tb")  # the sessions every run starts with; then
# creates "n1", "n2", ... and put_records' "r1", "r2", ...
LIVE = 4  # creates kept alive before the oldest is deleted

#: One session's state as the model keeps it: version, data, last_seq, [[seq, key], ...]
#: (a keyed event's type is "e" and its data ``{"k": key}``); ``None``: no session.
State = list[Any] | None


def event(key: str) -> dict[str, Any]:
    return {"type": "e", "key": key, "data": {"k": key}}


def _state(session: Session | None, events: list[Event]) -> State:
    if session is None:
        return None
    kept = []
    for e in events:
        assert (e.type, e.data) == ("e", {"k": e.key}), e  # every event of the workload
        kept.append([e.seq, e.key])
    return [session.version, session.data, session.last_seq, kept]


@dataclass
class Model:
    """Every session's acknowledged state and the counters new names come from."""

    sessions: dict[str, State] = field(default_factory=dict)
    next: dict[str, int] = field(default_factory=lambda: {"k": 0, "c": 0, "b": 0})

    def live(self, prefix: str) -> list[str]:
        return sorted(
            (s for s, st in self.sessions.items() if st is not None and s[:1] == prefix),
            key=lambda s: int(s[1:]),
        )

    def key(self) -> str:
        self.next["k"] += 1
        return f"k{self.next['k']}"


# --------------------------------------------------------------------------- the writer


def _send(*message: Any) -> None:
    os.write(1, orjson.dumps(message) + b"\n")  # one write(2): never torn by the kill


def _appended(st: State, keys: list[str]) -> State:
    """``st`` after a keyed append of ``keys`` (those already kept are not written)."""
    assert st is not None
    version, data, last, kept = st
    new = [k for k in keys if k not in {key for _, key in kept}]
    if not new:
        return st
    added = [[last + i + 1, k] for i, k in enumerate(new)]
    return [version + 1, data, last + len(new), kept + added]


def _dropped(st: State, drop: list[list[Any]]) -> State:
    assert st is not None
    version, data, last, kept = st
    if not drop:
        return st
    return [version + 1, data, last, [e for e in kept if e not in drop]]


Step = tuple[dict[str, State], bool, Callable[[Any], Awaitable[Any]]]


def _step(model: Model, rnd: random.Random, now: datetime) -> Step:
    """One write: the states it must produce, whether all at once, and the call."""
    s = model.sessions
    pick = rnd.random()
    if pick < 0.15:  # an update checked against the version
        v, data, last, kept = s["ctr"]  # type: ignore[misc]
        want = [v + 1, {**data, "n": v}, last, kept]
        return (
            {"ctr": want},
            True,
            lambda st: st.update_session("ctr", merge_data={"n": v}, expected_version=v),
        )
    if pick < 0.32:  # keyed appends, some versioned
        keys = [model.key() for _ in range(rnd.randint(1, 3))]
        v = s["log"][0]  # type: ignore[index]
        expected = v if rnd.random() < 0.5 else None
        return (
            {"log": _appended(s["log"], keys)},
            True,
            lambda st: st.append_events("log", [event(k) for k in keys], expected_version=expected),
        )
    if pick < 0.4:  # a retry: stored keys again (not written), maybe with a new one
        kept = s["log"][3]  # type: ignore[index]
        keys = [key for _, key in kept[-rnd.randint(1, 2) :]]
        if not keys or rnd.random() < 0.5:
            keys.append(model.key())
        return (
            {"log": _appended(s["log"], keys)},
            True,
            lambda st: st.append_events("log", [event(k) for k in keys]),
        )
    if pick < 0.43 and len(s["log"][3]) > 25:  # type: ignore[index]
        v, data, last, kept = s["log"]  # type: ignore[misc]
        return (
            {"log": [v + 1, data, last, kept[-10:]]},
            True,
            lambda st: st.trim_events("log", keep_last=10),
        )
    if pick < 0.6:  # the event log's other writes, on "stk"
        kept = s["stk"][3]  # type: ignore[index]
        what = rnd.random()
        if what < 0.45 or len(kept) < 3:
            keys = [model.key() for _ in range(rnd.randint(1, 3))]
            return (
                {"stk": _appended(s["stk"], keys)},
                True,
                lambda st: st.append_events("stk", [event(k) for k in keys]),
            )
        if what < 0.65:
            n = rnd.randint(1, 2)
            return (
                {"stk": _dropped(s["stk"], kept[-n:])},
                True,
                lambda st: st.pop_events("stk", n),
            )
        if what < 0.8:
            after = kept[-3][0]
            return (
                {"stk": _dropped(s["stk"], kept[-2:])},
                True,
                lambda st: st.truncate_events("stk", after),
            )
        victim = rnd.choice(kept)
        return (
            {"stk": _dropped(s["stk"], [victim])},
            True,
            lambda st: st.delete_events("stk", keys=[victim[1]]),
        )
    if pick < 0.7:  # a transaction over two sessions, with an append
        k = model.key()
        ta, tb = s["ta"], s["tb"]
        assert ta is not None and tb is not None
        want_a = _appended([ta[0] + 1, {**ta[1], "k": k}, ta[2], ta[3]], [k])
        # (a commit steps a session's version once per op: the update, then the append)
        want_b = [tb[0] + 1, {**tb[1], "k": k}, tb[2], tb[3]]
        ops = [
            UpdateOp("ta", SessionUpdate(merge_data={"k": k})),
            UpdateOp("tb", SessionUpdate(merge_data={"k": k})),
            AppendOp("ta", [event(k)]),
        ]
        return {"ta": want_a, "tb": want_b}, True, lambda st: st.commit(ops)
    if pick < 0.82:  # a create, its events in the same step or none
        model.next["c"] += 1
        sid = f"n{model.next['c']}"
        if rnd.random() < 0.5:
            return (
                {sid: [1, {"i": sid}, 0, []]},
                True,
                lambda st: st.create_session(id=sid, data={"i": sid}, tags=["mix"]),
            )
        keys = [model.key(), model.key()]
        new = NewSession(data={"i": sid}, tags=["mix"])
        return (
            {sid: [1, {"i": sid}, 2, [[1, keys[0]], [2, keys[1]]]]},
            True,
            lambda st: st.append_events(sid, [event(k) for k in keys], create=new),
        )
    if pick < 0.92 and len(model.live("n")) > LIVE:  # a versioned delete
        sid = model.live("n")[0]
        v = s[sid][0]  # type: ignore[index]
        return {sid: None}, True, lambda st: st.delete_session(sid, expected_version=v)
    # a batch of whole records (a restore's writes; not atomic across its sessions)
    records: list[SessionRecord] = []
    made: dict[str, State] = {}
    for _ in range(2):
        model.next["b"] += 1
        sid = f"r{model.next['b']}"
        keys = [model.key(), model.key()]
        session = Session(
            sid, None, Status.ACTIVE, {"i": sid}, {}, frozenset({"mix"}), now, now, None, 1, 2, 2
        )
        events = [Event(q, "e", now, {"k": k}, k) for q, k in ((1, keys[0]), (2, keys[1]))]
        records.append(SessionRecord(session, events))
        made[sid] = [1, {"i": sid}, 2, [[1, keys[0]], [2, keys[1]]]]
    for sid in model.live("r")[: -2 * LIVE]:  # the old batches go, a write of their own
        made.setdefault(sid, None)
    old = [sid for sid, st in made.items() if st is None]

    async def batch(st: Any) -> None:
        await st.put_records(records)
        for sid in old:
            await st.delete_session(sid)

    return made, False, batch


def _check_result(result: Any, want: dict[str, State]) -> str | None:
    """What a returned session contradicts of the prediction (``None``: nothing)."""
    got = getattr(result, "session", result)  # pop_events returns PoppedEvents
    if not isinstance(got, Session) or got.id not in want:
        return None
    st = want[got.id]
    if st is None or (got.version, got.data, got.last_seq, got.event_count) != (
        st[0],
        st[1],
        st[2],
        len(st[3]),
    ):
        return f"{got} is not the predicted {st}"
    return None


async def _write_forever(spec: dict[str, Any], seed: int) -> None:
    rnd = random.Random(seed)
    model = Model(spec["sessions"], spec["next"])
    async with open_store(spec["url"], **spec["options"]) as store:
        _send("ready")
        while True:
            want, atomic, call = _step(model, rnd, store.clock.now())
            _send("try", want, atomic, model.next)
            result = await call(store)
            results = result if isinstance(result, list) else [result]
            last = {getattr(r, "id", i): r for i, r in enumerate(results)}  # a commit's
            for got in last.values():  # results per op: the last one of each session
                if (problem := _check_result(got, want)) is not None:
                    _send("bug", problem)
                    os._exit(3)
            model.sessions.update(want)
            _send("ok")


# --------------------------------------------------------------------------- the checker


async def _read(store: Any, sid: str) -> State:
    session = await store.get_session(sid)
    return _state(session, await store.get_events(sid) if session is not None else [])


async def _listing(store: Any) -> dict[str, Session]:
    listed: dict[str, Session] = {}
    opts = QueryOptions(sort_by="id", limit=7)  # several pages
    flt = SessionFilter(include_expired=True)
    while True:
        page = await store.list_sessions(flt, opts)
        listed.update((s.id, s) for s in page.items)
        if page.next_cursor is None:
            return listed
        opts = QueryOptions(sort_by="id", limit=7, cursor=page.next_cursor)


async def verify(
    store: Any, model: Model, pending: tuple[dict[str, State], bool] | None
) -> dict[str, bool]:
    """Check the store against ``model`` and the write in flight; resolve it into the
    model. Returns how the write in flight ended: ``{"landed": ..., "lost": ...}``."""
    want, atomic = pending if pending is not None else ({}, True)
    outcome = {"landed": False, "lost": False}
    sides = set()  # of the sessions the write in flight would change: old or new state
    for sid in sorted(model.sessions.keys() | want.keys()):
        stored = await _read(store, sid)
        before = model.sessions.get(sid)
        if stored != before and (sid not in want or stored != want[sid]):
            raise AssertionError(f"{sid}: stored {stored}, acknowledged {before}, tried {want}")
        if sid in want and want[sid] != before:
            sides.add("new" if stored == want[sid] else "old")
        model.sessions[sid] = stored
    assert not (atomic and len(sides) > 1), f"a write applied halfway: {want}"
    outcome["landed"] = "new" in sides
    outcome["lost"] = "old" in sides
    live = {sid: st for sid, st in model.sessions.items() if st is not None}
    listed = await _listing(store)
    assert sorted(listed) == sorted(live), (sorted(listed), sorted(live))
    for sid, session in listed.items():
        assert await store.get_session(sid) == session, f"the listing's {sid} is stale"
        events = await store.get_events(sid)
        assert len(events) == session.event_count
        assert [e.seq for e in events] == sorted({e.seq for e in events})
        assert all(0 < e.seq <= session.last_seq for e in events)
        for e in events[-2:]:
            assert await store.get_event(sid, key=e.key) == e
    assert await store.count_sessions() == len(live)
    assert await store.count_sessions(SessionFilter(tags_all=["mix"])) == len(live) - len(FIXED)
    await _idempotence(store, model)
    # the store keeps working: a versioned write succeeds
    v, _, last, kept = model.sessions["ctr"]  # type: ignore[misc]
    done = await store.update_session("ctr", merge_data={"n": v}, expected_version=v)
    model.sessions["ctr"] = [done.version, done.data, last, kept]
    assert done.version == v + 1 and done.data["n"] == v
    return outcome


async def _idempotence(store: Any, model: Model) -> None:
    """The newest kept keys deduplicate: same content, no write; other content, refused."""
    st = model.sessions["log"]
    assert st is not None
    if not st[3]:
        return
    key = st[3][-1][1]
    again = await store.append_events("log", [event(key)])
    assert (again.version, again.event_count) == (st[0], len(st[3])), "a key written twice"
    try:
        await store.append_events("log", [{"type": "e", "key": key, "data": {"k": "other"}}])
    except EventKeyConflictError:
        pass
    else:
        raise AssertionError(f"key {key} with other content was accepted")
    assert await _read(store, "log") == st


async def seed_sessions(url: str, options: dict[str, Any]) -> Model:
    """Create the fixed sessions; their model."""
    model = Model()
    async with open_store(url, **options) as store:
        for sid in FIXED:
            data: dict[str, Any] = {"n": 0} if sid == "ctr" else {}
            s = await store.create_session(id=sid, data=data)
            model.sessions[sid] = [s.version, s.data, 0, []]
    return model


# --------------------------------------------------------------------------- the loop


@dataclass
class Totals:
    kills: int = 0
    acked: int = 0
    landed: int = 0  # writes in flight at a kill found applied
    lost: int = 0  # ... found not applied
    in_open: int = 0  # kills before the writer's first write


def _spawn(state_file: str, seed: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "drivers")])}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crashmix", state_file, str(seed)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _lines(proc: subprocess.Popen[bytes], until: float, stop_at_ok: bool) -> list[Any]:
    """Messages until the monotonic time ``until`` (or the first ``ok``, or EOF)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out: list[Any] = []
    buf = getattr(proc, "_crashmix_buf", b"")
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while (left := until - time.monotonic()) > 0:
            if not sel.select(left):
                break
            data = os.read(fd, 65536)
            if not data:
                break
            buf += data
            *whole, buf = buf.split(b"\n")
            out.extend(orjson.loads(m) for m in whole)
            if stop_at_ok and any(m[0] == "ok" for m in out):
                break
    proc._crashmix_buf = buf  # type: ignore[attr-defined]
    return out


def run_kills(
    url: str,
    options: dict[str, Any],
    kills: int,
    seed: int,
    *,
    after_kill: Callable[[], None] | None = None,
    window: float = 0.25,
) -> Totals:
    """``kills`` writers SIGKILLed at random moments, every invariant checked after each;
    ``after_kill`` waits for what outlives a client (a server finishing its statement)."""
    rnd = random.Random(seed)
    model = asyncio.run(seed_sessions(url, options))
    totals = Totals()
    with tempfile.TemporaryDirectory(prefix="crashmix-") as tmp:
        state_file = os.path.join(tmp, "state.json")
        for cycle in range(kills):
            spec = {"url": url, "options": options, "sessions": model.sessions}
            spec["next"] = model.next
            Path(state_file).write_text(json.dumps(spec))
            proc = _spawn(state_file, seed * 1000 + cycle)
            messages: list[Any] = []
            if cycle % 4:  # from the first acknowledged write
                messages += _lines(proc, time.monotonic() + 60, stop_at_ok=True)
                assert any(m[0] == "ok" for m in messages), _fail(proc, messages)
            messages += _lines(proc, time.monotonic() + rnd.uniform(0, window), False)
            proc.send_signal(signal.SIGKILL)
            messages += _lines(proc, time.monotonic() + 30, False)
            proc.wait(30)
            assert proc.returncode == -signal.SIGKILL, _fail(proc, messages)
            _close(proc)
            if after_kill is not None:
                after_kill()
            pending: tuple[dict[str, State], bool] | None = None
            for m in messages:
                if m[0] == "try":
                    pending = (m[1], m[2])
                    model.next = m[3]  # names tried are never used again
                elif m[0] == "ok":
                    assert pending is not None
                    model.sessions.update(pending[0])
                    totals.acked += 1
                    pending = None
            totals.in_open += not any(m[0] == "try" for m in messages)
            outcome = asyncio.run(_verify_once(url, options, model, pending))
            totals.kills += 1
            totals.landed += outcome["landed"]
            totals.lost += outcome["lost"]
    return totals


def _fail(proc: subprocess.Popen[bytes], messages: list[Any]) -> str:
    proc.kill()
    _, err = proc.communicate(timeout=30)
    return f"{messages[-3:]}\n{err.decode(errors='replace')[-3000:]}"


def _close(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


async def _verify_once(
    url: str, options: dict[str, Any], model: Model, pending: tuple[dict[str, State], bool] | None
) -> dict[str, bool]:
    async with open_store(url, **options) as store:
        return await verify(store, model, pending)


if __name__ == "__main__":
    _spec = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(_write_forever(_spec, int(sys.argv[2])))
