"""The lane's own reply reader (``_lane.read_reply``): every reply type and every error
reply read as redis-py's pure-Python parsers (RESP2 and RESP3) read them (canned bytes,
and a real server's replies), a reply split across many small reads, and a cancellation
or an end of the stream in the middle of a reply leaving the connection disconnected."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio
from redis._parsers import Encoder, _AsyncRESP2Parser, _AsyncRESP3Parser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    InvalidResponse,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.utils import HIREDIS_AVAILABLE
from sessionstore_redis import RedisStore, _lane
from sessionstore_redis import _redis_internals as internals
from sessionstore_redis._lane import pack, read_reply

from sessionstore import open_store

pytestmark = pytest.mark.asyncio

#: One reply of each kind (RESP2's, and the nils)
REPLIES: list[bytes] = [
    b"+OK\r\n",
    b"+\r\n",
    b"$5\r\nhello\r\n",
    b"$0\r\n\r\n",
    b"$6\r\na\r\nb\0c\r\n",  # a bulk string holding CRLF and NUL
    b"$-1\r\n",
    b":42\r\n",
    b":-7\r\n",
    b":0\r\n",
    b"*0\r\n",
    b"*-1\r\n",
    b"*3\r\n$1\r\na\r\n:1\r\n+st\r\n",
    b"*4\r\n$-1\r\n*-1\r\n*0\r\n*2\r\n$1\r\nx\r\n*1\r\n*1\r\n:9\r\n",
    b"*2\r\n-MOVED 3999 127.0.0.1:6381\r\n$2\r\nok\r\n",
    b"*3\r\n*2\r\n$-1\r\n-ERR in\r\n$3\r\nabc\r\n+x\r\n",
    b"$2000\r\n" + b"d" * 2000 + b"\r\n",
]

#: RESP3's own (redis-py 8's connections speak RESP3): read by the parser, as before
RESP3: list[bytes] = [
    b"_\r\n",
    b",3.25\r\n",
    b",inf\r\n",
    b"#t\r\n",
    b"#f\r\n",
    b"(12345678901234567890123\r\n",
    b"=15\r\ntxt:Some string\r\n",
    b"%2\r\n+a\r\n:1\r\n$1\r\nb\r\n*1\r\n_\r\n",
    b"~2\r\n:1\r\n$1\r\nx\r\n",
    b"!21\r\nSYNTAX invalid syntax\r\n",
    b"*4\r\n_\r\n#t\r\n,1.5\r\n%1\r\n:1\r\n:2\r\n",
    b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n+after a push\r\n",
]

#: Error replies: each becomes the exception redis-py's parser makes of it
ERRORS: list[bytes] = [
    b"-ERR something went wrong\r\n",
    b"-ERR\r\n",
    b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
    b"-MOVED 3999 127.0.0.1:6381\r\n",
    b"-ASK 3999 127.0.0.1:6381\r\n",
    b"-READONLY You can't write against a read only replica.\r\n",
    b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
    b"-CLUSTERDOWN The cluster is down\r\n",
    b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
    b"-MASTERDOWN Link with MASTER is down\r\n",
    b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    b"-NOPERM this user has no permissions\r\n",
    b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
    b"-BUSY Redis is busy running a script.\r\n",
    b"-ERR Error running script (call to f_abc): @user_script:1: oops\r\n",
    b"-ERR bad \xff\xfe bytes\r\n",
]

#: Error replies redis-py raises rather than returns (ConnectionErrors)
RAISED: list[bytes] = [
    b"-LOADING Redis is loading the dataset in memory\r\n",
    b"-NOAUTH Authentication required.\r\n",
    b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    b"-ERR max number of clients reached\r\n",
    b"-ERR invalid password\r\n",
]

#: Malformed replies: redis-py's InvalidResponse (redis-py 5's parsers raise ValueError
#: for a length or an integer that does not parse; the reader hands those lines to them)
MALFORMED: list[bytes] = [b"?what\r\n", b"$x\r\n", b":1.5\r\n", b"*y\r\n"]

PARSERS = [_AsyncRESP2Parser, _AsyncRESP3Parser]
#: RESP2's nils: redis-py's RESP3 parser misreads them (no RESP3 server sends them); the
#: lane's reader hands them to it, so it misreads them the same way
NILS = [data for data in REPLIES if b"-1\r\n" in data]


def _fed(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    stream = asyncio.StreamReader()
    stream.feed_data(data)
    if eof:
        stream.feed_eof()
    return stream


def _redis_py_parser(stream: asyncio.StreamReader, parser_class: type) -> Any:
    parser = parser_class(65536)
    encoder = Encoder("utf-8", "strict", False)  # type: ignore[no-untyped-call]
    parser.on_connect(SimpleNamespace(_reader=stream, encoder=encoder))
    return parser


def _ours(stream: asyncio.StreamReader, parser_class: type) -> Callable[[], Awaitable[Any]]:
    """The lane's reader on ``stream``, a parser of ``parser_class`` on it (what the
    reader hands the rare replies to, and takes the error classes from)."""
    conn = SimpleNamespace(_parser=_redis_py_parser(stream, parser_class))
    return lambda: read_reply(stream, conn)


async def _outcome(read: Callable[[], Awaitable[Any]]) -> tuple[str, Any]:
    """What one read gives, comparable across readers: a value, or an exception's class,
    message and status code, returned or raised."""
    try:
        value = await read()
    except (RedisError, asyncio.IncompleteReadError, ValueError) as exc:
        return "raised", _shape(exc)
    return "returned", _shape(value)


def _shape(value: Any) -> Any:
    if isinstance(value, BaseException):
        return (type(value), value.args, getattr(value, "status_code", None))
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return (type(value), value)


async def _both(data: bytes, parser_class: type) -> tuple[Any, Any]:
    ours = await _outcome(_ours(_fed(data), parser_class))
    theirs = await _outcome(_redis_py_parser(_fed(data), parser_class).read_response)
    return ours, theirs


@pytest.mark.parametrize("parser_class", PARSERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "data", REPLIES + RESP3 + ERRORS + RAISED + MALFORMED, ids=lambda data: repr(data[:24])
)
async def test_each_reply_reads_as_redis_py_reads_it(data: bytes, parser_class: type) -> None:
    ours, theirs = await _both(data, parser_class)
    assert ours == theirs
    resp3 = parser_class is _AsyncRESP3Parser
    if (data in REPLIES + ERRORS and not (resp3 and data in NILS)) or (data in RESP3 and resp3):
        assert ours[0] == "returned"
    elif data in RAISED:
        assert ours[0] == "raised"
    elif data in MALFORMED:
        assert ours[0] == "raised" and ours[1][0] in (InvalidResponse, ValueError)


async def test_error_replies_are_redis_py_s_classes() -> None:
    """(A few spelled out, besides the comparison above. redis-py 5's plain parsers leave
    MOVED a ResponseError: its cluster connections' parser maps it.)"""
    moved = MovedError if "MOVED" in _AsyncRESP3Parser.EXCEPTION_CLASSES else ResponseError
    for data, cls in [
        (b"-NOSCRIPT x\r\n", NoScriptError),
        (b"-MOVED 1 h:1\r\n", moved),
        (b"-READONLY x\r\n", ReadOnlyError),
    ]:
        assert type(await _ours(_fed(data), _AsyncRESP3Parser)()) is cls


@pytest.mark.parametrize("parser_class", PARSERS, ids=lambda c: c.__name__)
async def test_replies_back_to_back_are_read_in_step(parser_class: type) -> None:
    """Each read takes exactly its reply's bytes, leaving the next one whole (the rare
    ones the parser finishes included)."""
    if parser_class is _AsyncRESP3Parser:
        every = [data for data in REPLIES if data not in NILS] + ERRORS + RESP3
    else:
        every = REPLIES + ERRORS
    stream = _fed(b"".join(every))
    ours = _ours(stream, parser_class)
    parser = _redis_py_parser(_fed(b"".join(every)), parser_class)
    for _ in every:
        assert await _outcome(ours) == await _outcome(parser.read_response)
    assert stream.at_eof()


@pytest.mark.parametrize("size", [1, 2, 3, 7])
async def test_a_reply_split_into_small_pieces(size: int) -> None:
    """Fed a few bytes at a time, each piece after the reader waits: the same replies."""
    every = [data for data in REPLIES if data not in NILS] + ERRORS + RESP3
    data = b"".join(every)
    stream = asyncio.StreamReader()

    async def trickle() -> None:
        for at in range(0, len(data), size):
            await asyncio.sleep(0)
            stream.feed_data(data[at : at + size])
        stream.feed_eof()

    feeding = asyncio.create_task(trickle())
    ours = _ours(stream, _AsyncRESP3Parser)
    got = [await _outcome(ours) for _ in every]
    await feeding
    parser = _redis_py_parser(_fed(data), _AsyncRESP3Parser)
    assert got == [await _outcome(parser.read_response) for _ in every]


async def test_a_line_past_the_streams_limit() -> None:
    """(``_exchange`` makes the reader's ``LimitOverrunError`` the parser's ValueError.)"""
    data = b"+" + b"x" * 40 + b"\r\n"
    stream = asyncio.StreamReader(limit=16)
    stream.feed_data(data)
    with pytest.raises(asyncio.LimitOverrunError):
        await _ours(stream, _AsyncRESP3Parser)()
    theirs = asyncio.StreamReader(limit=16)
    theirs.feed_data(data)
    with pytest.raises(ValueError):
        await _redis_py_parser(theirs, _AsyncRESP3Parser).read_response()


async def test_the_end_of_the_stream_mid_reply() -> None:
    for cut in (b"$5\r\nhel", b"$5", b"*2\r\n:1\r\n", b"+OK"):
        with pytest.raises(asyncio.IncompleteReadError):
            await _ours(_fed(cut), _AsyncRESP3Parser)()


# ---------------------------------------------------------------- a real server


@pytest_asyncio.fixture(params=[None, 2, 3], ids=["default-protocol", "resp2", "resp3"])
async def raw_conn(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A connection of the driver's own class to the private server (redis-py's default
    protocol, as the store's: RESP3 on redis-py 8, RESP2 on 5.0; and each), connected."""
    from sessionstore_redis._conn import _Conn

    protocol = {} if request.param is None else {"protocol": request.param}
    pool = redis.asyncio.ConnectionPool.from_url(redis_url, connection_class=_Conn, **protocol)
    conn: Any = pool.make_connection()  # type: ignore[no-untyped-call]
    await conn.connect()
    try:
        yield conn
    finally:
        await conn.disconnect()
        await pool.disconnect()


_REPUSH = "redis.call('DEL', KEYS[1]) return redis.call('RPUSH', KEYS[1], unpack(ARGV))"

#: Requests whose replies cover every RESP2 type from a real server (a script's return
#: values convert: a table to an array, false to nil, status and error tables)
REQUESTS: list[list[Any]] = [
    ["SET", "rd:k", "v"],
    ["GET", "rd:k"],
    ["GET", "rd:missing"],
    ["SET", "rd:n", "-5"],
    ["INCRBY", "rd:n", 0],
    ["EVAL", _REPUSH, 1, "rd:l", "a", "", "b\r\nc"],
    ["LRANGE", "rd:l", 0, -1],
    ["LRANGE", "rd:none", 0, -1],
    ["BLPOP", "rd:none", "0.01"],  # times out: a nil array
    ["EVAL", "return {1, 'a', {2, false, {}}, false, {ok='S'}, {err='E x'}}", 0],
    ["EVAL", "return redis.error_reply('MOVED 1 127.0.0.1:1')", 0],
    ["EVAL", "return redis.error_reply('ASK 1 127.0.0.1:1')", 0],
    ["EVAL", "return redis.error_reply('READONLY no')", 0],
    ["EVAL", "return redis.error_reply('NOAUTH no')", 0],
    ["EVAL", "return redis.call('INCR', KEYS[1])", 1, "rd:l"],
    ["EVAL", "return 1 +", 0],
    ["EVALSHA", "0" * 40, 0],
    ["NOSUCHCOMMAND"],
    ["GET", "rd:l"],  # WRONGTYPE
    ["SET", "rd:big", "x" * 100_000],
    ["GET", "rd:big"],
]


async def test_a_real_servers_replies_read_as_redis_py_reads_them(raw_conn: Any) -> None:
    if HIREDIS_AVAILABLE:
        pytest.skip("hiredis reads (the lane's reader is unused)")
    assert internals.lean_stream(raw_conn) is raw_conn._reader
    parser_read = internals.reply_reader(raw_conn)
    for request in REQUESTS:
        await raw_conn.send_request(pack(request))
        ours = await _outcome(lambda: read_reply(raw_conn._reader, raw_conn))
        await raw_conn.send_request(pack(request))
        theirs = await _outcome(parser_read)
        assert ours == theirs, request


async def test_the_lanes_connections_use_the_lean_reader(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unless hiredis is installed (then its parser reads, as before)."""
    calls: list[int] = []
    real = _lane.read_reply

    async def counted(stream: asyncio.StreamReader, conn: Any) -> Any:
        calls.append(1)
        return await real(stream, conn)

    monkeypatch.setattr(_lane, "read_reply", counted)
    async with open_store(redis_url, namespace=namespace) as store:
        s = await store.create_session(data={"a": 1})
        s = await store.append_events(s.id, [{"type": "e"}])
        assert await store.get_session(s.id) == s
        assert isinstance(store, RedisStore)
        conn = store._backend.here().lane._idle[0]  # type: ignore[union-attr]
        if HIREDIS_AVAILABLE:
            assert internals.lean_stream(conn) is None and not calls
        else:
            assert internals.lean_stream(conn) is conn._reader and len(calls) >= 3


async def test_a_decoding_connection_reads_with_redis_py() -> None:
    conn = redis.asyncio.Connection(decode_responses=True)
    assert internals.lean_stream(conn) is None


# ---------------------------------------------------------------- through a slow proxy


class Proxy:
    """Forwards to the server; its replies a few bytes per write (each write its own
    TCP segment, a loop turn apart). ``hold_after``: stop forwarding after that many
    bytes of the next reply (``held`` set) until ``resume``; ``cut_after``: close the
    client's connection after that many bytes instead."""

    def __init__(self, port: int, piece: int) -> None:
        self._port = port
        self._piece = piece
        self.hold_after: int | None = None
        self.cut_after: int | None = None
        self.held = asyncio.Event()
        self.resume = asyncio.Event()
        self.writes = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _serve(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        sreader, swriter = await asyncio.open_connection("127.0.0.1", self._port)
        cwriter.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for pump in (self._up(creader, swriter), self._down(sreader, cwriter)):
            task = asyncio.create_task(pump)
            self._tasks.add(task)

    async def _up(self, creader: asyncio.StreamReader, swriter: asyncio.StreamWriter) -> None:
        while data := await creader.read(65536):
            swriter.write(data)
            await swriter.drain()
        swriter.close()

    async def _down(self, sreader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        while data := await sreader.read(65536):
            hold, cut = self.hold_after, self.cut_after
            for at in range(0, len(data), self._piece):
                if hold is not None and at >= hold:
                    self.hold_after = hold = None
                    self.held.set()
                    await self.resume.wait()
                if cut is not None and at >= cut:
                    self.cut_after = None
                    cwriter.transport.abort()
                    return
                cwriter.write(data[at : at + self._piece])
                self.writes += 1
                await cwriter.drain()
                await asyncio.sleep(0)
        cwriter.close()


@pytest_asyncio.fixture
async def proxy(redis_url: str) -> AsyncIterator[tuple[Proxy, str]]:
    proxy = Proxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]), piece=3)
    port = await proxy.start()
    try:
        yield proxy, f"redis://127.0.0.1:{port}"
    finally:
        await proxy.close()


async def test_the_stores_calls_through_replies_split_into_many_reads(
    proxy: tuple[Proxy, str], redis_url: str, namespace: str
) -> None:
    slow, url = proxy
    doc = {"text": "x" * 2000, "n": list(range(50))}
    async with open_store(url, namespace=namespace) as store:
        before = slow.writes
        s = await store.create_session(data=doc, tags={"a", "b"})
        s = await store.append_events(s.id, [{"type": "e", "data": {"i": i}} for i in range(5)])
        s = await store.update_session(s.id, merge_data={"m": 1})
        got = await store.get_session(s.id)
        assert got == s and got.data["text"] == doc["text"]
        assert [e.data for e in await store.get_events(s.id)] == [{"i": i} for i in range(5)]
        assert slow.writes - before > 1000  # the replies came in pieces of 3 bytes
    async with open_store(redis_url, namespace=namespace) as direct:
        assert await direct.get_session(s.id) == s


Get = Callable[[], Awaitable[list[Any]]]


@pytest_asyncio.fixture
async def big_get(
    proxy: tuple[Proxy, str], namespace: str
) -> AsyncIterator[tuple[Proxy, Get, Any]]:
    """The proxy, a ``GET`` of a 5,000-byte value through a store's lane (one connection)
    on it, and the lane."""
    slow, url = proxy
    async with open_store(url, namespace=namespace, max_connections=1) as store:
        assert isinstance(store, RedisStore)
        key = f"{namespace}:big"
        await store.client.set(key, b"y" * 5000)
        lane = store._backend.here().lane
        assert lane is not None
        get = pack(["GET", key])
        yield slow, lambda: lane.commands(key, get, 1), lane
        slow.resume.set()


def _all_disconnected(lane: Any) -> bool:
    return not lane._busy and bool(lane._idle) and all(not c.is_connected for c in lane._idle)


async def test_a_cancellation_mid_reply_disconnects_the_connection(
    big_get: tuple[Proxy, Get, Any],
) -> None:
    """CVE-2023-28858/9: the connection is never left with a reply half read."""
    slow, get, lane = big_get
    assert await get() == [b"y" * 5000]
    slow.hold_after = 100
    task = asyncio.ensure_future(get())
    await asyncio.wait_for(slow.held.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _all_disconnected(lane)
    slow.resume.set()  # the rest of that reply goes to a closed connection
    assert await get() == [b"y" * 5000]
    assert await get() == [b"y" * 5000]


async def test_the_end_of_the_stream_mid_reply_disconnects_the_connection(
    big_get: tuple[Proxy, Get, Any],
) -> None:
    slow, get, lane = big_get
    slow.cut_after = 60
    with pytest.raises(RedisConnectionError, match="Connection closed by server"):
        await get()
    assert _all_disconnected(lane)
    assert await get() == [b"y" * 5000]
