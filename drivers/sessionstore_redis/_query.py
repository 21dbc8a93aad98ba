"""Indexed queries: filtered, ordered pages in O(page), counts, search, expiry scans.

Every index shard is walked by ``lua/walk.lua`` (one call per shard, pipelined), which
either enumerates the smallest candidate set (processor / status / tags) or walks the
order index from the cursor, checking set membership and the index record (expiry, time
bounds, has_events) server-side. The client merges the shards' answers, loads the
documents and checks each one with the reference matcher (``sessionstore.query``), so a
stale index entry (possible on Cluster with key layout 3, where indexes are updated in a
second step, or after native expiry) is skipped and repaired, never returned. On Cluster
with key layout 4 a node's walk also sends the documents of its share of the page.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from itertools import islice, takewhile
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from redis.crc import key_slot

from sessionstore import Page, QueryOptions, Session, SessionFilter, StoreUnavailableError
from sessionstore.clock import to_ms
from sessionstore.query import (
    OrderKey,
    decode_cursor,
    encode_cursor,
    evaluate,
    matches,
    normalize_search_text,
    order_key,
    query_fingerprint,
    search_matches,
)

from ._encoding import record_of
from ._scripts import COMPOSE, WALK, WALKN
from ._writes import Writes

if TYPE_CHECKING:
    from ._indexer import IndexQueue

__all__ = ["Queries"]

log = logging.getLogger("sessionstore.redis")
_BUDGET: Final = 4_000  # index entries one walk call examines at most
#: Index entries one counting call examines (and the largest candidate set it enumerates
#: at once): a few ms of server time per call, far from the busy-script limit.
_COUNT_BUDGET: Final = 20_000
_COMPOSE_BATCH: Final = 500  # sessions one back-fill call adds to the composites
_ALL: Final = 10**15
_ONE_MS: Final = timedelta(milliseconds=1)


@dataclass(frozen=True)
class _Segment:
    zset: str  # index name: c, u, x, n, i
    lex: bool
    missing: int  # the OrderKey "missing" flag of rows in this segment
    lo: int | None = None
    hi: int | None = None


class _Entry(NamedTuple):
    """A row of a walk's reply (a named tuple: a page parses hundreds on Cluster, and a
    frozen dataclass costs several times more to build)."""

    key: tuple[int, str]  # (score, id) position in the segment
    sid: str
    record: bytes
    doc: bytes | None  # the document, when the walk read it (single server, layout 4)


def _families(flt: SessionFilter, z: str) -> set[str]:
    """The composite families (``lua/ixadd.lua``) that could serve ``flt`` in sort key
    ``z`` (``"c"`` created_at, ``"u"`` updated_at)."""
    out = set()
    one_pid = flt.processor_id is not None and len(flt.processor_id) == 1
    one_st = flt.status is not None and len(flt.status) == 1
    if one_pid:
        out.add("p" + z)
    if one_st:
        out.add("s" + z)
    if one_pid and one_st:
        out.add("q" + z)
    if flt.tags_all or (flt.tags_any is not None and len(flt.tags_any) == 1):
        out.add("t" + z)
    return out


def _share(want: int, shards: int) -> int:
    """Rows to ask of each of ``shards`` shards for ``want`` rows spread evenly over them:
    the mean share plus three of its standard deviations and 3 (2x the mean + 8 before:
    a page of 101 read 320 rows over 16 shards, now ~260)."""
    return _part_share(want, 1, shards)


def _part_share(want: int, part: int, shards: int) -> int:
    """:func:`_share` of ``part`` shards together (a Cluster node's: ``lua/walkn.lua``
    sends the documents of that many of its rows)."""
    mean = want * part / shards
    return min(want, int(mean + 3 * math.sqrt(mean) + 3))


def _ceil_ms(value: datetime) -> int:
    return to_ms(value) + (1 if value.microsecond % 1000 else 0)


_position: Final = itemgetter(0)  # an _Entry's key


def _score(score: bytes) -> int:
    """An order score as the walk sends it (``b"1893456015000"``; ``%.17g`` of a double)."""
    try:
        return int(score)
    except ValueError:
        return int(float(score))


class _Unordered(Exception):
    """A shard's rows, their scores taken from their records, are out of order."""


