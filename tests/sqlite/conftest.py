"""Fixtures of the SQLite driver tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sessionstore_sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]


def spawn(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m tests.sqlite._worker ARGS`` (stdout: its acknowledgements)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "drivers")])}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.sqlite._worker", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def count_hops(store: SqliteStore) -> list[str]:
    """From now on, the name of every function ``store`` runs on its worker threads is
    appended to the list returned (one entry per hop)."""
    threads = store._threads
    hops: list[str] = []
    real_run = threads.run

    async def counting(fn: Callable[..., Any], *args: Any) -> Any:
        hops.append(getattr(fn, "__name__", repr(fn)))
        return await real_run(fn, *args)

    threads.run = counting  # type: ignore[method-assign]
    return hops
