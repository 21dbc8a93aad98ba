"""asyncpg's private internals that the driver relies on, each behind one named probe.

asyncpg has no public way to reach a connection's socket (for the TCP keepalive and user
timeout that ``command_timeout`` sets), the number of statements it has sent (what the
pool's watchdog watches to tell a statement that runs on from one that got no reply), or
to close a connection whose event loop has already closed (``Connection.terminate()``
then asks the closed loop to run ``connection_lost``). Nothing else in the driver touches
a ``_name`` of asyncpg; this module is the list.

There is no silent fallback: :func:`verify` checks every probe against asyncpg's classes
and raises :class:`AsyncpgInternalsError` naming the one that does not resolve; the pool
calls it once before its first connection, and ``tests/postgres/test_asyncpg_internals.py``
runs it on the installed asyncpg (the lowest-versions run on the lowest one), so an
upgrade that moves one of these fails loudly instead of leaving the watchdog blind.
"""

from __future__ import annotations

import logging
import socket
from typing import Any, Final

import asyncpg
import asyncpg.connection
import asyncpg.protocol.protocol

from sessionstore import ConfigurationError

__all__ = [
    "PROBES",
    "AsyncpgInternalsError",
    "close_transport",
    "socket_of",
    "statements_sent",
    "verify",
]

log = logging.getLogger("sessionstore.postgres")

#: Every probe, and what the driver uses it for.
PROBES: Final = {
    "Connection._transport": "the connection's socket (TCP keepalive, TCP_USER_TIMEOUT); "
    "closing a connection of a closed event loop",
    "Connection._protocol": "the protocol object that counts statements",
    "BaseProtocol.queries_count": "statements sent, watched by the pool's watchdog",
}


class AsyncpgInternalsError(ConfigurationError):
    """The installed asyncpg lacks an internal the driver relies on (an upgrade moved it)."""


def socket_of(conn: asyncpg.Connection) -> socket.socket | None:
    """The connection's socket, or ``None`` once its transport is gone."""
    transport = conn._transport
    if transport is None:
        return None
    sock: socket.socket | None = transport.get_extra_info("socket")
    return sock


def statements_sent(conn: asyncpg.Connection) -> int:
    """How many statements asyncpg has sent on ``conn`` (a counter it keeps for its own
    pool's ``max_queries``): it moves each time a new statement goes out."""
    count: int = conn._protocol.queries_count
    return count


def close_transport(conn: asyncpg.Connection) -> None:
    """Close the socket of ``conn`` as its (closed) event loop would have: the transport's
    ``connection_lost`` runs here (it closes the socket in its ``finally``), also under
    TLS, where the socket is the SSL protocol's own transport."""
    transport = conn._transport
    raw = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)  # TLS
    for t in (transport, raw):
        lost = getattr(t, "_call_connection_lost", None)
        if lost is not None and getattr(t, "_sock", None) is not None:
            try:
                lost(None)
            except RuntimeError:  # connection_lost wanted the closed loop: the socket is shut
                log.debug("postgres: connection of a closed event loop dropped")


def _problems(
    connection: Any = asyncpg.connection.Connection,
    protocol: Any = asyncpg.protocol.protocol.BaseProtocol,
) -> list[tuple[str, str]]:
    """``(probe, what is missing)`` for every probe that does not resolve."""
    found: list[tuple[str, str]] = []
    slots = set(getattr(connection, "__slots__", ()))
    for name in ("_transport", "_protocol"):
        if name not in slots and not hasattr(connection, name):
            found.append((f"Connection.{name}", f"asyncpg's Connection has no {name}"))
    if not hasattr(protocol, "queries_count"):
        found.append(
            ("BaseProtocol.queries_count", "asyncpg's protocol has no queries_count counter")
        )
    return found


_verified = False


def verify() -> None:
    """Raise :class:`AsyncpgInternalsError` if a probe does not resolve on the installed
    asyncpg (checked once a process)."""
    global _verified
    if _verified:
        return
    problems = _problems()
    if problems:
        detail = "; ".join(f"{name}: {why}" for name, why in problems)
        raise AsyncpgInternalsError(
            f"asyncpg {asyncpg.__version__} lacks what the PostgreSQL driver relies on "
            f"({detail}); use the asyncpg versions pyproject.toml admits"
        )
    _verified = True