#: the index record's field (``lua/index.lua``) that holds an order's score
_RECORD_FIELD: Final = {"c": 1, "u": 2}


def _rows(
    sizes: bytes,
    blob: bytes | list[bytes],
    docs: bool,
    field: int,
    desc: bool,
    bound: tuple[int, str] | None,
) -> Iterator[_Entry]:
    """A shard's rows (``lua/walk.lua``'s ``sizes`` and concatenated ``rows``, or their
    pieces: ``lua/pieces.lua``), each followed by its document when the walk read them
    (``docs``), parsed only as the merge reaches them: a Cluster page takes ~101 of the
    ~260 rows its 16 shards send. A row without a score (the walk read its order without
    ``WITHSCORES``) takes it from its record's ``field``, and is given to the merge only
    once the next row is seen to follow it: rows out of order, or past the shard's last
    position (``bound``, when it answered in part), raise :class:`_Unordered` (an order
    entry and its record disagree: a stale entry), and the round is asked again with
    scores."""
    if not isinstance(blob, bytes):
        blob = blob[0] if len(blob) == 1 else b"".join(blob)
    lengths = iter(sizes.split(b","))
    at = 0
    held: _Entry | None = None  # a row scored from its record, not yet checked
    for size in lengths:
        end = at + int(size)
        sid_b, score, record = blob[at:end].split(b"\x01", 2)
        at = end
        doc = None
        if docs:
            size = next(lengths)
            if size != b"-":  # b"-": not sent (lua/walkn.lua: past its node's share)
                end = at + int(size)
                doc = blob[at:end]
                at = end
        sid = sid_b.decode()
        if score:
            yield _Entry((_score(score), sid), sid, record, doc)
            continue
        try:
            key = (int(record.split(b"\0", field + 1)[field]), sid)
        except (ValueError, IndexError):
            raise _Unordered from None
        # inline _before (a call per row is a tenth of this loop)
        if bound is not None and ((bound > key) if desc else (bound < key)):
            raise _Unordered
        if held is not None:
            if (key > held.key) if desc else (key < held.key):
                raise _Unordered
            yield held
        held = _Entry(key, sid, record, doc)
    if held is not None:
        yield held


def _node_reply(reply: list[Any]) -> list[list[bytes]]:
    """A ``lua/walkn.lua`` reply as its shards' ``lua/walk.lua`` replies (done, last
    score, last member, count, sizes, rows)."""
    heads, sizes, blob = reply
    if not isinstance(blob, bytes):  # in pieces (lua/pieces.lua)
        blob = b"".join(blob)
    out = []
    at = 0
    for head, size in zip(heads.split(b";"), sizes.split(b";"), strict=True):
        done, score, count, member_len, rows_len = head.split(b",")
        member_end = at + int(member_len)
        end = member_end + int(rows_len)
        out.append([done, score, blob[at:member_end], count, size, blob[member_end:end]])
        at = end
    return out


def _before(a: tuple[int, str], b: tuple[int, str], desc: bool) -> bool:
    """``a`` comes strictly before ``b`` in the walk direction."""
    return a > b if desc else a < b


def _within(frontier: tuple[int, str], desc: bool, entry: _Entry) -> bool:
    """``entry`` is not past ``frontier`` (every shard has answered up to it)."""
    return not _before(frontier, entry.key, desc)


