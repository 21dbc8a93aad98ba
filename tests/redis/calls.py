"""Counting what a Redis store sends: its document reads (the Cluster listing tests), its
requests, and the server's calls of named commands."""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["command_calls", "count_reads", "count_requests"]


def count_reads(store: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, the ``lua/read.lua`` calls of each request ``store`` sends (a
    pipeline's count, or 1 for a call of its own), appended to the list returned."""
    calls: list[int] = []
    pipeline, script = store._backend.pipeline, store._backend.script

    async def counted(batch: Any, here: Any = None) -> Any:
        if batch and batch[0][1].name == "read":
            calls.append(len(batch))
        return await pipeline(batch, here)

    async def one(what: Any, *args: Any) -> Any:
        if what.name == "read":
            calls.append(1)
        return await script(what, *args)

    monkeypatch.setattr(store._backend, "pipeline", counted)
    monkeypatch.setattr(store._backend, "script", one)
    return calls


def count_requests(store: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the name of each of the store's calls to its server (``script``,
    ``script_wait``, ``commands``, ``pipeline``: each a round trip), appended to the
    list returned."""
    sent: list[str] = []
    backend = store._backend
    for name in ("script", "script_wait", "commands", "pipeline"):
        real = getattr(backend, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            sent.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(backend, name, counted)
    return sent


async def command_calls(store: Any, *names: str) -> int:
    """How often the server ran the commands ``names`` since its last ``CONFIG
    RESETSTAT`` (``INFO commandstats``; commands a script runs count too)."""
    stats = await store.client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in names)
