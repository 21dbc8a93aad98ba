"""redis-py's private internals that the driver relies on, each behind one named probe.

The lean request path (``_lane.py``) and the connection classes (``_conn.py``) reach
into redis-py where its public API has no equivalent: the pool's idle list and busy set
(checked out and back without the pool's lock), the connection's parser (its class, to
read its replies in its place, and its buffers, to hand it a reply's rest or to tell a
stale connection without a coroutine), stream writer and reader (and asyncio's buffer of
the reader, as redis-py reads it), its ``_host_error`` for messages, and on Cluster the
connection arguments its nodes are built from and each node's own connection list.
Nothing else in the driver touches a ``_name`` of redis-py; this module is the list.

Where redis-py 5.0 and 8 differ, both shapes are spelled out here, chosen once at import
from what the installed redis-py has. There is no silent fallback: :func:`verify` checks
every probe against real redis-py objects and raises :class:`RedisInternalsError`,
naming the probe and the option that avoids it (``lean=false``), when one does not
resolve; the lane calls it before its first request, and
``tests/redis/test_redis_internals.py`` runs it on the installed redis-py, so an upgrade
that moves one of these fails loudly instead of getting silently slower or wrong.

``lean=false`` leaves all but the Cluster ones unused: a cluster client needs its
connection class set (to tell "not sent" from "sent") and its seeds kept
(:func:`restore_seeds`) on either path; a change there fails when the store is built.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, MutableSet
from typing import Any, Final

import redis
import redis._parsers
import redis.asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, ConnectionPool

from sessionstore import ConfigurationError

__all__ = [
    "PROBES",
    "RedisInternalsError",
    "busy_connections",
    "connections_of",
    "forget_streams",
    "get_connection_args",
    "host_error",
    "idle_connections",
    "is_stale",
    "lean_stream",
    "mark_cluster_connections",
    "node_acquire",
    "node_release",
    "parse_error",
    "read_after",
    "reply_reader",
    "restore_seeds",
    "should_reconnect",
    "stale_now",
    "stream_writer",
    "verify",
]

REDIS_PY: Final = redis.__version__

#: Every probe, and what the driver uses it for.
PROBES: Final = {
    "pool idle list": "ConnectionPool._available_connections (a list)",
    "pool busy set": "ConnectionPool._in_use_connections (a set)",
    "reply parser": "Connection._parser.read_response (a coroutine function)",
    "pure-Python parsers": (
        "redis._parsers._AsyncRESP2Parser and _AsyncRESP3Parser (classes, the parsers of "
        "RESP2 and RESP3 connections without hiredis), their parse_error (an error "
        "reply's exception), _chunks (a list: the lines read before read_response), "
        "and on redis-py 8 _buffer (bytes) and _connected (a bool); "
        "asyncio.StreamReader._buffer (a bytearray)"
    ),
    "host for messages": "Connection._host_error() (a str)",
    "stream writer": "Connection._writer (asyncio.StreamWriter once connected)",
    "stream reader": "Connection._reader (asyncio.StreamReader once connected)",
    "cluster connection arguments": (
        "RedisCluster.connection_kwargs, NodesManager.connection_kwargs (dicts) and "
        "NodesManager.startup_nodes (a dict of ClusterNode)"
    ),
    "cluster node connections": (
        "ClusterNode.acquire_connection() and ClusterNode.release() (redis-py 8) "
        "or ClusterNode._free (a deque, redis-py 5.0)"
    ),
    "every connection of a client": (
        "the pool's idle list and busy set; ClusterNode._connections (a list) of every node "
        "of NodesManager.nodes_cache and startup_nodes"
    ),
}


class RedisInternalsError(ConfigurationError):
    """The installed redis-py lacks an internal the lean request path relies on."""


# ---------------------------------------------------------------- the version shapes

# Each shape is chosen by what the installed redis-py has (5.0.1 and 8.2 are tested):
#: newer redis-py (8 has it) returns a node's connection with ``ClusterNode.release``
#: (which also honours ``should_reconnect``); 5.0 has the caller append it to ``_free``.
_NODE_HAS_RELEASE: Final = callable(getattr(ClusterNode, "release", None))
#: newer redis-py (8) can mark a connection for reconnection (maintenance
#: notifications); in 5.0 no connection is ever so marked.
_HAS_SHOULD_RECONNECT: Final = callable(getattr(AbstractConnection, "should_reconnect", None))
#: newer redis-py (8) checks for unread data without consuming it (``can_read``); 5.0
#: has only ``can_read_destructive``, which consumes a byte (the connection is dropped
#: then anyway).
_HAS_CAN_READ: Final = callable(getattr(AbstractConnection, "can_read", None))
#: redis-py's pure-Python parsers (RESP2, and RESP3: redis-py 8's default protocol; 5.0's
#: is RESP2): the lane's own reader (``_lane.read_reply``) reads in their place. Missing
#: ones (None) fail ``verify``.
_PURE_PARSERS: Final = (
    getattr(redis._parsers, "_AsyncRESP2Parser", None),
    getattr(redis._parsers, "_AsyncRESP3Parser", None),
)
#: redis-py's message of a connection closed by the server (its parsers' own)
SERVER_CLOSED: Final = "Connection closed by server."
#: redis-py 5.0 requires ``get_connection``'s ``command_name`` (ignored); 8 warns when
#: it is given.
_NEEDS_COMMAND_NAME: Final = (
    inspect.signature(ConnectionPool.get_connection).parameters.get("command_name") is not None
    and inspect.signature(ConnectionPool.get_connection).parameters["command_name"].default
    is inspect.Parameter.empty
)


# ---------------------------------------------------------------- the pool


def idle_connections(pool: ConnectionPool) -> list[AbstractConnection]:
    """The pool's idle connections (taken from the end, as the pool does)."""
    idle: list[AbstractConnection] = pool._available_connections
    return idle