class Queries:
    """``list_sessions``, ``count_sessions``, ``search_sessions``, the expiry scan and
    ``rebuild_indexes`` for :class:`RedisStore` (which checks that it is open first).

    It reads the indexes through ``writes`` (connection, key layout, clock; ``release``
    of a stale stub), documents through ``fetch`` and, with their index records (given
    the documents the walk read, if any), ``fetch_rows``; every stored session through
    ``iter_sessions``, and queues index repairs on ``index`` (the calling loop's queue)."""

    def __init__(
        self,
        writes: Writes,
        *,
        fetch: Callable[..., Awaitable[dict[str, Session]]],
        fetch_rows: Callable[
            [list[str], list[bytes | None] | None], Awaitable[dict[str, tuple[Session, bytes]]]
        ],
        iter_sessions: Callable[[], AsyncIterator[Session]],
        index: Callable[[], IndexQueue],
    ) -> None:
        self._writes = writes
        self._backend = writes.backend
        self._keys = writes.keys
        self._clock = writes.clock
        self._fetch = fetch
        self._fetch_rows = fetch_rows
        self._iter_sessions = iter_sessions
        self._index = index
        #: each index shard's hash slot (its node is looked up per call: the map moves)
        self._slots = [key_slot(self._keys.index(k).encode()) for k in range(self._keys.shards)]
        #: the composite families (``lua/ixadd.lua``) known complete on every shard
        self._families: set[str] = set()
        #: force a plan in ``lua/walk.lua`` ("walk", "sort", "comp"; "" the planner's
        #: choice): the benchmark's plan sweep times each
        self.force_plan = ""

    @property
    def _docs_prefix(self) -> str:
        """The walk reads the returned rows' documents itself: on one server by the
        namespace's prefix, on Cluster with key layout 4 by each shard's own (``"~"``,
        its sessions share its slot); not with layout 3 (a script reaches one slot)."""
        if not self._writes.cluster:
            return self._keys.prefix
        return "~" if self._keys.colocated else ""

    # ------------------------------------------------------------------ public

    async def list_sessions(
        self, filter: SessionFilter | None = None, options: QueryOptions | None = None
    ) -> Page:
        """One page in O(page): the indexes narrow and order, the documents confirm."""
        await self._index().flush()
        return await self._query(filter or SessionFilter(), options or QueryOptions(), None)

    async def search_sessions(
        self,
        text: str,
        options: QueryOptions | None = None,
        filter: SessionFilter | None = None,
    ) -> Page:
        """Plain-text search: walks the (filtered) index in the requested order, checking
        each document, until the page is full. Cost grows with the sessions examined."""
        normalize_search_text(text)
        await self._index().flush()
        return await self._query(filter or SessionFilter(), options or QueryOptions(), text)

    async def count_sessions(self, filter: SessionFilter | None = None) -> int:
        """Counted on the server from the indexes (documents are read only for
        ``ids`` and ``metadata`` conditions)."""
        await self._index().flush()
        flt = filter or SessionFilter()
        now = self._clock.now()
        if flt == SessionFilter(include_expired=flt.include_expired):
            return await self._count_all(now, include_expired=flt.include_expired)
        if flt.ids is not None:
            found = await self._fetch(sorted(flt.ids), strict=False)
            return sum(1 for s in found.values() if matches(s, flt, now))
        if flt.metadata:
            return len(await self._collect(flt, "id", False, now, None, _ALL, None))
        if flt.created_after or flt.created_before:
            seg = self._segments("created_at", flt, now)[0]
        elif flt.updated_after or flt.updated_before:
            seg = self._segments("updated_at", flt, now)[0]
        else:
            seg = _Segment("i", True, 0)
        total = 0
        starts: dict[int, tuple[int, str] | None] = dict.fromkeys(range(self._keys.shards))
        while starts:
            shards = list(starts)
            calls = [self._walk_call(k, seg, starts[k], 0, flt, now, False) for k in shards]
            results = await self._pipeline(calls)
            for shard, res in zip(shards, results, strict=True):
                total += int(res[3])
                if res[0] == b"1":
                    del starts[shard]
                else:
                    starts[shard] = (int(float(res[1] or 0)), res[2].decode())
        return total

    async def _count_all(self, now: datetime, *, include_expired: bool) -> int:
        """Every session: per shard the size of the id index less the expired entries of
        the expiry index (``ZCARD`` - ``ZCOUNT``), one pipelined round, O(log n) on the
        server (the walk over every entry ran past Redis's busy-script limit at 100,000)."""
        calls: list[tuple[Any, ...]] = []
        for shard in range(self._keys.shards):
            ix = self._keys.index(shard)
            calls.append(("cmd", "ZCARD", ix + "i"))
            if not include_expired:
                calls.append(("cmd", "ZCOUNT", ix + "x", "-inf", to_ms(now)))
        results = [int(r) for r in await self._pipeline(calls)]
        return sum(results[0::2]) - sum(results[1::2]) if not include_expired else sum(results)

    async def expired_sessions(self, now: datetime) -> list[Session]:
        """From the expiry index (``expires_at <= now``), documents confirmed."""
        await self._index().flush()
        flt = SessionFilter(include_expired=True, expires_before=now + _ONE_MS)
        return await self._collect(flt, "expires_at", False, now, None, _ALL, None)

    # ------------------------------------------------------------------ engine

    async def _query(self, flt: SessionFilter, opts: QueryOptions, search: str | None) -> Page:
        now = self._clock.now()
        fingerprint = query_fingerprint(flt, opts, search)
        after = decode_cursor(opts.cursor, fingerprint) if opts.cursor is not None else None
        if flt.ids is not None:
            found = await self._fetch(sorted(flt.ids), strict=False)
            return evaluate(found.values(), flt, opts, now, search=search)
        needle = normalize_search_text(search) if search is not None else None
        if opts.sort_by in ("created_at", "updated_at"):
            wanted = _families(flt, "c" if opts.sort_by == "created_at" else "u")
            if not wanted <= self._families:
                await self.compose(wanted - self._families)
        end = opts.offset + opts.limit
        picked = await self._collect(
            flt, opts.sort_by, opts.descending, now, after, end + 1, needle
        )
        items = picked[opts.offset : end]
        cursor = None
        if len(picked) > end and items:
            cursor = encode_cursor(fingerprint, order_key(items[-1], opts.sort_by))
        return Page(items, cursor)

    def _segments(self, sort_by: str, flt: SessionFilter, now: datetime) -> list[_Segment]:
        if sort_by == "id":
            return [_Segment("i", True, 0)]
        if sort_by == "created_at":
            lo = None if flt.created_after is None else to_ms(flt.created_after) + 1
            hi = None if flt.created_before is None else _ceil_ms(flt.created_before) - 1
            return [_Segment("c", False, 0, lo, hi)]
        if sort_by == "updated_at":
            lo = None if flt.updated_after is None else to_ms(flt.updated_after) + 1
            hi = None if flt.updated_before is None else _ceil_ms(flt.updated_before) - 1
            return [_Segment("u", False, 0, lo, hi)]
        lo = None if flt.include_expired else to_ms(now) + 1
        hi = None if flt.expires_before is None else _ceil_ms(flt.expires_before) - 1
        segments = [_Segment("x", False, 0, lo, hi)]
        if flt.expires_before is None:
            segments.append(_Segment("n", True, 1))
        return segments

    def _walk_call(
        self,
        shard: int,
        seg: _Segment,
        start: tuple[int, str] | None,
        want: int,
        flt: SessionFilter,
        now: datetime,
        desc: bool,
        scores: bool = False,
    ) -> tuple[Any, ...]:
        ix = self._keys.index(shard)
        groups: list[list[str]] = []
        if flt.processor_id is not None:
            groups.append([f"{ix}p:{p}" for p in sorted(flt.processor_id)])
        if flt.status is not None:
            groups.append([f"{ix}s:{s.value}" for s in sorted(flt.status)])
        if flt.tags_all:
            groups.extend([f"{ix}t:{t}"] for t in sorted(flt.tags_all))
        if flt.tags_any is not None:
            groups.append([f"{ix}t:{t}" for t in sorted(flt.tags_any)])

        def opt(value: int | None) -> int | str:
            return "" if value is None else value

        # composites (sorted sets of one value's sessions in this order) covering groups
        comps: list[tuple[str, str]] = []
        if want > 0 and not seg.lex and seg.zset in ("c", "u"):
            z, at = seg.zset, 1
            one_pid = one_st = None
            pid_at = 0
            if flt.processor_id is not None:
                if len(flt.processor_id) == 1:
                    (one_pid,) = flt.processor_id
                    comps.append((f"{ix}p{z}:{one_pid}", str(at)))
                    pid_at = at
                at += 1
            if flt.status is not None:
                if len(flt.status) == 1:
                    (one,) = flt.status
                    one_st = one.value
                    comps.append((f"{ix}s{z}:{one_st}", str(at)))
                    if one_pid is not None:
                        comps.append((f"{ix}q{z}:{one_st}:{one_pid}", f"{pid_at},{at}"))
                at += 1
            if flt.tags_all:
                for t in sorted(flt.tags_all):
                    comps.append((f"{ix}t{z}:{t}", str(at)))
                    at += 1
            if flt.tags_any is not None and len(flt.tags_any) == 1:
                (t,) = flt.tags_any
                comps.append((f"{ix}t{z}:{t}", str(at)))

        comps = [c for c in comps if c[0][len(ix) : len(ix) + 2] in self._families]
        has_events = "" if flt.has_events is None else ("1" if flt.has_events else "0")
        args: list[Any] = [
            "1" if seg.lex else "0",
            "1" if desc else "0",
            "" if start is None or seg.lex else start[0],
            "" if start is None else start[1],
            opt(seg.lo),
            opt(seg.hi),
            want,
            _COUNT_BUDGET if want == 0 else _BUDGET,
            "" if flt.include_expired else to_ms(now),
            opt(None if flt.created_after is None else to_ms(flt.created_after) + 1),
            opt(None if flt.created_before is None else _ceil_ms(flt.created_before) - 1),
            opt(None if flt.updated_after is None else to_ms(flt.updated_after) + 1),
            opt(None if flt.updated_before is None else _ceil_ms(flt.updated_before) - 1),
            opt(None if flt.expires_before is None else _ceil_ms(flt.expires_before)),
            has_events,
            len(groups),
            *(len(g) for g in groups),
            len(comps),
            *(covered for _, covered in comps),
            self.force_plan,
            self._docs_prefix if want > 0 else "",
            "1" if scores else "",
        ]
        keys = [ix + "r", ix + seg.zset, ix + "x", ix + "c", ix + "u"]
        keys += [key for g in groups for key in g]
        keys += [key for key, _ in comps]
        return ("script", WALK, keys, args)

    def _walk_calls(
        self,
        shards: int,
        seg: _Segment,
        start: tuple[int, str] | None,
        want: int,
        flt: SessionFilter,
        now: datetime,
        desc: bool,
        scores: bool = False,
    ) -> list[tuple[Any, ...]]:
        """:meth:`_walk_call` on shards ``0 .. shards - 1``: the arguments are the same on
        every shard and the keys differ only in the shard's prefix, so they are built once
        (16 shards on Cluster)."""
        first = self._walk_call(0, seg, start, want, flt, now, desc, scores)
        calls = [first]
        _, script, keys, args = first
        cut = len(self._keys.index(0))
        for shard in range(1, shards):
            ix = self._keys.index(shard)
            calls.append(("script", script, [ix + key[cut:] for key in keys], args))
        return calls

    async def _walk_round(self, calls: list[tuple[Any, ...]], want: int = 0) -> list[Any]:
        """The replies of :meth:`_walk_calls` ``calls`` (one a shard), in shard order. On
        Cluster one ``lua/walkn.lua`` call per node walks that node's shards (3 calls
        instead of 16, the nodes in parallel; a node with one shard gets a plain walk
        call); the shards of a node call that fails (a slot moved since the map was
        read: another node's key) are asked one by one, as before. With key layout 4
        each node sends the documents of its share of ``want`` rows only."""
        shards = len(calls)
        if shards == 1 or not self._writes.cluster:  # one server: index_shards > 1 too
            return await self._pipeline(calls)
        node_of = self._backend.client.nodes_manager.get_node_from_slot
        by_node: dict[str, list[int]] = {}
        for shard, slot in enumerate(self._slots):
            by_node.setdefault(node_of(slot).name, []).append(shard)
        groups = list(by_node.values())
        node_calls: list[tuple[Any, ...]] = []
        docs = want > 0 and self._keys.colocated
        for group in groups:
            _, _, keys, args = calls[group[0]]
            if len(group) == 1:
                node_calls.append(calls[group[0]])
                continue
            more = [key for shard in group[1:] for key in calls[shard][2]]
            share = _part_share(want, len(group), shards) if docs else 0
            node_calls.append(("script", WALKN, keys, [len(group), len(keys), share, *more, *args]))
        replies, _ = await self._backend.run(
            lambda: self._backend.pipeline(node_calls), idempotent=True, what="query"
        )
        out: list[Any] = [None] * shards
        again: list[int] = []
        for group, reply in zip(groups, replies, strict=True):
            if isinstance(reply, Exception):
                again += group
            elif len(group) == 1:
                out[group[0]] = reply
            else:
                for shard, res in zip(group, _node_reply(reply), strict=True):
                    out[shard] = res
        if again:
            retried = await self._pipeline([calls[shard] for shard in again])
            for shard, res in zip(again, retried, strict=True):
                out[shard] = res
        return out

    async def compose(self, families: Iterable[str]) -> None:
        """Make composite ``families`` (``"pu"``: by processor and ``updated_at``, ...;
        ``lua/ixadd.lua``) complete on every shard: the first call has the writes keep a
        family from then on, the next ones back-fill the sessions written before
        (``lua/compose.lua``, in batches). A family complete already costs one call."""
        for family in sorted(families):
            after = dict.fromkeys(range(self._keys.shards), "")
            while after:
                shards = list(after)
                calls = [
                    (
                        "script",
                        COMPOSE,
                        [self._keys.index(k) + "r"],
                        [self._keys.index(k), family, after[k], _COMPOSE_BATCH],
                    )
                    for k in shards
                ]
                for shard, res in zip(shards, await self._pipeline(calls), strict=True):
                    if res[0] == b"1":
                        del after[shard]
                    else:
                        after[shard] = res[1].decode()
            self._families.add(family)

    async def _pipeline(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        results, _ = await self._backend.run(
            lambda: self._backend.pipeline(calls), idempotent=True, what="query"
        )
        for res in results:
            if isinstance(res, Exception):
                raise StoreUnavailableError(f"query failed: {res}")
        return results

    async def _collect(
        self,
        flt: SessionFilter,
        sort_by: str,
        desc: bool,
        now: datetime,
        after: OrderKey | None,
        need: int,
        needle: str | None,
    ) -> list[Session]:
        """The first ``need`` matching sessions after ``after``, in order."""
        out: list[Session] = []
        for seg in self._segments(sort_by, flt, now):
            if after is not None and seg.missing < after[0]:
                continue
            start: tuple[int, str] | None = None
            if after is not None and seg.missing == after[0]:
                value = after[1]
                start = (value if isinstance(value, int) else 0, after[2])
            while len(out) < need:
                # the index checks everything but metadata and search text: ask for more
                # candidates only when documents will reject some
                want = need - len(out)
                if flt.metadata or needle is not None:
                    want = max(want, 64)
                want = min(want, 2_000)
                shards = self._keys.shards
                # rows spread over the shards: ask each for its share with a margin of
                # about three standard deviations (ids hash evenly: a binomial count), so
                # that few pages need a second round; a shard that holds more is asked
                # again from the frontier
                per_shard = want if shards == 1 else _share(want, shards)
                calls = self._walk_calls(shards, seg, start, per_shard, flt, now, desc)
                try:
                    frontier, final = await self._round(calls, seg, desc, want)
                except _Unordered:  # a stale entry: the same round with the index's scores
                    calls = self._walk_calls(
                        shards, seg, start, per_shard, flt, now, desc, scores=True
                    )
                    frontier, final = await self._round(calls, seg, desc, want)
                await self._confirm(final, seg, flt, now, needle, need, out, sort_by)
                if len(final) == want:
                    start = final[-1].key  # cut short: continue right after the last row
                elif frontier is None:
                    break
                else:
                    start = frontier
            if len(out) >= need:
                break
        return out

    async def _round(
        self, calls: list[tuple[Any, ...]], seg: _Segment, desc: bool, want: int
    ) -> tuple[tuple[int, str] | None, list[_Entry]]:
        """One walk round: the frontier and the first ``want`` rows of the merged runs."""
        results = await self._walk_round(calls, want)
        frontier, runs = self._parse(results, desc, _RECORD_FIELD.get(seg.zset, 0))
        # the runs are in walk order, so the rows up to the frontier come first: merge
        # only as far as the page needs (a Cluster page merges 16 runs)
        merged: Iterable[_Entry] = heapq.merge(*runs, key=_position, reverse=desc)
        if frontier is not None:
            merged = takewhile(partial(_within, frontier, desc), merged)
        return frontier, list(islice(merged, want))

    def _parse(
        self, results: list[Any], desc: bool, field: int
    ) -> tuple[tuple[int, str] | None, list[Iterator[_Entry]]]:
        """The shards' replies as the frontier (how far every shard has answered; ``None``
        when all are done) and their runs of rows (``_rows``; ``field``: the records' field
        of the order's score, for rows sent without one)."""
        frontier: tuple[int, str] | None = None
        runs = []
        docs = self._docs_prefix != ""
        for res in results:
            last = None
            if res[0] != b"1":
                last = (int(float(res[1] or 0)), res[2].decode())
                if frontier is None or _before(last, frontier, desc):
                    frontier = last
            if len(res) > 5 and res[4]:
                runs.append(_rows(res[4], res[5], docs, field, desc, last))
        return frontier, runs

    async def _confirm(
        self,
        entries: list[_Entry],
        seg: _Segment,
        flt: SessionFilter,
        now: datetime,
        needle: str | None,
        need: int,
        out: list[Session],
        sort_by: str,
    ) -> None:
        if not entries:
            return
        blobs = [e.doc for e in entries]
        docs = await self._fetch_rows(
            [e.sid for e in entries], None if all(b is None for b in blobs) else blobs
        )
        repairs: list[tuple[str, list[Any]]] = []
        for entry in entries:
            row = docs.get(entry.sid)
            if row is None:
                repairs.append((entry.sid, ["X", entry.sid, entry.record.decode()]))
                continue
            s, record = row
            if record != entry.record:
                # the stored fields' record (decode_listed): the session's own decides
                record = record_of(s).encode()
                if record != entry.record:
                    repairs.append((entry.sid, ["P", entry.sid, record.decode()]))
                    continue
            key = order_key(s, sort_by)  # type: ignore[arg-type]
            position = (key[1] if isinstance(key[1], int) else 0, s.id)
            if key[0] != seg.missing or position != entry.key:
                continue
            if not matches(s, flt, now) or (needle is not None and not search_matches(s, needle)):
                continue
            if len(out) < need:
                out.append(s)
        if repairs:
            await self._repair(repairs)

    async def _repair(self, items: list[tuple[str, list[Any]]]) -> None:
        """Fix index entries that point at deleted or changed sessions (lazily, queued)."""
        for sid, item in items:
            if item[0] == "X":
                group = item[2].split("\0")[6]
                if group:
                    await self._writes.release(sid, group)
        self._index().put(items)

    # ------------------------------------------------------------------ maintenance

    async def rebuild_indexes(self) -> tuple[int, int]:
        """Reconcile the indexes with the documents (after a crash between a Cluster write
        and its queued index update, or data written behind the store's back): every
        document is (re)indexed, every entry without a document removed. Safe to run
        while the store is in use. Returns ``(indexed, removed)``."""
        await self._index().flush()
        indexed = 0
        batch: list[tuple[str, list[Any]]] = []
        async for session in self._iter_sessions():
            batch.append((session.id, ["P", session.id, record_of(session)]))
            if len(batch) >= 500:
                await self._index().send(batch)
                indexed += len(batch)
                batch = []
        if batch:
            await self._index().send(batch)
            indexed += len(batch)
        removed = 0
        for shard in range(self._keys.shards):
            key = self._keys.index(shard) + "r"
            cursor = 0
            while True:
                cursor, chunk = await self._backend.client.hscan(key, cursor, count=500)
                records = {k.decode(): v.decode() for k, v in chunk.items()}
                found = await self._fetch(list(records), strict=False)
                stale = [(sid, ["X", sid, rec]) for sid, rec in records.items() if sid not in found]
                if stale:
                    await self._repair(stale)
                    removed += len(stale)
                if not cursor:
                    break
        await self._index().flush()
        # the composites: back-filled again on their next use (a session written behind
        # the store's back, e.g. by an older version, may be missing from them)
        shards = range(self._keys.shards)
        await self._pipeline([("cmd", "DEL", self._keys.index(k) + "cd") for k in shards])
        self._families.clear()
        return indexed, removed
