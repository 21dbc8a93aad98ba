#!/usr/bin/env python3
"""Long crash runs: the mixed workload of ``tests/crashmix.py`` SIGKILLed many times.

    python scripts/crash_soak.py file --kills 300
    python scripts/crash_soak.py sqlite --kills 300 --window 0.5
    python scripts/crash_soak.py postgres --kills 100   # a private durable server

The tests run a handful of kills per driver (``SESSIONSTORE_CRASH_KILLS_MIXED``); this
runs as many as asked, in a temporary directory (``--dir`` to choose where: a tmpfs is
fastest, a disk shows the real fsync order) or on a private PostgreSQL server started
for the run (fsync and synchronous commit on; never the machine's port 5432). Every
kill is checked as in the tests (each acknowledged write exactly there, the one in
flight whole or absent, listings and idempotent keys consistent, the store writing on);
the first violation stops the run with its assertion. Prints the totals as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "drivers")]

from tests import crashmix  # noqa: E402


@contextlib.contextmanager
def _target(
    driver: str, where: str | None
) -> Iterator[tuple[str, dict[str, Any], Callable[[], None] | None]]:
    """The store URL, its options and what to wait for after a kill."""
    if driver == "postgres":
        from tests.postgres.servers import backends_gone, durable_server_url

        app = f"crash-soak-{uuid.uuid4().hex[:8]}"
        with durable_server_url(prefix="ss-crash-") as url:
            yield (
                url,
                {"namespace": "soak", "application_name": app},
                lambda: asyncio.run(backends_gone(url, app)),
            )
        return
    with tempfile.TemporaryDirectory(prefix="ss-crash-", dir=where) as tmp:
        url = f"file://{tmp}/store" if driver == "file" else f"sqlite://{tmp}/soak.db"
        yield url, {}, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("driver", choices=["file", "sqlite", "postgres"])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--window", type=float, default=0.25, help="longest wait before a kill")
    parser.add_argument("--dir", default=None, help="where the store's files go (file, sqlite)")
    args = parser.parse_args()
    started = time.monotonic()
    with _target(args.driver, args.dir) as (url, options, after_kill):
        totals = crashmix.run_kills(
            url, options, args.kills, args.seed, after_kill=after_kill, window=args.window
        )
    report = {"driver": args.driver, **asdict(totals), "seconds": time.monotonic() - started}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