def busy_connections(pool: ConnectionPool) -> MutableSet[AbstractConnection]:
    """The pool's checked-out connections."""
    busy: MutableSet[AbstractConnection] = pool._in_use_connections
    return busy


def get_connection_args() -> tuple[str, ...]:
    """The positional arguments of ``ConnectionPool.get_connection`` on this redis-py."""
    return ("EVALSHA",) if _NEEDS_COMMAND_NAME else ()


def connections_of(client: Any) -> list[AbstractConnection]:
    """Every connection a redis-py client holds (idle and checked out; every node's on
    Cluster), to close them without awaiting when their event loop cannot run them any
    more (see ``_loopstate.LoopState.abandon``, which survives its failure: the sockets are
    then closed when collected)."""
    if isinstance(client, RedisCluster):
        manager: Any = client.nodes_manager
        nodes = {**manager.startup_nodes, **manager.nodes_cache}
        return [conn for node in nodes.values() for conn in node._connections]
    pool = client.connection_pool
    return [*idle_connections(pool), *busy_connections(pool)]


# ---------------------------------------------------------------- a connection


def reply_reader(conn: AbstractConnection) -> Callable[[], Awaitable[Any]]:
    """The parser's ``read_response``: one reply, without redis-py's per-reply timer (the
    lane's :class:`~sessionstore_redis._lane.Deadlines` enforces the timeout)."""
    parser: Any = conn._parser  # typed as the base class, which has no read_response
    read: Callable[[], Awaitable[Any]] = parser.read_response
    return read


def lean_stream(conn: AbstractConnection) -> asyncio.StreamReader | None:
    """The connection's stream, when the lane's own reader can read its replies in place
    of redis-py's parser: the parser is one of redis-py's pure-Python ones (not hiredis)
    and replies are not decoded. None otherwise (or while it is not connected): then
    :func:`reply_reader`."""
    parser: Any = conn._parser
    if type(parser) not in _PURE_PARSERS or conn.encoder.decode_responses:
        return None
    reader: asyncio.StreamReader | None = conn._reader
    return reader


def read_after(conn: AbstractConnection, line: bytes) -> Awaitable[Any]:
    """The rest of a reply whose first ``line`` (with its CRLF) the lane's reader took
    from the stream, read by the connection's pure-Python parser as if it had read that
    line itself (it reads the lines it kept in ``_chunks`` before the stream; they are
    empty between replies)."""
    parser: Any = conn._parser
    parser._chunks.append(line)
    reply: Awaitable[Any] = parser.read_response()
    return reply


