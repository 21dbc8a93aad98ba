"""The asyncpg internals the PostgreSQL driver relies on (``_asyncpg_internals.py``)
resolve on the installed asyncpg and do what the driver needs of them; a missing one
fails loudly (the watchdog never runs blind)."""

from __future__ import annotations

import socket

import asyncpg
import pytest
from sessionstore_postgres import _asyncpg_internals as internals

from sessionstore import ConfigurationError


def test_every_probe_resolves_on_the_installed_asyncpg() -> None:
    assert internals._problems() == [], asyncpg.__version__
    internals.verify()


def test_a_moved_internal_is_named_and_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class Bare:
        __slots__ = ()

    problems = internals._problems(Bare, Bare)
    assert {name for name, _ in problems} == set(internals.PROBES)
    monkeypatch.setattr(internals, "_verified", False)
    monkeypatch.setattr(internals, "_problems", lambda: problems)
    with pytest.raises(ConfigurationError, match="queries_count") as info:
        internals.verify()
    assert isinstance(info.value, internals.AsyncpgInternalsError)
    assert asyncpg.__version__ in str(info.value)


@pytest.mark.asyncio
async def test_the_probes_read_a_live_connection(postgres_url: str) -> None:
    """The counter moves with each statement sent; the socket is the connection's TCP
    socket."""
    conn = await asyncpg.connect(postgres_url)
    try:
        before = internals.statements_sent(conn)
        await conn.fetchval("SELECT 1")
        await conn.execute("SELECT 2")
        assert internals.statements_sent(conn) == before + 2
        sock = internals.socket_of(conn)
        assert sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)
    finally:
        conn.terminate()
