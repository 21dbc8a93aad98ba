"""Counting the document reads a Redis store sends (the Cluster listing tests)."""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["count_reads"]


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