def parse_error(conn: AbstractConnection, text: str) -> Exception:
    """The exception redis-py's parser makes of the error reply ``text`` (its class from
    the error code: ``NOSCRIPT``, ``MOVED``, ``READONLY``, ...)."""
    parser: Any = conn._parser
    error: Exception = parser.parse_error(text)
    return error


def host_error(conn: AbstractConnection) -> str:
    """``host:port`` (or the socket path) as redis-py writes it in its messages."""
    return str(conn._host_error())


def stream_writer(conn: AbstractConnection) -> asyncio.StreamWriter | None:
    """The connection's stream writer (None while it is not connected)."""
    writer: asyncio.StreamWriter | None = conn._writer
    return writer


def forget_streams(conn: AbstractConnection) -> None:
    """Detach the connection from its streams, as its ``disconnect`` does last (used when
    its transport was aborted without its loop, see ``_loopstate.LoopState.abandon``; redis-py
    warns "unclosed Connection" about a connection that still holds them)."""
    conn._writer = None
    conn._reader = None


def should_reconnect(conn: AbstractConnection) -> bool:
    """Has redis-py marked the connection for reconnection (redis-py 6+)?"""
    if not _HAS_SHOULD_RECONNECT:
        return False
    return bool(conn.should_reconnect())  # type: ignore[no-untyped-call]


def stale_now(conn: AbstractConnection) -> bool | None:
    """:func:`is_stale`'s answer without awaiting, where it is known without: redis-py 8's
    ``can_read`` of its pure-Python parsers (three coroutines a call) looks only at what
    is here (the parser's own buffer, its stream's end, its stream's buffer: asyncio's
    ``StreamReader._buffer``, as redis-py reads it). None elsewhere (hiredis, redis-py
    5.0): then await :func:`is_stale`."""
    parser: Any = conn._parser
    if not _HAS_CAN_READ or type(parser) not in _PURE_PARSERS:
        return None
    reader: Any = conn._reader
    if reader is None or reader.at_eof() or reader.exception() is not None:
        return True
    # (not connected: redis-py's can_read raises, is_stale answers True)
    return not parser._connected or bool(parser._buffer) or bool(reader._buffer)


async def is_stale(conn: AbstractConnection) -> bool:
    """What the pool checks before handing out a connection: has the server closed it,
    or is there data nobody asked for on it? Sending on such a connection would count
    as "sent" and make an unversioned write's outcome unknown for nothing.

    The end of the stream is read from the connection's ``StreamReader`` on every
    redis-py: 8's ``can_read`` reports it, 5.0's ``can_read_destructive`` does not (it
    reads nothing from a closed stream and answers "no data")."""
    reader: asyncio.StreamReader | None = conn._reader
    if reader is None or reader.at_eof() or reader.exception() is not None:
        return True
    try:
        if _HAS_CAN_READ:
            return bool(await conn.can_read())  # type: ignore[attr-defined,unused-ignore]
        return bool(await conn.can_read_destructive())  # type: ignore[no-untyped-call,unused-ignore]
    except (OSError, redis.ConnectionError):
        return True


# ---------------------------------------------------------------- Cluster


def mark_cluster_connections(client: RedisCluster, cls: type[Connection]) -> None:
    """Build the cluster client's node connections from ``cls`` (``RedisCluster`` takes
    no ``connection_class``; its nodes are built from these arguments)."""
    client.connection_kwargs["connection_class"] = cls
    manager: Any = client.nodes_manager
    manager.connection_kwargs["connection_class"] = cls
    for node in manager.startup_nodes.values():
        node.connection_class = cls


def restore_seeds(client: RedisCluster, seeds: list[tuple[str, int]]) -> None:
    """Put back the configured seed nodes the cluster client dropped: redis-py 5.0 removes
    a node from ``startup_nodes`` on any connection error to it (8 moves it to the end),
    and once all are gone it can never read the slot map again ("Redis Cluster cannot be
    connected. Please provide at least one reachable node: None")."""
    manager: Any = client.nodes_manager
    startup: dict[str, ClusterNode] = manager.startup_nodes
    for host, port in seeds:
        node = ClusterNode(host, port, **manager.connection_kwargs)
        startup.setdefault(node.name, node)


def node_acquire(node: ClusterNode) -> Connection:
    """A connection of the node's own list (MaxConnectionsError when all are out)."""
    return node.acquire_connection()


