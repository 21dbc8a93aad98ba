"""Sentinel: the store follows the master across a failover (slow: the sentinel needs
``down-after-milliseconds`` plus an election)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from sessionstore_redis import RedisStore

from sessionstore import open_store
from tests.redis.servers import RedisBinaries, start_sentinel

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def test_sentinel_failover_is_ridden_out(redis_binaries: RedisBinaries) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sessionstore-sentinel-fo-"))
    try:
        setup = start_sentinel(redis_binaries, workdir)
    except (RuntimeError, OSError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(f"cannot run a sentinel here: {exc}")
    try:
        store = open_store(setup.url, retry_deadline=40.0, socket_timeout=1.0, connect_timeout=0.5)
        assert isinstance(store, RedisStore)
        async with store:
            s = await store.create_session(data={"n": 0})
            for n in range(1, 4):
                s = await store.update_session(
                    s.id, merge_data={"n": n}, expected_version=s.version
                )
            await asyncio.sleep(0.3)  # replication catches up (no wait_replicas here)
            setup.master.kill()
            started = time.monotonic()
            for n in range(4, 8):  # each call waits out the failover within the deadline
                s = await store.update_session(
                    s.id, merge_data={"n": n}, expected_version=s.version
                )
            assert time.monotonic() - started < 40
            got = await store.get_session(s.id)
            assert got == s and got is not None and got.data["n"] == 7
    finally:
        setup.stop()
        shutil.rmtree(workdir, ignore_errors=True)
