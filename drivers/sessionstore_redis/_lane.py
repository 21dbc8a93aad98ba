"""The lean request path of the script calls (every single-session operation).

redis-py's ``execute_command`` costs ~25 µs of client CPU per call on top of the socket
work (observability hooks, a retry wrapper, the pool's lock and bookkeeping, packing each
argument through the encoder, a task for ``asyncio.wait_for`` around every send): a third
of a whole round trip on loopback. A script call here packs its own RESP request, sends
it with the connection's ``send_request`` (``_conn._Unsent``: a direct write, the timeout
only when the socket buffer is full) and reads the reply itself (:func:`read_reply`,
what redis-py's pure-Python parser returns in a third of its layers; hiredis's parser
when it is installed), the read timeout enforced by :class:`Deadlines` (one timer per
lane, not one per reply).
It keeps redis-py's protection: a failure or a cancellation between sending and reading
the reply disconnects the connection, so it is never left one reply behind
(CVE-2023-28858/9).
Connections come from the client's own pool and go back to it after every call (taken
directly from its idle list when it has one and nobody waits, see :class:`Lane` and
``_gate.py``), and a connection the server has closed is reconnected before sending, as
the pool does. Retries stay with :meth:`Backend.run`.

The private parts of redis-py used here (the parser, the stream writer, the pool's idle
list, a cluster node's connections) are reached only through ``_redis_internals.py``,
checked before the first call; ``lean=false`` leaves this module unused.

On Cluster the request goes straight to the primary of the key's slot (from redis-py's
slot map); a ``MOVED``/``ASK`` reply falls back to redis-py's cluster client, which
follows the redirection and updates the map.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import AskError, MovedError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import _redis_internals as internals
from ._errors import script_error
from ._gate import FairGate, FairPool

__all__ = ["Deadlines", "Lane", "pack", "pack_call", "pack_get", "read_reply"]


def pack(args: Sequence[Any]) -> bytes:
    """One RESP request (an array of bulk strings) from str, bytes and int arguments."""
    return b"".join(_bulk([b"*%d\r\n" % len(args)], args))


#: The packed ``GET`` of the documents read lately (a read's request is the same for
#: every read of one session: ``pack`` costs ~8k instructions, a lookup ~100)
_GETS: dict[str, bytes] = {}
_MAX_GETS: Final = 4096


def pack_get(key: str) -> bytes:
    """:func:`pack` of ``["GET", key]``, from a bounded cache of the latest keys."""
    packed = _GETS.get(key)
    if packed is None:
        if len(_GETS) >= _MAX_GETS:
            _GETS.clear()
        packed = _GETS[key] = pack(["GET", key])
    return packed


#: RESP array headers of the requests most calls make
_ARRAYS: Final = tuple(b"*%d\r\n" % n for n in range(256))
#: RESP bulk string headers of the lengths most arguments have (``bytes % ...`` costs
#: ~1k instructions a call; a list lookup a few dozen)
_HEADERS: Final = tuple(b"$%d\r\n" % n for n in range(1024))


def _bulk(out: list[bytes], args: Iterable[Any]) -> list[bytes]:
    """``out`` with each argument appended as a RESP bulk string (three pieces each, for
    the caller's ``b"".join``)."""
    headers = _HEADERS
    append = out.append
    for arg in args:
        kind = type(arg)
        if kind is str:
            arg = arg.encode()
        elif kind is int:
            arg = b"%d" % arg
        elif kind is not bytes:
            arg = _other(arg)
        n = len(arg)
        append(headers[n] if n < 1024 else b"$%d\r\n" % n)
        append(arg)
        append(b"\r\n")
    return out


#: The packed ``command ref numkeys`` of the script calls made (a handful: the scripts).
_HEADS: dict[tuple[str, str | bytes, int], bytes] = {}
#: The packed ``command ref numkeys keys fixed-args`` of calls whose keys and first
#: arguments are the same for every call on one session (``pack_call``'s ``fixed``).
_SESSION_HEADS: dict[tuple[Any, ...], bytes] = {}
_MAX_SESSION_HEADS = 4096


def pack_call(
    command: str, ref: str | bytes, keys: Sequence[str], args: Sequence[Any], fixed: int = 0
) -> bytes:
    """:func:`pack` of ``[command, ref, len(keys), *keys, *args]``, the first three from a
    cache (they are the same for every call of a script); with ``fixed``, the keys and
    the first ``fixed`` arguments too (the same for every call on one session: the cache
    keeps the latest few thousand)."""
    if fixed:
        head_key: tuple[Any, ...] = (command, ref, *keys, *args[:fixed])
        head = _SESSION_HEADS.get(head_key)
        if head is None:
            if len(_SESSION_HEADS) >= _MAX_SESSION_HEADS:
                _SESSION_HEADS.clear()
            fixed_part = (command, ref, len(keys), *keys, *args[:fixed])
            head = _SESSION_HEADS[head_key] = b"".join(_bulk([], fixed_part))
        count = 3 + len(keys) + len(args)
        out = [_ARRAYS[count] if count < 256 else b"*%d\r\n" % count, head]
        return b"".join(_bulk(out, args[fixed:]))
    script_key = (command, ref, len(keys))
    head = _HEADS.get(script_key)
    if head is None:
        if len(_HEADS) > 256:  # only EVAL of a script source grows it; stay bounded
            _HEADS.clear()
        head = _HEADS[script_key] = pack(script_key)[4:]  # without the "*3\r\n"
    out = [b"*%d\r\n%b" % (3 + len(keys) + len(args), head)]
    return b"".join(_bulk(_bulk(out, keys), args))


def _other(arg: Any) -> bytes:
    """Subclasses and the rarer types, as redis-py's encoder writes them."""
    if isinstance(arg, bytes | bytearray | memoryview):
        return bytes(arg)
    if isinstance(arg, str):  # a str enum: its value
        return str.encode(arg)
    if isinstance(arg, bool):
        raise TypeError("a bool is not a Redis argument")
    if isinstance(arg, int):  # an int enum: its value
        return b"%d" % arg
    if isinstance(arg, float):
        return repr(arg).encode()
    raise TypeError(f"not a Redis argument: {type(arg).__name__}")


async def _exchange(
    conn: Any,
    packed: bytes,
    count: int,
    during: Callable[[], object] | None,
    watch: Deadlines,
) -> list[Any]:
    """Send ``count`` packed requests, read their replies (error replies as exception
    objects: the connection stays in step). Any other failure, a cancellation included,
    leaves the connection disconnected. ``during`` is called once the requests are sent,
    before the replies are read: work that does not need them runs while the server
    works (it must not raise). ``watch`` enforces the read timeout."""
    if conn.is_connected:
        stale = internals.stale_now(conn)
        if stale is None:
            stale = await internals.is_stale(conn)
        if stale:
            await conn.disconnect()  # closed by the server, or data nobody asked for
    if not conn.is_connected:
        await _connect(conn)
    await conn.send_request(packed)  # _conn._Unsent.send_request
    if during is not None:
        during()
    replies: list[Any] = []
    # the lane's own reader (:func:`read_reply`) where redis-py's pure-Python parser would
    # read; hiredis's parser reads itself
    stream = internals.lean_stream(conn)
    read = internals.reply_reader(conn) if stream is None else None
    timeout = conn.socket_timeout
    for _ in range(count):
        watch.begin(conn, timeout)
        try:
            reply = await (read_reply(stream, conn) if read is None else read())  # type: ignore[arg-type]
        except BaseException as exc:
            # as redis-py's read_response: never leave the connection a reply behind
            late = watch.end(conn)
            await conn.disconnect(nowait=True)
            if late:
                where = internals.host_error(conn)
                raise RedisTimeoutError(f"Timeout reading from {where}") from None
            if isinstance(exc, OSError):
                where = internals.host_error(conn)
                raise RedisConnectionError(f"Error while reading from {where}: {exc}") from exc
            if isinstance(exc, asyncio.IncompleteReadError):  # the lean reader's end of stream
                raise RedisConnectionError(internals.SERVER_CLOSED) from None
            if isinstance(exc, asyncio.LimitOverrunError):  # a line past the stream's limit
                raise ValueError(exc.args[0]) from exc  # (as StreamReader.readline raises)
            raise
        watch.end(conn)
        if type(reply) is ResponseError:  # an error reply is an exception object here
            reply = script_error(reply) or reply  # Redis 6.2's wrapping of a call's error
        replies.append(reply)
    return replies


async def read_reply(stream: asyncio.StreamReader, conn: Any) -> Any:
    """One reply read from the connection's stream, as redis-py's pure-Python parser of
    the connection (``_AsyncRESP3Parser``, or ``_AsyncRESP2Parser`` on a RESP2
    connection; replies not decoded) returns it, in ~2 awaits a reply instead of the
    parser's ~6 layers (``_read_response``, ``_readline``, ``readline``, ``_read``,
    ``readexactly``).

    Read here: bulk strings and simple strings (bytes), integers, arrays (nested, as
    lists), error replies (the exception redis-py's ``parse_error`` makes of the text,
    raised when it is a ``ConnectionError``, as there): every reply the lane's calls
    get but a nil. Anything else (a nil: ``$-1``, ``*-1``, RESP3's ``_``; RESP3's
    doubles, booleans, big numbers, verbatim strings, maps, sets, blob errors, push
    messages; a malformed header) is handed, its first line already read, to the
    connection's parser, which reads the rest of it as it would have (its ``_chunks``,
    see ``_redis_internals.read_after``): the same value, error or ``InvalidResponse``.

    The end of the stream raises ``IncompleteReadError`` (``_exchange`` makes it
    redis-py's ``ConnectionError``), a line longer than the stream's limit
    ``LimitOverrunError`` (``_exchange``: ``ValueError``, as the parser's ``readline``).
    The caller disconnects the connection on any failure (the stream is then
    mid-reply)."""
    line = await stream.readuntil(b"\r\n")
    kind = line[0]
    if kind == 36 or kind == 42:  # $ bulk string (most replies), * array
        try:
            size = int(line[1:-2])
        except ValueError:
            size = -1
        if size >= 0:
            if kind == 36:
                return (await stream.readexactly(size + 2))[:-2]
            return await _array(stream, conn, size)
    else:
        value = _simple(line, conn)
        if value is not _OTHER:
            return value
    return await internals.read_after(conn, line)


async def _array(stream: asyncio.StreamReader, conn: Any, size: int) -> list[Any]:
    """An array's ``size`` elements (see :func:`read_reply`)."""
    out: list[Any] = []
    append = out.append
    for _ in range(size):
        line = await stream.readuntil(b"\r\n")
        kind = line[0]
        if kind == 36 or kind == 42:
            try:
                length = int(line[1:-2])
            except ValueError:
                length = -1
            if length >= 0:
                if kind == 36:
                    append((await stream.readexactly(length + 2))[:-2])
                else:
                    append(await _array(stream, conn, length))
                continue
        else:
            value = _simple(line, conn)
            if value is not _OTHER:
                append(value)
                continue
        append(await internals.read_after(conn, line))
    return out


#: :func:`_simple`'s answer for a line it does not read
_OTHER: Final = object()


def _simple(line: bytes, conn: Any) -> Any:
    """A one-line reply: an integer, a simple string, an error; else ``_OTHER``."""
    kind = line[0]
    if kind == 58:  # : integer
        try:
            return int(line[1:-2])
        except ValueError:
            return _OTHER
    if kind == 43:  # + simple string
        return line[1:-2]
    if kind == 45:  # - error: redis-py's exception (a ConnectionError raised, as there)
        error = internals.parse_error(conn, line[1:-2].decode("utf-8", errors="replace"))
        if isinstance(error, RedisConnectionError):
            raise error
        return error
    return _OTHER


async def _connect(conn: Any) -> None:
    """Connect (a failure here is marked "not sent", see ``_conn._Unsent``), honouring a
    cancellation redis-py's handshake swallowed: its ``send_packed_command`` sends under
    ``asyncio.wait_for``, which on Python 3.11 returns normally when the send finishes
    in the same loop turn as the cancellation. Nothing of the request has been sent yet,
    so the call ends here as cancelled, its connection intact."""
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    await conn.connect()
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError


class Deadlines:
    """The read timeout (``socket_timeout``) of one lane's connections, enforced by one
    timer that looks at the reads in progress every :attr:`TICK` seconds (at most a
    quarter of the timeout) instead of a timer per reply: redis-py's ``read_response``
    arms an ``asyncio.timeout`` around every reply, whose timer handle, its cancellation
    and the event loop's upkeep of cancelled handles were 39k of the 279k client
    instructions of an append (callgrind; mostly spent while the reply is on its way,
    so it is CPU saved rather than latency, see ``docs/performance.md``). A read past
    its deadline has its connection aborted, and fails with redis-py's ``TimeoutError``,
    as there."""

    TICK: float = 0.1

    def __init__(self) -> None:
        self._reading: dict[Any, float] = {}  # connection -> deadline (loop time)
        self._late: set[Any] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def begin(self, conn: Any, timeout: float | None) -> None:
        """A read on ``conn`` starts (``timeout`` None: no deadline)."""
        if timeout is None:
            return
        loop = asyncio.get_running_loop()
        self._reading[conn] = loop.time() + timeout
        if self._timer is None or self._loop is not loop:
            self._loop = loop
            self._timer = loop.call_later(min(self.TICK, timeout / 4), self._check, timeout)

    def end(self, conn: Any) -> bool:
        """The read on ``conn`` is over; was it aborted for being late?"""
        self._reading.pop(conn, None)
        if conn in self._late:
            self._late.discard(conn)
            return True
        return False

    def _check(self, timeout: float) -> None:
        self._timer = None
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        now = loop.time()
        for conn, deadline in list(self._reading.items()):
            if now >= deadline:
                del self._reading[conn]
                self._late.add(conn)
                writer = internals.stream_writer(conn)
                if writer is not None:
                    writer.transport.abort()  # the read sees the connection end
        if self._reading:
            self._timer = loop.call_later(min(self.TICK, timeout / 4), self._check, timeout)

    def close(self) -> None:
        """Stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._reading.clear()
        self._late.clear()


async def _on_node(
    node: ClusterNode,
    gate: FairGate,
    packed: bytes,
    count: int,
    during: Callable[[], object] | None,
    watch: Deadlines,
) -> list[Any]:
    await gate.acquire()
    try:
        conn = internals.node_acquire(node)
        try:
            return await _exchange(conn, packed, count, during, watch)
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            internals.node_release(node, conn)
    finally:
        gate.release()


class Lane:
    """Script calls over the connections of one redis-py client (see the module doc).

    On a single server and Sentinel the client's pool is a :class:`~._gate.FairPool`:
    a call takes a permit of its gate, then an idle connection straight from the pool's
    idle list when it has one (without the pool's lock, metrics and event dispatch, ~6 µs
    a call), else through the pool. On Cluster each node has a gate of its own here
    (redis-py's nodes keep a plain list and raise when it is empty)."""

    def __init__(
        self, client: Any, *, cluster: bool, max_connections: int, pool_timeout: float
    ) -> None:
        internals.verify()  # the probes below resolve, or a clear error now
        self._client = client
        self._cluster = cluster
        self.deadlines = Deadlines()
        self._max_connections = max_connections
        self._pool_timeout = pool_timeout
        self._node_gates: dict[str, FairGate] = {}
        self._get_args = internals.get_connection_args()
        if cluster:
            return
        pool: FairPool = client.connection_pool
        self._pool = pool
        self._gate = pool.gate
        self._idle = internals.idle_connections(pool)
        self._busy = internals.busy_connections(pool)
        #: a Sentinel pool for the master (redis-py's ``SentinelConnectionPool``)
        self._follows_master = bool(getattr(pool, "is_master", False))

    def gate(self, node: ClusterNode) -> FairGate:
        """The gate of one cluster node's connections."""
        gate = self._node_gates.get(node.name)
        if gate is None:
            gate = FairGate(self._max_connections, self._pool_timeout, f"node {node.name}")
            self._node_gates[node.name] = gate
        return gate

    async def script(
        self,
        command: str,
        ref: str | bytes,
        keys: Sequence[str],
        args: Sequence[Any],
        during: Callable[[], object] | None = None,
        fixed: int = 0,
    ) -> Any:
        """``EVALSHA sha`` or ``EVAL source`` (``command``, ``ref``) with keys and args;
        ``during`` as in :func:`_exchange`, ``fixed`` as in :func:`pack_call`."""
        packed = pack_call(command, ref, keys, args, fixed)
        if self._cluster:
            node = self._client.get_node_from_key(keys[0])
            (reply,) = await _on_node(node, self.gate(node), packed, 1, during, self.deadlines)
            if isinstance(reply, MovedError | AskError):
                # redis-py's cluster client follows redirections and updates its map
                return await self._client.execute_command(command, ref, len(keys), *keys, *args)
        else:
            (reply,) = await self._on_pool(packed, 1, during)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    def commands(self, key: str, packed: bytes, count: int) -> Awaitable[list[Any]]:
        """Plain commands the caller packed (``count`` of them, e.g. ``MULTI`` ... ``EXEC``
        on the keys of one slot), sent as one request to the node of ``key``; their
        replies, error replies (a redirection included) as exception objects in their
        places: the caller decides what to do with them. (The coroutine of
        ``_on_pool`` or ``_on_node`` itself: one layer fewer to await.)"""
        if self._cluster:
            node = self._client.get_node_from_key(key)
            return _on_node(node, self.gate(node), packed, count, None, self.deadlines)
        return self._on_pool(packed, count)

    async def pipeline(
        self, calls: Sequence[tuple[str, str | bytes, Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        """Script calls pipelined: all sent, then all replies read, on one connection (per
        node on Cluster, the nodes concurrently). Error replies come back as exception
        objects in their places; a failure of the connection itself raises."""
        if not self._cluster:
            packed = b"".join(pack_call(c, ref, keys, args) for c, ref, keys, args in calls)
            return await self._on_pool(packed, len(calls))
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for index, (_, _, keys, _) in enumerate(calls):
            node = self._client.get_node_from_key(keys[0])
            by_node.setdefault(node.name, (node, []))[1].append(index)
        groups = list(by_node.values())

        async def one(node: ClusterNode, indices: list[int]) -> list[Any]:
            packed = b"".join(pack_call(*calls[i]) for i in indices)
            return await _on_node(node, self.gate(node), packed, len(indices), None, self.deadlines)

        if len(groups) == 1:
            answers = [await one(*groups[0])]
        else:
            answers = await asyncio.gather(*(one(node, idx) for node, idx in groups))
        out: list[Any] = [None] * len(calls)
        for (_, indices), replies in zip(groups, answers, strict=True):
            for index, reply in zip(indices, replies, strict=True):
                out[index] = reply
        return out

    async def _on_pool(
        self, packed: bytes, count: int, during: Callable[[], object] | None = None
    ) -> list[Any]:
        idle = self._idle
        direct = False
        if self._gate.try_acquire():  # a free permit and nobody in line
            if idle:  # no await between taking it and marking it busy: atomic for asyncio
                conn = idle.pop()
                self._busy.add(conn)
                direct = True
            else:
                conn = await self._pool.checkout(*self._get_args)
        else:  # wait in line
            conn = await self._pool.get_connection(*self._get_args)
        try:
            replies = await _exchange(conn, packed, count, during, self.deadlines)
            if self._follows_master and any(type(r) is ReadOnlyError for r in replies):
                # as redis-py's SentinelManagedConnection.read_response: the master was
                # demoted, so the retry connects again through the sentinel (the reply
                # is read here, not there)
                await conn.disconnect()
        except BaseException:
            await conn.disconnect(nowait=True)  # redis-py did already; be sure
            await self._give_back(conn, direct)
            raise
        await self._give_back(conn, direct)
        return replies

    async def _give_back(self, conn: AbstractConnection, direct: bool) -> None:
        if not direct:
            await self._pool.release(conn)  # the permit goes back with it
            return
        try:
            if internals.should_reconnect(conn):
                await conn.disconnect()
        finally:
            if conn in self._busy:
                self._busy.remove(conn)
                self._idle.append(conn)
            self._gate.release()