def node_release(node: ClusterNode, conn: Connection) -> None:
    """Give a connection back to its node."""
    if _NODE_HAS_RELEASE:
        node.release(conn)  # type: ignore[attr-defined,unused-ignore]
    else:
        node._free.append(conn)


# ---------------------------------------------------------------- the check

_verified: list[bool] = []


def verify() -> None:
    """Check every probe against real (unconnected) redis-py objects; raise
    :class:`RedisInternalsError` naming each one that does not resolve."""
    if _verified:
        return
    problems = [f"{name}: {why}" for name, why in _problems()]
    if problems:
        raise RedisInternalsError(
            f"redis-py {REDIS_PY} does not have what the Redis driver's lean request path "
            f"uses ({'; '.join(problems)}). Open the store with lean=false to use only "
            "redis-py's public API, or install a redis-py this driver was tested with."
        )
    _verified.append(True)


def _problems() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []

    def check(name: str, ok: Callable[[], bool]) -> None:
        try:
            good = ok()
        except Exception as exc:  # an attribute gone, a signature changed
            out.append((name, f"{type(exc).__name__}: {exc}"))
            return
        if not good:
            out.append((name, f"not {PROBES[name]}"))

    pool = ConnectionPool(connection_class=Connection)
    conn = Connection()
    check("pool idle list", lambda: type(idle_connections(pool)) is list)
    check("pool busy set", lambda: isinstance(busy_connections(pool), MutableSet))
    check("reply parser", lambda: inspect.iscoroutinefunction(reply_reader(conn)))
    check("pure-Python parsers", _pure_parsers_resolve)
    check("host for messages", lambda: isinstance(host_error(conn), str))
    check("stream writer", lambda: hasattr(conn, "_writer") and stream_writer(conn) is None)
    check("stream reader", lambda: hasattr(conn, "_reader") and conn._reader is None)
    check("cluster connection arguments", _cluster_kwargs_resolve)
    check("cluster node connections", _node_connections_resolve)
    check("every connection of a client", _all_connections_resolve)
    return out


def _pure_parsers_resolve() -> bool:
    from redis.exceptions import NoScriptError, ResponseError

    for parser_class in _PURE_PARSERS:
        parser: Any = parser_class(65536) if isinstance(parser_class, type) else None
        if not (
            inspect.iscoroutinefunction(getattr(parser, "read_response", None))
            and type(getattr(parser, "_chunks", None)) is list
            # (what stale_now reads: redis-py 8 only)
            and (not _HAS_CAN_READ or type(getattr(parser, "_buffer", None)) is bytes)
            and (not _HAS_CAN_READ or type(getattr(parser, "_connected", None)) is bool)
            and type(parser.parse_error("NOSCRIPT x")) is NoScriptError
            and type(parser.parse_error("ERR x")) is ResponseError
        ):
            return False
    loop = asyncio.new_event_loop()  # (a StreamReader outside a loop warns)
    try:
        stream_buffer = getattr(asyncio.StreamReader(loop=loop), "_buffer", None)
    finally:
        loop.close()
    conn = Connection()
    return (
        type(parse_error(conn, "NOSCRIPT x")) is NoScriptError and type(stream_buffer) is bytearray
    )


def _cluster_kwargs_resolve() -> bool:
    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", 7000)])
    manager: Any = client.nodes_manager
    return (
        isinstance(client.connection_kwargs, dict)
        and isinstance(manager.connection_kwargs, dict)
        and isinstance(manager.startup_nodes, dict)
        and all(isinstance(n, ClusterNode) for n in manager.startup_nodes.values())
    )


def _all_connections_resolve() -> bool:
    pool = ConnectionPool(connection_class=Connection)
    conn = Connection()
    busy_connections(pool).add(conn)
    cluster = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", 7000)])
    node = next(iter(cluster.nodes_manager.startup_nodes.values()))
    taken = node_acquire(node)
    return connections_of(redis.asyncio.Redis.from_pool(pool)) == [conn] and connections_of(
        cluster
    ) == [taken]


def _node_connections_resolve() -> bool:
    node = ClusterNode("127.0.0.1", 7000, max_connections=1)
    conn = node_acquire(node)
    node_release(node, conn)
    return node_acquire(node) is conn
